"""Waymo Open Dataset (v1 perception, ``segment-*.tfrecord``) → FRONT-camera triplets.

Input (``--input``): ``segment-*.tfrecord`` files, each a sequence of
serialised ``Frame`` protos (10 Hz), directly in the folder (→ ``train``) or
in ``training/``, ``validation/``, ``testing/`` (→ ``train``, ``validation``,
``test``). Each segment's FRONT camera is one video (``video_id`` = the
segment name); frames ordered by timestamp, every ``frame_stride``-th kept,
centre-cropped to the stored aspect ratio and resized (416x128 by default).
Intrinsics from the segment's FRONT ``CameraCalibration`` (``f_u, f_v, c_u,
c_v``), transformed exactly with the crop and resize. Camera-to-world poses
(metres) from each frame's vehicle pose and the FRONT camera's extrinsic
(:func:`camera_to_world`), the segment's first frame as the world.

Frames are parsed with a minimal description of ``Frame`` built here with
``google.protobuf``'s descriptor API (:data:`FRAME_MESSAGES`): the field
numbers of the public ``waymo_open_dataset/dataset.proto``, only the fields
read; all others are skipped by the parser. The ``waymo-open-dataset``
package is not needed.

CLI::

    python -m data_prep.waymo --input=/data/waymo --output=/data/tfds

``tfds build``: ``tfds build data_prep/waymo.py --manual_dir=/data/waymo``.
"""
import dataclasses
import functools

import numpy as np
import tensorflow as tf
from absl import flags
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory

from data_prep import convert
from data_prep.builder import TripletBuilder, TripletConfig, resize_suffix
from data_prep.frames import centre_crop_to_aspect
from data_prep.triplets import VideoSource
from depth_motion_tf import cli
from depth_motion_tf import features as F
from depth_motion_tf.errors import BadInputError
from depth_motion_tf.media import FrameRef, Intrinsics, decode_image

PACKAGE = "waymo.open_dataset"
FRONT = 1  # CameraName.Name.FRONT
SPLITS = {".": "train", "training": "train", "validation": "validation", "testing": "test"}
# Optical camera axes (x right, y down, z forward) → Waymo's camera axes (x forward, y left, z up).
OPTICAL_TO_CAMERA = np.array(
    [[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
_FIELD = descriptor_pb2.FieldDescriptorProto


def _add_message(file_proto, name, fields):
    """Adds ``message name { fields }``; ``fields``: (name, number, type, label, type_name)."""
    message_proto = file_proto.message_type.add(name=name)
    for field_name, number, field_type, label, type_name in fields:
        field = message_proto.field.add(name=field_name, number=number, type=field_type,
                                        label=label)
        if type_name:
            field.type_name = f".{PACKAGE}.{type_name}"
    return message_proto


def frame_file_descriptor():
    """The minimal ``dataset.proto`` (proto2) as a ``FileDescriptorProto``.

    Field numbers follow waymo_open_dataset/dataset.proto:
    ``Frame{context=1, timestamp_micros=2, pose=3 (vehicle → world), images=4}``,
    ``Context{name=1, camera_calibrations=2}``,
    ``CameraCalibration{name=1, intrinsic=2 (f_u, f_v, c_u, c_v, k1, k2, p1, p2, k3),
    extrinsic=3 (camera → vehicle), width=4, height=5}``,
    ``Transform{transform=1 (4x4, row-major)}``,
    ``CameraImage{name=1, image=2 (JPEG)}``, ``CameraName.Name{UNKNOWN=0, FRONT=1, ...}``.
    """
    optional, repeated = _FIELD.LABEL_OPTIONAL, _FIELD.LABEL_REPEATED
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="data_prep/waymo_frame.proto", package=PACKAGE, syntax="proto2"
    )
    camera_name = file_proto.message_type.add(name="CameraName")
    names = camera_name.enum_type.add(name="Name")
    for number, value in enumerate(
        ["UNKNOWN", "FRONT", "FRONT_LEFT", "FRONT_RIGHT", "SIDE_LEFT", "SIDE_RIGHT"]
    ):
        names.value.add(name=value, number=number)
    _add_message(file_proto, "Transform", [
        ("transform", 1, _FIELD.TYPE_DOUBLE, repeated, None),
    ])
    _add_message(file_proto, "CameraCalibration", [
        ("name", 1, _FIELD.TYPE_ENUM, optional, "CameraName.Name"),
        ("intrinsic", 2, _FIELD.TYPE_DOUBLE, repeated, None),
        ("extrinsic", 3, _FIELD.TYPE_MESSAGE, optional, "Transform"),
        ("width", 4, _FIELD.TYPE_INT32, optional, None),
        ("height", 5, _FIELD.TYPE_INT32, optional, None),
    ])
    _add_message(file_proto, "Context", [
        ("name", 1, _FIELD.TYPE_STRING, optional, None),
        ("camera_calibrations", 2, _FIELD.TYPE_MESSAGE, repeated, "CameraCalibration"),
    ])
    _add_message(file_proto, "CameraImage", [
        ("name", 1, _FIELD.TYPE_ENUM, optional, "CameraName.Name"),
        ("image", 2, _FIELD.TYPE_BYTES, optional, None),
    ])
    _add_message(file_proto, "Frame", [
        ("context", 1, _FIELD.TYPE_MESSAGE, optional, "Context"),
        ("timestamp_micros", 2, _FIELD.TYPE_INT64, optional, None),
        ("pose", 3, _FIELD.TYPE_MESSAGE, optional, "Transform"),
        ("images", 4, _FIELD.TYPE_MESSAGE, repeated, "CameraImage"),
    ])
    return file_proto


def _message_classes():
    pool = descriptor_pool.DescriptorPool()
    pool.Add(frame_file_descriptor())
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
        for name in ("Frame", "Context", "CameraCalibration", "CameraImage", "Transform")
    }


FRAME_MESSAGES = _message_classes()  # name → generated message class
Frame = FRAME_MESSAGES["Frame"]


@dataclasses.dataclass(eq=False)
class WaymoConfig(TripletConfig):
    """``frame_stride``: keep every n-th frame (10 Hz source)."""

    frame_stride: int = 1


def waymo_config(height=F.DEFAULT_HEIGHT, width=F.DEFAULT_WIDTH, frame_stride=1, resize="area"):
    """A :class:`WaymoConfig` named ``<H>x<W>_stride<n>[_bilinear]``."""
    return WaymoConfig(
        name=f"{height}x{width}_stride{frame_stride}{resize_suffix(resize)}", height=height,
        width=width, resize=resize, frame_stride=frame_stride,
        description=f"Waymo FRONT triplets at {height}x{width}.",
    )


def iter_frames(path, limit=None):
    """Parses the ``Frame`` protos of a segment file, one at a time.

    Args:
        path: a ``segment-*.tfrecord``.
        limit: read at most this many records (None: all).
    Yields:
        ``Frame`` messages, in file order.
    Raises:
        BadInputError: naming the file when a record is corrupt or not a Frame.
    """
    dataset = tf.data.TFRecordDataset(str(path))
    if limit is not None:
        dataset = dataset.take(limit)
    try:
        for index, record in enumerate(dataset.as_numpy_iterator()):
            yield _parse_frame(record, f"{path}#{index}")
    except tf.errors.DataLossError as error:
        raise BadInputError(path, f"corrupt TFRecord: {error.message}") from None


def _parse_frame(record, name):
    try:
        return Frame.FromString(record)
    except message.DecodeError as error:
        raise BadInputError(name, f"not a Waymo Frame proto: {error}") from None


def front_calibration(frame, path):
    """The FRONT camera's ``CameraCalibration`` from a frame's context.

    Raises:
        BadInputError: naming the file when there is no usable FRONT calibration.
    """
    for calibration in frame.context.camera_calibrations:
        if calibration.name == FRONT and len(calibration.intrinsic) >= 4:
            return calibration
    raise BadInputError(path, "no FRONT camera calibration in the first frame")


def front_intrinsics(calibration):
    """The FRONT ``CameraCalibration`` → ``Intrinsics`` (pixels)."""
    f_u, f_v, c_u, c_v = calibration.intrinsic[:4]
    return Intrinsics(f_u, f_v, c_u, c_v)


def transform_matrix(transform, name, what):
    """A ``Transform`` proto → ``[4, 4]`` float64; ``name`` and ``what`` go in the error.

    Raises:
        BadInputError: when the transform does not hold 16 values.
    """
    if len(transform.transform) != 16:
        raise BadInputError(name, f"{what} has {len(transform.transform)} values, expected 16")
    return np.array(transform.transform, np.float64).reshape(4, 4)


def camera_to_world(vehicle_to_world, camera_to_vehicle, world_origin):
    """``[4, 4]`` float64 pose of the optical FRONT camera (x right, y down, z forward; metres).

    ``P = V₀⁻¹ · V · E · A``: ``V`` the frame's vehicle pose, ``E`` the camera's
    extrinsic, ``A`` :data:`OPTICAL_TO_CAMERA`, and ``V₀`` (``world_origin``) the
    segment's first vehicle pose, so that values stay small (float32-safe).
    """
    return np.linalg.inv(world_origin) @ vehicle_to_world @ camera_to_vehicle @ OPTICAL_TO_CAMERA


def front_jpeg(frame):
    """The FRONT camera's JPEG bytes of a frame, None when it has none."""
    for image in frame.images:
        if image.name == FRONT:
            return image.image
    return None


def decode_front(jpeg, name):
    """FRONT JPEG bytes (or None) → ``[H, W, 3]`` uint8; bad input names ``name``."""
    if jpeg is None:
        raise BadInputError(name, "frame has no FRONT camera image")
    return decode_image(jpeg, name)


@functools.lru_cache(maxsize=2)
def read_segment(path):
    """``[(timestamp, FRONT JPEG or None, [4, 4] vehicle pose)]`` of a segment, by timestamp.

    Only the FRONT JPEGs and the poses are kept in memory, not the frames'
    LiDAR data; cached, so that frames and poses take one pass over the file.

    Raises:
        BadInputError: naming ``file#record`` for a frame without a vehicle pose.
    """
    records = [
        (frame.timestamp_micros, front_jpeg(frame),
         transform_matrix(frame.pose, f"{path}#{index}", "vehicle pose"))
        for index, frame in enumerate(iter_frames(path))
    ]
    return sorted(records, key=lambda record: record[0])


def segment_frames(path, frame_stride):
    """``FrameRef`` of every stride-th FRONT image of a segment, by timestamp."""
    refs = []
    for index, (timestamp, jpeg, _) in enumerate(read_segment(path)[::frame_stride]):
        name = f"{path}#{index * frame_stride}"
        refs.append(FrameRef(str(timestamp), name, functools.partial(decode_front, jpeg, name)))
    return refs


@functools.lru_cache(maxsize=2)
def _vehicle_poses(path):
    """``{frame id: [4, 4] vehicle pose}`` of a segment (:func:`read_segment`), once per segment."""
    return {str(timestamp): pose for timestamp, _, pose in read_segment(path)}


def _pose_extras(path, camera_to_vehicle, triplet):
    """The triplet's ``[3, 4, 4]`` float32 camera-to-world poses (:func:`camera_to_world`)."""
    vehicle = _vehicle_poses(path)
    origin = read_segment(path)[0][2]
    poses = [camera_to_world(vehicle[f.frame_id], camera_to_vehicle, origin) for f in triplet]
    return {F.CAMERA_TO_WORLD: np.stack(poses).astype(np.float32)}


class WaymoTriplets(TripletBuilder):
    """Waymo Open Dataset FRONT camera triplets with calibrated intrinsics and camera poses."""

    BUILDER_CONFIG_CLASS = WaymoConfig
    BUILDER_CONFIGS = [waymo_config()]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download the perception v1 segment-*.tfrecord files (training/, validation/) from "
        "https://waymo.com/open/download/ into manual_dir."
    )
    INPUT_PATTERNS = ("segment-*.tfrecord", "*/segment-*.tfrecord")

    def _feature_options(self):
        return {"with_pose": True}

    def _videos(self, root):
        videos = {}
        for folder, split in SPLITS.items():
            for path in sorted((root / folder).glob("segment-*.tfrecord")):
                try:
                    videos.setdefault(split, []).append(self._video(path))
                except BadInputError as error:
                    self.bad_input(error)
        return videos

    def _video(self, path):
        first = list(iter_frames(path, limit=1))
        if not first:
            raise BadInputError(path, "segment holds no frames")
        config = self.builder_config
        calibration = front_calibration(first[0], path)
        extrinsic = transform_matrix(calibration.extrinsic, path, "FRONT camera extrinsic")
        return VideoSource(
            video_id=first[0].context.name or path.stem,
            source=str(path),
            frames=functools.partial(segment_frames, path, config.frame_stride),
            crop=functools.partial(centre_crop_to_aspect,
                                   aspect=config.width / config.height),
            intrinsics=front_intrinsics(calibration),
            extras=functools.partial(_pose_extras, path, extrinsic),
        )


def main(argv):
    del argv
    values = flags.FLAGS
    config = waymo_config(values.height, values.width, values.frame_stride, values.resize)
    convert.run(WaymoTriplets, config, values)


if __name__ == "__main__":
    convert.define_common_flags()
    flags.adopt_module_key_flags(convert)  # --help lists the common flags too
    flags.DEFINE_integer("frame_stride", 1, "Keep every n-th frame (source: 10 Hz).")
    cli.run(main)
