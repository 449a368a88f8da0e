"""Rater surveys in the study: creation, invitations, the rater's way through, export and report inputs.

A study is built directly (stored photos and score rows), so nothing is scored here; the report
with its statistics (pingouin) is in ``test_survey_slow.py``.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from cleftscore.evaluate.ratings import read_ratings
from cleftscore.study.db import NotFoundError, Study, StudyError
from cleftscore.study.models import Photo
from cleftscore.study.survey import (
    PAPER_SCALE,
    PhotoSelection,
    SurveyClosedError,
    close_survey,
    create_survey,
    invite_raters,
    parse_scale,
    rater_order,
    rater_photo,
    rater_state,
    record_rating,
    submit,
    survey_status,
)
from cleftscore.study.survey_report import export_ratings, survey_ratings
from survey_helpers import SECRET_NAME, exif_jpeg, make_study


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("survey")


@pytest.fixture(scope="module")
def study(study_dir: Path) -> Study:
    """One study for the module: each test makes surveys of its own title."""
    st = make_study(study_dir)
    yield st
    st.close()


def test_scale_forms() -> None:
    assert parse_scale("1-7") == PAPER_SCALE
    assert PAPER_SCALE.anchor(1) == "most abnormal" and PAPER_SCALE.anchor(7) == "almost normal"
    five = parse_scale("1-5:1=severe,5=none", higher_is="normal")
    assert five.values == (1, 2, 3, 4, 5) and five.anchors == {1: "severe", 5: "none"}
    for bad in ("7-1", "1-5:9=x", "1..5", "1-5:a=b"):
        with pytest.raises(ValueError):
            parse_scale(bad)


def test_selection_by_phase_patient_visit_and_folder(study: Study, study_dir: Path, tmp_path: Path) -> None:
    everything = create_survey(study, "all", PhotoSelection(), crop="whole")
    assert everything.n_photos == 6
    pre = create_survey(study, "pre", PhotoSelection(phases=("pre-op",)), crop="whole")
    assert pre.n_photos == 4
    assert create_survey(study, "P002", PhotoSelection(patients=("P002",)), crop="whole").n_photos == 3
    with study.transaction(write=False) as s:
        visit = s.get(Photo, 1).visit_id
    assert create_survey(study, "visit", PhotoSelection(visits=(visit,)), crop="whole").n_photos == 2
    folder = tmp_path / "chosen"
    folder.mkdir()
    for name in (f"{SECRET_NAME}_P001_0.jpg", f"{SECRET_NAME}_P002_2.jpg"):
        (folder / f"renamed_{name}").write_bytes((study_dir / name).read_bytes())
    assert create_survey(study, "folder", PhotoSelection(folder=folder), crop="whole").n_photos == 2
    with pytest.raises(StudyError, match="already a survey"):
        create_survey(study, "all", PhotoSelection(), crop="whole")
    (folder / "stranger.jpg").write_bytes(exif_jpeg(tmp_path / "x.jpg", 999).read_bytes())
    with pytest.raises(StudyError, match="not in the study"):
        create_survey(study, "folder2", PhotoSelection(folder=folder), crop="whole")
    with pytest.raises(NotFoundError):
        create_survey(study, "nobody", PhotoSelection(patients=("P404",)), crop="whole")


def test_selection_needs_two_photos(study: Study) -> None:
    with pytest.raises(StudyError, match="at least 2"):
        create_survey(study, "tiny", PhotoSelection(patients=("P002",), phases=("post-op",)), crop="whole")


def test_orders_are_seeded_recorded_and_repeat_later() -> None:
    items = list(range(10, 30))
    a = rater_order(items, seed=1, repeat_fraction=0.25)
    assert a == rater_order(items, seed=1, repeat_fraction=0.25)
    assert a != rater_order(items, seed=2, repeat_fraction=0.25)
    assert sorted(a[:20]) == items and len(a) == 25 and set(a[20:]) <= set(items)
    assert a[20] != a[19]
    assert rater_order(items, seed=1, repeat_fraction=0.0) == a[:20]


def test_a_rater_rates_stops_comes_back_and_cannot_change_after_submitting(study: Study) -> None:
    info = create_survey(study, "main", PhotoSelection(), repeat_fraction=0.5, crop="whole", seed=7)
    inv = {i.code: i for i in invite_raters(study, "main", ["R01", "R02"], base_url="http://clinic:8765/")}
    assert inv["R01"].link == f"http://clinic:8765/survey/r/{inv['R01'].token}"
    with study.transaction(write=False) as s:  # only the token's hash is kept
        raw = s.connection().exec_driver_sql("SELECT token_sha256 FROM survey_raters").scalars().all()
    assert inv["R01"].token not in "".join(raw)
    state = rater_state(study, inv["R01"].token)
    assert (state.total, state.done, state.next_position, state.submitted) == (9, 0, 0, False)
    with pytest.raises(StudyError, match="not open"):
        record_rating(study, inv["R01"].token, position=3, rating=4)  # no skipping ahead
    with pytest.raises(StudyError, match="one of 1..7"):
        record_rating(study, inv["R01"].token, position=0, rating=8)
    for pos in range(4):
        record_rating(study, inv["R01"].token, position=pos, rating=1 + pos)
    record_rating(study, inv["R01"].token, position=2, rating=7)  # a change before submitting
    with pytest.raises(StudyError, match="still need"):
        submit(study, inv["R01"].token)
    back = rater_state(study, inv["R01"].token)  # "come back later": the state is in the database
    assert back.next_position == 4 and back.ratings[2] == 7
    for pos in range(4, 9):
        record_rating(study, inv["R01"].token, position=pos, rating=4)
    assert submit(study, inv["R01"].token).submitted
    with pytest.raises(SurveyClosedError):
        record_rating(study, inv["R01"].token, position=0, rating=5)
    assert rater_state(study, inv["R01"].token).ratings[0] == 1
    rows = survey_ratings(study, info.id)
    assert sum(r.repeat for r in rows) == 3 and len(rows) == 9
    assert {r.photo_id for r in rows if r.repeat} <= {r.photo_id for r in rows if not r.repeat}
    status = survey_status(study, "main")[0]
    assert [(r.code, r.rated, r.total, r.submitted_at is not None) for r in status.raters] == [
        ("R01", 9, 9, True), ("R02", 0, 9, False)]  # fmt: skip
    close_survey(study, "main")
    with pytest.raises(SurveyClosedError):
        record_rating(study, inv["R02"].token, position=0, rating=5)
    tok = inv["R01"].token
    for bad in ("", "x" * 43, tok[:-1] + ("B" if tok.endswith("A") else "A")):
        with pytest.raises(NotFoundError, match="not valid"):
            rater_state(study, bad)


def test_rater_codes_are_pseudonymous_and_unique(study: Study) -> None:
    create_survey(study, "codes", PhotoSelection(), crop="whole")
    with pytest.raises(StudyError, match="not allowed"):
        invite_raters(study, "codes", ["Jane Doe"], base_url="http://x")
    invite_raters(study, "codes", ["R1"], base_url="http://x")
    with pytest.raises(StudyError, match="already invited"):
        invite_raters(study, "codes", ["R1"], base_url="http://x")


def test_rater_photo_has_no_exif_and_no_name(study: Study) -> None:
    create_survey(study, "pics", PhotoSelection(patients=("P001",)), crop="whole", seed=3)
    token = invite_raters(study, "pics", ["R9"], base_url="http://x")[0].token
    for pos in range(rater_state(study, token).total):
        data = rater_photo(study, token, pos)
        img = Image.open(io.BytesIO(data))
        img.load()
        assert img.format == "PNG" and img.size == (80, 96)
        assert not img.getexif() and not img.info, img.info
        for secret in (b"Jane", b"Doe", b"P001", b"secret", b"SecretCam", b".jpg"):
            assert secret not in data
    with pytest.raises(NotFoundError):
        rater_photo(study, token, 99)


def test_export_is_what_evaluate_reads(study: Study, tmp_path: Path) -> None:
    create_survey(study, "ex", PhotoSelection(), repeat_fraction=0.0, crop="whole", seed=1)
    invs = invite_raters(study, "ex", ["A", "B"], base_url="http://x")
    for k, inv in enumerate(invs):
        for pos in range(6):
            record_rating(study, inv.token, position=pos, rating=(pos + k) % 7 + 1)
    wide, long = export_ratings(study, "ex", tmp_path / "out")
    ratings = read_ratings(wide)
    assert len(ratings) == 6 and all(name.startswith(SECRET_NAME) for name in ratings)
    text = long.read_text(encoding="utf-8-sig").splitlines()
    assert text[0] == "rater,photo_id,file,rating,time,position,repeat,submitted"
    assert len(text) == 13


def test_revision_0004_upgrades_an_older_study_and_matches_the_models(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import inspect

    from cleftscore.study.db import MIGRATIONS_DIR, open_study
    from cleftscore.study.models import Base

    before = ScriptDirectory(str(MIGRATIONS_DIR)).get_revision("0004").down_revision
    open_study(tmp_path / "old.sqlite", revision=str(before)).close()
    with open_study(tmp_path / "old.sqlite") as st:
        tables = set(inspect(st.engine).get_table_names())
        assert {"surveys", "survey_items", "survey_raters", "survey_ratings"} <= tables
        with st.engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diffs if "survey" in repr(d)] == []
