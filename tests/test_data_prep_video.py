"""Video converter: real nuScenes frame folders, an mp4 encoded from them, bad input."""
import json

import av
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from data_prep import video
from data_prep.builder import build
from data_prep.frames import CropBox, resize_frame
from depth_motion_tf.errors import BadInputError
from depth_motion_tf.media import Intrinsics


def _build(input_path, tmp_path, **kwargs):
    return build(video.VideoTriplets, video.video_config(), input_path,
                 tmp_path / "out", workers=2, **kwargs).builder


def _examples(builder):
    return list(tfds.as_numpy(builder.as_dataset(split="train")))


def _write_mp4(frame_paths, path):
    """Encodes the given image files as an H.264 mp4 with PyAV."""
    frames = [tf.io.decode_jpeg(tf.io.read_file(str(p))).numpy() for p in frame_paths]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture
def clips(shared_data):
    return shared_data / "nuscenes_front_clips"


def test_frame_folders_are_videos_with_cam_json_intrinsics(clips, tmp_path):
    examples = _examples(_build(clips, tmp_path))
    assert sorted(e["video_id"].decode() for e in examples) == ["scene-0099", "scene-0104"]
    k = np.array(json.loads((clips / "scene-0099" / "cam.json").read_text())["camera_intrinsic"])
    # 1600x900 centre-cropped to 416:128 keeps 492 rows from row 204, then x 416/1600, 128/492.
    expected = [k[0, 0] * 416 / 1600, k[1, 1] * 128 / 492, k[0, 2] * 416 / 1600,
                (k[1, 2] - 204) * 128 / 492]
    for example in examples:
        assert example["rgb"].shape == (3, 128, 416, 3)
        assert example["intrinsics_known"]
        np.testing.assert_allclose(example["intrinsics"], expected, rtol=1e-5)


def test_mp4_from_real_frames_gives_one_triplet_with_unknown_intrinsics(clips, tmp_path):
    _write_mp4(sorted((clips / "scene-0104").glob("*.jpg")), tmp_path / "clip.mp4")
    (example,) = _examples(_build(tmp_path / "clip.mp4", tmp_path))
    assert example["video_id"] == b"clip.mp4"
    assert [f.decode() for f in example["frame_ids"]] == ["000000", "000001", "000002"]
    assert not example["intrinsics_known"]
    np.testing.assert_array_equal(example["intrinsics"], np.zeros(4))


def test_mp4_frames_match_the_source_frames(clips, tmp_path):
    paths = sorted((clips / "scene-0104").glob("*.jpg"))
    _write_mp4(paths, tmp_path / "clip.mp4")
    (example,) = _examples(_build(tmp_path / "clip.mp4", tmp_path))
    source = tf.io.decode_jpeg(tf.io.read_file(str(paths[1]))).numpy()
    expected = resize_frame(source, CropBox(204, 0, 492, 1600), 128, 416)
    assert np.mean(np.abs(example["rgb"][1].astype(float) - expected)) < 6.0  # lossy codec


def test_normalised_intrinsics_flag_is_scaled_by_the_source_size(clips, tmp_path):
    intrinsics = Intrinsics(0.5, 1.0, 0.5, 0.5, normalised=True)
    (example, _) = _examples(_build(clips, tmp_path, intrinsics=intrinsics))
    np.testing.assert_allclose(
        example["intrinsics"], [0.5 * 1600 * 0.26, 900 * 128 / 492, 800 * 0.26,
                                (450 - 204) * 128 / 492], rtol=1e-5)


def test_dashcam_json_matrix_is_read_as_normalised(shared_data):
    k = video.read_intrinsics_json(shared_data / "dashcam_pair" / "test_sequence_intrinsics.json")
    assert (k.fx, k.fy, k.cx, k.cy, k.normalised) == (0.58, 1.92, 0.5, 0.5, True)


def test_two_frames_say_a_triplet_needs_three(shared_data, tmp_path):
    with pytest.raises(BadInputError, match="dashcam_pair: has 2 frame.*needs 3"):
        _build(shared_data / "dashcam_pair", tmp_path)
    assert not list((tmp_path / "out").rglob("dataset_info.json"))


def test_unreadable_video_names_the_file(tmp_path):
    bad = tmp_path / "in" / "broken.mp4"
    bad.parent.mkdir()
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(BadInputError, match="broken.mp4: cannot be read as a video"):
        _build(bad.parent, tmp_path)
    assert not list((tmp_path / "out").rglob("dataset_info.json"))


def test_skip_bad_counts_the_unreadable_video_and_keeps_the_rest(clips, tmp_path):
    (tmp_path / "in").mkdir()
    _write_mp4(sorted((clips / "scene-0104").glob("*.jpg")), tmp_path / "in" / "good.mp4")
    (tmp_path / "in" / "broken.mp4").write_bytes(b"\0" * 100)
    builder = _build(tmp_path / "in", tmp_path, skip_bad=True)
    assert builder.info.splits["train"].num_examples == 1
    assert builder.bad_input.skipped == 1


def test_empty_folder_is_reported(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="empty: folder is empty"):
        _build(tmp_path / "empty", tmp_path)


def test_folder_without_frames_is_reported(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("no frames")
    with pytest.raises(BadInputError, match="no video files or image frames"):
        _build(tmp_path / "in", tmp_path)
