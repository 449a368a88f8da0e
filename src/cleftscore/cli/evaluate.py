"""``cleftscore evaluate``: how well a run's scores agree with human ratings (the paper's Table 1)."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cleftscore.cli import app
from cleftscore.cli._common import console, err_console, user_errors
from cleftscore.errors import WeightsMissingError

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from cleftscore.evaluate.files import EvaluationFiles
    from cleftscore.evaluate.grid import Evaluation


class HigherIs(str, Enum):
    normal = "normal"
    abnormal = "abnormal"


def _f(value: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


def _ci(ci: tuple[float, float]) -> str:
    return "n/a" if not all(math.isfinite(v) for v in ci) else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


@app.command("evaluate")
def evaluate_command(
    run_dir: Annotated[Path, typer.Argument(help="Run folder written by `cleftscore score --out`.")],
    ratings: Annotated[Path, typer.Option("--ratings", help="CSV with columns file,rating (one row per photo).")],
    higher_is: Annotated[
        HigherIs,
        typer.Option(
            "--higher-is",
            case_sensitive=False,
            help="What a higher rating means. Default: the paper's scale, 1 = most abnormal, 7 = normal.",
        ),
    ] = HigherIs.normal,
    vgg16: Annotated[
        Path | None,
        typer.Option(
            "--vgg16",
            help="VGG16 weights for the LPIPS rows (default: CLEFTSCORE_VGG16 or the weights "
            "cache; without them the LPIPS rows are n/a).",
        ),
    ] = None,
    n_boot: Annotated[int, typer.Option("--n-boot", min=0, help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default RUN_DIR/evaluation).")] = None,
) -> None:
    """Correlate scores with human ratings over the whole grid of heat-map settings.

    Reports Pearson r and Spearman rho with bootstrap 95 % intervals for PSE, LPIPS and SSIM,
    with and without YCbCr and erosion, mouth and face, for the GAN (with and without
    adaptation) and the asymmetry normalizer, and writes grid.csv, grid.md, summary.json and
    scatter.png. Positive r means the scores agree with the raters.
    """
    from cleftscore.evaluate.files import write_evaluation
    from cleftscore.evaluate.grid import LPIPS_MISSING_REASON, evaluate_run

    with user_errors():
        lpips_distance = _lpips_distance(vgg16)
        with console.status("Computing the evaluation grid ..."):
            ev = evaluate_run(
                run_dir,
                ratings,
                higher_is=higher_is.value,
                lpips_distance=lpips_distance,
                lpips_missing_reason=LPIPS_MISSING_REASON,
                n_boot=n_boot,
                seed=seed,
            )
        files = write_evaluation(ev, out if out is not None else Path(run_dir) / "evaluation")

    _show(ev, files)


def _lpips_distance(vgg16: Path | None) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """LPIPS with the VGG16 weights, or None (the LPIPS rows are then n/a, never random weights)."""
    from cleftscore.weights import resolve_vgg16

    try:
        vgg16_path = resolve_vgg16(vgg16)
    except WeightsMissingError as exc:
        if vgg16 is not None:
            raise  # an explicit --vgg16 must work
        err_console.print(f"[yellow]LPIPS rows skipped:[/yellow] {exc}", highlight=False, soft_wrap=True)
        return None
    from cleftscore.run.lpips import make_lpips_distance

    return make_lpips_distance(vgg16_path)


def _show(ev: Evaluation, files: EvaluationFiles) -> None:
    """The headline and best rows as a table, the notes, the unmatched photos and the files written."""
    table = Table(title=f"Agreement with human ratings ({len(ev.matched)} rated photos)")
    for col in ("row", "n", "Pearson r", "95% CI", "Spearman rho", "95% CI"):
        table.add_column(col, justify="left" if col == "row" else "right")
    head = ev.headline
    shown = [("headline", head)] if head is not None else []
    shown += [("best", r) for r in ev.best(5) if r is not head]
    for label, row in shown:
        name = (
            f"{row.normalizer} {row.metric.upper()} {row.variant} {row.region}"
            if row.metric != "face-referenced"
            else "asymmetry face-referenced score"
        )
        style = "bold" if label == "headline" else None
        table.add_row(
            f"{label}: {name}",
            str(row.n),
            _f(row.pearson_r),
            _ci(row.pearson_ci),
            _f(row.spearman_rho),
            _ci(row.spearman_ci),
            style=style,
        )
    console.print(table)
    if head is not None and not head.available:
        console.print(f"[yellow]headline row not available:[/yellow] {head.note}")
    for note in ev.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)
    if ev.missing_in_run:
        err_console.print(
            f"[yellow]{len(ev.missing_in_run)} rated photo(s) not scored in the run:[/yellow] "
            + ", ".join(ev.missing_in_run),
            highlight=False,
            soft_wrap=True,
        )
    if ev.missing_in_ratings:
        err_console.print(
            f"[yellow]{len(ev.missing_in_ratings)} scored photo(s) without a rating:[/yellow] "
            + ", ".join(ev.missing_in_ratings),
            highlight=False,
            soft_wrap=True,
        )
    written = [files.grid_csv, files.grid_md, files.summary_json]
    if files.scatter_png is not None:
        written.append(files.scatter_png)
    console.print("wrote " + ", ".join(str(p) for p in written), highlight=False, soft_wrap=True)
