"""struct2depth converter on a generated fixture in its layout."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from data_prep import struct2depth
from data_prep.builder import build
from depth_motion_tf.errors import BadInputError

COLOURS = ([255, 0, 0], [0, 255, 0], [0, 0, 255])  # one per frame of the wide image


def _write_triplet(seq_dir, stem, frame_h=16, frame_w=48, cam="96,0,24,0,80,8,0,0,1", mask=True):
    seq_dir.mkdir(parents=True, exist_ok=True)
    wide = np.concatenate([np.full((frame_h, frame_w, 3), c, np.uint8) for c in COLOURS], axis=1)
    (seq_dir / f"{stem}.png").write_bytes(tf.io.encode_png(wide).numpy())
    (seq_dir / f"{stem}_cam.txt").write_text(cam)
    if mask:
        seg = np.zeros((frame_h, frame_w * 3, 3), np.uint8)
        seg[: frame_h // 2, frame_w:2 * frame_w] = [7, 7, 7]  # top half of the middle frame
        (seq_dir / f"{stem}-fseg.png").write_bytes(tf.io.encode_png(seg).numpy())


def _build(root, tmp_path, with_mask=False, resize="area", **kwargs):
    config = struct2depth.struct2depth_config(height=8, width=24, with_mask=with_mask,
                                              resize=resize)
    return build(struct2depth.Struct2depthTriplets, config, root, tmp_path / "out",
                 workers=2, **kwargs).builder


def _examples(builder, split="train"):
    return list(tfds.as_numpy(builder.as_dataset(split=split)))


def test_wide_image_is_cut_into_three_frames_in_order(tmp_path):
    _write_triplet(tmp_path / "in" / "seq", "000001")
    (example,) = _examples(_build(tmp_path / "in", tmp_path))
    assert example["rgb"].shape == (3, 8, 24, 3)
    for frame, colour in zip(example["rgb"], COLOURS):
        assert np.all(frame == colour)
    assert example["video_id"] == b"seq"


def test_bilinear_resize_samples_single_pixels_of_a_checkerboard(tmp_path):
    seq_dir = tmp_path / "in" / "seq"
    _write_triplet(seq_dir, "000001", frame_h=24, frame_w=72)
    board = (np.indices((24, 72 * 3)).sum(axis=0) % 2 * 255).astype(np.uint8)
    (seq_dir / "000001.png").write_bytes(tf.io.encode_png(np.stack([board] * 3, -1)).numpy())
    (example,) = _examples(_build(tmp_path / "in", tmp_path, resize="bilinear"))
    # 72 -> 24 columns: output (i, j) samples source (3i + 1, 3j + 1), of parity i + j.
    parity = np.indices((8, 24)).sum(axis=0) % 2
    np.testing.assert_array_equal(example["rgb"][0, ..., 0], parity * 255)


def test_cam_txt_intrinsics_are_scaled_with_the_frames(tmp_path):
    _write_triplet(tmp_path / "in" / "seq", "000001")
    (example,) = _examples(_build(tmp_path / "in", tmp_path))
    np.testing.assert_allclose(example["intrinsics"], [96 / 2, 80 / 2, 24 / 2, 8 / 2])


def test_masks_are_binary_and_follow_their_frame(tmp_path):
    _write_triplet(tmp_path / "in" / "seq", "000001")
    (example,) = _examples(_build(tmp_path / "in", tmp_path, with_mask=True))
    mask = example["mask"][..., 0]
    assert not mask[0].any() and not mask[2].any()
    assert np.all(mask[1, :4] == 255) and not mask[1, 4:].any()


def test_list_files_choose_the_splits(tmp_path):
    for stem in ("000001", "000002", "000003"):
        _write_triplet(tmp_path / "in" / "seq", stem)
    (tmp_path / "in" / "train.txt").write_text("seq 000001\nseq 000003\n")
    (tmp_path / "in" / "val.txt").write_text("seq 000002\n")
    builder = _build(tmp_path / "in", tmp_path)
    assert builder.info.splits["train"].num_examples == 2
    assert [e["frame_ids"][0] for e in _examples(builder, "validation")] == [b"000002:0"]


def test_malformed_cam_txt_names_the_file(tmp_path):
    _write_triplet(tmp_path / "in" / "seq", "000001", cam="1,2,3")
    with pytest.raises(BadInputError, match="000001_cam.txt: has 3 values"):
        _build(tmp_path / "in", tmp_path)
    assert not list((tmp_path / "out").rglob("dataset_info.json"))


def test_missing_mask_names_the_file(tmp_path):
    _write_triplet(tmp_path / "in" / "seq", "000001", mask=False)
    with pytest.raises(BadInputError, match="000001-fseg.png: file does not exist"):
        _build(tmp_path / "in", tmp_path, with_mask=True)
