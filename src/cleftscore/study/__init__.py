"""The study record: patients, visits, photos and scores in a local SQLite database.

A study is one SQLite file (:func:`~cleftscore.study.db.open_study`) and, beside it, a
content-addressed folder of stored photo copies and score pictures. Patients carry a
pseudonymous code only. The schema is versioned with Alembic and upgraded when a study is
opened; every write is one transaction, so an interrupted command leaves the database as it was
before the photo it was working on.

Modules, in data-flow order: ``models`` (tables), ``db`` (opening, upgrading, locking,
errors), ``store`` (the content-addressed files), ``records`` (patients, visits, importing run
folders, scoring photos into a visit), ``outcomes`` (change from before repair with CIs),
``plots`` (timeline and cohort pictures) and ``export`` (CSV of every table).
"""

from __future__ import annotations

__all__: list[str] = []
