"""Pictures for people: colour maps of depth and motion, contact sheets.

Colour maps are matplotlib's, applied in TensorFlow through a 256-entry lookup
table, so the same function serves TensorBoard summaries (inside a
``tf.function``), inference outputs and contact sheets.
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def colormap_table(name="plasma"):
    """The ``[256, 3]`` float32 RGB table (in [0, 1]) of a matplotlib colour map."""
    return matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3].astype(
        np.float32
    )


def apply_colormap(values, name="plasma", vmin=None, vmax=None):
    """Maps scalar images to colours.

    Args:
        values: ``[B, H, W]`` or ``[B, H, W, 1]`` float.
        name: matplotlib colour-map name.
        vmin, vmax: value range mapped to the ends of the map; per image min/max
            when None (a constant image maps to the low end).
    Returns:
        ``[B, H, W, 3]`` float32 RGB in [0, 1].
    """
    values = tf.convert_to_tensor(values, tf.float32)
    if values.shape.rank == 4:
        values = values[..., 0]
    lo = tf.reduce_min(values, axis=[1, 2], keepdims=True) if vmin is None else vmin
    hi = tf.reduce_max(values, axis=[1, 2], keepdims=True) if vmax is None else vmax
    scaled = tf.math.divide_no_nan(values - lo, hi - lo)
    scaled = tf.where(tf.math.is_finite(scaled), scaled, 0.0)  # NaN/Inf map to the low end
    index = tf.cast(tf.round(tf.clip_by_value(scaled, 0.0, 1.0) * 255.0), tf.int32)
    return tf.gather(tf.constant(colormap_table(name)), index)


def colorize_disparity(depth, name="plasma"):
    """Depth → colour-mapped disparity (near = bright), the convention users know.

    Args:
        depth: ``[B, H, W, 1]`` or ``[B, H, W]`` positive float depth (any units).
    Returns:
        ``[B, H, W, 3]`` float32 RGB in [0, 1]; the top 5% of disparities saturate.
    """
    depth = tf.convert_to_tensor(depth, tf.float32)
    if depth.shape.rank == 4:
        depth = depth[..., 0]
    disparity = tf.math.reciprocal_no_nan(depth)
    flat = tf.sort(tf.reshape(disparity, [tf.shape(disparity)[0], -1]), axis=1)
    n = tf.shape(flat)[1]
    hi = tf.gather(flat, tf.cast(tf.cast(n - 1, tf.float32) * 0.95, tf.int32), axis=1)
    return apply_colormap(disparity, name, vmin=0.0, vmax=hi[:, None, None])


def colorize_magnitude(field, name="viridis"):
    """A vector field's per-pixel L2 norm, colour-mapped per image.

    Args:
        field: ``[B, H, W, C]`` float (e.g. a residual translation field).
    Returns:
        ``[B, H, W, 3]`` float32 RGB in [0, 1].
    """
    return apply_colormap(tf.norm(tf.convert_to_tensor(field, tf.float32), axis=-1), name)


def contact_sheet(rows, path, titles=None, column_titles=None):
    """Writes a grid of images as one PNG.

    Args:
        rows: list of rows, each a list of ``[H, W, 3]`` (RGB in [0, 1] or uint8)
            or ``[H, W]`` (shown grey) arrays.
        path: output PNG path.
        titles: optional list of one label per row.
        column_titles: optional list of one label per column.
    Returns:
        ``path``.
    """
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    height, width = np.asarray(rows[0][0]).shape[:2]
    scale = 3.0 / max(width, 1) * 1.0
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(n_cols * width * scale, n_rows * height * scale + 0.3 * n_rows),
        squeeze=False,
    )
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(row):
                image = np.asarray(row[j])
                ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
            if j == 0 and titles:
                ax.set_title(titles[i], fontsize=7, loc="left")
            elif i == 0 and column_titles and j < len(column_titles):
                ax.set_title(column_titles[j], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_learning_curve(steps, values, path, baseline=None, ylabel="test abs_rel"):
    """Writes a PNG of a metric against the training step.

    Args:
        steps: ``[N]`` ints, training steps.
        values: ``[N]`` floats, the metric at each step.
        path: output ``.png`` path.
        baseline: optional float drawn as a dashed line (e.g. constant depth).
        ylabel: the metric's name.
    Returns:
        ``path``.
    """
    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    axes.plot(steps, values, marker="o", label="trained network")
    if baseline is not None:
        axes.axhline(baseline, linestyle="--", color="grey", label="constant depth")
    axes.set_xlabel("training step")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
