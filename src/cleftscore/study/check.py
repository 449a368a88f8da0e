"""Checking a study: the database's integrity, and its files against the hashes it records.

After a crash the database is consistent by construction (one transaction per photo); what may
be left is a file nobody references (written just before a transaction that never committed)
or a temporary file of an interrupted write. ``check`` lists both; ``clean=True`` removes them.

It also lists the web app's uploads that no job can use any more (``web/uploads/job-*`` of a
job that ended, or of none): they hold the photos as sent, EXIF and GPS included, and
``clean=True`` deletes them too, unless a server is running on the study.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from cleftscore.paths import sha256_file
from cleftscore.study.db import Study
from cleftscore.study.models import Photo, Score

__all__ = ["CheckReport", "check_study"]

_STORED = ("photos", "pictures")


@dataclass
class CheckReport:
    """Problems (each one line) and leftovers of a study's files."""

    problems: list[str] = field(default_factory=list)
    unreferenced: list[Path] = field(default_factory=list)
    removed: int = 0
    #: Upload folders of the web app that no job needs (see the module's docstring).
    stale_uploads: list[Path] = field(default_factory=list)
    #: Why stale uploads were not removed (a server is running), or empty.
    uploads_note: str = ""
    uploads_removed: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def check_study(study: Study, *, clean: bool = False) -> CheckReport:
    """Check integrity, foreign keys and every stored file's hash; find unreferenced files.

    Parameters
    ----------
    study : Study
    clean : bool
        Remove unreferenced files and temporary files of interrupted writes.

    Returns
    -------
    CheckReport
    """
    report = CheckReport()
    with study.transaction(write=False) as s:
        conn = s.connection()
        integrity = conn.exec_driver_sql("PRAGMA integrity_check").scalars().all()
        if integrity != ["ok"]:
            report.problems.extend(f"{study.path}: {line}" for line in integrity)
        for table, rowid, parent, _ in conn.exec_driver_sql("PRAGMA foreign_key_check").all():
            report.problems.append(f"{study.path}: row {rowid} of {table} points to a missing {parent} row")
        referenced: set[str] = set()
        for photo in s.scalars(select(Photo).order_by(Photo.id)):
            referenced.add(photo.stored_path)
            path = study.files / photo.stored_path
            if not path.is_file():
                report.problems.append(f"{path}: stored copy of photo {photo.id} ({photo.original_name}) is missing")
            elif sha256_file(path) != photo.stored_sha256:
                report.problems.append(f"{path}: stored copy of photo {photo.id} ({photo.original_name}) has changed")
        for score in s.scalars(select(Score).order_by(Score.id)):
            for name, rel in json.loads(score.pictures_json).items():
                referenced.add(rel)
                if not (study.files / rel).is_file():
                    report.problems.append(f"{study.files / rel}: picture {name} of score {score.id} is missing")
    for folder in _STORED:
        root = study.files / folder
        if not root.is_dir():
            continue
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if path.relative_to(study.files).as_posix() not in referenced:
                report.unreferenced.append(path)
    report.stale_uploads = _stale_uploads(study.files / "web")
    if clean:
        for path in report.unreferenced:
            path.unlink(missing_ok=True)
            report.removed += 1
        _clean_uploads(study.files / "web", report)
    return report


#: Job states whose uploads may still be needed (a re-run of an interrupted job scores the rest).
_LIVE_JOBS = ("queued", "running", "interrupted")


def _stale_uploads(web: Path) -> list[Path]:
    """Upload folders whose job ended or was never recorded (read-only look at the server's state)."""
    import sqlite3
    from urllib.parse import quote

    root = web / "uploads"
    if not root.is_dir():
        return []
    live: set[Path] = set()
    state = web / "server.sqlite"
    if state.is_file():
        con = sqlite3.connect(f"file:{quote(str(state.resolve()))}?mode=ro", uri=True, timeout=10)
        try:
            for status, folder in con.execute("SELECT status, folder FROM jobs"):
                if status in _LIVE_JOBS:
                    live.add(Path(folder).resolve())
        finally:
            con.close()
    return [p for p in sorted(root.iterdir()) if p.resolve() not in live]


def _clean_uploads(web: Path, report: CheckReport) -> None:
    """Delete the stale uploads, unless a server holds the study (it may be staging an upload now)."""
    import shutil

    from cleftscore.io import ProcessLock

    if not report.stale_uploads:
        return
    lock = ProcessLock(web / "server.lock")
    if lock.path.exists() and lock.acquire(write_pid=False) is not None:
        report.uploads_note = "a cleftscore serve is running on this study; stop it to clean its uploads"
        return
    try:
        for path in report.stale_uploads:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            report.uploads_removed += 1
    finally:
        lock.release(clear=False)
