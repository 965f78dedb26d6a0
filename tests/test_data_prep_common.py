"""Shared builder machinery: intrinsics under crop/resize, frames, triplets, bad input, Beam."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from data_prep import common, video


def _write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(image).numpy())


def _frames_folder(folder, sizes, seed=0):
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        _write_png(folder / f"{i:04d}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _build(input_dir, tmp_path, **kwargs):
    return common.build(video.VideoTriplets, video.video_config(height=8, width=24),
                        input_dir, tmp_path / "out", workers=2, **kwargs)


def test_crop_subtracts_the_window_offset():
    box = common.CropBox(top=10, left=20, height=5, width=5)
    np.testing.assert_allclose(common.crop_intrinsics([100, 90, 50, 40], box), [100, 90, 30, 30])


def test_resize_scales_fx_cx_by_width_and_fy_cy_by_height():
    np.testing.assert_allclose(common.scale_intrinsics([100, 90, 50, 40], 0.5, 0.25),
                               [50, 22.5, 25, 10])


def test_stored_intrinsics_crop_then_scale():
    box = common.CropBox(top=256, left=192, height=512, width=1664)
    np.testing.assert_allclose(common.stored_intrinsics([2262.5, 2265.3, 1096.98, 513.14],
                                                        box, 128, 416),
                               [2262.5 / 4, 2265.3 / 4, (1096.98 - 192) / 4, (513.14 - 256) / 4],
                               rtol=1e-6)


def test_centre_crop_to_a_wider_aspect_keeps_the_middle_rows():
    assert common.centre_crop_to_aspect(900, 1600, 416 / 128) == common.CropBox(204, 0, 492, 1600)


def test_centre_crop_to_a_narrower_aspect_keeps_the_middle_columns():
    assert common.centre_crop_to_aspect(100, 1000, 2.0) == common.CropBox(0, 400, 100, 200)


def test_normalised_intrinsics_are_multiplied_by_the_frame_size():
    k = common.Intrinsics(0.5, 2.0, 0.25, 0.5, normalised=True)
    np.testing.assert_allclose(k.in_pixels(100, 200), [100, 200, 50, 50])


def test_resize_of_a_constant_frame_is_constant():
    image = np.full((30, 90, 3), 77, np.uint8)
    out = common.resize_frame(image, common.full_frame(30, 90), 8, 24)
    assert out.shape == (8, 24, 3) and np.all(out == 77)


def test_downsizing_averages_fine_stripes():
    image = np.zeros((4, 8, 3), np.uint8)
    image[:, ::2] = 200  # one-pixel stripes: antialiasing must average them
    out = common.resize_frame(image, common.full_frame(4, 8), 2, 4)
    np.testing.assert_allclose(out, 100, atol=2)


def test_consecutive_runs_split_where_numbers_jump():
    assert common.consecutive_runs([1, 2, 3, 7, 8, 10], int) == [[1, 2, 3], [7, 8], [10]]


def test_ordered_map_keeps_the_input_order():
    assert list(common.ordered_map(lambda x: x * x, range(20), workers=3, window=4)) == [
        x * x for x in range(20)]


def test_five_frames_give_three_sliding_triplets(tmp_path):
    _frames_folder(tmp_path / "in" / "clip", [(16, 48)] * 5)
    builder = _build(tmp_path / "in", tmp_path)
    examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
    centres = sorted(e["frame_ids"][1].decode() for e in examples)
    assert centres == ["0001", "0002", "0003"]
    for e in examples:
        first = int(e["frame_ids"][0])
        assert [int(f) for f in e["frame_ids"]] == [first, first + 1, first + 2]


def test_truncated_png_names_the_file_and_writes_nothing(tmp_path):
    _frames_folder(tmp_path / "in", [(16, 48)] * 3)
    png = tmp_path / "in" / "0001.png"
    png.write_bytes(png.read_bytes()[:60])
    with pytest.raises(common.BadInputError, match="0001.png: cannot be decoded"):
        _build(tmp_path / "in", tmp_path)
    assert not list((tmp_path / "out").rglob("dataset_info.json"))
    assert not list((tmp_path / "out").rglob("*.tfrecord*"))


def test_skip_bad_drops_the_triplets_of_a_bad_frame_and_counts_them(tmp_path):
    _frames_folder(tmp_path / "in", [(16, 48)] * 5)
    (tmp_path / "in" / "0004.png").write_bytes(b"garbage")
    builder = _build(tmp_path / "in", tmp_path, skip_bad=True)
    assert builder.info.splits["train"].num_examples == 2  # centres 1, 2 survive; 3 uses 0004
    assert builder.bad_input.skipped == 1
    assert builder.bad_input.files == {str(tmp_path / "in" / "0004.png")}


def test_mismatched_frame_sizes_name_the_odd_frame(tmp_path):
    _frames_folder(tmp_path / "in", [(16, 48), (16, 48), (20, 48)])
    with pytest.raises(common.BadInputError, match="0002.png: frame is 48x20 pixels"):
        _build(tmp_path / "in", tmp_path)


def test_missing_input_is_reported(tmp_path):
    with pytest.raises(common.BadInputError, match="does not exist"):
        _build(tmp_path / "nowhere", tmp_path)


def test_load_features_reads_the_schema_of_a_shard_glob(tmp_path):
    _frames_folder(tmp_path / "in", [(16, 48)] * 3)
    builder = _build(tmp_path / "in", tmp_path)
    features = common.load_features(f"{builder.data_dir}/video_triplets-train.tfrecord*")
    assert set(features.keys()) == {"rgb", "intrinsics", "intrinsics_known", "video_id",
                                    "frame_ids"}
    record = next(iter(tf.data.TFRecordDataset(
        tf.io.gfile.glob(f"{builder.data_dir}/video_triplets-train.tfrecord*"))))
    assert features.deserialize_example(record)["rgb"].shape == (3, 8, 24, 3)


def test_load_features_rejects_a_folder_without_features(tmp_path):
    with pytest.raises(common.BadInputError, match="features.json"):
        common.load_features(tmp_path)


def test_summary_line_names_the_place_and_split_counts(tmp_path):
    _frames_folder(tmp_path / "in", [(16, 48)] * 4)
    line = common.summary_line(_build(tmp_path / "in", tmp_path))
    assert line.startswith("Wrote 2 triplets (train: 2) of video_triplets/")
    assert str(tmp_path / "out") in line


def test_beam_direct_runner_writes_the_same_triplets(tmp_path):
    beam = pytest.importorskip(
        "apache_beam", reason="apache-beam is not installed (it needs protobuf < 7)")
    _frames_folder(tmp_path / "in" / "a", [(16, 48)] * 4)
    _frames_folder(tmp_path / "in" / "b", [(16, 48)] * 3, seed=1)
    builder = _build(tmp_path / "in", tmp_path, beam_runner=beam.runners.DirectRunner())
    examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
    assert sorted((e["video_id"].decode(), e["frame_ids"][1].decode()) for e in examples) == [
        ("a", "0001"), ("a", "0002"), ("b", "0001")]
