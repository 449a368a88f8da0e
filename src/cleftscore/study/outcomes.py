"""Surgical outcomes: the change in score from before repair to each later visit.

Higher S means closer to normal, so a positive change is an improvement. Per patient, the
baseline is the latest pre-op visit with scores; each later post-op or follow-up visit gets the
difference of the visits' mean scores and a 95 % percentile bootstrap CI that resamples the
photos of both visits. The cohort compares each patient's baseline with one later visit (the
last, or the first) by a paired t-test (and a Wilcoxon signed-rank test), with a t-interval
for the mean change.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from cleftscore.study.db import Study, StudyError
from cleftscore.study.models import Patient, Photo, Score, Visit

__all__ = [
    "VisitScores",
    "PatientSeries",
    "Change",
    "CohortChange",
    "Outcomes",
    "compute_outcomes",
    "bootstrap_change_ci",
    "outcome_rows",
]

#: Picture of a score shown as the heat-map thumbnail of a visit.
THUMB_PICTURE = "overlay.png"


@dataclass(frozen=True)
class VisitScores:
    """The scores of one visit's photos (one per photo, all with the same settings)."""

    visit_id: int
    date: dt.date
    phase: str
    procedure: str | None
    photo_ids: tuple[int, ...]
    scores: tuple[float, ...]
    thumbnails: tuple[str, ...]  # stored paths of each photo's heat-map overlay

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))


@dataclass(frozen=True)
class PatientSeries:
    """A patient's scored visits in date order."""

    code: str
    visits: tuple[VisitScores, ...]


@dataclass(frozen=True)
class Change:
    """Change of the mean score from the baseline (pre-op) visit to one later visit.

    ``ci_low``/``ci_high`` are None when a visit has a single photo; ``note`` then says so.
    """

    code: str
    baseline_visit_id: int
    visit_id: int
    date: dt.date
    phase: str
    days: int
    n_before: int
    n_after: int
    before: float
    after: float
    change: float
    ci_low: float | None
    ci_high: float | None
    note: str = ""


@dataclass(frozen=True)
class CohortChange:
    """Mean change over patients (baseline -> chosen later visit) with its CI and paired tests."""

    after: str
    codes: tuple[str, ...]
    before: tuple[float, ...]
    later: tuple[float, ...]
    mean_change: float | None
    ci_low: float | None
    ci_high: float | None
    t_statistic: float | None
    p_value: float | None
    wilcoxon_p: float | None
    note: str = ""


@dataclass(frozen=True)
class Outcomes:
    """Everything ``cleftscore study outcomes`` reports."""

    method: str
    settings_key: str
    settings: dict[str, Any]
    patients: tuple[PatientSeries, ...]
    changes: tuple[Change, ...]
    cohort: CohortChange
    notes: tuple[str, ...]


def bootstrap_change_ci(before: np.ndarray, after: np.ndarray, *, n_boot: int = 10_000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float] | None:  # fmt: skip
    """Percentile bootstrap CI of ``mean(after) - mean(before)``, resampling photos in each visit.

    Returns None when either visit has fewer than 2 photos (no spread to resample).
    """
    before, after = np.asarray(before, np.float64), np.asarray(after, np.float64)
    if before.size < 2 or after.size < 2:
        return None
    rng = np.random.default_rng(seed)
    mb = before[rng.integers(0, before.size, size=(n_boot, before.size))].mean(axis=1)
    ma = after[rng.integers(0, after.size, size=(n_boot, after.size))].mean(axis=1)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(ma - mb, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def _pick_scores(scores: list[Score], method: str | None, key: str | None) -> tuple[str, str, list[Score], list[str]]:
    notes: list[str] = []
    methods = sorted({s.method for s in scores})
    if method is None:
        if len(methods) > 1:
            raise StudyError(
                f"the study has scores of several methods ({', '.join(methods)}); choose one with --method"
            )
        method = methods[0]
    chosen = [s for s in scores if s.method == method]
    if not chosen:
        raise StudyError(f"no scores of method {method!r} in the study (methods there: {', '.join(methods) or 'none'})")
    if key is None:
        counts = Counter(s.settings_key for s in chosen)
        latest = {s.settings_key: s.created_at for s in chosen}
        key = max(counts, key=lambda k: (counts[k], latest[k]))
        if len(counts) > 1:
            notes.append(
                f"{len(counts)} settings of method {method} in the study; using {key[:12]} (most photos), --settings picks another"
            )
    else:
        matches = {s.settings_key for s in chosen if s.settings_key.startswith(key)}
        if len(matches) != 1:
            raise StudyError(
                f"settings {key!r} match {len(matches)} settings of method {method}; `cleftscore study export` lists them"
            )
        key = matches.pop()
    return method, key, [s for s in chosen if s.settings_key == key], notes


def _series(patients: list[Patient], scores: list[Score]) -> list[PatientSeries]:
    by_photo = {s.photo_id: s for s in scores}
    out = []
    for p in patients:
        visits = []
        for v in sorted(p.visits, key=lambda v: (v.date, v.id)):
            rows = [(ph.id, by_photo[ph.id]) for ph in v.photos if ph.id in by_photo]
            if rows:
                visits.append(VisitScores(
                    visit_id=v.id, date=v.date, phase=v.phase, procedure=v.procedure,
                    photo_ids=tuple(pid for pid, _ in rows),
                    scores=tuple(float(s.score) for _, s in rows),
                    thumbnails=tuple(s.pictures.get(THUMB_PICTURE, "") for _, s in rows),
                ))  # fmt: skip
        out.append(PatientSeries(code=p.code, visits=tuple(visits)))
    return out


def _changes(series: PatientSeries, *, n_boot: int, seed: int) -> tuple[list[Change], str]:
    pre = [v for v in series.visits if v.phase == "pre-op"]
    if not pre:
        return [], f"patient {series.code}: no scored pre-op visit, left out of the outcomes"
    base = pre[-1]
    later = [v for v in series.visits if v.date > base.date and v.phase != "pre-op"]
    if not later:
        return [], f"patient {series.code}: no scored visit after the pre-op visit of {base.date.isoformat()}"
    out = []
    for v in later:
        ci = bootstrap_change_ci(np.array(base.scores), np.array(v.scores), n_boot=n_boot, seed=seed)
        note = ""
        if ci is None:
            one = [f"visit {x.visit_id}" for x in (base, v) if len(x.scores) < 2]
            note = f"one photo at {' and '.join(one)}: no CI is possible (the bootstrap resamples photos)"
        out.append(Change(
            code=series.code, baseline_visit_id=base.visit_id, visit_id=v.visit_id, date=v.date, phase=v.phase,
            days=(v.date - base.date).days, n_before=len(base.scores), n_after=len(v.scores),
            before=base.mean, after=v.mean, change=v.mean - base.mean,
            ci_low=None if ci is None else ci[0], ci_high=None if ci is None else ci[1], note=note,
        ))  # fmt: skip
    return out, ""


def _cohort(changes: list[Change], after: str) -> CohortChange:
    from scipy import stats

    picked: dict[str, Change] = {}
    for c in changes:
        old = picked.get(c.code)
        if old is None or (c.date > old.date if after == "last" else c.date < old.date):
            picked[c.code] = c
    codes = tuple(sorted(picked))
    before = tuple(picked[c].before for c in codes)
    later = tuple(picked[c].after for c in codes)
    n = len(codes)
    if n < 2:
        return CohortChange(after, codes, before, later, float(np.mean(np.subtract(later, before))) if n else None,
                            None, None, None, None, None, f"{n} patient(s) with a before/after pair: no CI or test needs 2 or more")  # fmt: skip
    diff = np.subtract(later, before)
    mean, sd = float(diff.mean()), float(diff.std(ddof=1))
    if sd <= 1e-12 * max(1.0, abs(mean)):  # rounding noise only: a t statistic would be meaningless
        return CohortChange(
            after,
            codes,
            before,
            later,
            mean,
            mean,
            mean,
            None,
            None,
            None,
            "every patient changed by the same amount: no test",
        )
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    t = stats.ttest_rel(later, before)
    w = stats.wilcoxon(later, before)
    return CohortChange(
        after=after, codes=codes, before=before, later=later, mean_change=mean, ci_low=mean - half, ci_high=mean + half,
        t_statistic=float(t.statistic), p_value=float(t.pvalue), wilcoxon_p=float(w.pvalue),
    )  # fmt: skip


def _passing_quality(scores: list[Score], notes: list[str]) -> list[Score]:
    """The scores of photos that pass the quality gate; a note for each photo left out."""
    from cleftscore.face.quality import failed_checks

    keep = []
    for sc in scores:
        values = {k: v.get("value") for k, v in sc.measures.items() if isinstance(v, dict)}
        bad = failed_checks({k: float(v) for k, v in values.items() if isinstance(v, (int, float))})
        if bad:
            notes.append(f"photo {sc.photo.original_name} (visit {sc.photo.visit_id}) failed the quality gate "
                         f"({', '.join(bad)}) and is left out of the change")  # fmt: skip
        else:
            keep.append(sc)
    return keep


def compute_outcomes(study: Study, *, method: str | None = None, settings: str | None = None, after: str = "last",
                     n_boot: int = 10_000, seed: int = 0, include_failed_quality: bool = False) -> Outcomes:  # fmt: skip
    """Change from before repair, per patient and for the cohort.

    Parameters
    ----------
    study : Study
    method : str, optional
        Normalizer whose scores are compared; needed when the study has several.
    settings : str, optional
        Settings key (or its start) to use; default the settings most photos were scored with.
    after : {"last", "first"}
        Which later visit of each patient enters the cohort comparison.
    n_boot : int
        Bootstrap resamples per CI.
    seed : int
        Seed of the bootstrap's random generator.
    include_failed_quality : bool
        Keep photos that fail the photo-quality gate (:mod:`cleftscore.face.quality`; judged from
        their stored ``quality_*`` measures). By default they are left out, each with a note.

    Returns
    -------
    Outcomes

    Raises
    ------
    StudyError
        No scores, or an ambiguous method or settings.
    """
    if after not in ("last", "first"):
        raise StudyError(f"--after must be last or first, got {after!r}")
    with study.transaction(write=False) as s:
        patients = list(s.scalars(select(Patient).order_by(Patient.code).options(
            selectinload(Patient.visits).selectinload(Visit.photos))))  # fmt: skip
        scores = list(s.scalars(select(Score).join(Photo).order_by(Score.id)))
        if not scores:
            raise StudyError(f"{study.path}: no scores yet; `cleftscore study score VISIT PHOTOS...` adds some")
        method, key, chosen, notes = _pick_scores(scores, method, settings)
        gated = chosen if include_failed_quality else _passing_quality(chosen, notes)
        # Several scores of one photo with one settings key cannot happen (unique constraint).
        all_series = _series(patients, gated)
        scored_photos = {s.photo_id for s in chosen}
        missing = sum(1 for p in patients for v in p.visits for ph in v.photos if ph.id not in scored_photos)
        settings_dict = json.loads(chosen[0].settings_json)
    if missing:
        notes.append(f"{missing} photo(s) have no score with these settings and are left out")
    changes: list[Change] = []
    for ser in all_series:
        found, note = _changes(ser, n_boot=n_boot, seed=seed)
        changes.extend(found)
        if note:
            notes.append(note)
    return Outcomes(method=method, settings_key=key, settings=settings_dict, patients=tuple(all_series),
                    changes=tuple(changes), cohort=_cohort(changes, after), notes=tuple(notes))  # fmt: skip


def outcome_rows(out: Outcomes) -> list[dict[str, Any]]:
    """One CSV row per patient change, then a cohort row."""
    rows: list[dict[str, Any]] = [{
        "patient": c.code, "baseline_visit": c.baseline_visit_id, "visit": c.visit_id, "date": c.date.isoformat(),
        "phase": c.phase, "days_after_baseline": c.days, "photos_before": c.n_before, "photos_after": c.n_after,
        "score_before": c.before, "score_after": c.after, "change": c.change, "ci95_low": c.ci_low, "ci95_high": c.ci_high,
        "method": out.method, "settings_key": out.settings_key, "note": c.note,
    } for c in out.changes]  # fmt: skip
    co = out.cohort
    rows.append({
        "patient": f"cohort (n={len(co.codes)}, {co.after} visit)", "change": co.mean_change, "ci95_low": co.ci_low,
        "ci95_high": co.ci_high, "paired_t": co.t_statistic, "p_value": co.p_value, "wilcoxon_p": co.wilcoxon_p,
        "method": out.method, "settings_key": out.settings_key, "note": co.note,
    })  # fmt: skip
    return _with_normal_units(out, rows)


def _with_normal_units(out: Outcomes, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The change and its CI also in units of the normal reference's spread (where one fits the scores)."""
    from cleftscore.score.reference import reference_for

    face_referenced = (
        out.method == "asymmetry" and (out.settings.get("score") or {}).get("asymmetry_score") == "face-referenced"
    )
    ref = reference_for(out.method, "face-referenced" if face_referenced else "paper")
    if ref is None:
        return rows
    for r in rows:
        for key in ("change", "ci95_low", "ci95_high"):
            if r.get(key) is not None:
                r[f"{key}_normal_units"] = r[key] / ref.spread
        r["reference"] = f"{ref.name} ({ref.n} normal photos)"
    return rows
