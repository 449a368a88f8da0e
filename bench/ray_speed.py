"""Photos per minute of ``score`` in one process against ``score --ray`` with 2 CPU workers.

The tiny test generator (t32, 32 px) on this machine's CPU cores, the sample photos of
``tests/data/faces`` turned into distinct photos (mirrored and rescaled copies, so no two share
a cache entry), a fresh cache for every run. The single-process runs (PyTorch's default threads,
and one thread) and the Ray run alternate, in one process, so all see the same load on a shared
machine. Ray's start (a local instance, and two
workers loading PyTorch and the generator) is timed on its own, apart from the scoring.
Results go to ``bench/results/ray_speed_cpu.json``.

Usage::

    python bench/ray_speed.py [--photos 12] [--steps 60] [--adapt-steps 3] [--batch 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
FACES = HERE.parent / "tests" / "data" / "faces"
GENERATOR = HERE.parent / "tests" / "data" / "golden" / "t32_state_dict.npz"


def distinct_photos(folder: Path, n: int) -> list[Path]:
    """``n`` photos made from the samples: each sample mirrored or not and at one of several scales."""
    sources = sorted(FACES.glob("*.jpg"))
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=12)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--adapt-steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ray_speed_cpu.json")
    args = ap.parse_args()

    import torch

    from cleftscore.distributed import RaySettings, ray_pool
    from cleftscore.distributed.actors import ray_session
    from cleftscore.run.pipeline import GanSettings, PipelineSettings, score_photos

    settings = PipelineSettings(
        method="gan",
        gan=GanSettings(
            generator=str(GENERATOR),
            loss="mse",
            device="cpu",
            steps=args.steps,
            adapt_steps=args.adapt_steps,
            batch=args.batch,
        ),
    )
    single_s: list[float] = []
    single1_s: list[float] = []
    ray_s: list[float] = []
    start_s: list[float] = []
    scores: dict[str, dict[str, list[float]]] = {}  # kind of run -> photo id -> its scores
    with tempfile.TemporaryDirectory(prefix="cleftscore-ray-bench-") as tmp:
        root = Path(tmp)
        photos = distinct_photos(root / "photos", args.photos)

        def timed(kind: str, rnd: int, **kw) -> float:
            name = f"{kind}-{rnd}"
            t0 = time.perf_counter()
            results = score_photos(photos, settings, out_dir=root / name, cache_dir=root / f"cache-{name}", **kw)
            dt = time.perf_counter() - t0
            for r in results:
                scores.setdefault(kind, {}).setdefault(r.photo_id, []).append(r.score if r.ok else float("nan"))
            return dt

        # Computed once per generator and kept in each cache: not part of either side's time.
        score_photos(photos[:1], settings, out_dir=root / "warm", cache_dir=root / "cache-warm")
        default_threads = torch.get_num_threads()
        for rnd in range(args.rounds):
            single_s.append(timed("single", rnd))
            # One thread, as each 1-CPU Ray worker has: on a busy machine PyTorch's two threads
            # can be far slower than one, which is not what Ray is being measured against.
            torch.set_num_threads(1)
            try:
                single1_s.append(timed("single_1_thread", rnd))
            finally:
                torch.set_num_threads(default_threads)
            t0 = time.perf_counter()
            with ray_session(RaySettings(address="auto")):
                with ray_pool(
                    settings.gan, seed=settings.seed, cache_dir=root / f"cache-ray{rnd}", ray=RaySettings(workers=2)
                ) as pool:
                    start_s.append(time.perf_counter() - t0)
                    ray_s.append(timed("ray", rnd, normalizer_factory=pool.normalizer))
        failed = sorted({pid for by_photo in scores.values() for pid, v in by_photo.items() if not all(np.isfinite(v))})

        def spread(*kinds: str) -> float | None:
            """Largest difference between the scores of one photo in runs of these kinds."""
            gaps = [max(v) - min(v) for pid in scores[kinds[0]] if pid not in failed
                    for v in [[x for k in kinds for x in scores[k][pid]]]]  # fmt: skip
            return max(gaps, default=None)

    def per_min(seconds: list[float]) -> float:
        return round(60 * args.photos / statistics.median(seconds), 2)

    single_pm, single1_pm, ray_pm = per_min(single_s), per_min(single1_s), per_min(ray_s)
    ray_with_start_pm = round(
        60 * args.photos / statistics.median([a + b for a, b in zip(ray_s, start_s, strict=True)]), 2
    )
    result = {
        "benchmark": "ray_speed",
        "what": "cleftscore score (align, GAN normalize, score, pictures, run folder) in one process vs --ray with 2 CPU workers",
        "generator": "t32 (tiny test generator, 32 px)",
        "settings": {
            "photos": args.photos,
            "steps": args.steps,
            "adapt_steps": args.adapt_steps,
            "batch": args.batch,
            "loss": "mse",
            "rounds": args.rounds,
        },  # fmt: skip
        "photos_ok_in_every_run": args.photos - len(failed),
        "photos_failed_in_some_run": failed,
        "largest_score_difference": {
            "ray_vs_single_process_1_thread": spread("ray", "single_1_thread"),
            "ray_vs_single_process_default_threads": spread("ray", "single"),
            "single_process_1_thread_vs_default_threads": spread("single_1_thread", "single"),
            "between_ray_runs": spread("ray"),
        },
        "single_process_s": [round(s, 2) for s in single_s],
        "single_process_torch_threads": default_threads,
        "single_process_1_thread_s": [round(s, 2) for s in single1_s],
        "ray_run_s": [round(s, 2) for s in ray_s],
        "ray_start_s": [round(s, 2) for s in start_s],
        "photos_per_min_single_process": single_pm,
        "photos_per_min_single_process_1_thread": single1_pm,
        "photos_per_min_ray": ray_pm,
        "photos_per_min_ray_including_start": ray_with_start_pm,
        "ratio_ray_over_single": round(ray_pm / single_pm, 3),
        "ratio_ray_over_single_1_thread": round(ray_pm / single1_pm, 3),
        "ratio_ray_including_start_over_single": round(ray_with_start_pm / single_pm, 3),
        "overhead": (
            "Ray's start (a local instance, then 2 workers importing PyTorch and loading the generator) is paid once per run: "
            "ray_start_s. Per photo Ray adds a cache lookup on a worker and the aligned and normalized faces through its object "
            "store (a few kB at 32 px), and the driver polls busy workers twice a second. Two 1-thread workers on 2 cores cannot "
            "reach twice the 1-thread single process here: the driver's alignment, heat maps, pictures and file writing run on "
            "the same 2 cores, and other jobs share the machine (load_average_at_end). PyTorch's default threads on this busy "
            "machine are far slower than one thread (single_process_s), and their scores differ from one thread's at the 1e-2 "
            "level (largest_score_difference); Ray's 1-CPU workers run one thread each and match the 1-thread run exactly."
        ),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },  # fmt: skip
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
