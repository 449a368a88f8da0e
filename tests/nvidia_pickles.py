"""Build network pickles in the structure NVIDIA's ``torch_utils.persistence`` writes (tests only).

What a stylegan2-ada-pytorch training snapshot (and ``ffhq.pkl``) holds, as described in the
shared ``golden/README.md``: a dict with ``G``, ``D``, ``G_ema``, ``augment_pipe`` and
``training_set_kwargs``. Every network object, down to each layer, pickles as a call of
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with
``meta = dict(type='class', version=6, module_src=<networks.py text>, class_name=<bare class
name>, state=<the module's __dict__>)``. The state is what ``object.__reduce__`` gives for an
``nn.Module``: ``_parameters``, ``_buffers``, ``_modules`` and the rest of ``__dict__``, including
the ``_init_args`` / ``_init_kwargs`` the persistence decorator records, numpy scalars (NVIDIA's
activation gains are ``np.sqrt(2)``) and ``dnnlib.util.EasyDict`` kwargs. Tensors are real
``torch`` Parameters and buffers, so their storages go through PyTorch's own legacy
``torch.save`` blobs (``torch.storage._load_from_bytes``), as in NVIDIA's files.

The modules ``torch_utils.persistence``, ``dnnlib.util`` and ``training.networks`` exist only
while :func:`nvidia_modules` is active, so that ``pickle`` can name their globals; the
reconstruct function raises if anything ever calls it. No NVIDIA code is used.
"""

from __future__ import annotations

import contextlib
import copy
import pickle
import sys
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Text standing in for NVIDIA's networks.py: the class and function names a real file defines,
# and a line that would leave a trace if a loader ever executed it.
STYLEGAN2_SRC = """\
import os
os.system('touch /tmp/cleftscore-module-src-was-executed')
from torch_utils import persistence
@misc.profiled_function
def modulated_conv2d(x, weight, styles, noise=None, up=1, down=1, padding=0, demodulate=True): ...
@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module): ...
@persistence.persistent_class
class MappingNetwork(torch.nn.Module): ...
@persistence.persistent_class
class SynthesisLayer(torch.nn.Module): ...
@persistence.persistent_class
class ToRGBLayer(torch.nn.Module): ...
@persistence.persistent_class
class SynthesisBlock(torch.nn.Module): ...
@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module): ...
@persistence.persistent_class
class Generator(torch.nn.Module): ...
@persistence.persistent_class
class DiscriminatorBlock(torch.nn.Module): ...
@persistence.persistent_class
class DiscriminatorEpilogue(torch.nn.Module): ...
@persistence.persistent_class
class Discriminator(torch.nn.Module): ...
"""

STYLEGAN3_SRC = """\
import os
os.system('touch /tmp/cleftscore-module-src-was-executed')
from torch_ops import filtered_lrelu
@persistence.persistent_class
class MappingNetwork(torch.nn.Module): ...
@persistence.persistent_class
class SynthesisInput(torch.nn.Module): ...
@persistence.persistent_class
class SynthesisLayer(torch.nn.Module): ...
@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module): ...
@persistence.persistent_class
class Generator(torch.nn.Module): ...
"""

AUGMENT_SRC = """\
import os
os.system('touch /tmp/cleftscore-module-src-was-executed')
@persistence.persistent_class
class AugmentPipe(torch.nn.Module): ...
"""


@dataclass
class FakeNvidia:
    """Handles to the stand-in modules, and every call of the reconstruct function (none allowed)."""

    reconstruct: Any
    EasyDict: type
    calls: list[Any] = field(default_factory=list)


@contextlib.contextmanager
def nvidia_modules() -> Iterator[FakeNvidia]:
    """Register ``torch_utils.persistence``, ``dnnlib.util`` and ``training.*`` stand-ins."""
    fake_calls: list[Any] = []

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - must never run while loading
        fake_calls.append(meta)
        raise AssertionError("NVIDIA code was executed")

    class EasyDict(dict):
        def __getattr__(self, name):
            try:
                return self[name]
            except KeyError:
                raise AttributeError(name) from None

        def __setattr__(self, name, value):
            self[name] = value

    mods = {name: types.ModuleType(name) for name in ("torch_utils", "torch_utils.persistence", "dnnlib",
                                                       "dnnlib.util", "training", "training.networks")}  # fmt: skip
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    mods["torch_utils"].persistence = mods["torch_utils.persistence"]
    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    mods["dnnlib.util"].EasyDict = EasyDict
    mods["dnnlib"].util = mods["dnnlib.util"]
    mods["dnnlib"].EasyDict = EasyDict
    saved = {name: sys.modules.get(name) for name in mods}
    sys.modules.update(mods)
    try:
        yield FakeNvidia(_reconstruct_persistent_obj, EasyDict, fake_calls)
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


class _PersistentModule(torch.nn.Module):
    """An ``nn.Module`` that pickles as NVIDIA's persistence decorator makes its classes pickle."""

    _orig_class_name = "Module"
    _orig_module_src = STYLEGAN2_SRC
    _reconstruct: Any = None

    def __reduce__(self):
        fields = list(super().__reduce__())
        fields += [None] * max(3 - len(fields), 0)
        meta = {"type": "class", "version": 6, "module_src": self._orig_module_src,
                    "class_name": self._orig_class_name, "state": fields[2]}  # fmt: skip
        return (type(self)._reconstruct, (meta,), None) + tuple(fields[3:])


def _net_class(fake: FakeNvidia, name: str, src: str) -> type:
    return type(name, (_PersistentModule,), {"_orig_class_name": name, "_orig_module_src": src,
                                             "_reconstruct": staticmethod(fake.reconstruct),
                                             "__module__": "training.networks"})  # fmt: skip


def _layer_class_name(path: tuple[str, ...]) -> str:
    if not path:
        return "Generator"
    leaf = path[-1]
    if leaf == "mapping":
        return "MappingNetwork"
    if leaf == "synthesis":
        return "SynthesisNetwork"
    if leaf.startswith("fc") or leaf == "affine":
        return "FullyConnectedLayer"
    if leaf.startswith("b") and leaf[1:].isdigit():
        return "SynthesisBlock"
    if leaf == "torgb":
        return "ToRGBLayer"
    return "SynthesisLayer"


def read_keys(path: Path) -> list[tuple[str, str]]:
    """``(name, 'param' | 'buffer')`` in the official order, from a golden ``*_keys.txt``."""
    rows = [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return [(r[0], r[1]) for r in rows]


def build_generator(
    fake: FakeNvidia,
    state: Mapping[str, torch.Tensor],
    keys: list[tuple[str, str]],
    init_kwargs: dict[str, Any],
    *,
    half: frozenset[str] | set[str] = frozenset(),
    src: str = STYLEGAN2_SRC,
) -> torch.nn.Module:
    """A module tree like NVIDIA's ``G_ema``, holding ``state`` (tensors in ``half`` stored as fp16)."""
    classes: dict[str, type] = {}

    def make(path: tuple[str, ...]) -> torch.nn.Module:
        name = _layer_class_name(path)
        cls = classes.setdefault(name, _net_class(fake, name, src))
        m = cls()
        m._init_args = ()
        m._init_kwargs = copy.deepcopy(init_kwargs) if not path else {"name": ".".join(path)}
        m.activation = "lrelu"
        m.act_gain = np.sqrt(2)  # NVIDIA's gains are numpy float64 scalars
        return m

    root = make(())
    for attr in ("z_dim", "w_dim", "img_resolution", "img_channels"):
        setattr(root, attr, init_kwargs.get(attr))
    nodes: dict[tuple[str, ...], torch.nn.Module] = {(): root}
    for key, kind in keys:
        *parts, leaf = key.split(".")
        node = root
        for i in range(len(parts)):
            path = tuple(parts[: i + 1])
            if path not in nodes:
                nodes[path] = make(path)
                node.add_module(parts[i], nodes[path])
            node = nodes[path]
        t = state[key].detach()  # views keep their strides, as torch pickles them
        if key in half:
            t = t.half()
        if kind == "param":
            node.register_parameter(leaf, torch.nn.Parameter(t, requires_grad=False))
        else:
            node.register_buffer(leaf, t)
    return root


def build_discriminator(fake: FakeNvidia, resolution: int, *, seed: int = 0) -> torch.nn.Module:
    """A small module tree standing in for NVIDIA's ``D`` (its weights are never used)."""
    gen = torch.Generator().manual_seed(seed)
    D = _net_class(fake, "Discriminator", STYLEGAN2_SRC)()
    D._init_args, D._init_kwargs = (), {"c_dim": 0, "img_resolution": resolution, "img_channels": 3}
    block = _net_class(fake, "DiscriminatorBlock", STYLEGAN2_SRC)()
    block._init_args, block._init_kwargs = (), {}
    block.register_parameter("weight", torch.nn.Parameter(torch.randn(16, 3, 3, 3, generator=gen), requires_grad=False))
    block.register_buffer("resample_filter", torch.ones(4, 4) / 16)
    epi = _net_class(fake, "DiscriminatorEpilogue", STYLEGAN2_SRC)()
    epi._init_args, epi._init_kwargs = (), {}
    epi.register_parameter(
        "out_weight", torch.nn.Parameter(torch.randn(1, 16, generator=gen).half(), requires_grad=False)
    )
    D.add_module(f"b{resolution}", block)
    D.add_module("b4", epi)
    return D


def build_augment_pipe(fake: FakeNvidia) -> torch.nn.Module:
    """A stand-in for NVIDIA's ``AugmentPipe`` (buffers and float attributes)."""
    pipe = _net_class(fake, "AugmentPipe", AUGMENT_SRC)()
    pipe._init_args, pipe._init_kwargs = (), {"xflip": 1, "rotate90": 1, "xint": 1}
    pipe.xflip, pipe.rotate90 = 1.0, 1.0
    pipe.register_buffer("p", torch.zeros([]))
    pipe.register_buffer("Hz_geom", torch.randn(12, generator=torch.Generator().manual_seed(3)))
    return pipe


def snapshot(fake: FakeNvidia, G_ema: torch.nn.Module, G: torch.nn.Module | None = None) -> dict[str, Any]:
    """The dict NVIDIA's training loop pickles (``network-snapshot-*.pkl``); ``ffhq.pkl`` alike.

    ``G`` (the training copy) defaults to ``G_ema`` itself; pass a second tree to store both.
    """
    res = int(getattr(G_ema, "img_resolution", 0) or 32)
    return {
        "G": G_ema if G is None else G,
        "D": build_discriminator(fake, res),
        "G_ema": G_ema,
        "augment_pipe": build_augment_pipe(fake),
        "training_set_kwargs": fake.EasyDict(
            class_name="training.dataset.ImageFolderDataset",
            path="ffhq.zip",
            use_labels=False,
            max_size=70000,
            xflip=True,
            resolution=res,
        ),  # fmt: skip
    }


def init_kwargs_from_golden(fake: FakeNvidia, config: Any, *, flat_synthesis: bool = False) -> dict[str, Any]:
    """``_init_kwargs`` as NVIDIA's training loop records them for a :class:`GeneratorConfig`.

    stylegan2-ada-pytorch nests the synthesis settings under ``synthesis_kwargs``; the StyleGAN2
    generator of the stylegan3 repository takes them as top-level keyword arguments
    (``flat_synthesis=True``).
    """
    synthesis = fake.EasyDict(channel_base=config.channel_base, channel_max=config.channel_max,
                              num_fp16_res=config.num_fp16_res, conv_clamp=config.conv_clamp)  # fmt: skip
    kw: dict[str, Any] = {
        "z_dim": config.z_dim, "w_dim": config.w_dim,
        "mapping_kwargs": fake.EasyDict(num_layers=config.mapping_layers),
        "c_dim": 0, "img_resolution": config.img_resolution, "img_channels": config.img_channels,
    }  # fmt: skip
    if flat_synthesis:
        kw.update(synthesis)
        kw["fused_modconv_default"] = "inference_only"
    else:
        kw["synthesis_kwargs"] = synthesis
    return kw


def dump(obj: Any, path: Path, protocol: int = 4) -> Path:
    """Pickle ``obj`` to ``path`` (NVIDIA's snapshots use the interpreter's default protocol, 4)."""
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path
