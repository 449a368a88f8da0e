"""Landmarks corrected by hand: read from a file, kept per photo, and a photo scored again on them.

A landmark file (JSON or CSV, see :func:`read_landmark_file`) names photos of a run folder and,
for each, points to move (an iBUG index 0..67, or a named point such as ``alar_base_left``), named
points to add (alar crease, columella base, nostril tops, cleft edges), and optionally a scale (a
drawn known distance, or one iris's edges for the iris-diameter convention). Points are in the
photo's pixels, or in the aligned face's (``frame: aligned``, as the web editor shows it).

:func:`correct_landmarks` aligns, normalizes, scores and measures each named photo again on its
corrected points (the mirror registration, the regions, the score, the heat map and the
nasolabial measures all follow from them), writes its fresh folder, and keeps every edit, with
when it was made and the positions it replaced, in ``landmarks/<photo id>.json`` beside
``photos/``. Its record says so (a note, and the measure ``landmarks_corrected_points``).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cleftscore.errors import CleftscoreError
from cleftscore.face.align import transform_points
from cleftscore.face.landmarks import N_LANDMARKS, LandmarkEdit
from cleftscore.face.measures import AUTOMATIC_POINTS, HAND_POINTS
from cleftscore.run.folder import RunLock, list_photo_ids, photo_dir, read_record, read_records, read_run_settings
from cleftscore.run.record import PhotoRecord, PhotoResult, failure_text
from cleftscore.run.settings import PipelineSettings, ProgressHooks

__all__ = [
    "FRAMES",
    "LANDMARKS_DIR",
    "LandmarkEntry",
    "correct_landmarks",
    "landmark_history",
    "latest_edit",
    "read_landmark_file",
    "resolve_edit",
    "score_with_edit",
]

#: Folder of a run with each corrected photo's edits (``<photo id>.json``).
LANDMARKS_DIR = "landmarks"
#: Coordinate frames a landmark file may use.
FRAMES = ("photo", "aligned")
_SCALE_POINTS = ("ruler_start", "ruler_end", "iris_a", "iris_b")


@dataclass(frozen=True)
class LandmarkEntry:
    """One photo's points as a landmark file gives them (frame not yet resolved).

    Attributes
    ----------
    photo : str
        A photo id of the run, or the photo's file name or path as scored.
    frame : {"photo", "aligned"}
        What the coordinates are in.
    points : dict of str -> (x, y)
        Point name or iBUG index (as text) -> position, including the scale's points
        ``ruler_start``, ``ruler_end`` (with ``ruler_mm``) and ``iris_a``, ``iris_b``.
    ruler_mm : float or None
        The drawn known distance in mm.
    source : str
        Where the entry came from.
    """

    photo: str
    frame: str = "photo"
    points: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    ruler_mm: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.frame not in FRAMES:
            raise ValueError(f"{self.photo}: frame must be one of {FRAMES}, got {self.frame!r}")
        object.__setattr__(self, "points", {str(k): _xy(v, f"{self.photo} point {k}") for k, v in self.points.items()})
        for name in self.points:
            if not _known_point(name):
                raise ValueError(
                    f"{self.photo}: unknown point {name!r}; use an index 0..67, a name of "
                    f"{', '.join((*AUTOMATIC_POINTS, *HAND_POINTS))}, or {', '.join(_SCALE_POINTS)}"
                )
        has_ruler = "ruler_start" in self.points or "ruler_end" in self.points
        if has_ruler and (self.ruler_mm is None or not {"ruler_start", "ruler_end"} <= set(self.points)):
            raise ValueError(f"{self.photo}: a ruler needs ruler_start, ruler_end and its length in mm (ruler_mm)")
        if ("iris_a" in self.points) != ("iris_b" in self.points):
            raise ValueError(f"{self.photo}: the iris scale needs both edges, iris_a and iris_b")


def _known_point(name: str) -> bool:
    if name.isdigit():
        return 0 <= int(name) < N_LANDMARKS
    return name in AUTOMATIC_POINTS or name in HAND_POINTS or name in _SCALE_POINTS


def read_landmark_file(path: str | os.PathLike[str]) -> list[LandmarkEntry]:
    """The entries of a landmark file: JSON (``.json``) or CSV (any other name).

    JSON::

        {"photos": {"<photo id or file name>": {"frame": "photo",
                    "points": {"31": [x, y], "alar_crease_left": [x, y]},
                    "ruler": {"start": [x, y], "end": [x, y], "mm": 10},
                    "iris": [[x, y], [x, y]]}}}

    CSV: columns ``photo, point, x, y`` and optionally ``frame`` and ``mm`` (on a ruler row),
    one row per point; the scale's points are named ``ruler_start``, ``ruler_end``, ``iris_a``
    and ``iris_b``.

    Raises
    ------
    CleftscoreError
        One line naming the file and what is wrong with it.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
        entries = _parse_json(text, p.name) if p.suffix.lower() == ".json" else _parse_csv(text, p.name)
    except OSError as exc:
        raise CleftscoreError(f"{p}: cannot read the landmark file ({exc.strerror or exc})") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CleftscoreError(f"{p}: not a valid landmark file: {exc}") from None
    if not entries:
        raise CleftscoreError(f"{p}: the landmark file names no photo")
    return entries


def _parse_json(text: str, source: str) -> list[LandmarkEntry]:
    data = json.loads(text)
    photos = data.get("photos") if isinstance(data, Mapping) else None
    if not isinstance(photos, Mapping):
        raise ValueError('expected an object with "photos": {photo: {...}}')
    out = []
    for photo, entry in photos.items():
        points = {str(k): _xy(v, f"{photo} point {k}") for k, v in (entry.get("points") or {}).items()}
        ruler, iris = entry.get("ruler"), entry.get("iris")
        if ruler:
            points["ruler_start"], points["ruler_end"] = _xy(ruler["start"], "ruler"), _xy(ruler["end"], "ruler")
        if iris:
            points["iris_a"], points["iris_b"] = _xy(iris[0], "iris"), _xy(iris[1], "iris")
        out.append(LandmarkEntry(str(photo), str(entry.get("frame") or "photo"), points,
                                 float(ruler["mm"]) if ruler else None, source))  # fmt: skip
    return out


def _parse_csv(text: str, source: str) -> list[LandmarkEntry]:
    rows = list(csv.DictReader(text.splitlines()))
    if not rows or not {"photo", "point", "x", "y"} <= set(rows[0]):
        raise ValueError("expected the columns photo, point, x, y (and optionally frame, mm)")
    by_photo: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(rows, start=2):
        photo = (row["photo"] or "").strip()
        if not photo:
            raise ValueError(f"line {i}: no photo")
        e = by_photo.setdefault(photo, {"frame": (row.get("frame") or "photo").strip(), "points": {}, "mm": None})
        if (row.get("frame") or "photo").strip() != e["frame"]:
            raise ValueError(f"line {i}: {photo} mixes frames; give all of a photo's points in one frame")
        e["points"][row["point"].strip()] = _xy((row["x"], row["y"]), f"line {i}")
        if (row.get("mm") or "").strip():
            e["mm"] = float(row["mm"])
    return [LandmarkEntry(photo, e["frame"], e["points"], e["mm"], source) for photo, e in by_photo.items()]


def _xy(value: Any, what: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected two numbers (x, y), got {value!r}") from None
    if not (np.isfinite(x) and np.isfinite(y)):
        raise ValueError(f"{what}: coordinates must be finite")
    return (x, y)


def resolve_edit(entry: LandmarkEntry, record: PhotoRecord, *, previous: LandmarkEdit | None = None,
                 when: str | None = None) -> LandmarkEdit:  # fmt: skip
    """The entry as a :class:`LandmarkEdit` in the photo's pixels, on top of the photo's previous edit.

    Points in the aligned frame are mapped to the photo with the record's alignment. Points the
    entry does not name keep the positions of ``previous`` (the photo's latest edit), so an edit
    can be made a few points at a time.

    Raises
    ------
    CleftscoreError
        An aligned-frame entry for a record without face geometry.
    """
    to_photo = np.eye(3)
    if entry.frame == "aligned":
        if record.geometry is None:
            raise CleftscoreError(f"{record.file}: no aligned face in the run; give the points in the photo's pixels")
        to_photo = record.geometry.to_original
    names = list(entry.points)
    xy = transform_points(to_photo, np.array([entry.points[n] for n in names]).reshape(-1, 2))
    pts = {n: (float(x), float(y)) for n, (x, y) in zip(names, xy, strict=True)}
    moved = dict(previous.moved) if previous else {}
    added = dict(previous.added) if previous else {}
    for name, p in pts.items():
        if name.isdigit():
            moved[int(name)] = p
        elif name in AUTOMATIC_POINTS:
            moved[AUTOMATIC_POINTS[name]] = p
        elif name in HAND_POINTS:
            added[name] = p
    ruler = previous.ruler if previous else None
    iris = previous.iris if previous else None
    if "ruler_start" in pts:
        ruler = (pts["ruler_start"], pts["ruler_end"], float(entry.ruler_mm))  # type: ignore[arg-type]
    if "iris_a" in pts:
        iris = (pts["iris_a"], pts["iris_b"])
    stamp = when or dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    try:
        return LandmarkEdit(moved=moved, added=added, ruler=ruler, iris=iris, when=stamp, source=entry.source)
    except ValueError as exc:
        raise CleftscoreError(f"{record.file}: {exc}") from None


def _history_path(run: Path, photo_id: str) -> Path:
    return run / LANDMARKS_DIR / f"{photo_id}.json"


def landmark_history(run_dir: str | os.PathLike[str], photo_id: str) -> list[dict[str, Any]]:
    """Every landmark edit of a photo, oldest first: ``edit`` (:meth:`LandmarkEdit.to_json`),
    ``previous_landmarks`` (the 68 positions in the photo it replaced) and ``previous_score``."""
    path = _history_path(Path(run_dir), photo_id)
    if not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text(encoding="utf-8"))["edits"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CleftscoreError(f"{path}: the landmark history cannot be read ({exc})") from None


def latest_edit(run_dir: str | os.PathLike[str], photo_id: str) -> LandmarkEdit | None:
    """The photo's current landmark edit, or None."""
    history = landmark_history(run_dir, photo_id)
    return LandmarkEdit.from_json(history[-1]["edit"]) if history else None


def _match(run: Path, entries: Sequence[LandmarkEntry]) -> dict[str, LandmarkEntry]:
    """Photo id -> its entry; an entry naming no photo of the run is an error."""
    ids = list_photo_ids(run)
    by_name: dict[str, str] = {}
    for pid in ids:
        by_name[pid] = pid
        try:
            rec = read_record(run, pid)
        except Exception:  # noqa: BLE001 - an unreadable record is matched by its id only
            continue
        by_name.setdefault(rec.file, pid)
        by_name.setdefault(Path(rec.file).name, pid)
    out: dict[str, LandmarkEntry] = {}
    for e in entries:
        pid = by_name.get(e.photo)
        if pid is None:
            raise CleftscoreError(f"{e.photo}: no photo of that id or name in {run}")
        out[pid] = e
    return out


def correct_landmarks(
    run_dir: str | os.PathLike[str],
    entries: Sequence[LandmarkEntry],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    hooks: ProgressHooks | None = None,
) -> list[PhotoResult]:
    """Score photos of a run again on landmarks corrected by hand, and keep the edits.

    Each named photo is loaded from its original file, aligned on the corrected points,
    normalized with the run's method and settings (a mirror registered on the corrected points;
    the GAN re-projected from the new alignment), scored, measured and written to a fresh
    folder; ``scores.csv`` and ``report.html`` are rewritten. A photo that cannot be redone
    keeps its previous folder and is returned as failed.

    Parameters
    ----------
    run_dir : path
        A run folder of ``cleftscore score``.
    entries : sequence of LandmarkEntry
        From :func:`read_landmark_file` (or built in Python).
    cache_dir : path, optional
        GAN normalization cache.
    hooks : ProgressHooks, optional
        ``photo_done`` per photo.

    Returns
    -------
    list of PhotoResult
        One per entry, in photo-id order.

    Raises
    ------
    CleftscoreError
        Not a run folder, an entry naming no photo of it, or the folder in use.
    """
    hooks = hooks or ProgressHooks()
    run = Path(run_dir)
    if not (run / "photos").is_dir():
        raise CleftscoreError(f"{run}: not a cleftscore run folder (no photos/ inside); run `cleftscore score` first")
    results: list[PhotoResult] = []
    with RunLock(run):
        matched = _match(run, entries)
        normalizers: dict[str, Any] = {}
        try:
            for pid in sorted(matched):
                res = _correct_one(run, pid, matched[pid], normalizers, cache_dir)
                results.append(res)
                hooks.done(res)
        finally:
            for normalizer in normalizers.values():
                normalizer.close()
            _summary(run, hooks)
    return results


def _summary(run: Path, hooks: ProgressHooks) -> None:
    from cleftscore.run.folder import write_summary

    settings, ids = read_run_settings(run)
    try:
        write_summary(run, read_records(run, ids), settings=settings)
    except OSError as exc:
        hooks.say(f"could not write the summary of {run}: {exc}")


def score_with_edit(path: str | os.PathLike[str], photo_id: str, settings: PipelineSettings, edit: LandmarkEdit, *,
                    normalizer: Any, out: str | os.PathLike[str] | None, size: int | None = None,
                    environment: Mapping[str, Any] | None = None) -> PhotoResult:  # fmt: skip
    """One photo aligned, normalized, scored and measured on corrected landmarks.

    Parameters
    ----------
    path : path
        The photo file.
    photo_id : str
        Its id (folder name under ``out/photos``).
    settings : PipelineSettings
        The settings it is scored with.
    edit : LandmarkEdit
        The corrected points, in the photo's pixels.
    normalizer : Normalizer
        Of ``settings.method``.
    out : path or None
        Run folder to write the photo's fresh folder into (None: nothing written, arrays kept).
    size : int, optional
        Aligned size (default ``settings.size``, else 1024).
    environment : dict, optional
        For the record.

    Returns
    -------
    PhotoResult

    Raises
    ------
    CleftscoreError
        The photo cannot be aligned or normalized on these points (nothing is written then).
    """
    from cleftscore.run.inputs import InputPhoto
    from cleftscore.run.photo import RunContext, align_photo, finish_photo

    ctx = RunContext(settings, size=size or settings.size or 1024, environment=dict(environment or {}),
                     out=None if out is None else Path(out), keep=out is None, edits={photo_id: edit})  # fmt: skip
    work = align_photo(InputPhoto(path=Path(path), photo_id=photo_id), ctx)
    if work.prepared is not None:
        (norm,) = normalizer.normalize([work.prepared.aligned])
        work.take(norm)
    if not work.ok:
        raise CleftscoreError(work.error)
    return finish_photo(work, ctx)


def _correct_one(run: Path, pid: str, entry: LandmarkEntry, normalizers: dict[str, Any],
                 cache_dir: str | os.PathLike[str] | None) -> PhotoResult:  # fmt: skip
    """One photo of a run scored again on its corrected points; its edit kept."""
    from cleftscore.io import write_json
    from cleftscore.normalize import make_normalizer

    rec = read_record(run, pid)
    try:
        if rec.damaged:
            raise CleftscoreError(f"{photo_dir(run, pid)}: the record cannot be read; score the photo again first")
        edit = resolve_edit(entry, rec, previous=latest_edit(run, pid))
        settings = PipelineSettings.from_dict(rec.settings)
        key = json.dumps(rec.settings, sort_keys=True, default=str)
        if key not in normalizers:
            normalizers[key] = make_normalizer(settings.method, gan=settings.gan, seed=settings.seed,
                                               cache_dir=cache_dir)  # fmt: skip
        result = score_with_edit(rec.file, pid, settings, edit, normalizer=normalizers[key], out=run,
                                 size=rec.geometry.size if rec.geometry is not None else None,
                                 environment=rec.environment)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - one photo never stops the others; its old folder stays
        return PhotoResult.of(rec.failed(failure_text(rec.file, exc, stage="correcting its landmarks")))
    if result.ok:
        history = landmark_history(run, pid)
        previous = rec.geometry.landmarks_original.tolist() if rec.geometry is not None else None
        history.append({"edit": edit.to_json(), "previous_landmarks": previous, "previous_score": rec.score,
                        "score": result.score})  # fmt: skip
        write_json(_history_path(run, pid), {"photo_id": pid, "file": rec.file, "edits": history})
    return result
