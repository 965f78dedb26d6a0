r"""A procedural synthetic video dataset with exact depth, poses and motion masks.

Something to train on without downloading anything: a camera drives down a
closed, textured street-like corridor (ground, two side walls, a ceiling, end
walls) lined with static boxes, while a few boxes slide along two traffic
lanes (``parked_fraction`` of the lanes stand still instead) and, optionally,
``crossing_boxes`` cross the corridor ahead of the camera
(``waiting_fraction`` of them wait where they would start). Every frame is
ray cast in numpy, so depth, camera poses and the moving-object mask are
exact, and the data obeys the method's geometry
(METHOD.md §3): a static point seen in frame t lands, through its depth and
the relative camera pose, on a pixel of the same colour in frame t+1.

Conventions:
- World and camera frames are the computer-vision ones: x right, y down,
  z forward, metres. The ground is the plane ``y = camera_height``; the camera
  stays level (no pitch or roll), so the horizon is the row ``cy``.
- Intrinsics ``(fx, fy, cx, cy)`` in pixels, (0, 0) the centre of the top-left
  pixel; square pixels, an 80° horizontal field of view, principal point at
  the image centre.
- Depth is z-depth along the optical axis (not ray length), finite and
  positive at every pixel (the corridor is closed).
- Time is the frame index; moving boxes translate by a constant velocity per
  frame (rigid, no rotation), as the method's translation field assumes.
- Lighting is fixed (albedo times a view-independent Lambertian term of the
  face normal), so brightness constancy holds exactly. Textures are sums of
  sinusoids in surface coordinates, band-limited per pixel by an analytic
  Gaussian prefilter, and pixels on silhouettes and creases are supersampled:
  no aliasing shimmer.

The TFDS builder :class:`Synthetic` stores triplets ``(t-1, t, t+1)`` of every
video with the shared schema (``depth_motion_tf.features``), including depth,
poses and masks. Command line::

    python -m data_prep.synthetic --output=DIR --height=64 --width=192 \
        --train_videos=16 --test_videos=4 --frames_per_video=24 --seed=0
"""

import dataclasses
import math
import time

import numpy as np
import tensorflow_datasets as tfds
import tqdm
from absl import flags

from data_prep import convert, fingerprint
from depth_motion_tf import cli
from depth_motion_tf import features as F

HORIZONTAL_FOV_DEG = 80.0
NUM_SINUSOIDS = 16
WAVELENGTH_RANGE_M = (0.15, 4.0)
TEXTURE_CONTRAST = 0.16  # standard deviation of a material's albedo pattern
LIGHT_DIRECTION = np.array([0.3, -1.0, -0.5]) / np.linalg.norm([0.3, -1.0, -0.5])
AMBIENT, DIFFUSE = 0.6, 0.4
PREFILTER_WIDTH = 0.6  # Gaussian std of the texture prefilter, in footprints
MIN_COSINE = 0.05  # grazing-angle limit of the footprint stretch
LANE_X_M = 2.1  # |x| of the centre of the two moving-box lanes
CROSSING_SPEED_M = (0.15, 0.4)  # range of a crossing box's speed, metres per frame
CROSSING_AHEAD_M = 6.0  # a crossing box's least distance ahead of the camera's last position
FAR_WALL_MARGIN_M = 3.0  # no box's centre is nearer the far wall than this
CAMERA_CLEARANCE_M = 0.6  # the camera's |x| never exceeds this


@dataclasses.dataclass(frozen=True)
class Materials:
    """Procedural textures: albedo = base + Σ colour · sin(k·uv + phase).

    Attributes:
        base: ``[M, 3]`` float64 mean albedo in [0, 1].
        wavevector: ``[M, K, 2]`` float64 angular frequencies in rad/m.
        phase: ``[M, K]`` float64 radians.
        colour: ``[M, K, 3]`` float64 RGB amplitude of each sinusoid.
    """

    base: np.ndarray
    wavevector: np.ndarray
    phase: np.ndarray
    colour: np.ndarray


@dataclasses.dataclass(frozen=True)
class Boxes:
    """Rigid boxes standing on the ground, rotated about the vertical axis.

    Attributes:
        centre: ``[N, 3]`` float64 world centre at frame 0, metres.
        half_size: ``[N, 3]`` float64 half extents along the box's own axes, metres.
        yaw: ``[N]`` float64 rotation about the world y axis, radians.
        velocity: ``[N, 3]`` float64 world translation per frame, metres (0 = static).
        material: ``[N]`` int index into :class:`Materials`.
    """

    centre: np.ndarray
    half_size: np.ndarray
    yaw: np.ndarray
    velocity: np.ndarray
    material: np.ndarray

    @property
    def moving(self):
        """``[N]`` bool, whether each box moves."""
        return np.any(self.velocity != 0.0, axis=1)

    def centre_at(self, frame):
        """``[N, 3]`` world centres at time ``frame`` (a frame index)."""
        return self.centre + frame * self.velocity


@dataclasses.dataclass(frozen=True)
class Scene:
    """One synthetic video's world and camera path.

    Attributes:
        room_min, room_max: ``[3]`` corners of the closed corridor, metres.
        room_material: ``[6]`` int material of the corridor faces, in the order
            x-min, x-max, y-min (ceiling), y-max (ground), z-min, z-max.
        boxes: the static and moving boxes.
        materials: all textures.
        speed: forward camera speed, metres per frame.
        sway: amplitude (metres), period (frames) and phase (radians) of the
            camera's lateral weaving.
        yaw_wobble: amplitude (radians), period (frames) and phase (radians) of
            an extra heading oscillation on top of the path's tangent.
    """

    room_min: np.ndarray
    room_max: np.ndarray
    room_material: np.ndarray
    boxes: Boxes
    materials: Materials
    speed: float
    sway: tuple
    yaw_wobble: tuple

    @property
    def camera_height(self):
        """Height of the camera above the ground, metres."""
        return float(self.room_max[1])


@dataclasses.dataclass(frozen=True)
class Frame:
    """One rendered frame.

    Attributes:
        rgb: ``[H, W, 3]`` uint8.
        depth: ``[H, W]`` float64 z-depth in metres, finite and positive.
        mask: ``[H, W]`` bool, pixels whose nearest surface is a moving box.
    """

    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray


# ----------------------------------------------------------------------------
# Scene generation.


def random_materials(rng, count):
    """``count`` random :class:`Materials` with multi-scale, coloured patterns."""
    wavelength = np.exp(
        rng.uniform(*np.log(WAVELENGTH_RANGE_M), size=(count, NUM_SINUSOIDS))
    )
    angle = rng.uniform(0.0, np.pi, size=(count, NUM_SINUSOIDS))
    wavevector = (2.0 * np.pi / wavelength)[..., None] * np.stack(
        [np.cos(angle), np.sin(angle)], axis=-1
    )
    amplitude = np.sqrt(wavelength)  # more contrast at coarse scales
    amplitude *= TEXTURE_CONTRAST / np.sqrt(
        np.sum(amplitude**2, axis=1, keepdims=True) / 2.0
    )
    tint = 0.7 + 0.3 * rng.normal(size=(count, NUM_SINUSOIDS, 3))
    return Materials(
        base=rng.uniform(0.25, 0.75, size=(count, 3)),
        wavevector=wavevector,
        phase=rng.uniform(0.0, 2.0 * np.pi, size=(count, NUM_SINUSOIDS)),
        colour=amplitude[..., None] * tint,
    )


def _static_boxes(rng, room_min, room_max, z_range, first_material):
    """Boxes along both walls (some floor-to-ceiling pillars), with small random yaw."""
    centres, half_sizes, yaws = [], [], []
    for side in (-1.0, 1.0):
        z = z_range[0] + rng.uniform(0.0, 3.0)
        while z < z_range[1]:
            half = rng.uniform([0.3, 0.3, 0.3], [0.9, 1.4, 1.2])
            if rng.uniform() < 0.3:
                half[1] = (room_max[1] - room_min[1]) / 2.0
            yaw = rng.uniform(-0.3, 0.3)
            x_extent = abs(math.cos(yaw)) * half[0] + abs(math.sin(yaw)) * half[2]
            wall = room_max[0] if side > 0 else -room_min[0]
            x = side * (wall - x_extent - rng.uniform(0.0, 0.4))
            centres.append([x, room_max[1] - half[1], z + half[2]])
            half_sizes.append(half)
            yaws.append(yaw)
            z += 2.0 * half[2] + rng.uniform(0.5, 4.0)
    count = len(centres)
    return Boxes(
        centre=np.array(centres).reshape(count, 3),
        half_size=np.array(half_sizes).reshape(count, 3),
        yaw=np.array(yaws),
        velocity=np.zeros((count, 3)),
        material=first_material + np.arange(count),
    )


def _moving_boxes(rng, ground_y, z_range, num_frames, first_material):
    """Boxes sliding along z in two lanes, each lane at one speed (so no overlaps).

    Boxes start in ``z_range``, those moving forward far enough from its end
    not to reach it within ``num_frames``.
    """
    centres, half_sizes, velocities = [], [], []
    for side in (-1.0, 1.0):
        speed = rng.choice([-1.0, 1.0]) * rng.uniform(0.15, 0.6)
        z = z_range[0] + rng.uniform(0.0, 10.0)
        while z < z_range[1] - max(speed, 0.0) * (num_frames - 1):
            half = rng.uniform([0.4, 0.4, 0.5], [0.65, 0.9, 1.5])
            x = side * (LANE_X_M + rng.uniform(-0.1, 0.1))
            centres.append([x, ground_y - half[1], z + half[2]])
            half_sizes.append(half)
            velocities.append([0.0, 0.0, speed])
            z += 2.0 * half[2] + rng.uniform(6.0, 20.0)
    count = len(centres)
    return Boxes(
        centre=np.array(centres).reshape(count, 3),
        half_size=np.array(half_sizes).reshape(count, 3),
        yaw=np.zeros(count),
        velocity=np.array(velocities).reshape(count, 3),
        material=first_material + np.arange(count),
    )


def _crossing_boxes(rng, count, room_max, z_range, num_frames, first_material):
    """``count`` car-like boxes crossing the corridor along x, one per slot of ``z_range``.

    Unlike the lanes' motion, which runs along the camera's path (so a
    moving box looks like a static one at another depth), crossing motion
    is across it. Each box stays between the side walls for the whole video
    (it may pass through the boxes along them: the renderer shows the
    nearest surface), and ``z_range`` lies beyond the camera's path, so the
    camera never reaches one.

    Args:
        room_max: ``[3]`` corridor corner (``x`` the half width, ``y`` the ground).
        z_range: ``(near, far)`` world z of the crossing boxes, metres.
    """
    half = rng.uniform([0.5, 0.4, 0.4], [1.5, 0.9, 0.65], size=(count, 3))
    span = 2.0 * (room_max[0] - half[:, 0])  # the centre's room between the walls
    speed = np.minimum(rng.uniform(*CROSSING_SPEED_M, size=count), span / (num_frames - 1))
    direction = rng.choice([-1.0, 1.0], size=count)
    travel = speed * (num_frames - 1)
    leftmost = -span / 2.0 + rng.uniform(size=count) * (span - travel)
    slot = (z_range[1] - z_range[0]) / count
    z = z_range[0] + slot * (np.arange(count) + rng.uniform(size=count))
    z = np.clip(z, z_range[0] + half[:, 2], z_range[1] - half[:, 2])
    return Boxes(
        centre=np.stack([np.where(direction > 0, leftmost, leftmost + travel),
                         room_max[1] - half[:, 1], z], -1),
        half_size=half,
        yaw=np.zeros(count),
        velocity=np.stack([direction * speed, np.zeros(count), np.zeros(count)], -1),
        material=first_material + np.arange(count),
    )


def _concat(a, b):
    """Two :class:`Boxes` (or :class:`Materials`) as one, ``a``'s first."""
    return type(a)(
        **{
            field.name: np.concatenate([getattr(a, field.name), getattr(b, field.name)])
            for field in dataclasses.fields(a)
        }
    )


def _stand_still(boxes, still):
    """``boxes`` with those where ``still`` (``[N]`` bool) standing still."""
    return dataclasses.replace(
        boxes, velocity=np.where(still[:, None], 0.0, boxes.velocity)
    )


def _park_lanes(boxes, parked):
    """``boxes`` with the lane boxes of the sides in ``parked`` standing still.

    Args:
        boxes: :class:`Boxes` of one scene.
        parked: ``[2]`` bool, whether the lane at ``x < 0`` and ``x > 0`` is parked.
    """
    side = (boxes.centre[:, 0] > 0).astype(int)
    return _stand_still(boxes, boxes.moving & parked[side])


def random_scene(
    rng, num_frames, parked_fraction=0.0, crossing_boxes=0, waiting_fraction=0.0,
    crossing_distance=(),
):
    """A random corridor, its boxes and camera path for a video of ``num_frames``.

    Args:
        rng: ``np.random.Generator``; the scene is a function of its state.
        num_frames: video length; every depth stays below 80 m (the
            evaluation cap) for videos of up to 50 frames; longer ones see the
            far wall beyond it at first.
        parked_fraction: probability that a traffic lane's boxes stand still
            (parked cars: the same kind of object, in the same place, static).
            Drawn after the rest of the scene, so a scene differs from the
            ``0.0`` one only in which lanes move.
        crossing_boxes: number of boxes crossing the corridor ahead of the
            camera's path (:func:`_crossing_boxes`). Drawn last: they add to
            the scene without changing the rest of it.
        waiting_fraction: probability that a crossing box stands still where
            it would start (a car waiting at the crossing: the same kind of
            object, in the same places, static). Drawn after everything
            else, so a scene differs from the ``0.0`` one only in which
            crossing boxes move.
        crossing_distance: ``(near, far)`` metres past the camera's last
            position between which the crossing boxes cross (nearer boxes
            cover more pixels and move more pixels a frame); empty: from
            :data:`CROSSING_AHEAD_M` to the far wall.
    Returns:
        :class:`Scene`.
    """
    speed = rng.uniform(0.35, 0.7)
    travel = speed * (num_frames - 1)
    camera_height = rng.uniform(1.3, 1.8)
    half_width = rng.uniform(4.5, 6.5)
    far_z = travel + rng.uniform(30.0, 45.0)
    room_min = np.array([-half_width, camera_height - rng.uniform(4.5, 7.0), -20.0])
    room_max = np.array([half_width, camera_height, far_z])
    last_z = far_z - FAR_WALL_MARGIN_M
    static = _static_boxes(rng, room_min, room_max, (-8.0, last_z), 6)
    moving = _moving_boxes(
        rng, camera_height, (-travel, last_z), num_frames, 6 + len(static.yaw)
    )
    boxes = _concat(static, moving)
    materials = random_materials(rng, 6 + len(boxes.yaw))
    sway = (
        rng.uniform(0.0, CAMERA_CLEARANCE_M),
        rng.uniform(50.0, 100.0),
        rng.uniform(0.0, 2.0 * np.pi),
    )
    yaw_wobble = (
        rng.uniform(0.0, 0.05),
        rng.uniform(15.0, 40.0),
        rng.uniform(0.0, 2.0 * np.pi),
    )
    parked = rng.uniform(size=2) < parked_fraction
    boxes = _park_lanes(boxes, parked)
    if crossing_boxes:
        near, far = crossing_distance or (CROSSING_AHEAD_M, math.inf)
        crossing = _crossing_boxes(
            rng, crossing_boxes, room_max, (travel + near, min(travel + far, last_z)),
            num_frames, 6 + len(boxes.yaw),
        )
        materials = _concat(materials, random_materials(rng, crossing_boxes))
        if waiting_fraction:
            waiting = rng.uniform(size=crossing_boxes) < waiting_fraction
            crossing = _stand_still(crossing, waiting)
        boxes = _concat(boxes, crossing)
    return Scene(
        room_min=room_min,
        room_max=room_max,
        room_material=np.arange(6),
        boxes=boxes,
        materials=materials,
        speed=speed,
        sway=sway,
        yaw_wobble=yaw_wobble,
    )


# ----------------------------------------------------------------------------
# Camera.


def yaw_rotation(yaw):
    """``[3, 3]`` rotation about the y (down) axis: ``Ry`` of METHOD.md §3."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def camera_trajectory(scene, num_frames):
    """Camera-to-world poses along the scene's path.

    The camera moves forward at ``scene.speed``, weaves sideways as
    ``x = a sin(2π t / period + phase)``, heads along the path's tangent plus a
    small yaw wobble, and stays level at height ``scene.camera_height``.

    Returns:
        ``[num_frames, 4, 4]`` float64 camera-to-world matrices (metres).
    """
    t = np.arange(num_frames, dtype=np.float64)
    amplitude, period, phase = scene.sway
    omega = 2.0 * np.pi / period
    x = amplitude * np.sin(omega * t + phase)
    dx_dt = amplitude * omega * np.cos(omega * t + phase)
    wobble, wobble_period, wobble_phase = scene.yaw_wobble
    yaw = np.arctan2(dx_dt, scene.speed) + wobble * np.sin(
        2.0 * np.pi * t / wobble_period + wobble_phase
    )
    poses = np.tile(np.eye(4), (num_frames, 1, 1))
    for i in range(num_frames):
        poses[i, :3, :3] = yaw_rotation(yaw[i])
        poses[i, :3, 3] = [x[i], 0.0, scene.speed * t[i]]
    return poses


def camera_intrinsics(height, width):
    """``[4]`` float64 ``(fx, fy, cx, cy)``, pixels, of the synthetic pinhole camera."""
    focal = 0.5 * width / math.tan(math.radians(HORIZONTAL_FOV_DEG) / 2.0)
    return np.array([focal, focal, (width - 1) / 2.0, (height - 1) / 2.0])


def camera_rays(intrinsics, height, width, supersample=1):
    """Camera-frame ray directions ``K⁻¹ (u, v, 1)`` with unit z component.

    Args:
        intrinsics: ``[4]`` ``(fx, fy, cx, cy)`` in pixels.
        supersample: ``s``; each pixel gets an ``s x s`` grid of sub-pixel rays
            (``s = 1``: the pixel centre).
    Returns:
        ``[3, H*W*s*s]`` float64, component-major, rays ordered by row, column,
        sub-pixel. A hit at ray parameter ``t`` has z-depth ``t``.
    """
    fx, fy, cx, cy = intrinsics
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    dv, du = [o.reshape(1, 1, -1) for o in np.meshgrid(offsets, offsets, indexing="ij")]
    u = np.arange(width)[None, :, None] + du
    v = np.arange(height)[:, None, None] + dv
    u, v = np.broadcast_arrays(u, v)
    return np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)]).reshape(3, -1)


# ----------------------------------------------------------------------------
# Ray casting.


def _safe_reciprocal(d):
    return 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)


def intersect_room(origin, directions, room_min, room_max):
    """Ray parameter where rays starting inside the corridor leave it.

    Args:
        origin: ``[3]`` world point inside the room.
        directions: ``[3, P]`` world ray directions (component-major).
        room_min, room_max: ``[3]`` corners.
    Returns:
        ``[P]`` float64 exit parameters (> 0).
    """
    t_exit = np.full(directions.shape[1], np.inf)
    for axis in range(3):
        inverse = _safe_reciprocal(directions[axis])
        t1 = (room_min[axis] - origin[axis]) * inverse
        t2 = (room_max[axis] - origin[axis]) * inverse
        t_exit = np.minimum(t_exit, np.maximum(t1, t2))
    return t_exit


def intersect_box(origin, directions, centre, half_size, rotation):
    """Slab test of rays against one oriented box seen from outside.

    Args:
        origin: ``[3]`` world ray origin (outside the box).
        directions: ``[3, P]`` world ray directions (component-major).
        centre: ``[3]`` box centre; half_size: ``[3]`` half extents.
        rotation: ``[3, 3]`` box-to-world rotation.
    Returns:
        ``[P]`` float64 entry parameters, ``inf`` where a ray misses.
    """
    local_origin = rotation.T @ (origin - centre)
    local_directions = rotation.T @ directions
    t_near = np.full(directions.shape[1], -np.inf)
    t_far = np.full(directions.shape[1], np.inf)
    for axis in range(3):
        inverse = _safe_reciprocal(local_directions[axis])
        t1 = (-half_size[axis] - local_origin[axis]) * inverse
        t2 = (half_size[axis] - local_origin[axis]) * inverse
        t_near = np.maximum(t_near, np.minimum(t1, t2))
        t_far = np.minimum(t_far, np.maximum(t1, t2))
    return np.where((t_near <= t_far) & (t_near > 0.0), t_near, np.inf)


_CORNER_SIGNS = np.array(np.meshgrid([-1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0])).reshape(
    3, 8
)


def box_corners(centre, half_size, yaw):
    """``[N, 3, 8]`` world corners of boxes (centres, half sizes ``[N, 3]``; yaws ``[N]``)."""
    local = half_size[:, :, None] * _CORNER_SIGNS
    cos, sin = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    x, y, z = local[:, 0], local[:, 1], local[:, 2]
    rotated = np.stack([cos * x + sin * z, y, -sin * x + cos * z], axis=1)
    return centre[:, :, None] + rotated


def image_rectangles(corners_camera):
    """Image-plane bounding rectangles of boxes, in ray coordinates ``(x/z, y/z)``.

    Args:
        corners_camera: ``[N, 3, 8]`` box corners in the camera frame.
    Returns:
        ``[N, 4]`` float64 ``(x_min, x_max, y_min, y_max)``: empty (min > max)
        for a box wholly behind the camera, unbounded for one straddling the
        camera plane.
    """
    z = corners_camera[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = corners_camera[:, 0] / z, corners_camera[:, 1] / z
    rectangles = np.stack([a.min(1), a.max(1), b.min(1), b.max(1)], axis=1)
    rectangles[np.any(z <= 1e-6, axis=1)] = [-np.inf, np.inf, -np.inf, np.inf]
    rectangles[np.all(z <= 0.0, axis=1)] = [np.inf, -np.inf, np.inf, -np.inf]
    return rectangles


def cast_rays(scene, camera_to_world, camera_dirs, frame):
    """Nearest surface along each camera ray.

    Only the rays inside a box's image-plane bounding rectangle are tested
    against it.

    Args:
        scene: :class:`Scene`.
        camera_to_world: ``[4, 4]`` pose (metres).
        camera_dirs: ``[3, P]`` camera-frame rays with unit z component.
        frame: time (frame index) at which moving boxes are placed.
    Returns:
        ``(t, box)``: ``[P]`` float64 z-depths of the nearest hits and ``[P]``
        int index of the box hit, -1 for the corridor itself.
    """
    rotation, origin = camera_to_world[:3, :3], camera_to_world[:3, 3]
    directions = rotation @ camera_dirs
    t = intersect_room(origin, directions, scene.room_min, scene.room_max)
    box = np.full(t.shape, -1)
    boxes = scene.boxes
    centres = boxes.centre_at(frame)
    corners = box_corners(centres, boxes.half_size, boxes.yaw)
    rectangles = image_rectangles(
        np.einsum("ji,njk->nik", rotation, corners - origin[:, None])
    )
    a, b = camera_dirs[0], camera_dirs[1]
    visible = (
        (rectangles[:, 0] <= a.max())
        & (rectangles[:, 1] >= a.min())
        & (rectangles[:, 2] <= b.max())
        & (rectangles[:, 3] >= b.min())
    )
    for n in np.flatnonzero(visible):
        x_min, x_max, y_min, y_max = rectangles[n]
        rays = np.flatnonzero((a >= x_min) & (a <= x_max) & (b >= y_min) & (b <= y_max))
        t_box = intersect_box(
            origin,
            directions[:, rays],
            centres[n],
            boxes.half_size[n],
            yaw_rotation(boxes.yaw[n]),
        )
        nearer = t_box < t[rays]
        t[rays[nearer]] = t_box[nearer]
        box[rays[nearer]] = n
    return t, box


# ----------------------------------------------------------------------------
# Surfaces, textures, shading.


def _rotate_about_y(cos, sin, vectors):
    """Rotates ``[3, P]`` vectors by per-column ``[[c, 0, s], [0, 1, 0], [-s, 0, c]]``."""
    x, y, z = vectors
    return np.stack([cos * x + sin * z, y, -sin * x + cos * z])


def surface_points(scene, points, box, frame):
    """Face coordinates, normals and materials at hit points.

    Args:
        points: ``[3, P]`` world hit points; box: ``[P]`` int from :func:`cast_rays`.
        frame: time at which moving boxes are placed.
    Returns:
        ``(face, uv, normal, material)``: ``[P]`` int face index (0..5: x-min,
        x-max, y-min, y-max, z-min, z-max of the box or corridor), ``[2, P]``
        float64 coordinates in metres in the plane of the face (fixed to the
        surface, so they move with a moving box), ``[3, P]`` world unit normals
        facing the camera's side of the face, ``[P]`` int material indices.
    """
    is_room = box < 0
    index = np.where(is_room, 0, box)
    room_centre = (scene.room_min + scene.room_max) / 2.0
    room_half = (scene.room_max - scene.room_min) / 2.0
    centre = np.where(
        is_room, room_centre[:, None], scene.boxes.centre_at(frame)[index].T
    )
    half = np.where(is_room, room_half[:, None], scene.boxes.half_size[index].T)
    yaw = np.where(is_room, 0.0, scene.boxes.yaw[index])
    cos, sin = np.cos(yaw), np.sin(yaw)
    local = _rotate_about_y(cos, -sin, points - centre)  # world → box frame
    axis = np.argmax(np.abs(local) / half, axis=0)
    sign = np.sign(np.take_along_axis(local, axis[None], axis=0)[0])
    face = 2 * axis + (sign > 0)
    uv_axes = np.array([[1, 2], [0, 2], [0, 1]])[axis].T
    uv = np.take_along_axis(local, uv_axes, axis=0) + 10.0 * face
    local_normal = np.eye(3)[:, axis] * np.where(is_room, -sign, sign)
    material = np.where(is_room, scene.room_material[face], scene.boxes.material[index])
    return face, uv, _rotate_about_y(cos, sin, local_normal), material


def texture_footprint(t, directions, normal, focal):
    """Std (metres) of the Gaussian texture prefilter for one ray's footprint.

    A ray through a pixel of angular size ``1/focal`` at z-depth ``t`` covers
    ``t / focal`` metres across on a fronto-parallel surface; a slanted one
    stretches the footprint along one direction by ``cos(view, z) /
    cos(view, n)``, and the isotropic prefilter takes the square root of that
    (the footprint's area-preserving width).

    Args:
        t: ``[P]`` z-depth; directions: ``[3, P]`` world rays whose camera-z
            component is 1; normal: ``[3, P]`` unit normals; focal: pixels per
            unit of the (sub-)pixel grid.
    Returns:
        ``[P]`` float64 metres.
    """
    length = np.sqrt(np.sum(directions**2, axis=0))
    cos_normal = np.abs(np.sum(directions * normal, axis=0)) / length
    stretch = np.sqrt((1.0 / length) / np.maximum(cos_normal, MIN_COSINE))
    return PREFILTER_WIDTH * t / focal * stretch


def albedo(materials, material, uv, footprint):
    """Prefiltered procedural albedo.

    Each sinusoid ``sin(k·uv + φ)`` seen through a Gaussian of std ``σ`` keeps
    the amplitude ``exp(-|k|² σ² / 2)``, so detail finer than a pixel fades
    instead of aliasing.

    Args:
        materials: :class:`Materials`; material: ``[P]`` int.
        uv: ``[2, P]`` surface coordinates (metres); footprint: ``[P]`` std σ (metres).
    Returns:
        ``[3, P]`` float64 albedo (not clipped).
    """
    colour = np.empty((3, material.size))
    order = np.argsort(material, kind="stable")
    ids, starts = np.unique(material[order], return_index=True)
    for m, rays in zip(ids, np.split(order, starts[1:])):
        k = materials.wavevector[m]  # [K, 2]
        # float32 from here: phases stay accurate to ~1e-3 rad over the corridor.
        phase = (k @ uv[:, rays] + materials.phase[m][:, None]).astype(np.float32)
        decay = (-0.5 * np.sum(k**2, axis=1)[:, None] * footprint[rays] ** 2).astype(
            np.float32
        )
        pattern = materials.colour[m].T.astype(np.float32) @ (
            np.sin(phase) * np.exp(decay)
        )
        colour[:, rays] = materials.base[m][:, None] + pattern
    return colour


def lambert_shading(normal):
    """``[P]`` brightness ``AMBIENT + DIFFUSE max(0, n·l)`` of ``[3, P]`` normals."""
    return AMBIENT + DIFFUSE * np.maximum(LIGHT_DIRECTION @ normal, 0.0)


def _trace(scene, camera_to_world, camera_dirs, frame, focal):
    """Along camera rays ``[3, P]``: z-depth ``[P]``, surface id ``[P]`` (box
    index + 1, times 6, plus face: -1 + 1 = 0 is the corridor) and RGB
    ``[3, P]`` in [0, 1]."""
    t, box = cast_rays(scene, camera_to_world, camera_dirs, frame)
    directions = camera_to_world[:3, :3] @ camera_dirs
    points = camera_to_world[:3, 3:] + t * directions
    face, uv, normal, material = surface_points(scene, points, box, frame)
    footprint = texture_footprint(t, directions, normal, focal)
    colour = albedo(scene.materials, material, uv, footprint) * lambert_shading(normal)
    return t, (box + 1) * 6 + face, np.clip(colour, 0.0, 1.0)


def surface_edges(surface):
    """``[H, W]`` bool: pixels whose surface id differs from one of their 8 neighbours."""
    padded = np.pad(surface, 1, mode="edge")
    height, width = surface.shape
    edges = np.zeros(surface.shape, dtype=bool)
    for dy in range(3):
        for dx in range(3):
            edges |= padded[dy : dy + height, dx : dx + width] != surface
    return edges


def render_frame(
    scene, camera_to_world, frame, intrinsics, height, width, supersample=2
):
    """Renders one frame.

    Args:
        scene: :class:`Scene`.
        camera_to_world: ``[4, 4]`` pose (metres).
        frame: time (frame index) at which moving boxes are placed.
        intrinsics: ``[4]`` ``(fx, fy, cx, cy)`` pixels.
        supersample: along silhouettes and creases (pixels next to another
            surface), colour is the mean of ``s x s`` sub-pixel rays; elsewhere
            the texture prefilter already band-limits it. Depth and mask always
            come from the pixel-centre ray.
    Returns:
        :class:`Frame`.
    """
    focal = intrinsics[0]
    depth, surface, rgb = _trace(
        scene, camera_to_world, camera_rays(intrinsics, height, width), frame, focal
    )
    edges = surface_edges(surface.reshape(height, width)).ravel()
    if supersample > 1 and edges.any():
        sub_dirs = camera_rays(intrinsics, height, width, supersample)
        sub_dirs = sub_dirs.reshape(3, -1, supersample**2)[:, edges].reshape(3, -1)
        _, _, sub_rgb = _trace(
            scene, camera_to_world, sub_dirs, frame, focal * supersample
        )
        rgb[:, edges] = sub_rgb.reshape(3, -1, supersample**2).mean(axis=2)
    box = surface // 6 - 1
    mask = (box >= 0) & scene.boxes.moving[np.maximum(box, 0)]
    return Frame(
        rgb=np.round(rgb.T * 255.0).astype(np.uint8).reshape(height, width, 3),
        depth=depth.reshape(height, width),
        mask=mask.reshape(height, width),
    )


def render_video(
    rng,
    num_frames,
    height,
    width,
    supersample=2,
    parked_fraction=0.0,
    crossing_boxes=0,
    waiting_fraction=0.0,
    crossing_distance=(),
):
    """A random scene rendered along its camera path.

    Args:
        rng: ``np.random.Generator`` (the video is a deterministic function of it).
        num_frames: number of frames.
        height, width: image size in pixels.
        supersample: sub-pixel rays per pixel side for colour.
        parked_fraction: probability that a traffic lane stands still
            (:func:`random_scene`).
        crossing_boxes: boxes crossing the corridor (:func:`random_scene`).
        waiting_fraction: probability that a crossing box stands still
            (:func:`random_scene`).
        crossing_distance: where the crossing boxes cross (:func:`random_scene`).
    Returns:
        ``(scene, poses, intrinsics, frames)``: :class:`Scene`, ``[F, 4, 4]``
        camera-to-world, ``[4]`` ``(fx, fy, cx, cy)``, list of :class:`Frame`.
    """
    scene = random_scene(
        rng, num_frames, parked_fraction, crossing_boxes, waiting_fraction, crossing_distance
    )
    poses = camera_trajectory(scene, num_frames)
    intrinsics = camera_intrinsics(height, width)
    frames = [
        render_frame(scene, pose, i, intrinsics, height, width, supersample)
        for i, pose in enumerate(poses)
    ]
    return scene, poses, intrinsics, frames


# ----------------------------------------------------------------------------
# TFDS builder.

_SPLIT_STREAMS = {"train": 0, "test": 1}


def video_rng(seed, split, video):
    """The generator of one video: independent streams per seed, split and video."""
    return np.random.default_rng([seed, _SPLIT_STREAMS[split], video])


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
    """Size and content of a synthetic dataset.

    Attributes:
        height, width: stored frame size in pixels.
        train_videos, test_videos: videos per split (test scenes are drawn
            from a different random stream, never seen in training).
        frames_per_video: frames per video (>= 3); each gives
            ``frames_per_video - 2`` triplets.
        seed: random seed of all scenes.
        supersample: sub-pixel rays per pixel side for colour.
        parked_fraction: probability that a traffic lane's boxes stand still.
        crossing_boxes: boxes per video crossing the corridor ahead of the camera.
        waiting_fraction: probability that a crossing box stands still.
        crossing_distance: ``(near, far)`` metres past the camera's last
            position where the crossing boxes cross; ``()``: the default zone.
    """

    height: int = F.DEFAULT_HEIGHT
    width: int = F.DEFAULT_WIDTH
    train_videos: int = 40
    test_videos: int = 8
    frames_per_video: int = 32
    seed: int = 0
    supersample: int = 2
    parked_fraction: float = 0.0
    crossing_boxes: int = 0
    waiting_fraction: float = 0.0
    crossing_distance: tuple = ()


def _distances(values):
    """``values`` (numbers or their strings) as ``(near, far)`` floats, or ``()`` when empty.

    Raises:
        ValueError: unless empty or two numbers with ``1 <= near < far``.
    """
    message = (
        "synthetic: crossing_distance must be two numbers near,far in metres with "
        f"1 <= near < far, got {list(values)}"
    )
    try:
        distances = tuple(float(value) for value in values)
    except ValueError:
        raise ValueError(message) from None
    if distances and (len(distances) != 2 or not 1.0 <= distances[0] < distances[1]):
        raise ValueError(message)
    return distances


def synthetic_config(
    height,
    width,
    train_videos,
    test_videos,
    frames_per_video,
    seed=0,
    supersample=2,
    parked_fraction=0.0,
    crossing_boxes=0,
    waiting_fraction=0.0,
    crossing_distance=(),
):
    """A :class:`SyntheticConfig` named after its values (one data directory each).

    Raises:
        ValueError: on a non-positive size or count, fewer than 3 frames per
            video, a ``parked_fraction`` or ``waiting_fraction`` outside
            [0, 1], a negative ``crossing_boxes``, a ``crossing_distance``
            that is not ``(near, far)`` with ``1 <= near < far``, or a
            ``waiting_fraction`` or ``crossing_distance`` without crossing boxes.
    """
    if min(height, width, train_videos, test_videos, supersample) < 1:
        raise ValueError(
            "synthetic: height, width, video counts and supersample must be >= 1, got "
            f"{height}x{width}, {train_videos}/{test_videos} videos, supersample {supersample}"
        )
    if frames_per_video < F.FRAMES_PER_EXAMPLE:
        raise ValueError(
            f"synthetic: frames_per_video must be >= {F.FRAMES_PER_EXAMPLE}, got "
            f"{frames_per_video}"
        )
    fractions = {"parked_fraction": parked_fraction, "waiting_fraction": waiting_fraction}
    for option, fraction in fractions.items():
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"synthetic: {option} must be in [0, 1], got {fraction}")
    if crossing_boxes < 0:
        raise ValueError(f"synthetic: crossing_boxes must be >= 0, got {crossing_boxes}")
    crossing_distance = _distances(crossing_distance)
    if not crossing_boxes and (waiting_fraction or crossing_distance):
        raise ValueError(
            "synthetic: waiting_fraction and crossing_distance place crossing boxes: "
            "they need crossing_boxes >= 1"
        )
    name = (
        f"{height}x{width}_train{train_videos}_test{test_videos}"
        f"_frames{frames_per_video}_seed{seed}_ss{supersample}"
    )
    description = (
        f"{height}x{width}, {train_videos}+{test_videos} videos of "
        f"{frames_per_video} frames, seed {seed}"
    )
    if parked_fraction:
        name += f"_parked{parked_fraction:g}"
        description += f", parked lanes {parked_fraction:g}"
    if crossing_boxes:
        name += f"_crossing{crossing_boxes}"
        description += f", {crossing_boxes} crossing boxes"
    if waiting_fraction:
        name += f"_waiting{waiting_fraction:g}"
        description += f", waiting crossing boxes {waiting_fraction:g}"
    if crossing_distance:
        near, far = crossing_distance
        name += f"_near{near:g}-{far:g}"
        description += f", crossing {near:g} to {far:g} m past the camera's last position"
    return SyntheticConfig(
        name=name,
        description=description,
        height=height,
        width=width,
        train_videos=train_videos,
        test_videos=test_videos,
        frames_per_video=frames_per_video,
        seed=seed,
        supersample=supersample,
        parked_fraction=parked_fraction,
        crossing_boxes=crossing_boxes,
        waiting_fraction=waiting_fraction,
        crossing_distance=crossing_distance,
    )


def triplet_examples(split, video, poses, intrinsics, frames):
    """The ``(key, example)`` pairs of one rendered video, in the shared schema."""
    video_id = f"{split}_{video:05d}"
    for t in range(1, len(frames) - 1):
        window = frames[t - 1 : t + 2]
        yield f"{video_id}_{t:05d}", {
            F.RGB: np.stack([f.rgb for f in window]),
            F.INTRINSICS: intrinsics.astype(np.float32),
            F.INTRINSICS_KNOWN: True,
            F.VIDEO_ID: video_id,
            F.FRAME_IDS: [f"{video_id}/{i:05d}" for i in range(t - 1, t + 2)],
            F.MASK: np.stack([f.mask[..., None] for f in window]).astype(np.uint8)
            * 255,
            F.DEPTH: F.encode_depth(np.stack([f.depth[..., None] for f in window])),
            F.CAMERA_TO_WORLD: poses[t - 1 : t + 2].astype(np.float32),
        }


class Synthetic(tfds.core.GeneratorBasedBuilder):
    """Procedural corridor videos with exact depth, poses and moving-object masks."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        SyntheticConfig(name="default", description="128x416, 40+8 videos of 32 frames")
    ]

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n")[0],
            features=F.triplet_features(
                with_mask=True, with_depth=True, with_pose=True
            ),
            homepage="https://github.com/google-research/google-research/tree/master/depth_and_motion_learning",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is rendered
        config = self.builder_config
        return {
            "train": self._generate_examples("train", config.train_videos),
            "test": self._generate_examples("test", config.test_videos),
        }

    def _generate_examples(self, split, num_videos):
        config = self.builder_config
        videos = tqdm.tqdm(
            range(num_videos), desc=f"synthetic {split}", unit=" videos", disable=None
        )
        for video in videos:
            _, poses, intrinsics, frames = render_video(
                video_rng(config.seed, split, video),
                config.frames_per_video,
                config.height,
                config.width,
                config.supersample,
                config.parked_fraction,
                config.crossing_boxes,
                config.waiting_fraction,
                config.crossing_distance,
            )
            yield from triplet_examples(split, video, poses, intrinsics, frames)


# ----------------------------------------------------------------------------
# Command line.


def define_flags():
    """Declares the command-line flags (only when run as a program)."""
    convert.define_output_flags()
    flags.DEFINE_integer("height", F.DEFAULT_HEIGHT, "Frame height in pixels.")
    flags.DEFINE_integer("width", F.DEFAULT_WIDTH, "Frame width in pixels.")
    flags.DEFINE_integer("train_videos", 40, "Number of training videos.")
    flags.DEFINE_integer("test_videos", 8, "Number of test videos (unseen scenes).")
    flags.DEFINE_integer(
        "frames_per_video",
        32,
        "Frames per video; each video gives frames - 2 triplets.",
    )
    flags.DEFINE_integer("seed", 0, "Random seed of all scenes.")
    flags.DEFINE_integer(
        "supersample", 2, "Sub-pixel rays per pixel side for colour (1 = none)."
    )
    flags.DEFINE_float(
        "parked_fraction",
        0.0,
        "Probability that a traffic lane's boxes stand still (parked cars): the "
        "same kind of object in the same place, static, so a monocular depth "
        "network can learn its depth.",
    )
    flags.DEFINE_integer(
        "crossing_boxes",
        0,
        "Boxes per video crossing the corridor ahead of the camera (crossing traffic): "
        "motion across the camera's path, which no static depth explains, unlike the "
        "lanes' motion along it.",
    )
    flags.DEFINE_float(
        "waiting_fraction",
        0.0,
        "Probability that a crossing box stands still (a car waiting at the crossing): "
        "static boxes of the crossing kind in the crossing places, from which a monocular "
        "depth network can learn the depth of the moving ones.",
    )
    flags.DEFINE_list(
        "crossing_distance",
        [],
        "near,far: metres past the camera's last position between which the crossing "
        f"boxes cross (empty: from {CROSSING_AHEAD_M:g} m to the far wall, which is "
        "30 to 45 m past it). Nearer boxes cover more pixels and move more pixels a frame.",
    )


# Options added after the first release, with the value that renders the data of the versions
# before them: a build at that value leaves the option out of its fingerprint, so that data
# stays reusable.
LATER_OPTIONS = {
    "parked_fraction": 0.0,
    "crossing_boxes": 0,
    "waiting_fraction": 0.0,
    "crossing_distance": (),
}


def synthetic_fingerprint(builder):
    """:func:`fingerprint.describe` of a build, without the :data:`LATER_OPTIONS` at their defaults."""
    described = fingerprint.describe(builder)
    for name, default in LATER_OPTIONS.items():
        if getattr(builder.builder_config, name) == default:
            del described["flags"][name]
    return described


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    try:
        config = synthetic_config(
            FLAGS.height,
            FLAGS.width,
            FLAGS.train_videos,
            FLAGS.test_videos,
            FLAGS.frames_per_video,
            FLAGS.seed,
            FLAGS.supersample,
            FLAGS.parked_fraction,
            FLAGS.crossing_boxes,
            FLAGS.waiting_fraction,
            FLAGS.crossing_distance,
        )
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    convert.quiet_tfds()
    start = time.perf_counter()

    def make_builder(data_dir):
        return Synthetic(config=config, data_dir=str(data_dir))

    builder = make_builder(FLAGS.output)
    try:
        prepared = fingerprint.prepare(
            builder, synthetic_fingerprint(builder), make_builder,
            tfds.download.DownloadConfig(try_download_gcs=False), FLAGS.overwrite,
        )
    except fingerprint.OutputMismatchError as error:
        raise SystemExit(f"error: {error}") from None
    seconds = time.perf_counter() - start
    builder = prepared.builder
    counts = {name: split.num_examples for name, split in builder.info.splits.items()}
    triplets = (
        f"{counts.get('train', 0)} train and {counts.get('test', 0)} test triplets "
        f"({config.height}x{config.width})"
    )
    if prepared.reused:
        print(
            f"synthetic: reused {triplets} in {builder.data_dir}: same flags and version "
            f"as its {fingerprint.FINGERPRINT_FILE} (--overwrite rebuilds)"
        )
        return
    frames = (config.train_videos + config.test_videos) * config.frames_per_video
    print(
        f"synthetic: wrote {triplets} to {builder.data_dir} in "
        f"{seconds:.1f} s ({frames / seconds:.1f} frames/s)"
    )


if __name__ == "__main__":
    define_flags()
    flags.adopt_module_key_flags(convert)  # --help lists --output and --overwrite too
    cli.run(main)
