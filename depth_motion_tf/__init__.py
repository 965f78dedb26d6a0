"""depth_motion_tf: unsupervised monocular depth learning in dynamic scenes."""
from depth_motion_tf import cli as _cli

_cli.quiet_tensorflow()  # only in this project's CLI processes, before TensorFlow loads
