"""Speed benchmark of the normalization step: projection and adaptation steps per second.

Times, in one run on one device, a *reference mode* that works the way NVIDIA's projector (and
the pivotal-tuning code) does -- float32, one photo at a time, a host synchronisation after
every step for the progress line (``float(loss)``), PyTorch's default Adam -- and our *fast
path*: the library's :func:`cleftscore.gan.invert.invert` and :func:`cleftscore.gan.adapt.adapt`
themselves, batched, at reduced precision, with fused/foreach Adam, no host sync inside a step,
and on CUDA the steps replayed as CUDA graphs. Optional rows time the fast projection without
graphs, compiled, or channels-last, and :func:`profile_projection` lists where a step's time
goes. Fast-path steps are timed with CUDA events recorded from the progress callback, after the
warm-up and the graph capture; the CPU uses wall-clock time.

The generator has random weights (the architecture is what costs time) and LPIPS a random VGG16
trunk (same cost as the real one). The result is a plain JSON-serialisable dict; see
:func:`run_speed`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from cleftscore.gan.config import FFHQ1024, GeneratorConfig
from cleftscore.gan.steps import WARMUP_STEPS

__all__ = ["CONFIGS", "StepTiming", "run_speed", "profile_projection", "PROJECTION_STEPS", "ADAPTATION_STEPS"]

logger = logging.getLogger(__name__)

#: Steps of the paper's setting, used for the seconds-per-photo figures.
PROJECTION_STEPS = 2000
ADAPTATION_STEPS = 50

#: Named generator architectures: the real FFHQ 1024 one and two small ones for CPUs.
CONFIGS: dict[str, GeneratorConfig] = {
    "ffhq1024": FFHQ1024,
    "g256": GeneratorConfig(
        img_resolution=256, z_dim=512, w_dim=512, mapping_layers=8,
        channel_base=4096, channel_max=128, num_fp16_res=4, conv_clamp=256,
    ),
    "t64": GeneratorConfig(
        img_resolution=64, z_dim=64, w_dim=64, mapping_layers=2,
        channel_base=1024, channel_max=64, num_fp16_res=2, conv_clamp=256,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class StepTiming:
    """Timing of one benchmarked configuration.

    Attributes
    ----------
    stage : {"projection", "adaptation"}
        What was timed.
    mode : {"reference", "fast"}
        Official way of working, or the library's fast path.
    batch : int
        Photos per step.
    precision : str
        Precision setting (``"fp32"``, ``"fp16"``, ``"bf16"``, ``"auto"``).
    resolved_precision : str
        What ``precision`` means on this device.
    engine : str
        Adaptation engine (``"vmap"``, ``"loop"``); ``"-"`` for projection.
    ms_per_step : float or None
        Mean wall time of one step of the whole batch (None when the run failed).
    ms_per_step_per_photo : float or None
        ``ms_per_step / batch``.
    peak_memory_mib : float or None
        ``torch.cuda.max_memory_allocated`` during the run (CUDA), or the process's peak
        resident set size so far (CPU; monotone over the whole process, so only an upper bound).
    steps_timed : int
        Steps inside the timed region (after the warm-up steps).
    error : str or None
        Why the run failed (e.g. out of memory), else None.
    final_loss : float or None
        Mean per-photo loss of the last step (a sanity check that modes optimise alike).
    step_mode : str or None
        For the library's fast path: how its steps ran after the warm-up (``"eager"`` or
        ``"cuda_graph"``; a ``"cuda_graph"`` row that says ``"eager"`` had a failed capture).
    """

    stage: str
    mode: str
    batch: int
    precision: str
    resolved_precision: str
    engine: str
    ms_per_step: float | None
    ms_per_step_per_photo: float | None
    peak_memory_mib: float | None
    steps_timed: int
    error: str | None = None
    final_loss: float | None = None
    step_mode: str | None = None

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict."""
        return dataclasses.asdict(self)


class _Timer:
    """Start/stop timer: CUDA events on a GPU (no host sync until :meth:`elapsed_ms`), else wall clock."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._t0 = self._t1 = None
        if self.cuda:
            self._e0 = torch.cuda.Event(enable_timing=True)
            self._e1 = torch.cuda.Event(enable_timing=True)

    def start(self) -> None:
        if self.cuda:
            self._e0.record()
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        if self.cuda:
            self._e1.record()
        self._t1 = time.perf_counter()

    def elapsed_ms(self) -> float:
        if self._t0 is None or self._t1 is None:
            raise RuntimeError("timer was not started and stopped")
        if self.cuda:
            self._e1.synchronize()
            return float(self._e0.elapsed_time(self._e1))
        return (self._t1 - self._t0) * 1000.0


def _resolved(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return precision


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    if device.type == "cuda":
        _sync(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 1024.0 if platform.system() != "Darwin" else rss / 2**20
    except (ImportError, OSError):  # pragma: no cover - not on POSIX
        return None


@contextlib.contextmanager
def _cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """Temporarily set ``torch.backends.cudnn.benchmark`` (restored on exit)."""
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


# --------------------------------------------------------------------------------------------
# Reference mode: the official projector's / pivotal tuning's way of working
# --------------------------------------------------------------------------------------------


def _reference_projection(G, target: Tensor, loss_fn, w_stats, *, total: int, warmup: int, generator, timer) -> float:
    """The official projector loop, one photo, fp32, default Adam, ``float(loss)`` every step."""
    from cleftscore.gan.invert import InversionSettings, _normalize_noises_, lr_schedule, noise_regularizer

    device = target.device
    settings = InversionSettings(steps=total, precision="fp32")
    w_avg, w_std = w_stats
    w_opt = w_avg.reshape(1, -1).clone().requires_grad_(True)
    noises = [torch.randn((1, 1, r, r), generator=generator, device=device).requires_grad_(True)
              for _, r in G.synthesis.noise_layers()]  # fmt: skip
    opt = torch.optim.Adam([w_opt] + noises, betas=(0.9, 0.999), lr=settings.initial_lr)
    with torch.no_grad():
        target_features = loss_fn.features(target)
    for step in range(total):
        if step == warmup:
            timer.start()
        lr, noise_factor = lr_schedule(step, total, settings)
        for group in opt.param_groups:
            group["lr"] = lr
        w_noise = torch.randn(w_opt.shape, generator=generator, device=device) * w_std * noise_factor
        ws = (w_opt + w_noise).unsqueeze(1).repeat(1, G.num_ws, 1)
        synth = G.synthesis(ws, noise_mode="const", noise=noises, force_fp32=True)
        dist = loss_fn.distance_to_features(target_features, synth).sum()
        # One map at a time, one pyramid level at a time, as the official projector loops.
        reg = sum(noise_regularizer([m]) for m in noises)
        loss = dist + reg.sum() * settings.regularize_noise_weight
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        d, l_ = float(dist.detach()), float(loss.detach())  # host sync, as the official progress line
        logger.debug("step %d/%d: dist %.2f loss %.2f", step + 1, total, d, l_)
        _normalize_noises_(noises)
    timer.stop()
    return l_


def _reference_adaptation(G, w: Tensor, noises, target: Tensor, loss_fn, *, total: int, warmup: int, timer) -> float:
    """Pivotal tuning's loop: a trainable fp32 copy, LPIPS + L2, default Adam, ``loss.item()`` every step."""
    synth = copy.deepcopy(G.synthesis).float().eval().requires_grad_(True)
    opt = torch.optim.Adam(synth.parameters(), lr=3e-4, betas=(0.9, 0.999))
    ws = w.unsqueeze(1).repeat(1, G.num_ws, 1)
    with torch.no_grad():
        target_features = loss_fn.features(target)
    for step in range(total):
        if step == warmup:
            timer.start()
        img = synth(ws, noise_mode="const", noise=noises, force_fp32=True)
        loss = (img - target).square().mean() + loss_fn.distance_to_features(target_features, img).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = loss.detach().item()  # host sync, as a per-step loss log
        logger.debug("adaptation step %d/%d: loss %.4f", step + 1, total, value)
    timer.stop()
    return value


def _final_loss(losses) -> float:
    """Mean over photos of the last step's loss (numpy ``[N, steps]``)."""
    return float(losses[:, -1].mean())


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def profile_projection(G, targets: Tensor, loss_fn, w_stats, *, precision: str, steps: int = 3, top: int = 30) -> dict:
    """Where the time of a fast projection step goes: the top kernels (CUDA) or operators (CPU).

    Runs :func:`cleftscore.gan.invert.invert` with ordinary steps (no CUDA graph, so each
    kernel is attributed) under ``torch.profiler``, skipping the first steps, and lists the
    entries with the most self time per step.

    Parameters
    ----------
    G, targets, loss_fn, w_stats
        As for :func:`cleftscore.gan.invert.invert` (``targets`` sets the batch).
    precision : str
        Precision setting of the projection.
    steps : int
        Profiled steps.
    top : int
        Entries kept.

    Returns
    -------
    dict
        ``batch``, ``precision``, ``time_kind`` (``"device"`` or ``"cpu"``),
        ``ms_per_step_total`` (all profiled self time per step), ``entries_per_step`` (number
        of kernel launches or operator calls per step) and ``top``: name, calls per step, ms
        per step and share of the total.
    """
    from torch.profiler import ProfilerActivity, profile, schedule

    from cleftscore.gan.invert import InversionSettings, invert

    device = targets.device
    cuda = device.type == "cuda"
    wait, warm = 1, 2
    settings = InversionSettings(steps=wait + warm + steps + 1, precision=precision, cuda_graph=False)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities, schedule=schedule(wait=wait, warmup=warm, active=steps, repeat=1)) as prof:
        invert(G, targets, settings=settings, loss_fn=loss_fn, w_stats=w_stats,
               progress=lambda done, total: prof.step())  # fmt: skip
        _sync(device)
    events = prof.key_averages()

    def self_us(e) -> float:
        if cuda:
            return float(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)))
        return float(e.self_cpu_time_total)

    timed = [e for e in events if self_us(e) > 0]
    if cuda:
        # Kernels and copies have device time of their own; operators only through them.
        timed = [e for e in timed if not e.key.startswith("aten::")]
    total_us = sum(self_us(e) for e in timed)
    rows = sorted(timed, key=self_us, reverse=True)[:top]
    return {
        "batch": int(targets.shape[0]),
        "precision": precision,
        "time_kind": "device" if cuda else "cpu",
        "steps_profiled": steps,
        "ms_per_step_total": total_us / steps / 1000.0,
        "entries_per_step": sum(e.count for e in timed) / steps,
        "top": [
            {
                "name": e.key[:160],
                "calls_per_step": e.count / steps,
                "ms_per_step": self_us(e) / steps / 1000.0,
                "share": self_us(e) / total_us if total_us else 0.0,
            }
            for e in rows
        ],
    }


def _image_difference(G, precision: str, device: torch.device, *, n: int, seed: int) -> dict:
    """Max / mean abs difference of the synthesis at ``precision`` (as the projection runs it) vs float32."""
    from cleftscore.gan.invert import autocast_context, modconv_fusion, resolve_precision

    g = torch.Generator(device="cpu").manual_seed(seed + 7)
    z = torch.randn((n, G.z_dim), generator=g).to(device)
    noises = [torch.randn((n, 1, r, r), generator=g).to(device) for _, r in G.synthesis.noise_layers()]
    force_fp32, amp = resolve_precision(precision, device)
    with torch.no_grad():
        ws = G.mapping(z, None, truncation_psi=0.7)
        ref = G.synthesis(ws, noise_mode="const", noise=noises, force_fp32=True)
        with autocast_context(device, amp):
            out = G.synthesis(
                ws, noise_mode="const", noise=noises, force_fp32=force_fp32,
                fused_modconv=modconv_fusion(force_fp32, amp),
            ).float()  # fmt: skip
    diff = (out - ref).abs()
    return {
        "precision": precision,
        "resolved_precision": _resolved(precision, device),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "fp32_image_abs_max": float(ref.abs().max()),
        "finite": bool(torch.isfinite(out).all()),
        "images": n,
    }


def _best(rows: list[StepTiming], stage: str, mode: str, batch: int | None) -> StepTiming | None:
    ok = [r for r in rows if r.stage == stage and r.mode == mode and r.ms_per_step is not None
          and (batch is None or r.batch == batch)]  # fmt: skip
    return min(ok, key=lambda r: r.ms_per_step_per_photo) if ok else None


def _seconds_per_photo(proj: StepTiming | None, adapt: StepTiming | None) -> float | None:
    if proj is None or adapt is None:
        return None
    return (proj.ms_per_step_per_photo * PROJECTION_STEPS + adapt.ms_per_step_per_photo * ADAPTATION_STEPS) / 1000.0


def _pick(t: StepTiming | None) -> dict | None:
    if t is None:
        return None
    return {k: getattr(t, k) for k in ("batch", "precision", "resolved_precision", "engine", "ms_per_step",
                                       "ms_per_step_per_photo", "peak_memory_mib")}  # fmt: skip


def environment(device: torch.device) -> dict:
    """Versions, device name and the numeric flags that affect speed."""
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
    else:
        env["device_name"] = platform.processor() or platform.machine()
    return env


@dataclass(frozen=True)
class _Plan:
    """What one speed run times, checked (warm-up raised past the runner's own, see :func:`run_speed`)."""

    batch_sizes: tuple[int, ...]
    adapt_batch_sizes: tuple[int, ...]
    steps: int
    warmup: int
    requested_warmup: int
    precisions: tuple[str, ...]
    adapt_engines: tuple[str, ...]

    @property
    def total(self) -> int:
        """Steps per configuration, warm-up included."""
        return self.warmup + self.steps

    @property
    def variant_batches(self) -> tuple[int, ...]:
        """Batch sizes of the optional projection rows: one photo and the largest batch."""
        return tuple(dict.fromkeys((1, max(self.batch_sizes))))


def _plan(
    device: torch.device,
    *,
    batch_sizes: Sequence[int],
    adapt_batch_sizes: Sequence[int] | None,
    steps: int,
    warmup: int,
    precisions: Sequence[str] | None,
    adapt_engines: Sequence[str],
) -> _Plan:
    """Check the arguments of :func:`run_speed` and fill in the defaults."""
    from cleftscore.gan.adapt import ENGINES
    from cleftscore.gan.invert import PRECISIONS

    batch_sizes = tuple(int(b) for b in batch_sizes)
    adapt_batch_sizes = batch_sizes if adapt_batch_sizes is None else tuple(int(b) for b in adapt_batch_sizes)
    if not batch_sizes or min(batch_sizes + adapt_batch_sizes) < 1:
        raise ValueError(f"batch sizes must be >= 1, got {batch_sizes} / {adapt_batch_sizes}")
    if steps < 1 or warmup < 1:
        raise ValueError(f"steps and warmup must be >= 1, got steps={steps}, warmup={warmup}")
    if precisions is None:
        precisions = ("auto", "bf16") if device.type == "cuda" else ("auto",)
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise ValueError(f"precisions must be among {PRECISIONS}, got {bad}")
    bad = [e for e in adapt_engines if e not in ENGINES or e == "auto"]
    if bad:
        raise ValueError(f"adapt_engines must be 'vmap' and/or 'loop', got {bad}")
    # More warm-up steps than the runner's own, so that the timed steps of the fast path are
    # CUDA-graph replays (not the capture); the same count everywhere keeps final losses comparable.
    return _Plan(
        batch_sizes=batch_sizes, adapt_batch_sizes=adapt_batch_sizes, steps=steps,
        warmup=max(warmup, WARMUP_STEPS + 1), requested_warmup=warmup,
        precisions=tuple(precisions), adapt_engines=tuple(adapt_engines),
    )  # fmt: skip


@dataclass(frozen=True)
class _Workload:
    """The random generator, LPIPS, targets and adaptation pivots every configuration shares."""

    G: torch.nn.Module
    loss_fn: torch.nn.Module
    stats: tuple[Tensor, Tensor]
    targets: Tensor
    w_piv: Tensor
    noises_piv: list[Tensor]
    nmax: int
    setup_s: float


def _workload(config: GeneratorConfig, plan: _Plan, device: torch.device, seed: int) -> _Workload:
    """Random weights from ``seed``, targets made by the generator, pivots near the mean w."""
    from cleftscore.gan.networks import Generator
    from cleftscore.gan.wstats import w_stats as compute_w_stats
    from cleftscore.perceptual import PerceptualDistance

    t_setup = time.perf_counter()
    G = Generator(config, generator=torch.Generator().manual_seed(seed)).eval().requires_grad_(False).to(device)
    loss_fn = PerceptualDistance(vgg16_weights=None, random_trunk=True).to(device)
    nmax = max(plan.batch_sizes + plan.adapt_batch_sizes + (1,))
    with torch.no_grad():
        stats = compute_w_stats(G, samples=1000, device=device)
        g = torch.Generator(device="cpu").manual_seed(seed + 1)
        z = torch.randn((nmax, G.z_dim), generator=g).to(device)
        targets = G.synthesis(G.mapping(z, None, truncation_psi=0.7), noise_mode="const", force_fp32=True)
        targets = (targets / targets.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)).contiguous()
        spread = 0.1 * stats[1] / math.sqrt(G.w_dim)
        w_piv = stats[0].reshape(1, -1) + spread * torch.randn((nmax, G.w_dim), generator=g).to(device)
        noises_piv = [torch.randn((nmax, 1, r, r), generator=g).to(device) for _, r in G.synthesis.noise_layers()]
    _sync(device)
    return _Workload(G, loss_fn, stats, targets, w_piv, noises_piv, nmax, time.perf_counter() - t_setup)


def _error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


def _row_line(row: StepTiming) -> str:
    """The progress line of one timed configuration."""
    head = f"{row.stage:10s} {row.mode:9s} b{row.batch:<3d} {row.precision:5s} {row.engine:4s} "
    if row.ms_per_step is None:
        return head + f"FAILED {row.error}"
    return head + (
        f"{row.ms_per_step:9.2f} ms/step {row.ms_per_step_per_photo:9.2f} ms/step/photo, "
        f"peak {row.peak_memory_mib or 0:8.0f} MiB, final loss {row.final_loss}"
        + (f", steps {row.step_mode}" if row.step_mode else "")
    )


class _Harness:
    """Times configurations on one workload and collects their :class:`StepTiming` rows."""

    def __init__(self, work: _Workload, plan: _Plan, device: torch.device, *, seed: int,
                 say: Callable[[str], None]) -> None:  # fmt: skip
        self.work, self.plan, self.device, self.seed, self.say = work, plan, device, seed, say
        self.rows: list[StepTiming] = []

    def record(self, stage: str, mode: str, batch: int, precision: str, engine: str,
               fn: Callable[[_Timer], object]) -> None:  # fmt: skip
        """Run ``fn`` with a timer; a failure is recorded as a row with its error, not raised."""
        device = self.device
        with contextlib.suppress(Exception):
            _reset_peak(device)
        timer = _Timer(device)
        err = ms = final_loss = step_mode = None
        try:
            value = fn(timer)
            ms = timer.elapsed_ms() / self.plan.steps
            if isinstance(value, tuple):
                value, step_mode = value
            final_loss = None if value is None else float(value)
        except Exception as exc:  # noqa: BLE001 - a failed configuration is a result: record it and go on
            err = _error_text(exc)
            logger.warning("%s %s batch %d %s failed: %s", stage, mode, batch, precision, err)
            if device.type == "cuda":
                with contextlib.suppress(Exception):
                    torch.cuda.empty_cache()
        try:
            peak = _peak_mib(device)
        except Exception as exc:  # noqa: BLE001 - e.g. a sticky CUDA error after a failed capture
            peak = None
            err = err or f"{type(exc).__name__}: {str(exc)[:300]}"
        row = StepTiming(
            stage=stage, mode=mode, batch=batch, precision=precision,
            resolved_precision=_resolved(precision, device), engine=engine,
            ms_per_step=ms, ms_per_step_per_photo=None if ms is None else ms / batch,
            peak_memory_mib=peak, steps_timed=self.plan.steps, error=err, final_loss=final_loss, step_mode=step_mode,
        )  # fmt: skip
        self.rows.append(row)
        self.say(_row_line(row))

    def _progress_timer(self, timer: _Timer) -> Callable[[int, int], None]:
        """Start the timer after the warm-up steps, stop it after the last step."""
        after = self.plan.warmup

        def cb(step: int, n_total: int) -> None:
            if step == after:
                timer.start()
            elif step == n_total:
                timer.stop()

        return cb

    def time_reference(self) -> None:
        """Reference mode: fp32, batch 1, host sync every step, default Adam, default cuDNN flags."""
        w, total, warmup = self.work, self.plan.total, self.plan.warmup
        self.record("projection", "reference", 1, "fp32", "-", lambda timer: _reference_projection(
            w.G, w.targets[:1], w.loss_fn, w.stats, total=total, warmup=warmup,
            generator=torch.Generator(device=self.device).manual_seed(self.seed), timer=timer))  # fmt: skip
        self.record("adaptation", "reference", 1, "fp32", "-", lambda timer: _reference_adaptation(
            w.G, w.w_piv[:1], [t[:1] for t in w.noises_piv], w.targets[:1], w.loss_fn, total=total, warmup=warmup,
            timer=timer))  # fmt: skip

    def fast_projection(self, b: int, settings: object) -> Callable[[_Timer], tuple[float, str]]:
        """The library's projection of ``b`` photos (on CUDA: CUDA-graph replays after a warm-up)."""
        from cleftscore.gan.invert import invert

        w = self.work

        def run(timer: _Timer) -> tuple[float, str]:
            res = invert(w.G, w.targets[:b], settings=settings, loss_fn=w.loss_fn,
                         generator=torch.Generator(device=self.device).manual_seed(self.seed),
                         progress=self._progress_timer(timer), w_stats=w.stats)  # fmt: skip
            return _final_loss(res.losses), res.step_mode

        return run

    def fast_adaptation(self, b: int, settings: object) -> Callable[[_Timer], tuple[float, str]]:
        """The library's adaptation of ``b`` photos around the pivots."""
        from cleftscore.gan.adapt import adapt

        w = self.work

        def run(timer: _Timer) -> tuple[float, str]:
            res = adapt(w.G, w.w_piv[:b], [t[:b] for t in w.noises_piv], w.targets[:b], settings=settings,
                        loss_fn=w.loss_fn, progress=self._progress_timer(timer))  # fmt: skip
            return _final_loss(res.losses), res.step_mode

        return run

    def time_fast(self, *, eager_too: bool) -> None:
        """The fast path as shipped: every precision and batch size, projection then adaptation."""
        from cleftscore.gan.adapt import AdaptSettings
        from cleftscore.gan.invert import InversionSettings

        plan = self.plan
        for precision in plan.precisions:
            for b in plan.batch_sizes:
                settings = InversionSettings(steps=plan.total, precision=precision)
                self.record("projection", "fast", b, precision, "-", self.fast_projection(b, settings))
                if eager_too and self.device.type == "cuda":
                    no_graph = dataclasses.replace(settings, cuda_graph=False)
                    self.record("projection", "fast-eager", b, precision, "-", self.fast_projection(b, no_graph))
        for precision in plan.precisions:
            for b in plan.adapt_batch_sizes:
                for engine in plan.adapt_engines:
                    if engine == "loop" and b != 1:
                        continue
                    settings = AdaptSettings(steps=plan.total, precision=precision, engine=engine)
                    self.record("adaptation", "fast", b, precision, engine, self.fast_adaptation(b, settings))

    def time_projection_variant(self, mode: str, **changes: bool) -> None:
        """Fast projection rows with one setting changed (first precision, one photo and the largest batch)."""
        from cleftscore.gan.invert import InversionSettings

        settings = InversionSettings(steps=self.plan.total, precision=self.plan.precisions[0], **changes)
        for b in self.plan.variant_batches:
            self.record("projection", mode, b, self.plan.precisions[0], "-", self.fast_projection(b, settings))

    def time_compile(self) -> list[dict]:
        """Compiled projection rows; the first call per batch size compiles and is timed apart."""
        from cleftscore.gan.invert import InversionSettings, invert

        w, info = self.work, []
        settings = InversionSettings(steps=self.plan.total, precision=self.plan.precisions[0], compile=True)
        for b in self.plan.variant_batches:
            t0 = time.perf_counter()
            try:
                invert(w.G, w.targets[:b], settings=dataclasses.replace(settings, steps=2), loss_fn=w.loss_fn,
                       w_stats=w.stats)  # fmt: skip
                _sync(self.device)
                info.append({"batch": b, "compile_and_2_steps_s": time.perf_counter() - t0, "error": None})
            except Exception as exc:  # noqa: BLE001 - a compile failure is a result, not a crash
                info.append({"batch": b, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
                continue
            self.record(
                "projection", "fast+compile", b, self.plan.precisions[0], "-", self.fast_projection(b, settings)
            )
        return info

    def profile(self) -> dict:
        """:func:`profile_projection` at the largest batch; a failure is reported, not raised."""
        w = self.work
        try:
            return profile_projection(
                w.G, w.targets[: max(self.plan.batch_sizes)], w.loss_fn, w.stats, precision=self.plan.precisions[0]
            )
        except Exception as exc:  # noqa: BLE001 - a profiler failure must not lose the timings
            return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _summary(rows: list[StepTiming], plan: _Plan) -> dict:
    """Reference and best fast figures: s/photo at 2,000 + 50 steps, speed-ups, optional variants."""
    ref_p, ref_a = _best(rows, "projection", "reference", 1), _best(rows, "adaptation", "reference", 1)
    single_p, single_a = _best(rows, "projection", "fast", 1), _best(rows, "adaptation", "fast", 1)
    batch_p = _best(rows, "projection", "fast", None)
    batch_a = _best(rows, "adaptation", "fast", None)
    ref_s = _seconds_per_photo(ref_p, ref_a)
    single_s = _seconds_per_photo(single_p, single_a)
    batch_s = _seconds_per_photo(batch_p, batch_a)

    def variant(mode: str) -> dict | None:
        """Whole-photo figures when the projection runs in ``mode`` (adaptation as the fast path)."""
        one, many = _best(rows, "projection", mode, 1), _best(rows, "projection", mode, None)
        if one is None and many is None:
            return None
        single, batched = _seconds_per_photo(one, single_a), _seconds_per_photo(many, batch_a)
        return {"projection_single": _pick(one), "projection_batched": _pick(many),
                "s_per_photo_single": single, "s_per_photo_batched": batched,
                "speedup_single": _ratio(ref_s, single), "speedup_batched": _ratio(ref_s, batched)}  # fmt: skip

    return {
        "s_per_photo_formula": f"ms/step/photo x {PROJECTION_STEPS} projection + ms/step/photo x {ADAPTATION_STEPS} adaptation",
        "reference": {"projection": _pick(ref_p), "adaptation": _pick(ref_a), "s_per_photo": ref_s},
        "fast_single_photo": {"projection": _pick(single_p), "adaptation": _pick(single_a), "s_per_photo": single_s},
        "fast_batched": {"projection": _pick(batch_p), "adaptation": _pick(batch_a), "s_per_photo": batch_s,
                         "largest_batch_projection": max(plan.batch_sizes),
                         "largest_batch_adaptation": max(plan.adapt_batch_sizes)},
        "speedup_single_photo": _ratio(ref_s, single_s),
        "speedup_batched": _ratio(ref_s, batch_s),
        "ratio_fast_over_reference_single": _ratio(single_s, ref_s),
        "ratio_fast_over_reference_batched": _ratio(batch_s, ref_s),
        "projection_step_speedup_batched": _ratio(
            ref_p.ms_per_step_per_photo if ref_p else None, batch_p.ms_per_step_per_photo if batch_p else None),
        "adaptation_step_speedup_batched": _ratio(
            ref_a.ms_per_step_per_photo if ref_a else None, batch_a.ms_per_step_per_photo if batch_a else None),
        "with_compile": variant("fast+compile"),
        "with_channels_last": variant("fast+channels_last"),
        "without_cuda_graphs": variant("fast-eager"),
        "without_fused_kernels": variant("fast-unfused"),
        "goal_s_per_photo_batched": 5.0,
        "goal_s_single_photo": 30.0,
    }  # fmt: skip


def _settings_record(plan: _Plan, device: torch.device, *, options: dict[str, bool], cudnn_benchmark: bool,
                     seed: int, setup_s: float) -> dict:  # fmt: skip
    """The ``settings`` block of the report: what was timed and how each mode works."""
    return {
        "batch_sizes": list(plan.batch_sizes),
        "adapt_batch_sizes": list(plan.adapt_batch_sizes),
        "steps_timed": plan.steps,
        "warmup_steps": plan.warmup,
        "warmup_steps_requested": plan.requested_warmup,
        "precisions": list(plan.precisions),
        "adapt_engines": list(plan.adapt_engines),
        "cudnn_benchmark_fast_path": bool(cudnn_benchmark),
        **{k: bool(v) for k, v in options.items()},
        "seed": seed,
        "weights": "random",
        "lpips_trunk": "random VGG16",
        "setup_s": setup_s,
        "reference_mode": "fp32, batch 1, float(loss) host sync every step, default torch.optim.Adam, "
        "grouped (fused) modulated convolutions, cuDNN defaults",
        "fast_path": "cleftscore.gan.invert.invert / cleftscore.gan.adapt.adapt as shipped (batched, "
        "fused/foreach Adam, no per-step host sync, projection steps replayed as a CUDA "
        "graph on CUDA, fused Triton kernels for the modulated convolutions' elementwise "
        "stages on CUDA), cuDNN autotuning when on CUDA",
        "peak_memory": "torch.cuda.max_memory_allocated per configuration"
        if device.type == "cuda"
        else "process peak RSS so far (CPU; monotone, upper bound)",
    }  # fmt: skip


def run_speed(
    config: GeneratorConfig,
    *,
    device: torch.device | str,
    batch_sizes: Sequence[int] = (1, 8),
    adapt_batch_sizes: Sequence[int] | None = None,
    steps: int = 10,
    warmup: int = 3,
    precisions: Sequence[str] | None = None,
    adapt_engines: Sequence[str] = ("vmap",),
    compile: bool = False,
    eager_too: bool = False,
    unfused_too: bool = False,
    profile: bool = False,
    channels_last: bool = False,
    cudnn_benchmark: bool = True,
    seed: int = 0,
    config_name: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Time reference mode and fast path for projection and adaptation steps.

    Parameters
    ----------
    config : GeneratorConfig
        Architecture (random weights from ``seed``).
    device : torch.device or str
        Where everything runs.
    batch_sizes : sequence of int
        Photos per projection step for the fast path (the reference is always 1).
    adapt_batch_sizes : sequence of int or None
        Photos per adaptation step for the fast path (default: ``batch_sizes``).
    steps : int
        Timed steps per configuration.
    warmup : int
        Untimed steps before them (>= 1: cuDNN autotuning, allocator warm-up); raised to one
        more than :data:`cleftscore.gan.steps.WARMUP_STEPS`, so that the fast path's timed steps
        are CUDA-graph replays, not the capture.
    precisions : sequence of str or None
        Fast-path precisions (default ``("auto", "bf16")`` on CUDA, ``("auto",)`` elsewhere).
    adapt_engines : sequence of str
        Adaptation engines timed for the fast path; ``"loop"`` only at batch 1.
    compile : bool
        Also time the fast projection with ``InversionSettings(compile=True)`` (first precision,
        batch 1 and the largest batch); the compile time is reported separately, not per step.
    eager_too : bool
        On CUDA, also time the fast projection without CUDA graphs (``cuda_graph=False``), to
        show what the graph replay gains.
    unfused_too : bool
        On CUDA, also time the fast projection with the fused Triton kernels turned off
        (``InversionSettings(fused_kernels=False)``; first precision, batch 1 and the largest batch).
    channels_last : bool
        Also time the fast projection with ``InversionSettings(channels_last=True)`` (first
        precision, batch 1 and the largest batch).
    profile : bool
        Also profile fast projection steps at the largest batch and the first precision
        (:func:`profile_projection`), reported under ``profile``.
    cudnn_benchmark : bool
        Let cuDNN autotune convolutions in the fast path (the reference runs with the default).
    seed : int
        Seed of the weights, targets and inversions.
    config_name : str or None
        Name recorded in the report.
    progress : callable or None
        Called with a line of text after each configuration.

    Returns
    -------
    dict
        ``environment``, ``settings``, ``timings`` (one :class:`StepTiming` dict per
        configuration), ``image_difference`` (per fast precision), ``summary`` (reference and
        best fast figures, s/photo at 2,000 + 50 steps for one photo and for a batch, speed-ups).

    Raises
    ------
    ValueError
        On empty or non-positive batch sizes, ``steps < 1`` or ``warmup < 1``.
    """
    device = torch.device(device)
    plan = _plan(device, batch_sizes=batch_sizes, adapt_batch_sizes=adapt_batch_sizes, steps=steps, warmup=warmup,
                 precisions=precisions, adapt_engines=adapt_engines)  # fmt: skip
    work = _workload(config, plan, device, seed)
    harness = _Harness(work, plan, device, seed=seed, say=progress or (lambda line: logger.info("%s", line)))
    harness.time_reference()
    compile_info = profile_info = None
    with _cudnn_benchmark(cudnn_benchmark and device.type == "cuda"):
        harness.time_fast(eager_too=eager_too)
        if unfused_too and device.type == "cuda":
            harness.time_projection_variant("fast-unfused", fused_kernels=False)
        if channels_last:
            harness.time_projection_variant("fast+channels_last", channels_last=True)
        if compile:
            compile_info = harness.time_compile()
        image_difference = [
            _image_difference(work.G, p, device, n=min(2, work.nmax), seed=seed) for p in dict.fromkeys(plan.precisions)
        ]
        if profile:
            profile_info = harness.profile()
    options = {"compile": compile, "eager_too": eager_too, "unfused_too": unfused_too, "channels_last": channels_last}
    return {
        "benchmark": "speed",
        "config_name": config_name,
        "config": config.to_dict(),
        "environment": environment(device),
        "settings": _settings_record(
            plan, device, options=options, cudnn_benchmark=cudnn_benchmark, seed=seed, setup_s=work.setup_s
        ),  # fmt: skip
        "timings": [r.to_dict() for r in harness.rows],
        "image_difference": image_difference,
        "compile": compile_info,
        "profile": profile_info,
        "summary": _summary(harness.rows, plan),
    }
