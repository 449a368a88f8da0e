"""Mean and spread of a generator's W space, as the official StyleGAN2 projector computes them."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["w_stats"]


@torch.no_grad()
def w_stats(
    G: torch.nn.Module,
    *,
    samples: int = 10_000,
    seed: int = 123,
    device: torch.device | str | None = None,
    chunk: int = 2_000,
) -> tuple[Tensor, float]:
    """``w_avg`` and ``w_std`` of ``samples`` mapped latents (truncation 1).

    Parameters
    ----------
    G : Generator
        A :class:`cleftscore.gan.networks.Generator`.
    samples : int
        Number of z drawn (10,000 as the official projector).
    seed : int
        Seed of the z draws. z come from ``numpy.random.RandomState(seed).randn(samples, z_dim)``,
        the official projector's source, so the statistics match NVIDIA's for the same weights.
    device : torch.device, str or None
        Where to run the mapping network (default: the device of ``G``'s parameters).
    chunk : int
        Latents mapped per forward pass (bounds memory).

    Returns
    -------
    w_avg : Tensor
        ``[w_dim]`` float32 mean of the first w of each sample, on ``device``.
    w_std : float
        ``sqrt(sum ||w - w_avg||^2 / samples)``, the official projector's scalar spread.

    Raises
    ------
    ValueError
        If ``samples`` or ``chunk`` is not positive.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if device is None:
        device = next(G.parameters()).device
    z_all = np.random.RandomState(seed).randn(samples, G.z_dim)
    ws = []
    for start in range(0, samples, chunk):
        z = torch.from_numpy(z_all[start : start + chunk]).to(device=device, dtype=torch.float32)
        ws.append(G.mapping(z, None)[:, 0, :].to(torch.float64))
    w = torch.cat(ws)
    w_avg = w.mean(dim=0)
    w_std = float(((w - w_avg).square().sum() / samples).sqrt())
    return w_avg.to(torch.float32), w_std
