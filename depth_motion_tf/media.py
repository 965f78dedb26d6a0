"""Media: frames from image files and videos, camera intrinsics from JSON files.

What ``data_prep`` (the converters) and ``predict`` (inference on files) both
read: image files and folders of frames (:func:`file_frames`), video files
decoded with PyAV (:func:`decoded_frames`), and intrinsics given as JSON or
``fx,fy,cx,cy`` (:func:`parse_intrinsics_flag`). JSON formats: a 3x3 matrix
(normalised by the frame size when ``cx, cy <= 1``, as in dashcam_pair),
nuScenes' ``{"camera_intrinsic": 3x3}`` (pixels), or ``{"fx", "fy", "cx",
"cy"[, "normalised"]}``. Bad input raises :class:`BadInputError`, naming the file.
"""
import dataclasses
import functools
import json
import os
import pathlib
from typing import Callable

import av
import numpy as np
import tensorflow as tf

from depth_motion_tf.errors import BadInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


@dataclasses.dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics ``(fx, fy, cx, cy)`` of the source frames.

    ``normalised``: the values are divided by the frame size (``fx, cx`` by the
    width, ``fy, cy`` by the height), as in dashcam_pair's JSON; otherwise pixels.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    normalised: bool = False

    def in_pixels(self, height, width):
        """``[4]`` float64 ``(fx, fy, cx, cy)`` in pixels of a ``height x width`` frame."""
        values = np.array([self.fx, self.fy, self.cx, self.cy], np.float64)
        if self.normalised:
            values *= np.array([width, height, width, height], np.float64)
        return values


def decode_image(data, name):
    """Encoded PNG/JPEG/BMP bytes → ``[H, W, 3]`` uint8 RGB.

    Raises:
        BadInputError: naming ``name`` when the bytes cannot be decoded.
    """
    try:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        return image.numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as error:
        raise BadInputError(
            name, f"cannot be decoded as an image (truncated or corrupt?): {error.message}"
        ) from None


def read_image(path):
    """Reads an image file → ``[H, W, 3]`` uint8 RGB.

    Raises:
        BadInputError: naming the file when it is missing or cannot be decoded.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise BadInputError(path, "file does not exist")
    with open(path, "rb") as f:
        return decode_image(f.read(), path)


@dataclasses.dataclass(frozen=True)
class FrameRef:
    """One frame of a video before loading.

    Attributes:
        frame_id: identifier stored in ``frame_ids`` (e.g. the file stem).
        name: the file (or ``file#index``) named in error messages.
        load: zero-argument callable → ``[H, W, 3]`` uint8 source frame; raises
            :class:`BadInputError` for bad input.
    """

    frame_id: str
    name: str
    load: Callable[[], np.ndarray]


def frame_files(folder):
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(
        p for p in pathlib.Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
    )


def file_frames(paths):
    """:class:`FrameRef` per image file, frame id = file stem, in the given order."""
    return [FrameRef(pathlib.Path(p).stem, str(p), _ImageLoader(str(p))) for p in paths]


@dataclasses.dataclass(frozen=True)
class _ImageLoader:
    """Picklable ``load`` of one image file (Beam workers receive it)."""

    path: str

    def __call__(self):
        return read_image(self.path)


def decoded_frames(path, frame_stride, target_fps):
    """Decodes a video file with PyAV, keeping every stride-th frame.

    Args:
        path: the video file.
        frame_stride: keep every n-th frame (when ``target_fps`` is None).
        target_fps: keep the stride closest to this rate, from the stream's rate.
    Yields:
        :class:`FrameRef` with the decoded ``[H, W, 3]`` uint8 frame.
    Raises:
        BadInputError: naming the file when it cannot be decoded.
    """
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stride = frame_stride
            if target_fps and stream.average_rate:
                stride = max(1, round(float(stream.average_rate) / target_fps))
            for index, frame in enumerate(container.decode(stream)):
                if index % stride == 0:
                    image = frame.to_ndarray(format="rgb24")
                    yield FrameRef(f"{index:06d}", f"{path}#{index}",
                                          functools.partial(np.asarray, image))
    except (av.error.FFmpegError, IndexError) as error:
        raise BadInputError(path, f"cannot be read as a video: {error}") from None


def read_intrinsics_json(path):
    """Reads camera intrinsics from a JSON file (formats in the module docstring).

    Returns:
        :class:`Intrinsics` (pixels or normalised).
    Raises:
        BadInputError: naming the file when it is unreadable or of no known format.
    """
    try:
        data = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as error:
        raise BadInputError(path, f"cannot be read as JSON: {error}") from None
    if isinstance(data, dict) and "camera_intrinsic" in data:
        return _from_matrix(data["camera_intrinsic"], path, normalised=False)
    if isinstance(data, dict) and {"fx", "fy", "cx", "cy"} <= data.keys():
        fx, fy, cx, cy = _numbers([data[key] for key in ("fx", "fy", "cx", "cy")], path)
        return Intrinsics(fx, fy, cx, cy, bool(data.get("normalised", False)))
    if isinstance(data, list):
        return _from_matrix(data, path, normalised=None)
    raise BadInputError(
        path, "holds no intrinsics of a known format (a 3x3 matrix, camera_intrinsic, "
        "or fx, fy, cx, cy keys)"
    )


def _numbers(values, path):
    """``values`` as a float64 array; raises BadInputError naming ``path`` when they are not numbers."""
    try:
        return np.asarray(values, np.float64)
    except (TypeError, ValueError) as error:
        raise BadInputError(path, f"intrinsics are not numbers: {error}") from None


def _from_matrix(matrix, path, normalised):
    """A 3x3 ``K`` → intrinsics; ``normalised=None`` decides by ``cx, cy <= 1``."""
    k = _numbers(matrix, path)
    if k.shape != (3, 3):
        raise BadInputError(path, f"intrinsics matrix has shape {k.shape}, not 3x3")
    if normalised is None:
        normalised = bool(k[0, 2] <= 1.0 and k[1, 2] <= 1.0)
    return Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], normalised)


def parse_intrinsics_flag(value):
    """``--intrinsics``: a JSON file, or ``fx,fy,cx,cy`` in source pixels → Intrinsics or None.

    Raises:
        BadInputError: naming the value or the file when it is neither.
    """
    if not value:
        return None
    if pathlib.Path(value).is_file():
        return read_intrinsics_json(value)
    try:
        fx, fy, cx, cy = (float(v) for v in value.split(","))
    except ValueError:
        raise BadInputError(value, "--intrinsics is neither a JSON file nor 'fx,fy,cx,cy'") from None
    return Intrinsics(fx, fy, cx, cy)
