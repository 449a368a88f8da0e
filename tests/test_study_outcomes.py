"""Outcome rules on hand-made score rows (no photos scored): baselines, settings choice, cohort tests."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from cleftscore.study.db import Study, StudyError, open_study
from cleftscore.study.models import Patient, Photo, Score, Visit
from cleftscore.study.outcomes import compute_outcomes

_SETTINGS = {"a": {"method": "asymmetry", "size": 128}, "b": {"method": "asymmetry", "size": 256}}


def _add(
    study: Study,
    code: str,
    visits: list[tuple[str, str, list[float]]],
    *,
    settings: str = "a",
    method: str = "asymmetry",
) -> None:
    """A patient with visits (date, phase, photo scores); each score a new photo."""
    with study.transaction() as s:
        patient = s.query(Patient).filter_by(code=code).one_or_none()
        if patient is None:
            patient = Patient(code=code)
            s.add(patient)
            s.flush()
        for date, phase, scores in visits:
            visit = Visit(patient_id=patient.id, date=dt.date.fromisoformat(date), phase=phase)
            s.add(visit)
            s.flush()
            for value in scores:
                n = s.query(Photo).count()
                photo = Photo(visit_id=visit.id, sha256=f"{n:064x}", original_name=f"{n}.jpg", stored_path=f"photos/{n}.png",
                              stored_sha256="0" * 64, width=8, height=8)  # fmt: skip
                s.add(photo)
                s.flush()
                s.add(Score(photo_id=photo.id, method=method, settings_key=settings * 64, settings_json=json.dumps(_SETTINGS[settings]),
                            score=value, pictures_json="{}", normalization_json="{}", environment_json="{}",
                            cleftscore_version="0.1.0"))  # fmt: skip


@pytest.fixture()
def study(tmp_path: Path):
    with open_study(tmp_path / "s.sqlite") as st:
        yield st


def test_baseline_is_the_latest_pre_op_visit_and_earlier_visits_are_ignored(study: Study) -> None:
    _add(study, "P1", [
        ("2026-01-01", "pre-op", [0.1, 0.3]),
        ("2026-01-05", "post-op", [5.0, 5.0]),  # a post-op visit before the last pre-op one: not an outcome
        ("2026-02-01", "pre-op", [0.5, 0.7]),
        ("2026-05-01", "post-op", [1.0, 1.4]),
    ])  # fmt: skip
    out = compute_outcomes(study, n_boot=500)
    (change,) = out.changes
    assert change.baseline_visit_id == 3 and change.visit_id == 4 and change.days == 89
    assert change.change == pytest.approx(1.2 - 0.6)


def test_patients_without_a_pre_op_or_later_visit_are_named_in_the_notes(study: Study) -> None:
    _add(study, "P1", [("2026-01-01", "pre-op", [0.1, 0.2]), ("2026-03-01", "post-op", [0.5, 0.6])])
    _add(study, "P2", [("2026-01-01", "post-op", [0.4])])
    _add(study, "P3", [("2026-01-01", "pre-op", [0.4])])
    out = compute_outcomes(study, n_boot=500)
    assert [c.code for c in out.changes] == ["P1"]
    assert any("P2: no scored pre-op visit" in n for n in out.notes)
    assert any("P3: no scored visit after the pre-op visit" in n for n in out.notes)
    assert (
        out.cohort.mean_change == pytest.approx(0.4)
        and out.cohort.p_value is None
        and "needs 2 or more" in out.cohort.note
    )


def test_cohort_statistics_are_scipy_paired_tests(study: Study) -> None:
    rng = np.random.default_rng(1)
    for k in range(6):
        pre = float(rng.normal(0.5, 0.2))
        _add(
            study,
            f"P{k}",
            [
                ("2026-01-01", "pre-op", [pre, pre + 0.1]),
                ("2026-06-01", "post-op", [pre + 0.3 + 0.1 * k, pre + 0.4 + 0.1 * k]),
            ],
        )
    out = compute_outcomes(study, n_boot=500)
    co = out.cohort
    before, after = np.array(co.before), np.array(co.later)
    t = stats.ttest_rel(after, before)
    assert co.t_statistic == pytest.approx(t.statistic) and co.p_value == pytest.approx(t.pvalue)
    assert co.wilcoxon_p == pytest.approx(stats.wilcoxon(after, before).pvalue)
    diff = after - before
    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    assert (co.ci_low, co.ci_high) == pytest.approx((diff.mean() - half, diff.mean() + half))


def test_identical_changes_give_no_test(study: Study) -> None:
    for k in range(3):
        _add(
            study,
            f"P{k}",
            [("2026-01-01", "pre-op", [0.2 * k, 0.2 * k]), ("2026-06-01", "post-op", [0.2 * k + 0.5] * 2)],
        )
    co = compute_outcomes(study, n_boot=500).cohort
    assert co.mean_change == pytest.approx(0.5) and co.p_value is None and "same amount" in co.note


def test_settings_most_photos_have_are_used_and_others_can_be_chosen(study: Study) -> None:
    _add(study, "P1", [("2026-01-01", "pre-op", [0.1, 0.2]), ("2026-03-01", "post-op", [0.5, 0.6])], settings="a")
    _add(study, "P2", [("2026-01-01", "pre-op", [0.3, 0.3]), ("2026-03-01", "post-op", [0.9])], settings="b")
    default = compute_outcomes(study, n_boot=500)
    assert default.settings_key == "a" * 64 and default.settings == _SETTINGS["a"]
    assert [c.code for c in default.changes] == ["P1"]
    assert any("2 settings of method asymmetry" in n for n in default.notes)
    assert any("3 photo(s) have no score with these settings" in n for n in default.notes)
    chosen = compute_outcomes(study, settings="bbbb", n_boot=500)
    (one_photo,) = chosen.changes
    assert one_photo.code == "P2" and one_photo.ci_low is None and one_photo.ci_high is None
    assert one_photo.note == "one photo at visit 4: no CI is possible (the bootstrap resamples photos)"
    with pytest.raises(StudyError, match="match 0 settings"):
        compute_outcomes(study, settings="cccc")


def test_several_methods_need_a_choice(study: Study) -> None:
    _add(study, "P1", [("2026-01-01", "pre-op", [0.1, 0.2]), ("2026-03-01", "post-op", [0.5, 0.6])], method="asymmetry")
    _add(study, "P1", [("2026-04-01", "follow-up", [0.7])], method="gan", settings="b")
    with pytest.raises(StudyError, match="several methods .*asymmetry, gan.* --method"):
        compute_outcomes(study)
    with pytest.raises(StudyError, match="no scores of method 'mirror'"):
        compute_outcomes(study, method="mirror")
    assert len(compute_outcomes(study, method="asymmetry", n_boot=500).changes) == 1


def test_cli_says_when_no_ci_is_possible_and_plots_without_thumbnails(study: Study, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cleftscore.cli import app

    _add(study, "P1", [("2026-01-01", "pre-op", [0.1, 0.2]), ("2026-03-01", "post-op", [0.5])])
    _add(study, "P2", [("2026-01-01", "pre-op", [0.3, 0.4]), ("2026-03-01", "post-op", [0.6, 0.8])])
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["study", "outcomes", "--db", str(study.path), "--out", str(out), "--n-boot", "500"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert (
        "P1 visit 2 (2026-03-01 post-op, +59 d): change +0.3500 (one photo at visit 2: no CI is possible"
        in result.output
    )
    assert "P2 visit 4 (2026-03-01 post-op, +59 d): change +0.3500 (95% CI" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["cohort.png", "outcomes.csv", "timeline_P1.png", "timeline_P2.png"]


def test_plots_draw_plain_records_as_they_draw_the_study_records(study: Study, tmp_path: Path) -> None:
    # report/ draws from what a record offers, not from the study's classes: plain records with
    # the same numbers give the same PNG bytes.
    from dataclasses import dataclass

    from cleftscore.report.study_plots import cohort_png, timeline_png

    @dataclass(frozen=True)
    class PlainVisit:
        date: dt.date
        phase: str
        procedure: str | None
        scores: list[float]
        thumbnails: list[str]

        @property
        def mean(self) -> float:
            return float(np.mean(self.scores))

    @dataclass(frozen=True)
    class PlainTimeline:
        code: str
        visits: list[PlainVisit]

    _add(study, "P1", [("2026-01-01", "pre-op", [0.1, 0.3]), ("2026-03-01", "post-op", [0.6, 0.7])])
    _add(study, "P2", [("2026-01-05", "pre-op", [0.2, 0.2]), ("2026-04-01", "post-op", [0.5, 0.4])])
    out = compute_outcomes(study, n_boot=200)
    series = out.patients[0]
    plain = PlainTimeline(series.code, [PlainVisit(v.date, v.phase, v.procedure, list(v.scores), list(v.thumbnails))
                                        for v in series.visits])  # fmt: skip
    drawn = timeline_png(plain, tmp_path)
    assert drawn.startswith(b"\x89PNG") and drawn == timeline_png(series, tmp_path)
    other = PlainTimeline(series.code, [PlainVisit(v.date, v.phase, v.procedure, [s + 1.0 for s in v.scores], [])
                                        for v in series.visits])  # fmt: skip
    assert timeline_png(other, tmp_path) != drawn

    co = out.cohort
    fields = ("after", "codes", "before", "later", "mean_change", "ci_low", "ci_high", "p_value")
    pairs = SimpleNamespace(**{name: getattr(co, name) for name in fields})
    assert cohort_png(pairs) == cohort_png(co)
