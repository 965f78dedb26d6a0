"""The benchmark CLI: a tiny end-to-end run, and the summary ratios."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from depth_motion_tf import benchmark, config


@pytest.mark.slow  # six fresh TensorFlow processes: about 3 minutes on 2 CPU cores
def test_tiny_run_prints_every_table_and_writes_every_key(tmp_path):
    output = tmp_path / "bench.json"
    command = [
        sys.executable, "-m", "depth_motion_tf.benchmark", "--height=32", "--width=64",
        "--batch_sizes=2", "--warmup_steps=1", "--timed_steps=2", "--jit_compile=off",
        "--mixed_precision=off", "--fields=shared,separate,rigid_warp", "--input_threads=all", "--input_cache=off", "--input_batches=2",
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
        assert len(results[section]) == (3 if section == "training" else 1), results[section]
        assert set(keys) <= set(results[section][0]), results[section]
        assert results[section][0]["examples_per_s"] > 0
    shared, separate, rigid_warp = results["training"]
    assert [r["field"] for r in results["training"]] == ["shared", "separate", "rigid_warp"]
    assert shared["train_step_flops"] == 3 * shared["forward_flops"] > 0
    # The field net on top; seeing the warp as well, its first convolution has more inputs.
    assert rigid_warp["forward_flops"] > separate["forward_flops"] > shared["forward_flops"]
    assert set(results["summary"]) == {"input_over_training", "xla_speedup", "mixed_precision_speedup",
                                       "inference_mixed_precision_speedup"}
    assert results["inference"][0]["max_relative_difference"] == 0.0  # float32 against itself
    assert results["machine"]["cpu"] and "CPU cores (" in process.stdout


def test_summary_ratios_compare_the_matching_configurations():
    cores = os.cpu_count()
    training = [
        {"batch_size": 4, "jit_compile": False, "mixed_precision": "off", "examples_per_s": 2.0},
        {"batch_size": 4, "jit_compile": True, "mixed_precision": "off", "examples_per_s": 3.0},
        {"batch_size": 4, "jit_compile": False, "mixed_precision": "on", "examples_per_s": 2.5},
        {"batch_size": 2, "jit_compile": True, "mixed_precision": "off", "examples_per_s": 9.0},
        {"batch_size": 4, "jit_compile": True, "mixed_precision": "on", "error": "boom"},
    ]
    for row in training:
        row["field"] = "shared"
    # The field net's step is slower; listed first, it must not enter the paper's ratios.
    training.insert(0, {"batch_size": 4, "jit_compile": False, "mixed_precision": "off",
                        "field": "rigid_warp", "examples_per_s": 1.0})
    inputs = [
        {"threads": 1, "cache": False, "examples_per_s": 10.0},
        {"threads": cores, "cache": False, "examples_per_s": 90.0},
        {"threads": cores, "cache": True, "examples_per_s": 180.0},
    ]
    inference = [
        {"batch_size": 1, "jit_compile": False, "mixed_precision": "off", "examples_per_s": 20.0},
        {"batch_size": 1, "jit_compile": False, "mixed_precision": "on", "examples_per_s": 25.0},
        {"batch_size": 8, "jit_compile": False, "mixed_precision": "on", "examples_per_s": 99.0},
    ]
    summary = benchmark.summarize({"training": training, "input_pipeline": inputs, "inference": inference})
    assert summary["inference_mixed_precision_speedup"] == 25.0 / 20.0
    assert summary["xla_speedup"] == 3.0 / 2.0
    assert summary["mixed_precision_speedup"] == 2.5 / 2.0
    assert summary["input_over_training"] == 90.0 / 9.0


def test_relative_difference_is_taken_against_the_float32_graph_export(tmp_path):
    reference = np.array([[1.0, 2.0], [4.0, 8.0]])
    np.save(tmp_path / "float32_graph.npy", reference)
    np.save(tmp_path / "mixed_bfloat16_graph.npy", reference * [[1.0, 1.01], [0.98, 1.0]])
    rows = [{"policy": "float32", "jit_compile": False}, {"policy": "mixed_bfloat16", "jit_compile": False},
            {"policy": "mixed_bfloat16", "jit_compile": True, "error": "failed"}]
    benchmark.add_relative_differences(rows, str(tmp_path))
    assert rows[0]["max_relative_difference"] == 0.0
    assert rows[1]["max_relative_difference"] == pytest.approx(0.02)
    assert "max_relative_difference" not in rows[2]


def test_machine_description_names_the_cpu_and_its_bf16_features():
    machine = benchmark.machine_description()
    assert machine["cpu"] and machine["cpu_count"] == os.cpu_count()
    assert set(machine["cpu_features"]) <= set(benchmark.FLOAT_CPU_FEATURES + config.BFLOAT16_CPU_FLAGS)
    with open("/proc/cpuinfo") as f:
        flags = set(next(line for line in f if line.startswith("flags")).split(":")[1].split())
    assert ("avx512_bf16" in machine["cpu_features"]) == ("avx512_bf16" in flags)
