"""KITTI raw → triplets (METHOD.md §5).

Input (``--input``, TFDS ``manual_dir``): the official KITTI raw layout,
``<date>/<date>_drive_XXXX_sync/image_0{2,3}/data/*.png`` with
``<date>/calib_cam_to_cam.txt``. Optional improved ground truth
(``data_depth_annotated``) merged into the drive folders as
``<drive>/proj_depth/groundtruth/image_0{2,3}/*.png``. Optional camera poses
(``--with_pose``) from the drive's GPS/IMU packets, ``<drive>/oxts/data/*.txt``,
with ``<date>/calib_imu_to_velo.txt`` and ``<date>/calib_velo_to_cam.txt``
(:func:`camera_poses`).

Each full frame is resized to the stored size (no crop; 416x128 by default),
intrinsics from ``P_rect_02`` / ``P_rect_03`` scaled by the width and height
ratios. The left (``image_02``) and right (``image_03``) cameras are separate
monocular videos (``video_id = <drive>_image_0X``).

Splits come from a standard file list (``<split_dir>/<split>/{train,val,test}_files.txt``,
one ``<date>/<drive> <frame> <l|r>`` line per triplet centre): ``eigen_zhou``
(static frames already removed) gives ``train`` and ``validation``. Without a
list every frame is a centre of ``train`` and static triplets are dropped by a
photometric threshold. Drives of the Eigen test split
(``<split_dir>/eigen/test_files.txt``) never enter ``train`` or ``validation``.

CLI::

    python -m data_prep.kitti --input=/data/kitti_raw --output=/data/tfds \\
        --split=eigen_zhou --split_dir=../shared/data/splits/kitti

``tfds build``: ``tfds build data_prep/kitti.py --manual_dir=/data/kitti_raw
--data_dir=/data/tfds --config=eigen_zhou_128x416`` (the lists are then read
from ``<manual_dir>/splits/kitti``).
"""
import dataclasses
import functools
import pathlib
from typing import Optional

import numpy as np
from absl import flags

from data_prep import convert, fingerprint
from data_prep.builder import TripletBuilder, TripletConfig, resize_suffix
from data_prep.frames import full_frame, read_depth_png
from data_prep.triplets import VideoSource, consecutive_runs
from depth_motion_tf import cli
from depth_motion_tf import features as F
from depth_motion_tf.errors import BadInputError
from depth_motion_tf.media import Intrinsics, file_frames, frame_files

CAMERAS = {"l": "image_02", "r": "image_03"}
LIST_FILES = {"train": "train_files.txt", "validation": "val_files.txt", "test": "test_files.txt"}
EVAL_SPLITS = ("test",)
DEFAULT_MIN_CHANGE = 0.01  # mean |RGB difference| on [0, 1] below which frames are static
EARTH_RADIUS_M = 6378137.0  # the oxts Mercator projection's (WGS84 equatorial)


@dataclasses.dataclass(eq=False)
class KittiConfig(TripletConfig):
    """KITTI options.

    Attributes:
        split: name of a standard list folder (``eigen_zhou``, ``eigen``,
            ``eigen_benchmark``); None = every frame into ``train``.
        min_change: static threshold used when no split list is given (0 = off).
        with_depth: also store the improved ground-truth depth (source resolution).
        with_pose: also store camera-to-world poses from the oxts packets
            (:func:`camera_poses`; metres, the drive's first packet as the world).
    """

    split: Optional[str] = None
    min_change: float = DEFAULT_MIN_CHANGE
    with_depth: bool = False
    with_pose: bool = False


def kitti_config(height=F.DEFAULT_HEIGHT, width=F.DEFAULT_WIDTH, split=None,
                 min_change=DEFAULT_MIN_CHANGE, with_depth=False, resize="area",
                 with_pose=False):
    """A :class:`KittiConfig` named ``<split or all>_<H>x<W>[_static<t>][_depth][_pose][_bilinear]``."""
    name = f"{split or 'all'}_{height}x{width}"
    if split is None and min_change != DEFAULT_MIN_CHANGE:
        name += f"_static{min_change:g}"
    name += ("_depth" if with_depth else "") + ("_pose" if with_pose else "")
    name += resize_suffix(resize)
    return KittiConfig(
        name=name, height=height, width=width, resize=resize, split=split,
        min_change=min_change, with_depth=with_depth, with_pose=with_pose,
        description=f"KITTI raw triplets at {height}x{width}, split {split or 'all frames'}.",
    )


def read_calibration(path):
    """Parses a KITTI calibration file (``calib_*.txt``) → ``{key: float64 array}``.

    Every ``key: numbers`` line is kept; ``calib_time`` (a date) is skipped.

    Raises:
        BadInputError: naming the file when it is missing or a value is not numeric.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise BadInputError(path, "calibration file does not exist")
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        key, _, rest = line.partition(":")
        if not rest.strip() or key == "calib_time":
            continue
        try:
            values[key] = np.array(rest.split(), np.float64)
        except ValueError:
            raise BadInputError(path, f"line {number}: {key} is not numeric") from None
    return values


def _matrix(calibration, key, shape, path):
    """``calibration[key]`` reshaped to ``shape``; a missing or short entry names ``path``."""
    values = calibration.get(key)
    if values is None or values.size != np.prod(shape):
        raise BadInputError(path, f"no {'x'.join(map(str, shape))} {key} entry")
    return values.reshape(shape)


def rigid_transform(calib_path):
    """A ``calib_imu_to_velo.txt`` / ``calib_velo_to_cam.txt`` → ``[4, 4]`` float64 ``[R | T]``."""
    calibration = read_calibration(calib_path)
    transform = np.eye(4)
    transform[:3, :3] = _matrix(calibration, "R", (3, 3), calib_path)
    transform[:3, 3] = _matrix(calibration, "T", (3,), calib_path)
    return transform


def imu_to_camera(date_dir, camera):
    """``[4, 4]`` float64: IMU coordinates → the rectified camera's (metres).

    ``X_cam = T_rect · R_rect_00 · T_velo→cam0 · T_imu→velo · X_imu``, where
    ``T_rect`` is the camera's offset from the rectified camera 0,
    ``K⁻¹ P_rect_0X[:, 3]``, and ``R_rect_00`` rotates camera 0 into the
    rectified frame (the KITTI raw devkit's chain).

    Args:
        date_dir: ``<date>`` folder with the three calibration files.
        camera: ``"image_02"`` or ``"image_03"``.
    """
    cam_path = date_dir / "calib_cam_to_cam.txt"
    calibration = read_calibration(cam_path)
    projection = _matrix(calibration, "P_rect_" + camera[-2:], (3, 4), cam_path)
    rectify, offset = np.eye(4), np.eye(4)
    rectify[:3, :3] = _matrix(calibration, "R_rect_00", (3, 3), cam_path)
    offset[:3, 3] = np.linalg.solve(projection[:, :3], projection[:, 3])
    velo_to_cam = rigid_transform(date_dir / "calib_velo_to_cam.txt")
    imu_to_velo = rigid_transform(date_dir / "calib_imu_to_velo.txt")
    return offset @ rectify @ velo_to_cam @ imu_to_velo


def read_oxts(path):
    """One oxts packet → ``(lat, lon, alt, roll, pitch, yaw)`` float64 (degrees, metres, radians).

    Raises:
        BadInputError: naming the file when it is not a numeric packet.
    """
    try:
        values = np.array(pathlib.Path(path).read_text().split(), np.float64)
    except ValueError:
        raise BadInputError(path, "oxts packet is not numeric") from None
    if values.size < 6:
        raise BadInputError(path, f"oxts packet has {values.size} values, expected 30")
    return values[:6]


def oxts_to_world(packet, scale):
    """``[4, 4]`` float64 IMU-to-world pose of an oxts packet (the KITTI devkit's convention).

    World: a Mercator projection (x east, y north, z up; metres) with scale
    ``cos(latitude₀)``; orientation ``R = Rz(yaw) Ry(pitch) Rx(roll)``. The IMU
    frame is x forward, y left, z up.

    Args:
        packet: ``(lat, lon, alt, roll, pitch, yaw)`` from :func:`read_oxts`.
        scale: ``cos`` of the drive's first latitude.
    """
    lat, lon, alt, roll, pitch, yaw = packet
    east = scale * np.radians(lon) * EARTH_RADIUS_M
    north = scale * EARTH_RADIUS_M * np.log(np.tan(np.radians(90.0 + lat) / 2.0))
    pose = np.eye(4)
    pose[:3, :3] = _axis_rotation(yaw, 0, 1) @ _axis_rotation(pitch, 2, 0) @ _axis_rotation(roll, 1, 2)
    pose[:3, 3] = [east, north, alt]
    return pose


def _axis_rotation(angle, i, j):
    """``[3, 3]`` rotation by ``angle`` (radians) in the plane of axes ``i → j`` (right-handed)."""
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.eye(3)
    rotation[i, i], rotation[i, j], rotation[j, i], rotation[j, j] = c, -s, s, c
    return rotation


def camera_poses(drive_dir, camera):
    """``{frame id: [4, 4] float64 camera-to-world}`` of every oxts packet of a drive.

    ``P_i = W₀⁻¹ W_i C⁻¹``: ``W_i`` the packet's IMU-to-world pose
    (:func:`oxts_to_world`, scaled by the first packet's latitude), ``C`` the
    IMU-to-camera calibration (:func:`imu_to_camera`). The world is the IMU
    frame of the drive's first packet, so the values stay small (float32-safe).

    Args:
        drive_dir: ``<date>/<date>_drive_XXXX_sync``.
        camera: ``"image_02"`` or ``"image_03"``.
    Raises:
        BadInputError: naming the missing oxts folder, packet or calibration file.
    """
    folder = drive_dir / "oxts" / "data"
    packets = {path.stem: read_oxts(path) for path in sorted(folder.glob("*.txt"))}
    if not packets:
        raise BadInputError(folder, "no oxts packets (*.txt) here (needed by --with_pose)")
    first = next(iter(packets.values()))
    scale = np.cos(np.radians(first[0]))
    origin = np.linalg.inv(oxts_to_world(first, scale))
    camera_to_imu = np.linalg.inv(imu_to_camera(drive_dir.parent, camera))
    return {
        frame_id: origin @ oxts_to_world(packet, scale) @ camera_to_imu
        for frame_id, packet in packets.items()
    }


def camera_intrinsics(calibration, camera, calib_path):
    """``P_rect_0X`` → ``Intrinsics`` (pixels of the rectified frame).

    Args:
        calibration: output of :func:`read_calibration`.
        camera: ``"image_02"`` or ``"image_03"``.
        calib_path: the calibration file (named in errors).
    """
    p = _matrix(calibration, "P_rect_" + camera[-2:], (3, 4), calib_path)
    return Intrinsics(fx=p[0, 0], fy=p[1, 1], cx=p[0, 2], cy=p[1, 2])


def read_split_list(path):
    """A split file → ``{(date/drive, camera folder): set of centre frame ids}``.

    Frame ids are the 10-digit file stems; lines are ``<date>/<drive> <frame> <l|r>``.

    Raises:
        BadInputError: naming the file and line when a line is malformed.
    """
    entries = {}
    for number, line in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or not parts[1].isdigit() or parts[2] not in CAMERAS:
            raise BadInputError(
                path, f"line {number}: expected '<date>/<drive> <frame> <l|r>', got {line!r}"
            )
        key = (parts[0], CAMERAS[parts[2]])
        entries.setdefault(key, set()).add(f"{int(parts[1]):010d}")
    return entries


def eigen_test_drives(split_dir):
    """``date/drive`` names in ``<split_dir>/eigen/test_files.txt`` (empty when absent)."""
    path = split_dir / "eigen" / "test_files.txt"
    if not path.is_file():
        return set()
    return {drive for drive, _ in read_split_list(path)}


def _depth_extras(drive_dir, camera, triplet):
    """The ground-truth depth PNGs of a triplet (zeros where a frame has none)."""
    depth = []
    for frame in triplet:
        path = drive_dir / "proj_depth" / "groundtruth" / camera / f"{frame.frame_id}.png"
        if path.is_file():
            depth.append(read_depth_png(path))
        else:
            depth.append(np.zeros((*frame.source_size, 1), np.uint16))
    return {F.DEPTH: depth}


@functools.lru_cache(maxsize=4)
def _drive_camera_poses(drive_dir, camera):
    """:func:`camera_poses`, read once per drive and camera (a drive has many runs)."""
    return camera_poses(drive_dir, camera)


def _pose_extras(drive_dir, camera, triplet):
    """The triplet's ``[3, 4, 4]`` float32 camera-to-world poses (:func:`camera_poses`)."""
    poses = _drive_camera_poses(drive_dir, camera)
    missing = [f.frame_id for f in triplet if f.frame_id not in poses]
    if missing:
        raise BadInputError(drive_dir / "oxts" / "data" / f"{missing[0]}.txt",
                            "oxts packet does not exist (needed by --with_pose)")
    return {F.CAMERA_TO_WORLD: np.stack([poses[f.frame_id] for f in triplet]).astype(np.float32)}


def _extras(getters, triplet):
    """The union of the dicts of every ``getter(triplet)``."""
    return {key: value for getter in getters for key, value in getter(triplet).items()}


class KittiTriplets(TripletBuilder):
    """KITTI raw frame triplets (both colour cameras as separate monocular videos)."""

    BUILDER_CONFIG_CLASS = KittiConfig
    BUILDER_CONFIGS = [
        kitti_config(),
        kitti_config(height=192, width=640),
        kitti_config(split="eigen_zhou"),
        kitti_config(split="eigen", with_depth=True),
        kitti_config(split="eigen_zhou", with_pose=True),
    ]
    INPUT_PATTERNS = (
        "*/calib_cam_to_cam.txt",
        "*_sync/image_0[23]/data/*",
        "*_sync/proj_depth/groundtruth/image_0[23]/*",
        "*/calib_imu_to_velo.txt",
        "*/calib_velo_to_cam.txt",
        "*_sync/oxts/data/*.txt",
    )
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download KITTI raw (the archives listed in splits/kitti/"
        "kitti_archives_to_download.txt) from https://www.cvlibs.net/datasets/kitti/raw_data.php "
        "and unzip them into manual_dir, giving <date>/<date>_drive_XXXX_sync/image_02/data/*.png."
    )

    def __init__(self, *, split_dir=None, **kwargs):
        """``split_dir``: folder of the standard lists (default ``<manual_dir>/splits/kitti``)."""
        self.split_dir = split_dir
        super().__init__(**kwargs)

    def _feature_options(self):
        config = self.builder_config
        return {"with_depth": config.with_depth, "with_pose": config.with_pose}

    def _fingerprint_inputs(self):
        """The drives' frames, calibration and depth, and the split lists."""
        split_dir = self._split_dir(pathlib.Path(self.input_path))
        return {
            **super()._fingerprint_inputs(),
            "split_dir": fingerprint.input_entry(split_dir, ("*.txt",)),
        }

    def _split_dir(self, root):
        return pathlib.Path(self.split_dir) if self.split_dir else root / "splits" / "kitti"

    def _videos(self, root):
        config = self.builder_config
        split_dir = self._split_dir(root)
        test_drives = eigen_test_drives(split_dir)
        if config.split is None:
            drives = {_drive_name(d): d for d in root.glob("*/*_drive_*_sync")}
            wanted = {(name, cam): None for name in drives if name not in test_drives
                      for cam in CAMERAS.values()}
            return {"train": self._split_videos(root, wanted, None, config.min_change)}
        lists = {
            split: split_dir / config.split / filename
            for split, filename in LIST_FILES.items()
            if (split_dir / config.split / filename).is_file()
        }
        if not lists:
            raise BadInputError(
                split_dir / config.split, "no train_files.txt, val_files.txt or test_files.txt here"
            )
        videos = {}
        for split, path in lists.items():
            wanted = read_split_list(path)
            if split not in EVAL_SPLITS:
                wanted = {k: v for k, v in wanted.items() if k[0] not in test_drives}
            videos[split] = self._split_videos(root, wanted, path, 0.0)
        return videos

    def _split_videos(self, root, wanted, list_path, min_change):
        """``{(date/drive, camera): centre ids or None}`` → list of ``VideoSource``."""
        videos = []
        for (drive, camera), centres in sorted(wanted.items()):
            frames = self._camera_frames(root, drive, camera, centres, list_path)
            if frames is None:
                continue
            for run in consecutive_runs(frames, lambda p: int(p.stem)):
                if centres is not None and not centres & {p.stem for p in run}:
                    continue
                try:
                    videos.append(self._video(root, drive, camera, run, centres, min_change))
                except BadInputError as error:
                    self.bad_input(error)
        return videos

    def _camera_frames(self, root, drive, camera, centres, list_path):
        """Sorted frame files of one camera; checks the list's centres and neighbours exist."""
        folder = root / drive / camera / "data"
        frames = frame_files(folder) if folder.is_dir() else []
        if centres is not None:
            present = {p.stem for p in frames}
            for centre in sorted(centres):
                needed = [f"{int(centre) + d:010d}" for d in (-1, 0, 1)]
                missing = [n for n in needed if n not in present]
                if missing:
                    self.bad_input(BadInputError(
                        list_path,
                        f"entry '{drive} {int(centre)} {camera}': no frame "
                        f"{folder / (missing[0] + '.png')}",
                    ))
        return frames or None

    def _video(self, root, drive, camera, run, centres, min_change):
        drive_dir = root / drive
        calib_path = drive_dir.parent / "calib_cam_to_cam.txt"
        intrinsics = camera_intrinsics(read_calibration(calib_path), camera, calib_path)
        getters = []
        if self.builder_config.with_depth:
            getters.append(functools.partial(_depth_extras, drive_dir, camera))
        if self.builder_config.with_pose:
            getters.append(functools.partial(_pose_extras, drive_dir, camera))
        extras = functools.partial(_extras, getters) if getters else None
        return VideoSource(
            video_id=f"{drive_dir.name}_{camera}",
            source=str(drive_dir / camera),
            frames=functools.partial(file_frames, run),
            crop=full_frame,
            intrinsics=intrinsics,
            centres=None if centres is None else frozenset(centres),
            min_change=min_change,
            extras=extras,
        )


def _drive_name(drive_dir):
    return f"{drive_dir.parent.name}/{drive_dir.name}"


def main(argv):
    del argv
    values = flags.FLAGS
    config = kitti_config(
        height=values.height, width=values.width, split=values.split,
        min_change=values.min_change, with_depth=values.with_depth, resize=values.resize,
        with_pose=values.with_pose,
    )
    convert.run(KittiTriplets, config, values, split_dir=values.split_dir)


if __name__ == "__main__":
    convert.define_common_flags()
    flags.adopt_module_key_flags(convert)  # --help lists the common flags too
    flags.DEFINE_string("split", None, "Standard list folder under --split_dir "
                        "(eigen_zhou for training; eigen / eigen_benchmark for testing). "
                        "Unset: every frame, static triplets dropped by --min_change.")
    flags.DEFINE_string("split_dir", None, "Folder of the standard KITTI lists "
                        "(e.g. ../shared/data/splits/kitti; default <input>/splits/kitti); "
                        "its eigen/test_files.txt drives never enter train/validation.")
    flags.DEFINE_float("min_change", DEFAULT_MIN_CHANGE, "Without a list: drop triplets whose "
                       "consecutive frames differ less (mean |RGB| on [0, 1]); 0 keeps all.")
    flags.DEFINE_bool("with_depth", False, "Store improved ground-truth depth "
                      "(proj_depth/groundtruth) at source resolution.")
    flags.DEFINE_bool("with_pose", False, "Store camera-to-world poses (metres) from the "
                      "drives' oxts/data/*.txt GPS/IMU packets and calib_imu_to_velo.txt / "
                      "calib_velo_to_cam.txt: for --egomotion=given and ego-motion evaluation.")
    cli.run(main)
