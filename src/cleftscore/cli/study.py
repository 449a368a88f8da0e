"""``cleftscore study``: patients, visits, photos and scores in a local study database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from cleftscore.cli import app
from cleftscore.cli._common import console, err_console, literal, user_errors
from cleftscore.cli.options import (
    AdaptStepsOpt,
    BatchOpt,
    CacheDirOpt,
    ColorOpt,
    ColorSpace,
    Detector,
    DetectorOpt,
    DeviceOpt,
    ErosionOpt,
    GeneratorOpt,
    Loss,
    LossOpt,
    MaskOpt,
    Method,
    Metric,
    MetricOpt,
    ReferenceOpt,
    Roi,
    RoiOpt,
    SeedOpt,
    SizeOpt,
    StepsOpt,
    Vgg16Opt,
)
from cleftscore.errors import CleftscoreError, WeightsMissingError

study_app = typer.Typer(
    help="A study record: patients (pseudonymous codes), visits, photos and scores, and the change after surgery.",
    no_args_is_help=True,
)
app.add_typer(study_app, name="study")

DbOpt = Annotated[
    Path | None, typer.Option("--db", help="Study database file (default: study.sqlite in the user data folder).")
]
CodeArg = Annotated[
    str, typer.Argument(help="Pseudonymous patient code, e.g. P001 (never a name).", show_default=False)
]
VisitArg = Annotated[int, typer.Argument(help="Visit id (`study show CODE` lists them).", show_default=False)]


def _open(db: Path | None, *, create: bool = False):
    from cleftscore.study.db import open_study

    return open_study(db, create=create)


def _print_lines(report, *, verb: str) -> int:
    """Print one line per photo; return the exit code (1 when any photo failed)."""
    for line in report.lines:
        if line.status == "failed":
            err_console.print(f"[red]failed:[/red] {literal(line.message)}", highlight=False, soft_wrap=True)
    added, already, failed = report.count("added"), report.count("already"), report.count("failed")
    console.print(f"{verb} {added} photo(s); {already} already in the study with these settings; {failed} failed")
    return 1 if failed else 0


@study_app.command("init")
def init(db: DbOpt = None) -> None:
    """Create a study database (or upgrade an existing one to this version's schema)."""
    from cleftscore.study.db import current_revision

    with user_errors(), _open(db, create=True) as study:
        console.print(
            f"Study database {study.path} (schema revision {current_revision(study)}); files in {study.files}"
        )


@study_app.command("add-patient")
def add_patient(
    code: CodeArg,
    db: DbOpt = None,
    birth_year: Annotated[int | None, typer.Option("--birth-year", help="Year of birth (optional).")] = None,
    cleft_type: Annotated[
        str | None, typer.Option("--cleft-type", help="lip, lip-alveolus, lip-palate or other.")
    ] = None,
    side: Annotated[str | None, typer.Option("--side", help="left, right, bilateral or median.")] = None,
) -> None:
    """Add a patient by pseudonymous code (there is no name field: keep the key to codes elsewhere)."""
    from cleftscore.study import records

    with user_errors(), _open(db, create=True) as study:
        p = records.add_patient(study, code, birth_year=birth_year, cleft_type=cleft_type, cleft_side=side)
        console.print(f"Added patient {p.code}")


@study_app.command("add-visit")
def add_visit(
    code: CodeArg,
    date: Annotated[str, typer.Option("--date", help="Visit date, YYYY-MM-DD.", show_default=False)],
    phase: Annotated[str, typer.Option("--phase", help="pre-op, post-op or follow-up.", show_default=False)],
    db: DbOpt = None,
    procedure: Annotated[
        str | None, typer.Option("--procedure", help="Procedure, e.g. 'Millard rotation-advancement'.")
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="Free-text note (no identifying details).")] = None,
) -> None:
    """Add a visit of a patient; prints the visit id that `study score` and `study import-run` take."""
    from cleftscore.study import records

    with user_errors(), _open(db) as study:
        try:
            day = dt.date.fromisoformat(date)
        except ValueError:
            raise CleftscoreError(f"--date {date!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-03-14") from None
        v = records.add_visit(study, code, date=day, phase=phase, procedure=procedure, note=note)
        console.print(f"Added visit {v.id} of patient {code}: {v.date.isoformat()} {v.phase}")


@study_app.command("score")
def score(
    visit: VisitArg,
    photos: Annotated[
        list[Path], typer.Argument(help="Photos or folders of photos of this visit.", show_default=False)
    ],
    db: DbOpt = None,
    method: Annotated[
        Method, typer.Option("--method", help="Normalizer: 'gan' (paper; needs weights) or 'asymmetry' (no downloads).")
    ] = Method.gan,
    roi: RoiOpt = Roi.mouth,
    mask: MaskOpt = None,
    metric: MetricOpt = Metric.pse,
    colorspace: ColorOpt = ColorSpace.ycbcr,
    erosion: ErosionOpt = 3,
    size: SizeOpt = None,
    detector: DetectorOpt = Detector.hog,
    generator: GeneratorOpt = None,
    vgg16: Vgg16Opt = None,
    steps: StepsOpt = 2000,
    adapt_steps: AdaptStepsOpt = 50,
    loss: LossOpt = Loss.lpips,
    batch: BatchOpt = 4,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    cache_dir: CacheDirOpt = None,
    reference: ReferenceOpt = None,
) -> None:
    """Score photos with the normal pipeline and record them, with their scores, in a visit.

    Each photo is recorded as soon as it is scored; photos the visit already holds with a score
    of these settings are skipped, so an interrupted run is finished by running it again.
    """
    from cleftscore.heatmap import DifferenceSettings
    from cleftscore.normalize.gan import GanSettings
    from cleftscore.run.settings import PipelineSettings, ProgressHooks
    from cleftscore.score.paper import ScoreSettings
    from cleftscore.study import ingest

    with user_errors():
        if metric is Metric.lpips:
            raise CleftscoreError(
                "--metric lpips is not available in `study score`; score with `cleftscore score` and record the run with `study import-run`"
            )
        try:
            settings = PipelineSettings(
                method=method.value, size=size, detector=detector.value, seed=seed,
                score=ScoreSettings(roi=roi.value, mask_file=str(mask) if mask else None,
                                    difference=DifferenceSettings(metric=metric.value, colorspace=colorspace.value, erosion=erosion)),
                gan=GanSettings(generator=generator, vgg16=vgg16, steps=steps, adapt_steps=adapt_steps, loss=loss.value,
                                batch=batch, device=device),
                reference=str(reference) if reference is not None else None,
            )  # fmt: skip
        except ValueError as exc:
            raise CleftscoreError(f"invalid option: {exc}") from None
        from cleftscore.cli.reference import check_reference

        check_reference(reference, method.value, settings.score)
        with _open(db) as study:

            def print_score(line: ingest.ImportLine) -> None:
                if line.status == "added":
                    console.print(f"{literal(line.file)}: score = {line.score:.4f}", highlight=False)

            try:
                report = ingest.score_into_visit(study, visit, photos, settings, cache_dir=cache_dir, on_line=print_score,
                                                  hooks=ProgressHooks(message=lambda m: err_console.print(m, highlight=False)))  # fmt: skip
            except WeightsMissingError as exc:
                raise CleftscoreError(f"{exc}; or score with the weights-free --method asymmetry") from None
            except KeyboardInterrupt:
                err_console.print(
                    "[yellow]Interrupted.[/yellow] The photos scored so far are recorded; run the same command again to score the rest."
                )
                raise typer.Exit(code=130) from None
        code = _print_lines(report, verb="Scored")
    raise typer.Exit(code=code)


@study_app.command("import-run")
def import_run(
    visit: VisitArg,
    run_dir: Annotated[Path, typer.Argument(help="A folder written by `cleftscore score --out`.", show_default=False)],
    db: DbOpt = None,
    photos: Annotated[
        Path | None, typer.Option("--photos", help="Folder of the original photos, if they moved since the run.")
    ] = None,
) -> None:
    """Record the scored photos of an existing run folder in a visit (originals are copied in)."""
    from cleftscore.study import ingest

    with user_errors(), _open(db) as study:
        report = ingest.import_run(study, visit, run_dir, photos_dir=photos)
        code = _print_lines(report, verb="Imported")
    raise typer.Exit(code=code)


@study_app.command("patients")
def patients(db: DbOpt = None) -> None:
    """List the patients with their numbers of visits and photos."""
    from rich.table import Table

    from cleftscore.study.show import patient_list

    with user_errors(), _open(db) as study:
        table = Table("code", "birth year", "cleft", "side", "visits", "photos")
        for row in patient_list(study):
            table.add_row(*(literal(v) if v is not None else "" for v in row))
        console.print(table)


@study_app.command("show")
def show(code: CodeArg, db: DbOpt = None) -> None:
    """Show a patient's visits, photos and scores."""
    from rich.table import Table

    from cleftscore.study.show import patient_detail

    with user_errors(), _open(db) as study:
        detail = patient_detail(study, code)
        console.print(literal(detail.header), highlight=False)
        for visit in detail.visits:
            console.print(literal(visit.heading), highlight=False)
            if not visit.rows:
                console.print("  (no photos)")
                continue
            table = Table("photo", "file", "method", "score")
            for row in visit.rows:
                table.add_row(*(literal(v) if v is not None else "" for v in row))
            console.print(table)


@study_app.command("outcomes")
def outcomes(
    db: DbOpt = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for outcomes.csv, timeline_<code>.png and cohort.png.")
    ] = Path("study-outcomes"),
    method: Annotated[
        Method | None, typer.Option("--method", help="Whose scores to compare (needed when the study has several).")
    ] = None,
    settings: Annotated[
        str | None,
        typer.Option("--settings", help="Settings key (or its start) to compare; default: those most photos have."),
    ] = None,
    after: Annotated[
        str, typer.Option("--after", help="Which later visit enters the cohort comparison: last or first.")
    ] = "last",
    n_boot: Annotated[int, typer.Option("--n-boot", min=100, help="Bootstrap resamples per CI.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    include_failed_quality: Annotated[
        bool,
        typer.Option(
            "--include-failed-quality", help="Keep photos that fail the photo-quality gate (left out by default)."
        ),
    ] = False,
) -> None:
    """Change in score from the pre-op visit to each later visit (95 % bootstrap CI over photos), the cohort's mean change with a paired test, and plots."""
    from cleftscore.study.outcomes import compute_outcomes, outcome_rows
    from cleftscore.study.report import write_outcomes

    with user_errors(), _open(db) as study:
        result = compute_outcomes(
            study, method=method.value if method else None, settings=settings, after=after, n_boot=n_boot, seed=seed,
            include_failed_quality=include_failed_quality,
        )  # fmt: skip
        written = write_outcomes(study, result, out)
    for note in result.notes:
        err_console.print(f"[yellow]note:[/yellow] {literal(note)}", highlight=False, soft_wrap=True)
    if any("failed the quality gate" in note for note in result.notes):
        err_console.print("[yellow]note:[/yellow] --include-failed-quality keeps those photos", highlight=False)
    console.print(
        f"Method {result.method}, settings {result.settings_key[:12]}; higher S = closer to normal, so a positive change is an improvement"
    )
    units = {(r.get("patient"), r.get("visit")): r.get("change_normal_units") for r in outcome_rows(result)}
    for c in result.changes:
        ci = f"95% CI {c.ci_low:+.4f} to {c.ci_high:+.4f}" if c.ci_low is not None else c.note
        normal = units.get((c.code, c.visit_id))
        in_units = f"; {normal:+.2f} in units of the normal spread" if normal is not None else ""
        console.print(
            f"{c.code} visit {c.visit_id} ({c.date.isoformat()} {c.phase}, +{c.days} d): change {c.change:+.4f} ({ci}){in_units}",
            highlight=False,
        )
    co = result.cohort
    if co.mean_change is not None:
        extra = (
            f"95% CI {co.ci_low:+.4f} to {co.ci_high:+.4f}, paired t-test p = {co.p_value:.3g}, Wilcoxon p = {co.wilcoxon_p:.3g}"
            if co.p_value is not None
            else co.note
        )
        console.print(
            f"cohort ({len(co.codes)} patients, {co.after} visit): mean change {co.mean_change:+.4f} ({extra})",
            highlight=False,
        )
    console.print(f"Wrote {', '.join(str(p) for p in written)}", highlight=False, soft_wrap=True)


@study_app.command("check")
def check(
    db: DbOpt = None,
    clean: Annotated[
        bool, typer.Option("--clean", help="Remove files no row refers to (left by interrupted runs).")
    ] = False,
) -> None:
    """Check the database's integrity and every stored file against its recorded hash."""
    from cleftscore.study.check import check_study

    with user_errors(), _open(db) as study:
        report = check_study(study, clean=clean)
    for problem in report.problems:
        err_console.print(f"[red]problem:[/red] {problem}", highlight=False, soft_wrap=True)
    left = (
        f"{report.removed} unreferenced file(s) removed"
        if clean
        else f"{len(report.unreferenced)} unreferenced file(s) (--clean removes them)"
    )
    console.print(f"{'OK' if report.ok else f'{len(report.problems)} problem(s)'}; {left}")
    if report.stale_uploads:  # photos as the browser sent them, EXIF and GPS included
        done = (
            f"{report.uploads_removed} removed"
            if clean and not report.uploads_note
            else report.uploads_note or "--clean removes them"
        )
        console.print(
            f"{len(report.stale_uploads)} upload folder(s) of ended web jobs, photos as sent ({done})", highlight=False
        )
    raise typer.Exit(code=0 if report.ok else 1)


@study_app.command("export")
def export(
    out: Annotated[
        Path, typer.Argument(help="Folder for patients.csv, visits.csv, photos.csv and scores.csv.", show_default=False)
    ],
    db: DbOpt = None,
) -> None:
    """Export every table as CSV (spreadsheet-safe cells, as the run folders' scores.csv)."""
    from cleftscore.study.export import export_tables

    with user_errors(), _open(db) as study:
        written = export_tables(study, out)
    console.print(f"Wrote {', '.join(str(p) for p in written)}", highlight=False, soft_wrap=True)


@study_app.command("summary")
def summary(
    patient: Annotated[str, typer.Argument(help="The patient's code.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write (print it, or print it to PDF).")],
    db: DbOpt = None,
    method: Annotated[
        Method | None, typer.Option("--method", help="Whose scores to summarise (needed when the study has several).")
    ] = None,
    reference: ReferenceOpt = None,
) -> None:
    """A printable one-page patient summary: timeline, before and after, change with CI, reference, method, version.

    Written as HTML with print styles (one A4 or Letter page); no PDF library is installed with
    cleftscore, so use the browser's print to PDF.
    """
    from cleftscore.io import atomic_write_bytes
    from cleftscore.study.summary import patient_summary_html

    if out.suffix.lower() == ".pdf":
        with user_errors():
            raise CleftscoreError("--out must be an .html file: no PDF library is installed; print the HTML to PDF")
    with user_errors(), _open(db) as study:
        ref = None
        if reference is not None:
            from cleftscore.score.reference import load_reference

            try:
                ref = load_reference(str(reference))
            except (OSError, ValueError) as exc:
                raise CleftscoreError(f"--reference {reference}: {exc}") from None
        page = patient_summary_html(study, patient, method=method.value if method else None, reference=ref)
        atomic_write_bytes(out, page.encode("utf-8"))
    console.print(f"Wrote {out}")
