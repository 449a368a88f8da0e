"""Regions of interest in the aligned frame: where the score is summed.

``mouth`` is the paper's "mouth only" region: nose base, nostrils, the whole upper lip and the
lips, made generous sideways and downward so that a wide cleft and a distorted nostril fit.
``face`` is the paper's "entire face": the hull of the jaw line and the brows with the eyes cut
out. ``full`` is the whole aligned image. A user-drawn mask (white = inside) overrides them; the
paper drew its masks by hand.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np

from cleftscore.errors import ImageLoadError
from cleftscore.face.landmarks import N_LANDMARKS

__all__ = ["REGIONS", "load_user_mask", "roi_mask", "roi_polygons"]

Region = Literal["mouth", "face", "full"]
#: Region names accepted by :func:`roi_mask`.
REGIONS: tuple[str, ...] = ("mouth", "face", "full")

# Mouth region geometry, as multiples of landmark distances (see roi_polygons).
_NOSE_WING_SPREAD = 1.6  # nostril wings (31, 35) pushed away from the nose tip base (33)
_MOUTH_CORNER_SPREAD = 1.35  # mouth corners pushed away from the mouth centre
_CHIN_DROP = 0.15  # lower lip edge lowered by this fraction of the mouth width
# Face region: eye cut-outs scaled about their centre, then grown by a fraction of the eye distance.
_EYE_SCALE = 1.5
_EYE_GROW = 0.06
# Pixel sub-precision of the polygon rasteriser (OpenCV fixed point).
_SHIFT = 4


def _check(landmarks: np.ndarray, size: int) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (N_LANDMARKS, 2):
        raise ValueError(f"landmarks must have shape ({N_LANDMARKS}, 2), got {lm.shape}")
    if not np.all(np.isfinite(lm)):
        raise ValueError("landmarks contain NaN or infinite values")
    if not (isinstance(size, (int, np.integer)) and size > 0):
        raise ValueError(f"size must be a positive integer, got {size!r}")
    return lm


def _hull(points: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.convexHull(np.asarray(points, dtype=np.float32)).reshape(-1, 2).astype(np.float64)


def roi_polygons(landmarks_aligned: np.ndarray, region: Region) -> tuple[np.ndarray, list[np.ndarray]]:
    """The polygons that make up a region: one outer hull and the holes cut out of it.

    Parameters
    ----------
    landmarks_aligned : numpy.ndarray
        ``(68, 2)`` landmarks in the aligned frame.
    region : {"mouth", "face"}
        Which region.

    Returns
    -------
    outer : numpy.ndarray
        ``(N, 2)`` convex polygon ``(x, y)``.
    holes : list of numpy.ndarray
        Polygons removed from ``outer`` (the eyes for ``"face"``; none for ``"mouth"``).

    Notes
    -----
    ``mouth``: convex hull of points 29-35 (lower nose ridge, nose tip, nostrils), the
    nostril wings 31 and 35 pushed 1.6x away from point 33, all lip points 48-67, the mouth
    corners 48 and 54 pushed 1.35x away from the mouth centre, and the lower lip 55-59 lowered
    by 0.15 mouth widths along the eye-to-mouth direction. This holds the nose base, the whole
    upper lip between nose and mouth (where a cleft runs), and the lips with a margin.

    ``face``: convex hull of the jaw line 0-16 and the brows 17-26, minus each eye polygon
    (36-41, 42-47) scaled 1.5x about its centre and grown by 0.06 eye distances.
    """
    lm = _check(landmarks_aligned, 1)
    if region == "mouth":
        eye_avg = (lm[36:42].mean(axis=0) + lm[42:48].mean(axis=0)) / 2.0
        mouth_c = (lm[48] + lm[54]) / 2.0
        down = mouth_c - eye_avg
        down = down / max(float(np.hypot(*down)), 1e-9)
        mouth_w = float(np.hypot(*(lm[54] - lm[48])))
        wings = lm[33] + (lm[[31, 35]] - lm[33]) * _NOSE_WING_SPREAD
        corners = mouth_c + (lm[[48, 54]] - mouth_c) * _MOUTH_CORNER_SPREAD
        chin = lm[55:60] + down * (_CHIN_DROP * mouth_w)
        pts = np.concatenate([lm[29:36], wings, lm[48:68], corners, chin])
        return _hull(pts), []
    if region == "face":
        outer = _hull(np.concatenate([lm[0:17], lm[17:27]]))
        eye_dist = float(np.hypot(*(lm[42:48].mean(axis=0) - lm[36:42].mean(axis=0))))
        holes = []
        for sl in (slice(36, 42), slice(42, 48)):
            eye = lm[sl]
            c = eye.mean(axis=0)
            scaled = c + (eye - c) * _EYE_SCALE
            # grow: push each vertex outward from the centre by a fixed distance
            vec = scaled - c
            norm = np.maximum(np.hypot(vec[:, 0], vec[:, 1]), 1e-9)[:, None]
            holes.append(scaled + vec / norm * (_EYE_GROW * eye_dist))
        return outer, holes
    raise ValueError(f"region must be 'mouth' or 'face' for polygons, got {region!r}")


def _fill(mask: np.ndarray, poly: np.ndarray, value: int) -> None:
    import cv2

    pts = np.round(np.asarray(poly) * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(mask, [pts], value, lineType=cv2.LINE_8, shift=_SHIFT)


def roi_mask(landmarks_aligned: np.ndarray, size: int, *, region: Region = "mouth", soft: float = 0.0) -> np.ndarray:
    """Mask of a region of interest in the aligned frame.

    Parameters
    ----------
    landmarks_aligned : numpy.ndarray
        ``(68, 2)`` landmarks in the aligned frame (:attr:`AlignedFace.landmarks`).
    size : int
        Side ``S`` of the aligned frame.
    region : {"mouth", "face", "full"}, optional
        ``"mouth"`` (default): nose base, upper lip and lips (the paper's "mouth only");
        ``"face"``: jaw line and brows hull without the eyes (the paper's "entire face");
        ``"full"``: every pixel. See :func:`roi_polygons` for the exact geometry.
    soft : float, optional
        Feathering: standard deviation, in aligned-frame pixels, of a Gaussian blur applied to
        the hard mask (0 = hard edges, the default). Scale it with ``S`` (e.g. ``0.01 * S``).

    Returns
    -------
    numpy.ndarray
        ``(S, S)`` float32 in 0..1, 1 = inside.

    Raises
    ------
    ValueError
        If the landmarks, size, region or ``soft`` are invalid.
    """
    lm = _check(landmarks_aligned, size)
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    if not (np.isfinite(soft) and soft >= 0):
        raise ValueError(f"soft must be a non-negative number of pixels, got {soft!r}")
    if region == "full":
        return np.ones((size, size), dtype=np.float32)
    outer, holes = roi_polygons(lm, region)
    mask = np.zeros((size, size), dtype=np.uint8)
    _fill(mask, outer, 1)
    for hole in holes:
        _fill(mask, hole, 0)
    out = mask.astype(np.float32)
    if soft > 0:
        import cv2

        out = cv2.GaussianBlur(out, (0, 0), sigmaX=float(soft), sigmaY=float(soft), borderType=cv2.BORDER_REPLICATE)
        out = np.clip(out, 0.0, 1.0)
    return out


def load_user_mask(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """Read a hand-drawn mask for the aligned face (white = inside the region).

    Parameters
    ----------
    path : str or os.PathLike
        Image file drawn on (a copy of) the aligned face: square, any size; grey levels give a
        soft mask. Colour images are reduced to their luminance; transparency counts as white.
    size : int
        Side ``S`` of the aligned frame; the mask is resized to ``(S, S)``.

    Returns
    -------
    numpy.ndarray
        ``(S, S)`` float32 in 0..1.

    Raises
    ------
    ImageLoadError
        If the file cannot be read, is not square, or has no white (inside) pixel.
    ValueError
        If ``size`` is not a positive integer.
    """
    from PIL import Image

    from cleftscore.io import load_image

    if not (isinstance(size, (int, np.integer)) and size > 0):
        raise ValueError(f"size must be a positive integer, got {size!r}")
    rgb = load_image(path)
    h, w = rgb.shape[:2]
    if h != w:
        raise ImageLoadError(f"{path}: mask is {w} x {h}; it must be square, drawn on the aligned {size} x {size} face")
    gray = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if h != size:
        gray = np.asarray(
            Image.fromarray(gray, mode="F").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32
        )
    mask = np.clip(gray / 255.0, 0.0, 1.0).astype(np.float32)
    if float(mask.max()) < 0.5:
        raise ImageLoadError(f"{path}: mask has no white pixel; paint the region to score in white")
    return mask
