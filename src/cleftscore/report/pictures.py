"""Pictures a clinician gets back: false colour, overlays, panels, colour bars, thumbnails.

The picture functions (:func:`colorize`, :func:`overlay`, :func:`heatmap_figure`,
:func:`panel`, :func:`score_pictures`) are pure: arrays in, ``(H, W, 3)`` uint8 RGB arrays (or
encoded bytes) out; they write no files. This module does not import torch, ``cleftscore.gan``
or the CLI; matplotlib is imported lazily with its non-interactive Agg canvas (no global pyplot
state).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "thumbnail_jpeg",
    "DISCLAIMER",
    "DEFAULT_VMAX_PERCENTILE",
    "colorbar",
    "colorize",
    "heatmap_figure",
    "NORMAL_UNITS_TOP",
    "npy_bytes",
    "overlay",
    "panel",
    "overlay_on_original",
    "robust_vmax",
    "score_pictures",
]


DISCLAIMER = "cleftscore is a research tool, not a certified medical device."
#: Default upper end of the colour scale: this percentile of the heat map.
DEFAULT_VMAX_PERCENTILE = 99.5
_DIM = 0.35  # brightness kept outside the ROI in overlays
_OVERLAY_ROWS = 256


def _check_heatmap(heatmap: np.ndarray) -> np.ndarray:
    hm = np.asarray(heatmap)
    if hm.ndim == 3 and hm.shape[0] == 1:
        hm = hm[0]
    elif hm.ndim == 3 and hm.shape[-1] == 1:
        hm = hm[..., 0]
    if hm.ndim != 2:
        raise ValueError(f"heatmap must be (H, W), got shape {hm.shape}")
    hm = hm.astype(np.float64, copy=False)  # no copy for float64: nothing here writes into it
    if not np.all(np.isfinite(hm)):
        raise ValueError("heatmap contains NaN or infinite values")
    return hm


def _check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] not in (3, 4) or img.dtype != np.uint8:
        raise ValueError(
            f"{name} must be an (H, W, 3) uint8 RGB image (0..255), got shape {img.shape} dtype {img.dtype}"
        )
    return img[..., :3]


def robust_vmax(heatmap: np.ndarray, *, percentile: float = DEFAULT_VMAX_PERCENTILE) -> float:
    """Upper end of the colour scale: a high percentile of the map, ignoring outliers.

    Parameters
    ----------
    heatmap : (H, W) ndarray
        Heat map, >= 0.
    percentile : float
        Percentile in (0, 100] (default 99.5).

    Returns
    -------
    float
        The percentile, or the maximum when the percentile is 0 but the map is not, or 1.0 for
        an all-zero map (so the picture is black rather than undefined).
    """
    hm = _check_heatmap(heatmap)
    v = float(np.percentile(hm, percentile))
    if v <= 0.0:
        v = float(hm.max())
    return v if v > 0.0 else 1.0


def colorize(heatmap: np.ndarray, *, vmax: float | None = None, cmap: str = "inferno") -> np.ndarray:
    """False-colour picture of a heat map.

    Parameters
    ----------
    heatmap : (H, W) ndarray
        Heat map, >= 0 (a ``(1, H, W)`` map is squeezed).
    vmax : float, optional
        Value shown at the top of the colour map; default :func:`robust_vmax` (the 99.5th
        percentile), so one hot pixel does not wash the picture out. Pass the same ``vmax`` to
        compare photos on one scale.
    cmap : str
        Matplotlib colour map name.

    Returns
    -------
    (H, W, 3) ndarray of uint8
        RGB picture; 0 maps to the bottom colour, values >= ``vmax`` to the top colour.

    Raises
    ------
    ValueError
        Wrong heat-map shape, non-finite values, ``vmax <= 0`` or an unknown colour map.
    """
    hm = _check_heatmap(heatmap)
    if vmax is None:
        vmax = robust_vmax(hm)
    if not (math.isfinite(vmax) and vmax > 0):
        raise ValueError(f"vmax must be a finite number > 0, got {vmax}")
    return _lookup(hm, vmax, _colour_table(cmap))


def _lookup(values: np.ndarray, vmax: float, lut: np.ndarray) -> np.ndarray:
    """Colours of float64 ``values`` of any shape: ``values.shape + (3,)`` uint8, element by element."""
    # Matplotlib's own lookup (Colormap.__call__ on float32 in [0, 1], bytes=True): index
    # trunc(x * N), with x == 1 on the last entry; done here on a uint8/uint16 index, faster.
    idx = np.clip(values / vmax, 0.0, 1.0).astype(np.float32)
    idx *= np.float32(len(lut))
    np.minimum(idx, len(lut) - 1, out=idx)
    return np.take(lut, idx.astype(np.uint16), axis=0)


def _colour_table(cmap: str) -> np.ndarray:
    """``(N, 3)`` uint8: the entries of a matplotlib colour map, as it returns them with ``bytes=True``."""
    import matplotlib

    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"unknown colour map {cmap!r}; use a matplotlib name such as 'inferno'") from None
    return np.ascontiguousarray(cm(np.arange(cm.N), bytes=True)[:, :3])


def overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    *,
    alpha: float = 0.5,
    mask: np.ndarray | None = None,
    vmax: float | None = None,
    outline: bool = True,
    cmap: str = "inferno",
) -> np.ndarray:
    """Heat map blended on the face, ROI outlined and the rest dimmed (as the paper's figures).

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        Face (aligned frame, or the original photo with a warped heat map), 0..255.
    heatmap : (H, W) ndarray
        Heat map in the same frame, >= 0.
    alpha : float
        Opacity of the false colour in [0, 1].
    mask : (H, W) ndarray, optional
        ROI (bool or weights in [0, 1]). Outside it the photo is dimmed to 35 % brightness and
        no colour is drawn. None: colour everywhere, no outline.
    vmax : float, optional
        Top of the colour scale (default :func:`robust_vmax` over the ROI, or the whole map).
    outline : bool
        Draw the ROI boundary in white.
    cmap : str
        Matplotlib colour map name.

    Returns
    -------
    (H, W, 3) ndarray of uint8

    Raises
    ------
    ValueError
        Shapes that do not match, ``alpha`` outside [0, 1], or the checks of :func:`colorize`.
    """
    img = _check_image(image)
    hm = _check_heatmap(heatmap)
    if hm.shape != img.shape[:2]:
        raise ValueError(f"heatmap shape {hm.shape} does not match the image {img.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if mask is None:
        w = np.ones(hm.shape, np.float32)
    else:
        w = np.asarray(mask, dtype=np.float32)
        if w.shape != hm.shape:
            raise ValueError(f"mask shape {w.shape} does not match the heat map {hm.shape}")
        w = np.clip(w, 0.0, 1.0)
    if vmax is None:
        inside = hm[w > 0.5]
        vmax = robust_vmax(inside[None] if inside.size else hm)
    if not (math.isfinite(vmax) and vmax > 0):
        raise ValueError(f"vmax must be a finite number > 0, got {vmax}")
    out = _blend(img, hm, w, vmax=vmax, alpha=alpha, lut=_colour_table(cmap))
    if outline and mask is not None:
        out[_inner_boundary(w > 0.5)] = 255
    return out


def _blend(img: np.ndarray, hm: np.ndarray, w: np.ndarray, *, vmax: float, alpha: float, lut: np.ndarray) -> np.ndarray:
    """``round(w * ((1 - alpha) * img + alpha * colour) + (1 - w) * 0.35 * img)`` in float32, per pixel.

    Where ``w`` is 0 the value is ``0.35 * img`` exactly and where it is 1 the blend alone (the
    other term is an exact 0), so those pixels come from a 256-entry table and from the blend of
    the ROI's pixels only; the full formula runs where ``w`` is strictly between 0 and 1. The
    pixels are those of the formula evaluated everywhere, and a 4096-px photo with a small ROI
    needs no float copies of the whole picture.
    """
    import cv2

    # The same float32 expression on the 256 possible values: one lookup per pixel.
    levels = np.arange(256, dtype=np.float32)
    dim_table = np.clip(_DIM * levels + 0.5, 0, 255).astype(np.uint8)
    out = cv2.LUT(np.ascontiguousarray(img), dim_table)
    for sel, wv in ((w == 1.0, None), ((w > 0.0) & (w < 1.0), w)):
        ys, xs = np.nonzero(sel)
        if ys.size == 0:
            continue
        base = img[ys, xs].astype(np.float32)
        colour = _lookup(hm[ys, xs], vmax, lut).astype(np.float32)
        blend = (1.0 - alpha) * base + alpha * colour
        if wv is not None:
            wb = wv[ys, xs][:, None]
            blend = wb * blend + (1.0 - wb) * (_DIM * base)
        out[ys, xs] = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
    return out


def _inner_boundary(region: np.ndarray) -> np.ndarray:
    """Pixels of ``region`` with a 4-neighbour outside it (image edges do not count).

    The same pixels as ``skimage.segmentation.find_boundaries(region, mode="inner")``: an erosion
    by the 3x3 cross, whose border (OpenCV's default for erosion) never erodes, as the reflected
    border of SciPy's erosion does not.
    """
    import cv2

    fg = region.astype(np.uint8)
    eroded = cv2.erode(fg, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)))
    return region & (eroded == 0)


def heatmap_figure(
    heatmap: np.ndarray,
    *,
    vmax: float | None = None,
    title: str | None = None,
    cmap: str = "inferno",
    dpi: int = 100,
    units: str = "difference energy (sum over channels)",
) -> np.ndarray:
    """Heat map with a colour bar, rendered by matplotlib's Agg canvas to an array.

    Parameters
    ----------
    heatmap : (H, W) ndarray
        Heat map, >= 0.
    vmax : float, optional
        Top of the colour scale (default :func:`robust_vmax`).
    title : str, optional
        Figure title.
    cmap : str
        Matplotlib colour map name.
    dpi : int
        Rendering resolution; the figure is about 6 x 5 inches.
    units : str
        Label of the colour bar.

    Returns
    -------
    (h, w, 3) ndarray of uint8
        The rendered figure (no file is written).
    """
    hm = _check_heatmap(heatmap)
    if vmax is None:
        vmax = robust_vmax(hm)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    aspect = hm.shape[1] / hm.shape[0]
    fig = Figure(figsize=(5.0 * aspect + 1.2, 5.0), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(hm, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
    ax.set_axis_off()
    # The hidden axes still make their ticks while the layout is computed (for the title's
    # position); none are drawn, so none are made.
    ax.xaxis.set_major_locator(NullLocator())
    ax.yaxis.set_major_locator(NullLocator())
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label(units)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def colorbar(vmax: float, height: int, *, cmap: str = "inferno", width: int | None = None) -> np.ndarray:
    """A vertical colour bar, 0 at the bottom and ``vmax`` at the top, with three tick labels.

    Parameters
    ----------
    vmax : float
        Value at the top (> 0); the heat maps beside it must be drawn with the same ``vmax``.
    height : int
        Picture height in pixels (>= 32).
    cmap : str
        Matplotlib colour map name.
    width : int, optional
        Picture width (default: room for the bar and labels such as ``4.4e+03``).

    Returns
    -------
    (height, width, 3) ndarray of uint8
        White background; the top label reads ``>= vmax`` because larger values saturate.
    """
    if not (math.isfinite(vmax) and vmax > 0):
        raise ValueError(f"vmax must be a finite number > 0, got {vmax}")
    h = int(height)
    if h < 32:
        raise ValueError(f"height must be >= 32, got {height}")
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    font_size = max(10, min(28, h // 18))
    font = _font(font_size)
    bar_w = max(12, h // 20)
    pad = font_size
    w = int(width) if width is not None else bar_w + 16 + 5 * font_size
    ramp = np.linspace(1.0, 0.0, h - 2 * pad, dtype=np.float32)[:, None].repeat(bar_w, axis=1)
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    canvas.paste(Image.fromarray(colormaps[cmap](ramp, bytes=True)[..., :3]), (2, pad))
    draw = ImageDraw.Draw(canvas)
    for frac, text in ((1.0, f">= {vmax:.3g}"), (0.5, f"{vmax / 2:.3g}"), (0.0, "0")):
        y = pad + round((1.0 - frac) * (h - 2 * pad - 1))
        draw.line([(2 + bar_w, y), (6 + bar_w, y)], fill=(0, 0, 0))
        draw.text((10 + bar_w, y - font_size // 2 - 1), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def _resize(img: np.ndarray, height: int) -> np.ndarray:
    from PIL import Image

    if img.shape[0] == height:
        return img
    width = max(1, round(img.shape[1] * height / img.shape[0]))
    return np.asarray(Image.fromarray(img).resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0))


def panel(
    images: Sequence[np.ndarray],
    labels: Sequence[str],
    *,
    height: int | None = None,
    gap: int = 4,
) -> np.ndarray:
    """Side-by-side strip of pictures with a label above each.

    Typical use: aligned | normalized | heat map | overlay, for slides and the HTML report.

    Parameters
    ----------
    images : sequence of (H, W, 3) or (H, W) uint8 ndarrays
        Pictures; each is resized to a common height keeping its aspect ratio.
    labels : sequence of str
        One label per picture.
    height : int, optional
        Common picture height (default: the smallest input height).
    gap : int
        White pixels between pictures.

    Returns
    -------
    (height + label bar, W, 3) ndarray of uint8
        White background, labels in black.

    Raises
    ------
    ValueError
        No images, a label count that differs from the image count, or a non-uint8 picture.
    """
    if len(images) == 0:
        raise ValueError("panel needs at least one image")
    if len(labels) != len(images):
        raise ValueError(f"got {len(images)} images but {len(labels)} labels")
    imgs = [_check_image(im, f"images[{i}]") for i, im in enumerate(images)]
    h = int(height) if height is not None else min(im.shape[0] for im in imgs)
    if h < 1:
        raise ValueError(f"height must be >= 1, got {h}")
    imgs = [_resize(im, h) for im in imgs]
    from PIL import Image, ImageDraw

    font_size = max(10, min(32, h // 16))
    font = _font(font_size)
    bar = font_size + 10
    width = sum(im.shape[1] for im in imgs) + gap * (len(imgs) - 1)
    canvas = Image.new("RGB", (width, h + bar), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for im, label in zip(imgs, labels, strict=True):
        canvas.paste(Image.fromarray(im), (x, bar))
        draw.text((x + 4, 4), str(label), fill=(0, 0, 0), font=font)
        x += im.shape[1] + gap
    return np.asarray(canvas)


MAX_OVERLAY_SIDE = 4096
PANEL_HEIGHT = 512


def overlay_on_original(original: np.ndarray, aligned_face: Any, heatmap: np.ndarray, *, mask: np.ndarray | None = None,
                        vmax: float | None = None) -> np.ndarray:  # fmt: skip
    """The heat map drawn back onto the original photo, at most 4096 px a side.

    Parameters
    ----------
    original : (H, W, 3) ndarray of uint8
        The photo.
    aligned_face : cleftscore.face.align.AlignedFace
        Its alignment (the transform from the aligned frame to the photo).
    heatmap, mask : (S, S) ndarray
        Heat map (>= 0) and ROI in the aligned frame.
    vmax : float, optional
        Top of the colour scale.

    Returns
    -------
    (h, w, 3) ndarray of uint8
        The photo (downscaled when larger than 4096 px: a 50-megapixel overlay needs gigabytes,
        a slide far less) with the heat map and ROI.
    """
    from PIL import Image

    from cleftscore.face.align import warp_to_original

    img = _check_image(original, "original")
    h, w = img.shape[:2]
    scale = MAX_OVERLAY_SIDE / max(h, w)
    if scale < 1:
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        img = np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.BOX))
        to_small = np.diag([nw / w, nh / h, 1.0])
        aligned_face = dataclasses.replace(
            aligned_face, to_original=to_small @ aligned_face.to_original, original_shape=(nh, nw)
        )
    hm_o = warp_to_original(heatmap, aligned_face, order=1, fill=0)
    mask_o = warp_to_original(mask, aligned_face, order=1, fill=0) if mask is not None else None
    return overlay(img, hm_o, mask=mask_o, vmax=vmax)


def score_pictures(
    aligned: np.ndarray,
    normalized: np.ndarray,
    heatmap: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    score: float | None = None,
    inverted: np.ndarray | None = None,
    original: np.ndarray | None = None,
    aligned_face: Any = None,
    vmax: float | None = None,
    units: str = "difference energy (sum over channels)",
    display: np.ndarray | None = None,
    display_units: str = "",
    save_values: bool = False,
) -> dict[str, np.ndarray | bytes]:
    """Every picture of a scored photo that depends on its heat map, by file name.

    Parameters
    ----------
    aligned, normalized : (S, S, 3) ndarray of uint8
        The aligned face and its normalized twin.
    heatmap : (S, S) ndarray
        Heat map, >= 0.
    mask : (S, S) ndarray, optional
        The scored region: outlined on the overlays (without ``display``, the rest is dimmed
        and the colour scale ignores it).
    score : float, optional
        Shown as the title of ``heatmap_figure.png``.
    inverted : (S, S, 3) ndarray of uint8, optional
        GAN inversion before adaptation; joins the panel.
    original, aligned_face : optional
        The photo and its alignment, for ``overlay_original.png``.
    vmax : float, optional
        Top of the colour scale of ``heatmap``. A run passes one value for all its photos (see
        :func:`cleftscore.score.paper.heatmap_top`) so that their pictures compare by eye; without
        it the scale is this map's own 99.5th percentile in the ROI.
    units : str
        What ``heatmap``'s values are.
    display : (S, S) ndarray, optional
        The map as it is shown, in units of normal variation over the face only (0 elsewhere;
        :meth:`cleftscore.score.reference.NormativeReference.in_normal_units`). When given, every
        picture draws it on a fixed scale of 0 to :data:`NORMAL_UNITS_TOP`, coloured over the face
        with the scored region outlined, instead of ``heatmap``.
    display_units : str
        What ``display``'s values are (the colour bar's label).
    save_values : bool
        Add ``heatmap.npy`` (the drawn map's values, float32, aligned frame) and
        ``heatmap_figure.png`` (the map with its colour bar and units).

    Returns
    -------
    dict
        ``heatmap.png`` (the drawn map alone in false colour, one pixel per aligned pixel),
        ``overlay.png``, ``overlay_original.png`` (with ``original``), ``panel.png`` (aligned |
        [inverted |] normalized | heat map | overlay | colour bar, at most 512 px high) as arrays,
        ``thumb.jpg`` (the panel, 160 px high) as JPEG bytes, and with ``save_values`` the two
        files above (``heatmap.npy`` as ``.npy`` bytes).
    """
    if display is not None:
        shown, top, label, colour_where = _check_heatmap(display), NORMAL_UNITS_TOP, display_units, display > 0
    else:
        shown, label, colour_where = _check_heatmap(heatmap), units, mask
        if vmax is None:
            roi = heatmap if mask is None else heatmap * (np.asarray(mask) > 0)
            vmax = float(np.percentile(roi[roi > 0], 99.5)) if np.any(roi > 0) else 1.0
        top = vmax
    out: dict[str, np.ndarray | bytes] = {"heatmap.png": colorize(shown, vmax=top)}
    if save_values:
        title = f"score = {score:.3f}" if score is not None else None
        out["heatmap_figure.png"] = heatmap_figure(shown, vmax=top, title=title, units=label)
        out["heatmap.npy"] = npy_bytes(shown.astype(np.float32))
    ov = _outlined_overlay(aligned, shown, colour_where, mask, vmax=top, thick=display is not None)
    out["overlay.png"] = ov
    if original is not None and aligned_face is not None:
        out["overlay_original.png"] = overlay_on_original(original, aligned_face, shown, mask=mask, vmax=top)
    images = [aligned, normalized, colorize(shown, vmax=top), ov]
    # With a reference the panel is read by clinicians: plain names for the pictures.
    labels = (
        ["face", "compared with", "heat map", "overlay"]
        if display is not None
        else ["aligned", "normalized", "heat map", "overlay"]
    )
    if inverted is not None:
        images.insert(1, inverted)
        labels.insert(1, "inverted (no adaptation)")
    # 512 px high is plenty for a slide and a quarter of the pixels to draw and encode.
    height = min(PANEL_HEIGHT, aligned.shape[0])
    if height >= 32:
        images.append(colorbar(top, height))
        labels.append("x normal" if display is not None else "scale")
    strip = panel(images, labels, height=height)
    out["panel.png"] = strip
    out["thumb.jpg"] = thumbnail_jpeg(strip)
    return out


#: Top of the colour scale of a map in units of normal variation: four times the 90th percentile
#: of normal faces at the same point saturates.
NORMAL_UNITS_TOP = 4.0
#: Colour of the scored region's outline on a map in normal units (cyan: absent from the colour map).
_OUTLINE = (0, 255, 255)


def _outlined_overlay(image: np.ndarray, shown: np.ndarray, colour_where: np.ndarray | None,
                      region: np.ndarray | None, *, vmax: float, thick: bool) -> np.ndarray:  # fmt: skip
    """The overlay: colour where ``colour_where`` (the face, or the ROI), and the scored region outlined.

    With ``thick`` the outline is 3 pixels wide per 1024 and cyan, over a map that covers the
    whole face; otherwise the plain :func:`overlay` (white 1-pixel outline of ``colour_where``).
    """
    if not thick:
        return overlay(image, shown, mask=colour_where, vmax=vmax)
    import cv2

    out = overlay(image, shown, mask=colour_where, vmax=vmax, outline=False)
    if region is not None:
        r = np.asarray(region) > 0.5
        width = max(1, round(3 * r.shape[0] / 1024))
        edge = cv2.dilate(_inner_boundary(r).astype(np.uint8), np.ones((width, width), np.uint8)) > 0
        out[edge] = _OUTLINE
    return out


def npy_bytes(array: np.ndarray) -> bytes:
    """The bytes of ``array`` as a ``.npy`` file (``numpy.load`` reads them back)."""
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


# ----------------------------------------------------------------------------- files


def thumbnail_jpeg(image: np.ndarray, *, height: int = 160, quality: int = 80) -> bytes:
    """A small JPEG of a picture, for embedding in the report.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        The picture (typically a panel strip), 0..255.
    height : int
        Height of the thumbnail in pixels (never enlarged).
    quality : int
        JPEG quality 1..95.

    Returns
    -------
    bytes
        The JPEG file's bytes (a 4-picture panel at 160 px is about 20-40 KB).
    """
    from PIL import Image

    img = _check_image(image)
    if height < 1:
        raise ValueError(f"height must be >= 1, got {height}")
    small = _resize(img, min(height, img.shape[0]))
    buf = io.BytesIO()
    Image.fromarray(small).save(buf, format="JPEG", quality=int(quality), optimize=True)
    return buf.getvalue()
