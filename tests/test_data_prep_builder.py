"""The converters' builder base and ``build``: input checks, the schema read back, flags, Beam."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from data_prep import fingerprint, kitti, video
from data_prep.builder import build
from depth_motion_tf import data
from depth_motion_tf.errors import BadInputError


def write_frames(folder, sizes, seed=0):
    """Writes random PNG frames ``0000.png, 0001.png, ...`` of the given ``(h, w)`` sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        (folder / f"{i:04d}.png").write_bytes(tf.io.encode_png(image).numpy())


def build_video(input_dir, output_dir, **kwargs):
    """The video converter at 8x24 (``fingerprint.Prepared``)."""
    return build(video.VideoTriplets, video.video_config(height=8, width=24), input_dir,
                 output_dir, workers=2, **kwargs)


def test_missing_input_is_reported(tmp_path):
    with pytest.raises(BadInputError, match="nowhere: does not exist"):
        build_video(tmp_path / "nowhere", tmp_path / "out")


def test_the_library_reads_the_schema_of_a_shard_glob(tmp_path):
    write_frames(tmp_path / "in", [(16, 48)] * 3)
    builder = build_video(tmp_path / "in", tmp_path / "out").builder
    files, features_dir = data.find_shards(f"{builder.data_dir}/video_triplets-train.tfrecord*",
                                           "train")
    features = data.load_features(features_dir)
    assert set(features.keys()) == {"rgb", "intrinsics", "intrinsics_known", "video_id",
                                    "frame_ids"}
    record = next(iter(tf.data.TFRecordDataset(files)))
    assert features.deserialize_example(record)["rgb"].shape == (3, 8, 24, 3)


def test_the_library_finds_the_dataset_from_the_output_folder(tmp_path):
    write_frames(tmp_path / "in", [(16, 48)] * 3)
    builder = build_video(tmp_path / "in", tmp_path / "out").builder
    _, features_dir = data.find_shards(str(tmp_path / "out"), "train")
    assert features_dir == builder.data_dir


def test_resize_flag_reaches_the_config_name_and_the_fingerprint(tmp_path):
    write_frames(tmp_path / "in", [(16, 48)] * 3)
    config = video.video_config(height=8, width=24, resize="bilinear")
    prepared = build(video.VideoTriplets, config, tmp_path / "in", tmp_path / "out", workers=2)
    assert prepared.builder.builder_config.name == "8x24_stride1_bilinear"
    stored = fingerprint.read(prepared.builder.data_dir)
    assert stored["flags"]["resize"] == "bilinear"
    assert kitti.kitti_config().name == "all_128x416"  # the default adds no suffix


def test_bilinear_and_area_store_different_pixels(tmp_path):
    write_frames(tmp_path / "in", [(48, 144)] * 3)
    stored = {}
    for resize in ("area", "bilinear"):
        config = video.video_config(height=8, width=24, resize=resize)
        builder = build(video.VideoTriplets, config, tmp_path / "in", tmp_path / "out").builder
        (example,) = tfds.as_numpy(builder.as_dataset(split="train"))
        stored[resize] = example["rgb"].astype(int)
    # Random pixels: area averages 6x6 blocks towards grey, bilinear keeps 4 source pixels.
    assert stored["area"].std() < 0.7 * stored["bilinear"].std()


def test_beam_direct_runner_writes_the_same_triplets(tmp_path):
    beam = pytest.importorskip(
        "apache_beam", reason="apache-beam is not installed (it needs protobuf < 7)")
    write_frames(tmp_path / "in" / "a", [(16, 48)] * 4)
    write_frames(tmp_path / "in" / "b", [(16, 48)] * 3, seed=1)
    builder = build_video(tmp_path / "in", tmp_path / "out",
                          beam_runner=beam.runners.DirectRunner()).builder
    examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
    assert sorted((e["video_id"].decode(), e["frame_ids"][1].decode()) for e in examples) == [
        ("a", "0001"), ("a", "0002"), ("b", "0001")]
