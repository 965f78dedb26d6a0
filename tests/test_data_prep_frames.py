"""Frames as stored: intrinsics under crop/resize, crop windows, area and bilinear resizing."""
import numpy as np
import pytest

from data_prep.frames import (
    CropBox,
    centre_crop_to_aspect,
    crop_intrinsics,
    full_frame,
    ordered_map,
    resize_frame,
    scale_intrinsics,
    stored_intrinsics,
)
from depth_motion_tf.media import Intrinsics


def test_crop_subtracts_the_window_offset():
    box = CropBox(top=10, left=20, height=5, width=5)
    np.testing.assert_allclose(crop_intrinsics([100, 90, 50, 40], box), [100, 90, 30, 30])


def test_resize_scales_fx_cx_by_width_and_fy_cy_by_height():
    np.testing.assert_allclose(scale_intrinsics([100, 90, 50, 40], 0.5, 0.25), [50, 22.5, 25, 10])


def test_stored_intrinsics_crop_then_scale():
    box = CropBox(top=256, left=192, height=512, width=1664)
    np.testing.assert_allclose(stored_intrinsics([2262.5, 2265.3, 1096.98, 513.14], box, 128, 416),
                               [2262.5 / 4, 2265.3 / 4, (1096.98 - 192) / 4, (513.14 - 256) / 4],
                               rtol=1e-6)


def test_centre_crop_to_a_wider_aspect_keeps_the_middle_rows():
    assert centre_crop_to_aspect(900, 1600, 416 / 128) == CropBox(204, 0, 492, 1600)


def test_centre_crop_to_a_narrower_aspect_keeps_the_middle_columns():
    assert centre_crop_to_aspect(100, 1000, 2.0) == CropBox(0, 400, 100, 200)


def test_normalised_intrinsics_are_multiplied_by_the_frame_size():
    k = Intrinsics(0.5, 2.0, 0.25, 0.5, normalised=True)
    np.testing.assert_allclose(k.in_pixels(100, 200), [100, 200, 50, 50])


@pytest.mark.parametrize("resize", ["area", "bilinear"])
def test_resize_of_a_constant_frame_is_constant(resize):
    image = np.full((30, 90, 3), 77, np.uint8)
    out = resize_frame(image, full_frame(30, 90), 8, 24, resize)
    assert out.shape == (8, 24, 3) and np.all(out == 77)


def test_area_downsizing_averages_fine_stripes():
    image = np.zeros((4, 8, 3), np.uint8)
    image[:, ::2] = 200  # one-pixel stripes: antialiasing must average them
    out = resize_frame(image, full_frame(4, 8), 2, 4)
    np.testing.assert_allclose(out, 100, atol=2)


def _checkerboard(height, width):
    """``[H, W, 3]`` uint8 one-pixel checkerboard: 255 where ``row + column`` is odd."""
    board = (np.indices((height, width)).sum(axis=0) % 2 * 255).astype(np.uint8)
    return np.repeat(board[..., None], 3, axis=-1)


def test_area_averages_a_fine_checkerboard_to_grey():
    out = resize_frame(_checkerboard(24, 72), full_frame(24, 72), 8, 24, "area")
    # Each 3x3 block holds 4 white pixels of 9 (block parity even) or 5 (odd).
    parity = np.indices((8, 24)).sum(axis=0) % 2
    expected = np.where(parity == 0, 255 * 4 / 9, 255 * 5 / 9)[..., None]
    np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), atol=0.5)


def test_bilinear_without_antialiasing_aliases_a_fine_checkerboard():
    out = resize_frame(_checkerboard(24, 72), full_frame(24, 72), 8, 24, "bilinear")
    # Half-pixel centres: output (i, j) samples source pixel (3i + 1, 3j + 1) exactly,
    # whose parity is that of i + j: the checkerboard survives at full contrast.
    parity = np.indices((8, 24)).sum(axis=0) % 2
    np.testing.assert_array_equal(out, np.broadcast_to((parity * 255)[..., None], out.shape))


def test_area_and_bilinear_agree_on_a_smooth_ramp():
    rows, columns = np.indices((75, 249))
    ramp = np.round(20 + 0.5 * columns + 0.8 * rows).astype(np.uint8)
    image = np.repeat(ramp[..., None], 3, axis=-1)
    # Non-integer ratios (75/24, 249/80) like KITTI's 375/128 and 1242/416.
    area = resize_frame(image, full_frame(75, 249), 24, 80, "area").astype(int)
    bilinear = resize_frame(image, full_frame(75, 249), 24, 80, "bilinear").astype(int)
    assert np.abs(area - bilinear).max() <= 1


def test_unknown_resize_method_is_refused():
    with pytest.raises(ValueError, match="resize must be one of"):
        resize_frame(np.zeros((4, 4, 3), np.uint8), full_frame(4, 4), 2, 2, "bicubic")


def test_ordered_map_keeps_the_input_order():
    assert list(ordered_map(lambda x: x * x, range(20), workers=3, window=4)) == [
        x * x for x in range(20)]
