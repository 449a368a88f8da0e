"""Planted benchmark of the adaptation-dynamics indices (how many steps until the defect returns).

Usage: python bench/dynamics.py [--generator PATH] [--k 3] [--steps 300] [--dynamics-steps 300]
       [--out bench/results/dynamics_planted_g64_cpu.json]

Defaults to the shared golden g64 generator (``../shared/golden``). See
:mod:`cleftscore.benchmarks.dynamics` for what is measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from cleftscore.benchmarks.dynamics import DynamicsBenchSettings, run_dynamics
from cleftscore.benchmarks.planted import PlantedSettings
from cleftscore.gan.checkpoints import load_generator

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generator", type=Path, default=ROOT.parent / "shared" / "golden" / "g64_state_dict.npz")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300, help="inversion steps")
    ap.add_argument("--adapt-steps", type=int, default=50, help="the normalized image's adaptation steps")
    ap.add_argument("--dynamics-steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dynamics_planted_g64_cpu.json")
    args = ap.parse_args()
    if not args.generator.is_file():
        sys.exit(f"{args.generator}: no such file (pass --generator)")
    G = load_generator(args.generator)
    settings = DynamicsBenchSettings(
        planted=PlantedSettings(k=args.k, steps=args.steps, adapt_steps=args.adapt_steps, seed=args.seed),
        dynamics_steps=args.dynamics_steps,
    )
    last = [0.0]

    def progress(stage: str, step: int, total: int) -> None:
        if time.monotonic() - last[0] > 15 or step == total:
            last[0] = time.monotonic()
            print(f"{stage} {step}/{total}", file=sys.stderr, flush=True)

    report = run_dynamics(G, settings=settings, device="cpu", progress=progress)
    report["generator"] = str(args.generator.name)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(args.out)
    print(json.dumps({k: report[k] for k in ("best_fraction", "curve_auc")}, indent=1))
    print({f: v["spearman_rho_step"] for f, v in report["by_fraction"].items()})


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
