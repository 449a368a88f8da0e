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
           "visit_page", "visit_csv_rows", "visit_csv_columns", "fingerprint", "SCORE_DEFINITION"]  # fmt: skip

#: The score's definition as the pages state it (see cleftscore.score.paper).
SCORE_DEFINITION = ("Higher scores mean closer to normal; the heat map shows where the photo differs from its normalized twin, "
                    "on one colour scale for all photos of a run. GAN method: S = -log( sqrt( sum of the eroded heat map over "
                    "the region ) / N ), N = the region's pixel count. Asymmetry method: the face-referenced asymmetry score, "
                    "-0.5 log of the lighting-normalised face-vs-mirror difference over the upper-lip skin relative "
                    "to the same face's cheeks, nose bridge and jaw, plus a term for dark vertical valleys the face has and "
                    "its mirror lacks; it cannot see bilateral clefts.")  # fmt: skip


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
        return "upper-lip skin" if self.face_referenced else self.roi


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
CSV_COLUMNS = ("patient", "visit_id", "date", "phase", "photo_id", "file", "method", "roi", "score", "settings_key",
               "measures", "notes", "scored_at")  # fmt: skip


def visit_csv_rows(page: VisitPage) -> list[dict[str, Any]]:
    """One row per score of the visit's photos; each measure also in a column of its own (see :func:`visit_csv_columns`)."""
    return [{"patient": page.code, "visit_id": page.id, "date": page.date.isoformat(), "phase": page.phase, "photo_id": ph.id,
             "file": ph.name, "method": sc.method, "roi": sc.roi, "score": sc.score, "settings_key": sc.settings_key,
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
