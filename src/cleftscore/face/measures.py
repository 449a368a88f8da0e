"""Named nasolabial landmarks and the left/right measures cleft researchers take by hand.

The 68 dlib points give the automatic positions of the anthropometric landmarks of the nose and
the upper lip (:data:`AUTOMATIC_POINTS`); a user may add points dlib does not place, or place
better (:data:`HAND_POINTS`: alar crease, columella base, nostril tops, the cleft's edges). A
named point the user gives always replaces the automatic one.

Every measure is taken in a *face frame*: the horizontal axis runs through the two eye centres
(means of the six points of each eye), the midline is the perpendicular bisector of that
segment, and lengths are divided by the intercanthal distance (endocanthion to endocanthion,
points 39 and 42), so they do not depend on the photo's size, position or in-plane rotation.
Given a :class:`Scale`, each length is also given in millimetres.

Sides are the *patient's*: in a photo as a camera takes it (not mirrored), the patient's right
is on the image's left, which is where dlib's order puts points 36-41, 31, 48 and 50.

:func:`nasolabial_measures` returns a :class:`NasolabialMeasures` (named values, what each one
means, and the points and distances to draw); :class:`NasolabialReference` gives the percentile
of a value among normal faces (statistics shipped in ``cleftscore/data``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "AUTOMATIC_POINTS",
    "BILATERAL",
    "HAND_POINTS",
    "IRIS_DIAMETER_MM",
    "MEASURE_PREFIX",
    "MIDLINE",
    "POINT_NAMES",
    "NasolabialMeasures",
    "NasolabialReference",
    "Scale",
    "load_nasolabial_reference",
    "nasolabial_measures",
]

#: Column-name prefix of every nasolabial measure in records and CSV files.
MEASURE_PREFIX = "nl_"

#: Horizontal visible iris diameter taken as known when a scale comes from the iris, in mm. This
#: is the convention of Emotrics (Guarin et al. 2018), an adult average; a child's iris is close
#: to adult size from about two years of age, and smaller in infants.
IRIS_DIAMETER_MM = 11.77

#: Named landmarks placed automatically: name -> index in dlib's iBUG-68 order (0-based).
AUTOMATIC_POINTS: Mapping[str, int] = {
    "exocanthion_right": 36,
    "endocanthion_right": 39,
    "endocanthion_left": 42,
    "exocanthion_left": 45,
    "nasion": 27,
    "pronasale": 30,
    "alar_base_right": 31,
    "nostril_sill_right": 32,
    "subnasale": 33,
    "nostril_sill_left": 34,
    "alar_base_left": 35,
    "cheilion_right": 48,
    "cupid_peak_right": 50,
    "labrale_superius": 51,
    "cupid_peak_left": 52,
    "cheilion_left": 54,
}

#: Named points only a user places, with what each one is. Where a measure can use an automatic
#: point instead, the hand point replaces it (alar crease for the alar base, columella base for
#: subnasale).
HAND_POINTS: Mapping[str, str] = {
    "alar_crease_right": "deepest point of the right alar groove, where the ala meets the cheek",
    "alar_crease_left": "deepest point of the left alar groove",
    "columella_base": "base of the columella, where it meets the upper lip",
    "nostril_top_right": "highest point of the right nostril opening",
    "nostril_top_left": "highest point of the left nostril opening",
    "cleft_edge_medial": "the cleft's edge on the medial (philtrum) side, at the vermilion border",
    "cleft_edge_lateral": "the cleft's edge on the lateral side, at the vermilion border",
}

#: Every name a landmark file may use besides the 68 indices.
POINT_NAMES: tuple[str, ...] = (*AUTOMATIC_POINTS, *HAND_POINTS)

# Which named point stands for a hand point when the user has not placed it.
_STAND_IN = {
    "alar_crease_right": "alar_base_right",
    "alar_crease_left": "alar_base_left",
    "columella_base": "subnasale",
}


@dataclass(frozen=True)
class _Bilateral:
    """A measure taken on each side: ``kind`` says how a side's value is made from its point(s)."""

    name: str
    kind: str  # "height": below the eye line; "lateral": from the midline; "vertical": between two points
    points: tuple[str, ...]  # per-side point names with "{side}" in them
    definition: str
    reference: str = ""
    hand_only: bool = False


@dataclass(frozen=True)
class _Midline:
    name: str
    points: tuple[str, ...]
    definition: str
    reference: str = ""
    hand_only: bool = False


#: Measures taken on each side (a value per side and their asymmetry |right - left|).
BILATERAL: tuple[_Bilateral, ...] = (
    _Bilateral("alar_base_height", "height", ("alar_crease_{side}",),
               "height of the alar base (alar crease when placed, else dlib's nostril corner 31/35) below the eye line",
               "Farkas 1994 (sbal); Jarync grading (alar-groove height difference)"),
    _Bilateral("alar_base_lateral", "lateral", ("alar_crease_{side}",),
               "horizontal distance of the alar base from the facial midline (half the alar-base width)",
               "Farkas 1994 (sbal-sbal / 2)"),
    _Bilateral("nostril_height", "vertical", ("nostril_top_{side}", "nostril_sill_{side}"),
               "nostril height: nostril top (placed by hand) to the nostril sill (dlib 32/34)",
               "Farkas 1994 (nostril height)", hand_only=True),
    _Bilateral("cupid_peak_height", "height", ("cupid_peak_{side}",),
               "height of the Cupid's-bow peak (crista philtri, dlib 50/52) below the eye line",
               "Farkas 1994 (cph)"),
    _Bilateral("lateral_lip_height", "vertical", ("alar_crease_{side}", "cupid_peak_{side}"),
               "upper-lip height per side: alar base to Cupid's-bow peak, measured vertically",
               "Farkas 1994 (sbal-cph)"),
    _Bilateral("cheilion_height", "height", ("cheilion_{side}",),
               "height of the mouth corner (cheilion, dlib 48/54) below the eye line",
               "Farkas 1994 (ch)"),
    _Bilateral("hemi_mouth_width", "lateral", ("cheilion_{side}",),
               "horizontal distance of the mouth corner from the facial midline",
               "Farkas 1994 (ch-ch / 2)"),
)  # fmt: skip

#: Measures of the midline (signed: positive towards the patient's left) and of the cleft.
MIDLINE: tuple[_Midline, ...] = (
    _Midline("nasal_tip_deviation", ("pronasale",),
             "horizontal distance of the nasal tip (pronasale, dlib 30) from the facial midline; + = patient's left",
             "Farkas 1994 (prn)"),
    _Midline("columella_deviation", ("columella_base",),
             "horizontal distance of the columella base (subnasale, dlib 33, or the placed point) from the midline",
             "Farkas 1994 (sn)"),
    _Midline("labrale_superius_deviation", ("labrale_superius",),
             "horizontal distance of labrale superius (dlib 51) from the facial midline", "Farkas 1994 (ls)"),
    _Midline("cleft_width", ("cleft_edge_medial", "cleft_edge_lateral"),
             "distance between the cleft's two edges (both placed by hand)",
             "McCullough et al. 2021 (cleft width ratio)", hand_only=True),
)  # fmt: skip

_SIDES = ("right", "left")


@dataclass(frozen=True)
class Scale:
    """Millimetres per photo pixel, and how that was known.

    Attributes
    ----------
    mm_per_pixel : float
        Positive, finite.
    how : str
        One line: a drawn known distance, or the iris-diameter convention (said as such).
    """

    mm_per_pixel: float
    how: str

    def __post_init__(self) -> None:
        v = float(self.mm_per_pixel)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"mm_per_pixel must be a positive number, got {self.mm_per_pixel!r}")
        object.__setattr__(self, "mm_per_pixel", v)

    @classmethod
    def from_ruler(cls, start: tuple[float, float], end: tuple[float, float], mm: float) -> Scale:
        """A scale from a known distance drawn on the photo (e.g. a ruler held beside the face).

        Parameters
        ----------
        start, end : (x, y)
            The drawn segment's ends, in photo pixels.
        mm : float
            Its true length in millimetres (> 0).
        """
        px = _length(start, end)
        if not (math.isfinite(float(mm)) and float(mm) > 0):
            raise ValueError(f"the known distance must be a positive number of mm, got {mm!r}")
        return cls(float(mm) / px, f"known distance: {float(mm):g} mm drawn over {px:.1f} photo pixels")

    @classmethod
    def from_iris(cls, edge_a: tuple[float, float], edge_b: tuple[float, float], *,
                  diameter_mm: float = IRIS_DIAMETER_MM) -> Scale:  # fmt: skip
        """A scale from one iris's horizontal diameter, taken as ``diameter_mm`` by convention.

        Parameters
        ----------
        edge_a, edge_b : (x, y)
            The iris's two horizontal edges (limbus), in photo pixels.
        diameter_mm : float, optional
            The assumed diameter (default :data:`IRIS_DIAMETER_MM`, Emotrics' convention).
        """
        px = _length(edge_a, edge_b)
        return cls(float(diameter_mm) / px,
                   f"iris convention: the horizontal iris diameter ({px:.1f} photo pixels) taken as {diameter_mm:g} mm, "
                   "an assumed average, not measured")  # fmt: skip

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def _length(a: tuple[float, float], b: tuple[float, float]) -> float:
    pa, pb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if pa.shape != (2,) or pb.shape != (2,) or not (np.all(np.isfinite(pa)) and np.all(np.isfinite(pb))):
        raise ValueError(f"a point is two finite numbers (x, y), got {a!r} and {b!r}")
    d = float(np.hypot(*(pb - pa)))
    if d < 1.0:
        raise ValueError(f"the two ends are {d:.2f} pixels apart; draw a longer distance")
    return d


@dataclass(frozen=True, eq=False)
class NasolabialMeasures:
    """The nasolabial measures of one face.

    Attributes
    ----------
    values : dict of str -> float
        Column name -> value. Names are ``nl_<measure>_<right|left|asym>_icd`` for the measures
        taken on each side, ``nl_<measure>_icd`` for the midline ones, the same with ``_mm`` when
        a scale was given, and ``nl_alar_height_ratio`` (no unit). Measures whose hand-placed
        points are missing are absent.
    definitions : dict of str -> str
        Column name -> what the value is, with its unit.
    points : dict of str -> (2,) ndarray
        The named points used, in the coordinates the landmarks were given in.
    segments : tuple of (str, str, str)
        ``(measure, point_a, point_b)``: the distances to draw (a point named ``"midline:<p>"`` is
        the foot of ``p`` on the midline, ``"eyeline:<p>"`` its foot on the eye line).
    frame : dict
        ``origin``, ``x_axis``, ``y_axis`` (unit vectors) and ``icd_px`` of the face frame.
    scale : Scale or None
    """

    values: Mapping[str, float]
    definitions: Mapping[str, str]
    points: Mapping[str, np.ndarray]
    segments: tuple[tuple[str, str, str], ...]
    frame: Mapping[str, object]
    scale: Scale | None = None

    def __post_init__(self) -> None:
        if set(self.values) != set(self.definitions):
            raise ValueError("every value needs a definition and every definition a value")
        for k, v in self.values.items():
            if not (isinstance(v, float) and math.isfinite(v)):
                raise ValueError(f"{k} must be a finite float, got {v!r}")

    def foot(self, name: str) -> np.ndarray:
        """A point of :attr:`segments`: a named point, or its foot on the midline or eye line."""
        kind, _, base = name.partition(":")
        if not base:
            return self.points[name]
        p = self.points[base]
        origin, x_axis, y_axis = (np.asarray(self.frame[k]) for k in ("origin", "x_axis", "y_axis"))
        axis = y_axis if kind == "midline" else x_axis
        return origin + axis * float(np.dot(p - origin, axis))


def _check_points(landmarks: np.ndarray, extra: Mapping[str, object]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must be (68, 2) (x, y) in dlib iBUG-68 order, got shape {lm.shape}")
    if not np.all(np.isfinite(lm)):
        raise ValueError("landmarks contain NaN or infinite values")
    hand: dict[str, np.ndarray] = {}
    for name, xy in extra.items():
        if name not in POINT_NAMES:
            raise ValueError(f"unknown point name {name!r}; known names: {', '.join(POINT_NAMES)}")
        p = np.asarray(xy, dtype=np.float64)
        if p.shape != (2,) or not np.all(np.isfinite(p)):
            raise ValueError(f"point {name!r} must be two finite numbers (x, y), got {xy!r}")
        hand[name] = p
    return lm, hand


def _frame(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    eye_r, eye_l = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    across = eye_l - eye_r
    if float(np.hypot(*across)) < 1e-6:
        raise ValueError("the two eyes' landmarks coincide; no face frame")
    x_axis = across / np.hypot(*across)
    y_axis = np.array([-x_axis[1], x_axis[0]])  # image y points down, so this points down the face
    icd = float(np.hypot(*(lm[42] - lm[39])))
    if icd < 1e-6:
        raise ValueError("the inner eye corners (39, 42) coincide; no intercanthal distance")
    return (eye_r + eye_l) / 2.0, x_axis, y_axis, icd


def nasolabial_measures(landmarks: np.ndarray, *, extra: Mapping[str, object] | None = None,
                        scale: Scale | None = None) -> NasolabialMeasures:  # fmt: skip
    """Left/right nasolabial measures and their asymmetries, in intercanthal units (and mm).

    Parameters
    ----------
    landmarks : (68, 2) ndarray
        dlib iBUG-68 landmarks, ``(x, y)`` pixels, any frame (photo or aligned); corrected ones
        when the user corrected them.
    extra : dict of str -> (x, y), optional
        Named points placed by hand, in the same frame (names from :data:`POINT_NAMES`); each
        replaces the automatic point of that name.
    scale : Scale, optional
        Millimetres per pixel *of the frame the points are in* (the photo's, for a ruler drawn on
        the photo); adds the ``_mm`` columns.

    Returns
    -------
    NasolabialMeasures

    Raises
    ------
    ValueError
        Wrong shape, non-finite or unknown points, or eyes that coincide.

    Notes
    -----
    With unit vectors ``x`` (right eye centre to left eye centre) and ``y`` (perpendicular,
    down the face) and origin ``o`` between the eye centres, a point ``p`` has ``u = (p - o).x``
    and ``v = (p - o).y``. A side's *height* is ``v``, its *lateral* distance ``|u|``, a
    *vertical* distance between two points the difference of their ``v``; midline deviations are
    ``u``. All are divided by the intercanthal distance ``|p42 - p39|``. ``nl_alar_height_ratio``
    is the alar-base height difference over the nasal length (nasion 27 to subnasale 33), the
    automatic counterpart of the Jarync grading's A/B.
    """
    lm, hand = _check_points(landmarks, extra or {})
    origin, x_axis, y_axis, icd = _frame(lm)
    named = {name: lm[i] for name, i in AUTOMATIC_POINTS.items()}
    named.update(hand)

    def point(name: str) -> np.ndarray | None:
        if name in named:
            return named[name]
        return named.get(_STAND_IN.get(name, ""))

    used: dict[str, np.ndarray] = {}
    values: dict[str, float] = {}
    defs: dict[str, str] = {}
    segments: list[tuple[str, str, str]] = []

    def put(col: str, px: float, definition: str) -> None:
        values[f"{col}_icd"] = px / icd
        defs[f"{col}_icd"] = f"{definition} (intercanthal distances)"
        if scale is not None:
            values[f"{col}_mm"] = px * scale.mm_per_pixel
            defs[f"{col}_mm"] = f"{definition} (mm; {scale.how})"

    def resolved(names: tuple[str, ...]) -> list[tuple[str, np.ndarray]] | None:
        pts = [(n if n in named else _STAND_IN.get(n, n), point(n)) for n in names]
        return None if any(p is None for _, p in pts) else pts  # type: ignore[misc]

    for m in BILATERAL:
        side_px: dict[str, float] = {}
        for side in _SIDES:
            pts = resolved(tuple(p.format(side=side) for p in m.points))
            if pts is None:
                continue
            used.update(pts)
            (na, a), (nb, b) = pts[0], pts[-1]
            if m.kind == "height":
                side_px[side] = float(np.dot(a - origin, y_axis))
                segments.append((m.name, f"eyeline:{na}", na))
            elif m.kind == "lateral":
                side_px[side] = abs(float(np.dot(a - origin, x_axis)))
                segments.append((m.name, f"midline:{na}", na))
            else:
                side_px[side] = float(np.dot(b - a, y_axis))
                segments.append((m.name, na, nb))
        if len(side_px) != 2:
            continue
        for side in _SIDES:
            put(f"{MEASURE_PREFIX}{m.name}_{side}", side_px[side], f"{m.definition}, patient's {side}")
        put(f"{MEASURE_PREFIX}{m.name}_asym", abs(side_px["right"] - side_px["left"]),
            f"{m.definition}: |right - left|")  # fmt: skip
    for m in MIDLINE:
        pts = resolved(m.points)
        if pts is None:
            continue
        used.update(pts)
        if len(pts) == 1:
            ((na, a),) = pts
            put(f"{MEASURE_PREFIX}{m.name}", float(np.dot(a - origin, x_axis)), m.definition)
            segments.append((m.name, f"midline:{na}", na))
        else:
            (na, a), (nb, b) = pts
            put(f"{MEASURE_PREFIX}{m.name}", float(np.hypot(*(b - a))), m.definition)
            segments.append((m.name, na, nb))
    nasal_length = float(np.hypot(*(named["subnasale"] - named["nasion"])))
    if nasal_length > 1e-6 and f"{MEASURE_PREFIX}alar_base_height_asym_icd" in values:
        col = f"{MEASURE_PREFIX}alar_height_ratio"
        values[col] = values[f"{MEASURE_PREFIX}alar_base_height_asym_icd"] * icd / nasal_length
        defs[col] = "alar-base height difference over nasal length (nasion to subnasale); the automatic A/B"
    frame = {"origin": origin, "x_axis": x_axis, "y_axis": y_axis, "icd_px": icd}
    return NasolabialMeasures(values, defs, used, tuple(segments), frame, scale)


def _by_size(name: str) -> bool:
    """Signed midline deviations are compared with normal faces by their size."""
    return "_deviation_" in name


@dataclass(frozen=True)
class NasolabialReference:
    """Each measure's distribution on normal faces (statistics only, no photos).

    Attributes
    ----------
    quantiles : dict of str -> tuple of float
        Column name -> its values at the percentiles 0, 5, ..., 100 (21 non-decreasing numbers).
    n : dict of str -> int
        Column name -> how many faces.
    source : str
        Where the statistics come from, in words.
    """

    quantiles: Mapping[str, tuple[float, ...]]
    n: Mapping[str, int]
    source: str
    levels: tuple[float, ...] = field(default=tuple(float(p) for p in range(0, 101, 5)))

    def __post_init__(self) -> None:
        for name, q in self.quantiles.items():
            a = np.asarray(q, dtype=np.float64)
            if a.shape != (len(self.levels),) or not np.all(np.isfinite(a)) or np.any(np.diff(a) < 0):
                raise ValueError(f"{name}: quantiles must be {len(self.levels)} finite, non-decreasing numbers")
            if int(self.n.get(name, 0)) < 1:
                raise ValueError(f"{name}: n must be >= 1")

    def percentile(self, name: str, value: float) -> float | None:
        """Percentile (0..100) of ``value`` among the normal faces, or None for a measure without a reference.

        Linear between the stored percentiles; 0 below the lowest, 100 above the highest. A
        signed midline deviation is placed by its size (its distance from the midline, either
        side), so a high percentile always reads "further from normal".
        """
        q = self.quantiles.get(name)
        if q is None or not math.isfinite(value):
            return None
        value = abs(value) if _by_size(name) else value
        a = np.asarray(q, dtype=np.float64)
        if value < a[0]:
            return 0.0
        if value > a[-1]:
            return 100.0
        # Flat stretches (ties) take their middle, so a value equal to many normals reads as their median.
        lo = float(np.interp(value, a, self.levels, left=0.0, right=100.0))
        hi = float(np.interp(-value, -a[::-1], self.levels[::-1], left=100.0, right=0.0))
        return (lo + hi) / 2.0

    def normal_range(self, name: str) -> tuple[float, float] | None:
        """The 5th to 95th percentile of ``name`` on the normal faces, or None."""
        q = self.quantiles.get(name)
        return None if q is None else (float(q[1]), float(q[-2]))

    @classmethod
    def from_values(cls, rows: list[Mapping[str, float]], *, source: str, min_n: int = 10) -> NasolabialReference:
        """Percentiles of each column over ``rows`` (one mapping per normal face; midline deviations by their
        size); columns with fewer than ``min_n`` values are left out."""
        names = sorted({k for r in rows for k in r})
        quantiles, counts = {}, {}
        levels = np.arange(0, 101, 5, dtype=np.float64)
        for name in names:
            v = np.asarray([r[name] for r in rows if name in r], dtype=np.float64)
            v = np.abs(v[np.isfinite(v)]) if _by_size(name) else v[np.isfinite(v)]
            if v.size >= min_n:
                quantiles[name] = tuple(float(x) for x in np.percentile(v, levels))
                counts[name] = int(v.size)
        return cls(quantiles, counts, source)

    def to_json(self) -> dict[str, object]:
        return {"source": self.source, "levels": list(self.levels), "n": dict(self.n),
                "quantiles": {k: list(v) for k, v in self.quantiles.items()}}  # fmt: skip


def load_nasolabial_reference(path: str | None = None) -> NasolabialReference:
    """The normal-face statistics shipped with the package, or those written by ``to_json`` to ``path``."""
    if path is None:
        return _shipped_reference()
    return _read_reference(path)


@functools.lru_cache(maxsize=1)
def _shipped_reference() -> NasolabialReference:
    # Read once per process: every scored photo looks its measures up in it.
    from importlib import resources

    return _parse_reference(
        resources.files("cleftscore").joinpath("data", "nasolabial_reference.json").read_text(encoding="utf-8")
    )


def _read_reference(path: str) -> NasolabialReference:
    with open(path, encoding="utf-8") as fh:
        return _parse_reference(fh.read())


def _parse_reference(text: str) -> NasolabialReference:
    d = json.loads(text)
    return NasolabialReference({k: tuple(v) for k, v in d["quantiles"].items()}, {k: int(v) for k, v in d["n"].items()},
                               str(d["source"]), tuple(float(x) for x in d["levels"]))  # fmt: skip
