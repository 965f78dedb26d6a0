"""Tests of depth_motion_tf.networks: shapes, schedules, masks, heads, weights, compilation."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from depth_motion_tf import networks

HEIGHT, WIDTH = 64, 96


@pytest.fixture(scope="module")
def depth_net():
    tf.random.set_seed(1)
    net = networks.DepthNet()
    net(tf.zeros([1, HEIGHT, WIDTH, 3]))
    return net


@pytest.fixture(scope="module")
def fresh_depth_net():
    """A second DepthNet whose encoder weights differ from ``depth_net``'s."""
    tf.random.set_seed(3)
    return networks.DepthNet()


@pytest.fixture(scope="module")
def motion_net():
    tf.random.set_seed(2)
    net = networks.MotionNet()
    net(tf.zeros([1, HEIGHT, WIDTH, 8]))
    return net


def _images(batch=2, height=HEIGHT, width=WIDTH, channels=3, seed=0):
    return tf.constant(
        np.random.default_rng(seed).uniform(size=[batch, height, width, channels]), tf.float32
    )


# Schedules.


def test_noise_stddev_ramps_quadratically_to_half():
    steps = [0, 2500, 5000, 10000, 30000]
    expected = [0.0, 0.5 * 0.25**2, 0.5 * 0.5**2, 0.5, 0.5]
    actual = [float(networks.noise_stddev(tf.constant(s, tf.int64))) for s in steps]
    np.testing.assert_allclose(actual, expected, rtol=1e-6)


def test_motion_field_burnin_is_zero_before_10k_and_one_after_20k():
    steps = [0, 5000, 10000, 15000, 20000, 50000]
    expected = [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]
    actual = [float(networks.motion_field_burnin(tf.constant(s, tf.int64))) for s in steps]
    np.testing.assert_allclose(actual, expected, atol=1e-6)


# Randomised layer normalisation.


def test_layer_norm_at_inference_normalises_each_example_and_channel():
    x = _images(batch=2, height=4, width=5, channels=3)
    norm = networks.RandomizedLayerNorm()
    y = norm(x, noise_stddev=0.5, training=False).numpy()
    xn = x.numpy()
    mean = xn.mean(axis=(1, 2), keepdims=True)
    variance = xn.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(y, (xn - mean) / np.sqrt(variance + 1e-3), atol=1e-5)


def test_layer_norm_training_without_noise_equals_inference():
    x = _images(batch=2, height=4, width=5, channels=3)
    norm = networks.RandomizedLayerNorm()
    np.testing.assert_array_equal(
        norm(x, noise_stddev=0.0, training=True).numpy(), norm(x, training=False).numpy()
    )


def test_layer_norm_mean_noise_is_truncated_normal_per_example_and_channel():
    # A constant channel c has σ² = 0, so y = (c - c (1 + n)) / sqrt(ε) = -c n / sqrt(ε).
    c = 2.0
    x = tf.fill([256, 2, 2, 8], c)
    y = networks.RandomizedLayerNorm()(x, noise_stddev=0.5, training=True).numpy()
    noise = -y[:, 0, 0, :] * math.sqrt(1e-3) / c
    assert np.all(y == y[:, :1, :1, :])  # one draw per example and channel
    assert np.abs(noise).max() <= 1.0 + 1e-5  # truncated at 2 standard deviations
    assert len(np.unique(np.round(noise, 6))) > 0.99 * noise.size  # independent draws
    # A normal truncated at ±2σ has standard deviation 0.8796 σ.
    assert abs(noise.std() - 0.8796 * 0.5) < 0.03
    assert abs(noise.mean()) < 0.03


# Depth network.


def test_depth_net_shapes_at_training_resolution(depth_net):
    depth = depth_net(tf.zeros([1, 128, 416, 3]))
    assert depth.shape == (1, 128, 416, 1)
    assert depth.dtype == tf.float32


def test_depth_is_strictly_positive_at_full_resolution(depth_net):
    depth = depth_net(_images())
    assert depth.shape == (2, HEIGHT, WIDTH, 1)
    assert float(tf.reduce_min(depth)) > 0.0


def test_encoder_features_have_resnet18_strides_and_channels(depth_net):
    features = depth_net.encoder(tf.zeros([1, HEIGHT, WIDTH, 3]))
    shapes = [tuple(f.shape) for f in features]
    assert shapes == [
        (1, HEIGHT // stride, WIDTH // stride, channels)
        for stride, channels in [(2, 64), (4, 64), (8, 128), (16, 256), (32, 512)]
    ]


def test_parameter_counts_match_the_reference(depth_net, motion_net):
    assert depth_net.count_params() == 14_325_425
    assert motion_net.count_params() == 44_180_049


def test_strided_shortcut_is_a_conv_without_normalisation(depth_net):
    names = set(depth_net.encoder.named_variables())
    assert "stage3_block1_shortcut_conv/kernel" in names
    assert not [n for n in names if "shortcut_norm" in n]
    block = depth_net.encoder.blocks[2]  # stage 3, block 1
    x = tf.random.normal([1, 8, 8, 64])
    # With the residual branch zeroed out, the block is relu(shortcut_conv(x)) exactly.
    saved = block["norm2"].gamma.numpy(), block["norm2"].beta.numpy()
    block["norm2"].gamma.assign(tf.zeros_like(saved[0]))
    block["norm2"].beta.assign(tf.zeros_like(saved[1]))
    try:
        out = depth_net.encoder._basic_block(x, block, 0.0, False)
        np.testing.assert_allclose(out, tf.nn.relu(block["shortcut_conv"](x)), atol=1e-6)
    finally:
        block["norm2"].gamma.assign(saved[0])
        block["norm2"].beta.assign(saved[1])


@pytest.mark.parametrize(
    "layer, fan_out", [("conv1", 7 * 7 * 64), ("stage4_block1_conv1", 3 * 3 * 256),
                       ("stage5_block1_shortcut_conv", 1 * 1 * 512)],
)
def test_encoder_kernels_are_untruncated_fan_out_normal(depth_net, layer, fan_out):
    kernel = depth_net.encoder.named_variables()[f"{layer}/kernel"].numpy().ravel()
    expected = np.sqrt(2.0 / fan_out)  # the reference's s_conv
    assert kernel.std() == pytest.approx(expected, rel=0.05)
    assert np.abs(kernel).max() > 2.5 * expected  # a truncated normal stops at 2 stddev


def test_depth_net_rejects_sizes_not_multiple_of_32(depth_net):
    with pytest.raises(ValueError, match="height 80 is not a multiple of 32"):
        depth_net(tf.zeros([1, 80, WIDTH, 3]))
    with pytest.raises(ValueError, match="width 100 is not a multiple of 32"):
        depth_net(tf.zeros([1, HEIGHT, 100, 3]))


def test_depth_inference_ignores_step(depth_net):
    images = _images()
    first = depth_net(images, training=False, step=tf.constant(0, tf.int64))
    later = depth_net(images, training=False, step=tf.constant(20000, tf.int64))
    np.testing.assert_array_equal(first.numpy(), later.numpy())


def test_depth_training_at_step_zero_equals_inference(depth_net):
    images = _images()
    training = depth_net(images, training=True, step=tf.constant(0, tf.int64))
    np.testing.assert_array_equal(training.numpy(), depth_net(images).numpy())


def test_depth_training_after_rampup_is_noisy(depth_net):
    images = _images()
    training = depth_net(images, training=True, step=tf.constant(20000, tf.int64))
    assert np.abs(training.numpy() - depth_net(images).numpy()).max() > 1e-4


def test_learned_depth_scale_multiplies_depth():
    net = networks.DepthNet(learn_scale=True)
    images = _images(batch=1, height=32, width=32)
    unscaled = net(images).numpy()
    net.depth_scale.assign(3.0)
    np.testing.assert_allclose(net(images).numpy(), 3.0 * unscaled, rtol=1e-6)


@pytest.mark.parametrize("suffix", [".npz", ".weights.h5"])
def test_encoder_weights_round_trip(depth_net, fresh_depth_net, tmp_path, suffix):
    path = tmp_path / f"encoder{suffix}"
    depth_net.save_encoder_weights(path)
    fresh_depth_net.load_encoder_weights(path)  # builds the encoder
    for variable in fresh_depth_net.encoder.weights:
        variable.assign(tf.zeros_like(variable))
    fresh_depth_net.load_encoder_weights(path)
    saved = depth_net.encoder.named_variables()
    loaded = fresh_depth_net.encoder.named_variables()
    assert sorted(saved) == sorted(loaded)
    assert "stage3_block1_shortcut_conv/kernel" in loaded
    for name, variable in saved.items():
        np.testing.assert_array_equal(loaded[name].numpy(), variable.numpy())


def test_encoder_weights_missing_name_is_a_clear_error(depth_net, fresh_depth_net, tmp_path):
    arrays = {name: v.numpy() for name, v in depth_net.encoder.named_variables().items()}
    del arrays["stage4_block2_norm2/beta"]
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"bad\.npz.*missing \['stage4_block2_norm2/beta'\]"):
        fresh_depth_net.load_encoder_weights(path)


def test_encoder_weights_wrong_shape_is_a_clear_error(depth_net, fresh_depth_net, tmp_path):
    arrays = {name: v.numpy() for name, v in depth_net.encoder.named_variables().items()}
    arrays["conv1/kernel"] = np.zeros([3, 3, 3, 64], np.float32)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    message = r"'conv1/kernel' has shape \(3, 3, 3, 64\), expected \(7, 7, 3, 64\)"
    with pytest.raises(ValueError, match=message):
        fresh_depth_net.load_encoder_weights(path)


def test_depth_net_config_round_trip(depth_net):
    net = networks.DepthNet(learn_scale=True, weight_decay=1e-4)
    clone = networks.DepthNet.from_config(net.get_config())
    assert clone.get_config() == net.get_config()
    assert clone.learn_scale and clone.weight_decay == 1e-4


# Motion network.


def test_motion_net_output_shapes_at_training_resolution(motion_net):
    outputs = motion_net(tf.zeros([1, 128, 416, 8]))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "rotation": (1, 3),
        "background_translation": (1, 3),
        "residual_translation": (1, 128, 416, 3),
        "intrinsics": (1, 3, 3),
    }
    assert all(v.dtype == tf.float32 for v in outputs.values())


def test_motion_net_accepts_rgb_only_input():
    outputs = networks.MotionNet()(_images(height=32, width=48, channels=6))
    assert outputs["residual_translation"].shape == (2, 32, 48, 3)


def test_refinement_width_is_max_of_4_and_feature_channels(motion_net):
    kernels = {r.name: tuple(r.conv_a.kernel.shape) for r in motion_net.refinements}
    assert kernels["refine7"] == (3, 3, 3 + 1024, 1024)
    assert kernels["refine1"] == (3, 3, 3 + 16, 16)
    assert kernels["refine0"] == (3, 3, 3 + 8, 8)


def test_resize_align_corners_interpolates_between_corners():
    field = tf.constant([[0.0, 1.0], [2.0, 3.0]])[None, :, :, None]
    resized = networks.resize_bilinear_align_corners(field, tf.constant([3, 3]))
    expected = [[0.0, 0.5, 1.0], [1.0, 1.5, 2.0], [2.0, 2.5, 3.0]]
    np.testing.assert_allclose(resized[0, :, :, 0].numpy(), expected, atol=1e-6)


def test_auto_mask_keeps_exactly_pixels_above_mean_norm():
    field = tf.constant([[[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]], [[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]]]])
    # Norms 5, 1, 2, 0: mean 2, so only the first pixel survives.
    expected = np.zeros([1, 2, 2, 3], np.float32)
    expected[0, 0, 0] = [3.0, 4.0, 0.0]
    np.testing.assert_array_equal(networks.auto_mask(field).numpy(), expected)


def test_motion_net_masks_residual_field_where_norm_is_below_mean(motion_net):
    x = _images(channels=8)
    masked = motion_net(x)["residual_translation"].numpy()
    motion_net.auto_mask = False
    try:
        field = motion_net(x)["residual_translation"].numpy()
    finally:
        motion_net.auto_mask = True
    norm = np.linalg.norm(field, axis=-1, keepdims=True)
    keep = norm > norm.mean()
    assert 0 < keep.sum() < keep.size
    np.testing.assert_array_equal(masked[~np.broadcast_to(keep, masked.shape)], 0.0)
    np.testing.assert_allclose(masked, np.where(keep, field, 0.0), rtol=1e-5, atol=1e-9)


def test_residual_field_is_off_during_burnin_and_fully_on_after(motion_net):
    x = _images(channels=8)
    early = motion_net(x, step=tf.constant(9999, tf.int64))["residual_translation"]
    late = motion_net(x, step=tf.constant(20000, tf.int64))["residual_translation"]
    inference = motion_net(x)["residual_translation"]
    np.testing.assert_array_equal(early.numpy(), 0.0)
    assert np.abs(inference.numpy()).max() > 0.0
    np.testing.assert_array_equal(late.numpy(), inference.numpy())


def test_intrinsics_of_zero_bottleneck_are_centred_with_softplus_foci(motion_net):
    # Zero input and zero-initialised biases give a zero bottleneck, so the heads
    # output softplus(0) = ln 2 for the foci and 0 + 0.5 for the centre.
    intrinsics = motion_net(tf.zeros([2, HEIGHT, WIDTH, 8]))["intrinsics"].numpy()
    expected = np.array(
        [[math.log(2) * WIDTH, 0, 0.5 * WIDTH], [0, math.log(2) * HEIGHT, 0.5 * HEIGHT], [0, 0, 1]]
    )
    np.testing.assert_allclose(intrinsics, np.broadcast_to(expected, [2, 3, 3]), rtol=1e-6)


def test_intrinsics_have_positive_foci(motion_net):
    intrinsics = motion_net(_images(channels=8) * 50.0)["intrinsics"].numpy()
    assert np.all(intrinsics[:, 0, 0] > 0) and np.all(intrinsics[:, 1, 1] > 0)


def test_motion_scales_start_at_0_01_and_stay_above_0_001():
    net = networks.MotionNet()
    np.testing.assert_allclose(float(net.rotation_scale), 0.01)
    optimizer = keras.optimizers.SGD(learning_rate=1.0)
    scales = [net.rotation_scale, net.translation_scale]
    optimizer.apply([tf.constant(1.0), tf.constant(1.0)], scales)  # 0.01 - 1 < 0.001
    np.testing.assert_allclose([float(s) for s in scales], [0.001, 0.001])


def test_motion_net_config_round_trip():
    net = networks.MotionNet(auto_mask=False, field_burnin_steps=100, weight_decay=1e-4)
    clone = networks.MotionNet.from_config(net.get_config())
    assert clone.get_config() == net.get_config()
    assert (clone.auto_mask, clone.field_burnin_steps, clone.weight_decay) == (False, 100, 1e-4)


# Both networks.


def test_gradients_are_finite_for_every_trainable_variable(depth_net, motion_net):
    images = _images(batch=2, height=32, width=32)
    with tf.GradientTape(persistent=True) as tape:
        depth = depth_net(images, training=True, step=tf.constant(5000, tf.int64))
        pair = tf.concat([images, depth, images[::-1], depth[::-1]], axis=-1)
        motion = motion_net(pair, training=True)
        loss = tf.reduce_mean(depth) + sum(tf.reduce_mean(tf.square(v)) for v in motion.values())
    for net in (depth_net, motion_net):
        gradients = tape.gradient(loss, net.trainable_variables)
        for variable, gradient in zip(net.trainable_variables, gradients):
            assert gradient is not None, variable.path
            assert np.all(np.isfinite(gradient.numpy())), variable.path


def test_compiled_forward_equals_eager_forward(depth_net, motion_net):
    images = _images(batch=1, height=32, width=32)
    x = _images(batch=1, height=32, width=32, channels=8)
    compiled = tf.function(lambda i, m: (depth_net(i), motion_net(m)), jit_compile=True)
    depth, motion = compiled(images, x)
    np.testing.assert_allclose(depth.numpy(), depth_net(images).numpy(), rtol=1e-4, atol=1e-6)
    for key, value in motion_net(x).items():
        np.testing.assert_allclose(
            motion[key].numpy(), value.numpy(), rtol=1e-4, atol=1e-7, err_msg=key
        )


def test_mixed_precision_computes_in_bfloat16_and_returns_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        depth_net, motion_net = networks.DepthNet(), networks.MotionNet()
        depth = depth_net(_images(batch=1, height=32, width=32))
        motion = motion_net(_images(batch=1, height=32, width=32, channels=8))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert depth_net.encoder.conv1.compute_dtype == "bfloat16"
    assert depth.dtype == tf.float32
    assert all(v.dtype == tf.float32 for v in motion.values())
    assert motion_net.rotation_scale.dtype == "float32"
    assert motion_net.intrinsics_focal.compute_dtype == "float32"


@pytest.mark.parametrize("strides, shape", [(1, (2, 2, 7, 20)), (2, (2, 3, 5, 20)), (2, (1, 4, 8, 6))])
def test_patch_matmul_conv_equals_keras_conv(strides, shape):
    from depth_motion_tf.networks import PatchMatmulConv2D

    x = tf.random.stateless_normal(shape, seed=[4, 2])
    reference = keras.layers.Conv2D(8, 3, strides=strides, padding="same")
    patched = PatchMatmulConv2D(8, 3, strides=strides, padding="same")
    reference.build(x.shape)
    patched.build(x.shape)
    patched.set_weights(reference.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = reference(x), patched(x)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        tape.gradient(a, x).numpy(), tape.gradient(b, x).numpy(), atol=1e-5
    )


@pytest.mark.parametrize(
    "height, width, strides, small",
    [(2, 6, 1, True), (4, 12, 2, True), (4, 12, 1, False), (4, 13, 1, False), (8, 26, 2, False)],
)
def test_patch_matmul_conv_max_output_pixels(height, width, strides, small):
    """Output maps up to max_output_pixels (here the depth encoder's 32) take the patch
    matmul, larger ones the ordinary convolution; both give Conv2D's result."""
    from depth_motion_tf.networks import PATCH_CONV_MAX_ENCODER_PIXELS, PatchMatmulConv2D

    x = tf.random.stateless_normal((2, height, width, 5), seed=[7, 1])
    reference = keras.layers.Conv2D(4, 3, strides=strides, padding="same")
    limited = PatchMatmulConv2D(
        4, 3, strides=strides, padding="same", max_output_pixels=PATCH_CONV_MAX_ENCODER_PIXELS
    )
    reference.build(x.shape)
    limited.build(x.shape)
    limited.set_weights(reference.get_weights())
    graph = tf.function(limited).get_concrete_function(x).graph
    op_types = {op.type for op in graph.get_operations()}
    assert ("ExtractImagePatches" in op_types) == small
    assert ("Conv2D" in op_types) == (not small)
    np.testing.assert_allclose(reference(x).numpy(), limited(x).numpy(), atol=1e-5)
    assert limited.get_config()["max_output_pixels"] == PATCH_CONV_MAX_ENCODER_PIXELS


def test_plain_convolutions_traces_patch_matmul_conv_as_a_convolution():
    """Inside plain_convolutions (the TFLite export) no ExtractImagePatches is traced;
    outside it again; the result is Conv2D's either way."""
    from depth_motion_tf.networks import PatchMatmulConv2D, plain_convolutions

    x = tf.random.stateless_normal((2, 3, 5, 6), seed=[3, 9])
    layer = PatchMatmulConv2D(4, 3, padding="same")
    layer.build(x.shape)

    def op_types():
        graph = tf.function(layer).get_concrete_function(x).graph
        return {op.type for op in graph.get_operations()}

    with plain_convolutions():
        assert "ExtractImagePatches" not in op_types()
        plain = layer(x).numpy()
    assert "ExtractImagePatches" in op_types()
    np.testing.assert_allclose(plain, layer(x).numpy(), atol=1e-5)
