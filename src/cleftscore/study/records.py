"""Patients and visits: adding them and finding them by code or id."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select

from cleftscore.study.db import NotFoundError, Study, StudyError
from cleftscore.study.models import CLEFT_SIDES, CLEFT_TYPES, PHASES, Patient, Photo, Visit

__all__ = [
    "add_patient",
    "add_visit",
    "find_patient",
    "find_visit",
    "patient_counts",
    "patient_visits",
    "validate_code",
]

_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


def validate_code(code: str) -> str:
    """Check a pseudonymous patient code: 1-32 letters, digits, ``-`` or ``_``, no spaces.

    Raises
    ------
    StudyError
        For anything else (a space usually means a name was typed).
    """
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        raise StudyError(
            f"patient code {code!r} is not allowed: use a pseudonymous code of 1-32 letters, digits, - or _ "
            "(no spaces, never the patient's name), e.g. P001"
        )
    return code


def _choice(name: str, value: str | None, allowed: Sequence[str]) -> str | None:
    if value is not None and value not in allowed:
        raise StudyError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def add_patient(study: Study, code: str, *, birth_year: int | None = None, cleft_type: str | None = None,
                cleft_side: str | None = None) -> Patient:  # fmt: skip
    """Add a patient by pseudonymous code.

    Raises
    ------
    StudyError
        Bad code, birth year, cleft type or side, or a code already in the study.
    """
    validate_code(code)
    this_year = dt.date.today().year
    if birth_year is not None and not 1900 <= birth_year <= this_year:
        raise StudyError(f"birth year must be between 1900 and {this_year}, got {birth_year}")
    _choice("cleft type", cleft_type, CLEFT_TYPES)
    _choice("cleft side", cleft_side, CLEFT_SIDES)
    with study.transaction() as s:
        # Compared without regard to case: P001 and p001 on two forms are one child.
        same = s.scalar(select(Patient).where(func.lower(Patient.code) == code.lower()))
        if same is not None:
            also = "" if same.code == code else f" as {same.code} (codes are the same whatever their case)"
            raise StudyError(f"patient {code} is already in the study{also} ({study.path})")
        patient = Patient(code=code, birth_year=birth_year, cleft_type=cleft_type, cleft_side=cleft_side)
        s.add(patient)
    return patient


def find_patient(session: Any, code: str) -> Patient:
    """The patient with this code (its exact case first, else any case), or :class:`NotFoundError`."""
    patient = session.scalar(select(Patient).where(Patient.code == code))
    if patient is None:  # codes are one whatever their case (p001 finds P001)
        patient = session.scalars(select(Patient).where(func.lower(Patient.code) == code.lower())).first()
    if patient is None:
        raise NotFoundError(
            f"no patient {code!r} in the study; `cleftscore study patients` lists them, `study add-patient` adds one"
        )
    return patient


def patient_visits(session: Any, patient: Patient) -> list[Visit]:
    """The patient's visits in date order, with their photos and scores loaded."""
    from sqlalchemy.orm import selectinload

    query = (select(Visit).where(Visit.patient_id == patient.id).order_by(Visit.date, Visit.id)
             .options(selectinload(Visit.photos).selectinload(Photo.scores)))  # fmt: skip
    return list(session.scalars(query))


def patient_counts(session: Any) -> list[tuple[Patient, int, int]]:
    """Every patient by code, with its number of visits and of photos (two grouped queries)."""
    visits = dict(session.execute(select(Visit.patient_id, func.count()).group_by(Visit.patient_id)).all())
    photos = dict(
        session.execute(select(Visit.patient_id, func.count(Photo.id)).join(Photo).group_by(Visit.patient_id)).all()
    )
    return [
        (p, visits.get(p.id, 0), photos.get(p.id, 0)) for p in session.scalars(select(Patient).order_by(Patient.code))
    ]


def find_visit(session: Any, visit_id: int) -> Visit:
    """The visit with this id, or :class:`NotFoundError`."""
    visit = session.get(Visit, visit_id)
    if visit is None:
        raise NotFoundError(f"no visit {visit_id} in the study; `cleftscore study show CODE` lists a patient's visits")
    return visit


def add_visit(study: Study, code: str, *, date: dt.date, phase: str, procedure: str | None = None,
              note: str | None = None) -> Visit:  # fmt: skip
    """Add a visit of a patient.

    Raises
    ------
    StudyError
        Unknown patient, or a phase other than pre-op, post-op, follow-up.
    """
    _choice("phase", phase, PHASES)
    with study.transaction() as s:
        patient = find_patient(s, code)
        visit = Visit(patient_id=patient.id, date=date, phase=phase, procedure=procedure, note=note)
        s.add(visit)
    return visit
