"""Small generated datasets in the shared triplet format, for pipeline and training tests."""
import numpy as np
import tensorflow_datasets as tfds

from depth_motion_tf import features as F


def moving_texture_triplets(num, height, width, seed=0, shift=2):
    """Triplets of a random smooth texture translating ``shift`` px per frame to the right.

    Returns:
        list of example dicts in the ``depth_motion_tf.features`` schema (with masks).
    """
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(num):
        coarse = rng.uniform(0, 255, size=(height // 4 + 1, (width + 3 * shift) // 4 + 2, 3))
        texture = np.kron(coarse, np.ones((4, 4, 1)))[:height].astype(np.uint8)
        frames = np.stack([texture[:, k * shift : k * shift + width] for k in range(3)])
        mask = np.zeros((3, height, width, 1), np.uint8)
        mask[:, height // 4 : height // 2, width // 4 : width // 2] = 255
        examples.append(
            {
                F.RGB: frames,
                F.INTRINSICS: np.array([width / 2, width / 2, (width - 1) / 2, (height - 1) / 2], np.float32),
                F.INTRINSICS_KNOWN: True,
                F.VIDEO_ID: f"video{i % 3}",
                F.FRAME_IDS: [f"video{i % 3}/{i + k}" for k in range(3)],
                F.MASK: mask,
            }
        )
    return examples


def write_dataset(data_dir, splits, with_mask=True, name="fixture", with_depth=False):
    """Writes ``{split: [examples]}`` as a TFDS dataset under ``data_dir``; returns its directory.

    ``with_depth``: the examples carry ``depth`` (stored uint16, :func:`F.encode_depth`).
    """
    features = F.triplet_features(with_mask=with_mask, with_depth=with_depth)
    if not with_mask:
        splits = {k: [{n: v for n, v in e.items() if n != F.MASK} for e in ex] for k, ex in splits.items()}
    builder = tfds.dataset_builders.store_as_tfds_dataset(
        name=name,
        version="1.0.0",
        features=features,
        split_datasets={k: list(enumerate(v)) for k, v in splits.items()},
        data_dir=str(data_dir),
        disable_shuffling=True,
    )
    return str(builder.data_dir)
