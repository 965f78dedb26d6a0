"""Camera geometry: rotations, intrinsics, depth warping and bilinear resampling.

Pure TensorFlow functions (METHOD.md §3 and §5), float32, batched. Pixel
coordinates are in pixels with (0, 0) the centre of the top-left pixel; angles
in radians; depth and translation in the same (arbitrary, learned) units.
"""

import tensorflow as tf


def _float32(value):
    return tf.cast(tf.convert_to_tensor(value), tf.float32)


def rotation_matrix(angles):
    """Rotation matrix ``R = Rx(rx) · Ry(ry) · Rz(rz)`` (METHOD.md §3).

    Args:
        angles: ``[..., 3]`` float, ``(rx, ry, rz)`` in radians.
    Returns:
        ``[..., 3, 3]`` float32 rotation matrix (so ``R[..., 0, 2] = sin ry``).
    """
    angles = _float32(angles)
    sx, sy, sz = tf.unstack(tf.sin(angles), axis=-1)
    cx, cy, cz = tf.unstack(tf.cos(angles), axis=-1)
    rows = [
        [cy * cz, -cy * sz, sy],
        [cx * sz + sx * sy * cz, cx * cz - sx * sy * sz, -sx * cy],
        [sx * sz - cx * sy * cz, sx * cz + cx * sy * sz, cx * cy],
    ]
    return tf.stack([tf.stack(row, axis=-1) for row in rows], axis=-2)


def intrinsics_matrix(fx, fy, cx, cy):
    """Pinhole intrinsics matrix (zero skew).

    Args:
        fx, fy: ``[...]`` float focal lengths in pixels.
        cx, cy: ``[...]`` float principal point in pixels.
    Returns:
        ``[..., 3, 3]`` float32 ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
    """
    fx, fy, cx, cy = (_float32(v) for v in (fx, fy, cx, cy))
    zero = tf.zeros_like(fx + fy + cx + cy)  # broadcast all four to one shape
    one = tf.ones_like(zero)
    rows = [[fx + zero, zero, cx + zero], [zero, fy + zero, cy + zero], [zero, zero, one]]
    return tf.stack([tf.stack(row, axis=-1) for row in rows], axis=-2)


def intrinsics_vector(intrinsics):
    """``[..., 3, 3]`` intrinsics matrix → ``[..., 4]`` float32 ``(fx, fy, cx, cy)``."""
    intrinsics = _float32(intrinsics)
    return tf.stack(
        [
            intrinsics[..., 0, 0],
            intrinsics[..., 1, 1],
            intrinsics[..., 0, 2],
            intrinsics[..., 1, 2],
        ],
        axis=-1,
    )


def invert_intrinsics(intrinsics):
    """Analytic inverse of a zero-skew intrinsics matrix.

    Args:
        intrinsics: ``[..., 3, 3]`` float ``K``.
    Returns:
        ``[..., 3, 3]`` float32 ``K⁻¹ = [[1/fx, 0, -cx/fx], [0, 1/fy, -cy/fy], [0, 0, 1]]``.
    """
    fx, fy, cx, cy = tf.unstack(intrinsics_vector(intrinsics), axis=-1)
    zero = tf.zeros_like(fx)
    one = tf.ones_like(fx)
    rows = [[1.0 / fx, zero, -cx / fx], [zero, 1.0 / fy, -cy / fy], [zero, zero, one]]
    return tf.stack([tf.stack(row, axis=-1) for row in rows], axis=-2)


def scale_intrinsics(intrinsics, sx, sy):
    """Intrinsics of an image resized by ``sx`` horizontally and ``sy`` vertically.

    Plain scaling (METHOD.md §5): ``fx, cx`` times ``sx``; ``fy, cy`` times ``sy``.

    Args:
        intrinsics: ``[..., 3, 3]`` float ``K``.
        sx, sy: scalars or ``[...]`` floats, new size / old size.
    Returns:
        ``[..., 3, 3]`` float32.
    """
    fx, fy, cx, cy = tf.unstack(intrinsics_vector(intrinsics), axis=-1)
    sx, sy = _float32(sx), _float32(sy)
    return intrinsics_matrix(fx * sx, fy * sy, cx * sx, cy * sy)


def crop_intrinsics(intrinsics, offset_x, offset_y):
    """Intrinsics of a crop whose top-left pixel is ``(offset_x, offset_y)``.

    Args:
        intrinsics: ``[..., 3, 3]`` float ``K``.
        offset_x, offset_y: scalars or ``[...]`` floats, crop offset in pixels.
    Returns:
        ``[..., 3, 3]`` float32 with ``cx - offset_x``, ``cy - offset_y``.
    """
    fx, fy, cx, cy = tf.unstack(intrinsics_vector(intrinsics), axis=-1)
    return intrinsics_matrix(fx, fy, cx - _float32(offset_x), cy - _float32(offset_y))


def flip_intrinsics(intrinsics, width):
    """Intrinsics of a left-right flipped image of ``width`` pixels.

    Args:
        intrinsics: ``[..., 3, 3]`` float ``K``.
        width: scalar or ``[...]`` image width in pixels.
    Returns:
        ``[..., 3, 3]`` float32 with ``cx → width - 1 - cx``; ``cy`` unchanged.
    """
    fx, fy, cx, cy = tf.unstack(intrinsics_vector(intrinsics), axis=-1)
    return intrinsics_matrix(fx, fy, _float32(width) - 1.0 - cx, cy)


def per_video_intrinsics(params, height, width):
    """Intrinsics from four learned per-video values (METHOD.md §5).

    Args:
        params: ``[..., 4]`` float ``(a, b, c, d)``, initialised ``(1, 1, 0.5, 0.5)``.
        height, width: image size in pixels.
    Returns:
        ``[..., 3, 3]`` float32 with ``fx = a (H+W)/2``, ``fy = b (H+W)/2``,
        ``cx = c W``, ``cy = d H``.
    """
    a, b, c, d = tf.unstack(_float32(params), axis=-1)
    height, width = _float32(height), _float32(width)
    half_perimeter = (height + width) / 2.0
    return intrinsics_matrix(a * half_perimeter, b * half_perimeter, c * width, d * height)


def _pixel_grid(height, width):
    """``[H, W, 3]`` float32 homogeneous pixel coordinates ``(u, v, 1)``."""
    u, v = tf.meshgrid(tf.range(width, dtype=tf.float32), tf.range(height, dtype=tf.float32))
    return tf.stack([u, v, tf.ones_like(u)], axis=-1)


def _drop_channel(tensor):
    """``[B, H, W, 1]`` → ``[B, H, W]``; ``[B, H, W]`` unchanged."""
    tensor = _float32(tensor)
    return tensor[..., 0] if tensor.shape.rank == 4 else tensor


def warp_depth(depth, translation, rotation, intrinsics):
    """Where each pixel of frame 1 lands in frame 2, and at what depth (METHOD.md §3).

    ``q = K R K⁻¹ p D1(p) + K T(p)``; ``z' = q_z``, ``x' = q_x / q_z``,
    ``y' = q_y / q_z``. Valid where ``0 ≤ x' < W-1``, ``0 ≤ y' < H-1``,
    ``z' > 0`` and all are finite; the coordinates are then NaN-zeroed and
    clamped into ``[0, W-1] x [0, H-1]`` so they can be resampled safely.

    Args:
        depth: ``[B, H, W]`` (or ``[B, H, W, 1]``) float, frame-1 depth ``D1``.
        translation: ``[B, 3]`` or ``[B, H, W, 3]`` float, translation ``T``.
        rotation: ``[B, 3]`` float, rotation angles (radians) of ``R``.
        intrinsics: ``[B, 3, 3]`` float ``K`` in pixels.
    Returns:
        ``(pixel_x, pixel_y, z, mask)``: ``[B, H, W]`` float32 ``x'``, ``y'``,
        ``z'`` and a ``[B, H, W]`` tf.bool validity mask ``M``.
    """
    depth = _drop_channel(depth)
    translation = _float32(translation)
    intrinsics = _float32(intrinsics)
    if translation.shape.rank == 2:
        translation = translation[:, None, None, :]
    shape = tf.shape(depth)
    height, width = shape[1], shape[2]

    projection = intrinsics @ rotation_matrix(rotation) @ invert_intrinsics(intrinsics)
    rotated = tf.einsum("bij,hwj->bhwi", projection, _pixel_grid(height, width))
    moved = tf.linalg.matvec(intrinsics[:, None, None], translation)
    q = rotated * depth[..., None] + moved
    z = q[..., 2]
    # z' = 0 is invalid anyway; divide_no_nan keeps its gradient finite.
    pixel_x = tf.math.divide_no_nan(q[..., 0], z)
    pixel_y = tf.math.divide_no_nan(q[..., 1], z)

    max_x = tf.cast(width - 1, tf.float32)
    max_y = tf.cast(height - 1, tf.float32)
    finite = tf.math.is_finite(pixel_x) & tf.math.is_finite(pixel_y) & tf.math.is_finite(z)
    mask = (
        finite
        & (pixel_x >= 0.0)
        & (pixel_x < max_x)
        & (pixel_y >= 0.0)
        & (pixel_y < max_y)
        & (z > 0.0)
    )
    pixel_x = tf.clip_by_value(_zero_non_finite(pixel_x), 0.0, max_x)
    pixel_y = tf.clip_by_value(_zero_non_finite(pixel_y), 0.0, max_y)
    return pixel_x, pixel_y, z, mask


def _zero_non_finite(tensor):
    return tf.where(tf.math.is_finite(tensor), tensor, tf.zeros_like(tensor))


def resample(data, pixel_x, pixel_y):
    """Bilinear sampling of an image at float pixel coordinates (METHOD.md §3).

    Four batched ``tf.gather`` calls (one per corner), XLA-compilable,
    differentiable with respect to ``data`` and the coordinates. Coordinates
    outside the image are clamped to it (edge values, zero coordinate gradient
    there).

    Args:
        data: ``[B, H, W, C]`` float.
        pixel_x, pixel_y: ``[B, H', W']`` float coordinates in pixels of ``data``.
    Returns:
        ``[B, H', W', C]`` float32.
    """
    data = _float32(data)
    pixel_x, pixel_y = _float32(pixel_x), _float32(pixel_y)
    shape = tf.shape(data)
    height, width, channels = shape[1], shape[2], shape[3]
    out_shape = tf.shape(pixel_x)

    x = tf.clip_by_value(pixel_x, 0.0, tf.cast(width - 1, tf.float32))
    y = tf.clip_by_value(pixel_y, 0.0, tf.cast(height - 1, tf.float32))
    x0 = tf.stop_gradient(tf.minimum(tf.floor(x), tf.cast(tf.maximum(width - 2, 0), tf.float32)))
    y0 = tf.stop_gradient(tf.minimum(tf.floor(y), tf.cast(tf.maximum(height - 2, 0), tf.float32)))
    wx = (x - x0)[..., None]
    wy = (y - y0)[..., None]
    col0 = tf.cast(x0, tf.int32)
    row0 = tf.cast(y0, tf.int32)
    col1 = tf.minimum(col0 + 1, width - 1)
    row1 = tf.minimum(row0 + 1, height - 1)

    flat = tf.reshape(data, [shape[0], height * width, channels])

    def corner(row, col):
        index = tf.reshape(row * width + col, [out_shape[0], -1])
        values = tf.gather(flat, index, batch_dims=1)
        return tf.reshape(values, tf.concat([out_shape, [channels]], axis=0))

    top = (1.0 - wx) * corner(row0, col0) + wx * corner(row0, col1)
    bottom = (1.0 - wx) * corner(row1, col0) + wx * corner(row1, col1)
    return (1.0 - wy) * top + wy * bottom
