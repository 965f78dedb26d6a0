"""Depth evaluation: batching predictors, precomputed predictions, the real KITTI sample, the CLI."""
import csv
import json

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from PIL import Image

from depth_motion_tf import evaluate, ground_truth
from depth_motion_tf.errors import BadInputError
from depth_motion_tf.ground_truth import DepthSample

KITTI_DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"


def ramp_sample(name, height=4, width=6, offset=0):
    """An image whose red channel is a ramp; its GT depth is 2·(red + 1) metres."""
    red = (np.arange(height * width).reshape(height, width) + offset).astype(np.uint8)
    image = np.stack([red, np.zeros_like(red), np.zeros_like(red)], axis=-1)
    return DepthSample(name, image, 2.0 * (red.astype(np.float32) + 1.0))


def red_plus_one(images):
    """A predictor: depth = red + 1, i.e. half the ramp samples' GT."""
    return images[..., 0].astype(np.float32) + 1.0


def test_predictor_exact_up_to_scale_scores_zero_error():
    samples = [ramp_sample("a"), ramp_sample("b", offset=5)]
    result = evaluate.evaluate_depth(red_plus_one, samples)
    assert result.summary["abs_rel"] == pytest.approx(0.0, abs=1e-7)
    assert result.summary["a1"] == 1.0
    assert result.ratios == pytest.approx([2.0, 2.0])
    assert result.names == ["a", "b"]


def test_images_are_batched_by_size():
    seen = []

    def predict(images):
        seen.append(images.shape)
        return red_plus_one(images)

    samples = [ramp_sample(str(i)) for i in range(3)] + [ramp_sample("big", height=5)]
    evaluate.evaluate_depth(predict, samples, batch_size=2)
    assert seen == [(2, 4, 6, 3), (1, 4, 6, 3), (1, 5, 6, 3)]


def test_images_are_resized_to_the_input_size():
    seen = []

    def predict(images):
        seen.append(images.shape)
        return np.ones(images.shape[:3] + (1,), np.float32)  # [B, h, w, 1] is accepted

    evaluate.evaluate_depth(predict, [ramp_sample("a", 8, 12)], input_size=(2, 3))
    assert seen == [(1, 2, 3, 3)]


def test_predictor_with_a_wrong_batch_size_is_a_clear_error():
    with pytest.raises(ValueError, match="for 2 images"):
        evaluate.evaluate_depth(lambda images: red_plus_one(images)[:1], [ramp_sample("a"), ramp_sample("b")])


def test_worst_images_are_kept_worst_first():
    samples = [ramp_sample(n) for n in "abc"]
    # scale image b's prediction non-uniformly so that it is the worst, then a.
    noise = {"a": 1.1, "b": 1.5, "c": 1.0}
    pairs = []
    for s in samples:
        pred = s.depth.copy()
        pred[:, :3] *= noise[s.name]
        pairs.append((s, pred))
    result = evaluate.evaluate_predictions(pairs, num_worst=2)
    assert [w[0].name for w in result.worst] == ["b", "a"]
    assert result.worst[0][3] == pytest.approx(max(e["abs_rel"] for e in result.per_image))


def kitti_benchmark_samples(shared_data, tmp_path):
    split = tmp_path / "test_files.txt"
    split.write_text("".join(f"{KITTI_DRIVE} {i} l\n" for i in range(3)))
    return list(ground_truth.kitti_benchmark_samples(shared_data / "kitti_raw_sample", split))


def test_ground_truth_itself_scores_zero_on_the_kitti_sample(shared_data, tmp_path):
    samples = kitti_benchmark_samples(shared_data, tmp_path)
    # densified (holes filled with 10 m, outside the evaluated pixels) and scaled by 7.3.
    predictions = [np.where(s.depth > 0, s.depth, 10.0) * 7.3 for s in samples]
    result = evaluate.evaluate_predictions(zip(samples, predictions))
    assert result.summary["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert result.summary["rmse"] == pytest.approx(0.0, abs=1e-4)
    assert result.summary["ratio_median"] == pytest.approx(1 / 7.3)


def test_known_perturbation_on_the_kitti_sample(shared_data, tmp_path):
    samples = kitti_benchmark_samples(shared_data, tmp_path)
    expected_abs_rel, expected_a1 = [], []
    predictions = []
    for s in samples:
        pred = np.where(s.depth > 0, s.depth, 10.0) * 7.3
        pred[:, : pred.shape[1] // 2] *= 1.1
        predictions.append(pred)
        # Independently: Garg crop of 375x1242 = rows 153:371, columns 44:1197.
        gt_c, pred_c = s.depth[153:371, 44:1197], pred[153:371, 44:1197]
        valid = (gt_c > 1e-3) & (gt_c < 80)
        g, p = gt_c[valid].astype(np.float64), pred_c[valid]
        p = np.clip(p * np.median(g) / np.median(p), 1e-3, 80)
        expected_abs_rel.append(np.mean(np.abs(g - p) / g))
        expected_a1.append(np.mean(np.maximum(g / p, p / g) < 1.25))
    result = evaluate.evaluate_predictions(zip(samples, predictions))
    assert result.summary["abs_rel"] == pytest.approx(np.mean(expected_abs_rel), rel=1e-6)
    assert result.summary["a1"] == pytest.approx(np.mean(expected_a1))
    # one half is off by exactly 10% relative to the other: abs_rel is between 0 and 0.1.
    assert 0.0 < result.summary["abs_rel"] < 0.1


def test_precomputed_predictions_from_npy_npz_and_folder(tmp_path):
    stack = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4, 1)
    np.save(tmp_path / "pred.npy", stack)
    np.savez(tmp_path / "pred.npz", depth=stack[..., 0])
    (tmp_path / "folder").mkdir()
    for i in range(2):
        np.save(tmp_path / "folder" / f"{i:06d}.npy", stack[i])
    for path in ("pred.npy", "pred.npz", "folder"):
        loaded = evaluate.load_predictions(tmp_path / path, 2)
        np.testing.assert_array_equal(np.squeeze(loaded[1]), stack[1, ..., 0])


def test_prediction_count_mismatch_is_a_clear_error(tmp_path):
    np.save(tmp_path / "pred.npy", np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="pred.npy: 2 predictions for 3 ground-truth images"):
        evaluate.load_predictions(tmp_path / "pred.npy", 3)


def test_non_finite_prediction_names_the_file_and_the_prediction(tmp_path):
    stack = np.ones((2, 3, 4), np.float32)
    stack[1, 0, 0] = np.nan
    np.save(tmp_path / "pred.npy", stack)
    predictions = evaluate.load_predictions(tmp_path / "pred.npy", 2)
    np.testing.assert_array_equal(predictions[0], stack[0])
    with pytest.raises(BadInputError, match="pred.npy: prediction 1 has 1 non-finite"):
        predictions[1]


def test_missing_ground_truth_file_is_an_error_before_anything_is_read(tmp_path):
    write_folder_dataset(tmp_path, count=2)
    (tmp_path / "gt" / "001.npy").unlink()
    with pytest.raises(FileNotFoundError, match="001.*: no depth file for .*001.png"):
        ground_truth.folder_samples(tmp_path / "images", tmp_path / "gt")


class RedPlusOne(tf.Module):
    """A SavedModel whose ``depth`` signature returns red + 1."""

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def depth(self, image):
        return {"depth": tf.cast(image[..., :1], tf.float32) + 1.0}


def test_saved_model_depth_signature_is_evaluated(tmp_path):
    module = RedPlusOne()
    tf.saved_model.save(module, str(tmp_path / "model"), signatures={"depth": module.depth})
    predict = evaluate.saved_model_predict_fn(tmp_path / "model")
    result = evaluate.evaluate_depth(predict, [ramp_sample("a"), ramp_sample("b")])
    assert result.summary["abs_rel"] == pytest.approx(0.0, abs=1e-7)
    assert result.summary["ratio_median"] == pytest.approx(2.0)


def write_folder_dataset(root, count=3):
    """Images with GT depth 1..24 m; predictions = GT/4 with image 0's left half off by 20%."""
    (root / "images").mkdir()
    (root / "gt").mkdir()
    predictions = []
    for i in range(count):
        Image.fromarray(np.full((4, 6, 3), 40 * i, np.uint8)).save(root / "images" / f"{i:03d}.png")
        gt = np.arange(1, 25, dtype=np.float32).reshape(4, 6)
        np.save(root / "gt" / f"{i:03d}.npy", gt)
        pred = gt / 4.0
        if i == 0:
            pred[:, :3] *= 1.2
        predictions.append(pred)
    np.save(root / "pred.npy", np.stack(predictions))


def run_cli(argv):
    flag_values = flags.FlagValues()
    evaluate.define_flags(flag_values)
    flag_values(["evaluate", *argv])
    return evaluate.run(flag_values)


def test_cli_end_to_end_writes_json_csv_and_png(tmp_path, capsys):
    write_folder_dataset(tmp_path)
    out = tmp_path / "out"
    result = run_cli([
        "--dataset=folder", f"--data_dir={tmp_path / 'images'}", f"--gt_dir={tmp_path / 'gt'}",
        f"--predictions={tmp_path / 'pred.npy'}", f"--output_dir={out}", "--per_image", "--num_worst=2",
    ])
    printed = capsys.readouterr().out
    assert "abs_rel |   sq_rel" in printed and "3 images" in printed
    report = json.loads((out / "metrics.json").read_text())
    assert report["results"]["abs_rel"] == pytest.approx(result.summary["abs_rel"])
    assert report["results"]["ratio_median"] == pytest.approx(4.0)
    assert report["config"]["dataset"] == "folder" and report["config"]["num_worst"] == 2
    with open(out / "per_image.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["name", "ratio", "abs_rel"]
    assert [r[0] for r in rows[1:]] == ["000", "001", "002"]
    assert float(rows[2][2]) == pytest.approx(0.0, abs=1e-7) and float(rows[1][2]) > 0.0
    assert (out / "worst.png").stat().st_size > 0


def test_cli_without_median_scaling_uses_the_fixed_scale(tmp_path, capsys):
    write_folder_dataset(tmp_path, count=1)
    np.save(tmp_path / "pred.npy", np.arange(1, 25, dtype=np.float32).reshape(1, 4, 6) / 4.0)
    result = run_cli([
        "--dataset=folder", f"--data_dir={tmp_path / 'images'}", f"--gt_dir={tmp_path / 'gt'}",
        f"--predictions={tmp_path / 'pred.npy'}", f"--output_dir={tmp_path / 'out'}",
        "--no_median_scaling", "--scale=4",
    ])
    assert result.summary["abs_rel"] == pytest.approx(0.0, abs=1e-7)
    assert "median scaling ratios" not in capsys.readouterr().out


def test_cli_needs_exactly_one_prediction_source(tmp_path):
    flag_values = flags.FlagValues()
    evaluate.define_flags(flag_values)
    with pytest.raises(flags.IllegalFlagValueError):
        flag_values(["evaluate", "--dataset=folder", f"--output_dir={tmp_path}"])
