"""The asymmetry score does not see a mirror flip or grayscale (issue 25), checked on a real aligned face."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cleftscore.face import prepare_photo
from cleftscore.face.symmetric import IBUG68_MIRROR, symmetric_landmarks
from cleftscore.normalize.mirror import IBUG68_MIRROR as MIRROR_PERMUTATION
from cleftscore.normalize.mirror import MirrorNormalizer, mirror_normalize
from cleftscore.score.asymmetry import YCBCR_SETTINGS, AsymmetrySettings, asymmetry_score

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def face(example_photo: Path) -> np.ndarray:
    return prepare_photo(example_photo, size=512).aligned.image


def _score(img: np.ndarray, settings: AsymmetrySettings) -> float:
    lm = symmetric_landmarks(img)
    return asymmetry_score(img, lm, mirror=mirror_normalize(img, lm).image, settings=settings).score


def test_symmetric_landmarks_flip_exactly(face: np.ndarray) -> None:
    assert IBUG68_MIRROR == MIRROR_PERMUTATION
    lm = symmetric_landmarks(face)
    flipped = symmetric_landmarks(np.ascontiguousarray(face[:, ::-1]))
    back = flipped[list(IBUG68_MIRROR)]
    back[:, 0] = face.shape[1] - 1 - back[:, 0]
    np.testing.assert_allclose(back, lm, atol=1e-9)


def test_score_of_a_flipped_face_is_its_own(face: np.ndarray) -> None:
    st = AsymmetrySettings()
    a = _score(face, st)
    b = _score(np.ascontiguousarray(face[:, ::-1]), st)
    # 0.011 on this face (0.01 of the cleft-vs-normal gap): the mirror registration's rounding.
    assert abs(a - b) < 0.02, (a, b)


def test_grayscale_moves_the_score_little_and_the_old_score_much(face: np.ndarray) -> None:
    gray = np.repeat(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    new = abs(_score(gray, AsymmetrySettings()) - _score(face, AsymmetrySettings()))
    old_st = AsymmetrySettings(**YCBCR_SETTINGS)
    old = abs(_score(gray, old_st) - _score(face, old_st))
    # 0.11 and 1.78 on this face: 0.032 of the cleft-vs-normal gap of bench/results/robustness_round3.json
    # (3.50 score units); 0.08 and 1.86 (0.028 of the gap then, 2.88) before the third round's smoothing.
    gap = 3.50
    assert new < 0.04 * gap and old > 10 * new, (new, old)


def test_the_normalizer_registers_with_the_symmetric_landmarks(face: np.ndarray, example_photo: Path) -> None:
    aligned = prepare_photo(example_photo, size=512).aligned
    (norm,) = MirrorNormalizer().normalize([aligned])
    assert norm.ok
    expected = mirror_normalize(aligned.image, symmetric_landmarks(aligned.image)).image
    assert np.array_equal(norm.image, expected)


def test_symmetric_landmarks_fall_back_to_the_given_ones_when_the_box_misses(face: np.ndarray) -> None:
    lm = symmetric_landmarks(face)
    np.testing.assert_allclose(symmetric_landmarks(face, given=lm + 1.0), lm)  # close: the symmetric ones
    far = lm + np.array([60.0, 0.0])  # points a face width away from where the box finds the face
    assert symmetric_landmarks(face, given=far) is far


def test_landmark_residual_is_the_registrations(face: np.ndarray) -> None:
    from cleftscore.normalize.mirror import landmark_residual

    lm = symmetric_landmarks(face)
    assert landmark_residual(lm) == mirror_normalize(face, lm).residual_landmark_error


def test_nine_boxes_place_the_points_of_a_saved_copy_steadier_than_one(face: np.ndarray) -> None:
    from cleftscore.benchmarks.robustness import make_variant

    one = ((1.0, 0.0),)
    icd = float(np.linalg.norm(symmetric_landmarks(face)[42] - symmetric_landmarks(face)[39]))
    for variant in ("grayscale", "jpeg_q30", "noise"):
        copy = make_variant(face, variant)
        single = np.linalg.norm(symmetric_landmarks(face, boxes=one) - symmetric_landmarks(copy, boxes=one), axis=1)
        nine = np.linalg.norm(symmetric_landmarks(face) - symmetric_landmarks(copy), axis=1)
        # 0.0065 -> 0.0039, 0.0065 -> 0.0047 and 0.0091 -> 0.0043 intercanthal distances here.
        assert nine.mean() < 0.8 * single.mean() and nine.mean() < 0.006 * icd, (variant, nine.mean() / icd)
