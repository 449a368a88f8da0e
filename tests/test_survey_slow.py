"""Survey report on a simulated panel, the face crop, and reliability properties (slow: pingouin, dlib)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cleftscore.evaluate.reliability import RatingMatrix, icc, ordinal_alpha, photo_means, rater_agreement
from cleftscore.evaluate.statistics import correlate
from cleftscore.study.db import open_study
from cleftscore.study.records import add_patient, add_visit
from cleftscore.study.survey import (
    PhotoSelection,
    create_survey,
    invite_raters,
    rater_photo,
    rater_state,
    record_rating,
    submit,
)
from cleftscore.study.survey_report import report_json, report_markdown, survey_report
from survey_helpers import add_scored_photo, exif_jpeg, make_study

pytestmark = pytest.mark.slow


def test_report_on_a_simulated_panel(tmp_path: Path) -> None:
    study = make_study(tmp_path)
    create_survey(study, "panel", PhotoSelection(), repeat_fraction=0.5, crop="whole", seed=11)
    codes = ["R1", "R2", "R3", "R4", "FAR"]
    invs = invite_raters(study, "panel", codes, base_url="http://x")
    rng = np.random.default_rng(0)
    # The fixture's machine score of photo i grows with i; the panel sees the same order plus noise.
    with study.transaction(write=False) as s:
        from cleftscore.study.models import Photo, SurveyRater

        truth = {p.id: 1 + 6 * (p.scores[0].score - 10) / 113 for p in s.query(Photo)}
        orders = {r.code: r.order for r in s.query(SurveyRater)}
        item_photo = {it.id: it.photo_id for r in s.query(SurveyRater) for it in r.survey.items}
    for inv in invs:
        for pos, item in enumerate(orders[inv.code]):
            t = truth[item_photo[item]]
            value = 8 - t if inv.code == "FAR" else t + rng.normal(0, 0.6)
            record_rating(study, inv.token, position=pos, rating=int(np.clip(round(value), 1, 7)))
        submit(study, inv.token)
    rep = survey_report(study, "panel", n_boot=500)
    assert rep.far_raters == ("FAR",)
    assert rep.icc is not None and rep.icc.n_raters == 5 and rep.icc.n_photos == 6
    assert len(rep.photos) == 6 and all(pm.n_raters == 5 for _, _, pm in rep.photos)
    assert rep.ceiling == pytest.approx(math.sqrt(rep.icc.icc3_k.value))
    assert len(rep.repeats) == 5 and all(r.n_pairs == 3 for r in rep.repeats)
    score_rows = [m for m in rep.machine if not m.measure]
    assert len(score_rows) == 1 and score_rows[0].n == 6
    means = {pid: pm.mean for pid, _, pm in rep.photos}
    with study.transaction(write=False) as s:
        from cleftscore.study.models import Photo

        direct = correlate([s.get(Photo, p).scores[0].score for p in sorted(means)], [means[p] for p in sorted(means)],
                           n_boot=500, seed=0)  # fmt: skip
    assert score_rows[0].pearson_r == pytest.approx(direct.pearson_r)
    assert score_rows[0].pearson_ci == pytest.approx(direct.pearson_ci)
    with study.transaction(write=False) as s:
        from cleftscore.score.calibration import fit_calibration

        cal = fit_calibration(
            [s.get(Photo, p).scores[0].score for p in sorted(means)], [means[p] for p in sorted(means)]
        )
    assert (score_rows[0].slope, score_rows[0].intercept) == pytest.approx((cal.slope, cal.intercept))
    assert 0.0 <= score_rows[0].rmse < 1.0
    assert all(math.isnan(m.slope) for m in rep.machine if m.measure)
    text = report_markdown(rep)
    assert "ICC(2,1)" in text and "ICC(2,k)" in text and "FAR (far)" in text and "ceiling" in text
    data = report_json(rep)
    assert data["far_raters"] == ["FAR"] and data["icc"]["icc2_k"]["value"] == pytest.approx(rep.icc.icc2_k.value)
    study.close()


def test_report_of_a_survey_in_progress_says_what_is_missing(tmp_path: Path) -> None:
    study = make_study(tmp_path)
    create_survey(study, "early", PhotoSelection(), repeat_fraction=0.0, crop="whole", seed=1)
    a, b = invite_raters(study, "early", ["A", "B"], base_url="http://x")
    for pos in range(6):
        record_rating(study, a.token, position=pos, rating=pos + 1)
    record_rating(study, b.token, position=0, rating=3)
    rep = survey_report(study, "early", n_boot=100)
    assert rep.icc is None and "at least 2 raters" in rep.icc_note
    assert math.isfinite(rep.alpha) or rep.alpha_note
    assert "n/a" in report_markdown(rep)
    study.close()


def test_rater_sees_the_face_crop(tmp_path: Path, local_faces: Path) -> None:
    study = open_study(tmp_path / "s.sqlite")
    add_patient(study, "P001")
    visit = add_visit(study, "P001", date=dt.date(2026, 1, 1), phase="pre-op").id
    add_scored_photo(study, visit, local_faces / "exif_orientation6_tiny_portrait.jpg", 1.0)
    add_scored_photo(study, visit, exif_jpeg(tmp_path / "noise.jpg", 1), 2.0)
    create_survey(study, "faces", PhotoSelection(), crop="face", seed=3)
    token = invite_raters(study, "faces", ["R1"], base_url="http://x")[0].token
    sizes = set()
    for pos in range(rater_state(study, token).total):
        import io

        sizes.add(Image.open(io.BytesIO(rater_photo(study, token, pos))).size)
    assert (80, 96) in sizes  # no face: shown whole
    assert any(w < 128 and h < 128 for w, h in sizes)  # the portrait (128 x 128) cut around its face
    study.close()


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.integers(1, 7), min_size=4, max_size=12), st.integers(2, 5))
def test_identical_raters_agree_perfectly(col: list[int], k: int) -> None:
    values = np.tile(np.asarray(col, dtype=np.float64), (k, 1))
    m = RatingMatrix(tuple(f"R{i}" for i in range(k)), tuple(f"p{j}" for j in range(len(col))), values)
    if len(set(col)) > 1:
        assert ordinal_alpha(m, scale=range(1, 8)) == pytest.approx(1.0)
        assert icc(m).icc2_1.value == pytest.approx(1.0)
        assert not any(a.far for a in rater_agreement(m))
    assert [pm.mean for pm in photo_means(m)] == pytest.approx(col)


def test_cli_create_invite_status_export_and_one_line_errors(tmp_path: Path) -> None:
    study = make_study(tmp_path)
    from typer.testing import CliRunner

    from cleftscore.cli import app

    runner = CliRunner()
    db = ["--db", str(tmp_path / "s.sqlite")]
    r = runner.invoke(app, ["survey", "create", "cli panel", "--phase", "pre-op", "--crop", "whole", "--seed", "4",
                            "--rater", "R1", "--rater", "R2", "--url", "http://clinic:9000", *db])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "4 photos" in r.output and r.output.count("http://clinic:9000/survey/r/") == 2
    token = r.output.split("R1: http://clinic:9000/survey/r/")[1].split()[0]
    record_rating(study, token, position=0, rating=5)
    r = runner.invoke(app, ["survey", "status", "cli panel", *db])
    assert r.exit_code == 0 and "R1: 1 of 5 rated, not submitted" in r.output, r.output
    r = runner.invoke(app, ["survey", "export", "cli panel", "--out", str(tmp_path / "exp"), *db])
    assert r.exit_code == 0 and (tmp_path / "exp" / "ratings_long.csv").is_file(), r.output
    for args in (["create", "bad", "--scale", "7-1"], ["create", "bad", "--crop", "eyes"], ["invite", "nope", "R3"],
                 ["invite", "cli panel", "Jane Doe"]):  # fmt: skip
        r = runner.invoke(app, ["survey", *args, *db])
        assert r.exit_code == 1 and r.output.count("\n") == 1 and "error:" in r.output, (args, r.output)
    r = runner.invoke(app, ["survey", "report", "cli panel", "--out", str(tmp_path / "rep"), "--n-boot", "50", *db])
    assert r.exit_code == 0 and "ICC: n/a" in r.output and (tmp_path / "rep" / "report.json").is_file(), r.output
    study.close()
