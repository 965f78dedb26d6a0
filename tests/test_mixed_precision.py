"""Mixed precision and XLA give the float32, non-XLA numbers (within tolerance)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from depth_motion_tf import config as config_lib

HEIGHT, WIDTH, BATCH = 32, 64, 1
PAST_SCHEDULES = 20000  # motion field fully on (default burn-in 20000 steps)


@pytest.fixture(autouse=True)
def _restore_float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def _batch():
    """One pair: a smooth random texture and the same texture shifted 2 px right."""
    rng = np.random.default_rng(0)
    coarse = rng.uniform(size=(HEIGHT // 4, WIDTH // 4 + 1, 3))
    texture = np.kron(coarse, np.ones((4, 4, 1)))
    pair = np.stack([texture[:, 2 : WIDTH + 2], texture[:, :WIDTH]])[None].astype(np.float32)
    k = np.array([[WIDTH / 2, 0, WIDTH / 2], [0, WIDTH / 2, HEIGHT / 2], [0, 0, 1]], np.float32)
    return {
        "rgb": tf.constant(pair),
        "intrinsics": tf.constant(k[None]),
        "video_index": tf.zeros([BATCH], tf.int32),
    }


def _model(policy, **config):
    """A built model under ``policy``; the layer-norm noise stays ~0 (ramp-up of 1e9 steps)."""
    keras.mixed_precision.set_global_policy(policy)
    config = config_lib.TrainConfig(
        data="", model_dir="", height=HEIGHT, width=WIDTH, batch_size=BATCH,
        noise_rampup_steps=10**9, seed=0, **config,
    )
    return config_lib.build_model(config, tf.distribute.get_strategy())


def _copy_weights(source, target):
    assert len(source.weights) == len(target.weights)
    for s, t in zip(source.weights, target.weights):
        assert s.shape == t.shape, (s.path, t.path)
        t.assign(s)


def test_bfloat16_losses_match_float32():
    batch = _batch()
    reference = _model("float32")
    expected, _ = reference.forward(batch, training=False, step=None)
    mixed = _model("mixed_bfloat16")
    _copy_weights(reference, mixed)
    assert mixed.depth_net.encoder.conv1.compute_dtype == "bfloat16"
    losses, _ = mixed.forward(batch, training=False, step=None)
    for name, value in expected.items():
        assert losses[name].dtype == tf.float32
        np.testing.assert_allclose(losses[name].numpy(), value.numpy(), rtol=0.05, atol=1e-5, err_msg=name)


def test_bfloat16_train_step_gives_finite_updates():
    model = _model("mixed_bfloat16")
    model.optimizer.iterations.assign(PAST_SCHEDULES)
    before = [v.numpy() for v in model.trainable_variables]
    model.train_step(_batch())
    after = [v.numpy() for v in model.trainable_variables]
    assert all(v.dtype == tf.float32 for v in model.trainable_variables)
    assert all(np.isfinite(a).all() for a in after)
    changed = sum(not np.array_equal(a, b) for a, b in zip(after, before))
    assert changed > 0.9 * len(before)
    assert int(model.bad_steps.numpy()) == 0


@pytest.mark.slow  # the XLA compile of the whole step takes ~1.5 min on 2 CPU cores
def test_xla_losses_and_gradients_match_graph_mode():
    model = _model("float32", jit_compile=True)
    batch, step = _batch(), tf.constant(PAST_SCHEDULES, tf.int64)
    xla_losses, _, xla_gradients = model._losses_and_gradients(batch, step)
    losses, _, gradients = tf.function(model._losses_and_gradients_eager)(batch, step)
    for name, value in losses.items():
        np.testing.assert_allclose(xla_losses[name].numpy(), value.numpy(), rtol=1e-4, err_msg=name)
    for variable, g, xla_g in zip(model.trainable_variables, gradients, xla_gradients):
        if g is None:
            continue
        difference = np.linalg.norm(xla_g.numpy() - g.numpy())
        assert difference <= 1e-2 * np.linalg.norm(g.numpy()) + 1e-9, variable.path
