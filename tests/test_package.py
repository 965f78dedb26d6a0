"""What importing the package sets up before TensorFlow loads."""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ONEDNN_STATE = (
    "import depth_motion_tf, tensorflow; "
    "from tensorflow.python.util import _pywrap_util_port as port; print(port.IsMklEnabled())"
)


def _onednn_enabled(setting):
    """Whether TensorFlow's oneDNN kernels are on after ``import depth_motion_tf``, in a new process.

    ``setting``: the ``TF_ENABLE_ONEDNN_OPTS`` the process starts with, or None for none.
    """
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    result = subprocess.run([sys.executable, "-c", ONEDNN_STATE], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[-1] == "True"


@pytest.mark.parametrize("setting, enabled", [(None, True), ("1", True), ("0", False)])
def test_onednn_is_on_unless_the_environment_turns_it_off(setting, enabled):
    assert _onednn_enabled(setting) is enabled
