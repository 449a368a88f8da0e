"""Landmarks corrected by hand on a study's photo: every score of the photo redone on them, each edit kept.

:func:`correct_photo` takes an entry of points (photo or aligned pixels, as
:class:`~cleftscore.run.corrections.LandmarkEntry`), adds it to the photo's previous edit, and
scores the stored photo again with the settings of each of its scores: alignment, mirror or GAN
normalization, regions, score, heat map, pictures and nasolabial measures all follow the
corrected points. Each score row is updated in place (its measures then include
``landmarks_corrected_points`` and its notes say the landmarks were corrected), and a
``landmark_corrections`` row keeps the edit, when it was made, and the 68 positions and the
scores it replaced. :func:`prepare_with_edit` gives the aligned face on the current points (what
the web editor shows).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from cleftscore.errors import CleftscoreError
from cleftscore.face.landmarks import LandmarkEdit
from cleftscore.run.corrections import LandmarkEntry, resolve_edit, score_with_edit
from cleftscore.run.record import FaceGeometry, PhotoRecord
from cleftscore.run.settings import PipelineSettings
from cleftscore.study.db import NotFoundError, Study
from cleftscore.study.models import LandmarkCorrection, Photo, Score

__all__ = ["CorrectionLine", "correct_photo", "latest_photo_edit", "photo_corrections", "prepare_with_edit"]


@dataclass(frozen=True)
class CorrectionLine:
    """What happened to one score of the corrected photo.

    Attributes
    ----------
    score_id : int
    method : str
    status : {"updated", "failed"}
    message : str
        Why it failed (names the photo).
    score, previous : float or None
        The new score and the one it replaced.
    """

    score_id: int
    method: str
    status: str
    message: str = ""
    score: float | None = None
    previous: float | None = None


def _photo(session: Any, photo_id: int) -> Photo:
    photo = session.get(Photo, photo_id)
    if photo is None:
        raise NotFoundError(f"no photo with id {photo_id} in the study")
    return photo


def photo_corrections(study: Study, photo_id: int) -> list[dict[str, Any]]:
    """The photo's landmark edits, oldest first: ``id``, ``created_at``, ``source``, ``edit``, ``previous``."""
    with study.transaction(write=False) as s:
        _photo(s, photo_id)
        rows = s.scalars(select(LandmarkCorrection).where(LandmarkCorrection.photo_id == photo_id)
                         .order_by(LandmarkCorrection.id))  # fmt: skip
        return [{"id": r.id, "created_at": r.created_at.isoformat(), "source": r.source,
                 "edit": json.loads(r.edit_json), "previous": json.loads(r.previous_json)} for r in rows]  # fmt: skip


def latest_photo_edit(study: Study, photo_id: int) -> LandmarkEdit | None:
    """The photo's current landmark edit, or None."""
    history = photo_corrections(study, photo_id)
    return LandmarkEdit.from_json(history[-1]["edit"]) if history else None


def _settings_of(study: Study, photo_id: int) -> tuple[Path, list[tuple[int, str, dict[str, Any], dict[str, Any]]]]:
    with study.transaction(write=False) as s:
        photo = _photo(s, photo_id)
        scores = [(sc.id, sc.method, sc.settings, json.loads(sc.environment_json)) for sc in photo.scores]
        return study.files / photo.stored_path, scores


def prepare_with_edit(study: Study, photo_id: int, *, size: int = 512, edit: LandmarkEdit | None = None) -> Any:
    """The stored photo prepared (detected, aligned at ``size``) on its current corrected points.

    Returns
    -------
    PreparedPhoto
        With ``edit`` (default: the photo's latest edit) applied.
    """
    from cleftscore.face.prepare import prepare_photo

    path, scores = _settings_of(study, photo_id)
    detector = str(scores[0][2].get("detector", "hog")) if scores else "hog"
    return prepare_photo(path, size=size, detector=detector,  # type: ignore[arg-type]
                         edit=edit if edit is not None else latest_photo_edit(study, photo_id))  # fmt: skip


def _previous_record(photo_path: Path, prepared: Any) -> PhotoRecord:
    """A stand-in record carrying the photo's current alignment, for mapping aligned-frame points."""
    a = prepared.aligned
    geo = FaceGeometry(size=a.size, faces_found=prepared.n_faces, face_box=(0.0, 0.0, 1.0, 1.0), detector_score=0.0,
                       landmarks_aligned=a.landmarks, landmarks_original=a.landmarks_original,
                       to_original=a.to_original, original_shape=tuple(a.original_shape))  # fmt: skip
    return PhotoRecord(file=str(photo_path), photo_id="photo", status="ok", geometry=geo)


def correct_photo(study: Study, photo_id: int, entry: LandmarkEntry, *, aligned_size: int = 512,
                  cache_dir: str | Path | None = None) -> list[CorrectionLine]:  # fmt: skip
    """Score a study photo again, with the settings of each of its scores, on corrected landmarks.

    Parameters
    ----------
    study : Study
    photo_id : int
    entry : LandmarkEntry
        The points to move or add; with ``frame="aligned"``, in the pixels of the photo's face
        aligned at ``aligned_size`` on its current points (what :func:`prepare_with_edit` shows).
    aligned_size : int
        See ``entry``.
    cache_dir : path, optional
        GAN normalization cache.

    Returns
    -------
    list of CorrectionLine
        One per score of the photo. A score that cannot be redone keeps its old values.

    Raises
    ------
    NotFoundError
        Unknown photo.
    CleftscoreError
        The photo has no score to redo, or the points are malformed.
    """
    from cleftscore.normalize import make_normalizer

    path, scores = _settings_of(study, photo_id)
    if not scores:
        raise CleftscoreError(f"photo {photo_id} has no score yet; score it before correcting its landmarks")
    previous_edit = latest_photo_edit(study, photo_id)
    current = prepare_with_edit(study, photo_id, size=aligned_size, edit=previous_edit)
    edit = resolve_edit(entry, _previous_record(path, current), previous=previous_edit)
    lines: list[CorrectionLine] = []
    replaced: dict[str, Any] = {}
    tmp = study.files / "tmp" / f"landmarks-{photo_id}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for score_id, method, settings_dict, environment in scores:
            try:
                settings = PipelineSettings.from_dict(settings_dict)
                normalizer = make_normalizer(settings.method, gan=settings.gan, seed=settings.seed, cache_dir=cache_dir)
                try:
                    result = score_with_edit(path, f"score{score_id}", settings, edit, normalizer=normalizer, out=tmp,
                                             environment=environment)  # fmt: skip
                finally:
                    normalizer.close()
                if not result.ok:
                    raise CleftscoreError(result.message)
                old = _update_score(study, score_id, tmp, result)
                replaced[str(score_id)] = old
                lines.append(CorrectionLine(score_id, method, "updated", "", result.score, old["score"]))
            except Exception as exc:  # noqa: BLE001 - one score never stops the others
                from cleftscore.run.record import failure_text

                lines.append(CorrectionLine(score_id, method, "failed",
                                            failure_text(path.name, exc, stage="correcting its landmarks")))  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if replaced:
        before = (previous_edit.apply(current.predicted) if previous_edit is not None and current.predicted is not None
                  else current.aligned.landmarks_original)  # fmt: skip
        with study.transaction() as s:
            s.add(LandmarkCorrection(photo_id=photo_id, edit_json=json.dumps(edit.to_json()), source=edit.source[:200],
                                     previous_json=json.dumps({"landmarks": np.asarray(before).tolist(),
                                                               "scores": replaced})))  # fmt: skip
    return lines


def _update_score(study: Study, score_id: int, run: Path, result: Any) -> dict[str, Any]:
    """Write a fresh result into its score row; returns what the row held before."""
    from cleftscore.run.folder import read_picture
    from cleftscore.study.store import store_bytes

    pictures = {pic: store_bytes(study.files, read_picture(run, result.photo_id, pic), suffix=Path(pic).suffix)
                for pic in result.pictures if pic != "result.json"}  # fmt: skip
    with study.transaction() as s:
        sc = s.get(Score, score_id)
        if sc is None:
            raise NotFoundError(f"score {score_id} was deleted meanwhile")
        old = {"score": sc.score, "measures": sc.measures, "pictures": sc.pictures, "notes": sc.notes}
        sc.score = float(result.score)
        sc.pictures_json = json.dumps(pictures, sort_keys=True)
        sc.measures_json = json.dumps({k: {"value": m.value, "definition": m.definition}
                                       for k, m in result.measures.items()}, sort_keys=True)  # fmt: skip
        sc.normalization_json = json.dumps(dict(result.normalization), sort_keys=True, default=str)
        sc.notes = "; ".join(result.notes)
    return old
