"""The part of a residual motion field that neither depth nor camera motion can produce.

With the warp ``X2 = R X1 + t + T(p)`` (METHOD.md §3), a change of a static
pixel's depth moves ``X2`` within its *epipolar plane*, spanned by ``t`` and
the rotated ray ``R K⁻¹ p``; a small change of the camera motion adds a
*rigid field* ``v + ω × X2`` (6 degrees of freedom per example). A free
field ``T`` can stand in for either, so an error of the depth or of the camera
motion draws it onto the static scene. :func:`unexplained_motion` keeps only
the part of ``T`` across each pixel's epipolar plane, less its robust fit by
the rigid fields (also projected across the planes): what is left is motion
that only a moving object explains. Pure TensorFlow, float32, batched; depth
and translation in the same (learned) units.
"""

import tensorflow as tf

from depth_motion_tf import geometry


def rigid_points(depth, rotation, translation, intrinsics):
    """Where the rigid warp puts each pixel of frame 1: ``X2 = R K⁻¹ p D + t``.

    Args:
        depth: ``[B, H, W, 1]`` float, frame-1 depth ``D``.
        rotation: ``[B, 3]`` float, angles (radians) of ``R``.
        translation: ``[B, 3]`` float, camera translation ``t``.
        intrinsics: ``[B, 3, 3]`` float ``K`` in pixels.
    Returns:
        ``(points, rotated_rays)``: ``[B, H, W, 3]`` float32 each, ``X2`` and
        ``R K⁻¹ p`` (the rotated ray of each pixel, unit depth).
    """
    depth = tf.cast(depth, tf.float32)
    shape = tf.shape(depth)
    rays = tf.einsum(
        "bij,hwj->bhwi",
        geometry.invert_intrinsics(tf.cast(intrinsics, tf.float32)),
        geometry.pixel_grid(shape[1], shape[2]),
    )
    rotated_rays = geometry.matvec_field(geometry.rotation_matrix(rotation), rays)
    translation = tf.cast(translation, tf.float32)[:, None, None, :]
    return rotated_rays * depth + translation, rotated_rays


def epipolar_normals(rotated_rays, translation):
    """Unit normals ``n = t × R K⁻¹ p / |t × R K⁻¹ p|`` of each pixel's epipolar plane.

    Args:
        rotated_rays: ``[B, H, W, 3]`` float32, ``R K⁻¹ p``.
        translation: ``[B, 3]`` float, camera translation ``t``.
    Returns:
        ``[B, H, W, 3]`` float32; zero where ``t`` is zero or along the ray
        (there no field component is across the plane).
    """
    translation = tf.broadcast_to(
        tf.cast(translation, tf.float32)[:, None, None, :], tf.shape(rotated_rays)
    )
    normal = tf.linalg.cross(translation, rotated_rays)
    return tf.math.divide_no_nan(normal, tf.norm(normal, axis=-1, keepdims=True))


def across_epipolar_planes(field, normals):
    """The component ``(T · n) n`` of a field across each pixel's epipolar plane.

    Args:
        field: ``[B, H, W, 3]`` float32 (or ``[B, H, W, 3, K]``: K fields at once).
        normals: ``[B, H, W, 3]`` float32 unit normals (:func:`epipolar_normals`).
    Returns:
        The same shape as ``field``.
    """
    normals = normals if field.shape.rank == 4 else normals[..., None]
    return tf.reduce_sum(field * normals, axis=3, keepdims=True) * normals


def rigid_motion_basis(points):
    """The 6 fields of a small rigid motion ``v + ω × X`` at the points ``X``.

    Args:
        points: ``[B, H, W, 3]`` float32.
    Returns:
        ``[B, H, W, 3, 6]`` float32: unit translations along x, y, z, then the
        unit rotations ``e_x × X``, ``e_y × X``, ``e_z × X``.
    """
    x, y, z = tf.unstack(points, axis=-1)
    zero, one = tf.zeros_like(x), tf.ones_like(x)
    fields = [
        (one, zero, zero), (zero, one, zero), (zero, zero, one),
        (zero, -z, y), (z, zero, -x), (-y, x, zero),
    ]
    return tf.stack([tf.stack(field, axis=-1) for field in fields], axis=-1)


def without_rigid_motion(field, basis, iterations=3):
    """The field less its robust least-squares fit by the basis fields.

    Iteratively reweighted least squares (weights ``1 / max(|r|, 0.1 mean|r|)``,
    held constant in the gradient) approximates the L1 fit, so a few moving
    objects barely tilt it; the last solve is differentiable in ``field``.

    Args:
        field: ``[B, H, W, 3]`` float32.
        basis: ``[B, H, W, 3, K]`` float32 (:func:`rigid_motion_basis`).
        iterations: reweighting rounds after the first (unweighted) solve.
    Returns:
        ``[B, H, W, 3]`` float32 residual of the fit.
    """
    basis = tf.stop_gradient(basis)
    identity = tf.eye(basis.shape[-1])
    weight = tf.ones_like(field[..., 0])
    for round_ in range(iterations + 1):
        gram = tf.einsum("bhw,bhwik,bhwil->bkl", weight, basis, basis)
        moment = tf.einsum("bhw,bhwik,bhwi->bk", weight, basis, field)
        # Ridge relative to the Gram's scale: a basis field that vanishes stays unused.
        ridge = 1e-6 * tf.reduce_mean(tf.linalg.diag_part(gram), -1)[:, None, None] + 1e-12
        coefficients = tf.linalg.solve(gram + ridge * identity, moment[..., None])[..., 0]
        residual = field - tf.einsum("bhwik,bk->bhwi", basis, coefficients)
        if round_ < iterations:
            norm = tf.norm(residual, axis=-1)
            floor = 0.1 * tf.reduce_mean(norm, axis=[1, 2], keepdims=True) + 1e-9
            weight = tf.stop_gradient(1.0 / tf.maximum(norm, floor))
    return residual


def unexplained_motion(field, depth, rotation, translation, intrinsics):
    """The residual field less what a depth change or a small camera motion could produce.

    Args:
        field: ``[B, H, W, 3]`` float, the residual translation field ``T``.
        depth: ``[B, H, W, 1]`` float, frame-1 depth.
        rotation: ``[B, 3]`` float, camera rotation angles (radians).
        translation: ``[B, 3]`` float, camera translation ``t``.
        intrinsics: ``[B, 3, 3]`` float ``K`` in pixels.
    Returns:
        ``[B, H, W, 3]`` in ``field``'s dtype: its part across the epipolar
        planes, less the robust fit of the rigid fields projected likewise.
        Gradients reach ``field`` only (the planes and points are held).
    """
    points, rotated_rays = rigid_points(depth, rotation, translation, intrinsics)
    normals = tf.stop_gradient(epipolar_normals(rotated_rays, translation))
    basis = across_epipolar_planes(rigid_motion_basis(tf.stop_gradient(points)), normals)
    across = across_epipolar_planes(tf.cast(field, tf.float32), normals)
    return tf.cast(without_rigid_motion(across, basis), field.dtype)
