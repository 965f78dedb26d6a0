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
import pathlib
from typing import Optional

from absl import flags

from data_prep import convert, fingerprint
from data_prep.builder import TripletBuilder, TripletConfig, resize_suffix
from data_prep.frames import centre_crop_to_aspect
from data_prep.triplets import VideoSource
from depth_motion_tf import cli
from depth_motion_tf import features as F
from depth_motion_tf.errors import BadInputError
from depth_motion_tf.media import (
    VIDEO_SUFFIXES,
    decoded_frames,
    file_frames,
    frame_files,
    parse_intrinsics_flag,
    read_intrinsics_json,
)

FRAME_FOLDER_INTRINSICS = "cam.json"


@dataclasses.dataclass(eq=False)
class VideoConfig(TripletConfig):
    """Video options.

    Attributes:
        frame_stride: keep every n-th frame.
        target_fps: for video files, choose the stride giving about this rate
            (overrides ``frame_stride``); None = use ``frame_stride``.
    """

    frame_stride: int = 1
    target_fps: Optional[float] = None


def video_config(height=F.DEFAULT_HEIGHT, width=F.DEFAULT_WIDTH, frame_stride=1,
                 target_fps=None, prefix="", resize="area"):
    """A :class:`VideoConfig` named ``[<prefix>_]<H>x<W>_stride<n>[_bilinear]`` (or ``_fps<f>``)."""
    rate = f"fps{target_fps:g}" if target_fps else f"stride{frame_stride}"
    name = "_".join(p for p in (prefix, f"{height}x{width}", rate) if p) + resize_suffix(resize)
    return VideoConfig(
        name=name, height=height, width=width, resize=resize, frame_stride=frame_stride,
        target_fps=target_fps, description=f"Video triplets at {height}x{width}, {rate}.",
    )


def find_videos(root):
    """Video files and frame folders at or under ``root``, sorted by path.

    Returns:
        list of paths: video files, and folders holding image files.
    Raises:
        BadInputError: when ``root`` holds neither.
    """
    root = pathlib.Path(root)
    if root.is_file():
        if root.suffix.lower() not in VIDEO_SUFFIXES:
            raise BadInputError(root, f"not a video file ({', '.join(VIDEO_SUFFIXES)})")
        return [root]
    found = []
    for folder in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if frame_files(folder):
            found.append(folder)
        found.extend(sorted(p for p in folder.iterdir()
                            if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES))
    if not found:
        raise BadInputError(root, "no video files or image frames found")
    return sorted(found)


def folder_frames(folder, frame_stride):
    """``FrameRef`` of every stride-th image file of a folder, by name."""
    return file_frames(frame_files(folder)[::frame_stride])


class VideoTriplets(TripletBuilder):
    """Frame triplets of arbitrary videos (intrinsics known only when given)."""

    BUILDER_CONFIG_CLASS = VideoConfig
    BUILDER_CONFIGS = [video_config()]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put video files (mp4/mov/avi/mkv) and/or folders of frames into manual_dir; "
        "optional cam.json (frame folders) or <video>.json (video files) give intrinsics."
    )

    def __init__(self, *, intrinsics=None, **kwargs):
        """``intrinsics``: ``Intrinsics`` for every video (else per-video JSON)."""
        self.intrinsics = intrinsics
        super().__init__(**kwargs)

    def _fingerprint_inputs(self):
        """Everything under an input folder; an input video file and its ``<stem>.json``."""
        inputs = super()._fingerprint_inputs()
        path = pathlib.Path(self.input_path)
        if path.is_file() and path.with_suffix(".json").is_file():
            inputs["video_json"] = fingerprint.input_entry(path.with_suffix(".json"))
        return inputs

    def _fingerprint_flags(self):
        intrinsics = self.intrinsics and dataclasses.asdict(self.intrinsics)
        return {"intrinsics": intrinsics}

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
        return VideoSource(
            video_id=str(path.relative_to(base)) if path != base else path.name,
            source=str(path),
            frames=frames,
            crop=functools.partial(centre_crop_to_aspect, aspect=aspect),
            intrinsics=intrinsics,
        )


def main(argv):
    del argv
    values = flags.FLAGS
    config = video_config(
        height=values.height, width=values.width, frame_stride=values.frame_stride,
        target_fps=values.target_fps, prefix=values.name or pathlib.Path(values.input).stem,
        resize=values.resize,
    )
    convert.run(VideoTriplets, config, values,
                intrinsics=parse_intrinsics_flag(values.intrinsics))


if __name__ == "__main__":
    convert.define_common_flags()
    flags.adopt_module_key_flags(convert)  # --help lists the common flags too
    flags.DEFINE_integer("frame_stride", 1, "Keep every n-th frame.")
    flags.DEFINE_float("target_fps", None, "Video files: keep about this many frames per "
                       "second (overrides --frame_stride).")
    flags.DEFINE_string("intrinsics", None, "Intrinsics of every video: a JSON file, or "
                        "'fx,fy,cx,cy' in source pixels. Default: per-video cam.json / "
                        "<video>.json, else unknown (learned).")
    flags.DEFINE_string("name", None, "Dataset config name prefix (default: the input's name).")
    cli.run(main)
