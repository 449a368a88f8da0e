"""StyleGAN2 for cleftscore: the generator, checkpoint loading, inversion and adaptation.

Names load lazily (importing this package does not import torch)::

    from cleftscore.gan import load_generator, invert, InversionSettings
    G = load_generator("ffhq.pkl", device="cuda")

- :func:`load_generator` reads NVIDIA ``.pkl``, rosinality ``.pt``, ``.npz`` and
  ``.safetensors`` checkpoints without running pickle code;
- :class:`Generator` is the network (:mod:`cleftscore.gan.networks`);
- :func:`invert` with :class:`InversionSettings` is the paper's Alg. 1 (the official projector);
- :func:`adapt` with :class:`AdaptSettings` is Alg. 2 (pivotal tuning).

``cleftscore.gan.invert`` and ``cleftscore.gan.adapt`` are those functions, also after their
modules are imported; reach the modules with ``importlib.import_module("cleftscore.gan.adapt")``
or ``from cleftscore.gan.adapt import ...``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from cleftscore import lazy_names

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

__getattr__, __dir__ = lazy_names("cleftscore.gan", _LAZY)


class _Package(types.ModuleType):
    """This package, keeping ``invert`` and ``adapt`` the functions of the same-named modules.

    Importing a sub-module sets it as an attribute of its package; for these two names that
    would hide the function, so the package keeps the function instead.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("invert", "adapt") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
