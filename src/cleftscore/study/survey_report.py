"""A survey's ratings: their export, the panel's reliability and the machine's agreement with it.

:func:`survey_report` gathers a survey's first ratings into a raters x photos matrix and reports
(through :mod:`cleftscore.evaluate.reliability`) each photo's mean rating with its interval, the
ICCs, Krippendorff's ordinal alpha, the weighted kappa of each rater's repeats and the raters far
from the panel; then the panel mean against every machine score the study holds for those photos
(one row per method and settings, and one per extra measure), with Pearson and Spearman and their
bootstrap intervals from :func:`cleftscore.evaluate.statistics.correlate` (the function behind
every row of ``cleftscore evaluate``'s grid), beside the reliability ceiling.

:func:`export_ratings` writes ``ratings.csv`` (``file,rating``: the panel means, the file that
``cleftscore evaluate --ratings`` reads) and ``ratings_long.csv`` (one row per rating).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cleftscore.evaluate.reliability import (
    IccResult,
    PhotoMean,
    RaterAgreement,
    RatingMatrix,
    correlation_ceiling,
    icc,
    ordinal_alpha,
    photo_means,
    rater_agreement,
    repeat_kappa,
)
from cleftscore.evaluate.statistics import correlate
from cleftscore.study.db import Study
from cleftscore.study.survey import SurveyStatus, find_survey, survey_status

__all__ = [
    "LONG_COLUMNS",
    "MachineRow",
    "RatingRow",
    "RepeatAgreement",
    "SurveyReport",
    "export_ratings",
    "report_json",
    "report_markdown",
    "survey_ratings",
    "survey_report",
]

#: Columns of ``ratings_long.csv``.
LONG_COLUMNS = ("rater", "photo_id", "file", "rating", "time", "position", "repeat", "submitted")


@dataclass(frozen=True)
class RatingRow:
    """One rating: who, which photo, what, when, where in the rater's order, and whether a repeat."""

    rater: str
    photo_id: int
    file: str
    rating: int
    time: dt.datetime
    position: int
    repeat: bool
    submitted: bool


@dataclass(frozen=True)
class _Gathered:
    status: SurveyStatus
    files: dict[int, str]  # photo id -> original file name
    rows: tuple[RatingRow, ...]
    scores: tuple[
        tuple[int, str, str, dict[str, Any], float, dict[str, Any]], ...
    ]  # photo, method, key, settings, score, measures


def _gather(study: Study, survey_ref: int | str) -> _Gathered:
    with study.transaction(write=False) as s:
        survey = find_survey(s, survey_ref)
        items = {it.id: it for it in survey.items}
        files = {it.photo_id: it.photo.original_name for it in items.values()}
        rows = tuple(
            RatingRow(r.code, items[x.item_id].photo_id, files[items[x.item_id].photo_id], x.rating, x.rated_at,
                      x.position, x.repeat, r.submitted_at is not None)
            for r in survey.raters for x in r.ratings
        )  # fmt: skip
        scores = tuple(
            (it.photo_id, sc.method, sc.settings_key, sc.settings, float(sc.score), sc.measures)
            for it in items.values() for sc in it.photo.scores
        )  # fmt: skip
        ref = survey.id
    return _Gathered(survey_status(study, ref)[0], files, rows, scores)


def survey_ratings(study: Study, survey_ref: int | str) -> tuple[RatingRow, ...]:
    """Every rating of a survey, repeats included, by rater and position."""
    return _gather(study, survey_ref).rows


def _matrix(rows: Sequence[RatingRow]) -> RatingMatrix:
    firsts = sorted((r for r in rows if not r.repeat), key=lambda r: (r.rater, r.photo_id))
    raters = tuple(dict.fromkeys(r.rater for r in firsts))
    photos = tuple(str(p) for p in sorted({r.photo_id for r in firsts}))
    values = np.full((len(raters), len(photos)), np.nan)
    ri, pi = {r: i for i, r in enumerate(raters)}, {p: j for j, p in enumerate(photos)}
    for r in firsts:
        values[ri[r.rater], pi[str(r.photo_id)]] = float(r.rating)
    return RatingMatrix(raters, photos, values)


@dataclass(frozen=True)
class RepeatAgreement:
    """A rater's first and repeated ratings of the same photos: weighted kappa and exact agreement."""

    rater: str
    n_pairs: int
    kappa: float
    exact: float


@dataclass(frozen=True)
class MachineRow:
    """The panel mean against one machine score (or one extra measure) of the survey's photos.

    Attributes
    ----------
    label : str
        Method, region and short settings key; for a measure, its name after a colon.
    method, settings_key, measure : str
        ``measure`` is empty for the score itself.
    n : int
        Photos with both a panel mean and this score.
    pearson_r, pearson_ci, spearman_rho, spearman_ci : float
        NaN when not computable (``note`` says why). Positive = agrees with the panel (the
        survey's rating direction is taken into account, as in ``cleftscore evaluate``).
    slope, intercept, rmse : float
        For a score (not a measure): the least-squares calibration ``mean rating ~ slope * score +
        intercept`` (:func:`cleftscore.score.calibration.fit_calibration`, what ``cleftscore
        evaluate --calibrate`` fits) and the root-mean-square difference of the calibrated
        scores from the panel means, in rating points; NaN otherwise.
    """

    label: str
    method: str
    settings_key: str
    measure: str
    n: int
    pearson_r: float
    pearson_ci: tuple[float, float]
    spearman_rho: float
    spearman_ci: tuple[float, float]
    note: str = ""
    slope: float = math.nan
    intercept: float = math.nan
    rmse: float = math.nan


@dataclass(frozen=True)
class SurveyReport:
    """Everything ``cleftscore survey report`` and the web report show.

    Attributes
    ----------
    status : SurveyStatus
    photos : tuple of (int, str, PhotoMean)
        Photo id, file name and its panel mean.
    n_ratings : int
        First ratings behind the panel means.
    icc : IccResult or None
        On the raters who rated every photo; None (``icc_note`` says why) otherwise.
    alpha : float
        Krippendorff's ordinal alpha over all first ratings (NaN, ``alpha_note``).
    repeats : tuple of RepeatAgreement
    pooled_kappa : float
        Weighted kappa of all raters' repeat pairs together.
    raters : tuple of RaterAgreement
        Each rater against the others' mean; ``far`` names those far from the panel.
    machine : tuple of MachineRow
    ceiling : float
        sqrt(ICC(3,k)): the highest correlation any score can reach with this panel's mean.
    """

    status: SurveyStatus
    photos: tuple[tuple[int, str, PhotoMean], ...]
    n_ratings: int
    icc: IccResult | None
    icc_note: str
    alpha: float
    alpha_note: str
    repeats: tuple[RepeatAgreement, ...]
    pooled_kappa: float
    raters: tuple[RaterAgreement, ...]
    machine: tuple[MachineRow, ...]
    ceiling: float
    ci: float
    n_boot: int

    @property
    def far_raters(self) -> tuple[str, ...]:
        return tuple(a.rater for a in self.raters if a.far)


def _repeats(rows: Sequence[RatingRow], scale: Sequence[int]) -> tuple[tuple[RepeatAgreement, ...], float]:
    pairs: dict[str, list[tuple[int, int]]] = defaultdict(list)
    first = {(r.rater, r.photo_id): r.rating for r in rows if not r.repeat}
    for r in rows:
        if r.repeat and (r.rater, r.photo_id) in first:
            pairs[r.rater].append((first[(r.rater, r.photo_id)], r.rating))
    out = []
    for rater, pr in sorted(pairs.items()):
        a, b = [x for x, _ in pr], [y for _, y in pr]
        out.append(RepeatAgreement(rater, len(pr), repeat_kappa(a, b, scale=scale), float(np.mean(np.equal(a, b)))))
    every = [p for pr in pairs.values() for p in pr]
    pooled = repeat_kappa([x for x, _ in every], [y for _, y in every], scale=scale) if every else math.nan
    return tuple(out), pooled


def _machine_series(g: _Gathered) -> dict[tuple[str, str, str], tuple[str, dict[int, float]]]:
    """(method, settings key, measure) -> (label, photo id -> value)."""
    series: dict[tuple[str, str, str], tuple[str, dict[int, float]]] = {}
    for photo_id, method, key, settings, score, measures in g.scores:
        roi = str((settings.get("score") or {}).get("roi", ""))
        base = f"{method}, {roi}, settings {key[:8]}" if roi else f"{method}, settings {key[:8]}"
        series.setdefault((method, key, ""), (base, {}))[1][photo_id] = score
        for name, m in measures.items():
            value = m.get("value") if isinstance(m, dict) else m
            if isinstance(value, (int, float)) and math.isfinite(float(value)):
                series.setdefault((method, key, name), (f"{base}: {name}", {}))[1][photo_id] = float(value)
    return series


def _calibration(g: _Gathered, scores: list[float], means: list[float]) -> tuple[float, float, float] | None:
    """Slope, intercept and RMSE (rating points) of the score's linear calibration to the panel means."""
    from cleftscore.score.calibration import fit_calibration

    scale = g.status.scale
    try:
        cal = fit_calibration(scores, means, scale=(scale.minimum, scale.maximum),
                              higher_is_normal=scale.higher_is == "normal")  # fmt: skip
    except ValueError:
        return None
    rmse = float(np.sqrt(np.mean([(cal.apply(x) - y) ** 2 for x, y in zip(scores, means, strict=True)])))
    return cal.slope, cal.intercept, rmse


def _machine_rows(
    g: _Gathered, means: dict[int, float], *, n_boot: int, ci: float, seed: int
) -> tuple[MachineRow, ...]:
    rows = []
    nan2 = (math.nan, math.nan)
    for (method, key, measure), (label, values) in sorted(_machine_series(g).items()):
        ids = [p for p in sorted(values) if p in means]
        try:
            c = correlate([values[p] for p in ids], [means[p] for p in ids], higher_is=g.status.scale.higher_is,  # type: ignore[arg-type]
                          n_boot=n_boot, ci=ci, seed=seed)  # fmt: skip
        except ValueError as exc:
            rows.append(
                MachineRow(label, method, key, measure, len(ids), math.nan, nan2, math.nan, nan2, f"n/a ({exc})")
            )
            continue
        note = "a measure: its own direction (negative r = higher values with more abnormal ratings)" if measure else ""
        fit = _calibration(g, [values[p] for p in ids], [means[p] for p in ids]) if not measure else None
        rows.append(MachineRow(label, method, key, measure, c.n, c.pearson_r, c.pearson_ci, c.spearman_rho,
                               c.spearman_ci, note, *(fit or (math.nan, math.nan, math.nan))))  # fmt: skip
    return tuple(rows)


def _panel(matrix: RatingMatrix, scale: Sequence[int]) -> tuple[IccResult | None, str, float, str]:
    complete = matrix.complete_raters()
    try:
        result, icc_note = icc(complete), ""
        if complete.values.shape[0] < matrix.values.shape[0]:
            icc_note = f"on the {complete.values.shape[0]} of {matrix.values.shape[0]} raters who rated every photo"
    except ValueError as exc:
        result, icc_note = None, f"n/a ({exc})"
    try:
        alpha, alpha_note = ordinal_alpha(matrix, scale=scale), ""
    except ValueError as exc:
        alpha, alpha_note = math.nan, f"n/a ({exc})"
    return result, icc_note, alpha, alpha_note


def survey_report(
    study: Study,
    survey_ref: int | str,
    *,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    min_r: float = 0.5,
    max_mean_abs_diff: float | None = None,
) -> SurveyReport:
    """Reliability of a survey's panel and the machine scores' agreement with its mean.

    Parameters
    ----------
    study : Study
    survey_ref : int or str
        Survey id or title.
    n_boot, ci, seed
        Bootstrap of the machine correlations (as ``cleftscore evaluate``); ``ci`` is also the
        level of the photo means' t intervals (the ICC intervals are pingouin's 95%).
    min_r, max_mean_abs_diff
        A rater is far from the panel when their r with the others' mean is below ``min_r`` or
        their ratings differ from it by more than ``max_mean_abs_diff`` points on average
        (default: a quarter of the scale's range).

    Returns
    -------
    SurveyReport
        Built from what is there: a survey still in progress gets a report of the ratings so far.
    """
    g = _gather(study, survey_ref)
    scale = g.status.scale
    matrix = _matrix(g.rows)
    means = photo_means(matrix, ci=ci)
    by_id = {int(pm.photo): pm for pm in means}
    photos = tuple((pid, name, by_id[pid]) for pid, name in sorted(g.files.items()) if pid in by_id)
    result, icc_note, alpha, alpha_note = _panel(matrix, scale.values)
    repeats, pooled = _repeats(g.rows, scale.values)
    limit = max_mean_abs_diff if max_mean_abs_diff is not None else (scale.maximum - scale.minimum) / 4.0
    panel_means = {pid: pm.mean for pid, _, pm in photos}
    return SurveyReport(
        status=g.status,
        photos=photos,
        n_ratings=int(np.sum(~np.isnan(matrix.values))),
        icc=result,
        icc_note=icc_note,
        alpha=alpha,
        alpha_note=alpha_note,
        repeats=repeats,
        pooled_kappa=pooled,
        raters=rater_agreement(matrix, min_r=min_r, max_mean_abs_diff=limit),
        machine=_machine_rows(g, panel_means, n_boot=n_boot, ci=ci, seed=seed),
        ceiling=correlation_ceiling(result.icc3_k.value) if result is not None else math.nan,
        ci=ci,
        n_boot=n_boot,
    )


def _f(value: float, digits: int = 2) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


def _ci(pair: tuple[float, float], digits: int = 2) -> str:
    return f"[{_f(pair[0], digits)}, {_f(pair[1], digits)}]"


def _machine_lines(rows: Sequence[MachineRow], ceiling: float) -> list[str]:
    return [f"| {m.label} | {m.n} | {_f(m.pearson_r)} {_ci(m.pearson_ci)} | {_f(m.spearman_rho)} {_ci(m.spearman_ci)} "
            f"| {_f(ceiling)} | {_cal(m) if not m.measure else ''} |" for m in rows]  # fmt: skip


def _cal(m: MachineRow) -> str:
    if not math.isfinite(m.slope):
        return m.note
    return f"calibrated: rating = {m.slope:.3g} x score {m.intercept:+.3g}, RMSE {m.rmse:.2f} points"


def report_markdown(report: SurveyReport) -> str:
    """The report as Markdown (what ``cleftscore survey report`` prints and writes)."""
    st = report.status
    n_raters = len({a.rater for a in report.raters})
    lines = [f"# Survey {st.title!r}", "",
             f"{st.n_photos} photos, scale {st.scale.minimum}-{st.scale.maximum} (higher = more {st.scale.higher_is}), "
             f"{n_raters} raters ({sum(r.submitted_at is not None for r in st.raters)} submitted), {report.n_ratings} first ratings.",
             "", "## Reliability of the panel", ""]  # fmt: skip
    if report.icc is not None:
        i = report.icc
        lines += [f"- ICC(2,1) = {_f(i.icc2_1.value)} {_ci((i.icc2_1.ci_low, i.icc2_1.ci_high))} (one rater, absolute agreement)",
                  f"- ICC(2,k) = {_f(i.icc2_k.value)} {_ci((i.icc2_k.ci_low, i.icc2_k.ci_high))} (mean of {i.n_raters} raters)",
                  f"- ICC(3,k) = {_f(i.icc3_k.value)} {_ci((i.icc3_k.ci_low, i.icc3_k.ci_high))} (consistency of the mean)"]  # fmt: skip
        if report.icc_note:
            lines.append(f"- ICCs {report.icc_note}")
    else:
        lines.append(f"- ICC: {report.icc_note}")
    lines.append(f"- Krippendorff's alpha (ordinal) = {_f(report.alpha)} {report.alpha_note}".rstrip())
    lines.append(f"- Repeats: weighted kappa (quadratic) = {_f(report.pooled_kappa)} over all raters")
    lines += [
        f"  - {r.rater}: kappa {_f(r.kappa)} on {r.n_pairs} repeat(s), {r.exact:.0%} identical" for r in report.repeats
    ]
    far = report.far_raters
    lines.append(f"- Raters far from the panel: {', '.join(far) if far else 'none'}")
    lines += ["", "| rater | photos | r with the others' mean | mean abs. difference |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {a.rater}{' (far)' if a.far else ''} | {a.n} | {_f(a.r)} | {_f(a.mean_abs_diff)} |" for a in report.raters
    ]
    lines += ["", "## The machine against the panel mean", "",
              f"Reliability ceiling: no score can correlate with this panel's mean above sqrt(ICC(3,k)) = {_f(report.ceiling)}.",
              "", f"| score | n | Pearson r [{report.ci:.0%} CI] | Spearman rho [{report.ci:.0%} CI] | ceiling | calibration to the panel |",
              "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    scores = [m for m in report.machine if not m.measure]
    measures = [m for m in report.machine if m.measure]
    lines += _machine_lines(scores, report.ceiling)
    if not scores:
        lines.append("| (no machine scores recorded for these photos) | | | | | |")
    if measures:
        lines += ["", "Other measures recorded with the scores (each in its own direction: a negative r means higher "
                  "values go with more abnormal ratings):", "",
                  "| measure | n | Pearson r | Spearman rho | ceiling | note |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        lines += _machine_lines(measures, report.ceiling)
    lines += ["", f"## Panel mean per photo ({report.ci:.0%} t interval)", "", "| photo | file | mean | CI | raters |",
              "| --- | --- | --- | --- | --- |"]  # fmt: skip
    lines += [
        f"| {pid} | {name} | {_f(pm.mean)} | {_ci((pm.ci_low, pm.ci_high))} | {pm.n_raters} |"
        for pid, name, pm in report.photos
    ]
    return "\n".join(lines) + "\n"


def export_ratings(study: Study, survey_ref: int | str, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``ratings.csv`` (``file,rating`` panel means, for ``cleftscore evaluate --ratings``) and ``ratings_long.csv``.

    ``ratings.csv`` also has ``n_raters``, ``ci_low`` and ``ci_high`` (95% t interval) columns;
    ``evaluate`` reads only ``file`` and ``rating``. The long file has one row per rating,
    repeats included (``repeat`` true), with its time in UTC.

    Returns
    -------
    (Path, Path)
    """
    from cleftscore.report.writers import write_csv

    g = _gather(study, survey_ref)
    out = Path(out_dir)
    means = photo_means(_matrix(g.rows))
    wide = [{"file": g.files[int(pm.photo)], "rating": pm.mean, "n_raters": pm.n_raters, "ci_low": pm.ci_low,
             "ci_high": pm.ci_high} for pm in means]  # fmt: skip
    long = [{"rater": r.rater, "photo_id": r.photo_id, "file": r.file, "rating": r.rating, "time": r.time.isoformat() + "Z",
             "position": r.position + 1, "repeat": "true" if r.repeat else "false",
             "submitted": "true" if r.submitted else "false"} for r in g.rows]  # fmt: skip
    a = write_csv(out / "ratings.csv", wide, columns=("file", "rating", "n_raters", "ci_low", "ci_high"))
    b = write_csv(out / "ratings_long.csv", long, columns=LONG_COLUMNS)
    return a, b


def report_json(report: SurveyReport) -> dict[str, Any]:
    """The report as plain JSON data (NaN as null)."""
    import dataclasses

    def clean(value: Any) -> Any:
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, dt.datetime):
            return value.isoformat() + "Z"
        return value

    data = dataclasses.asdict(report)
    data["far_raters"] = list(report.far_raters)
    return clean(data)
