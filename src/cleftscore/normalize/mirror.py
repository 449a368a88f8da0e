"""The weights-free normalizer: the face's own mirror image (``--method asymmetry``).

The aligned face is reflected about its facial midline (fitted to midline landmarks) and the
reflection is registered back onto the face with a landmark-driven warp built from *stable*
mirrored landmark pairs. For a symmetric face the result equals the input; for a unilateral
cleft the upper lip and nostril of the other side show up in place of the defect, so the
difference map lights up at the defect and at its mirror position.

The registration is plain functions on arrays (no torch, no file I/O); :class:`MirrorNormalizer`
wraps it for the normalizer interface: the face must be seen from the front for its mirror image
to stand in for the normal face.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cleftscore.face.symmetric import IBUG68_MIRROR
from cleftscore.normalize import Measure, Normalization

if TYPE_CHECKING:
    from cleftscore.face.align import AlignedFace

__all__ = [
    "LANDMARK_ASYMMETRY_DEFINITION",
    "MAX_MIRROR_RESIDUAL",
    "MirrorNormalizer",
    "CONTROL_SETS",
    "MIDLINE_POINTS",
    "STABLE_CONTROL_POINTS",
    "WARPS",
    "MirrorResult",
    "fit_midline",
    "landmark_residual",
    "mirror_landmarks",
    "mirror_normalize",
    "reflection_matrix",
]

WARPS = ("thin-plate", "piecewise-affine")


#: Landmarks fitted by the midline: nose bridge 27-30, nose tip 33, upper-lip centre 51, chin 8.
MIDLINE_POINTS: tuple[int, ...] = (27, 28, 29, 30, 33, 51, 8)

#: Control points of the registration warp: jaw, brows, nose bridge, eyes and mouth corners.
#: The nose base (31-35) and the lips other than the corners are left out on purpose (see
#: :func:`mirror_normalize`).
STABLE_CONTROL_POINTS: tuple[int, ...] = (
    tuple(range(17)) + tuple(range(17, 27)) + tuple(range(27, 31)) + tuple(range(36, 48)) + (48, 54)
)

CONTROL_SETS = {"stable": STABLE_CONTROL_POINTS, "all": tuple(range(68))}


@dataclass(frozen=True)
class MirrorResult:
    """A face normalized by its own mirror image.

    Attributes
    ----------
    image : (H, W, 3) ndarray of uint8
        The registered mirror image in the aligned frame, 0..255.
    midline_point : (2,) ndarray of float64
        A point of the fitted midline, (x, y) pixels in the aligned frame.
    midline_direction : (2,) ndarray of float64
        Unit direction of the midline, pointing down the face (y > 0).
    registered_landmarks : (68, 2) ndarray of float64
        Where the mirrored landmarks (re-indexed left<->right) land after registration, (x, y).
    residual_landmark_error : float
        RMS distance in pixels between the original landmarks and ``registered_landmarks`` over
        all 68 points: about 0 for a symmetric face; the control points contribute only their
        interpolation error, so the value is dominated by the asymmetry of the nose base and
        lips (a landmark-level asymmetry index).
    warp : str
        ``"thin-plate"`` or ``"piecewise-affine"``.
    control_points : tuple of int
        iBUG-68 indices that drove the registration.
    """

    image: np.ndarray
    midline_point: np.ndarray
    midline_direction: np.ndarray
    registered_landmarks: np.ndarray
    residual_landmark_error: float
    warp: str
    control_points: tuple[int, ...]

    def __post_init__(self) -> None:
        img = np.asarray(self.image)
        if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8, got shape {img.shape} dtype {img.dtype}")
        if np.asarray(self.registered_landmarks).shape != (68, 2):
            raise ValueError(f"registered_landmarks must be (68, 2), got {np.asarray(self.registered_landmarks).shape}")
        if not np.isfinite(self.residual_landmark_error):
            raise ValueError("residual_landmark_error must be finite")
        object.__setattr__(self, "residual_landmark_error", float(self.residual_landmark_error))


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must be (68, 2) (x, y) in dlib iBUG-68 order, got shape {lm.shape}")
    if not np.all(np.isfinite(lm)):
        raise ValueError("landmarks contain NaN or infinite values")
    return lm


def fit_midline(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Facial midline by total least squares through the midline landmarks.

    Parameters
    ----------
    landmarks : (68, 2) ndarray
        iBUG-68 landmarks, (x, y) pixels.

    Returns
    -------
    point : (2,) ndarray of float64
        Centroid of the midline landmarks (a point on the line).
    direction : (2,) ndarray of float64
        Unit direction, oriented down the face (positive y component).

    Raises
    ------
    ValueError
        Landmarks of the wrong shape or with non-finite values, or midline points that do not
        define a line (all at one place).

    Notes
    -----
    Points: nose bridge 27-30, nose tip 33, upper-lip centre 51 and chin 8
    (:data:`MIDLINE_POINTS`). The line is the first principal axis of these points (orthogonal
    regression), so it follows a tilted face instead of the image centre.
    """
    lm = _check_landmarks(landmarks)
    pts = lm[list(MIDLINE_POINTS)]
    centre = pts.mean(axis=0)
    _, sv, vt = np.linalg.svd(pts - centre, full_matrices=False)
    if sv[0] <= 1e-9:
        raise ValueError("the midline landmarks coincide; cannot fit a facial midline")
    u = vt[0]
    if u[1] < 0:
        u = -u
    return centre, u / np.linalg.norm(u)


def reflection_matrix(point: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """3 x 3 homogeneous matrix of the reflection about a line (x, y coordinates).

    Parameters
    ----------
    point : (2,) array
        A point of the line.
    direction : (2,) array
        Direction of the line (normalised here).

    Returns
    -------
    (3, 3) ndarray of float64
        ``x' = R (x - p) + p`` with ``R = 2 u u^T - I``; its own inverse.
    """
    p = np.asarray(point, dtype=np.float64)
    u = np.asarray(direction, dtype=np.float64)
    u = u / np.linalg.norm(u)
    r = 2.0 * np.outer(u, u) - np.eye(2)
    m = np.eye(3)
    m[:2, :2] = r
    m[:2, 2] = p - r @ p
    return m


def _apply(m: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return xy @ m[:2, :2].T + m[:2, 2]


def mirror_landmarks(landmarks: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Reflect landmarks and re-index them left<->right.

    Parameters
    ----------
    landmarks : (68, 2) ndarray
        iBUG-68 landmarks, (x, y).
    matrix : (3, 3) ndarray
        Reflection from :func:`reflection_matrix`.

    Returns
    -------
    (68, 2) ndarray of float64
        Point ``i`` is where feature ``i`` appears in the reflected image (the reflection of the
        original point ``IBUG68_MIRROR[i]``).
    """
    lm = _check_landmarks(landmarks)
    return _apply(matrix, lm)[list(IBUG68_MIRROR)]


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama) mapping src -> dst, as a 3 x 3 matrix."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1
    rot = u @ d @ vt
    var = (a**2).sum() / len(src)
    scale = np.trace(np.diag(s) @ d) / var if var > 0 else 1.0
    m = np.eye(3)
    m[:2, :2] = scale * rot
    m[:2, 2] = mu_d - scale * rot @ mu_s
    return m


def _piecewise_affine(src: np.ndarray, dst: np.ndarray):
    """Piecewise-affine map src -> dst on the Delaunay triangulation of ``src``.

    Returns a callable on ``(n, 2)`` points; points outside the mesh map to NaN.
    """
    from scipy.spatial import Delaunay, QhullError

    try:
        tri = Delaunay(src)
    except QhullError as exc:
        raise ValueError(f"the piecewise-affine mesh cannot be built from the landmarks: {exc}") from None

    # Barycentric transform per triangle (same layout as Delaunay.transform, computed here with
    # the closed-form 2 x 2 inverse): lambda_01 = T[:2] @ (x - T[2]), lambda_2 = 1 - sum.
    simplices = tri.simplices
    v = src[simplices]  # (T, 3, 2)
    m = np.stack([v[:, 0] - v[:, 2], v[:, 1] - v[:, 2]], axis=-1)  # columns: edges to vertex 2
    det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    area_ok = np.abs(det) > 1e-9 * max(float(np.ptp(src)), 1.0) ** 2  # skip flat triangles
    m, det, v, simplices = m[area_ok], det[area_ok], v[area_ok], simplices[area_ok]
    transform = np.empty((len(m), 3, 2))
    transform[:, 0, 0] = m[:, 1, 1] / det
    transform[:, 0, 1] = -m[:, 0, 1] / det
    transform[:, 1, 0] = -m[:, 1, 0] / det
    transform[:, 1, 1] = m[:, 0, 0] / det
    transform[:, 2] = v[:, 2]

    def apply(points: np.ndarray, chunk: int = 8192) -> np.ndarray:
        # Point location by barycentric coordinates against every triangle (a face mesh has
        # about 100), which is faster and more robust than Delaunay.find_simplex here.
        pts = np.asarray(points, dtype=np.float64)
        out = np.full(pts.shape, np.nan)
        eps = 1e-9
        for i in range(0, len(pts), chunk):
            q = pts[i : i + chunk]
            dx = q[:, 0, None] - transform[None, :, 2, 0]  # (n, T)
            dy = q[:, 1, None] - transform[None, :, 2, 1]
            b0 = dx * transform[None, :, 0, 0] + dy * transform[None, :, 0, 1]
            b1 = dx * transform[None, :, 1, 0] + dy * transform[None, :, 1, 1]
            inside = (b0 >= -eps) & (b1 >= -eps) & (b0 + b1 <= 1.0 + eps)
            found = inside.any(axis=1)
            rows = np.nonzero(found)[0]
            t = inside.argmax(axis=1)[found]
            bb = np.column_stack([b0[rows, t], b1[rows, t]])
            bary = np.column_stack([bb, 1.0 - bb.sum(axis=1)])
            out[i : i + chunk][found] = np.einsum("ni,nij->nj", bary, dst[simplices[t]])
        return out

    return apply


def _tps_kernel(r2: np.ndarray) -> np.ndarray:
    """Thin-plate radial basis ``U = r^2 log r`` written with ``r^2`` (``U(0) = 0``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        u = 0.5 * r2 * np.log(r2)
    u[r2 == 0] = 0.0
    return u


def _thin_plate(src: np.ndarray, dst: np.ndarray):
    """Thin-plate spline interpolating src -> dst exactly; a callable on ``(n, 2)`` points.

    Coordinates are centred and scaled to unit RMS radius before solving, for conditioning.
    """
    centre = src.mean(axis=0)
    scale = float(np.sqrt(((src - centre) ** 2).sum(axis=1).mean())) or 1.0
    p = (src - centre) / scale
    n = len(p)
    k = _tps_kernel(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))
    poly = np.column_stack([np.ones(n), p])
    a = np.zeros((n + 3, n + 3))
    a[:n, :n] = k
    a[:n, n:] = poly
    a[n:, :n] = poly.T
    b = np.zeros((n + 3, 2))
    b[:n] = dst
    try:
        coef = np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        raise ValueError(
            "the thin-plate registration could not be estimated from the landmarks "
            "(duplicate or collinear control points)"
        ) from None
    if not np.all(np.isfinite(coef)):
        raise ValueError("the thin-plate registration could not be estimated from the landmarks")
    w, aff = coef[:n], coef[n:]

    def apply(points: np.ndarray, chunk: int = 65536) -> np.ndarray:
        q = (np.asarray(points, dtype=np.float64) - centre) / scale
        out = np.empty((len(q), 2))
        for i in range(0, len(q), chunk):
            qq = q[i : i + chunk]
            # dx^2 + dy^2 written out: the same sums as ``(d ** 2).sum(-1)``, bit for bit, without
            # NumPy's slow reduction over a trailing axis of length 2.
            dx = qq[:, 0, None] - p[None, :, 0]
            dy = qq[:, 1, None] - p[None, :, 1]
            r2 = dx * dx
            r2 += dy * dy
            out[i : i + chunk] = _tps_kernel(r2) @ w + aff[0] + qq @ aff[1:]
        return out

    return apply


def _estimate(kind: str, src: np.ndarray, dst: np.ndarray):
    if kind == "piecewise-affine":
        return _piecewise_affine(src, dst)
    return _thin_plate(src, dst)


def _border_anchors(shape: tuple[int, int], *, pad: float, per_side: int = 5) -> np.ndarray:
    """Anchor points on a rectangle ``pad`` pixels outside the image (x, y)."""
    h, w = shape
    x0, y0, x1, y1 = -pad, -pad, w - 1 + pad, h - 1 + pad
    xs = np.linspace(x0, x1, per_side)
    ys = np.linspace(y0, y1, per_side)
    pts = [(x, y0) for x in xs] + [(x, y1) for x in xs]
    pts += [(x0, y) for y in ys[1:-1]] + [(x1, y) for y in ys[1:-1]]
    return np.asarray(pts, dtype=np.float64)


def mirror_normalize(
    aligned_image: np.ndarray,
    landmarks: np.ndarray,
    *,
    warp: str = "thin-plate",
    control: str = "stable",
    grid_step: int = 4,
) -> MirrorResult:
    """Normalize a face by its registered mirror image.

    Parameters
    ----------
    aligned_image : (H, W, 3) ndarray of uint8
        Aligned face, 0..255.
    landmarks : (68, 2) ndarray
        Its dlib iBUG-68 landmarks, (x, y) pixels in the same frame.
    warp : {"thin-plate", "piecewise-affine"}
        Registration model. Thin-plate spline (default) is smooth everywhere and extrapolates
        affinely; piecewise-affine uses a Delaunay mesh of the control points plus border
        anchors placed by a global similarity fit.
    control : {"stable", "all"}
        Landmarks that drive the registration: ``"stable"`` (default,
        :data:`STABLE_CONTROL_POINTS`) or all 68 (for ablations only; see Notes).
    grid_step : int
        The warp is evaluated exactly every ``grid_step`` pixels and interpolated in between
        (the maps are smooth; 1 = exact everywhere).

    Returns
    -------
    MirrorResult
        The normalized (mirror) face, the midline, the registered landmarks and the residual.

    Raises
    ------
    ValueError
        Wrong image or landmark shape/dtype, unknown ``warp``/``control``, or a registration
        that cannot be estimated.

    Notes
    -----
    1. The midline is fitted to the nose bridge, nose tip, upper-lip centre and chin
       (:func:`fit_midline`), not taken as the image centre.
    2. The image is reflected about it; the reflected landmarks are re-indexed with the iBUG-68
       left<->right permutation (:data:`IBUG68_MIRROR`), so feature ``i`` of the mirror is
       compared with feature ``i`` of the face.
    3. A warp moves the mirror's control landmarks onto the face's. Only *stable* pairs are used
       (jaw, brows, nose bridge, eyes, mouth corners). If all 68 points drove the warp, the
       mirrored upper-lip and nostril landmarks would be pinned onto the cleft side's displaced
       landmarks, erasing exactly the geometric asymmetry the score must measure; with stable
       points only, pose, yaw and overall face shape are registered away while the nose base
       and upper lip of the healthy side are carried over the defect (and vice versa), so the
       difference concentrates at the defect and at its mirror position.
       The mouth corners are kept (a unilateral cleft displaces them far less than the upper
       lip and nostril) so that mouth opening or a smile is registered, not scored.
    4. A cleft can displace the nose tip (33) and upper-lip centre (51); the midline fit is
       dominated by the four nose-bridge points and the chin, and any remaining midline error
       is absorbed by the warp, because the self-paired bridge points are control points.
    Reflection and warp are composed into one resampling (bilinear, edges replicated, OpenCV
    ``remap``). The thin-plate spline is solved here on centred, unit-scaled coordinates
    (scikit-image's solver on raw 1024 px coordinates misses its own control points by about
    0.1 px and needs scikit-image >= 0.24).

    The method measures *asymmetry*: a bilateral cleft or any defect that is mirror-symmetric
    scores as normal. It is a baseline that runs without downloaded weights, not a
    substitute for the GAN normalizer.

    References
    ----------
    .. [1] Bookstein, F. L. Principal warps: thin-plate splines and the decomposition of
       deformations. IEEE TPAMI 11(6), 1989.
    """
    img = np.asarray(aligned_image)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"aligned_image must be an (H, W, 3) uint8 image, got shape {img.shape} dtype {img.dtype}")
    if warp not in WARPS:
        raise ValueError(f"warp must be one of {', '.join(WARPS)}, got {warp!r}")
    if control not in CONTROL_SETS:
        raise ValueError(f"control must be one of {', '.join(CONTROL_SETS)}, got {control!r}")
    if isinstance(grid_step, bool) or not isinstance(grid_step, (int, np.integer)) or grid_step < 1:
        raise ValueError(f"grid_step must be an integer >= 1, got {grid_step!r}")
    lm = _check_landmarks(landmarks)
    h, w = img.shape[:2]

    point, direction = fit_midline(lm)
    refl = reflection_matrix(point, direction)
    lm_m = mirror_landmarks(lm, refl)  # features in the reflected image
    ctrl = list(CONTROL_SETS[control])
    src, dst = lm[ctrl], lm_m[ctrl]  # output (face) frame -> reflected frame

    if warp == "thin-plate":
        inverse = _estimate("thin-plate", src, dst)
        forward = _estimate("thin-plate", dst, src)
    else:
        anchors = _border_anchors((h, w), pad=2.0 * grid_step + 2.0)
        g_inv = _similarity(src, dst)
        anchors_m = _apply(g_inv, anchors)
        inverse = _estimate("piecewise-affine", np.vstack([src, anchors]), np.vstack([dst, anchors_m]))
        forward = _estimate("piecewise-affine", np.vstack([dst, anchors_m]), np.vstack([src, anchors]))

    # Coordinates (x, y) in the source image for every output pixel: reflect(inverse(x)).
    step = int(grid_step)
    gy = np.arange(0, h + step - 1, step, dtype=np.float64)
    gx = np.arange(0, w + step - 1, step, dtype=np.float64)
    xx, yy = np.meshgrid(gx, gy)
    coarse = np.asarray(inverse(np.column_stack([xx.ravel(), yy.ravel()])), dtype=np.float64)
    if warp == "piecewise-affine":
        bad = ~np.all(np.isfinite(coarse), axis=1)
        if np.any(bad):  # outside the mesh (only possible at the far border): global map
            coarse[bad] = _apply(g_inv, np.column_stack([xx.ravel(), yy.ravel()])[bad])
    coarse = _apply(refl, coarse).reshape(len(gy), len(gx), 2).astype(np.float32)
    import cv2

    if step > 1:  # bilinear upsampling of the smooth coordinate field
        fy = (np.arange(h, dtype=np.float32) / step)[:, None].repeat(w, axis=1)
        fx = (np.arange(w, dtype=np.float32) / step)[None, :].repeat(h, axis=0)
        coords = cv2.remap(coarse, fx, fy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    else:
        coords = np.ascontiguousarray(coarse[:h, :w])
    out = cv2.remap(
        np.ascontiguousarray(img),
        np.ascontiguousarray(coords[..., 0]),
        np.ascontiguousarray(coords[..., 1]),
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )

    registered = np.asarray(forward(lm_m), dtype=np.float64)
    if warp == "piecewise-affine":
        off = ~np.all(np.isfinite(registered), axis=1)
        if np.any(off):
            registered[off] = _apply(np.linalg.inv(g_inv), lm_m[off])
    residual = float(np.sqrt(np.mean(np.sum((registered - lm) ** 2, axis=1))))
    return MirrorResult(
        image=out,
        midline_point=point,
        midline_direction=direction,
        registered_landmarks=registered,
        residual_landmark_error=residual,
        warp=warp,
        control_points=tuple(ctrl),
    )


def landmark_residual(landmarks: np.ndarray, *, control: str = "stable") -> float:
    """RMS landmark residual of the thin-plate mirror registration, without warping an image.

    The same number as :attr:`MirrorResult.residual_landmark_error` of :func:`mirror_normalize`
    with ``warp="thin-plate"``: pixels, about 0 for a symmetric face.
    """
    lm = _check_landmarks(landmarks)
    point, direction = fit_midline(lm)
    lm_m = mirror_landmarks(lm, reflection_matrix(point, direction))
    ctrl = list(CONTROL_SETS[control])
    registered = np.asarray(_estimate("thin-plate", lm_m[ctrl], lm[ctrl])(lm_m), dtype=np.float64)
    return float(np.sqrt(np.mean(np.sum((registered - lm) ** 2, axis=1))))


#: Largest landmark residual of the mirror registration, in eye distances, that still counts as a
#: face seen from the front. Frontal sample photos give 0.004-0.03; a face in near profile gave
#: 16 (its mirror image cannot be registered, and the "normalized" face is a flat colour).
MAX_MIRROR_RESIDUAL = 1.0
LANDMARK_ASYMMETRY_DEFINITION = (
    "RMS distance (pixels, aligned size) between the 68 landmarks and their mirrored, "
    "registered positions; about 0 for a symmetric face"
)


class MirrorNormalizer:
    """Mirror image of each face, warped back onto it by mirrored landmark pairs (CPU, seconds).

    A face turned so far that its mirror image cannot be registered (landmark residual above
    :data:`MAX_MIRROR_RESIDUAL` eye distances) gets an error instead of a meaningless score.
    """

    name = "asymmetry"
    batch_size = 1
    resolution: int | None = None

    def describe(self) -> dict[str, Any]:
        return {}

    def cached(self, face: AlignedFace) -> Normalization | None:
        return None

    def plan(self, n_faces: int) -> None:
        pass

    def close(self) -> None:
        pass

    def normalize(self, faces: Sequence[AlignedFace]) -> list[Normalization]:
        return [self._one(face) for face in faces]

    def _one(self, face: AlignedFace) -> Normalization:
        from cleftscore.errors import CleftscoreError
        from cleftscore.face.symmetric import symmetric_landmarks
        from cleftscore.normalize.mirror import mirror_normalize

        t0 = time.perf_counter()
        given = np.asarray(face.landmarks, dtype=np.float64)
        try:
            # The landmarks the score reads too: a mirror-flipped photo is registered as its original.
            # Points a user corrected by hand are the landmarks: placing them again would undo the correction.
            lm = given if getattr(face, "corrected", ()) else symmetric_landmarks(face.image, given=given)
            mirrored = mirror_normalize(face.image, lm)
            # The frontal check and the landmark measure keep the detected landmarks: the symmetric
            # ones, placed from a fixed box, can look frontal on a face in profile.
            residual = landmark_residual(given) if lm is not given else mirrored.residual_landmark_error
        except (CleftscoreError, ValueError) as exc:
            return Normalization(
                image=None, error=" ".join(f"the mirror image could not be registered ({exc})".split())
            )
        eyes = float(np.linalg.norm(given[36:42].mean(axis=0) - given[42:48].mean(axis=0)))
        ratio = residual / max(eyes, 1e-6)
        if not ratio <= MAX_MIRROR_RESIDUAL:
            return Normalization(
                image=None,
                error="the face is turned too far from the front for the asymmetry method "
                f"(its landmarks lie {ratio:.1f} eye distances from their mirror image); use a frontal photo",
            )
        measures = {"landmark_asymmetry_px": Measure(residual, LANDMARK_ASYMMETRY_DEFINITION)}
        return Normalization(image=mirrored.image, measures=measures, timings={"normalize_s": time.perf_counter() - t0})
