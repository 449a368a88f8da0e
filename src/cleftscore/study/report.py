"""Writing the outcomes: ``outcomes.csv``, a timeline per patient and the cohort plot."""

from __future__ import annotations

from pathlib import Path

from cleftscore.report.study_plots import cohort_png, timeline_png
from cleftscore.study.db import Study
from cleftscore.study.outcomes import Outcomes, outcome_rows

__all__ = ["write_outcomes"]

OUTCOME_COLUMNS = (
    "patient", "baseline_visit", "visit", "date", "phase", "days_after_baseline", "photos_before", "photos_after",
    "score_before", "score_after", "change", "ci95_low", "ci95_high",
    "change_normal_units", "ci95_low_normal_units", "ci95_high_normal_units", "paired_t", "p_value", "wilcoxon_p",
    "method", "settings_key", "reference", "note",
)  # fmt: skip


def write_outcomes(study: Study, outcomes: Outcomes, out_dir: str | Path) -> list[Path]:
    """Write ``outcomes.csv``, ``timeline_<code>.png`` per patient with scores, and ``cohort.png``.

    Each file is written under a temporary name and renamed.

    Returns
    -------
    list of Path
        The written files.
    """
    from cleftscore.io import atomic_write_bytes
    from cleftscore.report.writers import write_csv

    out = Path(out_dir)
    written = [write_csv(out / "outcomes.csv", outcome_rows(outcomes), columns=OUTCOME_COLUMNS)]
    for series in outcomes.patients:
        if series.visits:
            written.append(atomic_write_bytes(out / f"timeline_{series.code}.png", timeline_png(series, study.files)))
    written.append(atomic_write_bytes(out / "cohort.png", cohort_png(outcomes.cohort)))
    return written
