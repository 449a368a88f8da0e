"""Spatial LPIPS as a plain function on two uint8 images, for ``metric="lpips"`` heat maps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["make_lpips_distance"]


def make_lpips_distance(
    vgg16: str | Path | None, *, device: str = "auto"
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Spatial LPIPS on two uint8 images, for ``metric="lpips"`` heat maps.

    Returns a function ``f(a, b) -> (H, W) float32`` (higher = more different). Needs the real
    VGG16 weights; raises :class:`WeightsMissingError` with instructions when they are absent.
    """
    import torch

    from cleftscore.normalize.gan import resolve_device, to_tensor
    from cleftscore.perceptual import PerceptualDistance
    from cleftscore.weights import resolve_vgg16

    dev = resolve_device(device)
    metric = PerceptualDistance(vgg16_weights=resolve_vgg16(vgg16), spatial=True).to(dev)

    def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            ta, tb = to_tensor([a], dev), to_tensor([b], dev)
            return metric(ta, tb)[0, 0].float().cpu().numpy()

    return distance
