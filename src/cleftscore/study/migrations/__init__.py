"""Alembic migrations of the study schema; applied by :func:`cleftscore.study.db.open_study`."""
