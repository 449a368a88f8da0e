"""Tables of the study database, as SQLAlchemy 2 declarative models (the newest schema).

The migrations in ``migrations/versions`` build exactly these tables; a test compares them.
There is deliberately no column for a name: a patient is known by a pseudonymous code.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = ["Base", "Patient", "Visit", "Photo", "Score", "PHASES", "CLEFT_SIDES", "CLEFT_TYPES"]

#: Visit phases, in the order of care.
PHASES = ("pre-op", "post-op", "follow-up")
CLEFT_SIDES = ("left", "right", "bilateral", "median")
CLEFT_TYPES = ("lip", "lip-alveolus", "lip-palate", "other")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    birth_year: Mapped[int | None] = mapped_column(Integer)
    cleft_type: Mapped[str | None] = mapped_column(String(16))
    cleft_side: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    visits: Mapped[list[Visit]] = relationship(back_populates="patient", order_by="Visit.date")


class Visit(Base):
    __tablename__ = "visits"
    __table_args__ = (
        CheckConstraint("phase IN ('pre-op', 'post-op', 'follow-up')", name="ck_visits_phase"),
        Index("ix_visits_patient_date", "patient_id", "date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    date: Mapped[dt.date] = mapped_column(Date)
    phase: Mapped[str] = mapped_column(String(16))
    procedure: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    patient: Mapped[Patient] = relationship(back_populates="visits")
    photos: Mapped[list[Photo]] = relationship(back_populates="visit", order_by="Photo.id")


class Photo(Base):
    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)  # of the original file's bytes
    original_name: Mapped[str] = mapped_column(String(400))
    stored_path: Mapped[str] = mapped_column(String(200))  # relative to the study's file folder
    stored_sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    visit: Mapped[Visit] = relationship(back_populates="photos")
    scores: Mapped[list[Score]] = relationship(back_populates="photo", order_by="Score.id")


class Score(Base):
    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("photo_id", "settings_key", name="uq_scores_photo_settings"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id"))
    method: Mapped[str] = mapped_column(String(32))
    settings_key: Mapped[str] = mapped_column(String(64))  # sha256 of the canonical settings JSON
    settings_json: Mapped[str] = mapped_column(Text)
    score: Mapped[float] = mapped_column(Float)
    pictures_json: Mapped[str] = mapped_column(Text)  # picture name -> stored path
    normalization_json: Mapped[str] = mapped_column(Text)
    environment_json: Mapped[str] = mapped_column(Text)
    notes: Mapped[str] = mapped_column(Text, default="")
    cleftscore_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # Added by revision 0002.
    measures_json: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")

    photo: Mapped[Photo] = relationship(back_populates="scores")

    @property
    def settings(self) -> dict[str, Any]:
        return json.loads(self.settings_json)

    @property
    def pictures(self) -> dict[str, str]:
        return json.loads(self.pictures_json)

    @property
    def measures(self) -> dict[str, Any]:
        return json.loads(self.measures_json)


# Rater surveys (revision 0004): photos of the study rated blind by a panel of pseudonymous raters.
__all__ += ["Survey", "SurveyItem", "SurveyRater", "SurveyRating"]


class Survey(Base):
    __tablename__ = "surveys"
    __table_args__ = (
        CheckConstraint("scale_min < scale_max", name="ck_surveys_scale"),
        CheckConstraint("repeat_fraction >= 0 AND repeat_fraction <= 1", name="ck_surveys_repeat_fraction"),
        CheckConstraint("higher_is IN ('normal', 'abnormal')", name="ck_surveys_higher_is"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200), unique=True)
    scale_min: Mapped[int] = mapped_column(Integer)
    scale_max: Mapped[int] = mapped_column(Integer)
    anchors_json: Mapped[str] = mapped_column(Text)  # rating value -> anchor words
    higher_is: Mapped[str] = mapped_column(String(16))
    repeat_fraction: Mapped[float] = mapped_column(Float)
    seed: Mapped[int] = mapped_column(Integer)
    crop: Mapped[str] = mapped_column(String(16))
    instructions: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    items: Mapped[list[SurveyItem]] = relationship(back_populates="survey", order_by="SurveyItem.position")
    raters: Mapped[list[SurveyRater]] = relationship(back_populates="survey", order_by="SurveyRater.id")


class SurveyItem(Base):
    __tablename__ = "survey_items"
    __table_args__ = (UniqueConstraint("survey_id", "photo_id", name="uq_survey_items_photo"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id"))
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id"))
    position: Mapped[int] = mapped_column(Integer)
    # The part of the stored photo a rater sees: (left, top, right, bottom) in pixels.
    crop_left: Mapped[int] = mapped_column(Integer)
    crop_top: Mapped[int] = mapped_column(Integer)
    crop_right: Mapped[int] = mapped_column(Integer)
    crop_bottom: Mapped[int] = mapped_column(Integer)

    survey: Mapped[Survey] = relationship(back_populates="items")
    photo: Mapped[Photo] = relationship()


class SurveyRater(Base):
    __tablename__ = "survey_raters"
    __table_args__ = (UniqueConstraint("survey_id", "code", name="uq_survey_raters_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id"))
    code: Mapped[str] = mapped_column(String(32))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)  # the invitation token itself is never stored
    seed: Mapped[int] = mapped_column(Integer)
    order_json: Mapped[str] = mapped_column(Text)  # survey item ids in the order shown, repeats included
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    submitted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    survey: Mapped[Survey] = relationship(back_populates="raters")
    ratings: Mapped[list[SurveyRating]] = relationship(back_populates="rater", order_by="SurveyRating.position")

    @property
    def order(self) -> list[int]:
        return [int(i) for i in json.loads(self.order_json)]


class SurveyRating(Base):
    __tablename__ = "survey_ratings"
    __table_args__ = (UniqueConstraint("rater_id", "position", name="uq_survey_ratings_position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("survey_raters.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("survey_items.id"))
    position: Mapped[int] = mapped_column(Integer)  # index in the rater's order
    repeat: Mapped[bool] = mapped_column(Boolean)  # a second showing of the photo, for intra-rater agreement
    rating: Mapped[int] = mapped_column(Integer)
    rated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    rater: Mapped[SurveyRater] = relationship(back_populates="ratings")
    item: Mapped[SurveyItem] = relationship()


# Landmark corrections (revision 0005): points a user moved or added on a photo, each edit kept.
__all__ += ["LandmarkCorrection"]


class LandmarkCorrection(Base):
    __tablename__ = "landmark_corrections"
    __table_args__ = (Index("ix_landmark_corrections_photo", "photo_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id"))
    edit_json: Mapped[str] = mapped_column(Text)  # LandmarkEdit.to_json(): the points in the photo's pixels
    previous_json: Mapped[str] = mapped_column(Text)  # the 68 positions and the scores it replaced
    source: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
