"""The files of an evaluation: ``grid.csv``, ``grid.md``, ``summary.json`` and ``scatter.png``.

The picture is drawn by :func:`cleftscore.report.scatter.scatter_image` and every file goes
through the writers of :mod:`cleftscore.io` and :mod:`cleftscore.report.writers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cleftscore.evaluate.grid import Evaluation, GridRow
from cleftscore.evaluate.markdown import grid_markdown, row_caption

__all__ = ["EvaluationFiles", "evaluation_scatter", "write_evaluation"]


def _stem(name: str) -> str:
    """File name without folder and extension, case kept (for plot labels)."""
    base = name.strip().replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base


def evaluation_scatter(row: GridRow, *, higher_is: str = "normal", ci: float = 0.95) -> np.ndarray:
    """Scatter plot of score against rating for one grid row, as an RGB image.

    Parameters
    ----------
    row : GridRow
        An available row (its ``files``, ``scores`` and ``ratings`` are plotted).
    higher_is : {"normal", "abnormal"}
        Rating direction, for the axis label.
    ci : float
        Confidence level shown in the title.

    Returns
    -------
    (H, W, 3) ndarray of uint8
        Points labelled by file stem, the least-squares line of score on rating, r and its
        interval in the title (:func:`cleftscore.report.scatter.scatter_image`).

    Raises
    ------
    ValueError
        The row has fewer than 2 points.
    """
    from cleftscore.report.scatter import scatter_image

    return scatter_image(
        row.ratings,
        row.scores,
        labels=[_stem(name) for name in row.files],
        title=row_caption(row, ci=ci),
        xlabel=f"human rating (higher = more {higher_is})",
        ylabel="cleftscore score (higher = more normal)",
    )


@dataclass(frozen=True)
class EvaluationFiles:
    """Paths written by :func:`write_evaluation` (``scatter_png`` is None without an available row)."""

    grid_csv: Path
    grid_md: Path
    summary_json: Path
    scatter_png: Path | None


def _summary(ev: Evaluation, records: list[dict[str, Any]], best: list[GridRow]) -> dict[str, Any]:
    """The contents of ``summary.json``."""
    head = ev.headline
    return {
        "run_dir": str(ev.run_dir),
        "method": ev.method,
        "higher_is": ev.higher_is,
        "bootstrap": {"n_boot": ev.n_boot, "ci": ev.ci, "seed": ev.seed, "kind": "percentile"},
        "n_rated": len(ev.matched),
        "headline": head.as_dict() if head is not None else None,
        "best": [r.as_dict() for r in best],
        "scatter_row": best[0].as_dict() if best else None,
        "missing_in_run": list(ev.missing_in_run),
        "missing_in_ratings": list(ev.missing_in_ratings),
        "failed": [{"file": f, "message": m} for f, m in ev.failed],
        "notes": list(ev.notes),
        "rows": records,
        "measures": list(ev.measure_rows),
        "headline_photos": [
            {"file": f, "score": x, "rating": y} for f, x, y in zip(head.files, head.scores, head.ratings, strict=True)
        ]
        if head is not None
        else [],
    }


def write_evaluation(evaluation: Evaluation, out_dir: str | Path) -> EvaluationFiles:
    """Write ``grid.csv``, ``grid.md``, ``summary.json`` and ``scatter.png``.

    Parameters
    ----------
    evaluation : Evaluation
    out_dir : str or Path
        Created if needed (``RUN_DIR/evaluation`` by default in the CLI).

    Returns
    -------
    EvaluationFiles
        ``scatter.png`` shows the available row with the highest Pearson r; without one it is
        not written.
    """
    from cleftscore.io import write_json, write_png
    from cleftscore.report.writers import write_csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ev = evaluation
    grid_csv = out / "grid.csv"
    records = [r.as_dict() for r in ev.rows]
    columns = (
        list(records[0]) if records else list(GridRow.unavailable(("asymmetry", "pse", "base", "mouth"), "").as_dict())
    )
    write_csv(grid_csv, records, columns=columns)

    grid_md = out / "grid.md"
    grid_md.write_text(grid_markdown(ev), encoding="utf-8")

    best = ev.best(5)
    scatter: Path | None = None
    if best:
        scatter = out / "scatter.png"
        write_png(scatter, evaluation_scatter(best[0], higher_is=ev.higher_is, ci=ev.ci))

    summary_json = write_json(out / "summary.json", _summary(ev, records, best))
    return EvaluationFiles(grid_csv=grid_csv, grid_md=grid_md, summary_json=summary_json, scatter_png=scatter)
