"""What ``cleftscore study patients`` and ``study show`` print, as plain rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cleftscore.study.db import Study
from cleftscore.study.records import find_patient, patient_counts, patient_visits

__all__ = ["PatientDetail", "VisitDetail", "patient_list", "patient_detail"]


@dataclass(frozen=True)
class VisitDetail:
    """One visit's heading and a row (photo id, file, method, score) per score or unscored photo."""

    heading: str
    rows: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class PatientDetail:
    """A patient's header line and visits in date order."""

    header: str
    visits: tuple[VisitDetail, ...]


def patient_list(study: Study) -> list[tuple[Any, ...]]:
    """(code, birth year, cleft type, side, visits, photos) for every patient, by code."""
    with study.transaction(write=False) as s:
        return [(p.code, p.birth_year, p.cleft_type, p.cleft_side, nv, nph) for p, nv, nph in patient_counts(s)]


def patient_detail(study: Study, code: str) -> PatientDetail:
    """The patient's visits, photos and scores.

    Raises
    ------
    NotFoundError
        Unknown code.
    """
    with study.transaction(write=False) as s:
        p = find_patient(s, code)
        visits = patient_visits(s, p)
        facts = [f"born {p.birth_year}" if p.birth_year else "", p.cleft_type or "", p.cleft_side or ""]
        header = f"patient {p.code}" + "".join(f", {f}" for f in facts if f) + f": {len(visits)} visit(s)"
        out = []
        for v in visits:
            heading = f"visit {v.id}: {v.date.isoformat()} {v.phase}" + (f", {v.procedure}" if v.procedure else "")
            rows: list[tuple[Any, ...]] = []
            for ph in v.photos:
                rows.extend((ph.id, ph.original_name, sc.method, f"{sc.score:.4f}") for sc in ph.scores)
                if not ph.scores:
                    rows.append((ph.id, ph.original_name, None, None))
            out.append(VisitDetail(heading=heading, rows=tuple(rows)))
        return PatientDetail(header=header, visits=tuple(out))
