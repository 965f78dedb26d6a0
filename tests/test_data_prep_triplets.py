"""Videos → triplets: sliding windows of consecutive frames, and bad frames."""
import pytest
import tensorflow_datasets as tfds

from data_prep.triplets import consecutive_runs
from depth_motion_tf.errors import BadInputError
from tests.test_data_prep_builder import build_video, write_frames


def test_consecutive_runs_split_where_numbers_jump():
    assert consecutive_runs([1, 2, 3, 7, 8, 10], int) == [[1, 2, 3], [7, 8], [10]]


def test_five_frames_give_three_sliding_triplets(tmp_path):
    write_frames(tmp_path / "in" / "clip", [(16, 48)] * 5)
    builder = build_video(tmp_path / "in", tmp_path / "out").builder
    examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
    centres = sorted(e["frame_ids"][1].decode() for e in examples)
    assert centres == ["0001", "0002", "0003"]
    for e in examples:
        first = int(e["frame_ids"][0])
        assert [int(f) for f in e["frame_ids"]] == [first, first + 1, first + 2]


def test_truncated_png_names_the_file_and_writes_nothing(tmp_path):
    write_frames(tmp_path / "in", [(16, 48)] * 3)
    png = tmp_path / "in" / "0001.png"
    png.write_bytes(png.read_bytes()[:60])
    with pytest.raises(BadInputError, match="0001.png: cannot be decoded"):
        build_video(tmp_path / "in", tmp_path / "out")
    assert not list((tmp_path / "out").rglob("dataset_info.json"))
    assert not list((tmp_path / "out").rglob("*.tfrecord*"))


def test_skip_bad_drops_the_triplets_of_a_bad_frame_and_counts_them(tmp_path):
    write_frames(tmp_path / "in", [(16, 48)] * 5)
    (tmp_path / "in" / "0004.png").write_bytes(b"garbage")
    builder = build_video(tmp_path / "in", tmp_path / "out", skip_bad=True).builder
    assert builder.info.splits["train"].num_examples == 2  # centres 1, 2 survive; 3 uses 0004
    assert builder.bad_input.skipped == 1
    assert builder.bad_input.files == {str(tmp_path / "in" / "0004.png")}


def test_mismatched_frame_sizes_name_the_odd_frame(tmp_path):
    write_frames(tmp_path / "in", [(16, 48), (16, 48), (20, 48)])
    with pytest.raises(BadInputError, match="0002.png: frame is 48x20 pixels"):
        build_video(tmp_path / "in", tmp_path / "out")
