"""Inter- and intra-rater reliability against published examples (evaluate/reliability.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cleftscore.evaluate.reliability import (
    RatingMatrix,
    correlation_ceiling,
    icc,
    ordinal_alpha,
    photo_means,
    rater_agreement,
    rating_matrix,
    repeat_kappa,
)

# Shrout and Fleiss (1979), Table 2: 6 targets (rows) rated by 4 judges (columns).
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], dtype=np.float64
)
# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: 4 observers x 12
# units with missing values; ordinal alpha = 0.815.
KRIPPENDORFF_C = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, np.nan, np.nan, np.nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, np.nan, 3],
        [np.nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, np.nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, np.nan],
    ]
)


def _matrix(values: np.ndarray) -> RatingMatrix:
    return RatingMatrix(
        tuple(f"R{i}" for i in range(values.shape[0])), tuple(f"p{j}" for j in range(values.shape[1])), values
    )


def test_shrout_fleiss_table_is_reproduced() -> None:
    result = icc(_matrix(SHROUT_FLEISS.T.copy()))
    # The published values, to the two decimals of the paper's Table 4.
    assert round(result.icc1_1.value, 2) == 0.17
    assert round(result.icc2_1.value, 2) == 0.29
    assert round(result.icc3_1.value, 2) == 0.71
    assert round(result.icc2_k.value, 2) == 0.62
    assert round(result.icc3_k.value, 2) == 0.91
    assert (result.n_raters, result.n_photos) == (4, 6)
    for e in (result.icc2_1, result.icc2_k):
        assert e.ci_low < e.value < e.ci_high


def test_krippendorff_ordinal_example_is_reproduced() -> None:
    assert round(ordinal_alpha(_matrix(KRIPPENDORFF_C), scale=[1, 2, 3, 4, 5]), 3) == 0.815
    with pytest.raises(ValueError, match="not on the scale"):
        ordinal_alpha(_matrix(KRIPPENDORFF_C), scale=[1, 2, 3, 4])


def test_icc_refuses_missing_ratings_and_too_little_data() -> None:
    with pytest.raises(ValueError, match="every rater to rate every photo"):
        icc(_matrix(KRIPPENDORFF_C))
    with pytest.raises(ValueError, match="at least 2 raters and 3 photos"):
        icc(_matrix(np.array([[1.0, 2.0, 3.0]])))
    m = _matrix(KRIPPENDORFF_C).complete_raters()
    assert m.raters == () and m.values.shape == (0, 12)


def _kappa_by_definition(a: list[int], b: list[int], k: int) -> float:
    """Quadratic-weighted kappa written out from Cohen (1968), for the test only."""
    obs = np.zeros((k, k))
    for x, y in zip(a, b, strict=True):
        obs[x - 1, y - 1] += 1
    obs /= obs.sum()
    exp = np.outer(obs.sum(axis=1), obs.sum(axis=0))
    w = np.array([[(i - j) ** 2 for j in range(k)] for i in range(k)], dtype=float)
    return 1.0 - (w * obs).sum() / (w * exp).sum()


def test_repeat_kappa_matches_the_definition() -> None:
    a, b = [1, 2, 3, 4, 5, 6, 7, 3], [1, 3, 3, 4, 4, 7, 7, 2]
    assert repeat_kappa(a, b, scale=range(1, 8)) == pytest.approx(_kappa_by_definition(a, b, 7))
    assert repeat_kappa(a, a, scale=range(1, 8)) == pytest.approx(1.0)
    assert math.isnan(repeat_kappa([4], [4], scale=range(1, 8)))
    with pytest.raises(ValueError, match="not on the scale"):
        repeat_kappa([0, 1], [1, 1], scale=range(1, 8))


def test_photo_means_and_far_raters() -> None:
    m = rating_matrix(
        [
            (r, p, v)
            for r, vals in (
                ("A", (1, 2, 5, 7)),
                ("B", (2, 2, 6, 7)),
                ("C", (1, 3, 5, 6)),
                ("D", (2, 3, 6, 7)),
                ("E", (1, 2, 4, 6)),
                ("X", (7, 6, 2, 1)),
            )
            for p, v in zip(("p1", "p2", "p3", "p4"), vals, strict=True)
        ]  # fmt: skip
    )
    means = photo_means(m)
    assert [pm.n_raters for pm in means] == [6, 6, 6, 6]
    assert means[0].mean == pytest.approx(14 / 6)
    assert means[0].ci_low < means[0].mean < means[0].ci_high
    agreement = {a.rater: a for a in rater_agreement(m)}
    assert [k for k, a in agreement.items() if a.far] == ["X"]
    assert agreement["X"].r < 0 < agreement["A"].r
    with pytest.raises(ValueError, match="twice"):
        rating_matrix([("A", "p1", 1), ("A", "p1", 2)])


def test_ceiling() -> None:
    assert correlation_ceiling(0.81) == pytest.approx(0.9)
    assert math.isnan(correlation_ceiling(-0.1))
