"""Landmarks of an aligned face that a mirror flip of the photo cannot change.

The landmark model is not mirror-symmetric: on a flipped photo it places the points a little
differently, and a symmetry score read through those points moved by up to a quarter of the
cleft-vs-normal gap under a mirror flip. :func:`symmetric_landmarks` places the 68 points on the
aligned face and on its mirror image, both from one fixed box that is its own mirror image in
the aligned frame, flips the second set back (re-indexed left <-> right) and averages the two.
The result depends on the aligned image only, and flipping the image flips the points exactly:
the face and its mirror image are measured alike by construction.

:func:`refine_landmarks` does the same on the photo, before the final alignment: the face is
aligned with the detected points, the points are placed again on the aligned face as above and
mapped back onto the photo, twice. The detector's box (which moves with the crop, the size and
the light of the photo) then no longer decides where the points, and so the aligned square, land.
"""

from __future__ import annotations

import numpy as np

from cleftscore.face.align import ffhq_quad, transform_points
from cleftscore.face.detect import FaceBox
from cleftscore.face.landmarks import predict_landmarks

__all__ = ["ALIGNED_BOX", "BOX_JITTER", "IBUG68_MIRROR", "MAX_SHIFT", "refine_landmarks", "symmetric_landmarks"]

#: The face box in the FFHQ-aligned frame, as fractions of its side (left, top, right, bottom):
#: the median HOG box on aligned development faces (0.22, 0.28, 0.74, 0.86) made symmetric about
#: the vertical centre line, so the box is its own mirror image to the pixel.
ALIGNED_BOX = (0.225, 0.28, 0.775, 0.86)

#: Mean distance (intercanthal distances) beyond which the symmetric landmarks are not trusted:
#: on the development faces they lie 0.01-0.04 from the detected ones; 0.26 on one photo whose
#: face the fixed box does not fit, and on a face in profile.
MAX_SHIFT = 0.15

#: The boxes the points are placed from, as (scale of :data:`ALIGNED_BOX`, downward shift as a
#: fraction of the side): each is its own mirror image. The regression trees of the landmark
#: model compare pixel pairs with thresholds, so a grayscale or JPEG copy of the same aligned
#: face moved single placements by 0.013 intercanthal distances (median, 0.05 at most) and the
#: score with them; the mean over these nine boxes moved 0.0065 (0.028).
BOX_JITTER: tuple[tuple[float, float], ...] = tuple((k, d) for k in (0.95, 1.0, 1.05) for d in (-0.02, 0.0, 0.02))


def _mirror_permutation() -> tuple[int, ...]:
    pairs = [(i, 16 - i) for i in range(8)]  # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]  # brows
    pairs += [(31, 35), (32, 34)]  # nose base
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips
    pairs += [(60, 64), (61, 63), (65, 67)]  # inner lips
    perm = list(range(68))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


#: ``IBUG68_MIRROR[i]`` is the iBUG-68 index of the point that plays the role of ``i`` after a
#: left-right reflection (jaw 0<->16, brows 17<->26, eyes 36<->45, mouth 48<->54, ...; the
#: midline points 8, 27-30, 33, 51, 57, 62, 66 map to themselves).
IBUG68_MIRROR: tuple[int, ...] = _mirror_permutation()


def symmetric_landmarks(aligned_image: np.ndarray, *, given: np.ndarray | None = None,
                        max_shift: float = MAX_SHIFT, boxes: tuple[tuple[float, float], ...] = BOX_JITTER) -> np.ndarray:  # fmt: skip
    """The 68 landmarks of an aligned face, the same for the face and its mirror image.

    Parameters
    ----------
    aligned_image : (S, S, 3) ndarray of uint8
        An FFHQ-aligned face (:func:`cleftscore.face.align.align_face`), RGB 0..255.
    given : (68, 2) ndarray, optional
        The landmarks found on the photo, in the aligned frame. When the symmetric ones lie
        farther from them than ``max_shift`` intercanthal distances on average (the fixed box
        did not fit this face), ``given`` itself is returned (the same object).
    max_shift : float
        See ``given``.
    boxes : tuple of (float, float)
        Boxes the points are placed from (:data:`BOX_JITTER`); ``((1.0, 0.0),)`` places them from
        :data:`ALIGNED_BOX` alone.

    Returns
    -------
    (68, 2) ndarray of float64
        ``(p(A) + M(p(flip A))) / 2``, averaged over ``boxes``: ``p`` places the points in a box, ``M``
        flips x back (``x -> S - 1 - x``, pixel centres at integers) and re-indexes left <->
        right. ``symmetric_landmarks(flip A)`` is ``M(symmetric_landmarks(A))`` exactly.

    Raises
    ------
    ValueError
        An image that is not square (S, S, 3) uint8.
    """
    img = np.asarray(aligned_image)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8 or img.shape[0] != img.shape[1]:
        raise ValueError(
            f"aligned_image must be a square (S, S, 3) uint8 face, got shape {img.shape} dtype {img.dtype}"
        )
    if not boxes:
        raise ValueError("boxes must name at least one box")
    s = img.shape[0]
    x0, y0, x1, y1 = ALIGNED_BOX
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    mirrored = np.ascontiguousarray(img[:, ::-1])
    out = np.zeros((68, 2))
    for k, d in boxes:
        box = FaceBox(left=(cx - k * w / 2) * s, top=(cy + d - k * h / 2) * s, right=(cx + k * w / 2) * s,
                      bottom=(cy + d + k * h / 2) * s, score=0.0, detector="hog")  # fmt: skip
        back = predict_landmarks(mirrored, box)[list(IBUG68_MIRROR)]
        back[:, 0] = (s - 1) - back[:, 0]
        out += predict_landmarks(img, box) + back
    out /= 2 * len(boxes)
    if given is not None:
        g = np.asarray(given, dtype=np.float64)
        icd = max(float(np.linalg.norm(g[42] - g[39])), 1.0)
        if float(np.linalg.norm(out - g, axis=1).mean()) > max_shift * icd:
            return given
    return out


def _quick_square(image: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The FFHQ square of the landmarks resampled to ``size`` (one affine warp, edges replicated).

    Only for placing landmarks: FFHQ's padding and blur of the border do not matter there, and
    the full alignment costs about a second on a large photo. Returns the image and the 3x3
    matrix from its pixels to the photo's.
    """
    import cv2

    quad, qsize = ffhq_quad(landmarks)
    img = np.ascontiguousarray(image)
    shrink = int(qsize / size / 2)  # area-average first when far larger: no aliasing
    pre = np.eye(3)
    if shrink >= 2:
        h, w = img.shape[:2]
        img = cv2.resize(img, (max(w // shrink, 1), max(h // shrink, 1)), interpolation=cv2.INTER_AREA)
        pre = np.array([[shrink, 0.0, 0.5 * (shrink - 1)], [0.0, shrink, 0.5 * (shrink - 1)], [0.0, 0.0, 1.0]])
    nw, sw, _, ne = quad
    ax, ay = (ne - nw) / size, (sw - nw) / size
    # Pixel centres at integers in both frames; the quad's corners are the outer pixel edges.
    to_photo = np.array([[ax[0], ay[0], nw[0] + 0.5 * (ax[0] + ay[0]) - 0.5],
                         [ax[1], ay[1], nw[1] + 0.5 * (ax[1] + ay[1]) - 0.5], [0.0, 0.0, 1.0]])  # fmt: skip
    to_src = np.linalg.inv(pre) @ to_photo
    out = cv2.warpAffine(img, to_src[:2], (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    return np.ascontiguousarray(out), to_photo


def refine_landmarks(image: np.ndarray, landmarks: np.ndarray, *, rounds: int = 2, work_size: int = 512,
                     max_shift: float = MAX_SHIFT) -> np.ndarray:  # fmt: skip
    """The photo's landmarks placed again from the aligned face, so that the detector's box does not matter.

    Parameters
    ----------
    image : (H, W, 3) ndarray of uint8
        The photo, RGB.
    landmarks : (68, 2) ndarray
        The points found on it (the detector's box and the landmark model), photo pixels.
    rounds : int
        Times the face is aligned (at ``work_size``) and its :func:`symmetric_landmarks` mapped
        back onto the photo; each round starts from the last one's points.
    work_size : int
        Side of the aligned face the points are placed on (a power of two).
    max_shift : float
        When a round's points lie farther than this many intercanthal distances from the
        detected ones on average (the fixed box did not fit, a face in profile), the detected
        points are returned unchanged.

    Returns
    -------
    (68, 2) ndarray of float64
        Photo pixels. On the development photos and their changed copies (grayscale, JPEG,
        crops, sizes, turns, a mirror flip), a face is aligned the same way from its refined
        points far more often than from the detected ones (docs/asymmetry_score.md).
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}")
    given = np.asarray(landmarks, dtype=np.float64)
    icd = max(float(np.linalg.norm(given[42] - given[39])), 1.0)
    lm = given
    for _ in range(rounds):
        face, to_photo = _quick_square(image, lm, work_size)
        lm = transform_points(to_photo, symmetric_landmarks(face))
        if float(np.linalg.norm(lm - given, axis=1).mean()) > max_shift * icd:
            return given
    return lm
