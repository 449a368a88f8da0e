"""Cost model of one projection step: kernels, FLOPs and bytes per operator, and a roofline floor.

One projection step of the library's fast path (synthesis with the precision and modulated
convolution :func:`cleftscore.gan.invert.invert` picks on CUDA, LPIPS to fixed target features,
noise regulariser, backward to w and the noise maps) runs on PyTorch's ``meta`` device, so the
1024-px generator at any batch size costs nothing to "run" on a CPU. Every ATen operator that
launches a kernel is recorded with its FLOPs (``torch.utils.flop_counter``'s formulas) and the
bytes it reads and writes; with a GPU's peak rates, a roofline bounds each kernel's time from
below. :func:`inductor_bytes` instead compiles the same step with ``torch.compile`` (on the CPU,
for real, at one photo) and reads the bytes Inductor's fused kernels move.

It answers, without a GPU: where must a step's time go, how far is a measured time from that
floor, and what would a change (a fused kernel, another precision) move. It is a model, not a
measurement: real kernels reach a fraction of the peak rates (the ``calibration`` in the
benchmark's JSON compares the floor with a measured step).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from cleftscore.gan.config import GeneratorConfig

__all__ = [
    "DeviceModel",
    "DEVICES",
    "calibration",
    "projection_step_ops",
    "run_step_cost",
    "summarize",
    "inductor_bytes",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceModel:
    """Peak rates of a GPU (dense, no sparsity) and the least time a kernel takes in a CUDA graph."""

    name: str
    hbm_bytes_per_s: float
    half_flops: float  # float16 / bfloat16 tensor cores
    tf32_flops: float  # float32 convolutions (cuDNN allows TF32 by default)
    kernel_floor_s: float


#: Data-sheet peaks of the GPUs the project is timed on (SXM parts).
DEVICES = {
    "h100": DeviceModel("NVIDIA H100 SXM", 3.35e12, 989e12, 494e12, 2e-6),
    "h200": DeviceModel("NVIDIA H200", 4.8e12, 989e12, 494e12, 2e-6),
}

_MATMUL_OPS = frozenset({"convolution", "_convolution", "convolution_backward", "mm", "addmm", "bmm", "baddbmm"})
_NO_KERNEL = frozenset({"detach", "alias", "lift_fresh", "_unsafe_view"})


def _footprint(t: Tensor) -> int:
    """Bytes a kernel touches for ``t``: broadcast (stride-0) dimensions count once."""
    n = 1
    for size, stride in zip(t.shape, t.stride(), strict=True):
        if stride != 0:
            n *= size
    return n * t.element_size()


class _Recorder(TorchDispatchMode):
    """Records every kernel-launching ATen call: operator, FLOPs, bytes, half precision, phase."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[dict] = []
        self.phase = "forward"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func.is_view or func.overloadpacket.__name__ in _NO_KERNEL:
            return out
        ins = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, Tensor)]
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, Tensor)]
        flops = 0
        if func.overloadpacket in flop_registry:
            flops = int(flop_registry[func.overloadpacket](*args, **kwargs, out_val=out))
        dtypes = {t.dtype for t in ins + outs if t.is_floating_point()}
        self.ops.append(
            {
                "op": func.overloadpacket.__name__,
                "flops": flops,
                "bytes": sum(map(_footprint, ins)) + sum(map(_footprint, outs)),
                "half": bool(dtypes & {torch.float16, torch.bfloat16}),
                "phase": self.phase,
            }
        )
        return out


@dataclass
class _Step:
    """Everything one projection step needs, on one device."""

    run: object  # callable: (w, stacks) -> per-image loss [N]
    w: Tensor
    stacks: list[Tensor]


def _projection_step(config: GeneratorConfig, batch: int, precision: str, device: torch.device) -> _Step:
    """The library's projection loss for a random generator and random targets on ``device``."""
    from cleftscore.gan.invert import (
        InversionSettings,
        modconv_fusion,
        projection_loss,
        resolve_precision,
        stack_noises,
    )
    from cleftscore.gan.networks import Generator
    from cleftscore.perceptual import PerceptualDistance

    gen = torch.Generator().manual_seed(0)
    with torch.device(device):
        G = Generator(config)
    G.eval().requires_grad_(False)
    loss_fn = PerceptualDistance(vgg16_weights=None, random_trunk=True, generator=gen).to(device)
    # The choices invert() makes on CUDA for this precision.
    force_fp32, amp_dtype = resolve_precision(precision, torch.device("cuda"))
    if amp_dtype is not None:
        raise ValueError("autocast (bf16) has no meta/CPU model here; use precision 'fp16' or 'fp32'")
    fused = modconv_fusion(force_fp32, amp_dtype)
    r = config.img_resolution
    targets = torch.rand((batch, 3, r, r), generator=gen).to(device) * 2 - 1
    with torch.no_grad():
        target_features = [f.detach() for f in loss_fn.features(targets)]
    layers = G.synthesis.noise_layers()
    maps = [torch.randn((batch, 1, res, res), generator=gen).to(device) for _, res in layers]
    stacks, slots = stack_noises(maps, [res for _, res in layers])
    stacks = [t.requires_grad_(True) for t in stacks]
    w = G.mapping.w_avg.reshape(1, -1).expand(batch, -1).clone().requires_grad_(True)

    settings = InversionSettings(precision=precision)

    def run(w_in: Tensor, stacks: list[Tensor]) -> Tensor:
        return projection_loss(
            w_in, stacks, synthesis=G.synthesis, num_ws=G.num_ws, slots=slots, targets=targets, loss="lpips",
            loss_fn=loss_fn, target_features=target_features, regularize_noise_weight=settings.regularize_noise_weight,
            force_fp32=force_fp32, fused_modconv=fused, amp_dtype=None,
        )  # fmt: skip

    return _Step(run=run, w=w, stacks=stacks)


def projection_step_ops(config: GeneratorConfig, batch: int, precision: str = "fp16") -> list[dict]:
    """Kernels of one projection step (forward, backward, optimiser), traced on the meta device.

    Parameters
    ----------
    config : GeneratorConfig
        Architecture (random weights; only shapes matter).
    batch : int
        Photos per step.
    precision : {"fp16", "fp32", "auto"}
        As :class:`cleftscore.gan.invert.InversionSettings` resolves it on CUDA.

    Returns
    -------
    list of dict
        One entry per kernel: ``op``, ``flops``, ``bytes``, ``half``, ``phase``
        (``"forward"``, ``"backward"`` or ``"optimizer"``).
    """
    step = _projection_step(config, batch, precision, torch.device("meta"))
    rec = _Recorder()
    with rec:
        loss = step.run(step.w, step.stacks)
        rec.phase = "backward"
        torch.autograd.grad(loss.sum(), [step.w, *step.stacks])
    # Fused Adam (reads p, g, m, v; writes p, m, v) and the renormalisation of the noise maps
    # (mean, variance, two in-place passes) have no meta kernels: modelled as passes over memory.
    noise_numel = sum(t.numel() for t in step.stacks)
    numel = step.w.numel() + noise_numel
    for name, nbytes in (
        ("_fused_adam (modelled)", 7 * 4 * numel),
        ("noise renormalisation (modelled)", 6 * 4 * noise_numel),
    ):
        rec.ops.append({"op": name, "flops": 0, "bytes": nbytes, "half": False, "phase": "optimizer"})
    return rec.ops


def _kernel_floor(op: dict, device: DeviceModel) -> float:
    peak = device.half_flops if op["half"] else device.tf32_flops
    return max(op["flops"] / peak, op["bytes"] / device.hbm_bytes_per_s, device.kernel_floor_s)


def summarize(ops: list[dict], device: DeviceModel, *, batch: int, top: int = 12) -> dict:
    """Totals, the roofline floor of the step, and the operators holding most of it.

    The floor is the sum over kernels of the larger of (FLOPs / peak rate) and (bytes / memory
    bandwidth), at least ``device.kernel_floor_s`` each: no kernel overlaps another, none beats
    the data sheet.
    """
    phases = ("forward", "backward", "optimizer")
    groups: dict[str, dict] = defaultdict(lambda: {"calls": 0, "gflop": 0.0, "gbytes": 0.0, "floor_ms": 0.0})
    for op in ops:
        g = groups[op["op"]]
        g["calls"] += 1
        g["gflop"] += op["flops"] / 1e9
        g["gbytes"] += op["bytes"] / 1e9
        g["floor_ms"] += 1e3 * _kernel_floor(op, device)
    floor_ms = sum(g["floor_ms"] for g in groups.values())
    matmul_ms = sum(1e3 * _kernel_floor(op, device) for op in ops if op["op"] in _MATMUL_OPS)
    ranked = sorted(groups.items(), key=lambda kv: -kv[1]["floor_ms"])[:top]
    return {
        "batch": batch,
        "kernels": len(ops),
        "kernels_by_phase": {ph: sum(op["phase"] == ph for op in ops) for ph in phases},
        "gflop": sum(op["flops"] for op in ops) / 1e9,
        "gbytes": sum(op["bytes"] for op in ops) / 1e9,
        "gbytes_per_photo_by_phase": {
            ph: sum(op["bytes"] for op in ops if op["phase"] == ph) / 1e9 / batch for ph in phases
        },
        "floor_ms": floor_ms,
        "floor_ms_convolutions_and_matmuls": matmul_ms,
        "floor_ms_other_kernels": floor_ms - matmul_ms,
        "floor_ms_per_photo": floor_ms / batch,
        "top_operators": [
            {"op": name, **{k: round(v, 4) for k, v in g.items()}, "share": round(g["floor_ms"] / floor_ms, 4)}
            for name, g in ranked
        ],
    }


def inductor_bytes(config: GeneratorConfig, *, batch: int = 1, precision: str = "fp16") -> dict:
    """Bytes and kernels of the same step after ``torch.compile`` (Inductor, CPU backend).

    The step is compiled and run once for real on the CPU (minutes for the 1024-px generator);
    the bytes are Inductor's own count over its scheduled kernels, fused ones and library calls
    (convolutions) alike. The CPU backend fuses like the GPU one at the graph level, so the
    count stands for what a compiled step moves on a GPU.

    Returns
    -------
    dict
        ``gbytes_per_photo_by_phase`` (forward, backward), ``kernels_by_phase``, ``compile_and_run_s``.
    """
    import torch._inductor.metrics as metrics
    from torch._logging import set_logs

    step = _projection_step(config, batch, precision, torch.device("cpu"))
    # Inductor counts bytes only while its metrics log is on.
    set_logs(inductor_metrics=True)
    log = logging.getLogger("torch._inductor.compile_fx.__inductor_metrics")
    drop = logging.Filter("nothing passes this")  # the count, without its very long log line
    log.addFilter(drop)
    try:
        torch._dynamo.reset()
        metrics.reset()
        t0 = time.perf_counter()
        loss = torch.compile(step.run)(step.w, step.stacks)
        fwd_bytes, fwd_kernels = metrics.num_bytes_accessed, metrics.generated_kernel_count
        torch.autograd.grad(loss.sum(), [step.w, *step.stacks])
        elapsed = time.perf_counter() - t0
        bwd_bytes = metrics.num_bytes_accessed - fwd_bytes
        bwd_kernels = metrics.generated_kernel_count - fwd_kernels
    finally:
        set_logs()
        log.removeFilter(drop)
        torch._dynamo.reset()
    return {
        "batch": batch,
        "precision": precision,
        "gbytes_per_photo_by_phase": {"forward": fwd_bytes / 1e9 / batch, "backward": bwd_bytes / 1e9 / batch},
        "generated_kernels_by_phase": {"forward": fwd_kernels, "backward": bwd_kernels},
        "compile_and_run_s": elapsed,
    }


def device_dict(device: DeviceModel) -> dict:
    """JSON form of a device model."""
    return dataclasses.asdict(device)


def calibration(speed: dict, report: dict, *, source: str) -> list[dict]:
    """Measured fast-path projection steps of a speed report next to this model's floor.

    Parameters
    ----------
    speed : dict
        A report of :func:`cleftscore.benchmarks.speed.run_speed` measured on a GPU.
    report : dict
        A report of :func:`run_step_cost` (its batches and precision are matched).
    source : str
        Name recorded with each row (the speed report's file name).

    Returns
    -------
    list of dict
        One row per matching timing: ``mode``, ``step_mode``, ``batch``, ``device``,
        ``measured_ms``, ``floor_ms`` and ``floor_over_measured``; empty when the GPU is none
        of :data:`DEVICES`.
    """
    name = speed["environment"].get("device_name", "")
    model = next((k for k, d in DEVICES.items() if k.upper() in name.upper().replace(" ", "")), None)
    rows = []
    for t in speed["timings"]:
        b = str(t["batch"])
        if t["stage"] != "projection" or t["mode"] == "reference" or b not in report["batches"] or model is None:
            continue
        if t["resolved_precision"] != report["precision"]:
            continue
        floor = report["batches"][b]["floor_ms"][model]
        rows.append({"source": source, "mode": t["mode"], "step_mode": t.get("step_mode"), "batch": t["batch"],
                     "device": name, "measured_ms": t["ms_per_step"], "floor_ms": floor,
                     "floor_over_measured": floor / t["ms_per_step"]})  # fmt: skip
    return rows


def _batch_entry(config: GeneratorConfig, batch: int, precision: str, models: Sequence[str]) -> dict:
    """One batch size of the report: totals of the step and the floor per GPU model."""
    ops = projection_step_ops(config, batch, precision)
    per_model = {m: summarize(ops, DEVICES[m], batch=batch) for m in models}
    first = per_model[models[0]]
    entry = {
        k: first[k] for k in ("batch", "kernels", "kernels_by_phase", "gflop", "gbytes", "gbytes_per_photo_by_phase")
    }
    entry["floor_ms"] = {m: s["floor_ms"] for m, s in per_model.items()}
    entry["floor_ms_per_photo"] = {m: s["floor_ms_per_photo"] for m, s in per_model.items()}
    entry["floor_s_per_photo_2000_steps"] = {m: s["floor_ms_per_photo"] * 2 for m, s in per_model.items()}
    entry["floor_ms_convolutions_and_matmuls"] = {
        m: s["floor_ms_convolutions_and_matmuls"] for m, s in per_model.items()
    }
    entry["top_operators"] = {m: s["top_operators"] for m, s in per_model.items()}
    return entry


def run_step_cost(
    config: GeneratorConfig,
    *,
    config_name: str | None = None,
    batches: Sequence[int] = (1, 16),
    precision: str = "fp16",
    device_models: Sequence[str] = ("h100", "h200"),
    inductor: bool = False,
    calibrate: Mapping[str, dict] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Model one projection step at each batch size: kernels, GFLOP, GB moved and the roofline floor.

    Parameters
    ----------
    config : GeneratorConfig
        Architecture traced (on the meta device: any size costs nothing).
    config_name : str, optional
        Name recorded in the report.
    batches : sequence of int
        Photos per step.
    precision : {"fp16", "fp32"}
        Precision of the traced step.
    device_models : sequence of str
        Keys of :data:`DEVICES` whose floors are reported.
    inductor : bool
        Also compile the step with ``torch.compile`` on the CPU at one photo (minutes at
        1024 px) and record the bytes its fused kernels move (:func:`inductor_bytes`).
    calibrate : mapping of str to dict, optional
        Speed reports measured on a GPU, by source name: :func:`calibration` rows are added.
    progress : callable, optional
        Called with a line of text per batch size and per calibration row.

    Returns
    -------
    dict
        JSON-ready report: ``batches`` (per batch size, as a string: kernels, GFLOP, GB moved
        per photo by phase, floor per GPU model, top operators), ``inductor`` when asked for,
        ``calibration``.

    Raises
    ------
    ValueError
        On an unknown device model, an empty batch list or a batch size below 1.
    """
    models = list(device_models)
    unknown = [m for m in models if m not in DEVICES]
    if not models or unknown:
        raise ValueError(f"device_models must be among {sorted(DEVICES)}, got {models}")
    if not batches or min(batches) < 1:
        raise ValueError(f"batches must be >= 1, got {list(batches)}")
    say = progress or (lambda line: logger.info("%s", line))
    report = {
        "benchmark": "step_cost",
        "what": "modelled lower bound of one projection step (meta-device trace, roofline), not a measurement",
        "config_name": config_name,
        "precision": precision,
        "device_models": {m: device_dict(DEVICES[m]) for m in models},
        "torch": torch.__version__,
        "s_per_photo_formula": "floor_ms_per_photo x 2000 projection steps / 1000",
        "batches": {},
    }
    for b in batches:
        entry = report["batches"][str(b)] = _batch_entry(config, b, precision, models)
        gb = entry["gbytes_per_photo_by_phase"]
        say(f"batch {b}: {entry['kernels']} kernels, {entry['gflop'] / b:.0f} GFLOP and "
            f"{sum(gb.values()):.1f} GB per photo (forward {gb['forward']:.1f}, backward {gb['backward']:.1f}); floor "
            + ", ".join(f"{m} {entry['floor_ms'][m]:.1f} ms ({entry['floor_ms_per_photo'][m]:.2f} ms/photo)" for m in models))  # fmt: skip
    if inductor:
        ind = inductor_bytes(config, batch=1, precision=precision)
        eager = projection_step_ops(config, 1, precision)
        # the same step as the library runs it on CUDA (fused Triton kernels), traced on meta
        ind["library_gbytes_per_photo_by_phase"] = {
            ph: sum(op["bytes"] for op in eager if op["phase"] == ph) / 1e9 for ph in ("forward", "backward")
        }
        report["inductor"] = ind
        say(f"torch.compile (Inductor, CPU): {ind['gbytes_per_photo_by_phase']} GB per photo "
            f"vs the library's CUDA path {ind['library_gbytes_per_photo_by_phase']}; {ind['compile_and_run_s']:.0f} s")  # fmt: skip
    report["calibration"] = [
        row for src, speed in (calibrate or {}).items() for row in calibration(speed, report, source=src)
    ]
    for row in report["calibration"]:
        say(f"calibration: {row['mode']} batch {row['batch']} on {row['device']}: measured {row['measured_ms']:.1f} ms, "
            f"floor {row['floor_ms']:.1f} ms ({100 * row['floor_over_measured']:.0f} %)")  # fmt: skip
    return report
