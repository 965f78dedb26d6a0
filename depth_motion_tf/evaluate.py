"""Depth evaluation with the standard protocol (METHOD.md §6): library and CLI.

Library:
- :func:`evaluate_depth` scores any ``predict_depth(images_uint8 [B,H,W,3]) ->
  depth [B,h,w]`` callable (a Keras model wrapper, a SavedModel) on
  :mod:`depth_motion_tf.ground_truth` samples, batching the images.
- :func:`evaluate_predictions` scores precomputed predictions, so other methods
  are scored by the same code.

CLI::

    python -m depth_motion_tf.evaluate --dataset=kitti_benchmark \\
        --data_dir=/data/kitti_raw --split_file=splits/kitti/eigen_benchmark/test_files.txt \\
        --saved_model=/models/run1/saved_model --output_dir=/tmp/eval --per_image --num_worst=8

(or ``--model_dir=/models/run1 [--checkpoint=...]`` to evaluate a training run's checkpoint)

prints the metrics table and writes ``metrics.json`` (all numbers and the
configuration), optionally ``per_image.csv`` and ``worst.png``.
"""
import csv
import dataclasses
import heapq
import itertools
import json
import pathlib

import numpy as np
import tensorflow as tf
import tqdm
from absl import app, flags

from depth_motion_tf import cli, export, ground_truth, metrics, visualize
from depth_motion_tf.errors import BadInputError

DATASETS = ("kitti_eigen", "kitti_benchmark", "cityscapes", "folder", "tfds")
# Prediction sources accepted by the CLI: exactly one must be given.
PREDICTION_FLAGS = ("saved_model", "model_dir", "predictions")


@dataclasses.dataclass
class EvaluationResult:
    """What an evaluation produced.

    Attributes:
        summary: dict of :func:`depth_motion_tf.metrics.summarize`.
        names: per-image names, in evaluation order.
        per_image: per-image error dicts (same order).
        ratios: per-image median scaling ratios (same order; 1.0 without median scaling).
        worst: up to ``num_worst`` tuples ``(sample, prediction [h, w], ratio, abs_rel)``,
            worst abs_rel first.
    """

    summary: dict
    names: list
    per_image: list
    ratios: list
    worst: list


def evaluate_predictions(
    pairs,
    median_scaling=True,
    scale=1.0,
    min_depth=metrics.MIN_DEPTH,
    max_depth=metrics.MAX_DEPTH,
    num_worst=0,
    total=None,
    progress=False,
):
    """Scores predictions against ground truth, image by image.

    Args:
        pairs: iterable of ``(DepthSample, prediction)``; a prediction is a
            ``[h, w]`` or ``[h, w, 1]`` float depth map of any size.
        median_scaling, scale, min_depth, max_depth: the protocol's options
            (see :func:`depth_motion_tf.metrics.evaluate_image`).
        num_worst: keep this many worst images (by abs_rel) for display.
        total: number of pairs, for the progress bar.
        progress: show a progress bar.
    Returns:
        :class:`EvaluationResult`.
    """
    names, per_image, ratios, worst = [], [], [], []
    counter = itertools.count()  # tie-breaker so the heap never compares arrays
    for sample, prediction in tqdm.tqdm(pairs, total=total, disable=not progress, unit="image"):
        prediction = np.asarray(prediction)
        errors, ratio = metrics.evaluate_image(
            sample.depth, prediction, sample.crop, median_scaling, scale,
            min_depth, max_depth, name=sample.name,
        )
        names.append(sample.name)
        per_image.append(errors)
        ratios.append(ratio)
        if num_worst:
            entry = (errors["abs_rel"], next(counter), sample, prediction, ratio)
            (heapq.heappush if len(worst) < num_worst else heapq.heappushpop)(worst, entry)
    worst = [(s, p, r, a) for a, _, s, p, r in sorted(worst, key=lambda e: -e[0])]
    return EvaluationResult(metrics.summarize(per_image, ratios), names, per_image, ratios, worst)


def resize_image(image, input_size):
    """``[H, W, 3]`` uint8 → ``input_size`` ``[h, w, 3]`` uint8 (antialiased bilinear; None: unchanged)."""
    if input_size is None or tuple(image.shape[:2]) == tuple(input_size):
        return image
    resized = tf.image.resize(image, input_size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy()


def batched_samples(samples, batch_size, input_size=None):
    """Groups consecutive samples whose (resized) images share a size.

    Args:
        samples: iterable of :class:`~depth_motion_tf.ground_truth.DepthSample`.
        batch_size: maximum batch size.
        input_size: optional ``(height, width)`` the images are resized to.
    Yields:
        ``(samples, images)``: a list of samples and their ``[B, H, W, 3]`` uint8 images.
    """
    batch, images = [], []
    for sample in samples:
        image = resize_image(sample.image, input_size)
        if batch and (len(batch) == batch_size or image.shape != images[0].shape):
            yield batch, np.stack(images)
            batch, images = [], []
        batch.append(sample)
        images.append(image)
    if batch:
        yield batch, np.stack(images)


def predicted_pairs(predict_fn, samples, batch_size=8, input_size=None):
    """Runs ``predict_fn`` on batches of images; yields ``(sample, depth [h, w])``."""
    for batch, images in batched_samples(samples, batch_size, input_size):
        depth = np.asarray(predict_fn(images), dtype=np.float32)
        if depth.ndim == 4:
            depth = depth[..., 0]
        if depth.ndim != 3 or depth.shape[0] != len(batch):
            raise ValueError(
                f"predict_fn returned shape {depth.shape} for {len(batch)} images; "
                "expected [B, H, W(, 1)]"
            )
        yield from zip(batch, depth)


def evaluate_depth(predict_fn, samples, batch_size=8, input_size=None, progress=False, **protocol):
    """Evaluates a depth predictor on ground-truth samples.

    Args:
        predict_fn: ``predict_depth(images)``: ``[B, H, W, 3]`` uint8 → ``[B, h, w]``
            (or ``[B, h, w, 1]``) float depth, numpy or tf; any output size.
        samples: iterable of :class:`~depth_motion_tf.ground_truth.DepthSample`
            (``len()`` is used for the progress bar when available).
        batch_size: images per ``predict_fn`` call (consecutive images of one size).
        input_size: optional ``(height, width)`` the images are resized to first.
        progress: show a progress bar.
        **protocol: ``median_scaling``, ``scale``, ``min_depth``, ``max_depth``,
            ``num_worst`` of :func:`evaluate_predictions`.
    Returns:
        :class:`EvaluationResult`.
    """
    total = len(samples) if hasattr(samples, "__len__") else None
    pairs = predicted_pairs(predict_fn, samples, batch_size, input_size)
    return evaluate_predictions(pairs, total=total, progress=progress, **protocol)


def saved_model_predict_fn(path):
    """A ``predict_depth`` callable from a SavedModel's ``depth`` signature.

    The signature takes ``image``: ``[B, H, W, 3]`` uint8 and returns ``depth``:
    ``[B, H, W, 1]`` float32.

    Raises:
        BadInputError: naming ``path`` when it is no SavedModel with a ``depth`` signature.
    """
    loaded = export.load_saved_model(path, needed=["depth"])
    signature = loaded.signatures["depth"]

    def predict_depth(images):
        return signature(image=tf.constant(images, tf.uint8))["depth"].numpy()

    predict_depth.saved_model = loaded  # keeps the loaded variables alive
    return predict_depth


def load_predictions(path, count):
    """Precomputed depth predictions, one per sample, in sample order.

    Args:
        path: ``.npy`` ``[N, h, w(, 1)]``; ``.npz`` with a ``depth`` array (or a
            single array) of that shape; or a folder of ``.npy``/``.npz``/16-bit
            ``.png`` files (metres·256) whose sorted names follow the sample order.
        count: expected number of predictions.
    Returns:
        A sequence of ``[h, w(, 1)]`` float arrays, each read (folder files) and
        checked on access.
    Raises:
        BadInputError: naming ``path`` when it holds no predictions or not ``count``
            of them, or (on access) naming the file of a prediction that is not finite.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        extensions = ground_truth.DEPTH_EXTENSIONS
        predictions = sorted(p for p in path.iterdir() if p.suffix.lower() in extensions)
    elif path.suffix == ".npz" and path.is_file():
        predictions = ground_truth.read_npz_depth(path)
    elif path.suffix == ".npy" and path.is_file():
        predictions = np.load(path, mmap_mode="r")
    else:
        raise BadInputError(path, "not a folder, .npy or .npz of predictions")
    if len(predictions) != count:
        raise BadInputError(path, f"{len(predictions)} predictions for {count} ground-truth images")
    return _CheckedPredictions(path, predictions)


class _CheckedPredictions:
    """The predictions of :func:`load_predictions`: files read on access, every one checked finite."""

    def __init__(self, path, items):
        self._path = path
        self._items = items  # an [N, h, w(, 1)] array, or N depth files

    def __len__(self):
        return len(self._items)

    def __getitem__(self, index):
        item = self._items[index]
        if isinstance(item, pathlib.Path):
            source, depth = item, ground_truth.read_depth_file(item)
        else:
            source, depth = self._path, np.asarray(item)
        bad = np.count_nonzero(~np.isfinite(depth))
        if bad:
            raise BadInputError(
                source, f"prediction {index} has {bad} non-finite (NaN/inf) values"
            )
        return depth


def per_image_rows(result):
    """Rows ``[name, ratio, *metrics]`` of the per-image table, header first."""
    header = ["name", "ratio", *metrics.METRIC_NAMES]
    rows = [
        [name, ratio, *(errors[key] for key in metrics.METRIC_NAMES)]
        for name, ratio, errors in zip(result.names, result.ratios, result.per_image)
    ]
    return [header, *rows]


def _colour_disparity(disparity, lo, hi):
    """``[H, W]`` disparity → ``[H, W, 3]`` plasma colours between ``lo`` and ``hi``."""
    return visualize.apply_colormap(disparity[None], "plasma", lo, hi)[0].numpy()


def _dilate(values, size):
    """``[H, W]`` non-negative values → their ``size`` x ``size`` running maximum."""
    pooled = tf.nn.max_pool2d(values[None, ..., None].astype(np.float32), size, 1, "SAME")
    return pooled[0, ..., 0].numpy()


def worst_sheet_row(sample, prediction, ratio, scale=1.0):
    """Input, prediction, ground truth, abs-rel error: four ``[H, W, 3]`` panels at GT size.

    Prediction and ground truth share one disparity colour scale (5%..95%
    of the prediction's disparity); the error map is ``|pred - gt| / gt`` at
    valid pixels (black elsewhere), 0..0.5 from dark to bright. Sparse ground
    truth and errors are dilated (nearest point wins) so that they show at thumbnail size.
    """
    gt = sample.depth
    pred = metrics.resize_bilinear(np.squeeze(prediction), *gt.shape) * scale * ratio
    valid = gt > 0
    pred_disparity = 1.0 / np.maximum(pred, metrics.MIN_DEPTH)
    gt_disparity = np.where(valid, 1.0 / np.where(valid, gt, 1.0), 0.0)
    lo, hi = np.percentile(pred_disparity, [5, 95])
    size = max(1, gt.shape[1] // 200)
    gt_disparity = _dilate(gt_disparity, size)
    gt_colour = np.where(gt_disparity[..., None] > 0, _colour_disparity(gt_disparity, lo, hi), 0.0)
    error = _dilate(np.where(valid, np.abs(pred - gt) / np.where(valid, gt, 1.0), 0.0), size)
    error_colour = visualize.apply_colormap(error[None], "magma", 0.0, 0.5)[0].numpy()
    return [sample.image, _colour_disparity(pred_disparity, lo, hi), gt_colour, error_colour]


def write_outputs(result, output_dir, config, per_image=False, scale=1.0):
    """Writes ``metrics.json`` and optionally ``per_image.csv`` and ``worst.png``; returns the paths."""
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = [output_dir / "metrics.json"]
    paths[0].write_text(json.dumps({"results": result.summary, "config": config}, indent=2))
    if per_image:
        paths.append(output_dir / "per_image.csv")
        with open(paths[-1], "w", newline="") as f:
            csv.writer(f).writerows(per_image_rows(result))
    if result.worst:
        paths.append(output_dir / "worst.png")
        visualize.contact_sheet(
            [worst_sheet_row(s, p, r, scale) for s, p, r, _ in result.worst],
            paths[-1],
            titles=[f"{s.name}  abs_rel {a:.3f}" for s, _, _, a in result.worst],
            column_titles=["input", "prediction", "ground truth", "abs rel error"],
        )
    return paths


def format_report(summary, median_scaling=True):
    """The printed table plus the scaling-ratio line."""
    lines = [metrics.format_table(summary)]
    if median_scaling:
        median, std = summary["ratio_median"], summary["ratio_std"]
        lines.append(f"median scaling ratios: median {median:.3f}, std {std:.3f}")
    lines.append(f"{summary['num_images']} images")
    return "\n".join(lines)


# ------------------------------------------------------------------ CLI ----


def define_flags(flag_values=flags.FLAGS):
    """Declares the CLI flags on ``flag_values`` (not at import: the library is imported anywhere)."""
    fv = flag_values
    flags.DEFINE_enum("dataset", None, DATASETS, "Ground-truth source.", flag_values=fv)
    flags.DEFINE_string(
        "data_dir", None,
        "KITTI raw root, Cityscapes root, TFDS dataset version folder, or (folder) the images.",
        flag_values=fv)
    flags.DEFINE_string(
        "split_file", None,
        "KITTI split file: eigen/test_files.txt or eigen_benchmark/test_files.txt.",
        flag_values=fv)
    flags.DEFINE_string(
        "gt_cache", None,
        "kitti_eigen: .npz cache of the projected Velodyne depth "
        "(default <output_dir>/kitti_eigen_gt.npz).",
        flag_values=fv)
    flags.DEFINE_bool(
        "kitti_camera_depth", False,
        "kitti_eigen: GT depth is the camera z instead of the Velodyne forward x.",
        flag_values=fv)
    flags.DEFINE_string(
        "kitti_depth_dir", None,
        "kitti_benchmark: data_depth_annotated root ({train,val}/<drive>/proj_depth); "
        "default: proj_depth inside each raw drive folder.",
        flag_values=fv)
    flags.DEFINE_string(
        "gt_dir", None, "folder: GT depth files (.npy/.npz/16-bit .png in m*256).", flag_values=fv)
    flags.DEFINE_list(
        "crop", None, "folder: evaluated region as fractions top,bottom,left,right.", flag_values=fv)
    flags.DEFINE_string("split", "test", "cityscapes/tfds: split name.", flag_values=fv)
    flags.DEFINE_string(
        "saved_model", None, "SavedModel folder with a 'depth' signature.", flag_values=fv)
    flags.DEFINE_string(
        "model_dir", None, "Or a training run folder (config.json, checkpoints/).", flag_values=fv)
    flags.DEFINE_string(
        "checkpoint", None, "With --model_dir: checkpoint path (default: the latest).",
        flag_values=fv)
    flags.DEFINE_string(
        "predictions", None,
        "Precomputed depth: .npy/.npz [N,H,W] or a folder of files, in sample order.",
        flag_values=fv)
    flags.DEFINE_integer("batch_size", 8, "Images per model call.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer(
        "input_height", 0, "Resize inputs to this height first (0: native).", lower_bound=0,
        flag_values=fv)
    flags.DEFINE_integer(
        "input_width", 0, "Resize inputs to this width first (0: native).", lower_bound=0,
        flag_values=fv)
    flags.DEFINE_bool(
        "no_median_scaling", False,
        "Do not median-scale (metric models); multiply by --scale instead.", flag_values=fv)
    flags.DEFINE_float(
        "scale", 1.0, "Fixed factor applied to the predictions.", flag_values=fv)
    flags.DEFINE_float(
        "min_depth", metrics.MIN_DEPTH, "Valid GT range and clamp, metres.", flag_values=fv)
    flags.DEFINE_float(
        "max_depth", metrics.MAX_DEPTH, "Valid GT range and clamp, metres.", flag_values=fv)
    flags.DEFINE_string(
        "output_dir", None, "Where metrics.json (and CSV/PNG) are written.", flag_values=fv)
    flags.DEFINE_bool("per_image", False, "Also write per_image.csv.", flag_values=fv)
    flags.DEFINE_integer(
        "num_worst", 0, "Write worst.png with this many worst images (0: none).", flag_values=fv)
    flags.mark_flags_as_required(["dataset", "data_dir", "output_dir"], flag_values=fv)
    flags.mark_flags_as_mutual_exclusive(PREDICTION_FLAGS, required=True, flag_values=fv)


# Flags naming inputs that must exist.
INPUT_PATH_FLAGS = (
    "data_dir", "split_file", "kitti_depth_dir", "gt_dir", "saved_model", "model_dir", "predictions",
)


def check_flags(fv):
    """Raises app.UsageError for flags that cannot work, before anything is read or built."""
    cli.check_paths(fv, INPUT_PATH_FLAGS)
    if bool(fv.input_height) != bool(fv.input_width):
        raise app.UsageError("--input_height and --input_width go together (or neither)")


def samples_from_flags(fv):
    """The ground-truth :class:`~depth_motion_tf.ground_truth.Samples` the flags select."""
    if fv.dataset.startswith("kitti") and not fv.split_file:
        raise app.UsageError(f"--dataset={fv.dataset} needs --split_file")
    if fv.dataset == "kitti_eigen":
        cache = fv.gt_cache or pathlib.Path(fv.output_dir) / "kitti_eigen_gt.npz"
        return ground_truth.kitti_eigen_samples(fv.data_dir, fv.split_file, cache, fv.kitti_camera_depth)
    if fv.dataset == "kitti_benchmark":
        return ground_truth.kitti_benchmark_samples(fv.data_dir, fv.split_file, fv.kitti_depth_dir)
    if fv.dataset == "cityscapes":
        return ground_truth.cityscapes_samples(fv.data_dir, fv.split)
    if fv.dataset == "folder":
        if not fv.gt_dir:
            raise app.UsageError("--dataset=folder needs --gt_dir")
        return ground_truth.folder_samples(fv.data_dir, fv.gt_dir, crop_from_flag(fv.crop))
    return ground_truth.tfds_samples(fv.data_dir, fv.split)


def crop_from_flag(values):
    """``--crop`` → ``(top, bottom, left, right)`` fractions, or None; raises app.UsageError when invalid."""
    if not values:
        return None
    try:
        crop = tuple(float(x) for x in values)
    except ValueError:
        crop = ()
    if len(crop) != 4:
        raise app.UsageError(f"--crop={','.join(values)}: takes four fractions: top,bottom,left,right")
    return crop


def predict_fn_from_flags(fv):
    """The ``predict_depth`` callable of the model flag given (one branch per PREDICTION_FLAGS route)."""
    if fv.model_dir:
        model = export.load_model(fv.model_dir, fv.checkpoint)
        return export.keras_depth_predictor(model, model.height, model.width, fv.batch_size)
    return saved_model_predict_fn(fv.saved_model)


def run(fv):
    """Evaluates as the parsed flags say, prints the table, writes the outputs; returns the result."""
    check_flags(fv)
    samples = samples_from_flags(fv)
    protocol = dict(
        median_scaling=not fv.no_median_scaling, scale=fv.scale, min_depth=fv.min_depth,
        max_depth=fv.max_depth, num_worst=fv.num_worst,
    )
    if fv.predictions:
        pairs = zip(samples, load_predictions(fv.predictions, len(samples)))
        result = evaluate_predictions(pairs, total=len(samples), progress=True, **protocol)
    else:
        input_size = (fv.input_height, fv.input_width) if fv.input_height and fv.input_width else None
        result = evaluate_depth(
            predict_fn_from_flags(fv), samples, fv.batch_size, input_size, progress=True, **protocol
        )
    print(format_report(result.summary, protocol["median_scaling"]))
    config = {flag.name: flag.value for flag in fv.get_flags_for_module(define_flags.__module__)}
    paths = write_outputs(result, fv.output_dir, config, fv.per_image, fv.scale)
    print(f"Evaluated {result.summary['num_images']} images; wrote {', '.join(str(p) for p in paths)}")
    return result


def main(argv):
    del argv
    run(flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
