"""The standard monocular depth evaluation protocol (METHOD.md §6), in pure numpy.

Per image: resize the prediction to the ground-truth size, keep the valid
ground-truth pixels (``min_depth < gt < max_depth``, inside an optional crop),
scale the prediction (a per-image median ratio, or a fixed factor for metric
models), clamp it to ``[min_depth, max_depth]`` and compute the seven errors.
The errors are then averaged over images (not over pixels).
"""
import numpy as np

MIN_DEPTH = 1e-3  # metres
MAX_DEPTH = 80.0  # metres

# Paper column order.
METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")

# Garg et al.'s crop of KITTI Eigen images, as fractions of the ground-truth
# height and width: (top, bottom, left, right), rows [top, bottom), columns [left, right).
GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)


def crop_mask(height, width, crop):
    """Boolean mask of a fractional crop box.

    Pixel bounds are ``int(fraction * size)`` (truncation), as in the published
    evaluation scripts, so the Garg crop of a 375x1242 KITTI image keeps rows
    153..370 and columns 44..1196.

    Args:
        height, width: ground-truth size in pixels.
        crop: ``(top, bottom, left, right)`` fractions in [0, 1], or None (whole image).
    Returns:
        ``[height, width]`` bool, True inside the crop.
    """
    mask = np.zeros((height, width), dtype=bool)
    if crop is None:
        mask[:] = True
        return mask
    top, bottom, left, right = crop
    mask[int(top * height) : int(bottom * height), int(left * width) : int(right * width)] = True
    return mask


def _linear_resize_axis(values, size, axis):
    """Linear interpolation of ``values`` along ``axis`` to ``size`` samples (half-pixel centres)."""
    n = values.shape[axis]
    coords = np.clip((np.arange(size) + 0.5) * (n / size) - 0.5, 0.0, n - 1)
    lo = np.floor(coords).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    weight_shape = [1] * values.ndim
    weight_shape[axis] = size
    weight = (coords - lo).reshape(weight_shape)
    return np.take(values, lo, axis=axis) * (1.0 - weight) + np.take(values, hi, axis=axis) * weight


def resize_bilinear(depth, height, width):
    """Bilinear resize of one depth map (the convention of OpenCV's INTER_LINEAR).

    Args:
        depth: ``[h, w]`` float depth.
        height, width: output size in pixels.
    Returns:
        ``[height, width]`` float64; pixel centres are aligned (half-pixel
        convention) and borders are clamped.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.shape == (height, width):
        return depth
    return _linear_resize_axis(_linear_resize_axis(depth, height, 0), width, 1)


def valid_mask(gt, crop=None, min_depth=MIN_DEPTH, max_depth=MAX_DEPTH):
    """Pixels that are evaluated: ``min_depth < gt < max_depth`` inside the crop.

    Args:
        gt: ``[H, W]`` float ground-truth depth in metres, 0 = missing.
        crop: ``(top, bottom, left, right)`` fractions or None (see :func:`crop_mask`).
    Returns:
        ``[H, W]`` bool.
    """
    in_range = np.logical_and(gt > min_depth, gt < max_depth)
    return np.logical_and(in_range, crop_mask(gt.shape[0], gt.shape[1], crop))


def median_scale_ratio(gt, pred):
    """Per-image median scaling factor ``median(gt) / median(pred)``.

    Args:
        gt, pred: ``[N]`` depths at the valid pixels.
    Returns:
        Python float. Raises ValueError when the prediction's median is not positive.
    """
    pred_median = float(np.median(pred))
    if not pred_median > 0.0:
        raise ValueError(f"median predicted depth is {pred_median}; it must be positive")
    return float(np.median(gt)) / pred_median


def depth_errors(gt, pred):
    """The seven standard depth errors over the valid pixels of one image.

    Args:
        gt, pred: ``[N]`` positive depths in metres (pred already scaled and clamped).
    Returns:
        dict with :data:`METRIC_NAMES` as keys, Python floats:
        ``abs_rel = mean(|gt-pred|/gt)``, ``sq_rel = mean((gt-pred)²/gt)``,
        ``rmse = sqrt(mean((gt-pred)²))``, ``rmse_log = sqrt(mean((ln gt - ln pred)²))``,
        ``a_k = mean(max(gt/pred, pred/gt) < 1.25^k)``.
    """
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    ratio = np.maximum(gt / pred, pred / gt)
    return {
        "abs_rel": float(np.mean(np.abs(gt - pred) / gt)),
        "sq_rel": float(np.mean((gt - pred) ** 2 / gt)),
        "rmse": float(np.sqrt(np.mean((gt - pred) ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2))),
        "a1": float(np.mean(ratio < 1.25)),
        "a2": float(np.mean(ratio < 1.25**2)),
        "a3": float(np.mean(ratio < 1.25**3)),
    }


def evaluate_image(
    gt,
    pred,
    crop=None,
    median_scaling=True,
    scale=1.0,
    min_depth=MIN_DEPTH,
    max_depth=MAX_DEPTH,
    name="image",
):
    """The full per-image protocol.

    Args:
        gt: ``[H, W]`` float ground-truth depth in metres, 0 = missing.
        pred: ``[h, w]`` (or ``[h, w, 1]``) float predicted depth, any size; it is
            resized bilinearly to ``[H, W]``.
        crop: ``(top, bottom, left, right)`` fractions of the evaluated region, or None.
        median_scaling: multiply the prediction by ``median(gt)/median(pred)``.
        scale: fixed factor applied to the prediction first (for metric models
            with ``median_scaling=False``; it cancels out under median scaling).
        min_depth, max_depth: valid ground-truth range and prediction clamp, metres.
        name: how the image is named in error messages.
    Returns:
        ``(errors, ratio)``: the dict of :func:`depth_errors` and the median
        scaling ratio applied (1.0 without median scaling).
    Raises:
        ValueError: non-finite predictions, no valid ground-truth pixel, or a
            non-positive median prediction.
    """
    _, gt_valid, pred_valid, ratio = scaled_valid_depths(
        gt, pred, crop, median_scaling, scale, min_depth, max_depth, name
    )
    return depth_errors(gt_valid, pred_valid), ratio


def scaled_valid_depths(gt, pred, crop, median_scaling, scale, min_depth, max_depth, name):
    """The protocol's pixels and prediction: :func:`evaluate_image` before the errors.

    The prediction is resized to the ground truth, multiplied by ``scale``,
    median-scaled (when asked) over the valid pixels and clamped.

    Returns:
        ``(mask, gt_valid, pred_valid, ratio)``: ``[H, W]`` bool valid pixels,
        ``[N]`` float64 depths there, and the median scaling ratio (1.0 without).
    Raises:
        ValueError: as :func:`evaluate_image`.
    """
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if pred.ndim == 3:
        pred = pred[..., 0]
    if gt.ndim != 2 or pred.ndim != 2:
        raise ValueError(
            f"{name}: expected 2-D depth maps, got gt {gt.shape} and prediction {pred.shape}"
        )
    bad = np.count_nonzero(~np.isfinite(pred))
    if bad:
        raise ValueError(f"{name}: prediction has {bad} non-finite (NaN/inf) values")
    mask = valid_mask(gt, crop, min_depth, max_depth)
    if not mask.any():
        raise ValueError(
            f"{name}: no valid ground-truth pixel ({min_depth} < gt < {max_depth} m inside the crop)"
        )
    gt_valid = gt[mask]
    pred_valid = resize_bilinear(pred, gt.shape[0], gt.shape[1])[mask] * scale
    ratio = 1.0
    if median_scaling:
        try:
            ratio = median_scale_ratio(gt_valid, pred_valid)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
        pred_valid = pred_valid * ratio
    return mask, gt_valid, np.clip(pred_valid, min_depth, max_depth), ratio


def region_abs_rel(gt, pred, region, min_depth=MIN_DEPTH, max_depth=MAX_DEPTH, name="image"):
    """abs_rel inside and outside a region of one image, median-scaled over the whole image.

    The pixels, scaling and clamping are :func:`evaluate_image`'s (median
    scaling, no crop), so the two numbers split that image's abs_rel by pixel.

    Args:
        gt: ``[H, W]`` float ground-truth depth in metres, 0 = missing.
        pred: ``[h, w]`` (or ``[h, w, 1]``) float predicted depth, resized to ``[H, W]``.
        region: ``[H, W]`` bool, e.g. the moving objects' mask.
    Returns:
        ``(inside, outside)``: Python floats, None where the side has no valid pixel.
    """
    mask, gt_valid, pred_valid, _ = scaled_valid_depths(
        gt, pred, None, True, 1.0, min_depth, max_depth, name
    )
    error = np.abs(pred_valid - gt_valid) / gt_valid
    inside = np.asarray(region)[mask]
    return tuple(float(error[side].mean()) if side.any() else None for side in (inside, ~inside))


def summarize(per_image_errors, ratios):
    """Averages per-image errors over images and summarises the scaling ratios.

    Args:
        per_image_errors: list of dicts from :func:`depth_errors`, one per image.
        ratios: list of per-image median scaling ratios (floats).
    Returns:
        dict: the seven metrics (mean over images), ``num_images``,
        ``ratio_median`` and ``ratio_std`` (population std of the ratios).
    """
    if not per_image_errors:
        raise ValueError("no image was evaluated")
    summary = {
        key: float(np.mean([errors[key] for errors in per_image_errors]))
        for key in METRIC_NAMES
    }
    summary["num_images"] = len(per_image_errors)
    summary["ratio_median"] = float(np.median(ratios))
    summary["ratio_std"] = float(np.std(ratios))
    return summary


def format_table(summary):
    """The metrics as a two-line text table in the paper's column order."""
    header = " | ".join(f"{key:>8}" for key in METRIC_NAMES)
    values = " | ".join(f"{summary[key]:8.4f}" for key in METRIC_NAMES)
    return f"{header}\n{values}"


def translation_agreement(predicted, truth):
    """How well predicted camera translations match the ground truth, up to one global scale.

    Monocular depth and motion are known up to scale, so magnitudes are compared
    after the least-squares global scale ``s = Σ|p||g| / Σ|p|²``.

    Args:
        predicted: ``[N, 3]`` float predicted translations (any units).
        truth: ``[N, 3]`` float ground-truth translations (metres), nonzero.
    Returns:
        dict: ``cosine`` (mean cosine of the angle between the directions, 1 =
        the same direction), ``magnitude_error`` (mean ``|s|p| - |g|| / |g|``),
        ``scale`` (``s``).
    """
    predicted, truth = np.asarray(predicted, np.float64), np.asarray(truth, np.float64)
    p, g = np.linalg.norm(predicted, axis=-1), np.linalg.norm(truth, axis=-1)
    cosine = np.sum(predicted * truth, axis=-1) / np.maximum(p * g, 1e-12)
    scale = float(np.sum(p * g) / max(np.sum(p * p), 1e-24))
    return {
        "cosine": float(np.mean(cosine)),
        "magnitude_error": float(np.mean(np.abs(scale * p - g) / np.maximum(g, 1e-12))),
        "scale": scale,
    }
