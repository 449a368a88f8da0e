"""Checking a study: the database's integrity, and its files against the hashes it records.

After a crash the database is consistent by construction (one transaction per photo); what may
be left is a file nobody references (written just before a transaction that never committed)
or a temporary file of an interrupted write. ``check`` lists both; ``clean=True`` removes them.
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
    if clean:
        for path in report.unreferenced:
            path.unlink(missing_ok=True)
            report.removed += 1
    return report
