"""Reruns into an existing output: reuse on the same input, refuse other input, atomic overwrite."""
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_prep import fingerprint, video
from data_prep.builder import build
from depth_motion_tf.errors import BadInputError
from depth_motion_tf.media import parse_intrinsics_flag
from tests.test_data_prep_builder import build_video, write_frames


def _frames_read_back(folder):
    """``{centre frame id: middle frame pixels}`` of the dataset in a version folder."""
    builder = tfds.builder_from_directory(str(folder))
    return {e["frame_ids"][1].decode(): e["rgb"][1]
            for e in tfds.as_numpy(builder.as_dataset(split="train"))}


@pytest.fixture
def first_build(tmp_path):
    """A build of 3 frames (1 triplet) into ``out``: ``(input folder, Prepared)``."""
    write_frames(tmp_path / "a", [(16, 48)] * 3)
    return tmp_path / "a", build_video(tmp_path / "a", tmp_path / "out")


def test_fingerprint_is_stored_beside_dataset_info(first_build):
    folder = first_build[1].builder.data_dir
    stored = fingerprint.read(folder)
    assert (stored["builder"], stored["version"]) == ("video_triplets", "1.0.0")
    assert stored["flags"]["height"] == 8 and stored["flags"]["resize"] == "area"
    assert sorted(stored["inputs"]["input"]["files"]) == ["0000.png", "0001.png", "0002.png"]
    assert os.path.isfile(os.path.join(folder, "dataset_info.json"))


def test_rerun_on_the_same_input_reuses_the_data(first_build, tmp_path):
    input_dir, first = first_build
    again = build_video(input_dir, tmp_path / "out")
    assert again.reused and not first.reused
    assert again.builder.data_dir == first.builder.data_dir


def test_rerun_on_other_input_names_the_folder_and_what_differs(first_build, tmp_path):
    folder = first_build[1].builder.data_dir
    write_frames(tmp_path / "b", [(16, 48)] * 5, seed=1)  # 2 frames more, 3 rewritten
    os.utime(tmp_path / "b" / "0000.png", ns=(1, 1))
    with pytest.raises(fingerprint.OutputMismatchError) as raised:
        build_video(tmp_path / "b", tmp_path / "out")
    assert str(raised.value).startswith(f"{folder}: holds data built from other input or flags")
    assert "input listing: 2 files added, 3 changed, e.g. added 0003.png" in str(raised.value)


def test_other_flags_are_named_in_the_refusal(first_build, tmp_path):
    intrinsics = parse_intrinsics_flag("10,10,12,4")
    with pytest.raises(fingerprint.OutputMismatchError, match="flag intrinsics: was None, now"):
        build_video(first_build[0], tmp_path / "out", intrinsics=intrinsics)


def test_overwrite_rebuilds_and_the_new_data_is_read(first_build, tmp_path):
    folder = first_build[1].builder.data_dir
    write_frames(tmp_path / "b", [(16, 48)] * 5, seed=1)
    rebuilt = build_video(tmp_path / "b", tmp_path / "out", overwrite=True)
    assert not rebuilt.reused and rebuilt.builder.data_dir == folder
    assert sorted(_frames_read_back(folder)) == ["0001", "0002", "0003"]
    assert fingerprint.read(folder)["inputs"]["input"]["root"] == str(tmp_path / "b")
    assert not [p for p in os.listdir(os.path.dirname(folder)) if p.startswith(".rebuild")]


def test_a_failed_overwrite_leaves_the_old_data_intact(first_build, tmp_path):
    folder = first_build[1].builder.data_dir
    before, stored = _frames_read_back(folder), fingerprint.read(folder)
    write_frames(tmp_path / "b", [(16, 48)] * 5, seed=1)
    (tmp_path / "b" / "0003.png").write_bytes(b"garbage")  # the build fails at its 4th frame
    with pytest.raises(BadInputError, match="0003.png: cannot be decoded"):
        build_video(tmp_path / "b", tmp_path / "out", overwrite=True)
    after = _frames_read_back(folder)
    assert sorted(after) == sorted(before) == ["0001"]
    np.testing.assert_array_equal(after["0001"], before["0001"])
    assert fingerprint.read(folder) == stored
    assert not [p for p in os.listdir(os.path.dirname(folder)) if p.startswith(".rebuild")]


def test_data_without_a_fingerprint_is_not_reused(first_build, tmp_path):
    folder = first_build[1].builder.data_dir
    os.remove(os.path.join(folder, fingerprint.FINGERPRINT_FILE))
    with pytest.raises(fingerprint.OutputMismatchError, match="without a fingerprint.json"):
        build_video(first_build[0], tmp_path / "out")


def test_listing_keeps_only_matching_files(tmp_path):
    write_frames(tmp_path / "drive" / "image_02" / "data", [(4, 4)] * 2)
    (tmp_path / "drive" / "notes.txt").write_text("x")
    listing = fingerprint.list_files(tmp_path, ("*/image_02/data/*",))
    assert sorted(listing) == ["drive/image_02/data/0000.png", "drive/image_02/data/0001.png"]
    size, mtime_ns = listing["drive/image_02/data/0000.png"]
    status = (tmp_path / "drive" / "image_02" / "data" / "0000.png").stat()
    assert (size, mtime_ns) == (status.st_size, status.st_mtime_ns)


def test_a_changed_flag_is_reported_by_name():
    stored = {"builder": "b", "version": "1.0.0", "flags": {"resize": "area"}, "inputs": {}}
    current = {**stored, "flags": {"resize": "bilinear"}}
    assert fingerprint.differences(stored, current) == ["flag resize: was area, now bilinear"]
    assert fingerprint.differences(stored, stored) == []


def test_other_configs_live_in_other_folders(first_build, tmp_path):
    config = video.video_config(height=8, width=24, resize="bilinear")
    other = build(video.VideoTriplets, config, first_build[0], tmp_path / "out")
    assert not other.reused and other.builder.data_dir != first_build[1].builder.data_dir
