"""Frames as stored: crop windows, intrinsics under crops and resizes, resizing, PNG coding.

Intrinsics follow every transform exactly (METHOD.md §5): a crop subtracts its
offsets from ``cx, cy``; a resize scales ``fx, cx`` by the width ratio and
``fy, cy`` by the height ratio.

Two resize methods (``--resize``, :data:`RESIZE_METHODS`):

- ``area`` (default): area averaging when shrinking (every source pixel
  counts; no aliasing), antialiased bilinear when enlarging.
- ``bilinear``: plain bilinear without antialiasing, as the reference's KITTI
  data (struct2depth's ``gen_data_kitti.py``: ``cv2.resize``, ``INTER_LINEAR``).
  ``tf.image.resize(..., "bilinear", antialias=False)`` samples at the same
  half-pixel centres as ``cv2.resize``; on the KITTI sample the two agree
  within one grey level (cv2's fixed-point weights).

Reading image files, videos and intrinsics JSON lives in ``depth_motion_tf.media``.
"""
import collections
import concurrent.futures
import dataclasses

import numpy as np
import tensorflow as tf

from depth_motion_tf.errors import BadInputError

RESIZE_METHODS = ("area", "bilinear")


@dataclasses.dataclass(frozen=True)
class CropBox:
    """A window of a frame, in pixels: rows ``[top, top+height)``, columns ``[left, left+width)``."""

    top: int
    left: int
    height: int
    width: int


def crop_intrinsics(intrinsics, box):
    """Intrinsics of a cropped frame: the principal point shifts by the window's offset.

    Args:
        intrinsics: ``[4]`` float ``(fx, fy, cx, cy)`` in source pixels.
        box: the :class:`CropBox` kept.
    Returns:
        ``[4]`` float64 ``(fx, fy, cx - left, cy - top)``.
    """
    fx, fy, cx, cy = np.asarray(intrinsics, np.float64)
    return np.array([fx, fy, cx - box.left, cy - box.top])


def scale_intrinsics(intrinsics, width_ratio, height_ratio):
    """Intrinsics of a resized frame (plain scaling, METHOD.md §5).

    Args:
        intrinsics: ``[4]`` float ``(fx, fy, cx, cy)`` in pixels.
        width_ratio: new width / old width.
        height_ratio: new height / old height.
    Returns:
        ``[4]`` float64 ``(fx*rw, fy*rh, cx*rw, cy*rh)``.
    """
    fx, fy, cx, cy = np.asarray(intrinsics, np.float64)
    return np.array(
        [fx * width_ratio, fy * height_ratio, cx * width_ratio, cy * height_ratio]
    )


def stored_intrinsics(intrinsics, box, height, width):
    """Source-pixel intrinsics → intrinsics of the stored frame (crop to ``box``, resize).

    Returns:
        ``[4]`` float32 ``(fx, fy, cx, cy)`` in pixels of the ``height x width`` frame.
    """
    cropped = crop_intrinsics(intrinsics, box)
    return scale_intrinsics(cropped, width / box.width, height / box.height).astype(
        np.float32
    )


def full_frame(height, width):
    """The whole ``height x width`` frame as a :class:`CropBox` (KITTI: no crop)."""
    return CropBox(0, 0, height, width)


def centre_crop_to_aspect(height, width, aspect):
    """The largest centred window of a ``height x width`` frame with ``width/height == aspect``.

    Args:
        height, width: source frame size in pixels.
        aspect: target width / height (416/128 for the default stored size).
    Returns:
        :class:`CropBox`; the cropped side is rounded to whole pixels.
    """
    if width / height > aspect:
        crop_width = int(round(height * aspect))
        return CropBox(0, (width - crop_width) // 2, height, crop_width)
    crop_height = int(round(width / aspect))
    return CropBox((height - crop_height) // 2, 0, crop_height, width)


def read_depth_png(path):
    """Reads a KITTI-convention depth PNG → ``[H, W, 1]`` uint16 (metres * 256, 0 = none).

    Raises:
        BadInputError: naming the file when it cannot be decoded as a 16-bit PNG.
    """
    try:
        return tf.io.decode_png(tf.io.read_file(str(path)), dtype=tf.uint16).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as error:
        raise BadInputError(path, f"is not a readable 16-bit PNG: {error.message}") from None


def resize_frame(image, box, height, width, resize="area"):
    """Crops a frame to ``box`` and resizes it by one of :data:`RESIZE_METHODS`.

    Args:
        image: ``[H, W, C]`` uint8 source frame.
        box: :class:`CropBox` kept.
        height, width: stored size in pixels.
        resize: ``"area"`` (area averaging when shrinking, else antialiased
            bilinear) or ``"bilinear"`` (plain bilinear, no antialiasing:
            ``cv2.resize`` ``INTER_LINEAR``, the reference's KITTI data).
    Returns:
        ``[height, width, C]`` uint8.
    Raises:
        ValueError: for another ``resize``.
    """
    if resize not in RESIZE_METHODS:
        raise ValueError(f"resize must be one of {RESIZE_METHODS}, got {resize!r}")
    window = image[box.top : box.top + box.height, box.left : box.left + box.width]
    shrinking = height <= box.height and width <= box.width
    if resize == "bilinear":
        method, antialias = "bilinear", False
    else:
        method, antialias = ("area", False) if shrinking else ("bilinear", True)
    resized = tf.image.resize(
        tf.cast(window, tf.float32), (height, width), method=method, antialias=antialias
    )
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy()


def encode_png(image):
    """``[H, W, C]`` uint8 or uint16 array → PNG bytes."""
    return tf.io.encode_png(image).numpy()


@dataclasses.dataclass(frozen=True)
class StoredFormat:
    """How frames are stored: ``height x width`` pixels, resized by ``resize`` (RESIZE_METHODS)."""

    height: int
    width: int
    resize: str = "area"


@dataclasses.dataclass(frozen=True)
class StoredFrame:
    """A frame as stored: PNG bytes, its pixels, and the source frame's size."""

    frame_id: str
    name: str
    png: bytes
    pixels: np.ndarray  # [height, width, 3] uint8
    source_size: tuple  # (height, width) of the source frame


def store_frame(ref, crop, stored):
    """Loads, crops, resizes and PNG-encodes one frame.

    Args:
        ref: the ``depth_motion_tf.media.FrameRef``.
        crop: ``(source_height, source_width) -> CropBox``; raises ValueError
            for a frame size it cannot crop.
        stored: :class:`StoredFormat` of the frame.
    Returns:
        :class:`StoredFrame`.
    Raises:
        BadInputError: naming the frame's file when it cannot be loaded or cropped.
    """
    image = ref.load()
    try:
        box = crop(*image.shape[:2])
    except ValueError as error:
        raise BadInputError(ref.name, str(error)) from None
    pixels = resize_frame(image, box, stored.height, stored.width, stored.resize)
    return StoredFrame(ref.frame_id, ref.name, encode_png(pixels), pixels, image.shape[:2])


def mean_abs_difference(a, b):
    """Mean absolute RGB difference of two uint8 frames, on the [0, 1] scale."""
    return float(np.mean(np.abs(a.astype(np.float32) - b.astype(np.float32)))) / 255.0


def ordered_map(fn, items, workers, window=None):
    """``map(fn, items)`` on a thread pool, in order, holding at most ``window`` items in flight.

    Frames are decoded, resized and encoded this way (TF ops and file reads
    release the GIL).

    Args:
        fn: one-argument callable.
        items: iterable, consumed lazily.
        workers: number of threads.
        window: bound on submitted-but-unconsumed items (default ``4 * workers``).
    Yields:
        ``fn(item)`` in the order of ``items``.
    """
    window = window or 4 * workers
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
