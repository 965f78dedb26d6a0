"""Tests for depth_motion_tf.geometry: expectations computed by hand or in NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from depth_motion_tf import geometry


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _k(fx, fy, cx, cy, batch=1):
    return tf.constant(np.tile([[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]], [batch, 1, 1]), tf.float32)


def _grid(height, width):
    return np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


# --- rotations ---------------------------------------------------------------


def test_rotation_matrix_is_orthonormal_with_unit_determinant():
    angles = tf.random.uniform([5, 3], -np.pi, np.pi)
    r = geometry.rotation_matrix(angles).numpy()
    np.testing.assert_allclose(
        r @ np.transpose(r, [0, 2, 1]), np.tile(np.eye(3), [5, 1, 1]), atol=1e-6
    )
    np.testing.assert_allclose(np.linalg.det(r), np.ones(5), atol=1e-6)


@pytest.mark.parametrize("axis, hand_built", [(0, _rx), (1, _ry), (2, _rz)])
def test_rotation_matrix_matches_single_axis_rotations(axis, hand_built):
    angles = np.zeros(3, np.float32)
    angles[axis] = 0.7
    np.testing.assert_allclose(geometry.rotation_matrix(angles), hand_built(0.7), atol=1e-6)


def test_rotation_matrix_composes_x_then_y_then_z_as_rx_ry_rz():
    rx, ry, rz = 0.3, -0.5, 1.1
    expected = _rx(rx) @ _ry(ry) @ _rz(rz)
    r = geometry.rotation_matrix([[rx, ry, rz]])[0].numpy()
    np.testing.assert_allclose(r, expected, atol=1e-6)
    assert r[0, 2] == pytest.approx(np.sin(ry), abs=1e-6)


# --- intrinsics --------------------------------------------------------------


def test_intrinsics_matrix_and_vector_round_trip():
    k = geometry.intrinsics_matrix([100.0, 50.0], [90.0, 40.0], [60.0, 30.0], [20.0, 10.0])
    np.testing.assert_allclose(k[1], [[50, 0, 30], [0, 40, 10], [0, 0, 1]])
    np.testing.assert_allclose(geometry.intrinsics_vector(k), [[100, 90, 60, 20], [50, 40, 30, 10]])


def test_invert_intrinsics_gives_identity_product():
    k = geometry.intrinsics_matrix([120.0, 7.0], [80.0, 9.0], [61.5, 3.2], [40.2, 4.4])
    np.testing.assert_allclose(
        k @ geometry.invert_intrinsics(k), np.tile(np.eye(3), [2, 1, 1]), atol=1e-6
    )


def test_scale_intrinsics_map_scales_x_terms_by_sx_and_y_terms_by_sy():
    k = geometry.apply_intrinsics_map(geometry.scale_intrinsics_map(0.5, 0.25), _k(100, 80, 50, 40))
    np.testing.assert_allclose(geometry.intrinsics_vector(k), [[50, 20, 25, 10]])


def test_crop_intrinsics_map_shifts_principal_point_by_offset():
    k = geometry.apply_intrinsics_map(geometry.crop_intrinsics_map(12.0, 5.0), _k(100, 80, 50, 40))
    np.testing.assert_allclose(geometry.intrinsics_vector(k), [[100, 80, 38, 35]])


def test_flip_intrinsics_map_mirrors_cx_and_keeps_cy():
    k = geometry.apply_intrinsics_map(geometry.flip_intrinsics_map(416), _k(100, 80, 50, 40))
    np.testing.assert_allclose(geometry.intrinsics_vector(k), [[100, 80, 365, 40]])


def test_composed_map_equals_the_maps_applied_in_turn_and_inverts():
    k = _k(100, 80, 50, 40)
    crop, scale = geometry.crop_intrinsics_map(12.0, 5.0), geometry.scale_intrinsics_map(0.5, 0.25)
    flip = geometry.flip_intrinsics_map(208)
    in_turn = geometry.apply_intrinsics_map(
        flip, geometry.apply_intrinsics_map(scale, geometry.apply_intrinsics_map(crop, k))
    )
    composed = geometry.compose_intrinsics_maps(flip, geometry.compose_intrinsics_maps(scale, crop))
    # By hand: fx 100·0.5, fy 80·0.25, cx 207 - (50-12)·0.5, cy (40-5)·0.25.
    np.testing.assert_allclose(geometry.intrinsics_vector(in_turn), [[50, 20, 188, 8.75]])
    np.testing.assert_allclose(geometry.apply_intrinsics_map(composed, k), in_turn, atol=1e-5)
    back = geometry.apply_intrinsics_map(geometry.invert_intrinsics_map(composed), in_turn)
    np.testing.assert_allclose(back, k, atol=1e-4)


def test_per_video_intrinsics_at_initial_values():
    k = geometry.per_video_intrinsics(
        tf.constant([[1.0, 1.0, 0.5, 0.5], [2.0, 0.5, 0.25, 1.0]]), 128, 416
    )
    np.testing.assert_allclose(
        geometry.intrinsics_vector(k), [[272, 272, 208, 64], [544, 136, 104, 128]]
    )


# --- warp_depth --------------------------------------------------------------


def test_identity_motion_maps_pixels_to_themselves():
    height, width = 4, 6
    depth = tf.fill([2, height, width], 2.0)
    x, y, z, mask = geometry.warp_depth(
        depth, tf.zeros([2, 3]), tf.zeros([2, 3]), _k(4, 4, 2, 1, batch=2)
    )
    u, v = _grid(height, width)
    np.testing.assert_allclose(x[1], u, atol=1e-6)
    np.testing.assert_allclose(y[1], v, atol=1e-6)
    np.testing.assert_allclose(z, depth)
    expected_mask = np.ones([height, width], bool)
    expected_mask[-1, :] = False
    expected_mask[:, -1] = False
    np.testing.assert_array_equal(mask[0], expected_mask)
    assert mask.dtype == tf.bool


def test_translation_along_optical_axis_scales_about_principal_point():
    height, width, d, tz, cx, cy = 5, 7, 3.0, 1.5, 2.7, 1.9
    x, y, z, _ = geometry.warp_depth(
        tf.fill([1, height, width], d), [[0.0, 0.0, tz]], tf.zeros([1, 3]), _k(30, 20, cx, cy)
    )
    u, v = _grid(height, width)
    np.testing.assert_allclose(x[0], cx + (u - cx) * d / (d + tz), atol=1e-5)
    np.testing.assert_allclose(y[0], cy + (v - cy) * d / (d + tz), atol=1e-5)
    np.testing.assert_allclose(z[0], np.full([height, width], d + tz), atol=1e-6)


def test_rigid_motion_of_fronto_parallel_plane_reprojects_to_hand_computed_pixels():
    # Plane at depth 2, fx = fy = 10, principal point (2, 1.5): pixel (u, v) is the
    # point X = (u - 2) / 10 * 2, Y = (v - 1.5) / 10 * 2, Z = 2. Rotating 90° about
    # z maps (X, Y) to (-Y, X); translating 0.15 along x adds 10 * 0.15 / 2 = 0.75
    # pixel. So x' = 2 - (v - 1.5) + 0.75 and y' = 1.5 + (u - 2), z' = 2.
    size = 5
    x, y, z, mask = geometry.warp_depth(
        tf.fill([1, size, size], 2.0),
        [[0.15, 0.0, 0.0]],
        [[0.0, 0.0, np.pi / 2]],
        _k(10, 10, 2, 1.5),
    )
    u, v = _grid(size, size)
    expected_x, expected_y = 2 - (v - 1.5) + 0.75, 1.5 + (u - 2)
    inside = (
        (expected_x >= 0) & (expected_x < size - 1) & (expected_y >= 0) & (expected_y < size - 1)
    )
    np.testing.assert_array_equal(mask[0], inside)
    np.testing.assert_allclose(x[0].numpy()[inside], expected_x[inside], atol=1e-5)
    np.testing.assert_allclose(y[0].numpy()[inside], expected_y[inside], atol=1e-5)
    np.testing.assert_allclose(z[0], np.full([size, size], 2.0), atol=1e-6)


def test_constant_translation_field_equals_per_image_translation():
    depth = tf.random.uniform([2, 4, 5], 1.0, 3.0)
    rotation = tf.random.uniform([2, 3], -0.1, 0.1)
    t = tf.random.uniform([2, 3], -0.3, 0.3)
    k = _k(6, 5, 2, 1.5, batch=2)
    per_image = geometry.warp_depth(depth, t, rotation, k)
    field = geometry.warp_depth(depth, tf.broadcast_to(t[:, None, None], [2, 4, 5, 3]), rotation, k)
    for a, b in zip(per_image, field):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_points_behind_camera_are_invalid_and_coordinates_stay_in_image():
    height, width = 4, 5
    x, y, z, mask = geometry.warp_depth(
        tf.fill([1, height, width], 1.0), [[0.3, 0.0, -2.0]], tf.zeros([1, 3]), _k(4, 4, 2, 1.5)
    )
    assert not mask.numpy().any()
    assert (z.numpy() < 0).all()
    assert x.numpy().min() >= 0 and x.numpy().max() <= width - 1
    assert y.numpy().min() >= 0 and y.numpy().max() <= height - 1


def test_points_landing_outside_the_image_are_invalid():
    # A 2-pixel shift to the right: columns landing at x' >= W - 1 are invalid.
    height, width = 3, 6
    _, _, _, mask = geometry.warp_depth(
        tf.fill([1, height, width], 1.0), [[0.5, 0.0, 0.0]], tf.zeros([1, 3]), _k(4, 4, 2, 1)
    )
    expected = np.zeros([height, width], bool)
    expected[: height - 1, : width - 3] = True
    np.testing.assert_array_equal(mask[0], expected)


# --- resample ----------------------------------------------------------------


def test_rigid_warp_without_motion_returns_the_image():
    image = tf.random.stateless_uniform([2, 6, 8, 3], seed=[1, 2])
    warped = geometry.rigid_warp(image, tf.fill([2, 6, 8, 1], 4.0), tf.zeros([2, 3]),
                                 tf.zeros([2, 3]), _k(5.0, 5.0, 3.5, 2.5, batch=2))
    # The last column and row land on the border and are invalid (x' < W-1 is required).
    np.testing.assert_allclose(warped[:, :-1, :-1], image[:, :-1, :-1], atol=1e-6)
    assert np.all(warped.numpy()[:, :, -1] == 0.0) and np.all(warped.numpy()[:, -1] == 0.0)


def test_rigid_warp_of_a_sideways_step_samples_frame2_shifted_by_f_t_over_z():
    # A plane at depth 4, the camera stepping 0.8 along x: every pixel lands 5 * 0.8 / 4 = 1 px left.
    image = tf.random.stateless_uniform([1, 6, 8, 3], seed=[3, 4])
    warped = geometry.rigid_warp(image, tf.fill([1, 6, 8, 1], 4.0), tf.zeros([1, 3]),
                                 tf.constant([[-0.8, 0.0, 0.0]]), _k(5.0, 5.0, 3.5, 2.5))
    np.testing.assert_allclose(warped[:, :-1, 1:], image[:, :-1, :-1], atol=1e-5)
    assert np.all(warped.numpy()[:, :, 0] == 0.0)  # lands left of the image


def test_resample_at_integer_coordinates_returns_input_values():
    data = tf.random.uniform([2, 4, 5, 3])
    rows = np.random.randint(0, 4, [2, 3, 7])
    cols = np.random.randint(0, 5, [2, 3, 7])
    out = geometry.resample(data, cols.astype(np.float32), rows.astype(np.float32)).numpy()
    expected = data.numpy()[np.arange(2)[:, None, None], rows, cols]
    np.testing.assert_array_equal(out, expected)


def test_resample_interpolates_bilinearly_between_pixels():
    data = np.arange(20, dtype=np.float32).reshape([1, 4, 5, 1]) ** 2
    x, y = 1.25, 2.5
    # Hand interpolation of the four neighbours (1, 2), (2, 2), (1, 3), (2, 3).
    top = 0.75 * data[0, 2, 1, 0] + 0.25 * data[0, 2, 2, 0]
    bottom = 0.75 * data[0, 3, 1, 0] + 0.25 * data[0, 3, 2, 0]
    out = geometry.resample(data, [[[x]]], [[[y]]])
    assert out.shape == (1, 1, 1, 1)
    assert float(out[0, 0, 0, 0]) == pytest.approx(0.5 * top + 0.5 * bottom, rel=1e-6)


def test_resample_clamps_coordinates_outside_image_to_edge_values():
    data = tf.random.uniform([1, 3, 4, 2])
    out = geometry.resample(data, [[[-3.0, 9.0, 9.0]]], [[[-1.0, -2.0, 7.5]]]).numpy()
    np.testing.assert_allclose(out[0, 0], data.numpy()[0, [0, 0, 2], [0, 3, 3]], atol=1e-7)


def test_resample_gradients_match_finite_differences():
    data = tf.random.uniform([1, 3, 4, 2], dtype=tf.float32)
    x = tf.constant([[[0.3, 1.6, 2.2]]])
    y = tf.constant([[[0.7, 1.4, 0.2]]])
    for argument in range(3):

        def f(value, argument=argument):
            args = [data, x, y]
            args[argument] = value
            return geometry.resample(*args)

        theoretical, numerical = tf.test.compute_gradient(f, [[data, x, y][argument]], delta=1e-2)
        assert np.isfinite(theoretical[0]).all()
        np.testing.assert_allclose(theoretical[0], numerical[0], atol=2e-3)


def test_resample_runs_under_xla_with_same_result():
    data = tf.random.uniform([2, 6, 7, 3])
    x = tf.random.uniform([2, 4, 5], -1.0, 8.0)
    y = tf.random.uniform([2, 4, 5], -1.0, 7.0)
    compiled = tf.function(geometry.resample, jit_compile=True)
    np.testing.assert_allclose(compiled(data, x, y), geometry.resample(data, x, y), atol=1e-6)


# --- rigid motions -------------------------------------------------------------


def test_euler_angles_invert_rotation_matrix():
    angles = tf.constant([[0.1, -0.2, 0.3], [-0.5, 0.4, -1.2], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(
        geometry.euler_angles(geometry.rotation_matrix(angles)), angles, atol=1e-6
    )


def test_inverse_motion_composes_to_identity():
    angles, translation = tf.constant([[0.05, -0.1, 0.2]]), tf.constant([[0.3, -0.2, 1.5]])
    inverse_angles, inverse_translation = geometry.invert_motion(angles, translation)
    r, r_inv = geometry.rotation_matrix(angles)[0], geometry.rotation_matrix(inverse_angles)[0]
    np.testing.assert_allclose(r_inv @ r, np.eye(3), atol=1e-6)
    point = np.array([1.0, 2.0, 7.0], np.float32)
    moved = r.numpy() @ point + translation[0].numpy()
    np.testing.assert_allclose(r_inv.numpy() @ moved + inverse_translation[0].numpy(), point, atol=1e-5)


def test_relative_motion_maps_camera1_points_into_camera2():
    def pose(angles, position):
        p = np.eye(4, dtype=np.float32)
        p[:3, :3] = geometry.rotation_matrix(tf.constant(angles)).numpy()
        p[:3, 3] = position
        return p

    pose1, pose2 = pose([0.0, 0.1, 0.0], [0.0, 0.0, 0.0]), pose([0.02, 0.15, -0.01], [0.3, 0.0, 1.0])
    angles, translation = geometry.relative_motion(pose1, pose2)
    point1 = np.array([0.5, -1.0, 8.0], np.float32)
    world = pose1[:3, :3] @ point1 + pose1[:3, 3]
    point2 = np.linalg.inv(pose2[:3, :3]) @ (world - pose2[:3, 3])  # by hand
    moved = geometry.rotation_matrix(angles).numpy() @ point1 + translation.numpy()
    np.testing.assert_allclose(moved, point2, atol=1e-5)


def test_matvec_field_applies_each_example_its_own_matrix():
    rng = np.random.default_rng(4)
    matrix = rng.normal(size=(2, 3, 3)).astype(np.float32)
    field = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
    expected = np.stack([[[matrix[b] @ field[b, y, x] for x in range(5)] for y in range(4)] for b in range(2)])
    np.testing.assert_allclose(geometry.matvec_field(matrix, field), expected, rtol=1e-5, atol=1e-6)
