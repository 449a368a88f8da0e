"""Scores of the weights-free asymmetry method that measure the face rather than the photograph.

The mirror normalizer (:mod:`cleftscore.normalize.mirror`) gives a face ``x`` and its registered mirror
image ``y``. The paper's score ``S = -log(sqrt(sum_ROI d) / N)`` of their eroded squared
difference ``d`` depends as much on the photograph (sharpness, upsampling, JPEG, lighting, the
size of the face) as on the face: two faces photographed differently are not comparable. The
settings here, each switchable for the benchmark (``cleftscore bench cleft-synth``):

* ``photometric``: both images are reduced to their local structure before the difference: the
  smooth lighting (a Gaussian mean at ``scale`` intercanthal distances) is removed and the local
  contrast is matched (each image divided by its own local standard deviation), so a side light
  or a dim photo no longer scores as asymmetry.
* ``tolerance``: each face pixel is compared with the best-matching mirror pixel within a small
  disc, so a registration error of a few pixels at an edge is forgiven but a gap is not.
* ``refine``: a dense optical flow from the face to its mirror, smoothed at ``refine_scale``
  intercanthal distances, warps the mirror once more (measured; off by default: it did not help).
* ``reference="control"``: the statistic of the map in the ROI is divided by the median of the
  map in control regions of the same face (cheeks, nose bridge, jaw: the face region outside the
  grown mouth region), so what raises the difference everywhere cancels.
* ``roi="skin"``: only the skin of the upper lip is scored (between the nostril sills and the red
  lip), where the gap of a cleft lip is and where a normal face has few edges that the mirror
  registration leaves behind (``"upper"``, with the nostrils and the red lip, was the first
  version's region).
* ``valley``: a second, targeted term: a dark, roughly vertical valley (second derivative across
  the face of the smoothed luma) that the face has and its mirror image lacks nearby: the gap of a
  unilateral cleft through the lip skin. Its weight sets its share of the score.

The defaults are the combination that won the benchmark (docs/asymmetry_score.md). The score
keeps the convention of :func:`cleftscore.score.paper.roi_score`: higher = more normal. A bilateral
cleft is its own mirror image and is not seen.

Plain functions on arrays; no torch, no file I/O.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cleftscore.face.roi import roi_mask
from cleftscore.face.symmetric import IBUG68_MIRROR, symmetric_landmarks
from cleftscore.heatmap import erode, to_colorspace

__all__ = [
    "REFERENCES",
    "STATISTICS",
    "AsymmetryScore",
    "AsymmetrySettings",
    "NasolabialIndices",
    "asymmetry_score",
    "control_mask",
    "intercanthal_distance",
    "nasolabial_indices",
    "photometric_normalize",
    "refine_mirror",
    "score_region",
    "tolerant_difference",
    "upper_lip_mask",
    "upper_lip_skin_mask",
    "valley_difference",
    "ISSUE25_V1_SETTINGS",
    "ISSUE25_V2_SETTINGS",
    "PREVIOUS_SETTINGS",
    "YCBCR_SETTINGS",
]

REFERENCES = ("none", "control")
STATISTICS = ("peak", "mean")
#: Floor of the mean differences before logs and ratios (squared 8-bit code units, or squared
#: local-contrast units with ``photometric``), so identical images give a finite score.
_FLOOR = 1e-9
#: Floor of the valley statistics (local-contrast units) before their ratio.
_VALLEY_FLOOR = 1e-3


@dataclass(frozen=True)
class AsymmetrySettings:
    """How the asymmetry score is made from a face and its registered mirror image.

    Attributes
    ----------
    photometric : bool
        Remove the smooth lighting and match local contrast before the difference.
    scale : float
        Width (Gaussian sigma) of the local mean and contrast, in intercanthal distances.
    refine : bool
        Dense flow refinement of the mirror registration.
    refine_scale : float
        Gaussian sigma of the flow smoothing, in intercanthal distances.
    tolerance : float
        Shift tolerance of the difference, in intercanthal distances: each pixel of the face is
        compared with the best-matching mirror pixel within this radius (0 = the same pixel).
    statistic : {"peak", "mean"}
        ``"peak"``: the ``quantile`` percentile of the pooled map; ``"mean"``: its mean.
    quantile : float
        Percentile used by ``"peak"`` (in the ROI and in the control region alike).
    pool : float
        Gaussian sigma of the pooling of the map before the statistic, intercanthal distances
        (0 = none). 0.06 (0.03 before the second round of issue 25): the 99th percentile of a
        wider pool moves less when the same face is aligned a little differently.
    reference : {"none", "control"}
        ``"control"``: the ROI difference relative to the control regions of the same face.
    control_statistic : {"median", "mean", "same"}
        What is taken of the control region: the median or mean of the pooled map, or the same
        statistic as in the ROI.
    roi : {"skin", "upper", "mouth", "face"}
        Region scored: ``"skin"`` (default) is the skin of the upper lip only
        (:func:`upper_lip_skin_mask`); ``"upper"`` the nose base and the whole upper lip
        (:func:`upper_lip_mask`, the first version's region); ``"mouth"`` and ``"face"`` are the
        pipeline's regions. The control region is the face region minus the dilated mouth region.
    valley : float
        Weight of the valley term (0 = off): ``-valley * log(stat_ROI(v) / mean_CTRL(v))`` of
        the map ``v`` of :func:`valley_difference` is added to the score. 0.6 (the ratio of the
        two terms' spreads on the normal reference photos) until the second round of issue 25;
        2.0 since: the valley term reads the luma only and moves little when the photo is saved
        differently, and weighted up it separated the clefts of the robustness photos from the
        normal faces better (AUROC 0.86 -> 0.89) while a grayscale copy moved the score 0.25
        instead of 0.68 of the cleft-vs-normal gap (90th percentile; docs/asymmetry_score.md).
    valley_width, valley_length : float
        Gaussian sigmas of the valley filter across and along the face, intercanthal distances.
    erosion : int
        Grey-erosion size of the difference map (paper: 3).
    work_size : int
        Side the face is resampled to before the difference (area averaging; 0 = as given).
    presmooth : float
        Gaussian sigma, intercanthal distances, with which the face and its mirror image are
        smoothed at the working size before anything is compared (0 = not at all). 0.013 (about
        one pixel of a 512-pixel face) since the third round of issue 25: without it, moving the
        aligned face, its mirror and its landmarks together by half a pixel, which changes
        nothing about the face, moved the score by 0.18 of the cleft-vs-normal gap (90th
        percentile); with it, 0.07. The finest texture that a resampling, JPEG or sensor noise
        changes is gone, and the clefts of the robustness photos separated better from the
        normal faces (AUROC 0.92 -> 0.95; docs/asymmetry_score.md).
    color : {"ycbcr_floor", "ycbcr", "luma"}
        Channels compared. ``"ycbcr"`` (the score before issue 25): luma and both chroma
        channels, each divided by its own local spread; a chroma channel's faint texture then
        counted as much as the luma's edges and set the control region's median, and a
        grayscale copy of a photo, whose chroma is flat, scored 0.84 of the cleft-vs-normal gap
        away from its colour original (median; 1.31 on the benchmark's photos).
        ``"ycbcr_floor"`` (default): the chroma's local variance gets the floor
        ``chroma_floor``, so only colour edges count. ``"luma"``: the luma only (immune to
        grayscale, but it lost the cleft children's separation: AUROC 0.92, repair 0.67).
    floor : float
        Added to the ROI and control statistics of the residual term (squared local-contrast
        units): the luma alone matches within the tolerance disc almost everywhere, so its
        control median is about 0 and the ratio would amplify noise. 0.02 (about half the
        ``"ycbcr"`` score's control median on normal photos) was chosen among 0.01, 0.02, 0.05
        and 0.1 on the development sets and the robustness benchmark (docs/asymmetry_score.md).
    chroma_floor : float
        Floor of the chroma channels' local variance with ``color="ycbcr_floor"``, squared
        8-bit code units (16 in the first round of issue 25; 64 since).
    luma_floor : float
        Floor of the luma's local variance, squared 8-bit code units: 4 until the second round
        of issue 25; 256 since, so the flat skin's faint texture, sensor noise and JPEG blocks
        are not raised to unit contrast while real edges (a gap, the lip line) still are.
    landmarks : {"symmetric", "given"}
        Landmarks of the regions: ``"symmetric"`` (default) places them again on the aligned
        face and on its mirror image and averages the two
        (:func:`cleftscore.face.symmetric.symmetric_landmarks`), so a mirror-flipped photo is
        scored as its original; ``"given"`` uses the landmarks passed in. The mirror image
        must be registered with the same landmarks (the mirror normalizer uses the symmetric
        ones).
    """

    photometric: bool = True
    scale: float = 0.25
    refine: bool = False
    refine_scale: float = 0.5
    tolerance: float = 0.08
    statistic: str = "peak"
    quantile: float = 99.0
    pool: float = 0.06
    reference: str = "control"
    control_statistic: str = "median"
    roi: str = "skin"
    erosion: int = 3
    work_size: int = 512
    presmooth: float = 0.013
    valley: float = 2.0
    valley_width: float = 0.04
    valley_length: float = 0.12
    color: str = "ycbcr_floor"
    landmarks: str = "symmetric"
    floor: float = 0.02
    chroma_floor: float = 64.0
    luma_floor: float = 256.0

    def __post_init__(self) -> None:
        if self.landmarks not in ("symmetric", "given"):
            raise ValueError(f"landmarks must be 'symmetric' or 'given', got {self.landmarks!r}")
        if self.color not in ("ycbcr_floor", "ycbcr", "luma"):
            raise ValueError(f"color must be 'ycbcr_floor', 'ycbcr' or 'luma', got {self.color!r}")
        if self.reference not in REFERENCES:
            raise ValueError(f"reference must be one of {', '.join(REFERENCES)}, got {self.reference!r}")
        if self.roi not in ("skin", "upper", "mouth", "face"):
            raise ValueError(f"roi must be 'skin', 'upper', 'mouth' or 'face', got {self.roi!r}")
        if self.control_statistic not in ("median", "mean", "same"):
            raise ValueError(f"control_statistic must be median, mean or same, got {self.control_statistic!r}")
        for name in ("scale", "refine_scale", "valley_width", "valley_length"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number of intercanthal distances, got {v!r}")
        if isinstance(self.erosion, bool) or not isinstance(self.erosion, int) or self.erosion < 0:
            raise ValueError(f"erosion must be an integer >= 0, got {self.erosion!r}")
        if self.statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, got {self.statistic!r}")
        for name in ("tolerance", "pool", "valley", "floor", "chroma_floor", "luma_floor", "presmooth"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be >= 0 intercanthal distances, got {v!r}")
        if not (isinstance(self.quantile, (int, float)) and 50.0 <= self.quantile <= 100.0):
            raise ValueError(f"quantile must be a percentile in 50..100, got {self.quantile!r}")
        if (
            isinstance(self.work_size, bool)
            or not isinstance(self.work_size, int)
            or not (self.work_size == 0 or self.work_size >= 64)
        ):
            raise ValueError(f"work_size must be 0 or an integer >= 64, got {self.work_size!r}")

    def to_dict(self) -> dict[str, object]:
        """Flat settings for JSON."""
        return dataclasses.asdict(self)


#: The first face-referenced score of issue 19 (whole upper lip and nose base, no valley term):
#: ``AsymmetrySettings(**PREVIOUS_SETTINGS)``.
PREVIOUS_SETTINGS: dict[str, object] = {"roi": "upper", "valley": 0.0, "color": "ycbcr", "landmarks": "given",
                                        "floor": 0.0, "pool": 0.03, "luma_floor": 4.0, "presmooth": 0.0}  # fmt: skip

#: The score of issue 21 (lip skin, valley term, luma and chroma): ``AsymmetrySettings(**YCBCR_SETTINGS)``.
YCBCR_SETTINGS: dict[str, object] = {"color": "ycbcr", "landmarks": "given", "floor": 0.0, "valley": 0.6,
                                     "pool": 0.03, "luma_floor": 4.0, "presmooth": 0.0}  # fmt: skip

#: The first score of issue 25 (chroma floor 16, residual floor, symmetric landmarks, valley weight
#: 0.6): ``AsymmetrySettings(**ISSUE25_V1_SETTINGS)``.
ISSUE25_V1_SETTINGS: dict[str, object] = {"valley": 0.6, "pool": 0.03, "chroma_floor": 16.0, "luma_floor": 4.0,
                                          "presmooth": 0.0}  # fmt: skip

#: The score of the second round of issue 25 (no smoothing before the comparison):
#: ``AsymmetrySettings(**ISSUE25_V2_SETTINGS)``.
ISSUE25_V2_SETTINGS: dict[str, object] = {"presmooth": 0.0}


@dataclass(frozen=True)
class NasolabialIndices:
    """Landmark asymmetries of the nose base and upper lip, in intercanthal distances (>= 0).

    Attributes
    ----------
    alar_height : float
        Height difference of the alar bases (iBUG 31, 35) along the facial midline.
    alar_width : float
        Difference of their distances from the midline.
    cupid_bow : float
        Height difference of the Cupid's bow peaks (50, 52).
    columella : float
        Distance of the subnasale (33) from the midline.
    philtrum : float
        Distance of the upper-lip centre (51) from the midline.
    ab_ratio : float
        ``alar_height`` over the nasal length (nasion 27 to subnasale 33), both in pixels: the
        analogue of the graded set's A/B ratio.
    """

    alar_height: float
    alar_width: float
    cupid_bow: float
    columella: float
    philtrum: float
    ab_ratio: float

    @property
    def total(self) -> float:
        """Sum of the five intercanthal-unit indices."""
        return self.alar_height + self.alar_width + self.cupid_bow + self.columella + self.philtrum


@dataclass(frozen=True)
class AsymmetryScore:
    """The asymmetry score of one face.

    Attributes
    ----------
    score : float
        ``residual_score + valley * valley_score``; higher = more normal.
    heatmap : (H, W) ndarray of float32
        The eroded (shift-tolerant, photometrically normalised with the defaults) difference
        map summed over channels, >= 0, resampled to the input's aligned frame; with
        ``reference="control"`` divided by ``control_mean``, so it reads in multiples of the
        face's own residual in its control regions, as the score does.
    roi_mean : float
        The statistic of the pooled map over the ROI (the mean with ``statistic="mean"``).
    control_mean : float
        The same over the control region (NaN without a control reference).
    settings : AsymmetrySettings
    residual_score : float
        ``-0.5 * log(stat_ROI(d) / stat_CTRL(d))`` with ``reference="control"``, else
        ``-0.5 * log(stat_ROI(d))``; ``stat`` is the chosen percentile (or the mean) of the
        pooled map ``d``.
    valley_score : float
        ``-log((stat_ROI(v) + c) / (mean_CTRL(v) + c))`` (without the control:
        ``-log(stat_ROI(v) + c)``) of the valley map ``v`` (:func:`valley_difference`), ``c`` =
        1e-3; NaN when the valley weight is 0.
    """

    score: float
    heatmap: np.ndarray
    roi_mean: float
    control_mean: float
    settings: AsymmetrySettings = field(default_factory=AsymmetrySettings)
    residual_score: float = float("nan")
    valley_score: float = float("nan")

    def __post_init__(self) -> None:
        if not math.isfinite(float(self.score)):
            raise ValueError(f"score must be finite, got {self.score}")
        object.__setattr__(self, "score", float(self.score))
        hm = np.asarray(self.heatmap, dtype=np.float32)
        if hm.ndim != 2 or not np.all(np.isfinite(hm)) or (hm.size and hm.min() < 0):
            raise ValueError("heatmap must be a finite, non-negative (H, W) map")
        object.__setattr__(self, "heatmap", hm)


def _check_pair(face: np.ndarray, mirror: np.ndarray) -> None:
    for name, img in (("face", face), ("mirror", mirror)):
        a = np.asarray(img)
        if a.ndim != 3 or a.shape[-1] != 3 or a.dtype != np.uint8:
            raise ValueError(f"{name} must be an (H, W, 3) uint8 image, got shape {a.shape} dtype {a.dtype}")
    if np.asarray(face).shape != np.asarray(mirror).shape:
        raise ValueError(f"face and mirror differ in shape: {np.asarray(face).shape} vs {np.asarray(mirror).shape}")


def intercanthal_distance(landmarks: np.ndarray) -> float:
    """Distance between the inner eye corners (iBUG 39 and 42), pixels; at least 1."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        raise ValueError(f"landmarks must be finite (68, 2), got shape {lm.shape}")
    return max(float(np.linalg.norm(lm[42] - lm[39])), 1.0)


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(a, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def photometric_normalize(image: np.ndarray, *, sigma: float, spread: str = "own",
                          chroma_floor: float = 64.0, luma_floor: float = 4.0) -> np.ndarray:  # fmt: skip
    """Local structure of an image: lighting removed, local contrast set to 1.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        RGB, 0..255.
    sigma : float
        Gaussian sigma of the local mean and standard deviation, pixels (> 0).
    spread : {"own", "chroma_floor"}
        ``"own"``: ``c`` = 4 in every channel; ``"chroma_floor"``: ``c = chroma_floor`` in the
        two chroma channels, so a faint chroma texture (skin, sensor noise) is not amplified
        to unit contrast while a real colour edge (red lip, a gap) still counts.
    chroma_floor : float
        ``c`` of the chroma channels with ``spread="chroma_floor"``, squared code units.

    Returns
    -------
    (H, W, 3) ndarray of float32
        ``(x - G*x) / sqrt(G*(x - G*x)^2 + c)`` per YCbCr channel, ``c`` = 4 squared code
        units by default (a floor, so flat regions such as a plain background stay near 0
        instead of amplifying noise).
    """
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number of pixels, got {sigma!r}")
    x = to_colorspace(image, colorspace="ycbcr").astype(np.float32)
    hp = x - _blur(x, sigma)
    # In place from here: the same float32 operations without a copy of the image each.
    sd = _blur(np.multiply(hp, hp, out=x), sigma)
    sd[..., :1] += np.float32(luma_floor)
    sd[..., 1:] += np.float32(chroma_floor if spread == "chroma_floor" else 4.0)
    np.sqrt(sd, out=sd)
    if spread not in ("own", "chroma_floor"):
        raise ValueError(f"spread must be 'own' or 'chroma_floor', got {spread!r}")
    return np.divide(hp, sd, out=hp)


def _channels(face: np.ndarray, mirror: np.ndarray, *, settings: AsymmetrySettings,
              sigma: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The compared channels of the face and its mirror, float32 (H, W, C): C = 1 with ``color="luma"``."""
    if settings.photometric:
        spread = "chroma_floor" if settings.color == "ycbcr_floor" else "own"
        kw = {"spread": spread, "chroma_floor": settings.chroma_floor, "luma_floor": settings.luma_floor}
        a = photometric_normalize(face, sigma=sigma, **kw)
        b = photometric_normalize(mirror, sigma=sigma, **kw)
    else:
        a = to_colorspace(face, colorspace="ycbcr").astype(np.float32)
        b = to_colorspace(mirror, colorspace="ycbcr").astype(np.float32)
    if settings.color == "luma":
        return np.ascontiguousarray(a[..., :1]), np.ascontiguousarray(b[..., :1])
    return a, b


def refine_mirror(face: np.ndarray, mirror: np.ndarray, *, sigma: float, work_size: int = 256) -> np.ndarray:
    """Warp the mirror image by a smooth dense flow towards the face.

    Parameters
    ----------
    face, mirror : (H, W, 3) ndarray of uint8
        The aligned face and its registered mirror image.
    sigma : float
        Gaussian sigma of the flow smoothing, pixels of the full-size frame.
    work_size : int
        Side at which the flow is estimated (the flow is smooth; 256 is enough and fast).

    Returns
    -------
    (H, W, 3) ndarray of uint8
        The mirror resampled so that, at scales above ``sigma``, it lies on the face.

    Notes
    -----
    Farneback flow on the luma of both images; the flow is then blurred with a Gaussian of
    ``sigma`` so that only deformations wider than about ``sigma`` are registered: a notch or
    gap a few tens of pixels wide survives, pose and head shape do not.
    """
    import cv2

    _check_pair(face, mirror)
    h, w = face.shape[:2]
    k = work_size / max(h, w)
    small = (max(int(round(w * k)), 16), max(int(round(h * k)), 16))
    g1 = cv2.cvtColor(cv2.resize(face, small, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    g2 = cv2.cvtColor(cv2.resize(mirror, small, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    flow = cv2.calcOpticalFlowFarneback(g1, g2, None, 0.5, 3, 9, 3, 5, 1.1, 0)
    flow = _blur(flow, max(sigma * k, 0.5))
    flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) / k
    xx, yy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(mirror, xx + flow[..., 0], yy + flow[..., 1], interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)  # fmt: skip


def tolerant_difference(a: np.ndarray, b: np.ndarray, *, radius: int) -> np.ndarray:
    """Squared difference of each pixel of ``a`` to the best match of ``b`` within a disc.

    Parameters
    ----------
    a, b : (H, W, C) ndarray of float32
        The two images (any units).
    radius : int
        Search radius in pixels (0 = plain per-pixel squared difference).

    Returns
    -------
    (H, W) ndarray of float32
        ``min_{|delta| <= radius} sum_c (a(p) - b(p + delta))^2``, borders reflected.

    Notes
    -----
    A registration error of a few pixels at an edge (lip line, nostril rim) finds its match
    within the radius and disappears; a gap wider than the disc, which has no counterpart
    anywhere near in the mirror image, does not.
    """
    import cv2

    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"a and b must be (H, W, C) of one shape, got {a.shape} and {b.shape}")
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be an integer >= 0, got {radius!r}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if radius == 0:
        return np.square(a - b).sum(axis=-1, dtype=np.float32)
    h, w, c = a.shape
    r = int(radius)
    # Channels first and preallocated buffers: the reduction over a trailing axis of 3 is the
    # slow part in NumPy, and a disc of radius 6 means 113 shifts. The first channel's square is
    # written straight into the sum (0 + x is x), so each shift makes 3 passes per channel less 1.
    ac = [np.ascontiguousarray(a[..., k]) for k in range(c)]
    bp = [cv2.copyMakeBorder(np.ascontiguousarray(b[..., k], dtype=np.float32), r, r, r, r, cv2.BORDER_REFLECT)
          for k in range(c)]  # fmt: skip
    best = np.full((h, w), np.inf, np.float32)
    acc = np.empty((h, w), np.float32)
    tmp = np.empty((h, w), np.float32)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dx * dx + dy * dy > r * r:
                continue
            np.subtract(ac[0], bp[0][r + dy : r + dy + h, r + dx : r + dx + w], out=acc)
            np.multiply(acc, acc, out=acc)
            for k in range(1, c):
                np.subtract(ac[k], bp[k][r + dy : r + dy + h, r + dx : r + dx + w], out=tmp)
                np.multiply(tmp, tmp, out=tmp)
                acc += tmp
            np.minimum(best, acc, out=best)
    return best


def upper_lip_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Nose base and upper lip: where a cleft lip is, without the lower lip and the chin.

    Convex hull of the nostrils 31-35 raised by 0.15 intercanthal distances, the nostril wings
    pushed 1.3x away from the subnasale 33, the outer upper lip 48-54 and the inner upper lip
    60-64.

    Returns
    -------
    (size, size) ndarray of bool
    """
    import cv2

    lm = np.asarray(landmarks, dtype=np.float64)
    icd = intercanthal_distance(lm)
    wings = lm[33] + (lm[[31, 35]] - lm[33]) * 1.3
    nose = np.vstack([lm[31:36], wings]) - np.array([0.0, 0.15 * icd])
    hull = cv2.convexHull(np.vstack([nose, lm[48:55], lm[60:65]]).astype(np.float32))
    m = np.zeros((size, size), np.uint8)
    cv2.fillPoly(m, [np.round(hull).astype(np.int32)], 1)
    return m > 0


def control_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Control region: the face region without the mouth region grown by 0.3 intercanthal distances.

    Returns
    -------
    (size, size) ndarray of bool
    """
    import cv2

    face = roi_mask(landmarks, size, region="face") > 0.5
    mouth = (roi_mask(landmarks, size, region="mouth") > 0.5).astype(np.uint8)
    r = max(int(round(0.3 * intercanthal_distance(landmarks))), 1)
    grown = cv2.dilate(mouth, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0
    return face & ~grown


def upper_lip_skin_mask(landmarks: np.ndarray, size: int, *, margin: float = 0.05) -> np.ndarray:
    """Skin of the upper lip: below the nostril sills and above the red lip.

    Convex hull of the nostril points 31-35 moved down and of the outer upper lip 48-54 moved up,
    both by ``margin`` intercanthal distances: the nostril rims and the red-lip border, whose
    normal asymmetry the mirror registration leaves behind, stay out.

    Returns
    -------
    (size, size) ndarray of bool
    """
    import cv2

    lm = np.asarray(landmarks, dtype=np.float64)
    icd = intercanthal_distance(lm)
    pts = np.vstack([lm[31:36] + np.array([0.0, margin * icd]), lm[48:55] - np.array([0.0, margin * icd])])
    hull = cv2.convexHull(pts.astype(np.float32))
    m = np.zeros((size, size), np.uint8)
    cv2.fillPoly(m, [np.round(hull).astype(np.int32)], 1)
    return m > 0


def _valley(luma: np.ndarray, sx: float, sy: float) -> np.ndarray:
    import cv2

    g = cv2.GaussianBlur(luma, (0, 0), sigmaX=sx, sigmaY=sy, borderType=cv2.BORDER_REFLECT)
    dxx = cv2.Sobel(g, cv2.CV_32F, 2, 0, ksize=3)
    return np.maximum(dxx * (sx * sx), 0.0)


def valley_difference(a: np.ndarray, b: np.ndarray, *, width: float, length: float, radius: int) -> np.ndarray:
    """Dark vertical valleys of ``a`` that ``b`` lacks within a disc.

    Parameters
    ----------
    a, b : (H, W) ndarray of float32
        Luma of the face and of its registered mirror (the photometrically normalised channel 0
        with the default settings).
    width, length : float
        Gaussian sigmas of the smoothing across (x) and along (y) the face, pixels: a valley is a
        line darker than its sides, about ``width`` wide and at least ``length`` long.
    radius : int
        Shift tolerance, pixels: the mirror's valley response is dilated by a disc of this radius
        before it is subtracted.

    Returns
    -------
    (H, W) ndarray of float32
        ``max(V(a) - dilate(V(b)), 0)`` with ``V = max(width^2 * d2/dx2 (G * x), 0)``, >= 0.

    Notes
    -----
    The gap of a unilateral cleft lip is such a valley on one side of the lip skin; the normal
    philtral groove sits on the midline and is its own mirror image, so it cancels.
    """
    import cv2

    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"a and b must be (H, W) of one shape, got {a.shape} and {b.shape}")
    for name, v in (("width", width), ("length", length)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive number of pixels, got {v!r}")
    va = _valley(np.ascontiguousarray(a, dtype=np.float32), width, length)
    vb = _valley(np.ascontiguousarray(b, dtype=np.float32), width, length)
    r = max(int(radius), 1)
    vb = cv2.dilate(vb, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return np.maximum(va - vb, 0.0).astype(np.float32)


def _roi_weights(roi: np.ndarray, full: int, size: int) -> np.ndarray:
    """A user ROI (bool mask or weights in the full aligned frame) at the working size, float32 >= 0."""
    import cv2

    r = np.asarray(roi)
    if r.shape != (full, full):
        raise ValueError(f"roi must be ({full}, {full}) like the face, got shape {r.shape}")
    w = r.astype(np.float32)
    if not np.all(np.isfinite(w)) or (w.size and w.min() < 0):
        raise ValueError("roi weights must be finite and >= 0")
    if size != full:
        w = cv2.resize(w, (size, size), interpolation=cv2.INTER_AREA)
    if r.dtype == bool:
        w = (w > 0.5).astype(np.float32)
    return w


def _statistic(v: np.ndarray, w: np.ndarray | None, statistic: str, quantile: float) -> float:
    """Percentile (``"peak"``) or mean of ``v``, weighted by ``w`` when given."""
    if w is None:
        return float(np.percentile(v, quantile)) if statistic == "peak" else float(v.mean())
    if statistic == "mean":
        return float(np.sum(v * w) / np.sum(w))
    order = np.argsort(v, kind="stable")
    vs, cw = v[order], np.cumsum(w[order], dtype=np.float64)
    # Weighted percentile, linear between the centres of each value's weight.
    centres = (cw - 0.5 * w[order]) / cw[-1]
    return float(np.interp(quantile / 100.0, centres, vs))


def _flip_fair(mask_of: Callable[[np.ndarray], np.ndarray], landmarks: np.ndarray, size: int) -> np.ndarray:
    """A landmark mask OR the mirror image of the mask of the mirrored landmarks.

    Polygon filling is not mirror-symmetric to the pixel (edges on the left and on the right are
    rounded differently); the union is, so a flipped face gets exactly the flipped regions.
    """
    flipped = landmarks[list(IBUG68_MIRROR)].copy()
    flipped[:, 0] = (size - 1) - flipped[:, 0]
    return mask_of(landmarks) | mask_of(flipped)[:, ::-1]


def score_region(landmarks: np.ndarray, size: int, *, settings: AsymmetrySettings) -> np.ndarray:
    """The region the settings score, from the landmarks (``(size, size)`` bool).

    ``"skin"``: :func:`upper_lip_skin_mask`; ``"upper"``: :func:`upper_lip_mask`; ``"mouth"`` and
    ``"face"``: the pipeline's regions.
    """
    if settings.roi == "skin":
        return upper_lip_skin_mask(landmarks, size)
    if settings.roi == "upper":
        return upper_lip_mask(landmarks, size)
    return roi_mask(landmarks, size, region=settings.roi) > 0.5


def asymmetry_score(
    face: np.ndarray,
    landmarks: np.ndarray,
    *,
    mirror: np.ndarray,
    settings: AsymmetrySettings,
    roi: np.ndarray | None = None,
) -> AsymmetryScore:
    """Score an aligned face against its registered mirror image.

    Parameters
    ----------
    face : (H, W, 3) ndarray of uint8
        Aligned face (square), RGB 0..255.
    landmarks : (68, 2) ndarray
        Its iBUG-68 landmarks in the same frame, (x, y).
    settings : AsymmetrySettings
        What to normalise and what to reference.
    mirror : (H, W, 3) ndarray of uint8
        The registered mirror image of ``face``: the mirror normalizer's output
        (:class:`cleftscore.normalize.mirror.MirrorNormalizer`), made before the score; this
        module never builds it.
    roi : (H, W) ndarray of bool or float, optional
        A region drawn by the user in the face's aligned frame: replaces the settings' ROI. A
        bool mask selects pixels; non-negative weights weight them (a weighted percentile or
        mean). The control region stays the landmarks' one.

    Returns
    -------
    AsymmetryScore

    Raises
    ------
    ValueError
        Bad shapes, an empty ROI or control region.
    """
    if not isinstance(settings, AsymmetrySettings):
        raise ValueError(f"settings must be an AsymmetrySettings, got {type(settings).__name__}")
    import cv2

    img = np.asarray(face)
    if img.ndim != 3 or img.shape[0] != img.shape[1]:
        raise ValueError(f"face must be a square (S, S, 3) aligned image, got shape {img.shape}")
    lm = np.asarray(landmarks, dtype=np.float64)
    y = np.asarray(mirror)
    _check_pair(img, y)
    if settings.landmarks == "symmetric":
        intercanthal_distance(lm)  # the given ones are still checked
        lm = symmetric_landmarks(img, given=lm)
    if settings.refine:
        y = refine_mirror(img, y, sigma=settings.refine_scale * intercanthal_distance(lm))
    full = img.shape[0]
    size = settings.work_size or full
    if size != full:  # area averaging: the photo's own resolution matters less
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        y = cv2.resize(y, (size, size), interpolation=cv2.INTER_AREA)
        lm = lm * (size / full)
    icd = intercanthal_distance(lm)
    if settings.presmooth > 0:
        img = _blur(img, settings.presmooth * icd)
        y = _blur(y, settings.presmooth * icd)
    a, b = _channels(img, y, settings=settings, sigma=settings.scale * icd)
    radius = int(round(settings.tolerance * icd))
    d = tolerant_difference(a, b, radius=radius)
    d = erode(d, size=settings.erosion).astype(np.float32)
    pooled = _blur(d, settings.pool * icd) if settings.pool > 0 else d
    weights = None
    if roi is not None:
        weights = _roi_weights(roi, full, size)
        region = weights > 0
        weights = weights[region]
    else:
        region = _flip_fair(lambda pts: score_region(pts, size, settings=settings), lm, size)
    if not region.any():
        raise ValueError("the ROI is empty; check the landmarks (or the drawn region)")

    def stat(m: np.ndarray, values: np.ndarray = pooled, w: np.ndarray | None = None) -> float:
        return _statistic(values[m], w, settings.statistic, settings.quantile)

    roi_value = stat(region, w=weights)
    ctrl = _flip_fair(lambda pts: control_mask(pts, size), lm, size) if settings.reference == "control" else None
    if ctrl is not None:
        if not ctrl.any():
            raise ValueError("the control region is empty; check the landmarks")
        cv = pooled[ctrl]
        ctrl_value = {"median": lambda: float(np.median(cv)), "mean": lambda: float(cv.mean()),
                      "same": lambda: stat(ctrl)}[settings.control_statistic]()  # fmt: skip
        residual = -0.5 * math.log(max(roi_value + settings.floor, _FLOOR) / max(ctrl_value + settings.floor, _FLOOR))
    else:
        ctrl_value = float("nan")
        residual = -0.5 * math.log(max(roi_value + settings.floor, _FLOOR))
    valley_score = float("nan")
    score = residual
    if settings.valley > 0:
        v = valley_difference(a[..., 0], b[..., 0], width=settings.valley_width * icd,
                              length=settings.valley_length * icd, radius=radius)  # fmt: skip
        num = stat(region, v, weights) + _VALLEY_FLOOR
        den = float(v[ctrl].mean()) + _VALLEY_FLOOR if ctrl is not None else 1.0
        valley_score = -math.log(num / den)
        score = residual + settings.valley * valley_score
    if ctrl is not None:
        # Referenced like the score: a sharp photo's map is not hotter than a soft one's for it.
        d = d / np.float32(max(ctrl_value, _FLOOR))
    heat = d if size == full else cv2.resize(d, (full, full), interpolation=cv2.INTER_LINEAR)
    return AsymmetryScore(score=score, heatmap=np.clip(heat, 0.0, None), roi_mean=roi_value,
                          control_mean=ctrl_value, settings=settings, residual_score=residual,
                          valley_score=valley_score)  # fmt: skip


def nasolabial_indices(landmarks: np.ndarray) -> NasolabialIndices:
    """Nose-base and upper-lip landmark asymmetries in intercanthal distances.

    Parameters
    ----------
    landmarks : (68, 2) ndarray
        iBUG-68 landmarks, (x, y), any frame.

    Returns
    -------
    NasolabialIndices

    Notes
    -----
    The midline is fitted (total least squares) to points that a cleft does not move: the
    nose bridge 27-30, the midpoint of the inner eye corners 39/42, and the chin 8. ``u`` runs
    down the midline, ``v`` across it.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    icd = intercanthal_distance(lm)
    pts = np.vstack([lm[27:31], (lm[39] + lm[42]) / 2.0, lm[8]])
    c = pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts - c, full_matrices=False)
    u = vt[0] if vt[0][1] >= 0 else -vt[0]
    v = np.array([-u[1], u[0]])

    def uu(i: int) -> float:
        return float((lm[i] - c) @ u)

    def vv(i: int) -> float:
        return float((lm[i] - c) @ v)

    alar_h = abs(uu(31) - uu(35))
    nasal = max(abs(uu(33) - uu(27)), 1.0)
    return NasolabialIndices(
        alar_height=alar_h / icd,
        alar_width=abs(abs(vv(31)) - abs(vv(35))) / icd,
        cupid_bow=abs(uu(50) - uu(52)) / icd,
        columella=abs(vv(33)) / icd,
        philtrum=abs(vv(51)) / icd,
        ab_ratio=alar_h / nasal,
    )
