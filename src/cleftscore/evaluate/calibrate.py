"""Calibration of a finished run against human ratings: calibrated columns for every photo.

The fit itself is :func:`cleftscore.score.calibration.fit_calibration`; this module matches a
run's photos to a ratings file and writes the calibrated columns back into the run folder.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cleftscore.errors import CleftscoreError
from cleftscore.run.folder import RunLock, photo_dir, read_records, read_run_settings, write_photo, write_summary

__all__ = [
    "calibrate_run",
]


def calibrate_run(
    run_dir: str | Path,
    ratings_path: str | Path,
    *,
    higher_is: str = "normal",
    scale: tuple[float, float] = (1.0, 7.0),
) -> dict[str, Any]:
    """Fit scores to human ratings of (some of) the run's photos and add calibrated columns.

    Only ever done when the user gives rated photos: the tool never invents a scale. Every
    scored photo of the run then gets ``calibrated_rating`` (on the raters' scale) and
    ``severity_0_100`` (0 = the normal end of the fitted scale) in its record (a fresh folder,
    pictures linked); the fit itself goes to ``calibration.json``, and ``scores.csv`` and
    ``report.html`` are rewritten.

    Returns
    -------
    dict
        The fit (slope, intercept, r, n, scale, direction) and the photos used.
    """
    from cleftscore.evaluate.ratings import match_ratings, read_ratings
    from cleftscore.io import write_json
    from cleftscore.score.calibration import fit_calibration, severity_0_100

    if higher_is not in ("normal", "abnormal"):
        raise ValueError(f"higher_is must be 'normal' or 'abnormal', got {higher_is!r}")
    run = Path(run_dir)
    with RunLock(run):
        records = {r.file: r for r in read_records(run) if r.ok and r.score is not None}
        matched = match_ratings({f: r.score for f, r in records.items()}, read_ratings(ratings_path))  # type: ignore[misc]
        try:
            cal = fit_calibration(matched.scores, matched.ratings, scale=scale, higher_is_normal=higher_is == "normal")
        except ValueError as exc:
            raise CleftscoreError(f"{ratings_path}: cannot calibrate: {exc}") from None
        for rec in records.values():
            assert rec.score is not None
            calibrated = rec.replace(calibration={
                "calibrated_rating": cal.apply(rec.score),
                "severity_0_100": severity_0_100(rec.score, cal),
                "ratings_file": str(ratings_path),
            })  # fmt: skip
            folder = photo_dir(run, rec.photo_id)
            present = tuple(name for name in rec.pictures if (folder / name).is_file())
            write_photo(run, calibrated.replace(pictures=present), {name: folder / name for name in present})
        fit = {**dataclasses.asdict(cal), "ratings_file": str(ratings_path), "photos_used": list(matched.files),
               "unrated_photos": list(matched.missing_in_ratings), "rated_but_not_in_run": list(matched.missing_in_run)}  # fmt: skip
        write_json(run / "calibration.json", fit)
        settings, latest = read_run_settings(run)
        write_summary(run, read_records(run, latest), settings=settings)
    return fit
