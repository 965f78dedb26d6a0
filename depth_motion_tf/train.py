"""Trains depth and motion from monocular video.

    python -m depth_motion_tf.train --flagfile=configs/kitti.flags

flags → strategy → data → model → callbacks → fit → export. Outputs in
``--model_dir``: TensorBoard logs (``train/``), checkpoints (``checkpoints/``,
the last ``--keep_checkpoints``), and the exported SavedModel (``saved_model/``).
Re-running the same command after a kill resumes from the last checkpoint.
"""
import dataclasses
import functools
import json
import math
import os
import shutil
import tempfile
import time

from absl import app, flags, logging
import keras
import numpy as np
import tensorflow as tf

from depth_motion_tf import cli, data, export, geometry, visualize
from depth_motion_tf.model import (
    EGOMOTION_MODES, FIELD_INPUT_MODES, FIELD_NETWORK_MODES, INTRINSICS_MODES, RESIDUAL_FIELD_MODES,
    RIGID_MOTION_MODES,
)
from depth_motion_tf.config import TrainConfig, build_model, precision_scope, save_config
from depth_motion_tf.losses import LossWeights


LEARNING_CURVE_FILE = "learning_curve.png"

# ------------------------------------------------------------------ flags
_LOSS_NAMES = [f.name for f in dataclasses.fields(LossWeights)]
_HELP = {
    "data": "Training data: a data_prep dataset directory or a shard glob.",
    "model_dir": "Output folder: TensorBoard logs, checkpoints, SavedModel.",
    "split": "Split of --data to train on.",
    "eval_data": "Optional dataset with ground-truth depth, evaluated before and after training.",
    "eval_split": "Split of --eval_data.",
    "height": "Training image height in pixels (multiple of 32).",
    "width": "Training image width in pixels (multiple of 32).",
    "pair": "Pair of each triplet: first = (t-1, t) (reference), second = (t, t+1).",
    "crop": "Random crop/zoom augmentation (effective when stored frames are larger).",
    "flip": "Random left-right flip augmentation.",
    "cache": "Cache decoded pairs in memory (small datasets).",
    "seed": "Seed for shuffling, augmentation and initialisation (deterministic when set).",
    "batch_size": "Global batch size (split across replicas).",
    "num_steps": "Total training steps.",
    "learning_rate": "Adam learning rate.",
    "learning_rate_decay": "none (the reference's constant rate) or cosine (from --learning_rate "
    "down to a tenth of it at --num_steps; for short runs).",
    "learning_rate_warmup_steps": "Linear warm-up from 0 to --learning_rate over this many first "
    "steps (0: none, the reference's); the decay then runs over the remaining steps.",
    "motion_head_start_steps": "The depth network keeps its initial weights for this many first "
    "steps (its Adam moments still accumulate), so the motion network first finds the camera "
    "motion against the untrained depth (0: none, the reference's; README).",
    "clip_norm": "Global gradient-norm clipping.",
    "max_bad_steps": "Stop after this many consecutive steps with non-finite loss or gradients.",
    "jit_compile": "Compile the per-replica loss and gradient math with XLA.",
    "mixed_precision": "auto (mixed_bfloat16 on a CPU-only machine with AVX512_BF16 or AMX, else "
    "float32), off (float32), on (mixed_float16 on GPU, mixed_bfloat16 on CPU), mixed_float16 or "
    "mixed_bfloat16; losses stay float32.",
    "intrinsics": "given (from the data), learned (per pair), learned_per_video (one trainable K per video).",
    "num_videos": "Size of the per-video intrinsics table (video ids are hashed into it).",
    "rigid_motion": "Rigid-motion parametrisation: antisymmetric (1→2 averages the forward "
    "prediction and the inverse of the backward one, 2→1 is its exact inverse; breaks the "
    "frame-order symmetry, see README) or independent (the paper's: two predictions tied "
    "only by the cycle losses).",
    "egomotion": "learned (the motion net's) or given (the dataset's camera poses, metric: "
    "the reference's learn_egomotion=False; needs data with poses).",
    "num_scales": "Losses on an average-pooled pyramid of this many levels, level s weighted 1/2^s.",
    "scale_normalization": "Divide depths and translations by the step's mean depth in the losses.",
    "target_depth_stop_gradient": "No gradient through the warp's target depth (reference default).",
    "cascade": "Feed predicted depths to the motion net (8 input channels).",
    "motion_depth_normalization": "Feed the motion net the depths divided by the pair's mean "
    "depth and multiply its translations by it, so the rigid warp is exactly invariant to the "
    "scale of each pair's depth (needs --cascade; README).",
    "residual_field": "free (the paper's: the motion net's 3D field as it is) or unexplained (only "
    "its part that no depth change and no small camera motion can produce: across each pixel's "
    "epipolar plane, less its robust fit by a rigid motion; README).",
    "field_input": "What the field's network sees: frames (the paper's: the frame pair and depths) "
    "or rigid_warp (as well the other frame warped onto each source frame by the depth and the "
    "camera motion, so that what the camera motion leaves misaligned is in view; needs "
    "--field_network=separate; README).",
    "field_network": "Which network makes the residual field: shared (the paper's: the motion "
    "net's own field head) or separate (a second network of the motion net's architecture, its "
    "translation scale held; README).",
    "auto_mask": "Zero the residual field where its norm is below the mean.",
    "use_mask": "Multiply the residual field by dilated foreground masks from the data.",
    "foreground_dilation": "Dilation of the foreground masks in pixels.",
    "learn_depth_scale": "Learn a scalar depth scale.",
    "sparsity": "Motion sparsity regulariser: l1_2 (paper) or l1 (ablation).",
    "noise_rampup_steps": "Steps of the layer-norm noise ramp-up.",
    "field_burnin_steps": "The residual field is zero for the first half of these steps, then ramps to 1.",
    "encoder_weights": "Optional ImageNet ResNet-18 encoder weights file (see DepthNet.load_encoder_weights).",
    "summary_every": "TensorBoard summaries every N steps.",
    "checkpoint_every": "Checkpoint every N steps (one Keras epoch).",
    "keep_checkpoints": "Number of checkpoints kept.",
    "export": "Export a SavedModel to <model_dir>/saved_model at the end.",
    "verbose": "Keras progress: 0 silent, 1 bar, 2 one line per epoch.",
}
_LOSS_HELP = {
    "depth_variance": " The paper's model uses 0; the reference's loss defaults used 1e-6.",
}
_ENUMS = {
    "pair": list(data.PAIRS),
    "mixed_precision": ["auto", "off", "on", "mixed_float16", "mixed_bfloat16"],
    "intrinsics": list(INTRINSICS_MODES),
    "rigid_motion": list(RIGID_MOTION_MODES),
    "learning_rate_decay": ["none", "cosine"],
    "egomotion": list(EGOMOTION_MODES),
    "residual_field": list(RESIDUAL_FIELD_MODES),
    "field_input": list(FIELD_INPUT_MODES),
    "field_network": list(FIELD_NETWORK_MODES),
    "sparsity": ["l1_2", "l1"],
}


def define_flags():
    """Defines one absl flag per ``TrainConfig`` field (and one per loss weight)."""
    definers = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer, float: flags.DEFINE_float}
    for field in dataclasses.fields(TrainConfig):
        if field.name == "loss_weights":
            continue
        default = None if field.default is dataclasses.MISSING else field.default
        help_text = f"{_HELP[field.name]} (default {default})"
        if field.name in _ENUMS:
            flags.DEFINE_enum(field.name, default, _ENUMS[field.name], help_text)
        elif field.type is str:
            flags.DEFINE_string(field.name, default, help_text)
        else:
            definers[field.type](field.name, default, help_text)
    for name in _LOSS_NAMES:
        default = getattr(LossWeights(), name)
        flags.DEFINE_float(
            f"{name}_weight", default,
            f"Weight of the {name} loss (default {default}).{_LOSS_HELP.get(name, '')}",
        )


def config_from_flags(values):
    """A ``TrainConfig`` from parsed absl flag values."""
    kwargs = {
        f.name: values[f.name].value
        for f in dataclasses.fields(TrainConfig)
        if f.name != "loss_weights"
    }
    weights = LossWeights(**{n: values[f"{n}_weight"].value for n in _LOSS_NAMES})
    return TrainConfig(loss_weights=weights, **kwargs)


# ------------------------------------------------------------------ pieces
def make_strategy():
    """MultiWorkerMirroredStrategy when TF_CONFIG names several workers, else MirroredStrategy."""
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if len(cluster.get("worker", [])) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.MirroredStrategy()


def distribute_by_data(dataset, strategy):
    """Each worker of a multi-worker cluster keeps every N-th batch (works with any shard count)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def validate(config, replicas):
    """Raises ValueError for flag combinations that cannot work with ``replicas`` replicas.

    Touches no TensorFlow runtime state: a multi-worker strategy must be created first.
    """
    if config.height % 32 or config.width % 32:
        raise ValueError(f"--height and --width must be multiples of 32, got {config.height}x{config.width}")
    if config.num_scales < 1 or min(config.height, config.width) >> (config.num_scales - 1) < 8:
        raise ValueError(f"--num_scales={config.num_scales} must be ≥ 1 and leave levels of ≥ 8 pixels")
    if config.checkpoint_every <= 0 or config.summary_every <= 0:
        raise ValueError("--checkpoint_every and --summary_every must be positive")
    if config.num_steps % config.checkpoint_every:
        raise ValueError(
            f"--num_steps={config.num_steps} must be a multiple of --checkpoint_every="
            f"{config.checkpoint_every} (training runs whole epochs of that many steps)"
        )
    if config.batch_size < 1:
        raise ValueError(f"--batch_size={config.batch_size}: must be at least 1")
    if config.batch_size % replicas:
        raise ValueError(f"--batch_size={config.batch_size}: must be divisible by the {replicas} replicas")


def check_data_fits(dataset, config):
    """Raises ValueError when the data lacks what the flags ask for (masks, depth, poses, known intrinsics)."""
    if config.use_mask and "mask" not in dataset.element_spec:
        raise ValueError(f"{config.data}: --use_mask needs foreground masks, the data has none")
    if config.loss_weights.depth_supervision > 0 and "depth" not in dataset.element_spec:
        raise ValueError(
            f"{config.data}: --depth_supervision_weight needs ground-truth depth, the data has none"
        )
    if config.egomotion == "given" and "rotation" not in dataset.element_spec:
        raise ValueError(
            f"{config.data}: --egomotion=given needs camera poses (camera_to_world), the data has none"
        )
    if config.intrinsics == "given":
        first = next(iter(dataset.take(1)))
        if not bool(tf.reduce_all(first["intrinsics_known"])):
            raise ValueError(
                f"{config.data}: intrinsics are unknown for some examples; train with "
                "--intrinsics=learned or --intrinsics=learned_per_video"
            )


class CheckpointEveryEpoch(keras.callbacks.Callback):
    """Saves model + optimizer with ``tf.train.CheckpointManager`` at every epoch end."""

    def __init__(self, manager):
        super().__init__()
        self.manager = manager

    def on_epoch_end(self, epoch, logs=None):
        self.manager.save(checkpoint_number=int(self.model.optimizer.iterations.numpy()))


class StopOnBadSteps(keras.callbacks.Callback):
    """Stops training with a clear error after ``limit`` consecutive non-finite steps."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit

    def on_train_batch_end(self, batch, logs=None):
        bad = int(self.model.consecutive_bad_steps.numpy())
        if bad >= self.limit:
            raise RuntimeError(
                f"{bad} consecutive training steps had a non-finite loss or gradient "
                "(no update was applied); lower --learning_rate, check the data, or "
                "raise --max_bad_steps. The last good checkpoint is kept."
            )


def depth_evaluator(model, config):
    """``evaluate()`` → depth metrics (summary dict) of ``model`` on ``config.eval_data``'s ground truth.

    The predictor is traced once, so evaluating at every checkpoint costs only the
    predictions. The result is kept for the optimizer step it was computed at: the
    end-of-run report reuses the last checkpoint's evaluation instead of predicting again.
    """
    from depth_motion_tf import evaluate, ground_truth

    samples = ground_truth.tfds_samples(config.eval_data, config.eval_split)
    predict = export.keras_depth_predictor(model, config.height, config.width)

    @functools.lru_cache(maxsize=1)
    def evaluate_at(step):
        del step  # the cache key: the model's weights change only with the step
        return evaluate.evaluate_depth(predict, samples).summary

    return lambda: evaluate_at(int(model.optimizer.iterations.numpy()))


def _ordered_pairs(dataset_dir, split):
    """The first pair of every triplet, grouped by video in frame order, as numpy.

    Returns:
        dict ``video_id → list of examples`` (``rgb`` ``[2, H, W, 3]`` uint8,
        ``camera_to_world`` ``[2, 4, 4]``, optional ``mask`` ``[2, H, W, 1]``), or
        None when the split stores no poses.
    """
    import tensorflow_datasets as tfds

    from depth_motion_tf import features as F

    builder = tfds.builder_from_directory(data.find_shards(dataset_dir, split)[1])
    if F.CAMERA_TO_WORLD not in builder.info.features:
        return None
    videos = {}
    for example in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
        videos.setdefault(example[F.VIDEO_ID].decode(), []).append(example)
    order = lambda example: example[F.FRAME_IDS][0].decode()  # noqa: E731
    return {video: sorted(examples, key=order) for video, examples in sorted(videos.items())}


def evaluate_motion_on(model, config, batch_size=8):
    """What the motion net learned, on the eval split's ground-truth poses and masks.

    Pairs ``(t-1, t)`` of every test triplet, in both orders, at the model's
    resolution, with the burn-in weight of the model's current step.

    Returns:
        None without poses; else dict ``egomotion`` (``"1→2"``/``"2→1"`` →
        :func:`metrics.translation_agreement`), ``ate`` (mean and count of the
        5-frame ATE over every video's chained 1→2 motions, metres after a
        least-squares scale), and when the data has masks ``field_share`` (the
        share of the residual field's magnitude inside the moving-object masks,
        dilated by ``foreground_dilation``) with ``mask_share`` (their area
        share: the chance level), or None for a zero field (burn-in), and
        ``field_size`` (:func:`_field_size`); with masks and depth,
        ``depth_by_region`` (:func:`_depth_by_region`).
    """
    from depth_motion_tf import features as F
    from depth_motion_tf import metrics, odometry

    videos = _ordered_pairs(config.eval_data, config.eval_split)
    if videos is None:
        return None
    examples = [example for video in videos.values() for example in video]
    frames = np.stack([e[F.RGB][:2] for e in examples])  # [N, 2, h, w, 3] uint8
    rgb = tf.image.resize(
        tf.image.convert_image_dtype(frames.reshape((-1,) + frames.shape[2:]), tf.float32),
        [config.height, config.width], method="area",
    )
    rgb = tf.reshape(rgb, [len(examples), 2, config.height, config.width, 3])
    step = model.optimizer.iterations
    outputs = {"1→2": [], "2→1": [], "rotation": [], "field": []}
    for start in range(0, len(examples), batch_size):
        first, second = rgb[start : start + batch_size, 0], rgb[start : start + batch_size, 1]
        forward = model.predict_motion(first, second, step=step)
        outputs["1→2"].append(forward["translation"].numpy())
        outputs["2→1"].append(model.predict_motion(second, first, step=step)["translation"].numpy())
        outputs["field"].append(forward["residual_translation"].numpy())
        outputs["rotation"].append(forward["rotation"].numpy())
    predicted = {name: np.concatenate(value) for name, value in outputs.items()}
    poses = np.stack([e[F.CAMERA_TO_WORLD][:2] for e in examples])
    rotation, translation = geometry.relative_motion(poses[:, 0], poses[:, 1])
    _, inverse = geometry.invert_motion(rotation, translation)
    result = {"egomotion": {
        "1→2": metrics.translation_agreement(predicted["1→2"], translation.numpy()),
        "2→1": metrics.translation_agreement(predicted["2→1"], inverse.numpy()),
    }}
    matrices = odometry.motion_matrices(np.concatenate([predicted["rotation"], predicted["1→2"]], -1))
    errors, start = [], 0
    for video in videos.values():
        gt_poses = np.stack([e[F.CAMERA_TO_WORLD][0] for e in video]).astype(np.float64)
        if len(video) >= odometry.SNIPPET_LENGTH:
            errors.extend(odometry.snippet_ates(gt_poses, matrices[start : start + len(video) - 1]))
        start += len(video)
    result["ate"] = {"mean": float(np.mean(errors)) if errors else float("nan"), "snippets": len(errors)}
    if F.MASK in examples[0]:
        result.update(_field_share(predicted["field"], predicted["1→2"], examples, config))
    if F.MASK in examples[0] and F.DEPTH in examples[0]:
        result["depth_by_region"] = _depth_by_region(model, frames[:, 0], examples, config)
    return result


def _depth_by_region(model, images, examples, config):
    """Frame 1's depth abs_rel on the moving objects and elsewhere (:func:`metrics.region_abs_rel`).

    Args:
        images: ``[N, h, w, 3]`` uint8 frame 1 of every pair (stored size).
        examples: the pairs' examples (``depth`` and ``mask`` at the stored size).
    Returns:
        dict ``moving`` / ``static``: means over the images that have such
        pixels (None when none has any).
    """
    from depth_motion_tf import features as F
    from depth_motion_tf import metrics

    predictions = export.keras_depth_predictor(model, config.height, config.width)(images)
    sides = [
        metrics.region_abs_rel(F.decode_depth(e[F.DEPTH][0][..., 0]).numpy(), prediction,
                               e[F.MASK][0][..., 0] > 127, name=e[F.FRAME_IDS][0].decode())
        for e, prediction in zip(examples, predictions)
    ]
    means = [[value for value in side if value is not None] for side in zip(*sides)]
    return {name: float(np.mean(values)) if values else None
            for name, values in zip(("moving", "static"), means)}


def _field_share(field, translation, examples, config):
    """``field_share``, ``mask_share`` and ``field_size`` of :func:`evaluate_motion_on` (frame 1's masks).

    Args:
        field: ``[N, H, W, 3]`` the residual field 1→2 of every pair.
        translation: ``[N, 3]`` the camera translation 1→2 of every pair.
    """
    from depth_motion_tf import features as F

    masks = np.stack([e[F.MASK][0] for e in examples]).astype(np.float32) / 255.0
    masks = tf.image.resize(masks, [config.height, config.width], method="area").numpy() > 0.5
    size = 2 * config.foreground_dilation + 1
    dilated = tf.nn.max_pool2d(masks.astype(np.float32), size, 1, "SAME").numpy()[..., 0] > 0
    magnitude = np.linalg.norm(field, axis=-1)
    total = magnitude.sum()
    return {
        "field_share": float(magnitude[dilated].sum() / total) if total > 0 else None,
        "mask_share": float(dilated.mean()),
        "field_size": _field_size(magnitude, np.linalg.norm(translation, axis=-1), dilated),
    }


def _field_size(magnitude, translation_norm, inside):
    """The field's mean size over its pair's camera translation, inside the masks and elsewhere.

    Args:
        magnitude: ``[N, H, W]`` the field's norm per pixel.
        translation_norm: ``[N]`` the camera translation's norm per pair.
        inside: ``[N, H, W]`` bool, the dilated moving-object masks.
    Returns:
        dict ``moving`` / ``static``: mean of ``|T_res| / |t|`` over those pixels (None where there
        are none), pairs with a zero camera translation left out.
    """
    moved = translation_norm > 0
    relative = magnitude[moved] / translation_norm[moved, None, None]
    regions = {"moving": inside[moved], "static": ~inside[moved]}
    return {name: float(relative[region].mean()) if region.any() else None
            for name, region in regions.items()}


class LearningCurve(keras.callbacks.Callback):
    """Test abs_rel at every epoch end (every ``checkpoint_every`` steps), to TensorBoard and a PNG.

    ``history`` holds ``(step, abs_rel)``; the PNG (``path``) is rewritten at each
    evaluation, with the constant-depth baseline as a dashed line.
    """

    def __init__(self, evaluate_fn, path, writer, baseline=None):
        """
        Args:
            evaluate_fn: ``() → metric summary dict`` (with ``abs_rel``) of the model.
            path: the ``.png`` to write; ``(step, abs_rel)`` pairs are kept beside
                it as ``.json`` so that a resumed run continues the curve.
            writer: TensorBoard summary writer (``eval/abs_rel``).
            baseline: constant-depth abs_rel, drawn dashed.
        """
        super().__init__()
        self.evaluate_fn, self.path, self.writer, self.baseline = evaluate_fn, path, writer, baseline
        self._json = os.path.splitext(path)[0] + ".json"
        self.history = []
        if tf.io.gfile.exists(self._json):
            with tf.io.gfile.GFile(self._json) as f:
                self.history = [tuple(point) for point in json.load(f)]

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        abs_rel = self.evaluate_fn()["abs_rel"]
        self.history = [p for p in self.history if p[0] < step] + [(step, abs_rel)]
        with self.writer.as_default():
            tf.summary.scalar("eval/abs_rel", abs_rel, step=step)
        with tf.io.gfile.GFile(self._json, "w") as f:
            json.dump(self.history, f)
        steps, values = zip(*self.history)
        visualize.plot_learning_curve(steps, values, self.path, self.baseline)


def evaluate_constant_depth(config):
    """The same metrics for a constant-depth prediction: the floor a model must beat."""
    from depth_motion_tf import evaluate, ground_truth

    samples = ground_truth.tfds_samples(config.eval_data, config.eval_split)
    constant = lambda images: np.ones(np.shape(images)[:3], np.float32)  # noqa: E731
    return evaluate.evaluate_depth(constant, samples).summary


# ------------------------------------------------------------------ the run
def train(config):
    """Runs (or resumes) a training run.

    Returns:
        dict: ``step``, ``loss`` (final mean total loss of the last epoch),
        ``checkpoint_dir``, ``saved_model`` (path or None), and when
        ``eval_data`` is set the metric summaries ``metrics_constant`` (a
        constant-depth prediction), ``metrics_before`` and ``metrics_after``,
        ``motion`` (:func:`evaluate_motion_on`) and ``learning_curve``
        (the PNG of test abs_rel against step).
    Keras' global dtype policy is ``config.mixed_precision``'s during the run
    and restored afterwards.
    """
    with precision_scope(config.mixed_precision):
        return _train(config)


def resume_or_initialise(checkpoint, checkpoint_dir, encoder_weights=None):
    """Restores the latest checkpoint of a run, or starts a new one from ``encoder_weights``.

    Only a new run reads the encoder file: a resumed run, evaluation and export
    take every weight from the checkpoint, so the file may be gone by then.
    Prints one line saying which happened (nothing for a new run without weights).

    Args:
        checkpoint: ``tf.train.Checkpoint`` with ``model`` (a built
            ``DepthMotionModel``) and ``optimizer``.
        checkpoint_dir: the run's ``checkpoints`` folder (the chief's).
        encoder_weights: optional ImageNet ResNet-18 file (``--encoder_weights``).
    """
    latest = tf.train.latest_checkpoint(checkpoint_dir)  # the chief's, on a shared filesystem
    model = checkpoint.model
    if latest:
        checkpoint.restore(latest).expect_partial()
        print(f"Resumed from {latest} at step {int(model.optimizer.iterations.numpy())}")
    elif encoder_weights:
        weights = model.depth_net.load_encoder_weights(encoder_weights)
        print(f"Initialised the depth encoder with {weights.summary()}")


def _train(config):
    """:func:`train` under the run's dtype policy."""
    strategy = make_strategy()
    validate(config, strategy.num_replicas_in_sync)
    dataset = data.make_dataset(
        config.data,
        config.split,
        config.batch_size,
        config.height,
        config.width,
        pair=config.pair,
        crop=config.crop,
        flip=config.flip,
        seed=config.seed,
        num_video_buckets=config.num_videos,
        cache=config.cache,
        depth=config.loss_weights.depth_supervision > 0,
    )
    check_data_fits(dataset, config)
    available = data.split_size(config.data, config.split)
    if available is not None and available < config.batch_size:
        raise ValueError(
            f"{config.data}: split {config.split!r} holds {available} triplets, fewer than "
            f"--batch_size={config.batch_size}"
        )
    model = build_model(config, strategy)
    chief = strategy.extended.should_checkpoint  # False on non-chief workers of a cluster
    # Every worker takes part in checkpoint and SavedModel writes; only the chief's are kept.
    scratch = None if chief else tempfile.mkdtemp(prefix="depth_motion_worker_")
    output_dir = config.model_dir if chief else scratch
    if chief:
        save_config(config, config.model_dir)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    checkpoint_dir = os.path.join(config.model_dir, "checkpoints")
    resume_or_initialise(checkpoint, checkpoint_dir, config.encoder_weights)
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(output_dir, "checkpoints"), config.keep_checkpoints
    )
    result = {"checkpoint_dir": checkpoint_dir, "saved_model": None}
    if config.eval_data:
        result["metrics_constant"] = evaluate_constant_depth(config)
        evaluate_depth = depth_evaluator(model, config)
        result["metrics_before"] = evaluate_depth()
    step = int(model.optimizer.iterations.numpy())
    writer = (tf.summary.create_file_writer(os.path.join(config.model_dir, "train")) if chief
              else tf.summary.create_noop_writer())
    epochs = math.ceil(config.num_steps / config.checkpoint_every)
    history = None
    callbacks = [CheckpointEveryEpoch(manager), StopOnBadSteps(config.max_bad_steps)]
    if config.eval_data and chief:
        result["learning_curve"] = os.path.join(config.model_dir, LEARNING_CURVE_FILE)
        callbacks.append(LearningCurve(
            evaluate_depth, result["learning_curve"], writer,
            baseline=result["metrics_constant"]["abs_rel"],
        ))
    if step < config.num_steps:
        with writer.as_default():
            history = model.fit(
                distribute_by_data(dataset, strategy),
                epochs=epochs,
                initial_epoch=step // config.checkpoint_every,
                steps_per_epoch=config.checkpoint_every,
                callbacks=callbacks,
                verbose=config.verbose,
            )
        writer.flush()
    result["step"] = int(model.optimizer.iterations.numpy())
    result["loss"] = history.history["total"][-1] if history else float("nan")
    if config.eval_data:
        result["metrics_after"] = evaluate_depth()
        result["motion"] = evaluate_motion_on(model, config)
    if config.export and chief:
        # Served in float32 whatever the training precision: a mixed-precision run's last checkpoint, rebuilt.
        served = model if model.compute_dtype == "float32" else export.load_model(config.model_dir)
        saved_model = export.export_saved_model(served, os.path.join(config.model_dir, "saved_model"))
        result["saved_model"] = saved_model
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


# ------------------------------------------------------------------ CLI
def expected_replicas():
    """The replicas :func:`make_strategy` will make: the local GPUs (or the CPU) times TF_CONFIG's workers.

    Read without initialising TensorFlow's runtime, which a multi-worker strategy
    must be created before.
    """
    workers = len(json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {}).get("worker", []))
    return max(workers, 1) * max(len(tf.config.list_physical_devices("GPU")), 1)


def check_flags(config):
    """Raises app.UsageError for flags that cannot work, before anything is built or read."""
    try:
        validate(config, expected_replicas())
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    cli.check_paths(config, ["data", "eval_data"])  # --encoder_weights may be a checkpoint prefix


def print_motion_report(motion):
    """Prints :func:`evaluate_motion_on`'s result (nothing when the data has no poses)."""
    if not motion:
        return
    for order, agreement in motion["egomotion"].items():
        print(
            f"Ego-motion {order} against the ground-truth poses: translation direction cosine "
            f"{agreement['cosine']:.3f}, magnitude error {agreement['magnitude_error']:.3f} "
            "after one global scale"
        )
    print(f"5-frame ATE: {motion['ate']['mean']:.4f} m over {motion['ate']['snippets']} snippets")
    if "mask_share" in motion:
        share = motion["field_share"]
        print(
            "Residual motion field: "
            + ("zero (still in its burn-in)" if share is None else
               f"{100 * share:.1f}% of its magnitude inside the dilated moving-object masks")
            + f" (the masks cover {100 * motion['mask_share']:.1f}% of the pixels: chance)"
        )
        if share is not None:
            moving, static = ("none" if v is None else f"{100 * v:.2f}%"
                              for v in motion["field_size"].values())
            print(f"Residual motion field over the camera translation: {moving} on the dilated "
                  f"moving-object masks, {static} elsewhere (mean per pixel)")
    if motion.get("depth_by_region"):
        regions = motion["depth_by_region"]
        moving, static = ("none" if v is None else f"{v:.3f}" for v in regions.values())
        print(f"Depth abs_rel on the moving objects: {moving}, elsewhere: {static} "
              "(frame 1 of the pairs, each median-scaled over the whole image)")


def main(argv):
    del argv
    logging.set_verbosity(logging.ERROR)  # TFDS' info and deprecation chatter
    config = config_from_flags(flags.FLAGS)
    check_flags(config)
    started = time.time()
    result = train(config)
    if config.eval_data:
        from depth_motion_tf import evaluate

        for title, key in (
            ("constant depth (the floor)", "metrics_constant"),
            ("before training", "metrics_before"),
            ("after training", "metrics_after"),
        ):
            print(f"Depth on {config.eval_data} [{config.eval_split}], {title}:")
            print(evaluate.format_report(result[key]))
        print_motion_report(result["motion"])
        if result.get("learning_curve"):
            print(f"Learning curve (test abs_rel against step): {result['learning_curve']}")
    print(
        f"Trained to step {result['step']} in {time.time() - started:.0f} s, final loss "
        f"{result['loss']:.4f}. TensorBoard: tensorboard --logdir {config.model_dir}; "
        f"checkpoints: {result['checkpoint_dir']}"
        + (f"; SavedModel: {result['saved_model']}" if result["saved_model"] else "")
        + f"; {cli.disk_size(config.model_dir)} on disk in {config.model_dir}"
    )


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["data", "model_dir"])
    cli.run(main)
