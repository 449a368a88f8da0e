"""The normal-reference scale: percentile, z, reading, the map in normal units, and reading files back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleftscore.score.reference import (
    BORDERLINE_PERCENTILE,
    MAP_GRID,
    OUTSIDE_PERCENTILE,
    READINGS,
    NormativeReference,
    ReferenceBuilder,
    load_reference,
    place_scored,
    placement_of,
    reading_of,
    reference_for,
)


def _ref(**kw) -> NormativeReference:
    return NormativeReference.from_scores(np.linspace(-3.0, -1.0, 201), source="test photos", settings={"a": 1}, **kw)


def _landmarks(size: int = 256) -> np.ndarray:
    """A plausible frontal iBUG-68 layout in a ``size`` frame (jaw, brows, nose, eyes, mouth)."""
    s = size / 256.0
    jaw = np.stack([np.linspace(40, 216, 17), 120 + 90 * np.sin(np.linspace(0, np.pi, 17))], axis=1)
    brows = np.stack([np.r_[np.linspace(60, 116, 5), np.linspace(140, 196, 5)], np.full(10, 90.0)], axis=1)
    nose = np.stack(
        [np.r_[np.full(4, 128.0), np.linspace(112, 144, 5)], np.r_[np.linspace(100, 150, 4), np.full(5, 158.0)]], axis=1
    )
    eye = lambda cx: np.stack([cx + np.array([-16, -8, 8, 16, 8, -8]), 110 + np.array([0, -5, -5, 0, 5, 5])], axis=1)  # noqa: E731
    mouth = np.stack([128 + 32 * np.cos(np.linspace(np.pi, 3 * np.pi, 20, endpoint=False)),
                      190 + 10 * np.sin(np.linspace(np.pi, 3 * np.pi, 20, endpoint=False))], axis=1)  # fmt: skip
    return np.vstack([jaw, brows, nose, eye(88.0), eye(168.0), mouth]) * s


def test_readings_follow_the_written_thresholds():
    assert reading_of(0.0) == reading_of(89.9) == READINGS[0] == "within the normal range"
    assert reading_of(BORDERLINE_PERCENTILE) == reading_of(97.4) == "borderline"
    assert reading_of(OUTSIDE_PERCENTILE) == reading_of(100.0) == "outside the normal range"
    with pytest.raises(ValueError):
        reading_of(101.0)


def test_place_a_typical_a_borderline_and_an_abnormal_score():
    ref = _ref()
    typical, edge, far = ref.place(-2.0), ref.place(-2.9), ref.place(-5.0)
    assert typical.percentile == pytest.approx(50.0, abs=1) and abs(typical.z) < 0.05
    assert typical.reading == "within the normal range" and typical.n == 201 and typical.reference == ref.name
    assert edge.reading == "borderline" and edge.z > 1.0  # uniform scores: spread 0.68
    assert far.percentile == 100.0 and far.reading == "outside the normal range"
    assert far.z > edge.z  # the z scale goes on beyond the reference, the percentile stops at 100
    assert "outside the normal range" in far.headline() and "201 normal faces" in far.headline()


@settings(max_examples=60, deadline=None)
@given(st.floats(-10, 5), st.floats(-10, 5))
def test_lower_scores_are_never_placed_as_more_normal(a, b):
    ref = _ref()
    lo, hi = sorted((a, b))
    assert ref.place(lo).percentile >= ref.place(hi).percentile
    assert ref.place(lo).z >= ref.place(hi).z


def test_a_reference_fits_only_its_method_and_score(tmp_path):
    ref = _ref(method="gan", score="paper", name="clinic normals")
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(ref.to_dict()))
    assert reference_for("gan", "paper", str(path)).name == "clinic normals"
    with pytest.raises(ValueError, match="built for the gan method's paper score"):
        reference_for("asymmetry", "face-referenced", str(path))
    # Without a file: the shipped reference serves the face-referenced score only.
    assert reference_for("asymmetry", "face-referenced").n >= 100
    assert reference_for("gan", "paper") is None and reference_for("asymmetry", "paper") is None
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a normative reference"):
        load_reference(str(bad))


def test_the_shipped_reference_says_who_is_in_it_and_reads_older_files(tmp_path):
    ref = load_reference()
    assert ref.n == 115 and "adults" in ref.source and ref.method == "asymmetry"
    assert "115 normal photos" in ref.describe()
    assert ref.heatmap_spread is not None  # the shipped per-point spread is merged in
    old = {k: v for k, v in ref.to_dict().items() if k in ("quantiles", "n", "source", "settings")}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    back = load_reference(str(path))
    assert back.name and back.method == "asymmetry" and back.heatmap_spread is None


def test_builder_keeps_statistics_only_and_the_map_is_in_normal_units():
    rng = np.random.default_rng(0)
    size, lm = 256, _landmarks(256)
    region = np.zeros((size, size), bool)
    region[170:185, 100:156] = True
    b = ReferenceBuilder(method="asymmetry", score="face-referenced")
    for _ in range(12):
        b.add(float(rng.normal(-2, 0.5)), rng.gamma(2.0, 1.0, (size, size)).astype(np.float32), lm, region)
    ref = b.build(source="12 synthetic maps", settings={}, name="synthetic")
    assert ref.n == 12 and np.asarray(ref.heatmap_spread).shape == (MAP_GRID, MAP_GRID)
    text = json.dumps(ref.to_dict())
    assert len(text) < 200_000  # quantiles and a small grid, no pictures
    # A normal-looking map is about 1 in these units; a patch ten times hotter stands out.
    hm = rng.gamma(2.0, 1.0, (size, size)).astype(np.float32)
    hm[150:170, 120:140] *= 10
    shown = ref.in_normal_units(hm, lm)
    assert shown.dtype == np.float32 and shown.shape == (size, size)
    assert shown[0, 0] == 0.0 and shown[5, 128] == 0.0  # background and forehead are not drawn
    inside = shown > 0
    peak = np.unravel_index(np.argmax(shown), shown.shape)
    assert 145 <= peak[0] <= 175 and 115 <= peak[1] <= 145
    assert 0.3 < float(np.median(shown[inside])) < 3.0


def test_placement_measures_read_back_from_a_record():
    ref = _ref(name="clinic normals")
    measures, shown = place_scored(ref, -2.9, np.ones((256, 256), np.float32), _landmarks())
    assert set(measures) == {"reference_percentile", "reference_z"}
    assert "clinic normals" in measures["reference_percentile"].definition
    back = placement_of(measures)
    assert back is not None and back.reading == "borderline" and back.reference == "clinic normals" and back.n == 201
    assert placement_of({}) is None
    assert shown.shape == (256, 256)


def test_a_percentile_is_said_with_its_ordinal():
    from cleftscore.score.reference import Placement

    def label(p: float) -> str:
        return Placement(percentile=p, z=0.0, reading="within the normal range", reference="r", n=10).percentile_label

    assert [label(p) for p in (1, 2.4, 3, 4, 11, 12, 13, 21, 22, 64.6, 100)] == [
        "1st percentile", "2nd percentile", "3rd percentile", "4th percentile", "11th percentile", "12th percentile",
        "13th percentile", "21st percentile", "22nd percentile", "65th percentile", "100th percentile",
    ]  # fmt: skip
