"""What one stored example holds: the single schema shared by data_prep and the trainer.

An example is a triplet of consecutive frames ``(t-1, t, t+1)`` of one monocular
video, stored by TFDS as one ``tf.train.Example`` per triplet. Every builder in
``data_prep`` declares its features with :func:`triplet_features`, and the
trainer's reader (``depth_motion_tf.data``) decodes shards with the same
``FeaturesDict`` (read back from the dataset's ``features.json``).

Keys (decoded shapes, dtypes, units):
- ``rgb``: ``[3, H, W, 3]`` uint8, the three frames.
- ``intrinsics``: ``[4]`` float32, ``(fx, fy, cx, cy)`` in pixels of the stored
  frames, (0, 0) the centre of the top-left pixel. Zeros when unknown.
- ``intrinsics_known``: scalar bool, whether ``intrinsics`` is meaningful.
- ``video_id``: scalar string, the source video (per-video learned intrinsics).
- ``frame_ids``: ``[3]`` string, source frame identifiers (for tracing back).
- optional ``mask``: ``[3, H, W, 1]`` uint8, per-frame foreground mask (0/255).
- optional ``depth``: ``[3, H, W, 1]`` uint16, ground-truth depth in metres
  times :data:`DEPTH_PNG_SCALE`, 0 = no measurement (KITTI's PNG convention).
- optional ``camera_to_world``: ``[3, 4, 4]`` float32, ground-truth camera poses.
"""
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

FRAMES_PER_EXAMPLE = 3
DEFAULT_HEIGHT = 128
DEFAULT_WIDTH = 416
DEPTH_PNG_SCALE = 256.0  # stored uint16 value = depth in metres * 256

RGB = "rgb"
INTRINSICS = "intrinsics"
INTRINSICS_KNOWN = "intrinsics_known"
VIDEO_ID = "video_id"
FRAME_IDS = "frame_ids"
MASK = "mask"
DEPTH = "depth"
CAMERA_TO_WORLD = "camera_to_world"


def _frames(image):
    return tfds.features.Sequence(image, length=FRAMES_PER_EXAMPLE)


def triplet_features(
    image_encoding="png", with_mask=False, with_depth=False, with_pose=False
):
    """The ``FeaturesDict`` of one triplet example.

    Args:
        image_encoding: ``"png"`` (lossless, default) or ``"jpeg"`` for the RGB frames.
        with_mask: also store per-frame foreground masks (for ``use_mask``).
        with_depth: also store per-frame sparse ground-truth depth (evaluation sets).
        with_pose: also store per-frame camera-to-world poses (evaluation sets).
    Returns:
        ``tfds.features.FeaturesDict`` with the keys documented in this module.
    """
    features = {
        RGB: _frames(
            tfds.features.Image(shape=(None, None, 3), encoding_format=image_encoding)
        ),
        INTRINSICS: tfds.features.Tensor(shape=(4,), dtype=np.float32),
        INTRINSICS_KNOWN: tfds.features.Tensor(shape=(), dtype=np.bool_),
        VIDEO_ID: tfds.features.Text(),
        FRAME_IDS: tfds.features.Sequence(
            tfds.features.Text(), length=FRAMES_PER_EXAMPLE
        ),
    }
    if with_mask:
        features[MASK] = _frames(
            tfds.features.Image(shape=(None, None, 1), encoding_format="png")
        )
    if with_depth:
        features[DEPTH] = _frames(
            tfds.features.Image(
                shape=(None, None, 1), dtype=np.uint16, encoding_format="png"
            )
        )
    if with_pose:
        features[CAMERA_TO_WORLD] = tfds.features.Tensor(
            shape=(FRAMES_PER_EXAMPLE, 4, 4), dtype=np.float32
        )
    return tfds.features.FeaturesDict(features)


def encode_depth(depth_m):
    """Metric depth → the stored uint16 PNG values.

    Args:
        depth_m: ``[..., H, W, 1]`` float depth in metres, 0 or non-finite = missing.
    Returns:
        uint16 array of the same shape, ``round(depth * 256)``, clipped to the uint16 range.
    """
    depth_m = np.where(np.isfinite(depth_m), depth_m, 0.0)
    return np.clip(np.round(depth_m * DEPTH_PNG_SCALE), 0, 65535).astype(np.uint16)


def decode_depth(stored):
    """Stored uint16 depth values (numpy or tf) → float32 metres as a tf tensor, 0 = missing."""
    return tf.cast(stored, tf.float32) / DEPTH_PNG_SCALE
