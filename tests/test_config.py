"""TrainConfig and the model factory: the reference's optimizer, saved configs."""
import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from depth_motion_tf import config as config_lib


def test_optimizer_is_adam_with_the_reference_epsilon_and_no_keras_clipping():
    optimizer = config_lib.make_optimizer(config_lib.TrainConfig(data="", model_dir=""))
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert optimizer.epsilon == pytest.approx(1e-8)  # TF1's AdamOptimizer (Keras: 1e-7)
    assert (optimizer.beta_1, optimizer.beta_2) == (0.9, 0.999)
    # Keras would clip each replica's gradient before the sum; the model clips the sum.
    assert optimizer.global_clipnorm is None and optimizer.clipnorm is None


def test_saved_config_round_trips(tmp_path):
    config = config_lib.TrainConfig(data="d", model_dir=str(tmp_path), rigid_motion="independent",
                                    num_scales=3, egomotion="given")
    config_lib.save_config(config, str(tmp_path))
    assert config_lib.load_config(str(tmp_path)) == config


def test_missing_config_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        config_lib.load_config(str(tmp_path))


def test_every_model_option_reaches_the_model():
    names = {f.name for f in dataclasses.fields(config_lib.TrainConfig)}
    assert {"rigid_motion", "egomotion", "num_scales", "scale_normalization",
            "target_depth_stop_gradient", "clip_norm"} <= names


def test_cosine_decay_goes_from_the_rate_to_a_tenth_at_num_steps():
    config = config_lib.TrainConfig(data="", model_dir="", learning_rate=5e-4, num_steps=900,
                                    learning_rate_decay="cosine")
    schedule = config_lib.learning_rate_schedule(config)
    assert float(schedule(0)) == pytest.approx(5e-4)
    assert float(schedule(450)) == pytest.approx(5e-4 * (0.1 + 0.9 * 0.5), rel=1e-4)
    assert float(schedule(900)) == pytest.approx(5e-5)
    constant = config_lib.learning_rate_schedule(dataclasses.replace(config, learning_rate_decay="none"))
    assert constant == 5e-4


def test_warmup_rises_linearly_from_zero_then_decays_over_the_remaining_steps():
    config = config_lib.TrainConfig(data="", model_dir="", learning_rate=1e-3, num_steps=900,
                                    learning_rate_decay="cosine", learning_rate_warmup_steps=100)
    schedule = config_lib.learning_rate_schedule(config)
    assert float(schedule(0)) == 0.0
    assert float(schedule(25)) == pytest.approx(2.5e-4)
    assert float(schedule(100)) == pytest.approx(1e-3)
    assert float(schedule(500)) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5), rel=1e-4)
    assert float(schedule(900)) == pytest.approx(1e-4)
    constant = config_lib.learning_rate_schedule(dataclasses.replace(config, learning_rate_decay="none"))
    assert float(constant(50)) == pytest.approx(5e-4)
    assert float(constant(100)) == float(constant(900)) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="learning_rate_warmup_steps must be in"):
        config_lib.learning_rate_schedule(dataclasses.replace(config, learning_rate_warmup_steps=900))


def test_fused_adam_makes_the_same_updates_as_keras_adam(tmp_path):
    rng = np.random.default_rng(0)
    start = rng.normal(size=(5, 7)).astype("float32")
    plain, fused = keras.Variable(start), keras.Variable(start)
    reference = keras.optimizers.Adam(1e-2, epsilon=1e-8)
    optimizer = config_lib.FusedAdam(1e-2, epsilon=1e-8)
    for _ in range(5):
        gradient = tf.constant(rng.normal(size=(5, 7)).astype("float32"))
        reference.apply([gradient], [plain])
        optimizer.apply([gradient], [fused])
    assert np.abs(fused.numpy() - start).max() > 0.04  # five steps of about lr each
    np.testing.assert_allclose(fused.numpy(), plain.numpy(), atol=1e-6)
    # The same slots, so a checkpoint of Keras' Adam restores into it (all of it).
    path = tf.train.Checkpoint(optimizer=reference).save(str(tmp_path / "adam"))
    restored = config_lib.FusedAdam(1e-2, epsilon=1e-8)
    restored.build([keras.Variable(start)])
    tf.train.Checkpoint(optimizer=restored).restore(path).assert_consumed()
    np.testing.assert_allclose(restored.variables[-1].numpy(), reference.variables[-1].numpy())


def test_held_variables_stay_put_then_move_with_the_moments_they_gathered():
    rng = np.random.default_rng(0)
    start = rng.normal(size=(3, 4)).astype("float32")
    held, free, reference = (keras.Variable(start) for _ in range(3))
    optimizer, plain = config_lib.FusedAdam(1e-2), config_lib.FusedAdam(1e-2)
    optimizer.build([held, free])
    plain.build([reference])
    optimizer.hold([held], steps=3)
    gradients = [tf.constant(rng.normal(size=(3, 4)).astype("float32")) for _ in range(5)]
    for step, gradient in enumerate(gradients):
        optimizer.apply([gradient, gradient], [held, free])
        plain.apply([gradient], [reference])
        if step < 3:
            np.testing.assert_array_equal(held.numpy(), start)
    np.testing.assert_allclose(free.numpy(), reference.numpy(), atol=1e-6)
    # After the hold, each update is Adam's with the moments of all five gradients.
    moved = held.numpy() - start
    expected = sum(_plain_adam_deltas(gradients)[3:])
    np.testing.assert_allclose(moved, expected, atol=1e-6)


def _plain_adam_deltas(gradients, lr=1e-2, b1=0.9, b2=0.999, eps=1e-7):
    """Each step's change of the parameters under textbook Adam (it does not depend on them)."""
    m, v, deltas = 0.0, 0.0, []
    for t, g in enumerate(gradients, 1):
        g = g.numpy().astype(np.float64)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        deltas.append(-lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps))
    return deltas


def test_cpu_info_reads_the_model_name_and_feature_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert config_lib.cpu_info(str(cpuinfo)) == ("Some Xeon", {"fpu", "avx2", "avx512f", "avx512_bf16"})


@pytest.mark.parametrize("native, expected", [(True, "mixed_bfloat16"), (False, "float32")])
def test_auto_precision_is_bfloat16_only_on_a_cpu_with_native_bfloat16(monkeypatch, native, expected):
    monkeypatch.setattr(config_lib, "native_bfloat16_cpu", lambda: native)
    assert config_lib.precision_policy("auto") == expected  # this machine has no GPU
    assert config_lib.precision_policy("off") == "float32"
    assert config_lib.precision_policy("on") == "mixed_bfloat16"


def test_precision_scope_restores_the_previous_policy():
    with config_lib.precision_scope("mixed_bfloat16") as policy:
        assert policy == keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        layer = keras.layers.Dense(2)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert layer.compute_dtype == "bfloat16"  # layers keep the policy they were made under
