"""Scatter plot of scores against ratings, with labelled points and the least-squares line.

A pure function: numbers and words in, an ``(H, W, 3)`` uint8 picture out (matplotlib's object
API on an Agg canvas, so nothing global changes and nothing is written).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["scatter_image"]


def scatter_image(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    labels: Sequence[str],
    title: str,
    xlabel: str,
    ylabel: str,
) -> np.ndarray:
    """Points ``(x, y)`` labelled by name, with the least-squares line of y on x.

    Parameters
    ----------
    x, y : (n,) array_like of float
        Coordinates, n >= 2 (for an evaluation: the raw human ratings and the scores).
    labels : sequence of str
        One short label per point, written next to it.
    title : str
        Figure title (may hold a line break).
    xlabel, ylabel : str
        Axis labels.

    Returns
    -------
    (H, W, 3) ndarray of uint8
        The rendered 640 x 480 figure. The fit line (and its legend) is drawn only when the
        x values are not all equal.

    Raises
    ------
    ValueError
        Fewer than 2 points, or ``x``, ``y`` and ``labels`` of different lengths.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.ndim != 1 or xs.shape != ys.shape or len(labels) != xs.size:
        raise ValueError(
            f"x, y and labels must be 1-D of one length, got shapes {xs.shape}, {ys.shape} and {len(labels)} labels"
        )
    if xs.size < 2:
        raise ValueError(f"a scatter plot needs at least 2 points, got {xs.size}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(xs, ys, s=24, color="tab:blue", zorder=3)
    for name, xi, yi in zip(labels, xs, ys, strict=True):
        ax.annotate(name, (xi, yi), xytext=(3, 3), textcoords="offset points", fontsize=7)
    if np.ptp(xs) > 0:
        slope, intercept = np.polyfit(xs, ys, 1)
        line = np.linspace(xs.min(), xs.max(), 50)
        ax.plot(line, slope * line + intercept, color="tab:red", lw=1.2, label="least-squares fit")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])
