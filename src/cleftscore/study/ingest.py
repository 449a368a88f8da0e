"""Photos and their scores into a visit: importing run folders, scoring photos with the pipeline.

Every photo goes into the study in its own transaction, together with its score, after its
stored copy and pictures are on disk: a crash leaves the study as it was before that photo, and
running the same command again picks up where it stopped (photos already scored with the same
settings are found by their hash and skipped).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from cleftscore.errors import CleftscoreError
from cleftscore.paths import sha256_file
from cleftscore.study.db import NotFoundError, Study, StudyError
from cleftscore.study.models import Photo, Score
from cleftscore.study.records import find_visit
from cleftscore.study.store import store_bytes, store_photo

if TYPE_CHECKING:
    from cleftscore.run.record import PhotoRecord, PhotoResult

__all__ = ["ImportLine", "ImportReport", "import_run", "score_into_visit", "settings_key"]

#: Run-folder records that are not pictures of the score.
_NOT_PICTURES = ("result.json",)


@dataclass(frozen=True)
class ImportLine:
    """What happened to one photo: ``added``, ``already`` (in the study with these settings) or ``failed``."""

    file: str
    status: str
    message: str = ""
    score: float | None = None


@dataclass
class ImportReport:
    """One line per photo of an import or scoring run, in input order."""

    lines: list[ImportLine] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(line.status == status for line in self.lines)


def settings_key(settings: Mapping[str, Any]) -> str:
    """SHA-256 of the settings as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def _same_settings(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    from cleftscore.run.folder import settings_differences

    # Settings that change only speed (batch, device...) do not make another score.
    return a.get("method") == b.get("method") and not settings_differences(a, b) and not settings_differences(b, a)


def _where(photo: Photo) -> str:
    v = photo.visit
    return f"photo {photo.id} of patient {v.patient.code}, visit {v.id} ({v.date.isoformat()} {v.phase})"


def _verdict(photo: Photo, visit_id: int, settings: Mapping[str, Any], name: str) -> ImportLine | None:
    """A line for a photo already in the study that needs no work (scored, or in another visit)."""
    if photo.visit_id != visit_id:
        return ImportLine(
            name, "failed", f"{name}: already in the study as {_where(photo)}; a photo belongs to one visit"
        )
    for sc in photo.scores:
        if _same_settings(sc.settings, settings):
            return ImportLine(
                name, "already", f"{name}: already scored with these settings ({_where(photo)})", sc.score
            )
    return None


def _existing(study: Study, visit_id: int, sha: str, settings: Mapping[str, Any], name: str) -> ImportLine | None:
    """:func:`_verdict` of the photo with this hash; None when it is new or needs a score."""
    with study.transaction(write=False) as s:
        photo = s.scalar(select(Photo).where(Photo.sha256 == sha))
        return None if photo is None else _verdict(photo, visit_id, settings, name)


def _find_original(record: PhotoRecord, originals: Mapping[str, Path], photos_dir: Path | None) -> Path | None:
    candidates = [originals.get(record.photo_id), Path(record.file)]
    if photos_dir is not None:
        candidates.append(photos_dir / Path(record.file).name)
    for c in candidates:
        if c is not None and c.is_file():
            return c
    return None


def _import_record(
    study: Study,
    visit_id: int,
    run_dir: Path,
    record: PhotoRecord,
    original: Path | None,
    scored_sha: str | None = None,
) -> ImportLine:
    from cleftscore.run.folder import photo_dir, read_picture

    name = Path(record.file).name
    if not record.ok:
        return ImportLine(name, "failed", record.message)
    if original is None:
        return ImportLine(name, "failed", f"{record.file}: the original photo is not there (the run folder records only its path); "
                                          "give the folder that holds it with --photos DIR")  # fmt: skip
    # The hash of the bytes that were scored, when known; the stored copy must come from those bytes.
    sha = scored_sha or sha256_file(original)
    settings = dict(record.settings)
    line = _existing(study, visit_id, sha, settings, name)
    if line is not None:
        return line
    stored = store_photo(study.files, original, sha256=sha)
    g = record.geometry
    if g is not None and tuple(g.original_shape) != (stored.height, stored.width):
        return ImportLine(name, "failed", f"{original}: {stored.width}x{stored.height} pixels, but the run scored a "
                                          f"{g.original_shape[1]}x{g.original_shape[0]} photo of that name; is it the same photo?")  # fmt: skip
    folder = photo_dir(run_dir, record.photo_id)
    pictures = {}
    for pic in record.pictures:
        if pic in _NOT_PICTURES:
            continue
        try:
            data = read_picture(run_dir, record.photo_id, pic)
        except OSError as exc:
            return ImportLine(
                name,
                "failed",
                f"{folder / pic}: picture missing from the run folder ({exc.strerror}); score the photo again",
            )
        pictures[pic] = store_bytes(study.files, data, suffix=Path(pic).suffix)
    from cleftscore import __version__

    with study.transaction() as s:
        visit = find_visit(s, visit_id)
        photo = s.scalar(select(Photo).where(Photo.sha256 == sha))
        if photo is None:
            photo = Photo(visit_id=visit.id, sha256=sha, original_name=name, stored_path=stored.stored_path,
                          stored_sha256=stored.stored_sha256, width=stored.width, height=stored.height)  # fmt: skip
            s.add(photo)
            s.flush()
        else:  # another process recorded it since the check above
            line = _verdict(photo, visit.id, settings, name)
            if line is not None:
                return line
        s.add(
            Score(
                photo_id=photo.id,
                method=record.method,
                settings_key=settings_key(settings),
                settings_json=json.dumps(settings, sort_keys=True, default=str),
                score=float(record.score),
                pictures_json=json.dumps(pictures, sort_keys=True),
                normalization_json=json.dumps(dict(record.normalization), sort_keys=True, default=str),
                environment_json=json.dumps(dict(record.environment), sort_keys=True, default=str),
                measures_json=json.dumps(
                    {k: {"value": m.value, "definition": m.definition} for k, m in record.measures.items()},
                    sort_keys=True,
                ),
                notes="; ".join(record.notes),
                cleftscore_version=str(record.environment.get("cleftscore_version") or __version__),
            )
        )
    return ImportLine(name, "added", "", float(record.score))


def _guarded(file: str, fn: Callable[[], ImportLine]) -> ImportLine:
    """One photo's import; its problems become a failed line naming the file, never an exception."""
    try:
        return fn()
    except StudyError as exc:
        if isinstance(exc, NotFoundError):
            raise  # the visit itself vanished: nothing else can go in either
        return ImportLine(file, "failed", f"{file}: {exc}")
    except (CleftscoreError, OSError, ValueError) as exc:
        text = " ".join(str(exc).split())
        return ImportLine(file, "failed", text if file in text else f"{file}: {text}")


def _check_visit(study: Study, visit_id: int) -> None:
    with study.transaction(write=False) as s:
        find_visit(s, visit_id)


def import_run(study: Study, visit_id: int, run_dir: str | os.PathLike[str], *, photos_dir: str | os.PathLike[str] | None = None,
               originals: Mapping[str, Path] | None = None) -> ImportReport:  # fmt: skip
    """Import the scored photos of a run folder into a visit.

    Parameters
    ----------
    study : Study
    visit_id : int
    run_dir : path
        A run folder (``cleftscore score --out DIR``), read with :mod:`cleftscore.run.folder`.
    photos_dir : path, optional
        Where the original photos are, when the paths the run recorded no longer lead to them.
    originals : mapping of photo id -> Path, optional
        The original of each photo id, when the caller knows it.

    Returns
    -------
    ImportReport
        One line per photo of the run: added, already there, or failed (with the reason).

    Raises
    ------
    NotFoundError
        Unknown visit.
    StudyError
        ``run_dir`` is not a run folder.
    RunFolderBusyError
        Another cleftscore process is writing into ``run_dir``.
    """
    from cleftscore.run.folder import RunLock, is_run_folder, read_records

    run = Path(run_dir)
    _check_visit(study, visit_id)
    if not is_run_folder(run):
        raise StudyError(f"{run}: not a run folder (no photos/ inside); give the --out folder of `cleftscore score`")
    report = ImportReport()
    pdir = Path(photos_dir) if photos_dir is not None else None
    with RunLock(run):  # a run still writing into the folder is refused in one line
        for record in read_records(run):
            original = _find_original(record, originals or {}, pdir)
            report.lines.append(
                _guarded(
                    Path(record.file).name, lambda r=record, o=original: _import_record(study, visit_id, run, r, o)
                )
            )
    return report


def _clear_stale_runs(tmp: Path) -> None:
    """Remove scoring folders that killed runs left behind (their lock is free again)."""
    from cleftscore.run.folder import RunFolderBusyError, RunLock

    if not tmp.is_dir():
        return
    for d in tmp.iterdir():
        if d.is_dir() and d.name.startswith("run-") and d.name != f"run-{os.getpid()}":
            try:
                with RunLock(d):
                    pass
            except RunFolderBusyError:
                continue  # a live run
            shutil.rmtree(d, ignore_errors=True)


def score_into_visit(study: Study, visit_id: int, photos: Sequence[str | os.PathLike[str]], settings: Any, *,
                     hooks: Any = None, cache_dir: str | Path | None = None,
                     on_line: Callable[[ImportLine], None] | None = None) -> ImportReport:  # fmt: skip
    """Score photos with the normal pipeline and record each one in a visit as it finishes.

    Photos already in the visit with a score of the same settings are skipped without running
    the pipeline; each scored photo is committed on its own, so an interrupted run keeps what
    it finished and running it again does only the rest.

    Parameters
    ----------
    study : Study
    visit_id : int
    photos : sequence of path
        Photo files or folders (as for ``cleftscore score``).
    settings : PipelineSettings
    hooks : ProgressHooks, optional
        Progress callbacks of the pipeline (``photo_done`` is called after the photo is recorded).
    cache_dir : path, optional
        GAN normalization cache.
    on_line : callable, optional
        Called with each photo's :class:`ImportLine` as soon as it is known.

    Returns
    -------
    ImportReport
        One line per photo.

    Raises
    ------
    NotFoundError
        Unknown visit (before anything is scored).
    CleftscoreError
        Problems that stop the whole run (no image found, weights missing).
    """
    from cleftscore.run.folder import RunLock
    from cleftscore.run.inputs import find_inputs

    _check_visit(study, visit_id)
    wanted = settings.to_dict()
    report = ImportReport()

    def emit(line: ImportLine) -> None:
        report.lines.append(line)
        if on_line is not None:
            on_line(line)

    tmp = study.files / "tmp"
    _clear_stale_runs(tmp)
    run = tmp / f"run-{os.getpid()}"
    shutil.rmtree(run, ignore_errors=True)
    try:
        with RunLock(run):  # taken before the copies are made, so no other run clears them away
            copies = _private_copies(study, visit_id, find_inputs(list(photos)), run / "in", wanted, emit)
            if copies:
                _score_copies(study, visit_id, copies, run, settings, hooks=hooks, cache_dir=cache_dir, emit=emit)
    finally:
        shutil.rmtree(run, ignore_errors=True)
    return report


@dataclass(frozen=True)
class _Copy:
    """A photo to score: the user's file, the private copy that is scored and stored, its bytes' SHA-256."""

    original: Path
    copy: Path
    sha256: str


def _private_copies(study: Study, visit_id: int, inputs: Sequence[Any], folder: Path, wanted: Mapping[str, Any],
                    emit: Callable[[ImportLine], None]) -> list[_Copy]:  # fmt: skip
    """Each photo's bytes read once: hashed, looked up in the study, and copied where only this run writes.

    The pipeline scores the copy and the study stores it, so the photo recorded is the photo
    scored even if the user's file changes meanwhile. Photos already done get their line here.
    """
    from cleftscore.io import atomic_write_bytes
    from cleftscore.study.store import sha256_bytes

    copies: list[_Copy] = []
    for n, item in enumerate(inputs):
        name = item.path.name
        if not item.path.is_file():
            emit(ImportLine(name, "failed", f"{item.path}: no such photo file"))
            continue
        try:
            data = item.path.read_bytes()
        except OSError as exc:
            emit(ImportLine(name, "failed", f"{item.path}: cannot be read ({exc.strerror})"))
            continue
        sha = sha256_bytes(data)
        line = _existing(study, visit_id, sha, wanted, name)
        if line is not None:
            emit(line)
            continue
        # One folder per photo keeps its file name (and so its photo id and messages) as given.
        copy = folder / f"{n:06d}" / name
        atomic_write_bytes(copy, data)
        copies.append(_Copy(item.path, copy, sha))
    return copies


def _score_copies(study: Study, visit_id: int, copies: Sequence[_Copy], run: Path, settings: Any, *, hooks: Any,
                  cache_dir: str | Path | None, emit: Callable[[ImportLine], None]) -> None:  # fmt: skip
    """Score the private copies into ``run`` and record each photo as it finishes."""
    from cleftscore.run.inputs import find_inputs
    from cleftscore.run.pipeline import score_photos
    from cleftscore.run.settings import ProgressHooks

    todo = [c.copy for c in copies]
    by_id = {i.photo_id: c for i, c in zip(find_inputs(todo), copies, strict=True)}
    user = hooks or ProgressHooks()

    def record_one(record: PhotoResult) -> ImportLine:
        c = by_id.get(record.photo_id)
        if c is None or record.file != os.fsdecode(c.copy).encode("utf-8", "backslashreplace").decode("utf-8"):
            raise CleftscoreError(f"{record.file}: the pipeline's record is not that of the photo {record.photo_id!r} "
                                  "this run gave it; nothing was recorded")  # fmt: skip
        line = _import_record(study, visit_id, run, record, c.copy, c.sha256)
        # The user knows the photo by its own path, not by the private copy's.
        return dataclasses.replace(line, message=line.message.replace(str(c.copy), str(c.original)))

    def photo_done(record: PhotoResult) -> None:
        # The result is the photo's record, as written into the run folder.
        emit(_guarded(Path(record.file).name, lambda: record_one(record)))
        if user.photo_done is not None:
            user.photo_done(record)

    pipeline_hooks = ProgressHooks(photo_done=photo_done, gan_start=user.gan_start, gan_step=user.gan_step,
                                   gan_grow=user.gan_grow, message=user.message)  # fmt: skip
    score_photos(todo, settings, out_dir=run, cache_dir=cache_dir, hooks=pipeline_hooks)
