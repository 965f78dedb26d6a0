"""Tests for depth_motion_tf.losses: analytic expectations, stop-gradients, the weighted sum."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from depth_motion_tf import geometry, losses


def _k(fx, fy, cx, cy, batch=1):
    return tf.constant(np.tile([[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]], [batch, 1, 1]), tf.float32)


def _angles_of(r):
    """Angles (rx, ry, rz) with R = Rx Ry Rz, from R[0,2] = sin ry, R[0,:2], R[1:,2]."""
    return np.array(
        [np.arctan2(-r[1, 2], r[2, 2]), np.arcsin(r[0, 2]), np.arctan2(-r[0, 1], r[0, 0])],
        np.float32,
    )


def _linear_image(u, v):
    """A linear RGB texture in [0, 1]: bilinear interpolation reproduces it exactly."""
    return np.stack([0.2 + 0.04 * u + 0.03 * v, 0.7 - 0.02 * u + 0.05 * v, 0.1 + 0.06 * v], -1)


# --- weighted SSIM -----------------------------------------------------------


def test_weighted_ssim_of_identical_images_is_zero():
    x = tf.random.uniform([2, 6, 7, 3])
    error, pooled = losses.weighted_ssim(x, x, tf.random.uniform([2, 6, 7]))
    assert error.shape == (2, 4, 5, 3) and pooled.shape == (2, 4, 5, 1)
    np.testing.assert_allclose(error, 0.0, atol=1e-5)


def test_weighted_ssim_with_uniform_weight_matches_plain_ssim_without_luminance():
    x = np.random.uniform(size=[1, 3, 3, 1]).astype(np.float32)
    y = np.random.uniform(size=[1, 3, 3, 1]).astype(np.float32)
    c2 = 9e-6
    covariance = np.mean(x * y) - x.mean() * y.mean()
    ssim = (2 * covariance + c2) / (x.var() + y.var() + c2)
    error, pooled = losses.weighted_ssim(x, y, np.ones([1, 3, 3], np.float32))
    assert float(error[0, 0, 0, 0]) == pytest.approx(np.clip((1 - ssim) / 2, 0, 1), rel=1e-4)
    assert float(pooled[0, 0, 0, 0]) == pytest.approx(1.0)


def test_weighted_ssim_ignores_pixels_with_zero_weight_up_to_epsilon():
    # Outlier at the centre with zero weight: the windowed statistics are those of the
    # other 8 pixels, weighted (1 + eps) against eps for the outlier.
    x = np.random.uniform(size=[1, 3, 3, 1]).astype(np.float32)
    y = x.copy()
    y[0, 1, 1, 0] = 5.0
    weight = np.ones([1, 3, 3], np.float32)
    weight[0, 1, 1] = 0.0
    error, _ = losses.weighted_ssim(x, y, weight, weight_epsilon=1e-6)
    assert float(error[0, 0, 0, 0]) < 1e-3


# --- RGB-D consistency -------------------------------------------------------


def _zoom_scene(height=8, width=10, depth=2.0, tz=0.5, depth2_offset=0.05):
    """A textured fronto-parallel plane seen before and after the camera moves back by tz.

    With the principal point at the image centre every pixel lands strictly inside
    frame 2 (x' = cx + (x - cx) D / (D + tz)); frame 2 is rendered analytically
    from the linear texture, and its depth map is D + tz + depth2_offset.
    """
    cx, cy = (width - 1) / 2, (height - 1) / 2
    u, v = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    rgb1 = _linear_image(u, v)
    back = (depth + tz) / depth
    rgb2 = _linear_image(cx + (u - cx) * back, cy + (v - cy) * back)
    k = _k(12, 11, cx, cy)
    warped = geometry.warp_depth(
        tf.fill([1, height, width], depth), [[0.0, 0.0, tz]], tf.zeros([1, 3]), k
    )
    depth2 = np.full([1, height, width], depth + tz + depth2_offset, np.float32)
    return warped, rgb1[None].astype(np.float32), depth2, rgb2[None].astype(np.float32)


def test_frame_warped_with_true_depth_and_motion_has_zero_photometric_error():
    warped, rgb1, depth2, rgb2 = _zoom_scene()
    assert warped[3].numpy().all()
    result = losses.rgbd_consistency(warped, rgb1, depth2, rgb2)
    assert float(result["rgb_error"]) == pytest.approx(0.0, abs=1e-6)
    assert float(result["ssim_error"]) == pytest.approx(0.0, abs=1e-5)
    # Frame 2's depth is 0.05 farther everywhere: O = 1 and the L1 depth error is 0.05.
    np.testing.assert_array_equal(result["frame1_closer_to_camera"], 1.0)
    assert float(result["depth_error"]) == pytest.approx(0.05, abs=1e-5)


def test_frame_warped_with_wrong_motion_has_positive_photometric_error():
    warped, rgb1, depth2, rgb2 = _zoom_scene()
    wrong = geometry.warp_depth(
        tf.fill([1, 8, 10], 2.0), tf.zeros([1, 3]), tf.zeros([1, 3]), _k(12, 11, 4.5, 3.5)
    )
    depth2 = depth2 - 0.5  # still farther than z' = 2 so O stays on
    result = losses.rgbd_consistency(wrong, rgb1, depth2, rgb2)
    assert float(result["rgb_error"]) > 0.01
    assert float(result["ssim_error"]) > 0.0


def test_occluded_points_are_excluded_from_rgb_and_depth_errors():
    # Frame 2 is nearer than z' everywhere: frame 1's points are hidden, O = 0.
    warped, rgb1, depth2, _ = _zoom_scene(depth2_offset=-1.0)
    result = losses.rgbd_consistency(warped, rgb1, depth2[..., None], np.zeros_like(rgb1))
    np.testing.assert_array_equal(result["frame1_closer_to_camera"], 0.0)
    assert float(result["rgb_error"]) == 0.0 and float(result["depth_error"]) == 0.0


def test_depth_proximity_weight_is_one_half_at_the_rms_depth_difference():
    # All differences equal δ: m2 = N δ² / (N + 1) + 1e-4 and w = m2 / (δ² + m2).
    warped, rgb1, depth2, rgb2 = _zoom_scene(depth2_offset=0.2)
    n = 80
    m2 = n * 0.04 / (n + 1) + 1e-4
    weight = losses.rgbd_consistency(warped, rgb1, depth2, rgb2)["depth_proximity_weight"]
    assert weight.shape == (1, 8, 10, 1)
    np.testing.assert_allclose(weight, m2 / (0.04 + m2), rtol=1e-4)


def test_rgbd_consistency_stops_gradients_of_the_weight():
    warped, rgb1, depth2, rgb2 = _zoom_scene()
    depth1 = tf.Variable(tf.fill([1, 8, 10], 2.0))
    depth2 = tf.Variable(depth2)
    with tf.GradientTape(persistent=True) as tape:
        warped = geometry.warp_depth(
            depth1, [[0.0, 0.0, 0.5]], tf.zeros([1, 3]), _k(12, 11, 4.5, 3.5)
        )
        result = losses.rgbd_consistency(warped, rgb1, depth2, rgb2)
        weight_sum = tf.reduce_sum(result["depth_proximity_weight"])
    assert tape.gradient(weight_sum, [depth1, depth2]) == [None, None]
    assert np.abs(tape.gradient(result["depth_error"], depth1).numpy()).sum() > 0


# --- motion cycle consistency ------------------------------------------------


def _inverse_motion_pair(height=4, width=5):
    angles1 = np.array([[0.1, -0.2, 0.3], [-0.25, 0.15, 0.05]], np.float32)
    r1 = [_rot(0, a[0]) @ _rot(1, a[1]) @ _rot(2, a[2]) for a in angles1]
    angles2 = np.stack([_angles_of(r.T) for r in r1])
    t1 = np.array([[0.3, -0.1, 0.5], [0.0, 0.2, -0.4]], np.float32)
    t2 = np.stack([-r.T @ t for r, t in zip(r1, t1)]).astype(np.float32)

    def field(t):
        return np.broadcast_to(t[:, None, None], [2, height, width, 3]).astype(np.float32)

    return angles1, field(t1), angles2, field(t2)


def _rot(axis, a):
    c, s = np.cos(a), np.sin(a)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    r = np.eye(3)
    r[i, i], r[j, j] = c, c
    r[i, j], r[j, i] = (-s, s) if axis != 1 else (s, -s)
    return r


def test_rotation_angle_helper_recovers_angles():
    angles = np.array([0.3, -0.4, 0.9])
    r = _rot(0, angles[0]) @ _rot(1, angles[1]) @ _rot(2, angles[2])
    np.testing.assert_allclose(_angles_of(r), angles, atol=1e-6)


def test_inverse_motions_have_zero_cycle_error():
    angles1, t1, angles2, t2 = _inverse_motion_pair()
    x = tf.random.uniform([2, 4, 5], 0, 4)
    y = tf.random.uniform([2, 4, 5], 0, 3)
    result = losses.motion_cycle_consistency(
        x, y, tf.ones([2, 4, 5], tf.bool), angles1, t1, angles2, t2
    )
    assert float(result["rotation_error"]) == pytest.approx(0.0, abs=1e-5)
    assert float(result["translation_error"]) == pytest.approx(0.0, abs=1e-5)


def test_non_inverse_motions_have_positive_cycle_error():
    angles1, t1, _, _ = _inverse_motion_pair()
    x = tf.random.uniform([2, 4, 5], 0, 4)
    y = tf.random.uniform([2, 4, 5], 0, 3)
    result = losses.motion_cycle_consistency(
        x, y, tf.ones([2, 4, 5], tf.bool), angles1, t1, angles1, t1
    )
    assert float(result["rotation_error"]) > 0.1
    assert float(result["translation_error"]) > 0.1


def test_cycle_mask_accepts_bool_and_float_with_channel():
    angles1, t1, _, _ = _inverse_motion_pair()
    x = tf.random.uniform([2, 4, 5], 0, 4)
    y = tf.random.uniform([2, 4, 5], 0, 3)
    mask = tf.random.uniform([2, 4, 5]) > 0.5
    as_bool = losses.motion_cycle_consistency(x, y, mask, angles1, t1, angles1, 2 * t1)
    as_float = losses.motion_cycle_consistency(
        x, y, tf.cast(mask, tf.float32)[..., None], angles1, t1, angles1, 2 * t1
    )
    assert float(as_bool["translation_error"]) == pytest.approx(
        float(as_float["translation_error"])
    )
    # Translation error is zero where the mask is off: compare to an all-off mask.
    off = losses.motion_cycle_consistency(
        x, y, tf.zeros([2, 4, 5], tf.bool), angles1, t1, angles1, 2 * t1
    )
    assert float(off["translation_error"]) == 0.0


def test_translation_cycle_stops_gradient_of_coordinates():
    angles1, t1, _, _ = _inverse_motion_pair()
    x = tf.Variable(tf.random.uniform([2, 4, 5], 0.2, 3.8))
    y = tf.Variable(tf.random.uniform([2, 4, 5], 0.2, 2.8))
    t2 = tf.Variable(tf.random.uniform([2, 4, 5, 3]))
    with tf.GradientTape() as tape:
        error = losses.motion_cycle_consistency(
            x, y, tf.ones([2, 4, 5], tf.bool), angles1, t1, angles1, t2
        )
    grad_x, grad_y, grad_t2 = tape.gradient(error["translation_error"], [x, y, t2])
    assert grad_x is None and grad_y is None
    assert np.abs(grad_t2.numpy()).sum() > 0


# --- smoothness --------------------------------------------------------------


def test_constant_depth_has_zero_smoothness_loss():
    assert (
        float(losses.depth_smoothness(tf.fill([2, 5, 6, 1], 3.0), tf.random.uniform([2, 5, 6, 3])))
        == 0.0
    )


def test_edge_aware_smoothness_of_ramp_is_damped_at_image_edge():
    # f = u (slope 1 along x, 0 along y); the image steps by 0.5 between columns 2 and 3.
    height, width = 4, 6
    field = np.broadcast_to(
        np.arange(width, dtype=np.float32)[None, None, :, None], [1, height, width, 1]
    )
    image = np.zeros([1, height, width, 3], np.float32)
    image[:, :, 3:] = 0.5
    expected = ((width - 2) + np.exp(-0.5)) / (width - 1)
    assert float(losses.edge_aware_smoothness(field, image)) == pytest.approx(expected, rel=1e-6)


def test_depth_smoothness_normalises_disparity_by_its_mean():
    depth = tf.random.uniform([2, 5, 6, 1], 1.0, 4.0)
    image = tf.random.uniform([2, 5, 6, 3])
    assert float(losses.depth_smoothness(3.0 * depth, image)) == pytest.approx(
        float(losses.depth_smoothness(depth, image)), rel=1e-5
    )


def test_normalized_full_field_has_unit_mean_squared_norm():
    field = tf.random.normal([2, 4, 5, 3])
    normalised = losses.normalize_motion_field(field, field)
    np.testing.assert_allclose(
        tf.reduce_mean(tf.reduce_sum(normalised**2, -1), [1, 2]), [1.0, 1.0], rtol=1e-5
    )


def test_constant_motion_field_has_zero_group_smoothness():
    field = tf.broadcast_to(tf.constant([0.3, -0.2, 1.0]), [2, 4, 5, 3])
    for wrap_around in (True, False):
        assert float(losses.motion_group_smoothness(field, wrap_around)) == pytest.approx(
            0.0, abs=1e-9
        )


def test_group_smoothness_of_ramp_counts_wrap_around_only_when_asked():
    height, width = 3, 5
    field = np.broadcast_to(
        np.arange(width, dtype=np.float32)[None, None, :, None], [1, height, width, 1]
    )
    # Without wrap-around every remaining difference is 1; with it, column 0's
    # neighbour is the last column, a jump of W - 1.
    assert float(losses.motion_group_smoothness(field, wrap_around=False)) == pytest.approx(1.0)
    assert float(losses.motion_group_smoothness(field, wrap_around=True)) == pytest.approx(
        2 * (width - 1) / width
    )


# --- sparsity ----------------------------------------------------------------


def test_motion_sparsity_l1_2_value_on_hand_made_field():
    # |T̂| = (0, 0, 0, 4): m = 1, terms 2·sqrt(1) three times and 2·sqrt(5).
    field = tf.constant([0.0, 0.0, 0.0, -4.0])[None, :, None, None]
    assert float(losses.motion_sparsity_l1_2(field)) == pytest.approx(
        (6 + 2 * np.sqrt(5)) / 4, rel=1e-6
    )


def test_motion_sparsity_l1_2_gradient_treats_mean_as_constant():
    # d/dx of mean(2 m sqrt(|x|/m + 1)) with m constant: sign(x) / (N sqrt(1 + |x|/m)).
    values = np.random.uniform(-2, 2, [1, 3, 4, 2]).astype(np.float32)
    field = tf.Variable(values)
    with tf.GradientTape() as tape:
        loss = losses.motion_sparsity_l1_2(field)
    m = np.abs(values).mean(axis=(1, 2), keepdims=True)
    expected = np.sign(values) / (values.size * np.sqrt(1 + np.abs(values) / m))
    np.testing.assert_allclose(tape.gradient(loss, field), expected, rtol=1e-5)


def test_motion_sparsity_l1_2_is_l1_near_zero_and_square_root_far_from_it():
    # One channel of N values: a tiny one (|x| << m) gets the L1 gradient 1/N; a
    # huge one (|x| >> m) gets (1/N) sqrt(m/|x|), the gradient of 2 sqrt(m |x|) / N.
    n = 400
    values = np.full([n], 1.0, np.float32)
    values[0], values[1] = 1e-5, 4e4
    field = tf.Variable(values[None, :, None, None])
    with tf.GradientTape() as tape:
        loss = losses.motion_sparsity_l1_2(field)
    grad = tape.gradient(loss, field).numpy().ravel() * n
    m = values.mean()
    assert grad[0] == pytest.approx(1.0, abs=1e-4)
    assert grad[1] == pytest.approx(np.sqrt(m / values[1]), rel=1e-2)


def test_motion_sparsity_l1_2_of_zero_field_is_zero_with_finite_gradient():
    field = tf.Variable(tf.zeros([2, 3, 4, 3]))
    with tf.GradientTape() as tape:
        loss = losses.motion_sparsity_l1_2(field)
    assert float(loss) == 0.0
    assert np.isfinite(tape.gradient(loss, field).numpy()).all()


def test_motion_sparsity_l1_is_mean_absolute_value():
    field = tf.constant([[[[1.0, -2.0, 3.0]]]])
    assert float(losses.motion_sparsity_l1(field)) == pytest.approx(2.0)


# --- the weighted sum --------------------------------------------------------


def _random_inputs(batch=2, height=8, width=10):
    rows = 2 * batch
    rgb = tf.random.uniform([batch * 2, height, width, 3])
    depth = tf.random.uniform([rows, height, width, 1], 1.0, 5.0)
    residual = tf.random.normal([rows, height, width, 3], stddev=0.05)
    background = tf.random.normal([rows, 1, 1, 3], stddev=0.1)
    return dict(
        rgb1=rgb,
        rgb2=tf.roll(rgb, batch, axis=0),
        depth1=depth,
        depth2=tf.roll(depth, batch, axis=0),
        rotation=tf.random.normal([rows, 3], stddev=0.05),
        translation=background + residual,
        residual_translation=residual,
        intrinsics=_k(10, 10, (width - 1) / 2, (height - 1) / 2, batch=rows),
    )


def test_default_losses_are_finite_with_finite_gradients():
    inputs = _random_inputs()
    variables = {name: tf.Variable(value) for name, value in inputs.items()}
    with tf.GradientTape() as tape:
        result, extras = losses.DepthMotionLosses()(**variables)
    assert all(np.isfinite(float(v)) for v in result.values())
    gradients = dict(zip(variables, tape.gradient(result["total"], list(variables.values()))))
    # The target depth enters only under stop-gradient (and through O and w).
    assert gradients.pop("depth2") is None
    for name, gradient in gradients.items():
        assert gradient is not None, name
        assert np.isfinite(tf.convert_to_tensor(gradient).numpy()).all(), name
    assert extras["depth_proximity_weight"].shape == (4, 8, 10, 1)
    assert extras["frame1_closer_to_camera"].shape == (4, 8, 10, 1)
    assert extras["pixel_x"].shape == (4, 8, 10) and extras["pixel_y"].shape == (4, 8, 10)


def test_total_is_twice_sum_of_weighted_terms_and_zero_weights_are_absent():
    result, _ = losses.DepthMotionLosses()(**_random_inputs())
    expected_keys = {
        "rgb",
        "ssim",
        "depth_smoothing",
        "rotation_cycle",
        "translation_cycle",
        "motion_smoothing",
        "motion_sparsity",
        "total",
    }
    assert set(result) == expected_keys
    terms = sum(float(v) for k, v in result.items() if k != "total")
    assert float(result["total"]) == pytest.approx(2 * terms, rel=1e-6)


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(losses.LossWeights)])
def test_each_weight_scales_its_own_term(name):
    inputs = _random_inputs()
    inputs["gt_depth"] = tf.random.uniform([4, 8, 10, 1], 0.0, 5.0)
    one = losses.DepthMotionLosses(losses.LossWeights(**{name: 1.0}))(**inputs)[0]
    three = losses.DepthMotionLosses(losses.LossWeights(**{name: 3.0}))(**inputs)[0]
    assert float(three[name]) == pytest.approx(3.0 * float(one[name]), rel=1e-5)
    assert float(one[name]) != 0.0


def test_flat_depth_with_receding_motion_masks_every_pixel():
    """The trivial minimum of METHOD.md §4 from a flat depth (README, quickstart status).

    Points moved away from the camera land behind frame 2's surface, so every
    pixel counts as occluded: the RGB term is exactly 0 and the SSIM weights
    fall to about 1e-4 of their value for the same images without motion.
    """
    inputs = _random_inputs()
    flat = tf.fill(tf.shape(inputs["depth1"]), 10.0)
    inputs.update(depth1=flat, depth2=flat, rotation=tf.zeros_like(inputs["rotation"]),
                  residual_translation=tf.zeros_like(inputs["residual_translation"]))
    weights = losses.LossWeights(rgb=1.0, ssim=1.0, depth_smoothing=0.0, rotation_cycle=0.0,
                                 translation_cycle=0.0, motion_smoothing=0.0, motion_sparsity=0.0)
    compute = losses.DepthMotionLosses(weights)
    receding = compute(**{**inputs, "translation": tf.zeros_like(inputs["translation"]) + [0.0, 0.0, 1.0]})[0]
    still = compute(**{**inputs, "translation": tf.zeros_like(inputs["translation"])})[0]
    assert float(receding["rgb"]) == 0.0
    assert float(still["ssim"]) > 0.05
    assert float(receding["ssim"]) < 1e-3 * float(still["ssim"])


def test_perfect_opposite_motions_in_swapped_halves_give_zero_cycle_losses():
    angles1, t1, angles2, t2 = _inverse_motion_pair(8, 10)
    inputs = _random_inputs()
    inputs["rotation"] = tf.concat([angles1, angles2], 0)
    inputs["translation"] = tf.concat([t1, t2], 0)
    result, _ = losses.DepthMotionLosses()(**inputs)
    assert float(result["rotation_cycle"]) == pytest.approx(0.0, abs=1e-8)
    assert float(result["translation_cycle"]) == pytest.approx(0.0, abs=1e-7)


def test_depth_supervision_averages_over_pixels_with_ground_truth():
    inputs = _random_inputs()
    inputs["depth1"] = tf.fill([4, 8, 10, 1], 2.0)
    gt = np.zeros([4, 8, 10, 1], np.float32)
    gt[:, :2] = 3.0  # 1 m error where measured, nothing elsewhere
    weights = losses.LossWeights(depth_supervision=1.0)
    result, _ = losses.DepthMotionLosses(weights)(**inputs, gt_depth=gt)
    assert float(result["depth_supervision"]) == pytest.approx(1.0)


def test_depth_supervision_without_ground_truth_is_an_error():
    with pytest.raises(ValueError, match="gt_depth"):
        losses.DepthMotionLosses(losses.LossWeights(depth_supervision=1.0))(**_random_inputs())


def test_l1_sparsity_option_uses_mean_absolute_normalised_residual():
    inputs = _random_inputs()
    result, _ = losses.DepthMotionLosses(losses.LossWeights(motion_sparsity=1.0), sparsity="l1")(
        **inputs
    )
    normalised = losses.normalize_motion_field(
        inputs["residual_translation"], inputs["translation"]
    )
    assert float(result["motion_sparsity"]) == pytest.approx(
        float(tf.reduce_mean(tf.abs(normalised))), rel=1e-6
    )


def test_unknown_sparsity_is_an_error():
    with pytest.raises(ValueError, match="sparsity"):
        losses.DepthMotionLosses(sparsity="l0")


def test_mixed_precision_inputs_give_float32_losses():
    inputs = {k: tf.cast(v, tf.float16) for k, v in _random_inputs().items()}
    result, _ = losses.DepthMotionLosses()(**inputs)
    assert all(v.dtype == tf.float32 for v in result.values())


# --- the reference's loss options --------------------------------------------


def test_depth_variance_uses_one_mean_over_all_maps():
    # Two constant maps, 1 and 3: per-image normalisation would give variance 0
    # (an infinite loss); one mean μ = 2 gives mean((D/2 - 1)²) = 0.25.
    depth = tf.concat([tf.fill([1, 4, 4, 1], 1.0), tf.fill([1, 4, 4, 1], 3.0)], 0)
    assert float(losses.depth_variance(depth)) == pytest.approx(4.0)


@pytest.mark.parametrize("stop", [True, False])
def test_target_depth_stop_gradient_option(stop):
    inputs = _random_inputs()
    inputs["depth2"] = tf.Variable(inputs["depth2"])
    compute = losses.DepthMotionLosses(
        losses.LossWeights(depth_consistency=1.0), target_depth_stop_gradient=stop
    )
    with tf.GradientTape() as tape:
        result, _ = compute(**inputs)
    gradient = tape.gradient(result["total"], inputs["depth2"])
    assert (gradient is None) == stop
    if not stop:
        assert np.abs(tf.convert_to_tensor(gradient).numpy()).sum() > 0


def test_loss_pyramid_average_pools_two_by_two():
    image = tf.reshape(tf.range(16, dtype=tf.float32), [1, 4, 4, 1])
    levels = losses.loss_pyramid(image, 3)
    assert [tuple(level.shape) for level in levels] == [(1, 4, 4, 1), (1, 2, 2, 1), (1, 1, 1, 1)]
    np.testing.assert_allclose(levels[1][0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    assert float(levels[2][0, 0, 0, 0]) == pytest.approx(7.5)


def test_intrinsics_at_scale_follow_the_pooled_pixel_centres():
    # Pooled pixel 0 covers pixels 0 and 1, centred at 0.5: u → (u - 0.5) / 2.
    k = losses.intrinsics_at_scale(_k(100, 80, 50.5, 40.5), 1)
    np.testing.assert_allclose(geometry.intrinsics_vector(k), [[50, 40, 25, 20]])


def test_two_scales_add_the_half_weighted_loss_of_the_pooled_inputs():
    inputs = _random_inputs(height=8, width=12)
    weights = losses.LossWeights()
    one_scale = losses.DepthMotionLosses(weights)
    full = one_scale(**inputs)[0]
    pooled = {
        name: losses.loss_pyramid(value, 2)[1] if value.shape.rank == 4 else value
        for name, value in inputs.items()
    }
    pooled["intrinsics"] = losses.intrinsics_at_scale(inputs["intrinsics"], 1)
    coarse = one_scale(**pooled)[0]
    both = losses.DepthMotionLosses(weights, num_scales=2)(**inputs)[0]
    for name in full:
        assert float(both[name]) == pytest.approx(
            float(full[name]) + 0.5 * float(coarse[name]), rel=1e-5
        ), name


def test_scale_normalization_divides_depth_and_translation_by_the_mean_depth():
    inputs = _random_inputs()
    weights = losses.LossWeights(depth_variance=1e-3)
    normalised = losses.DepthMotionLosses(weights, scale_normalization=True)(**inputs)[0]
    mean = tf.reduce_mean(inputs["depth1"])
    by_hand = dict(inputs)
    for name in ("depth1", "depth2", "translation", "residual_translation"):
        by_hand[name] = inputs[name] / mean
    plain = losses.DepthMotionLosses(weights)(**by_hand)[0]
    for name in normalised:
        assert float(normalised[name]) == pytest.approx(float(plain[name]), rel=1e-4), name
    # Unchanged by a global rescaling of depth and translation (the option's purpose).
    scaled = dict(inputs)
    for name in ("depth1", "depth2", "translation", "residual_translation"):
        scaled[name] = inputs[name] * 7.0
    again = losses.DepthMotionLosses(weights, scale_normalization=True)(**scaled)[0]
    assert float(again["total"]) == pytest.approx(float(normalised["total"]), rel=1e-4)
