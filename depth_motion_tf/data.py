"""tf.data input pipeline: TFRecord shards of triplets → augmented batches of frame pairs.

Reads what ``data_prep`` writes (TFDS shards, schema in ``depth_motion_tf.features``),
forms the training pair of each triplet, drops near-duplicate pairs, applies the
reference's crop/zoom + flip augmentation with intrinsics that follow the pixels
exactly (METHOD.md §5), and batches.

A batch is a dict:
- ``rgb``: ``[B, 2, H, W, 3]`` float32 in [0, 1], the pair (frame 1, frame 2).
- ``intrinsics``: ``[B, 3, 3]`` float32 pixels of the output frames.
- ``video_index``: ``[B]`` int32, the video id hashed into ``num_video_buckets``.
- ``intrinsics_map``: ``[B, 2, 4]`` float32, what the example's augmentation did
  to intrinsics of the full frame at the training size (see
  ``geometry.apply_intrinsics_map``); maps learned per-video intrinsics.
- ``mask`` (when the data has masks): ``[B, 2, H, W, 1]`` float32 in {0, 1}.
- ``depth`` (when asked for, ``make_dataset(depth=True)``, and the data has
  depth): ``[B, 2, H, W, 1]`` float32 ground-truth metres, 0 = missing.
- ``rotation``, ``translation`` (when the data has camera poses): ``[B, 3]``
  float32, the ground-truth camera motion 1→2 (radians; metres), mirrored with
  the frames by a flip.
"""
import os

import tensorflow as tf

from depth_motion_tf import features as F
from depth_motion_tf import geometry

AUTOTUNE = tf.data.AUTOTUNE
NEAR_DUPLICATE_THRESHOLD = 0.01  # mean |ΔRGB| below which a pair is dropped
PAIRS = {"first": (0, 1), "second": (1, 2)}


def find_shards(path, split):
    """Locates the TFRecord shards of one split and the directory with their features.json.

    Args:
        path: a TFDS dataset directory (the version folder holding ``features.json``,
            or any folder above it), or a glob of shard files. Any filesystem
            ``tf.io.gfile`` supports.
        split: split name, e.g. ``"train"`` (ignored for an explicit glob).
    Returns:
        ``(files, features_dir)``: sorted list of shard paths, folder of ``features.json``.
    Raises:
        FileNotFoundError: naming ``path`` when nothing matches.
    """
    if tf.io.gfile.isdir(path):
        features_dir = _find_features_dir(path)
        pattern = os.path.join(features_dir, f"*-{split}.tfrecord*")
    else:
        pattern = path
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(
            f"{path}: no TFRecord shards found (looked for {pattern}); "
            "convert data first with `python -m data_prep.<dataset>`"
        )
    if not tf.io.gfile.isdir(path):
        features_dir = _find_features_dir(os.path.dirname(files[0]))
    return files, features_dir


def _find_features_dir(path):
    for root, _, names in sorted(tf.io.gfile.walk(path), reverse=True):
        if "features.json" in names:
            return root
    raise FileNotFoundError(
        f"{path}: no features.json found; is this a dataset written by data_prep?"
    )


def load_features(features_dir):
    """The ``FeaturesDict`` stored with a dataset (its ``features.json``)."""
    import tensorflow_datasets as tfds

    return tfds.features.FeatureConnector.from_config(features_dir)


def read_examples(files, features, shuffle_files=False, seed=None):
    """Decoded examples (dicts as in ``depth_motion_tf.features``) from TFRecord shards.

    A shard that fails to parse raises ``tf.errors.DataLossError`` /
    ``InvalidArgumentError``; ``make_dataset``'s callers see the file names in
    the message through :func:`check_readable`.
    """
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        dataset = dataset.shuffle(len(files), seed=seed)
    dataset = dataset.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 16),
        num_parallel_calls=AUTOTUNE,
        deterministic=seed is not None or not shuffle_files,
    )
    return dataset.map(features.deserialize_example, num_parallel_calls=AUTOTUNE)


def check_readable(files, features):
    """Parses the first record of each shard; raises ValueError naming a bad file."""
    for path in files:
        try:
            for record in tf.data.TFRecordDataset(path).take(1):
                features.deserialize_example(record)
        except (tf.errors.OpError, ValueError) as error:
            raise ValueError(f"{path}: cannot parse as a triplet shard: {error}") from None


def to_pair(example, pair="first", num_video_buckets=1, depth=False):
    """One triplet example → one training pair (unbatched).

    Args:
        example: decoded example dict (``rgb`` ``[3,H,W,3]`` uint8, ...).
        pair: ``"first"`` = frames (t-1, t) (the reference's default), ``"second"`` = (t, t+1).
        num_video_buckets: size of the per-video table ``video_id`` is hashed into.
        depth: keep the ground-truth depth (when the example has it).
    Returns:
        dict ``rgb`` ``[2,H,W,3]`` float32 in [0,1], ``intrinsics`` ``[3,3]``,
        ``intrinsics_known`` bool, ``video_index`` int32, optional ``mask`` ``[2,H,W,1]`` in {0,1},
        optional ``depth`` ``[2,H,W,1]`` float32 metres (0 = missing), optional
        ``rotation``, ``translation`` ``[3]`` (the camera motion 1→2 from the poses).
    """
    first, second = PAIRS[pair]
    fx, fy, cx, cy = tf.unstack(example[F.INTRINSICS])
    out = {
        "rgb": tf.image.convert_image_dtype(
            tf.gather(example[F.RGB], [first, second]), tf.float32
        ),
        "intrinsics": geometry.intrinsics_matrix(fx, fy, cx, cy),
        "intrinsics_known": example[F.INTRINSICS_KNOWN],
        "video_index": tf.cast(
            tf.strings.to_hash_bucket_fast(example[F.VIDEO_ID], num_video_buckets),
            tf.int32,
        ),
    }
    if F.MASK in example:
        mask = tf.gather(example[F.MASK], [first, second])
        out["mask"] = tf.cast(mask > 127, tf.float32)
    if depth and F.DEPTH in example:
        out["depth"] = F.decode_depth(tf.gather(example[F.DEPTH], [first, second]))
    if F.CAMERA_TO_WORLD in example:
        poses = example[F.CAMERA_TO_WORLD]
        out["rotation"], out["translation"] = geometry.relative_motion(poses[first], poses[second])
    return out


def is_not_near_duplicate(pair_example, threshold=NEAR_DUPLICATE_THRESHOLD):
    """True when the pair's mean absolute RGB difference is at least ``threshold``."""
    rgb = pair_example["rgb"]
    return tf.reduce_mean(tf.abs(rgb[0] - rgb[1])) >= threshold


def augment(pair_example, seed, height, width, crop=True, flip=True):
    """Random crop/zoom + flip of a pair, the same draw for both frames (METHOD.md §5).

    A window of random size (height uniform in [``height``, stored H], width
    uniform in [``width``, stored W]) at a random offset is area-resized to
    ``height`` x ``width``; then a left-right flip with probability 1/2. The
    intrinsics follow: crop shifts (cx, cy), resize scales (fx, cx) and (fy, cy)
    by the width and height ratios, flip maps cx to ``width - 1 - cx``. A flip
    mirrors the world too (X → -X), so a ground-truth motion is mirrored:
    ``ry, rz, tx`` change sign. Without ``crop`` the full frame is resized.
    Depth is resampled by its nearest pixel (a missing 0 is never blended in);
    its values, metres along the optical axis, do not change with a crop, a
    zoom or a flip.

    Args:
        pair_example: dict from :func:`to_pair`.
        seed: ``[2]`` int64 stateless seed (e.g. from ``tf.data.Dataset.random``).
        height, width: output size in pixels.
    Returns:
        The dict with ``rgb`` (and ``mask``, ``depth``) at ``[2, height, width, C]``, adjusted
        ``intrinsics`` (and motion), and ``intrinsics_map`` ``[2, 4]``: the map
        from the full frame resized to ``height`` x ``width`` to this output.
    """
    seeds = tf.random.experimental.stateless_split(seed, 5)
    shape = tf.shape(pair_example["rgb"])
    stored_h, stored_w = shape[1], shape[2]
    if crop:
        crop_h = _uniform_int(seeds[0], tf.minimum(height, stored_h), stored_h)
        crop_w = _uniform_int(seeds[1], tf.minimum(width, stored_w), stored_w)
        top = _uniform_int(seeds[2], 0, stored_h - crop_h)
        left = _uniform_int(seeds[3], 0, stored_w - crop_w)
    else:
        crop_h, crop_w, top, left = stored_h, stored_w, 0, 0
    out = dict(pair_example)
    mapping = geometry.compose_intrinsics_maps(
        geometry.scale_intrinsics_map(
            width / tf.cast(crop_w, tf.float32), height / tf.cast(crop_h, tf.float32)
        ),
        geometry.crop_intrinsics_map(tf.cast(left, tf.float32), tf.cast(top, tf.float32)),
    )  # stored frame → output
    window = lambda x, method="area": tf.image.resize(  # noqa: E731
        x[:, top : top + crop_h, left : left + crop_w], [height, width], method=method
    )
    out["rgb"] = window(pair_example["rgb"])
    if "mask" in out:
        out["mask"] = tf.cast(window(out["mask"]) > 0.5, tf.float32)
    if "depth" in out:
        out["depth"] = window(out["depth"], "nearest")
    if flip:
        do_flip = tf.random.stateless_uniform([], seeds[4]) < 0.5
        for name in ("rgb", "mask", "depth"):
            if name in out:
                out[name] = tf.where(do_flip, tf.reverse(out[name], [2]), out[name])
        mapping = tf.where(
            do_flip, geometry.compose_intrinsics_maps(geometry.flip_intrinsics_map(width), mapping),
            mapping,
        )
        if "rotation" in out:
            # S R S and S t with S = diag(-1, 1, 1): Rx(rx) Ry(-ry) Rz(-rz), (-tx, ty, tz).
            sign = lambda flipped: tf.where(do_flip, tf.constant(flipped), tf.ones([3]))  # noqa: E731
            out["rotation"] = out["rotation"] * sign([1.0, -1.0, -1.0])
            out["translation"] = out["translation"] * sign([-1.0, 1.0, 1.0])
    out["intrinsics"] = geometry.apply_intrinsics_map(mapping, pair_example["intrinsics"])
    stored_to_full = geometry.scale_intrinsics_map(
        width / tf.cast(stored_w, tf.float32), height / tf.cast(stored_h, tf.float32)
    )
    out["intrinsics_map"] = geometry.compose_intrinsics_maps(
        mapping, geometry.invert_intrinsics_map(stored_to_full)
    )
    return out


def _uniform_int(seed, low, high):
    """A stateless integer uniform in [low, high] (inclusive)."""
    return tf.random.stateless_uniform(
        [], seed, minval=low, maxval=high + 1, dtype=tf.int32
    )


def make_dataset(
    path,
    split,
    batch_size,
    height,
    width,
    *,
    training=True,
    pair="first",
    crop=True,
    flip=True,
    seed=None,
    num_video_buckets=1,
    cache=False,
    shuffle_buffer=1024,
    depth=False,
):
    """The batched input pipeline of the trainer.

    Args:
        path: dataset directory or shard glob (see :func:`find_shards`).
        split: split name.
        batch_size: global batch size (examples per step, all replicas).
        height, width: training resolution in pixels.
        training: shuffle, repeat forever and augment; otherwise one ordered pass
            with the full frames resized (no crop, no flip).
        pair: which pair of each triplet (``"first"`` or ``"second"``).
        crop, flip: augmentation switches (training only).
        seed: makes shuffling and augmentation deterministic.
        num_video_buckets: size of the per-video intrinsics table.
        cache: keep decoded pairs in memory (small datasets).
        depth: carry the ground-truth depth (``depth``; for depth supervision).
    Returns:
        ``tf.data.Dataset`` of batch dicts (see the module docstring), ``drop_remainder=True``.
    """
    files, features_dir = find_shards(path, split)
    features = load_features(features_dir)
    check_readable(files, features)
    dataset = read_examples(files, features, shuffle_files=training, seed=seed)
    dataset = dataset.map(
        lambda ex: to_pair(ex, pair, num_video_buckets, depth), num_parallel_calls=AUTOTUNE
    )
    dataset = dataset.filter(is_not_near_duplicate)
    if cache:
        dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed).repeat()
        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(
            lambda ex, s: augment(ex, s, height, width, crop=crop, flip=flip),
            num_parallel_calls=AUTOTUNE,
            deterministic=seed is not None,
        )
    else:
        dataset = dataset.map(
            lambda ex: augment(ex, tf.constant([0, 0], tf.int64), height, width, False, False),
            num_parallel_calls=AUTOTUNE,
        )
    dataset = dataset.batch(batch_size, drop_remainder=True)
    return dataset.prefetch(AUTOTUNE)


def split_size(path, split):
    """Number of triplets TFDS recorded for ``split`` (from ``dataset_info.json``), or None."""
    import tensorflow_datasets as tfds

    _, features_dir = find_shards(path, split)
    try:
        info = tfds.builder_from_directory(features_dir).info
    except Exception:  # noqa: BLE001 - a bare shard glob carries no dataset_info.json
        return None
    return info.splits[split].num_examples if split in info.splits else None
