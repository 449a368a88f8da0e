"""CPU micro-benchmark of the StyleGAN2 generator (batch 1, float32, random weights).

Times a forward pass (no grad) and a forward + backward pass (gradients for the weights, the ws
and the noise maps, as inversion and fine-tuning need) for the FFHQ 1024 configuration and the
256 px golden configuration, and writes ``bench/results/generator_cpu.json``.

Usage::

    python bench/generator_cpu.py [--reps-1024 2] [--reps-256 5] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from cleftscore.gan.config import FFHQ1024, GeneratorConfig
from cleftscore.gan.networks import Generator

log = logging.getLogger("bench.generator_cpu")

CONFIGS = {
    "ffhq1024": FFHQ1024,
    "g256": GeneratorConfig(img_resolution=256, channel_base=4096, channel_max=128, num_fp16_res=4, conv_clamp=256),
}


def _time_ms(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def bench_config(name: str, cfg: GeneratorConfig, *, reps: int, seed: int = 0) -> dict:
    """Time forward and forward+backward of one config; one untimed warm-up of each."""
    gen = torch.Generator().manual_seed(seed)
    G = Generator(cfg, generator=gen).eval()
    z = torch.randn(1, cfg.z_dim, generator=gen)
    with torch.no_grad():
        ws0 = G.mapping(z)

    def forward() -> None:
        with torch.no_grad():
            G.synthesis(ws0, noise_mode="const", force_fp32=True)

    def forward_backward() -> None:
        G.zero_grad(set_to_none=True)
        ws = ws0.clone().requires_grad_(True)
        noise = [
            G.synthesis.get_submodule(n).noise_const[None, None].clone().requires_grad_(True)
            for n, _ in G.synthesis.noise_layers()
        ]
        img = G.synthesis(ws, noise=noise, force_fp32=True)
        img.square().mean().backward()

    forward()
    fwd = _time_ms(forward, reps)
    forward_backward()
    fwdbwd = _time_ms(forward_backward, reps)
    res = {
        "resolution": cfg.img_resolution,
        "parameters": sum(p.numel() for p in G.parameters()),
        "reps": reps,
        "forward_ms": fwd,
        "forward_ms_median": statistics.median(fwd),
        "forward_backward_ms": fwdbwd,
        "forward_backward_ms_median": statistics.median(fwdbwd),
    }
    log.info(
        "%s: forward %.0f ms, forward+backward %.0f ms (median of %d)",
        name,
        res["forward_ms_median"],
        res["forward_backward_ms_median"],
        reps,
    )
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps-1024", type=int, default=2)
    parser.add_argument("--reps-256", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "generator_cpu.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "batch": 1,
        "dtype": "float32 (force_fp32=True)",
        "configs": {
            "ffhq1024": bench_config("ffhq1024", CONFIGS["ffhq1024"], reps=args.reps_1024),
            "g256": bench_config("g256", CONFIGS["g256"], reps=args.reps_256),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
