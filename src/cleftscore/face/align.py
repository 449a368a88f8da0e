"""FFHQ alignment of a face, with the exact geometric transform back to the original photo.

The crop is the one NVIDIA used to build the FFHQ data set (``recreate_aligned_images`` in the
``ffhq-dataset`` repository), re-implemented from its description: an oriented square ("quad")
from the eye and mouth landmarks; shrink the photo when the quad is much larger than the output;
crop around the quad with a border; where the quad leaves the photo, reflect-pad and blend the
padding toward a blurred copy and toward the median colour; resample the quad at 4x the output
size with bilinear interpolation, then downsample to the output size with a Lanczos filter.
This is the input a StyleGAN2-FFHQ generator expects. The paper's description (eyes horizontal,
mirrored copies around the face, blurred background) is this same recipe.

Every step is an affine map of pixel coordinates (the quad is a parallelogram), so the whole
chain is one 3x3 matrix, :attr:`AlignedFace.to_original`, which maps aligned-frame pixel
coordinates to photo pixel coordinates. Coordinates follow the landmark convention: ``(x, y)``,
x to the right, y down, pixel centres at integers.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from cleftscore.face.landmarks import N_LANDMARKS

__all__ = [
    "AlignedFace",
    "align_face",
    "coverage_original",
    "ffhq_quad",
    "transform_points",
    "warp_to_aligned",
    "warp_to_original",
]

_TRANSFORM_OVERSAMPLE = 4  # FFHQ: 4096 px quad transform for a 1024 px output
_MIN_SIZE = 16


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """An FFHQ-aligned face crop and the transform that puts it back on the photo.

    Attributes
    ----------
    image : numpy.ndarray
        ``(S, S, 3)`` uint8 RGB, the aligned crop.
    size : int
        ``S``, a power of two.
    landmarks : numpy.ndarray
        ``(68, 2)`` float64 landmarks in the aligned frame.
    landmarks_original : numpy.ndarray
        ``(68, 2)`` float64 landmarks in the original photo.
    to_original : numpy.ndarray
        ``(3, 3)`` float64 affine matrix: homogeneous aligned ``(x, y, 1)`` -> photo ``(x, y, 1)``.
    original_shape : tuple of int
        ``(H, W)`` of the original photo.
    """

    image: np.ndarray
    size: int
    landmarks: np.ndarray
    landmarks_original: np.ndarray
    to_original: np.ndarray
    original_shape: tuple[int, int]

    def __post_init__(self) -> None:
        s = self.size
        if self.image.shape != (s, s, 3) or self.image.dtype != np.uint8:
            raise ValueError(f"aligned image must be ({s}, {s}, 3) uint8, got {self.image.shape} {self.image.dtype}")
        for name in ("landmarks", "landmarks_original"):
            lm = getattr(self, name)
            if lm.shape != (N_LANDMARKS, 2):
                raise ValueError(f"{name} must have shape ({N_LANDMARKS}, 2), got {lm.shape}")
        if self.to_original.shape != (3, 3) or not np.allclose(self.to_original[2], (0.0, 0.0, 1.0)):
            raise ValueError("to_original must be a 3x3 affine matrix with last row (0, 0, 1)")
        if len(self.original_shape) != 2:
            raise ValueError(f"original_shape must be (H, W), got {self.original_shape}")

    @property
    def to_aligned(self) -> np.ndarray:
        """``(3, 3)`` inverse of :attr:`to_original`: photo coordinates -> aligned frame."""
        return np.linalg.inv(self.to_original)

    @property
    def quad_original(self) -> np.ndarray:
        """``(4, 2)`` corners of the aligned square in the photo: top-left, bottom-left,
        bottom-right, top-right (the outer edges of the corner pixels)."""
        e = self.size - 0.5
        corners = np.array([(-0.5, -0.5), (-0.5, e), (e, e), (e, -0.5)])
        return transform_points(self.to_original, corners)

    @property
    def scale(self) -> float:
        """Photo pixels per aligned pixel (the square root of the map's area factor)."""
        return float(math.sqrt(abs(np.linalg.det(self.to_original[:2, :2]))))


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3x3 affine matrix to ``(N, 2)`` points; returns ``(N, 2)`` float64."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    m = np.asarray(matrix, dtype=np.float64)
    return pts @ m[:2, :2].T + m[:2, 2]


def ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The FFHQ crop square from 68 landmarks.

    Parameters
    ----------
    landmarks : numpy.ndarray
        ``(68, 2)`` iBUG landmarks ``(x, y)`` in photo pixels.

    Returns
    -------
    quad : numpy.ndarray
        ``(4, 2)`` corners top-left, bottom-left, bottom-right, top-right (as the face sees
        them upright), in photo pixels.
    qsize : float
        Side length of the square in photo pixels.

    Notes
    -----
    With eye centres ``e_l, e_r`` (means of points 36-41 and 42-47) and mouth corners 48, 54:
    ``x = eye_to_eye - flipud(eye_to_mouth) * [-1, 1]``, normalised, times
    ``max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)``; ``y = flipud(x) * [-1, 1]``;
    centre ``c = eye_avg + 0.1 eye_to_mouth``; quad ``[c-x-y, c-x+y, c+x+y, c+x-y]``.
    """
    lm = _check_landmarks(landmarks)
    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    x = eye_to_eye - np.flipud(eye_to_mouth) * np.array([-1.0, 1.0])
    norm = float(np.hypot(*x))
    if not norm > 1e-6:
        raise ValueError("landmarks are degenerate: eyes and mouth coincide")
    x = x / norm
    x = x * max(float(np.hypot(*eye_to_eye)) * 2.0, float(np.hypot(*eye_to_mouth)) * 1.8)
    y = np.flipud(x) * np.array([-1.0, 1.0])
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    qsize = float(np.hypot(*x)) * 2.0
    return quad, qsize


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (N_LANDMARKS, 2):
        raise ValueError(f"landmarks must have shape ({N_LANDMARKS}, 2), got {lm.shape}")
    if not np.all(np.isfinite(lm)):
        raise ValueError("landmarks contain NaN or infinite values")
    return lm


def _translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def _resample_map(src_w: int, src_h: int, dst_w: int, dst_h: int) -> np.ndarray:
    """Map from a resized image's pixel coordinates to the source's (Pillow resize geometry)."""
    sx, sy = src_w / dst_w, src_h / dst_h
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """scipy.ndimage.gaussian_filter(img, [sigma, sigma, 0]) (mode 'reflect', truncate 4), via OpenCV.

    Same kernel (radius ``int(4 sigma + 0.5)``, normalised samples of exp(-x^2 / 2 sigma^2)) and
    the same border rule as the scipy call in the FFHQ script, several times faster.
    """
    import cv2

    if sigma <= 0:
        return img.copy()
    radius = int(4.0 * sigma + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    if 2 * radius + 1 > min(img.shape[:2]):
        # OpenCV's reflect border needs the kernel to fit; scipy handles this case exactly.
        import scipy.ndimage

        return scipy.ndimage.gaussian_filter(img, [sigma, sigma, 0], mode="reflect", truncate=4.0)
    return cv2.sepFilter2D(img, cv2.CV_32F, k, k, borderType=cv2.BORDER_REFLECT)


def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one), not the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _strips(n_rows: int, n_strips: int) -> list[tuple[int, int]]:
    return [(i * n_rows // n_strips, (i + 1) * n_rows // n_strips) for i in range(n_strips)]


def _quad_transform_then_resize(img: Image.Image, quad_cont: np.ndarray, transform_size: int, size: int) -> Image.Image:
    """Pillow QUAD/BILINEAR transform to ``transform_size``, then LANCZOS resize to ``size``.

    Both steps run on horizontal strips in a few threads (Pillow releases the GIL while it
    resamples). The result is bit-identical to the two whole-image calls: a strip of the quad
    transform is the same bilinear map restricted to its rows, and a strip of the resize reads
    its filter support from the whole transformed image via ``box``.
    """
    from concurrent.futures import ThreadPoolExecutor

    n_threads = max(1, min(4, _usable_cores()))
    n_strips = n_threads if transform_size >= 1024 else 1
    nw, sw, se, ne = (np.asarray(v, dtype=np.float64) for v in quad_cont)
    t = float(transform_size)

    def transform_rows(rows: tuple[int, int]) -> Image.Image:
        r0, r1 = rows
        corners = (
            nw + (sw - nw) * (r0 / t),
            nw + (sw - nw) * (r1 / t),
            ne + (se - ne) * (r1 / t),
            ne + (se - ne) * (r0 / t),
        )
        data = tuple(float(v) for c in corners for v in c)
        return img.transform((transform_size, r1 - r0), Image.Transform.QUAD, data, Image.Resampling.BILINEAR)

    def resize_rows(big: Image.Image, rows: tuple[int, int]) -> Image.Image:
        k0, k1 = rows
        f = transform_size / size
        return big.resize((size, k1 - k0), Image.Resampling.LANCZOS, box=(0.0, k0 * f, float(transform_size), k1 * f))

    if n_strips == 1:
        big = transform_rows((0, transform_size))
        return big.resize((size, size), Image.Resampling.LANCZOS)
    # Strips are pasted into place (a copy inside Pillow), not joined through NumPy arrays.
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        rows = _strips(transform_size, n_strips)
        big = Image.new("RGB", (transform_size, transform_size))
        for (r0, _), part in zip(rows, pool.map(transform_rows, rows), strict=True):
            big.paste(part, (0, r0))
        rows = _strips(size, n_strips)
        small = Image.new("RGB", (size, size))
        for (k0, _), part in zip(rows, pool.map(lambda r: resize_rows(big, r), rows), strict=True):
            small.paste(part, (0, k0))
    return small


def _zero_box(weight: np.ndarray) -> tuple[int, int, int, int]:
    """Rows ``[y0, y1)`` and columns ``[x0, x1)`` of the rectangle where an edge weight is 0.

    ``weight`` is ``(H, W, 1)``, the maximum of a row profile and a column profile, so its zeros
    form one rectangle (empty: ``y0 == y1``).
    """
    zero = weight[..., 0] == 0
    rows = np.flatnonzero(zero.any(axis=1))
    cols = np.flatnonzero(zero.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return 0, 0, 0, 0
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _blur_minus_image(work: np.ndarray, sigma: float, box: tuple[int, int, int, int]) -> np.ndarray:
    """``_gaussian_blur(work, sigma) - work`` outside ``box`` (rows y0:y1, columns x0:x1), 0 inside.

    The blur is made on four strips around the box, each with the kernel's radius of context and
    touching the image edges where the whole-image blur reflects, so every value outside the box
    is the whole-image blur's, bit for bit (tests/test_face.py checks it).
    """
    h, w = work.shape[:2]
    y0, y1, x0, x1 = box
    radius = int(4.0 * sigma + 0.5)
    strips = [(0, y0, 0, w), (y1, h, 0, w), (y0, y1, 0, x0), (y0, y1, x1, w)]
    # OpenCV's filters take a row in SIMD blocks from its start and finish it with scalar code that
    # may round differently: a strip starts at a multiple of 128 columns and reaches 64 columns
    # past its context, so each kept pixel is computed by the same code as in the whole image.
    sub = [(max(0, a - radius), min(h, b + radius), max(0, c - radius) // 128 * 128, min(w, d + radius + 64))
           for a, b, c, d in strips]  # fmt: skip
    fits = all(min(sb - sa, sd - sc) > 2 * radius for (a, b, c, d), (sa, sb, sc, sd) in zip(strips, sub, strict=True)
               if b > a and d > c)  # fmt: skip
    if sigma <= 0 or y1 <= y0 or x1 <= x0 or 2 * radius + 1 > min(h, w) or not fits:
        step = _gaussian_blur(work, sigma)
        np.subtract(step, work, out=step)
        return step
    step = np.zeros_like(work)
    for (a, b, c, d), (sa, sb, sc, sd) in zip(strips, sub, strict=True):
        if b <= a or d <= c:
            continue
        blurred = _gaussian_blur(np.ascontiguousarray(work[sa:sb, sc:sd]), sigma)[a - sa : b - sa, c - sc : d - sc]
        np.subtract(blurred, work[a:b, c:d], out=step[a:b, c:d])
    return step


def _pad_and_blend(
    img: Image.Image, pad: tuple[int, int, int, int], qsize: float
) -> tuple[Image.Image, tuple[int, int]]:
    """FFHQ's padding: reflect-pad, blend toward a blur and the median colour near the edges.

    Returns the padded photo and its (left, top) padding.
    """
    pad_arr = np.maximum(pad, int(np.rint(qsize * 0.3)))
    p_left, p_top, p_right, p_bottom = (int(v) for v in pad_arr)
    work = np.pad(np.asarray(img, dtype=np.float32), ((p_top, p_bottom), (p_left, p_right), (0, 0)), mode="reflect")
    h, w, _ = work.shape
    yy, xx = np.ogrid[:h, :w]
    xx = xx.astype(np.float32)
    yy = yy.astype(np.float32)
    mask = np.maximum(
        1.0 - np.minimum(xx / max(p_left, 1), (w - 1 - xx) / max(p_right, 1)),
        1.0 - np.minimum(yy / max(p_top, 1), (h - 1 - yy) / max(p_bottom, 1)),
    )[..., None]
    # work += (blur(work) - work) * clip(3 mask + 1); work += (median - work) * clip(mask),
    # the same float32 operations in place in one scratch buffer. The blur weight is 0 inside a
    # rectangle away from the padding (mask <= -1/3 on both axes), so the blur is only made
    # around it: the same bits, a fraction of the work for a large photo.
    blend = np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    step = _blur_minus_image(work, qsize * 0.02, _zero_box(blend))
    step *= blend
    work += step
    np.subtract(np.median(work, axis=(0, 1)), work, out=step)
    step *= np.clip(mask, 0.0, 1.0)
    work += step
    del step
    np.rint(work, out=work)
    np.clip(work, 0, 255, out=work)
    return Image.fromarray(work.astype(np.uint8), "RGB"), (p_left, p_top)


def align_face(image: np.ndarray, landmarks: np.ndarray, *, size: int = 1024) -> AlignedFace:
    """Crop and rotate a face the way the FFHQ data set was made.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` uint8 RGB photo, 0..255.
    landmarks : numpy.ndarray
        ``(68, 2)`` iBUG landmarks of the face in ``image`` (from
        :func:`cleftscore.face.landmarks.predict_landmarks`).
    size : int, optional
        Output side ``S`` in pixels, a power of two >= 16 (the generator's resolution; 1024 for
        FFHQ).

    Returns
    -------
    AlignedFace
        The ``(S, S, 3)`` crop, landmarks in both frames and the aligned-to-photo matrix.

    Raises
    ------
    ValueError
        For a bad image, bad landmarks, or a size that is not a power of two.

    Notes
    -----
    Steps, as in NVIDIA's ``recreate_aligned_images`` (output S, transform size 4S):

    1. quad and ``qsize`` from :func:`ffhq_quad`;
    2. shrink: ``shrink = floor(qsize / S / 2)``; if ``shrink > 1`` resize the photo by
       1/shrink (Lanczos) and divide quad and qsize by it;
    3. crop to the quad's bounding box plus ``border = max(rint(0.1 qsize), 3)``;
    4. pad: if the quad leaves the crop by more than ``border - 4`` pixels, reflect-pad every
       side by at least ``rint(0.3 qsize)``, blend toward a Gaussian blur (sigma 0.02 qsize)
       and toward the median colour with weights growing toward the edges;
    5. bilinear quad transform to ``4S x 4S``, then Lanczos resize to ``S x S``.

    The Gaussian blur uses OpenCV with scipy's kernel and border rule (same values up to float
    rounding). :attr:`AlignedFace.to_original` follows the pixels actually moved, including the
    rounding of the shrunk photo's size, so it is exact even where the FFHQ script's own quad
    bookkeeping is off by a fraction of a pixel.
    """
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got shape {arr.shape} dtype {arr.dtype}")
    if not (isinstance(size, (int, np.integer)) and size >= _MIN_SIZE and size & (size - 1) == 0):
        raise ValueError(f"size must be a power of two >= {_MIN_SIZE} (e.g. 256, 1024), got {size!r}")
    size = int(size)
    lm = _check_landmarks(landmarks)
    orig_h, orig_w = arr.shape[:2]
    quad, qsize = ffhq_quad(lm)
    if qsize < 4:
        raise ValueError(f"the face is too small to align (crop side {qsize:.1f} px)")
    transform_size = _TRANSFORM_OVERSAMPLE * size

    img = Image.fromarray(np.ascontiguousarray(arr), "RGB")
    # to_work: working-image pixel coordinates -> original photo coordinates.
    to_work = np.eye(3)

    # Shrink.
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(float(img.size[0]) / shrink)), int(np.rint(float(img.size[1]) / shrink)))
        to_work = to_work @ _resample_map(img.size[0], img.size[1], rsize[0], rsize[1])
        img = img.resize(rsize, Image.Resampling.LANCZOS)
        quad = quad / shrink
        qsize = qsize / shrink

    # Crop.
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (
        int(np.floor(quad[:, 0].min())),
        int(np.floor(quad[:, 1].min())),
        int(np.ceil(quad[:, 0].max())),
        int(np.ceil(quad[:, 1].max())),
    )
    crop = (
        max(crop[0] - border, 0),
        max(crop[1] - border, 0),
        min(crop[2] + border, img.size[0]),
        min(crop[3] + border, img.size[1]),
    )
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad = quad - np.array(crop[0:2], dtype=np.float64)
        to_work = to_work @ _translate(crop[0], crop[1])

    # Pad.
    pad = (
        int(np.floor(quad[:, 0].min())),
        int(np.floor(quad[:, 1].min())),
        int(np.ceil(quad[:, 0].max())),
        int(np.ceil(quad[:, 1].max())),
    )
    pad = (
        max(-pad[0] + border, 0),
        max(-pad[1] + border, 0),
        max(pad[2] - img.size[0] + border, 0),
        max(pad[3] - img.size[1] + border, 0),
    )
    if max(pad) > border - 4:
        img, (p_left, p_top) = _pad_and_blend(img, pad, qsize)
        quad = quad + np.array([p_left, p_top], dtype=np.float64)
        to_work = to_work @ _translate(-p_left, -p_top)

    # Transform: Pillow's QUAD maps output pixel centre (i + 0.5, j + 0.5) bilinearly onto the
    # quad given in continuous coordinates (hence FFHQ's quad + 0.5); for a parallelogram it is
    # affine. In pixel-centre coordinates: src = nw + (ne - nw) (i + 0.5) / T + (sw - nw) (j + 0.5) / T.
    nw, sw, _se, ne = quad
    ax = (ne - nw) / transform_size
    ay = (sw - nw) / transform_size
    quad_map = np.array(
        [
            [ax[0], ay[0], nw[0] + 0.5 * (ax[0] + ay[0])],
            [ax[1], ay[1], nw[1] + 0.5 * (ax[1] + ay[1])],
            [0.0, 0.0, 1.0],
        ]
    )
    img = _quad_transform_then_resize(img, quad + 0.5, transform_size, size)
    to_work = to_work @ quad_map
    to_work = to_work @ _resample_map(transform_size, transform_size, size, size)

    to_original = to_work
    lm_aligned = transform_points(np.linalg.inv(to_original), lm)
    return AlignedFace(
        image=np.ascontiguousarray(np.asarray(img, dtype=np.uint8)),
        size=size,
        landmarks=lm_aligned,
        landmarks_original=lm.copy(),
        to_original=to_original,
        original_shape=(orig_h, orig_w),
    )


_CV_INTERP = {0: "INTER_NEAREST", 1: "INTER_LINEAR", 3: "INTER_CUBIC"}
_CV_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64)


def _warp(src: np.ndarray, dst_to_src: np.ndarray, dsize: tuple[int, int], *, order: int, fill: float) -> np.ndarray:
    """Resample ``src`` at ``dst_to_src @ (x, y, 1)`` for every destination pixel (OpenCV)."""
    import cv2

    if order not in _CV_INTERP:
        raise ValueError(f"order must be 0 (nearest), 1 (bilinear) or 3 (bicubic), got {order!r}")
    arr = np.asarray(src)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float32)
    if arr.dtype.type not in _CV_DTYPES:
        raise ValueError(f"cannot warp dtype {arr.dtype}; use uint8, uint16, int16, float32, float64 or bool")
    flags = getattr(cv2, _CV_INTERP[order]) | cv2.WARP_INVERSE_MAP
    m = np.ascontiguousarray(dst_to_src[:2], dtype=np.float64)
    width, height = dsize

    def one(chunk: np.ndarray) -> np.ndarray:
        n = 1 if chunk.ndim == 2 else chunk.shape[2]
        out = cv2.warpAffine(
            np.ascontiguousarray(chunk),
            m,
            (width, height),
            flags=flags,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(fill,) * min(n, 4) if n > 1 else fill,
        )
        return out.reshape(height, width, n) if chunk.ndim == 3 else out

    if arr.ndim == 2 or arr.shape[2] <= 4:
        return one(arr)
    parts = [one(arr[..., i : i + 4]) for i in range(0, arr.shape[2], 4)]
    return np.concatenate(parts, axis=2)


def warp_to_original(aligned_map: np.ndarray, aligned: AlignedFace, *, order: int = 1, fill: float = 0) -> np.ndarray:
    """Draw a map made in the aligned frame (heat map, mask, image) back onto the photo.

    Parameters
    ----------
    aligned_map : numpy.ndarray
        ``(S, S)`` or ``(S, S, C)`` array in the aligned frame; uint8, uint16, int16, float32,
        float64 or bool (bool comes back as float32 0..1).
    aligned : AlignedFace
        The alignment that made the frame.
    order : {0, 1, 3}, optional
        Interpolation: nearest, bilinear (default) or bicubic.
    fill : float, optional
        Value of photo pixels outside the aligned square (default 0). Use
        :func:`coverage_original` to know which pixels are covered.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` in the photo's frame, same dtype as the input.

    Raises
    ------
    ValueError
        If the map is not ``S x S`` or its dtype or ``order`` is unsupported.
    """
    arr = np.asarray(aligned_map)
    s = aligned.size
    if arr.ndim not in (2, 3) or arr.shape[:2] != (s, s):
        raise ValueError(f"aligned_map must be ({s}, {s}) or ({s}, {s}, C), got shape {arr.shape}")
    h, w = aligned.original_shape
    return _warp(arr, aligned.to_aligned, (w, h), order=order, fill=fill)


def warp_to_aligned(image_original: np.ndarray, aligned: AlignedFace, *, order: int = 1, fill: float = 0) -> np.ndarray:
    """Resample any photo-frame array (the photo, a mask) into the aligned frame.

    Parameters
    ----------
    image_original : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` array with the original photo's ``(H, W)``.
    aligned : AlignedFace
        The alignment.
    order : {0, 1, 3}, optional
        Interpolation: nearest, bilinear (default) or bicubic.
    fill : float, optional
        Value where the aligned square leaves the photo (default 0). Note that
        :attr:`AlignedFace.image` has FFHQ's reflect padding there instead.

    Returns
    -------
    numpy.ndarray
        ``(S, S)`` or ``(S, S, C)``, same dtype as the input.

    Notes
    -----
    No anti-aliasing: when the face covers many more photo pixels than ``S`` (``aligned.scale``
    well above 1), expect aliasing; :attr:`AlignedFace.image` itself is properly filtered.
    """
    arr = np.asarray(image_original)
    h, w = aligned.original_shape
    if arr.ndim not in (2, 3) or arr.shape[:2] != (h, w):
        raise ValueError(f"image_original must be ({h}, {w}) or ({h}, {w}, C), got shape {arr.shape}")
    s = aligned.size
    return _warp(arr, aligned.to_original, (s, s), order=order, fill=fill)


def coverage_original(aligned: AlignedFace) -> np.ndarray:
    """``(H, W)`` bool: photo pixels whose centre falls inside the aligned square."""
    ones = np.ones((aligned.size, aligned.size), dtype=np.uint8)
    return warp_to_original(ones, aligned, order=0, fill=0).astype(bool)
