"""The trainer end to end: outputs, TensorBoard tags, kill-and-resume, clear errors."""
import dataclasses
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from depth_motion_tf import config as config_lib
from depth_motion_tf import export
from depth_motion_tf import features as F
from depth_motion_tf import train
from tests import fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEIGHT, WIDTH = 32, 64


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return fixtures.write_dataset(
        tmp_path_factory.mktemp("train_data"),
        {"train": fixtures.moving_texture_triplets(6, HEIGHT, WIDTH)},
    )


def _config(dataset, model_dir, **overrides):
    values = dict(
        data=dataset, model_dir=str(model_dir), height=HEIGHT, width=WIDTH, batch_size=2,
        num_steps=4, checkpoint_every=2, summary_every=2, seed=0, verbose=0, cache=True,
        mixed_precision="off",  # float32 unless a test asks: the same on every CPU
    )
    values.update(overrides)
    return config_lib.TrainConfig(**values)


def _tags(event_dir):
    tags = set()
    for path in glob.glob(os.path.join(event_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    """A 4-step run, in bfloat16 (the default on CPUs with AVX512_BF16)."""
    model_dir = tmp_path_factory.mktemp("run")
    return model_dir, train.train(_config(dataset, model_dir, mixed_precision="mixed_bfloat16"))


def test_training_writes_checkpoints_logs_config_and_saved_model(trained):
    model_dir, result = trained
    assert result["step"] == 4 and np.isfinite(result["loss"])
    assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")).endswith("ckpt-4")
    assert os.path.exists(os.path.join(model_dir, "config.json"))
    loaded = tf.saved_model.load(result["saved_model"])
    depth = loaded.signatures["depth"](image=tf.zeros([1, 40, 50, 3], tf.uint8))["depth"]
    assert depth.shape == (1, 40, 50, 1) and bool(tf.reduce_all(depth > 0))


def test_bfloat16_training_exports_a_float32_saved_model_and_restores_the_policy(trained):
    _, result = trained
    assert keras.mixed_precision.global_policy().name == "float32"
    graph = tf.saved_model.load(result["saved_model"]).signatures["depth"].graph.as_graph_def()
    conv_types = {node.attr["T"].type for f in graph.library.function for node in f.node_def
                  if node.op == "Conv2D"}
    assert conv_types == {tf.float32.as_datatype_enum}


def test_tensorboard_has_losses_scales_intrinsics_and_images(trained):
    model_dir, _ = trained
    tags = _tags(os.path.join(model_dir, "train"))
    for tag in ("loss/total", "loss/rgb", "loss/motion_sparsity", "learning_rate", "bad_steps",
                "motion/rotation_scale", "intrinsics/fx", "frames", "disparity",
                "residual_motion", "depth_proximity_weight"):
        assert tag in tags, tag


def test_rerun_after_completion_resumes_and_does_nothing(dataset, trained):
    model_dir, _ = trained
    result = train.train(_config(dataset, model_dir, export=False))
    assert result["step"] == 4


def _run_cli(args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "depth_motion_tf.train", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, **kwargs,
    )


def test_sigkill_then_same_command_resumes_from_the_last_checkpoint(dataset, tmp_path):
    flagfile = tmp_path / "run.flags"
    flagfile.write_text(
        "\n".join(
            [f"--data={dataset}", f"--model_dir={tmp_path / 'run'}", f"--height={HEIGHT}",
             f"--width={WIDTH}", "--batch_size=2", "--checkpoint_every=2", "--summary_every=2",
             "--seed=0", "--noexport", "--verbose=0", "--mixed_precision=off"]
        )
    )
    checkpoints = tmp_path / "run" / "checkpoints"
    process = _run_cli([f"--flagfile={flagfile}", "--num_steps=1000"])
    deadline = time.time() + 400
    while not glob.glob(str(checkpoints / "ckpt-2.index")) and time.time() < deadline:
        assert process.poll() is None, process.stdout.read()
        time.sleep(1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # Checkpoints are numbered by the optimizer step they hold.
    killed_at = int(tf.train.latest_checkpoint(str(checkpoints)).rsplit("-", 1)[1])
    assert killed_at >= 2
    resumed = _run_cli([f"--flagfile={flagfile}", f"--num_steps={killed_at + 2}"])
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert "Resumed from" in output and f"at step {killed_at}" in output
    assert f"Trained to step {killed_at + 2}" in output


def _free_port():
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # two fresh TensorFlow worker processes: 70-90 s on 2 CPU cores
def test_two_workers_train_together_and_only_the_chief_keeps_outputs(dataset, tmp_path):
    workers = [f"localhost:{_free_port()}" for _ in range(2)]
    run_dir, scratch = tmp_path / "run", tmp_path / "scratch"
    scratch.mkdir()
    args = [f"--data={dataset}", f"--model_dir={run_dir}", f"--height={HEIGHT}", f"--width={WIDTH}",
            "--batch_size=2", "--num_steps=2", "--checkpoint_every=2", "--summary_every=2",
            "--seed=0", "--verbose=0", "--mixed_precision=off"]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(tf_config),
               "TMPDIR": str(scratch)}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "depth_motion_tf.train", *args], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    try:
        outputs = [p.communicate(timeout=600)[0] for p in processes]
    finally:
        for p in processes:
            p.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
        assert "Trained to step 2" in output
    assert "SavedModel:" in outputs[0] and "SavedModel:" not in outputs[1]
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith("ckpt-2")
    assert tf.saved_model.contains_saved_model(str(run_dir / "saved_model"))
    assert not [p for p in scratch.iterdir() if p.name.startswith("depth_motion_worker_")]


def test_encoder_weights_initialise_a_new_run_only(dataset, tmp_path, capsys):
    config = _config(dataset, tmp_path / "run")
    source = config_lib.build_model(config, tf.distribute.get_strategy())
    path = tmp_path / "encoder.npz"
    source.depth_net.save_encoder_weights(str(path))
    keras.utils.set_random_seed(99)
    config = dataclasses.replace(config, encoder_weights=str(path), seed=99)
    new = config_lib.build_model(config, tf.distribute.get_strategy())
    checkpoint = tf.train.Checkpoint(model=new, optimizer=new.optimizer)
    checkpoint_dir = tmp_path / "run" / "checkpoints"
    train.resume_or_initialise(checkpoint, str(checkpoint_dir), str(path))
    assert "Initialised the depth encoder with" in capsys.readouterr().out
    for a, b in zip(source.depth_net.encoder.weights, new.depth_net.encoder.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    config_lib.save_config(config, config.model_dir)
    checkpoint.save(str(checkpoint_dir / "ckpt"))
    path.unlink()  # a run with a checkpoint no longer needs the file: resume and reload without it
    resumed = config_lib.build_model(config, tf.distribute.get_strategy())
    train.resume_or_initialise(tf.train.Checkpoint(model=resumed, optimizer=resumed.optimizer),
                               str(checkpoint_dir), str(path))
    assert "Resumed from" in capsys.readouterr().out
    export.load_model(config.model_dir)


def test_stop_on_bad_steps_raises_a_clear_error():
    class Fake:
        consecutive_bad_steps = tf.Variable(3, dtype=tf.int64)

    callback = train.StopOnBadSteps(limit=3)
    callback.set_model(Fake())
    with pytest.raises(RuntimeError, match="3 consecutive training steps"):
        callback.on_train_batch_end(0)


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (dict(data="/nonexistent/data"), FileNotFoundError, "/nonexistent/data"),
        (dict(batch_size=8), ValueError, "fewer than --batch_size=8"),
        (dict(height=40), ValueError, "multiples of 32"),
    ],
)
def test_bad_configurations_fail_with_clear_errors(dataset, tmp_path, overrides, error, message):
    with pytest.raises(error, match=message):
        train.train(_config(dataset, tmp_path, **overrides))


def test_use_mask_without_masks_and_unknown_intrinsics_are_rejected(tmp_path):
    examples = fixtures.moving_texture_triplets(3, HEIGHT, WIDTH)
    for example in examples:
        example["intrinsics_known"] = False
    data_dir = fixtures.write_dataset(tmp_path / "d", {"train": examples}, with_mask=False)
    with pytest.raises(ValueError, match="needs foreground masks"):
        train.train(_config(data_dir, tmp_path / "a", use_mask=True))
    with pytest.raises(ValueError, match="intrinsics are unknown"):
        train.train(_config(data_dir, tmp_path / "b"))


def test_depth_supervision_trains_on_the_datas_ground_truth_depth_and_needs_it(dataset, tmp_path):
    examples = fixtures.moving_texture_triplets(3, HEIGHT, WIDTH)
    for example in examples:
        example[F.DEPTH] = F.encode_depth(np.full([3, HEIGHT, WIDTH, 1], 4.0))
    with_depth = fixtures.write_dataset(tmp_path / "d", {"train": examples}, with_depth=True)
    weights = dataclasses.replace(config_lib.LossWeights(), depth_supervision=1.0)
    result = train.train(_config(with_depth, tmp_path / "a", loss_weights=weights, num_steps=2,
                                 checkpoint_every=2))
    assert result["step"] == 2 and np.isfinite(result["loss"])
    assert "loss/depth_supervision" in _tags(str(tmp_path / "a" / "train"))
    with pytest.raises(ValueError, match="--depth_supervision_weight needs ground-truth depth"):
        train.train(_config(dataset, tmp_path / "b", loss_weights=weights))


def test_depth_evaluator_predicts_once_per_optimizer_step(monkeypatch):
    """The end-of-run report reuses the last checkpoint's evaluation; a new step predicts again."""
    from depth_motion_tf import ground_truth
    from tests.test_evaluate import ramp_sample, red_plus_one

    calls = []
    monkeypatch.setattr(ground_truth, "tfds_samples", lambda *_: [ramp_sample("a"), ramp_sample("b", offset=5)])
    monkeypatch.setattr(export, "keras_depth_predictor",
                        lambda *_: lambda images: calls.append(len(images)) or red_plus_one(images))
    step = tf.Variable(0, dtype=tf.int64)
    model = type("Model", (), {"optimizer": type("Optimizer", (), {"iterations": step})})
    config = _config("unused", "unused", eval_data="unused", eval_split="test")
    evaluate_depth = train.depth_evaluator(model, config)
    first = evaluate_depth()
    assert evaluate_depth() == first and len(calls) == 1
    step.assign(10)
    assert evaluate_depth()["abs_rel"] == pytest.approx(0.0, abs=1e-7) and len(calls) == 2


def test_field_size_is_the_mean_field_over_its_pairs_translation_by_region():
    magnitude = np.zeros((3, 2, 2), np.float32)
    magnitude[0] = [[0.5, 0.1], [0.1, 0.1]]  # |t| = 1: 50% on the object, 10% elsewhere
    magnitude[1] = [[0.4, 0.0], [0.0, 0.0]]  # |t| = 2: 20% on the object, 0% elsewhere
    magnitude[2] = 7.0  # |t| = 0: left out
    inside = np.zeros((3, 2, 2), bool)
    inside[:, 0, 0] = True
    size = train._field_size(magnitude, np.array([1.0, 2.0, 0.0]), inside)
    assert size["moving"] == pytest.approx(0.35) and size["static"] == pytest.approx(0.05)
    assert train._field_size(magnitude, np.ones(3), np.zeros_like(inside))["moving"] is None


def test_cli_reports_depth_ego_motion_field_and_learning_curve(tmp_path):
    """The quickstart's printout, on a tiny generated dataset with depth, poses and masks."""
    subprocess.run(
        [sys.executable, "-m", "data_prep.synthetic", f"--output={tmp_path}", "--height=32",
         "--width=64", "--train_videos=2", "--test_videos=1", "--frames_per_video=8", "--seed=0"],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )
    (data_dir,) = glob.glob(str(tmp_path / "synthetic" / "*" / "1.0.0"))
    run_dir = tmp_path / "run"
    process = _run_cli([
        f"--data={data_dir}", f"--eval_data={data_dir}", f"--model_dir={run_dir}", "--height=32",
        "--width=64", "--batch_size=2", "--num_steps=2", "--checkpoint_every=1", "--seed=0",
        "--noexport", "--verbose=0", "--field_burnin_steps=2", "--keep_checkpoints=1",
    ])
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    for line in ("constant depth (the floor)", "before training", "after training",
                 "Ego-motion 1→2 against the ground-truth poses: translation direction cosine",
                 "Ego-motion 2→1", "5-frame ATE:", "% of its magnitude inside the dilated moving-object masks",
                 "Residual motion field over the camera translation: ",
                 "Depth abs_rel on the moving objects: ",
                 f"Learning curve (test abs_rel against step): {run_dir}/learning_curve.png",
                 "on disk in"):
        assert line in output, (line, output)
    points = json.loads((run_dir / "learning_curve.json").read_text())
    assert [step for step, _ in points] == [1, 2]
    assert (run_dir / "learning_curve.png").stat().st_size > 1000
    assert len(glob.glob(str(run_dir / "checkpoints" / "ckpt-*.index"))) == 1

