"""Tests for depth_motion_tf.field_projection: expectations computed in NumPy."""

import numpy as np
import tensorflow as tf

from depth_motion_tf import field_projection

B, H, W = 2, 12, 16
K = np.array([[14.0, 0.0, 7.5], [0.0, 14.0, 5.5], [0.0, 0.0, 1.0]])


def _scene(seed=0):
    """Depth, rotation (rad), translation and intrinsics of a random two-example batch."""
    rng = np.random.default_rng(seed)
    depth = rng.uniform(2.0, 20.0, (B, H, W, 1)).astype(np.float32)
    rotation = rng.normal(0.0, 0.05, (B, 3)).astype(np.float32)
    translation = np.array([[0.1, -0.05, 1.0], [0.3, 0.02, 0.6]], np.float32)
    intrinsics = np.tile(K, (B, 1, 1)).astype(np.float32)
    return depth, rotation, translation, intrinsics


def _rays_and_points(depth, rotation, translation):
    """``R K⁻¹ p`` and ``X2 = R K⁻¹ p D + t`` computed pixel by pixel in NumPy."""
    rays = np.zeros((B, H, W, 3))
    for b in range(B):
        rx, ry, rz = rotation[b]
        cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
        r = (np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
             @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
             @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]))
        for v in range(H):
            for u in range(W):
                rays[b, v, u] = r @ np.linalg.solve(K, [u, v, 1.0])
    return rays, rays * depth + translation[:, None, None, :]


def test_rigid_points_are_the_rotated_rays_at_depth_plus_translation():
    depth, rotation, translation, intrinsics = _scene()
    points, rays = field_projection.rigid_points(depth, rotation, translation, intrinsics)
    want_rays, want_points = _rays_and_points(depth, rotation, translation)
    np.testing.assert_allclose(rays.numpy(), want_rays, atol=1e-5)
    np.testing.assert_allclose(points.numpy(), want_points, rtol=1e-5, atol=1e-5)


def test_a_depth_change_or_a_move_along_t_has_no_part_across_the_epipolar_planes():
    depth, rotation, translation, intrinsics = _scene()
    rays, _ = _rays_and_points(depth, rotation, translation)
    rng = np.random.default_rng(1)
    # A static pixel's depth D → D + a moves X2 by a·R K⁻¹ p; any b·t stays in the plane too.
    field = rng.normal(size=(B, H, W, 1)) * rays + rng.normal(size=(B, H, W, 1)) * translation[:, None, None, :]
    normals = field_projection.epipolar_normals(tf.constant(rays, tf.float32), translation)
    across = field_projection.across_epipolar_planes(tf.constant(field, tf.float32), normals)
    assert np.abs(across.numpy()).max() < 1e-5 * np.abs(field).max()


def test_the_part_across_the_plane_is_along_t_cross_the_ray():
    depth, rotation, translation, intrinsics = _scene()
    rays, _ = _rays_and_points(depth, rotation, translation)
    field = np.random.default_rng(2).normal(size=(B, H, W, 3))
    normal = np.cross(np.broadcast_to(translation[:, None, None, :], rays.shape), rays)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    want = (field * normal).sum(-1, keepdims=True) * normal
    normals = field_projection.epipolar_normals(tf.constant(rays, tf.float32), translation)
    got = field_projection.across_epipolar_planes(tf.constant(field, tf.float32), normals)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


def test_rigid_motion_basis_combines_into_v_plus_omega_cross_x():
    points = np.random.default_rng(3).normal(size=(B, H, W, 3)).astype(np.float32)
    v, omega = np.array([0.3, -0.2, 0.1]), np.array([0.02, 0.05, -0.01])
    basis = field_projection.rigid_motion_basis(tf.constant(points)).numpy()
    got = basis @ np.concatenate([v, omega])
    np.testing.assert_allclose(got, v + np.cross(omega, points), atol=1e-5)


def _unexplained(field, scene):
    return field_projection.unexplained_motion(tf.constant(field, tf.float32), *scene).numpy()


def test_a_small_camera_motion_is_not_unexplained_motion():
    scene = _scene()
    _, points = _rays_and_points(*scene[:3])
    field = np.array([0.05, -0.02, 0.08]) + np.cross([0.01, -0.02, 0.005], points)
    assert np.linalg.norm(_unexplained(field, scene), axis=-1).max() < 1e-3 * np.linalg.norm(field, axis=-1).max()


def test_an_object_moving_across_the_planes_keeps_its_motion():
    scene = _scene()
    rays, points = _rays_and_points(*scene[:3])
    normal = np.cross(np.broadcast_to(scene[2][:, None, None, :], rays.shape), rays)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    field = np.zeros((B, H, W, 3))
    field[:, 3:6, 4:8] = 0.5 * normal[:, 3:6, 4:8]  # a 3x4 object, 6% of the image
    rigid = np.array([0.05, -0.02, 0.08]) + np.cross([0.01, -0.02, 0.005], points)
    got = _unexplained(field + rigid, scene)
    np.testing.assert_allclose(got[:, 3:6, 4:8], field[:, 3:6, 4:8], atol=0.02)
    elsewhere = np.ones((H, W), bool)
    elsewhere[3:6, 4:8] = False
    assert np.linalg.norm(got, axis=-1)[:, elsewhere].max() < 0.01


def test_gradients_reach_the_field_and_are_finite():
    scene = [tf.constant(x) for x in _scene()]
    field = tf.Variable(np.random.default_rng(4).normal(size=(B, H, W, 3)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(scene[0])
        loss = tf.reduce_sum(field_projection.unexplained_motion(field, *scene) ** 2)
    grad = tape.gradient(loss, field)
    assert np.all(np.isfinite(grad.numpy())) and np.abs(grad.numpy()).max() > 0
    assert tape.gradient(loss, scene[0]) is None  # the planes and points are held


def test_a_zero_translation_leaves_no_unexplained_motion_and_no_nan():
    depth, rotation, _, intrinsics = _scene()
    field = np.random.default_rng(5).normal(size=(B, H, W, 3))
    got = _unexplained(field, (depth, rotation, np.zeros((B, 3), np.float32), intrinsics))
    assert np.all(np.isfinite(got)) and np.abs(got).max() == 0.0
