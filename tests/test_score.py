"""Tests of cleftscore.score.paper: ROI score S, PhotoScore, calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cleftscore.heatmap import DifferenceSettings
from cleftscore.score.calibration import Calibration, fit_calibration, severity_0_100
from cleftscore.score.paper import SUM_EPSILON, PhotoScore, ScoreSettings, roi_score, score_photo


def test_roi_score_hand_computed():
    d = np.zeros((4, 4, 3))
    d[1, 1] = (9.0, 4.0, 3.0)  # sum 16 inside
    d[3, 3] = (1000.0, 0, 0)  # outside the ROI: ignored
    mask = np.zeros((4, 4), bool)
    mask[0:2, 0:2] = True  # N = 4
    # S = -log(sqrt(16) / 4) = -log(1) = 0
    assert roi_score(d, mask) == pytest.approx(0.0, abs=1e-12)
    d[1, 1] = (64.0, 0, 0)  # sqrt(64)/4 = 2
    assert roi_score(d, mask) == pytest.approx(-math.log(2.0))
    # soft mask: weights 0.5 on 2 pixels -> N = 1, sum = 0.5 * 64
    soft = np.zeros((4, 4))
    soft[1, 1] = soft[0, 0] = 0.5
    assert roi_score(d, soft) == pytest.approx(-math.log(math.sqrt(32.0) / 1.0))
    # 2-D map works like one channel
    assert roi_score(d.sum(-1), mask) == pytest.approx(-math.log(2.0))


def test_identical_images_give_finite_capped_score():
    d = np.zeros((3, 3, 3))
    s = roi_score(d, np.ones((3, 3), bool))
    assert math.isfinite(s)
    assert s == pytest.approx(-math.log(math.sqrt(SUM_EPSILON) / 9))


def test_roi_score_errors():
    d = np.ones((4, 4, 3))
    with pytest.raises(ValueError, match="ROI mask is empty"):
        roi_score(d, np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match=r"mask must have shape \(4, 4\).*got \(5, 4\)"):
        roi_score(d, np.ones((5, 4), bool))
    with pytest.raises(ValueError, match=r"mask values must be in \[0, 1\]"):
        roi_score(d, np.full((4, 4), 2.0))
    with pytest.raises(ValueError, match="must be >= 0"):
        roi_score(-d, np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="roi must be one of mouth, face, full"):
        ScoreSettings(roi="eyes")


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float64, (5, 5, 3), elements=st.floats(0, 1e4)),
    arrays(np.float64, (5, 5, 3), elements=st.floats(0, 1e4)),
    arrays(np.bool_, (5, 5)),
)
def test_larger_difference_inside_roi_never_raises_score(d, extra, mask):
    mask[2, 2] = True
    bigger = d + extra * mask[..., None]
    assert roi_score(bigger, mask) <= roi_score(d, mask) + 1e-12
    # changes outside the ROI do not matter at all
    outside = d + extra * (~mask)[..., None]
    assert roi_score(outside, mask) == pytest.approx(roi_score(d, mask), abs=1e-12)


def test_score_photo_and_photoscore_record():
    a = np.zeros((12, 12, 3), np.uint8)
    b = a.copy()
    b[2:7, 2:7] = 30  # 5x5 blob survives 3x3 erosion as a 3x3 core
    mask = np.zeros((12, 12), bool)
    mask[0:8, 0:8] = True
    st_ = ScoreSettings(roi="mouth", difference=DifferenceSettings(colorspace="rgb"))
    res = score_photo(a, b, mask, settings=st_)
    assert isinstance(res, PhotoScore)
    assert res.heatmap.shape == (12, 12) and res.heatmap.dtype == np.float32
    assert res.roi_pixels == 64.0
    expected = -math.log(math.sqrt(9 * 3 * 900.0) / 64)
    assert res.score == pytest.approx(expected, rel=1e-6)
    assert isinstance(res.score, float)
    assert not res.heatmap.flags.writeable
    assert st_.to_dict() == {
        "metric": "pse",
        "colorspace": "rgb",
        "erosion": 3,
        "roi": "mouth",
        "mask_file": None,
        "asymmetry_score": "face-referenced",
        "heatmap_max": None,
    }
    # same difference inside vs. a bigger one: bigger lowers the score
    c = a.copy()
    c[2:7, 2:7] = 90
    assert score_photo(a, c, mask, settings=st_).score < res.score


def test_photoscore_validation():
    st_ = ScoreSettings()
    ok = PhotoScore(score=1.0, heatmap=np.zeros((1, 4, 5)), roi_pixels=3, settings=st_)
    assert ok.heatmap.shape == (4, 5) and ok.heatmap.dtype == np.float32
    with pytest.raises(ValueError, match=r"heatmap must be \[H, W\].*got shape \(2, 4, 5\)"):
        PhotoScore(score=1.0, heatmap=np.zeros((2, 4, 5)), roi_pixels=3, settings=st_)
    with pytest.raises(ValueError, match="heatmap must be >= 0"):
        PhotoScore(score=1.0, heatmap=-np.ones((4, 5)), roi_pixels=3, settings=st_)
    with pytest.raises(ValueError, match="score must be finite"):
        PhotoScore(score=math.inf, heatmap=np.zeros((4, 5)), roi_pixels=3, settings=st_)
    with pytest.raises(ValueError, match="roi_pixels must be > 0"):
        PhotoScore(score=1.0, heatmap=np.zeros((4, 5)), roi_pixels=0, settings=st_)


def test_calibration_fit_apply_and_severity():
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    ratings = 2.0 * scores - 1.0  # 1, 3, 5, 7 exactly
    cal = fit_calibration(scores, ratings)
    assert cal.slope == pytest.approx(2.0) and cal.intercept == pytest.approx(-1.0)
    assert cal.r == pytest.approx(1.0) and cal.n == 4
    assert cal.apply(2.5) == pytest.approx(4.0)
    assert cal.apply(100.0) == 7.0 and cal.apply(-100.0) == 1.0  # clipped
    assert severity_0_100(4.0, cal) == pytest.approx(0.0)  # rating 7 = normal
    assert severity_0_100(1.0, cal) == pytest.approx(100.0)
    assert severity_0_100(2.5, cal) == pytest.approx(50.0)
    flipped = Calibration(slope=2.0, intercept=-1.0, r=1.0, n=4, higher_is_normal=False)
    assert severity_0_100(4.0, flipped) == pytest.approx(100.0)


def test_calibration_errors():
    with pytest.raises(ValueError, match="at least 3 rated photos, got 2"):
        fit_calibration([1, 2], [1, 2])
    with pytest.raises(ValueError, match="3 scores but 2 ratings"):
        fit_calibration([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="on the scale 1..7"):
        fit_calibration([1, 2, 3], [1, 2, 9])
    with pytest.raises(ValueError, match="all scores are equal"):
        fit_calibration([1, 1, 1], [1, 2, 3])


def test_roi_score_over_the_masks_box_equals_the_sum_over_the_whole_map() -> None:
    # The sum runs over the rows and columns the mask reaches; the rest adds exact zeros.
    rng = np.random.default_rng(7)
    d = rng.gamma(1.0, 3.0, (64, 48, 3)).astype(np.float32)
    mask = np.zeros((64, 48))
    mask[50:60, 3:9] = rng.uniform(size=(10, 6))
    mask[61, 40] = 1.0
    total = float((mask[..., None] * d.astype(np.float64)).sum())
    assert roi_score(d, mask) == pytest.approx(-math.log(math.sqrt(total) / mask.sum()), rel=1e-12)
    with pytest.raises(ValueError, match="NaN"):
        roi_score(np.where(np.arange(48) == 47, np.nan, d[..., 0]), mask)
    with pytest.raises(ValueError, match=">= 0"):
        roi_score(-d, mask)
