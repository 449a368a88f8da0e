"""The robustness benchmark's photo changes and arithmetic (fast; the scored checks are in test_robustness_slow.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleftscore.benchmarks.robustness import VARIANTS, RobustnessPhoto, change_summary, make_variant, quality_summary


def _photo(h: int = 90, w: int = 120) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_is_a_photo(name: str) -> None:
    img = _photo(900, 800)
    out = make_variant(img, name, seed=1)
    assert out is not None and out.dtype == np.uint8 and out.ndim == 3 and out.shape[-1] == 3
    assert not np.array_equal(out, img)


def test_variants_do_what_they_say() -> None:
    img = _photo()
    g = make_variant(img, "grayscale")
    assert np.array_equal(g[..., 0], g[..., 1]) and np.array_equal(g[..., 1], g[..., 2])
    assert np.array_equal(make_variant(img, "mirror_flip")[:, ::-1], img)
    assert make_variant(img, "side_384") is None  # not larger than the size asked for
    assert make_variant(_photo(400, 1000), "side_512").shape == (205, 512, 3)
    assert make_variant(img, "crop_tight").shape == (82, 108, 3)
    assert make_variant(img, "crop_loose").shape == (108, 144, 3)
    assert np.array_equal(make_variant(img, "noise", seed=5), make_variant(img, "noise", seed=5))
    assert make_variant(img, "exposure_0.6").mean() < img.mean() < make_variant(img, "exposure_1.4").mean()
    warm = make_variant(img, "white_balance_warm").astype(int)
    assert warm[..., 0].mean() > img[..., 0].mean() and warm[..., 2].mean() < img[..., 2].mean()
    with pytest.raises(ValueError, match="unknown variant"):
        make_variant(img, "sepia")
    with pytest.raises(ValueError, match="uint8"):
        make_variant(img.astype(np.float32), "grayscale")


def test_change_summary_by_hand() -> None:
    r = change_summary([-5.0, -4.0, -1.0, 0.0], [-5.5, -2.0, -1.0, float("nan")], gap=2.0, midpoint=-2.5,
                       groups=["cleft", "cleft", "normal", "normal"])  # fmt: skip
    assert r["n"] == 3
    assert r["median"] == pytest.approx(0.25) and r["max"] == pytest.approx(1.0)
    assert (r["crossing"], r["crossing_cleft"], r["crossing_normal"]) == (1, 1, 0)
    assert change_summary([1.0], [float("nan")], gap=1.0, midpoint=0.0, groups=["normal"]) == {"n": 0}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=1, max_size=30), st.floats(0.1, 5.0))
def test_change_summary_is_zero_for_no_change(scores: list[float], gap: float) -> None:
    r = change_summary(scores, scores, gap=gap, midpoint=0.0, groups=["normal"] * len(scores))
    assert r["median"] == 0.0 and r["p90"] == 0.0 and r["crossing"] == 0


def test_quality_summary_splits_errors_by_the_gate() -> None:
    photos = [RobustnessPhoto(Path(f"{k}.jpg"), "normal", "set", f"k{k}") for k in range(2)]
    scores = [{"original": -2.0, "grayscale": -2.0, "jpeg_q30": -3.0}, {"original": -1.0, "grayscale": -1.5}]
    failed = [{"original": (), "grayscale": ("colourfulness",), "jpeg_q30": ("blockiness",)},
              {"original": ("yaw",), "grayscale": ("yaw", "colourfulness")}]  # fmt: skip
    q = quality_summary(photos, scores, failed, gap=2.0)
    assert q["originals"]["set"]["photos"] == 2 and q["originals"]["set"]["yaw"] == 1
    assert q["variants"]["grayscale"] == {"photos": 2, "flagged": 2, "colourfulness": 2, "yaw": 1}
    assert q["error_flagged"]["n"] == 3 and q["error_unflagged"] == {"n": 0}
    assert q["error_by_check"]["blockiness"]["median"] == pytest.approx(0.5)
