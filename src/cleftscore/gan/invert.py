"""Projection of images into a StyleGAN2 generator's W space (paper Alg. 1, the official projector).

One w per image (broadcast to every layer) and every noise map are optimised with Adam so that
the synthesis matches the target under LPIPS (VGG16, both area-downsampled to 256), plus a noise
autocorrelation regulariser over the noise pyramid. The learning rate ramps up over the first 5 %
and down (cosine) over the last 25 %; w is perturbed by noise of 0.05 * w_std fading out over the
first 75 %; the noise maps are renormalised to zero mean / unit variance after every step.

A batch of N images runs at once: each image has its own w, noise maps and regulariser and the
batch loss is the *sum* of the per-image losses, so every image gets exactly the gradient it
would get alone, and since Adam is elementwise a batched run equals N separate runs (to float
rounding). Nothing inside a step synchronises with the host: the learning rate, the w
perturbation (drawn up front) and the row of the loss table are picked on the device by a device
step counter, and the per-step losses are copied back once at the end. So on CUDA the whole step
is captured once as a CUDA graph and replayed (:mod:`cleftscore.gan.steps`), which removes the
launch overhead of its few thousand small kernels.

References
----------
.. [1] T. Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020,
   Appendix D (projection).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cleftscore.gan.accel.fused import FUSED_KERNELS
from cleftscore.gan.networks import LayerKernels
from cleftscore.gan.steps import compiled, graph_planned, run_steps

__all__ = [
    "InversionSettings",
    "InversionResult",
    "invert",
    "projection_loss",
    "noise_regularizer",
    "resolve_precision",
    "modconv_fusion",
    "lr_schedule",
    "PRECISIONS",
]

logger = logging.getLogger(__name__)

#: Accepted ``precision`` values of inversion and adaptation.
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
#: Accepted ``loss`` values of inversion.
LOSSES = ("lpips", "mse")
#: Factor turning a mean squared error of [-1, 1] images into one of [0, 255] images.
_MSE_255 = 127.5**2


@dataclass(frozen=True)
class InversionSettings:
    """Every knob of the projector (defaults: the official projector with the paper's 2,000 steps).

    Parameters
    ----------
    steps : int
        Optimisation steps.
    initial_lr : float
        Peak Adam learning rate.
    lr_rampdown_length, lr_rampup_length : float
        Fractions of the run spent in the cosine ramp-down and the linear ramp-up.
    initial_noise_factor : float
        w perturbation at step 0, in units of ``w_std``.
    noise_ramp_length : float
        Fraction of the run over which the w perturbation fades (quadratically) to zero.
    regularize_noise_weight : float
        Weight of the noise autocorrelation regulariser.
    w_avg_samples : int
        Latents used for ``w_avg`` / ``w_std`` when they are not passed in.
    loss : {"lpips", "mse"}
        ``"lpips"``: LPIPS(VGG16) at <= 256 px (needs a loss function). ``"mse"``: per-image mean
        squared error at full resolution (no downsampling), in the official projector's pixel
        units [0, 255] (i.e. 127.5**2 times the [-1, 1] MSE), so that the 1e5 regulariser
        weight has its intended relative strength.
    early_stop : bool
        Stop when no image's loss improved by ``early_stop_tol`` (relative) over the last
        ``early_stop_patience`` steps; checked only every ``early_stop_patience`` steps (one host
        sync each time).
    early_stop_patience : int
        Window of the early-stop check, in steps.
    early_stop_tol : float
        Relative improvement that counts as progress.
    optimize_noise : bool
        Optimise the noise maps (official: yes). When False they stay at their random start.
    precision : {"fp32", "bf16", "fp16", "auto"}
        ``"fp32"``: everything float32. ``"fp16"``: the generator's ``num_fp16_res`` top
        resolutions in float16, as the official model runs on CUDA. ``"bf16"``: the whole step
        (generator and loss) under bfloat16 autocast. ``"auto"``: ``"fp16"`` on CUDA, ``"fp32"``
        elsewhere (float16 convolutions on a CPU are slow and gain nothing).
    cuda_graph : bool
        On CUDA, capture the step as a CUDA graph after a few warm-up steps and replay it
        (same kernels, same numbers, one launch per step). Ignored on other devices.
    channels_last : bool
        Run the synthesis on a copy of the network whose convolution weights are stored
        channels-last (NHWC), so that the activations follow; tensor-core convolutions prefer it.
        Same numbers up to float rounding.
    compile : bool
        Run the step's forward pass (synthesis, distance, regulariser) through
        ``torch.compile``. Compiling the 1024-px generator takes minutes, so this pays off for
        large batches of photos only; numbers change at float rounding level. Falls back to
        the plain code with a warning where compilation fails.
    fused_kernels : bool
        On a GPU, run the unfused synthesis layers' elementwise stages as fused Triton kernels
        (:data:`cleftscore.gan.accel.fused.FUSED_KERNELS`, used where their check on that GPU
        passed); same numbers up to float rounding. Ignored on other devices.
    """

    steps: int = 2000
    initial_lr: float = 0.1
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    initial_noise_factor: float = 0.05
    noise_ramp_length: float = 0.75
    regularize_noise_weight: float = 1e5
    w_avg_samples: int = 10000
    loss: str = "lpips"
    early_stop: bool = False
    early_stop_patience: int = 100
    early_stop_tol: float = 1e-4
    optimize_noise: bool = True
    precision: str = "fp32"
    cuda_graph: bool = True
    channels_last: bool = False
    compile: bool = False
    fused_kernels: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.initial_lr <= 0:
            raise ValueError(f"initial_lr must be > 0, got {self.initial_lr}")
        for name in ("lr_rampdown_length", "lr_rampup_length", "noise_ramp_length"):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {v}")
        if self.initial_noise_factor < 0 or self.regularize_noise_weight < 0:
            raise ValueError("initial_noise_factor and regularize_noise_weight must be >= 0")
        if self.w_avg_samples < 1:
            raise ValueError(f"w_avg_samples must be >= 1, got {self.w_avg_samples}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.early_stop_patience < 1 or self.early_stop_tol < 0:
            raise ValueError("early_stop_patience must be >= 1 and early_stop_tol >= 0")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class InversionResult:
    """What the projector found for a batch of N targets.

    Attributes
    ----------
    w : Tensor
        ``[N, w_dim]`` float32, the optimised w (without the perturbation noise), detached.
    noises : list of Tensor
        One ``[N, 1, r, r]`` float32 map per noise layer (``G.synthesis.noise_layers()`` order).
    images : Tensor
        ``[N, 3, R, R]`` float32 synthesis from ``w`` and ``noises`` in fp32, detached, unclamped.
    losses : numpy.ndarray
        ``[N, steps_run]`` float32 per-image loss (distance + weighted regulariser) at each step.
    steps_run : int
        Steps actually run (fewer than ``settings.steps`` after an early stop).
    step_mode : {"eager", "cuda_graph"}
        How the steps ran after the warm-up: ordinary calls, or replays of a CUDA graph.
    """

    w: Tensor
    noises: list[Tensor]
    images: Tensor
    losses: np.ndarray
    steps_run: int
    step_mode: str = "eager"

    def __post_init__(self) -> None:
        n = self.w.shape[0]
        if self.w.ndim != 2:
            raise ValueError(f"w must be [N, w_dim], got {tuple(self.w.shape)}")
        if self.images.ndim != 4 or self.images.shape[0] != n:
            raise ValueError(f"images must be [{n}, 3, R, R], got {tuple(self.images.shape)}")
        if self.losses.shape != (n, self.steps_run):
            raise ValueError(f"losses must be [{n}, {self.steps_run}], got {self.losses.shape}")
        if any(t.shape[0] != n for t in self.noises):
            raise ValueError("every noise map must have the batch size first")


def resolve_precision(precision: str, device: torch.device) -> tuple[bool, torch.dtype | None]:
    """Map a precision name to ``(force_fp32, autocast_dtype)`` for ``device``.

    Parameters
    ----------
    precision : {"fp32", "bf16", "fp16", "auto"}
        See :class:`InversionSettings`.
    device : torch.device
        Where the work runs.

    Returns
    -------
    force_fp32 : bool
        Value for the generator's ``force_fp32`` argument.
    autocast_dtype : torch.dtype or None
        Dtype of the autocast region around synthesis and loss, or None for no autocast.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return True, None
    if precision == "fp16":
        return False, None
    return True, torch.bfloat16


def modconv_fusion(force_fp32: bool, autocast_dtype: torch.dtype | None) -> bool | None:
    """``fused_modconv`` for the synthesis during a projection at a resolved precision.

    float32: None (the official rule: the grouped per-sample-weight convolution in eval mode),
    so that float32 results stay those of the official projector. Reduced precision: False,
    the shared-weight convolution with scaled activations, which the official model uses for
    float16 batches anyway; it needs no weight gradient (only w and the noise maps are
    optimised), which saves about a third of the convolution work of a step.
    """
    if force_fp32 and autocast_dtype is None:
        return None
    return False


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op context when ``dtype`` is None.

    Without autocast's cache of cast weights, which must not outlive a CUDA graph capture (each
    weight is used once per step here, so the cache saved nothing).
    """
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=False)


def lr_schedule(step: int, steps: int, settings: InversionSettings) -> tuple[float, float]:
    """Learning rate and w-noise factor (in units of ``w_std``) at ``step`` of ``steps``.

    Returns
    -------
    lr : float
        ``initial_lr`` times the ramp (0 at step 0, as the official projector).
    noise_factor : float
        ``initial_noise_factor * max(0, 1 - t / noise_ramp_length) ** 2`` with ``t = step / steps``.
    """
    t = step / steps
    noise_factor = settings.initial_noise_factor * max(0.0, 1.0 - t / settings.noise_ramp_length) ** 2
    ramp = min(1.0, (1.0 - t) / settings.lr_rampdown_length)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / settings.lr_rampup_length)
    return settings.initial_lr * ramp, noise_factor


def noise_regularizer(noises: Sequence[Tensor]) -> Tensor:
    """Per-image noise autocorrelation penalty over the noise pyramid.

    For every map, at every pyramid level (2x2 average pooling) down to 8x8 inclusive (a map of
    8x8 or smaller contributes its own level once), adds the squared mean of the map times itself
    shifted by one pixel horizontally, and the same vertically (wrap-around shifts).

    Parameters
    ----------
    noises : sequence of Tensor
        ``[N, C, r, r]`` tensors: each of the C channels is one noise map (C = 1 for single
        maps). Square maps; any mix of resolutions.

    Returns
    -------
    Tensor
        ``[N]`` penalties.

    Notes
    -----
    Every map at a pyramid level of resolution r is stacked with the others of that resolution
    (the maps made at r and the pooled maps from 2r), so each level costs a handful of kernels
    whatever the number of maps: about 100 per step for the 1024-px generator instead of 1,500.
    """
    if not noises:
        raise ValueError("noise_regularizer needs at least one noise map")
    by_res: dict[int, list[Tensor]] = {}
    for t in noises:
        if t.ndim != 4 or t.shape[2] != t.shape[3]:
            raise ValueError(f"noise maps must be square [N, C, r, r], got {list(t.shape)}")
        by_res.setdefault(int(t.shape[2]), []).append(t)
    total: Tensor | None = None
    carried: Tensor | None = None  # maps pooled down from the level above, still in the pyramid
    while by_res or carried is not None:
        r = max(list(by_res) + ([int(carried.shape[2])] if carried is not None else []))
        parts = by_res.pop(r, [])
        if carried is not None and carried.shape[2] == r:
            parts, carried = [carried, *parts], None
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        term = (x * torch.roll(x, shifts=1, dims=3)).mean(dim=(2, 3)).square().sum(dim=1)
        term = term + (x * torch.roll(x, shifts=1, dims=2)).mean(dim=(2, 3)).square().sum(dim=1)
        total = term if total is None else total + term
        if r > 8:
            pooled = F.avg_pool2d(x, kernel_size=2)
            carried = pooled if carried is None else torch.cat([carried, pooled], dim=1)
    assert total is not None
    return total


def _normalize_noises_(noises: Sequence[Tensor]) -> None:
    """In place: every map (channel) of every image to zero mean and unit variance."""
    with torch.no_grad():
        for n in noises:
            n.sub_(n.mean(dim=(2, 3), keepdim=True))
            n.mul_(n.square().mean(dim=(2, 3), keepdim=True).rsqrt())


def _check_targets(G: torch.nn.Module, targets: Tensor) -> None:
    r = G.img_resolution
    if not isinstance(targets, Tensor) or not targets.is_floating_point():
        raise ValueError("targets must be a float tensor [N, 3, R, R] in [-1, 1]")
    if targets.ndim != 4 or targets.shape[1] != 3 or tuple(targets.shape[2:]) != (r, r):
        raise ValueError(
            f"targets must have shape [N, 3, {r}, {r}] (the generator's resolution), got {tuple(targets.shape)}"
        )
    if targets.shape[0] < 1:
        raise ValueError("targets must hold at least one image")


def image_distance(
    images: Tensor, targets: Tensor, *, loss: str, loss_fn: torch.nn.Module | None, target_features: list[Tensor] | None
) -> Tensor:
    """Per-image distance ``[N]``: LPIPS (from precomputed target features) or full-resolution MSE."""
    if loss == "mse":
        # In the official projector's pixel units ([0, 255]), so that the 1e5 noise-regulariser
        # weight keeps its intended strength relative to the image term.
        return (images.float() - targets).square().mean(dim=(1, 2, 3)) * _MSE_255
    assert loss_fn is not None and target_features is not None
    return loss_fn.distance_to_features(target_features, images).float()


def projection_loss(
    w_in: Tensor,
    stacks: Sequence[Tensor],
    *,
    synthesis: torch.nn.Module,
    num_ws: int,
    slots: Sequence[tuple[int, int]],
    targets: Tensor,
    loss: str,
    loss_fn: torch.nn.Module | None,
    target_features: list[Tensor] | None,
    regularize_noise_weight: float,
    force_fp32: bool,
    fused_modconv: bool | None,
    amp_dtype: torch.dtype | None,
    kernels: LayerKernels | None = FUSED_KERNELS,
) -> Tensor:
    """Per-image loss ``[N]`` of one projection step: image distance plus noise regulariser.

    ``w_in`` is ``[N, w_dim]`` (broadcast to every layer), ``stacks`` the per-resolution noise
    stacks with their ``slots`` (:func:`stack_noises`); ``kernels`` goes to the synthesis (None:
    plain PyTorch). :func:`invert` optimises it; the step cost model
    (:mod:`cleftscore.benchmarks.step_cost`) traces the very same function.
    """
    ws = w_in.unsqueeze(1).expand(-1, num_ws, -1)
    with autocast_context(targets.device, amp_dtype):
        synth = synthesis(
            ws, noise_mode="const", noise=noise_views(stacks, slots), force_fp32=force_fp32,
            fused_modconv=fused_modconv, kernels=kernels,
        )  # fmt: skip
        dist = image_distance(synth, targets, loss=loss, loss_fn=loss_fn, target_features=target_features)
    return dist.float() + regularize_noise_weight * noise_regularizer(stacks)


def invert(
    G: torch.nn.Module,
    targets: Tensor,
    *,
    settings: InversionSettings,
    loss_fn: torch.nn.Module | None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    progress: Callable[[int, int], None] | None = None,
    w_stats: tuple[Tensor, float] | None = None,
    init_noises: Sequence[Tensor] | None = None,
) -> InversionResult:
    """Project a batch of target images into ``G`` (official StyleGAN2 projector, batched).

    Parameters
    ----------
    G : Generator
        A :class:`cleftscore.gan.networks.Generator`, on the device of ``targets``. Not modified
        (its parameters get no gradients).
    targets : Tensor
        ``[N, 3, R, R]`` float images in [-1, 1] at the generator's resolution.
    settings : InversionSettings
        Steps, schedule, loss and precision.
    loss_fn : PerceptualDistance or None
        Non-spatial LPIPS; required when ``settings.loss == "lpips"``, unused for ``"mse"``.
    generator : torch.Generator, sequence of torch.Generator, or None
        Source of every random draw (initial noise maps, w perturbation); on the targets' device.
        ``None``: a fresh generator seeded with 0 (results are still reproducible). A sequence
        gives one generator per image, so an image's draws do not depend on the other images in
        its batch (what the pipeline uses: a photo's result must not depend on its batch).
    progress : callable or None
        Called as ``progress(step, total)`` after every step (no loss values: no host sync).
    w_stats : (Tensor, float) or None
        Precomputed ``(w_avg [w_dim], w_std)`` from :func:`cleftscore.gan.wstats.w_stats`
        (the pipeline caches them per generator); computed here when None.
    init_noises : sequence of Tensor or None
        Starting noise maps ``[N, 1, r, r]`` (one per noise layer) instead of random ones; they
        are copied, not modified.

    Returns
    -------
    InversionResult
        w, noise maps, final images and per-image loss curves.

    Raises
    ------
    ValueError
        On bad target shapes, or an LPIPS loss without a loss function.

    Notes
    -----
    Deviations from NVIDIA's projector: LPIPS comes from the ``lpips`` package on [-1, 1]
    images instead of NVIDIA's TorchScript VGG16 on [0, 255] images, so loss magnitudes differ
    (the optimum does not move much); the batch sum replaces a batch of one.
    """
    from cleftscore.gan.wstats import w_stats as compute_w_stats

    _check_inputs(G, targets, settings, loss_fn)
    device = targets.device
    n = targets.shape[0]
    targets = targets.detach().float()
    generator, per_image_rng = _random_sources(generator, n, device)
    force_fp32, amp_dtype = resolve_precision(settings.precision, device)
    fused_modconv = modconv_fusion(force_fp32, amp_dtype)

    if w_stats is None:
        w_stats = compute_w_stats(G, samples=settings.w_avg_samples, device=device)
    w_avg, w_std = _checked_w_stats(G, w_stats, device)

    layers = G.synthesis.noise_layers()
    maps = _initial_noises(layers, n, device=device, generator=generator, per_image_rng=per_image_rng,
                           init_noises=init_noises)  # fmt: skip
    # One leaf tensor per resolution holds every map of that resolution as a channel; the
    # synthesis gets channel views. Fewer, larger tensors: fewer kernels in every step.
    stacks, slots = stack_noises(maps, [r for _, r in layers])

    w_opt = w_avg.expand(n, -1).clone().requires_grad_(True)
    params = [w_opt]
    if settings.optimize_noise:
        for t in stacks:
            t.requires_grad_(True)
        params += stacks

    steps = settings.steps
    # Everything that changes from step to step lives on the device, indexed by a device step
    # counter, so a step never waits for the host and can be replayed as a CUDA graph.
    schedule = [lr_schedule(i, steps, settings) for i in range(steps)]
    lr_all = torch.tensor([lr for lr, _ in schedule], device=device, dtype=torch.float32)
    noise_scale = torch.tensor([f * w_std for _, f in schedule], device=device, dtype=torch.float32)
    noisy_steps = sum(1 for _, f in schedule if f > 0)
    w_noise = _w_perturbations(noisy_steps, n, G.w_dim, device=device, generator=generator, per_image_rng=per_image_rng)
    k = torch.zeros((1,), dtype=torch.long, device=device)
    on_cuda = device.type == "cuda"
    lr_t = torch.zeros((), device=device)
    # Fused Adam with a tensor learning rate on CUDA: no host sync; capturable for a CUDA graph.
    capturable = graph_planned(device, settings.cuda_graph, steps)
    opt = torch.optim.Adam(params, lr=lr_t, betas=(0.9, 0.999), fused=on_cuda or None, capturable=capturable,
                           foreach=None if on_cuda else False)  # fmt: skip
    lr_t = opt.param_groups[0]["lr"]

    target_features = None
    if settings.loss == "lpips":
        with torch.no_grad():
            target_features = [f.detach() for f in loss_fn.features(targets)]
    backward_scale = 1.0 / _MSE_255 if settings.loss == "mse" else 1.0
    num_ws = G.num_ws
    synthesis = G.synthesis
    if settings.channels_last:
        synthesis = copy.deepcopy(G.synthesis).to(memory_format=torch.channels_last)

    def objective(w_in: Tensor, stacks: list[Tensor]) -> Tensor:
        return projection_loss(
            w_in, stacks, synthesis=synthesis, num_ws=num_ws, slots=slots, targets=targets, loss=settings.loss,
            loss_fn=loss_fn, target_features=target_features, regularize_noise_weight=settings.regularize_noise_weight,
            force_fp32=force_fp32, fused_modconv=fused_modconv, amp_dtype=amp_dtype,
            kernels=FUSED_KERNELS if settings.fused_kernels else None,
        )  # fmt: skip

    objective = compiled(objective, enabled=settings.compile, what="projection step")
    losses = torch.zeros((n, steps), device=device, dtype=torch.float32)

    def step() -> None:
        with torch.no_grad():
            lr_t.copy_(lr_all.index_select(0, k).reshape(()))
        row = w_noise.index_select(0, k.clamp(max=noisy_steps)).squeeze(0)  # zeros once the ramp ends
        w_in = w_opt + row * noise_scale.index_select(0, k)
        per_image = objective(w_in, stacks)
        # Backward on a rescaled loss (Adam ignores a constant factor): keeps float16 gradients
        # of the [0, 255]-unit MSE from overflowing.
        grads = torch.autograd.grad(per_image.sum() * backward_scale, params)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        opt.step()
        with torch.no_grad():
            losses.index_copy_(1, k, per_image.detach().unsqueeze(1))
            k.add_(1)
        _normalize_noises_(stacks)

    def stop(done: int) -> bool:
        return settings.early_stop and _should_stop(losses, done, settings)

    with _cudnn_autotune(on_cuda):
        steps_run, mode = run_steps(step, steps, device=device, cuda_graph=settings.cuda_graph, progress=progress,
                                    stop=stop)  # fmt: skip
    if steps_run < steps:
        logger.info("inversion stopped early after %d of %d steps", steps_run, steps)

    return _result(G, w_opt, noise_views(stacks, slots), losses[:, :steps_run], step_mode=mode)


def _result(G: torch.nn.Module, w: Tensor, noises: list[Tensor], losses: Tensor, *, step_mode: str) -> InversionResult:
    """The final w and noise maps (copies), their float32 synthesis and the loss curves run."""
    w_final = w.detach().clone()
    noises_final = [t.detach().clone() for t in noises]
    with torch.no_grad():
        images = G.synthesis(
            w_final.unsqueeze(1).expand(-1, G.num_ws, -1), noise_mode="const", noise=noises_final, force_fp32=True
        ).float()
    return InversionResult(
        w=w_final,
        noises=noises_final,
        images=images,
        losses=losses.cpu().numpy(),
        steps_run=losses.shape[1],
        step_mode=step_mode,
    )


def _checked_w_stats(G: torch.nn.Module, w_stats: tuple[Tensor, float], device: torch.device) -> tuple[Tensor, float]:
    """``(w_avg [1, w_dim] float32 on device, w_std)``, checked against the generator."""
    w_avg, w_std = w_stats
    w_avg = w_avg.to(device=device, dtype=torch.float32).reshape(1, -1)
    if w_avg.shape[1] != G.w_dim:
        raise ValueError(f"w_avg has {w_avg.shape[1]} entries, the generator's w_dim is {G.w_dim}")
    return w_avg, w_std


def _check_inputs(G: torch.nn.Module, targets: Tensor, settings: InversionSettings, loss_fn) -> None:
    _check_targets(G, targets)
    if settings.loss == "lpips" and loss_fn is None:
        raise ValueError(
            "settings.loss is 'lpips' but no loss_fn was given; pass a PerceptualDistance or use loss='mse'"
        )
    if settings.loss == "lpips" and getattr(loss_fn, "spatial", False):
        raise ValueError("loss_fn must be a non-spatial PerceptualDistance (spatial=False)")


def _random_sources(
    generator: torch.Generator | Sequence[torch.Generator] | None, n: int, device: torch.device
) -> tuple[torch.Generator | None, list[torch.Generator] | None]:
    """``(generator, per_image)``: one shared source (seed 0 when None), or one per image."""
    if generator is None:
        return torch.Generator(device=device).manual_seed(0), None
    if isinstance(generator, torch.Generator):
        return generator, None
    per_image_rng = list(generator)
    if len(per_image_rng) != n:
        raise ValueError(f"got {len(per_image_rng)} generators for {n} images; give one per image")
    return generator, per_image_rng


def _initial_noises(layers, n, *, device, generator, per_image_rng, init_noises) -> list[Tensor]:
    """Starting noise maps ``[N, 1, r, r]``: copies of ``init_noises`` or N(0, 1) draws."""
    if init_noises is None and per_image_rng is not None:
        return [
            torch.cat([torch.randn((1, 1, r, r), generator=g, device=device) for g in per_image_rng]) for _, r in layers
        ]
    if init_noises is None:
        return [torch.randn((n, 1, r, r), generator=generator, device=device) for _, r in layers]
    if len(init_noises) != len(layers):
        raise ValueError(f"init_noises must hold {len(layers)} maps, got {len(init_noises)}")
    maps = [t.detach().to(device=device, dtype=torch.float32) for t in init_noises]
    for t, (name, r) in zip(maps, layers, strict=True):
        if tuple(t.shape) != (n, 1, r, r):
            raise ValueError(f"init noise for {name} must be [{n}, 1, {r}, {r}], got {tuple(t.shape)}")
    return maps


def noise_views(stacks: Sequence[Tensor], slots: Sequence[tuple[int, int]]) -> list[Tensor]:
    """The ``[N, 1, r, r]`` noise maps, in layer order, as views of the per-resolution stacks."""
    # unbind: the backward is one stack per resolution (narrow's would be one copy per map)
    channels = [t.unbind(1) for t in stacks]
    return [channels[i][c].unsqueeze(1) for i, c in slots]


def stack_noises(maps: Sequence[Tensor], resolutions: Sequence[int]) -> tuple[list[Tensor], list[tuple[int, int]]]:
    """New tensors ``[N, C_r, r, r]``, one per resolution, and each map's (tensor, channel) slot."""
    order = list(dict.fromkeys(resolutions))
    members: dict[int, list[Tensor]] = {r: [] for r in order}
    slots = []
    for t, r in zip(maps, resolutions, strict=True):
        slots.append((order.index(r), len(members[r])))
        members[r].append(t)
    return [torch.cat(members[r], dim=1).contiguous() for r in order], slots


def _w_perturbations(steps, n, w_dim, *, device, generator, per_image_rng) -> Tensor:
    """``[steps + 1, N, w_dim]`` N(0, 1) draws for the perturbed steps, then a row of zeros."""
    if per_image_rng is not None:
        # Per image, so that an image's draws do not depend on its batch.
        draws = torch.stack([torch.randn((steps, w_dim), generator=g, device=device) for g in per_image_rng], dim=1)
    else:
        draws = torch.randn((steps, n, w_dim), generator=generator, device=device)
    return torch.cat([draws, torch.zeros((1, n, w_dim), device=device)])


@contextlib.contextmanager
def _cudnn_autotune(enabled: bool):
    """Let cuDNN time its algorithms for the fixed shapes of the step loop (restored on exit)."""
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = old or enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


def _should_stop(losses: Tensor, done: int, settings: InversionSettings) -> bool:
    """Early-stop test, run every ``patience`` steps (one host sync): True when no image improved."""
    p = settings.early_stop_patience
    if done % p != 0 or done < 2 * p:
        return False
    before = losses[:, : done - p].min(dim=1).values
    recent = losses[:, done - p : done].min(dim=1).values
    improved = (before - recent) > settings.early_stop_tol * before.abs()
    return not bool(improved.any())
