"""The words of an evaluation: ``grid.md`` laid out like the paper's Table 1, and row titles.

Pure functions of an :class:`~cleftscore.evaluate.grid.Evaluation` returning text; the files
are written by :func:`cleftscore.evaluate.files.write_evaluation`.
"""

from __future__ import annotations

import math

from cleftscore.evaluate.grid import (
    FACE_REFERENCED_KEY,
    GRID_METRICS,
    GRID_NORMALIZERS,
    GRID_REGIONS,
    GRID_VARIANTS,
    Evaluation,
    GridRow,
)

__all__ = ["fmt", "grid_markdown", "row_caption"]

_NORMALIZER_TITLES = {
    "gan-adapted": "With adaptation (GAN inversion + fine-tuning, normalized.png)",
    "gan-inversion": "Without adaptation (GAN inversion only, inverted.png)",
    "asymmetry": "Asymmetry (landmark-registered mirror image)",
}
_METRIC_LABELS = {"lpips": "LPIPS", "pse": "PSE", "ssim": "SSIM", "face-referenced": "face-referenced score"}
_VARIANT_LABELS = {
    "base": "Base",
    "+ycbcr": "+YCbCr",
    "+erosion": "+Erosion",
    "+both": "+Both",
    "own": "(own difference)",
}
_REGION_LABELS = {"mouth": "Mouth", "face": "Face", "upper-lip skin": "upper-lip skin"}


def fmt(value: float, scale: float = 1.0, digits: int = 3) -> str:
    """``value * scale`` with ``digits`` decimals, or ``n/a`` when it is not finite."""
    return "n/a" if not math.isfinite(value) else f"{value * scale:.{digits}f}"


def row_caption(row: GridRow, *, ci: float) -> str:
    """Two lines naming a grid row and its numbers (the title of its scatter plot).

    Parameters
    ----------
    row : GridRow
    ci : float
        Confidence level of the row's intervals.

    Returns
    -------
    str
        ``normalizer, metric variant, region`` then Pearson r with its interval, rho and n.
    """
    return (
        f"{row.normalizer}, {_METRIC_LABELS[row.metric]} {_VARIANT_LABELS[row.variant]}, "
        f"{row.region}\nPearson r = {fmt(row.pearson_r)} "
        f"[{fmt(row.pearson_ci[0])}, {fmt(row.pearson_ci[1])}] ({ci:.0%} CI), "
        f"rho = {fmt(row.spearman_rho)}, n = {row.n}"
    )


def _headline_lines(ev: Evaluation) -> list[str]:
    head = ev.headline
    if head is None or not head.available:
        return []
    what = "face-referenced score" if head.key == FACE_REFERENCED_KEY else "PSE +Both, mouth"
    return [
        f"**Headline** ({head.normalizer}, {what}; the run's score column): r = {head.pearson_r:.3f} "
        f"[{fmt(head.pearson_ci[0])}, {fmt(head.pearson_ci[1])}], "
        f"rho = {head.spearman_rho:.3f}, n = {head.n} "
        f"({ev.ci:.0%} percentile bootstrap, {ev.n_boot} resamples, seed {ev.seed}).",
        "",
    ]


def _normalizer_table(ev: Evaluation, nz: str) -> list[str]:
    """One normalizer's table: metrics down, region x variant across, then its notes."""
    by_key = {r.key: r for r in ev.rows}
    columns = [(g, v) for g in GRID_REGIONS for v in GRID_VARIANTS]
    header = ["Heat map"] + [f"{_REGION_LABELS[g]} {_VARIANT_LABELS[v]}" for g, v in columns]
    lines = [f"## {_NORMALIZER_TITLES[nz]}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * len(columns)) + "|")
    ns: set[int] = set()
    for metric in GRID_METRICS:
        cells = [_METRIC_LABELS[metric]]
        for region, variant in columns:
            row = by_key.get((nz, metric, variant, region))
            cells.append(fmt(row.pearson_r, 100.0, 1) if row is not None else "n/a")
            if row is not None and row.available:
                ns.add(row.n)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    fr = by_key.get(FACE_REFERENCED_KEY) if nz == "asymmetry" else None
    if fr is not None:
        lines += [f"Face-referenced score (lighting-normalised, shift-tolerant difference and one-sided dark valleys; upper-lip skin "
                  f"against the face's control regions): r x 100 = {fmt(fr.pearson_r, 100.0, 1)}, n = {fr.n}. "
                  "The table above is the paper's S of the same face and mirror.", ""]  # fmt: skip
    if ns:
        lines.append(f"n = {', '.join(str(n) for n in sorted(ns))} photo(s).")
    lines += [f"- {note}" for note in sorted({r.note for r in ev.rows if r.normalizer == nz and r.note})]
    lines.append("")
    return lines


def _unmatched_lines(ev: Evaluation) -> list[str]:
    if not (ev.missing_in_run or ev.missing_in_ratings):
        return []
    lines = ["## Photos not matched", ""]
    if ev.missing_in_run:
        lines.append("- Rated but not scored in the run: " + ", ".join(ev.missing_in_run))
    if ev.missing_in_ratings:
        lines.append("- Scored but not rated: " + ", ".join(ev.missing_in_ratings))
    return [*lines, ""]


def _measure_lines(ev: Evaluation) -> list[str]:
    if not ev.measure_rows:
        return []
    lines = ["", "## Other measures of the records", "",
             "Pearson r x 100 with the ratings, each measure as it stands (negative: higher values go with more abnormal ratings).", "",
             "| measure | n | r x 100 | rho |", "|---|---|---|---|"]  # fmt: skip
    for m in ev.measure_rows:
        r, rho = m.get("pearson_r", float("nan")), m.get("spearman_rho", float("nan"))
        lines.append(f"| {m['measure']} | {m['n']} | {fmt(r, 100, 1)} | {fmt(rho)} |")
    return lines


def grid_markdown(evaluation: Evaluation) -> str:
    """The grid as Markdown, laid out like the paper's Table 1.

    Parameters
    ----------
    evaluation : Evaluation

    Returns
    -------
    str
        One table per normalizer; rows are metrics, columns region x variant, values Pearson
        r x 100 (one decimal), ``n/a`` where a row is not available; notes below.
    """
    ev = evaluation
    lines = [
        "# cleftscore evaluation",
        "",
        f"Run: `{ev.run_dir}` (method: {ev.method}); {len(ev.matched)} rated photo(s); ratings: "
        f"higher = more {ev.higher_is}. Values are Pearson r x 100 between scores and ratings "
        "(positive = agreement); the paper reports 94.2 for PSE +Both, mouth, with adaptation.",
        "",
        *_headline_lines(ev),
    ]
    for nz in GRID_NORMALIZERS:
        if any(r.normalizer == nz for r in ev.rows):
            lines += _normalizer_table(ev, nz)
    if ev.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in ev.notes] + [""]
    lines += _unmatched_lines(ev)
    lines += _measure_lines(ev)
    lines.append("Full numbers (confidence intervals, Spearman rho, p-values): `grid.csv`.")
    return "\n".join(lines) + "\n"
