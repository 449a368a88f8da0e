"""The paper's ROI anomaly score S, the :class:`ScoreSettings` and the :class:`PhotoScore` record.

DESIGN.md step 10. Plain functions on arrays; no torch, no file I/O. The face-referenced score
of the asymmetry method is :mod:`cleftscore.score.asymmetry`; :func:`score_face_referenced`
here gives it the same :class:`PhotoScore` shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cleftscore.heatmap import DifferenceSettings, difference_map, energy

__all__ = [
    "ASYMMETRY_SCORES",
    "ASYMMETRY_SCORE_DEFINITION",
    "NORMAL_FRACTION_DEFINITION",
    "PAPER_SCORE_DEFINITION",
    "ROIS",
    "SUM_EPSILON",
    "PhotoScore",
    "ScoreSettings",
    "heatmap_top",
    "roi_score",
    "score_definition",
    "score_face_referenced",
    "score_photo",
]


ROIS = ("mouth", "face", "full")
#: What the asymmetry method puts in the score column: the face-referenced asymmetry score
#: (:mod:`cleftscore.score.asymmetry`, the default) or the paper's S of the face against its mirror.
ASYMMETRY_SCORES = ("face-referenced", "paper")
PAPER_SCORE_DEFINITION = "S = -log(sqrt(sum over ROI of eroded PSE) / N); higher = closer to normal"
ASYMMETRY_SCORE_DEFINITION = (
    "face-referenced asymmetry score (higher = more symmetric): -0.5 log of the 99th percentile of the "
    "shift-tolerant, lighting- and contrast-normalised face-vs-mirror difference over the upper-lip skin, relative "
    "to its median over the same face's cheeks, nose bridge and jaw, minus 0.6 log of the same ratio (99th "
    "percentile over mean) for dark vertical valleys that the face has and its mirror lacks (docs/asymmetry_score.md)"
)
NORMAL_FRACTION_DEFINITION = (
    "fraction of the normal reference photos (115 adults) whose face-referenced asymmetry score is higher "
    "(more symmetric); 0.97 = less symmetric than 97 % of them"
)

#: Top of the heat map's colour scale for the paper's maps, per (metric, colour space, eroded):
#: twice the median, over 39 normal adult reference photos, of the 99th percentile of the map
#: (face against its registered mirror) in the mouth region, so a normal mouth region stays in
#: the lower half of the scale and a defect saturates it. LPIPS was not measured (no VGG16 here);
#: its maps are distances of unit-normalised features, about 0..1.
_PAPER_HEATMAP_TOP = {
    ("pse", "ycbcr", True): 4400.0,
    ("pse", "ycbcr", False): 7300.0,
    ("pse", "rgb", True): 17000.0,
    ("pse", "rgb", False): 28000.0,
    ("ssim", "ycbcr", True): 1.7,
    ("ssim", "ycbcr", False): 2.1,
    ("ssim", "rgb", True): 5.3,
    ("ssim", "rgb", False): 6.3,
}

#: Floor for the ROI sum before the log, so identical images give a finite score
#: ``-log(sqrt(1e-12) / N) = 13.8 + log(N)`` instead of ``+inf``.
SUM_EPSILON = 1e-12


@dataclass(frozen=True)
class ScoreSettings:
    """Every knob that turns a photo pair into a score (written to result.json and the CSV).

    Attributes
    ----------
    roi : {"mouth", "face", "full"}
        Region of interest from the landmarks (ignored for the mask when ``mask_file`` is set,
        but still recorded).
    difference : DifferenceSettings
        Metric, colour space and erosion.
    mask_file : str or None
        User-supplied mask image that overrides the landmark ROI.
    asymmetry_score : {"face-referenced", "paper"}
        Asymmetry method only: the score column is the face-referenced asymmetry score
        (default; the upper-lip skin against the same face's control regions, with the
        user mask as its region when one is given) or the paper's S of the face against its
        mirror image over ``roi``. The GAN method always uses S.
    heatmap_max : float or None
        Top of the heat map's colour scale, the same for every photo of a run; None: the
        method's standard scale (:func:`heatmap_top`).
    """

    roi: str = "mouth"
    difference: DifferenceSettings = field(default_factory=DifferenceSettings)
    mask_file: str | None = None
    asymmetry_score: str = "face-referenced"
    heatmap_max: float | None = None

    def __post_init__(self) -> None:
        if self.roi not in ROIS:
            raise ValueError(f"roi must be one of {', '.join(ROIS)}, got {self.roi!r}")
        if not isinstance(self.difference, DifferenceSettings):
            raise ValueError(f"difference must be a DifferenceSettings, got {type(self.difference).__name__}")
        if self.mask_file is not None and not isinstance(self.mask_file, str):
            raise ValueError(f"mask_file must be a str path or None, got {self.mask_file!r}")
        if self.asymmetry_score not in ASYMMETRY_SCORES:
            raise ValueError(
                f"asymmetry_score must be one of {', '.join(ASYMMETRY_SCORES)}, got {self.asymmetry_score!r}"
            )
        if self.heatmap_max is not None:
            v = self.heatmap_max
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise ValueError(f"heatmap_max must be a finite number > 0 or None, got {v!r}")
            object.__setattr__(self, "heatmap_max", float(v))

    def face_referenced(self, method: str) -> bool:
        """Whether a photo normalized by ``method`` gets the face-referenced asymmetry score."""
        return method == "asymmetry" and self.asymmetry_score == "face-referenced"

    def to_dict(self) -> dict[str, Any]:
        """Flat ``{"metric", "colorspace", "erosion", "roi", "mask_file", ...}`` for CSV/JSON."""
        return {
            "metric": self.difference.metric,
            "colorspace": self.difference.colorspace,
            "erosion": int(self.difference.erosion),
            "roi": self.roi,
            "mask_file": self.mask_file,
            "asymmetry_score": self.asymmetry_score,
            "heatmap_max": self.heatmap_max,
        }


def heatmap_top(method: str, settings: ScoreSettings) -> float:
    """Top of the colour scale of every heat map of a run (``settings.heatmap_max`` when set).

    Parameters
    ----------
    method : str
        ``"gan"`` or ``"asymmetry"``.
    settings : ScoreSettings

    Returns
    -------
    float
        The face-referenced map: twice the normal reference photos' typical 99th percentile of
        the map in the scored region (``heatmap_scale`` of the shipped normative reference).
        The paper's maps: the same rule, per metric and colour space (:data:`_PAPER_HEATMAP_TOP`);
        LPIPS: 1.
    """
    if settings.heatmap_max is not None:
        return float(settings.heatmap_max)
    if settings.face_referenced(method):
        from cleftscore.score.reference import load_reference

        return 2.0 * float(load_reference().heatmap_scale)
    d = settings.difference
    if d.metric == "lpips":
        return 1.0
    return _PAPER_HEATMAP_TOP[(d.metric, d.colorspace, int(d.erosion) > 1)]


@dataclass(frozen=True)
class PhotoScore:
    """Score and heat map of one photo.

    Attributes
    ----------
    score : float
        ``S = -log(sqrt(sum of the eroded map over the ROI) / N)``; higher = closer to normal.
    heatmap : (H, W) ndarray of float32
        Channel sum of the eroded difference map in the aligned frame, >= 0 (a ``(1, H, W)`` or
        ``(H, W, 1)`` map is squeezed when the record is built).
    roi_pixels : float
        N, the ROI pixel count (sum of mask weights for a soft mask).
    settings : ScoreSettings
        The settings that produced it.
    """

    score: float
    heatmap: np.ndarray
    roi_pixels: float
    settings: ScoreSettings

    def __post_init__(self) -> None:
        if isinstance(self.score, bool) or not isinstance(self.score, (int, float, np.floating)):
            raise ValueError(f"score must be a real number, got {type(self.score).__name__}")
        if not math.isfinite(float(self.score)):
            raise ValueError(f"score must be finite, got {self.score}")
        object.__setattr__(self, "score", float(self.score))
        hm = np.asarray(self.heatmap)
        if hm.ndim == 3 and hm.shape[0] == 1:
            hm = hm[0]
        elif hm.ndim == 3 and hm.shape[-1] == 1:
            hm = hm[..., 0]
        if hm.ndim != 2:
            raise ValueError(f"heatmap must be [H, W] (or [1, H, W]), got shape {hm.shape}")
        hm = np.array(hm, dtype=np.float32)  # own copy: frozen record, read-only
        if not np.all(np.isfinite(hm)):
            raise ValueError("heatmap contains NaN or infinite values")
        if hm.size and float(hm.min()) < 0.0:
            raise ValueError(f"heatmap must be >= 0, got minimum {float(hm.min()):.4g}")
        hm.setflags(write=False)
        object.__setattr__(self, "heatmap", hm)
        n = float(self.roi_pixels)
        if not n > 0:
            raise ValueError(f"roi_pixels must be > 0, got {self.roi_pixels}")
        object.__setattr__(self, "roi_pixels", n)
        if not isinstance(self.settings, ScoreSettings):
            raise ValueError(f"settings must be a ScoreSettings, got {type(self.settings).__name__}")


def _check_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.shape != shape:
        raise ValueError(f"mask must have shape {shape} (the map's H, W), got {m.shape}")
    if m.dtype == bool:
        return m.astype(np.float64)
    if not (np.issubdtype(m.dtype, np.floating) or np.issubdtype(m.dtype, np.integer)):
        raise ValueError(f"mask must be bool or numeric in [0, 1], got dtype {m.dtype}")
    m = m.astype(np.float64)
    if not np.all(np.isfinite(m)) or m.min() < 0.0 or m.max() > 1.0:
        raise ValueError(
            "mask values must be in [0, 1] (bool, or float weights for a soft mask); "
            f"got range [{np.nanmin(m):.4g}, {np.nanmax(m):.4g}]"
        )
    return m


def roi_score(diff: np.ndarray, mask: np.ndarray) -> float:
    """Anomaly score of a difference map over a region of interest.

    Parameters
    ----------
    diff : (H, W) or (H, W, C) ndarray
        Eroded difference map, >= 0 (eroded PSE, 1 - SSIM or LPIPS).
    mask : (H, W) ndarray
        ROI, bool or weights in [0, 1] (soft mask).

    Returns
    -------
    float
        ``S = -log( sqrt( sum_{ROI, c} m * d ) / N )`` with natural log and
        ``N = sum(m)``. Higher = closer to normal; always finite.

    Raises
    ------
    ValueError
        Empty mask, shapes that do not match, negative or non-finite map values, or mask
        values outside [0, 1].

    Notes
    -----
    The paper writes ``S = -log(||x - y||_F / N)``. With ``d`` the eroded absolute difference,
    ``d**2`` is the eroded PSE map (grey erosion commutes with the monotone square on
    non-negative values), so ``||.||_F = sqrt(sum of eroded PSE over the ROI pixels and
    channels)``. For SSIM and LPIPS maps the map value replaces the eroded PSE in the same
    formula (the paper's comparison rows). The sum is floored at :data:`SUM_EPSILON` (1e-12) so
    identical images give a large finite score instead of ``+inf`` (CSV files never hold inf).
    """
    d = np.asarray(diff)
    if not np.issubdtype(d.dtype, np.floating):
        d = d.astype(np.float64)
    if d.ndim == 2:
        d = d[..., None]
    if d.ndim != 3:
        raise ValueError(f"difference map must be (H, W) or (H, W, C), got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise ValueError("difference map contains NaN or infinite values")
    if d.size and d.min() < 0.0:
        raise ValueError(f"difference map must be >= 0, got minimum {float(d.min()):.4g}")
    m = _check_mask(mask, d.shape[:2])
    n = float(m.sum())
    if not n > 0.0:
        raise ValueError("the ROI mask is empty (no pixel selected); check the ROI or mask file")
    # Only the rows and columns the mask reaches: the pixels outside add exact zeros.
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    total = float(np.einsum("hw,hwc->", m[box], d[box].astype(np.float64)))
    return -math.log(math.sqrt(max(total, SUM_EPSILON)) / n)


def score_photo(
    original: np.ndarray,
    normalized: np.ndarray,
    mask: np.ndarray,
    *,
    settings: ScoreSettings,
    lpips_distance: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> PhotoScore:
    """Difference map, heat map and ROI score of one aligned photo and its normalized face.

    Parameters
    ----------
    original, normalized : (H, W, 3) ndarray
        Aligned input and normalized face, RGB ``uint8`` 0..255 or float 0..1.
    mask : (H, W) ndarray
        ROI mask in the aligned frame, bool or weights in [0, 1].
    settings : ScoreSettings
        Scoring settings (the ROI name is recorded; the mask passed in is what is used).
    lpips_distance : callable, optional
        Spatial LPIPS callable, needed for ``metric="lpips"`` (see
        :func:`cleftscore.heatmap.lpips_map`).

    Returns
    -------
    PhotoScore
        Score ``S`` (higher = more normal), the (H, W) heat map (channel sum of the eroded map,
        >= 0), the ROI size and the settings.

    Raises
    ------
    ValueError
        Any input check of :func:`cleftscore.heatmap.difference_map` or :func:`roi_score`.
    """
    if not isinstance(settings, ScoreSettings):
        raise ValueError(f"settings must be a ScoreSettings, got {type(settings).__name__}")
    diff = difference_map(original, normalized, settings=settings.difference, lpips_distance=lpips_distance)
    m = _check_mask(mask, diff.shape[:2])
    s = roi_score(diff, m)
    return PhotoScore(score=s, heatmap=energy(diff), roi_pixels=float(m.sum()), settings=settings)


def score_definition(method: str, settings: ScoreSettings) -> str:
    """One line saying what the score column of a photo normalized by ``method`` is."""
    return ASYMMETRY_SCORE_DEFINITION if settings.face_referenced(method) else PAPER_SCORE_DEFINITION


def score_face_referenced(
    face: np.ndarray,
    mirror: np.ndarray,
    landmarks: np.ndarray,
    *,
    settings: ScoreSettings,
    user_mask: np.ndarray | None = None,
    hand_corrected: bool = False,
) -> tuple[PhotoScore, np.ndarray]:
    """The asymmetry method's face-referenced score of one aligned face and its registered mirror.

    Parameters
    ----------
    face, mirror : (S, S, 3) ndarray of uint8
        Aligned face and its registered mirror image (the asymmetry normalizer's output).
    landmarks : (68, 2) ndarray
        iBUG-68 landmarks in the aligned frame.
    settings : ScoreSettings
        Recorded with the score (``heatmap_max``, ``asymmetry_score``).
    user_mask : (S, S) ndarray, optional
        A user-drawn region that replaces the upper-lip skin.
    hand_corrected : bool
        The landmarks were corrected by hand: they are used as given, not placed again.

    Returns
    -------
    (PhotoScore, (S, S) bool ndarray)
        The score (:func:`cleftscore.score.asymmetry.asymmetry_score` with its default
        settings) and heat map, and the region it was taken over (for the overlays).
    """
    from cleftscore.score.asymmetry import AsymmetrySettings, asymmetry_score, score_region

    # Hand-corrected landmarks are used as given (the mirror normalizer registers on them too).
    fr = AsymmetrySettings(landmarks="given") if hand_corrected else AsymmetrySettings()
    size = np.asarray(face).shape[0]
    if user_mask is not None:
        region = _check_mask(user_mask, (size, size)) > 0.5
    else:
        region = score_region(landmarks, size, settings=fr)
    r = asymmetry_score(face, landmarks, settings=fr, mirror=mirror, roi=region if user_mask is not None else None)
    return PhotoScore(
        score=r.score, heatmap=r.heatmap, roi_pixels=float(max(region.sum(), 1)), settings=settings
    ), region
