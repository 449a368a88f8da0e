"""``cleftscore bench``: benchmarks that prove the mechanism and measure speed."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from cleftscore.cli import app
from cleftscore.cli._common import console, err_console, user_errors

__all__ = ["bench_app", "default_planted_generator"]

logger = logging.getLogger(__name__)

bench_app = typer.Typer(help="Benchmarks: planted anomalies (mechanism) and speed.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def default_planted_generator() -> Path | None:
    """The shared golden g64 generator, when the project's shared folder is beside the checkout.

    Looked up in ``$CLEFTSCORE_SHARED/golden`` and ``../shared/golden`` (from the working
    folder); None when absent (then ``--generator`` is required).
    """
    candidates = []
    if os.environ.get("CLEFTSCORE_SHARED"):
        candidates.append(Path(os.environ["CLEFTSCORE_SHARED"]) / "golden" / "g64_state_dict.npz")
    candidates.append(Path.cwd().parent / "shared" / "golden" / "g64_state_dict.npz")
    for c in candidates:
        if c.is_file():
            return c
    return None


@bench_app.command("planted")
def planted(
    generator: Annotated[
        Path | None,
        typer.Option(
            "--generator",
            help="Generator weights (any format `weights verify` reads). "
            "Default: the shared golden g64 generator when present.",
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, help="Normal samples (each gets 5 planted defects).")] = 3,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Inversion steps.")] = 300,
    adapt_steps: Annotated[int, typer.Option("--adapt-steps", min=0, help="Adaptation steps.")] = 50,
    loss: Annotated[
        str | None,
        typer.Option("--loss", help="mse or lpips (default: lpips when VGG16 weights are found, else mse)."),
    ] = None,
    vgg16: Annotated[str | None, typer.Option("--vgg16", help="VGG16 weights file for LPIPS.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of samples, defects and inversion.")] = 0,
    precision: Annotated[str, typer.Option(help="fp32, bf16, fp16 or auto.")] = "fp32",
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here.")] = None,
) -> None:
    """Plant graded synthetic defects into a generator's own samples and check they survive normalization.

    Reports, after projection and after 10/25/50 adaptation steps: Spearman rho of severity vs residual energy in the defect mask, pixel AUROC of the residual map, PSNR of the clean reconstructions, surviving defect energy, and seconds per image.
    """
    import torch

    from cleftscore.benchmarks.planted import PlantedSettings, run_planted
    from cleftscore.errors import WeightsMissingError
    from cleftscore.gan.checkpoints import load_generator

    with user_errors():
        if loss is not None and loss not in ("mse", "lpips"):
            raise typer.BadParameter(f"--loss must be mse or lpips, got {loss!r}")
        gen_path = generator or default_planted_generator()
        if gen_path is None:
            raise WeightsMissingError(
                "no benchmark generator: pass --generator PATH (e.g. a golden g64_state_dict.npz)"
            )
        dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        loss_fn = None
        chosen = loss
        if chosen != "mse":
            from cleftscore.weights import resolve_vgg16

            try:
                vgg_path = resolve_vgg16(vgg16)
            except WeightsMissingError:
                if chosen == "lpips":
                    raise
                vgg_path = None
            if vgg_path is None:
                chosen = "mse"
                err_console.print(
                    "VGG16 weights not found: using --loss mse (a random-weight VGG cannot drive a projection)"
                )
            else:
                from cleftscore.perceptual import PerceptualDistance

                chosen = "lpips"
                loss_fn = PerceptualDistance(vgg16_weights=vgg_path).to(dev)
        G = load_generator(gen_path, device=dev)
        settings = PlantedSettings(
            k=k, steps=steps, adapt_steps=adapt_steps, loss=chosen, seed=seed, precision=precision
        )
        from rich.progress import Progress

        with Progress(console=err_console, transient=True) as bar:
            tasks: dict[str, int] = {}

            def progress(stage: str, step: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=step)

            report = run_planted(G, settings=settings, loss_fn=loss_fn, device=dev, progress=progress)
        report["generator"] = str(gen_path)
        from rich.table import Table

        table = Table("stage", "rho", "AUROC", "PSNR clean (dB)", "surviving")
        for name, m in report["stages"].items():
            table.add_row(
                name, f"{m['spearman_rho']:.3f}", f"{m['pixel_auroc_mean']:.3f}",
                f"{m['psnr_clean_db']:.2f}", f"{m['surviving_fraction_mean']:.3f}",
            )  # fmt: skip
        console.print(table)
        sp = report["seconds_per_image"]
        console.print(
            f"s/image: projection {sp['projection']:.2f}, adaptation {sp['adaptation']:.2f} ({report['environment']['device']})"
        )
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2))
            console.print(f"wrote {out}")


@bench_app.command("speed")
def speed(
    config: Annotated[
        str, typer.Option("--config", help="Architecture: ffhq1024, g256 or t64 (random weights).")
    ] = "t64",
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Batch size N of the fast path (also timed: 1).")] = 8,
    adapt_batch: Annotated[
        int | None, typer.Option("--adapt-batch", min=1, help="Adaptation batch (default: --batch).")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Timed steps per configuration.")] = 10,
    warmup: Annotated[int, typer.Option("--warmup", min=1, help="Untimed warm-up steps per configuration.")] = 3,
    precision: Annotated[
        list[str] | None,
        typer.Option("--precision", help="Fast-path precision (repeatable; default auto[, bf16 on CUDA])."),
    ] = None,
    compile_step: Annotated[
        bool,
        typer.Option("--compile", help="Also time the projection with torch.compile (compile time reported apart)."),
    ] = False,
    eager_too: Annotated[
        bool, typer.Option("--eager-too", help="On CUDA, also time the projection without CUDA graphs.")
    ] = False,
    unfused_too: Annotated[
        bool, typer.Option("--unfused-too", help="On CUDA, also time the projection without the fused Triton kernels.")
    ] = False,
    channels_last: Annotated[
        bool, typer.Option("--channels-last", help="Also time the projection with channels-last (NHWC) weights.")
    ] = False,
    profile: Annotated[
        bool,
        typer.Option(
            "--profile", help="Also list the kernels (CUDA) or operators (CPU) a projection step spends its time in."
        ),
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here.")] = None,
) -> None:
    """Time projection and adaptation steps: the official way of working (reference) vs our fast path."""
    import torch

    from cleftscore.benchmarks.speed import CONFIGS, run_speed

    with user_errors():
        if config not in CONFIGS:
            raise typer.BadParameter(f"--config must be one of {sorted(CONFIGS)}, got {config!r}")
        dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        batches = (1, batch) if batch > 1 else (1,)
        adapt_batches = None if adapt_batch is None else ((1, adapt_batch) if adapt_batch > 1 else (1,))
        report = run_speed(
            CONFIGS[config], device=dev, batch_sizes=batches, adapt_batch_sizes=adapt_batches, steps=steps,
            warmup=warmup, precisions=tuple(precision) if precision else None, compile=compile_step,
            eager_too=eager_too, unfused_too=unfused_too, profile=profile, channels_last=channels_last,
            config_name=config, progress=lambda line: err_console.print(line),
        )  # fmt: skip
        s = report["summary"]

        def fmt(v: float | None, spec: str = ".2f") -> str:
            return "-" if v is None else format(v, spec)

        console.print(
            f"s/photo at 2000+50 steps ({report['environment']['device_name']}, {config}): "
            f"reference {fmt(s['reference']['s_per_photo'])}, fast single {fmt(s['fast_single_photo']['s_per_photo'])}, "
            f"fast batched {fmt(s['fast_batched']['s_per_photo'])}; speed-up single {fmt(s['speedup_single_photo'])}x, "
            f"batched {fmt(s['speedup_batched'])}x"
        )
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2))
            console.print(f"wrote {out}")


def _print_cleft_synth(report: dict) -> None:
    from rich.table import Table

    table = Table("scorer", "rho", *(f"AUROC s{s}" for s in report["severities"]), "bilat. rho", "pixel AUROC",
                  "min gap", *report["scorers"][next(iter(report["scorers"]))]["robustness"])  # fmt: skip
    for name, m in report["scorers"].items():
        rob = [f"{v['median']:.3f}" if v.get("n") else "-" for v in m["robustness"].values()]
        pix = m["pixel_auroc"].get("median")
        table.add_row(
            name, f"{m['spearman_rho']:.3f}", *(f"{v:.2f}" for v in m["auroc_vs_clean"].values()),
            f"{m['bilateral']['spearman_rho']:.2f}", "-" if pix is None else f"{pix:.3f}",
            f"{m['smallest_adjacent_gap']:.3f}", *rob,
        )  # fmt: skip
    console.print(table)


_PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})


@bench_app.command("cleft-synth")
def cleft_synth(
    faces: Annotated[
        list[Path] | None,
        typer.Option(
            "--faces",
            help="Normal face photos or folders of them (repeatable). "
            "Default: the packaged astronaut portrait, unless --devsets is given.",
        ),
    ] = None,
    devsets: Annotated[
        Path | None, typer.Option("--devsets", help="Folder built by devsets/rebuild.py: use its normal faces.")
    ] = None,
    cache: Annotated[Path | None, typer.Option("--cache", help="Folder of aligned faces (.npy) for --devsets.")] = None,
    per_set: Annotated[
        int | None,
        typer.Option("--per-set", min=1, help="With --devsets: this many evenly spaced normal faces per set."),
    ] = None,
    scorers: Annotated[
        str | None,
        typer.Option("--scorers", help="Comma-separated scorers (default: all; see cleft_synth.default_scorers)."),
    ] = None,
    robustness_faces: Annotated[
        int, typer.Option("--robustness-faces", min=0, help="Faces that get the four photo changes.")
    ] = 8,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here.")] = None,
) -> None:
    """Plant graded cleft-like defects (5 severities, unilateral and bilateral) on normal faces and score them.

    Reports per scorer (the old score and each idea of issue 19): Spearman rho of severity vs score, AUROC of each severity vs the clean faces, pixel AUROC of the heat map in the defect mask, and the score change under rotation, scaling, JPEG and downscaling vs the gap between adjacent severities.
    """
    from importlib import resources

    from cleftscore.benchmarks.cleft_synth import FaceSample, default_scorers, devset_normal_faces, run_cleft_synth
    from cleftscore.face import prepare_photo

    with user_errors():
        samples: list[FaceSample] = []
        if devsets is not None:
            samples += devset_normal_faces(devsets, cache, per_set=per_set)
        paths: list[Path] = []
        for p in faces or (
            [] if devsets is not None else [Path(str(resources.files("cleftscore") / "data" / "astronaut.png"))]
        ):
            paths += sorted(q for q in p.iterdir() if q.suffix.lower() in _PHOTO_SUFFIXES) if p.is_dir() else [p]
        for p in paths:
            prep = prepare_photo(p, size=1024)
            samples.append(FaceSample(p.name, prep.aligned.image, prep.aligned.landmarks))
        report = run_cleft_synth(samples, scorers=default_scorers(scorers.split(",") if scorers else None), robustness_faces=robustness_faces,
                                 progress=lambda line: err_console.print(line))  # fmt: skip
        report["input"] = "devsets normal faces" if devsets is not None else [p.name for p in paths]
        _print_cleft_synth(report)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2))
            console.print(f"wrote {out}")


@bench_app.command("cleft-devsets")
def cleft_devsets(
    devsets: Annotated[Path, typer.Option("--devsets", help="Folder built by devsets/rebuild.py (with labels.csv).")],
    cache: Annotated[Path | None, typer.Option("--cache", help="Folder of aligned faces (.npy).")] = None,
    synthetic: Annotated[
        Path | None,
        typer.Option(
            "--synthetic", help="A cleft-synth JSON: its severity-3 thresholds give the adult false-alarm rate."
        ),
    ] = None,
    scorers: Annotated[str | None, typer.Option("--scorers", help="Comma-separated scorers (default: all).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here (aggregates only).")] = None,
) -> None:
    """Score the development photo sets: cleft vs normal children, before vs after repair, A/B ratio, false alarms on adults."""
    from cleftscore.benchmarks.cleft_synth import default_scorers, run_devsets

    with user_errors():
        if not (devsets / "labels.csv").is_file():
            raise typer.BadParameter(f"{devsets} has no labels.csv; build it with devsets/rebuild.py")
        thresholds = None
        if synthetic is not None:
            syn = json.loads(synthetic.read_text())
            thresholds = {n: m["threshold_90pct_severity3"] for n, m in syn["scorers"].items()}
        report = run_devsets(devsets, scorers=default_scorers(scorers.split(",") if scorers else None), cache=cache, thresholds=thresholds,
                             progress=lambda line: err_console.print(line))  # fmt: skip
        from rich.table import Table

        table = Table(
            "scorer", "children AUROC", "all below", "repair AUROC", "A/B rho", "clefts vs adults", "adult FA"
        )
        for name, m in report["scorers"].items():
            fa = m.get("adult_false_alarm_rate")
            table.add_row(
                name, f"{m['children_auroc_normal_above_cleft']:.2f}", str(m["children_all_clefts_below_all_normal"]),
                f"{m['repair_auroc_after_above_before']:.2f}", f"{m['ab_ratio_spearman']:.2f}",
                f"{m['clefts_vs_adults_auroc']:.2f}", "-" if fa is None else f"{fa:.2f}",
            )  # fmt: skip
        console.print(table)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2))
            console.print(f"wrote {out}")
