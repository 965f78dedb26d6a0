"""inspect: counts per split and a contact sheet of a converted dataset."""
import numpy as np
import pytest
import tensorflow as tf

from data_prep import inspect, struct2depth
from data_prep.builder import build
from depth_motion_tf.errors import BadInputError


@pytest.fixture
def data_dir(tmp_path):
    seq = tmp_path / "in" / "seq"
    seq.mkdir(parents=True)
    for stem in ("000001", "000002"):
        wide = np.random.default_rng(int(stem)).integers(0, 256, (16, 144, 3), dtype=np.uint8)
        (seq / f"{stem}.png").write_bytes(tf.io.encode_png(wide).numpy())
        (seq / f"{stem}-fseg.png").write_bytes(tf.io.encode_png(wide).numpy())
        (seq / f"{stem}_cam.txt").write_text("96,0,24,0,80,8,0,0,1")
    config = struct2depth.struct2depth_config(height=8, width=24, with_mask=True)
    build(struct2depth.Struct2depthTriplets, config, tmp_path / "in", tmp_path / "out")
    return tmp_path / "out"


def test_prints_the_triplet_count_of_each_split(data_dir, capsys):
    inspect.inspect(data_dir)
    assert "2 triplets (train: 2)" in capsys.readouterr().out


def test_writes_one_contact_sheet_png_per_dataset(data_dir, tmp_path):
    (sheet,) = inspect.inspect(data_dir, sheet_dir=tmp_path)
    assert sheet.name == "struct2depth_triplets_8x24_mask_contact_sheet.png"
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_row_holds_three_frames_and_three_masks():
    example = {
        "rgb": np.zeros((3, 4, 6, 3), np.uint8), "mask": np.full((3, 4, 6, 1), 255, np.uint8),
        "video_id": b"v", "frame_ids": np.array([b"a", b"b", b"c"]),
        "intrinsics": np.zeros(4, np.float32), "intrinsics_known": False,
    }
    row = inspect.triplet_row(example)
    assert len(row) == 6 and all(image.shape == (4, 6, 3) for image in row)
    assert np.all(row[3] == 1.0)


def test_empty_data_dir_is_reported(tmp_path):
    with pytest.raises(BadInputError, match="no TFDS dataset"):
        inspect.inspect(tmp_path)
