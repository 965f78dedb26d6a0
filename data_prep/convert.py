"""The converters' command line: their shared flags, the run and its summary line.

Every ``python -m data_prep.<source>`` defines :func:`define_common_flags`
(plus its own); its ``main`` makes the builder config from the flags and
calls :func:`run`: build (or reuse) the dataset, print one summary line, and
turn bad input or an output folder of other data into one
``error: <path>: <problem>`` line and exit status 1. TFDS's own progress
bars, printed lines and log records below ERROR are silenced; the
converters' progress bar (on terminals) and the summary line remain.
"""
import logging

import tensorflow_datasets as tfds
from absl import flags
from absl import logging as absl_logging

from data_prep.builder import build
from data_prep.fingerprint import FINGERPRINT_FILE, OutputMismatchError
from data_prep.frames import RESIZE_METHODS
from depth_motion_tf import features as F
from depth_motion_tf.errors import BadInputError


def define_output_flags():
    """Defines ``--output`` and ``--overwrite`` (every converter, and ``data_prep.synthetic``)."""
    flags.DEFINE_string("output", None, "TFDS data_dir to write into.", required=True)
    flags.DEFINE_bool(
        "overwrite", False,
        "Rebuild the dataset even when its folder already holds data; the old data stays "
        "until the new build is complete. Without it a rerun with the same input and flags "
        f"reuses the data, and one with other input or flags (its {FINGERPRINT_FILE} "
        "differs) stops with an error.",
    )


def define_common_flags():
    """Defines the flags every converter CLI shares (call once, in ``__main__``)."""
    flags.DEFINE_string("input", None, "Raw data: folder (or file) to convert.", required=True)
    define_output_flags()
    flags.DEFINE_integer("height", F.DEFAULT_HEIGHT, "Stored frame height in pixels.")
    flags.DEFINE_integer("width", F.DEFAULT_WIDTH, "Stored frame width in pixels.")
    flags.DEFINE_enum(
        "resize", "area", RESIZE_METHODS,
        "How frames are resized to the stored size: 'area' (area averaging, no aliasing; "
        "the default) or 'bilinear' (plain bilinear without antialiasing, as cv2.resize "
        "INTER_LINEAR: what the reference's KITTI data, struct2depth's gen_data_kitti.py, "
        "used; on the KITTI sample, 1242x375 -> 416x128, it differs from 'area' by 0.014 "
        "mean absolute RGB on [0, 1]). Non-default values add '_<method>' to the config name.",
    )
    flags.DEFINE_bool("skip_bad", False, "Warn about and skip bad input instead of failing.")
    flags.DEFINE_integer("workers", None, "Threads for decoding/resizing (default: all cores).")
    flags.DEFINE_string("beam_runner", None, "Apache Beam runner, e.g. DirectRunner (optional).")


def quiet_tfds():
    """Silences TFDS's progress bars and its log records below ERROR; other logs stay."""
    tfds.disable_progress_bar()
    absl_logging.get_absl_logger().addFilter(_not_tfds_chatter)


def _not_tfds_chatter(record):
    """False for a TFDS log record below ERROR ("Generating dataset", "Using custom data ...")."""
    return record.levelno >= logging.ERROR or "tensorflow_datasets" not in record.pathname


def summary_line(prepared):
    """One line: where the data is, how many triplets each split holds, and whether it was reused.

    Args:
        prepared: ``fingerprint.Prepared`` from :func:`data_prep.builder.build`.
    """
    builder = prepared.builder
    counts = {name: split.num_examples for name, split in builder.info.splits.items()}
    split_text = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
    what = (f"{sum(counts.values())} triplets ({split_text}) of "
            f"{builder.name}/{builder.builder_config.name}")
    if prepared.reused:
        return (f"Reused {what} in {builder.data_dir}: same input, flags and version as its "
                f"{FINGERPRINT_FILE} (--overwrite rebuilds)")
    return f"Wrote {what} to {builder.data_dir}"


def run(builder_cls, config, values, **builder_kwargs):
    """Body of every converter CLI: build or reuse, then print the summary (and skip counts).

    Args:
        builder_cls: the converter's builder class.
        config: its config, made from the flags.
        values: parsed absl ``FLAGS``.
        **builder_kwargs: further arguments of ``builder_cls``.
    Raises:
        SystemExit: ``"error: <path>: <problem>"`` (status 1) on bad input or an
            output folder holding other data.
    """
    quiet_tfds()
    try:
        prepared = build(
            builder_cls, config, values.input, values.output,
            skip_bad=values.skip_bad, workers=values.workers,
            beam_runner=values.beam_runner, overwrite=values.overwrite, **builder_kwargs,
        )
    except (BadInputError, OutputMismatchError) as error:
        raise SystemExit(f"error: {error}") from None
    print(summary_line(prepared))
    if values.skip_bad and not prepared.reused:
        print(prepared.builder.bad_input.summary())
