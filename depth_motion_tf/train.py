"""Trains depth and motion from monocular video.

    python -m depth_motion_tf.train --flagfile=configs/kitti.flags

flags → strategy → data → model → callbacks → fit → export. Outputs in
``--model_dir``: TensorBoard logs (``train/``), checkpoints (``checkpoints/``,
the last ``--keep_checkpoints``), and the exported SavedModel (``saved_model/``).
Re-running the same command after a kill resumes from the last checkpoint.
"""
import dataclasses
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

from depth_motion_tf import data, export
from depth_motion_tf.config import TrainConfig, build_model, save_config, set_precision_policy
from depth_motion_tf.losses import LossWeights


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
    "clip_norm": "Global gradient-norm clipping.",
    "max_bad_steps": "Stop after this many consecutive steps with non-finite loss or gradients.",
    "jit_compile": "Compile the per-replica loss and gradient math with XLA.",
    "mixed_precision": "off, on (mixed_float16 on GPU, mixed_bfloat16 on CPU), mixed_float16 or mixed_bfloat16; losses stay float32.",
    "intrinsics": "given (from the data), learned (per pair), learned_per_video (one trainable K per video).",
    "num_videos": "Size of the per-video intrinsics table (video ids are hashed into it).",
    "cascade": "Feed predicted depths to the motion net (8 input channels).",
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
_ENUMS = {
    "pair": list(data.PAIRS),
    "mixed_precision": ["off", "on", "mixed_float16", "mixed_bfloat16"],
    "intrinsics": ["given", "learned", "learned_per_video"],
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
        flags.DEFINE_float(f"{name}_weight", default, f"Weight of the {name} loss (default {default}).")


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


def validate(config):
    """Raises ValueError for flag combinations that cannot work."""
    if config.height % 32 or config.width % 32:
        raise ValueError(f"--height and --width must be multiples of 32, got {config.height}x{config.width}")
    if config.checkpoint_every <= 0 or config.summary_every <= 0:
        raise ValueError("--checkpoint_every and --summary_every must be positive")
    if config.batch_size % tf.distribute.get_strategy().num_replicas_in_sync:
        raise ValueError("--batch_size must be divisible by the number of replicas")


def check_data_fits(dataset, config):
    """Raises ValueError when the data lacks what the flags ask for (masks, known intrinsics)."""
    if config.use_mask and "mask" not in dataset.element_spec:
        raise ValueError(f"{config.data}: --use_mask needs foreground masks, the data has none")
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


def evaluate_depth_on(model, config):
    """Depth metrics (summary dict) of ``model`` on ``config.eval_data``'s ground truth."""
    from depth_motion_tf import evaluate, ground_truth

    samples = ground_truth.tfds_samples(config.eval_data, config.eval_split)
    predict = export.keras_depth_predictor(model, config.height, config.width)
    return evaluate.evaluate_depth(predict, samples).summary


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
        constant-depth prediction), ``metrics_before`` and ``metrics_after``.
    """
    set_precision_policy(config.mixed_precision)
    strategy = make_strategy()
    with strategy.scope():
        validate(config)
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
    latest = tf.train.latest_checkpoint(checkpoint_dir)  # the chief's, on a shared filesystem
    if latest:
        checkpoint.restore(latest).expect_partial()
        print(f"Resumed from {latest} at step {int(model.optimizer.iterations.numpy())}")
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(output_dir, "checkpoints"), config.keep_checkpoints
    )
    result = {"checkpoint_dir": checkpoint_dir, "saved_model": None}
    if config.eval_data:
        result["metrics_constant"] = evaluate_constant_depth(config)
        result["metrics_before"] = evaluate_depth_on(model, config)
    step = int(model.optimizer.iterations.numpy())
    writer = (tf.summary.create_file_writer(os.path.join(config.model_dir, "train")) if chief
              else tf.summary.create_noop_writer())
    epochs = math.ceil(config.num_steps / config.checkpoint_every)
    history = None
    if step < config.num_steps:
        with writer.as_default():
            history = model.fit(
                distribute_by_data(dataset, strategy),
                epochs=epochs,
                initial_epoch=step // config.checkpoint_every,
                steps_per_epoch=config.checkpoint_every,
                callbacks=[CheckpointEveryEpoch(manager), StopOnBadSteps(config.max_bad_steps)],
                verbose=config.verbose,
            )
        writer.flush()
    result["step"] = int(model.optimizer.iterations.numpy())
    result["loss"] = history.history["total"][-1] if history else float("nan")
    if config.eval_data:
        result["metrics_after"] = evaluate_depth_on(model, config)
    if config.export:
        saved_model = export.export_saved_model(model, os.path.join(output_dir, "saved_model"))
        result["saved_model"] = saved_model if chief else None
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def main(argv):
    del argv
    logging.set_verbosity(logging.ERROR)  # TFDS' info and deprecation chatter
    config = config_from_flags(flags.FLAGS)
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
    print(
        f"Trained to step {result['step']} in {time.time() - started:.0f} s, final loss "
        f"{result['loss']:.4f}. TensorBoard: tensorboard --logdir {config.model_dir}; "
        f"checkpoints: {result['checkpoint_dir']}"
        + (f"; SavedModel: {result['saved_model']}" if result["saved_model"] else "")
    )


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["data", "model_dir"])
    app.run(main)
