"""KITTI raw converter on the real sample (drive 0001, frames 0-2, both colour cameras)."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_prep import kitti
from data_prep.builder import build
from depth_motion_tf.errors import BadInputError

DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"


def _p_rect(calib_path, camera):
    """(fx, fy, cx, cy) of P_rect_0X read directly from the calibration text."""
    for line in pathlib.Path(calib_path).read_text().splitlines():
        if line.startswith(f"P_rect_{camera}:"):
            p = [float(v) for v in line.split()[1:]]
            return np.array([p[0], p[5], p[2], p[6]])
    raise AssertionError("no P_rect in calibration")


def _examples(builder, split="train"):
    return list(tfds.as_numpy(builder.as_dataset(split=split)))


def _build(input_dir, tmp_path, split=None, split_dir=None, **config):
    return build(
        kitti.KittiTriplets, kitti.kitti_config(split=split, **config), input_dir,
        tmp_path / "out", split_dir=split_dir, workers=2,
    ).builder


def _run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "data_prep.kitti", *args],
        capture_output=True, text=True, cwd=pathlib.Path(__file__).parents[1],
    )


@pytest.fixture
def sample(shared_data):
    return shared_data / "kitti_raw_sample"


@pytest.fixture
def converted(sample, shared_data, tmp_path):
    builder = _build(sample, tmp_path, split_dir=shared_data / "splits" / "kitti")
    return builder, _examples(builder)


def test_sample_gives_one_triplet_per_camera(converted):
    builder, examples = converted
    assert builder.info.splits["train"].num_examples == 2
    assert len(examples) == 2


def test_frames_are_stored_at_416x128(converted):
    for example in converted[1]:
        assert example["rgb"].shape == (3, 128, 416, 3)


def test_intrinsics_are_p_rect_scaled_to_416x128(converted, sample):
    calib = sample / "2011_09_26" / "calib_cam_to_cam.txt"
    scale = np.array([416 / 1242, 128 / 375, 416 / 1242, 128 / 375])
    for example in converted[1]:
        camera = example["video_id"].decode()[-2:]
        np.testing.assert_allclose(example["intrinsics"], _p_rect(calib, camera) * scale,
                                   rtol=1e-6)
        assert example["intrinsics_known"]


def test_left_and_right_cameras_are_separate_videos(converted):
    ids = sorted(e["video_id"].decode() for e in converted[1])
    assert ids == ["2011_09_26_drive_0001_sync_image_02", "2011_09_26_drive_0001_sync_image_03"]
    for example in converted[1]:
        assert [f.decode() for f in example["frame_ids"]] == [
            "0000000000", "0000000001", "0000000002"]


def test_split_list_keeps_only_listed_centres(sample, tmp_path):
    split_dir = tmp_path / "splits"
    (split_dir / "mine").mkdir(parents=True)
    (split_dir / "mine" / "train_files.txt").write_text(f"{DRIVE} 1 l\n")
    builder = _build(sample, tmp_path, split="mine", split_dir=split_dir)
    examples = _examples(builder)
    assert [e["video_id"].decode()[-8:] for e in examples] == ["image_02"]


def test_eigen_test_drives_never_enter_training(sample, tmp_path):
    split_dir = tmp_path / "splits"
    (split_dir / "eigen").mkdir(parents=True)
    (split_dir / "eigen" / "test_files.txt").write_text(f"{DRIVE} 0000000001 l\n")
    with pytest.raises(BadInputError, match="no input"):
        _build(sample, tmp_path, split_dir=split_dir)


def test_nonexistent_split_entry_names_the_list_file(sample, tmp_path):
    split_dir = tmp_path / "splits"
    (split_dir / "mine").mkdir(parents=True)
    listing = split_dir / "mine" / "train_files.txt"
    listing.write_text(f"{DRIVE} 1 l\n{DRIVE} 7 r\n")
    with pytest.raises(BadInputError, match=r"train_files.txt.*drive_0001_sync 7 image_03.*0000000006.png"):
        _build(sample, tmp_path, split="mine", split_dir=split_dir)
    assert not list((tmp_path / "out").rglob("dataset_info.json"))


def test_missing_calibration_names_the_file(sample, tmp_path):
    raw = tmp_path / "raw" / "2011_09_26"
    raw.mkdir(parents=True)
    os.symlink(sample / DRIVE, raw / "2011_09_26_drive_0001_sync")
    with pytest.raises(BadInputError, match="calib_cam_to_cam.txt"):
        _build(tmp_path / "raw", tmp_path)
    assert not list((tmp_path / "out").rglob("dataset_info.json"))


def test_ground_truth_depth_is_stored_unchanged(sample, tmp_path):
    builder = _build(sample, tmp_path, with_depth=True)
    example = next(e for e in _examples(builder) if e["video_id"].endswith(b"image_02"))
    gt = tfds.core.lazy_imports.PIL_Image.open(
        sample / DRIVE / "proj_depth" / "groundtruth" / "image_02" / "0000000001.png")
    np.testing.assert_array_equal(example["depth"][1][..., 0], np.asarray(gt))


def test_cli_prints_where_the_data_went_and_the_counts(sample, shared_data, tmp_path):
    result = _run_cli(f"--input={sample}", f"--output={tmp_path}",
                      f"--split_dir={shared_data / 'splits' / 'kitti'}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"Wrote 2 triplets (train: 2) of kitti_triplets/all_128x416 to "
                             f"{tmp_path}/kitti_triplets/all_128x416/1.0.0\n")
    assert "Downloading and preparing" not in result.stdout + result.stderr


def test_cli_rerun_on_the_same_input_reuses_the_data_and_says_so(converted, sample, shared_data,
                                                                 tmp_path):
    result = _run_cli(f"--input={sample}", f"--output={tmp_path / 'out'}",
                      f"--split_dir={shared_data / 'splits' / 'kitti'}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"Reused 2 triplets (train: 2) of kitti_triplets/all_128x416 in "
        f"{converted[0].data_dir}: same input, flags and version as its fingerprint.json "
        "(--overwrite rebuilds)\n")


def test_cli_rerun_on_other_input_stops_with_one_line(converted, sample, shared_data, tmp_path):
    other = tmp_path / "other" / "2011_09_26"
    (other / "2011_09_26_drive_0001_sync").mkdir(parents=True)
    os.symlink(sample / "2011_09_26" / "calib_cam_to_cam.txt", other / "calib_cam_to_cam.txt")
    os.symlink(sample / DRIVE / "image_02", other / "2011_09_26_drive_0001_sync" / "image_02")
    result = _run_cli(f"--input={tmp_path / 'other'}", f"--output={tmp_path / 'out'}",
                      f"--split_dir={shared_data / 'splits' / 'kitti'}")
    assert result.returncode == 1 and result.stdout == ""
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.stderr.endswith(line + "\n")
    assert line.startswith(f"error: {converted[0].data_dir}: holds data built from other input")
    assert "input listing: " in line and " files removed, e.g. removed " in line
    assert line.endswith("--overwrite rebuilds it from this input")


def test_cli_resize_flag_reaches_the_config_and_the_fingerprint(sample, tmp_path):
    result = _run_cli(f"--input={sample}", f"--output={tmp_path}", "--resize=bilinear")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "kitti_triplets" / "all_128x416_bilinear" / "1.0.0"
    assert f"to {folder}" in result.stdout
    assert json.loads((folder / "fingerprint.json").read_text())["flags"]["resize"] == "bilinear"
