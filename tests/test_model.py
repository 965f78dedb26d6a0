"""DepthMotionModel: the training step of METHOD.md §1, the guard, intrinsics and mask modes."""
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

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
    from depth_motion_tf.model import DepthMotionModel
    from tests.test_model import _batch, HEIGHT, WIDTH

    def make(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(3)
            model = DepthMotionModel(height=HEIGHT, width=WIDTH)
            model.build_for_training()
            model.compile(optimizer=keras.optimizers.SGD(0.1, global_clipnorm=10.0), jit_compile=False)
            model.optimizer.build(model.trainable_variables)
        return model

    batches = [_batch(4, seed=s) for s in range(3)]
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
    print("RESULT", worst, int(two.optimizer.iterations.numpy()), moved)
    """
)


def test_two_replicas_match_one_device_on_the_same_global_batch():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SCRIPT],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    line = [l for l in result.stdout.splitlines() if l.startswith("RESULT")]
    assert line, result.stdout[-3000:] + result.stderr[-3000:]
    worst, steps, moved = line[0].split()[1:]
    assert int(steps) == 3 and float(moved) > 1e-5  # training really happened
    assert float(worst) < 1e-2
