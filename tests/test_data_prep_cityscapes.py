"""Cityscapes converter on generated 2048x1024 frames in the real layout."""
import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from data_prep import cityscapes
from data_prep.builder import build
from depth_motion_tf.errors import BadInputError

INTRINSIC = {"fx": 2262.52, "fy": 2265.30, "u0": 1096.98, "v0": 513.14}


def _kept_region_frame(value):
    """A full frame: ``value`` inside rows [256, 768) x columns [192, 1856), 0 elsewhere."""
    frame = np.zeros((1024, 2048, 3), np.uint8)
    frame[256:768, 192:1856] = value
    return frame


def _write_sequence(root, frames, split="train", city="aachen", seq="000000", size=None):
    folder = root / "leftImg8bit_sequence" / split / city
    folder.mkdir(parents=True, exist_ok=True)
    for number in frames:
        image = _kept_region_frame(10 + number) if size is None else np.zeros(size, np.uint8)
        (folder / f"{city}_{seq}_{number:06d}_leftImg8bit.png").write_bytes(
            tf.io.encode_png(image).numpy())
    camera = root / "camera" / split / city
    camera.mkdir(parents=True, exist_ok=True)
    (camera / f"{city}_{seq}_000019_camera.json").write_text(
        json.dumps({"intrinsic": INTRINSIC, "extrinsic": {}}))


def _build(root, tmp_path, frame_stride=2, **kwargs):
    return build(cityscapes.CityscapesTriplets,
                 cityscapes.cityscapes_config(frame_stride=frame_stride), root,
                 tmp_path / "out", workers=2, **kwargs).builder


def _examples(builder, split="train"):
    return list(tfds.as_numpy(builder.as_dataset(split=split)))


def test_every_second_frame_forms_the_triplet(tmp_path):
    _write_sequence(tmp_path / "in", range(0, 6))
    (example,) = _examples(_build(tmp_path / "in", tmp_path))
    assert [f.decode() for f in example["frame_ids"]] == [
        "aachen_000000_000000_leftImg8bit", "aachen_000000_000002_leftImg8bit",
        "aachen_000000_000004_leftImg8bit"]


def test_stored_frame_is_exactly_the_kept_region(tmp_path):
    _write_sequence(tmp_path / "in", range(0, 6))
    (example,) = _examples(_build(tmp_path / "in", tmp_path))
    assert example["rgb"].shape == (3, 128, 416, 3)
    for frame, number in zip(example["rgb"], (0, 2, 4)):
        assert np.all(frame == 10 + number)


def test_intrinsics_follow_the_crop_and_quarter_resize(tmp_path):
    _write_sequence(tmp_path / "in", range(0, 6))
    (example,) = _examples(_build(tmp_path / "in", tmp_path))
    np.testing.assert_allclose(
        example["intrinsics"],
        [INTRINSIC["fx"] / 4, INTRINSIC["fy"] / 4, (INTRINSIC["u0"] - 192) / 4,
         (INTRINSIC["v0"] - 256) / 4], rtol=1e-6)


def test_sequences_split_where_frame_numbers_jump(tmp_path):
    _write_sequence(tmp_path / "in", [0, 1, 2, 10, 11, 12, 13], split="val")
    builder = _build(tmp_path / "in", tmp_path, frame_stride=1)
    centres = sorted(e["frame_ids"][1].decode()[-18:-12] for e in _examples(builder, "validation"))
    assert centres == ["000001", "000011", "000012"]


def test_missing_camera_json_is_reported(tmp_path):
    _write_sequence(tmp_path / "in", range(0, 6))
    for path in (tmp_path / "in" / "camera").rglob("*.json"):
        path.unlink()
    with pytest.raises(BadInputError, match="aachen_000000_\\*_camera.json"):
        _build(tmp_path / "in", tmp_path)


def test_frame_of_the_wrong_size_names_the_file(tmp_path):
    _write_sequence(tmp_path / "in", range(0, 6), size=(512, 1024, 3))
    with pytest.raises(BadInputError, match="000000_leftImg8bit.png: cannot crop"):
        _build(tmp_path / "in", tmp_path)
