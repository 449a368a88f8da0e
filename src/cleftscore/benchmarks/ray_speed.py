"""Photos per minute of ``score`` in one process against ``score --ray`` with 2 CPU workers.

A small generator (the tiny test generator t32, 32 px, in ``bench/results/ray_speed_cpu.json``)
on this machine's CPU cores, sample photos turned into distinct photos (mirrored and rescaled
copies, so no two share a cache entry), a fresh cache for every run. The single-process runs
(PyTorch's default threads, and one thread) and the Ray run alternate, in one process, so all see
the same load on a shared machine. Ray's start (a local instance, and two workers loading
PyTorch and the generator) is timed on its own, apart from the scoring. Ray is the optional
``ray`` extra, imported only when the benchmark runs. ``cleftscore bench ray-speed`` runs it.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["RaySpeedSettings", "distinct_photos", "run_ray_speed"]

_OVERHEAD = (
    "Ray's start (a local instance, then 2 workers importing PyTorch and loading the generator) is paid once per run: "
    "ray_start_s. Per photo Ray adds a cache lookup on a worker and the aligned and normalized faces through its object "
    "store (a few kB at 32 px), and the driver polls busy workers twice a second. Two 1-thread workers on 2 cores cannot "
    "reach twice the 1-thread single process here: the driver's alignment, heat maps, pictures and file writing run on "
    "the same 2 cores, and other jobs share the machine (load_average_at_end). PyTorch's default threads on this busy "
    "machine are far slower than one thread (single_process_s), and their scores differ from one thread's at the 1e-2 "
    "level (largest_score_difference); Ray's 1-CPU workers run one thread each and match the 1-thread run exactly."
)


@dataclass(frozen=True)
class RaySpeedSettings:
    """Settings of the Ray benchmark.

    Parameters
    ----------
    faces : Path
        Folder of sample photos (``*.jpg``) the distinct photos are made from.
    generator : Path
        Generator weights (a small one: the benchmark measures the overhead around it).
    photos : int
        Distinct photos scored in each run.
    steps, adapt_steps, batch : int
        Projection steps, adaptation steps and photos per batch of the GAN normalizer.
    rounds : int
        Rounds of (default threads, one thread, Ray); the medians are reported.
    workers : int
        Ray workers (one CPU each).
    """

    faces: Path
    generator: Path
    photos: int = 12
    steps: int = 60
    adapt_steps: int = 3
    batch: int = 2
    rounds: int = 2
    workers: int = 2

    def __post_init__(self) -> None:
        counts = {"photos": self.photos, "steps": self.steps, "batch": self.batch, "rounds": self.rounds,
                  "workers": self.workers}  # fmt: skip
        bad = {k: v for k, v in counts.items() if v < 1}
        if bad or self.adapt_steps < 0:
            raise ValueError(f"photos, steps, batch, rounds and workers must be >= 1 and adapt_steps >= 0, got {bad}")


def distinct_photos(faces: Path, folder: Path, n: int) -> list[Path]:
    """``n`` photos made from the samples in ``faces``: each mirrored or not and at one of several scales.

    Raises
    ------
    ValueError
        When ``faces`` holds no ``*.jpg`` photo.
    """
    from PIL import Image, ImageOps

    sources = sorted(faces.glob("*.jpg"))
    if not sources:
        raise ValueError(f"no *.jpg photos in {faces}")
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        src = sources[i % len(sources)]
        variant = i // len(sources)
        img = ImageOps.exif_transpose(Image.open(src)).convert("RGB")  # upright, as the pipeline reads it
        if variant % 2:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        scale = 1.0 + 0.15 * (variant // 2)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
        path = folder / f"{src.stem}_v{variant}.png"
        img.save(path)
        out.append(path)
    return out


def _require_ray() -> None:
    """Fail with one line naming the extra when Ray is not installed."""
    from cleftscore.distributed import INSTALL_HINT
    from cleftscore.errors import CleftscoreError

    if importlib.util.find_spec("ray") is None:
        raise CleftscoreError(f"the Ray benchmark needs the optional Ray extra, which is not installed: {INSTALL_HINT}")


class _Runs:
    """Times runs of ``score_photos`` over the same photos, each into a fresh folder and cache."""

    def __init__(self, root: Path, photos: list[Path], settings: object) -> None:
        self.root, self.photos, self.settings = root, photos, settings
        self.scores: dict[str, dict[str, list[float]]] = {}  # kind of run -> photo id -> its scores

    def timed(self, kind: str, rnd: int, **kw: object) -> float:
        from cleftscore.run.pipeline import score_photos

        name = f"{kind}-{rnd}"
        t0 = time.perf_counter()
        results = score_photos(self.photos, self.settings, out_dir=self.root / name,
                               cache_dir=self.root / f"cache-{name}", **kw)  # fmt: skip
        dt = time.perf_counter() - t0
        for r in results:
            self.scores.setdefault(kind, {}).setdefault(r.photo_id, []).append(r.score if r.ok else float("nan"))
        return dt

    def failed(self) -> list[str]:
        """Photos that failed in some run."""
        return sorted(
            {pid for by_photo in self.scores.values() for pid, v in by_photo.items() if not all(np.isfinite(v))}
        )

    def spread(self, *kinds: str) -> float | None:
        """Largest difference between the scores of one photo in runs of these kinds."""
        failed = self.failed()
        gaps = [max(v) - min(v) for pid in self.scores[kinds[0]] if pid not in failed
                for v in [[x for k in kinds for x in self.scores[k][pid]]]]  # fmt: skip
        return max(gaps, default=None)


def _rounds(runs: _Runs, settings: RaySpeedSettings, gan: object, seed: int) -> dict[str, list[float]]:
    """Alternate single process (default threads, one thread) and Ray, ``rounds`` times."""
    import torch

    from cleftscore.distributed import RaySettings, ray_pool
    from cleftscore.distributed.actors import ray_session

    times: dict[str, list[float]] = {"single": [], "single_1_thread": [], "ray": [], "ray_start": []}
    default_threads = torch.get_num_threads()
    for rnd in range(settings.rounds):
        times["single"].append(runs.timed("single", rnd))
        # One thread, as each 1-CPU Ray worker has: on a busy machine PyTorch's two threads
        # can be far slower than one, which is not what Ray is being measured against.
        torch.set_num_threads(1)
        try:
            times["single_1_thread"].append(runs.timed("single_1_thread", rnd))
        finally:
            torch.set_num_threads(default_threads)
        t0 = time.perf_counter()
        with ray_session(RaySettings(address="auto")):
            with ray_pool(gan, seed=seed, cache_dir=runs.root / f"cache-ray{rnd}",
                          ray=RaySettings(workers=settings.workers)) as pool:  # fmt: skip
                times["ray_start"].append(time.perf_counter() - t0)
                times["ray"].append(runs.timed("ray", rnd, normalizer_factory=pool.normalizer))
    return times


def _report(settings: RaySpeedSettings, runs: _Runs, times: dict[str, list[float]], threads: int) -> dict:
    """The JSON report: photos per minute of each kind of run, ratios, score agreement, machine."""
    n = settings.photos

    def per_min(seconds: list[float]) -> float:
        return round(60 * n / statistics.median(seconds), 2)

    single_pm, single1_pm, ray_pm = per_min(times["single"]), per_min(times["single_1_thread"]), per_min(times["ray"])
    with_start = [a + b for a, b in zip(times["ray"], times["ray_start"], strict=True)]
    ray_with_start_pm = per_min(with_start)
    failed = runs.failed()
    return {
        "benchmark": "ray_speed",
        "what": "cleftscore score (align, GAN normalize, score, pictures, run folder) in one process vs --ray with 2 CPU workers",
        "generator": settings.generator.name,
        "settings": {
            "photos": n,
            "steps": settings.steps,
            "adapt_steps": settings.adapt_steps,
            "batch": settings.batch,
            "loss": "mse",
            "rounds": settings.rounds,
        },  # fmt: skip
        "photos_ok_in_every_run": n - len(failed),
        "photos_failed_in_some_run": failed,
        "largest_score_difference": {
            "ray_vs_single_process_1_thread": runs.spread("ray", "single_1_thread"),
            "ray_vs_single_process_default_threads": runs.spread("ray", "single"),
            "single_process_1_thread_vs_default_threads": runs.spread("single_1_thread", "single"),
            "between_ray_runs": runs.spread("ray"),
        },
        "single_process_s": [round(s, 2) for s in times["single"]],
        "single_process_torch_threads": threads,
        "single_process_1_thread_s": [round(s, 2) for s in times["single_1_thread"]],
        "ray_run_s": [round(s, 2) for s in times["ray"]],
        "ray_start_s": [round(s, 2) for s in times["ray_start"]],
        "photos_per_min_single_process": single_pm,
        "photos_per_min_single_process_1_thread": single1_pm,
        "photos_per_min_ray": ray_pm,
        "photos_per_min_ray_including_start": ray_with_start_pm,
        "ratio_ray_over_single": round(ray_pm / single_pm, 3),
        "ratio_ray_over_single_1_thread": round(ray_pm / single1_pm, 3),
        "ratio_ray_including_start_over_single": round(ray_with_start_pm / single_pm, 3),
        "overhead": _OVERHEAD,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },  # fmt: skip
    }


def run_ray_speed(settings: RaySpeedSettings, *, progress: Callable[[str], None] | None = None) -> dict:
    """Score the same photos in one process and through Ray, alternating, and compare.

    Parameters
    ----------
    settings : RaySpeedSettings
        Photos, generator and normalizer settings, rounds and workers.
    progress : callable, optional
        Called with a line of text after each round.

    Returns
    -------
    dict
        JSON-ready report: seconds of every run, Ray's start apart, photos per minute and their
        ratios, and the largest score difference between kinds of run.

    Raises
    ------
    CleftscoreError
        When Ray (the ``ray`` extra) is not installed.
    """
    _require_ray()
    import torch

    from cleftscore.normalize.gan import GanSettings
    from cleftscore.run.pipeline import score_photos
    from cleftscore.run.settings import PipelineSettings

    pipeline = PipelineSettings(
        method="gan",
        gan=GanSettings(generator=str(settings.generator), loss="mse", device="cpu", steps=settings.steps,
                        adapt_steps=settings.adapt_steps, batch=settings.batch),
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="cleftscore-ray-bench-") as tmp:
        root = Path(tmp)
        runs = _Runs(root, distinct_photos(settings.faces, root / "photos", settings.photos), pipeline)
        # Computed once per generator and kept in each cache: not part of either side's time.
        score_photos(runs.photos[:1], pipeline, out_dir=root / "warm", cache_dir=root / "cache-warm")
        threads = torch.get_num_threads()
        times = _rounds(runs, settings, pipeline.gan, pipeline.seed)
        if progress is not None:
            progress(f"{settings.rounds} rounds: single {times['single']}, ray {times['ray']} s")
        return _report(settings, runs, times, threads)
