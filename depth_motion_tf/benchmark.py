"""Speed of training, the input pipeline and inference; FLOPs and memory.

    python -m depth_motion_tf.benchmark --batch_sizes=4 --output=benchmark.json

Writes a temporary TFRecord dataset of random triplets, then runs every
configuration in a fresh Python process (the Keras dtype policy and XLA are
process-wide), and prints one table and writes the results as JSON:

- ``training``: examples/s of the full ``train_step`` (both networks, both
  directions, all losses, the Adam update) for each batch size x
  ``--jit_compile`` x ``--mixed_precision`` x ``--fields``, the median of ``--timed_steps``
  steps after ``--warmup_steps``; peak host RSS and GPU memory; FLOPs of one
  step (TF profiler on the traced graph) and the achieved FLOP/s next to a
  measured matmul rate in the same dtype (the attainable peak);
- ``input_pipeline``: examples/s of ``data.make_dataset`` alone (decode, pair,
  augment, batch) with 1 and all cores, cache off and on;
- ``inference``: latency and throughput of the exported SavedModel's ``depth``
  signature at each ``--inference_batch_sizes``, exported with and without
  XLA, next to the network's FLOPs and the latency floor they set at the
  measured matmul rate.

The training steps run past the schedules' ramps (layer-norm noise and motion
field fully on), so every part of the method is timed.
"""
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags
import numpy as np

from depth_motion_tf import cli

TRAIN_KEYS = (
    "batch_size", "jit_compile", "mixed_precision", "field", "policy", "replicas", "xla_active",
    "step_ms", "examples_per_s", "host_peak_rss_mb", "gpu_peak_mb", "forward_flops",
    "train_step_flops", "achieved_flops_per_s", "matmul_flops_per_s", "fraction_of_matmul",
)
# ``--fields``: where the residual field comes from (the trainer's --field_network and --field_input).
FIELD_SETTINGS = {
    "shared": {"field_network": "shared", "field_input": "frames"},  # the paper's
    "separate": {"field_network": "separate", "field_input": "frames"},
    "rigid_warp": {"field_network": "separate", "field_input": "rigid_warp"},
}
INPUT_KEYS = ("threads", "cache", "batch_size", "examples_per_s", "host_peak_rss_mb")
INFERENCE_KEYS = ("mixed_precision", "policy", "jit_compile", "batch_size", "latency_ms",
                  "examples_per_s", "flops_per_example", "floor_ms", "max_relative_difference")
SECTIONS = ("train", "input", "inference")


# ------------------------------------------------------------------ data
def write_random_triplets(data_dir, num_examples, height, width, seed=0):
    """Writes a TFDS dataset of random smooth-texture triplets (split ``train``).

    Each triplet is one random texture shifted 4 px per frame to the right (so
    no pair is a near-duplicate), stored as PNG like ``data_prep`` does.

    Args:
        data_dir: output folder.
        num_examples: number of triplets.
        height, width: stored frame size in pixels.
    Returns:
        The dataset directory (pass it to ``data.make_dataset``).
    """
    import tensorflow_datasets as tfds

    from depth_motion_tf import features as F

    rng = np.random.default_rng(seed)
    shift = 4

    def example(index):
        coarse = rng.uniform(0, 255, (height // 8 + 1, (width + 2 * shift) // 8 + 1, 3))
        texture = np.kron(coarse, np.ones((8, 8, 1)))[:height].astype(np.uint8)
        frames = np.stack([texture[:, k * shift : k * shift + width] for k in range(3)])
        return {
            F.RGB: frames,
            F.INTRINSICS: np.array([width / 2, width / 2, (width - 1) / 2, (height - 1) / 2], np.float32),
            F.INTRINSICS_KNOWN: True,
            F.VIDEO_ID: f"video{index % 4}",
            F.FRAME_IDS: [f"video{index % 4}/{index + k}" for k in range(3)],
        }

    builder = tfds.dataset_builders.store_as_tfds_dataset(
        name="benchmark_triplets",
        version="1.0.0",
        features=F.triplet_features(),
        split_datasets={"train": [(i, example(i)) for i in range(num_examples)]},
        data_dir=str(data_dir),
        disable_shuffling=True,
    )
    return str(builder.data_dir)


# ------------------------------------------------------------------ measurements
def host_peak_rss_mb():
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def gpu_peak_mb():
    """Peak memory TF allocated on GPU:0 in MiB, or None without a GPU."""
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return None
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20


def median_seconds(run, warmup, repeats):
    """Median wall time of ``run()`` (which must block until done) after ``warmup`` calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def graph_flops(concrete_function):
    """Floating-point operations of one call of a traced function (TF profiler count)."""
    import tensorflow as tf

    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(tf.compat.v1.profiler.profile(concrete_function.graph, options=options).total_float_ops)


def matmul_flops_per_s(dtype, size=None):
    """Measured FLOP/s of a ``size``² matmul in ``dtype``: the attainable compute peak.

    ``size`` defaults to 4096 on a GPU and 1024 on CPUs.
    """
    import tensorflow as tf

    size = size or (4096 if tf.config.list_physical_devices("GPU") else 1024)
    a = tf.random.uniform([size, size], dtype=tf.float32)
    a = tf.cast(a, dtype)
    product = tf.function(lambda x: tf.reduce_sum(tf.cast(tf.matmul(x, x)[:1, :1], tf.float32)))
    seconds = median_seconds(lambda: product(a).numpy(), warmup=1, repeats=5)
    return 2.0 * size**3 / seconds


def benchmark_training(data_dir, height, width, batch_size, jit_compile, mixed_precision,
                       warmup_steps, timed_steps, field="shared"):
    """Times the full ``train_step`` of one configuration (run it in a fresh process).

    One real batch from ``data.make_dataset`` is repeated (the input pipeline is
    measured on its own), distributed by the trainer's strategy and fed to the
    Keras train function that ``fit`` uses; each timed step waits for its loss.
    The step is past the field's burn-in, so the field (and, with ``field``
    ``"separate"`` or ``"rigid_warp"`` of ``FIELD_SETTINGS``, the field net) is computed.

    Returns:
        dict with the keys of ``TRAIN_KEYS``.
    """
    import tensorflow as tf

    from depth_motion_tf import config as config_lib
    from depth_motion_tf import data, train

    policy = config_lib.set_precision_policy(mixed_precision)
    strategy = train.make_strategy()
    config = config_lib.TrainConfig(
        data=data_dir, model_dir=tempfile.mkdtemp(), height=height, width=width,
        batch_size=batch_size, jit_compile=jit_compile, seed=0, **FIELD_SETTINGS[field],
    )
    model = config_lib.build_model(config, strategy)
    batch = next(iter(data.make_dataset(data_dir, "train", batch_size, height, width, seed=0)))
    batch = {k: v for k, v in batch.items() if k in ("rgb", "intrinsics", "video_index")}
    batches = iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch).repeat()))
    model.optimizer.iterations.assign(max(config.noise_rampup_steps, config.field_burnin_steps))
    model.make_train_function()

    def step():
        logs = model.train_function(batches)
        logs = logs.get_value() if hasattr(logs, "get_value") else logs
        logs["total"].numpy()

    seconds = median_seconds(step, warmup_steps, timed_steps)
    forward = tf.function(lambda b: model.forward(b, training=True, step=None)[0]["total"])
    forward_flops = graph_flops(forward.get_concrete_function(batch))
    train_step_flops = 3 * forward_flops  # backward ≈ 2x forward
    compute_dtype = tf.dtypes.as_dtype(keras_compute_dtype())
    matmul_rate = matmul_flops_per_s(compute_dtype)
    achieved = train_step_flops / seconds
    return {
        "batch_size": batch_size,
        "jit_compile": jit_compile,
        "mixed_precision": mixed_precision,
        "field": field,
        "policy": policy,
        "replicas": strategy.num_replicas_in_sync,
        "xla_active": bool(getattr(model._losses_and_gradients, "_jit_compile", False)),
        "step_ms": 1000.0 * seconds,
        "examples_per_s": batch_size / seconds,
        "host_peak_rss_mb": host_peak_rss_mb(),
        "gpu_peak_mb": gpu_peak_mb(),
        "forward_flops": forward_flops,
        "train_step_flops": train_step_flops,
        "achieved_flops_per_s": achieved,
        "matmul_flops_per_s": matmul_rate,
        "fraction_of_matmul": achieved / matmul_rate,
    }


def keras_compute_dtype():
    """The compute dtype of Keras' global policy (``float32``, ``bfloat16``, ``float16``)."""
    import keras

    return keras.mixed_precision.global_policy().compute_dtype


def benchmark_input(data_dir, height, width, batch_size, threads, cache, warmup_batches, timed_batches):
    """Examples/s of ``data.make_dataset`` alone with ``threads`` cores (0 = all).

    Returns:
        dict with the keys of ``INPUT_KEYS``.
    """
    import tensorflow as tf

    from depth_motion_tf import data

    dataset = data.make_dataset(data_dir, "train", batch_size, height, width, seed=0, cache=cache)
    if threads:
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        options.threading.max_intra_op_parallelism = 1
        dataset = dataset.with_options(options)
    batches = iter(dataset)
    for _ in range(warmup_batches):
        next(batches)
    start = time.perf_counter()
    for _ in range(timed_batches):
        next(batches)["rgb"].numpy()
    seconds = time.perf_counter() - start
    return {
        "threads": threads or os.cpu_count(),
        "cache": cache,
        "batch_size": batch_size,
        "examples_per_s": timed_batches * batch_size / seconds,
        "host_peak_rss_mb": host_peak_rss_mb(),
    }


def benchmark_inference(height, width, batch_sizes, jit_compile, mixed_precision, warmup, repeats,
                        outputs_dir):
    """Exports a fresh model in one precision, loads the SavedModel and times its ``depth`` signature.

    Inputs are uint8 frames at the model's size; one export per ``jit_compile``
    setting (see ``export.export_saved_model``). The weights are seeded, so
    every precision exports the same network. ``floor_ms`` is the network's
    FLOPs over the matmul rate measured in the compute dtype: no kernel of that
    dtype can beat it here. The batch-1 depth of each export is saved in
    ``outputs_dir`` for :func:`add_relative_differences`.
    Returns:
        list of dicts with the keys of ``INFERENCE_KEYS`` (but ``max_relative_difference``).
    """
    import tensorflow as tf

    from depth_motion_tf import config as config_lib
    from depth_motion_tf import export

    policy = config_lib.set_precision_policy(mixed_precision)
    config = config_lib.TrainConfig(data="", model_dir="", height=height, width=width, seed=0)
    model = config_lib.build_model(config, tf.distribute.get_strategy())
    network = tf.function(lambda images: model(images))
    flops = graph_flops(network.get_concrete_function(tf.zeros([1, height, width, 3])))
    matmul_rate = matmul_flops_per_s(tf.dtypes.as_dtype(keras_compute_dtype()))
    rng = np.random.default_rng(0)
    results = []
    for jit in jit_compile:
        folder = os.path.join(tempfile.mkdtemp(), "saved_model")
        depth = tf.saved_model.load(export.export_saved_model(model, folder, jit)).signatures["depth"]
        for batch_size in batch_sizes:
            image = tf.constant(rng.integers(0, 256, (batch_size, height, width, 3), dtype=np.uint8))
            seconds = median_seconds(lambda: depth(image=image)["depth"].numpy(), warmup, repeats)
            results.append({
                "mixed_precision": mixed_precision, "policy": policy, "jit_compile": jit,
                "batch_size": batch_size, "latency_ms": 1000.0 * seconds,
                "examples_per_s": batch_size / seconds, "flops_per_example": flops,
                "floor_ms": 1000.0 * batch_size * flops / matmul_rate,
            })
        image = np.random.default_rng(1).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
        np.save(_depth_sample_path(outputs_dir, policy, jit), depth(image=tf.constant(image))["depth"].numpy())
    return results


def _depth_sample_path(outputs_dir, policy, jit_compile):
    return os.path.join(outputs_dir, f"{policy}_{'xla' if jit_compile else 'graph'}.npy")


def add_relative_differences(rows, outputs_dir):
    """Sets each row's ``max_relative_difference``: max |d / d_float32 − 1| over a test image's pixels.

    The reference is the float32 export without XLA; rows without it get None.
    """
    reference = _depth_sample_path(outputs_dir, "float32", False)
    for row in rows:
        if "error" in row or not os.path.exists(reference):
            continue
        depth = np.load(_depth_sample_path(outputs_dir, row["policy"], row["jit_compile"]))
        row["max_relative_difference"] = float(np.max(np.abs(depth / np.load(reference) - 1.0)))


WORKERS = {
    "train": benchmark_training,
    "input": benchmark_input,
    "inference": benchmark_inference,
}


# ------------------------------------------------------------------ orchestration
def run_in_subprocess(worker, kwargs):
    """Runs ``WORKERS[worker](**kwargs)`` in a fresh Python process.

    Returns:
        The worker's result, or ``{"error": <last lines of its stderr>}`` if it failed.
    """
    with tempfile.TemporaryDirectory() as folder:
        result_path = os.path.join(folder, "result.json")
        spec = json.dumps({"worker": worker, "kwargs": kwargs, "result_path": result_path})
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        process = subprocess.run(
            [sys.executable, "-m", "depth_motion_tf.benchmark", f"--worker_spec={spec}"],
            env=env, capture_output=True, text=True,
        )
        if process.returncode != 0 or not os.path.exists(result_path):
            return {"error": "\n".join(process.stderr.strip().splitlines()[-5:])}
        with open(result_path) as f:
            return json.load(f)


def _run_worker(spec):
    spec = json.loads(spec)
    result = WORKERS[spec["worker"]](**spec["kwargs"])
    with open(spec["result_path"], "w") as f:
        json.dump(result, f)


def run_benchmark(options, data_dir, progress=print):
    """Every configuration of ``options`` (a dict of the CLI's values), each in its own process.

    Returns:
        dict ``settings``, ``machine``, ``training`` (list), ``input_pipeline`` (list),
        ``inference`` (list) and ``summary`` (ratios between them).
    """
    height, width = options["height"], options["width"]
    results = {"settings": options, "machine": machine_description(), "training": [],
               "input_pipeline": [], "inference": []}
    if "train" in options["sections"]:
        for batch_size, jit, precision, field in itertools.product(
            options["batch_sizes"], options["jit_compile"], options["mixed_precision"],
            options["fields"],
        ):
            progress(f"training: batch {batch_size}, jit_compile={jit}, "
                     f"mixed_precision={precision}, field={field}")
            result = run_in_subprocess("train", dict(
                data_dir=data_dir, height=height, width=width, batch_size=batch_size,
                jit_compile=jit, mixed_precision=precision, field=field,
                warmup_steps=options["warmup_steps"], timed_steps=options["timed_steps"],
            ))
            result.update(batch_size=batch_size, jit_compile=jit, mixed_precision=precision,
                          field=field)
            results["training"].append(result)
    if "input" in options["sections"]:
        for threads in options["input_threads"]:
            for cache in options["input_cache"]:
                progress(f"input pipeline: threads={threads or 'all'}, cache={cache}")
                result = run_in_subprocess("input", dict(
                    data_dir=data_dir, height=height, width=width,
                    batch_size=max(options["batch_sizes"]), threads=threads, cache=cache,
                    warmup_batches=options["warmup_steps"], timed_batches=options["input_batches"],
                ))
                result.setdefault("threads", threads or os.cpu_count())
                result.setdefault("cache", cache)
                results["input_pipeline"].append(result)
    if "inference" in options["sections"]:
        with tempfile.TemporaryDirectory() as outputs_dir:
            for precision in options["mixed_precision"]:
                progress(f"inference: SavedModel depth signature, mixed_precision={precision}")
                result = run_in_subprocess("inference", dict(
                    height=height, width=width, batch_sizes=options["inference_batch_sizes"],
                    jit_compile=options["jit_compile"], mixed_precision=precision,
                    warmup=options["warmup_steps"], repeats=options["inference_repeats"],
                    outputs_dir=outputs_dir,
                ))
                results["inference"] += result if isinstance(result, list) else [
                    dict(result, mixed_precision=precision)]
            add_relative_differences(results["inference"], outputs_dir)
    results["summary"] = summarize(results)
    return results


FLOAT_CPU_FEATURES = ("avx2", "avx512f")  # with config.BFLOAT16_CPU_FLAGS: what decides the kernels


def machine_description():
    """CPU count, model and features (those of :data:`FLOAT_CPU_FEATURES` and
    ``config.BFLOAT16_CPU_FLAGS`` it has), the GPUs TensorFlow sees, its version."""
    import tensorflow as tf

    from depth_motion_tf import config as config_lib

    model, features = config_lib.cpu_info()
    gpus = tf.config.list_physical_devices("GPU")
    known = FLOAT_CPU_FEATURES + config_lib.BFLOAT16_CPU_FLAGS
    return {"cpu_count": os.cpu_count(), "cpu": model,
            "cpu_features": [f for f in known if f in features],
            "gpus": [gpu.name for gpu in gpus], "tensorflow": tf.__version__}


def summarize(results):
    """Ratios the targets are stated in (None where a side is missing).

    - ``input_over_training``: the slowest full-core input pipeline over the
      fastest training configuration (examples/s).
    - ``xla_speedup``: step time without XLA / with XLA (float32, largest batch,
      ``field=shared``).
    - ``mixed_precision_speedup``: step time float32 / mixed (no XLA, largest
      batch, ``field=shared``).
    - ``inference_mixed_precision_speedup``: batch-1 SavedModel latency float32 /
      mixed (no XLA).
    """
    def rate(rows, **match):
        found = [r.get("examples_per_s") for r in rows
                 if "error" not in r and all(r.get(k) == v for k, v in match.items())]
        return found[0] if found else None

    ok_train = [r for r in results["training"] if "error" not in r]
    ok_input = [r for r in results["input_pipeline"] if "error" not in r]
    ok_inference = [r for r in results.get("inference", []) if "error" not in r]
    fastest_train = max((r["examples_per_s"] for r in ok_train), default=None)
    full_input = [r["examples_per_s"] for r in ok_input if r["threads"] == os.cpu_count()]
    batch = max((r["batch_size"] for r in ok_train), default=None)
    paper = {"batch_size": batch, "field": "shared"}  # the training ratios' step

    def ratio(a, b):
        return a / b if a and b else None

    return {
        "input_over_training": ratio(min(full_input, default=None), fastest_train),
        "xla_speedup": ratio(rate(ok_train, jit_compile=True, mixed_precision="off", **paper),
                             rate(ok_train, jit_compile=False, mixed_precision="off", **paper)),
        "mixed_precision_speedup": ratio(
            rate(ok_train, jit_compile=False, mixed_precision="on", **paper),
            rate(ok_train, jit_compile=False, mixed_precision="off", **paper),
        ),
        "inference_mixed_precision_speedup": ratio(
            rate(ok_inference, batch_size=1, jit_compile=False, mixed_precision="on"),
            rate(ok_inference, batch_size=1, jit_compile=False, mixed_precision="off"),
        ),
    }


# ------------------------------------------------------------------ report
def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        if abs(value) >= 1e6:
            return f"{value:.3g}"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _table(title, rows, keys):
    lines = [f"{title}"]
    if not rows:
        return lines + ["  (not run)"]
    widths = {k: max(len(k), *(len(_cell(r.get(k))) for r in rows)) for k in keys}
    lines.append("  " + "  ".join(k.rjust(widths[k]) for k in keys))
    for row in rows:
        if "error" in row:
            lines.append("  " + "  ".join(_cell(row.get(k)).rjust(widths[k]) for k in keys[:3])
                         + "  FAILED: " + row["error"].splitlines()[-1][:200])
        else:
            lines.append("  " + "  ".join(_cell(row.get(k)).rjust(widths[k]) for k in keys))
    return lines


def format_report(results):
    """The results as plain-text tables (one per section) and the summary ratios."""
    s = results["settings"]
    machine = results["machine"]
    lines = [f"Benchmark at {s['height']}x{s['width']} on {machine['cpu_count']} CPU cores "
             f"({machine.get('cpu', '?')}; {' '.join(machine.get('cpu_features', [])) or 'no AVX2'})"
             + (f", GPUs {results['machine']['gpus']}" if results["machine"]["gpus"] else "")]
    lines += _table("Training (full train_step):", results["training"], TRAIN_KEYS)
    lines += _table("Input pipeline (data.make_dataset):", results["input_pipeline"], INPUT_KEYS)
    lines += _table("Inference (SavedModel depth signature):", results["inference"], INFERENCE_KEYS)
    lines.append("Summary: " + ", ".join(f"{k} {_cell(v)}" for k, v in results["summary"].items()))
    return "\n".join(lines)


# ------------------------------------------------------------------ CLI
FLAGS = flags.FLAGS


def define_flags():
    """Defines the CLI's absl flags (called only when run as a program)."""
    flags.DEFINE_integer("height", 128, "Image height in pixels (multiple of 32).")
    flags.DEFINE_integer("width", 416, "Image width in pixels (multiple of 32).")
    flags.DEFINE_list("batch_sizes", ["4"], "Training batch sizes (examples per step).")
    flags.DEFINE_list("jit_compile", ["off", "on"], "XLA settings of the train step and the exported depth network: off, on.")
    flags.DEFINE_list("mixed_precision", ["off", "on"],
                      "Precision settings: off, on (mixed_float16 on GPU, mixed_bfloat16 on CPU), "
                      "mixed_float16, mixed_bfloat16.")
    flags.DEFINE_list("fields", ["shared"],
                      "Where the timed step's residual field comes from: shared (the paper's: the "
                      "motion net's), separate (--field_network=separate: a second network), "
                      "rigid_warp (the same, given the rigid warp as well).")
    flags.DEFINE_integer("warmup_steps", 2, "Untimed calls before timing (tracing, compilation).")
    flags.DEFINE_integer("timed_steps", 10, "Timed training steps (the median is reported).")
    flags.DEFINE_list("input_threads", ["1", "all"], "Input pipeline thread pools: a number or 'all'.")
    flags.DEFINE_list("input_cache", ["off", "on"], "Input pipeline cache settings: off, on.")
    flags.DEFINE_integer("input_batches", 20, "Timed input pipeline batches.")
    flags.DEFINE_list("inference_batch_sizes", ["1", "8"], "SavedModel inference batch sizes.")
    flags.DEFINE_integer("inference_repeats", 20, "Timed inference calls per batch size (median).")
    flags.DEFINE_integer("num_examples", 64, "Random triplets written to the temporary dataset.")
    flags.DEFINE_list("sections", list(SECTIONS), "What to run: train, input, inference.")
    flags.DEFINE_string("output", "benchmark.json", "JSON results file.")
    flags.DEFINE_string("worker_spec", None, "Internal: run one configuration (JSON) and exit.")


def _on_off(values, name):
    mapping = {"off": False, "on": True}
    for value in values:
        if value not in mapping:
            raise app.UsageError(f"--{name}: expected off or on, got {value!r}")
    return [mapping[v] for v in values]


def _positive_ints(values, name, also=()):
    """``--name`` list values as ints ≥ 1 (words in ``also`` kept as they are); raises app.UsageError."""
    try:
        numbers = [v if v in also else int(v) for v in values]
    except ValueError:
        numbers = []
    if not numbers or any(n not in also and n < 1 for n in numbers):
        raise app.UsageError(f"--{name}={','.join(values)}: expected numbers of at least 1")
    return numbers


def options_from_flags():
    """The CLI's values as a JSON-able dict (validated)."""
    if not os.path.isdir(os.path.dirname(os.path.abspath(FLAGS.output))):
        raise app.UsageError(f"--output={FLAGS.output}: its folder does not exist")
    if FLAGS.height % 32 or FLAGS.width % 32:
        raise app.UsageError(f"--height and --width must be multiples of 32, got {FLAGS.height}x{FLAGS.width}")
    unknown = set(FLAGS.sections) - set(SECTIONS)
    if unknown:
        raise app.UsageError(f"--sections: unknown {sorted(unknown)}; choose from {SECTIONS}")
    for value in FLAGS.fields:
        if value not in FIELD_SETTINGS:
            raise app.UsageError(f"--fields: unknown setting {value!r}; choose from {list(FIELD_SETTINGS)}")
    for value in FLAGS.mixed_precision:
        if value not in ("auto", "off", "on", "mixed_float16", "mixed_bfloat16"):
            raise app.UsageError(f"--mixed_precision: unknown setting {value!r}")
    return {
        "height": FLAGS.height,
        "width": FLAGS.width,
        "batch_sizes": _positive_ints(FLAGS.batch_sizes, "batch_sizes"),
        "jit_compile": _on_off(FLAGS.jit_compile, "jit_compile"),
        "mixed_precision": list(FLAGS.mixed_precision),
        "fields": list(FLAGS.fields),
        "warmup_steps": FLAGS.warmup_steps,
        "timed_steps": FLAGS.timed_steps,
        "input_threads": [0 if t == "all" else t for t in
                          _positive_ints(FLAGS.input_threads, "input_threads", also=("all",))],
        "input_cache": _on_off(FLAGS.input_cache, "input_cache"),
        "input_batches": FLAGS.input_batches,
        "inference_batch_sizes": _positive_ints(FLAGS.inference_batch_sizes, "inference_batch_sizes"),
        "inference_repeats": FLAGS.inference_repeats,
        "num_examples": FLAGS.num_examples,
        "sections": list(FLAGS.sections),
    }


def main(argv):
    del argv
    if FLAGS.worker_spec:
        _run_worker(FLAGS.worker_spec)
        return
    options = options_from_flags()
    started = time.time()
    with tempfile.TemporaryDirectory() as folder:
        data_dir = write_random_triplets(folder, options["num_examples"], options["height"], options["width"])
        results = run_benchmark(options, data_dir)
    report = format_report(results)
    print(report)
    with open(FLAGS.output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"Benchmark finished in {time.time() - started:.0f} s; results in {FLAGS.output}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
