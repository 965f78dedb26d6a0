"""What every command line of the project shares: one-line errors, quiet TensorFlow.

Each CLI (``python -m depth_motion_tf.<name>`` or ``python -m data_prep.<name>``)
ends with ``cli.run(main)`` instead of ``app.run(main)``:

- Flag problems (``app.UsageError``), bad input files
  (:class:`~depth_motion_tf.errors.BadInputError`) and the usual OS errors (a
  missing, unreadable or unwritable path) print one line,
  ``error: <file or flag>: <problem>``, to stderr and exit with status 1. Any
  other exception keeps its traceback: it is a bug, not bad input.
- TensorFlow's C++ log (the oneDNN and CPU-feature notices, a failed ``cuInit``
  on a machine without a GPU, ...) is hidden: :func:`quiet_tensorflow` runs when
  the package loads, before TensorFlow does, and only in a CLI process of this
  project (``import depth_motion_tf`` in another program changes nothing).
  ``--tf_logs`` on the command line, or ``TF_CPP_MIN_LOG_LEVEL`` set to 0, 1 or 2
  in the environment, shows it. TensorFlow's and absl's Python INFO logs are
  lowered to warnings too, unless ``--tf_logs`` or absl's ``--verbosity`` is given.

Standard library and absl only: this module is imported before TensorFlow.
"""
import functools
import logging as std_logging
import os
import re
import sys
import tempfile

from absl import app, flags, logging

from depth_motion_tf.errors import BadInputError

PACKAGES = ("depth_motion_tf", "data_prep")
TF_LOGS_FLAG = "tf_logs"
# OS errors that mean a path is wrong, not that the program is.
PATH_ERRORS = (
    FileNotFoundError, FileExistsError, PermissionError, NotADirectoryError, IsADirectoryError,
)
# One record of TensorFlow's (absl's) C++ log: "I0000 00:00:1796154628.281461    4870 port.cc:153] ...".
_LOG_RECORD = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ [^ ]+:\d+\] ")
LOG_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


# ------------------------------------------------------------------ the wrapper


def run(main):
    """``app.run(main)``, reporting bad input in one line and quieting logs (see the module docstring)."""
    flags.DEFINE_bool(
        TF_LOGS_FLAG, False,
        "Show TensorFlow's logs: its C++ log (start-up notices, cuInit, ...; read from the "
        "command line before TensorFlow loads, not from a --flagfile) and its Python INFO log.",
    )
    app.run(reporting_errors(quieting_info_logs(main)))


def quieting_info_logs(main):
    """``main`` that first lowers absl's and TensorFlow's Python logs to warnings.

    Not with ``--tf_logs``, nor when ``--verbosity`` (absl's flag) is given.
    """

    @functools.wraps(main)
    def wrapped(argv):
        if not (flags.FLAGS[TF_LOGS_FLAG].value or flags.FLAGS["verbosity"].present):
            logging.set_verbosity(logging.WARNING)
            std_logging.getLogger("tensorflow").setLevel(std_logging.WARNING)
        return main(argv)

    return wrapped


def reporting_errors(main):
    """``main`` that turns the project's errors into ``error: ...`` and exit status 1."""

    @functools.wraps(main)
    def wrapped(argv):
        try:
            return main(argv)
        except (app.UsageError, BadInputError, *PATH_ERRORS, *_tensorflow_path_errors()) as error:
            print(f"error: {error_message(error)}", file=sys.stderr)
            sys.exit(1)

    return wrapped


def check_paths(values, names):
    """Raises ``app.UsageError`` for the first flag of ``names`` set to a path (or glob) that matches nothing.

    Args:
        values: parsed absl ``FlagValues``, or an object with the flags' values as
            attributes of the same names (e.g. a ``TrainConfig``).
        names: flag names whose values are input paths; unset flags are skipped.
    """
    import tensorflow as tf  # loaded by every caller by now; not at import (see the docstring)

    for name in names:
        value = getattr(values, name)
        if value and not (tf.io.gfile.exists(value) or tf.io.gfile.glob(value)):
            raise app.UsageError(f"--{name}={value}: no such file or folder")


def _tensorflow_path_errors():
    """TensorFlow's file-system errors of a wrong path (``tf.io.gfile`` raises these)."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return ()
    return (tf.errors.PermissionDeniedError,)


def error_message(error):
    """The one line of ``error: <line>`` for an error :func:`run` reports.

    Our own errors already read ``<file or flag>: <problem>``; an OS error reads
    ``<file>: <strerror>`` (e.g. ``out/data: Permission denied``).
    """
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    message = getattr(error, "message", None) or str(error)  # tf.errors carry .message
    return " ".join(message.split())


# ------------------------------------------------------------------ summaries -


def disk_size(path):
    """Total size of the files under ``path`` (a folder or a file), as ``"57.3 MB"`` (powers of 1000)."""
    import tensorflow as tf  # loaded by every caller by now; not at import (see the docstring)

    if not tf.io.gfile.isdir(path):
        return format_size(tf.io.gfile.stat(path).length)
    total = sum(
        tf.io.gfile.stat(os.path.join(folder, name)).length
        for folder, _, names in tf.io.gfile.walk(path)
        for name in names
    )
    return format_size(total)


def format_size(size):
    """A byte count as ``"673.2 MB"``: B, kB, MB, GB or TB, powers of 1000."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


# ------------------------------------------------------------------ TF logs ---


def quiet_tensorflow():
    """Hides TensorFlow's C++ log in this project's CLI processes; called by the package ``__init__``.

    Does nothing unless the program is ``python -m <one of PACKAGES>.<module>``,
    nor with ``--tf_logs`` on the command line, nor when the environment sets
    ``TF_CPP_MIN_LOG_LEVEL`` below 3. Otherwise it sets the level to 3 (no C++
    log once TensorFlow's logging is initialised) and imports TensorFlow with
    the log records it prints while loading filtered out of stderr: TensorFlow
    2.21 prints those (oneDNN, cudart, cpu_feature_guard) whatever the level.
    """
    if not _running_our_cli() or tf_logs_wanted(sys.argv[1:]):
        return
    if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3") != "3":
        return
    _import_tensorflow_filtering_stderr()


def _running_our_cli():
    """True while ``python -m depth_motion_tf.X`` (or ``data_prep.X``) loads its package.

    Python sets ``sys.argv[0]`` to ``-m`` until the module is found; the module's
    name is then only in ``sys.orig_argv`` (``-m name`` or ``-mname``).
    """
    if sys.argv[:1] != ["-m"]:
        return False
    args = sys.orig_argv[1:]
    for index, arg in enumerate(args):
        if arg.startswith("-m"):
            module = arg[2:] or (args[index + 1] if index + 1 < len(args) else "")
            return module.split(".")[0] in PACKAGES
    return False


def tf_logs_wanted(args):
    """Whether ``args`` (the command line after the program) turn ``--tf_logs`` on (last one wins)."""
    wanted = False
    for arg in args:
        if arg == "--":
            break
        name, _, value = arg.lstrip("-").partition("=")
        if name == TF_LOGS_FLAG:
            wanted = value.lower() not in ("false", "0")
        elif name == f"no{TF_LOGS_FLAG}":
            wanted = False
    return wanted


def _import_tensorflow_filtering_stderr():
    """``import tensorflow`` with file descriptor 2 captured; writes back what is not a log record."""
    try:
        capture = tempfile.TemporaryFile()
    except OSError:  # no writable temporary folder: TensorFlow loads later, as it is
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            sys.stderr.write(without_log_records(capture.read().decode(errors="replace")))


def without_log_records(text):
    """``text`` without absl's pre-initialisation banner and the non-fatal C++ log records.

    A record's continuation lines (those up to the next record) go with it;
    fatal (``F``) records and text before the first record are kept.
    """
    kept, keep = [], True
    for line in text.splitlines(keepends=True):
        if line.rstrip("\n") == LOG_BANNER:
            continue
        if _LOG_RECORD.match(line):
            keep = line.startswith("F")
        if keep:
            kept.append(line)
    return "".join(kept)
