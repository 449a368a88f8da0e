"""``cleftscore bench``: benchmarks that prove the mechanism and measure speed."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
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


def _shared_faces() -> Path:
    """The project's shared photo collection: ``$CLEFTSCORE_SHARED/faces``, else ``../shared/faces``."""
    if os.environ.get("CLEFTSCORE_SHARED"):
        return Path(os.environ["CLEFTSCORE_SHARED"]) / "faces"
    return Path.cwd().parent / "shared" / "faces"


#: ``--threads`` of the benchmarks that run PyTorch on the CPU.
Threads = Annotated[
    int | None, typer.Option("--threads", min=1, help="PyTorch CPU threads (default: PyTorch's own choice).")
]


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _pick_device(device: str | None) -> object:
    import torch

    return torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _write_report(report: dict, out: Path | None) -> None:
    """Write the JSON report to ``out`` (when given) and say so."""
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {out}")


def _stage_progress(bar: object) -> Callable[[str, int, int], None]:
    """A ``progress(stage, step, total)`` callback that keeps one bar per stage."""
    tasks: dict[str, int] = {}

    def progress(stage: str, step: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=step)

    return progress


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
    threads: Threads = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here.")] = None,
) -> None:
    """Plant graded synthetic defects into a generator's own samples and check they survive normalization.

    Reports, after projection and after 10/25/50 adaptation steps: Spearman rho of severity vs residual energy in the defect mask, pixel AUROC of the residual map, PSNR of the clean reconstructions, surviving defect energy, and seconds per image.
    """
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
        _set_threads(threads)
        dev = _pick_device(device)
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
            report = run_planted(G, settings=settings, loss_fn=loss_fn, device=dev, progress=_stage_progress(bar))
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
        _write_report(report, out)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _plain(line: str) -> None:
    """One line as it is: kernel names and error texts are not rich markup, and logs keep them unwrapped."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _print_speed_details(report: dict) -> None:
    """The per-mode lines of a speed report: best configurations, extra rows, compile, image differences."""
    s = report["summary"]
    for key in ("reference", "fast_single_photo", "fast_batched"):
        p, a = s[key]["projection"] or {}, s[key]["adaptation"] or {}
        _plain(f"  {key:18s} projection {_fmt(p.get('ms_per_step_per_photo'))} ms/step/photo (b{p.get('batch')} "
                      f"{p.get('resolved_precision')}), adaptation {_fmt(a.get('ms_per_step_per_photo'))} ms/step/photo "
                      f"(b{a.get('batch')} {a.get('resolved_precision')} {a.get('engine')}) -> {_fmt(s[key]['s_per_photo'])} s/photo")  # fmt: skip
    for r in report["timings"]:
        if r["mode"] not in ("reference", "fast"):
            result = f"{r['ms_per_step_per_photo']:.2f} ms/step/photo" if r["ms_per_step"] else f"FAILED {r['error']}"
            _plain(f"  {r['mode']:18s} {r['stage']} b{r['batch']} {r['resolved_precision']}: {result}")
    for key, label in (("without_cuda_graphs", "without CUDA graphs"), ("with_compile", "with torch.compile"),
                       ("with_channels_last", "with channels-last"), ("without_fused_kernels", "without fused kernels")):  # fmt: skip
        if s.get(key):
            _plain(f"  {label}: single {_fmt(s[key]['s_per_photo_single'])} s/photo, "
                          f"batched {_fmt(s[key]['s_per_photo_batched'])} s/photo")  # fmt: skip
    for c in report.get("compile") or []:
        done = f"{c['compile_and_2_steps_s']:.1f} s" if not c["error"] else f"FAILED {c['error']}"
        _plain(f"  compile, batch {c['batch']}: {done}")
    for d in report["image_difference"]:
        _plain(f"  image diff {d['resolved_precision']} vs fp32: max {d['max_abs_diff']:.4g}, mean {d['mean_abs_diff']:.3g} "
                      f"(fp32 |img| max {d['fp32_image_abs_max']:.3g}, finite {d['finite']})")  # fmt: skip
    _print_profile(report.get("profile"))


def _print_profile(prof: dict | None) -> None:
    if prof and "top" in prof:
        _plain(f"  profile, batch {prof['batch']} {prof['precision']}: {prof['ms_per_step_total']:.1f} ms "
                      f"{prof['time_kind']} time per step in {prof['entries_per_step']:.0f} launches; top entries:")  # fmt: skip
        for e in prof["top"][:12]:
            _plain(f"    {e['share'] * 100:5.1f}% {e['ms_per_step']:8.2f} ms x{e['calls_per_step']:<5.0f} {e['name'][:90]}")  # fmt: skip
    elif prof:
        _plain(f"  profile FAILED: {prof['error']}")


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
    adapt_engine: Annotated[
        list[str] | None,
        typer.Option(
            "--adapt-engine",
            help="Adaptation engine of the fast path: vmap and/or loop (repeatable; loop only at batch 1).",
        ),
    ] = None,
    threads: Threads = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here.")] = None,
) -> None:
    """Time projection and adaptation steps: the official way of working (reference) vs our fast path."""
    from cleftscore.benchmarks.speed import CONFIGS, run_speed

    with user_errors():
        if config not in CONFIGS:
            raise typer.BadParameter(f"--config must be one of {sorted(CONFIGS)}, got {config!r}")
        bad = [e for e in adapt_engine or () if e not in ("vmap", "loop")]
        if bad:
            raise typer.BadParameter(f"--adapt-engine must be vmap or loop, got {bad}")
        _set_threads(threads)
        dev = _pick_device(device)
        batches = (1, batch) if batch > 1 else (1,)
        adapt_batches = None if adapt_batch is None else ((1, adapt_batch) if adapt_batch > 1 else (1,))
        report = run_speed(
            CONFIGS[config], device=dev, batch_sizes=batches, adapt_batch_sizes=adapt_batches, steps=steps,
            warmup=warmup, precisions=tuple(precision) if precision else None,
            adapt_engines=tuple(adapt_engine or ("vmap",)), compile=compile_step, eager_too=eager_too, unfused_too=unfused_too, profile=profile, channels_last=channels_last,
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
        _print_speed_details(report)
        _write_report(report, out)


@bench_app.command("step-cost")
def step_cost(
    config: Annotated[
        str, typer.Option("--config", help="Architecture: ffhq1024, g256 or t64 (traced, never run).")
    ] = "ffhq1024",
    batch: Annotated[
        list[int] | None, typer.Option("--batch", min=1, help="Photos per step (repeatable; default 1 and 16).")
    ] = None,
    precision: Annotated[str, typer.Option("--precision", help="fp16 or fp32.")] = "fp16",
    device_model: Annotated[
        list[str] | None,
        typer.Option(
            "--device-model", help="GPU whose roofline floor is reported: h100, h200 (repeatable; default both)."
        ),
    ] = None,
    inductor: Annotated[
        bool,
        typer.Option(
            "--inductor",
            help="Also count the bytes of the torch.compile'd step (compiles on the CPU: minutes at 1024 px).",
        ),
    ] = False,
    calibrate: Annotated[
        list[Path] | None,
        typer.Option(
            "--calibrate", help="A speed JSON measured on a GPU: measured steps next to the floor (repeatable)."
        ),
    ] = None,
    threads: Threads = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here.")] = None,
) -> None:
    """Model one projection step without a GPU: kernels, FLOPs, bytes moved and a roofline floor per GPU.

    The fast path's step is traced on PyTorch's meta device (any batch size costs nothing), each kernel's FLOPs and bytes are counted, and a GPU's peak rates bound its time from below. A model, not a measurement: --calibrate puts measured times next to it.
    """
    from cleftscore.benchmarks.speed import CONFIGS
    from cleftscore.benchmarks.step_cost import DEVICES, run_step_cost

    with user_errors():
        if config not in CONFIGS:
            raise typer.BadParameter(f"--config must be one of {sorted(CONFIGS)}, got {config!r}")
        if precision not in ("fp16", "fp32"):
            raise typer.BadParameter(f"--precision must be fp16 or fp32, got {precision!r}")
        bad = [m for m in device_model or () if m not in DEVICES]
        if bad:
            raise typer.BadParameter(f"--device-model must be among {sorted(DEVICES)}, got {bad}")
        _set_threads(threads)
        speeds = {p.name: json.loads(p.read_text()) for p in calibrate or ()}
        report = run_step_cost(
            CONFIGS[config], config_name=config, batches=tuple(batch or (1, 16)), precision=precision,
            device_models=tuple(device_model or ("h100", "h200")), inductor=inductor, calibrate=speeds,
            progress=_plain,
        )  # fmt: skip
        _write_report(report, out)


@bench_app.command("dynamics")
def dynamics(
    generator: Annotated[
        Path | None,
        typer.Option("--generator", help="Generator weights. Default: the shared golden g64 generator when present."),
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, help="Normal samples (each gets 5 planted defects).")] = 3,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Inversion steps.")] = 300,
    adapt_steps: Annotated[
        int, typer.Option("--adapt-steps", min=0, help="Adaptation steps of the normalized image.")
    ] = 50,
    dynamics_steps: Annotated[
        int, typer.Option("--dynamics-steps", min=1, help="Adaptation steps recorded (>= --adapt-steps).")
    ] = 300,
    seed: Annotated[int, typer.Option(help="Seed of samples, defects and inversion.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    threads: Threads = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here.")] = None,
) -> None:
    """Planted benchmark of the adaptation-dynamics indices: how many steps until a planted defect returns.

    The planted set (as in `bench planted`, MSE loss) is inverted, then adapted for --dynamics-steps steps while the ROI residual is recorded; reports Spearman rho of severity vs the reappearance step for each fraction, the curve area and the residual after --adapt-steps.
    """
    from cleftscore.benchmarks.dynamics import DynamicsBenchSettings, run_dynamics
    from cleftscore.benchmarks.planted import PlantedSettings
    from cleftscore.errors import WeightsMissingError
    from cleftscore.gan.checkpoints import load_generator

    with user_errors():
        gen_path = generator or default_planted_generator()
        if gen_path is None:
            raise WeightsMissingError(
                "no benchmark generator: pass --generator PATH (e.g. a golden g64_state_dict.npz)"
            )
        try:
            settings = DynamicsBenchSettings(
                planted=PlantedSettings(k=k, steps=steps, adapt_steps=adapt_steps, seed=seed),
                dynamics_steps=dynamics_steps,
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        _set_threads(threads)
        dev = _pick_device(device)
        G = load_generator(gen_path, device=dev)
        from rich.progress import Progress

        with Progress(console=err_console, transient=True) as bar:
            report = run_dynamics(G, settings=settings, device=dev, progress=_stage_progress(bar))
        report["generator"] = gen_path.name
        console.print(
            f"best fraction {report['best_fraction']}; curve area rho {report['curve_auc']['spearman_rho']:.3f}; "
            "step rho by fraction "
            + ", ".join(f"{f}: {v['spearman_rho_step']:.3f}" for f, v in report["by_fraction"].items())
        )
        _write_report(report, out)


@bench_app.command("generator-cpu")
def generator_cpu(
    config: Annotated[
        list[str] | None,
        typer.Option("--config", help="Architecture: ffhq1024, g256 or t64 (repeatable; default ffhq1024 and g256)."),
    ] = None,
    reps: Annotated[
        int | None,
        typer.Option("--reps", min=1, help="Timed repetitions of each pass (default: 2 for ffhq1024, 5 otherwise)."),
    ] = None,
    threads: Threads = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here.")] = None,
) -> None:
    """Time the generator on the CPU: a forward pass and a forward + backward pass (batch 1, float32, random weights)."""
    from cleftscore.benchmarks.generator_cpu import DEFAULT_REPS, run_generator_cpu
    from cleftscore.benchmarks.speed import CONFIGS

    with user_errors():
        names = list(dict.fromkeys(config or ("ffhq1024", "g256")))
        bad = [n for n in names if n not in CONFIGS]
        if bad:
            raise typer.BadParameter(f"--config must be among {sorted(CONFIGS)}, got {bad}")
        _set_threads(threads)
        report = run_generator_cpu({n: (CONFIGS[n], reps or DEFAULT_REPS.get(n, 5)) for n in names})
        for name, r in report["configs"].items():
            console.print(
                f"{name}: forward {r['forward_ms_median']:.0f} ms, forward+backward "
                f"{r['forward_backward_ms_median']:.0f} ms (median of {r['reps']}, {report['threads']} threads)"
            )
        _write_report(report, out)


@bench_app.command("align-speed")
def align_speed(
    faces: Annotated[
        Path | None,
        typer.Option("--faces", help="Folder of the photos. Default: the project's shared faces folder."),
    ] = None,
    photo: Annotated[
        list[str] | None,
        typer.Option("--photo", help="File name in --faces (repeatable; default: the two reference photos)."),
    ] = None,
    reps: Annotated[int, typer.Option("--reps", min=1, help="Timed runs per photo (the median is reported).")] = 5,
    size: Annotated[int, typer.Option("--size", min=16, help="Side of the aligned face in pixels.")] = 1024,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here.")] = None,
) -> None:
    """Time face preprocessing on the CPU: load, detection, landmarks and FFHQ alignment, stage by stage."""
    from cleftscore.benchmarks.align_speed import PHOTOS, run_align_speed

    with user_errors():
        folder = faces or _shared_faces()
        if not folder.is_dir():
            raise typer.BadParameter(f"no photo folder {folder}: pass --faces DIR")
        report = run_align_speed(folder, photos=tuple(photo or PHOTOS), reps=reps, size=size)
        if not report["results"]:
            raise typer.BadParameter(f"none of {', '.join(photo or PHOTOS)} is in {folder}")
        for name, r in report["results"].items():
            m = r["median_s"]
            console.print(
                f"{name} {r['image_shape']}: {m['total']:.3f} s (load {m['load']:.3f}, detect {m['detect']:.3f}, "
                f"landmarks {m['landmarks']:.3f}, align {m['align']:.3f}); target {report['target_s']} s",
                highlight=False,
            )
        _write_report(report, out)


@bench_app.command("mirror-speed")
def mirror_speed(
    faces: Annotated[
        Path | None,
        typer.Option("--faces", help="Folder of photos to score. Default: the project's shared faces folder."),
    ] = None,
    size: Annotated[int, typer.Option("--size", min=16, help="Side of the aligned face in pixels.")] = 1024,
    warp: Annotated[str, typer.Option("--warp", help="thin-plate or piecewise-affine.")] = "thin-plate",
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Timed passes over the photos.")] = 1,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here.")] = None,
) -> None:
    """Time the weights-free asymmetry method per photo on the CPU, pictures and files included (target < 5 s)."""
    from cleftscore.benchmarks.mirror_speed import photos_in, run_mirror_speed

    with user_errors():
        if warp not in ("thin-plate", "piecewise-affine"):
            raise typer.BadParameter(f"--warp must be thin-plate or piecewise-affine, got {warp!r}")
        folder = faces or _shared_faces()
        photos = photos_in(folder) if folder.is_dir() else []
        if not photos:
            raise typer.BadParameter(f"no photos in {folder}: pass --faces DIR")
        report = run_mirror_speed(photos, size=size, warp=warp, repeat=repeat)
        console.print(
            f"{report['n_ok']} of {report['n_photos']} photos scored: mean {_fmt(report['per_photo_s_mean'])} s, "
            f"max {_fmt(report['per_photo_s_max'])} s per photo (target {report['target_s']} s, met: {report['meets_target']})"
        )
        _write_report(report, out)


@bench_app.command("ray-speed")
def ray_speed(
    faces: Annotated[
        Path, typer.Option("--faces", help="Folder of sample photos (*.jpg) the distinct photos are made from.")
    ] = Path("tests/data/faces"),
    generator: Annotated[
        Path, typer.Option("--generator", help="Generator weights (a small one: Ray's overhead is what is measured).")
    ] = Path("tests/data/golden/t32_state_dict.npz"),
    photos: Annotated[int, typer.Option("--photos", min=1, help="Distinct photos per run.")] = 12,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Projection steps.")] = 60,
    adapt_steps: Annotated[int, typer.Option("--adapt-steps", min=0, help="Adaptation steps.")] = 3,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Photos per batch of the normalizer.")] = 2,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Rounds of single process and Ray runs.")] = 2,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Ray workers (one CPU each).")] = 2,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here.")] = None,
) -> None:
    """Photos per minute of `score` in one process against `score --ray` on this machine's CPUs (needs the ray extra).

    The defaults (the test photos and the tiny test generator) are paths in the checkout: run it from its root.
    """
    from cleftscore.benchmarks.ray_speed import RaySpeedSettings, run_ray_speed

    with user_errors():
        for p, what in ((faces, "--faces"), (generator, "--generator")):
            if not p.exists():
                raise typer.BadParameter(f"{p} does not exist: pass {what} (the defaults are paths in the checkout)")
        settings = RaySpeedSettings(faces=faces, generator=generator, photos=photos, steps=steps,
                                    adapt_steps=adapt_steps, batch=batch, rounds=rounds, workers=workers)  # fmt: skip
        report = run_ray_speed(settings, progress=lambda line: err_console.print(line))
        console.print(
            f"photos/min: single process {report['photos_per_min_single_process']}, 1 thread "
            f"{report['photos_per_min_single_process_1_thread']}, ray {report['photos_per_min_ray']} "
            f"({report['photos_per_min_ray_including_start']} with its start)"
        )
        _write_report(report, out)


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


@bench_app.command("asymmetry-speed")
def asymmetry_speed(
    photos: Annotated[
        list[Path] | None,
        typer.Argument(help="Photos or folders to time (default: tests/data/faces and ../shared/faces when present)."),
    ] = None,
    sizes: Annotated[
        str, typer.Option("--sizes", help="Longest sides of scaled copies of the largest photo, comma-separated.")
    ] = "512,1024,2048,4096",
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Calls per stage; the median is reported.")] = 3,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here.")] = None,
) -> None:
    """Seconds per photo of the weights-free path (--method asymmetry) on one CPU core, stage by stage and whole."""
    from cleftscore.benchmarks.asymmetry_speed import run_asymmetry_speed

    with user_errors():
        if photos is None:
            photos = [p for p in (Path("tests/data/faces"), Path.cwd().parent / "shared" / "faces") if p.is_dir()]
        if not photos:
            raise typer.BadParameter("no photos to time: pass photo files or folders")
        try:
            side = [int(s) for s in sizes.split(",") if s.strip()]
        except ValueError:
            raise typer.BadParameter(f"--sizes must be whole numbers separated by commas, got {sizes!r}") from None
        report = run_asymmetry_speed(photos, sizes=side, repeats=repeats, progress=lambda line: err_console.print(line))
        for row in report["photos"]:
            console.print(f"{row['photo']}: {row['whole_s']['whole_photo']:.2f} s ({row['status']})")
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2))
            console.print(f"wrote {out}")


@bench_app.command("robustness")
def robustness(
    devsets: Annotated[
        Path | None, typer.Option("--devsets", help="Folder built by devsets/rebuild.py (with labels.csv).")
    ] = None,
    faces: Annotated[
        Path | None,
        typer.Option("--faces", help="Folder of normal photos (default: ../shared/faces); one-face photos are used."),
    ] = None,
    normals_per_set: Annotated[
        int | None,
        typer.Option(
            "--normals-per-set", min=1, help="Evenly spaced normal photos per development set (default: all)."
        ),
    ] = None,
    clefts_per_set: Annotated[
        int | None,
        typer.Option("--clefts-per-set", min=1, help="Evenly spaced cleft photos per development set (default: all)."),
    ] = None,
    variants: Annotated[str | None, typer.Option("--variants", help="Comma-separated variants (default: all).")] = None,
    cache: Annotated[
        Path | None, typer.Option("--cache", help="Folder of aligned faces (.npz), read and written.")
    ] = None,
    size: Annotated[int, typer.Option("--size", help="Side of the aligned faces (power of two).")] = 1024,
    previous: Annotated[
        bool, typer.Option("--previous", help="Score with the settings before issue 25 (luma and chroma compared).")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here (aggregates only).")] = None,
) -> None:
    """Score photos and their changed copies (grayscale, flip, JPEG, size, crop, light, turns, blur, noise): |change| / cleft-vs-normal gap."""
    from cleftscore.benchmarks.robustness import (
        VARIANTS,
        default_scorer,
        devset_photos,
        run_robustness,
        shared_face_photos,
    )
    from cleftscore.score.asymmetry import YCBCR_SETTINGS, AsymmetrySettings

    with user_errors():
        photos = (
            devset_photos(devsets, normals_per_set=normals_per_set, clefts_per_set=clefts_per_set)
            if devsets is not None
            else []
        )
        folder = faces or _shared_faces()
        if folder.is_dir():
            photos += shared_face_photos(folder)
        chosen = tuple(v.strip() for v in variants.split(",") if v.strip()) if variants else VARIANTS
        report = run_robustness(
            photos, scorer=default_scorer(AsymmetrySettings(**(YCBCR_SETTINGS if previous else {}))),
            variants=chosen, cache=cache, size=size, progress=lambda line: err_console.print(line),
        )  # fmt: skip
        report["input"] = {"devsets": devsets is not None, "normals_per_set": normals_per_set,
                           "clefts_per_set": clefts_per_set, "faces": folder.name,
                           "size": size, "settings": "before issue 25" if previous else "default"}  # fmt: skip
        for name, r in report["variants"].items():
            if r.get("n"):
                console.print(
                    f"{name}: median {r['median']:.3f}, p90 {r['p90']:.3f} of the gap, {r['crossing']} crossing"
                )
        _write_report(report, out)


@bench_app.command("heatmap-localisation")
def heatmap_localisation(
    devsets: Annotated[Path, typer.Option("--devsets", help="Folder built by devsets/rebuild.py (its normal faces).")],
    boxes: Annotated[
        Path | None,
        typer.Option(
            "--boxes",
            help="JSON of hand-drawn cleft boxes [x0, y0, x1, y1] in the aligned frame (keep it outside the repository).",
        ),
    ] = None,
    cache: Annotated[Path | None, typer.Option("--cache", help="Folder of aligned faces (.npy).")] = None,
    holdout: Annotated[
        int, typer.Option("--holdout", min=2, help="Every Nth normal face gets the synthetic clefts.")
    ] = 6,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here.")] = None,
) -> None:
    """Does the heat map point at the cleft? Pixel AUROC and the pointing game of the map before and after issue 26, on synthetic clefts and (with --boxes) on boxed real clefts (counts only)."""
    from cleftscore.benchmarks.cleft_synth import devset_normal_faces
    from cleftscore.benchmarks.heatmap_localisation import run_localisation

    with user_errors():
        normals = devset_normal_faces(devsets, cache)
        report = run_localisation(normals, devsets=devsets if boxes else None, boxes=boxes, cache=cache,
                                  holdout=holdout, progress=lambda line: err_console.print(line))  # fmt: skip
        for name, m in report["synthetic"].items():
            console.print(
                f"synthetic, {name}: pointing {m['pointing_hits']}/{m['n']}, pixel AUROC {m['pixel_auroc_median']:.3f}"
            )
        for name, m in report.get("real", {}).items():
            console.print(f"boxed real clefts, {name}: pointing {m['hits']}/{m['n']}")
        if out is not None:
            from cleftscore.io import write_json

            write_json(out, report)


@bench_app.command("nasolabial")
def nasolabial(
    devsets: Annotated[Path, typer.Option("--devsets", help="Folder built by devsets/rebuild.py (with labels.csv).")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON report here (aggregates only).")] = None,
    reference: Annotated[
        Path | None, typer.Option("--reference", help="Also write the normal reference JSON here (statistics only).")
    ] = None,
) -> None:
    """Nasolabial measures on the development photos: A/B Spearman (automatic, and the drawn dots as corrected points), repeatability under photo changes, AUROCs."""
    from cleftscore.benchmarks.nasolabial import run_nasolabial
    from cleftscore.io import write_json

    with user_errors():
        if not (devsets / "labels.csv").is_file():
            raise typer.BadParameter(f"{devsets} has no labels.csv; build it with devsets/rebuild.py")
        report, ref = run_nasolabial(devsets, progress=lambda line: err_console.print(line))
        for name, m in report["graded"].items():
            if isinstance(m, dict):
                console.print(f"A/B Spearman, {name}: {m['spearman']:.3f} (p {m['p']:.3f}, n {m['n']})")
        if out is not None:
            write_json(out, report)
            console.print(f"wrote {out}")
        if reference is not None:
            write_json(reference, ref.to_json())
            console.print(f"wrote {reference}")
