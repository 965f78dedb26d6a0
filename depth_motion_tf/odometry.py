"""Ego-motion evaluation on KITTI odometry (METHOD.md §6): snippet ATE, trajectories, CLI.

The motion network predicts, for each consecutive pair (t, t+1), rotation
angles ``(rx, ry, rz)`` (``R = Rx Ry Rz``, METHOD.md §3) and a translation
``t`` that map frame-t camera coordinates to frame-(t+1) ones:
``X_{t+1} = R X_t + t``. Chaining these gives camera-to-world poses with
frame 0 as the world.

The score is the absolute trajectory error over every 5-frame snippet: both
snippets are expressed in their first frame's camera coordinates (the first
frames aligned), the predicted positions are multiplied by the least-squares
scale, and the error is ``sqrt(sum ||s·p - g||²) / K`` over the K frames, as in
the SfMLearner/struct2depth evaluation; reported as mean ± std over snippets.

CLI::

    python -m depth_motion_tf.odometry --poses_gt=/data/kitti_odometry/poses/09.txt \\
        --predictions=/tmp/motion_09.npy --output_dir=/tmp/odometry_09

prints ``ATE mean ± std`` and writes ``odometry.json``, the chained
trajectory ``trajectory.txt`` (KITTI pose format) and ``trajectory.png``.
``--predictions`` may also be a SavedModel (with ``--sequence_dir``), or
``--model_dir=RUN [--checkpoint=...] --sequence_dir=...`` runs a training
run's checkpoint.
"""
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tqdm  # noqa: E402
from absl import app, flags  # noqa: E402

from depth_motion_tf import cli, evaluate, export, geometry, ground_truth  # noqa: E402
from depth_motion_tf.errors import BadInputError  # noqa: E402

SNIPPET_LENGTH = 5


def motion_matrices(motions):
    """Per-pair motions → 4x4 transforms.

    Args:
        motions: ``[N, 6]`` ``(rx, ry, rz, tx, ty, tz)``, radians and depth units.
    Returns:
        ``[N, 4, 4]`` float64 ``[[R, t], [0, 1]]`` with ``R = Rx Ry Rz``
        (:func:`depth_motion_tf.geometry.rotation_matrix`, float32 precision)
        and ``X2 = R X1 + t``.
    """
    motions = np.asarray(motions, dtype=np.float64)
    matrices = np.tile(np.eye(4), (len(motions), 1, 1))
    matrices[:, :3, :3] = geometry.rotation_matrix(motions[:, :3]).numpy()
    matrices[:, :3, 3] = motions[:, 3:]
    return matrices


def chain_motions(matrices):
    """Chains pair motions into camera-to-world poses, frame 0 being the world.

    Args:
        matrices: ``[N, 4, 4]``, matrix t maps frame-t to frame-(t+1) coordinates.
    Returns:
        ``[N + 1, 4, 4]`` float64 camera-to-world poses ``P_0 = I``,
        ``P_{t+1} = P_t · M_t⁻¹``.
    """
    poses = [np.eye(4)]
    for matrix in matrices:
        poses.append(poses[-1] @ np.linalg.inv(matrix))
    return np.stack(poses)


def relative_to_first(poses):
    """``[K, 4, 4]`` camera-to-world poses → the same in the first camera's frame: ``P_0⁻¹ P_i``."""
    return np.linalg.inv(poses[0]) @ poses


def least_squares_scale(gt_xyz, pred_xyz):
    """The ``s`` minimising ``sum ||s·pred - gt||²``: ``sum(gt·pred) / sum(pred·pred)``.

    Args:
        gt_xyz, pred_xyz: ``[K, 3]`` positions.
    """
    denominator = float(np.sum(pred_xyz * pred_xyz))
    return float(np.sum(gt_xyz * pred_xyz)) / denominator if denominator > 0 else 1.0


def absolute_trajectory_error(gt_xyz, pred_xyz):
    """ATE of one snippet after first-frame alignment and a least-squares scale.

    Args:
        gt_xyz, pred_xyz: ``[K, 3]`` positions in the first frame's camera coordinates.
    Returns:
        float, ``sqrt(sum_k ||s·(p_k - p_0) - (g_k - g_0)||²) / K`` in GT units (metres).
    """
    gt_xyz = gt_xyz - gt_xyz[0]
    pred_xyz = pred_xyz - pred_xyz[0]
    scale = least_squares_scale(gt_xyz, pred_xyz)
    return float(np.sqrt(np.sum((scale * pred_xyz - gt_xyz) ** 2)) / len(gt_xyz))


def snippet_ates(gt_poses, matrices, snippet_length=SNIPPET_LENGTH):
    """ATE of every snippet of ``snippet_length`` consecutive frames (stride 1).

    Args:
        gt_poses: ``[N, 4, 4]`` ground-truth camera-to-world poses.
        matrices: ``[N - 1, 4, 4]`` predicted pair motions (see :func:`motion_matrices`).
    Returns:
        ``[N - snippet_length + 1]`` float64 errors.
    """
    if len(matrices) != len(gt_poses) - 1:
        raise ValueError(
            f"{len(matrices)} pair motions for {len(gt_poses)} poses; expected {len(gt_poses) - 1}"
        )
    errors = []
    for start in range(len(gt_poses) - snippet_length + 1):
        gt = relative_to_first(gt_poses[start : start + snippet_length])[:, :3, 3]
        pred = chain_motions(matrices[start : start + snippet_length - 1])[:, :3, 3]
        errors.append(absolute_trajectory_error(gt, pred))
    return np.array(errors)


def read_kitti_poses(path):
    """A KITTI pose file (12 numbers a line, row-major 3x4 camera-to-world) → ``[N, 4, 4]`` float64."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pose file not found")
    poses = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = np.array([float(x) for x in line.split()])
        except ValueError:
            values = np.array([])
        if values.shape != (12,):
            raise BadInputError(f"{path}:{number}", f"expected 12 numbers, got {line!r}")
        poses.append(np.vstack([values.reshape(3, 4), [0.0, 0.0, 0.0, 1.0]]))
    return np.stack(poses)


def write_kitti_poses(path, poses):
    """Writes ``[N, 4, 4]`` camera-to-world poses as a KITTI pose file."""
    rows = np.asarray(poses)[:, :3, :].reshape(-1, 12)
    pathlib.Path(path).write_text("".join(" ".join(f"{v:.9e}" for v in row) + "\n" for row in rows))


def plot_trajectory(gt_poses, pred_poses, path, title=""):
    """Top view (x right, z forward) of both trajectories, the prediction at its least-squares scale.

    Args:
        gt_poses, pred_poses: ``[N, 4, 4]`` camera-to-world poses, compared in the
            first ground-truth camera's coordinates.
        path: output PNG.
    Returns:
        the global scale applied to the prediction.
    """
    gt = relative_to_first(gt_poses)[:, :3, 3]
    pred = relative_to_first(pred_poses)[:, :3, 3]
    scale = least_squares_scale(gt, pred)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot(gt[:, 0], gt[:, 2], "k-", label="ground truth")
    ax.plot(scale * pred[:, 0], scale * pred[:, 2], "r-", label=f"prediction (x{scale:.3g})")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("z (m)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title)
    ax.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return scale


def saved_model_motions(saved_model, image_paths, batch_size=8, input_size=None):
    """Runs a SavedModel's ``motion`` signature on consecutive frame pairs.

    Args:
        saved_model: SavedModel folder; signature ``motion``: ``image1``, ``image2``
            ``[B, H, W, 3]`` uint8 → ``rotation`` ``[B, 3]``, ``translation`` ``[B, 3]``.
        image_paths: sorted frame files.
        input_size: optional ``(height, width)`` the frames are resized to.
    Returns:
        ``[len(image_paths) - 1, 6]`` float64 ``(rx, ry, rz, tx, ty, tz)``.
    Raises:
        BadInputError: naming ``saved_model`` when it is no SavedModel with a ``motion`` signature.
    """
    loaded = export.load_saved_model(saved_model, needed=["motion"])
    return pair_motions(loaded.signatures["motion"], image_paths, batch_size, input_size)


def pair_motions(motion_fn, image_paths, batch_size=8, input_size=None):
    """Runs a ``motion`` function (a SavedModel signature, see above) on consecutive frame pairs.

    Returns:
        ``[len(image_paths) - 1, 6]`` float64 ``(rx, ry, rz, tx, ty, tz)``.
    """
    frames = [
        evaluate.resize_image(ground_truth.read_image(path), input_size)
        for path in tqdm.tqdm(image_paths, desc="reading frames", unit="frame")
    ]
    motions = []
    for start in tqdm.trange(0, len(frames) - 1, batch_size, desc="predicting", unit="batch"):
        stop = min(start + batch_size, len(frames) - 1)
        out = motion_fn(
            image1=tf.constant(np.stack(frames[start:stop])),
            image2=tf.constant(np.stack(frames[start + 1 : stop + 1])),
        )
        rotation = tf.reshape(out["rotation"], [-1, 3])
        translation = tf.reshape(out["translation"], [-1, 3])
        motions.append(tf.concat([rotation, translation], axis=1).numpy())
    return np.concatenate(motions).astype(np.float64)


# ------------------------------------------------------------------ CLI ----


def define_flags(flag_values=flags.FLAGS):
    """Declares the CLI flags on ``flag_values`` (not at import)."""
    fv = flag_values
    flags.DEFINE_string(
        "poses_gt", None, "KITTI ground-truth pose file (poses/09.txt).", flag_values=fv
    )
    flags.DEFINE_string(
        "predictions",
        None,
        "A .npy [N-1, 6] of per-pair (rx, ry, rz, tx, ty, tz), "
        "or a SavedModel with a 'motion' signature.",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "model_dir", None, "Or a training run folder (config.json, checkpoints/); needs "
        "--sequence_dir.", flag_values=fv
    )
    flags.DEFINE_string(
        "checkpoint", None, "With --model_dir: checkpoint path (default: the latest).",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "sequence_dir",
        None,
        "With a SavedModel: the sequence folder (holding image_2/*.png).",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "input_height", 0, "Resize frames to this height (0: native).", flag_values=fv
    )
    flags.DEFINE_integer(
        "input_width", 0, "Resize frames to this width (0: native).", flag_values=fv
    )
    flags.DEFINE_integer(
        "batch_size", 8, "Frame pairs per model call.", lower_bound=1, flag_values=fv
    )
    flags.DEFINE_integer(
        "snippet_length", SNIPPET_LENGTH, "Frames per ATE snippet (default 5).", lower_bound=2,
        flag_values=fv,
    )
    flags.DEFINE_string(
        "output_dir", None, "Where odometry.json, trajectory.txt/.png are written.", flag_values=fv
    )
    flags.mark_flags_as_required(["poses_gt", "output_dir"], flag_values=fv)
    flags.mark_flags_as_mutual_exclusive(["predictions", "model_dir"], required=True, flag_values=fv)


def motions_from_flags(fv):
    """The ``[N-1, 6]`` per-pair motions the flags point to."""
    if fv.model_dir:
        motion_fn = export.load_signatures(model_dir=fv.model_dir, checkpoint=fv.checkpoint).motion
        return pair_motions(motion_fn, *_sequence_frames(fv))
    path = pathlib.Path(fv.predictions)
    if path.is_dir():
        return saved_model_motions(path, *_sequence_frames(fv))
    if path.suffix != ".npy" or not path.is_file():
        raise FileNotFoundError(f"{path}: expected a .npy of [N-1, 6] motions or a SavedModel folder")
    motions = np.load(path)
    if motions.ndim != 2 or motions.shape[1] != 6:
        raise BadInputError(path, f"expected shape [N-1, 6], got {motions.shape}")
    return motions


def _sequence_frames(fv):
    """``(image_paths, batch_size, input_size)`` of ``--sequence_dir`` for running a model."""
    if not fv.sequence_dir:
        raise app.UsageError("a SavedModel or --model_dir needs --sequence_dir")
    image_paths = sorted((pathlib.Path(fv.sequence_dir) / "image_2").glob("*.png"))
    if not image_paths:
        raise FileNotFoundError(f"{fv.sequence_dir}/image_2: no .png frames")
    input_size = (fv.input_height, fv.input_width) if fv.input_height and fv.input_width else None
    return image_paths, fv.batch_size, input_size


def run(fv):
    """Scores the predicted motions, writes the trajectory, plot and JSON; returns the summary dict."""
    cli.check_paths(fv, ["poses_gt", "predictions", "model_dir", "sequence_dir"])
    gt_poses = read_kitti_poses(fv.poses_gt)
    matrices = motion_matrices(motions_from_flags(fv))
    errors = snippet_ates(gt_poses, matrices, fv.snippet_length)
    output_dir = pathlib.Path(fv.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    trajectory = chain_motions(matrices)
    write_kitti_poses(output_dir / "trajectory.txt", trajectory)
    plot_path = output_dir / "trajectory.png"
    global_scale = plot_trajectory(gt_poses, trajectory, plot_path, pathlib.Path(fv.poses_gt).stem)
    summary = {
        "ate_mean": float(np.mean(errors)),
        "ate_std": float(np.std(errors)),
        "num_snippets": len(errors),
        "trajectory_scale": global_scale,
    }
    config = {flag.name: flag.value for flag in fv.get_flags_for_module(define_flags.__module__)}
    json_path = output_dir / "odometry.json"
    json_path.write_text(json.dumps({"results": summary, "config": config}, indent=2))
    print(
        f"ATE {summary['ate_mean']:.4f} ± {summary['ate_std']:.4f} m over {len(errors)} "
        f"{fv.snippet_length}-frame snippets"
    )
    print(f"Wrote {json_path}, {output_dir / 'trajectory.txt'}, {plot_path}")
    return summary


def main(argv):
    del argv
    run(flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
