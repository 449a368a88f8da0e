"""StyleGAN2 for cleftscore: the generator, checkpoint loading, inversion and adaptation.

Names load lazily (importing this package does not import torch)::

    from cleftscore.gan import load_generator, invert, InversionSettings
    G = load_generator("ffhq.pkl", device="cuda")

- :func:`load_generator` reads NVIDIA ``.pkl``, rosinality ``.pt``, ``.npz`` and
  ``.safetensors`` checkpoints without running pickle code;
- :class:`Generator` is the network (:mod:`cleftscore.gan.networks`);
- :func:`invert` with :class:`InversionSettings` is the paper's Alg. 1 (the official projector);
- :func:`adapt` with :class:`AdaptSettings` is Alg. 2 (pivotal tuning).
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "load_generator": "cleftscore.gan.checkpoints",
    "Generator": "cleftscore.gan.networks",
    "GeneratorConfig": "cleftscore.gan.config",
    "invert": "cleftscore.gan.invert",
    "InversionSettings": "cleftscore.gan.invert",
    "InversionResult": "cleftscore.gan.invert",
    "adapt": "cleftscore.gan.adapt",
    "AdaptSettings": "cleftscore.gan.adapt",
    "AdaptResult": "cleftscore.gan.adapt",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cleftscore.gan' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
