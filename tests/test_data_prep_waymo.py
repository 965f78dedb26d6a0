"""Waymo converter on segment files serialised with the module's own Frame description."""
import struct

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from data_prep import waymo
from data_prep.builder import build
from depth_motion_tf.errors import BadInputError

F_U, F_V, C_U, C_V = 100.0, 101.0, 47.0, 33.0
HEIGHT, WIDTH = 64, 96  # source FRONT images
# The FRONT camera 1.5 m ahead of and 2.1 m above the vehicle origin, looking along its x axis.
CAMERA_TO_VEHICLE = [1, 0, 0, 1.5, 0, 1, 0, 0, 0, 0, 1, 2.1, 0, 0, 0, 1]
WORLD_OFFSET = np.array([4.0e5, -3.0e5, 50.0])  # far from the origin, as real global poses


def _vehicle_pose(forward_m, yaw=0.0):
    """Row-major vehicle-to-world: ``forward_m`` along the heading ``yaw`` (rad, from world x)."""
    c, s = np.cos(yaw), np.sin(yaw)
    pose = np.eye(4)
    pose[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    pose[:3, 3] = WORLD_OFFSET + forward_m * np.array([c, s, 0.0])
    return pose.ravel()


def _frame(timestamp, value, front=True, context="segment-123", pose=None):
    """A serialised Frame; ``pose``: 16 row-major values (default: ``timestamp`` metres forward)."""
    frame = waymo.Frame()
    frame.context.name = context
    calibration = frame.context.camera_calibrations.add(name=waymo.FRONT, width=WIDTH,
                                                        height=HEIGHT)
    calibration.intrinsic.extend([F_U, F_V, C_U, C_V, 0, 0, 0, 0, 0])
    calibration.extrinsic.transform.extend(CAMERA_TO_VEHICLE)
    frame.timestamp_micros = timestamp
    frame.pose.transform.extend(_vehicle_pose(float(timestamp)) if pose is None else pose)
    image = np.full((HEIGHT, WIDTH, 3), value, np.uint8)
    frame.images.add(name=waymo.FRONT if front else 2,
                     image=tf.io.encode_jpeg(image, quality=100).numpy())
    return frame.SerializeToString()


def _write_segment(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)


def _build(root, tmp_path, **kwargs):
    config = waymo.waymo_config(height=8, width=26)  # aspect 3.25, as 416x128
    return build(waymo.WaymoTriplets, config, root, tmp_path / "out", workers=2, **kwargs).builder


def _examples(builder, split="train"):
    return list(tfds.as_numpy(builder.as_dataset(split=split)))


def _varint(value):
    out = b""
    while True:
        byte, value = value & 0x7F, value >> 7
        out += bytes([byte | (0x80 if value else 0)])
        if not value:
            return out


def _field(number, wire_type, payload):
    tag = _varint(number << 3 | wire_type)
    if wire_type == 2:
        return tag + _varint(len(payload)) + payload
    return tag + payload


def test_field_numbers_match_the_public_dataset_proto():
    # Hand-encoded wire format of dataset.proto: Frame{context=1, timestamp_micros=2, pose=3,
    # images=4}, Context{name=1, camera_calibrations=2}, CameraCalibration{name=1, intrinsic=2,
    # extrinsic=3, width=4, height=5}, Transform{transform=1}, CameraImage{name=1, image=2}.
    transform = b"".join(_field(1, 1, struct.pack("<d", v)) for v in range(16))
    calibration = (_field(1, 0, _varint(1))
                   + b"".join(_field(2, 1, struct.pack("<d", v)) for v in (5.0, 6.0, 7.0, 8.0))
                   + _field(3, 2, transform)
                   + _field(4, 0, _varint(1920)) + _field(5, 0, _varint(1280)))
    context = _field(1, 2, b"seg") + _field(2, 2, calibration)
    image = _field(1, 0, _varint(1)) + _field(2, 2, b"jpeg")
    frame = waymo.Frame.FromString(
        _field(1, 2, context) + _field(2, 0, _varint(42)) + _field(3, 2, transform)
        + _field(4, 2, image))
    assert frame.context.name == "seg" and frame.timestamp_micros == 42
    (cal,) = frame.context.camera_calibrations
    assert (cal.name, list(cal.intrinsic), cal.width, cal.height) == (1, [5, 6, 7, 8], 1920, 1280)
    assert list(cal.extrinsic.transform) == list(range(16))
    assert list(frame.pose.transform) == list(range(16))
    assert (frame.images[0].name, frame.images[0].image) == (1, b"jpeg")


def test_segment_gives_front_triplets_in_timestamp_order(tmp_path):
    _write_segment(tmp_path / "in" / "segment-123.tfrecord",
                   [_frame(300, 90), _frame(100, 30), _frame(200, 60), _frame(400, 120)])
    examples = _examples(_build(tmp_path / "in", tmp_path))
    assert sorted(e["frame_ids"][1].decode() for e in examples) == ["200", "300"]
    for example in examples:
        assert example["video_id"] == b"segment-123"
        values = [int(np.median(f)) for f in example["rgb"]]
        assert values == sorted(values)


def test_intrinsics_follow_the_centre_crop_and_resize(tmp_path):
    _write_segment(tmp_path / "in" / "segment-123.tfrecord", [_frame(t, 50) for t in (1, 2, 3)])
    (example,) = _examples(_build(tmp_path / "in", tmp_path))
    # 96x64 cropped to aspect 3.25 keeps round(96 / 3.25) = 30 rows from row 17.
    np.testing.assert_allclose(example["intrinsics"],
                               [F_U * 26 / 96, F_V * 8 / 30, C_U * 26 / 96, (C_V - 17) * 8 / 30],
                               rtol=1e-6)
    assert example["rgb"].shape == (3, 8, 26, 3)


def test_split_folders_become_splits(tmp_path):
    _write_segment(tmp_path / "in" / "training" / "segment-1.tfrecord",
                   [_frame(t, 50, context="a") for t in (1, 2, 3)])
    _write_segment(tmp_path / "in" / "validation" / "segment-2.tfrecord",
                   [_frame(t, 50, context="b") for t in (1, 2, 3)])
    builder = _build(tmp_path / "in", tmp_path)
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
        "train": 1, "validation": 1}


def test_frame_without_front_image_names_the_record(tmp_path):
    path = tmp_path / "in" / "segment-123.tfrecord"
    _write_segment(path, [_frame(1, 50), _frame(2, 50, front=False), _frame(3, 50)])
    with pytest.raises(BadInputError, match="segment-123.tfrecord#1: frame has no FRONT"):
        _build(tmp_path / "in", tmp_path)


def test_corrupt_segment_names_the_file(tmp_path):
    path = tmp_path / "in" / "segment-123.tfrecord"
    _write_segment(path, [_frame(t, 50) for t in (1, 2, 3)])
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(BadInputError, match="segment-123.tfrecord: corrupt TFRecord"):
        _build(tmp_path / "in", tmp_path)
    assert not list((tmp_path / "out").rglob("dataset_info.json"))


def _motion(first, second):
    """``X2 = R X1 + t`` between two camera-to-world poses, as ``(R, t)`` float64."""
    motion = np.linalg.inv(second.astype(np.float64)) @ first.astype(np.float64)
    return motion[:3, :3], motion[:3, 3]


def test_driving_forward_moves_the_optical_camera_along_z(tmp_path):
    records = [_frame(t, 50, pose=_vehicle_pose(1.2 * t, yaw=0.3)) for t in (1, 2, 3)]
    _write_segment(tmp_path / "in" / "segment-123.tfrecord", records)
    (example,) = _examples(_build(tmp_path / "in", tmp_path))
    assert example["camera_to_world"].shape == (3, 4, 4)
    rotation, translation = _motion(*example["camera_to_world"][:2])
    np.testing.assert_allclose(rotation, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(translation, [0.0, 0.0, -1.2], atol=1e-4)  # points come closer


def test_turning_left_moves_a_point_ahead_to_the_right(tmp_path):
    records = [_frame(t, 50, pose=_vehicle_pose(0.0, yaw=0.04 * t)) for t in (1, 2, 3)]
    _write_segment(tmp_path / "in" / "segment-123.tfrecord", records)
    (example,) = _examples(_build(tmp_path / "in", tmp_path))
    rotation, translation = _motion(*example["camera_to_world"][:2])
    # Yaw about the vehicle's up axis is a rotation about the optical -y axis.
    np.testing.assert_allclose(rotation[1], [0.0, 1.0, 0.0], atol=1e-6)
    ahead = rotation @ [0.0, 0.0, 20.0] + translation
    assert ahead[0] == pytest.approx(20.0 * np.sin(0.04) + 1.5 * np.sin(0.04), rel=1e-3)


def test_frame_without_a_vehicle_pose_names_the_record(tmp_path):
    path = tmp_path / "in" / "segment-123.tfrecord"
    _write_segment(path, [_frame(1, 50), _frame(2, 50, pose=[]), _frame(3, 50)])
    with pytest.raises(BadInputError, match="segment-123.tfrecord#1: vehicle pose has 0 values"):
        _build(tmp_path / "in", tmp_path)
