"""The depth and motion networks (METHOD.md §2), as Keras 3 layers.

- :class:`DepthNet`: a ResNet-18 U-Net with randomised layer normalisation
  that maps images to per-pixel depth.
- :class:`MotionNet`: a fully convolutional encoder that maps a pair of frames
  (optionally with their depths) to camera rotation, background translation, a
  per-pixel residual translation field and camera intrinsics.

Both compute in the global Keras dtype policy (e.g. ``mixed_bfloat16``) and
return float32; normalisation statistics, learned scales, the intrinsics head
and the motion field itself are kept in float32.
"""
import contextlib
import contextvars

import keras
import tensorflow as tf

from depth_motion_tf import encoder_weights
from depth_motion_tf.geometry import intrinsics_matrix

SERIALIZATION_PACKAGE = "depth_motion_tf"

NORM_EPSILON = 1e-3
NOISE_RAMPUP_STEPS = 10000
MAX_NOISE_STDDEV = 0.5
DEPTH_SIZE_DIVISOR = 32  # the encoder downsamples 5 times by 2

ENCODER_STAGE_FILTERS = (64, 128, 256, 512)  # stages 2..5 of ResNet-18
BLOCKS_PER_STAGE = 2
DECODER_FILTERS = (256, 128, 64, 32, 16)  # levels 5..1

MOTION_ENCODER_FILTERS = (16, 32, 64, 128, 256, 512, 1024)  # c1..c7
MOTION_SCALE_INIT = 0.01
LEARNED_SCALE_MIN = 0.001  # lower bound of every learned scale
FIELD_BURNIN_STEPS = 20000
PATCH_CONV_MIN_CHANNELS = 512  # motion convs this wide (c6, c7 levels) use PatchMatmulConv2D
# Encoder convs whose output map has at most this many pixels per image use PatchMatmulConv2D
# (stage 5 at 64x192: 2x6; stage 5 at 128x416, 4x13, keeps the convolution; README, Performance).
PATCH_CONV_MAX_ENCODER_PIXELS = 32

_PLAIN_CONVOLUTIONS = contextvars.ContextVar("plain_convolutions", default=False)


def noise_stddev(step, rampup_steps=NOISE_RAMPUP_STEPS, max_stddev=MAX_NOISE_STDDEV):
    """Noise scale of randomised layer normalisation: ``s = max · min(step / rampup, 1)²``.

    Args:
        step: scalar int or float (tensor), the training iteration.
        rampup_steps: steps until the full noise scale is reached.
        max_stddev: the full noise scale.
    Returns:
        Scalar float32 tensor, 0 at step 0 and ``max_stddev`` from ``rampup_steps`` on.
    """
    progress = tf.minimum(tf.cast(step, tf.float32) / rampup_steps, 1.0)
    return max_stddev * tf.square(progress)


def motion_field_burnin(step, burnin_steps=FIELD_BURNIN_STEPS):
    """Weight of the residual translation field: ``clip(2 step / burnin_steps - 1, 0, 1)``.

    Args:
        step: scalar int or float (tensor), the training iteration.
        burnin_steps: step at which the weight reaches 1.
    Returns:
        Scalar float32 tensor: 0 up to ``burnin_steps / 2``, then a linear ramp to 1.
    """
    ramp = 2.0 * tf.cast(step, tf.float32) / burnin_steps - 1.0
    return tf.clip_by_value(ramp, 0.0, 1.0)


def resize_bilinear_align_corners(images, size):
    """Bilinear resize with aligned corner pixels (the reference's convention).

    Args:
        images: [B, h, w, C] float32.
        size: [2] int32, the output (H, W).
    Returns:
        [B, H, W, C] float32; corner pixels map to corner pixels.
    """
    return tf.raw_ops.ResizeBilinear(
        images=images, size=size, align_corners=True, half_pixel_centers=False
    )


def auto_mask(field):
    """Keeps the residual translation only where its norm exceeds the mean norm.

    ``n = ||T_res||₂`` per pixel; ``T_res · [n > mean(n)]``, the mean over the
    batch and all pixels. The mask carries no gradient.

    Args:
        field: [B, H, W, 3] float32 residual translation.
    Returns:
        [B, H, W, 3] float32, zero where the mask is off.
    """
    norm = tf.norm(tf.stop_gradient(field), axis=-1, keepdims=True)
    return field * tf.cast(norm > tf.reduce_mean(norm), field.dtype)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class MinValue(keras.constraints.Constraint):
    """Clips a weight from below: ``w ← max(w, min_value)``."""

    def __init__(self, min_value):
        self.min_value = min_value

    def __call__(self, w):
        return tf.maximum(w, tf.cast(self.min_value, w.dtype))

    def get_config(self):
        return {"min_value": self.min_value}


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class RandomizedLayerNorm(keras.layers.Layer):
    """Randomised layer normalisation (METHOD.md §2), per example and channel.

    ``μ, σ²`` are the mean and variance over H, W. In training both are
    multiplied by independent ``1 + n``, ``n ~ TruncatedNormal(0, s)`` (one draw
    per example and channel); the output is ``γ (x - μ') / sqrt(σ²' + ε) + β``.
    Statistics are computed in float32; the output has the input's dtype.
    """

    def __init__(self, epsilon=NORM_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(
            shape=(channels,), initializer="ones", name="gamma", autocast=False
        )
        self.beta = self.add_weight(
            shape=(channels,), initializer="zeros", name="beta", autocast=False
        )

    def call(self, inputs, noise_stddev=0.0, training=False):
        """Args:
            inputs: [B, H, W, C] float (any float dtype).
            noise_stddev: scalar float, the noise scale ``s`` (used only in training).
            training: whether to perturb the statistics.
        Returns:
            [B, H, W, C], the dtype of ``inputs``.
        """
        x = tf.cast(inputs, tf.float32)
        mean, variance = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        if training:
            stddev = tf.cast(noise_stddev, tf.float32)
            mean *= 1.0 + tf.random.truncated_normal(tf.shape(mean), stddev=stddev)
            variance *= 1.0 + tf.random.truncated_normal(tf.shape(variance), stddev=stddev)
        # γ (x − μ') / √(σ²' + ε) + β as x·s + (β − μ'·s), s = γ / √(σ²' + ε): two passes, not four.
        normalized = tf.nn.batch_normalization(x, mean, variance, self.beta, self.gamma, self.epsilon)
        return tf.cast(normalized, inputs.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config


def _encoder_conv(filters, kernel_size, strides, name):
    return PatchMatmulConv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        # The reference's s_conv: a plain (untruncated) normal, stddev sqrt(2 / (k·k·out)).
        kernel_initializer=keras.initializers.VarianceScaling(
            2.0, mode="fan_out", distribution="untruncated_normal"
        ),
        max_output_pixels=PATCH_CONV_MAX_ENCODER_PIXELS,
        name=name,
    )


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class ResNet18Encoder(keras.layers.Layer):
    """ResNet-18 feature extractor with randomised layer normalisation.

    Layer names (stable, used by the encoder weight files): ``conv1``, ``norm1``,
    and per block ``stage{2..5}_block{1,2}_{conv1,norm1,conv2,norm2}``, plus
    ``stage{3..5}_block1_shortcut_conv`` for the strided blocks (a 1x1/2 conv
    with no normalisation after it, as the reference's ``s_residual_block_first``).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = _encoder_conv(64, 7, 2, "conv1")
        self.norm1 = RandomizedLayerNorm(name="norm1")
        self.max_pool = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="max_pool")
        self.blocks = []
        for stage, filters in enumerate(ENCODER_STAGE_FILTERS, start=2):
            for block in range(1, BLOCKS_PER_STAGE + 1):
                strides = 2 if (stage > 2 and block == 1) else 1
                prefix = f"stage{stage}_block{block}"
                self.blocks.append(self._basic_block_layers(prefix, filters, strides))

    @staticmethod
    def _basic_block_layers(prefix, filters, strides):
        layers = {
            "conv1": _encoder_conv(filters, 3, strides, f"{prefix}_conv1"),
            "norm1": RandomizedLayerNorm(name=f"{prefix}_norm1"),
            "conv2": _encoder_conv(filters, 3, 1, f"{prefix}_conv2"),
            "norm2": RandomizedLayerNorm(name=f"{prefix}_norm2"),
        }
        if strides != 1:
            layers["shortcut_conv"] = _encoder_conv(filters, 1, strides, f"{prefix}_shortcut_conv")
        return layers

    def parameter_layers(self):
        """The layers that hold weights, in order: list of Keras layers."""
        layers = [self.conv1, self.norm1]
        for block in self.blocks:
            layers.extend(block.values())
        return layers

    def named_variables(self):
        """Encoder variables keyed ``"<layer name>/<weight name>"`` (e.g. ``"conv1/kernel"``)."""
        return {
            f"{layer.name}/{variable.name}": variable
            for layer in self.parameter_layers()
            for variable in layer.weights
        }

    def _basic_block(self, x, layers, noise, training):
        def conv_norm(conv, norm, inputs):
            return layers[norm](layers[conv](inputs), noise_stddev=noise, training=training)

        shortcut = layers["shortcut_conv"](x) if "shortcut_conv" in layers else x
        x = conv_norm("conv2", "norm2", tf.nn.relu(conv_norm("conv1", "norm1", x)))
        return tf.nn.relu(x + shortcut)

    def call(self, inputs, noise_stddev=0.0, training=False):
        """Args:
            inputs: [B, H, W, 3] float, images scaled to [-1, 1].
            noise_stddev: scalar float, the normalisation noise scale in training.
            training: whether the normalisation statistics are perturbed.
        Returns:
            List ``[e1, ..., e5]`` with strides 2, 4, 8, 16, 32 and 64, 64, 128,
            256, 512 channels.
        """
        e1 = self.norm1(self.conv1(inputs), noise_stddev=noise_stddev, training=training)
        e1 = tf.nn.relu(e1)
        x = self.max_pool(e1)
        features = [e1]
        for index, layers in enumerate(self.blocks):
            x = self._basic_block(x, layers, noise_stddev, training)
            if index % BLOCKS_PER_STAGE == BLOCKS_PER_STAGE - 1:
                features.append(x)
        return features


def _weight_regularizer(weight_decay):
    return keras.regularizers.L2(weight_decay) if weight_decay else None


def _check_depth_input_size(images):
    height, width = images.shape[1], images.shape[2]
    for axis, size in (("height", height), ("width", width)):
        if size is not None and size % DEPTH_SIZE_DIVISOR:
            raise ValueError(
                f"DepthNet: image {axis} {size} is not a multiple of {DEPTH_SIZE_DIVISOR} "
                f"(input shape {tuple(images.shape)})."
            )


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class DepthNet(keras.Model):
    """ResNet-18 U-Net depth network (METHOD.md §2).

    Call: ``depth_net(images, training=False, step=None)`` with images
    [B, H, W, 3] float in [0, 1], H and W multiples of 32; returns depth
    [B, H, W, 1] float32, strictly positive (softplus), in learned units. In
    training the normalisation noise scale is ``noise_stddev(step)`` (full
    noise when ``step`` is None); there is never noise at inference.
    """

    def __init__(
        self, learn_scale=False, weight_decay=0.0, noise_rampup_steps=NOISE_RAMPUP_STEPS,
        name="depth_net", **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.learn_scale = learn_scale
        self.weight_decay = weight_decay
        self.noise_rampup_steps = noise_rampup_steps
        self.encoder = ResNet18Encoder(name="encoder")
        regularizer = _weight_regularizer(weight_decay)
        self.upconvs = []
        self.iconvs = []
        for level, filters in zip(range(5, 0, -1), DECODER_FILTERS):
            self.upconvs.append(
                keras.layers.Conv2DTranspose(
                    filters, 3, strides=2, padding="same", activation="relu",
                    kernel_regularizer=regularizer, name=f"upconv{level}",
                )
            )
            self.iconvs.append(
                keras.layers.Conv2D(
                    filters, 3, padding="same", activation="relu",
                    kernel_regularizer=regularizer, name=f"iconv{level}",
                )
            )
        self.depth_conv = keras.layers.Conv2D(
            1, 3, padding="same", activation="softplus", kernel_regularizer=regularizer,
            dtype="float32", name="depth",
        )
        if learn_scale:
            self.depth_scale = self.add_weight(
                shape=(), initializer="ones", name="depth_scale", autocast=False,
                constraint=MinValue(LEARNED_SCALE_MIN),
            )

    def call(self, images, training=False, step=None):
        """Args:
            images: [B, H, W, 3] float in [0, 1], H and W multiples of 32.
            training: whether the normalisation statistics are randomised.
            step: scalar int (tensor), the training iteration for the noise ramp-up;
                None in training means full noise.
        Returns:
            [B, H, W, 1] float32 depth, strictly positive.
        """
        _check_depth_input_size(images)
        if not training:
            noise = 0.0
        elif step is None:
            noise = MAX_NOISE_STDDEV
        else:
            noise = noise_stddev(step, self.noise_rampup_steps)
        e1, e2, e3, e4, e5 = self.encoder(2.0 * images - 1.0, noise_stddev=noise, training=training)
        x = e5
        for upconv, iconv, skip in zip(self.upconvs, self.iconvs, (e4, e3, e2, e1, None)):
            x = upconv(x)
            if skip is not None:
                x = tf.concat([x, skip], axis=-1)
            x = iconv(x)
        depth = self.depth_conv(x)
        if self.learn_scale:
            depth *= self.depth_scale
        return tf.cast(depth, tf.float32)

    def _build_encoder(self):
        if not self.encoder.built:
            size = DEPTH_SIZE_DIVISOR
            self.encoder(tf.zeros([1, size, size, 3], self.compute_dtype))

    def save_encoder_weights(self, path):
        """Writes the encoder weights as a dict ``name → array`` (``.npz`` or ``.weights.h5``).

        Names are ``"<layer>/<weight>"``, e.g. ``"stage3_block1_conv1/kernel"``
        (see :class:`ResNet18Encoder`).
        """
        self._build_encoder()
        encoder_weights.save_encoder_weights(self.encoder.named_variables(), path)

    def load_encoder_weights(self, path):
        """Initialises the encoder from an ImageNet ResNet-18.

        ``path``: the reference's TF1 checkpoint, a torchvision/timm
        ``.safetensors`` or ``.pth`` state dict, or our ``.npz``/``.h5``, recognised
        by content (see :mod:`depth_motion_tf.encoder_weights`). Batch-norm scale
        and offset become the layer norms' ``gamma``/``beta``; running statistics,
        the classifier and the shortcut batch norm are skipped. The input stays
        the reference's ``2·rgb − 1``, not ImageNet's mean/std normalisation.

        Returns:
            :class:`encoder_weights.EncoderWeights`, what was assigned.
        Raises:
            errors.BadInputError (a ValueError): one line naming the
                file and the missing, unexpected or mis-shaped weights; no weight
                is changed in that case.
        """
        self._build_encoder()
        return encoder_weights.load_encoder_weights(self.encoder.named_variables(), path)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "learn_scale": self.learn_scale,
                "weight_decay": self.weight_decay,
                "noise_rampup_steps": self.noise_rampup_steps,
            }
        )
        return config


class PatchMatmulConv2D(keras.layers.Conv2D):
    """A ``Conv2D`` computed as one matmul of image patches with the kernel.

    The same weights, names and result as ``keras.layers.Conv2D`` (any stride,
    dilation 1). Used for the widest motion-net convolutions (encoder c6, c7
    and their refinement levels: a few pixels, 256 to 1027 input channels),
    where TensorFlow's CPU convolution-backprop kernels are several times
    slower than the matmul's gradient (refinement c7, 4 rows, 2 CPU cores:
    570 ms vs 85 ms); patches of such small maps are cheap. With
    ``max_output_pixels``, output maps larger than that (pixels per image,
    static shapes) use the ordinary convolution: the depth encoder's stage 5
    at 64x192 (2x6, 512 channels, 12 images: 29 → 12 ms forward and backward
    in bfloat16, 2 CPU cores) but not at 128x416 (4x13: no faster).
    """

    def __init__(self, *args, max_output_pixels=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_output_pixels = max_output_pixels

    def _use_patches(self, inputs):
        """Whether the patch matmul applies: not in ``plain_convolutions``, and no limit
        or a static output map within it."""
        if _PLAIN_CONVOLUTIONS.get():
            return False
        if self.max_output_pixels is None:
            return True
        _, height, width, _ = self.compute_output_shape(inputs.shape)
        return height is not None and width is not None and height * width <= self.max_output_pixels

    def convolution_op(self, inputs, kernel):
        """``[B, H, W, Cin]`` → ``[B, H', W', Cout]`` in the compute dtype."""
        if tuple(self.dilation_rate) != (1, 1):
            raise ValueError(f"{self.name}: PatchMatmulConv2D supports dilation 1 only.")
        if not self._use_patches(inputs):
            return super().convolution_op(inputs, kernel)
        size_h, size_w, _, filters = kernel.shape
        patches = tf.image.extract_patches(
            inputs, [1, size_h, size_w, 1], [1, *self.strides, 1], [1, 1, 1, 1],
            self.padding.upper(),
        )  # [B, H', W', kh·kw·Cin], ordered like the kernel's first three axes
        return tf.tensordot(patches, tf.reshape(kernel, [-1, filters]), axes=1)

    def get_config(self):
        config = super().get_config()
        config.update({"max_output_pixels": self.max_output_pixels})
        return config


@contextlib.contextmanager
def plain_convolutions():
    """Within it, ``PatchMatmulConv2D`` traces as the ordinary convolution (the same result).

    For graphs that must not hold ``ExtractImagePatches``: TFLite's built-in ops lack it.
    """
    token = _PLAIN_CONVOLUTIONS.set(True)
    try:
        yield
    finally:
        _PLAIN_CONVOLUTIONS.reset(token)


def _conv_class(channels):
    """``PatchMatmulConv2D`` for convolutions with ``channels`` ≥ 512 (in or out), else ``Conv2D``."""
    wide = channels is not None and channels >= PATCH_CONV_MIN_CHANNELS
    return PatchMatmulConv2D if wide else keras.layers.Conv2D


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class MotionFieldRefinement(keras.layers.Layer):
    """One coarse-to-fine refinement step of the residual translation (METHOD.md §2).

    With features ``L`` of C channels and ``m = max(4, C)``:
    ``up = resize(field, size(L))`` (bilinear, aligned corners); ``x = [up, L]``;
    ``a = conv3x3_m(x)``; ``b = conv3x3_m(conv3x3_m(x))`` (ReLU, bias);
    ``field = up + conv1x1_3([a, b])`` (linear, no bias).
    The field stays float32 (no autocasting of the inputs); the convolutions
    compute in the layer policy's dtype.
    """

    def __init__(self, weight_decay=0.0, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.weight_decay = weight_decay

    def build(self, field_shape, features_shape):
        width = max(4, features_shape[-1])
        regularizer = _weight_regularizer(self.weight_decay)

        layer = _conv_class(features_shape[-1])

        def conv(filters, kernel_size, name, activation, use_bias):
            return layer(
                filters, kernel_size, padding="same", activation=activation, use_bias=use_bias,
                kernel_regularizer=regularizer, dtype=self.dtype_policy, name=name,
            )

        self.conv_a = conv(width, 3, "conv_a", "relu", True)
        self.conv_b1 = conv(width, 3, "conv_b1", "relu", True)
        self.conv_b2 = conv(width, 3, "conv_b2", "relu", True)
        self.conv_output = conv(3, 1, "conv_output", None, False)

    def call(self, field, features):
        """Args:
            field: [B, h, w, 3] float32, the coarser residual translation.
            features: [B, H, W, C] float (compute dtype), the level's features ``L``.
        Returns:
            [B, H, W, 3] float32, the refined residual translation.
        """
        up = resize_bilinear_align_corners(tf.cast(field, tf.float32), tf.shape(features)[1:3])
        x = tf.concat([tf.cast(up, features.dtype), features], axis=-1)
        a = self.conv_a(x)
        b = self.conv_b2(self.conv_b1(x))
        return up + tf.cast(self.conv_output(tf.concat([a, b], axis=-1)), tf.float32)

    def get_config(self):
        config = super().get_config()
        config.update({"weight_decay": self.weight_decay})
        return config


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class MotionNet(keras.Model):
    """Motion network (METHOD.md §2): ego-motion, residual translation field, intrinsics.

    Call: ``motion_net(x, training=False, step=None)`` with ``x`` [B, H, W, 8]
    (RGB, depth, RGB, depth) or [B, H, W, 6] (RGB, RGB). Returns a dict of
    float32 tensors:

    - ``rotation`` [B, 3]: angles (rx, ry, rz) in radians;
    - ``background_translation`` [B, 3]: in depth units;
    - ``residual_translation`` [B, H, W, 3]: per-pixel, in depth units,
      auto-masked (if on) and weighted by :func:`motion_field_burnin` when
      ``step`` is given (``step=None``: fully on); absent with ``with_field=False``;
    - ``intrinsics`` [B, 3, 3]: in pixels.

    ``with_field=False`` builds no field layers (the field then comes from another
    network); ``learn_translation_scale=False`` holds the translation scale at its
    initial value (for a network whose translation scale multiplies only the field).
    """

    def __init__(
        self, auto_mask=True, field_burnin_steps=FIELD_BURNIN_STEPS, weight_decay=0.0,
        with_field=True, learn_translation_scale=True, name="motion_net", **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.auto_mask = auto_mask
        self.field_burnin_steps = field_burnin_steps
        self.weight_decay = weight_decay
        self.with_field = with_field
        self.learn_translation_scale = learn_translation_scale
        self._regularizer = _weight_regularizer(weight_decay)
        self.encoder_convs = [
            self._conv(filters, 3, f"conv{index}", strides=2, layer=_conv_class(filters))
            for index, filters in enumerate(MOTION_ENCODER_FILTERS, start=1)
        ]
        self.background_motion = self._conv(
            6, 1, "background_motion", activation=None, use_bias=False, dtype="float32"
        )
        if with_field:
            self.residual_translation = self._conv(
                3, 1, "residual_translation", activation=None, dtype="float32"
            )
            # Refinement levels: c7 .. c1, then the network input (level 0).
            self.refinements = [
                MotionFieldRefinement(weight_decay, name=f"refine{level}")
                for level in range(len(MOTION_ENCODER_FILTERS), -1, -1)
            ]
        self.intrinsics_focal = self._conv(
            2, 1, "intrinsics_focal", activation=None, dtype="float32"
        )
        self.intrinsics_offset = self._conv(
            2, 1, "intrinsics_offset", activation=None, use_bias=False, dtype="float32"
        )
        self.rotation_scale = self._scale("rotation_scale")
        self.translation_scale = self._scale("translation_scale", learn_translation_scale)

    def _conv(
        self, filters, kernel_size, name, strides=1, activation="relu", use_bias=True, dtype=None,
        layer=keras.layers.Conv2D,
    ):
        return layer(
            filters, kernel_size, strides=strides, padding="same", activation=activation,
            use_bias=use_bias, kernel_regularizer=self._regularizer, name=name, dtype=dtype,
        )

    def _scale(self, name, trainable=True):
        return self.add_weight(
            shape=(), initializer=keras.initializers.Constant(MOTION_SCALE_INIT), name=name,
            autocast=False, constraint=MinValue(LEARNED_SCALE_MIN), trainable=trainable,
        )

    def _intrinsics(self, bottleneck, height, width):
        """Intrinsics head on the bottleneck ``b``.

        ``(fx, fy) = softplus(conv(b)) (W, H)``; ``(cx, cy) = (conv(b) + 0.5) (W, H)``.

        Args:
            bottleneck: [B, 1, 1, 1024] float32.
            height, width: scalar int32, the input size in pixels.
        Returns:
            [B, 3, 3] float32 intrinsics in pixels.
        """
        size = tf.cast(tf.stack([width, height]), tf.float32)
        focal = tf.nn.softplus(self.intrinsics_focal(bottleneck))[:, 0, 0, :] * size
        centre = (self.intrinsics_offset(bottleneck)[:, 0, 0, :] + 0.5) * size
        return intrinsics_matrix(focal[:, 0], focal[:, 1], centre[:, 0], centre[:, 1])

    def call(self, inputs, training=False, step=None):
        """Args:
            inputs: [B, H, W, 8] or [B, H, W, 6] float, the frame pair (and depths).
            training: unused (the network behaves the same in training).
            step: scalar int (tensor) for the motion-field burn-in, or None (fully on).
        Returns:
            Dict of float32 tensors, see the class docstring.
        """
        encoded = []
        x = inputs
        for conv in self.encoder_convs:
            x = conv(x)
            encoded.append(x)
        bottleneck = tf.cast(tf.reduce_mean(encoded[-1], axis=[1, 2], keepdims=True), tf.float32)
        background = self.background_motion(bottleneck)
        rotation = background[:, 0, 0, :3] * self.rotation_scale
        translation = background[:, 0, 0, 3:] * self.translation_scale

        outputs = {"rotation": rotation, "background_translation": translation}
        if self.with_field:
            field_fn = lambda: self._residual_field(background, encoded, inputs)  # noqa: E731
            outputs["residual_translation"] = self.burned_in(field_fn, inputs, step)
        shape = tf.shape(inputs)
        outputs["intrinsics"] = self._intrinsics(bottleneck, shape[1], shape[2])
        return outputs

    def burned_in(self, field_fn, inputs, step):
        """``field_fn()`` ``[B, H, W, 3]`` times the burn-in weight at ``step``.

        While the weight is 0 the field is skipped, not computed and zeroed: the
        same result, without its forward and backward cost.

        Args:
            field_fn: builds the field, ``[B, H, W, 3]`` float32.
            inputs: ``[B, H, W, C]``, only its shape is used (that of the zeros).
            step: scalar int (tensor), or None (fully on, ``field_fn()`` as is).
        """
        if step is None:
            return field_fn()
        weight = motion_field_burnin(step, self.field_burnin_steps)
        shape = tf.shape(inputs)
        return tf.cond(
            weight > 0,  # field_active(step), from the weight already computed
            lambda: field_fn() * weight,
            lambda: tf.zeros(tf.concat([shape[:3], [3]], 0), tf.float32),
        )

    def field_active(self, step):
        """Scalar bool: whether the residual field is computed at ``step`` (burn-in weight > 0)."""
        return motion_field_burnin(step, self.field_burnin_steps) > 0

    def field_variables(self):
        """The trainable variables used only by the residual field (zero gradients while inactive)."""
        if not self.with_field:
            return []
        layers = [self.residual_translation, *self.refinements]
        return [v for layer in layers for v in layer.trainable_variables]

    def build(self, input_shape):
        """Creates every sublayer by one fully-on call on zeros of the input's shape.

        The residual field is computed inside a ``tf.cond`` during burn-in, where
        layers must not be created, so all of them are built here first.
        """
        height = input_shape[1] or 128
        width = input_shape[2] or 128
        self.call(tf.zeros([1, height, width, input_shape[-1]]), step=None)
        self.built = True

    def _residual_field(self, background, encoded, inputs):
        """Coarse-to-fine residual translation ``[B, H, W, 3]``, scaled and auto-masked."""
        field = self.residual_translation(background)
        for features, refine in zip(encoded[::-1] + [inputs], self.refinements):
            field = refine(field, features)
        field *= self.translation_scale
        return auto_mask(field) if self.auto_mask else field

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "auto_mask": self.auto_mask,
                "field_burnin_steps": self.field_burnin_steps,
                "weight_decay": self.weight_decay,
                "with_field": self.with_field,
                "learn_translation_scale": self.learn_translation_scale,
            }
        )
        return config
