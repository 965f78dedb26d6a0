"""Ground-truth depth for evaluation: KITTI (Velodyne and improved), Cityscapes, folders, TFDS.

Every source yields :class:`DepthSample` s (the input image, its ground-truth
depth in metres with 0 = missing, and the crop evaluated) through a sized,
re-iterable :class:`Samples`, loading one image at a time.

Sources:
- KITTI Eigen test split (697 images): raw Velodyne scans projected into the
  rectified colour camera (:func:`project_velodyne`), cached once in an ``.npz``.
- KITTI Eigen "benchmark" split (652 images): the improved annotated depth
  PNGs of the KITTI depth benchmark (``proj_depth/groundtruth``).
- Cityscapes: depth from disparity PNGs and the per-image camera JSON.
- A folder of frames with a folder of depth files (``.npy``/``.npz``/16-bit PNG).
- A TFDS dataset written with :func:`depth_motion_tf.features.triplet_features`
  (``with_depth=True``): the middle frame of each triplet.
"""
import dataclasses
import json
import pathlib

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
import tqdm

from depth_motion_tf import features
from depth_motion_tf.errors import BadInputError
from depth_motion_tf.metrics import GARG_CROP

# Cityscapes: the input and ground truth keep the top 75% of rows (the ego car
# is removed), then metrics use rows [1/3, 1) and columns [0.09375, 0.90625)
# of that, i.e. rows 256..767 and columns 192..1855 of the 1024x2048 frame.
CITYSCAPES_KEEP_ROWS = 0.75
CITYSCAPES_CROP = (1.0 / 3.0, 1.0, 0.09375, 0.90625)

KITTI_CAMERAS = {"l": 2, "r": 3}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
DEPTH_EXTENSIONS = (".npy", ".npz", ".png")


@dataclasses.dataclass(frozen=True)
class DepthSample:
    """One evaluated image.

    Attributes:
        name: identifier used in reports (e.g. ``"2011_09_26/..._sync 0000000069 l"``).
        image: ``[H, W, 3]`` uint8 input image.
        depth: ``[Hg, Wg]`` float32 ground-truth depth in metres, 0 = missing.
        crop: ``(top, bottom, left, right)`` fractions of the evaluated region, or None.
    """

    name: str
    image: np.ndarray
    depth: np.ndarray
    crop: tuple = None


class Samples:
    """A sized, re-iterable collection of :class:`DepthSample`, loaded lazily.

    Args:
        count: number of samples.
        iterate: zero-argument callable returning a fresh iterator of samples.
    """

    def __init__(self, count, iterate):
        self._count = count
        self._iterate = iterate

    def __len__(self):
        return self._count

    def __iter__(self):
        return iter(self._iterate())


def _require_file(path):
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    return path


def read_image(path):
    """An image file (PNG/JPEG) → ``[H, W, 3]`` uint8."""
    data = tf.io.read_file(str(_require_file(path)))
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


def read_png_depth(path, scale=features.DEPTH_PNG_SCALE):
    """A 16-bit depth PNG → ``[H, W]`` float32 metres (``value / scale``, 0 = missing)."""
    data = tf.io.read_file(str(_require_file(path)))
    values = tf.io.decode_png(data, channels=1, dtype=tf.uint16).numpy()[..., 0]
    return values.astype(np.float32) / np.float32(scale)


def read_npz_depth(path):
    """The depth array of an ``.npz``: its ``depth`` key, or its only array."""
    with np.load(path) as archive:
        keys = list(archive.keys())
        if "depth" in keys:
            return archive["depth"]
        if len(keys) == 1:
            return archive[keys[0]]
    raise BadInputError(path, f"expected a 'depth' array or a single array, found {keys}")


def read_depth_file(path, png_scale=features.DEPTH_PNG_SCALE):
    """A depth file → ``[H, W]`` float32 metres.

    Args:
        path: ``.npy`` (one 2-D array, or ``[H, W, 1]``), ``.npz`` (key ``depth``,
            or its only array) or 16-bit ``.png`` (``value / png_scale``).
    """
    path = _require_file(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        return read_png_depth(path, png_scale)
    if suffix == ".npy":
        depth = np.load(path)
    elif suffix == ".npz":
        depth = read_npz_depth(path)
    else:
        raise BadInputError(path, f"unsupported depth file type (use {DEPTH_EXTENSIONS})")
    depth = np.squeeze(depth)
    if depth.ndim != 2:
        raise BadInputError(path, f"expected a 2-D depth map, got shape {depth.shape}")
    return depth.astype(np.float32)


# ---------------------------------------------------------------- KITTI ----


@dataclasses.dataclass(frozen=True)
class KittiEntry:
    """One line of a KITTI split file: ``<date>/<drive> <frame> <l|r>``."""

    drive: str  # "2011_09_26/2011_09_26_drive_0002_sync"
    frame: int
    side: str  # "l" or "r"

    @property
    def name(self):
        return f"{self.drive} {self.frame:010d} {self.side}"

    @property
    def camera(self):
        return KITTI_CAMERAS[self.side]


def read_kitti_split(path):
    """A KITTI split file → list of :class:`KittiEntry`."""
    path = _require_file(path)
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[2] not in KITTI_CAMERAS or not parts[1].isdigit():
            raise BadInputError(f"{path}:{number}", f"expected '<date>/<drive> <frame> <l|r>', got {line!r}")
        entries.append(KittiEntry(parts[0], int(parts[1]), parts[2]))
    return entries


def kitti_image_path(kitti_root, entry):
    """Path of a raw KITTI colour image (``.png``, or ``.jpg`` if converted)."""
    folder = pathlib.Path(kitti_root) / entry.drive / f"image_0{entry.camera}" / "data"
    stem = folder / f"{entry.frame:010d}"
    for suffix in (".png", ".jpg"):
        if stem.with_suffix(suffix).is_file():
            return stem.with_suffix(suffix)
    raise FileNotFoundError(f"{stem}.png: KITTI image not found (nor .jpg)")


def read_calib_file(path):
    """A KITTI calibration text file → dict of name → float64 array (non-numeric lines skipped)."""
    calib = {}
    for line in _require_file(path).read_text().splitlines():
        key, _, value = line.partition(":")
        try:
            calib[key.strip()] = np.array([float(x) for x in value.split()])
        except ValueError:
            continue
    return calib


def velodyne_to_image_matrix(cam_to_cam, velo_to_cam, camera):
    """The ``[3, 4]`` projection ``P_rect_0c · R_rect_00 · [R|T]`` from Velodyne to image.

    Args:
        cam_to_cam, velo_to_cam: dicts of :func:`read_calib_file` for
            ``calib_cam_to_cam.txt`` and ``calib_velo_to_cam.txt``.
        camera: 2 (left colour) or 3 (right colour).
    Returns:
        ``[3, 4]`` float64; its third output row is the rectified camera depth.
    """
    velo_to_rect_cam0 = np.eye(4)
    velo_to_rect_cam0[:3, :3] = velo_to_cam["R"].reshape(3, 3)
    velo_to_rect_cam0[:3, 3] = velo_to_cam["T"]
    rectify = np.eye(4)
    rectify[:3, :3] = cam_to_cam["R_rect_00"].reshape(3, 3)
    projection = cam_to_cam[f"P_rect_0{camera}"].reshape(3, 4)
    return projection @ rectify @ velo_to_rect_cam0


def nearest_depth_map(rows, cols, depths, height, width):
    """Rasterises points into a depth map, keeping the nearest where several share a pixel.

    Args:
        rows, cols: ``[N]`` int pixel indices, all inside the image.
        depths: ``[N]`` positive float depths in metres.
    Returns:
        ``[height, width]`` float32, 0 where no point landed.
    """
    flat = rows * width + cols
    order = np.lexsort((depths, flat))  # by pixel, nearest first
    flat, depths = flat[order], depths[order]
    first = np.ones(flat.shape, dtype=bool)
    first[1:] = flat[1:] != flat[:-1]
    depth_map = np.zeros(height * width, dtype=np.float32)
    depth_map[flat[first]] = depths[first]
    return depth_map.reshape(height, width)


def project_velodyne(points, velo_to_image, height, width, camera_depth=False):
    """Projects a Velodyne scan into a sparse depth map, as the KITTI devkit does.

    Points behind the scanner (forward ``x <= 0``) or behind the camera are
    dropped. Pixel indices are ``round(u) - 1``, ``round(v) - 1`` (the devkit's
    1-based rounding, as in every published Eigen evaluation); points outside
    the image are dropped; the nearest point wins on a shared pixel.

    Args:
        points: ``[N, 4]`` (or ``[N, 3]``) float Velodyne points ``(x forward,
            y left, z up[, reflectance])`` in metres.
        velo_to_image: ``[3, 4]`` projection from :func:`velodyne_to_image_matrix`.
        height, width: image size in pixels.
        camera_depth: depth is the rectified camera ``z`` if True, else the
            Velodyne forward ``x`` (the Eigen-split convention of SfMLearner,
            struct2depth and Monodepth; Monodepth2 uses camera ``z``).
    Returns:
        ``[height, width]`` float32 depth in metres, 0 = no point.
    """
    points = np.asarray(points, dtype=np.float64)[:, :3]
    points = points[points[:, 0] > 0.0]
    projected = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ velo_to_image.T
    in_front = projected[:, 2] > 0.0
    points, projected = points[in_front], projected[in_front]
    cols = (np.round(projected[:, 0] / projected[:, 2]) - 1).astype(np.int64)
    rows = (np.round(projected[:, 1] / projected[:, 2]) - 1).astype(np.int64)
    depths = projected[:, 2] if camera_depth else points[:, 0]
    inside = (cols >= 0) & (rows >= 0) & (cols < width) & (rows < height)
    return nearest_depth_map(rows[inside], cols[inside], depths[inside], height, width)


def kitti_velodyne_depth(kitti_root, entry, camera_depth=False):
    """Ground-truth depth of one KITTI raw frame from its Velodyne scan.

    Reads ``<date>/calib_{cam_to_cam,velo_to_cam}.txt`` and
    ``<drive>/velodyne_points/data/<frame>.bin`` (float32 ``[N, 4]``); the size
    is the calibration's ``S_rect_0c``.
    Returns:
        ``[H, W]`` float32 metres, 0 = missing.
    """
    root = pathlib.Path(kitti_root)
    date = entry.drive.split("/")[0]
    cam_to_cam = read_calib_file(root / date / "calib_cam_to_cam.txt")
    velo_to_cam = read_calib_file(root / date / "calib_velo_to_cam.txt")
    width, height = cam_to_cam[f"S_rect_0{entry.camera}"].astype(int)
    scan_dir = root / entry.drive / "velodyne_points" / "data"
    scan_path = _require_file(scan_dir / f"{entry.frame:010d}.bin")
    points = np.fromfile(scan_path, dtype=np.float32)
    if points.size % 4:
        raise BadInputError(scan_path, "size is not a multiple of 4 float32 values")
    matrix = velodyne_to_image_matrix(cam_to_cam, velo_to_cam, entry.camera)
    return project_velodyne(points.reshape(-1, 4), matrix, height, width, camera_depth)


def _cache_convention(camera_depth):
    return "camera_z" if camera_depth else "velodyne_x"


def load_or_build_velodyne_cache(kitti_root, entries, cache_path, camera_depth=False):
    """Projects every entry's scan once and stores the depth maps in an ``.npz``.

    The archive holds ``names`` (the split's entries), ``convention`` and one
    ``depth_<i>`` float32 array per entry. An existing cache is reused when its
    names and convention match, otherwise it is an error (delete it to rebuild).
    Returns:
        the open ``np.lib.npyio.NpzFile``.
    """
    cache_path = pathlib.Path(cache_path)
    names = np.array([entry.name for entry in entries])
    convention = _cache_convention(camera_depth)
    if not cache_path.is_file():
        depths = {
            f"depth_{i}": kitti_velodyne_depth(kitti_root, entry, camera_depth)
            for i, entry in enumerate(tqdm.tqdm(entries, desc="projecting Velodyne", unit="scan"))
        }
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache_path, names=names, convention=np.array(convention), **depths)
    cache = np.load(cache_path)
    if list(cache["names"]) != list(names) or str(cache["convention"]) != convention:
        raise BadInputError(
            cache_path, "cached ground truth is for another split or depth convention; "
            "delete it to rebuild"
        )
    return cache


def kitti_eigen_samples(kitti_root, split_file, cache_path, camera_depth=False):
    """KITTI Eigen test split with Velodyne ground truth and the Garg crop.

    Args:
        kitti_root: KITTI raw root (``<date>/<drive>/...`` and ``<date>/calib_*.txt``).
        split_file: ``eigen/test_files.txt``.
        cache_path: ``.npz`` where the projected depth maps are cached.
        camera_depth: see :func:`project_velodyne`.
    Returns:
        :class:`Samples`.
    """
    entries = read_kitti_split(split_file)
    cache = load_or_build_velodyne_cache(kitti_root, entries, cache_path, camera_depth)

    def iterate():
        for i, entry in enumerate(entries):
            image = read_image(kitti_image_path(kitti_root, entry))
            yield DepthSample(entry.name, image, cache[f"depth_{i}"], GARG_CROP)

    return Samples(len(entries), iterate)


def kitti_improved_depth_path(kitti_root, entry, depth_root=None):
    """Path of an improved ground-truth PNG.

    Looks in ``<kitti_root>/<date>/<drive>/proj_depth/groundtruth/image_0c/`` and,
    when ``depth_root`` is given, in the depth benchmark's own layout
    ``<depth_root>/{train,val}/<drive>/proj_depth/groundtruth/image_0c/``.
    """
    relative = pathlib.Path(
        "proj_depth", "groundtruth", f"image_0{entry.camera}", f"{entry.frame:010d}.png"
    )
    candidates = [pathlib.Path(kitti_root) / entry.drive / relative]
    if depth_root:
        drive = entry.drive.split("/")[-1]
        candidates += [pathlib.Path(depth_root) / part / drive / relative for part in ("train", "val")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"improved ground truth of {entry.name} not found; tried {tried}")


def kitti_benchmark_samples(kitti_root, split_file, depth_root=None):
    """KITTI Eigen benchmark split with the improved annotated ground truth and the Garg crop.

    Args:
        kitti_root: KITTI raw root (images).
        split_file: ``eigen_benchmark/test_files.txt``.
        depth_root: optional root of ``data_depth_annotated`` (see :func:`kitti_improved_depth_path`).
    Returns:
        :class:`Samples`.
    """
    entries = read_kitti_split(split_file)

    def iterate():
        for entry in entries:
            image = read_image(kitti_image_path(kitti_root, entry))
            depth = read_png_depth(kitti_improved_depth_path(kitti_root, entry, depth_root))
            yield DepthSample(entry.name, image, depth, GARG_CROP)

    return Samples(len(entries), iterate)


# ----------------------------------------------------------- Cityscapes ----


def cityscapes_disparity_to_depth(values, baseline, fx):
    """Cityscapes disparity PNG values → depth.

    Args:
        values: ``[H, W]`` uint16; disparity in pixels is ``(p - 1) / 256`` for
            ``p > 0`` (0 = invalid).
        baseline: stereo baseline in metres; fx: focal length in pixels.
    Returns:
        ``[H, W]`` float32 depth ``baseline · fx / disparity`` in metres, 0 where
        the disparity is invalid or zero.
    """
    disparity = (values.astype(np.float64) - 1.0) / 256.0
    valid = (values > 0) & (disparity > 0)
    depth = np.zeros(values.shape, dtype=np.float32)
    depth[valid] = baseline * fx / disparity[valid]
    return depth


def read_cityscapes_camera(path):
    """A Cityscapes camera JSON → ``(baseline metres, fx pixels)``."""
    camera = json.loads(_require_file(path).read_text())
    try:
        return float(camera["extrinsic"]["baseline"]), float(camera["intrinsic"]["fx"])
    except KeyError as error:
        raise BadInputError(path, f"missing camera field {error}") from None


def cityscapes_samples(cityscapes_root, split="test"):
    """Cityscapes frames with depth from disparity, ego car removed, central crop.

    Layout: ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png``,
    ``disparity/<split>/<city>/<stem>_disparity.png``,
    ``camera/<split>/<city>/<stem>_camera.json``. Image and depth keep the top
    :data:`CITYSCAPES_KEEP_ROWS` of rows; metrics use :data:`CITYSCAPES_CROP`.
    Returns:
        :class:`Samples`.
    """
    root = pathlib.Path(cityscapes_root)
    image_paths = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
    if not image_paths:
        raise FileNotFoundError(f"{root / 'leftImg8bit' / split}: no '*/*_leftImg8bit.png' images")

    def iterate():
        for image_path in image_paths:
            city = image_path.parent.name
            stem = image_path.name[: -len("_leftImg8bit.png")]
            disparity_path = _require_file(root / "disparity" / split / city / f"{stem}_disparity.png")
            values = tf.io.decode_png(tf.io.read_file(str(disparity_path)), channels=1, dtype=tf.uint16)
            baseline, fx = read_cityscapes_camera(root / "camera" / split / city / f"{stem}_camera.json")
            depth = cityscapes_disparity_to_depth(values.numpy()[..., 0], baseline, fx)
            image = read_image(image_path)
            keep = int(round(CITYSCAPES_KEEP_ROWS * image.shape[0]))
            yield DepthSample(f"{city}/{stem}", image[:keep], depth[:keep], CITYSCAPES_CROP)

    return Samples(len(image_paths), iterate)


# ------------------------------------------------------- folders, TFDS ----


def folder_samples(image_dir, depth_dir, crop=None, png_scale=features.DEPTH_PNG_SCALE):
    """Frames in one folder, ground-truth depth files with the same stem in another.

    Args:
        image_dir: folder of ``.png``/``.jpg`` frames (sorted by name).
        depth_dir: folder of ``<stem>.npy``/``.npz``/``.png`` depth files (see :func:`read_depth_file`).
        crop: ``(top, bottom, left, right)`` fractions evaluated, or None.
        png_scale: PNG value per metre.
    Returns:
        :class:`Samples`.
    Raises:
        FileNotFoundError: naming the folder, or the depth file an image lacks
            (checked for every image before anything is read).
    """
    image_dir = pathlib.Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir}: image folder not found")
    image_paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not image_paths:
        raise FileNotFoundError(f"{image_dir}: no {IMAGE_EXTENSIONS} images")
    depth_paths = [_depth_path(depth_dir, path) for path in image_paths]

    def iterate():
        for path, depth_path in zip(image_paths, depth_paths):
            depth = read_depth_file(depth_path, png_scale)
            yield DepthSample(path.stem, read_image(path), depth, crop)

    return Samples(len(image_paths), iterate)


def _depth_path(depth_dir, image_path):
    """``<depth_dir>/<stem>`` + the first of :data:`DEPTH_EXTENSIONS` that exists; raises FileNotFoundError."""
    for suffix in DEPTH_EXTENSIONS:
        candidate = pathlib.Path(depth_dir) / f"{image_path.stem}{suffix}"
        if candidate.is_file():
            return candidate
    missing = pathlib.Path(depth_dir) / f"{image_path.stem}.*"
    raise FileNotFoundError(f"{missing}: no depth file for {image_path}")


MIDDLE_FRAME = features.FRAMES_PER_EXAMPLE // 2


def tfds_samples(dataset_dir, split="test"):
    """The middle frame of each triplet of a TFDS dataset that stores ``depth``.

    Args:
        dataset_dir: the dataset's version folder (holding ``dataset_info.json``).
        split: split name.
    Returns:
        :class:`Samples`; names are ``<video_id>/<frame_id>``; no crop.
    """
    builder = tfds.builder_from_directory(str(dataset_dir))
    if features.DEPTH not in builder.info.features:
        raise BadInputError(dataset_dir, f"dataset has no '{features.DEPTH}' feature to evaluate against")
    if split not in builder.info.splits:
        raise BadInputError(dataset_dir, f"no split {split!r} (has {list(builder.info.splits)})")

    def iterate():
        for example in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
            video = example[features.VIDEO_ID].decode()
            name = f"{video}/{example[features.FRAME_IDS][MIDDLE_FRAME].decode()}"
            depth = features.decode_depth(example[features.DEPTH][MIDDLE_FRAME, ..., 0]).numpy()
            yield DepthSample(name, example[features.RGB][MIDDLE_FRAME], depth, None)

    return Samples(builder.info.splits[split].num_examples, iterate)
