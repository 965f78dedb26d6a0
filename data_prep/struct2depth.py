"""struct2depth-format data → triplets.

Input (``--input``): the layout written by struct2depth's ``gen_data`` scripts,
``<seq>/<frame>.png`` (one image three frames wide), ``<seq>/<frame>_cam.txt``
(9 comma-separated values, the row-major 3x3 ``K`` of one frame) and optional
``<seq>/<frame>-fseg.png`` (object masks, three frames wide; any non-zero
pixel is foreground). ``train.txt`` / ``val.txt`` at the top (lines
``<seq> <frame>``) choose the splits; without them every triplet is ``train``.

Frames are resized to the stored size (416x128 by default; struct2depth data
usually already is), intrinsics scaled with them, masks resized by nearest
neighbour and stored as 0/255 (``with_mask``).

CLI::

    python -m data_prep.struct2depth --input=/data/struct2depth_kitti --output=/data/tfds --with_mask

``tfds build``: ``tfds build data_prep/struct2depth.py --manual_dir=... --config=128x416_mask``.
"""
import dataclasses
import pathlib

import numpy as np
import tensorflow as tf
from absl import flags

from data_prep import convert
from data_prep.builder import TripletBuilder, TripletConfig, resize_suffix
from data_prep.frames import encode_png, full_frame, ordered_map, resize_frame, stored_intrinsics
from depth_motion_tf import cli
from depth_motion_tf import features as F
from depth_motion_tf.errors import BadInputError
from depth_motion_tf.media import Intrinsics, read_image

LIST_FILES = {"train": "train.txt", "validation": "val.txt"}
MASK_SUFFIX = "-fseg.png"
CAM_SUFFIX = "_cam.txt"


@dataclasses.dataclass(eq=False)
class Struct2depthConfig(TripletConfig):
    """``with_mask``: also store the ``-fseg.png`` object masks."""

    with_mask: bool = False


def struct2depth_config(height=F.DEFAULT_HEIGHT, width=F.DEFAULT_WIDTH, with_mask=False,
                        resize="area"):
    """A :class:`Struct2depthConfig` named ``<H>x<W>[_mask][_bilinear]``."""
    return Struct2depthConfig(
        name=f"{height}x{width}" + ("_mask" if with_mask else "") + resize_suffix(resize),
        height=height, width=width, resize=resize, with_mask=with_mask,
        description=f"struct2depth triplets at {height}x{width}.",
    )


def read_cam_txt(path):
    """A ``_cam.txt`` (9 comma-separated values of ``K``) → ``Intrinsics`` (pixels).

    Raises:
        BadInputError: naming the file when it is missing or malformed.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise BadInputError(path, "intrinsics file does not exist")
    try:
        k = np.array([float(v) for v in path.read_text().replace("\n", ",").split(",")
                      if v.strip()])
    except ValueError:
        raise BadInputError(path, "values are not numeric") from None
    if k.size != 9:
        raise BadInputError(path, f"has {k.size} values, expected 9 (a 3x3 K)")
    return Intrinsics(fx=k[0], fy=k[4], cx=k[2], cy=k[5])


def split_wide(image, path):
    """One image three frames wide → list of three ``[H, W/3, C]`` frames.

    Raises:
        BadInputError: naming the file when the width is not a multiple of 3.
    """
    width = image.shape[1]
    if width % F.FRAMES_PER_EXAMPLE:
        raise BadInputError(path, f"width {width} is not three frames wide")
    return np.split(image, F.FRAMES_PER_EXAMPLE, axis=1)


def foreground_mask(frame, height, width):
    """A struct2depth mask frame ``[h, w, C]`` → stored ``[height, width, 1]`` uint8, 0/255."""
    binary = (np.max(frame, axis=-1, keepdims=True) > 0).astype(np.uint8) * 255
    return tf.image.resize(binary, (height, width), method="nearest").numpy()


def triplet_entry_example(seq_dir, stem, config):
    """``(key, example)`` of one struct2depth triplet.

    Args:
        seq_dir: the sequence folder.
        stem: the triplet's file stem.
        config: :class:`Struct2depthConfig`.
    """
    path = seq_dir / f"{stem}.png"
    frames = split_wide(read_image(path), path)
    box = full_frame(*frames[0].shape[:2])
    intrinsics = stored_intrinsics(
        read_cam_txt(seq_dir / f"{stem}{CAM_SUFFIX}").in_pixels(*frames[0].shape[:2]),
        box, config.height, config.width,
    )
    example = {
        F.RGB: [encode_png(resize_frame(f, box, config.height, config.width, config.resize))
                for f in frames],
        F.INTRINSICS: intrinsics,
        F.INTRINSICS_KNOWN: True,
        F.VIDEO_ID: seq_dir.name,
        F.FRAME_IDS: [f"{stem}:{i}" for i in range(F.FRAMES_PER_EXAMPLE)],
    }
    if config.with_mask:
        mask_path = seq_dir / f"{stem}{MASK_SUFFIX}"
        masks = split_wide(read_image(mask_path), mask_path)
        example[F.MASK] = [
            encode_png(foreground_mask(m, config.height, config.width)) for m in masks
        ]
    return f"{seq_dir.name}/{stem}", example


def list_entries(path):
    """A ``train.txt``-style list → ``{seq: [stems]}`` (lines ``<seq> <frame>``).

    Raises:
        BadInputError: naming the file and line when a line is malformed.
    """
    entries = {}
    for number, line in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise BadInputError(path, f"line {number}: expected '<seq> <frame>', got {line!r}")
        entries.setdefault(parts[0], []).append(parts[1])
    return entries


def folder_entries(root):
    """Every triplet image under ``root`` → ``{seq: [stems]}``."""
    entries = {}
    for path in sorted(root.glob(f"*/*{CAM_SUFFIX}")):
        entries.setdefault(path.parent.name, []).append(path.name[: -len(CAM_SUFFIX)])
    return entries


class Struct2depthTriplets(TripletBuilder):
    """Triplets from struct2depth-format data (three frames side by side)."""

    BUILDER_CONFIG_CLASS = Struct2depthConfig
    BUILDER_CONFIGS = [struct2depth_config(), struct2depth_config(with_mask=True)]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put struct2depth gen_data output into manual_dir: <seq>/<frame>.png (three frames "
        "wide), <seq>/<frame>_cam.txt, optional <seq>/<frame>-fseg.png and train.txt/val.txt."
    )

    def _feature_options(self):
        return {"with_mask": self.builder_config.with_mask}

    def _videos(self, root):
        lists = {s: root / f for s, f in LIST_FILES.items() if (root / f).is_file()}
        if not lists:
            return {"train": [(root / seq, stems) for seq, stems in folder_entries(root).items()]}
        return {
            split: [(root / seq, stems) for seq, stems in sorted(list_entries(path).items())]
            for split, path in lists.items()
        }

    def _examples(self, item):
        seq_dir, stems = item

        def example(stem):
            try:
                return triplet_entry_example(seq_dir, stem, self.builder_config)
            except BadInputError as error:
                return error

        for result in ordered_map(example, stems, self.workers):
            if isinstance(result, BadInputError):
                self.bad_input(result)
            else:
                yield result


def main(argv):
    del argv
    values = flags.FLAGS
    config = struct2depth_config(values.height, values.width, values.with_mask, values.resize)
    convert.run(Struct2depthTriplets, config, values)


if __name__ == "__main__":
    convert.define_common_flags()
    flags.adopt_module_key_flags(convert)  # --help lists the common flags too
    flags.DEFINE_bool("with_mask", False, "Also store the -fseg.png object masks.")
    cli.run(main)
