"""The project's error type for bad input: what the CLIs report in one line.

Standard library only, so that every module (also the numpy-only ones, and
:mod:`depth_motion_tf.cli` before TensorFlow loads) can raise or catch it.
"""


class BadInputError(ValueError):
    """One input file is missing, unreadable or inconsistent.

    The message names the file and the problem: ``"<path>: <problem>"``.
    """

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem
