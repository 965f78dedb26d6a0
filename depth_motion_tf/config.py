"""TrainConfig and the model factory: what every CLI builds a model from.

``train`` fills a :class:`TrainConfig` from flags; ``export``, ``benchmark`` and
the tests build the same model from a saved ``config.json`` or by hand.
"""
import contextlib
import dataclasses
import functools
import json
import os
import platform

import keras
import tensorflow as tf

from depth_motion_tf.losses import LossWeights
from depth_motion_tf.model import DepthMotionModel

CONFIG_FILE = "config.json"
ADAM_EPSILON = 1e-8  # TF1's tf.train.AdamOptimizer, which the reference uses (Keras: 1e-7)


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; the CLI fills it from flags (same names)."""

    data: str
    model_dir: str
    split: str = "train"
    eval_data: str = None
    eval_split: str = "test"
    height: int = 128
    width: int = 416
    pair: str = "first"
    crop: bool = True
    flip: bool = True
    cache: bool = False
    seed: int = None
    batch_size: int = 16
    num_steps: int = 1_000_000
    learning_rate: float = 2e-4
    learning_rate_decay: str = "none"
    learning_rate_warmup_steps: int = 0
    motion_head_start_steps: int = 0
    clip_norm: float = 10.0
    max_bad_steps: int = 100
    jit_compile: bool = False
    mixed_precision: str = "auto"
    intrinsics: str = "given"
    num_videos: int = 1024
    rigid_motion: str = "antisymmetric"
    egomotion: str = "learned"
    cascade: bool = True
    motion_depth_normalization: bool = False
    residual_field: str = "free"
    field_input: str = "frames"
    field_network: str = "shared"
    auto_mask: bool = True
    use_mask: bool = False
    foreground_dilation: int = 8
    learn_depth_scale: bool = False
    sparsity: str = "l1_2"
    num_scales: int = 1
    scale_normalization: bool = False
    target_depth_stop_gradient: bool = True
    noise_rampup_steps: int = 10000
    field_burnin_steps: int = 20000
    encoder_weights: str = None
    loss_weights: LossWeights = LossWeights()
    summary_every: int = 100
    checkpoint_every: int = 1000
    keep_checkpoints: int = 5
    export: bool = True
    verbose: int = 1


def config_from_dict(values):
    """A ``TrainConfig`` from its ``dataclasses.asdict`` form (e.g. a saved config.json).

    Fields a newer version added take their defaults; unknown keys raise TypeError.
    """
    values = dict(values)
    weights = LossWeights(**values.pop("loss_weights", {}))
    return TrainConfig(loss_weights=weights, **values)


def save_config(config, model_dir):
    """Writes a training config as ``<model_dir>/config.json``."""
    tf.io.gfile.makedirs(model_dir)
    values = dataclasses.asdict(config)
    with tf.io.gfile.GFile(os.path.join(model_dir, CONFIG_FILE), "w") as f:
        json.dump(values, f, indent=2, sort_keys=True)


def load_config(model_dir):
    """The ``TrainConfig`` saved in a run's ``model_dir``.

    Raises:
        FileNotFoundError: naming the file when there is none.
    """
    path = os.path.join(model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: not found; is {model_dir} a training --model_dir?")
    with tf.io.gfile.GFile(path) as f:
        return config_from_dict(json.load(f))


def cpu_info(cpuinfo="/proc/cpuinfo"):
    """``(model name, set of feature flags)`` of this machine's CPU (Linux; elsewhere ``platform``'s name, no flags)."""
    model, features = platform.processor() or platform.machine(), set()
    if os.path.exists(cpuinfo):
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    features = set(value.split())
    return model, features


BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bfloat16 arithmetic


def native_bfloat16_cpu():
    """Whether the CPU computes bfloat16 natively (AVX512_BF16 or AMX-BF16); without, TF emulates it, 4.5x slower."""
    return bool(cpu_info()[1] & set(BFLOAT16_CPU_FLAGS))


def precision_policy(mode):
    """The Keras dtype policy name for a ``--mixed_precision`` value.

    ``auto`` (the default): ``mixed_bfloat16`` on a CPU-only machine whose CPU
    has native bfloat16 (faster, and learns as well: README, Performance),
    else ``float32``. ``on``: ``mixed_float16`` with a GPU, else ``mixed_bfloat16``.
    ``off``: ``float32``.
    """
    gpu = bool(tf.config.list_physical_devices("GPU"))
    if mode == "auto":
        return "mixed_bfloat16" if not gpu and native_bfloat16_cpu() else "float32"
    if mode == "on":
        return "mixed_float16" if gpu else "mixed_bfloat16"
    return "float32" if mode == "off" else mode


def set_precision_policy(mode):
    """Sets Keras' global dtype policy from ``--mixed_precision`` (:func:`precision_policy`); returns its name."""
    policy = precision_policy(mode)
    keras.mixed_precision.set_global_policy(policy)
    return policy


@contextlib.contextmanager
def precision_scope(mode):
    """Sets the policy of ``mode`` (:func:`set_precision_policy`) for a block, then restores the previous one.

    Layers keep the policy they were built under, so a model built inside runs
    in that precision after the block too. Yields the policy name.
    """
    previous = keras.mixed_precision.global_policy()
    try:
        yield set_precision_policy(mode)
    finally:
        keras.mixed_precision.set_global_policy(previous)


COSINE_FINAL_FRACTION = 0.1  # --learning_rate_decay=cosine ends at this fraction of the rate


def learning_rate_schedule(config):
    """The learning rate: constant (the reference's), or ``cosine`` from ``learning_rate``
    to ``COSINE_FINAL_FRACTION`` of it at ``num_steps``; either after a linear
    warm-up from 0 over the first ``learning_rate_warmup_steps`` (none by default).

    Returns:
        A float or a ``keras.optimizers.schedules.LearningRateSchedule`` of the step.
    """
    if config.learning_rate_decay not in ("none", "cosine"):
        raise ValueError(f"learning_rate_decay must be none or cosine, got {config.learning_rate_decay!r}")
    warmup = config.learning_rate_warmup_steps
    if not 0 <= warmup < config.num_steps:
        raise ValueError(f"learning_rate_warmup_steps must be in [0, num_steps={config.num_steps}), got {warmup}")
    if config.learning_rate_decay == "none" and not warmup:
        return config.learning_rate
    # A cosine that ends at alpha = 1 of its rate is constant.
    final_fraction = COSINE_FINAL_FRACTION if config.learning_rate_decay == "cosine" else 1.0
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else config.learning_rate, config.num_steps - warmup, alpha=final_fraction,
        warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup,
    )


class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam, each variable updated by TensorFlow's fused ``ResourceApplyAdam`` kernel.

    The same update, variables and checkpoint names as ``keras.optimizers.Adam``
    (and the same as TF1's ``tf.train.AdamOptimizer``, which the reference
    uses): ``m += (1−β1)(g − m)``, ``v += (1−β2)(g² − v)``,
    ``θ −= lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)``. Keras writes that as about
    twelve element-wise ops per variable, each a pass over memory: on the CPU
    they took about 40% of a 64x192 train step for the 58M parameters; the
    fused kernel makes one pass.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._held, self._hold_steps = frozenset(), 0  # indices of held variables; see hold()

    def hold(self, variables, steps):
        """Leaves ``variables`` unchanged for the first ``steps`` updates (a learning rate of 0).

        Their gradients still enter Adam's moments, so when the hold ends the
        first updates have warm moments (zeroing the gradients instead would
        leave the moments empty, and Adam's bias correction, taken at the
        global step, would then make those updates several times the rate).
        Call after ``build``.
        """
        self._held = frozenset(self._get_variable_index(v) for v in variables)
        self._hold_steps = steps

    def update_step(self, gradient, variable, learning_rate):
        """Updates one float ``variable`` (and its moments) in place from ``gradient`` (same shape)."""
        index = self._get_variable_index(variable)
        if index in self._held:
            learning_rate = tf.convert_to_tensor(learning_rate)
            learning_rate *= tf.cast(self.iterations >= self._hold_steps, learning_rate.dtype)
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        cast = functools.partial(tf.cast, dtype=variable.dtype)
        step = cast(self.iterations + 1)
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle,
            beta1_power=tf.pow(cast(self.beta_1), step),
            beta2_power=tf.pow(cast(self.beta_2), step),
            lr=cast(learning_rate),
            beta1=cast(self.beta_1),
            beta2=cast(self.beta_2),
            epsilon=cast(self.epsilon),
            grad=cast(gradient),
        )


def make_optimizer(config):
    """Adam as the reference's (β1 0.9, β2 0.999, ε 1e-8, fused), loss-scaled under mixed_float16.

    Gradient clipping is not the optimizer's: Keras clips each replica's part
    before the cross-replica sum, the reference clips the global gradient;
    ``DepthMotionModel`` clips the summed gradient itself (``clip_norm``).
    """
    optimizer = FusedAdam(
        learning_rate_schedule(config), beta_1=0.9, beta_2=0.999, epsilon=ADAM_EPSILON
    )
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def build_model(config, strategy):
    """Creates and builds the model, optimizer and checkpoint inside ``strategy.scope()``."""
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = DepthMotionModel(
            height=config.height,
            width=config.width,
            loss_weights=config.loss_weights,
            sparsity=config.sparsity,
            intrinsics_mode=config.intrinsics,
            num_videos=config.num_videos,
            rigid_motion=config.rigid_motion,
            egomotion=config.egomotion,
            cascade=config.cascade,
            motion_depth_normalization=config.motion_depth_normalization,
            residual_field=config.residual_field,
            field_input=config.field_input,
            field_network=config.field_network,
            auto_mask=config.auto_mask,
            use_mask=config.use_mask,
            foreground_dilation=config.foreground_dilation,
            learn_depth_scale=config.learn_depth_scale,
            num_scales=config.num_scales,
            scale_normalization=config.scale_normalization,
            target_depth_stop_gradient=config.target_depth_stop_gradient,
            noise_rampup_steps=config.noise_rampup_steps,
            field_burnin_steps=config.field_burnin_steps,
            clip_norm=config.clip_norm,
            summary_every=config.summary_every,
            jit_compile_step=config.jit_compile,
        )
        model.build_for_training()
        optimizer = make_optimizer(config)
        model.compile(optimizer=optimizer, jit_compile=False)
        optimizer.build(model.trainable_variables)
        if config.motion_head_start_steps:
            inner = getattr(optimizer, "inner_optimizer", optimizer)
            inner.hold(model.depth_net.trainable_variables, config.motion_head_start_steps)
    return model
