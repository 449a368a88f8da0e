"""Rater surveys: photos of the study rated blind, one at a time, by a panel of pseudonymous raters.

A survey is a set of the study's photos (:class:`PhotoSelection`: by visit, phase, patient or
folder), a rating scale (:class:`RatingScale`; the paper's 1-7 by default) and its raters. Each
rater gets one invitation link (:func:`invite_raters`): a random token, kept in the database only
as its SHA-256, that opens that rater's page of that survey and nothing else. A rater sees the
photos in an order drawn for them from a recorded seed, then a stated fraction of them again (the
repeats, for intra-rater agreement); can stop and come back; and after submitting can change
nothing (:func:`record_rating`, :func:`submit`).

What a rater is shown of a photo (:func:`rater_photo`) is the stored copy (EXIF already dropped
when it was stored) cropped around the face, encoded again from its pixels alone: no metadata,
no file name, no patient code, no score.

Reliability and agreement with the machine scores are in :mod:`cleftscore.study.survey_report`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from cleftscore.study.db import NotFoundError, Study, StudyError
from cleftscore.study.models import (
    PHASES,
    Patient,
    Photo,
    Survey,
    SurveyItem,
    SurveyRater,
    SurveyRating,
    Visit,
    utcnow,
)

__all__ = [
    "CROPS",
    "PAPER_SCALE",
    "Invitation",
    "PhotoSelection",
    "RaterState",
    "RatingScale",
    "SurveyClosedError",
    "SurveyInfo",
    "SurveyStatus",
    "RaterProgress",
    "close_survey",
    "create_survey",
    "find_survey",
    "invite_raters",
    "parse_scale",
    "rater_order",
    "rater_photo",
    "rater_state",
    "record_rating",
    "submit",
    "survey_status",
    "token_sha256",
]

#: How a rater's picture is cut from the stored photo: around the detected face, or whole.
CROPS = ("face", "whole")
#: Longest side of the picture a rater is shown, in pixels.
MAX_SIDE = 1024
_RATER_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


class SurveyClosedError(StudyError):
    """A rating sent after the rater submitted, or after the survey was closed."""


@dataclass(frozen=True)
class RatingScale:
    """A rating scale: whole points from ``minimum`` to ``maximum``, some with anchor words.

    Parameters
    ----------
    minimum, maximum : int
        The lowest and highest rating (``minimum < maximum``, at most 21 points).
    anchors : mapping of int to str
        Words shown at some points, e.g. ``{1: "most abnormal", 7: "almost normal"}``.
    higher_is : {"normal", "abnormal"}
        What a higher rating means (as in ``cleftscore evaluate --higher-is``).
    """

    minimum: int = 1
    maximum: int = 7
    anchors: Mapping[int, str] = field(default_factory=lambda: {1: "most abnormal", 7: "almost normal"})
    higher_is: str = "normal"

    def __post_init__(self) -> None:
        if not (isinstance(self.minimum, int) and isinstance(self.maximum, int)) or self.minimum >= self.maximum:
            raise ValueError(
                f"a rating scale needs whole numbers minimum < maximum, got {self.minimum}..{self.maximum}"
            )
        if self.maximum - self.minimum > 20:
            raise ValueError(f"a rating scale has at most 21 points, got {self.minimum}..{self.maximum}")
        outside = [k for k in self.anchors if not self.minimum <= int(k) <= self.maximum]
        if outside:
            raise ValueError(f"anchor(s) at {outside} are outside the scale {self.minimum}..{self.maximum}")
        if any(not str(w).strip() or len(str(w)) > 60 for w in self.anchors.values()):
            raise ValueError("anchor words must be 1-60 characters")
        if self.higher_is not in ("normal", "abnormal"):
            raise ValueError(f"higher_is must be 'normal' or 'abnormal', got {self.higher_is!r}")

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(range(self.minimum, self.maximum + 1))

    def anchor(self, value: int) -> str:
        return str(self.anchors.get(value, ""))


#: The paper's scale: 1 = most abnormal ... 7 = almost normal.
PAPER_SCALE = RatingScale()


def parse_scale(text: str, *, higher_is: str = "normal") -> RatingScale:
    """A scale from its command-line form: ``"1-7"`` or ``"1-5:1=severe,5=none"``.

    Raises
    ------
    ValueError
        Anything else, with the expected form in the message.
    """
    m = re.fullmatch(r"\s*(-?\d+)\s*-\s*(-?\d+)\s*(?::(.*))?", text)
    if m is None:
        raise ValueError(f"scale {text!r}: write it as MIN-MAX, optionally with anchors, e.g. 1-5:1=severe,5=none")
    anchors: dict[int, str] = {}
    for part in (m.group(3) or "").split(","):
        if not part.strip():
            continue
        key, sep, words = part.partition("=")
        if not sep or not key.strip().lstrip("-").isdigit():
            raise ValueError(f"scale {text!r}: anchor {part!r} must be VALUE=words, e.g. 1=severe")
        anchors[int(key)] = words.strip()
    lo, hi = int(m.group(1)), int(m.group(2))
    if not anchors and (lo, hi) == (PAPER_SCALE.minimum, PAPER_SCALE.maximum):
        anchors = dict(PAPER_SCALE.anchors)
    return RatingScale(lo, hi, anchors, higher_is)


def _scale_of(survey: Survey) -> RatingScale:
    anchors = {int(k): str(v) for k, v in json.loads(survey.anchors_json).items()}
    return RatingScale(survey.scale_min, survey.scale_max, anchors, survey.higher_is)


@dataclass(frozen=True)
class PhotoSelection:
    """Which of the study's photos a survey shows.

    Visits, patients and a folder each add their photos (all the study's photos when none is
    given); ``phases`` then keeps only photos of visits in those phases.

    Parameters
    ----------
    visits : tuple of int
        Visit ids.
    patients : tuple of str
        Patient codes.
    phases : tuple of str
        ``pre-op``, ``post-op`` or ``follow-up``.
    folder : Path or None
        A folder of photo files already in the study (matched by content, not by name).
    """

    visits: tuple[int, ...] = ()
    patients: tuple[str, ...] = ()
    phases: tuple[str, ...] = ()
    folder: Path | None = None

    def __post_init__(self) -> None:
        bad = [p for p in self.phases if p not in PHASES]
        if bad:
            raise ValueError(f"phase(s) {bad} unknown; use {', '.join(PHASES)}")


def _folder_hashes(folder: Path) -> dict[str, str]:
    from cleftscore.paths import sha256_file

    if not folder.is_dir():
        raise StudyError(f"{folder}: not a folder of photos")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return {sha256_file(p): p.name for p in files}


def _selected_photos(session: Any, selection: PhotoSelection) -> list[Photo]:
    from sqlalchemy.orm import joinedload

    query = (select(Photo).join(Visit).join(Patient).order_by(Patient.code, Visit.date, Photo.id)
             .options(joinedload(Photo.visit).joinedload(Visit.patient)))  # fmt: skip
    photos = list(session.scalars(query))
    chosen: dict[int, Photo] = {}
    if not (selection.visits or selection.patients or selection.folder):
        chosen = {p.id: p for p in photos}
    for visit_id in selection.visits:
        found = [p for p in photos if p.visit_id == visit_id]
        if session.get(Visit, visit_id) is None:
            raise NotFoundError(f"no visit {visit_id} in the study")
        chosen.update((p.id, p) for p in found)
    for code in selection.patients:
        found = [p for p in photos if p.visit.patient.code == code]
        if not found:
            raise NotFoundError(f"patient {code!r} has no photos in the study")
        chosen.update((p.id, p) for p in found)
    if selection.folder is not None:
        hashes = _folder_hashes(Path(selection.folder))
        by_sha = {p.sha256: p for p in photos}
        missing = [name for h, name in hashes.items() if h not in by_sha]
        if missing:
            raise StudyError(
                f"{len(missing)} photo(s) of {selection.folder} are not in the study (e.g. {missing[0]}); "
                "import them into a visit first (`cleftscore study score` or `study import`)"
            )
        chosen.update((by_sha[h].id, by_sha[h]) for h in hashes)
    kept = [p for p in chosen.values() if not selection.phases or p.visit.phase in selection.phases]
    return sorted(kept, key=lambda p: p.id)


def _face_crop(image: np.ndarray, crop: str) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the part a rater sees: a square about twice the face, or the whole photo."""
    h, w = image.shape[:2]
    if crop == "whole":
        return (0, 0, w, h)
    from cleftscore.face.detect import detect_faces

    boxes = detect_faces(image, detector="hog") or detect_faces(image, detector="haar")
    if not boxes:
        return (0, 0, w, h)
    b = boxes[0]
    cx, cy = (b.left + b.right) / 2.0, (b.top + b.bottom) / 2.0
    half = max(b.right - b.left, b.bottom - b.top)  # a square twice the box: forehead to chin, ear to ear
    left, top = max(0, math.floor(cx - half)), max(0, math.floor(cy - half))
    right, bottom = min(w, math.ceil(cx + half)), min(h, math.ceil(cy + half))
    return (left, top, right, bottom)


def _stored_image(study: Study, photo: Photo) -> np.ndarray:
    from cleftscore.io import load_image

    return load_image(study.files / photo.stored_path)


@dataclass(frozen=True)
class SurveyInfo:
    """A survey as created: its id, title, number of photos, scale and seed."""

    id: int
    title: str
    n_photos: int
    scale: RatingScale
    repeat_fraction: float
    seed: int


def create_survey(
    study: Study,
    title: str,
    selection: PhotoSelection,
    *,
    scale: RatingScale = PAPER_SCALE,
    repeat_fraction: float = 0.2,
    crop: str = "face",
    seed: int | None = None,
    instructions: str = "",
) -> SurveyInfo:
    """Make a survey of the selected photos.

    Parameters
    ----------
    study : Study
    title : str
        Unique title (1-200 characters); raters see it.
    selection : PhotoSelection
    scale : RatingScale
        Default: the paper's 1-7 (1 most abnormal, 7 almost normal).
    repeat_fraction : float
        Fraction of the photos each rater rates a second time at the end, in [0, 1].
    crop : {"face", "whole"}
        What a rater sees: a square around the detected face (the whole photo when none is
        found), or the whole photo.
    seed : int, optional
        Seed of every rater's order; drawn at random and recorded when not given.
    instructions : str
        Shown to raters above the first photo.

    Returns
    -------
    SurveyInfo

    Raises
    ------
    StudyError
        A title in use, fewer than 2 photos selected, unknown visits, patients or folder photos.
    ValueError
        Bad options.
    """
    title = title.strip()
    if not 1 <= len(title) <= 200:
        raise ValueError("a survey title needs 1-200 characters")
    if not 0.0 <= repeat_fraction <= 1.0:
        raise ValueError(f"repeat_fraction must be in [0, 1], got {repeat_fraction!r}")
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
    seed = secrets.randbits(31) if seed is None else int(seed)
    with study.transaction(write=False) as s:
        if s.scalar(select(Survey.id).where(Survey.title == title)) is not None:
            raise StudyError(f"there is already a survey titled {title!r}")
        photos = _selected_photos(s, selection)
    if len(photos) < 2:
        raise StudyError(f"the selection holds {len(photos)} photo(s); a survey needs at least 2")
    crops = {p.id: _face_crop(_stored_image(study, p), crop) for p in photos}  # before the write lock
    with study.transaction() as s:
        if s.scalar(select(Survey).where(Survey.title == title)) is not None:
            raise StudyError(f"there is already a survey titled {title!r}")
        survey = Survey(title=title, scale_min=scale.minimum, scale_max=scale.maximum, higher_is=scale.higher_is,
                        anchors_json=json.dumps({str(k): v for k, v in sorted(scale.anchors.items())}),
                        repeat_fraction=float(repeat_fraction), seed=seed, crop=crop, instructions=instructions)  # fmt: skip
        s.add(survey)
        s.flush()
        for i, p in enumerate(photos):
            left, top, right, bottom = crops[p.id]
            s.add(SurveyItem(survey_id=survey.id, photo_id=p.id, position=i, crop_left=left, crop_top=top,
                             crop_right=right, crop_bottom=bottom))  # fmt: skip
    return SurveyInfo(survey.id, title, len(photos), scale, float(repeat_fraction), seed)


def find_survey(session: Any, ref: int | str) -> Survey:
    """A survey by id or title, or :class:`NotFoundError`."""
    survey = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        survey = session.get(Survey, int(ref))
    if survey is None:
        survey = session.scalar(select(Survey).where(Survey.title == str(ref)))
    if survey is None:
        raise NotFoundError(f"no survey {ref!r} in the study; `cleftscore survey status` lists them")
    return survey


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _rater_seed(survey_seed: int, code: str) -> int:
    digest = hashlib.sha256(f"{survey_seed}:{code}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def rater_order(item_ids: Sequence[int], *, seed: int, repeat_fraction: float) -> list[int]:
    """One rater's order: every item once in a random order, then ``round(fraction * n)`` of them again.

    The repeats come after all first showings, and the first repeat is never the photo just shown.
    """
    rng = np.random.default_rng(seed)
    first = [int(item_ids[i]) for i in rng.permutation(len(item_ids))]
    n_rep = int(round(repeat_fraction * len(item_ids)))
    repeats = [int(item_ids[i]) for i in rng.choice(len(item_ids), size=n_rep, replace=False)] if n_rep else []
    if len(repeats) > 1 and repeats[0] == first[-1]:
        repeats[0], repeats[1] = repeats[1], repeats[0]
    return first + repeats


@dataclass(frozen=True)
class Invitation:
    """One rater's invitation: the code, the token (shown once, never stored) and the link."""

    code: str
    token: str
    link: str


def invite_raters(
    study: Study, survey_ref: int | str, codes: Sequence[str], *, base_url: str
) -> tuple[Invitation, ...]:
    """Add raters to a survey, each with a fresh invitation link.

    Parameters
    ----------
    study : Study
    survey_ref : int or str
        Survey id or title.
    codes : sequence of str
        Pseudonymous rater codes (1-32 letters, digits, ``-`` or ``_``; never a name).
    base_url : str
        The server's address as raters reach it, e.g. ``http://192.168.1.20:8765``.

    Returns
    -------
    tuple of Invitation
        The tokens are in the links only: they cannot be shown again (invite a new code instead).

    Raises
    ------
    StudyError
        A bad or repeated code, a code already in the survey, or a closed survey.
    """
    bad = [c for c in codes if not _RATER_CODE.fullmatch(c)]
    if bad:
        raise StudyError(
            f"rater code {bad[0]!r} is not allowed: use 1-32 letters, digits, - or _ (never a name), e.g. R01"
        )
    if len(set(codes)) != len(codes) or not codes:
        raise StudyError("give one or more rater codes, each once")
    out = []
    with study.transaction() as s:
        survey = find_survey(s, survey_ref)
        if survey.closed_at is not None:
            raise SurveyClosedError(f"survey {survey.title!r} is closed")
        taken = {r.code for r in survey.raters}
        if taken & set(codes):
            raise StudyError(f"rater {sorted(taken & set(codes))[0]} is already invited to {survey.title!r}")
        items = [it.id for it in survey.items]
        for code in codes:
            token = secrets.token_urlsafe(32)
            seed = _rater_seed(survey.seed, code)
            order = rater_order(items, seed=seed, repeat_fraction=survey.repeat_fraction)
            s.add(SurveyRater(survey_id=survey.id, code=code, token_sha256=token_sha256(token), seed=seed,
                              order_json=json.dumps(order)))  # fmt: skip
            out.append(Invitation(code, token, f"{base_url.rstrip('/')}/survey/r/{token}"))
    return tuple(out)


_INVALID_LINK = "this survey link is not valid (it may have been mistyped or withdrawn); ask the survey's organiser"


def _rater(session: Any, token: str) -> SurveyRater:
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        raise NotFoundError(_INVALID_LINK)
    rater = session.scalar(select(SurveyRater).where(SurveyRater.token_sha256 == token_sha256(token)))
    if rater is None:
        raise NotFoundError(_INVALID_LINK)
    return rater


@dataclass(frozen=True)
class RaterState:
    """Where one rater stands in a survey: what the rating page shows.

    Attributes
    ----------
    title, instructions : str
    rater : str
        The rater's own code.
    scale : RatingScale
    total : int
        Photos to rate, repeats included.
    ratings : dict of int to int
        Position -> rating given so far.
    submitted, closed : bool
    """

    title: str
    instructions: str
    rater: str
    scale: RatingScale
    total: int
    ratings: Mapping[int, int]
    submitted: bool
    closed: bool

    @property
    def next_position(self) -> int | None:
        """The first position without a rating (None when all are rated)."""
        return next((i for i in range(self.total) if i not in self.ratings), None)

    @property
    def done(self) -> int:
        return len(self.ratings)


def _state(rater: SurveyRater) -> RaterState:
    survey = rater.survey
    return RaterState(survey.title, survey.instructions, rater.code, _scale_of(survey), len(rater.order),
                      {r.position: r.rating for r in rater.ratings}, rater.submitted_at is not None,
                      survey.closed_at is not None)  # fmt: skip


def rater_state(study: Study, token: str) -> RaterState:
    """The state of the rater whose invitation token this is (:class:`NotFoundError` for any other token)."""
    with study.transaction(write=False) as s:
        return _state(_rater(s, token))


def record_rating(study: Study, token: str, *, position: int, rating: int) -> RaterState:
    """Record (or, before submitting, change) the rating at one position of the rater's order.

    Raises
    ------
    NotFoundError
        An unknown token.
    SurveyClosedError
        After the rater submitted, or once the survey is closed.
    StudyError
        A position beyond the first unrated one, or a rating off the scale.
    """
    with study.transaction() as s:
        rater = _rater(s, token)
        state = _state(rater)
        if state.submitted or state.closed:
            raise SurveyClosedError("these ratings were submitted; they cannot be changed")
        nxt = state.next_position if state.next_position is not None else state.total
        if not 0 <= position <= min(nxt, state.total - 1):
            raise StudyError(f"photo {position + 1} is not open for rating (next is {nxt + 1} of {state.total})")
        if isinstance(rating, bool) or rating not in state.scale.values:
            raise StudyError(f"a rating must be one of {state.scale.minimum}..{state.scale.maximum}, got {rating!r}")
        order = rater.order
        row = s.scalar(select(SurveyRating).where(SurveyRating.rater_id == rater.id, SurveyRating.position == position))
        if row is None:
            row = SurveyRating(rater_id=rater.id, item_id=order[position], position=position,
                               repeat=order[position] in order[:position], rating=int(rating))  # fmt: skip
            s.add(row)
        else:
            row.rating = int(rating)
            row.rated_at = utcnow()
        s.flush()
        s.expire(rater, ["ratings"])
        return _state(rater)


def submit(study: Study, token: str) -> RaterState:
    """Submit the rater's ratings: from now on nothing can be changed.

    Raises
    ------
    StudyError
        Photos still without a rating.
    """
    with study.transaction() as s:
        rater = _rater(s, token)
        state = _state(rater)
        if state.submitted:
            return state
        if state.next_position is not None:
            raise StudyError(f"{state.total - state.done} photo(s) still need a rating before submitting")
        rater.submitted_at = utcnow()
        return _state(rater)


def rater_photo(study: Study, token: str, position: int) -> bytes:
    """The picture a rater sees at one position: the face crop as a PNG made from its pixels alone.

    Raises
    ------
    NotFoundError
        An unknown token, or a position outside the rater's order.
    """
    from PIL import Image

    with study.transaction(write=False) as s:
        rater = _rater(s, token)
        order = rater.order
        if not 0 <= position < len(order):
            raise NotFoundError(f"there is no photo {position + 1} in this survey")
        item = s.get(SurveyItem, order[position])
        photo = item.photo
        box = (item.crop_left, item.crop_top, item.crop_right, item.crop_bottom)
    image = _stored_image(study, photo)[box[1] : box[3], box[0] : box[2]]
    pic = Image.fromarray(np.ascontiguousarray(image))
    if max(pic.size) > MAX_SIDE:
        pic.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    pic.save(buf, format="PNG")  # a new image from pixels: no EXIF, text chunks or names
    return buf.getvalue()


@dataclass(frozen=True)
class RaterProgress:
    code: str
    rated: int
    total: int
    submitted_at: dt.datetime | None


@dataclass(frozen=True)
class SurveyStatus:
    """A survey's progress: photos, scale, and each rater's count of ratings."""

    id: int
    title: str
    n_photos: int
    scale: RatingScale
    repeat_fraction: float
    seed: int
    crop: str
    created_at: dt.datetime
    closed: bool
    raters: tuple[RaterProgress, ...]


def survey_status(study: Study, survey_ref: int | str | None = None) -> tuple[SurveyStatus, ...]:
    """Progress of one survey, or of every survey when ``survey_ref`` is None."""
    with study.transaction(write=False) as s:
        surveys = (
            [find_survey(s, survey_ref)]
            if survey_ref is not None
            else list(s.scalars(select(Survey).order_by(Survey.id)))
        )
        return tuple(
            SurveyStatus(sv.id, sv.title, len(sv.items), _scale_of(sv), sv.repeat_fraction, sv.seed, sv.crop,
                         sv.created_at, sv.closed_at is not None,
                         tuple(RaterProgress(r.code, len(r.ratings), len(r.order), r.submitted_at) for r in sv.raters))
            for sv in surveys
        )  # fmt: skip


def close_survey(study: Study, survey_ref: int | str) -> None:
    """Close a survey: no rater can rate or submit any more."""
    with study.transaction() as s:
        survey = find_survey(s, survey_ref)
        if survey.closed_at is None:
            survey.closed_at = utcnow()
