"""Ground-truth sources: Velodyne projection, KITTI improved GT, Cityscapes, folders, TFDS."""
import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from depth_motion_tf import features, ground_truth, metrics

KITTI_DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"

# Hand-made calibration: Velodyne (x forward, y left, z up) → camera (x right,
# y down, z forward), the camera 0.3 m ahead of the scanner, fx = fy = 100,
# principal point (50, 25), images 100x50. A point (X, Y, Z) in the scanner
# frame has camera coordinates (-Y, -Z, X - 0.3) and lands at
# u = 100·(-Y)/(X-0.3) + 50, v = 100·(-Z)/(X-0.3) + 25, i.e. pixel
# (row, col) = (round(v) - 1, round(u) - 1).
SYNTHETIC_CAM_TO_CAM = """calib_time: 09-Jan-2012 13:57:47
S_rect_02: 1.000000e+02 5.000000e+01
R_rect_00: 1 0 0 0 1 0 0 0 1
P_rect_02: 100 0 50 0 0 100 25 0 0 0 1 0
"""
SYNTHETIC_VELO_TO_CAM = """calib_time: 15-Mar-2012 11:37:16
R: 0 -1 0 0 0 -1 1 0 0
T: 0 0 -0.3
"""


def write_synthetic_drive(root, points):
    """A one-frame KITTI raw drive with the hand calibration and the given scan."""
    (root / "2011_01_01").mkdir(parents=True)
    (root / "2011_01_01" / "calib_cam_to_cam.txt").write_text(SYNTHETIC_CAM_TO_CAM)
    (root / "2011_01_01" / "calib_velo_to_cam.txt").write_text(SYNTHETIC_VELO_TO_CAM)
    scan_dir = root / "2011_01_01" / "2011_01_01_drive_0001_sync" / "velodyne_points" / "data"
    scan_dir.mkdir(parents=True)
    np.asarray(points, dtype=np.float32).tofile(scan_dir / "0000000000.bin")
    return ground_truth.KittiEntry("2011_01_01/2011_01_01_drive_0001_sync", 0, "l")


def synthetic_depth(tmp_path, points, camera_depth=False):
    entry = write_synthetic_drive(tmp_path, points)
    return ground_truth.kitti_velodyne_depth(tmp_path, entry, camera_depth)


def test_velodyne_point_projects_to_its_pixel_with_forward_x_depth(tmp_path):
    # (10.3, -1, 0.5): camera (1, -0.5, 10) → u = 60.0, v = 20.0 → row 19, col 59.
    depth = synthetic_depth(tmp_path, [[10.3, -1.0, 0.5, 0.0]])
    assert depth.shape == (50, 100)
    assert depth[19, 59] == pytest.approx(10.3)
    assert np.count_nonzero(depth) == 1


def test_camera_depth_option_uses_camera_z(tmp_path):
    depth = synthetic_depth(tmp_path, [[10.3, -1.0, 0.5, 0.0]], camera_depth=True)
    assert depth[19, 59] == pytest.approx(10.0)


def test_nearest_point_wins_on_a_shared_pixel(tmp_path):
    # Both straight ahead: u = 50, v = 25 → row 24, col 49.
    depth = synthetic_depth(tmp_path, [[20.3, 0.0, 0.0, 0.0], [10.3, 0.0, 0.0, 0.0], [30.3, 0.0, 0.0, 0.0]])
    assert depth[24, 49] == pytest.approx(10.3)
    assert np.count_nonzero(depth) == 1


def test_points_behind_the_scanner_are_dropped(tmp_path):
    # (-10, 1, 0) would land at u = 100·(-1)/(-10.3) + 50 = 59.7, v = 25 if kept.
    depth = synthetic_depth(tmp_path, [[-10.0, 1.0, 0.0, 0.0]])
    assert np.count_nonzero(depth) == 0


def test_points_outside_the_image_are_dropped(tmp_path):
    # (1.3, -1, 0): u = 100·1/1 + 50 = 150 > 100.
    depth = synthetic_depth(tmp_path, [[1.3, -1.0, 0.0, 0.0]])
    assert np.count_nonzero(depth) == 0


def test_real_calibration_projects_a_point_ahead_near_the_image_centre(shared_data):
    root = shared_data / "kitti_raw_sample" / "2011_09_26"
    cam_to_cam = ground_truth.read_calib_file(root / "calib_cam_to_cam.txt")
    velo_to_cam = ground_truth.read_calib_file(root / "calib_velo_to_cam.txt")
    matrix = ground_truth.velodyne_to_image_matrix(cam_to_cam, velo_to_cam, camera=2)
    depth = ground_truth.project_velodyne(np.array([[20.0, 0.0, 0.0, 0.0]]), matrix, 375, 1242)
    # By hand: [R|T] → (0.147, 0.220, 19.725); R_rect_00 → (0.0019, 0.134, 19.727);
    # P_rect_02 → u = 611.8, v = 177.7 → (row, col) = (round(v) - 1, round(u) - 1).
    assert np.argwhere(depth > 0).tolist() == [[177, 611]]
    assert depth[177, 611] == pytest.approx(20.0)


def test_velodyne_cache_is_written_once_and_reused(tmp_path):
    entry = write_synthetic_drive(tmp_path / "raw", [[10.3, -1.0, 0.5, 0.0]])
    image_dir = tmp_path / "raw" / entry.drive / "image_02" / "data"
    image_dir.mkdir(parents=True)
    Image.fromarray(np.zeros((50, 100, 3), np.uint8)).save(image_dir / "0000000000.png")
    split = tmp_path / "split.txt"
    split.write_text(f"{entry.drive} 0 l\n")
    cache = tmp_path / "gt.npz"
    first = list(ground_truth.kitti_eigen_samples(tmp_path / "raw", split, cache))
    (tmp_path / "raw" / entry.drive / "velodyne_points" / "data" / "0000000000.bin").unlink()
    second = list(ground_truth.kitti_eigen_samples(tmp_path / "raw", split, cache))
    np.testing.assert_array_equal(first[0].depth, second[0].depth)
    assert second[0].depth[19, 59] == pytest.approx(10.3)
    assert second[0].crop == metrics.GARG_CROP


def test_velodyne_cache_of_another_convention_is_refused(tmp_path):
    entry = write_synthetic_drive(tmp_path, [[10.3, 0.0, 0.0, 0.0]])
    cache = tmp_path / "gt.npz"
    ground_truth.load_or_build_velodyne_cache(tmp_path, [entry], cache, camera_depth=False)
    with pytest.raises(ValueError, match="gt.npz: cached ground truth"):
        ground_truth.load_or_build_velodyne_cache(tmp_path, [entry], cache, camera_depth=True)


def test_malformed_split_line_names_file_and_line(tmp_path):
    split = tmp_path / "test_files.txt"
    split.write_text(f"{KITTI_DRIVE} 0 l\n{KITTI_DRIVE} 1 x\n")
    with pytest.raises(ValueError, match="test_files.txt:2"):
        ground_truth.read_kitti_split(split)


def kitti_sample_split(tmp_path):
    split = tmp_path / "test_files.txt"
    split.write_text("".join(f"{KITTI_DRIVE} {i} l\n" for i in range(3)))
    return split


def test_improved_ground_truth_is_png_value_over_256(shared_data, tmp_path):
    raw = shared_data / "kitti_raw_sample"
    samples = ground_truth.kitti_benchmark_samples(raw, kitti_sample_split(tmp_path))
    assert len(samples) == 3
    sample = next(iter(samples))
    png = raw / KITTI_DRIVE / "proj_depth" / "groundtruth" / "image_02" / "0000000000.png"
    stored = np.array(Image.open(png)).astype(np.float64)
    np.testing.assert_allclose(sample.depth, stored / 256.0)
    assert sample.image.shape == (375, 1242, 3) and sample.image.dtype == np.uint8
    assert sample.name == f"{KITTI_DRIVE} 0000000000 l"
    assert sample.crop == metrics.GARG_CROP


def test_improved_ground_truth_in_depth_benchmark_layout(shared_data, tmp_path):
    entry = ground_truth.KittiEntry(KITTI_DRIVE, 5, "r")
    target = tmp_path / "val" / "2011_09_26_drive_0001_sync" / "proj_depth" / "groundtruth" / "image_03"
    target.mkdir(parents=True)
    (target / "0000000005.png").write_bytes(b"")
    found = ground_truth.kitti_improved_depth_path(shared_data / "kitti_raw_sample", entry, tmp_path)
    assert found == target / "0000000005.png"


def test_cityscapes_disparity_to_depth():
    values = np.array([[0, 1, 257, 513]], dtype=np.uint16)
    depth = ground_truth.cityscapes_disparity_to_depth(values, baseline=0.2, fx=2000.0)
    # disparity (p-1)/256: invalid, 0 (invalid), 1 px, 2 px → depth 0.2·2000/d.
    np.testing.assert_allclose(depth, [[0.0, 0.0, 400.0, 200.0]])


def test_cityscapes_crop_is_the_published_region():
    mask = metrics.crop_mask(768, 2048, ground_truth.CITYSCAPES_CROP)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert (rows[0], rows[-1], cols[0], cols[-1]) == (256, 767, 192, 1855)


def test_cityscapes_samples_remove_the_bottom_quarter(tmp_path):
    for folder in ("leftImg8bit", "disparity", "camera"):
        (tmp_path / folder / "test" / "bonn").mkdir(parents=True)
    stem = "bonn_000000_000019"
    image = np.full((16, 32, 3), 7, np.uint8)
    Image.fromarray(image).save(tmp_path / "leftImg8bit" / "test" / "bonn" / f"{stem}_leftImg8bit.png")
    disparity = tf.io.encode_png(np.full((16, 32, 1), 513, np.uint16))  # (513 - 1) / 256 = 2 px
    tf.io.write_file(str(tmp_path / "disparity" / "test" / "bonn" / f"{stem}_disparity.png"), disparity)
    camera = {"extrinsic": {"baseline": 0.2}, "intrinsic": {"fx": 100.0, "fy": 100.0, "u0": 16, "v0": 8}}
    (tmp_path / "camera" / "test" / "bonn" / f"{stem}_camera.json").write_text(json.dumps(camera))
    (sample,) = list(ground_truth.cityscapes_samples(tmp_path))
    assert sample.image.shape == (12, 32, 3)
    assert sample.depth.shape == (12, 32)
    np.testing.assert_allclose(sample.depth, 10.0)  # 0.2 · 100 / 2
    assert sample.crop == ground_truth.CITYSCAPES_CROP
    assert sample.name == f"bonn/{stem}"


def test_folder_reads_npy_npz_and_png_depth(tmp_path):
    images, gts = tmp_path / "images", tmp_path / "gt"
    images.mkdir()
    gts.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(images / f"{name}.png")
    np.save(gts / "a.npy", np.full((4, 6, 1), 1.5, np.float32))
    np.savez(gts / "b.npz", depth=np.full((4, 6), 2.5, np.float32))
    tf.io.write_file(str(gts / "c.png"), tf.io.encode_png(np.full((4, 6, 1), 896, np.uint16)))
    samples = list(ground_truth.folder_samples(images, gts, crop=(0.0, 0.5, 0.0, 1.0)))
    assert [s.name for s in samples] == ["a", "b", "c"]
    assert [float(s.depth[0, 0]) for s in samples] == [1.5, 2.5, 3.5]  # 896 / 256 = 3.5
    assert all(s.depth.shape == (4, 6) for s in samples)
    assert samples[0].crop == (0.0, 0.5, 0.0, 1.0)


def test_folder_missing_depth_names_the_image(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "gt").mkdir()
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "images" / "lonely.png")
    with pytest.raises(FileNotFoundError, match="no depth file for .*lonely.png"):
        list(ground_truth.folder_samples(tmp_path / "images", tmp_path / "gt"))


def depth_triplets():
    """Two 4x6 triplets with depth; frame k of example i has depth i + k + 1 metres, red 10·i."""
    for i in range(2):
        depth = np.stack([np.full((4, 6, 1), i + k + 1.0) for k in range(3)])
        yield i, {
            features.RGB: np.full((3, 4, 6, 3), 10 * i, np.uint8),
            features.INTRINSICS: np.zeros(4, np.float32),
            features.INTRINSICS_KNOWN: False,
            features.VIDEO_ID: f"video{i}",
            features.FRAME_IDS: [f"f{i}{k}" for k in range(3)],
            features.DEPTH: features.encode_depth(depth),
        }


def test_tfds_samples_are_the_middle_frames(tmp_path):
    builder = tfds.dataset_builders.store_as_tfds_dataset(
        name="depth_triplets", version="1.0.0", data_dir=str(tmp_path),
        features=features.triplet_features(with_depth=True),
        split_datasets={"test": list(depth_triplets())}, disable_shuffling=True,
    )
    samples = ground_truth.tfds_samples(builder.data_dir, "test")
    assert len(samples) == 2
    by_name = {s.name: s for s in samples}
    assert sorted(by_name) == ["video0/f01", "video1/f11"]
    np.testing.assert_allclose(by_name["video1/f11"].depth, 3.0)  # i + k + 1 with i = k = 1
    assert by_name["video1/f11"].image.shape == (4, 6, 3)
    assert by_name["video1/f11"].image[0, 0, 0] == 10


def test_tfds_dataset_without_depth_is_a_clear_error(tmp_path):
    examples = [(i, {k: v for k, v in e.items() if k != features.DEPTH}) for i, e in depth_triplets()]
    builder = tfds.dataset_builders.store_as_tfds_dataset(
        name="rgb_triplets", version="1.0.0", data_dir=str(tmp_path),
        features=features.triplet_features(), split_datasets={"test": examples},
    )
    with pytest.raises(ValueError, match="no 'depth' feature"):
        ground_truth.tfds_samples(builder.data_dir, "test")
