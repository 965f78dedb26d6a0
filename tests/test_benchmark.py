"""The benchmark CLI: a tiny end-to-end run, and the summary ratios."""
import json
import os
import subprocess
import sys

import pytest

from depth_motion_tf import benchmark


@pytest.mark.slow  # four fresh TensorFlow processes: about 2 minutes on 2 CPU cores
def test_tiny_run_prints_every_table_and_writes_every_key(tmp_path):
    output = tmp_path / "bench.json"
    command = [
        sys.executable, "-m", "depth_motion_tf.benchmark", "--height=32", "--width=64",
        "--batch_sizes=2", "--warmup_steps=1", "--timed_steps=2", "--jit_compile=off",
        "--mixed_precision=off", "--input_threads=all", "--input_cache=off", "--input_batches=2",
        "--inference_batch_sizes=1", "--inference_repeats=2", "--num_examples=4",
        f"--output={output}",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert process.returncode == 0, process.stderr[-2000:]
    for title in ("Training (full train_step):", "Input pipeline", "Inference", "Summary:"):
        assert title in process.stdout
    results = json.loads(output.read_text())
    for section, keys in (
        ("training", benchmark.TRAIN_KEYS),
        ("input_pipeline", benchmark.INPUT_KEYS),
        ("inference", benchmark.INFERENCE_KEYS),
    ):
        assert len(results[section]) == 1, results[section]
        assert set(keys) <= set(results[section][0]), results[section]
        assert results[section][0]["examples_per_s"] > 0
    train = results["training"][0]
    assert train["train_step_flops"] == 3 * train["forward_flops"] > 0
    assert set(results["summary"]) == {"input_over_training", "xla_speedup", "mixed_precision_speedup"}


def test_summary_ratios_compare_the_matching_configurations():
    cores = os.cpu_count()
    training = [
        {"batch_size": 4, "jit_compile": False, "mixed_precision": "off", "examples_per_s": 2.0},
        {"batch_size": 4, "jit_compile": True, "mixed_precision": "off", "examples_per_s": 3.0},
        {"batch_size": 4, "jit_compile": False, "mixed_precision": "on", "examples_per_s": 2.5},
        {"batch_size": 2, "jit_compile": True, "mixed_precision": "off", "examples_per_s": 9.0},
        {"batch_size": 4, "jit_compile": True, "mixed_precision": "on", "error": "boom"},
    ]
    inputs = [
        {"threads": 1, "cache": False, "examples_per_s": 10.0},
        {"threads": cores, "cache": False, "examples_per_s": 90.0},
        {"threads": cores, "cache": True, "examples_per_s": 180.0},
    ]
    summary = benchmark.summarize({"training": training, "input_pipeline": inputs})
    assert summary["xla_speedup"] == 3.0 / 2.0
    assert summary["mixed_precision_speedup"] == 2.5 / 2.0
    assert summary["input_over_training"] == 90.0 / 9.0
