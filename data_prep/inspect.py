"""Looks at converted data: counts per split and a PNG contact sheet of a few triplets.

Usage::

    python -m data_prep.inspect /data/tfds [--num_triplets=4] [--sheet_dir=/tmp]

For every dataset found under the folder (any ``<name>/<config>/<version>``
TFDS wrote) it prints one line per split with the number of triplets, and
writes ``<name>_<config>_contact_sheet.png`` (one row per triplet: the three
frames, plus depth and mask where stored, titled with video and frame ids).
"""
import pathlib

import numpy as np
import tensorflow_datasets as tfds
from absl import app, flags

from data_prep.convert import quiet_tfds
from depth_motion_tf import cli
from depth_motion_tf import features as F
from depth_motion_tf import visualize
from depth_motion_tf.errors import BadInputError


def dataset_dirs(data_dir):
    """Every written dataset (a folder holding ``dataset_info.json``) under ``data_dir``, sorted.

    Hidden folders (a rebuild in progress, ``.rebuild-<version>-<id>``) are left out.
    """
    root = pathlib.Path(data_dir)
    return sorted(
        path.parent for path in root.rglob("dataset_info.json")
        if not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def split_counts(builder):
    """``{split name: number of triplets}`` of a written dataset."""
    return {name: split.num_examples for name, split in builder.info.splits.items()}


def triplet_row(example):
    """One decoded example → the images of its contact-sheet row.

    Args:
        example: numpy example as read by TFDS (keys of :mod:`depth_motion_tf.features`).
    Returns:
        list of ``[H, W, 3]`` float arrays in [0, 1]: the three frames, then the
        colour-mapped disparity of each depth frame and the masks, when stored.
    """
    row = [frame.astype(np.float32) / 255.0 for frame in example[F.RGB]]
    if F.DEPTH in example:
        depth = F.decode_depth(example[F.DEPTH]).numpy()
        row += list(visualize.colorize_disparity(depth).numpy())
    if F.MASK in example:
        row += [np.repeat(mask.astype(np.float32) / 255.0, 3, axis=-1) for mask in example[F.MASK]]
    return row


def row_title(example):
    """``video_id: frame ids`` of an example, and its intrinsics when known."""
    ids = " ".join(i.decode() for i in example[F.FRAME_IDS])
    title = f"{example[F.VIDEO_ID].decode()}: {ids}"
    if example[F.INTRINSICS_KNOWN]:
        title += " K=" + ",".join(f"{v:.1f}" for v in example[F.INTRINSICS])
    return title


def contact_sheet(builder, path, num_triplets):
    """Writes a contact sheet of the first ``num_triplets`` triplets of the first split.

    Returns:
        ``path``, or None when the dataset holds no triplets.
    """
    counts = split_counts(builder)
    split = next((name for name in sorted(counts) if counts[name]), None)
    if split is None:
        return None
    examples = list(tfds.as_numpy(builder.as_dataset(split=split).take(num_triplets)))
    rows = [triplet_row(example) for example in examples]
    titles = [row_title(example) for example in examples]
    return visualize.contact_sheet(rows, str(path), titles=titles)


def inspect(data_dir, sheet_dir=None, num_triplets=4):
    """Prints counts of every dataset under ``data_dir`` and writes their contact sheets.

    Args:
        data_dir: a TFDS data_dir (or one dataset's folder).
        sheet_dir: where the PNGs go (default: ``data_dir``).
        num_triplets: rows per contact sheet.
    Returns:
        list of the contact-sheet paths written.
    Raises:
        BadInputError: when no dataset is found under ``data_dir``.
    """
    folders = dataset_dirs(data_dir)
    if not folders:
        raise BadInputError(data_dir, "no TFDS dataset (dataset_info.json) found here")
    sheets = []
    for folder in folders:
        builder = tfds.builder_from_directory(str(folder))
        counts = split_counts(builder)
        listed = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
        print(f"{folder}: {sum(counts.values())} triplets ({listed})")
        sheet = pathlib.Path(sheet_dir or data_dir) / (
            f"{builder.name}_{builder.builder_config.name if builder.builder_config else 'default'}"
            "_contact_sheet.png"
        )
        if contact_sheet(builder, sheet, num_triplets):
            print(f"  contact sheet: {sheet}")
            sheets.append(sheet)
    return sheets


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("usage: python -m data_prep.inspect <data_dir>")
    values = flags.FLAGS
    quiet_tfds()
    try:
        inspect(argv[1], values.sheet_dir, values.num_triplets)
    except BadInputError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    flags.DEFINE_string("sheet_dir", None, "Folder for the contact-sheet PNGs (default: data_dir).")
    flags.DEFINE_integer("num_triplets", 4, "Triplets shown per contact sheet.")
    cli.run(main)
