"""Colour maps: ranges, the disparity convention, non-finite input."""
import numpy as np

from depth_motion_tf import visualize


def test_colormap_ends_are_the_matplotlib_table_ends():
    values = np.array([[[0.0, 1.0]]], np.float32)
    colours = visualize.apply_colormap(values, "plasma").numpy()
    table = visualize.colormap_table("plasma")
    np.testing.assert_allclose(colours[0, 0, 0], table[0])
    np.testing.assert_allclose(colours[0, 0, 1], table[-1])


def test_near_is_bright_in_disparity_images():
    depth = np.linspace(1.0, 10.0, 40, dtype=np.float32).reshape(1, 1, 40, 1)
    colours = visualize.colorize_disparity(depth).numpy()
    table = visualize.colormap_table("plasma")
    np.testing.assert_allclose(colours[0, 0, 0], table[-1])  # nearest: top of the map
    assert colours[0, 0, 0].sum() > colours[0, 0, -1].sum()


def test_non_finite_values_map_to_the_low_end_instead_of_failing():
    values = np.array([[[np.nan, 0.0, 1.0]]], np.float32)
    colours = visualize.colorize_disparity(values[..., None]).numpy()
    assert np.all(np.isfinite(colours))


def test_contact_sheet_writes_a_png(tmp_path):
    path = visualize.contact_sheet([[np.zeros((8, 16, 3)), np.ones((8, 16))]], tmp_path / "s.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
