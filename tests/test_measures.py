"""Nasolabial measures: symmetric faces measure zero, a known displacement is measured exactly, the
frame ignores where the face is, how large and how turned in the picture, and the reference's
percentiles behave."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleftscore.face.landmarks import LandmarkEdit
from cleftscore.face.measures import (
    HAND_POINTS,
    IRIS_DIAMETER_MM,
    NasolabialReference,
    Scale,
    load_nasolabial_reference,
    nasolabial_measures,
)
from cleftscore.face.symmetric import IBUG68_MIRROR
from landmark_helpers import ASTRONAUT_68

_ASTRONAUT = ASTRONAUT_68


def _symmetric() -> np.ndarray:
    """The astronaut's points made exactly mirror-symmetric about x = 128 (eyes level)."""
    mirrored = _ASTRONAUT[list(IBUG68_MIRROR)] * [-1, 1] + [256, 0]
    return (_ASTRONAUT + mirrored) / 2


def _similarity(points: np.ndarray, angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return points @ (scale * np.array([[c, s], [-s, c]])) + np.asarray(shift)


def test_a_symmetric_face_has_no_asymmetry_and_no_deviation() -> None:
    m = nasolabial_measures(_symmetric()).values
    for name, value in m.items():
        if name.endswith(("_asym_icd", "_deviation_icd")) or name == "nl_alar_height_ratio":
            assert abs(value) < 1e-9, name
    assert m["nl_alar_base_height_right_icd"] == pytest.approx(m["nl_alar_base_height_left_icd"])
    assert m["nl_alar_base_height_right_icd"] > 0  # below the eye line
    assert not any(k.endswith("_mm") for k in m)  # no scale, no millimetres
    assert "nl_cleft_width_icd" not in m and "nl_nostril_height_right_icd" not in m  # hand points only


def test_a_lowered_alar_base_is_measured_in_intercanthal_units() -> None:
    lm = _symmetric()
    icd = float(np.hypot(*(lm[42] - lm[39])))
    lm[35, 1] += 7.0  # the patient's left alar base (image right) 7 px lower
    m = nasolabial_measures(lm).values
    assert m["nl_alar_base_height_asym_icd"] == pytest.approx(7.0 / icd)
    assert m["nl_alar_base_height_left_icd"] - m["nl_alar_base_height_right_icd"] == pytest.approx(7.0 / icd)
    assert m["nl_lateral_lip_height_asym_icd"] == pytest.approx(7.0 / icd)
    nasal = float(np.hypot(*(lm[33] - lm[27])))
    assert m["nl_alar_height_ratio"] == pytest.approx(7.0 / nasal)
    # A hand-placed alar crease replaces dlib's point; a shifted nasal tip reads with its sign.
    lm2 = _symmetric()
    lm2[30, 0] -= 3.0  # towards the image left = the patient's right
    hand = {"alar_crease_right": lm2[31] + [0, 2.0], "alar_crease_left": lm2[35]}
    m2 = nasolabial_measures(lm2, extra=hand).values
    assert m2["nl_alar_base_height_asym_icd"] == pytest.approx(2.0 / icd)
    assert m2["nl_nasal_tip_deviation_icd"] == pytest.approx(-3.0 / icd)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    angle=st.floats(-0.6, 0.6),
    scale=st.floats(0.2, 8.0),
    shift=st.tuples(st.floats(-500, 500), st.floats(-500, 500)),
)
def test_measures_ignore_position_size_and_turn_in_the_picture(angle: float, scale: float, shift: tuple) -> None:
    lm = _ASTRONAUT.copy()
    extra = {"cleft_edge_medial": lm[50] + [1, 3], "cleft_edge_lateral": lm[49] + [-2, 4],
             "nostril_top_right": lm[32] - [0, 5], "nostril_top_left": lm[34] - [0, 6]}  # fmt: skip
    base = nasolabial_measures(lm, extra=extra).values
    moved = nasolabial_measures(_similarity(lm, angle, scale, shift),
                                extra={k: _similarity(v[None], angle, scale, shift)[0] for k, v in extra.items()}).values  # fmt: skip
    assert set(moved) == set(base)
    for name, value in base.items():
        assert moved[name] == pytest.approx(value, abs=1e-9), name


def test_millimetres_follow_the_scale() -> None:
    lm = _ASTRONAUT
    ruler = Scale.from_ruler((0, 0), (30, 40), 10.0)  # 50 px = 10 mm
    m = nasolabial_measures(lm, scale=ruler)
    icd = m.frame["icd_px"]
    assert m.values["nl_cheilion_height_asym_mm"] == pytest.approx(m.values["nl_cheilion_height_asym_icd"] * icd / 5)
    assert "known distance: 10 mm" in m.definitions["nl_cheilion_height_asym_mm"]
    iris = Scale.from_iris((10, 10), (20, 10))
    assert iris.mm_per_pixel == pytest.approx(IRIS_DIAMETER_MM / 10)
    assert "iris convention" in iris.how and "assumed" in iris.how


def test_segments_name_drawable_points() -> None:
    m = nasolabial_measures(_ASTRONAUT, extra={"cleft_edge_medial": (120, 176), "cleft_edge_lateral": (110, 177)})
    assert ("cleft_width", "cleft_edge_medial", "cleft_edge_lateral") in m.segments
    for _, a, b in m.segments:
        assert m.foot(a).shape == (2,) and m.foot(b).shape == (2,)
    # The foot on the midline of a midline point of a symmetric face is the point itself.
    sym = nasolabial_measures(_symmetric())
    np.testing.assert_allclose(sym.foot("midline:pronasale"), sym.points["pronasale"], atol=1e-9)


@pytest.mark.parametrize(
    ("landmarks", "extra", "match"),
    [
        (np.zeros((67, 2)), {}, "68, 2"),
        (np.full((68, 2), np.nan), {}, "NaN"),
        (_ASTRONAUT, {"nose": (1, 2)}, "unknown point"),
        (_ASTRONAUT, {"columella_base": (1, np.inf)}, "finite"),
        (np.zeros((68, 2)), {}, "coincide"),
    ],
)
def test_bad_points_are_refused(landmarks: np.ndarray, extra: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        nasolabial_measures(landmarks, extra=extra)


def test_bad_scales_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        Scale(0.0, "none")
    with pytest.raises(ValueError, match="longer distance"):
        Scale.from_ruler((1, 1), (1.2, 1), 10)
    with pytest.raises(ValueError, match="positive number of mm"):
        Scale.from_ruler((0, 0), (10, 0), -1)


def test_reference_percentiles() -> None:
    rows = [{"a": float(v), "b": 1.0} for v in range(101)]
    ref = NasolabialReference.from_values(rows, source="test")
    assert ref.percentile("a", 50.0) == pytest.approx(50.0)
    assert ref.percentile("a", -1.0) == 0.0 and ref.percentile("a", 1e9) == 100.0
    assert ref.percentile("b", 1.0) == pytest.approx(50.0)  # ties read as their middle
    assert ref.percentile("missing", 1.0) is None
    assert ref.normal_range("a") == pytest.approx((5.0, 95.0))
    values = [ref.percentile("a", v) for v in np.linspace(-5, 105, 50)]
    assert all(np.diff(values) >= 0)
    assert NasolabialReference.from_values(rows[:5], source="few").quantiles == {}
    # A signed midline deviation is placed by its size: as far off to the left as to the right.
    dev = NasolabialReference.from_values([{"nl_x_deviation_icd": float(v)} for v in range(-50, 51)], source="t")
    assert dev.quantiles["nl_x_deviation_icd"][0] == 0.0
    assert dev.percentile("nl_x_deviation_icd", -30.0) == dev.percentile("nl_x_deviation_icd", 30.0) > 50


def test_shipped_reference_covers_every_automatic_measure() -> None:
    ref = load_nasolabial_reference()
    automatic = nasolabial_measures(_ASTRONAUT).values
    assert set(automatic) == set(ref.quantiles)
    assert min(ref.n.values()) >= 100
    assert "normal" in ref.source


def test_landmark_edit_checks_and_applies() -> None:
    edit = LandmarkEdit(moved={31: (1.0, 2.0)}, added={"alar_crease_left": (3, 4)}, ruler=((0, 0), (10, 0), 5.0))
    out = edit.apply(_ASTRONAUT)
    assert out[31].tolist() == [1.0, 2.0] and out[30].tolist() == _ASTRONAUT[30].tolist()
    assert edit.scale().mm_per_pixel == pytest.approx(0.5)  # type: ignore[union-attr]
    assert LandmarkEdit.from_json(edit.to_json()).to_json() == edit.to_json()
    assert LandmarkEdit().empty and not edit.empty
    with pytest.raises(ValueError, match="0..67"):
        LandmarkEdit(moved={68: (0, 0)})
    with pytest.raises(ValueError, match="move that point"):
        LandmarkEdit(added={"pronasale": (0, 0)})
    with pytest.raises(ValueError, match="unknown point"):
        LandmarkEdit(added={"chin": (0, 0)})
    assert set(HAND_POINTS) >= {"alar_crease_left", "columella_base", "cleft_edge_medial", "nostril_top_right"}


def test_measures_picture_draws_on_the_face_and_adds_a_legend() -> None:
    from cleftscore.report.measures_picture import measures_picture

    face = np.full((256, 256, 3), 90, np.uint8)
    m = nasolabial_measures(_ASTRONAUT)
    pic = measures_picture(face, m)
    assert pic.dtype == np.uint8 and pic.shape[0] == 256 and pic.shape[1] > 256
    drawn = np.any(pic[:, :256] != 90, axis=2)
    x, y = np.round(_ASTRONAUT[33]).astype(int)
    assert drawn[y - 2 : y + 3, x - 2 : x + 3].any() and drawn.mean() < 0.2
    with pytest.raises(ValueError, match="uint8"):
        measures_picture(face.astype(np.float32), m)
