"""The JSON API's request and response models (they make the OpenAPI schema)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["PatientIn", "PatientOut", "VisitIn", "VisitOut", "ScoreOut", "PhotoOut", "VisitDetailOut", "JobPhotoOut", "JobOut",
           "MethodOut", "Problem", "ERRORS"]  # fmt: skip

_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"


class PatientIn(BaseModel):
    code: str = Field(pattern=_CODE_PATTERN, description="Pseudonymous code, never a name.")
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    cleft_type: Literal["lip", "lip-alveolus", "lip-palate", "other"] | None = None
    cleft_side: Literal["left", "right", "bilateral", "median"] | None = None


class PatientOut(BaseModel):
    code: str
    birth_year: int | None
    cleft_type: str | None
    cleft_side: str | None
    visits: int
    photos: int


class VisitIn(BaseModel):
    date: dt.date
    phase: Literal["pre-op", "post-op", "follow-up"]
    procedure: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=2000)


class VisitOut(BaseModel):
    id: int
    patient: str
    date: dt.date
    phase: str
    procedure: str | None
    photos: int
    mean_score: float | None


class ScoreOut(BaseModel):
    id: int
    method: str
    roi: str
    score: float
    settings_key: str
    pictures: dict[str, str]


class PhotoOut(BaseModel):
    id: int
    name: str
    width: int
    height: int
    scores: list[ScoreOut]


class VisitDetailOut(VisitOut):
    photo_list: list[PhotoOut]


class JobPhotoOut(BaseModel):
    name: str
    status: str
    score: float | None
    message: str


class JobOut(BaseModel):
    id: int
    visit_id: int
    method: str
    roi: str
    status: str
    message: str
    created_at: str
    finished: bool
    rerunnable: bool
    photos: list[JobPhotoOut]


class MethodOut(BaseModel):
    name: str
    available: bool
    reason: str


class Problem(BaseModel):
    detail: str | list[str]


ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": Problem}, 404: {"model": Problem}, 409: {"model": Problem}}
