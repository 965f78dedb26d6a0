"""Depth, motion and point clouds for images, folders, globs or videos.

    python -m depth_motion_tf.predict --input=clip.mp4 --saved_model=runs/kitti/saved_model \\
        --output_dir=/tmp/clip [--batch_size=8] [--ply] [--intrinsics=cam.json]

The model is a SavedModel (``--saved_model``, signatures ``depth`` and
``motion``) or a training run (``--model_dir`` and optionally
``--checkpoint``); frames of any size are resized to the model's resolution
inside. Outputs in ``--output_dir``, ``<name>`` being the image's file stem or
the video frame's index (``000000``, ...):

- ``<name>_depth.npy``: float32 ``[H, W]`` depth at the input size (learned units);
  ``<name>_depth.png``: its disparity, plasma colour map (near = bright).
- For each pair of consecutive frames ``(a, b)`` (run at b's size):
  ``<a>_<b>_motion.npy``: float32 ``[h, w, 3]`` residual translation field
  (at the model's resolution ``h x w``); ``<a>_<b>_motion.png``: its magnitude
  at b's size (viridis); and a line ``a b rx ry rz tx ty tz`` of
  ``camera_motion.txt`` (rotation in radians, ``R = Rx Ry Rz``; translation of
  camera a→b in depth units).
- ``--ply``: ``<name>.ply``, the frame's points with their colours, back-projected
  with ``--intrinsics`` or else the motion network's learned intrinsics (a model trained
  with ``--intrinsics=learned`` only; otherwise ``--intrinsics`` is required).
- A video input also gives ``<video stem>_side_by_side.mp4``: input | depth |
  motion (of the pair ending at each frame; black for the first).
"""
import dataclasses
import glob
import pathlib
from typing import Iterable, Optional

import av
import numpy as np
import tensorflow as tf
import tqdm
from absl import flags

from depth_motion_tf import cli, evaluate, export, media, visualize

CAMERA_MOTION_FILE = "camera_motion.txt"
PLY_FORMATS = ("binary", "ascii")
DEFAULT_FPS = 10.0


# ------------------------------------------------------------------ inputs ----


@dataclasses.dataclass
class Source:
    """The frames to predict on.

    Attributes:
        frames: iterable of :class:`depth_motion_tf.media.FrameRef` (``frame_id`` names the outputs).
        count: number of frames when known (for the progress bar), else None.
        video: the video file, None for images.
        fps: the video's frame rate (frames per second), for the side-by-side video.
    """

    frames: Iterable[media.FrameRef]
    count: Optional[int]
    video: Optional[pathlib.Path] = None
    fps: float = DEFAULT_FPS


def find_inputs(pattern):
    """Resolves ``--input``: an image, a folder of images, a glob of images, or a video file.

    Returns:
        :class:`Source`.
    Raises:
        FileNotFoundError: naming ``pattern`` when it matches no image or video.
        media.BadInputError: naming the file when a video cannot be opened.
        ValueError: when two images of a glob share a file stem (their outputs would collide).
    """
    path = pathlib.Path(pattern)
    if path.is_file() and path.suffix.lower() in media.VIDEO_SUFFIXES:
        return video_source(path)
    if path.is_file():
        images = [path] if path.suffix.lower() in media.IMAGE_SUFFIXES else []
    elif path.is_dir():
        images = media.frame_files(path)
    else:
        images = [
            pathlib.Path(p)
            for p in sorted(glob.glob(pattern))
            if pathlib.Path(p).suffix.lower() in media.IMAGE_SUFFIXES
        ]
    if not images:
        kinds = ", ".join(media.IMAGE_SUFFIXES + media.VIDEO_SUFFIXES)
        raise FileNotFoundError(f"{pattern}: no images or video found ({kinds})")
    _check_unique_stems(images)
    return Source(media.file_frames(images), len(images))


def _check_unique_stems(paths):
    """Raises ValueError naming two files whose outputs would share a name."""
    seen = {}
    for path in paths:
        if path.stem in seen:
            raise ValueError(f"{seen[path.stem]} and {path}: same file stem, outputs would collide")
        seen[path.stem] = path


def video_source(path):
    """A video file's frames (decoded lazily with PyAV), frame count and rate.

    Raises:
        media.BadInputError: naming the file when it cannot be opened as a video.
    """
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            count = stream.frames or None
            fps = float(stream.average_rate) if stream.average_rate else DEFAULT_FPS
    except (av.error.FFmpegError, IndexError) as error:
        raise media.BadInputError(path, f"cannot be read as a video: {error}") from None
    return Source(media.decoded_frames(path, 1, None), count, path, fps)


def same_size_batches(frames, batch_size):
    """Loads frames and groups consecutive ones of one size.

    Args:
        frames: iterable of :class:`depth_motion_tf.media.FrameRef`.
        batch_size: the most frames per batch.
    Yields:
        ``(names, images)``: a list of frame ids and their ``[B, H, W, 3]`` uint8 stack.
    """
    names, images = [], []
    for frame in frames:
        image = frame.load()
        if names and (len(names) == batch_size or image.shape != images[0].shape):
            yield names, np.stack(images)
            names, images = [], []
        names.append(frame.frame_id)
        images.append(image)
    if names:
        yield names, np.stack(images)


# ------------------------------------------------------------------ geometry --


def backproject(depth, intrinsics):
    """Pinhole back-projection of every pixel: ``X = D (u - cx) / fx``, ``Y = D (v - cy) / fy``, ``Z = D``.

    Args:
        depth: ``[H, W]`` float depth.
        intrinsics: ``(fx, fy, cx, cy)`` in pixels, ``(u, v) = (0, 0)`` the centre
            of the top-left pixel.
    Returns:
        ``[H * W, 3]`` float32 camera coordinates (x right, y down, z forward; depth
        units), row-major pixel order.
    """
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    height, width = depth.shape
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    points = np.stack([depth * (u - cx) / fx, depth * (v - cy) / fy, depth], axis=-1)
    return points.reshape(-1, 3).astype(np.float32)


def matrix_to_vector(intrinsics):
    """``[3, 3]`` intrinsics matrix → ``(fx, fy, cx, cy)``."""
    k = np.asarray(intrinsics)
    return k[0, 0], k[1, 1], k[0, 2], k[1, 2]


def write_ply(path, points, colours, ply_format="binary"):
    """Writes a coloured point cloud as PLY.

    Args:
        path: output file.
        points: ``[N, 3]`` float32 coordinates.
        colours: ``[N, 3]`` uint8 RGB.
        ply_format: ``binary`` (little endian) or ``ascii``.
    Returns:
        ``path``.
    """
    encoding = "binary_little_endian" if ply_format == "binary" else "ascii"
    header = (
        f"ply\nformat {encoding} 1.0\nelement vertex {len(points)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    vertices = np.empty(
        len(points), [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")]
    )
    for name, values in zip("xyz", np.asarray(points, np.float32).T):
        vertices[name] = values
    for name, values in zip("rgb", np.asarray(colours, np.uint8).T):
        vertices[name] = values
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        if ply_format == "binary":
            f.write(vertices.tobytes())
        else:
            np.savetxt(f, vertices, fmt="%.6g %.6g %.6g %d %d %d")
    return path


# ------------------------------------------------------------------ pictures --


def to_uint8(rgb):
    """``[..., 3]`` float RGB in [0, 1] → uint8."""
    return np.round(np.clip(np.asarray(rgb), 0.0, 1.0) * 255.0).astype(np.uint8)


def write_png(path, image):
    """Writes an ``[H, W, 3]`` uint8 image as PNG."""
    tf.io.write_file(str(path), tf.io.encode_png(image))


def motion_colours(fields, height, width):
    """Residual fields ``[B, h, w, 3]`` → magnitudes at ``height x width``, colour-mapped: ``[B, H, W, 3]`` uint8."""
    resized = tf.image.resize(fields, [height, width], method="bilinear")
    return to_uint8(visualize.colorize_magnitude(resized))


def side_by_side(image, depth_colour, motion_colour):
    """``[H, 3W, 3]`` uint8 panel, padded by one edge row/column where H or 3W is odd (for H.264)."""
    panel = np.concatenate([image, depth_colour, motion_colour], axis=1)
    pad = [(0, panel.shape[0] % 2), (0, panel.shape[1] % 2), (0, 0)]
    return np.pad(panel, pad, mode="edge")


class VideoWriter:
    """Encodes RGB frames into an H.264 mp4 with PyAV; the size comes from the first frame."""

    def __init__(self, path, fps):
        self.path = pathlib.Path(path)
        self.container = av.open(str(path), mode="w")
        self.stream = self.container.add_stream("libx264", rate=round(fps))
        self.stream.pix_fmt = "yuv420p"
        self.frames = 0

    def write(self, image):
        """Appends one ``[H, W, 3]`` uint8 frame (H, W even)."""
        if self.frames == 0:
            self.stream.height, self.stream.width = image.shape[:2]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def close(self):
        """Flushes the encoder and closes the file."""
        self.container.mux(self.stream.encode(None))
        self.container.close()


# ------------------------------------------------------------------ the run ---


@dataclasses.dataclass
class Options:
    """What :func:`predict` writes besides depth and motion.

    Attributes:
        ply_format: ``binary``, ``ascii``, or None for no point clouds.
        intrinsics: :class:`depth_motion_tf.media.Intrinsics` of the input frames for the
            point clouds; None: the motion network's learned intrinsics.
        batch_size: frames per model call.
        progress: show a progress bar.
    """

    ply_format: Optional[str] = None
    intrinsics: Optional[media.Intrinsics] = None
    batch_size: int = 8
    progress: bool = True


@dataclasses.dataclass
class Summary:
    """What :func:`predict` did: ``frames`` and ``pairs`` counted, ``video`` the side-by-side mp4 or None."""

    frames: int = 0
    pairs: int = 0
    video: Optional[pathlib.Path] = None


def predict(signatures, source, output_dir, options=Options()):
    """Writes depth, motion, camera motion (and point clouds, side-by-side video) for ``source``.

    Args:
        signatures: :class:`depth_motion_tf.export.Signatures`.
        source: :class:`Source`.
        output_dir: output folder (created).
        options: :class:`Options`.
    Returns:
        :class:`Summary`.
    """
    if options.ply_format and options.intrinsics is None:
        require_learned_intrinsics(signatures)
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    writer = None
    if source.video is not None:
        writer = VideoWriter(output_dir / f"{source.video.stem}_side_by_side.mp4", source.fps)
        summary.video = writer.path
    previous = None
    with open(output_dir / CAMERA_MOTION_FILE, "w") as motion_file, tqdm.tqdm(
        total=source.count, unit="frame", disable=not options.progress
    ) as bar:
        motion_file.write("# frame1 frame2 rx ry rz (radians, R = Rx Ry Rz) tx ty tz (camera 1->2)\n")
        for names, images in same_size_batches(source.frames, options.batch_size):
            depth_colours = predict_depth(signatures, names, images, output_dir, options)
            pair_lines, motion_panels = predict_motion(signatures, previous, names, images, output_dir)
            motion_file.writelines(pair_lines)
            if writer is not None:
                for image, depth_colour, motion_colour in zip(images, depth_colours, motion_panels):
                    writer.write(side_by_side(image, depth_colour, motion_colour))
            previous = (names[-1], images[-1])
            summary.frames += len(names)
            summary.pairs += len(pair_lines)
            bar.update(len(names))
    if writer is not None:
        writer.close()
    return summary


def predict_depth(signatures, names, images, output_dir, options):
    """Depth ``.npy``/``.png`` (and ``.ply``) of one batch; returns the ``[B, H, W, 3]`` uint8 colours."""
    depth = signatures.depth(image=tf.constant(images))["depth"].numpy()[..., 0]
    colours = to_uint8(visualize.colorize_disparity(depth))
    for name, frame_depth, colour in zip(names, depth, colours):
        np.save(output_dir / f"{name}_depth.npy", frame_depth.astype(np.float32))
        write_png(output_dir / f"{name}_depth.png", colour)
    if options.ply_format:
        for name, frame_depth, image, k in zip(
            names, depth, images, frame_intrinsics(signatures, images, options.intrinsics)
        ):
            points = backproject(frame_depth, k)
            write_ply(output_dir / f"{name}.ply", points, image.reshape(-1, 3), options.ply_format)
    return colours


def require_learned_intrinsics(signatures):
    """Raises ``BadInputError`` naming the model when its ``motion`` signature predicts no intrinsics."""
    frame = tf.zeros([1, 32, 32, 3], tf.uint8)
    if "intrinsics" not in signatures.motion(image1=frame, image2=frame):
        raise media.BadInputError(
            signatures.source,
            "predicts no intrinsics (trained with --intrinsics=given or learned_per_video): "
            "pass --intrinsics for the point clouds",
        )


def frame_intrinsics(signatures, images, intrinsics):
    """``(fx, fy, cx, cy)`` in pixels for each image of a ``[B, H, W, 3]`` batch.

    The given :class:`~depth_motion_tf.media.Intrinsics`, or, when None, the motion
    network's learned intrinsics of each frame paired with itself (so that a
    frame's point cloud does not depend on its neighbours).
    """
    height, width = images.shape[1:3]
    if intrinsics is not None:
        return [intrinsics.in_pixels(height, width)] * len(images)
    batch = tf.constant(images)
    learned = signatures.motion(image1=batch, image2=batch)["intrinsics"].numpy()
    return [matrix_to_vector(k) for k in learned]


def predict_motion(signatures, previous, names, images, output_dir):
    """Motion of the consecutive pairs ending in this batch (the first one starts at ``previous``).

    A pair is run at its second frame's size: a previous frame of another size
    is resized to it first.

    Args:
        previous: ``(name, image)`` of the frame before the batch, or None.
        names, images: the batch (``[B, H, W, 3]`` uint8).
    Returns:
        ``(lines, panels)``: the ``camera_motion.txt`` lines of the pairs, and per
        frame of the batch the ``[H, W, 3]`` uint8 colour of the pair ending at it
        (black where there is none).
    """
    firsts = list(zip(names[:-1], images[:-1]))
    if previous is not None:
        firsts.insert(0, (previous[0], evaluate.resize_image(previous[1], images.shape[1:3])))
    panels = np.zeros_like(images)
    if not firsts:
        return [], panels
    count = len(firsts)
    out = signatures.motion(
        image1=tf.constant(np.stack([image for _, image in firsts])),
        image2=tf.constant(images[-count:]),
    )
    fields = out["residual_translation"].numpy()
    panels[-count:] = motion_colours(fields, *images.shape[1:3])
    lines = []
    for (first, _), second, field, panel, rotation, translation in zip(
        firsts, names[-count:], fields, panels[-count:], out["rotation"].numpy(),
        out["translation"].numpy(),
    ):
        np.save(output_dir / f"{first}_{second}_motion.npy", field.astype(np.float32))
        write_png(output_dir / f"{first}_{second}_motion.png", panel)
        values = " ".join(f"{v:.6g}" for v in (*rotation, *translation))
        lines.append(f"{first} {second} {values}\n")
    return lines, panels


# ------------------------------------------------------------------ CLI ----


def define_flags(flag_values=flags.FLAGS):
    """Declares the CLI flags on ``flag_values`` (not at import)."""
    fv = flag_values
    flags.DEFINE_string(
        "input", None, "An image, a folder of images, a quoted glob ('frames/*.jpg') or a video "
        "file (mp4/mov/avi/...).", flag_values=fv)
    flags.DEFINE_string("output_dir", None, "Where the outputs are written.", flag_values=fv)
    flags.DEFINE_string(
        "saved_model", None, "SavedModel folder (signatures depth and motion).", flag_values=fv)
    flags.DEFINE_string(
        "model_dir", None, "Or a training run folder (config.json, checkpoints/).", flag_values=fv)
    flags.DEFINE_string(
        "checkpoint", None, "With --model_dir: checkpoint path (default: the latest).",
        flag_values=fv)
    flags.DEFINE_integer("batch_size", 8, "Frames per model call (default 8).", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_bool("ply", False, "Also write one coloured point cloud <name>.ply per frame.",
                      flag_values=fv)
    flags.DEFINE_enum("ply_format", "binary", PLY_FORMATS, "PLY encoding (default binary).",
                      flag_values=fv)
    flags.DEFINE_string(
        "intrinsics", None,
        "Intrinsics for --ply: 'fx,fy,cx,cy' in pixels of the input, or a JSON file (a 3x3 "
        "matrix, normalised by the frame size when cx, cy <= 1; nuScenes' camera_intrinsic; or "
        "fx/fy/cx/cy keys). Default: the motion network's learned intrinsics (models trained with "
        "--intrinsics=learned only).", flag_values=fv)
    flags.mark_flags_as_required(["input", "output_dir"], flag_values=fv)
    flags.mark_flags_as_mutual_exclusive(["saved_model", "model_dir"], required=True,
                                         flag_values=fv)


def run(fv):
    """Predicts as the parsed flags say and prints one summary line; returns the :class:`Summary`."""
    cli.check_paths(fv, ["saved_model", "model_dir"])
    source = find_inputs(fv.input)
    options = Options(
        ply_format=fv.ply_format if fv.ply else None,
        intrinsics=media.parse_intrinsics_flag(fv.intrinsics),
        batch_size=fv.batch_size,
    )
    signatures = export.load_signatures(fv.saved_model, fv.model_dir, fv.checkpoint)
    summary = predict(signatures, source, fv.output_dir, options)
    written = ["depth .npy/.png", "motion .npy/.png", CAMERA_MOTION_FILE]
    if options.ply_format:
        written.append(f"{options.ply_format} .ply")
    if summary.video:
        written.append(summary.video.name)
    print(
        f"Predicted {summary.frames} frames and {summary.pairs} pairs of {fv.input} with "
        f"{signatures.source}: {', '.join(written)} in {fv.output_dir}"
    )
    return summary


def main(argv):
    del argv
    run(flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
