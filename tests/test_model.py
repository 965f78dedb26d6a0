"""DepthMotionModel: the training step of METHOD.md §1, the guard, intrinsics and mask modes."""
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from depth_motion_tf import config as config_lib
from depth_motion_tf.losses import LossWeights
from depth_motion_tf.model import DepthMotionModel

HEIGHT, WIDTH = 32, 64


def _batch(batch_size=2, seed=0, with_mask=True):
    rng = np.random.default_rng(seed)
    texture = rng.uniform(0, 1, size=(batch_size, HEIGHT, WIDTH + 2, 3)).astype(np.float32)
    rgb = np.stack([texture[:, :, :WIDTH], texture[:, :, 2:]], axis=1)
    k = np.array([[40.0, 0, 31.5], [0, 40.0, 15.5], [0, 0, 1]], np.float32)
    batch = {
        "rgb": tf.constant(rgb),
        "intrinsics": tf.constant(np.repeat(k[None], batch_size, 0)),
        "video_index": tf.constant(np.arange(batch_size) % 2, tf.int32),
    }
    if with_mask:
        mask = np.zeros((batch_size, 2, HEIGHT, WIDTH, 1), np.float32)
        mask[:, :, 10:14, 20:24] = 1.0
        batch["mask"] = tf.constant(mask)
    return batch


def _model(**kwargs):
    model = DepthMotionModel(height=HEIGHT, width=WIDTH, **kwargs)
    model.build_for_training()
    model.compile(optimizer=keras.optimizers.Adam(2e-4, global_clipnorm=10.0), jit_compile=False)
    model.optimizer.build(model.trainable_variables)
    return model


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    return _model()


def test_forward_returns_every_active_loss_and_the_doubled_total(model):
    losses, extras = model.forward(_batch(), training=True, step=tf.constant(0, tf.int64))
    weights = LossWeights()
    active = {"rgb", "ssim", "depth_smoothing", "rotation_cycle", "translation_cycle",
              "motion_smoothing", "motion_sparsity"}
    assert set(losses) == active | {"total"}
    total = 2.0 * sum(float(losses[name]) for name in active)
    assert float(losses["total"]) == pytest.approx(total, rel=1e-5)
    assert extras["depth"].shape == (4, HEIGHT, WIDTH, 1)  # both frames of both pairs
    assert weights.depth_consistency == 0.0 and "depth_consistency" not in losses


def test_train_step_updates_weights_and_reports_metrics(model):
    before = [v.numpy().copy() for v in model.depth_net.trainable_variables]
    logs = model.train_step(_batch())
    after = [v.numpy() for v in model.depth_net.trainable_variables]
    assert np.isfinite(float(logs["total"]))
    assert any(not np.array_equal(b, a) for b, a in zip(before, after))
    assert int(model.bad_steps.numpy()) == 0


def test_non_finite_step_applies_no_update_and_is_counted(model):
    batch = _batch()
    batch["rgb"] = tf.fill(tf.shape(batch["rgb"]), np.nan)
    before = [v.numpy().copy() for v in model.trainable_variables]
    iterations = int(model.optimizer.iterations.numpy())
    model.train_step(batch)
    after = [v.numpy() for v in model.trainable_variables]
    assert all(np.array_equal(b, a, equal_nan=True) for b, a in zip(before, after))
    assert int(model.optimizer.iterations.numpy()) == iterations
    assert int(model.consecutive_bad_steps.numpy()) == 1
    model.train_step(_batch())
    assert int(model.consecutive_bad_steps.numpy()) == 0 and int(model.bad_steps.numpy()) == 1


def test_update_skips_the_dormant_field_variables_with_the_same_result():
    keras.utils.set_random_seed(2)
    skipping, reference = _model(), _model()
    reference.set_weights(skipping.get_weights())
    batch, step = _batch(), tf.constant(0, tf.int64)
    field = {id(v) for v in skipping.motion_net.field_variables()}
    assert field and not bool(skipping.motion_net.field_active(step))
    skipping.train_step(batch)
    _, _, gradients = reference._losses_and_gradients(batch, step)
    reference.optimizer.apply(gradients, reference.trainable_variables)  # every variable
    for a, b in zip(skipping.trainable_variables, reference.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7, err_msg=a.path)
    moments = [skipping.optimizer._momentums[skipping.optimizer._get_variable_index(v)]
               for v in skipping.trainable_variables if id(v) in field]
    assert all(not np.any(m.numpy()) for m in moments)


def test_the_field_variables_train_once_the_burn_in_starts():
    model = _model(field_burnin_steps=2)  # weight 0 at step 1, 1 from step 2
    for _ in range(2):
        model.train_step(_batch())
    before = [v.numpy().copy() for v in model.motion_net.field_variables()]
    model.train_step(_batch())
    after = [v.numpy() for v in model.motion_net.field_variables()]
    assert any(not np.array_equal(b, a) for b, a in zip(before, after))


def test_motion_head_start_holds_the_depth_network_then_lets_it_train():
    config = config_lib.TrainConfig(data="", model_dir="", height=HEIGHT, width=WIDTH, seed=3,
                                    motion_head_start_steps=1)
    model = config_lib.build_model(config, tf.distribute.get_strategy())
    weights = lambda net: [v.numpy().copy() for v in net.trainable_variables]  # noqa: E731
    depth, motion = weights(model.depth_net), weights(model.motion_net)
    model.train_step(_batch())  # step 1: the motion net alone
    assert all(np.array_equal(a, b) for a, b in zip(depth, weights(model.depth_net)))
    assert any(not np.array_equal(a, b) for a, b in zip(motion, weights(model.motion_net)))
    model.train_step(_batch())  # step 2: both
    assert any(not np.array_equal(a, b) for a, b in zip(depth, weights(model.depth_net)))


def test_learned_intrinsics_average_both_directions():
    model = _model(intrinsics_mode="learned")
    _, extras = model.forward(_batch(), training=False, step=tf.constant(0, tf.int64))
    k = extras["intrinsics"].numpy()
    np.testing.assert_allclose(k[:2], k[2:], rtol=1e-6)  # 1→2 and 2→1 share one K
    assert np.all(k[:, 0, 0] > 0) and np.all(k[:, 1, 1] > 0)


def test_per_video_intrinsics_come_from_a_trainable_table():
    model = _model(intrinsics_mode="learned_per_video", num_videos=3)
    _, extras = model.forward(_batch(), training=False, step=tf.constant(0, tf.int64))
    # Initial (a, b, c, d) = (1, 1, 0.5, 0.5): fx = fy = (H + W) / 2, cx = W / 2, cy = H / 2.
    expected = np.array([[48.0, 0, 32.0], [0, 48.0, 16.0], [0, 0, 1]], np.float32)
    np.testing.assert_allclose(extras["intrinsics"].numpy(), np.repeat(expected[None], 4, 0))
    with tf.GradientTape() as tape:
        losses, _ = model.forward(_batch(), training=True, step=tf.constant(0, tf.int64))
    gradient = tape.gradient(losses["total"], model.video_intrinsics)
    rows = np.abs(tf.convert_to_tensor(gradient).numpy()).sum(axis=1)
    assert rows[0] > 0 and rows[1] > 0 and rows[2] == 0  # only the batch's videos


def test_foreground_mask_limits_the_residual_field_to_the_dilated_objects():
    model = _model(use_mask=True, foreground_dilation=2, auto_mask=False)
    step = tf.constant(100000, tf.int64)  # past the motion-field burn-in
    _, extras = model.forward(_batch(), training=False, step=step)
    field = np.abs(extras["residual_translation"].numpy()).sum(-1)
    outside = np.ones_like(field, bool)
    outside[:, 8:16, 18:26] = False  # object 10:14 x 20:24 dilated by 2 px
    assert np.all(field[outside] == 0) and np.any(field[~outside] != 0)


def test_motion_input_without_cascade_has_six_channels():
    model = _model(cascade=False)
    images = tf.zeros([4, HEIGHT, WIDTH, 3])
    assert model._motion_input(images, tf.ones([4, HEIGHT, WIDTH, 1])).shape[-1] == 6
    assert _model()._motion_input(images, tf.ones([4, HEIGHT, WIDTH, 1])).shape[-1] == 8


_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import sys
    from depth_motion_tf.losses import LossWeights
    from depth_motion_tf.model import DepthMotionModel
    from tests.test_model import _batch, HEIGHT, WIDTH

    # "large": every loss weight x1e4, so that the gradient norm is far above the clip norm 10.
    factor = 1e4 if sys.argv[1] == "large" else 1.0
    weights = LossWeights(**{k: v * factor for k, v in vars(LossWeights()).items()})

    def make(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(3)
            # independent: the antisymmetric motion is a small difference of two large outputs,
            # so its float noise (not a replica bug) would dominate the small updates compared here.
            model = DepthMotionModel(height=HEIGHT, width=WIDTH, loss_weights=weights, clip_norm=10.0,
                                     rigid_motion="independent")
            model.build_for_training()
            model.compile(optimizer=keras.optimizers.SGD(1e-5 if factor > 1 else 0.1), jit_compile=False)
            model.optimizer.build(model.trainable_variables)
        return model

    batches = [_batch(4, seed=s) for s in range(3)]
    probe = make(tf.distribute.get_strategy())
    with tf.GradientTape() as tape:
        total = probe.forward(batches[0], training=False, step=tf.constant(0, tf.int64))[0]["total"]
    norm = float(tf.linalg.global_norm([g for g in tape.gradient(total, probe.trainable_variables) if g is not None]))
    dataset = tf.data.Dataset.from_tensor_slices(
        {k: tf.concat([b[k] for b in batches], 0) for k in batches[0]}).batch(4)
    two = make(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    one = make(tf.distribute.MirroredStrategy(["/cpu:0"]))
    initial = two.get_weights()
    one.set_weights(initial)
    assert two.distribute_strategy.num_replicas_in_sync == 2
    for model in (two, one):
        model.fit(dataset, epochs=1, verbose=0)
    # The two runs' weight updates, compared as whole vectors: a replica-averaging
    # mistake (e.g. summed, not averaged, gradients) would make them differ by ~100%.
    update_two = np.concatenate([(a - i).ravel() for a, i in zip(two.get_weights(), initial)])
    update_one = np.concatenate([(b - i).ravel() for b, i in zip(one.get_weights(), initial)])
    worst = np.linalg.norm(update_two - update_one) / np.linalg.norm(update_one)
    moved = np.abs(update_one).max()
    print("RESULT", worst, int(two.optimizer.iterations.numpy()), moved, norm)
    """
)


@pytest.fixture(scope="module")
def replica_runs():
    """Both gradient sizes of ``_MIRRORED_SCRIPT``, run at once in two fresh processes.

    Each trains 3 steps on 2 logical CPUs and on 1; tracing the two strategies'
    train functions is most of its minute and a half and uses one core, so the
    two runs side by side take about as long as one.
    Returns:
        ``{"normal" | "large": (relative update difference, steps, moved, norm)}``.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    processes = {
        size: subprocess.Popen(
            [sys.executable, "-c", _MIRRORED_SCRIPT, size], cwd=root, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        for size in ("normal", "large")
    }
    outputs = {size: process.communicate(timeout=600) for size, process in processes.items()}
    results = {}
    for size, (stdout, stderr) in outputs.items():
        line = [l for l in stdout.splitlines() if l.startswith("RESULT")]
        assert line, stdout[-3000:] + stderr[-3000:]
        worst, steps, moved, norm = line[0].split()[1:]
        results[size] = float(worst), int(steps), float(moved), float(norm)
    return results


def test_two_replicas_match_one_device_on_the_same_global_batch(replica_runs):
    worst, steps, moved, _ = replica_runs["normal"]
    assert steps == 3 and moved > 1e-5  # training really happened
    assert worst < 1e-2


def test_two_replicas_clip_the_summed_gradient_like_one_device(replica_runs):
    """Clipping each replica's part before the sum (Keras' global_clipnorm) would double the step."""
    worst, steps, moved, norm = replica_runs["large"]
    assert norm > 100.0  # far above the clip norm of 10: clipping is active
    assert steps == 3 and moved > 1e-7
    assert worst < 1e-2


def test_clip_scales_the_gradient_to_the_clip_norm():
    model = _model(clip_norm=1.0)
    gradients = [tf.constant([3.0, 4.0]), None, tf.constant([0.0])]
    clipped, norm = model._clip_global_norm(gradients)
    assert clipped[1] is None and float(norm) == pytest.approx(5.0)
    np.testing.assert_allclose(clipped[0], [0.6, 0.8], rtol=1e-6)
    small, _ = model._clip_global_norm([tf.constant([0.3, 0.4])])
    np.testing.assert_allclose(small[0], [0.3, 0.4])


def test_clip_norm_is_not_finite_when_one_gradient_is_not():
    model = _model(clip_norm=1.0)
    gradients, norm = model._clip_global_norm([tf.constant([3.0, np.inf]), tf.constant([1.0])])
    assert not np.isfinite(float(norm))
    np.testing.assert_array_equal(gradients[1], [1.0])  # left unscaled: the step is skipped


# --- rigid-motion parametrisation and given ego-motion (METHOD.md §7) ---------


def _rotations(angles):
    from depth_motion_tf import geometry

    return geometry.rotation_matrix(angles).numpy()


def _assert_exact_inverses(rotation, translation):
    """Rows 0..B-1 (1→2) and B..2B-1 (2→1): R21 R12 = I and t21 = -R12ᵀ t12."""
    half = rotation.shape[0] // 2
    r12, r21 = _rotations(rotation[:half]), _rotations(rotation[half:])
    np.testing.assert_allclose(r21 @ r12, np.tile(np.eye(3), [half, 1, 1]), atol=1e-6)
    expected = -np.einsum("bji,bj->bi", r12, np.asarray(translation[:half]))
    np.testing.assert_allclose(translation[half:], expected, atol=1e-6)


def test_antisymmetric_motion_makes_the_orders_exact_inverses():
    from depth_motion_tf.model import antisymmetric_motion

    rng = np.random.default_rng(0)
    raw_rotation = tf.constant(rng.normal(0, 0.05, [4, 3]), tf.float32)
    raw_translation = tf.constant(rng.normal(0, 0.5, [4, 3]), tf.float32)
    rotation, translation = antisymmetric_motion(raw_rotation, raw_translation)
    _assert_exact_inverses(rotation.numpy(), translation.numpy())
    np.testing.assert_allclose(rotation[:2], (raw_rotation[:2] - raw_rotation[2:]) / 2, atol=1e-7)
    np.testing.assert_allclose(translation[:2], (raw_translation[:2] - raw_translation[2:]) / 2,
                               atol=1e-7)
    # An order-independent output cancels exactly, even with a large common rotation.
    common = antisymmetric_motion(tf.constant([[0.3, -0.4, 0.2]] * 2), tf.constant([[1.0, 2.0, 3.0]] * 2))
    np.testing.assert_array_equal(common[0], 0.0)
    np.testing.assert_array_equal(common[1], 0.0)
    # Swapping the input order negates the 1→2 motion.
    swapped = antisymmetric_motion(tf.roll(raw_rotation, 2, 0), tf.roll(raw_translation, 2, 0))
    np.testing.assert_allclose(swapped[1][:2], -translation[:2], atol=1e-7)


@pytest.mark.parametrize("mode", ["antisymmetric", "independent"])
def test_forward_and_inference_use_the_same_parametrisation(mode):
    keras.utils.set_random_seed(2)
    model = _model(rigid_motion=mode)
    _, extras = model.forward(_batch(), training=False, step=tf.constant(0, tf.int64))
    rotation, translation = extras["rotation"].numpy(), extras["background_translation"].numpy()
    if mode == "antisymmetric":
        _assert_exact_inverses(rotation, translation)
    else:  # the raw predictions, not inverses of each other
        with pytest.raises(AssertionError):
            _assert_exact_inverses(rotation, translation)
    batch = _batch()
    forward = model.predict_motion(batch["rgb"][:, 0], batch["rgb"][:, 1])
    backward = model.predict_motion(batch["rgb"][:, 1], batch["rgb"][:, 0])
    np.testing.assert_allclose(forward["rotation"], rotation[:2], atol=1e-6)
    np.testing.assert_allclose(forward["translation"], translation[:2], atol=1e-6)
    np.testing.assert_allclose(backward["translation"], translation[2:], atol=1e-6)


@pytest.mark.parametrize("normalized", [True, False])
def test_motion_depth_normalization_makes_the_translations_follow_the_pairs_depth_scale(normalized):
    keras.utils.set_random_seed(3)
    model = _model(motion_depth_normalization=normalized)
    rgb = _batch()["rgb"]
    images = tf.concat([rgb[:, 0], rgb[:, 1]], 0)  # [2B]: 1→2, then 2→1
    depth = tf.random.uniform([4, HEIGHT, WIDTH, 1], 1.0, 3.0, seed=0)
    factor = tf.constant([2.0, 0.5, 2.0, 0.5])[:, None, None, None]  # per pair, both directions
    plain = model._motion(model.motion_net, images, depth, training=False, step=None)
    scaled = model._motion(model.motion_net, images, depth * factor, training=False, step=None)
    for name, factor_shape in [("background_translation", [4, 1]), ("residual_translation", [4, 1, 1, 1])]:
        expected = plain[name] * tf.reshape(factor, factor_shape)
        if normalized:  # exactly equivariant: the warp of a rescaled pair is unchanged
            np.testing.assert_allclose(scaled[name], expected, rtol=1e-4, atol=1e-9)
        else:  # the paper's raw depth input: the translations do not follow the scale
            assert not np.allclose(scaled[name], expected, rtol=1e-2, atol=1e-9)
    if normalized:
        np.testing.assert_allclose(scaled["rotation"], plain["rotation"], atol=1e-6)


def test_pair_mean_depth_is_the_same_in_both_directions():
    from depth_motion_tf.model import pair_mean_depth

    depth = tf.reshape(tf.constant([1.0, 3.0, 5.0, 7.0]), [4, 1, 1, 1]) * tf.ones([4, 2, 3, 1])
    np.testing.assert_allclose(pair_mean_depth(depth)[:, 0, 0, 0], [3.0, 5.0, 3.0, 5.0])


def test_motion_depth_normalization_needs_the_cascade():
    with pytest.raises(ValueError, match="needs cascade"):
        DepthMotionModel(height=HEIGHT, width=WIDTH, cascade=False, motion_depth_normalization=True)


@pytest.mark.parametrize("mode, field_input, network", [
    ("free", "frames", "shared"), ("unexplained", "frames", "shared"),
    ("free", "frames", "separate"), ("unexplained", "rigid_warp", "separate"),
])
def test_forward_and_inference_warp_with_the_same_residual_field(mode, field_input, network):
    from depth_motion_tf import field_projection

    keras.utils.set_random_seed(4)
    model = _model(residual_field=mode, field_input=field_input, field_network=network,
                   field_burnin_steps=10, intrinsics_mode="learned")
    batch = _batch(with_mask=False)
    _, extras = model.forward(batch, training=False, step=tf.constant(10, tf.int64))
    inferred = model.predict_motion(batch["rgb"][:, 0], batch["rgb"][:, 1])["residual_translation"]
    np.testing.assert_allclose(inferred, extras["residual_translation"][:2], atol=1e-5)
    _, rays = field_projection.rigid_points(extras["depth"], extras["rotation"],
                                            extras["background_translation"], extras["intrinsics"])
    normals = field_projection.epipolar_normals(rays, extras["background_translation"])
    field = extras["residual_translation"].numpy()
    along_planes = field - field_projection.across_epipolar_planes(extras["residual_translation"], normals)
    ratio = np.linalg.norm(along_planes, axis=-1).max() / np.linalg.norm(field, axis=-1).max()
    if mode == "unexplained":
        assert ratio < 1e-4
    else:  # the paper's free 3D field has a part within the planes
        assert ratio > 0.1


def test_unexplained_field_is_auto_masked_after_its_projection():
    from depth_motion_tf.networks import auto_mask

    batch = _batch(with_mask=False)
    fields = []
    for masked in (False, True):
        keras.utils.set_random_seed(4)
        model = _model(residual_field="unexplained", auto_mask=masked, field_burnin_steps=10)
        assert not model.motion_net.auto_mask  # the raw field is not masked
        _, extras = model.forward(batch, training=False, step=tf.constant(10, tf.int64))
        fields.append(extras["residual_translation"].numpy())
    np.testing.assert_allclose(fields[1], auto_mask(tf.constant(fields[0])), atol=1e-6)
    assert 0.0 < np.mean(np.all(fields[1] == 0.0, axis=-1)) < 1.0


@pytest.mark.parametrize("field_input, channels", [("frames", 8), ("rigid_warp", 11)])
def test_separate_field_comes_from_the_field_net_and_passes_no_gradient_to_the_rigid_motion(
    field_input, channels
):
    keras.utils.set_random_seed(5)
    model = _model(field_input=field_input, field_network="separate", field_burnin_steps=10)
    assert not model.motion_net.field_variables()  # the motion net builds no field layers
    assert not model.field_net.translation_scale.trainable
    assert model.field_variables() == model.field_net.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        losses, extras = model.forward(_batch(with_mask=False), training=True,
                                       step=tf.constant(10, tf.int64))
        field_sum = tf.reduce_sum(extras["residual_translation"])
    # RGB, depth, RGB, depth; with rigid_warp the warped other frame as well.
    assert model.field_net.encoder_convs[0].kernel.shape[2] == channels
    # The field comes from the field net alone (with rigid_warp, the warped frame is only its input):
    # no gradient reaches the rigid motion through it.
    assert all(g is None for g in tape.gradient(field_sum, model.motion_net.trainable_variables))
    assert all(g is None for g in tape.gradient(extras["background_translation"],
                                                model.field_net.trainable_variables))
    field_gradients = tape.gradient(losses["total"], model.field_net.field_variables())
    assert all(g is not None and np.all(np.isfinite(g)) for g in field_gradients)
    assert any(np.any(g.numpy() != 0.0) for g in field_gradients)
    assert np.any(extras["residual_translation"].numpy() != 0.0)


def test_rigid_warp_skips_the_field_net_and_the_warp_during_the_burn_in(monkeypatch):
    from depth_motion_tf import geometry

    keras.utils.set_random_seed(5)
    model = _model(field_input="rigid_warp", field_network="separate",
                   field_burnin_steps=10)  # off below step 5
    warps = []
    rigid_warp = geometry.rigid_warp
    monkeypatch.setattr(geometry, "rigid_warp", lambda *args: warps.append(1) or rigid_warp(*args))
    _, extras = model.forward(_batch(with_mask=False), training=True, step=tf.constant(1, tf.int64))
    assert not warps and not np.any(extras["residual_translation"].numpy())
    _, extras = model.forward(_batch(with_mask=False), training=True, step=tf.constant(10, tf.int64))
    assert len(warps) == 1 and np.any(extras["residual_translation"].numpy())


def test_rigid_warp_update_leaves_the_dormant_field_net_untouched():
    keras.utils.set_random_seed(5)
    model = _model(field_input="rigid_warp", field_network="separate",
                   field_burnin_steps=10)  # off below step 5
    assert not bool(model.field_active(tf.constant(0, tf.int64)))
    assert bool(model.field_active(tf.constant(10, tf.int64)))
    before = [v.numpy().copy() for v in model.field_net.trainable_variables]
    model.train_step(_batch(with_mask=False))
    after = [v.numpy() for v in model.field_net.trainable_variables]
    assert all(np.array_equal(b, a) for b, a in zip(before, after))
    moments = [model.optimizer._momentums[model.optimizer._get_variable_index(v)]
               for v in model.field_net.trainable_variables]
    assert all(not np.any(m.numpy()) for m in moments)


def test_field_input_mode_is_checked():
    with pytest.raises(ValueError, match="field_input"):
        DepthMotionModel(height=HEIGHT, width=WIDTH, field_input="flow")
    with pytest.raises(ValueError, match="rigid_warp needs egomotion=learned"):
        DepthMotionModel(height=HEIGHT, width=WIDTH, field_input="rigid_warp",
                         field_network="separate", egomotion="given")
    with pytest.raises(ValueError, match="field_network"):
        DepthMotionModel(height=HEIGHT, width=WIDTH, field_network="own")
    with pytest.raises(ValueError, match="rigid_warp needs field_network=separate"):
        DepthMotionModel(height=HEIGHT, width=WIDTH, field_input="rigid_warp")


def test_residual_field_mode_is_checked():
    with pytest.raises(ValueError, match="residual_field"):
        DepthMotionModel(height=HEIGHT, width=WIDTH, residual_field="masked")


def test_predict_motion_applies_the_burn_in_weight_of_the_step():
    model = _model(field_burnin_steps=100)
    batch = _batch()
    early = model.predict_motion(batch["rgb"][:, 0], batch["rgb"][:, 1], step=tf.constant(10))
    late = model.predict_motion(batch["rgb"][:, 0], batch["rgb"][:, 1], step=tf.constant(100))
    assert np.all(early["residual_translation"].numpy() == 0.0)
    assert np.any(late["residual_translation"].numpy() != 0.0)


def _synthetic_pair(flip_seed=None):
    """A rendered pair with exact depth and poses as a model batch (optionally flipped by augment)."""
    from data_prep import synthetic
    from depth_motion_tf import data, geometry

    _, poses, intrinsics, frames = synthetic.render_video(np.random.default_rng(4), 3, 64, 192)
    example = {
        "rgb": tf.constant(np.stack([frames[0].rgb, frames[2].rgb]), tf.float32) / 255.0,
        "intrinsics": geometry.intrinsics_matrix(*intrinsics),
        "depth": tf.constant(np.stack([frames[0].depth, frames[2].depth])[..., None], tf.float32),
    }
    example["rotation"], example["translation"] = geometry.relative_motion(poses[0], poses[2])
    if flip_seed is not None:
        depth = example.pop("depth")
        example = data.augment(example, tf.constant([flip_seed, 0], tf.int64), 64, 192, crop=False)
        assert float(example["intrinsics_map"][0, 2]) < 0  # this seed flips
        example["depth"] = tf.reverse(depth, [2])
    return {k: v[None] for k, v in example.items()}


def _photometric_error(model, batch):
    from depth_motion_tf import geometry, losses

    rotation, translation = model._rigid_motion(batch, motion=None)
    depth = batch["depth"][:, 0]
    pixel_x, pixel_y, z, mask = geometry.warp_depth(
        depth, tf.broadcast_to(translation[:1, None, None], [1, 64, 192, 3]), rotation[:1],
        batch["intrinsics"],
    )
    result = losses.rgbd_consistency(
        (pixel_x, pixel_y, z, mask), batch["rgb"][:, 0], batch["depth"][:, 1], batch["rgb"][:, 1]
    )
    return float(result["rgb_error"])


def test_given_egomotion_warps_a_synthetic_pair_with_low_photometric_error():
    model = DepthMotionModel(height=64, width=192, egomotion="given")
    for batch in (_synthetic_pair(), _synthetic_pair(flip_seed=_flipping_seed())):
        error = _photometric_error(model, batch)
        wrong = [
            _photometric_error(model, dict(batch, rotation=scale * batch["rotation"],
                                           translation=scale * batch["translation"]))
            for scale in (0.0, -1.0, 2.5)  # no motion, reversed, too much
        ]
        assert error < 0.015 and error < 0.5 * min(wrong), (error, wrong)


def _flipping_seed():
    from depth_motion_tf import data

    for seed in range(20):
        example = {"rgb": tf.zeros([2, 4, 8, 3]), "intrinsics": tf.eye(3)}
        mapping = data.augment(example, tf.constant([seed, 0], tf.int64), 4, 8, crop=False)
        if float(mapping["intrinsics_map"][0, 2]) < 0:
            return seed
    raise AssertionError("no flipping seed below 20")


def _crop_flip_seed(example, height, width):
    """A seed whose augmentation of ``example`` both crops (offset > 0) and flips."""
    from depth_motion_tf import data

    for seed in range(50):
        out = data.augment(example, tf.constant([seed, 1], tf.int64), height, width)
        mapping = out["intrinsics_map"].numpy()
        if mapping[0, 2] < 0 and mapping[0, 0] > 1.05:  # flipped, and zoomed into a crop
            return seed, out
    raise AssertionError("no crop-and-flip seed below 50")


def test_learned_per_video_intrinsics_follow_a_crop_and_flip():
    """The warp of a cropped, flipped pair with the mapped learned K is the original warp, cropped and flipped.

    Frames stored at 64x128 train at 32x64. The learned K belongs to the full frame
    at 32x64; the model maps it through the example's augmentation. Depth is a
    function of the full-frame position (a scene property), the motion is mirrored
    by the flip, and the expected landing point is computed in numpy in the full
    frame and then moved into the crop by the pixel map.
    """
    from depth_motion_tf import geometry

    height, width = 32, 64
    example = {
        "rgb": tf.zeros([2, 64, 128, 3]), "intrinsics": tf.eye(3),
        "rotation": tf.constant([0.01, 0.03, -0.02]), "translation": tf.constant([0.2, -0.1, 0.5]),
    }
    _, augmented = _crop_flip_seed(example, height, width)
    model = DepthMotionModel(height=height, width=width, intrinsics_mode="learned_per_video",
                             num_videos=2)
    model.build_for_training()
    model.video_intrinsics.assign([[0.9, 1.1, 0.45, 0.55], [1.0, 1.0, 0.5, 0.5]])
    batch = {"intrinsics_map": augmented["intrinsics_map"][None], "video_index": tf.constant([0])}
    k_crop = model._intrinsics(batch, predicted=None)[0]

    scale, offset = augmented["intrinsics_map"].numpy()
    depth_of = lambda u, v: 5.0 + 0.05 * u + 0.1 * v  # noqa: E731 - full-frame position → depth
    v_crop, u_crop = np.mgrid[0:height, 0:width].astype(np.float64)
    u_full, v_full = (u_crop - offset[2]) / scale[2], (v_crop - offset[3]) / scale[3]
    depth = depth_of(u_full, v_full)
    pixel_x, pixel_y, _, mask = geometry.warp_depth(
        tf.constant(depth[None], tf.float32), tf.broadcast_to(augmented["translation"], [1, height, width, 3]),
        augmented["rotation"][None], k_crop[None],
    )
    # Expected, in numpy: back-project in the full frame with the learned K, move, project, map.
    fx, fy, cx, cy = 0.9 * 48, 1.1 * 48, 0.45 * 64, 0.55 * 32  # (H+W)/2 = 48
    points = np.stack([(u_full - cx) / fx * depth, (v_full - cy) / fy * depth, depth], -1)
    r = geometry.rotation_matrix(example["rotation"]).numpy()
    moved = points @ r.T + example["translation"].numpy()
    x_full = fx * moved[..., 0] / moved[..., 2] + cx
    y_full = fy * moved[..., 1] / moved[..., 2] + cy
    x_crop, y_crop = scale[2] * x_full + offset[2], scale[3] * y_full + offset[3]
    valid = mask[0].numpy()
    assert valid.mean() > 0.5
    np.testing.assert_allclose(pixel_x[0].numpy()[valid], x_crop[valid], atol=2e-3)
    np.testing.assert_allclose(pixel_y[0].numpy()[valid], y_crop[valid], atol=2e-3)
