"""Our DepthNet's train step against the same network in PyTorch, on the same CPU.

    python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch==2.13.0 numpy
    python benchmarks/depthnet_pytorch.py --torch_python=/tmp/torch/bin/python

PyTorch is never a dependency of the project: the script, run by the project's
Python, times our ``DepthNet`` (TensorFlow), then runs itself under
``--torch_python`` with ``--framework=torch`` to time a PyTorch twin of the
same network, and prints both and their ratio.

The twin has the same layers, shapes and parameter count (asserted): the
ResNet-18 encoder with randomised layer normalisation (noise at full scale),
the five transposed-convolution / convolution decoder levels, the softplus
depth. One train step, in both frameworks: forward in training mode on a
``[B, 3, H, W]`` batch, the mean absolute difference to a fixed random target
depth, the backward pass and an Adam update (each framework's fused Adam).
PyTorch is timed in NCHW and channels-last; the faster counts. Each
framework uses every core. ``--precision=bfloat16``: Keras' mixed_bfloat16
policy against ``torch.autocast`` with bfloat16.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ENCODER_STAGE_FILTERS = (64, 128, 256, 512)
DECODER_FILTERS = (256, 128, 64, 32, 16)
SKIP_CHANNELS = (256, 128, 64, 64, 0)  # e4, e3, e2, e1, none
NORM_EPSILON = 1e-3
NOISE_STDDEV = 0.5


def median_ms(step, warmup, repeats):
    """Median wall time of ``step()`` in milliseconds, after ``warmup`` calls.

    ``depth_motion_tf.benchmark.median_seconds`` in milliseconds; not imported
    from there because the PyTorch side runs in a venv without the project's
    dependencies (absl, TensorFlow), and both sides must time the same way.
    """
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(1000.0 * (time.perf_counter() - start))
    return statistics.median(times)


def time_tensorflow(args):
    """Times our DepthNet's train step; returns a result dict."""
    import numpy as np
    import tensorflow as tf

    from depth_motion_tf import config as config_lib
    from depth_motion_tf.networks import DepthNet

    config_lib.set_precision_policy("mixed_bfloat16" if args.precision == "bfloat16" else "off")
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(size=(args.batch_size, args.height, args.width, 3)), tf.float32)
    target = tf.constant(rng.uniform(1.0, 2.0, size=(args.batch_size, args.height, args.width, 1)),
                         tf.float32)
    network = DepthNet()
    network(images)
    optimizer = config_lib.FusedAdam(1e-4)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(network(images, training=True) - target))
        optimizer.apply(tape.gradient(loss, network.trainable_variables), network.trainable_variables)
        return loss

    step_ms = median_ms(lambda: train_step().numpy(), args.warmup, args.repeats)
    return {"framework": f"TensorFlow {tf.__version__} (ours)", "step_ms": step_ms,
            "parameters": int(sum(np.prod(v.shape) for v in network.trainable_variables))}


def torch_depth_net():
    """The PyTorch twin of ``DepthNet`` (NCHW; images in [0, 1] → depth [B, 1, H, W])."""
    import torch
    from torch import nn

    class RandomizedLayerNorm(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
            self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

        def forward(self, x):
            x = x.float()
            mean = x.mean((2, 3), keepdim=True)
            variance = x.var((2, 3), unbiased=False, keepdim=True)
            if self.training:
                mean = mean * (1.0 + self._noise(mean))
                variance = variance * (1.0 + self._noise(variance))
            return self.gamma * (x - mean) * torch.rsqrt(variance + NORM_EPSILON) + self.beta

        @staticmethod
        def _noise(like):
            noise = torch.empty_like(like)
            return nn.init.trunc_normal_(noise, std=NOISE_STDDEV, a=-2 * NOISE_STDDEV, b=2 * NOISE_STDDEV)

    def conv(cin, cout, kernel, stride):
        return nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1, self.norm1 = conv(cin, cout, 3, stride), RandomizedLayerNorm(cout)
            self.conv2, self.norm2 = conv(cout, cout, 3, 1), RandomizedLayerNorm(cout)
            self.shortcut = conv(cin, cout, 1, stride) if stride != 1 else nn.Identity()

        def forward(self, x):
            y = torch.relu(self.norm1(self.conv1(x)))
            return torch.relu(self.norm2(self.conv2(y)) + self.shortcut(x))

    class DepthNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.norm1 = conv(3, 64, 7, 2), RandomizedLayerNorm(64)
            self.pool = nn.MaxPool2d(3, 2, padding=1)
            blocks, cin = [], 64
            for stage, cout in enumerate(ENCODER_STAGE_FILTERS):
                blocks.append(nn.Sequential(Block(cin, cout, 1 if stage == 0 else 2), Block(cout, cout, 1)))
                cin = cout
            self.stages = nn.ModuleList(blocks)
            self.upconvs, self.iconvs = nn.ModuleList(), nn.ModuleList()
            for filters, skip in zip(DECODER_FILTERS, SKIP_CHANNELS):
                self.upconvs.append(nn.ConvTranspose2d(cin, filters, 3, 2, padding=1, output_padding=1))
                self.iconvs.append(nn.Conv2d(filters + skip, filters, 3, padding=1))
                cin = filters
            self.depth = nn.Conv2d(cin, 1, 3, padding=1)

        def forward(self, images):
            x = torch.relu(self.norm1(self.conv1(2.0 * images - 1.0)))
            skips, x = [x], self.pool(x)
            for stage in self.stages:
                x = stage(x)
                skips.append(x)
            x = skips.pop()
            for upconv, iconv, skip in zip(self.upconvs, self.iconvs, skips[::-1] + [None]):
                x = torch.relu(upconv(x))
                if skip is not None:
                    x = torch.cat([x, skip.to(x.dtype)], 1)
                x = torch.relu(iconv(x))
            return nn.functional.softplus(self.depth(x).float())

    return DepthNet()


def time_torch(args, channels_last):
    """Times the PyTorch twin's train step in one memory format; returns a result dict."""
    import contextlib

    import numpy as np
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    rng = np.random.default_rng(0)
    images = torch.tensor(rng.uniform(size=(args.batch_size, 3, args.height, args.width)), dtype=torch.float32)
    target = torch.tensor(rng.uniform(1.0, 2.0, size=(args.batch_size, 1, args.height, args.width)),
                          dtype=torch.float32)
    network = torch_depth_net().to(memory_format=memory_format).train()
    images = images.contiguous(memory_format=memory_format)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4, fused=True)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bfloat16"
                else contextlib.nullcontext())

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            depth = network(images)
        loss = (depth - target).abs().mean()
        loss.backward()
        optimizer.step()

    step_ms = median_ms(train_step, args.warmup, args.repeats)
    layout = "channels-last" if channels_last else "NCHW"
    return {"framework": f"PyTorch {torch.__version__} ({layout})", "step_ms": step_ms,
            "parameters": sum(p.numel() for p in network.parameters())}


def run_torch(args):
    """Runs this script under ``--torch_python``; returns its two result dicts."""
    command = [args.torch_python, os.path.abspath(__file__), "--framework=torch",
               *(f"--{k}={getattr(args, k)}" for k in ("height", "width", "batch_size", "warmup",
                                                     "repeats", "precision"))]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"error: {args.torch_python}: the PyTorch run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(args, ours, theirs):
    """Prints the comparison and writes ``--output``; returns the summary line."""
    best = min(theirs, key=lambda r: r["step_ms"])
    for result in (ours, *theirs):
        if result["parameters"] != ours["parameters"]:
            sys.exit(f"error: {result['framework']} has {result['parameters']} parameters, "
                     f"ours {ours['parameters']}: not the same network")
    print(f"DepthNet train step, {args.height}x{args.width}, batch {args.batch_size}, {args.precision}, "
          f"{os.cpu_count()} cores, {ours['parameters']:,} parameters (median of {args.repeats}):")
    for result in (ours, *theirs):
        print(f"  {result['framework']:<42} {result['step_ms']:8.1f} ms")
    ratio = best["step_ms"] / ours["step_ms"]
    with open(args.output, "w") as f:
        json.dump({"ours": ours, "pytorch": theirs, "pytorch_over_ours": ratio, "args": vars(args)}, f, indent=2)
    return f"PyTorch's best step / ours = {ratio:.2f}; results in {args.output}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--torch_python", help="Python of a venv with torch (required for the comparison).")
    parser.add_argument("--framework", choices=("both", "tensorflow", "torch"), default="both")
    parser.add_argument("--height", type=int, default=128, help="Image height in pixels (multiple of 32).")
    parser.add_argument("--width", type=int, default=416, help="Image width in pixels (multiple of 32).")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3, help="Untimed steps first.")
    parser.add_argument("--repeats", type=int, default=10, help="Timed steps (median).")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--output", default="depthnet_pytorch.json", help="JSON results file.")
    args = parser.parse_args()
    if args.framework == "torch":
        print(json.dumps([time_torch(args, channels_last) for channels_last in (False, True)]))
    elif args.framework == "tensorflow":
        print(json.dumps(time_tensorflow(args)))
    else:
        if not args.torch_python:
            parser.error("--torch_python is required (PyTorch is not a dependency; see the docstring)")
        ours = time_tensorflow(args)
        print(report(args, ours, run_torch(args)))


if __name__ == "__main__":
    main()
