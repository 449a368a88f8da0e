"""Find faces in an RGB photo: dlib's HOG frontal detector (default) or OpenCV's Haar cascade.

Boxes come back largest first, in the photo's pixel coordinates. Neither detector needs a
download: dlib's HOG detector is built into dlib and the Haar cascade ships with OpenCV.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["DETECTORS", "FaceBox", "detect_faces"]

logger = logging.getLogger(__name__)

Detector = Literal["hog", "haar"]
#: Names accepted by :func:`detect_faces`.
DETECTORS: tuple[str, ...] = ("hog", "haar")

# Photos are downscaled so their long side is at most this before detection (speed); boxes are
# scaled back. Faces we align are large, so nothing of interest is lost.
_DETECT_MAX_SIDE = 1024
# When nothing is found, HOG is retried with more upsampling while the upsampled image's long
# side stays within this many pixels.
_HOG_MAX_PYRAMID = 2048
# Boxes with at least this fraction of the largest box's area are ranked by score instead.
_NEAR_TIE = 0.8


@dataclass(frozen=True)
class FaceBox:
    """One detected face, in the photo's pixel coordinates (x right, y down).

    Attributes
    ----------
    left, top, right, bottom : float
        Box edges in pixels; ``right > left`` and ``bottom > top``.
    score : float
        The detector's confidence: the HOG SVM margin for ``"hog"`` (about 0 at threshold,
        larger is surer), the cascade's level weight for ``"haar"``.
    detector : str
        ``"hog"`` or ``"haar"``.
    """

    left: float
    top: float
    right: float
    bottom: float
    score: float
    detector: str

    def __post_init__(self) -> None:
        if not (self.right > self.left and self.bottom > self.top):
            raise ValueError(
                f"a face box needs right > left and bottom > top, got "
                f"({self.left}, {self.top}, {self.right}, {self.bottom})"
            )
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {self.detector!r}")

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.right - self.left

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.bottom - self.top

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return self.width * self.height

    def as_dict(self) -> dict[str, float | str]:
        """The box as plain JSON-able values."""
        return {
            "left": float(self.left),
            "top": float(self.top),
            "right": float(self.right),
            "bottom": float(self.bottom),
            "score": float(self.score),
            "detector": self.detector,
        }


def _check_image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 0..255 image, got dtype {arr.dtype}; use cleftscore.io.load_image")
    return np.ascontiguousarray(arr)


@functools.lru_cache(maxsize=1)
def _hog_detector():  # noqa: ANN202 - dlib type
    import dlib

    return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=1)
def _haar_cascade():  # noqa: ANN202 - cv2 type
    import cv2

    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"OpenCV could not load its Haar cascade {path}")
    return cascade


def _downscaled(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The image with long side <= _DETECT_MAX_SIDE, and the factor to scale boxes back."""
    import cv2

    h, w = image.shape[:2]
    long_side = max(h, w)
    if long_side <= _DETECT_MAX_SIDE:
        return image, 1.0
    factor = _DETECT_MAX_SIDE / long_side
    small = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    return small, w / small.shape[1]


def _hog_upsample(long_side: int) -> int:
    """Pyramid upsampling for dlib HOG (minimum face about 80 px at upsample 0)."""
    if long_side < 400:
        return 2
    if long_side < 800:
        return 1
    return 0


def _detect_hog(image: np.ndarray) -> list[FaceBox]:
    small, back = _downscaled(image)
    long_side = max(small.shape[:2])
    upsample = _hog_upsample(long_side)
    rects, scores, _ = _hog_detector().run(small, upsample, 0.0)
    while not rects and long_side * 2 ** (upsample + 1) <= _HOG_MAX_PYRAMID:
        # Nothing found: look for smaller faces once more, one pyramid level up.
        upsample += 1
        rects, scores, _ = _hog_detector().run(small, upsample, 0.0)
    boxes = [
        FaceBox(
            left=float(r.left()) * back,
            top=float(r.top()) * back,
            right=float(r.right() + 1) * back,
            bottom=float(r.bottom() + 1) * back,
            score=float(s),
            detector="hog",
        )
        for r, s in zip(rects, scores, strict=True)
    ]
    logger.debug("HOG (upsample %d, scale %.3f): %d face(s)", upsample, back, len(boxes))
    return boxes


def _detect_haar(image: np.ndarray) -> list[FaceBox]:
    import cv2

    small, back = _downscaled(image)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    gray = cv2.equalizeHist(gray)
    min_side = max(20, round(min(gray.shape) * 0.08))
    rects, _, weights = _haar_cascade().detectMultiScale3(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side), outputRejectLevels=True
    )
    boxes = []
    for (x, y, w, h), weight in zip(np.reshape(rects, (-1, 4)), np.ravel(weights), strict=True):
        boxes.append(
            FaceBox(
                left=float(x) * back,
                top=float(y) * back,
                right=float(x + w) * back,
                bottom=float(y + h) * back,
                score=float(weight),
                detector="haar",
            )
        )
    logger.debug("Haar (scale %.3f): %d face(s)", back, len(boxes))
    return boxes


def detect_faces(image: np.ndarray, *, detector: Detector = "hog") -> list[FaceBox]:
    """Find frontal faces in a photo.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` uint8 RGB, 0..255.
    detector : {"hog", "haar"}, optional
        ``"hog"`` (default): dlib's HOG + linear SVM frontal detector, the detector FFHQ was
        built with. ``"haar"``: OpenCV's frontal-face Haar cascade, a fallback for photos where
        HOG finds nothing.

    Returns
    -------
    list of FaceBox
        Faces, largest first; empty when none is found. Boxes whose area is within 20% of the
        largest count as equally large and come first in order of detector score, so a weak
        false detection of the same size (a badge, a pattern) does not displace the real face.

    Raises
    ------
    ValueError
        If the image is not ``(H, W, 3)`` uint8 or the detector name is unknown.

    Notes
    -----
    Photos with a long side above 1024 px are downscaled to 1024 px for detection (boxes are
    scaled back). HOG's smallest face is about 80 px, so smaller photos are upsampled in the
    detector's pyramid: twice below 400 px long side, once below 800 px. When HOG finds nothing,
    it tries once more with one more upsampling step if the upsampled image stays within 2048 px
    (so a face of about 40 px in the 1024 px working copy is still found).
    """
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
    arr = _check_image(image)
    boxes = _detect_hog(arr) if detector == "hog" else _detect_haar(arr)
    return _rank(boxes)


def _rank(boxes: list[FaceBox]) -> list[FaceBox]:
    """Largest first; among boxes within 20% of the largest area, the surest comes first."""
    if not boxes:
        return []
    by_area = sorted(boxes, key=lambda b: (-b.area, -b.score))
    cutoff = _NEAR_TIE * by_area[0].area
    top = sorted((b for b in by_area if b.area >= cutoff), key=lambda b: -b.score)
    return top + [b for b in by_area if b.area < cutoff]
