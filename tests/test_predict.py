"""predict: depth, motion, camera motion, point clouds and side-by-side video for images and videos."""
import av
import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from PIL import Image

from depth_motion_tf import evaluate, export, media, predict
from depth_motion_tf.errors import BadInputError
from tests.test_export import HEIGHT, WIDTH, make_run_dir

SOURCE, TARGET = "test_sequence_source", "test_sequence_target"
VIDEO_SIZE = (90, 160)  # H, W of the test video (even, for H.264)


def run_cli(argv):
    flag_values = flags.FlagValues()
    predict.define_flags(flag_values)
    flag_values(["predict", *argv])
    return predict.run(flag_values)


def read_ply(path):
    """``(points [N, 3] float32, colours [N, 3] uint8)`` of a PLY written by ``write_ply``."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    count = int(next(line for line in header if line.startswith("element vertex")).split()[-1])
    if "format ascii 1.0" in header:
        rows = np.loadtxt(data[end:].decode("ascii").splitlines(), ndmin=2)
        return rows[:, :3].astype(np.float32), rows[:, 3:].astype(np.uint8)
    dtype = [("p", "<f4", 3), ("c", "u1", 3)]
    vertices = np.frombuffer(data[end:], dtype=dtype, count=count)
    return vertices["p"], vertices["c"]


def motion_lines(path):
    return [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """``(model, model_dir)``: an untrained small model and its run folder with a checkpoint."""
    return make_run_dir(tmp_path_factory.mktemp("predict") / "run")


@pytest.fixture(scope="module")
def dashcam(run_dir, tmp_path_factory):
    """The CLI on the dashcam pair with --model_dir, --ply and the normalised intrinsics JSON."""
    from tests.conftest import SHARED_DATA

    folder = SHARED_DATA / "dashcam_pair"
    if not folder.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    out = tmp_path_factory.mktemp("dashcam_out")
    summary = run_cli([
        f"--input={folder}", f"--output_dir={out}", f"--model_dir={run_dir[1]}", "--ply",
        f"--intrinsics={folder / 'test_sequence_intrinsics.json'}", "--batch_size=1",
    ])
    # Decoded as predict decodes them (JPEG decoders differ in the last bits).
    images = {name: media.read_image(folder / f"{name}.jpg") for name in (SOURCE, TARGET)}
    return out, summary, images


@pytest.fixture(scope="module")
def video_run(run_dir, tmp_path_factory):
    """``predict`` on a 3-frame mp4 of nuScenes frames (batch 2: a pair crosses batches)."""
    from tests.conftest import SHARED_DATA

    frames_dir = SHARED_DATA / "nuscenes_front_clips" / "scene-0099"
    if not frames_dir.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    root = tmp_path_factory.mktemp("video")
    clip = root / "clip.mp4"
    with av.open(str(clip), mode="w") as container:
        stream = container.add_stream("libx264", rate=5)
        stream.height, stream.width = VIDEO_SIZE
        stream.pix_fmt = "yuv420p"
        for path in sorted(frames_dir.glob("*.jpg")):
            image = np.asarray(Image.open(path).convert("RGB").resize(VIDEO_SIZE[::-1]))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    signatures = export.model_signatures(run_dir[0])
    options = predict.Options(ply_format="ascii", batch_size=2, progress=False)
    summary = predict.predict(signatures, predict.find_inputs(str(clip)), root / "out", options)
    return root / "out", summary, signatures


# ---------------------------------------------------------------- images ----


def test_depth_npy_and_png_for_both_frames_at_their_size(dashcam):
    out, summary, images = dashcam
    assert summary.frames == 2
    for name, image in images.items():
        depth = np.load(out / f"{name}_depth.npy")
        assert depth.dtype == np.float32 and depth.shape == image.shape[:2]
        assert np.all(depth > 0)
        assert np.asarray(Image.open(out / f"{name}_depth.png")).shape == image.shape


def test_pair_of_frames_gives_field_png_and_camera_motion(dashcam, run_dir):
    out, summary, images = dashcam
    assert summary.pairs == 1
    assert np.load(out / f"{SOURCE}_{TARGET}_motion.npy").shape == (HEIGHT, WIDTH, 3)
    assert np.asarray(Image.open(out / f"{SOURCE}_{TARGET}_motion.png")).shape == images[TARGET].shape
    (line,) = motion_lines(out / predict.CAMERA_MOTION_FILE)
    assert line[:2] == [SOURCE, TARGET]
    # The pair runs at the target's size (the source, 892x307, is resized to 895x315).
    source = evaluate.resize_image(images[SOURCE], images[TARGET].shape[:2])
    expected = export.model_signatures(run_dir[0]).motion(
        image1=tf.constant(source[None]), image2=tf.constant(images[TARGET][None])
    )
    values = np.concatenate([expected["rotation"][0], expected["translation"][0]])
    np.testing.assert_allclose(np.array(line[2:], float), values, rtol=1e-4, atol=1e-9)


def test_ply_backprojects_depth_with_the_normalised_intrinsics(dashcam):
    out, _, images = dashcam
    image = images[TARGET]
    height, width = image.shape[:2]
    depth = np.load(out / f"{TARGET}_depth.npy")
    points, colours = read_ply(out / f"{TARGET}.ply")
    assert points.shape == (height * width, 3)
    # The JSON holds fx = 0.58 W, fy = 1.92 H, cx = 0.5 W, cy = 0.5 H.
    for v, u in [(0, 0), (10, 700), (height - 1, width - 1)]:
        d = depth[v, u]
        expected = [d * (u - 0.5 * width) / (0.58 * width), d * (v - 0.5 * height) / (1.92 * height), d]
        np.testing.assert_allclose(points[v * width + u], expected, rtol=1e-5)
        np.testing.assert_array_equal(colours[v * width + u], image[v, u])


def test_ply_without_intrinsics_from_a_model_that_learned_none_is_one_clear_error(tmp_path):
    _, model_dir = make_run_dir(tmp_path / "run", intrinsics="given")
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), np.uint8)).save(frames / f"{name}.png")
    with pytest.raises(BadInputError, match="predicts no intrinsics.*pass --intrinsics"):
        run_cli([f"--input={frames}", f"--output_dir={tmp_path / 'out'}", f"--model_dir={model_dir}",
                 "--ply"])
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_image_inputs_give_no_video(dashcam):
    out, summary, _ = dashcam
    assert summary.video is None
    assert not list(out.glob("*.mp4"))


# ---------------------------------------------------------------- video -----


def test_video_gives_depth_motion_and_point_cloud_per_frame(video_run):
    out, summary, _ = video_run
    names = ["000000", "000001", "000002"]
    assert (summary.frames, summary.pairs) == (3, 2)
    for name in names:
        assert np.load(out / f"{name}_depth.npy").shape == VIDEO_SIZE
        assert (out / f"{name}_depth.png").is_file()
        points, _ = read_ply(out / f"{name}.ply")
        assert points.shape == (VIDEO_SIZE[0] * VIDEO_SIZE[1], 3) and np.all(np.isfinite(points))
    lines = motion_lines(out / predict.CAMERA_MOTION_FILE)
    assert [line[:2] for line in lines] == [names[:2], names[1:]]
    for first, second in zip(names, names[1:]):
        assert np.load(out / f"{first}_{second}_motion.npy").shape == (HEIGHT, WIDTH, 3)
        assert np.asarray(Image.open(out / f"{first}_{second}_motion.png")).shape == (*VIDEO_SIZE, 3)


def test_learned_intrinsics_back_project_each_frame_paired_with_itself(video_run):
    out, _, signatures = video_run
    first = next(iter(predict.find_inputs(str(out.parent / "clip.mp4")).frames)).load()
    batch = tf.constant(first[None])
    k = signatures.motion(image1=batch, image2=batch)["intrinsics"].numpy()[0]
    depth = np.load(out / "000000_depth.npy")
    points, _ = read_ply(out / "000000.ply")
    v, u = 80, 150
    expected = [depth[v, u] * (u - k[0, 2]) / k[0, 0], depth[v, u] * (v - k[1, 2]) / k[1, 1]]
    np.testing.assert_allclose(points[v * VIDEO_SIZE[1] + u, :2], expected, rtol=1e-3, atol=1e-5)


def test_side_by_side_video_has_every_frame_at_three_widths(video_run):
    _, summary, _ = video_run
    assert summary.video.name == "clip_side_by_side.mp4"
    with av.open(str(summary.video)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 3
    assert all(f.shape == (VIDEO_SIZE[0], 3 * VIDEO_SIZE[1], 3) for f in frames)


# ---------------------------------------------------------------- pieces ----


def test_backprojected_points_project_back_to_their_pixels():
    depth = np.random.default_rng(0).uniform(1.0, 5.0, (4, 6))
    fx, fy, cx, cy = 3.0, 2.0, 2.5, 1.5
    points = predict.backproject(depth, (fx, fy, cx, cy)).astype(np.float64)
    u = fx * points[:, 0] / points[:, 2] + cx
    v = fy * points[:, 1] / points[:, 2] + cy
    grid_v, grid_u = np.meshgrid(np.arange(4), np.arange(6), indexing="ij")
    np.testing.assert_allclose(u, grid_u.ravel(), atol=1e-5)
    np.testing.assert_allclose(v, grid_v.ravel(), atol=1e-5)
    np.testing.assert_allclose(points[:, 2], depth.ravel(), rtol=1e-6)


@pytest.mark.parametrize("ply_format", predict.PLY_FORMATS)
def test_ply_round_trips_points_and_colours(tmp_path, ply_format):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(5, 3)).astype(np.float32)
    colours = rng.integers(0, 256, (5, 3), dtype=np.uint8)
    predict.write_ply(tmp_path / "a.ply", points, colours, ply_format)
    read_points, read_colours = read_ply(tmp_path / "a.ply")
    np.testing.assert_allclose(read_points, points, rtol=1e-5)
    np.testing.assert_array_equal(read_colours, colours)


def test_glob_selects_matching_images_in_name_order(shared_data):
    source = predict.find_inputs(str(shared_data / "nuscenes_front_clips" / "*" / "00000*.jpg"))
    assert [f.frame_id for f in source.frames] == ["000001", "000002", "000003"]


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: no images or video found"):
        predict.find_inputs(str(tmp_path))


def test_unreadable_video_names_the_file(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"not a video at all")
    with pytest.raises(BadInputError, match="broken.mp4: cannot be read as a video"):
        predict.find_inputs(str(path))


def test_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    source = predict.find_inputs(str(tmp_path))
    with pytest.raises(BadInputError, match="bad.png"):
        list(predict.same_size_batches(source.frames, 2))
