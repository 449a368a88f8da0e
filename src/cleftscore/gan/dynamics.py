"""Adaptation dynamics: how many adaptation steps until the cleft comes back (the paper's future work).

The paper observes that adapting the generator beyond about 50 steps gradually rebuilds the cleft
itself, and proposes the number of steps this takes as a second severity index. With
``roi`` given, :func:`cleftscore.gan.adapt.adapt` records the *ROI residual energy* between the
photo and the image each adaptation step renders anyway (before that step's update), and once
more after the last update: a curve ``E(0..steps)`` per photo, accumulated on the device.

Residual energy (the default score's difference map, on the device): the squared difference of
photo and rendering in BT.601 YCbCr, in 8-bit code units, eroded by a 3 x 3 minimum filter per
channel (reflected borders), summed over the channels, and averaged over the ROI with the mask's
weights: ``E = sum(m * d) / sum(m)``.

Indices of the curve:

- ``residual_integral``: the mean of ``E`` over all recorded steps: how much residual the
  adaptation path carries before the region is rebuilt. On the planted benchmark it follows
  severity best (Spearman rho 0.95; bench/results/dynamics_planted_g64_cpu.json).
- ``level_step`` (only with a ``level``): the first step at which ``E(s) <= level``, an absolute
  residual level such as that of normal faces at the normalized step: how many steps until the
  region is rebuilt as far as a normal face's (rho 0.87 on the planted benchmark with the clean
  faces' median there as the level). The level is in the curve's units and depends on the
  generator, so it has to be measured on normal faces of the same model.
- ``reappearance_step``: the first step at which ``E(s) / E(0) <= f`` (``reached = False`` and the
  last step when it never gets there), and ``curve_auc``, the area under ``E(s) / E(0)`` per
  step: the relative forms the paper's wording suggests. On the planted benchmark they do *not*
  follow severity (rho 0.07-0.64 over f; curve area -0.18): a large defect starts with a large
  residual and is rebuilt at a similar *relative* rate, so the relative curves of mild and
  severe defects look alike. They are kept for comparison.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cleftscore.gan.adapt import AdaptSettings

__all__ = [
    "DEFAULT_FRACTION",
    "DynamicsIndices",
    "curve_indices",
    "dynamics_adapt_settings",
    "roi_residual_energy",
]

#: Default ``f`` of :func:`curve_indices`: the best of 0.2..0.9 on the planted benchmark (rho 0.64,
#: bench/results/dynamics_planted_g64_cpu.json); prefer ``residual_integral`` as the index.
DEFAULT_FRACTION = 0.9

# BT.601 (as skimage.color.rgb2ycbcr) applied to a difference of RGB values in [0, 1]: the offsets
# cancel, so the difference in YCbCr code units is this matrix times the RGB difference.
_YCBCR = (
    (65.481, 128.553, 24.966),
    (-37.797, -74.203, 112.0),
    (112.0, -93.786, -18.214),
)


def ycbcr_matrix(device: torch.device | str) -> Tensor:
    """The BT.601 difference matrix on ``device`` (make it once, outside a step loop)."""
    return torch.tensor(_YCBCR, dtype=torch.float32, device=device)


def roi_residual_energy(
    images: Tensor, targets: Tensor, roi: Tensor, *, erosion: int = 3, matrix: Tensor | None = None
) -> Tensor:
    """Per-photo ROI residual energy ``[N]`` of renderings against photos, on their device.

    Parameters
    ----------
    images, targets : Tensor
        ``[N, 3, R, R]`` images in [-1, 1] (renderings and photos).
    roi : Tensor
        ``[N, R, R]`` (or ``[N, 1, R, R]``) ROI weights in [0, 1], each with a non-zero sum.
    erosion : int
        Side of the minimum filter (0 or 1: none).
    matrix : Tensor, optional
        :func:`ycbcr_matrix` on the images' device; given by step loops so that no step copies
        it from the host (which a CUDA graph could not capture).

    Returns
    -------
    Tensor
        ``[N]`` float32: the mean eroded YCbCr squared difference over each ROI.
    """
    m = roi.reshape(roi.shape[0], 1, *roi.shape[-2:]).to(device=images.device, dtype=torch.float32)
    diff = (images.float() - targets.float()) * 0.5  # [-1, 1] -> differences of [0, 1] values
    mat = ycbcr_matrix(images.device) if matrix is None else matrix
    d = torch.einsum("kc,nchw->nkhw", mat, diff).square()
    if erosion > 1:
        pad = erosion // 2
        d = -F.max_pool2d(-F.pad(d, (pad, pad, pad, pad), mode="reflect"), erosion, stride=1)
    return (d.sum(dim=1, keepdim=True) * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp_min(1e-12)


@dataclass(frozen=True)
class DynamicsIndices:
    """The adaptation-dynamics indices of one photo (see the module docstring).

    Attributes
    ----------
    reappearance_step : int
        First step with ``E(s) <= fraction * E(0)``; ``steps`` when never reached.
    reached : bool
        Whether the curve got there within the recorded steps.
    curve_auc : float
        Area under ``E(s) / E(0)`` per step.
    residual_integral : float
        Mean of ``E`` over the recorded steps.
    level, level_step : float or None, int or None
        The absolute level given, and the first step with ``E(s) <= level`` (``steps`` if never).
    fraction : float
        The ``f`` used.
    steps : int
        Adaptation steps recorded.
    energy_start, energy_end : float
        ``E(0)`` and ``E(steps)``.
    """

    reappearance_step: int
    reached: bool
    curve_auc: float
    fraction: float
    steps: int
    energy_start: float
    energy_end: float
    residual_integral: float = float("nan")
    level: float | None = None
    level_step: int | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-serialisable dict."""
        return dataclasses.asdict(self)


def curve_indices(
    curve: np.ndarray, *, fraction: float = DEFAULT_FRACTION, level: float | None = None
) -> DynamicsIndices:
    """Indices of one ROI residual curve ``E(0..steps)``.

    Raises
    ------
    ValueError
        A curve with fewer than two points, non-finite or negative values, or ``fraction``
        outside (0, 1).
    """
    c = np.asarray(curve, dtype=np.float64).ravel()
    if c.size < 2 or not np.all(np.isfinite(c)) or c.min() < 0:
        raise ValueError(f"a residual curve needs >= 2 finite non-negative values, got {c.size}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    if level is not None and not level > 0:
        raise ValueError(f"level must be > 0, got {level}")
    steps = c.size - 1
    norm = c / max(c[0], 1e-20)
    below = np.flatnonzero(norm <= fraction)
    reached = below.size > 0
    return DynamicsIndices(
        reappearance_step=int(below[0]) if reached else steps,
        reached=bool(reached),
        curve_auc=float(np.trapezoid(norm) / steps),
        fraction=float(fraction),
        steps=int(steps),
        energy_start=float(c[0]),
        energy_end=float(c[-1]),
        residual_integral=float(c.mean()),
        level=None if level is None else float(level),
        level_step=_level_step(c, level),
    )


def _level_step(c: np.ndarray, level: float | None) -> int | None:
    if level is None:
        return None
    hit = np.flatnonzero(c <= level)
    return int(hit[0]) if hit.size else int(c.size - 1)


def dynamics_adapt_settings(
    base: AdaptSettings, dynamics_steps: int, strip_steps: tuple[int, ...] = ()
) -> AdaptSettings:
    """Settings that run ``dynamics_steps`` adaptation steps and keep the normalized image.

    The normalized face stays the image after ``base.steps`` updates (a snapshot); the steps
    beyond it only feed the curve and the reappearance strip (``strip_steps``, clipped to the
    run).

    Raises
    ------
    ValueError
        When ``dynamics_steps`` is smaller than ``base.steps``.
    """
    if dynamics_steps < base.steps:
        raise ValueError(f"dynamics steps ({dynamics_steps}) must be >= the adaptation steps ({base.steps})")
    keep = {base.steps, *base.snapshot_steps, *(s for s in strip_steps if 0 <= s <= dynamics_steps)}
    return dataclasses.replace(base, steps=dynamics_steps, snapshot_steps=tuple(sorted(keep)))
