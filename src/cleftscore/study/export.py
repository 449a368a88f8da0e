"""CSV export of every table of a study, with the run folders' spreadsheet-safe cells.

Cells are written by :func:`cleftscore.report.write_csv` (the writer of the run folders'
``scores.csv``): UTF-8 with BOM, and text that a spreadsheet would run as a formula gets a
leading apostrophe. Each file is written under a temporary name and renamed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cleftscore.study.db import Study
from cleftscore.study.models import Patient, Photo, Score, Visit

__all__ = ["export_tables", "TABLES"]

TABLES = ("patients", "visits", "photos", "scores")


def _rows(study: Study) -> dict[str, list[dict[str, Any]]]:
    with study.transaction(write=False) as s:
        patients = list(s.scalars(select(Patient).order_by(Patient.id)))
        code = {p.id: p.code for p in patients}
        visits = list(s.scalars(select(Visit).order_by(Visit.id)))
        visit_patient = {v.id: code[v.patient_id] for v in visits}
        photos = list(s.scalars(select(Photo).order_by(Photo.id)))
        photo_visit = {p.id: p.visit_id for p in photos}
        scores = list(s.scalars(select(Score).order_by(Score.id)))
        return {
            "patients": [{"patient_id": p.id, "code": p.code, "birth_year": p.birth_year, "cleft_type": p.cleft_type,
                          "cleft_side": p.cleft_side, "created_at": p.created_at.isoformat()} for p in patients],
            "visits": [{"visit_id": v.id, "patient": visit_patient[v.id], "date": v.date.isoformat(), "phase": v.phase,
                        "procedure": v.procedure, "note": v.note, "created_at": v.created_at.isoformat()} for v in visits],
            "photos": [{"photo_id": p.id, "visit_id": p.visit_id, "patient": visit_patient[p.visit_id], "sha256": p.sha256,
                        "original_name": p.original_name, "stored_path": p.stored_path, "stored_sha256": p.stored_sha256,
                        "width": p.width, "height": p.height, "imported_at": p.imported_at.isoformat()} for p in photos],
            "scores": [{"score_id": c.id, "photo_id": c.photo_id, "visit_id": photo_visit[c.photo_id],
                        "patient": visit_patient[photo_visit[c.photo_id]], "method": c.method, "score": c.score,
                        "settings_key": c.settings_key, "settings": json.loads(c.settings_json),
                        "measures": json.loads(c.measures_json), "pictures": json.loads(c.pictures_json),
                        "normalization": json.loads(c.normalization_json), "environment": json.loads(c.environment_json),
                        "notes": c.notes, "cleftscore_version": c.cleftscore_version,
                        "created_at": c.created_at.isoformat()} for c in scores],
        }  # fmt: skip


def export_tables(study: Study, out_dir: str | Path) -> list[Path]:
    """Write ``patients.csv``, ``visits.csv``, ``photos.csv`` and ``scores.csv`` into ``out_dir``.

    All four are read in one transaction, so they agree with each other. Settings, measures,
    pictures, normalizer record and environment of a score are JSON text cells.

    Returns
    -------
    list of Path
        The written files.
    """
    from cleftscore.report import write_csv

    out = Path(out_dir)
    rows = _rows(study)
    return [write_csv(out / f"{name}.csv", rows[name]) for name in TABLES]
