"""The ``asymmetry`` normalizer: each face against its own registered mirror image.

The registration itself is :func:`cleftscore.mirror.mirror_normalize`; this wrapper adds what
makes a mirror image usable as the normal face: the face must be seen from the front.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cleftscore.normalize import Measure, Normalization

if TYPE_CHECKING:
    from cleftscore.face.align import AlignedFace

__all__ = [
    "LANDMARK_ASYMMETRY_DEFINITION",
    "MAX_MIRROR_RESIDUAL",
    "MirrorNormalizer",
]

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

    def cached(self, face: "AlignedFace") -> Normalization | None:
        return None

    def plan(self, n_faces: int) -> None:
        pass

    def close(self) -> None:
        pass

    def normalize(self, faces: Sequence["AlignedFace"]) -> list[Normalization]:
        return [self._one(face) for face in faces]

    def _one(self, face: "AlignedFace") -> Normalization:
        from cleftscore.errors import CleftscoreError
        from cleftscore.mirror import mirror_normalize

        t0 = time.perf_counter()
        lm = np.asarray(face.landmarks, dtype=np.float64)
        try:
            mirrored = mirror_normalize(face.image, lm)
        except (CleftscoreError, ValueError) as exc:
            return Normalization(image=None, error=" ".join(f"the mirror image could not be registered ({exc})".split()))
        eyes = float(np.linalg.norm(lm[36:42].mean(axis=0) - lm[42:48].mean(axis=0)))
        ratio = mirrored.residual_landmark_error / max(eyes, 1e-6)
        if not ratio <= MAX_MIRROR_RESIDUAL:
            return Normalization(
                image=None,
                error="the face is turned too far from the front for the asymmetry method "
                f"(its landmarks lie {ratio:.1f} eye distances from their mirror image); use a frontal photo",
            )
        measures = {"landmark_asymmetry_px": Measure(mirrored.residual_landmark_error, LANDMARK_ASYMMETRY_DEFINITION)}
        return Normalization(image=mirrored.image, measures=measures, timings={"normalize_s": time.perf_counter() - t0})

