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
from depth_motion_tf import data
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


# ---------------------------------------------------------------- camera poses from oxts
LATITUDE, LONGITUDE = 49.0, 8.4  # degrees, near Karlsruhe


def _oxts_line(lat, lon, yaw):
    """A 30-value oxts packet: position, level attitude with ``yaw`` (rad), zero rates."""
    return " ".join(f"{v:.12f}" for v in [lat, lon, 110.0, 0.0, 0.0, yaw] + [0.0] * 24) + "\n"


def _east_longitude(metres):
    """Longitude (degrees) ``metres`` east of LONGITUDE at the first packet's Mercator scale."""
    scale = np.cos(np.radians(LATITUDE))
    return LONGITUDE + np.degrees(metres / (scale * kitti.EARTH_RADIUS_M))


def _raw_with_oxts(sample, root, packets):
    """The sample's calibration and frames (linked) plus generated ``oxts/data/*.txt``."""
    date = root / "2011_09_26"
    drive = date / "2011_09_26_drive_0001_sync"
    (drive / "oxts" / "data").mkdir(parents=True)
    for name in ("calib_cam_to_cam.txt", "calib_imu_to_velo.txt", "calib_velo_to_cam.txt"):
        os.symlink(sample / "2011_09_26" / name, date / name)
    for camera in ("image_02", "image_03"):
        os.symlink(sample / DRIVE / camera, drive / camera)
    for index, line in enumerate(packets):
        (drive / "oxts" / "data" / f"{index:010d}.txt").write_text(line)
    return drive


def _motion(first, second):
    """``X2 = R X1 + t`` between two camera-to-world poses, as ``(R, t)`` float64."""
    motion = np.linalg.inv(second) @ first
    return motion[:3, :3], motion[:3, 3]


def test_driving_forward_moves_the_camera_along_its_optical_axis(sample, tmp_path):
    packets = [_oxts_line(LATITUDE, _east_longitude(1.5 * i), 0.0) for i in range(3)]
    drive = _raw_with_oxts(sample, tmp_path / "raw", packets)
    for camera in ("image_02", "image_03"):
        poses = kitti.camera_poses(drive, camera)
        rotation, translation = _motion(poses["0000000000"], poses["0000000001"])
        np.testing.assert_allclose(rotation, np.eye(3), atol=1e-9)  # yaw 0: heading east
        assert np.linalg.norm(translation) == pytest.approx(1.5, rel=1e-6)
        # Static points come 1.5 m closer; the IMU's x axis is the camera's z to < 1°.
        assert translation[2] / np.linalg.norm(translation) < -np.cos(np.radians(1.0))


def test_turning_left_moves_a_point_ahead_to_the_right_of_the_image(sample, tmp_path):
    packets = [_oxts_line(LATITUDE, LONGITUDE, 0.05 * i) for i in range(3)]
    drive = _raw_with_oxts(sample, tmp_path / "raw", packets)
    rotation, translation = _motion(*[kitti.camera_poses(drive, "image_02")[f"{i:010d}"]
                                      for i in (0, 1)])
    assert np.degrees(np.arccos((np.trace(rotation) - 1) / 2)) == pytest.approx(
        np.degrees(0.05), abs=1e-6)
    ahead = rotation @ [0.0, 0.0, 20.0] + translation
    assert ahead[0] > 0.9  # 20 m · sin(0.05) ≈ 1 m to the right (+x), plus the lever arm


def test_with_pose_stores_the_oxts_camera_poses(sample, tmp_path):
    packets = [_oxts_line(LATITUDE, _east_longitude(1.0 * i), 0.0) for i in range(3)]
    drive = _raw_with_oxts(sample, tmp_path / "raw", packets)
    examples = _examples(_build(tmp_path / "raw", tmp_path, with_pose=True))
    assert len(examples) == 2
    for example in examples:
        camera = example["video_id"].decode()[-8:]
        expected = kitti.camera_poses(drive, camera)
        stored = example["camera_to_world"]
        assert stored.shape == (3, 4, 4) and stored.dtype == np.float32
        for pose, frame_id in zip(stored, example["frame_ids"]):
            np.testing.assert_allclose(pose, expected[frame_id.decode()], atol=1e-5)


def test_trainer_pipeline_reads_the_oxts_motion(sample, tmp_path):
    # What --egomotion=given trains with: the pair's camera motion 1→2 from the stored poses.
    packets = [_oxts_line(LATITUDE, _east_longitude(0.8 * i), 0.0) for i in range(3)]
    _raw_with_oxts(sample, tmp_path / "raw", packets)
    builder = _build(tmp_path / "raw", tmp_path, with_pose=True)
    batch = next(iter(data.make_dataset(builder.data_dir, "train", 2, 128, 416, training=False)))
    np.testing.assert_allclose(batch["rotation"].numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batch["translation"], axis=-1), 0.8, rtol=1e-4)
    assert np.all(batch["translation"][:, 2] < -0.79)


def test_with_pose_without_oxts_names_the_missing_folder(sample, tmp_path):
    with pytest.raises(BadInputError, match=r"drive_0001_sync/oxts/data: no oxts packets"):
        _build(sample, tmp_path, with_pose=True)
    assert not list((tmp_path / "out").rglob("dataset_info.json"))


def test_calibration_without_a_translation_names_the_file(tmp_path):
    path = tmp_path / "calib_velo_to_cam.txt"
    path.write_text("calib_time: 15-Mar-2012 11:37:16\nR: 1 0 0 0 1 0 0 0 1\n")
    with pytest.raises(BadInputError, match=r"calib_velo_to_cam.txt.*no 3 T entry"):
        kitti.rigid_transform(path)
