"""The TFDS builder base of every converter, and :func:`build`, which runs one.

Every converter in ``data_prep`` is a :class:`TripletBuilder` (a
``tfds.core.GeneratorBasedBuilder``) that cuts monocular videos into triplets
of consecutive frames (``data_prep.triplets``), stored with the single schema
of :func:`depth_motion_tf.features.triplet_features`. Raw files come from
``manual_dir`` (``--input``). :func:`build` writes the dataset into
``<output>/<name>/<config>/<version>`` with a fingerprint of its input and
flags, reusing, refusing or atomically replacing what is already there
(``data_prep.fingerprint``). Bad input raises ``BadInputError`` naming the
file, or is counted and skipped (:class:`BadInputLog`).
"""
import dataclasses
import os
import pathlib

import tensorflow_datasets as tfds
import tqdm
from absl import logging

from data_prep import fingerprint as fingerprint_lib
from data_prep.frames import StoredFormat
from data_prep.triplets import video_examples
from depth_motion_tf import features as F
from depth_motion_tf.errors import BadInputError


@dataclasses.dataclass(eq=False)
class TripletConfig(tfds.core.BuilderConfig):
    """Options shared by every converter.

    Attributes:
        height, width: stored frame size in pixels.
        resize: ``"area"`` or ``"bilinear"`` (``data_prep.frames.RESIZE_METHODS``).
    """

    height: int = F.DEFAULT_HEIGHT
    width: int = F.DEFAULT_WIDTH
    resize: str = "area"


def resize_suffix(resize):
    """Config-name suffix of a resize method: empty for the default ``area``, else ``_<method>``."""
    return "" if resize == "area" else f"_{resize}"


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
    ``VideoSource``) and may override :meth:`_feature_options`,
    :meth:`_examples` (for sources that are not videos), :data:`INPUT_PATTERNS`,
    :meth:`_fingerprint_inputs` and :meth:`_fingerprint_flags`.

    Args (beyond ``tfds.core.GeneratorBasedBuilder``'s):
        bad_input: :class:`BadInputLog` (default: raise on bad input).
        workers: threads for frame decoding/resizing (default: all cores).
        input_path: raw input to read instead of ``manual_dir`` (may be a file).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIG_CLASS = TripletConfig
    # Files under the input that the builder reads (fnmatch on relative paths; see fingerprint).
    INPUT_PATTERNS = ("*",)
    # Where TFDS looks for metadata files; set so builders also work run as `__main__`.
    pkg_dir_path = tfds.core.Path(__file__).parent

    def __init__(self, *, bad_input=None, workers=None, input_path=None, **kwargs):
        self.input_path = input_path
        self.bad_input = bad_input or BadInputLog(skip=False)
        self.workers = workers or os.cpu_count() or 1
        self._use_beam = False
        super().__init__(**kwargs)

    def fingerprint(self):
        """What this build reads and how: ``data_prep.fingerprint.describe`` of it."""
        return fingerprint_lib.describe(
            self, flags=self._fingerprint_flags(), inputs=self._fingerprint_inputs()
        )

    def _fingerprint_inputs(self):
        """``{label: fingerprint.input_entry(...)}`` of what is read (default: INPUT_PATTERNS)."""
        return {"input": fingerprint_lib.input_entry(self.input_path, self.INPUT_PATTERNS)}

    def _fingerprint_flags(self):
        """Options beyond the builder config that change the data, ``{name: JSON value}``."""
        return {}

    def _feature_options(self):
        """Keyword arguments of :func:`triplet_features` for this config."""
        return {}

    def _stored_format(self):
        """The ``StoredFormat`` (size, resize method) of this config's frames."""
        config = self.builder_config
        return StoredFormat(config.height, config.width, config.resize)

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
        return {name: self._generate_examples(items, name) for name, items in splits.items()}

    def _videos(self, root):
        """Split name → list of ``VideoSource`` (or per-builder items) found under ``root``."""
        raise NotImplementedError

    def _examples(self, item):
        """``(key, example)`` pairs of one item of :meth:`_videos` (a video by default)."""
        return video_examples(item, self._stored_format(), self.workers, self.bad_input)

    def _generate_examples(self, items, split):
        if self._use_beam:
            return _beam_examples(items, self._examples)
        return _local_examples(items, self._examples, f"{self.name} {split}")


def _local_examples(items, examples, description):
    """The examples of every item, counted by a progress bar (on terminals only)."""
    with tqdm.tqdm(desc=description, unit=" triplets", disable=None) as bar:
        for item in items:
            for example in examples(item):
                bar.update()
                yield example


def _beam_examples(items, examples):
    """The Beam transform: one element per video, fanned out over workers."""
    beam = tfds.core.lazy_imports.apache_beam
    return beam.Create(list(items)) | beam.FlatMap(examples)


def check_input_folder(path):
    """Raises ``BadInputError`` unless ``path`` exists and is not an empty folder."""
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
          beam_runner=None, overwrite=False, **builder_kwargs):
    """Converts raw input into a TFDS dataset under ``output_dir``, or reuses it.

    Args:
        builder_cls: a :class:`TripletBuilder` subclass.
        config: its :class:`TripletConfig`.
        input_path: the raw data (becomes ``manual_dir``).
        output_dir: TFDS ``data_dir``; data lands in ``<output>/<name>/<config>/<version>``.
        skip_bad: warn and count bad input instead of failing.
        workers: threads for frame loading (default: all cores).
        beam_runner: optional Apache Beam runner (e.g. ``"DirectRunner"``).
        overwrite: rebuild (atomically) when the folder holds data of other input or flags.
        **builder_kwargs: further arguments of ``builder_cls``.
    Returns:
        ``fingerprint.Prepared``: the builder reading the data (its ``bad_input``
        holds the skip counts) and whether existing data was reused.
    Raises:
        BadInputError: bad input without ``skip_bad``; nothing is written or replaced.
        fingerprint.OutputMismatchError: the folder holds other data, without ``overwrite``.
    """
    check_input_folder(input_path)
    input_path = pathlib.Path(input_path).resolve()
    bad_input = BadInputLog(skip_bad)
    config = resolve_config(builder_cls, config)

    def make_builder(data_dir):
        return builder_cls(
            config=config, data_dir=str(data_dir), bad_input=bad_input, workers=workers,
            input_path=str(input_path), **builder_kwargs,
        )

    beam_options = None
    if beam_runner is not None:
        beam_options = tfds.core.lazy_imports.apache_beam.options.pipeline_options.PipelineOptions()
    download_config = tfds.download.DownloadConfig(
        manual_dir=str(input_path if input_path.is_dir() else input_path.parent),
        beam_runner=beam_runner, beam_options=beam_options,
    )
    builder = make_builder(output_dir)
    return fingerprint_lib.prepare(
        builder, builder.fingerprint(), make_builder, download_config, overwrite
    )
