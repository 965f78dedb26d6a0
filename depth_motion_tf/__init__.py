"""depth_motion_tf: unsupervised monocular depth learning in dynamic scenes."""
