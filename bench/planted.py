"""Planted-anomaly mechanism benchmark: writes bench/results/planted_<loss>_k<K>.json.

Usage: python bench/planted.py [--generator PATH] [--k 3] [--steps 300] [--adapt-steps 50]
       [--loss mse|lpips] [--vgg16 PATH] [--threads N]
Same as `cleftscore bench planted`, with the output file chosen for you.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from cleftscore.benchmarks.planted import PlantedSettings, run_planted
from cleftscore.cli.bench import default_planted_generator
from cleftscore.gan.checkpoints import load_generator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generator", type=Path, default=None)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--adapt-steps", type=int, default=50)
    ap.add_argument("--loss", choices=("mse", "lpips"), default="mse")
    ap.add_argument("--vgg16", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (this script only)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = args.generator or default_planted_generator()
    if gen is None:
        raise SystemExit("no generator: pass --generator PATH")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    loss_fn = None
    if args.loss == "lpips":
        from cleftscore.perceptual import PerceptualDistance

        loss_fn = PerceptualDistance(vgg16_weights=args.vgg16).to(device)
    G = load_generator(gen, device=device)
    settings = PlantedSettings(k=args.k, steps=args.steps, adapt_steps=args.adapt_steps, loss=args.loss, seed=args.seed)
    report = run_planted(G, settings=settings, loss_fn=loss_fn, device=device)
    report["generator"] = str(gen)
    out = args.out or Path(__file__).resolve().parent / "results" / f"planted_{args.loss}_k{args.k}_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    for name, m in report["stages"].items():
        print(f"{name:12s} rho {m['spearman_rho']:.3f}  AUROC {m['pixel_auroc_mean']:.3f}  "
              f"PSNR {m['psnr_clean_db']:.2f} dB  surviving {m['surviving_fraction_mean']:.3f}")  # fmt: skip
    print("s/image", report["seconds_per_image"], "->", out)


if __name__ == "__main__":
    main()
