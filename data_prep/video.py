"""Any video → triplets: video files (mp4/mov/avi/mkv via PyAV) or folders of frames.

Input (``--input``): one video file, one folder of frames, or a folder holding
any number of both (searched recursively). Each video file and each folder of
frames (image files sorted by name) is one video, ``video_id`` its path
relative to the input. Every ``frame_stride``-th frame is kept (or, for video
files, the stride that brings the frame rate closest to ``target_fps``); each
frame is centre-cropped to the stored aspect ratio and resized (416x128 by
default).

Intrinsics are unknown (``intrinsics_known`` False, zeros; the trainer learns
them per video) unless given: ``--intrinsics`` (a JSON file, or
``fx,fy,cx,cy`` in source pixels) for every video, else a ``cam.json`` inside
a frame folder or ``<video stem>.json`` beside a video file. JSON formats read
by :func:`read_intrinsics_json`: a 3x3 matrix (normalised by the frame size when
``cx, cy <= 1``, as in dashcam_pair), nuScenes' ``{"camera_intrinsic": 3x3}``
(pixels), or ``{"fx", "fy", "cx", "cy"[, "normalised"]}``.

CLI::

    python -m data_prep.video --input=/data/my_videos --output=/data/tfds --target_fps=10

``tfds build``: ``tfds build data_prep/video.py --manual_dir=/data/my_videos
--data_dir=/data/tfds`` (config ``128x416_stride1``).
"""
import dataclasses
import functools
import json
import pathlib
from typing import Optional

import av
import numpy as np
from absl import app, flags

from data_prep import common
from depth_motion_tf import features as F

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
FRAME_FOLDER_INTRINSICS = "cam.json"


@dataclasses.dataclass(eq=False)
class VideoConfig(common.TripletConfig):
    """Video options.

    Attributes:
        frame_stride: keep every n-th frame.
        target_fps: for video files, choose the stride giving about this rate
            (overrides ``frame_stride``); None = use ``frame_stride``.
    """

    frame_stride: int = 1
    target_fps: Optional[float] = None


def video_config(height=F.DEFAULT_HEIGHT, width=F.DEFAULT_WIDTH, frame_stride=1,
                 target_fps=None, prefix=""):
    """A :class:`VideoConfig` named ``[<prefix>_]<H>x<W>_stride<n>`` (or ``_fps<f>``)."""
    rate = f"fps{target_fps:g}" if target_fps else f"stride{frame_stride}"
    name = "_".join(p for p in (prefix, f"{height}x{width}", rate) if p)
    return VideoConfig(
        name=name, height=height, width=width, frame_stride=frame_stride,
        target_fps=target_fps, description=f"Video triplets at {height}x{width}, {rate}.",
    )


def read_intrinsics_json(path):
    """Reads camera intrinsics from a JSON file (formats in the module docstring).

    Returns:
        :class:`common.Intrinsics` (pixels or normalised).
    Raises:
        common.BadInputError: naming the file when it is unreadable or of no known format.
    """
    try:
        data = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as error:
        raise common.BadInputError(path, f"cannot be read as JSON: {error}") from None
    if isinstance(data, dict) and "camera_intrinsic" in data:
        return _from_matrix(data["camera_intrinsic"], path, normalised=False)
    if isinstance(data, dict) and {"fx", "fy", "cx", "cy"} <= data.keys():
        return common.Intrinsics(
            float(data["fx"]), float(data["fy"]), float(data["cx"]), float(data["cy"]),
            bool(data.get("normalised", False)),
        )
    if isinstance(data, list):
        return _from_matrix(data, path, normalised=None)
    raise common.BadInputError(path, "holds no intrinsics of a known format")


def _from_matrix(matrix, path, normalised):
    """A 3x3 ``K`` → intrinsics; ``normalised=None`` decides by ``cx, cy <= 1``."""
    k = np.asarray(matrix, np.float64)
    if k.shape != (3, 3):
        raise common.BadInputError(path, f"intrinsics matrix has shape {k.shape}, not 3x3")
    if normalised is None:
        normalised = bool(k[0, 2] <= 1.0 and k[1, 2] <= 1.0)
    return common.Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], normalised)


def parse_intrinsics_flag(value):
    """``--intrinsics``: a JSON file, or ``fx,fy,cx,cy`` in source pixels → Intrinsics or None."""
    if not value:
        return None
    if pathlib.Path(value).is_file():
        return read_intrinsics_json(value)
    try:
        fx, fy, cx, cy = (float(v) for v in value.split(","))
    except ValueError:
        raise ValueError(f"--intrinsics={value!r}: not a file nor 'fx,fy,cx,cy'") from None
    return common.Intrinsics(fx, fy, cx, cy)


def find_videos(root):
    """Video files and frame folders at or under ``root``, sorted by path.

    Returns:
        list of paths: video files, and folders holding image files.
    Raises:
        common.BadInputError: when ``root`` holds neither.
    """
    root = pathlib.Path(root)
    if root.is_file():
        if root.suffix.lower() not in VIDEO_SUFFIXES:
            raise common.BadInputError(root, f"not a video file ({', '.join(VIDEO_SUFFIXES)})")
        return [root]
    found = []
    for folder in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if common.frame_files(folder):
            found.append(folder)
        found.extend(sorted(p for p in folder.iterdir()
                            if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES))
    if not found:
        raise common.BadInputError(root, "no video files or image frames found")
    return sorted(found)


def decoded_frames(path, frame_stride, target_fps):
    """Decodes a video file with PyAV, keeping every stride-th frame.

    Args:
        path: the video file.
        frame_stride: keep every n-th frame (when ``target_fps`` is None).
        target_fps: keep the stride closest to this rate, from the stream's rate.
    Yields:
        :class:`common.FrameRef` with the decoded ``[H, W, 3]`` uint8 frame.
    Raises:
        common.BadInputError: naming the file when it cannot be decoded.
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
                    yield common.FrameRef(f"{index:06d}", f"{path}#{index}",
                                          functools.partial(np.asarray, image))
    except (av.error.FFmpegError, IndexError) as error:
        raise common.BadInputError(path, f"cannot be read as a video: {error}") from None


def folder_frames(folder, frame_stride):
    """:class:`common.FrameRef` of every stride-th image file of a folder, by name."""
    return common.file_frames(common.frame_files(folder)[::frame_stride])


class VideoTriplets(common.TripletBuilder):
    """Frame triplets of arbitrary videos (intrinsics known only when given)."""

    BUILDER_CONFIG_CLASS = VideoConfig
    BUILDER_CONFIGS = [video_config()]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put video files (mp4/mov/avi/mkv) and/or folders of frames into manual_dir; "
        "optional cam.json (frame folders) or <video>.json (video files) give intrinsics."
    )

    def __init__(self, *, intrinsics=None, **kwargs):
        """``intrinsics``: :class:`common.Intrinsics` for every video (else per-video JSON)."""
        self.intrinsics = intrinsics
        super().__init__(**kwargs)

    def _videos(self, root):
        base = root if root.is_dir() else root.parent
        return {"train": [self._video(path, base) for path in find_videos(root)]}

    def _video(self, path, base):
        config = self.builder_config
        if path.is_dir():
            frames = functools.partial(folder_frames, path, config.frame_stride)
            json_path = path / FRAME_FOLDER_INTRINSICS
        else:
            frames = functools.partial(decoded_frames, path, config.frame_stride,
                                       config.target_fps)
            json_path = path.with_suffix(".json")
        intrinsics = self.intrinsics
        if intrinsics is None and json_path.is_file():
            intrinsics = read_intrinsics_json(json_path)
        aspect = config.width / config.height
        return common.VideoSource(
            video_id=str(path.relative_to(base)) if path != base else path.name,
            source=str(path),
            frames=frames,
            crop=functools.partial(common.centre_crop_to_aspect, aspect=aspect),
            intrinsics=intrinsics,
        )


def main(argv):
    del argv
    values = flags.FLAGS
    config = video_config(
        height=values.height, width=values.width, frame_stride=values.frame_stride,
        target_fps=values.target_fps, prefix=values.name or pathlib.Path(values.input).stem,
    )
    common.run(VideoTriplets, config, values,
               intrinsics=parse_intrinsics_flag(values.intrinsics))


if __name__ == "__main__":
    common.define_common_flags()
    flags.DEFINE_integer("frame_stride", 1, "Keep every n-th frame.")
    flags.DEFINE_float("target_fps", None, "Video files: keep about this many frames per "
                       "second (overrides --frame_stride).")
    flags.DEFINE_string("intrinsics", None, "Intrinsics of every video: a JSON file, or "
                        "'fx,fy,cx,cy' in source pixels. Default: per-video cam.json / "
                        "<video>.json, else unknown (learned).")
    flags.DEFINE_string("name", None, "Dataset config name prefix (default: the input's name).")
    app.run(main)
