"""The quality gate in study outcomes: photos that fail it are left out of the change unless asked (a study file: slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_study_outcomes_leave_out_photos_that_fail_the_gate(tmp_path: Path) -> None:
    import datetime as dt
    import json

    from cleftscore.study.db import open_study
    from cleftscore.study.models import Patient, Photo, Score, Visit
    from cleftscore.study.outcomes import compute_outcomes

    turned = {"quality_yaw": {"value": 35.0, "definition": "yaw"}}
    rows = [("2026-01-01", "pre-op", -4.0, {}), ("2026-01-01", "pre-op", -9.0, turned),
            ("2026-03-01", "post-op", -2.0, {}), ("2026-03-01", "post-op", -2.2, {})]  # fmt: skip
    with open_study(tmp_path / "s.sqlite") as study:
        with study.transaction() as s:
            patient = Patient(code="P1")
            s.add(patient)
            s.flush()
            visits = {}
            for n, (date, phase, value, measures) in enumerate(rows):
                if date not in visits:
                    visits[date] = Visit(patient_id=patient.id, date=dt.date.fromisoformat(date), phase=phase)
                    s.add(visits[date])
                    s.flush()
                photo = Photo(visit_id=visits[date].id, sha256=f"{n:064x}", original_name=f"{n}.jpg",
                              stored_path=f"photos/{n}.png", stored_sha256="0" * 64, width=8, height=8)  # fmt: skip
                s.add(photo)
                s.flush()
                s.add(Score(photo_id=photo.id, method="asymmetry", settings_key="a" * 64, settings_json="{}",
                            score=value, pictures_json="{}", normalization_json="{}", environment_json="{}",
                            cleftscore_version="0.1.0", measures_json=json.dumps(measures)))  # fmt: skip
        gated = compute_outcomes(study, n_boot=200)
        kept = compute_outcomes(study, n_boot=200, include_failed_quality=True)
    assert gated.changes[0].change == pytest.approx(-2.1 - -4.0)
    assert kept.changes[0].change == pytest.approx(-2.1 - -6.5)
    assert any("1.jpg" in n and "yaw" in n and "left out of the change" in n for n in gated.notes)
    assert not any("quality gate" in n for n in kept.notes)
