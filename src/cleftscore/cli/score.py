"""``cleftscore score`` and ``cleftscore rescore``: photos in, heat maps, scores and a report out."""

from __future__ import annotations

import functools
import os
import time
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from cleftscore.cli import app
from cleftscore.cli._common import console, err_console, literal, user_errors
from cleftscore.cli.options import (
    GAN,
    RAY,
    AdaptStepsOpt,
    AsymmetryScore,
    AsymScoreOpt,
    BatchOpt,
    CacheDirOpt,
    CalibrateOpt,
    ColorOpt,
    ColorSpace,
    Detector,
    DetectorOpt,
    DeviceOpt,
    ErosionOpt,
    GeneratorOpt,
    HeatmapMaxOpt,
    HigherIs,
    HigherIsOpt,
    Loss,
    LossOpt,
    MaskOpt,
    Method,
    Metric,
    MetricOpt,
    Precision,
    ReferenceOpt,
    Roi,
    RoiOpt,
    SeedOpt,
    SizeOpt,
    StepsOpt,
    Vgg16Opt,
)
from cleftscore.errors import CleftscoreError, WeightsMissingError


def _score_settings(roi: Roi, mask: Path | None, metric: Metric, colorspace: ColorSpace, erosion: int,
                    asymmetry_score: AsymmetryScore = AsymmetryScore.face_referenced, heatmap_max: float | None = None):  # fmt: skip
    from cleftscore.heatmap import DifferenceSettings
    from cleftscore.score.paper import ScoreSettings

    return ScoreSettings(
        roi=roi.value,
        mask_file=str(mask) if mask else None,
        difference=DifferenceSettings(metric=metric.value, colorspace=colorspace.value, erosion=erosion),
        asymmetry_score=asymmetry_score.value,
        heatmap_max=heatmap_max,
    )


def _example_photo() -> Path:
    return Path(str(resources.files("cleftscore") / "data" / "astronaut.png"))


def _pick_method(method: Method | None, generator: str | None) -> str:
    if method is not None:
        return method.value
    from cleftscore.weights import resolve_generator

    try:
        resolve_generator(generator)
    except WeightsMissingError as exc:
        raise CleftscoreError(
            f"{exc} Two ways forward: fetch the paper's GAN weights "
            "(`cleftscore weights fetch ffhq` and `cleftscore weights fetch vgg16`, or pass --generator PATH --vgg16 PATH), "
            "or use the weights-free mirror normalizer with --method asymmetry."
        ) from None
    return "gan"


class _Progress:
    """Rich progress bars on stderr: photos, and GAN steps with an ETA."""

    def __init__(self, n_photos: int) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=False,
        )
        self.photos = self.progress.add_task("photos", total=n_photos)
        self.gan = None
        self.gan_t10: float | None = None
        self.gan_done10 = 0
        self.gan_done = 0
        self.gan_total = 0
        self.estimated = False

    def photo_done(self, res) -> None:
        self.progress.advance(self.photos)
        if not res.ok:
            self.progress.console.print(f"[red]failed:[/red] {literal(res.message)}", highlight=False, soft_wrap=True)
        for note in res.notes:
            self.progress.console.print(
                f"[yellow]note:[/yellow] {literal(res.file)}: {literal(note)}", highlight=False, soft_wrap=True
            )

    def gan_start(self, n_photos: int, total_steps: int) -> None:
        self.gan_total = total_steps
        self.gan = self.progress.add_task(f"GAN steps ({n_photos} photos)", total=total_steps)

    def gan_grow(self, n: int) -> None:
        if self.gan is None:
            return
        self.gan_total += n
        self.progress.update(self.gan, total=self.gan_total)

    def gan_step(self, n: int) -> None:
        if self.gan is None:
            return
        self.gan_done += n
        self.progress.advance(self.gan, n)
        # Say once how long the whole GAN part will take, from the pace of steps 10 to 50:
        # past loading, compiling, warm-up and CUDA-graph capture (the first steps), and with
        # the GPU at most 8 steps behind the count.
        first = min(10, self.gan_total // 5)
        if self.gan_t10 is None and self.gan_done >= first:
            self.gan_t10, self.gan_done10 = time.perf_counter(), self.gan_done
        if (
            not self.estimated
            and self.gan_t10 is not None
            and self.gan_done >= min(50, max(first + 1, self.gan_total // 2))
        ):
            self.estimated = True
            rate = (time.perf_counter() - self.gan_t10) / max(self.gan_done - self.gan_done10, 1)
            eta = rate * (self.gan_total - self.gan_done)
            self.progress.console.print(f"Estimated GAN time: {_fmt_duration(eta)} ({rate * 1000:.0f} ms per step)")

    def message(self, text: str) -> None:
        self.progress.console.print(f"[yellow]{literal(text)}[/yellow]", highlight=False, soft_wrap=True)


def _fmt_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _calibrate(run_dir: Path, ratings: Path | None, higher_is: HigherIs) -> None:
    if ratings is None:
        return
    from cleftscore.evaluate.calibrate import calibrate_run

    fit = calibrate_run(run_dir, ratings, higher_is=higher_is.value)
    console.print(
        f"Calibrated on {fit['n']} rated photos: rating = {fit['slope']:.3f} x score + {fit['intercept']:.3f} (r = {fit['r']:.3f})"
    )


def _print_results(results, csv_path: Path, html_path: Path) -> None:
    table = Table(title="Scores (higher = closer to normal)")
    table.add_column("photo")
    table.add_column("status")
    table.add_column("score", justify="right")
    from cleftscore.score.reference import placement_of

    places = [placement_of(r.measures) if r.ok else None for r in results]
    if any(places):
        table.add_column("reading (among normal faces)")
    for r, pl in zip(results, places, strict=True):
        reading = [f"{pl.reading} ({pl.percentile_label}, z {pl.z:+.1f})" if pl else ""] if any(places) else []
        table.add_row(
            literal(Path(r.file).name),
            "ok" if r.ok else "[red]failed[/red]",
            f"{r.score:.3f}" if r.score is not None else "",
            *reading,
        )
    console.print(table)
    if any(places):
        ref = next(p for p in places if p)
        console.print(f"Reading against '{ref.reference}' ({ref.n} normal photos): below the 90th percentile within "
                      "the normal range, 90 to 97.5 borderline, 97.5 and above outside it.")  # fmt: skip
    n_ok = sum(r.ok for r in results)
    console.print(f"{n_ok} of {len(results)} photos scored. CSV: {csv_path}  Report: {html_path}")


@app.command("score")
def score_command(
    photos: Annotated[
        list[Path] | None, typer.Argument(help="Photos or folders of photos.", show_default=False)
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (one sub-folder per photo, scores.csv, report.html).")
    ] = Path("cleftscore-run"),
    example: Annotated[
        bool, typer.Option("--example", help="Score the public-domain example portrait that ships with cleftscore.")
    ] = False,
    method: Annotated[
        Method | None,
        typer.Option(
            "--method",
            help="Normalizer: 'gan' (paper; needs downloaded weights) or 'asymmetry' (the face's mirror; no downloads). Default: gan when its weights are present.",
        ),
    ] = None,
    roi: RoiOpt = Roi.mouth,
    mask: MaskOpt = None,
    metric: MetricOpt = Metric.pse,
    colorspace: ColorOpt = ColorSpace.ycbcr,
    erosion: ErosionOpt = 3,
    asymmetry_score: AsymScoreOpt = AsymmetryScore.face_referenced,
    heatmap_max: HeatmapMaxOpt = None,
    generator: GeneratorOpt = None,
    vgg16: Vgg16Opt = None,
    steps: StepsOpt = 2000,
    adapt_steps: AdaptStepsOpt = 50,
    snapshot_steps: Annotated[
        str | None,
        typer.Option(
            "--snapshot-steps",
            help="Comma-separated adaptation steps to save (at most --adapt-steps), e.g. 0,10,25,50.",
            rich_help_panel=GAN,
        ),
    ] = None,
    loss: LossOpt = Loss.lpips,
    batch: BatchOpt = 4,
    device: DeviceOpt = "auto",
    precision: Annotated[
        Precision,
        typer.Option(
            "--precision", help="auto: fp16 where the official model used it (CUDA); fp32; bf16.", rich_help_panel=GAN
        ),
    ] = Precision.auto,
    early_stop: Annotated[
        bool,
        typer.Option("--early-stop", help="Stop the inversion when its loss stops improving.", rich_help_panel=GAN),
    ] = False,
    compile_steps: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="torch.compile the inversion step: minutes to compile, then faster GPU steps (large batches).",
            rich_help_panel=GAN,
        ),
    ] = False,
    dynamics_steps: Annotated[
        int,
        typer.Option(
            "--dynamics-steps",
            min=0,
            help="Also adapt this many steps (e.g. 300) and record the ROI residual at every step: reappearance step, curve area, curve plot and reappearance strip (docs/dynamics.md). 0: off.",
            rich_help_panel=GAN,
        ),
    ] = 0,
    dynamics_fraction: Annotated[
        float,
        typer.Option(
            "--dynamics-fraction",
            min=0.0,
            max=1.0,
            help="f of the reappearance step: the step at which the ROI residual falls to f of its start.",
            rich_help_panel=GAN,
        ),
    ] = 0.9,
    dynamics_level: Annotated[
        float | None,
        typer.Option(
            "--dynamics-level",
            min=0.0,
            help="Also count the steps until the ROI residual falls to this absolute level (measured on normal faces of the same generator).",
            rich_help_panel=GAN,
        ),
    ] = None,
    seed: SeedOpt = 0,
    size: SizeOpt = None,
    detector: DetectorOpt = Detector.hog,
    cache_dir: CacheDirOpt = None,
    calibrate: CalibrateOpt = None,
    reference: ReferenceOpt = None,
    higher_is: HigherIsOpt = HigherIs.normal,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Processes that score photos side by side with the asymmetry method (default: one per CPU core; 1: this process only). The run folder is the same. The GAN method ignores it: it batches photos on its device (--batch).",
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Spread the GAN work over GPUs with Ray: 'auto' (this machine) or a running cluster's address, HOST:6379 (needs the ray extra; docs/ray.md).",
            rich_help_panel=RAY,
        ),
    ] = None,
    ray_workers: Annotated[
        int | None,
        typer.Option(
            "--ray-workers",
            min=1,
            help="Ray workers (default: one per GPU; 2 CPU workers where there is no GPU).",
            rich_help_panel=RAY,
        ),
    ] = None,
) -> None:
    """Score photos: align the face, normalize it, and write heat maps, scores and a report.

    Every photo gets a folder with aligned.png, normalized.png, heatmap.png, overlay.png,
    overlay_original.png and result.json (GAN: also inverted.png); the run gets scores.csv and a
    self-contained report.html. Higher scores mean closer to normal. Re-running the same command
    skips GAN work that is cached. Photos that fail are listed with the reason; the others are
    still scored (exit code 1 only when none could be scored).
    """
    from cleftscore.normalize.gan import GanSettings
    from cleftscore.run.folder import RunLock
    from cleftscore.run.inputs import find_inputs
    from cleftscore.run.lpips import make_lpips_distance
    from cleftscore.run.settings import PipelineSettings

    with user_errors():
        inputs = list(photos or [])
        if example:
            inputs.append(_example_photo())
        if not inputs:
            raise CleftscoreError("no photos given: pass photo files or folders, or --example")
        chosen = _pick_method(method, generator)
        try:
            snaps = tuple(int(s) for s in snapshot_steps.split(",") if s.strip()) if snapshot_steps else ()
            settings = PipelineSettings(
                method=chosen,
                size=size,
                detector=detector.value,
                score=_score_settings(roi, mask, metric, colorspace, erosion, asymmetry_score, heatmap_max),
                gan=GanSettings(
                    generator=generator,
                    vgg16=vgg16,
                    steps=steps,
                    adapt_steps=adapt_steps,
                    snapshot_steps=snaps,
                    loss=loss.value,
                    batch=batch,
                    device=device,
                    precision=precision.value,
                    early_stop=early_stop,
                    compile=compile_steps,
                    dynamics_steps=dynamics_steps,
                    dynamics_fraction=dynamics_fraction,
                    dynamics_level=dynamics_level,
                    dynamics_roi=roi.value,
                ),
                seed=seed,
                reference=str(reference) if reference is not None else None,
            )
            ray_settings = _ray_settings(ray_address, ray_workers)
        except ValueError as exc:
            raise CleftscoreError(f"invalid option: {exc}") from None
        from cleftscore.cli.reference import check_reference

        check_reference(reference, chosen, settings.score)
        lpips_distance = make_lpips_distance(vgg16, device=device) if metric is Metric.lpips else None
        found = find_inputs(inputs)
        with RunLock(out):
            _score_locked(
                found,
                inputs,
                chosen,
                settings,
                out,
                cache_dir,
                lpips_distance,
                calibrate,
                higher_is,
                ray_settings=ray_settings,
                workers=workers or os.cpu_count() or 1,
            )


def _ray_settings(address: str | None, workers: int | None):
    if address is None:
        if workers is not None:
            raise ValueError("--ray-workers needs --ray auto or --ray ADDRESS")
        return None
    from cleftscore.distributed import RaySettings

    return RaySettings(address=address, workers=workers)


def _score_locked(
    found, inputs, chosen, settings, out, cache_dir, lpips_distance, calibrate, higher_is, *, ray_settings=None,
    workers=1,
) -> None:  # fmt: skip
    """The score command once it holds the output folder's lock."""
    from cleftscore.run.pipeline import score_photos
    from cleftscore.run.settings import ProgressHooks

    run = functools.partial(score_photos, workers=workers)  # the GAN method scores in this process
    if ray_settings is not None:
        from cleftscore.distributed import score_photos_ray

        run = functools.partial(score_photos_ray, ray=ray_settings)  # the same call, GAN work on Ray workers

    console.print(f"Scoring {len(found)} photo(s) with the {chosen} method into {literal(out)}", highlight=False)
    progress = _Progress(len(found))
    hooks = ProgressHooks(
        photo_done=progress.photo_done,
        gan_start=progress.gan_start,
        gan_step=progress.gan_step,
        gan_grow=progress.gan_grow,
        message=progress.message,
    )
    try:
        with progress.progress:
            results = run(
                inputs, settings, out_dir=out, cache_dir=cache_dir, hooks=hooks, lpips_distance=lpips_distance
            )
    except KeyboardInterrupt:
        err_console.print(
            f"[yellow]Interrupted.[/yellow] Finished photos are in {out}; {out / 'scores.csv'} lists them. Re-run the same command to continue (cached GAN work is reused)."
        )
        raise typer.Exit(code=130) from None
    _calibrate(out, calibrate, higher_is)
    _print_results(results, out / "scores.csv", out / "report.html")
    if not any(r.ok for r in results):
        raise typer.Exit(code=1)


@app.command("rescore")
def rescore_command(
    run_dir: Annotated[Path, typer.Argument(help="A folder written by `cleftscore score`.")],
    roi: RoiOpt = Roi.mouth,
    mask: MaskOpt = None,
    metric: MetricOpt = Metric.pse,
    colorspace: ColorOpt = ColorSpace.ycbcr,
    erosion: ErosionOpt = 3,
    asymmetry_score: AsymScoreOpt = AsymmetryScore.face_referenced,
    heatmap_max: HeatmapMaxOpt = None,
    vgg16: Vgg16Opt = None,
    device: Annotated[str, typer.Option("--device", help="Device for LPIPS maps.")] = "auto",
    calibrate: CalibrateOpt = None,
    reference: ReferenceOpt = None,
    higher_is: HigherIsOpt = HigherIs.normal,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Processes that score photos side by side (default: two photos at a time in this process; LPIPS maps: one).",
        ),
    ] = None,
) -> None:
    """Recompute heat maps and scores of a finished run with other scoring settings (no GAN).

    About a second per photo on a CPU; photos already scored with these settings are kept.
    Nothing the run holds is rewritten in place, so an interrupted rescore loses nothing.
    """
    from cleftscore.run.folder import RunLock, is_run_folder, list_photo_ids
    from cleftscore.run.lpips import make_lpips_distance
    from cleftscore.run.rescore import rescore_run
    from cleftscore.run.settings import ProgressHooks

    with user_errors():
        try:
            settings = _score_settings(roi, mask, metric, colorspace, erosion, asymmetry_score, heatmap_max)
        except ValueError as exc:
            raise CleftscoreError(f"invalid option: {exc}") from None
        lpips_distance = make_lpips_distance(vgg16, device=device) if metric is Metric.lpips else None
        if not is_run_folder(run_dir):
            raise CleftscoreError(
                f"{run_dir}: not a cleftscore run folder (no photos/ inside); run `cleftscore score` first"
            )
        with RunLock(run_dir):
            ids = list_photo_ids(run_dir)
            if reference is not None and ids:
                from cleftscore.cli.reference import check_reference
                from cleftscore.run.folder import read_record

                check_reference(reference, read_record(run_dir, ids[0]).method, settings)
            progress = _Progress(len(ids))
            try:
                with progress.progress:
                    results = rescore_run(
                        run_dir,
                        settings,
                        lpips_distance=lpips_distance,
                        hooks=ProgressHooks(photo_done=progress.photo_done, message=progress.message),
                        workers=workers,
                        reference=str(reference) if reference is not None else None,
                    )
            except KeyboardInterrupt:
                err_console.print(
                    f"[yellow]Interrupted.[/yellow] Every photo in {run_dir} still has its record; {run_dir / 'scores.csv'} marks those not yet re-scored as stale. Run the same command again to finish."
                )
                raise typer.Exit(code=130) from None
            _calibrate(run_dir, calibrate, higher_is)
            _print_results(results, run_dir / "scores.csv", run_dir / "report.html")
