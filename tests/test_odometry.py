"""Ego-motion evaluation on a generated trajectory: rotations, chaining, snippet ATE, pose files, CLI."""
import json
import math

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from PIL import Image

from depth_motion_tf import odometry


def yaw_pitch(yaw, pitch):
    """Camera-to-world rotation: a yaw about y after a pitch about x."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return ry @ rx


@pytest.fixture
def trajectory():
    """12 camera-to-world poses of a car turning left at 1 m/frame while pitching gently."""
    poses, position = [], np.zeros(3)
    for t in range(12):
        pose = np.eye(4)
        pose[:3, :3] = yaw_pitch(-0.05 * t, 0.02 * math.sin(t))
        pose[:3, 3] = position
        poses.append(pose)
        position = position + pose[:3, :3] @ np.array([0.0, 0.0, 1.0])
    return np.stack(poses)


def angles_and_translations(gt_poses):
    """Per-pair (rx, ry, rz, tx, ty, tz) with X_{t+1} = R X_t + t, R = Rx Ry Rz (inverted by hand)."""
    motions = []
    for first, second in zip(gt_poses[:-1], gt_poses[1:]):
        m = np.linalg.inv(second) @ first
        r = m[:3, :3]
        # R = Rx Ry Rz: R[0,2] = sin ry, R[1,2] = -sin rx cos ry, R[2,2] = cos rx cos ry,
        # R[0,1] = -cos ry sin rz, R[0,0] = cos ry cos rz.
        angles = [math.atan2(-r[1, 2], r[2, 2]), math.asin(r[0, 2]), math.atan2(-r[0, 1], r[0, 0])]
        motions.append(angles + list(m[:3, 3]))
    return np.array(motions)


def test_motion_matrix_rotation_order_is_rx_ry_rz():
    # Rz(90°) takes x to y, then Rx(90°) takes y to z.
    matrix = odometry.motion_matrices(np.array([[math.pi / 2, 0.0, math.pi / 2, 1.0, 2.0, 3.0]]))[0]
    np.testing.assert_allclose(matrix @ [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(matrix[:, 3], [1.0, 2.0, 3.0, 1.0])


def test_chaining_true_motions_recovers_the_trajectory(trajectory):
    matrices = odometry.motion_matrices(angles_and_translations(trajectory))
    np.testing.assert_allclose(odometry.chain_motions(matrices), trajectory, atol=1e-5)


def test_motion_maps_first_frame_points_to_the_second():
    # A camera moving 1 m forward: a point 5 m ahead becomes 4 m ahead.
    matrix = odometry.motion_matrices(np.array([[0, 0, 0, 0, 0, -1.0]]))[0]
    np.testing.assert_allclose(matrix @ [0, 0, 5.0, 1], [0, 0, 4.0, 1])
    np.testing.assert_allclose(odometry.chain_motions(matrix[None])[1][:3, 3], [0, 0, 1.0])


def test_perfect_prediction_has_zero_ate(trajectory):
    errors = odometry.snippet_ates(trajectory, odometry.motion_matrices(angles_and_translations(trajectory)))
    assert errors.shape == (12 - 5 + 1,)
    np.testing.assert_allclose(errors, 0.0, atol=1e-5)


def test_scale_fit_absorbs_a_global_translation_scale(trajectory):
    motions = angles_and_translations(trajectory)
    motions[:, 3:] *= 0.5
    errors = odometry.snippet_ates(trajectory, odometry.motion_matrices(motions))
    np.testing.assert_allclose(errors, 0.0, atol=1e-5)


def test_least_squares_scale_recovers_a_known_scale():
    gt = np.array([[0.0, 0, 0], [0.1, 0, 1], [0.3, 0.1, 2.1]])
    assert odometry.least_squares_scale(gt, gt / 2.5) == pytest.approx(2.5)


def test_ate_of_a_wrong_last_frame_matches_hand_computation():
    gt = np.array([[0, 0, z] for z in (0.0, 1, 2, 3, 4)])
    pred = np.array([[0, 0, z] for z in (0.0, 1, 2, 3, 5)])
    # s = (1 + 4 + 9 + 20) / (1 + 4 + 9 + 25) = 34/39; errors s·p - g per frame.
    s = 34 / 39
    residuals = [0, s - 1, 2 * s - 2, 3 * s - 3, 5 * s - 4]
    expected = math.sqrt(sum(e * e for e in residuals)) / 5
    assert odometry.absolute_trajectory_error(gt, pred) == pytest.approx(expected)


def test_first_frame_alignment_removes_an_offset():
    gt = np.array([[0, 0, z] for z in (0.0, 1, 2)])
    assert odometry.absolute_trajectory_error(gt, gt + [5.0, 1.0, -2.0]) == pytest.approx(0.0)


def test_motion_count_mismatch_is_a_clear_error(trajectory):
    with pytest.raises(ValueError, match="10 pair motions for 12 poses"):
        odometry.snippet_ates(trajectory, np.tile(np.eye(4), (10, 1, 1)))


def test_pose_file_round_trip(tmp_path, trajectory):
    odometry.write_kitti_poses(tmp_path / "poses.txt", trajectory)
    lines = (tmp_path / "poses.txt").read_text().splitlines()
    assert len(lines) == 12 and all(len(line.split()) == 12 for line in lines)
    np.testing.assert_allclose(odometry.read_kitti_poses(tmp_path / "poses.txt"), trajectory, atol=1e-8)


def test_malformed_pose_line_names_file_and_line(tmp_path):
    (tmp_path / "09.txt").write_text("1 0 0 0 0 1 0 0 0 0 1 0\n1 0 0\n")
    with pytest.raises(ValueError, match="09.txt:2: expected 12 numbers"):
        odometry.read_kitti_poses(tmp_path / "09.txt")


def run_cli(argv):
    flag_values = flags.FlagValues()
    odometry.define_flags(flag_values)
    flag_values(["odometry", *argv])
    return odometry.run(flag_values)


def test_cli_end_to_end_on_npy_predictions(tmp_path, trajectory, capsys):
    odometry.write_kitti_poses(tmp_path / "09.txt", trajectory)
    motions = angles_and_translations(trajectory)
    motions[:, 3:] *= 0.1
    np.save(tmp_path / "pred.npy", motions)
    out = tmp_path / "out"
    summary = run_cli([f"--poses_gt={tmp_path / '09.txt'}", f"--predictions={tmp_path / 'pred.npy'}",
                       f"--output_dir={out}"])
    assert summary["ate_mean"] == pytest.approx(0.0, abs=1e-5)
    assert summary["num_snippets"] == 8
    assert summary["trajectory_scale"] == pytest.approx(10.0)
    assert "ATE 0.0000 ± 0.0000" in capsys.readouterr().out
    assert json.loads((out / "odometry.json").read_text())["results"]["num_snippets"] == 8
    chained = odometry.read_kitti_poses(out / "trajectory.txt")
    np.testing.assert_allclose(chained[:, :3, :3], trajectory[:, :3, :3], atol=1e-5)
    np.testing.assert_allclose(chained[:, :3, 3], 0.1 * trajectory[:, :3, 3], atol=1e-5)
    assert (out / "trajectory.png").stat().st_size > 0


class ForwardMotion(tf.Module):
    """A SavedModel whose ``motion`` signature always says: 1 m forward, no rotation."""

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)] * 2)
    def motion(self, image1, image2):
        batch = tf.shape(image1)[0]
        translation = tf.tile([[0.0, 0.0, -1.0]], [batch, 1])
        return {"rotation": tf.zeros([batch, 3]), "translation": translation}


def test_saved_model_motion_signature_on_frame_pairs(tmp_path):
    module = ForwardMotion()
    tf.saved_model.save(module, str(tmp_path / "model"), signatures={"motion": module.motion})
    (tmp_path / "image_2").mkdir()
    paths = []
    for i in range(4):
        paths.append(tmp_path / "image_2" / f"{i:06d}.png")
        Image.fromarray(np.full((6, 8, 3), i, np.uint8)).save(paths[-1])
    motions = odometry.saved_model_motions(tmp_path / "model", paths, batch_size=2, input_size=(4, 4))
    np.testing.assert_allclose(motions, np.tile([[0, 0, 0, 0, 0, -1.0]], (3, 1)))
