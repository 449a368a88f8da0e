"""Read and write StyleGAN2 generator weights safely, in several formats.

Supported inputs (detected from the file's content, not only its suffix):

* NVIDIA stylegan2-ada-pytorch pickles (``ffhq.pkl``, training snapshots, and the StyleGAN2
  pickles of the stylegan3 repository). They are read with the restricted unpickler of
  :mod:`cleftscore.gan.safe_pickle`, which knows a short list of globals and replaces each by a
  harmless stand-in: nothing in the file is executed and NVIDIA's code is not needed. The
  network ``G_ema`` is used.
* rosinality/stylegan2-pytorch ``.pt`` checkpoints (``g_ema`` and ``latent_avg``), read with
  ``torch.load(weights_only=True)`` and renamed to the official keys.
* ``.npz`` archives of tensors under the official key names (the golden files' format).
* The project's own ``.safetensors`` files written by :func:`save_generator`: the tensors under the
  official key names and the :class:`~cleftscore.gan.config.GeneratorConfig` as JSON in the
  safetensors header metadata (key ``"config"``), so one file holds everything.

Every problem (malformed, truncated, other architecture, code in a pickle) is a
:class:`~cleftscore.errors.CheckpointError` with a one-line message naming the file.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import re
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cleftscore.errors import CheckpointError
from cleftscore.gan.config import GeneratorConfig
from cleftscore.gan.safe_pickle import LEGACY_TORCH_MAGIC, LazyTensor, PersistentObject, load_pickle

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import Tensor

    from cleftscore.gan.networks import Generator

__all__ = [
    "FORMATS",
    "MAX_FILE_BYTES",
    "MAX_TENSOR_BYTES",
    "check_torch_zip",
    "detect_format",
    "expected_shapes",
    "load_generator",
    "read_checkpoint",
    "save_generator",
    "validate_state",
]

log = logging.getLogger(__name__)

#: Names of the formats :func:`detect_format` reports.
FORMATS = ("nvidia-pickle", "torch", "npz", "safetensors")

_SAFETENSORS_FORMAT = "cleftscore-stylegan2-generator"
#: Largest weights file read at all (NVIDIA's ffhq.pkl, with G, D and G_ema, is 364 MB).
MAX_FILE_BYTES = 2 << 30
#: Largest total of a generator's tensors, in float32, and of an ``.npz``'s uncompressed members
#: (FFHQ 1024's G_ema: 121 MB).
MAX_TENSOR_BYTES = 1 << 30
#: Most tensors a generator file may hold (FFHQ 1024: 182).
MAX_TENSORS = 4096
# Init kwargs only StyleGAN3's generator takes (stylegan3 repository, networks_stylegan3.py).
_STYLEGAN3_KWARGS = ("magnitude_ema_beta", "conv_kernel", "use_radial_filters", "num_critical", "first_cutoff")
# Synthesis settings: nested under ``synthesis_kwargs`` by stylegan2-ada-pytorch, top-level
# keyword arguments of the stylegan3 repository's StyleGAN2 generator.
_SYNTHESIS_KWARGS = ("channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture",
                     "resample_filter", "use_noise", "activation")  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Expected keys and shapes of the official generator.


def expected_shapes(config: GeneratorConfig) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of the official generator and its shape, in the official order.

    Parameters
    ----------
    config : GeneratorConfig
        The architecture.

    Returns
    -------
    dict of str to tuple of int
        Ordered as NVIDIA's ``G_ema.state_dict()`` (synthesis first, then mapping).
    """
    shapes: dict[str, tuple[int, ...]] = {}
    w = config.w_dim
    log2 = config.img_resolution.bit_length() - 1
    for res in (2**i for i in range(2, log2 + 1)):
        p = f"synthesis.b{res}"
        out = config.channels(res)
        if res == 4:
            shapes[f"{p}.const"] = (out, 4, 4)
        shapes[f"{p}.resample_filter"] = (4, 4)
        layers = [("conv1", out, out)] if res == 4 else [("conv0", config.channels(res // 2), out), ("conv1", out, out)]
        for name, cin, cout in layers:
            shapes[f"{p}.{name}.weight"] = (cout, cin, 3, 3)
            shapes[f"{p}.{name}.noise_strength"] = ()
            shapes[f"{p}.{name}.bias"] = (cout,)
            shapes[f"{p}.{name}.resample_filter"] = (4, 4)
            shapes[f"{p}.{name}.noise_const"] = (res, res)
            shapes[f"{p}.{name}.affine.weight"] = (cin, w)
            shapes[f"{p}.{name}.affine.bias"] = (cin,)
        shapes[f"{p}.torgb.weight"] = (config.img_channels, out, 1, 1)
        shapes[f"{p}.torgb.bias"] = (config.img_channels,)
        shapes[f"{p}.torgb.affine.weight"] = (out, w)
        shapes[f"{p}.torgb.affine.bias"] = (out,)
    shapes["mapping.w_avg"] = (w,)
    for i in range(config.mapping_layers):
        shapes[f"mapping.fc{i}.weight"] = (w, config.z_dim if i == 0 else w)
        shapes[f"mapping.fc{i}.bias"] = (w,)
    return shapes


def validate_state(config: GeneratorConfig, state: Mapping[str, Tensor], *, source: str | Path = "checkpoint") -> None:
    """Check that ``state`` has exactly the official keys and shapes for ``config``.

    Raises
    ------
    CheckpointError
        Naming missing, unexpected or wrongly shaped tensors (the first few of each).
    """
    want = expected_shapes(config)
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {want[k]})"
        for k in want
        if k in state and tuple(state[k].shape) != want[k]
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensors ({_few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors ({_few(unexpected)})")
    if wrong:
        problems.append(f"{len(wrong)} wrong shapes ({_few(wrong)})")
    if problems:
        raise CheckpointError(
            f"{source}: not a StyleGAN2 generator of the expected architecture: " + "; ".join(problems)
        )


def _few(items: list[str], n: int = 3) -> str:
    more = f", ... {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


# ----------------------------------------------------------------------------------------------
# Format detection and the public readers.


def detect_format(path: str | Path) -> str:
    """Name the format of a weights file from its first bytes (one of :data:`FORMATS`).

    Raises
    ------
    CheckpointError
        When the file is missing, empty, or of no supported format.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    with path.open("rb") as f:
        head = f.read(16)
    if not head:
        raise CheckpointError(f"{path}: the file is empty")
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointError(f"{path}: damaged zip archive ({exc})") from None
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        raise CheckpointError(f"{path}: a zip archive that is neither .npz nor a PyTorch checkpoint")
    if head[:1] == b"\x80":
        return "nvidia-pickle"  # also legacy torch.save files; told apart when reading
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 2 <= n < 100_000_000:
            return "safetensors"
    raise CheckpointError(f"{path}: unknown weights format (expected a StyleGAN2 .pkl, .pt, .npz or .safetensors file)")


def read_checkpoint(path: str | Path) -> tuple[GeneratorConfig, dict[str, Tensor]]:
    """Read a generator's architecture and weights from any supported file, without running code.

    Parameters
    ----------
    path : str or Path
        An NVIDIA pickle, a rosinality ``.pt``, an ``.npz`` or a cleftscore ``.safetensors`` file.

    Returns
    -------
    config : GeneratorConfig
        From the file's stored settings (pickles, safetensors) or inferred from the shapes
        (rosinality, npz; then ``num_fp16_res=0`` and ``conv_clamp=None``).
    state : dict of str to Tensor
        Official key names in the official order, float32, checked against ``config``.

    Raises
    ------
    CheckpointError
        The file is malformed, truncated, of another architecture, or tries to run code. (For a
        file of the weights cache, :func:`cleftscore.weights.replacement_hint_for_errors` adds
        the command that replaces it.)
    """
    path = Path(path)
    fmt = detect_format(path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CheckpointError(
            f"{path}: {size / 2**30:.1f} GiB is larger than any generator file (limit {MAX_FILE_BYTES >> 30} GiB)"
        )
    try:
        if fmt == "nvidia-pickle":
            config, state = _read_pickle(path)
        elif fmt == "torch":
            config, state = _read_torch(path)
        elif fmt == "npz":
            config, state = _read_npz(path)
        else:
            config, state = _read_safetensors(path)
    except CheckpointError as exc:
        if str(exc).startswith(f"{path}:"):
            raise
        raise CheckpointError(f"{path}: {exc}") from None  # raised deep in the unpickler, without the name
    except (MemoryError, RecursionError) as exc:
        raise CheckpointError(f"{path}: malformed weights file ({type(exc).__name__})") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure means a bad file
        raise CheckpointError(
            f"{path}: malformed or truncated {fmt} file ({type(exc).__name__}: {_one_line(exc)})"
        ) from None
    _check_tensor_budget(state, path)
    state = _ordered_float32(config, state)
    validate_state(config, state, source=path)
    return config, state


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _check_tensor_budget(state: Mapping[str, Any], path: Path) -> None:
    """Refuse more tensors, or more float32 bytes, than any real generator has, before copying."""
    if len(state) > MAX_TENSORS:
        raise CheckpointError(f"{path}: {len(state)} tensors, more than any StyleGAN2 generator (limit {MAX_TENSORS})")
    total = 4 * sum(math.prod(getattr(v, "shape", ())) for v in state.values())
    if total > MAX_TENSOR_BYTES:
        raise CheckpointError(
            f"{path}: its tensors take {total / 2**20:.0f} MiB as float32, more than the {MAX_TENSOR_BYTES >> 20} MiB limit"
        )


def load_generator(path: str | Path, *, device: str | torch.device = "cpu") -> Generator:
    """Build a :class:`~cleftscore.gan.networks.Generator` from a weights file.

    Parameters
    ----------
    path : str or Path
        Any format :func:`read_checkpoint` reads.
    device : str or torch.device
        Where to put the network.

    Returns
    -------
    Generator
        In eval mode, parameters frozen (``requires_grad=False``; call ``requires_grad_(True)``
        to fine-tune), ``G.config`` set and ``mapping.w_avg`` loaded.

    Raises
    ------
    CheckpointError
        See :func:`read_checkpoint`.
    """
    from cleftscore.gan.networks import Generator

    config, state = read_checkpoint(path)
    G = Generator(config)
    try:
        G.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the generator ({first})") from None
    return G.to(device).eval().requires_grad_(False)


def save_generator(
    source: Generator | Mapping[str, Tensor], path: str | Path, *, config: GeneratorConfig | None = None
) -> Path:
    """Write a generator to the project's ``.safetensors`` format.

    Parameters
    ----------
    source : Generator or mapping of str to Tensor
        A generator (its ``config`` is used) or a state dict under the official key names.
    path : str or Path
        The output file; ``.safetensors`` is the expected suffix.
    config : GeneratorConfig, optional
        Needed when ``source`` is a state dict; must match the generator's own when given.

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    The config is stored as JSON under the header metadata key ``"config"`` (no sidecar file),
    together with ``"format": "cleftscore-stylegan2-generator"``.
    """
    import torch
    from safetensors.torch import save_file

    if isinstance(source, Mapping):
        state = dict(source)
        if config is None:
            raise ValueError("save_generator needs config= when given a state dict")
    else:
        state = source.state_dict()
        own = getattr(source, "config", None)
        if config is None:
            config = own
        if config is None:
            raise ValueError("save_generator: the generator has no .config; pass config=")
        if own is not None and own != config:
            raise ValueError(f"config= {config} differs from the generator's own config {own}")
    state = _ordered_float32(config, state)
    validate_state(config, state, source="save_generator input")
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in state.items()}
    meta = {"format": _SAFETENSORS_FORMAT, "config": json.dumps(config.to_dict(), sort_keys=True)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)
    except BaseException:  # a full disk or Ctrl-C leaves neither a half file nor a stray .tmp
        tmp.unlink(missing_ok=True)
        raise
    return path


def _ordered_float32(config: GeneratorConfig, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    import torch

    out: dict[str, Tensor] = {}
    want = expected_shapes(config)
    order = list(want) + [k for k in state if k not in want]
    for k in order:
        if k in state:
            v = state[k]
            if not isinstance(v, torch.Tensor):
                raise CheckpointError(f"entry {k!r} is a {type(v).__name__}, not a tensor")
            out[k] = v.to(torch.float32) if v.is_floating_point() else v
    return out


def _infer_config(state: Mapping[str, Tensor], source: Path) -> GeneratorConfig:
    from cleftscore.gan.networks import infer_config

    try:
        return infer_config(dict(state))
    except (KeyError, ValueError, IndexError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{source}: cannot infer a StyleGAN2 architecture from the tensors ({exc})") from None


# ----------------------------------------------------------------------------------------------
# npz and safetensors.


def _check_npz_members(path: Path) -> None:
    """Check every ``.npy`` member's declared size and header before anything is inflated.

    The zip directory's uncompressed sizes bound what decompression can produce (zipfile stops
    at the declared size), and each member's ``.npy`` header, read from its first bytes, must
    describe a numeric array that fits in it.
    """
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_TENSORS:
            raise CheckpointError(f"{path}: {len(infos)} arrays, more than any generator has (limit {MAX_TENSORS})")
        total = sum(i.file_size for i in infos)
        if total > MAX_TENSOR_BYTES:
            raise CheckpointError(
                f"{path}: its arrays inflate to {total / 2**20:.0f} MiB, more than the {MAX_TENSOR_BYTES >> 20} MiB limit"
            )
        for info in infos:
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise CheckpointError(f"{path}: {info.filename} has an unsupported .npy version {version}")
                header = f.tell()
            if dtype.hasobject or dtype.kind not in "biuf":
                raise CheckpointError(f"{path}: {info.filename} holds {dtype} data, not numbers")
            if math.prod(shape) * dtype.itemsize + header != info.file_size:
                raise CheckpointError(f"{path}: {info.filename} declares shape {shape}, which does not fit its size")


def _read_npz(path: Path) -> tuple[GeneratorConfig, dict[str, Tensor]]:
    _check_npz_members(path)
    import torch

    with np.load(path, allow_pickle=False) as data:
        state = {k: torch.from_numpy(np.array(data[k])) for k in data.files}
    return _infer_config(state, path), state


def _read_safetensors(path: Path) -> tuple[GeneratorConfig, dict[str, Tensor]]:
    from safetensors import safe_open

    state: dict[str, Tensor] = {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        for k in f.keys():
            state[k] = f.get_tensor(k)
    if "config" in meta:
        try:
            config = GeneratorConfig.from_dict(json.loads(meta["config"]))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: bad generator config in the safetensors header ({exc})") from None
    else:
        config = _infer_config(state, path)
    return config, state


# ----------------------------------------------------------------------------------------------
# rosinality/stylegan2-pytorch checkpoints (and torch.save'd official state dicts).


def check_torch_zip(path: str | Path) -> None:
    """Refuse a PyTorch zip checkpoint whose members would inflate past :data:`MAX_FILE_BYTES`.

    ``torch.load`` allocates each record at its declared size; the zip directory says those sizes
    before anything is read. Legacy (non-zip) files pass unchecked.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as zf:
        total = sum(i.file_size for i in zf.infolist())
    if total > MAX_FILE_BYTES:
        raise CheckpointError(
            f"{path}: its records inflate to {total / 2**30:.1f} GiB, more than the {MAX_FILE_BYTES >> 30} GiB limit"
        )


def _read_torch(path: Path) -> tuple[GeneratorConfig, dict[str, Tensor]]:
    import argparse

    import torch

    check_torch_zip(path)
    try:
        # rosinality's train.py also stores its argparse.Namespace; that class is inert.
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"the pickle asks for {found.group(1)}, which is not allowed" if found else "it holds more than tensors"
        raise CheckpointError(f"{path}: refused to load: {what}") from None
    if isinstance(obj, Mapping) and "g_ema" in obj:
        state = _from_rosinality(obj["g_ema"], path)
        latent = obj.get("latent_avg")
        config = _infer_config(state, path)
        if latent is not None:
            state["mapping.w_avg"] = torch.as_tensor(latent).reshape(-1).to(torch.float32)
        else:
            log.info("%s has no latent_avg; computing w_avg from 10,000 mapped z (seed 0)", path)
            state["mapping.w_avg"] = _mean_w(config, state)
        return config, state
    if isinstance(obj, Mapping) and any(str(k).startswith("synthesis.") for k in obj):
        state = dict(obj)
        return _infer_config(state, path), state
    if isinstance(obj, Mapping) and "G_ema" in obj:
        raise CheckpointError(f"{path}: torch.save'd NVIDIA networks need NVIDIA's code; use the original .pkl")
    keys = list(obj)[:4] if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(f"{path}: not a StyleGAN2 generator checkpoint (no 'g_ema'; found {keys})")


def _from_rosinality(g: Mapping[str, Tensor], path: Path) -> dict[str, Tensor]:
    """Rename a rosinality ``g_ema`` state dict to the official key names (no w_avg yet)."""
    import torch

    g = dict(g)
    if "input.input" not in g or "conv1.conv.weight" not in g:
        raise CheckpointError(f"{path}: 'g_ema' is not a rosinality StyleGAN2 generator (no input.input)")
    if any(k.startswith("convs.") and ".conv.weight" in k and g[k].dim() != 5 for k in g):
        raise CheckpointError(f"{path}: unexpected rosinality conv weight layout")
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    filt = torch.outer(f, f)
    filt = filt / filt.sum()

    out: dict[str, Tensor] = {}

    def styled(dst: str, src: str, noise: str) -> None:
        out[f"{dst}.weight"] = g[f"{src}.conv.weight"].squeeze(0)
        out[f"{dst}.noise_strength"] = g[f"{src}.noise.weight"].reshape(())
        out[f"{dst}.bias"] = g[f"{src}.activate.bias"]
        out[f"{dst}.resample_filter"] = filt.clone()
        out[f"{dst}.noise_const"] = g[f"noises.{noise}"].reshape(g[f"noises.{noise}"].shape[-2:])
        out[f"{dst}.affine.weight"] = g[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = g[f"{src}.conv.modulation.bias"]

    def torgb(dst: str, src: str) -> None:
        out[f"{dst}.weight"] = g[f"{src}.conv.weight"].squeeze(0)
        out[f"{dst}.bias"] = g[f"{src}.bias"].reshape(-1)
        out[f"{dst}.affine.weight"] = g[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = g[f"{src}.conv.modulation.bias"]

    try:
        out["synthesis.b4.const"] = g["input.input"].squeeze(0)
        out["synthesis.b4.resample_filter"] = filt.clone()
        styled("synthesis.b4.conv1", "conv1", "noise_0")
        torgb("synthesis.b4.torgb", "to_rgb1")
        i = 0
        while f"convs.{2 * i}.conv.weight" in g:
            res = 8 * 2**i
            p = f"synthesis.b{res}"
            out[f"{p}.resample_filter"] = filt.clone()
            styled(f"{p}.conv0", f"convs.{2 * i}", f"noise_{2 * i + 1}")
            styled(f"{p}.conv1", f"convs.{2 * i + 1}", f"noise_{2 * i + 2}")
            torgb(f"{p}.torgb", f"to_rgbs.{i}")
            i += 1
        j = 1
        while f"style.{j}.weight" in g:
            out[f"mapping.fc{j - 1}.weight"] = g[f"style.{j}.weight"]
            out[f"mapping.fc{j - 1}.bias"] = g[f"style.{j}.bias"]
            j += 1
    except KeyError as exc:
        raise CheckpointError(f"{path}: rosinality generator lacks tensor {exc.args[0]!r}") from None
    used_prefixes = ("input.", "conv1.", "to_rgb1.", "convs.", "to_rgbs.", "style.", "noises.")
    stray = [k for k in g if not k.startswith(used_prefixes)]
    if stray:
        raise CheckpointError(f"{path}: rosinality generator has unknown tensors ({_few(stray)})")
    return out


def _mean_w(config: GeneratorConfig, state: Mapping[str, Tensor], *, n: int = 10_000, seed: int = 0) -> Tensor:
    """Mean of the mapping network's output over ``n`` standard-normal z (the official recipe)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([n, config.z_dim], generator=gen)
    x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
    lr = config.mapping_lr_mul
    for i in range(config.mapping_layers):
        wt = state[f"mapping.fc{i}.weight"].float()
        b = state[f"mapping.fc{i}.bias"].float()
        x = torch.nn.functional.linear(x, wt * (lr / math.sqrt(wt.shape[1])), b * lr)
        x = torch.nn.functional.leaky_relu(x, 0.2) * math.sqrt(2)
    return x.mean(dim=0)


# ----------------------------------------------------------------------------------------------
# NVIDIA pickles: the network object the restricted unpickler (safe_pickle) rebuilt, read.


def _read_pickle(path: Path) -> tuple[GeneratorConfig, dict[str, Tensor]]:
    top = load_pickle(path)
    if top == LEGACY_TORCH_MAGIC:
        return _read_torch(path)
    if isinstance(top, dict) and "G_ema" in top:
        net = top["G_ema"]
    elif isinstance(top, PersistentObject):
        net = top
    else:
        what = sorted(map(str, top))[:5] if isinstance(top, dict) else type(top).__name__
        raise CheckpointError(f"{path}: no 'G_ema' network in the pickle (found {what})")
    if not isinstance(net, PersistentObject):
        raise CheckpointError(f"{path}: 'G_ema' is not an NVIDIA network object")
    _check_generator_class(net, path)
    config = _config_from_init_kwargs(net.state, path)
    lazy: dict[str, LazyTensor] = {}
    _walk_module(net, "", lazy, path)
    if any(k.startswith("synthesis.input.") or re.match(r"synthesis\.L\d+_", k) for k in lazy):
        raise CheckpointError(f"{path}: a StyleGAN3 generator (its tensors); only StyleGAN2 generators are supported")
    # Everything is checked on sizes alone before torch is imported or a byte is copied.
    _check_tensor_budget(lazy, path)
    validate_state(config, lazy, source=path)
    return config, {k: v.materialize() for k, v in lazy.items()}


def _check_generator_class(net: PersistentObject, path: Path) -> None:
    """Refuse, by name, networks that are not NVIDIA's StyleGAN2 ``Generator``."""
    cls = net.class_name
    if cls != "Generator":
        raise CheckpointError(f"{path}: 'G_ema' is a {cls} network, not a StyleGAN2 generator")
    kw = net.state.get("_init_kwargs") if isinstance(net.state, Mapping) else None
    kw = dict(kw) if isinstance(kw, Mapping) else {}
    family = net.source_family
    if family == "stylegan3" or any(k in kw for k in _STYLEGAN3_KWARGS):
        radial = kw.get("conv_kernel") == 1 or bool(kw.get("use_radial_filters"))
        raise CheckpointError(
            f"{path}: a StyleGAN3{'-R' if radial else '-T'} generator; only StyleGAN2 generators are supported "
            "(use stylegan2-ada-pytorch's ffhq.pkl)"
        )
    if family == "unknown":
        raise CheckpointError(
            f"{path}: 'G_ema' is a Generator whose stored networks.py is neither StyleGAN2's nor StyleGAN3's; "
            "only StyleGAN2 generators are supported"
        )


def _walk_module(obj: Any, prefix: str, out: dict[str, LazyTensor], path: Path, depth: int = 0) -> None:
    if depth > 32:
        raise CheckpointError(f"{path}: network nesting too deep")
    st = getattr(obj, "state", None)
    if not isinstance(st, dict):
        raise CheckpointError(f"{path}: module {prefix or 'G_ema'} has no state")
    skip = st.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        items = st.get(group) or {}
        if not isinstance(items, Mapping):
            raise CheckpointError(f"{path}: module {prefix or 'G_ema'} has a malformed {group}")
        for name, value in items.items():
            if value is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(value, LazyTensor):
                raise CheckpointError(f"{path}: {prefix}{name} is a {type(value).__name__}, not a tensor")
            out[f"{prefix}{name}"] = value
    children = st.get("_modules") or {}
    if not isinstance(children, Mapping):
        raise CheckpointError(f"{path}: module {prefix or 'G_ema'} has malformed submodules")
    for name, child in children.items():
        if child is not None:
            _walk_module(child, f"{prefix}{name}.", out, path, depth + 1)


def _config_from_init_kwargs(st: Mapping[str, Any], path: Path) -> GeneratorConfig:
    kw = dict(st.get("_init_kwargs") or {})
    args = tuple(st.get("_init_args") or ())
    for name, value in zip(("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"), args, strict=False):
        kw.setdefault(name, value)
    try:
        c_dim = int(kw.get("c_dim", 0))
        if c_dim > 0:
            raise CheckpointError(
                f"{path}: a conditional generator (c_dim={c_dim}); only unconditional generators are supported"
            )
        mk = dict(kw.get("mapping_kwargs") or {})
        sk = dict(kw.get("synthesis_kwargs") or {})
        for name in _SYNTHESIS_KWARGS:
            if name in kw:
                sk.setdefault(name, kw[name])
        arch = sk.get("architecture", "skip")
        if arch != "skip":
            raise CheckpointError(f"{path}: synthesis architecture {arch!r}; only 'skip' (config F) is supported")
        if sk.get("activation", "lrelu") != "lrelu":
            raise CheckpointError(f"{path}: synthesis activation {sk['activation']!r} is not supported")
        if not sk.get("use_noise", True):
            raise CheckpointError(f"{path}: a generator without noise inputs is not supported")
        filt = sk.get("resample_filter")
        if filt is not None and [float(v) for v in filt] != [1.0, 3.0, 3.0, 1.0]:
            raise CheckpointError(f"{path}: resample filter {list(filt)} is not supported (only [1, 3, 3, 1])")
        w_dim = int(kw["w_dim"])
        for name in ("layer_features", "embed_features"):
            if mk.get(name) not in (None, w_dim) and not (name == "embed_features" and c_dim == 0):
                raise CheckpointError(f"{path}: mapping {name}={mk[name]} is not supported")
        if mk.get("activation", "lrelu") != "lrelu":
            raise CheckpointError(f"{path}: mapping activation {mk['activation']!r} is not supported")
        clamp = sk.get("conv_clamp")
        return GeneratorConfig(
            z_dim=int(kw["z_dim"]),
            w_dim=w_dim,
            img_resolution=int(kw["img_resolution"]),
            img_channels=int(kw.get("img_channels", 3)),
            mapping_layers=int(mk.get("num_layers", 8)),
            mapping_lr_mul=float(mk.get("lr_multiplier", 0.01)),
            w_avg_beta=float(mk.get("w_avg_beta", 0.995)),
            channel_base=int(sk.get("channel_base", 32768)),
            channel_max=int(sk.get("channel_max", 512)),
            num_fp16_res=int(sk.get("num_fp16_res", 0)),
            conv_clamp=None if clamp is None else float(clamp),
        )
    except CheckpointError:
        raise
    except KeyError as exc:
        raise CheckpointError(f"{path}: the generator's stored init kwargs lack {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad generator init kwargs ({exc})") from None
