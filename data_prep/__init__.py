"""Converters from raw video datasets to TFDS TFRecord shards of frame triplets.

One module per source, each a TFDS builder and its CLI (``kitti``,
``cityscapes``, ``waymo``, ``video``, ``struct2depth``, ``synthetic``), made of:

- ``frames``: crop windows, intrinsics under crops and resizes, resizing, PNG coding;
- ``triplets``: videos → triplet examples;
- ``builder``: the TFDS builder base of the converters, and ``build``;
- ``fingerprint``: what a written dataset was built from; reuse, refuse or rebuild it;
- ``convert``: the converters' shared flags, their run and its summary line.

``inspect`` prints counts and writes contact sheets of converted data.
"""
import depth_motion_tf  # noqa: F401 - first: in our CLIs it hides TensorFlow's C++ start-up log
