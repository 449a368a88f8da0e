"""The photo-quality gate: is this photo fit to be scored, for every method?

Each check needs only the photo, the face box and the 68 landmarks in the photo's frame, and
gives a number with a limit (:class:`QualityLimits`; what each limit is and why it was chosen is
in docs/quality.md, measured on the shared photos and the development sets):

* ``face_px``: face width (jaw point 0 to 16) in the photo's own pixels, before any upsampling.
* ``sharpness``: the finest detail of the face relative to its medium-scale detail, on the face
  resampled to a fixed width, so it does not depend on the photo's size or contrast.
* ``clipped``: fraction of the face's pixels at the ends of the 8-bit range (over- or
  under-exposed: the lip's texture is gone there).
* ``blockiness``: JPEG block edges, the mean step across the 8-pixel grid over the mean step
  elsewhere, in the face's box (1 = none).
* ``colourfulness``: mean chroma of the face in 8-bit code units (about 0 for a grayscale photo).
* ``yaw``, ``pitch``, ``roll``: head turn from the landmarks, degrees (pitch: an estimate from
  the nose's place between the eyes and the chin; 0 for the median frontal photo).
* ``mouth_open``: gap between the inner lips over the mouth's width.

Occlusion of the lip region by a hand, a tube or drawn marks is not detected (the landmark model
places lips under most occluders with no sign of doubt); see docs/quality.md.

Plain functions on arrays, no file I/O.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CHECKS",
    "PhotoQuality",
    "QualityCheck",
    "QualityLimits",
    "assess_quality",
    "failed_checks",
    "quality_measures",
]

#: The checks, in report order, with what their number is.
CHECKS: dict[str, str] = {
    "face_px": "face width (jaw point 0 to 16) in the photo's own pixels, before upsampling",
    "sharpness": "mean |fine detail| / mean |medium detail| of the face's luma at a face width of 160 px",
    "clipped": "fraction of the face's pixels with luma <= 3 or >= 252",
    "blockiness": "mean luma step across the 8-px JPEG grid / mean step elsewhere, in the face box (1 = none)",
    "colourfulness": "mean |chroma| of the face in 8-bit code units (about 0 = grayscale)",
    "yaw": "head turn left-right from the landmarks, degrees",
    "pitch": "head tilt up-down from the landmarks, degrees (0 = the median frontal photo)",
    "roll": "tilt of the eye line in the picture plane, degrees",
    "mouth_open": "gap between the inner lips / mouth width",
}


@dataclass(frozen=True)
class QualityLimits:
    """Limits of the quality checks (docs/quality.md says how each was measured).

    Attributes
    ----------
    min_face_px : float
        Smallest face width in the photo's pixels.
    min_sharpness : float
        Smallest sharpness ratio.
    max_clipped : float
        Largest fraction of clipped face pixels.
    max_blockiness : float
        Largest blockiness ratio.
    min_colourfulness : float
        Smallest mean chroma (below: a grayscale photo).
    max_yaw, max_pitch, max_roll : float
        Largest head turns, degrees (absolute).
    max_mouth_open : float
        Largest inner-lip gap over mouth width.
    """

    min_face_px: float = 80.0
    min_sharpness: float = 0.26
    max_clipped: float = 0.10
    max_blockiness: float = 1.6
    min_colourfulness: float = 5.0
    max_yaw: float = 20.0
    max_pitch: float = 20.0
    max_roll: float = 25.0
    max_mouth_open: float = 0.25

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{f.name} must be a finite number >= 0, got {v!r}")

    def to_dict(self) -> dict[str, float]:
        """Flat limits for JSON."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class QualityCheck:
    """One check of the gate.

    Attributes
    ----------
    name : str
        A key of :data:`CHECKS`.
    value : float
        The measured number.
    limit : float
        The limit it is held to.
    passed : bool
        Whether it is within the limit.
    """

    name: str
    value: float
    limit: float
    passed: bool

    def __post_init__(self) -> None:
        if self.name not in CHECKS:
            raise ValueError(f"unknown quality check {self.name!r}; choose from {', '.join(CHECKS)}")
        object.__setattr__(self, "value", float(self.value))
        object.__setattr__(self, "limit", float(self.limit))


@dataclass(frozen=True)
class PhotoQuality:
    """All checks of one photo.

    Attributes
    ----------
    checks : tuple of QualityCheck
    """

    checks: tuple[QualityCheck, ...]

    @property
    def ok(self) -> bool:
        """Every check passed."""
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[str, ...]:
        """Names of the failed checks, in :data:`CHECKS` order."""
        return tuple(c.name for c in self.checks if not c.passed)

    @property
    def summary(self) -> str:
        """``"ok"``, or the failed checks joined by ``";"`` (the CSV's ``quality`` column)."""
        return "ok" if self.ok else ";".join(self.failed)

    def value(self, name: str) -> float:
        """The number of one check."""
        for c in self.checks:
            if c.name == name:
                return c.value
        raise KeyError(name)


def _luma(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _face_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """Hull of the jaw and brows (the face without the forehead), bool in the photo."""
    import cv2

    pts = np.vstack([landmarks[0:17], landmarks[17:27]]).astype(np.float32)
    hull = cv2.convexHull(pts)
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(hull).astype(np.int32)], 1)
    return m > 0


def _sharpness(luma: np.ndarray, landmarks: np.ndarray, face_px: float) -> float:
    """Fine over medium detail of the lower face, resampled to a face width of 160 px."""
    import cv2

    x0, y0 = np.floor(landmarks.min(axis=0)).astype(int)
    x1, y1 = np.ceil(landmarks.max(axis=0)).astype(int)
    h, w = luma.shape
    crop = luma[max(y0, 0) : min(y1 + 1, h), max(x0, 0) : min(x1 + 1, w)]
    if crop.shape[0] < 4 or crop.shape[1] < 4:
        return 0.0
    k = 160.0 / max(face_px, 1.0)
    size = (max(int(round(crop.shape[1] * k)), 4), max(int(round(crop.shape[0] * k)), 4))
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    c = cv2.resize(crop, size, interpolation=interp)
    g1 = cv2.GaussianBlur(c, (0, 0), 1.0)
    g3 = cv2.GaussianBlur(c, (0, 0), 3.0)
    fine = float(np.mean(np.abs(c - g1)))
    medium = float(np.mean(np.abs(g1 - g3)))
    return fine / max(medium, 1e-6)


def _blockiness(luma: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Mean step across the 8-px grid over the mean step elsewhere, both directions, in the box."""
    h, w = luma.shape
    x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
    x1, y1 = min(int(math.ceil(box[2])), w), min(int(math.ceil(box[3])), h)
    if x1 - x0 < 24 or y1 - y0 < 24:
        return 1.0
    region = luma[y0:y1, x0:x1]
    ratios = []
    for axis, start in ((1, x0), (0, y0)):
        d = np.abs(np.diff(region, axis=axis)).mean(axis=1 - axis)  # step between index i and i + 1
        pos = (np.arange(d.size) + start) % 8 == 7  # between pixel 8k + 7 and 8k + 8
        if pos.any() and (~pos).any():
            ratios.append(float(d[pos].mean()) / max(float(d[~pos].mean()), 1e-6))
    return float(np.mean(ratios)) if ratios else 1.0


def _pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch and roll in degrees from the landmarks (rough, for a gate)."""
    eye_l, eye_r = landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)
    across = eye_r - eye_l
    roll = math.degrees(math.atan2(across[1], across[0]))
    u = across / max(float(np.linalg.norm(across)), 1e-6)
    down = np.array([-u[1], u[0]])
    # Yaw: the nose tip's place between the two sides of the jaw, as seen on a cylinder.
    left = float((landmarks[30] - landmarks[0]) @ u)
    right = float((landmarks[16] - landmarks[30]) @ u)
    yaw = math.degrees(math.asin(max(min((left - right) / max(left + right, 1e-6), 1.0), -1.0)))
    # Pitch: the nose tip's height between the eye line and the chin, 0.29 (the median of the
    # normal development photos) taken as 0 degrees.
    eyes = (eye_l + eye_r) / 2.0
    frac = float((landmarks[30] - eyes) @ down) / max(float((landmarks[8] - eyes) @ down), 1e-6)
    pitch = math.degrees(math.asin(max(min((frac - 0.29) / 0.40, 1.0), -1.0)))
    return yaw, pitch, roll


def assess_quality(
    image: np.ndarray,
    box: tuple[float, float, float, float],
    landmarks: np.ndarray,
    *,
    limits: QualityLimits | None = None,
) -> PhotoQuality:
    """Run every check of the gate on one photo.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        The photo as loaded (RGB, EXIF orientation applied), not the aligned face.
    box : tuple of 4 float
        The face box in the photo: left, top, right, bottom (pixels).
    landmarks : (68, 2) ndarray
        iBUG-68 landmarks in the photo, (x, y) pixels.
    limits : QualityLimits, optional
        Default: :class:`QualityLimits` ().

    Returns
    -------
    PhotoQuality

    Raises
    ------
    ValueError
        A bad image, box or landmarks.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 RGB photo, got shape {img.shape} dtype {img.dtype}")
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        raise ValueError(f"landmarks must be finite (68, 2) (x, y), got shape {lm.shape}")
    b = tuple(float(v) for v in box)
    if len(b) != 4 or not all(math.isfinite(v) for v in b) or b[2] <= b[0] or b[3] <= b[1]:
        raise ValueError(f"box must be (left, top, right, bottom) with right > left and bottom > top, got {box!r}")
    lim = limits or QualityLimits()
    luma = _luma(img)
    face = _face_mask(luma.shape, lm)
    if not face.any():
        face = np.zeros_like(face)
        face[max(int(b[1]), 0) : int(b[3]) + 1, max(int(b[0]), 0) : int(b[2]) + 1] = True
    face_px = float(np.linalg.norm(lm[16] - lm[0]))
    fl = luma[face] if face.any() else luma.ravel()
    clipped = float(np.mean((fl <= 3) | (fl >= 252)))
    f = img[face].astype(np.float32) if face.any() else img.reshape(-1, 3).astype(np.float32)
    colour = float(np.mean(np.max(np.abs(f - f.mean(axis=1, keepdims=True)), axis=1)))
    yaw, pitch, roll = _pose(lm)
    mouth_w = max(float(np.linalg.norm(lm[54] - lm[48])), 1e-6)
    gap = float(np.mean([np.linalg.norm(lm[61 + k] - lm[67 - k]) for k in range(3)])) / mouth_w
    values = {"face_px": face_px, "sharpness": _sharpness(luma, lm, face_px), "clipped": clipped,
              "blockiness": _blockiness(luma, b), "colourfulness": colour, "yaw": yaw, "pitch": pitch, "roll": roll,
              "mouth_open": gap}  # fmt: skip
    bad = set(failed_checks(values, limits=lim))
    limit = {"face_px": lim.min_face_px, "sharpness": lim.min_sharpness, "clipped": lim.max_clipped,
             "blockiness": lim.max_blockiness, "colourfulness": lim.min_colourfulness, "yaw": lim.max_yaw,
             "pitch": lim.max_pitch, "roll": lim.max_roll, "mouth_open": lim.max_mouth_open}  # fmt: skip
    return PhotoQuality(tuple(QualityCheck(n, values[n], limit[n], n not in bad) for n in CHECKS))


def quality_measures(quality: PhotoQuality) -> dict[str, tuple[float, str]]:
    """The checks' numbers as ``quality_<name>`` -> (value, definition with its limit), for a record's measures."""
    out = {}
    for c in quality.checks:
        bound = "at least" if c.name in ("face_px", "sharpness", "colourfulness") else "at most"
        absolute = " (absolute)" if c.name in ("yaw", "pitch", "roll") else ""
        out[f"quality_{c.name}"] = (c.value, f"{CHECKS[c.name]}; gate: {bound} {c.limit:g}{absolute}")
    return out


def failed_checks(values: Mapping[str, float], *, limits: QualityLimits | None = None) -> tuple[str, ...]:
    """The checks that fail, from stored numbers (``quality_<name>`` or ``<name>`` -> value).

    Parameters
    ----------
    values : mapping of str to float
        A record's or a study's measures; checks that are missing are not judged (records made
        before the gate pass).
    limits : QualityLimits, optional

    Returns
    -------
    tuple of str
        Failed check names in :data:`CHECKS` order.
    """
    lim = limits or QualityLimits()
    bounds = {
        "face_px": (lim.min_face_px, None), "sharpness": (lim.min_sharpness, None),
        "clipped": (None, lim.max_clipped), "blockiness": (None, lim.max_blockiness),
        "colourfulness": (lim.min_colourfulness, None), "yaw": (None, lim.max_yaw), "pitch": (None, lim.max_pitch),
        "roll": (None, lim.max_roll), "mouth_open": (None, lim.max_mouth_open),
    }  # fmt: skip
    out = []
    for name, (low, high) in bounds.items():
        v = values.get(f"quality_{name}", values.get(name))
        if v is None or not math.isfinite(float(v)):
            continue
        v = abs(float(v)) if name in ("yaw", "pitch", "roll") else float(v)
        if (low is not None and v < low) or (high is not None and v > high):
            out.append(name)
    return tuple(out)
