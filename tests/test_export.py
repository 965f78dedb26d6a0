"""SavedModel / TFLite export: signatures checked in a fresh process against the Keras model."""
import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import app, flags
from PIL import Image

from depth_motion_tf import config as config_lib
from depth_motion_tf import evaluate, export

HEIGHT, WIDTH = 64, 96
ODD_SIZE = (50, 70)  # an input size unlike the model's

# Runs in a fresh interpreter with no project import: loads the SavedModel and
# applies every signature to the inputs saved as .npy, saving the outputs.
FRESH_PROCESS_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    saved_model, folder = sys.argv[1], sys.argv[2]
    loaded = tf.saved_model.load(saved_model)
    for name in ("image", "image1", "image2", "constant"):
        globals()[name] = tf.constant(np.load(f"{folder}/{name}.npy"))
    runs = {
        "depth": loaded.signatures["depth"](image=image),
        "default": loaded.signatures["serving_default"](image=image),
        "motion": loaded.signatures["motion"](image1=image1, image2=image2),
        "constant_depth": loaded.signatures["depth"](image=constant),
        "constant_motion": loaded.signatures["motion"](image1=constant, image2=constant),
    }
    for run, outputs in runs.items():
        for key, value in outputs.items():
            np.save(f"{folder}/{run}.{key}.npy", value.numpy())
    """
)


def make_run_dir(path, intrinsics="learned"):
    """A training-run folder (config.json + one checkpoint) of an untrained small model.

    Args:
        intrinsics: its ``--intrinsics`` mode (learned: the ``motion`` signature has intrinsics).
    Returns:
        ``(model, model_dir)``; the checkpoint holds ``model``'s weights.
    """
    config = config_lib.TrainConfig(
        data="unused", model_dir=str(path), height=HEIGHT, width=WIDTH, intrinsics=intrinsics
    )
    model = config_lib.build_model(config, tf.distribute.get_strategy())
    config_lib.save_config(config, config.model_dir)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    tf.train.CheckpointManager(checkpoint, str(path / "checkpoints"), 1).save()
    return model, str(path)


def saved_variable_shapes(path):
    """Sorted shapes of the variables a SavedModel stores (its checkpoint, less the object graph)."""
    entries = tf.train.list_variables(os.path.join(path, "variables", "variables"))
    return sorted(tuple(shape) for key, shape in entries if key != "_CHECKPOINTABLE_OBJECT_GRAPH")


def shapes_of(variables):
    return sorted(tuple(v.shape) for v in variables)


def run_export_cli(argv):
    flag_values = flags.FlagValues()
    export.define_flags(flag_values)
    flag_values(["export", *argv])
    return export.run(flag_values)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The export CLI (with --tflite) run on a fresh run folder; returns a dict of paths and the model."""
    root = tmp_path_factory.mktemp("export")
    model, model_dir = make_run_dir(root / "run")
    paths = run_export_cli([f"--model_dir={model_dir}", f"--output={root / 'exported'}", "--tflite"])
    return {"model": model, "model_dir": model_dir, "root": root, "paths": paths}


@pytest.fixture(scope="module")
def fresh_outputs(exported):
    """Inputs and every signature's outputs computed by a fresh Python process."""
    folder = exported["root"] / "io"
    folder.mkdir()
    rng = np.random.default_rng(0)
    inputs = {
        "image": rng.integers(0, 256, (2, HEIGHT, WIDTH, 3), dtype=np.uint8),
        "image1": rng.integers(0, 256, (2, HEIGHT, WIDTH, 3), dtype=np.uint8),
        "image2": rng.integers(0, 256, (2, HEIGHT, WIDTH, 3), dtype=np.uint8),
        "constant": np.full((1, *ODD_SIZE, 3), 90, np.uint8),
    }
    for name, value in inputs.items():
        np.save(folder / f"{name}.npy", value)
    subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_SCRIPT, exported["paths"][0], str(folder)],
        check=True, cwd=str(exported["root"]), timeout=300,
    )
    outputs = {p.name[: -len(".npy")]: np.load(p) for p in folder.glob("*.*.npy")}
    return inputs, outputs


def as_float(images):
    return tf.constant(images, tf.float32) / 255.0


def test_depth_signature_in_a_fresh_process_matches_the_keras_model(exported, fresh_outputs):
    inputs, outputs = fresh_outputs
    expected = exported["model"](as_float(inputs["image"])).numpy()
    np.testing.assert_allclose(outputs["depth.depth"], expected, rtol=1e-4, atol=1e-6)


def test_motion_signature_in_a_fresh_process_matches_the_keras_model(exported, fresh_outputs):
    inputs, outputs = fresh_outputs
    model = exported["model"]
    expected = model.predict_motion(
        as_float(inputs["image1"]), as_float(inputs["image2"]), step=export.checkpoint_step(model)
    )
    for key in ("rotation", "translation", "residual_translation", "intrinsics"):
        np.testing.assert_allclose(
            outputs[f"motion.{key}"], expected[key].numpy(), rtol=1e-4, atol=1e-6, err_msg=key
        )
    assert outputs["motion.residual_translation"].shape == (2, HEIGHT, WIDTH, 3)


def test_serving_default_is_the_depth_signature(fresh_outputs):
    _, outputs = fresh_outputs
    np.testing.assert_array_equal(outputs["default.depth"], outputs["depth.depth"])


def test_any_input_size_gives_depth_at_that_size(exported, fresh_outputs):
    _, outputs = fresh_outputs
    # A constant image is the same constant at the model's resolution.
    at_model_size = exported["model"](tf.fill([1, HEIGHT, WIDTH, 3], 90 / 255))
    expected = tf.image.resize(at_model_size, ODD_SIZE, method="bilinear").numpy()
    assert outputs["constant_depth.depth"].shape == (1, *ODD_SIZE, 1)
    np.testing.assert_allclose(outputs["constant_depth.depth"], expected, rtol=1e-4, atol=1e-6)


def test_intrinsics_are_in_pixels_of_the_input_size(exported, fresh_outputs):
    _, outputs = fresh_outputs
    constant = tf.fill([1, HEIGHT, WIDTH, 3], 90 / 255)
    k = exported["model"].predict_motion(constant, constant)["intrinsics"].numpy()[0]
    sx, sy = ODD_SIZE[1] / WIDTH, ODD_SIZE[0] / HEIGHT
    expected = np.diag([sx, sy, 1.0]) @ k
    np.testing.assert_allclose(outputs["constant_motion.intrinsics"][0], expected, rtol=1e-4)


def test_motion_signature_has_intrinsics_only_when_they_were_learned(tmp_path, trained_per_video):
    _, model_dir = make_run_dir(tmp_path / "given", intrinsics="given")
    given = run_export_cli([f"--model_dir={model_dir}", f"--output={tmp_path / 'exported'}"])[0]
    frame = tf.zeros([1, HEIGHT, WIDTH, 3], tf.uint8)
    for path in (given, trained_per_video[1]):
        outputs = tf.saved_model.load(path).signatures["motion"](image1=frame, image2=frame)
        assert sorted(outputs) == ["residual_translation", "rotation", "translation"]


def test_export_before_the_burn_in_ends_predicts_no_residual_field(exported, fresh_outputs):
    _, outputs = fresh_outputs
    assert export.checkpoint_step(exported["model"]) == 0  # the field starts at 10k of 20k steps
    assert not np.any(outputs["motion.residual_translation"])


def test_export_cli_writes_the_saved_model_and_tflite_inside_it(exported):
    saved_model, tflite = exported["paths"]
    assert saved_model == str(exported["root"] / "exported")
    assert tflite == str(exported["root"] / "exported" / export.TFLITE_FILE)
    assert tf.saved_model.contains_saved_model(saved_model)


def test_saved_model_stores_the_two_networks_and_no_optimizer(exported):
    model = exported["model"]
    networks = model.depth_net.weights + model.motion_net.weights
    assert len(saved_variable_shapes(exported["paths"][0])) == len(networks) == 154
    assert saved_variable_shapes(exported["paths"][0]) == shapes_of(networks)


def test_depth_only_export_stores_the_depth_network_alone(exported):
    output = exported["root"] / "depth_only"
    (path,) = run_export_cli([f"--model_dir={exported['model_dir']}", f"--output={output}",
                              "--signatures=depth"])
    depth_net = exported["model"].depth_net
    assert len(saved_variable_shapes(path)) == len(depth_net.weights) == 76
    assert saved_variable_shapes(path) == shapes_of(depth_net.weights)
    assert sorted(tf.saved_model.load(path).signatures) == ["depth", "serving_default"]


def test_unknown_signature_flag_is_a_usage_error(exported):
    with pytest.raises(app.UsageError, match="--signatures=depth,pose"):
        run_export_cli([f"--model_dir={exported['model_dir']}", "--signatures=depth,pose"])


@pytest.fixture(scope="module")
def trained_per_video(tmp_path_factory):
    """``(model, saved_model)``: a per-video-intrinsics model with the field from a second network
    (``--field_network=separate``) at step 1e6 (burn-in over), exported."""
    root = tmp_path_factory.mktemp("per_video")
    config = config_lib.TrainConfig(data="unused", model_dir=str(root), height=HEIGHT, width=WIDTH,
                                     intrinsics="learned_per_video", num_videos=3,
                                     field_network="separate")
    model = config_lib.build_model(config, tf.distribute.get_strategy())
    model.optimizer.iterations.assign(1_000_000)
    return model, export.export_saved_model(model, str(root / "saved_model"))


def test_per_video_intrinsics_table_and_field_net_are_stored_with_the_networks(trained_per_video):
    model, path = trained_per_video
    networks = model.depth_net.weights + model.motion_net.weights + model.field_net.weights
    stored = networks + [model.video_intrinsics]
    assert saved_variable_shapes(path) == shapes_of(stored)


def test_export_after_the_burn_in_predicts_the_full_residual_field(trained_per_video):
    model, path = trained_per_video
    rng = np.random.default_rng(2)
    image1, image2 = (rng.integers(0, 256, (1, HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in "12")
    field = tf.saved_model.load(path).signatures["motion"](
        image1=tf.constant(image1), image2=tf.constant(image2)
    )["residual_translation"].numpy()
    expected = model.predict_motion(as_float(image1), as_float(image2))["residual_translation"]
    assert np.any(field)
    np.testing.assert_allclose(field, expected.numpy(), rtol=1e-4, atol=1e-7)


def test_tflite_depth_matches_the_keras_model(exported):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_path=exported["paths"][1])
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    (output_detail,) = interpreter.get_output_details()
    assert list(input_detail["shape"]) == [1, HEIGHT, WIDTH, 3] and input_detail["dtype"] == np.uint8
    image = np.random.default_rng(1).integers(0, 256, (1, HEIGHT, WIDTH, 3), dtype=np.uint8)
    interpreter.set_tensor(input_detail["index"], image)
    interpreter.invoke()
    expected = exported["model"](as_float(image)).numpy()
    np.testing.assert_allclose(interpreter.get_tensor(output_detail["index"]), expected, rtol=1e-4, atol=1e-6)


def test_xla_export_gives_the_same_depth_and_marks_the_network_for_xla(exported, fresh_outputs):
    inputs, outputs = fresh_outputs
    path = export.export_saved_model(exported["model"], str(exported["root"] / "xla"), jit_compile=True)
    graph = open(f"{path}/saved_model.pb", "rb").read()
    assert b"_XlaMustCompile" in graph
    depth = tf.saved_model.load(path).signatures["depth"](image=tf.constant(inputs["image"]))["depth"]
    np.testing.assert_allclose(depth.numpy(), outputs["depth.depth"], rtol=1e-4, atol=1e-6)


def test_run_folder_without_a_checkpoint_is_a_clear_error(tmp_path):
    config_lib.save_config(config_lib.TrainConfig(data="unused", model_dir=str(tmp_path)), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no checkpoint found"):
        export.load_model(str(tmp_path))


def test_evaluate_cli_scores_a_run_folder_checkpoint(exported, tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "gt").mkdir()
    Image.fromarray(np.full((HEIGHT, WIDTH, 3), 120, np.uint8)).save(tmp_path / "images" / "a.png")
    # Ground truth = the model's own depth: zero error after median scaling.
    depth = exported["model"](tf.fill([1, HEIGHT, WIDTH, 3], 120 / 255)).numpy()[0, ..., 0]
    np.save(tmp_path / "gt" / "a.npy", depth * 10.0)
    flag_values = flags.FlagValues()
    evaluate.define_flags(flag_values)
    flag_values([
        "evaluate", "--dataset=folder", f"--data_dir={tmp_path / 'images'}",
        f"--gt_dir={tmp_path / 'gt'}", f"--model_dir={exported['model_dir']}",
        f"--output_dir={tmp_path / 'out'}",
    ])
    result = evaluate.run(flag_values)
    assert result.summary["abs_rel"] == pytest.approx(0.0, abs=1e-5)
    assert result.summary["ratio_median"] == pytest.approx(10.0, rel=1e-5)


def test_bfloat16_export_computes_in_bfloat16_within_one_percent(exported):
    output = exported["root"] / "bfloat16"
    run_export_cli([f"--model_dir={exported['model_dir']}", f"--output={output}", "--precision=bfloat16",
                    "--signatures=depth"])
    graph = tf.saved_model.load(str(output)).signatures["depth"].graph.as_graph_def()
    assert any(node.op == "Conv2D" and node.attr["T"].type == tf.bfloat16 for f in graph.library.function
               for node in f.node_def)
    image = np.random.default_rng(3).integers(0, 256, (2, HEIGHT, WIDTH, 3), dtype=np.uint8)
    depth = tf.saved_model.load(str(output)).signatures["depth"](image=tf.constant(image))["depth"].numpy()
    expected = exported["model"](as_float(image)).numpy()
    assert depth.dtype == np.float32 and not np.array_equal(depth, expected)
    np.testing.assert_allclose(depth, expected, rtol=1e-2)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the export
