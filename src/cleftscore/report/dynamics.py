"""Pictures of the adaptation dynamics: the residual curve and the reappearance strip.

The strip is the paper's Figure 8 for the user's own photo: the normalized face after chosen
numbers of adaptation steps, side by side, so the cleft can be seen coming back. The curve plot
shows ``E(s) / E(0)`` (see :mod:`cleftscore.gan.dynamics`) with the fraction ``f``, the
reappearance step and the step that gave the normalized face.

Both are rendered to arrays (matplotlib's Agg canvas, Pillow's built-in font); nothing is written
and nothing is loaded from the network.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["curve_figure", "reappearance_strip"]


def curve_figure(
    curve: np.ndarray,
    *,
    fraction: float,
    reappearance_step: int,
    reached: bool,
    adapt_steps: int,
    dpi: int = 100,
) -> np.ndarray:
    """The normalised ROI residual curve as an ``(h, w, 3)`` uint8 image.

    Raises
    ------
    ValueError
        A curve with fewer than two values or a non-positive start.
    """
    c = np.asarray(curve, dtype=np.float64).ravel()
    if c.size < 2 or not c[0] > 0:
        raise ValueError("a curve needs >= 2 values and a positive start")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 2.6), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    steps = np.arange(c.size)
    ax.plot(steps, c / c[0], color="#1f4e79", lw=1.6)
    ax.axhline(fraction, color="#888888", ls="--", lw=1, label=f"f = {fraction:g}")
    if 0 < adapt_steps < c.size:
        ax.axvline(adapt_steps, color="#2e7d32", ls=":", lw=1.2, label=f"normalized face ({adapt_steps})")
    label = f"reappearance step {reappearance_step}" + ("" if reached else " (not reached)")
    ax.axvline(reappearance_step, color="#c62828", lw=1.2, label=label)
    ax.set_xlabel("adaptation step")
    ax.set_ylabel("ROI residual / start")
    ax.set_ylim(0, max(1.05, float(np.max(c / c[0])) * 1.05))
    ax.legend(fontsize=7, loc="upper right", frameon=False)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def reappearance_strip(snapshots: Mapping[int, np.ndarray], *, height: int = 256) -> np.ndarray:
    """The normalized face at each recorded step, left to right, each labelled with its step.

    Parameters
    ----------
    snapshots : mapping of int to (S, S, 3) uint8
        Step -> image (all the same size).
    height : int
        Height of each face in the strip.

    Raises
    ------
    ValueError
        No snapshots, or images of different sizes.
    """
    from PIL import Image, ImageDraw

    if not snapshots:
        raise ValueError("a reappearance strip needs at least one snapshot")
    shapes = {np.asarray(img).shape for img in snapshots.values()}
    if len(shapes) != 1:
        raise ValueError(f"snapshots differ in size: {sorted(shapes)}")
    label_h = 18
    tiles = []
    for step in sorted(snapshots):
        img = Image.fromarray(np.asarray(snapshots[step], dtype=np.uint8)).resize(
            (height, height), Image.Resampling.LANCZOS
        )
        tile = Image.new("RGB", (height, height + label_h), (255, 255, 255))
        tile.paste(img, (0, label_h))
        ImageDraw.Draw(tile).text((4, 3), f"step {step}", fill=(0, 0, 0))
        tiles.append(np.asarray(tile))
    gap = np.full((height + label_h, 4, 3), 255, np.uint8)
    parts = [tiles[0]]
    for t in tiles[1:]:
        parts += [gap, t]
    return np.concatenate(parts, axis=1)
