"""Landmarks of an aligned face that a mirror flip of the photo cannot change.

The landmark model is not mirror-symmetric: on a flipped photo it places the points a little
differently, and a symmetry score read through those points moved by up to a quarter of the
cleft-vs-normal gap under a mirror flip. :func:`symmetric_landmarks` places the 68 points on the
aligned face and on its mirror image, both from one fixed box that is its own mirror image in
the aligned frame, flips the second set back (re-indexed left <-> right) and averages the two.
The result depends on the aligned image only, and flipping the image flips the points exactly:
the face and its mirror image are measured alike by construction.
"""

from __future__ import annotations

import numpy as np

from cleftscore.face.detect import FaceBox
from cleftscore.face.landmarks import predict_landmarks

__all__ = ["ALIGNED_BOX", "IBUG68_MIRROR", "MAX_SHIFT", "symmetric_landmarks"]

#: The face box in the FFHQ-aligned frame, as fractions of its side (left, top, right, bottom):
#: the median HOG box on aligned development faces (0.22, 0.28, 0.74, 0.86) made symmetric about
#: the vertical centre line, so the box is its own mirror image to the pixel.
ALIGNED_BOX = (0.225, 0.28, 0.775, 0.86)

#: Mean distance (intercanthal distances) beyond which the symmetric landmarks are not trusted:
#: on the development faces they lie 0.01-0.04 from the detected ones; 0.26 on one photo whose
#: face the fixed box does not fit, and on a face in profile.
MAX_SHIFT = 0.15


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
                        max_shift: float = MAX_SHIFT) -> np.ndarray:  # fmt: skip
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

    Returns
    -------
    (68, 2) ndarray of float64
        ``(p(A) + M(p(flip A))) / 2``: ``p`` places the points in :data:`ALIGNED_BOX`, ``M``
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
    s = img.shape[0]
    x0, y0, x1, y1 = (v * s for v in ALIGNED_BOX)
    box = FaceBox(left=x0, top=y0, right=x1, bottom=y1, score=0.0, detector="hog")
    direct = predict_landmarks(img, box)
    flipped = predict_landmarks(np.ascontiguousarray(img[:, ::-1]), box)
    back = flipped[list(IBUG68_MIRROR)].copy()
    back[:, 0] = (s - 1) - back[:, 0]
    out = (direct + back) / 2.0
    if given is not None:
        g = np.asarray(given, dtype=np.float64)
        icd = max(float(np.linalg.norm(g[42] - g[39])), 1.0)
        if float(np.linalg.norm(out - g, axis=1).mean()) > max_shift * icd:
            return given
    return out
