"""depth_motion_tf: unsupervised monocular depth learning in dynamic scenes."""
import os

# TensorFlow turns its oneDNN CPU kernels on by itself only on Intel CPUs; on others (AMD EPYC,
# AVX2) a 64x192 train step is 2-3x faster with them (README, Performance). This has to be set
# before TensorFlow loads, and an explicit TF_ENABLE_ONEDNN_OPTS in the environment wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from depth_motion_tf import cli as _cli  # noqa: E402

_cli.quiet_tensorflow()  # only in this project's CLI processes, before TensorFlow loads
