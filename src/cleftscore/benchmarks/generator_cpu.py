"""CPU micro-benchmark of the StyleGAN2 generator (batch 1, float32, random weights).

Times a forward pass (no grad) and a forward + backward pass (gradients for the weights, the ws
and the noise maps, as inversion and fine-tuning need) of each named architecture of
:data:`cleftscore.benchmarks.speed.CONFIGS`; by default the FFHQ 1024 configuration and the
256 px golden one. ``cleftscore bench generator-cpu`` runs it and writes the report
(``bench/results/generator_cpu.json``).
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping

import torch

from cleftscore.gan.config import GeneratorConfig

__all__ = ["DEFAULT_REPS", "bench_config", "run_generator_cpu"]

logger = logging.getLogger(__name__)

#: Timed repetitions per architecture when none are given (the 1024-px one takes seconds each).
DEFAULT_REPS = {"ffhq1024": 2, "g256": 5}


def _time_ms(fn: Callable[[], None], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def bench_config(name: str, cfg: GeneratorConfig, *, reps: int, seed: int = 0) -> dict:
    """Time forward and forward+backward of one architecture; one untimed warm-up of each.

    Parameters
    ----------
    name : str
        Name used in the log line.
    cfg : GeneratorConfig
        Architecture (random weights from ``seed``).
    reps : int
        Timed repetitions of each pass.
    seed : int
        Seed of the weights and the latent.

    Returns
    -------
    dict
        ``resolution``, ``parameters``, ``reps``, the times of each repetition in ms and their
        medians (``forward_ms``, ``forward_backward_ms``, ``*_median``).
    """
    from cleftscore.gan.networks import Generator

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
    logger.info(
        "%s: forward %.0f ms, forward+backward %.0f ms (median of %d)",
        name,
        res["forward_ms_median"],
        res["forward_backward_ms_median"],
        reps,
    )
    return res


def run_generator_cpu(configs: Mapping[str, tuple[GeneratorConfig, int]], *, seed: int = 0) -> dict:
    """Time the generator on the CPU for each named architecture.

    Parameters
    ----------
    configs : mapping of str to (GeneratorConfig, int)
        Name to architecture and timed repetitions.
    seed : int
        Seed of the weights and the latent.

    Returns
    -------
    dict
        JSON-ready report: torch version, threads, CPU, and under ``configs`` one
        :func:`bench_config` result per name.

    Raises
    ------
    ValueError
        When ``configs`` is empty or a repetition count is below 1.
    """
    if not configs:
        raise ValueError("no architectures to time")
    bad = [name for name, (_, reps) in configs.items() if reps < 1]
    if bad:
        raise ValueError(f"reps must be >= 1, got { ({n: configs[n][1] for n in bad}) }")
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "batch": 1,
        "dtype": "float32 (force_fp32=True)",
        "configs": {name: bench_config(name, cfg, reps=reps, seed=seed) for name, (cfg, reps) in configs.items()},
    }
