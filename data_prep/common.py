"""Shared machinery of the triplet dataset builders.

Every converter in ``data_prep`` is a ``tfds.core.GeneratorBasedBuilder`` that
cuts monocular videos into triplets of consecutive frames, stored with the
single schema of :func:`depth_motion_tf.features.triplet_features`. This module
holds what they share:

- intrinsics under crops and resizes (METHOD.md §5: a crop subtracts its
  offsets from ``cx, cy``; a resize scales ``fx, cx`` by the width ratio and
  ``fy, cy`` by the height ratio);
- frame cropping and antialiased resizing on a thread pool (reading image
  files, videos and intrinsics JSON lives in ``depth_motion_tf.media``);
- triplet forming from an ordered frame stream (:func:`video_examples`);
- bad-input handling (:class:`BadInputError`; ``skip_bad`` warns and counts);
- :class:`TripletBuilder`, the base builder (raw files come from ``manual_dir``);
- :func:`build` and :func:`run`, the command-line runner of every converter;
- :func:`load_features`, the schema stored with a written dataset.

TFDS writes every dataset into a temporary directory and renames it when
complete, so a failed conversion never leaves a complete-looking dataset.
"""
import collections
import concurrent.futures
import dataclasses
import os
import pathlib
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import flags, logging

from depth_motion_tf import features as F
from depth_motion_tf.media import (  # noqa: F401 - re-exported for the converters
    IMAGE_SUFFIXES,
    BadInputError,
    FrameRef,
    Intrinsics,
    decode_image,
    file_frames,
    frame_files,
    read_image,
)



# ----------------------------------------------------------------------------
# Intrinsics and crop windows
# ----------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------
# Frames
# ----------------------------------------------------------------------------


def read_depth_png(path):
    """Reads a KITTI-convention depth PNG → ``[H, W, 1]`` uint16 (metres * 256, 0 = none).

    Raises:
        BadInputError: naming the file when it cannot be decoded as a 16-bit PNG.
    """
    try:
        return tf.io.decode_png(tf.io.read_file(str(path)), dtype=tf.uint16).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as error:
        raise BadInputError(path, f"is not a readable 16-bit PNG: {error.message}") from None


def resize_frame(image, box, height, width):
    """Crops a frame to ``box`` and resizes it: area averaging when shrinking, else antialiased bilinear.

    Args:
        image: ``[H, W, C]`` uint8 source frame.
        box: :class:`CropBox` kept.
        height, width: stored size in pixels.
    Returns:
        ``[height, width, C]`` uint8.
    """
    window = image[box.top : box.top + box.height, box.left : box.left + box.width]
    shrinking = height <= box.height and width <= box.width
    resized = tf.image.resize(
        tf.cast(window, tf.float32), (height, width),
        method="area" if shrinking else "bilinear", antialias=not shrinking,
    )
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy()


def encode_png(image):
    """``[H, W, C]`` uint8 or uint16 array → PNG bytes."""
    return tf.io.encode_png(image).numpy()


@dataclasses.dataclass(frozen=True)
class StoredFrame:
    """A frame as stored: PNG bytes, its pixels, and the source frame's size."""

    frame_id: str
    name: str
    png: bytes
    pixels: np.ndarray  # [height, width, 3] uint8
    source_size: tuple  # (height, width) of the source frame


def store_frame(ref, crop, height, width):
    """Loads, crops, resizes and PNG-encodes one frame.

    Args:
        ref: the :class:`FrameRef`.
        crop: ``(source_height, source_width) -> CropBox``; raises ValueError
            for a frame size it cannot crop.
        height, width: stored size in pixels.
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
    pixels = resize_frame(image, box, height, width)
    return StoredFrame(ref.frame_id, ref.name, encode_png(pixels), pixels, image.shape[:2])


def ordered_map(fn, items, workers, window=None):
    """``map(fn, items)`` on a thread pool, in order, holding at most ``window`` items in flight.

    Args:
        fn: one-argument callable (TF ops and file reads release the GIL).
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


def consecutive_runs(items, index):
    """Splits an ordered list where the integer ``index(item)`` does not grow by exactly 1.

    Args:
        items: items sorted by ``index``.
        index: item → int frame number.
    Returns:
        list of lists of items with consecutive frame numbers.
    """
    runs = []
    for item in items:
        if runs and index(item) == index(runs[-1][-1]) + 1:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def mean_abs_difference(a, b):
    """Mean absolute RGB difference of two uint8 frames, on the [0, 1] scale."""
    return float(np.mean(np.abs(a.astype(np.float32) - b.astype(np.float32)))) / 255.0


# ----------------------------------------------------------------------------
# Videos → triplet examples
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VideoSource:
    """One monocular video to cut into triplets of consecutive frames.

    Attributes:
        video_id: stored ``video_id`` (per-video learned intrinsics).
        source: the file or folder the video comes from (named in errors).
        frames: zero-argument callable → ordered iterable of :class:`FrameRef`
            (consecutive in time, already strided).
        crop: ``(source_height, source_width) -> CropBox`` kept of each frame.
        intrinsics: :class:`Intrinsics` of the source frames, None when unknown.
        centres: frame ids allowed as a triplet's middle frame; None = all.
        min_change: drop triplets where two consecutive frames differ by less
            than this mean absolute RGB difference ([0, 1] scale); 0 keeps all.
        extras: optional callable ``[StoredFrame] * 3 -> dict`` of further
            features (ground-truth depth).
    """

    video_id: str
    source: str
    frames: Callable[[], Iterable[FrameRef]]
    crop: Callable[[int, int], CropBox]
    intrinsics: Optional[Intrinsics] = None
    centres: Optional[frozenset] = None
    min_change: float = 0.0
    extras: Optional[Callable[[Sequence[StoredFrame]], dict]] = None


def _with_need(refs, centres):
    """Yields ``(ref, needed)``: whether a frame belongs to a wanted triplet (one-frame lookahead)."""
    if centres is None:
        for ref in refs:
            yield ref, True
        return
    previous, current = None, None
    for ref in refs:
        if current is not None:
            yield current, _in_wanted_triplet(previous, current, ref, centres)
        previous, current = current, ref
    if current is not None:
        yield current, _in_wanted_triplet(previous, current, None, centres)


def _in_wanted_triplet(previous, current, following, centres):
    return any(r is not None and r.frame_id in centres for r in (previous, current, following))


def video_triplets(video, height, width, workers):
    """Loads a video's needed frames in parallel and groups them into triplets.

    A frame that cannot be loaded, or whose size differs from the video's first
    frame, is returned as its :class:`BadInputError` in the triplet's slot.
    A video of fewer than three frames raises :class:`BadInputError`.

    Args:
        video: :class:`VideoSource`.
        height, width: stored frame size in pixels.
        workers: threads for loading/resizing/encoding.
    Yields:
        ``[StoredFrame or BadInputError] * 3`` for every wanted centre frame, in order.
    """

    def process(ref_and_need):
        ref, needed = ref_and_need
        if not needed:
            return ref, None
        try:
            return ref, store_frame(ref, video.crop, height, width)
        except BadInputError as error:
            return ref, error

    window = collections.deque(maxlen=F.FRAMES_PER_EXAMPLE)
    first, count = None, 0
    stream = _with_need(video.frames(), video.centres)
    for ref, stored in ordered_map(process, stream, workers):
        count += 1
        if isinstance(stored, StoredFrame):
            first = first or stored
            stored = _same_size_or_error(stored, first)
        window.append((ref, stored))
        if len(window) == F.FRAMES_PER_EXAMPLE and (
            video.centres is None or window[1][0].frame_id in video.centres
        ):
            yield [s for _, s in window]
    if count < F.FRAMES_PER_EXAMPLE:
        raise BadInputError(
            video.source,
            f"has {count} frame(s); a triplet needs {F.FRAMES_PER_EXAMPLE} consecutive frames",
        )


def _same_size_or_error(stored, first):
    if stored.source_size == first.source_size:
        return stored
    (h, w), (h0, w0) = stored.source_size, first.source_size
    return BadInputError(
        stored.name,
        f"frame is {w}x{h} pixels but {first.name} is {w0}x{h0}; "
        "all frames of a video must have one size",
    )


def triplet_example(video, triplet, height, width):
    """The stored example (features of :func:`triplet_features`) of three stored frames.

    Args:
        video: the :class:`VideoSource` the frames come from.
        triplet: three :class:`StoredFrame`.
        height, width: stored frame size in pixels.
    Returns:
        ``(key, example)``: key ``"<video_id>/<middle frame id>"``, example a dict.
    """
    if video.intrinsics is None:
        intrinsics, known = np.zeros(4, np.float32), False
    else:
        source_height, source_width = triplet[0].source_size
        intrinsics = stored_intrinsics(
            video.intrinsics.in_pixels(source_height, source_width),
            video.crop(source_height, source_width),
            height,
            width,
        )
        known = True
    example = {
        F.RGB: [frame.png for frame in triplet],
        F.INTRINSICS: intrinsics,
        F.INTRINSICS_KNOWN: known,
        F.VIDEO_ID: video.video_id,
        F.FRAME_IDS: [frame.frame_id for frame in triplet],
    }
    if video.extras is not None:
        example.update(video.extras(triplet))
    return f"{video.video_id}/{triplet[1].frame_id}", example


def is_static(triplet, min_change):
    """Whether two consecutive frames of a triplet differ by less than ``min_change``."""
    return min(
        mean_abs_difference(triplet[0].pixels, triplet[1].pixels),
        mean_abs_difference(triplet[1].pixels, triplet[2].pixels),
    ) < min_change


def video_examples(video, height, width, workers, on_bad):
    """All ``(key, example)`` pairs of one video.

    Args:
        video: :class:`VideoSource`.
        height, width: stored frame size in pixels.
        workers: threads for frame loading.
        on_bad: called with the :class:`BadInputError` of a triplet that has a bad
            frame (raise it to stop, or record it to skip the triplet).
    Yields:
        ``(key, example)`` for :meth:`TripletBuilder._generate_examples`.

    Bad input that spoils the whole video (unreadable file, too few frames) is
    passed to ``on_bad`` once and ends the video.
    """
    try:
        for triplet in video_triplets(video, height, width, workers):
            errors = [frame for frame in triplet if isinstance(frame, BadInputError)]
            if errors:
                on_bad(errors[0])
            elif not (video.min_change > 0 and is_static(triplet, video.min_change)):
                yield triplet_example(video, triplet, height, width)
    except BadInputError as error:
        on_bad(error)


# ----------------------------------------------------------------------------
# The builder base and its runner
# ----------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class TripletConfig(tfds.core.BuilderConfig):
    """Options shared by every converter: the stored frame size in pixels."""

    height: int = F.DEFAULT_HEIGHT
    width: int = F.DEFAULT_WIDTH


class BadInputLog:
    """Handles bad input: raise, or (``skip``) warn and count."""

    def __init__(self, skip):
        self.skip = skip
        self.files = set()
        self.skipped = 0

    def __call__(self, error):
        if not self.skip:
            raise error
        if error.path not in self.files:
            logging.warning("skipping bad input %s", error)
        self.files.add(error.path)
        self.skipped += 1

    def summary(self):
        """One line: how many bad inputs (triplets or videos) were skipped, in how many files."""
        return f"skipped {self.skipped} bad input(s) in {len(self.files)} file(s)"


class TripletBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the converters: raw files in ``manual_dir`` → triplet examples.

    Subclasses implement :meth:`_videos` (split name → list of
    :class:`VideoSource`) and may override :meth:`_feature_options` and
    :meth:`_examples` (for sources that are not videos).

    Args (beyond ``tfds.core.GeneratorBasedBuilder``'s):
        skip_bad: warn about and skip triplets with bad input instead of failing.
        workers: threads for frame decoding/resizing (default: all cores).
        input_path: raw input to read instead of ``manual_dir`` (may be a file).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIG_CLASS = TripletConfig
    # Where TFDS looks for metadata files; set so builders also work run as `__main__`.
    pkg_dir_path = tfds.core.Path(__file__).parent

    def __init__(self, *, skip_bad=False, workers=None, input_path=None, **kwargs):
        self.input_path = input_path
        self.bad_input = BadInputLog(skip_bad)
        self.workers = workers or os.cpu_count() or 1
        self._use_beam = False
        super().__init__(**kwargs)

    def _feature_options(self):
        """Keyword arguments of :func:`triplet_features` for this config."""
        return {}

    def _info(self):
        return self.dataset_info_from_configs(
            features=F.triplet_features(**self._feature_options()),
            description=(self.__doc__ or "").strip().splitlines()[0],
        )

    def _download_and_prepare(self, dl_manager, download_config):
        self._use_beam = (
            download_config.beam_runner is not None
            or download_config.beam_options is not None
        )
        super()._download_and_prepare(dl_manager, download_config)

    def _split_generators(self, dl_manager):
        root = pathlib.Path(self.input_path or dl_manager.manual_dir)
        splits = {name: items for name, items in self._videos(root).items() if items}
        if not splits:
            raise BadInputError(root, f"no input for {self.name} found here")
        return {name: self._generate_examples(items) for name, items in splits.items()}

    def _videos(self, root):
        """Split name → list of :class:`VideoSource` (or per-builder items) found under ``root``."""
        raise NotImplementedError

    def _examples(self, item):
        """``(key, example)`` pairs of one item of :meth:`_videos` (a video by default)."""
        return video_examples(
            item, self.builder_config.height, self.builder_config.width,
            self.workers, self.bad_input,
        )

    def _generate_examples(self, items):
        if self._use_beam:
            return _beam_examples(items, self._examples)
        return _local_examples(items, self._examples)


def _local_examples(items, examples):
    for item in items:
        yield from examples(item)


def _beam_examples(items, examples):
    """The Beam transform: one element per video, fanned out over workers."""
    beam = tfds.core.lazy_imports.apache_beam
    return beam.Create(list(items)) | beam.FlatMap(examples)


def dataset_dirs(data_dir):
    """Every written dataset (a folder holding ``dataset_info.json``) under ``data_dir``, sorted."""
    return sorted(p.parent for p in pathlib.Path(data_dir).rglob("dataset_info.json"))


def load_features(path):
    """The ``FeaturesDict`` stored with a TFDS-written dataset.

    Args:
        path: the dataset's folder (holding ``features.json``), a shard file in it,
            or a shard glob such as ``<dir>/kitti_triplets-train.tfrecord*``.
    Returns:
        ``tfds.features.FeaturesDict`` (decode shards with ``.deserialize_example``).
    Raises:
        BadInputError: when no ``features.json`` is found next to ``path``.
    """
    path = pathlib.Path(path)
    folder = path if path.is_dir() else path.parent
    if not (folder / "features.json").is_file():
        raise BadInputError(folder, "no features.json here; not a TFDS-written dataset")
    return tfds.features.FeatureConnector.from_config(str(folder))


def check_input_folder(path):
    """Raises :class:`BadInputError` unless ``path`` exists and is not an empty folder."""
    path = pathlib.Path(path)
    if not path.exists():
        raise BadInputError(path, "does not exist")
    if path.is_dir() and not any(path.iterdir()):
        raise BadInputError(path, "folder is empty")


def resolve_config(builder_cls, config):
    """A predefined config's name when ``config`` equals it, else ``config`` itself.

    TFDS refuses a custom config that reuses a predefined name; configs made from
    CLI flags often are the predefined ones.

    Raises:
        ValueError: ``config`` reuses a predefined name with other values.
    """
    predefined = builder_cls.builder_configs.get(config.name)
    if predefined is None:
        return config
    if dataclasses.asdict(predefined) != dataclasses.asdict(config):
        raise ValueError(f"config {config.name!r} differs from the predefined one of that name")
    return config.name


def build(builder_cls, config, input_path, output_dir, skip_bad=False, workers=None,
          beam_runner=None, **builder_kwargs):
    """Converts raw input into a TFDS dataset under ``output_dir``.

    Args:
        builder_cls: a :class:`TripletBuilder` subclass.
        config: its :class:`TripletConfig`.
        input_path: the raw data (becomes ``manual_dir``).
        output_dir: TFDS ``data_dir``; data lands in ``<output>/<name>/<config>/<version>``.
        skip_bad: warn and count bad input instead of failing.
        workers: threads for frame loading (default: all cores).
        beam_runner: optional Apache Beam runner (e.g. ``"DirectRunner"``).
        **builder_kwargs: further arguments of ``builder_cls``.
    Returns:
        The prepared builder (``builder.bad_input`` holds the skip counts).
    Raises:
        BadInputError: bad input without ``skip_bad``; nothing complete is written.
    """
    check_input_folder(input_path)
    input_path = pathlib.Path(input_path).resolve()
    builder = builder_cls(
        config=resolve_config(builder_cls, config), data_dir=str(output_dir),
        skip_bad=skip_bad, workers=workers, input_path=str(input_path), **builder_kwargs,
    )
    beam_options = None
    if beam_runner is not None:
        beam_options = tfds.core.lazy_imports.apache_beam.options.pipeline_options.PipelineOptions()
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=str(input_path if input_path.is_dir() else input_path.parent),
            beam_runner=beam_runner, beam_options=beam_options
        )
    )
    return builder


def summary_line(builder):
    """One line: where the data went and how many triplets each split holds."""
    counts = {name: split.num_examples for name, split in builder.info.splits.items()}
    split_text = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
    return (
        f"Wrote {sum(counts.values())} triplets ({split_text}) "
        f"of {builder.name}/{builder.builder_config.name} to {builder.data_dir}"
    )


def define_common_flags():
    """Defines the flags every converter CLI shares (call once, in ``__main__``)."""
    flags.DEFINE_string("input", None, "Raw data: folder (or file) to convert.", required=True)
    flags.DEFINE_string("output", None, "TFDS data_dir to write into.", required=True)
    flags.DEFINE_integer("height", F.DEFAULT_HEIGHT, "Stored frame height in pixels.")
    flags.DEFINE_integer("width", F.DEFAULT_WIDTH, "Stored frame width in pixels.")
    flags.DEFINE_bool("skip_bad", False, "Warn about and skip bad input instead of failing.")
    flags.DEFINE_integer("workers", None, "Threads for decoding/resizing (default: all cores).")
    flags.DEFINE_string("beam_runner", None, "Apache Beam runner, e.g. DirectRunner (optional).")


def run(builder_cls, config, values, **builder_kwargs):
    """Body of every converter CLI: build, then print the summary (and skip counts).

    Args:
        builder_cls: the converter's builder class.
        config: its config, made from the flags.
        values: parsed absl ``FLAGS``.
        **builder_kwargs: further arguments of ``builder_cls``.
    """
    try:
        builder = build(
            builder_cls, config, values.input, values.output,
            skip_bad=values.skip_bad, workers=values.workers,
            beam_runner=values.beam_runner, **builder_kwargs,
        )
    except BadInputError as error:
        raise SystemExit(f"error: {error}") from None
    print(summary_line(builder))
    if values.skip_bad:
        print(builder.bad_input.summary())
