"""The tf.data pipeline: pairing, filtering, augmentation with exact intrinsics, errors."""
import numpy as np
import pytest
import tensorflow as tf

from depth_motion_tf import data
from depth_motion_tf import features as F
from depth_motion_tf import geometry
from tests import fixtures


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    examples = fixtures.moving_texture_triplets(6, 64, 96)
    still = fixtures.moving_texture_triplets(2, 64, 96, seed=5, shift=0)
    return fixtures.write_dataset(
        tmp_path_factory.mktemp("data"), {"train": examples + still, "test": examples[:2]}
    )


def test_batches_have_documented_shapes_and_dtypes(dataset_dir):
    batch = next(iter(data.make_dataset(dataset_dir, "train", 3, 32, 64, seed=0)))
    assert batch["rgb"].shape == (3, 2, 32, 64, 3) and batch["rgb"].dtype == tf.float32
    assert batch["intrinsics"].shape == (3, 3, 3)
    assert batch["video_index"].dtype == tf.int32
    assert batch["mask"].shape == (3, 2, 32, 64, 1)
    assert 0.0 <= float(tf.reduce_min(batch["rgb"])) and float(tf.reduce_max(batch["rgb"])) <= 1.0


def test_near_duplicate_pairs_are_dropped(dataset_dir):
    ordered = data.make_dataset(dataset_dir, "train", 1, 64, 96, training=False)
    assert sum(1 for _ in ordered) == 6  # the two still triplets are gone


def test_first_pair_is_previous_and_current_frame(dataset_dir):
    files, features_dir = data.find_shards(dataset_dir, "test")
    example = next(iter(data.read_examples(files, data.load_features(features_dir))))
    first = data.to_pair(example, "first")["rgb"]
    second = data.to_pair(example, "second")["rgb"]
    expected = tf.image.convert_image_dtype(example[F.RGB], tf.float32)
    np.testing.assert_array_equal(first.numpy(), expected[0:2].numpy())
    np.testing.assert_array_equal(second.numpy(), expected[1:3].numpy())


def test_same_seed_gives_the_same_batches(dataset_dir):
    a = next(iter(data.make_dataset(dataset_dir, "train", 2, 32, 64, seed=7)))
    b = next(iter(data.make_dataset(dataset_dir, "train", 2, 32, 64, seed=7)))
    np.testing.assert_array_equal(a["rgb"].numpy(), b["rgb"].numpy())
    np.testing.assert_array_equal(a["intrinsics"].numpy(), b["intrinsics"].numpy())


def _dot_pair(height, width, u, v):
    """A pair whose both frames are black with one white 4x4 block centred at (u, v)."""
    image = np.zeros((height, width, 3), np.float32)
    image[v - 2 : v + 2, u - 2 : u + 2] = 1.0
    return {
        "rgb": tf.constant(np.stack([image, image])),
        "intrinsics": tf.constant(
            [[100.0, 0.0, 40.0], [0.0, 90.0, 30.0], [0.0, 0.0, 1.0]]
        ),
    }


def _centroid(image):
    weight = image[..., 0]
    ys, xs = np.mgrid[: weight.shape[0], : weight.shape[1]]
    return (weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_crop_zoom_flip_moves_intrinsics_with_the_pixels(seed):
    # A point's normalised ray ((u - cx) / fx, (v - cy) / fy) survives a crop/zoom;
    # a flip mirrors the scene, negating the ray's x component.
    stored = _dot_pair(96, 160, u=70, v=50)
    seed = tf.constant([seed, 0], tf.int64)
    out = data.augment(stored, seed, 48, 80, crop=True, flip=True)
    unflipped = data.augment(stored, seed, 48, 80, crop=True, flip=False)
    flipped = not np.array_equal(out["rgb"].numpy(), unflipped["rgb"].numpy())
    k0, k1 = stored["intrinsics"].numpy(), out["intrinsics"].numpy()
    ray_x = (69.5 - k0[0, 2]) / k0[0, 0]  # block centre
    ray_y = (49.5 - k0[1, 2]) / k0[1, 1]
    u, v = _centroid(out["rgb"][0].numpy())
    # Plain intrinsics scaling (METHOD.md §5) ignores the half-pixel shift of a resize.
    assert abs((-ray_x if flipped else ray_x) * k1[0, 0] + k1[0, 2] - u) < 1.0
    assert abs(ray_y * k1[1, 1] + k1[1, 2] - v) < 1.0
    assert k1[0, 0] > k0[0, 0] * 0.5 - 1e-3  # zoomed: window no wider than the stored frame


def test_both_frames_get_the_same_draw():
    stored = _dot_pair(96, 160, u=70, v=50)
    out = data.augment(stored, tf.constant([11, 3], tf.int64), 48, 80)
    np.testing.assert_array_equal(out["rgb"][0].numpy(), out["rgb"][1].numpy())


def test_flip_mirrors_pixels_and_principal_point():
    stored = _dot_pair(48, 80, u=20, v=30)
    flips = []
    for seed in range(8):
        seed = tf.constant([seed, 1], tf.int64)
        plain = data.augment(stored, seed, 48, 80, crop=False, flip=False)
        maybe = data.augment(stored, seed, 48, 80, crop=False, flip=True)
        flipped = not np.array_equal(plain["rgb"].numpy(), maybe["rgb"].numpy())
        flips.append(flipped)
        if flipped:
            np.testing.assert_array_equal(maybe["rgb"].numpy(), plain["rgb"].numpy()[:, :, ::-1])
            assert float(maybe["intrinsics"][0, 2]) == pytest.approx(79 - 40.0)
            assert float(maybe["intrinsics"][1, 2]) == pytest.approx(30.0)
    assert any(flips) and not all(flips)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_intrinsics_map_takes_the_full_frame_intrinsics_to_the_augmented_ones(seed):
    stored = _dot_pair(96, 160, u=70, v=50)
    out = data.augment(stored, tf.constant([seed, 0], tf.int64), 48, 80)
    full_frame = geometry.apply_intrinsics_map(
        geometry.scale_intrinsics_map(80 / 160, 48 / 96), stored["intrinsics"]
    )  # the stored frame resized to the training size
    np.testing.assert_allclose(
        geometry.apply_intrinsics_map(out["intrinsics_map"], full_frame), out["intrinsics"],
        atol=1e-4,
    )


def test_pair_carries_the_camera_motion_of_its_poses_and_a_flip_mirrors_it():
    pose2 = np.eye(4, dtype=np.float32)
    pose2[:3, :3] = geometry.rotation_matrix(tf.constant([0.0, 0.2, 0.0])).numpy()
    pose2[:3, 3] = [0.5, 0.0, 2.0]
    example = {
        F.RGB: tf.zeros([3, 8, 16, 3], tf.uint8), F.INTRINSICS: tf.constant([8.0, 8.0, 7.5, 3.5]),
        F.INTRINSICS_KNOWN: tf.constant(True), F.VIDEO_ID: tf.constant("v"),
        F.CAMERA_TO_WORLD: tf.constant(np.stack([np.eye(4), pose2, pose2]), tf.float32),
    }
    pair = data.to_pair(example)
    # X2 = R X1 + t with [R | t] = inv(P2) P1 = inv(P2): R = Ry(-0.2), t = -R (0.5, 0, 2).
    np.testing.assert_allclose(pair["rotation"], [0.0, -0.2, 0.0], atol=1e-6)
    r = geometry.rotation_matrix(tf.constant([0.0, -0.2, 0.0])).numpy()
    np.testing.assert_allclose(pair["translation"], -r @ [0.5, 0.0, 2.0], atol=1e-5)
    seed = _flip_seed(pair)
    flipped = data.augment(pair, tf.constant([seed, 0], tf.int64), 8, 16, crop=False)
    np.testing.assert_allclose(flipped["rotation"], [0.0, 0.2, 0.0], atol=1e-6)
    np.testing.assert_allclose(flipped["translation"], pair["translation"] * [-1, 1, 1], atol=1e-6)


def test_pair_carries_depth_only_when_asked_and_augmentation_never_blends_a_missing_value():
    depth = np.zeros([3, 8, 16, 1], np.float32)
    depth[:, :, 4:, 0] = 2.0 + np.arange(12, dtype=np.float32) / 4.0  # metres; columns 0-3 missing
    example = {
        F.RGB: tf.constant(np.random.default_rng(0).integers(0, 255, [3, 8, 16, 3]), tf.uint8),
        F.INTRINSICS: tf.constant([8.0, 8.0, 7.5, 3.5]), F.INTRINSICS_KNOWN: tf.constant(True),
        F.VIDEO_ID: tf.constant("v"), F.DEPTH: tf.constant(F.encode_depth(depth)),
    }
    assert "depth" not in data.to_pair(example)
    pair = data.to_pair(example, depth=True)
    np.testing.assert_array_equal(pair["depth"], depth[:2])
    seed = _flip_seed(pair)
    flipped = data.augment(pair, tf.constant([seed, 0], tf.int64), 8, 16, crop=False)
    np.testing.assert_array_equal(flipped["depth"], depth[:2, :, ::-1])
    for seed in range(10):  # crop and zoom: each output value is one of the input's
        zoomed = data.augment(pair, tf.constant([seed, 1], tf.int64), 6, 12)["depth"].numpy()
        assert zoomed.shape == (2, 6, 12, 1)
        assert np.isin(zoomed, depth).all()


def _flip_seed(pair):
    for seed in range(20):
        out = data.augment(pair, tf.constant([seed, 0], tf.int64), 8, 16, crop=False)
        if float(out["intrinsics_map"][0, 2]) < 0:
            return seed
    raise AssertionError("no flipping seed below 20")


def test_missing_path_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        data.make_dataset(str(tmp_path / "nowhere"), "train", 2, 32, 64)


def test_unparsable_shard_names_the_file(dataset_dir, tmp_path):
    bad = tmp_path / "broken-train.tfrecord-00000-of-00001"
    with tf.io.TFRecordWriter(str(bad)) as writer:
        writer.write(b"not an example")
    import shutil

    shutil.copy(f"{dataset_dir}/features.json", tmp_path / "features.json")
    with pytest.raises(ValueError, match="broken-train"):
        data.make_dataset(str(tmp_path / "broken-*"), "train", 2, 32, 64)


def test_split_size_reads_the_dataset_info(dataset_dir):
    assert data.split_size(dataset_dir, "train") == 8
    assert data.split_size(dataset_dir, "test") == 2
