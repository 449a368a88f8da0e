"""CSV export of every table of a study, with the run folders' spreadsheet-safe cells.

Cells are written by :func:`cleftscore.report.writers.write_csv` (the writer of the run folders'
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

__all__ = ["export_tables", "COLUMNS"]

#: Table -> its CSV columns (an empty table still gets its header).
COLUMNS: dict[str, tuple[str, ...]] = {
    "patients": ("patient_id", "code", "birth_year", "cleft_type", "cleft_side", "created_at"),
    "visits": ("visit_id", "patient", "date", "phase", "procedure", "note", "created_at"),
    "photos": ("photo_id", "visit_id", "patient", "sha256", "original_name", "stored_path", "stored_sha256", "width",
               "height", "imported_at"),
    "scores": ("score_id", "photo_id", "visit_id", "patient", "method", "score", "settings_key", "settings", "measures",
               "pictures", "normalization", "environment", "notes", "cleftscore_version", "created_at"),
}  # fmt: skip


def _values(study: Study) -> dict[str, list[tuple[Any, ...]]]:
    with study.transaction(write=False) as s:
        patients = list(s.scalars(select(Patient).order_by(Patient.id)))
        code = {p.id: p.code for p in patients}
        visits = list(s.scalars(select(Visit).order_by(Visit.id)))
        of_visit = {v.id: code[v.patient_id] for v in visits}
        photos = list(s.scalars(select(Photo).order_by(Photo.id)))
        visit_of = {p.id: p.visit_id for p in photos}
        scores = list(s.scalars(select(Score).order_by(Score.id)))
        return {
            "patients": [(p.id, p.code, p.birth_year, p.cleft_type, p.cleft_side, p.created_at.isoformat()) for p in patients],
            "visits": [(v.id, of_visit[v.id], v.date.isoformat(), v.phase, v.procedure, v.note, v.created_at.isoformat()) for v in visits],
            "photos": [(p.id, p.visit_id, of_visit[p.visit_id], p.sha256, p.original_name, p.stored_path, p.stored_sha256,
                        p.width, p.height, p.imported_at.isoformat()) for p in photos],
            "scores": [(c.id, c.photo_id, visit_of[c.photo_id], of_visit[visit_of[c.photo_id]], c.method, c.score, c.settings_key,
                        json.loads(c.settings_json), json.loads(c.measures_json), json.loads(c.pictures_json),
                        json.loads(c.normalization_json), json.loads(c.environment_json), c.notes, c.cleftscore_version,
                        c.created_at.isoformat()) for c in scores],
        }  # fmt: skip


def export_tables(study: Study, out_dir: str | Path) -> list[Path]:
    """Write ``patients.csv``, ``visits.csv``, ``photos.csv`` and ``scores.csv`` into ``out_dir``.

    All four are read in one transaction, so they agree with each other. Settings, measures,
    pictures, normalizer record and environment of a score are JSON text cells; each measure is
    also a column of its own in ``scores.csv``, after the fixed columns.

    Returns
    -------
    list of Path
        The written files.
    """
    from cleftscore.report.writers import write_csv

    out = Path(out_dir)
    values = _values(study)
    tables = {name: [dict(zip(cols, row, strict=True)) for row in values[name]] for name, cols in COLUMNS.items()}
    # Each measure also gets a column of its own in scores.csv (a spreadsheet cannot read into the JSON cell).
    extra = dict.fromkeys(k for r in tables["scores"] for k in r["measures"] if k not in COLUMNS["scores"])
    for r in tables["scores"]:
        r.update({k: m.get("value") for k, m in r["measures"].items() if k in extra and isinstance(m, dict)})
    columns = {**COLUMNS, "scores": (*COLUMNS["scores"], *extra)}
    return [write_csv(out / f"{name}.csv", tables[name], columns=columns[name]) for name in COLUMNS]
