"""The losses of METHOD.md §4, one function per equation, and their weighted sum.

Every function takes and returns float32 tensors. For a pair of frames the
losses are computed for the direction 1→2; :class:`DepthMotionLosses` computes
both directions in one batched pass over "direction-stacked" inputs (rows
``0..B-1`` are 1→2, rows ``B..2B-1`` are 2→1).
"""

import dataclasses

import tensorflow as tf

from depth_motion_tf import geometry

_TINY = 1e-24


def _float32(value):
    return tf.cast(tf.convert_to_tensor(value), tf.float32)


def _with_channel(tensor):
    """``[B, H, W]`` → ``[B, H, W, 1]``; ``[B, H, W, C]`` unchanged; float32."""
    tensor = _float32(tensor)
    return tensor[..., None] if tensor.shape.rank == 3 else tensor


def _avg_pool3x3(tensor):
    return tf.nn.avg_pool2d(tensor, ksize=3, strides=1, padding="VALID")


def weighted_ssim(x, y, weight, c1=float("inf"), c2=9e-6, weight_epsilon=0.01):
    """Per-pixel SSIM error over weighted 3x3 windows (METHOD.md §4).

    Window means are weighted by ``weight + weight_epsilon`` and normalised by
    ``avgpool3x3(weight) + weight_epsilon``. Since ``avgpool3x3(weight + eps)
    = avgpool3x3(weight) + eps`` this is exactly a weighted mean whose weights
    sum to one (the reading under which identical images give zero error:
    ``σx = σy = σxy`` makes ``SSIM = 1``). With ``c1 = inf`` the luminance term
    is dropped: ``SSIM = (2σxy + c2) / (σx + σy + c2)``; with ``c2 = inf`` the
    contrast-structure term is dropped instead; otherwise the full SSIM.

    Args:
        x, y: ``[B, H, W, C]`` float images.
        weight: ``[B, H, W]`` or ``[B, H, W, 1]`` float, non-negative per-pixel weight.
        c1, c2: SSIM stabilisers (``inf`` drops the corresponding term).
        weight_epsilon: added to the weights so empty windows stay defined.
    Returns:
        ``(error, pooled_weight)``: ``[B, H-2, W-2, C]`` float32 error
        ``clip((1 - SSIM) / 2, 0, 1)`` and ``[B, H-2, W-2, 1]`` float32
        ``avgpool3x3(weight)``.
    """
    if c1 == float("inf") and c2 == float("inf"):
        raise ValueError("weighted_ssim: c1 and c2 cannot both be infinite.")
    x, y, weight = _float32(x), _float32(y), _with_channel(weight)
    pooled_weight = _avg_pool3x3(weight)
    normaliser = 1.0 / (pooled_weight + weight_epsilon)

    def weighted_mean(z):
        return _avg_pool3x3(z * (weight + weight_epsilon)) * normaliser

    mu_x, mu_y = weighted_mean(x), weighted_mean(y)
    sigma_x = weighted_mean(x * x) - mu_x * mu_x
    sigma_y = weighted_mean(y * y) - mu_y * mu_y
    sigma_xy = weighted_mean(x * y) - mu_x * mu_y
    if c1 == float("inf"):
        ssim = (2.0 * sigma_xy + c2) / (sigma_x + sigma_y + c2)
    elif c2 == float("inf"):
        ssim = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    else:
        ssim = ((2.0 * mu_x * mu_y + c1) * (2.0 * sigma_xy + c2)) / (
            (mu_x * mu_x + mu_y * mu_y + c1) * (sigma_x + sigma_y + c2)
        )
    return tf.clip_by_value((1.0 - ssim) / 2.0, 0.0, 1.0), pooled_weight


def depth_proximity_weight(depth_difference, mask, occlusion):
    """SSIM weight ``w = stopgrad(M · m2 / ((D̃2 - z')² + m2))`` (METHOD.md §4).

    ``m2 = Σ(O (D̃2 - z')²) / (Σ O + 1) + 1e-4`` per image.

    Args:
        depth_difference: ``[B, H, W]`` float32 ``D̃2 - z'`` (zero where invalid).
        mask: ``[B, H, W]`` bool validity ``M``.
        occlusion: ``[B, H, W]`` float32 ``O`` (1 where frame 1's point is in front).
    Returns:
        ``[B, H, W, 1]`` float32 weight in (0, 1], zero where ``M`` is false,
        under stop-gradient.
    """
    squared = tf.square(depth_difference)
    second_moment = (
        tf.reduce_sum(occlusion * squared, axis=[1, 2], keepdims=True)
        / (tf.reduce_sum(occlusion, axis=[1, 2], keepdims=True) + 1.0)
        + 1e-4
    )
    weight = tf.where(mask, second_moment / (squared + second_moment), 0.0)
    return tf.stop_gradient(weight[..., None])


def rgbd_consistency(warped, rgb1, depth2, rgb2):
    """RGB, depth-consistency and SSIM errors of frame 2 seen from frame 1 (METHOD.md §4).

    ``Ĩ2, D̃2`` are frame 2's RGB and depth resampled where frame 1's pixels
    land; ``O = M ∧ (z' < D̃2)``. The caller puts ``D2`` under stop-gradient
    (the reference's ``target_depth_stop_gradient``, on by default).

    Args:
        warped: ``(pixel_x, pixel_y, z, mask)`` from :func:`geometry.warp_depth`
            of frame 1, each ``[B, H, W]`` (mask bool).
        rgb1: ``[B, H, W, 3]`` float frame 1 ``I1`` in [0, 1].
        depth2: ``[B, H, W]`` or ``[B, H, W, 1]`` float frame-2 depth ``D2``.
        rgb2: ``[B, H, W, 3]`` float frame 2 ``I2`` in [0, 1].
    Returns:
        Dict: ``rgb_error`` (``mean(|Ĩ2 - I1| · O)``), ``depth_error``
        (``mean(|D̃2 - z'| · O)``), ``ssim_error`` (half the weighted mean SSIM
        error), scalars; ``depth_proximity_weight`` ``[B, H, W, 1]`` (``w``);
        ``frame1_closer_to_camera`` ``[B, H, W, 1]`` float32 (``O``).
    """
    pixel_x, pixel_y, z, mask = warped
    rgb1, rgb2 = _float32(rgb1), _float32(rgb2)
    target = tf.concat([rgb2, _with_channel(depth2)], axis=-1)
    rgb2_resampled, depth2_resampled = tf.split(
        geometry.resample(target, pixel_x, pixel_y), [3, 1], axis=-1
    )
    depth2_resampled = depth2_resampled[..., 0]
    # Invalid pixels may carry non-finite z'; keep them out of every product.
    depth_difference = tf.where(mask, depth2_resampled - _float32(z), 0.0)
    occlusion = tf.cast(mask & (z < depth2_resampled), tf.float32)  # O

    weight = depth_proximity_weight(depth_difference, mask, occlusion)
    ssim_error, pooled_weight = weighted_ssim(rgb2_resampled, rgb1, weight)
    return {
        "rgb_error": tf.reduce_mean(tf.abs(rgb2_resampled - rgb1) * occlusion[..., None]),
        "depth_error": tf.reduce_mean(tf.abs(depth_difference) * occlusion),
        "ssim_error": 0.5 * tf.reduce_mean(ssim_error * pooled_weight),
        "depth_proximity_weight": weight,
        "frame1_closer_to_camera": occlusion[..., None],
    }


def rotation_cycle_consistency(rotation1, rotation2):
    """``mean(‖R1 R2 - I‖²) / (mean(‖R1 - I‖²) + mean(‖R2 - I‖²) + 1e-24)`` (METHOD.md §4).

    Means over the 9 matrix entries, the ratio per row, then averaged over rows.

    Args:
        rotation1, rotation2: ``[B, 3]`` float angles (radians) of ``R1`` (1→2)
            and ``R2`` (2→1).
    Returns:
        Scalar float32, zero when ``R1 R2 = I``.
    """
    r1 = geometry.rotation_matrix(rotation1)
    r2 = geometry.rotation_matrix(rotation2)
    eye = tf.eye(3)

    def mean_square(matrix):
        return tf.reduce_mean(tf.square(matrix - eye), axis=[-2, -1])

    ratio = mean_square(r1 @ r2) / (mean_square(r1) + mean_square(r2) + _TINY)
    return tf.reduce_mean(ratio)


def translation_cycle_consistency(
    pixel_x, pixel_y, occlusion, rotation1, translation1, translation2
):
    """``mean(O · ‖R1 T̃2 + T1‖² / (‖T1‖² + ‖T̃2‖² + 1e-24))`` (METHOD.md §4).

    ``T̃2`` is frame 2's translation field resampled where frame 1's pixels
    land, the coordinates under stop-gradient.

    Args:
        pixel_x, pixel_y: ``[B, H, W]`` float landing coordinates of frame 1's pixels.
        occlusion: ``[B, H, W]`` float32 ``O``.
        rotation1: ``[B, 3]`` float angles of ``R1``.
        translation1, translation2: ``[B, H, W, 3]`` float fields ``T1``, ``T2``.
    Returns:
        Scalar float32, zero when frame 2's motion undoes frame 1's.
    """
    translation1 = _float32(translation1)
    resampled = geometry.resample(
        translation2, tf.stop_gradient(pixel_x), tf.stop_gradient(pixel_y)
    )
    composed = geometry.matvec_field(geometry.rotation_matrix(rotation1), resampled) + translation1
    ratio = tf.reduce_sum(tf.square(composed), axis=-1) / (
        tf.reduce_sum(tf.square(translation1), axis=-1)
        + tf.reduce_sum(tf.square(resampled), axis=-1)
        + _TINY
    )
    return tf.reduce_mean(occlusion * ratio)


def motion_cycle_consistency(
    pixel_x, pixel_y, mask, rotation1, translation1, rotation2, translation2
):
    """Rotation and translation cycle-consistency errors (METHOD.md §4).

    Args:
        pixel_x, pixel_y: ``[B, H, W]`` float landing coordinates of frame 1's pixels.
        mask: ``O``, either ``[B, H, W, 1]`` float or ``[B, H, W]`` bool/float.
        rotation1, rotation2: ``[B, 3]`` float angles, 1→2 and 2→1.
        translation1, translation2: ``[B, H, W, 3]`` float translation fields.
    Returns:
        Dict of scalars ``rotation_error``, ``translation_error``.
    """
    occlusion = _with_channel(tf.cast(mask, tf.float32))[..., 0]
    return {
        "rotation_error": rotation_cycle_consistency(rotation1, rotation2),
        "translation_error": translation_cycle_consistency(
            pixel_x, pixel_y, occlusion, rotation1, translation1, translation2
        ),
    }


def _forward_difference(tensor, axis):
    """``t[i + 1] - t[i]`` along ``axis`` 1 (rows) or 2 (columns) of ``[B, H, W, C]``."""
    if axis == 1:
        return tensor[:, 1:] - tensor[:, :-1]
    return tensor[:, :, 1:] - tensor[:, :, :-1]


def edge_aware_smoothness(field, image):
    """``mean(|∂x f| e^{-mean_c|∂x I|}) + mean(|∂y f| e^{-mean_c|∂y I|})``, forward differences.

    Args:
        field: ``[B, H, W, C]`` float field ``f`` to smooth.
        image: ``[B, H, W, 3]`` float image ``I`` whose edges relax the penalty.
    Returns:
        Scalar float32.
    """
    field, image = _float32(field), _float32(image)

    def term(axis):
        field_gradient = tf.abs(_forward_difference(field, axis))
        image_gradient = tf.abs(_forward_difference(image, axis))
        edge = tf.exp(-tf.reduce_mean(image_gradient, axis=-1, keepdims=True))
        return tf.reduce_mean(field_gradient * edge)

    return term(2) + term(1)


def depth_smoothness(depth, image):
    """Edge-aware smoothness of disparity ``d = 1/D`` normalised by its per-image mean.

    Args:
        depth: ``[B, H, W, 1]`` or ``[B, H, W]`` float positive depth ``D``.
        image: ``[B, H, W, 3]`` float image of the same frame.
    Returns:
        Scalar float32 ``L_ds`` (METHOD.md §4).
    """
    disparity = 1.0 / _with_channel(depth)
    normalised = disparity / tf.reduce_mean(disparity, axis=[1, 2, 3], keepdims=True)
    return edge_aware_smoothness(normalised, image)


def normalize_motion_field(residual, full):
    """``T̂ = T_res / sqrt(3 · mean(T²) + 1e-12)``, the mean per image over H, W, channels.

    Args:
        residual: ``[B, H, W, 3]`` float residual translation ``T_res``.
        full: ``[B, H, W, 3]`` float full translation ``T = t_bg + T_res``.
    Returns:
        ``[B, H, W, 3]`` float32 normalised residual field ``T̂``.
    """
    full = _float32(full)
    scale = 3.0 * tf.reduce_mean(tf.square(full), axis=[1, 2, 3], keepdims=True)
    return _float32(residual) / tf.sqrt(scale + 1e-12)


def motion_group_smoothness(field, wrap_around):
    """Group smoothness ``mean(sqrt(1e-24 + (∂u T̂)² + (∂v T̂)²))``, per channel (METHOD.md §4).

    Differences between neighbours; with ``wrap_around`` they are cyclic
    (the last row/column neighbours the first), otherwise the first row and
    column, which have no neighbour above / to the left, are dropped.

    Args:
        field: ``[B, H, W, C]`` float normalised field ``T̂``.
        wrap_around: bool; True when the sparsity weight is 0.
    Returns:
        Scalar float32.
    """
    field = _float32(field)
    du = field - tf.roll(field, shift=1, axis=2)
    dv = field - tf.roll(field, shift=1, axis=1)
    magnitude = tf.sqrt(_TINY + tf.square(du) + tf.square(dv))
    if not wrap_around:
        magnitude = magnitude[:, 1:, 1:, :]
    return tf.reduce_mean(magnitude)


def motion_sparsity_l1_2(field):
    """L1/2 sparsity ``mean(2 m · sqrt(|T̂| / m + 1))``, ``m = stopgrad(mean_{H,W} |T̂|)``.

    Per image and channel ``m``; ``∂L/∂|x| ∝ 1 / sqrt(1 + |x|/m)``: the L1
    gradient for ``|x| << m``, decaying like ``sqrt(m/|x|)`` for ``|x| >> m``.
    A channel that is identically zero contributes zero (``0/0`` is taken as 0).

    Args:
        field: ``[B, H, W, C]`` float normalised residual translation ``T̂``.
    Returns:
        Scalar float32.
    """
    magnitude = tf.abs(_float32(field))
    m = tf.stop_gradient(tf.reduce_mean(magnitude, axis=[1, 2], keepdims=True))
    return tf.reduce_mean(2.0 * m * tf.sqrt(tf.math.divide_no_nan(magnitude, m) + 1.0))


def motion_sparsity_l1(field):
    """L1 sparsity ``mean(|T̂|)``, the paper's ablation of the L1/2 penalty.

    Args:
        field: ``[B, H, W, C]`` float normalised residual translation ``T̂``.
    Returns:
        Scalar float32.
    """
    return tf.reduce_mean(tf.abs(_float32(field)))


def depth_supervision(depth, gt_depth):
    """Mean ``|D - gt|`` over pixels with ground truth (``gt > 0``), per image, then over images.

    Args:
        depth: ``[B, H, W, 1]`` float predicted depth.
        gt_depth: ``[B, H, W, 1]`` float ground-truth depth, 0 where missing.
    Returns:
        Scalar float32 (an image without ground truth contributes 0).
    """
    depth, gt_depth = _with_channel(depth), _with_channel(gt_depth)
    valid = tf.cast(gt_depth > 0.0, tf.float32)
    error = tf.reduce_sum(tf.abs(depth - gt_depth) * valid, axis=[1, 2, 3])
    return tf.reduce_mean(tf.math.divide_no_nan(error, tf.reduce_sum(valid, axis=[1, 2, 3])))


def depth_variance(depth):
    """``L_dv = 1 / mean((D / μ − 1)²)`` with ONE mean ``μ`` over all the maps (METHOD.md §4).

    As the reference: ``μ`` and the outer mean run over every pixel of every
    depth map of the step (all ``2B``), not per image. Penalises depth
    collapsing to a constant (infinite for a constant depth).

    Args:
        depth: ``[N, H, W, 1]`` float positive depth.
    Returns:
        Scalar float32.
    """
    depth = _with_channel(depth)
    return 1.0 / tf.reduce_mean(tf.square(depth / tf.reduce_mean(depth) - 1.0))


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (METHOD.md §4 defaults, the paper's model)."""

    rgb: float = 1.0
    ssim: float = 3.0
    depth_consistency: float = 0.0
    depth_smoothing: float = 0.001
    rotation_cycle: float = 1e-3
    translation_cycle: float = 5e-2
    motion_smoothing: float = 1.0
    motion_sparsity: float = 0.2
    depth_supervision: float = 0.0
    depth_variance: float = 0.0


_SPARSITY = {"l1_2": motion_sparsity_l1_2, "l1": motion_sparsity_l1}


def _swap_directions(tensor):
    """Row ``i`` → row ``(i + B) mod 2B``: each row's partner of the opposite direction."""
    return tf.roll(tensor, shift=tf.shape(tensor)[0] // 2, axis=0)


def loss_pyramid(tensor, num_scales):
    """``[tensor, pool(tensor), ...]``: ``num_scales`` levels, each a 2x2/2 VALID average pool.

    Args:
        tensor: ``[B, H, W, C]`` float.
        num_scales: number of levels (1: just ``tensor``).
    Returns:
        List of ``[B, H / 2^s, W / 2^s, C]`` float32, s = 0 .. num_scales - 1.
    """
    levels = [_float32(tensor)]
    for _ in range(1, num_scales):
        levels.append(tf.nn.avg_pool2d(levels[-1], ksize=2, strides=2, padding="VALID"))
    return levels


def intrinsics_at_scale(intrinsics, scale):
    """Intrinsics of the ``scale``-th pyramid level (each level halves the size).

    With (0, 0) the centre of the top-left pixel, a 2^s x 2^s average pool maps
    ``u → (u + 0.5) / 2^s − 0.5``: ``f / 2^s`` and ``c → (c + 0.5) / 2^s − 0.5``
    (the reference divides ``c`` by ``2^s``, a quarter-pixel off at level 1).

    Args:
        intrinsics: ``[B, 3, 3]`` float ``K``.
        scale: int level s.
    Returns:
        ``[B, 3, 3]`` float32.
    """
    factor = 1.0 / 2**scale
    shift = 0.5 * factor - 0.5
    mapping = geometry.intrinsics_map([factor] * 4, [0.0, 0.0, shift, shift])
    return geometry.apply_intrinsics_map(mapping, intrinsics)


class DepthMotionLosses:
    """The weighted sum of METHOD.md §4 for both directions in one batched pass.

    Inputs are direction-stacked, ``2B`` rows: rows ``0..B-1`` the direction
    1→2, rows ``B..2B-1`` the direction 2→1; row ``i``'s opposite direction is
    row ``(i + B) mod 2B``. Every term is a mean over the ``2B`` rows.

    The reference's loss options: ``num_scales`` computes every term on an
    average-pooled pyramid, level s weighted ``1 / 2^s`` (intrinsics scaled per
    level); ``scale_normalization`` divides depths and translations by the
    mean depth of the step (after the depth-variance and supervision terms);
    ``target_depth_stop_gradient`` stops the gradient through the target depth
    ``D2`` of the warp.
    """

    def __init__(
        self, weights=LossWeights(), sparsity="l1_2", num_scales=1, scale_normalization=False,
        target_depth_stop_gradient=True,
    ):
        """
        Args:
            weights: :class:`LossWeights`; terms with weight 0 are not computed.
            sparsity: ``"l1_2"`` (the paper's) or ``"l1"`` (ablation).
            num_scales: pyramid levels (the reference's default 1).
            scale_normalization: divide depths and translations by the mean depth.
            target_depth_stop_gradient: no gradient through the warp's target depth.
        """
        if sparsity not in _SPARSITY:
            raise ValueError(
                f"losses.py: sparsity must be one of {sorted(_SPARSITY)}, got {sparsity!r}."
            )
        if num_scales < 1:
            raise ValueError(f"losses.py: num_scales must be at least 1, got {num_scales}.")
        self.weights = weights
        self.sparsity = _SPARSITY[sparsity]
        self.num_scales = num_scales
        self.scale_normalization = scale_normalization
        self.target_depth_stop_gradient = target_depth_stop_gradient

    def __call__(
        self,
        rgb1,
        rgb2,
        depth1,
        depth2,
        rotation,
        translation,
        residual_translation,
        intrinsics,
        gt_depth=None,
    ):
        """Computes the weighted losses.

        Args:
            rgb1: ``[2B, H, W, 3]`` source frames, concat(I1, I2), in [0, 1].
            rgb2: ``[2B, H, W, 3]`` target frames, concat(I2, I1).
            depth1: ``[2B, H, W, 1]`` source depths, concat(D1, D2).
            depth2: ``[2B, H, W, 1]`` target depths, concat(D2, D1).
            rotation: ``[2B, 3]`` angles (radians), source → target.
            translation: ``[2B, H, W, 3]`` full field ``T = t_bg + T_res``.
            residual_translation: ``[2B, H, W, 3]`` ``T_res``.
            intrinsics: ``[2B, 3, 3]`` ``K`` in pixels.
            gt_depth: optional ``[2B, H, W, 1]`` ground-truth depth of the source
                frames (0 = missing); required when ``depth_supervision > 0``.
        Returns:
            ``(losses, extras)``. ``losses``: dict of float32 scalars, each term's
            weight times its loss for every nonzero weight, plus ``total =
            2 · Σ weight · loss``. ``extras`` (of the full-resolution level):
            ``depth_proximity_weight`` and ``frame1_closer_to_camera``
            ``[2B, H, W, 1]``, ``pixel_x``, ``pixel_y`` ``[2B, H, W]`` (for summaries).
        """
        rotation = _float32(rotation)
        if self.target_depth_stop_gradient:
            depth2 = tf.stop_gradient(depth2)
        pyramids = [
            loss_pyramid(t, self.num_scales)
            for t in (rgb1, rgb2, depth1, depth2, translation, residual_translation)
        ]
        totals, extras = {}, None
        for level, tensors in enumerate(zip(*pyramids)):
            terms, level_extras = self._terms(
                *tensors, rotation, intrinsics_at_scale(intrinsics, level),
                None if gt_depth is None or level else gt_depth, level,
            )
            extras = extras or level_extras
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + value / 2**level
        losses = {name: getattr(self.weights, name) * value for name, value in totals.items()}
        losses["total"] = 2.0 * tf.add_n(list(losses.values()) or [tf.constant(0.0)])
        return losses, extras

    def _terms(
        self, rgb1, rgb2, depth1, depth2, translation, residual_translation, rotation, intrinsics,
        gt_depth, level,
    ):
        """The unweighted terms with nonzero weight at one pyramid level, and its extras.

        The depth-variance and depth-supervision terms are taken at full
        resolution only (the reference keeps its level-0 value of the former and
        has supervision only where ground truth is given), before scale normalisation.
        """
        weights = self.weights
        unnormalised_depth = depth1
        if self.scale_normalization:
            mean_depth = tf.reduce_mean(depth1)
            depth1, depth2 = depth1 / mean_depth, depth2 / mean_depth
            translation = translation / mean_depth
            residual_translation = residual_translation / mean_depth
        pixel_x, pixel_y, z, mask = geometry.warp_depth(depth1, translation, rotation, intrinsics)
        consistency = rgbd_consistency((pixel_x, pixel_y, z, mask), rgb1, depth2, rgb2)
        normalized_field = normalize_motion_field(residual_translation, translation)  # T̂
        terms = {
            "rgb": lambda: consistency["rgb_error"],
            "ssim": lambda: consistency["ssim_error"],
            "depth_consistency": lambda: consistency["depth_error"],
            "depth_smoothing": lambda: depth_smoothness(depth1, rgb1),
            "rotation_cycle": lambda: rotation_cycle_consistency(
                rotation, _swap_directions(rotation)
            ),
            "translation_cycle": lambda: translation_cycle_consistency(
                pixel_x,
                pixel_y,
                consistency["frame1_closer_to_camera"][..., 0],
                rotation,
                translation,
                _swap_directions(translation),
            ),
            "motion_smoothing": lambda: motion_group_smoothness(
                normalized_field, wrap_around=weights.motion_sparsity == 0
            ),
            "motion_sparsity": lambda: self.sparsity(normalized_field),
            "depth_supervision": lambda: depth_supervision(
                unnormalised_depth, self._require_gt_depth(gt_depth)
            ),
            "depth_variance": lambda: depth_variance(unnormalised_depth),
        }
        full_resolution_only = ("depth_supervision", "depth_variance")
        computed = {
            name: compute()
            for name, compute in terms.items()
            if getattr(weights, name) != 0 and not (level and name in full_resolution_only)
        }
        extras = {
            "depth_proximity_weight": consistency["depth_proximity_weight"],
            "frame1_closer_to_camera": consistency["frame1_closer_to_camera"],
            "pixel_x": pixel_x,
            "pixel_y": pixel_y,
        }
        return computed, extras

    @staticmethod
    def _require_gt_depth(gt_depth):
        if gt_depth is None:
            raise ValueError(
                "losses.py: depth_supervision weight is nonzero but no gt_depth was given."
            )
        return gt_depth
