"""Bad input on the command line: one ``error: <file or flag>: <problem>`` line, exit status 1.

Each case runs its CLI in a subprocess, as a user would (about 5 s each: a
TensorFlow import). The subprocesses get no ``TF_CPP_MIN_LOG_LEVEL``, so that
the CLIs' own quieting of TensorFlow's start-up log is what keeps stderr to
the one line; the inputs are rejected before any model is built. In process:
the wrapper's rules, the start-up log filter, the disk sizes of summary lines.
"""
import ctypes
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from absl import app
from PIL import Image

from depth_motion_tf import cli
from depth_motion_tf import config as config_lib
from depth_motion_tf.errors import BadInputError

ROOT = pathlib.Path(__file__).resolve().parents[1]
# What TensorFlow prints at start-up without the quieting (oneDNN and CPU
# notices while it loads, cuInit once it looks for a GPU that is not there).
STARTUP_LOG = re.compile(r"cuInit|oneDNN|cpu_feature_guard")
PROGRESS_BAR = re.compile(r"^\s*\d+%\|")
# Linux capabilities that let root ignore file permissions (linux/capability.h).
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 1, 2, 3
PR_CAPBSET_DROP = 24


def run_cli(module, *args, preexec_fn=None):
    """Runs ``python -m module args`` from the repository root; returns the CompletedProcess."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300, preexec_fn=preexec_fn,
    )


def error_line(result):
    """The one line a CLI printed on rejecting its input (progress-bar frames aside)."""
    lines = [line for line in result.stderr.splitlines()
             if line.strip() and not PROGRESS_BAR.match(line)]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder dataset: ``images/{a,b}.png``, ground truth ``gt/`` (both) and ``gt_partial/`` (a only)."""
    root = tmp_path_factory.mktemp("cli_inputs")
    for name in ("images", "gt", "gt_partial"):
        (root / name).mkdir()
    depth = np.arange(1, 25, dtype=np.float32).reshape(4, 6)
    for stem in "ab":
        Image.fromarray(np.full((4, 6, 3), 60, np.uint8)).save(root / "images" / f"{stem}.png")
        np.save(root / "gt" / f"{stem}.npy", depth)
    np.save(root / "gt_partial" / "a.npy", depth)
    return root


def evaluate_folder(folder, gt, predictions):
    return run_cli(
        "depth_motion_tf.evaluate", "--dataset=folder", f"--data_dir={folder / 'images'}",
        f"--gt_dir={folder / gt}", f"--predictions={predictions}", f"--output_dir={folder / 'out'}",
    )


# ---------------------------------------------------------------- train -----


def test_train_with_batch_size_zero(tmp_path):
    result = run_cli("depth_motion_tf.train", f"--data={tmp_path}", f"--model_dir={tmp_path / 'run'}",
                     "--batch_size=0")
    assert error_line(result) == "error: --batch_size=0: must be at least 1"


def test_train_with_data_that_does_not_exist(tmp_path):
    missing = tmp_path / "no_such_data"
    result = run_cli("depth_motion_tf.train", f"--data={missing}", f"--model_dir={tmp_path / 'run'}")
    assert error_line(result) == f"error: --data={missing}: no such file or folder"


def test_train_with_a_height_not_a_multiple_of_32(tmp_path):
    result = run_cli("depth_motion_tf.train", f"--data={tmp_path}", f"--model_dir={tmp_path / 'run'}",
                     "--height=100")
    assert error_line(result) == "error: --height and --width must be multiples of 32, got 100x416"


def test_train_with_steps_not_a_multiple_of_the_checkpoint_interval(tmp_path):
    result = run_cli("depth_motion_tf.train", f"--data={tmp_path}", f"--model_dir={tmp_path / 'run'}",
                     "--num_steps=1100", "--checkpoint_every=150")
    assert error_line(result) == (
        "error: --num_steps=1100 must be a multiple of --checkpoint_every=150 "
        "(training runs whole epochs of that many steps)"
    )


# ---------------------------------------------------------------- evaluate --


def test_evaluate_with_more_predictions_than_images(folder):
    np.save(folder / "three.npy", np.ones((3, 4, 6), np.float32))
    result = evaluate_folder(folder, "gt", folder / "three.npy")
    assert error_line(result) == f"error: {folder / 'three.npy'}: 3 predictions for 2 ground-truth images"


def test_evaluate_with_a_nan_in_a_prediction(folder):
    predictions = np.ones((2, 4, 6), np.float32)
    predictions[1, 2, 3] = np.nan
    np.save(folder / "nan.npy", predictions)
    result = evaluate_folder(folder, "gt", folder / "nan.npy")
    assert error_line(result) == (
        f"error: {folder / 'nan.npy'}: prediction 1 has 1 non-finite (NaN/inf) values"
    )


def test_evaluate_with_a_missing_ground_truth_file(folder):
    np.save(folder / "two.npy", np.ones((2, 4, 6), np.float32))
    result = evaluate_folder(folder, "gt_partial", folder / "two.npy")
    assert error_line(result) == (
        f"error: {folder / 'gt_partial' / 'b.*'}: no depth file for {folder / 'images' / 'b.png'}"
    )


# ---------------------------------------------------------------- export, predict


def test_export_of_a_run_without_checkpoints(tmp_path):
    config_lib.save_config(config_lib.TrainConfig(data="unused", model_dir=str(tmp_path)), str(tmp_path))
    result = run_cli("depth_motion_tf.export", f"--model_dir={tmp_path}")
    assert error_line(result) == f"error: {tmp_path}/checkpoints: no checkpoint found"


def test_predict_with_an_empty_saved_model_folder(folder, tmp_path):
    result = run_cli("depth_motion_tf.predict", f"--input={folder / 'images'}",
                     f"--saved_model={tmp_path}", f"--output_dir={tmp_path / 'out'}")
    assert error_line(result) == f"error: {tmp_path}: not a SavedModel folder (no saved_model.pb)"


def test_predict_with_an_invalid_saved_model(folder, tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"not a protocol buffer")
    result = run_cli("depth_motion_tf.predict", f"--input={folder / 'images'}",
                     f"--saved_model={tmp_path}", f"--output_dir={tmp_path / 'out'}")
    assert error_line(result).startswith(f"error: {tmp_path}: cannot be loaded as a SavedModel: ")


# ---------------------------------------------------------------- converters


def test_video_converter_with_an_intrinsics_file_that_is_not_json(folder, tmp_path):
    (tmp_path / "k.json").write_text("fx=500 fy=500")
    result = run_cli("data_prep.video", f"--input={folder / 'images'}", f"--output={tmp_path / 'out'}",
                     f"--intrinsics={tmp_path / 'k.json'}")
    assert error_line(result).startswith(f"error: {tmp_path / 'k.json'}: cannot be read as JSON: ")


def test_video_converter_with_intrinsics_of_the_wrong_keys(folder, tmp_path):
    (tmp_path / "k.json").write_text('{"focal": 500, "centre": [320, 240]}')
    result = run_cli("data_prep.video", f"--input={folder / 'images'}", f"--output={tmp_path / 'out'}",
                     f"--intrinsics={tmp_path / 'k.json'}")
    assert error_line(result).startswith(
        f"error: {tmp_path / 'k.json'}: holds no intrinsics of a known format"
    )


def drop_root_file_permissions():
    """``preexec_fn``: the child of a root process loses root's right to ignore file permissions.

    Switching to ``nobody`` would not do: the interpreter lives under ``/root``
    (mode 0700) here. Root without these capabilities still reads what root
    owns, but cannot write into a folder owned by ``nobody`` with mode 0555.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def unwritable_folder(path):
    """``(folder, preexec_fn)``: a folder the subprocess started with ``preexec_fn`` cannot write."""
    path.mkdir()
    preexec_fn = None
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
        preexec_fn = drop_root_file_permissions
    path.chmod(0o555)
    probe = [sys.executable, "-c", f"open({str(path / 'probe')!r}, 'w')"]
    try:
        if subprocess.run(probe, preexec_fn=preexec_fn, capture_output=True).returncode == 0:
            pytest.skip(f"{path} stays writable (no way to drop file permissions here)")
    except subprocess.SubprocessError:
        pytest.skip("cannot drop root's file-permission capabilities here")
    return path, preexec_fn


def test_converter_with_an_output_folder_it_cannot_write(folder, tmp_path):
    readonly, preexec_fn = unwritable_folder(tmp_path / "readonly")
    result = run_cli("data_prep.video", f"--input={folder / 'images'}", f"--output={readonly / 'data'}",
                     preexec_fn=preexec_fn)
    line = error_line(result)
    assert line.startswith(f"error: {readonly}") and line.endswith("Permission denied"), line


# ---------------------------------------------------------------- TensorFlow's log


def test_help_prints_no_tensorflow_start_up_log():
    result = run_cli("depth_motion_tf.export", "--helpshort")
    assert "--model_dir" in result.stdout
    assert not STARTUP_LOG.search(result.stderr), result.stderr


def test_tf_logs_shows_what_a_library_import_shows():
    library = subprocess.run(
        [sys.executable, "-c", "import depth_motion_tf.export"], cwd=ROOT, capture_output=True,
        text=True, timeout=300, env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
    )
    shown = set(STARTUP_LOG.findall(library.stderr))
    if not shown:
        pytest.skip("TensorFlow prints no start-up log on this machine")
    result = run_cli("depth_motion_tf.export", "--helpshort", "--tf_logs")
    assert "--model_dir" in result.stdout
    assert shown <= set(STARTUP_LOG.findall(result.stderr)), result.stderr


# ---------------------------------------------------------------- in process


def test_reported_errors_are_one_line_with_status_1(capsys):
    def main(argv):
        raise BadInputError("clip.json", "holds no intrinsics\nof a known format")

    with pytest.raises(SystemExit) as exit_info:
        cli.reporting_errors(main)([])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "error: clip.json: holds no intrinsics of a known format\n"


def test_os_errors_name_their_file():
    error = PermissionError(13, "Permission denied", "/data/out")
    assert cli.error_message(error) == "/data/out: Permission denied"
    assert cli.error_message(app.UsageError("--batch_size=0: must be at least 1")) == (
        "--batch_size=0: must be at least 1"
    )


def test_unexpected_errors_keep_their_traceback():
    def main(argv):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        cli.reporting_errors(main)([])


def test_log_filter_drops_records_with_their_continuations_and_keeps_the_rest():
    text = (
        "a Python warning\n"
        f"{cli.LOG_BANNER}\n"
        "I0000 00:00:1796154628.332200    4870 cpu_feature_guard.cc:227] This TensorFlow binary\n"
        "To enable the following instructions: AVX2\n"
        "E0000 00:00:1796154630.435804    4870 cuda_platform.cc:52] failed call to cuInit\n"
        "F0000 00:00:1796154630.435804    4870 main.cc:1] Check failed: x\n"
    )
    assert cli.without_log_records(text) == (
        "a Python warning\nF0000 00:00:1796154630.435804    4870 main.cc:1] Check failed: x\n"
    )


@pytest.mark.parametrize("args, wanted", [
    ([], False), (["--tf_logs"], True), (["--tf_logs=false"], False), (["-tf_logs"], True),
    (["--tf_logs", "--notf_logs"], False), (["--", "--tf_logs"], False),
])
def test_tf_logs_flag_is_read_from_the_command_line(args, wanted):
    assert cli.tf_logs_wanted(["--model_dir=x", *args]) is wanted


def test_disk_size_sums_every_file_under_a_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"x" * 1500)
    (tmp_path / "sub" / "b.bin").write_bytes(b"x" * 700)
    assert cli.disk_size(str(tmp_path)) == "2.2 kB"
    assert cli.disk_size(str(tmp_path / "a.bin")) == "1.5 kB"
    assert (cli.format_size(999), cli.format_size(673_240_000)) == ("999 B", "673.2 MB")
