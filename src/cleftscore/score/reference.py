"""A score's place among normal faces: the normative reference of any method.

A :class:`NormativeReference` holds the distribution of one score (one method, one score
column) on normal reference photos: its percentiles 0..100 and the typical top of the normal
heat map in the scored region. Statistics only: no photo, crop or per-photo number is stored.
:meth:`NormativeReference.place` turns a score into a :class:`Placement`: the percentile among
the normal faces, a z-like value, and a reading (within the normal range / borderline / outside
the normal range, with the thresholds :data:`BORDERLINE_PERCENTILE` and
:data:`OUTSIDE_PERCENTILE`).

:func:`load_reference` reads the reference shipped in ``cleftscore/data/asymmetry_reference.json``
(the asymmetry method's face-referenced score on 115 normal adults) or a file written by
``cleftscore reference build``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BORDERLINE_PERCENTILE",
    "DEFAULT_HEATMAP_SCALE",
    "HEATMAP_MARGIN",
    "HEATMAP_SMOOTH",
    "MAP_GRID",
    "OUTSIDE_PERCENTILE",
    "READINGS",
    "SHIPPED_NAME",
    "NormativeReference",
    "Placement",
    "ReferenceBuilder",
    "load_reference",
    "place_scored",
    "placement_of",
    "reading_of",
    "reference_for",
]

#: ``heatmap_scale`` of a reference JSON without the field: the shipped reference's (the 99th
#: percentile of the default heat map in the upper-lip skin, in multiples of the face's
#: control-region median, median over the 115 normal reference photos; rebuilt on 2026-12-08 for
#: the third round of issue 25, 9.66 for the second, 12.43 on 2026-12-02). A file built with other
#: score settings is refused before this matters.
DEFAULT_HEATMAP_SCALE = 9.3576155

#: A face less normal than this percent of the reference's normal faces reads "borderline".
BORDERLINE_PERCENTILE = 90.0
#: A face less normal than this percent of them reads "outside the normal range".
OUTSIDE_PERCENTILE = 97.5
#: The three readings, from normal to not.
READINGS = ("within the normal range", "borderline", "outside the normal range")
#: Name of the reference shipped with the package (and of every JSON written before names existed).
SHIPPED_NAME = "cleftscore normal adults"
#: Score columns a reference can describe: the asymmetry method's face-referenced score, or the
#: paper's S (the GAN method's score, and the asymmetry method's with ``--asymmetry-score paper``).
SCORE_KINDS = ("face-referenced", "paper")
#: Side of the grid that holds the normal heat map's spread at each point of the aligned frame.
MAP_GRID = 64
#: The heat map is drawn this far inside the face's outline (intercanthal distances; see
#: :func:`cleftscore.heatmap.face_region`).
HEATMAP_MARGIN = 0.3
#: Gaussian sigma, intercanthal distances, of the smoothing before the map is put in normal units.
HEATMAP_SMOOTH = 0.03
#: The spread at a point never falls below this fraction of ``heatmap_scale`` (a point where every
#: normal face matched its mirror exactly would otherwise make any speck infinitely abnormal).
_SPREAD_FLOOR = 0.1


def reading_of(percentile: float) -> str:
    """The reading of a percentile (the percent of normal faces that score closer to normal).

    Below :data:`BORDERLINE_PERCENTILE` (90): "within the normal range"; from 90 to below
    :data:`OUTSIDE_PERCENTILE` (97.5): "borderline"; from 97.5 on: "outside the normal range".
    """
    p = float(percentile)
    if not (math.isfinite(p) and 0.0 <= p <= 100.0):
        raise ValueError(f"percentile must be in 0..100, got {percentile!r}")
    if p >= OUTSIDE_PERCENTILE:
        return READINGS[2]
    return READINGS[1] if p >= BORDERLINE_PERCENTILE else READINGS[0]


@dataclass(frozen=True)
class Placement:
    """Where one score falls among a reference's normal faces.

    Attributes
    ----------
    percentile : float
        0..100: the percent of the reference's normal faces that score closer to normal
        (50 = a typical normal face; 100 = less normal than every one of them).
    z : float
        ``(median - score) / spread`` with the reference's median and half its 16th-84th
        percentile range: 0 = typical, 1 and 2 = about the 84th and 98th percentile of a normal
        distribution; positive = less normal. Unbounded beyond the reference.
    reading : str
        One of :data:`READINGS` (:func:`reading_of` the percentile).
    reference : str
        The reference's name.
    n : int
        How many normal photos it was built from.
    """

    percentile: float
    z: float
    reading: str
    reference: str
    n: int

    def __post_init__(self) -> None:
        if self.reading not in READINGS:
            raise ValueError(f"reading must be one of {READINGS}, got {self.reading!r}")
        if not (math.isfinite(self.percentile) and 0.0 <= self.percentile <= 100.0):
            raise ValueError(f"percentile must be in 0..100, got {self.percentile!r}")
        if not math.isfinite(self.z):
            raise ValueError(f"z must be finite, got {self.z!r}")

    @property
    def percentile_label(self) -> str:
        """The rounded percentile in words: "2nd percentile", "21st percentile", "11th percentile"."""
        k = round(self.percentile)
        suffix = "th" if k % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
        return f"{k}{suffix} percentile"

    def headline(self) -> str:
        """One line a surgeon reads, e.g. "outside the normal range (less normal than 99 % of 115 normal faces)"."""
        return f"{self.reading} (less normal than {self.percentile:.0f} % of {self.n} normal faces, z = {self.z:+.1f})"


@dataclass(frozen=True)
class NormativeReference:
    """One score's distribution on normal reference photos (statistics only, no photos).

    Attributes
    ----------
    quantiles : tuple of float
        Scores at the percentiles 0, 1, ..., 100 of the reference photos (non-decreasing;
        higher = closer to normal, as every cleftscore score).
    n : int
        How many photos the statistics come from.
    source : str
        Who is in it and how it was made, in words.
    settings : dict
        The settings of the score it was measured with.
    heatmap_scale : float
        The 99th percentile of the heat map inside the scored region, median over the
        reference photos: one unit of normal variation of the map (the pictures show the map
        in these units, up to 2). A JSON without it reads as :data:`DEFAULT_HEATMAP_SCALE`.
    method : str
        The normalizer (``"asymmetry"`` or ``"gan"``).
    score : {"face-referenced", "paper"}
        Which score column.
    name : str
        A short name shown beside every reading (:data:`SHIPPED_NAME` for the shipped one).
    heatmap_spread : tuple of tuples of float, optional
        ``(MAP_GRID, MAP_GRID)``: the 90th percentile over the normal photos of their smoothed
        heat map at each point of the aligned frame (the map's own units). With it the map is
        shown in multiples of the normal variation at each point; without it, in multiples of
        ``heatmap_scale``.
    """

    quantiles: tuple[float, ...]
    n: int
    source: str
    settings: dict
    heatmap_scale: float = DEFAULT_HEATMAP_SCALE
    method: str = "asymmetry"
    score: str = "face-referenced"
    name: str = SHIPPED_NAME
    heatmap_spread: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        q = np.asarray(self.quantiles, dtype=np.float64)
        if q.shape != (101,) or not np.all(np.isfinite(q)) or np.any(np.diff(q) < 0):
            raise ValueError("quantiles must be 101 finite, non-decreasing scores (percentiles 0..100)")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        hs = self.heatmap_scale
        if isinstance(hs, bool) or not isinstance(hs, (int, float)) or not (math.isfinite(hs) and hs > 0):
            raise ValueError(f"heatmap_scale must be a positive number, got {hs!r}")
        object.__setattr__(self, "heatmap_scale", float(hs))
        if self.score not in SCORE_KINDS:
            raise ValueError(f"score must be one of {SCORE_KINDS}, got {self.score!r}")
        if not self.name.strip():
            raise ValueError("a reference needs a name")
        if self.heatmap_spread is not None:
            g = np.asarray(self.heatmap_spread, dtype=np.float64)
            if g.shape != (MAP_GRID, MAP_GRID) or not np.all(np.isfinite(g)) or g.min() < 0:
                raise ValueError(f"heatmap_spread must be a finite, non-negative {MAP_GRID} x {MAP_GRID} grid")
            object.__setattr__(self, "heatmap_spread", tuple(tuple(float(x) for x in row) for row in g))

    @property
    def heatmap_units(self) -> str:
        """What the values of :meth:`in_normal_units` are, for a colour bar."""
        if self.heatmap_spread is not None:
            return "x normal variation (1 = the 90th percentile of normal faces at that point)"
        return "x normal variation (1 = the typical top of a normal face's upper lip)"

    def spread_map(self, size: int) -> np.ndarray:
        """The normal spread at every pixel of a ``(size, size)`` aligned frame (float32, > 0)."""
        import cv2

        floor = np.float32(_SPREAD_FLOOR * self.heatmap_scale)
        if self.heatmap_spread is None:
            return np.full((size, size), np.float32(self.heatmap_scale), np.float32)
        grid = np.asarray(self.heatmap_spread, dtype=np.float32)
        return np.maximum(cv2.resize(grid, (size, size), interpolation=cv2.INTER_LINEAR), floor)

    def in_normal_units(self, heatmap: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """A heat map as it is shown: over the face only, smoothed, in units of normal variation.

        Parameters
        ----------
        heatmap : (S, S) ndarray
            The score's heat map in the aligned frame (>= 0, the units the reference was built in).
        landmarks : (68, 2) ndarray
            The face's landmarks in the same frame.

        Returns
        -------
        (S, S) ndarray of float32
            0 outside :func:`cleftscore.heatmap.face_region`; inside, the map smoothed by
            :data:`HEATMAP_SMOOTH` intercanthal distances and divided by :meth:`spread_map`.
            1 = as different from its mirror as the normal faces at that point (their 90th
            percentile); see :attr:`heatmap_units`.
        """
        from cleftscore.heatmap import face_region, smooth

        hm = np.asarray(heatmap, dtype=np.float32)
        if hm.ndim != 2 or hm.shape[0] != hm.shape[1]:
            raise ValueError(f"heatmap must be a square (S, S) map, got shape {hm.shape}")
        lm = np.asarray(landmarks, dtype=np.float64)
        icd = max(float(np.linalg.norm(lm[42] - lm[39])), 1.0)
        out = smooth(hm, sigma=HEATMAP_SMOOTH * icd) / self.spread_map(hm.shape[0])
        out[~face_region(lm, hm.shape[0], margin=HEATMAP_MARGIN)] = 0.0
        return out.astype(np.float32)

    def fraction_more_symmetric(self, score: float) -> float:
        """Fraction (0..1) of the reference photos that score closer to normal than ``score``.

        ``0.97`` reads "less normal (for the asymmetry score: less symmetric) than 97 % of the
        normal reference photos". Linear between the stored percentiles; 1 below the lowest and
        0 above the highest.
        """
        q = np.asarray(self.quantiles, dtype=np.float64)
        s = float(score)
        if not math.isfinite(s):
            raise ValueError(f"score must be finite, got {score}")
        if s <= q[0]:
            return 1.0
        if s >= q[-1]:
            return 0.0
        pct = (
            float(np.interp(s, q, np.arange(101.0)))
            if np.all(np.diff(q) > 0)
            else float(np.searchsorted(q, s, side="right") - 1)
        )
        return 1.0 - pct / 100.0

    @property
    def spread(self) -> float:
        """Half the 16th-84th percentile range (a standard deviation for normally spread scores)."""
        q = self.quantiles
        return max(0.5 * (q[84] - q[16]), 1e-9)

    def z(self, score: float) -> float:
        """``(median - score) / spread``: 0 = typical, positive = less normal (see :class:`Placement`)."""
        s = float(score)
        if not math.isfinite(s):
            raise ValueError(f"score must be finite, got {score}")
        return (self.quantiles[50] - s) / self.spread

    def place(self, score: float) -> Placement:
        """The score's :class:`Placement` among the reference's normal faces."""
        pct = 100.0 * self.fraction_more_symmetric(score)
        return Placement(percentile=pct, z=self.z(score), reading=reading_of(pct), reference=self.name, n=self.n)

    def describe(self) -> str:
        """One line: name, size and who is in it."""
        return f"{self.name} ({self.n} normal photos, {self.method} method, {self.score} score): {self.source}"

    def check_fits(self, method: str, score: str) -> None:
        """Raise ``ValueError`` when the reference was built for another method or score column."""
        if (self.method, self.score) != (method, score):
            raise ValueError(
                f"the reference '{self.name}' was built for the {self.method} method's {self.score} score; this run "
                f"gives the {method} method's {score} score. Build one with `cleftscore reference build "
                f"NORMAL_PHOTOS --method {method}`"
            )

    @classmethod
    def from_scores(cls, scores: np.ndarray, *, source: str, settings: Any, heatmap_scale: float = DEFAULT_HEATMAP_SCALE,
                    method: str = "asymmetry", score: str = "face-referenced", name: str = SHIPPED_NAME,
                    heatmap_spread: np.ndarray | None = None) -> NormativeReference:  # fmt: skip
        """Percentiles of a set of normal-photo scores (and the heat-map scale measured on them).

        ``settings`` is a settings record with ``to_dict()`` (e.g. ``AsymmetrySettings``) or a dict.
        At least 10 finite scores are needed.
        """
        v = np.asarray(scores, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        if v.size < 10:
            raise ValueError(f"a normative reference needs at least 10 scores, got {v.size}")
        st = dict(settings) if isinstance(settings, Mapping) else settings.to_dict()
        return cls(tuple(float(x) for x in np.percentile(v, np.arange(101))), int(v.size), source, st,
                   float(heatmap_scale), method, score, name,
                   None if heatmap_spread is None else tuple(map(tuple, np.asarray(heatmap_spread).tolist())))  # fmt: skip

    def to_dict(self) -> dict:
        """JSON-ready form (what ``load_reference`` reads)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NormativeReference:
        """Read :meth:`to_dict`'s form; fields written later than the file get their defaults."""
        try:
            return cls(tuple(float(x) for x in d["quantiles"]), int(d["n"]), str(d["source"]), dict(d["settings"]),
                       float(d.get("heatmap_scale", DEFAULT_HEATMAP_SCALE)), str(d.get("method", "asymmetry")),
                       str(d.get("score", "face-referenced")), str(d.get("name", SHIPPED_NAME)),
                       None if d.get("heatmap_spread") is None else tuple(map(tuple, d["heatmap_spread"])))  # fmt: skip
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a normative reference (missing or bad field: {exc})") from exc


class ReferenceBuilder:
    """Gathers a reference from normal photos, one at a time; keeps numbers, never a picture.

    Per photo it keeps the score, the 99th percentile of the heat map in the scored region, and
    the smoothed map averaged down to a :data:`MAP_GRID` x :data:`MAP_GRID` grid (16 x 16 pixel
    cells of a 1024-pixel face); :meth:`build` keeps only their percentiles.

    Parameters
    ----------
    method : str
        The normalizer the photos were scored with.
    score : {"face-referenced", "paper"}
        Which score column.
    """

    def __init__(self, *, method: str, score: str) -> None:
        if score not in SCORE_KINDS:
            raise ValueError(f"score must be one of {SCORE_KINDS}, got {score!r}")
        self.method, self.score = method, score
        self._scores: list[float] = []
        self._tops: list[float] = []
        self._grids: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._scores)

    def add(self, score: float, heatmap: np.ndarray, landmarks: np.ndarray, region: np.ndarray) -> None:
        """One normal photo: its score, its heat map and landmarks (aligned frame) and the scored region."""
        import cv2

        from cleftscore.heatmap import smooth

        s = float(score)
        hm = np.asarray(heatmap, dtype=np.float32)
        reg = np.asarray(region) > 0.5
        if not math.isfinite(s):
            raise ValueError(f"score must be finite, got {score}")
        if hm.ndim != 2 or reg.shape != hm.shape or not reg.any():
            raise ValueError("the heat map and the scored region must be (S, S) maps, the region not empty")
        lm = np.asarray(landmarks, dtype=np.float64)
        icd = max(float(np.linalg.norm(lm[42] - lm[39])), 1.0)
        sm = smooth(hm, sigma=HEATMAP_SMOOTH * icd)
        self._scores.append(s)
        self._tops.append(float(np.percentile(hm[reg], 99)))
        self._grids.append(cv2.resize(sm, (MAP_GRID, MAP_GRID), interpolation=cv2.INTER_AREA))

    def build(self, *, source: str, settings: Any, name: str) -> NormativeReference:
        """The reference of the photos added so far (at least 10)."""
        if len(self) < 10:
            raise ValueError(f"a normative reference needs at least 10 scored normal photos, got {len(self)}")
        spread = np.percentile(np.stack(self._grids), 90, axis=0)
        return NormativeReference.from_scores(np.asarray(self._scores), source=source, settings=settings,
                                              heatmap_scale=float(np.median(self._tops)), method=self.method,
                                              score=self.score, name=name, heatmap_spread=spread)  # fmt: skip


def place_scored(reference: NormativeReference, score: float, heatmap: np.ndarray,
                 landmarks: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:  # fmt: skip
    """The placement measures of one scored face and its map in normal units.

    Returns
    -------
    (dict of str -> Measure, (S, S) ndarray of float32)
        ``reference_percentile`` and ``reference_z`` (see :class:`Placement`; their definitions
        name the reference, its size and the reading's thresholds), and
        :meth:`NormativeReference.in_normal_units` of the map.
    """
    from cleftscore.normalize import Measure

    p = reference.place(score)
    who = f"the reference '{reference.name}' ({reference.n} normal photos)"
    pct = Measure(p.percentile, f"percent of {who} whose score is closer to normal than this photo's (50 = typical); "
                  f"reading: below {BORDERLINE_PERCENTILE:g} within the normal range, {BORDERLINE_PERCENTILE:g} to "
                  f"{OUTSIDE_PERCENTILE:g} borderline, {OUTSIDE_PERCENTILE:g} and above outside the normal range",
                  stage="score")  # fmt: skip
    z = Measure(p.z, f"(median - score) / half the 16th-84th percentile range of {who}: 0 = typical, "
                "positive = less normal, 2 = about the 98th percentile", stage="score")  # fmt: skip
    return {"reference_percentile": pct, "reference_z": z}, reference.in_normal_units(heatmap, landmarks)


def placement_of(measures: Any) -> Placement | None:
    """The :class:`Placement` a record's measures hold (``reference_percentile``, ``reference_z``), or None.

    The reference's name and size are read back from the percentile's definition.
    """
    import re

    def field(m: Any, name: str) -> Any:  # a Measure, or its JSON form as the study stores it
        return m.get(name) if isinstance(m, Mapping) else getattr(m, name, None)

    pct, z = measures.get("reference_percentile"), measures.get("reference_z")
    if pct is None or z is None:
        return None
    try:
        value, zv = min(max(float(field(pct, "value")), 0.0), 100.0), float(field(z, "value"))
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(value) and math.isfinite(zv)):
        return None
    m = re.search(r"the reference '(.+)' \((\d+) normal photos\)", str(field(pct, "definition") or ""))
    name, n = (m.group(1), int(m.group(2))) if m else ("normal reference", 1)
    return Placement(percentile=value, z=zv, reading=reading_of(value), reference=name, n=n)


#: The shipped reference's per-point spread of the heat map, kept beside its JSON (statistics only),
#: as ``relative_spread``: the spread divided by the reference's ``heatmap_scale``.
_SHIPPED_SPREAD = "asymmetry_reference_spread.json"


def load_reference(path: str | None = None) -> NormativeReference:
    """The normative reference shipped with the package, or one written by ``to_dict`` to ``path``.

    Raises
    ------
    ValueError
        The file is not a reference (not JSON, or a field is missing or out of range).
    OSError
        It cannot be read.
    """
    import json
    from importlib import resources

    text = (
        resources.files("cleftscore").joinpath("data", "asymmetry_reference.json").read_text(encoding="utf-8")
        if path is None
        else open(path, encoding="utf-8").read()
    )
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a JSON file ({exc.msg})") from exc
    if not isinstance(d, dict):
        raise ValueError(f"{path}: not a normative reference (a JSON object is expected)")
    spread = resources.files("cleftscore").joinpath("data", _SHIPPED_SPREAD)
    if path is None and "heatmap_spread" not in d and spread.is_file():
        # Kept relative to the map's scale, so a reference rebuilt with a rescaled map stays in step.
        rel = np.asarray(json.loads(spread.read_text(encoding="utf-8"))["relative_spread"], dtype=np.float64)
        d = {**d, "heatmap_spread": (rel * float(d.get("heatmap_scale", DEFAULT_HEATMAP_SCALE))).tolist()}
    return NormativeReference.from_dict(d)


def reference_for(method: str, score: str, path: str | None = None) -> NormativeReference | None:
    """The reference a run places its scores against, or None when there is none for its score.

    ``path`` (``--reference``) is read and must fit the method and score column; without it the
    shipped reference serves the asymmetry method's face-referenced score, and nothing else.

    Raises
    ------
    ValueError
        The file is not a reference, or one for another method or score.
    """
    if path is not None:
        ref = load_reference(path)
        ref.check_fits(method, score)
        return ref
    return load_reference() if (method, score) == ("asymmetry", "face-referenced") else None
