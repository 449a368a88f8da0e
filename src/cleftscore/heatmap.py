"""Colour transform, per-pixel difference maps and erosion (DESIGN.md steps 6-8).

All functions are plain functions on NumPy arrays in the aligned frame. Images come in as
``(H, W, 3)`` RGB, either ``uint8`` in 0..255 or floating point in 0..1 (checked, never guessed).
Both colour spaces are expressed in the same 8-bit code units (0..255) so that scores computed in
RGB and in YCbCr are on comparable scales.

This module does not import torch: the LPIPS map takes a distance *callable* that the caller
builds (see :func:`lpips_map`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "COLORSPACES",
    "METRICS",
    "DifferenceSettings",
    "difference_map",
    "energy",
    "erode",
    "face_region",
    "lpips_map",
    "pse_map",
    "smooth",
    "ssim_map",
    "to_colorspace",
]

COLORSPACES = ("ycbcr", "rgb")
METRICS = ("pse", "ssim", "lpips")

#: SSIM ``data_range`` per colour space: both are in 8-bit code units, so 255 for both.
_SSIM_DATA_RANGE = {"ycbcr": 255.0, "rgb": 255.0}
#: ITU-R BT.601 from RGB in 0..1 to YCbCr code values, as skimage.color.rgb2ycbcr: the matrix,
#: then the offsets (16, 128, 128) as a fourth column.
_YCBCR_FROM_RGB = np.array(
    [[65.481, 128.553, 24.966, 16.0], [-37.797, -74.203, 112.0, 128.0], [112.0, -93.786, -18.214, 128.0]]
)


def _check_colorspace(colorspace: str) -> None:
    if colorspace not in COLORSPACES:
        raise ValueError(f"colorspace must be one of {', '.join(COLORSPACES)}, got {colorspace!r}")


def _check_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an RGB image and return it as float64 in 0..1."""
    image = _validate_rgb(image, name)
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return image.astype(np.float64)


def _validate_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """The checks of :func:`_check_rgb` without the conversion; returns the array as given."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{name} must be an (H, W, 3) RGB image, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name} is empty (shape {image.shape})")
    if image.dtype == np.uint8:
        return image
    if np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)):
            raise ValueError(f"{name} contains NaN or infinite values")
        lo, hi = float(image.min()), float(image.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{name} is floating point with values in [{lo:.4g}, {hi:.4g}]; float images "
                "must be in [0, 1] (pass uint8 for 0..255 data, or divide by 255)"
            )
        return image
    raise ValueError(f"{name} must be uint8 (0..255) or floating point (0..1), got dtype {image.dtype}")


def _check_pair(original: np.ndarray, normalized: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = _check_rgb(original, "original")
    b = _check_rgb(normalized, "normalized")
    if a.shape != b.shape:
        raise ValueError(f"original and normalized must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def to_colorspace(image: np.ndarray, *, colorspace: str = "ycbcr") -> np.ndarray:
    """Convert an RGB image to the colour space used for the difference map.

    Parameters
    ----------
    image : (H, W, 3) ndarray
        RGB image, ``uint8`` in 0..255 or floating point in [0, 1].
    colorspace : {"ycbcr", "rgb"}
        ``"ycbcr"``: ITU-R BT.601 via :func:`skimage.color.rgb2ycbcr`, Y in 16..235, Cb and Cr
        in 16..240. ``"rgb"``: the RGB values scaled to 0..255.

    Returns
    -------
    (H, W, 3) ndarray of float64
        The image in 8-bit code units (0..255 scale) for either colour space.

    Raises
    ------
    ValueError
        Wrong shape, dtype, a float image outside [0, 1], or an unknown colour space.

    Notes
    -----
    The paper's eq. 3 has sign typos; the standard BT.601 matrix is used instead
    (white -> (235, 128, 128), black -> (16, 128, 128), red -> (81.5, 90.3, 240.0)).

    References
    ----------
    .. [1] ITU-R Recommendation BT.601.
    """
    _check_colorspace(colorspace)
    rgb = _check_rgb(image)
    if colorspace == "rgb":
        return rgb * 255.0
    import cv2

    # skimage.color.rgb2ycbcr's matrix and offsets in one OpenCV pass: about twice as fast as its
    # (H*W, 3) @ (3, 3) product; the values differ from it in the last bit at most (2.8e-14 code
    # units, 13 % of the 16.7 million colours), which no float32 map downstream sees.
    return cv2.transform(np.ascontiguousarray(rgb), _YCBCR_FROM_RGB)


def pse_map(original: np.ndarray, normalized: np.ndarray, *, colorspace: str = "ycbcr") -> np.ndarray:
    """Per-pixel, per-channel squared error between two images.

    Parameters
    ----------
    original, normalized : (H, W, 3) ndarray
        RGB images, ``uint8`` 0..255 or float 0..1, same shape.
    colorspace : {"ycbcr", "rgb"}
        Colour space in which the difference is taken (see :func:`to_colorspace`).

    Returns
    -------
    (H, W, 3) ndarray of float32
        ``(x - y) ** 2`` in squared 8-bit code units, >= 0; 0 for identical images.
    """
    _check_colorspace(colorspace)
    a, b = _validate_rgb(original, "original"), _validate_rgb(normalized, "normalized")
    if a.shape != b.shape:
        raise ValueError(f"original and normalized must have the same shape, got {a.shape} and {b.shape}")
    x = to_colorspace(original, colorspace=colorspace)
    y = to_colorspace(normalized, colorspace=colorspace)
    return np.square(x - y).astype(np.float32)


def ssim_map(original: np.ndarray, normalized: np.ndarray, *, colorspace: str = "ycbcr") -> np.ndarray:
    """Per-pixel, per-channel structural dissimilarity ``1 - SSIM``.

    Parameters
    ----------
    original, normalized : (H, W, 3) ndarray
        RGB images, ``uint8`` 0..255 or float 0..1, same shape, at least 7 x 7 pixels.
    colorspace : {"ycbcr", "rgb"}
        Colour space in which SSIM is computed.

    Returns
    -------
    (H, W, 3) ndarray of float32
        ``1 - SSIM`` per pixel and channel, clipped to >= 0 (range 0..2; 0 for identical
        images).

    Raises
    ------
    ValueError
        Images smaller than the 7 x 7 SSIM window, or the checks of :func:`to_colorspace`.

    Notes
    -----
    :func:`skimage.metrics.structural_similarity` with ``full=True``, its default 7 x 7 uniform
    window, ``channel_axis=-1`` and an explicit ``data_range`` of 255 (both colour spaces are in
    8-bit code units).
    """
    _check_colorspace(colorspace)
    a, _ = _check_pair(original, normalized)
    if min(a.shape[:2]) < 7:
        raise ValueError(f"SSIM needs images of at least 7 x 7 pixels, got {a.shape[0]} x {a.shape[1]}")
    from skimage.metrics import structural_similarity

    x = to_colorspace(original, colorspace=colorspace)
    y = to_colorspace(normalized, colorspace=colorspace)
    _, smap = structural_similarity(x, y, channel_axis=-1, data_range=_SSIM_DATA_RANGE[colorspace], full=True)
    return np.clip(1.0 - smap, 0.0, None).astype(np.float32)


def _as_uint8_code(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def lpips_map(
    original: np.ndarray,
    normalized: np.ndarray,
    *,
    distance: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """Spatial LPIPS map from a caller-supplied distance.

    Parameters
    ----------
    original, normalized : (H, W, 3) ndarray of uint8
        Images in 0..255 (RGB, or YCbCr code values as produced by :func:`difference_map`).
    distance : callable
        ``distance(a, b) -> (H, W)`` map, higher = more different, taking two ``(H, W, 3)``
        uint8 images. The pipeline passes a wrapper around
        ``cleftscore.perceptual.PerceptualDistance(spatial=True)``.

    Returns
    -------
    (H, W, 1) ndarray of float32
        The LPIPS map, clipped to >= 0.

    Raises
    ------
    ValueError
        Inputs not uint8 ``(H, W, 3)`` of equal shape, or a map of the wrong shape or with
        non-finite values.
    """
    for name, img in (("original", original), ("normalized", normalized)):
        img = np.asarray(img)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
            raise ValueError(
                f"lpips_map needs {name} as an (H, W, 3) uint8 image, got shape {img.shape} dtype {img.dtype}"
            )
    if original.shape != normalized.shape:
        raise ValueError(
            f"original and normalized must have the same shape, got {original.shape} and {normalized.shape}"
        )
    if not callable(distance):
        raise ValueError("lpips_map needs a distance callable (a, b) -> (H, W) map")
    out = np.asarray(distance(original, normalized), dtype=np.float64)
    out = np.squeeze(out)
    if out.shape != original.shape[:2]:
        raise ValueError(
            f"the LPIPS distance returned a map of shape {out.shape}, expected "
            f"{original.shape[:2]} (spatial=True, upsampled to the image size)"
        )
    if not np.all(np.isfinite(out)):
        raise ValueError("the LPIPS distance returned NaN or infinite values")
    return np.clip(out, 0.0, None).astype(np.float32)[..., None]


def erode(diff: np.ndarray, *, size: int = 3) -> np.ndarray:
    """Grey erosion (minimum filter) of a difference map, per channel.

    Parameters
    ----------
    diff : (H, W) or (H, W, C) ndarray
        Difference map (any real values; normally >= 0).
    size : int
        Side of the square structuring element; 0 or 1 switches erosion off.

    Returns
    -------
    ndarray of float32, same shape as ``diff``
        Each value replaced by the minimum of its ``size x size`` neighbourhood in its own
        channel (borders reflected). Never larger than the input pixel.

    Raises
    ------
    ValueError
        Negative or non-integer ``size``, or a map that is not 2-D or 3-D.

    Notes
    -----
    The paper's section 1.5: ``F'(j, k) = min F(j + m, k + n)`` over the 3 x 3 neighbourhood,
    applied to each of the Y, Cb and Cr channels. An isolated speck smaller than the element
    disappears; a blob of at least ``size x size`` keeps its core.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ValueError(f"erosion size must be an integer >= 0 (0 or 1 = off), got {size!r}")
    d = np.asarray(diff, dtype=np.float32)
    if d.ndim not in (2, 3):
        raise ValueError(f"difference map must be (H, W) or (H, W, C), got shape {d.shape}")
    if size <= 1:
        return d.copy()
    if size % 2 == 1 and (d.ndim == 2 or d.shape[-1] <= 4) and min(d.shape[:2]) > size // 2:
        import cv2  # same result as scipy's grey_erosion(mode="reflect"), ~20x faster

        kernel = np.ones((size, size), np.uint8)
        out = cv2.erode(np.ascontiguousarray(d), kernel, borderType=cv2.BORDER_REFLECT)
        return out.reshape(d.shape).astype(np.float32, copy=False)
    from scipy.ndimage import grey_erosion

    footprint = (size, size) if d.ndim == 2 else (size, size, 1)
    return grey_erosion(d, size=footprint, mode="reflect").astype(np.float32)


@dataclass(frozen=True)
class DifferenceSettings:
    """How a difference map is made.

    Attributes
    ----------
    metric : {"pse", "ssim", "lpips"}
        Per-pixel difference: squared error, 1 - SSIM or spatial LPIPS.
    colorspace : {"ycbcr", "rgb"}
        Colour space the images are compared in.
    erosion : int
        Grey-erosion element size, 0 or 1 = off (paper: 3).
    """

    metric: str = "pse"
    colorspace: str = "ycbcr"
    erosion: int = 3

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        _check_colorspace(self.colorspace)
        if isinstance(self.erosion, bool) or not isinstance(self.erosion, (int, np.integer)) or self.erosion < 0:
            raise ValueError(f"erosion must be an integer >= 0 (0 or 1 = off), got {self.erosion!r}")


def difference_map(
    original: np.ndarray,
    normalized: np.ndarray,
    *,
    settings: DifferenceSettings,
    lpips_distance: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Colour transform, per-pixel metric and erosion in one call.

    Parameters
    ----------
    original, normalized : (H, W, 3) ndarray
        RGB images, ``uint8`` 0..255 or float 0..1, same shape, aligned frame.
    settings : DifferenceSettings
        Metric, colour space and erosion size.
    lpips_distance : callable, optional
        Required when ``settings.metric == "lpips"``; see :func:`lpips_map`.

    Returns
    -------
    (H, W, C) ndarray of float32
        The eroded difference map, >= 0; C = 3 for PSE and SSIM, 1 for LPIPS.

    Raises
    ------
    ValueError
        LPIPS requested without a distance, or the input checks of the map functions.

    Notes
    -----
    For LPIPS in YCbCr (the paper's "+YCbCr" LPIPS rows), the YCbCr image in 8-bit code values
    (Y 16..235, Cb/Cr 16..240) is rounded to uint8 and fed to LPIPS as if it were an RGB image;
    this is what the paper's Table 1 implies. In RGB the images go to LPIPS unchanged.
    """
    if not isinstance(settings, DifferenceSettings):
        raise ValueError(f"settings must be a DifferenceSettings, got {type(settings).__name__}")
    if settings.metric == "pse":
        diff = pse_map(original, normalized, colorspace=settings.colorspace)
    elif settings.metric == "ssim":
        diff = ssim_map(original, normalized, colorspace=settings.colorspace)
    else:
        if lpips_distance is None:
            raise ValueError("metric 'lpips' needs lpips_distance (a spatial LPIPS callable)")
        _check_pair(original, normalized)
        a = _as_uint8_code(to_colorspace(original, colorspace=settings.colorspace))
        b = _as_uint8_code(to_colorspace(normalized, colorspace=settings.colorspace))
        diff = lpips_map(a, b, distance=lpips_distance)
    return erode(diff, size=settings.erosion)


def energy(diff: np.ndarray) -> np.ndarray:
    """Heat map shown to users: the difference map summed over channels.

    Parameters
    ----------
    diff : (H, W) or (H, W, C) ndarray
        Difference map, >= 0.

    Returns
    -------
    (H, W) ndarray of float32
        Sum over channels (accumulated in float64), >= 0 for a valid map.

    Raises
    ------
    ValueError
        A map that is not 2-D or 3-D.
    """
    d = np.asarray(diff)
    if d.ndim == 2:
        return d.astype(np.float32)
    if d.ndim != 3:
        raise ValueError(f"difference map must be (H, W) or (H, W, C), got shape {d.shape}")
    # Channel by channel, left to right in float64: the sums of ``d.sum(axis=-1, dtype=float64)``
    # bit for bit, several times faster than a reduction over a short trailing axis.
    total = d[..., 0].astype(np.float64)
    for c in range(1, d.shape[-1]):
        total += d[..., c]
    return total.astype(np.float32)


def face_region(landmarks: np.ndarray, size: int, *, margin: float = 0.3) -> np.ndarray:
    """Where a heat map is drawn: the face without its outline, eyes, hair, background or clothing.

    Parameters
    ----------
    landmarks : (68, 2) ndarray
        iBUG-68 landmarks in the aligned frame, (x, y).
    size : int
        Side of the aligned frame.
    margin : float
        How far inside the face's outline the region stops, in intercanthal distances (the
        distance between the inner eye corners, 39 and 42): the outline against the background
        differs from its mirror in every photo and says nothing about the face.

    Returns
    -------
    (size, size) ndarray of bool
        The ``"face"`` region of :func:`cleftscore.face.roi.roi_mask` (jaw line and brows, eyes
        cut out) shrunk by ``margin``.

    Raises
    ------
    ValueError
        Bad landmarks, size or a negative margin.
    """
    import cv2

    from cleftscore.face.roi import roi_mask

    if not (np.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a non-negative number of intercanthal distances, got {margin!r}")
    lm = np.asarray(landmarks, dtype=np.float64)
    region = (roi_mask(lm, size, region="face") > 0.5).astype(np.uint8)
    r = int(round(margin * max(float(np.linalg.norm(lm[42] - lm[39])), 1.0)))
    if r > 0:
        region = cv2.erode(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return region > 0


def smooth(heatmap: np.ndarray, *, sigma: float) -> np.ndarray:
    """A heat map blurred by a Gaussian of ``sigma`` pixels (float32, ``(H, W)``, >= 0).

    Isolated hot pixels (a highlight, a drawn dot, film grain) lose to a patch of the same
    height: a defect is a patch. ``sigma <= 0`` returns a float32 copy.
    """
    import cv2

    hm = np.asarray(heatmap, dtype=np.float32)
    if hm.ndim != 2 or not np.all(np.isfinite(hm)):
        raise ValueError(f"heatmap must be a finite (H, W) map, got shape {hm.shape}")
    if not np.isfinite(sigma):
        raise ValueError(f"sigma must be finite, got {sigma!r}")
    if sigma <= 0:
        return hm.copy()
    return np.maximum(cv2.GaussianBlur(hm, (0, 0), float(sigma), borderType=cv2.BORDER_REFLECT), 0.0)
