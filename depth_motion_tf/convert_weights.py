"""Converts ImageNet ResNet-18 weights to our encoder format (``--encoder_weights``).

    python -m depth_motion_tf.convert_weights --input=resnet18.safetensors \
        --output=resnet18_imagenet.npz

``--input``: the reference's TF1 checkpoint (``resnet-18-tensorflow``), a
torchvision/timm ``.safetensors`` or ``.pth`` state dict, or our own
``.npz``/``.h5``, recognised by content (see :mod:`depth_motion_tf.encoder_weights`).
Prints each mapped weight (file name → our name, shape), each kind of skipped
weight with its names, and one summary line of what was written where. The
training flag reads every one of these inputs directly; converting once gives
a small file in one naming and checks it without starting a training run.
"""
from absl import flags
import tensorflow as tf

from depth_motion_tf import cli, encoder_weights
from depth_motion_tf.networks import DEPTH_SIZE_DIVISOR, DepthNet

DEFAULT_OUTPUT = "resnet18_imagenet.npz"


def define_flags(flag_values=flags.FLAGS):
    """Declares the CLI flags on ``flag_values`` (not at import time)."""
    fv = flag_values
    flags.DEFINE_string("input", None, "ResNet-18 weights: a TF1 checkpoint prefix (or its .index "
                        "file or folder), .safetensors, .pth (needs torch), .npz or .h5.",
                        flag_values=fv)
    flags.DEFINE_string("output", DEFAULT_OUTPUT, "Output file in our naming, .npz or .weights.h5 "
                        f"(default {DEFAULT_OUTPUT}).", flag_values=fv)
    flags.mark_flag_as_required("input", flag_values=fv)


def encoder_shapes():
    """Our name → shape of every depth-encoder weight, from a DepthNet built on a dummy image."""
    depth_net = DepthNet()
    depth_net(tf.zeros([1, DEPTH_SIZE_DIVISOR, DEPTH_SIZE_DIVISOR, 3]))
    return {name: tuple(v.shape) for name, v in depth_net.encoder.named_variables().items()}


def report_lines(weights):
    """The mapping as printable lines: one per mapped weight, then one per skipped kind."""
    width = max(len(source) for source in weights.sources.values())
    lines = [
        f"  {weights.sources[name]:<{width}} -> {name} {weights.arrays[name].shape}"
        for name in weights.arrays
    ]
    lines += [
        f"  skipped {len(names)} {kind}: {', '.join(names)}"
        for kind, names in sorted(weights.skipped.items())
    ]
    return lines


def run(fv):
    """Converts as the parsed flags say and prints the mapping and one summary line.

    Returns:
        :class:`encoder_weights.EncoderWeights`, what was written.
    """
    weights = encoder_weights.read_encoder_weights(fv.input, encoder_shapes())
    encoder_weights.write_weight_file(fv.output, weights.arrays)
    print(f"Mapped ({weights.naming}, {weights.container}):")
    print("\n".join(report_lines(weights)))
    print(
        f"Wrote {len(weights.arrays)} encoder weights to {fv.output} from {fv.input} "
        f"({weights.naming}, {weights.container}); {weights.skipped_summary()}"
    )
    return weights


def main(argv):
    del argv
    run(flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
