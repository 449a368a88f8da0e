"""Speed benchmark: reference mode (official way of working) vs our fast path, in one run.

Usage: python bench/speed.py [--config ffhq1024|g256|t64] [--device cuda] [--batch 8]
       [--adapt-batch N] [--steps 10] [--warmup 3] [--precision auto --precision bf16]
       [--compile] [--eager-too] [--unfused-too] [--channels-last] [--profile] [--threads N] [--out PATH]
Writes bench/results/speed_<device>.json unless --out is given (same report as
`cleftscore bench speed`). Imports neither dlib nor the CLI (runs on a bare GPU machine).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from cleftscore.benchmarks.speed import CONFIGS, run_speed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="t64")
    ap.add_argument("--device", default=None)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--adapt-batch", type=int, default=None)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--precision", action="append", default=None)
    ap.add_argument("--adapt-engine", action="append", default=None, help="vmap and/or loop (loop only at batch 1)")
    ap.add_argument("--compile", action="store_true", help="also time the projection with torch.compile")
    ap.add_argument("--eager-too", action="store_true", help="on CUDA, also time the projection without CUDA graphs")
    ap.add_argument(
        "--unfused-too", action="store_true", help="on CUDA, also time the projection without fused kernels"
    )
    ap.add_argument("--channels-last", action="store_true", help="also time the projection with NHWC weights")
    ap.add_argument("--profile", action="store_true", help="also list the kernels a projection step spends its time in")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    batches = (1, args.batch) if args.batch > 1 else (1,)
    ab = args.adapt_batch
    adapt_batches = None if ab is None else ((1, ab) if ab > 1 else (1,))
    report = run_speed(
        CONFIGS[args.config], device=dev, batch_sizes=batches, adapt_batch_sizes=adapt_batches,
        steps=args.steps, warmup=args.warmup, precisions=args.precision,
        adapt_engines=tuple(args.adapt_engine or ("vmap",)), compile=args.compile, eager_too=args.eager_too, unfused_too=args.unfused_too, profile=args.profile,
        channels_last=args.channels_last,
        config_name=args.config,
        progress=print,
    )  # fmt: skip
    out = args.out or Path(__file__).resolve().parent / "results" / f"speed_{dev.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    s = report["summary"]

    def fmt(v):
        return "-" if v is None else f"{v:.2f}"

    print(f"SUMMARY {args.config} on {report['environment']['device_name']} (torch {report['environment']['torch']})")
    for key in ("reference", "fast_single_photo", "fast_batched"):
        p, a = s[key]["projection"] or {}, s[key]["adaptation"] or {}
        print(f"  {key:18s} projection {fmt(p.get('ms_per_step_per_photo'))} ms/step/photo (b{p.get('batch')} "
              f"{p.get('resolved_precision')}), adaptation {fmt(a.get('ms_per_step_per_photo'))} ms/step/photo "
              f"(b{a.get('batch')} {a.get('resolved_precision')} {a.get('engine')}) -> {fmt(s[key]['s_per_photo'])} s/photo")  # fmt: skip
    for r in report["timings"]:
        if r["mode"] not in ("reference", "fast"):
            print(
                f"  {r['mode']:18s} {r['stage']} b{r['batch']} {r['resolved_precision']}: "
                + (f"{r['ms_per_step_per_photo']:.2f} ms/step/photo" if r["ms_per_step"] else f"FAILED {r['error']}")
            )
    print(f"  speed-up vs reference: single {fmt(s['speedup_single_photo'])}x, batched {fmt(s['speedup_batched'])}x")
    for key, label in (
        ("without_cuda_graphs", "without CUDA graphs"),
        ("with_compile", "with torch.compile"),
        ("with_channels_last", "with channels-last"),
    ):
        if s.get(key):
            print(
                f"  {label}: single {fmt(s[key]['s_per_photo_single'])} s/photo, "
                f"batched {fmt(s[key]['s_per_photo_batched'])} s/photo"
            )
    for c in report.get("compile") or []:
        print(
            f"  compile, batch {c['batch']}: "
            + (f"{c['compile_and_2_steps_s']:.1f} s" if not c["error"] else f"FAILED {c['error']}")
        )
    for d in report["image_difference"]:
        print(
            f"  image diff {d['resolved_precision']} vs fp32: max {d['max_abs_diff']:.4g}, mean {d['mean_abs_diff']:.3g} "
            f"(fp32 |img| max {d['fp32_image_abs_max']:.3g}, finite {d['finite']})"
        )
    prof = report.get("profile")
    if prof and "top" in prof:
        print(
            f"  profile, batch {prof['batch']} {prof['precision']}: {prof['ms_per_step_total']:.1f} ms {prof['time_kind']} time "
            f"per step in {prof['entries_per_step']:.0f} launches; top entries:"
        )
        for e in prof["top"][:12]:
            print(
                f"    {e['share'] * 100:5.1f}% {e['ms_per_step']:8.2f} ms x{e['calls_per_step']:<5.0f} {e['name'][:90]}"
            )
    elif prof:
        print(f"  profile FAILED: {prof['error']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
