"""The study database itself: schema revisions, upgrades, WAL, locks, damaged and newer files."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import inspect, select
from typer.testing import CliRunner

from cleftscore.cli import app
from cleftscore.study import migrations, records
from cleftscore.study.db import (
    StudyBusyError,
    StudyCorruptError,
    StudyError,
    StudyVersionError,
    current_revision,
    default_db_path,
    open_study,
    schema_head,
)
from cleftscore.study.models import Base, Patient, Score

runner = CliRunner()


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_new_study_is_wal_at_the_newest_revision_and_matches_the_models(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with open_study(tmp_path / "s.sqlite") as study:
        newest = max(f.name[:4] for f in Path(migrations.__file__).parent.joinpath("versions").glob("0*.py"))
        assert current_revision(study) == schema_head() == newest
        with study.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diffs == [], f"migrations and models disagree: {diffs}"
        assert study.files == tmp_path / "s.sqlite.files"


def test_no_table_has_a_name_column(tmp_path: Path) -> None:
    with open_study(tmp_path / "s.sqlite") as study:
        insp = inspect(study.engine)
        columns = {c["name"] for t in insp.get_table_names() for c in insp.get_columns(t)}
    assert not columns & {"name", "first_name", "last_name", "surname", "full_name", "given_name", "patient_name"}
    assert "code" in columns and "original_name" in columns  # the file's name, not the person's


def test_default_database_is_in_the_user_data_folder() -> None:
    import platformdirs

    assert default_db_path() == platformdirs.user_data_path("cleftscore") / "study.sqlite"


def _first_revision_study(path: Path) -> None:
    """A database as the first schema revision made it, with one of everything in it."""
    open_study(path, revision="0001").close()
    con = _raw(path)
    con.executescript("""
        INSERT INTO patients (id, code, created_at) VALUES (1, 'P001', '2026-01-01 00:00:00');
        INSERT INTO visits (id, patient_id, date, phase, created_at) VALUES (1, 1, '2026-01-05', 'pre-op', '2026-01-05 00:00:00');
        INSERT INTO photos (id, visit_id, sha256, original_name, stored_path, stored_sha256, width, height, imported_at)
            VALUES (1, 1, 'aa', 'a.jpg', 'photos/aa/aa.png', 'bb', 10, 10, '2026-01-05 00:00:00');
        INSERT INTO scores (id, photo_id, method, settings_key, settings_json, score, pictures_json, normalization_json,
                            environment_json, notes, cleftscore_version, created_at)
            VALUES (1, 1, 'asymmetry', 'k', '{"method": "asymmetry"}', 1.25, '{}', '{}', '{}', '', '0.1.0', '2026-01-05 00:00:00');
    """)
    con.close()


def test_first_revision_database_opens_after_upgrade_to_the_second(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    _first_revision_study(db)
    con = _raw(db)
    assert "measures_json" not in {r[1] for r in con.execute("PRAGMA table_info(scores)")}
    con.close()
    with open_study(db) as study:
        assert current_revision(study) == schema_head()
        with study.transaction() as s:
            score = s.scalar(select(Score))
            assert score.score == 1.25 and score.measures == {} and score.photo.visit.patient.code == "P001"
        indexes = {i["name"] for i in inspect(study.engine).get_indexes("visits")}
        assert "ix_visits_patient_date" in indexes
        records.add_visit(study, "P001", date=dt.date(2026, 5, 1), phase="post-op")  # the upgraded schema takes writes


def test_an_upgrade_that_fails_leaves_the_old_revision_whole(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    _first_revision_study(db)
    con = _raw(db)
    con.execute("CREATE INDEX ix_visits_patient_date ON visits (date)")  # makes revision 0002's second step fail
    con.close()
    with pytest.raises(StudyError, match="ix_visits_patient_date"):
        open_study(db)
    con = _raw(db)
    assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
    assert "measures_json" not in {r[1] for r in con.execute("PRAGMA table_info(scores)")}  # step one rolled back
    con.close()


def test_database_from_a_newer_cleftscore_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    open_study(db).close()
    con = _raw(db)
    con.execute("UPDATE alembic_version SET version_num = '0099'")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    before = db.read_bytes()
    with pytest.raises(StudyVersionError, match="newer cleftscore .*'0099'.* update cleftscore"):
        open_study(db)
    result = runner.invoke(app, ["study", "patients", "--db", str(db)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "newer cleftscore" in lines[0] and "Traceback" not in result.output
    assert db.read_bytes() == before


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\x07" * 4000])
def test_damaged_file_is_one_line_and_left_alone(tmp_path: Path, content: bytes) -> None:
    db = tmp_path / "s.sqlite"
    db.write_bytes(content)
    with pytest.raises(StudyCorruptError, match="s.sqlite"):
        open_study(db)
    result = runner.invoke(app, ["study", "add-patient", "P001", "--db", str(db)])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "restore it from a backup" in result.output
    assert db.read_bytes() == content


def test_other_sqlite_database_is_not_taken_for_a_study(tmp_path: Path) -> None:
    db = tmp_path / "other.sqlite"
    con = _raw(db)
    con.execute("CREATE TABLE invoices (id INTEGER)")
    con.close()
    with pytest.raises(StudyCorruptError, match="not a cleftscore study"):
        open_study(db)


def test_missing_database_is_not_made_unless_asked(tmp_path: Path) -> None:
    result = runner.invoke(app, ["study", "show", "P001", "--db", str(tmp_path / "none.sqlite")])
    assert result.exit_code == 1 and "study init" in result.output
    assert not (tmp_path / "none.sqlite").exists()


def test_locked_database_is_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    open_study(db).close()
    holder = _raw(db)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        with open_study(db, timeout=0.2) as study, pytest.raises(StudyBusyError, match="locked by another process"):
            records.add_patient(study, "P001")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with open_study(db) as study, study.transaction() as s:
        assert s.scalars(select(Patient)).all() == []


def test_readers_are_not_blocked_by_a_writer(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    with open_study(db) as study:
        records.add_patient(study, "P001")
    holder = _raw(db)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO patients (code, created_at) VALUES ('P002', '2026-01-01')")
    try:
        reader = _raw(db)
        assert reader.execute("SELECT code FROM patients").fetchall() == [("P001",)]  # WAL: the committed state
        reader.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.parametrize("code", ["John Smith", "", "a" * 33, "-P1", "P/1", "Zoë"])
def test_patient_codes_are_pseudonymous(tmp_path: Path, code: str) -> None:
    with open_study(tmp_path / "s.sqlite") as study, pytest.raises(StudyError, match="pseudonymous code"):
        records.add_patient(study, code)


def test_patient_and_visit_checks(tmp_path: Path) -> None:
    with open_study(tmp_path / "s.sqlite") as study:
        records.add_patient(study, "P001", birth_year=2024, cleft_type="lip-palate", cleft_side="bilateral")
        with pytest.raises(StudyError, match="already in the study"):
            records.add_patient(study, "P001")
        with pytest.raises(StudyError, match="cleft side must be one of"):
            records.add_patient(study, "P002", cleft_side="up")
        with pytest.raises(StudyError, match="birth year"):
            records.add_patient(study, "P003", birth_year=1800)
        with pytest.raises(StudyError, match="phase must be one of pre-op, post-op, follow-up"):
            records.add_visit(study, "P001", date=dt.date(2026, 1, 1), phase="during")
        with pytest.raises(StudyError, match="no patient 'P404'"):
            records.add_visit(study, "P404", date=dt.date(2026, 1, 1), phase="pre-op")
        v = records.add_visit(study, "P001", date=dt.date(2026, 1, 1), phase="pre-op", procedure="lip adhesion")
        assert v.id == 1


def test_cli_date_and_unknown_patient_are_one_line(tmp_path: Path) -> None:
    db = str(tmp_path / "s.sqlite")
    assert runner.invoke(app, ["study", "init", "--db", db]).exit_code == 0
    assert runner.invoke(app, ["study", "add-patient", "P001", "--db", db]).exit_code == 0
    bad_date = runner.invoke(
        app, ["study", "add-visit", "P001", "--date", "14/03/2026", "--phase", "pre-op", "--db", db]
    )
    assert bad_date.exit_code == 1 and "YYYY-MM-DD" in bad_date.output
    unknown = runner.invoke(
        app, ["study", "add-visit", "P002", "--date", "2026-03-14", "--phase", "pre-op", "--db", db]
    )
    assert unknown.exit_code == 1 and "no patient 'P002'" in unknown.output
    assert len(unknown.output.strip().splitlines()) == 1
    ok = runner.invoke(app, ["study", "add-visit", "P001", "--date", "2026-03-14", "--phase", "pre-op", "--db", db])
    assert ok.exit_code == 0 and "Added visit 1" in ok.output


def test_outcomes_of_an_empty_study_is_one_line(tmp_path: Path) -> None:
    db = str(tmp_path / "s.sqlite")
    assert runner.invoke(app, ["study", "init", "--db", db]).exit_code == 0
    result = runner.invoke(app, ["study", "outcomes", "--db", db, "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "no scores yet" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_export_of_an_empty_study_has_headers(tmp_path: Path) -> None:
    from cleftscore.study.export import COLUMNS, export_tables

    with open_study(tmp_path / "s.sqlite") as study:
        written = export_tables(study, tmp_path / "csv")
    for path in written:
        header = path.read_text(encoding="utf-8-sig").strip()
        assert header == ",".join(COLUMNS[path.stem])


def test_missing_gan_weights_are_one_line_pointing_to_the_asymmetry_method(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    monkeypatch.setenv("CLEFTSCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CLEFTSCORE_GENERATOR", raising=False)
    db = str(tmp_path / "s.sqlite")
    for args in (["add-patient", "P001"], ["add-visit", "P001", "--date", "2026-01-01", "--phase", "pre-op"]):
        assert runner.invoke(app, ["study", *args, "--db", db]).exit_code == 0
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    result = runner.invoke(app, ["study", "score", "1", str(tmp_path / "a.png"), "--db", db])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "weights are not on this machine" in result.output and "--method asymmetry" in result.output
    assert not any((tmp_path / "s.sqlite.files" / "tmp").glob("run-*"))
