"""The localisation measures of the heat map: pointing game and pixel AUROC, and the face-only region."""

from __future__ import annotations

import numpy as np
import pytest

from cleftscore.benchmarks.heatmap_localisation import pixel_auroc, pointing_hit
from cleftscore.heatmap import face_region, smooth


def _landmarks() -> np.ndarray:
    """A frontal iBUG-68 layout in a 256-pixel frame: jaw, brows, nose, eyes, mouth."""
    jaw = np.stack([np.linspace(40, 216, 17), 120 + 90 * np.sin(np.linspace(0, np.pi, 17))], axis=1)
    brows = np.stack([np.r_[np.linspace(60, 116, 5), np.linspace(140, 196, 5)], np.full(10, 90.0)], axis=1)
    nose = np.stack(
        [np.r_[np.full(4, 128.0), np.linspace(112, 144, 5)], np.r_[np.linspace(100, 150, 4), np.full(5, 158.0)]], axis=1
    )
    eyes = [
        np.stack([cx + np.array([-16, -8, 8, 16, 8, -8]), 110 + np.array([0, -5, -5, 0, 5, 5])], axis=1)
        for cx in (88.0, 168.0)
    ]
    t = np.linspace(np.pi, 3 * np.pi, 20, endpoint=False)
    mouth = np.stack([128 + 32 * np.cos(t), 190 + 10 * np.sin(t)], axis=1)
    return np.vstack([jaw, brows, nose, *eyes, mouth])


def test_pointing_game_looks_only_inside_the_region():
    hm = np.zeros((64, 64), np.float32)
    hm[5, 5] = 10.0  # hot outside the face: ignored
    hm[40, 30] = 3.0
    region = np.zeros((64, 64), bool)
    region[20:60, 10:50] = True
    target = np.zeros((64, 64), bool)
    target[38:43, 28:33] = True
    assert pointing_hit(hm, region, target)
    assert not pointing_hit(hm, np.ones_like(region), target)


def test_pixel_auroc_is_one_for_a_perfect_map_and_a_half_for_noise():
    rng = np.random.default_rng(0)
    target = np.zeros((48, 48), bool)
    target[20:30, 20:30] = True
    region = np.ones_like(target)
    assert pixel_auroc(target.astype(np.float32), target, region) == pytest.approx(1.0)
    assert abs(pixel_auroc(rng.random((48, 48)), target, region) - 0.5) < 0.1
    assert np.isnan(pixel_auroc(rng.random((48, 48)), np.zeros_like(target), region))


def test_face_region_leaves_the_outline_out_and_smooth_keeps_the_map_non_negative():
    lm = _landmarks()
    whole, inner = face_region(lm, 256, margin=0.0), face_region(lm, 256, margin=0.3)
    assert inner.sum() < whole.sum() and not (inner & ~whole).any()
    assert not whole[0, 0] and not whole[5, 128]
    with pytest.raises(ValueError):
        face_region(lm, 256, margin=-1.0)
    hm = np.zeros((32, 32), np.float32)
    hm[16, 16] = 1.0
    s = smooth(hm, sigma=2.0)
    assert s.dtype == np.float32 and s.min() >= 0 and s[16, 16] < 1.0 and s.sum() == pytest.approx(1.0, rel=1e-3)


def test_pixel_auroc_equals_the_rank_statistic():
    rng = np.random.default_rng(3)
    hm = np.round(rng.random((40, 40)) * 8)  # many ties
    target = rng.random((40, 40)) < 0.1
    region = np.ones_like(target)
    a, b = hm[target][:, None], hm[~target][None, :]
    pairs = (a > b).sum() + 0.5 * (a == b).sum()  # every pair, ties half: the Mann-Whitney U
    assert pixel_auroc(hm, target, region) == pytest.approx(pairs / (a.size * b.size))
