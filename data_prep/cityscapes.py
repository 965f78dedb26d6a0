"""Cityscapes sequences → triplets (METHOD.md §5).

Input (``--input``): ``leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png``
and ``camera/<split>/<city>/<city>_<seq>_<frame>_camera.json`` (one per
sequence is enough; it is matched by city and sequence number). ``train``,
``val`` and ``test`` folders become the ``train``, ``validation`` and ``test``
splits.

Every ``frame_stride``-th frame (2 by default) of each sequence; a sequence is
cut where frame numbers jump. Of each 2048x1024 frame the rows [256, 768) are
kept (no ego-car hood, no top band), and the centred columns whose width at the
stored height gives the stored width: at 128x416 the frame is resized by 1/4,
i.e. full-resolution columns [192, 1856). Intrinsics from the JSON
(``intrinsic: fx, fy, u0, v0``), offsets subtracted, then scaled.

CLI::

    python -m data_prep.cityscapes --input=/data/cityscapes --output=/data/tfds

``tfds build``: ``tfds build data_prep/cityscapes.py --manual_dir=/data/cityscapes``.
"""
import dataclasses
import functools
import json
import pathlib
import re

from absl import flags

from data_prep import convert
from data_prep.builder import TripletBuilder, TripletConfig, resize_suffix
from data_prep.frames import CropBox
from data_prep.triplets import VideoSource, consecutive_runs
from depth_motion_tf import cli
from depth_motion_tf import features as F
from depth_motion_tf.errors import BadInputError
from depth_motion_tf.media import Intrinsics, file_frames

FRAME_WIDTH, FRAME_HEIGHT = 2048, 1024
ROWS = (256, 768)  # rows kept of the full-resolution frame
SPLITS = {"train": "train", "val": "validation", "test": "test"}
FRAME_PATTERN = re.compile(r"^(?P<city>.+)_(?P<seq>\d+)_(?P<frame>\d+)_leftImg8bit$")


@dataclasses.dataclass(eq=False)
class CityscapesConfig(TripletConfig):
    """``frame_stride``: keep every n-th frame of a sequence (2: the reference's)."""

    frame_stride: int = 2


def cityscapes_config(height=F.DEFAULT_HEIGHT, width=F.DEFAULT_WIDTH, frame_stride=2,
                      resize="area"):
    """A :class:`CityscapesConfig` named ``<H>x<W>_stride<n>[_bilinear]``."""
    return CityscapesConfig(
        name=f"{height}x{width}_stride{frame_stride}{resize_suffix(resize)}", height=height,
        width=width, resize=resize, frame_stride=frame_stride,
        description=f"Cityscapes sequence triplets at {height}x{width}, every frame_stride-th.",
    )


def crop_box(height, width, stored_height, stored_width):
    """The full-resolution window of a Cityscapes frame kept for a stored size.

    Rows [256, 768); the centred columns spanning ``stored_width`` at the scale
    that maps 512 rows to ``stored_height``.

    Args:
        height, width: source frame size (must be 1024 x 2048).
        stored_height, stored_width: stored size in pixels.
    Returns:
        :class:`CropBox`.
    Raises:
        ValueError: when the window would not fit the frame.
    """
    rows = ROWS[1] - ROWS[0]
    columns = int(round(stored_width * rows / stored_height))
    if (height, width) != (FRAME_HEIGHT, FRAME_WIDTH) or columns > width:
        raise ValueError(f"cannot crop {width}x{height} to {stored_width}x{stored_height}")
    return CropBox(ROWS[0], (width - columns) // 2, rows, columns)


def read_camera_json(path):
    """Cityscapes ``*_camera.json`` → ``Intrinsics`` (pixels).

    Raises:
        BadInputError: naming the file when it is unreadable or lacks ``intrinsic``.
    """
    try:
        intrinsic = json.loads(pathlib.Path(path).read_text())["intrinsic"]
        return Intrinsics(
            float(intrinsic["fx"]), float(intrinsic["fy"]),
            float(intrinsic["u0"]), float(intrinsic["v0"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BadInputError(path, f"no readable intrinsic fx, fy, u0, v0: {error!r}") from None


def sequence_frames(city_dir):
    """``{(city, seq): [(frame number, path)] sorted}`` of one city folder."""
    sequences = {}
    for path in sorted(city_dir.glob("*_leftImg8bit.png")):
        match = FRAME_PATTERN.match(path.stem)
        if match:
            key = (match["city"], match["seq"])
            sequences.setdefault(key, []).append((int(match["frame"]), path))
    return sequences


class CityscapesTriplets(TripletBuilder):
    """Cityscapes ``leftImg8bit_sequence`` frame triplets with calibrated intrinsics."""

    BUILDER_CONFIG_CLASS = CityscapesConfig
    BUILDER_CONFIGS = [cityscapes_config()]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download leftImg8bit_sequence_trainvaltest.zip and camera_trainvaltest.zip from "
        "https://www.cityscapes-dataset.com/downloads/ and unzip both into manual_dir."
    )
    INPUT_PATTERNS = ("leftImg8bit_sequence/*_leftImg8bit.png", "camera/*_camera.json")

    def _videos(self, root):
        frames_root = root / "leftImg8bit_sequence"
        if not frames_root.is_dir():
            raise BadInputError(frames_root, "folder does not exist")
        videos = {}
        for folder, split in SPLITS.items():
            for city_dir in sorted((frames_root / folder).glob("*")):
                for (city, seq), frames in sequence_frames(city_dir).items():
                    videos.setdefault(split, []).extend(
                        self._sequence_videos(root / "camera" / folder / city, city, seq, frames)
                    )
        return videos

    def _sequence_videos(self, camera_dir, city, seq, frames):
        """Videos of one sequence: runs of consecutive frame numbers, strided."""
        cameras = sorted(camera_dir.glob(f"{city}_{seq}_*_camera.json"))
        try:
            if not cameras:
                raise BadInputError(
                    camera_dir / f"{city}_{seq}_*_camera.json", "missing camera calibration")
            intrinsics = read_camera_json(cameras[0])
        except BadInputError as error:
            self.bad_input(error)
            return []
        config = self.builder_config
        videos = []
        for run in consecutive_runs(frames, lambda item: item[0]):
            kept = [path for _, path in run[:: config.frame_stride]]
            videos.append(VideoSource(
                video_id=f"{city}_{seq}_{run[0][0]:06d}",
                source=str(kept[0].parent / f"{city}_{seq}_{run[0][0]:06d}..."),
                frames=functools.partial(file_frames, kept),
                crop=functools.partial(crop_box, stored_height=config.height,
                                       stored_width=config.width),
                intrinsics=intrinsics,
            ))
        return videos


def main(argv):
    del argv
    values = flags.FLAGS
    config = cityscapes_config(values.height, values.width, values.frame_stride, values.resize)
    convert.run(CityscapesTriplets, config, values)


if __name__ == "__main__":
    convert.define_common_flags()
    flags.adopt_module_key_flags(convert)  # --help lists the common flags too
    flags.DEFINE_integer("frame_stride", 2, "Keep every n-th frame of a sequence.")
    cli.run(main)
