"""SavedModel (and TFLite) export for serving, and in-process predictors.

    python -m depth_motion_tf.export --model_dir=runs/kitti [--checkpoint=...] [--output=...] \
        [--signatures=depth,motion] [--tflite] [--jit_compile] [--precision=bfloat16]

The SavedModel holds the networks only (the depth net, with ``motion`` also
the motion net and a per-video intrinsics table when the model has one): no
optimizer state, no training counters. Its signatures (any input size; frames
are resized to the model's resolution inside and outputs resized back where
they are images):
- ``depth``: ``image`` uint8 ``[B, H, W, 3]`` → ``depth`` float32 ``[B, H, W, 1]``.
- ``motion``: ``image1``, ``image2`` uint8 ``[B, H, W, 3]`` → ``rotation`` ``[B, 3]``
  (radians, R = Rx Ry Rz), ``translation`` ``[B, 3]`` (camera 1→2, depth units),
  ``residual_translation`` ``[B, h, w, 3]`` (at the model's resolution),
  and, for a model trained with ``--intrinsics=learned`` only, ``intrinsics``
  ``[B, 3, 3]`` (the motion net's prediction, pixels of the input size; with
  given or per-video intrinsics the motion net's head is never trained).
  The residual field is weighted by the motion-field burn-in of the exported
  step (zero for a checkpoint taken before the field trained).
- ``serving_default`` = ``depth`` (``motion`` in a motion-only export).
``--signatures=depth`` writes the depth network alone (about a quarter of the size).

``--jit_compile`` marks the depth network for XLA (20% faster on an AVX2 CPU,
12% slower on an AVX-512 one: README, Performance); the serving runtime must
allow XLA JIT (TensorFlow does; TF Serving only with
``--xla_cpu_compilation_enabled`` on CPU), so it is off by default.

``--precision=bfloat16`` computes the networks' convolutions in bfloat16
(Keras' mixed_bfloat16 policy; the weights stay float32 in the file, inputs,
normalisation statistics and outputs float32): on a CPU with AVX512_BF16/AMX
the batch-1 depth signature is about 1.28x faster, with depths within 0.5%
of the float32 export's (README, Performance). The default is float32.

``--tflite`` also writes ``depth.tflite`` inside the SavedModel folder: the depth
signature at the model's resolution, batch 1 (``image`` uint8 ``[1, h, w, 3]``
→ ``[1, h, w, 1]`` float32 depth; no resizing inside).
"""
import dataclasses
import os
from typing import Any, Callable, Optional

from absl import app, flags
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2,
)

from depth_motion_tf import cli, networks
from depth_motion_tf.config import build_model, load_config, precision_scope
from depth_motion_tf.errors import BadInputError

SIGNATURES = ("depth", "motion")
TFLITE_FILE = "depth.tflite"
_IMAGE = tf.TensorSpec([None, None, None, 3], tf.uint8)


def _to_model_input(images, height, width):
    """uint8 ``[B, H, W, 3]`` → float32 in [0, 1] at ``height`` x ``width``."""
    images = tf.image.convert_image_dtype(images, tf.float32)
    return tf.image.resize(images, [height, width], method="bilinear", antialias=True)


def checkpoint_step(model):
    """The optimizer step the weights of a compiled ``model`` were trained to (Python int)."""
    return int(model.optimizer.iterations.numpy())


class _Serving(tf.Module):
    """What ``tf.saved_model.save`` writes: the networks and the signature functions.

    The Keras model itself is not an attribute (it would bring the optimizer and
    its moments along): the functions close over it and call its inference
    methods, whose variables all belong to the networks tracked here.
    """

    def __init__(self, model, signatures=SIGNATURES, jit_compile=False):
        super().__init__()
        self.depth_net = model.depth_net
        if "depth" in signatures:
            self.depth = _depth_function(model, jit_compile)
        if "motion" in signatures:
            self.motion_net = model.motion_net
            if getattr(model, "field_net", None) is not None:
                self.field_net = model.field_net
            if getattr(model, "video_intrinsics", None) is not None:
                self.video_intrinsics = model.video_intrinsics
            self.motion = _motion_function(model, checkpoint_step(model))

    def signatures(self):
        """``{name: function}`` for ``tf.saved_model.save``, ``serving_default`` included."""
        functions = {name: getattr(self, name) for name in SIGNATURES if hasattr(self, name)}
        return {**functions, "serving_default": next(iter(functions.values()))}


def _depth_function(model, jit_compile):
    """The ``depth`` signature's function (see the module docstring)."""
    # The network alone: XLA cannot compile the antialiased resize around it.
    network = tf.function(lambda x: model(x), jit_compile=True) if jit_compile else model

    @tf.function(input_signature=[_IMAGE])
    def depth(image):
        size = tf.shape(image)[1:3]
        depth = network(_to_model_input(image, model.height, model.width))
        return {"depth": tf.image.resize(depth, size, method="bilinear")}

    return depth


def _motion_function(model, step):
    """The ``motion`` signature's function, the residual field weighted as at training ``step`` (int)."""
    h, w = model.height, model.width
    step = tf.constant(step, tf.int64)

    @tf.function(input_signature=[_IMAGE, _IMAGE])
    def motion(image1, image2):
        motion = model.predict_motion(
            _to_model_input(image1, h, w), _to_model_input(image2, h, w), step=step
        )
        size = tf.cast(tf.shape(image1)[1:3], tf.float32)
        scale = tf.stack([size[1] / w, size[0] / h, 1.0])
        outputs = {
            "rotation": motion["rotation"],
            "translation": motion["translation"],
            "residual_translation": motion["residual_translation"],
        }
        if model.intrinsics_mode == "learned":  # otherwise the head is untrained
            outputs["intrinsics"] = motion["intrinsics"] * scale[None, :, None]
        return outputs

    return motion


def export_saved_model(model, path, jit_compile=False, signatures=SIGNATURES):
    """Writes the networks of ``model`` as a SavedModel with the chosen signatures.

    Args:
        model: a built, compiled ``DepthMotionModel`` (its optimizer step is exported).
        path: output folder (replaced if it exists).
        jit_compile: compile the depth network with XLA when served (see the module docstring).
        signatures: a non-empty subset of :data:`SIGNATURES`.
    Returns:
        ``path``.
    """
    serving = _Serving(model, signatures, jit_compile)
    tmp = path.rstrip("/") + ".tmp"
    if tf.io.gfile.exists(tmp):
        tf.io.gfile.rmtree(tmp)
    tf.saved_model.save(serving, tmp, signatures=serving.signatures())
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)
    tf.io.gfile.rename(tmp, path)
    return path


def _fixed_size_depth_function(model):
    """The ``depth`` signature at the model's resolution, batch 1 (no resize: it is the identity)."""
    spec = tf.TensorSpec([1, model.height, model.width, 3], tf.uint8, name="image")

    @tf.function(input_signature=[spec])
    def depth(image):
        return {"depth": model(tf.image.convert_image_dtype(image, tf.float32))}

    return depth.get_concrete_function()


def export_tflite(model, path):
    """Writes the depth network as a TFLite flatbuffer at the model's resolution, batch 1.

    Input ``image`` uint8 ``[1, h, w, 3]``; output float32 depth ``[1, h, w, 1]``,
    where ``h, w`` = ``model.height, model.width``. The variables are frozen into
    constants first: left to the converter, Keras 3 variables stay TFLite
    resource variables that nothing initialises, and the model outputs zeros.
    Traced with ordinary convolutions only (TFLite has no ``ExtractImagePatches``).

    Returns:
        ``path``.
    """
    with networks.plain_convolutions():
        frozen = convert_variables_to_constants_v2(_fixed_size_depth_function(model))
    flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions([frozen], model).convert()
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(flatbuffer)
    return path


@dataclasses.dataclass
class Signatures:
    """The SavedModel's functions, from a SavedModel folder or a training run.

    Called with keywords, as a loaded SavedModel's signatures are:
    ``depth(image=)`` and ``motion(image1=, image2=)`` (uint8 tensors
    ``[B, H, W, 3]``), each returning the dict of tensors described in the
    module docstring.

    Attributes:
        depth, motion: the two functions (None when the SavedModel lacks one).
        source: what they were loaded from (for messages).
        owner: the loaded object that keeps their variables alive.
    """

    depth: Optional[Callable]
    motion: Optional[Callable]
    source: str
    owner: Any


def model_signatures(model, source="the Keras model"):
    """The SavedModel's ``depth`` and ``motion`` functions, in process, for a built ``DepthMotionModel``."""
    serving = _Serving(model)
    return Signatures(serving.depth, serving.motion, source, serving)


def load_saved_model(path, needed=SIGNATURES):
    """Loads a SavedModel folder and checks that it has the ``needed`` signatures.

    Returns:
        The loaded object (``.signatures`` holds the functions).
    Raises:
        BadInputError: naming ``path`` when it is missing, not a SavedModel, or lacks a signature.
    """
    path = str(path)
    if not tf.io.gfile.isdir(path):
        raise BadInputError(path, "SavedModel folder not found")
    if not tf.saved_model.contains_saved_model(path):
        raise BadInputError(path, "not a SavedModel folder (no saved_model.pb)")
    try:
        loaded = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise BadInputError(path, f"cannot be loaded as a SavedModel: {error}") from None
    missing = [name for name in needed if name not in loaded.signatures]
    if missing:
        raise BadInputError(
            path, f"SavedModel has no {' or '.join(missing)} signature (has "
            f"{sorted(loaded.signatures)}); export it with --signatures={','.join(SIGNATURES)}"
        )
    return loaded


def load_signatures(saved_model=None, model_dir=None, checkpoint=None):
    """The ``depth`` and ``motion`` functions of a SavedModel or of a training run's checkpoint.

    Args:
        saved_model: a SavedModel folder written by :func:`export_saved_model`.
        model_dir, checkpoint: or a training run (see :func:`load_model`); exactly
            one of ``saved_model`` and ``model_dir`` is given.
    Returns:
        :class:`Signatures`.
    Raises:
        BadInputError: naming the SavedModel when it cannot be loaded or lacks a signature.
    """
    if (saved_model is None) == (model_dir is None):
        raise ValueError("give exactly one of saved_model and model_dir")
    if model_dir is not None:
        return model_signatures(load_model(model_dir, checkpoint), str(model_dir))
    loaded = load_saved_model(saved_model)
    signatures = loaded.signatures
    return Signatures(signatures["depth"], signatures["motion"], str(saved_model), loaded)


def keras_depth_predictor(model, height, width, batch_size=8):
    """A numpy predictor around a Keras model (same resizing as the ``depth`` signature).

    Returns:
        ``predict(images)``: uint8 ``[N, H, W, 3]`` → float32 ``[N, H, W]`` depth.
    """

    @tf.function(reduce_retracing=True)
    def run(images):
        size = tf.shape(images)[1:3]
        depth = model(_to_model_input(images, height, width))
        return tf.image.resize(depth, size, method="bilinear")[..., 0]

    def predict(images):
        images = np.asarray(images)
        return np.concatenate(
            [run(images[i : i + batch_size]).numpy() for i in range(0, len(images), batch_size)]
        )

    return predict


PRECISIONS = {"float32": "off", "bfloat16": "mixed_bfloat16"}  # --precision → Keras policy


def load_model(model_dir, checkpoint=None, precision="float32"):
    """Rebuilds the model of a training run and restores a checkpoint.

    Args:
        model_dir: the run's ``--model_dir`` (holds ``config.json`` and ``checkpoints/``).
        checkpoint: a checkpoint path; the latest in ``model_dir`` when None.
        precision: the compute dtype of the networks, a key of :data:`PRECISIONS`
            (Keras' global dtype policy is restored afterwards).
    Returns:
        The restored ``DepthMotionModel``.
    Raises:
        FileNotFoundError: naming the folder when there is no config or checkpoint.
    """
    config = load_config(model_dir)
    checkpoint = checkpoint or tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    if not checkpoint:
        raise FileNotFoundError(f"{model_dir}/checkpoints: no checkpoint found")
    if not tf.io.gfile.exists(f"{checkpoint}.index"):
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint (no {checkpoint}.index)")
    with precision_scope(PRECISIONS[precision]):
        model = build_model(config, tf.distribute.get_strategy())
    tf.train.Checkpoint(model=model, optimizer=model.optimizer).restore(checkpoint).expect_partial()
    return model


def define_flags(flag_values=flags.FLAGS):
    """Declares the CLI flags on ``flag_values`` (not at import: the library is imported anywhere)."""
    fv = flag_values
    flags.DEFINE_string("model_dir", None, "Training run folder (config.json, checkpoints/).",
                        flag_values=fv)
    flags.DEFINE_string("checkpoint", None, "Checkpoint path (default: the latest in --model_dir).",
                        flag_values=fv)
    flags.DEFINE_string("output", None, "SavedModel folder (default: <model_dir>/saved_model).",
                        flag_values=fv)
    flags.DEFINE_list("signatures", list(SIGNATURES), "Signatures to export: depth,motion "
                      "(default), or depth alone (the depth network only, about a quarter "
                      "of the size).", flag_values=fv)
    flags.DEFINE_bool("jit_compile", False, "Compile the depth network with XLA when served "
                      "(the runtime must allow XLA JIT; faster on AVX2 CPUs, slower on AVX-512 "
                      "ones: README, Performance).", flag_values=fv)
    flags.DEFINE_enum("precision", "float32", list(PRECISIONS), "Compute dtype of the exported "
                      "networks: float32, or bfloat16 (faster on CPUs with AVX512_BF16; depths "
                      "within 0.5%).", flag_values=fv)
    flags.DEFINE_bool("tflite", False, f"Also write {TFLITE_FILE} (depth at the model's "
                      "resolution, batch 1) inside the SavedModel folder.", flag_values=fv)
    flags.mark_flag_as_required("model_dir", flag_values=fv)


def signatures_from_flag(values):
    """``--signatures`` as a tuple in :data:`SIGNATURES` order; raises app.UsageError when invalid."""
    unknown = sorted(set(values) - set(SIGNATURES))
    if unknown or not values:
        raise app.UsageError(
            f"--signatures={','.join(values)}: choose one or both of {', '.join(SIGNATURES)}"
        )
    return tuple(name for name in SIGNATURES if name in values)


def run(fv):
    """Exports as the parsed flags say and prints one summary line; returns the written paths."""
    signatures = signatures_from_flag(fv.signatures)
    if fv.tflite and fv.precision != "float32":
        raise app.UsageError("--tflite writes a float32 model; export it with --precision=float32")
    model = load_model(fv.model_dir, fv.checkpoint, fv.precision)
    output = fv.output or os.path.join(fv.model_dir, "saved_model")
    paths = [export_saved_model(model, output, fv.jit_compile, signatures)]
    written = [f"{output} (signatures: {', '.join(signatures)}; {fv.precision}; {cli.disk_size(output)})"]
    if fv.tflite:
        paths.append(export_tflite(model, os.path.join(output, TFLITE_FILE)))
        written.append(f"{paths[-1]} ({cli.disk_size(paths[-1])})")
    print(
        f"Exported step {checkpoint_step(model)} of {fv.model_dir} ({model.height}x{model.width}) "
        f"to {' and '.join(written)}"
    )
    return paths


def main(argv):
    del argv
    run(flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
