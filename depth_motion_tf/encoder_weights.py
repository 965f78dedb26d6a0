"""ImageNet ResNet-18 weights for the depth encoder: read, recognise, map (METHOD.md §2).

A weight file is recognised by its content, not its name:

- a TF1 checkpoint (its prefix, its ``.index`` file or its folder) in the
  reference's naming: the ``resnet-18-tensorflow`` ImageNet ResNet-18 that
  struct2depth and the authors' code restore (``conv1/conv/kernel``,
  ``conv1/bn/gamma``, ``conv3_1/shortcut/kernel``, ...), or a checkpoint of the
  reference's own training, whose depth network lives under ``depth_prediction/``;
- a ``.safetensors`` or PyTorch ``.pth`` ResNet-18 state dict in torchvision /
  timm naming (``conv1.weight``, ``layer1.0.bn1.bias``, ``layer2.0.downsample.0.weight``, ...);
  ``.pth`` needs torch, ``.safetensors`` only numpy;
- our own ``.npz`` / ``.h5`` dict (``conv1/kernel``, ``stage3_block1_norm2/gamma``, ...),
  which :func:`save_encoder_weights` writes.

:func:`encoder_name_table` lists how the 54 encoder weights are named in each.
Kernels become HWIO (torchvision's OIHW is transposed by (2, 3, 1, 0)); the
batch-norm scale and offset become the randomised layer norm's ``gamma`` and
``beta``, as the reference restores them. What has no counterpart is skipped
and reported: running statistics (the layer norm computes its own per image),
the classifier, the batch norm after torchvision's strided shortcut (the
reference's shortcut is a bare 1x1/2 conv), and training state. A missing,
unexpected or mis-shaped weight is one error naming the file and the weight,
raised before any variable is changed.

Input normalisation: like the reference, the depth network feeds ``2·rgb − 1``
to the encoder, although these weights were trained on ImageNet-normalised
input ``(rgb − mean) / std`` (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225).
We keep the reference's. The layer norm after ``conv1`` (no bias) removes
what differs between the two, up to about 1% away from the 3-pixel zero-padded
border: a per-channel offset, and a scale 1/std ≈ 4.4 against 2 that is nearly
the same factor (2.18 to 2.23) for the three channels.

Padding: Keras ``"same"`` with stride 2 pads ``conv1`` by (2, 3) on even sizes
where torchvision pads (3, 3): features shift by one input pixel, as in the
reference, which uses TF's ``SAME`` too. On odd sizes the two coincide.
"""
import collections
import dataclasses
import os
import pathlib
import re
import zipfile
from typing import Callable, Optional

import h5py
import numpy as np
from safetensors.numpy import load_file as load_safetensors
import tensorflow as tf

from depth_motion_tf.errors import BadInputError

NUM_STAGES = 4  # ResNet-18 stages conv2_x .. conv5_x (our stage2 .. stage5)
BLOCKS_PER_STAGE = 2
REFERENCE_SCOPE = "depth_prediction/"  # the reference's depth network in its own checkpoints

RUNNING_STATISTICS = "running statistics"
CLASSIFIER = "classifier (fc)"
SHORTCUT_NORM = "shortcut batch norm"
TRAINING_STATE = "training state"
DECODER = "decoder and depth scale"
OTHER_NETWORKS = "other networks"

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_OPCODE = b"\x80"  # torch.save's legacy (non-zip) format starts with a pickle


@dataclasses.dataclass(frozen=True)
class EncoderWeights:
    """What a weight file gives the encoder.

    Attributes:
        path: the file read.
        naming: e.g. ``"torchvision/timm naming"``.
        container: e.g. ``"safetensors"``, ``"TF checkpoint"``.
        arrays: our name → float32 array in our layout (kernels HWIO), every encoder weight.
        sources: our name → the file's name for it.
        skipped: kind of weight → sorted names in the file that have no counterpart.
    """

    path: str
    naming: str
    container: str
    arrays: dict
    sources: dict
    skipped: dict

    def skipped_summary(self):
        """One phrase: how many weights were skipped, by kind."""
        count = sum(len(names) for names in self.skipped.values())
        if not count:
            return "nothing skipped"
        kinds = ", ".join(f"{len(names)} {kind}" for kind, names in sorted(self.skipped.items()))
        return f"skipped {count} without a counterpart: {kinds}"

    def summary(self):
        """One line: how many weights came from which file, in which naming; what was skipped."""
        return (
            f"{len(self.arrays)} encoder weights from {self.path} "
            f"({self.naming}, {self.container}); {self.skipped_summary()}"
        )


_CONV_WEIGHTS = (("kernel", "weight"),)  # (ours and the reference's, torchvision's)
_NORM_WEIGHTS = (("gamma", "weight"), ("beta", "bias"))


def _layer_table():
    """``(ours, reference, torchvision, weights)`` for each encoder layer with weights."""
    layers = [
        ("conv1", "conv1/conv", "conv1", _CONV_WEIGHTS),
        ("norm1", "conv1/bn", "bn1", _NORM_WEIGHTS),
    ]
    for stage in range(2, 2 + NUM_STAGES):
        for block in range(1, BLOCKS_PER_STAGE + 1):
            ours, ref = f"stage{stage}_block{block}", f"conv{stage}_{block}"
            torch = f"layer{stage - 1}.{block - 1}"
            for k in (1, 2):
                layers += [
                    (f"{ours}_conv{k}", f"{ref}/conv_{k}", f"{torch}.conv{k}", _CONV_WEIGHTS),
                    (f"{ours}_norm{k}", f"{ref}/bn_{k}", f"{torch}.bn{k}", _NORM_WEIGHTS),
                ]
            if stage > 2 and block == 1:  # the strided block's 1x1/2 shortcut conv
                shortcut = f"{torch}.downsample.0"
                layers.append((f"{ours}_shortcut_conv", f"{ref}/shortcut", shortcut, _CONV_WEIGHTS))
    return layers


def encoder_name_table():
    """The encoder's weights in our naming, the reference's and torchvision's.

    Returns:
        List of 54 ``(ours, reference, torchvision)`` name triples, e.g.
        ``("stage3_block1_shortcut_conv/kernel", "conv3_1/shortcut/kernel",
        "layer2.0.downsample.0.weight")``. Conv kernels are ``kernel`` / ``kernel``
        / ``weight``; normalisation scale and offset ``gamma``, ``beta`` /
        ``gamma``, ``beta`` / ``weight``, ``bias``.
    """
    return [
        (f"{ours}/{weight}", f"{reference}/{weight}", f"{torchvision}.{torch_weight}")
        for ours, reference, torchvision, weights in _layer_table()
        for weight, torch_weight in weights
    ]


@dataclasses.dataclass(frozen=True)
class _Naming:
    """How one naming spells our weights, lays out kernels and what it has besides."""

    description: str
    names: dict  # our name → the file's name
    transpose_kernels: bool  # OIHW in the file
    skip_kind: Callable[[str], Optional[str]]  # a file's name → kind without counterpart, or None


def _reference_skip_kind(scope):
    def skip_kind(name):
        leaf = name.rsplit("/", 1)[-1]
        if name == "global_step" or re.search(r"Adam|Momentum|beta[12]_power", name):
            return TRAINING_STATE
        if not name.startswith(scope):
            return OTHER_NETWORKS
        if leaf in ("mu", "sigma", "moving_mean", "moving_variance"):
            return RUNNING_STATISTICS
        if name[len(scope):].startswith("logits/"):
            return CLASSIFIER
        if re.match(r"(upconv|iconv|disp)\d/|depth_scale$", name[len(scope):]):
            return DECODER
        return None

    return skip_kind


def _torchvision_skip_kind(name):
    if ".downsample.1." in name:
        return SHORTCUT_NORM
    if name.endswith((".running_mean", ".running_var", ".num_batches_tracked")):
        return RUNNING_STATISTICS
    if name.startswith("fc."):
        return CLASSIFIER
    return None


def _recognise_naming(names):
    """The naming of a set of weight names, or None if none fits."""
    table = encoder_name_table()
    if "conv1/kernel" in names:
        return _Naming("our naming", {o: o for o, _, _ in table}, False, lambda name: None)
    if "conv1.weight" in names:
        return _Naming(
            "torchvision/timm naming", {o: t for o, _, t in table}, True, _torchvision_skip_kind
        )
    for scope in ("", REFERENCE_SCOPE):
        if f"{scope}conv1/conv/kernel" in names:
            return _Naming(
                f"reference naming{', scope ' + scope if scope else ''}",
                {o: scope + r for o, r, _ in table}, False, _reference_skip_kind(scope),
            )
    return None


def _file_shape(naming, ours, shape):
    """The shape our weight ``ours`` of ``shape`` has in the file: tuple of ints."""
    if naming.transpose_kernels and ours.endswith("/kernel"):
        height, width, inputs, outputs = shape
        return (outputs, inputs, height, width)
    return tuple(shape)


def _to_ours(naming, ours, array):
    if naming.transpose_kernels and ours.endswith("/kernel"):
        array = np.transpose(array, (2, 3, 1, 0))  # OIHW → HWIO
    return np.ascontiguousarray(array, np.float32)


def _shape_problems(naming, arrays, shapes):
    """``"'name' has shape ..., expected ..."`` for each weight of the wrong shape."""
    problems = []
    for ours, shape in shapes.items():
        source = naming.names[ours]
        expected = _file_shape(naming, ours, shape)
        if source in arrays and tuple(arrays[source].shape) != expected:
            actual = tuple(arrays[source].shape)
            problems.append(f"{source!r} has shape {actual}, expected {expected}")
    return problems


def _leftovers(naming, names):
    """Sorts the file's names that no encoder weight takes into (skipped by kind, unexpected)."""
    skipped, unexpected = collections.defaultdict(list), []
    for name in sorted(names):
        kind = naming.skip_kind(name)
        (unexpected if kind is None else skipped[kind]).append(name)
    return dict(skipped), unexpected


def map_encoder_weights(arrays, shapes, path, container):
    """Maps a dict of arrays in any known naming onto the encoder's weights.

    Args:
        arrays: the file's name → numpy array.
        shapes: our name → shape (tuple of ints) of every encoder weight.
        path, container: the file and its kind, for the summary and the errors.
    Returns:
        :class:`EncoderWeights`.
    Raises:
        BadInputError: one line naming the file and every missing, mis-shaped
            or unexpected weight.
    """
    naming = _recognise_naming(arrays)
    if naming is None:
        raise BadInputError(
            path, f"{container} holds no ResNet-18 weights in a known naming (looked for "
            f"'conv1/kernel', 'conv1/conv/kernel' or 'conv1.weight'; "
            f"first names: {sorted(arrays)[:5]})"
        )
    sources = {ours: naming.names[ours] for ours in shapes}
    missing = sorted(name for name in sources.values() if name not in arrays)
    skipped, unexpected = _leftovers(naming, set(arrays) - set(sources.values()))
    problems = [f"missing {missing}"] if missing else []
    problems += _shape_problems(naming, arrays, shapes)
    problems += [f"unexpected {unexpected}"] if unexpected else []
    if problems:
        raise BadInputError(
            path, f"{container} in {naming.description} does not fit the ResNet-18 encoder: "
            f"{'; '.join(problems)}; no weight was changed"
        )
    arrays = {ours: _to_ours(naming, ours, arrays[source]) for ours, source in sources.items()}
    return EncoderWeights(str(path), naming.description, container, arrays, sources, skipped)


def _checkpoint_prefix(path):
    """The TF checkpoint ``path`` names (its prefix, .index/.data file or folder), or None."""
    if os.path.isdir(path):
        return tf.train.latest_checkpoint(path)
    prefix = re.sub(r"\.(index|data-\d+-of-\d+)$", "", str(path))
    return prefix if os.path.isfile(prefix + ".index") else None


def _read_checkpoint(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH"
    }


def _read_hdf5(path):
    arrays = {}
    with h5py.File(path, "r") as file:
        file.visititems(
            lambda name, item: arrays.__setitem__(name, item[()])
            if isinstance(item, h5py.Dataset)
            else None
        )
    return arrays


def _read_npz(path):
    with np.load(path) as file:
        return {name: file[name] for name in file.files}


def _read_torch(path):
    try:
        import torch
    except ImportError:
        raise BadInputError(
            path, "a PyTorch file needs torch, which is not installed; install torch, or "
            "convert it where torch is: safetensors.torch.save_file(torch.load(PATH), "
            "'resnet18.safetensors'), and pass the .safetensors file"
        ) from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    return {
        name: (tensor.float() if tensor.is_floating_point() else tensor).numpy()
        for name, tensor in state.items()
    }


def _is_safetensors(head, size):
    """safetensors: an 8-byte little-endian header length, then a JSON header."""
    header_length = int.from_bytes(head[:8], "little")
    return len(head) > 8 and head[8:9] == b"{" and 8 + header_length <= size


def _zip_kind(path):
    """torch.save's zip holds ``<name>/data.pkl``; numpy's .npz holds ``.npy`` files."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return "PyTorch" if any(name.endswith("data.pkl") for name in names) else "npz"


def read_weight_file(path):
    """Reads any weight file this module knows, recognised by its content.

    Args:
        path: a TF checkpoint (prefix, ``.index`` file or folder), or a
            ``.safetensors``, ``.pth``, ``.npz`` or ``.h5`` file (whatever its name).
    Returns:
        ``(container, arrays)``: a short description of the file kind, and its
        name → numpy array dict.
    Raises:
        BadInputError: the file does not exist, is of no known kind, or needs torch.
    """
    prefix = _checkpoint_prefix(path)
    if prefix:
        return "TF checkpoint", _read_checkpoint(prefix)
    if not os.path.isfile(path):
        raise BadInputError(path, "no weight file or TF checkpoint there")
    with open(path, "rb") as file:
        head = file.read(16)
    if head.startswith(_HDF5_MAGIC):
        return "HDF5", _read_hdf5(path)
    if head.startswith(_ZIP_MAGIC):
        kind = _zip_kind(path)
        return kind, _read_torch(path) if kind == "PyTorch" else _read_npz(path)
    if _is_safetensors(head, os.path.getsize(path)):
        return "safetensors", load_safetensors(path)
    if head.startswith(_PICKLE_OPCODE):
        return "PyTorch", _read_torch(path)
    raise BadInputError(
        path, "not a weight file this project reads (a TF checkpoint, .safetensors, "
        ".pth, .npz or .h5 ResNet-18)",
    )


def read_encoder_weights(path, shapes):
    """Reads and maps a weight file onto the encoder, without changing anything.

    Args:
        path: any file :func:`read_weight_file` reads.
        shapes: our name → shape of every encoder weight (``ResNet18Encoder.named_variables()``).
    Returns:
        :class:`EncoderWeights`.
    """
    container, arrays = read_weight_file(path)
    return map_encoder_weights(arrays, shapes, path, container)


def load_encoder_weights(variables, path):
    """Assigns the encoder's variables from a weight file, all or none.

    Args:
        variables: our name → Keras variable (``ResNet18Encoder.named_variables()``).
        path: any file :func:`read_weight_file` reads.
    Returns:
        :class:`EncoderWeights`, the mapping that was assigned.
    """
    weights = read_encoder_weights(path, {name: tuple(v.shape) for name, v in variables.items()})
    for name, variable in variables.items():
        variable.assign(weights.arrays[name].astype(variable.dtype))
    return weights


def write_weight_file(path, arrays):
    """Writes a dict name → array in our format, ``.npz`` or ``.h5`` (e.g. ``.weights.h5``)."""
    path = pathlib.Path(path)
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    elif path.suffix == ".h5":
        with h5py.File(path, "w") as file:
            for name, array in arrays.items():
                file[name] = array
    else:
        raise BadInputError(path, "unsupported output file type; use .npz or .weights.h5")


def save_encoder_weights(variables, path):
    """Writes the encoder's variables (our name → Keras variable) as :func:`write_weight_file`."""
    write_weight_file(path, {name: variable.numpy() for name, variable in variables.items()})
