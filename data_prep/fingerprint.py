"""What a written dataset was built from, and whether a rerun may reuse it.

TFDS reuses a finished ``<data_dir>/<name>/<config>/<version>`` folder whatever
the input was, so a converter rerun on other input into the same output would
silently keep the old data. Every build therefore records its *fingerprint*
in ``fingerprint.json`` beside ``dataset_info.json``:

- ``builder``, ``version``: the TFDS builder's name and version;
- ``flags``: the values of its builder config (the converter's flags, e.g.
  ``height``, ``resize``, ``split``) and of further options that change the
  data (e.g. the video converter's ``--intrinsics``);
- ``inputs``: per input folder (``input``, and e.g. KITTI's ``split_dir``) its
  ``root`` and ``files``, ``{relative path: [bytes, mtime_ns]}`` of the files
  the builder reads (roots themselves are not compared: moved input with the
  same files is the same input).

:func:`prepare` reuses a folder whose fingerprint matches, stops with
:class:`OutputMismatchError` (naming the folder and what differs) when it does
not, and with ``overwrite`` rebuilds whatever is there, atomically: the new
data is built in a temporary sibling folder (``.rebuild-<version>-<id>``) and
swapped in by two renames only once complete, so a failed or interrupted
rebuild leaves the old data in place (a crash between the two renames leaves
it in ``.rebuild-*/replaced``). Execution options (``--workers``,
``--skip_bad``, ``--beam_runner``) are not part of the fingerprint.
"""
import contextlib
import dataclasses
import fnmatch
import io
import json
import os
import pathlib
import uuid
from typing import Any, NamedTuple

import tensorflow_datasets as tfds

FINGERPRINT_FILE = "fingerprint.json"
_BASE_CONFIG_FIELDS = {field.name for field in dataclasses.fields(tfds.core.BuilderConfig)}


class OutputMismatchError(Exception):
    """An output folder holds data built from another fingerprint: ``"<folder>: <problem>"``."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


class Prepared(NamedTuple):
    """The result of :func:`prepare`: a builder reading the data in place; whether it was reused."""

    builder: Any  # tfds.core.DatasetBuilder
    reused: bool


def list_files(root, patterns=("*",)):
    """The files under ``root`` matching any of ``patterns``, with their size and modification time.

    Args:
        root: a folder (walked recursively, following links) or one file.
        patterns: ``fnmatch`` patterns on the path relative to ``root``
            (``/``-separated; ``*`` also matches across ``/``).
    Returns:
        ``{relative path: [bytes, mtime_ns]}`` (``None`` for a broken link);
        for a file ``root``, ``{file name: [bytes, mtime_ns]}``.
    """
    root = pathlib.Path(root)
    if root.is_file():
        return {root.name: _stat(root)}
    listing = {}
    for folder, _, names in os.walk(root, followlinks=True):
        for name in names:
            path = pathlib.Path(folder, name)
            relative = path.relative_to(root).as_posix()
            if any(fnmatch.fnmatchcase(relative, pattern) for pattern in patterns):
                listing[relative] = _stat(path)
    return listing


def _stat(path):
    try:
        status = path.stat()
    except OSError:
        return None
    return [status.st_size, status.st_mtime_ns]


def input_entry(root, patterns=("*",)):
    """One entry of a fingerprint's ``inputs``: ``{"root": str, "files": list_files(...)}``."""
    return {"root": str(root), "files": list_files(root, patterns)}


def describe(builder, flags=None, inputs=None):
    """The fingerprint of a build.

    Args:
        builder: the TFDS builder (its name, version and builder config are recorded).
        flags: further ``{name: JSON value}`` options that change the data.
        inputs: ``{label: input_entry(...)}`` of what the builder reads.
    Returns:
        JSON-serialisable dict (see the module docstring).
    """
    config = builder.builder_config
    config_values = {
        field.name: getattr(config, field.name)
        for field in dataclasses.fields(config)
        if field.name not in _BASE_CONFIG_FIELDS
    }
    return json.loads(json.dumps({
        "builder": builder.name,
        "version": str(builder.version),
        "flags": {**config_values, **(flags or {})},
        "inputs": inputs or {},
    }))


def differences(stored, current):
    """What differs between two fingerprints, in words.

    Returns:
        list of strings such as ``"flag resize: was area, now bilinear"`` or
        ``"input listing: 3 files added, 1 changed, e.g. added a/0003.png"``;
        empty when they match.
    """
    found = []
    for key in ("builder", "version"):
        if stored.get(key) != current.get(key):
            found.append(f"{key}: was {stored.get(key)}, now {current.get(key)}")
    old_flags, new_flags = stored.get("flags", {}), current.get("flags", {})
    for name in sorted(set(old_flags) | set(new_flags)):
        if old_flags.get(name) != new_flags.get(name):
            found.append(f"flag {name}: was {old_flags.get(name)}, now {new_flags.get(name)}")
    old_inputs, new_inputs = stored.get("inputs", {}), current.get("inputs", {})
    for label in sorted(set(old_inputs) | set(new_inputs)):
        change = _listing_change(
            old_inputs.get(label, {}).get("files", {}), new_inputs.get(label, {}).get("files", {})
        )
        if change:
            found.append(f"{label} listing: {change}")
    return found


def _listing_change(old, new):
    """``"3 files added, 1 changed, e.g. added a.png"``, or ``""`` when the listings match."""
    kinds = {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "changed": sorted(path for path in set(old) & set(new) if old[path] != new[path]),
    }
    found = [(kind, paths) for kind, paths in kinds.items() if paths]
    if not found:
        return ""
    counts = [f"{len(paths)} {kind}" for kind, paths in found]
    counts[0] = counts[0].replace(" ", " file " if len(found[0][1]) == 1 else " files ", 1)
    kind, paths = found[0]
    return f"{', '.join(counts)}, e.g. {kind} {paths[0]}"


def read(folder):
    """The fingerprint stored in a dataset's version folder, None when it has none."""
    path = tfds.core.Path(folder) / FINGERPRINT_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


def write(folder, fingerprint):
    """Stores ``fingerprint`` as ``<folder>/fingerprint.json``."""
    (tfds.core.Path(folder) / FINGERPRINT_FILE).write_text(
        json.dumps(fingerprint, indent=1, sort_keys=True)
    )


def check_reusable(folder, fingerprint):
    """Whether ``folder`` (a dataset's version folder) may be reused for a build of ``fingerprint``.

    Returns:
        True when it holds data of the same fingerprint; False when it does not exist.
    Raises:
        OutputMismatchError: naming the folder and what differs, when it holds other data.
    """
    folder = tfds.core.Path(folder)
    if not folder.exists():
        return False
    try:
        stored = read(folder)
    except ValueError as error:
        raise OutputMismatchError(
            folder, f"its {FINGERPRINT_FILE} is not readable JSON ({error}); "
            "--overwrite rebuilds it from this input",
        ) from None
    if stored is None:
        raise OutputMismatchError(
            folder, f"holds data without a {FINGERPRINT_FILE} (written before fingerprints were "
            "recorded, or by `tfds build`); --overwrite rebuilds it from this input",
        )
    found = differences(stored, fingerprint)
    if found:
        raise OutputMismatchError(
            folder, f"holds data built from other input or flags ({'; '.join(found)}); "
            "--overwrite rebuilds it from this input",
        )
    return True


def prepare(builder, fingerprint, make_builder, download_config, overwrite=False):
    """Makes ``builder``'s data exist, built from what ``fingerprint`` describes.

    Reuses a folder of the same fingerprint and refuses one of another
    fingerprint; with nothing there, or with ``overwrite``, builds in a
    temporary sibling of the version folder, writes ``fingerprint.json`` and
    swaps the result in. TFDS's own stdout lines ("Downloading and preparing
    dataset ...") are swallowed: callers print one summary line.

    Args:
        builder: the TFDS builder writing into the final ``data_dir``.
        fingerprint: :func:`describe` of this build.
        make_builder: ``data_dir -> builder`` making the same builder for another
            ``data_dir`` (the temporary one, and the final one to read back).
        download_config: ``tfds.download.DownloadConfig`` of the build.
        overwrite: rebuild and replace whatever the folder holds.
    Returns:
        :class:`Prepared`.
    Raises:
        OutputMismatchError: the folder holds data of another fingerprint, without ``overwrite``.
    """
    target = tfds.core.Path(builder.data_dir)
    if not overwrite and check_reusable(target, fingerprint):
        return Prepared(builder, reused=True)
    staging = target.parent / f".rebuild-{target.name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        fresh = make_builder(staging)
        with contextlib.redirect_stdout(io.StringIO()):
            fresh.download_and_prepare(download_config=download_config)
        write(fresh.data_dir, fingerprint)
        _swap_in(tfds.core.Path(fresh.data_dir), target, staging)
    finally:
        staging.rmtree(missing_ok=True)
    return Prepared(make_builder(builder.data_dir_root), reused=False)


def _swap_in(built, target, staging):
    """Renames the finished folder ``built`` to ``target``, an old ``target`` into ``staging``.

    Also moves TFDS's ``<name>/.config`` (the default config's name) into
    place when the final data_dir has none yet.
    """
    replaced = staging / "replaced"
    if target.exists():
        target.rename(replaced)
    try:
        built.rename(target)
    except BaseException:
        if replaced.exists():
            replaced.rename(target)
        raise
    config_meta = built.parent.parent / ".config"
    if config_meta.exists() and not (target.parent.parent / ".config").exists():
        config_meta.rename(target.parent.parent / ".config")
