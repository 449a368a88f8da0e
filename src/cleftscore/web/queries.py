"""What the pages show, read from the study in one transaction each, as plain records."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from cleftscore.study.db import Study
from cleftscore.study.models import Photo, Score, Visit
from cleftscore.study.records import find_patient, find_visit, patient_counts, patient_visits

__all__ = ["PatientRow", "VisitRow", "PatientPage", "ScoreView", "PhotoView", "VisitPage", "patients", "patient_page",
           "visit_page", "visit_csv_rows", "visit_csv_columns", "fingerprint", "SCORE_DEFINITION", "EXPLANATIONS",
           "READING_NOTE", "VisitChange", "visit_change"]  # fmt: skip

#: The score's definition as the pages state it (see cleftscore.score.paper).
SCORE_DEFINITION = ("Higher scores mean closer to normal; the heat map shows where the photo differs from its normalized twin, "
                    "on one colour scale for all photos of a run. GAN method: S = -log( sqrt( sum of the eroded heat map over "
                    "the region ) / N ), N = the region's pixel count. Asymmetry method: the face-referenced asymmetry score, "
                    "-0.5 log of the lighting-normalised face-vs-mirror difference over the upper-lip skin relative "
                    "to the same face's cheeks, nose bridge and jaw, plus a term for dark vertical valleys the face has and "
                    "its mirror lacks; it cannot see bilateral clefts.")  # fmt: skip


#: What each score is, in words for the people reading the pages.
EXPLANATIONS = {
    "asymmetry": "Mirror method: the face is compared with its own mirror image. The score is high when the upper "
    "lip looks like its mirror image (as in most faces) and falls as one side differs, for example "
    "with a unilateral cleft. A cleft on both sides can look symmetric and then scores as normal. The "
    "heat map shows where the face differs from its mirror, in multiples of the usual difference in "
    "normal faces at the same place.",
    "gan": "GAN method (the published one): a face model redraws the photo as a face without a cleft; the score is "
    "high when the photo is close to that redrawn face in the chosen region. The heat map shows where they "
    "differ.",
    "paper": "The published score of the face against its redrawn normal version (or its mirror image): higher "
    "means closer to normal. The heat map shows where they differ.",
}
#: How the reading is made, in one line.
READING_NOTE = ("The reading places the score among a reference of normal faces: the percent of them that score "
                "closer to normal (below 90: within the normal range; 90 to 97.5: borderline; 97.5 and above: "
                "outside the normal range).")  # fmt: skip


@dataclass(frozen=True)
class PatientRow:
    code: str
    birth_year: int | None
    cleft_type: str | None
    cleft_side: str | None
    visits: int
    photos: int


@dataclass(frozen=True)
class VisitRow:
    id: int
    date: dt.date
    phase: str
    procedure: str | None
    photos: int
    mean_score: float | None
    methods: tuple[str, ...]


@dataclass(frozen=True)
class PatientPage:
    patient: PatientRow
    visits: tuple[VisitRow, ...]


@dataclass(frozen=True)
class ScoreView:
    id: int
    method: str
    score: float
    roi: str
    settings_key: str
    pictures: dict[str, str]
    measures: dict[str, Any]
    notes: str
    created_at: str
    face_referenced: bool = False

    @property
    def region(self) -> str:
        """The region the score was taken over, as the pages name it."""
        return "upper-lip skin" if self.face_referenced else {"mouth": "mouth and nose", "face": "whole face",
                                                               "full": "whole picture"}.get(self.roi, self.roi)  # fmt: skip

    @property
    def placement(self) -> Any:
        """Where the score falls among the reference's normal faces (:class:`Placement`), or None."""
        from cleftscore.score.reference import placement_of

        return placement_of(self.measures)

    @property
    def explanation(self) -> str:
        """What this score is, in words for its method."""
        return EXPLANATIONS["asymmetry" if self.face_referenced else "gan" if self.method == "gan" else "paper"]

    @property
    def quality(self) -> list[str]:
        """The photo-quality numbers recorded with the score, as short lines."""
        return [f"{k.removeprefix('quality_').replace('_', ' ')}: {float(m.get('value', float('nan'))):.3g}"
                for k, m in self.measures.items() if k.startswith("quality_")]  # fmt: skip


@dataclass(frozen=True)
class PhotoView:
    id: int
    name: str
    width: int
    height: int
    stored_path: str
    scores: tuple[ScoreView, ...]


@dataclass(frozen=True)
class VisitPage:
    id: int
    code: str
    date: dt.date
    phase: str
    procedure: str | None
    note: str | None
    photos: tuple[PhotoView, ...]

    @property
    def mean_score(self) -> float | None:
        values = [p.scores[-1].score for p in self.photos if p.scores]
        return sum(values) / len(values) if values else None


def patients(study: Study, query: str = "") -> list[PatientRow]:
    """Every patient whose code contains ``query`` (case-insensitive), by code."""
    q = query.strip().lower()
    with study.transaction(write=False) as s:
        return [PatientRow(p.code, p.birth_year, p.cleft_type, p.cleft_side, nv, nph)
                for p, nv, nph in patient_counts(s) if q in p.code.lower()]  # fmt: skip


def _score_view(sc: Score) -> ScoreView:
    settings = sc.settings
    roi = str((settings.get("score") or {}).get("roi", ""))
    fr = sc.method == "asymmetry" and (settings.get("score") or {}).get("asymmetry_score") == "face-referenced"
    return ScoreView(sc.id, sc.method, float(sc.score), roi, sc.settings_key, sc.pictures, sc.measures, sc.notes,
                     sc.created_at.isoformat(timespec="seconds"), fr)  # fmt: skip


def patient_page(study: Study, code: str) -> PatientPage:
    """A patient and its visits in date order, each with its photo count and mean score.

    Raises
    ------
    NotFoundError
        Unknown code.
    """
    with study.transaction(write=False) as s:
        p = find_patient(s, code)
        visits = patient_visits(s, p)
        rows = []
        for v in visits:
            latest = [ph.scores[-1] for ph in v.photos if ph.scores]
            mean = sum(sc.score for sc in latest) / len(latest) if latest else None
            rows.append(
                VisitRow(
                    v.id, v.date, v.phase, v.procedure, len(v.photos), mean, tuple(sorted({sc.method for sc in latest}))
                )
            )
        n_photos = sum(r.photos for r in rows)
        return PatientPage(
            PatientRow(p.code, p.birth_year, p.cleft_type, p.cleft_side, len(rows), n_photos), tuple(rows)
        )


def visit_page(study: Study, visit_id: int) -> VisitPage:
    """A visit with its photos and every score of each.

    Raises
    ------
    NotFoundError
        Unknown visit.
    """
    with study.transaction(write=False) as s:
        v = find_visit(s, visit_id)
        photos = list(
            s.scalars(
                select(Photo).where(Photo.visit_id == v.id).order_by(Photo.id).options(selectinload(Photo.scores))
            )
        )
        views = tuple(PhotoView(ph.id, ph.original_name, ph.width, ph.height, ph.stored_path, tuple(_score_view(sc) for sc in ph.scores))
                      for ph in photos)  # fmt: skip
        return VisitPage(v.id, v.patient.code, v.date, v.phase, v.procedure, v.note, views)


#: Columns of a visit's CSV download.
CSV_COLUMNS = ("patient", "visit_id", "date", "phase", "photo_id", "file", "method", "roi", "score", "reading", "settings_key",
               "measures", "notes", "scored_at")  # fmt: skip


def visit_csv_rows(page: VisitPage) -> list[dict[str, Any]]:
    """One row per score of the visit's photos; each measure also in a column of its own (see :func:`visit_csv_columns`)."""
    return [{"patient": page.code, "visit_id": page.id, "date": page.date.isoformat(), "phase": page.phase, "photo_id": ph.id,
             "file": ph.name, "method": sc.method, "roi": sc.roi, "score": sc.score,
             "reading": sc.placement.reading if sc.placement else "", "settings_key": sc.settings_key,
             "measures": json.dumps({k: m.get("value") for k, m in sc.measures.items()}, sort_keys=True), "notes": sc.notes,
             "scored_at": sc.created_at, **{k: m.get("value") for k, m in sc.measures.items() if k not in CSV_COLUMNS}}
            for ph in page.photos for sc in ph.scores]  # fmt: skip


def visit_csv_columns(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """:data:`CSV_COLUMNS`, then one column per measure any of ``rows`` has, in the order first seen."""
    extra = dict.fromkeys(k for r in rows for k in r if k not in CSV_COLUMNS)
    return (*CSV_COLUMNS, *extra)


def fingerprint(study: Study) -> tuple[int, ...]:
    """Changes whenever a visit or score is added or removed (what a timeline is drawn from)."""
    with study.transaction(write=False) as s:
        scores = s.execute(select(func.count(Score.id), func.coalesce(func.max(Score.id), 0))).one()
        visits = s.execute(select(func.count(Visit.id), func.coalesce(func.max(Visit.id), 0))).one()
        return (int(scores[0]), int(scores[1]), int(visits[0]), int(visits[1]))


@dataclass(frozen=True)
class VisitChange:
    """The change of the mean score from one visit to another, with its bootstrap interval.

    ``change`` = mean of the second visit's photos minus the first's (their latest scores);
    positive = closer to normal. ``ci_low``/``ci_high``: 95 % percentile bootstrap over the
    photos of each visit (None with fewer than two photos in either). ``in_normal_units``: the
    same three numbers divided by the reference's spread of normal faces (None without one).
    """

    change: float
    ci_low: float | None
    ci_high: float | None
    n_first: int
    n_second: int
    method: str
    in_normal_units: tuple[float, float | None, float | None] | None
    reference: str


def visit_change(first: VisitPage, second: VisitPage, *, n_boot: int = 2000, seed: int = 0,
                 reference_for: Any = None) -> VisitChange | None:  # fmt: skip
    """The change from ``first`` to ``second`` of the photos scored with one method (None when none is shared).

    ``reference_for(method, score)`` gives the reference of the change's normal units (default: the shipped ones).
    """
    import numpy as np

    if reference_for is None:
        from cleftscore.score.reference import reference_for

    def latest(page: VisitPage) -> dict[str, list[ScoreView]]:
        out: dict[str, list[ScoreView]] = {}
        for ph in page.photos:
            if ph.scores:
                sc = ph.scores[-1]
                out.setdefault(f"{sc.method}/{sc.face_referenced}", []).append(sc)
        return out

    a, b = latest(first), latest(second)
    shared = sorted(set(a) & set(b), key=lambda k: -(len(a[k]) + len(b[k])))
    if not shared:
        return None
    xa = np.array([sc.score for sc in a[shared[0]]])
    xb = np.array([sc.score for sc in b[shared[0]]])
    change = float(xb.mean() - xa.mean())
    lo = hi = None
    if xa.size > 1 and xb.size > 1:
        rng = np.random.default_rng(seed)
        boot = rng.choice(xb, (n_boot, xb.size)).mean(axis=1) - rng.choice(xa, (n_boot, xa.size)).mean(axis=1)
        lo, hi = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    sc = a[shared[0]][0]
    ref = reference_for(sc.method, "face-referenced" if sc.face_referenced else "paper")
    units = None
    if ref is not None:
        units = (change / ref.spread, None if lo is None else lo / ref.spread, None if hi is None else hi / ref.spread)
    return VisitChange(change, lo, hi, int(xa.size), int(xb.size), sc.method, units, ref.name if ref else "")
