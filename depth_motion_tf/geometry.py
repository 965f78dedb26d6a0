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


def euler_angles(matrix):
    """Angles ``(rx, ry, rz)`` of ``R = Rx(rx) · Ry(ry) · Rz(rz)``, the inverse of :func:`rotation_matrix`.

    ``ry = asin(R02)``, ``rx = atan2(-R12, R22)``, ``rz = atan2(-R01, R00)``
    (unique for ``|ry| < π/2``).

    Args:
        matrix: ``[..., 3, 3]`` float rotation matrix.
    Returns:
        ``[..., 3]`` float32 angles in radians.
    """
    m = _float32(matrix)
    ry = tf.asin(tf.clip_by_value(m[..., 0, 2], -1.0, 1.0))
    rx = tf.atan2(-m[..., 1, 2], m[..., 2, 2])
    rz = tf.atan2(-m[..., 0, 1], m[..., 0, 0])
    return tf.stack([rx, ry, rz], axis=-1)


def invert_motion(rotation, translation):
    """The inverse rigid motion: ``R⁻¹ = Rᵀ``, ``t⁻¹ = −Rᵀ t`` (through rotation matrices).

    Args:
        rotation: ``[..., 3]`` float angles of ``R`` (radians).
        translation: ``[..., 3]`` float ``t`` (``X' = R X + t``).
    Returns:
        ``(angles, translation)`` of the inverse, ``[..., 3]`` float32 each.
    """
    transposed = tf.linalg.matrix_transpose(rotation_matrix(rotation))
    return euler_angles(transposed), -tf.linalg.matvec(transposed, _float32(translation))


def relative_motion(camera_to_world1, camera_to_world2):
    """Camera motion 1→2 from two poses: ``X2 = R X1 + t`` with ``[R | t] = inv(P2) · P1``.

    Args:
        camera_to_world1, camera_to_world2: ``[..., 4, 4]`` float poses ``P1``, ``P2``.
    Returns:
        ``(angles, translation)``, ``[..., 3]`` float32 each (radians; the poses' units).
    """
    motion = tf.linalg.inv(_float32(camera_to_world2)) @ _float32(camera_to_world1)
    return euler_angles(motion[..., :3, :3]), motion[..., :3, 3]


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


# An intrinsics map is what a crop, resize or flip does to (fx, fy, cx, cy): the
# affine map ``v' = scale · v + offset`` per component, stored as ``[..., 2, 4]``
# (row 0 the scale, row 1 the offset). Maps compose, so the data pipeline can hand
# the model the map of each example's augmentation (for learned intrinsics).


def intrinsics_map(scale, offset):
    """``[..., 2, 4]`` float32 map from ``[..., 4]`` ``scale`` and ``offset``."""
    return tf.stack([_float32(scale), _float32(offset)], axis=-2)


def crop_intrinsics_map(offset_x, offset_y):
    """Map of a crop whose top-left pixel is ``(offset_x, offset_y)``: ``cx - offset_x``, ``cy - offset_y``."""
    zero = tf.zeros([])
    return intrinsics_map(tf.ones([4]), tf.stack([zero, zero, -_float32(offset_x), -_float32(offset_y)]))


def scale_intrinsics_map(sx, sy):
    """Map of a resize by ``sx``, ``sy`` (new / old size): ``fx, cx`` times ``sx``; ``fy, cy`` times ``sy``."""
    sx, sy = _float32(sx), _float32(sy)
    return intrinsics_map(tf.stack([sx, sy, sx, sy]), tf.zeros([4]))


def flip_intrinsics_map(width):
    """Map of a left-right flip of a ``width``-pixel image: ``cx → width - 1 - cx``, ``cy`` kept."""
    zero = tf.zeros([])
    return intrinsics_map(
        tf.constant([1.0, 1.0, -1.0, 1.0]), tf.stack([zero, zero, _float32(width) - 1.0, zero])
    )


def compose_intrinsics_maps(outer, inner):
    """The map ``outer ∘ inner`` (``inner`` applied first); ``[..., 2, 4]`` each."""
    outer, inner = _float32(outer), _float32(inner)
    scale = outer[..., 0, :] * inner[..., 0, :]
    offset = outer[..., 0, :] * inner[..., 1, :] + outer[..., 1, :]
    return intrinsics_map(scale, offset)


def invert_intrinsics_map(mapping):
    """The inverse map (scales must be nonzero); ``[..., 2, 4]``."""
    mapping = _float32(mapping)
    scale = 1.0 / mapping[..., 0, :]
    return intrinsics_map(scale, -scale * mapping[..., 1, :])


def apply_intrinsics_map(mapping, intrinsics):
    """Intrinsics after a crop/resize/flip map.

    Args:
        mapping: ``[..., 2, 4]`` float map (broadcasts against ``intrinsics``).
        intrinsics: ``[..., 3, 3]`` float ``K``.
    Returns:
        ``[..., 3, 3]`` float32 ``K'`` with ``(fx, fy, cx, cy)' = scale · (fx, fy, cx, cy) + offset``.
    """
    mapping = _float32(mapping)
    vector = mapping[..., 0, :] * intrinsics_vector(intrinsics) + mapping[..., 1, :]
    return intrinsics_matrix(*tf.unstack(vector, axis=-1))


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


def pixel_grid(height, width):
    """``[H, W, 3]`` float32 homogeneous pixel coordinates ``(u, v, 1)``."""
    u, v = tf.meshgrid(tf.range(width, dtype=tf.float32), tf.range(height, dtype=tf.float32))
    return tf.stack([u, v, tf.ones_like(u)], axis=-1)


def _drop_channel(tensor):
    """``[B, H, W, 1]`` → ``[B, H, W]``; ``[B, H, W]`` unchanged."""
    tensor = _float32(tensor)
    return tensor[..., 0] if tensor.shape.rank == 4 else tensor


def matvec_field(matrix, field):
    """``M v`` for every vector ``v`` of a field, one matrix per example.

    One ``[H·W, 3] x [3, 3]`` matmul per example; ``tf.linalg.matvec`` with a
    broadcast matrix runs B·H·W separate 3x3 products instead (about 7% of a
    train step at 128x416 on CPU).

    Args:
        matrix: ``[B, 3, 3]`` float.
        field: ``[B, H, W, 3]`` float.
    Returns:
        ``[B, H, W, 3]``, the dtype of the inputs.
    """
    return tf.einsum("bij,bhwj->bhwi", matrix, field)


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
    shape = tf.shape(depth)
    height, width = shape[1], shape[2]

    projection = intrinsics @ rotation_matrix(rotation) @ invert_intrinsics(intrinsics)
    rotated = tf.einsum("bij,hwj->bhwi", projection, pixel_grid(height, width))
    if translation.shape.rank == 2:
        moved = tf.linalg.matvec(intrinsics, translation)[:, None, None, :]
    else:
        moved = matvec_field(intrinsics, translation)
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


def rigid_warp(image, depth, rotation, translation, intrinsics):
    """Frame 2 resampled onto frame 1's pixels by the rigid motion (METHOD.md §7, ``--field_input``).

    Where each frame-1 pixel lands under ``depth``, ``rotation`` and the camera
    ``translation`` (:func:`warp_depth`), ``image`` is sampled bilinearly; pixels
    that leave the view or land behind the camera are 0. Where the scene is
    static and the depth and motion right, the result equals frame 1.

    Args:
        image: ``[B, H, W, C]`` float, frame 2.
        depth: ``[B, H, W, 1]`` float, frame-1 depth.
        rotation, translation: ``[B, 3]`` float, radians and depth units, 1 → 2.
        intrinsics: ``[B, 3, 3]`` float ``K`` in pixels.
    Returns:
        ``[B, H, W, C]`` float32.
    """
    pixel_x, pixel_y, _, mask = warp_depth(depth, translation, rotation, intrinsics)
    return resample(image, pixel_x, pixel_y) * tf.cast(mask, tf.float32)[..., None]


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
