"""Model adaptation ("pivotal tuning", paper Alg. 2): fine-tune the generator on each photo.

With w and the noise maps of an inversion frozen, every synthesis weight is trained with Adam
so that the synthesis reproduces the photo (loss = ``lpips_weight`` * LPIPS + ``l2_weight`` *
MSE). Few steps (50) reproduce the normal face parts, which the generator models well, and not
yet the cleft, which it does not; the normalized face is the result. Snapshots at chosen steps
show the cleft returning (paper Fig. 8).

Each photo gets its own copy of the weights. The batched engine stacks the weights of N photos
along a new leading axis and runs the synthesis network with ``torch.func.functional_call``
under ``torch.func.vmap``; Adam is elementwise, so this equals N separate runs. The caller's
generator is never modified. When the batch does not fit in GPU memory, the photos are run one
at a time.

References
----------
.. [1] D. Roich, R. Mokady, A. H. Bermano, D. Cohen-Or, "Pivotal Tuning for Latent-based
   Editing of Real Images", ACM TOG 2022.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from cleftscore.gan.invert import PRECISIONS, autocast_context, resolve_precision
from cleftscore.gan.steps import graph_planned, run_steps

__all__ = ["AdaptSettings", "AdaptResult", "adapt"]

logger = logging.getLogger(__name__)

ENGINES = ("auto", "vmap", "loop")


@dataclass(frozen=True)
class AdaptSettings:
    """Knobs of the adaptation.

    Parameters
    ----------
    steps : int
        Adam steps (paper: 50; more steps start to reconstruct the cleft itself).
    lr : float
        Adam learning rate (3e-4, as pivotal tuning).
    l2_weight, lpips_weight : float
        Weights of the mean squared error (on [-1, 1] images, full resolution) and of LPIPS.
    snapshot_steps : tuple of int
        Steps (0 = before any update, ``steps`` = the final image) at which to keep the image.
    precision : {"fp32", "bf16", "fp16", "auto"}
        As in :class:`cleftscore.gan.invert.InversionSettings`.
    freeze : tuple of str
        Synthesis parameters kept fixed, by name suffix (e.g. ``("noise_strength",)``); all
        others are trained. Default: none (all generator weights, as pivotal tuning).
    engine : {"auto", "vmap", "loop"}
        ``"vmap"``: all photos at once with stacked per-photo weights; ``"loop"``: one photo at a
        time on a deep copy of the synthesis network; ``"auto"``: vmap, then loop if the GPU runs
        out of memory. Results agree to float rounding.
    cuda_graph : bool
        On CUDA, replay the step as a CUDA graph after a few warm-up steps (same numbers).
        Not with snapshots before the last step, which need the host in the loop.
    """

    steps: int = 50
    lr: float = 3e-4
    l2_weight: float = 1.0
    lpips_weight: float = 1.0
    snapshot_steps: tuple[int, ...] = field(default=())
    precision: str = "fp32"
    freeze: tuple[str, ...] = ()
    engine: str = "auto"
    cuda_graph: bool = True

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.l2_weight < 0 or self.lpips_weight < 0 or self.l2_weight + self.lpips_weight == 0:
            raise ValueError("l2_weight and lpips_weight must be >= 0 and not both 0")
        object.__setattr__(self, "snapshot_steps", tuple(int(s) for s in self.snapshot_steps))
        object.__setattr__(self, "freeze", tuple(str(s) for s in self.freeze))
        bad = [s for s in self.snapshot_steps if not 0 <= s <= self.steps]
        if bad:
            raise ValueError(f"snapshot_steps must lie in 0..{self.steps} (steps), got {bad}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AdaptResult:
    """Output of :func:`adapt` for N photos.

    Attributes
    ----------
    images : Tensor
        ``[N, 3, R, R]`` float32 normalized images after ``steps`` updates, detached, unclamped.
    snapshots : dict of int to Tensor
        Step -> ``[N, 3, R, R]`` image after that many updates.
    losses : numpy.ndarray
        ``[N, steps]`` float32 per-photo loss before each update.
    step_mode : {"eager", "cuda_graph"}
        How the steps ran after the warm-up: ordinary calls, or replays of a CUDA graph.
    roi_curve : numpy.ndarray or None
        ``[N, steps + 1]`` float32 ROI residual energy of the image each step rendered (before
        its update) and, last, of the final image; only when :func:`adapt` was given ``roi``
        (see :mod:`cleftscore.gan.dynamics`).
    """

    images: Tensor
    snapshots: dict[int, Tensor]
    losses: np.ndarray
    step_mode: str = "eager"
    roi_curve: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.ndim != 4:
            raise ValueError(f"images must be [N, 3, R, R], got {tuple(self.images.shape)}")
        if self.losses.ndim != 2 or self.losses.shape[0] != n:
            raise ValueError(f"losses must be [{n}, steps], got {self.losses.shape}")
        for s, t in self.snapshots.items():
            if t.shape != self.images.shape:
                raise ValueError(f"snapshot {s} has shape {tuple(t.shape)}, expected {tuple(self.images.shape)}")
        if self.roi_curve is not None and self.roi_curve.shape != (n, self.losses.shape[1] + 1):
            raise ValueError(f"roi_curve must be [{n}, steps + 1], got {self.roi_curve.shape}")


def adapt(
    G: torch.nn.Module,
    w: Tensor,
    noises: Sequence[Tensor],
    targets: Tensor,
    *,
    settings: AdaptSettings,
    loss_fn: torch.nn.Module | None,
    progress: Callable[[int, int], None] | None = None,
    roi: Tensor | None = None,
) -> AdaptResult:
    """Fine-tune a private copy of ``G``'s synthesis weights per photo (pivotal tuning).

    Parameters
    ----------
    G : Generator
        The generator (never modified: neither weights, gradients nor flags).
    w : Tensor
        ``[N, w_dim]`` or ``[N, num_ws, w_dim]`` pivots (from inversion); frozen.
    noises : sequence of Tensor
        One ``[N, 1, r, r]`` map per noise layer (from inversion); frozen.
    targets : Tensor
        ``[N, 3, R, R]`` float photos in [-1, 1].
    settings : AdaptSettings
        Steps, learning rate, loss weights, snapshots, precision, engine.
    loss_fn : PerceptualDistance or None
        Non-spatial LPIPS; required when ``settings.lpips_weight > 0``.
    progress : callable or None
        ``progress(step, total)`` after each step (for the vmap engine; per photo for the loop).
    roi : Tensor or None
        ``[N, R, R]`` ROI weights in [0, 1]: record the ROI residual energy at every step
        (``AdaptResult.roi_curve``), on the device, from the image each step renders anyway.

    Returns
    -------
    AdaptResult
        Normalized images, snapshots and loss curves.

    Raises
    ------
    ValueError
        On inconsistent shapes or an LPIPS weight without a loss function.
    """
    if settings.lpips_weight > 0 and loss_fn is None:
        raise ValueError("settings.lpips_weight > 0 needs a loss_fn (PerceptualDistance); or set lpips_weight=0")
    r = G.img_resolution
    if (
        targets.ndim != 4
        or targets.shape[1] != 3
        or tuple(targets.shape[2:]) != (r, r)
        or not targets.is_floating_point()
    ):
        raise ValueError(
            f"targets must be float [N, 3, {r}, {r}] in [-1, 1], got {tuple(targets.shape)} {targets.dtype}"
        )
    n = targets.shape[0]
    device = targets.device
    if w.ndim == 2:
        w = w.unsqueeze(1).expand(-1, G.num_ws, -1)
    if w.ndim != 3 or tuple(w.shape) != (n, G.num_ws, G.w_dim):
        raise ValueError(f"w must be [{n}, {G.w_dim}] or [{n}, {G.num_ws}, {G.w_dim}], got {tuple(w.shape)}")
    layers = G.synthesis.noise_layers()
    if len(noises) != len(layers):
        raise ValueError(f"noises must hold {len(layers)} maps, got {len(noises)}")
    for t, (name, res) in zip(noises, layers, strict=True):
        if tuple(t.shape) != (n, 1, res, res):
            raise ValueError(f"noise map for {name} must be [{n}, 1, {res}, {res}], got {tuple(t.shape)}")
    ws = w.detach().to(device=device, dtype=torch.float32)
    noises = [t.detach().to(device=device, dtype=torch.float32) for t in noises]
    targets = targets.detach().float()
    if roi is not None:
        roi = roi.detach().to(device=device, dtype=torch.float32).reshape(n, r, r)
        if not bool((roi.sum(dim=(1, 2)) > 0).all()):
            raise ValueError("every photo's roi needs at least one selected pixel")

    engine = settings.engine
    if engine in ("auto", "vmap"):
        try:
            return _adapt_vmap(G, ws, noises, targets, settings=settings, loss_fn=loss_fn, progress=progress, roi=roi)
        except torch.cuda.OutOfMemoryError:
            if engine == "vmap" or n == 1:
                raise
            logger.warning("adaptation of %d photos at once ran out of GPU memory; running them one by one", n)
            torch.cuda.empty_cache()
    parts = [
        _adapt_copy(
            G,
            ws[i : i + 1],
            [t[i : i + 1] for t in noises],
            targets[i : i + 1],
            settings=settings,
            loss_fn=loss_fn,
            progress=progress,
            roi=None if roi is None else roi[i : i + 1],
        )
        for i in range(n)
    ]
    return AdaptResult(
        images=torch.cat([p.images for p in parts]),
        snapshots={s: torch.cat([p.snapshots[s] for p in parts]) for s in settings.snapshot_steps},
        losses=np.concatenate([p.losses for p in parts]),
        step_mode=parts[0].step_mode if parts else "eager",
        roi_curve=None if roi is None else np.concatenate([p.roi_curve for p in parts]),
    )


def _loss(
    images: Tensor, targets: Tensor, target_features: list[Tensor] | None, settings: AdaptSettings, loss_fn
) -> Tensor:
    """Per-photo loss ``[N]``."""
    total = settings.l2_weight * (images.float() - targets).square().mean(dim=(1, 2, 3))
    if settings.lpips_weight > 0:
        total = total + settings.lpips_weight * loss_fn.distance_to_features(target_features, images).float()
    return total


def _target_features(targets: Tensor, settings: AdaptSettings, loss_fn) -> list[Tensor] | None:
    if settings.lpips_weight <= 0:
        return None
    with torch.no_grad():
        return [f.detach() for f in loss_fn.features(targets)]


def _train(
    synthesize: Callable[[], Tensor],
    plist: list[Tensor],
    opt: torch.optim.Optimizer,
    targets: Tensor,
    *,
    settings: AdaptSettings,
    loss_fn: torch.nn.Module | None,
    amp_dtype: torch.dtype | None,
    progress: Callable[[int, int], None] | None,
    roi: Tensor | None = None,
) -> tuple[Tensor, dict[int, Tensor], str, Tensor | None]:
    """The step loop both engines share: per-photo losses [N, steps], snapshots and the step mode.

    The step keeps its changing state on the device (a step counter indexes the loss table), so
    it can be replayed as a CUDA graph; snapshots before the last step need the host in the loop
    and keep the steps ordinary. The ROI residual curve is written on the device like the
    losses (no host sync per step); its last entry, for the final image, is left to the caller.
    """
    from cleftscore.gan.dynamics import roi_residual_energy, ycbcr_matrix

    device = targets.device
    target_features = _target_features(targets, settings, loss_fn)
    ycbcr = None if roi is None else ycbcr_matrix(device)
    losses = torch.zeros((targets.shape[0], settings.steps), device=device)
    curve = None if roi is None else torch.zeros((targets.shape[0], settings.steps + 1), device=device)
    k = torch.zeros((1,), dtype=torch.long, device=device)
    snapshots: dict[int, Tensor] = {}
    wanted = [s for s in settings.snapshot_steps if s < settings.steps]
    done = [0]

    def step() -> None:
        with autocast_context(device, amp_dtype):
            images = synthesize()
            per = _loss(images, targets, target_features, settings, loss_fn)
        if done[0] in wanted:
            snapshots[done[0]] = images.detach().float().clone()
        # Each photo's loss depends only on its own weights, so the sum gives per-photo grads.
        grads = torch.autograd.grad(per.sum(), plist)
        for p, g in zip(plist, grads, strict=True):
            p.grad = g
        opt.step()
        with torch.no_grad():
            losses.index_copy_(1, k, per.detach().unsqueeze(1))
            if curve is not None:
                curve.index_copy_(1, k, roi_residual_energy(images.detach(), targets, roi, matrix=ycbcr).unsqueeze(1))
            k.add_(1)

    def count(step_done: int, total: int) -> None:
        done[0] = step_done
        if progress is not None:
            progress(step_done, total)

    _, mode = run_steps(step, settings.steps, device=device, cuda_graph=_graph_wanted(settings), progress=count)
    return losses, snapshots, mode, curve


def _graph_wanted(settings: AdaptSettings) -> bool:
    """CUDA graphs unless a snapshot before the last step needs the host inside the loop."""
    return settings.cuda_graph and not any(s < settings.steps for s in settings.snapshot_steps)


def _adam(params: list[Tensor], settings: AdaptSettings, device: torch.device) -> torch.optim.Optimizer:
    """Adam over per-photo weights; capturable when a CUDA graph will replay its step.

    Not the fused CUDA Adam: it rejects some of the gradients vmap produces (layout).
    """
    capturable = graph_planned(device, _graph_wanted(settings), settings.steps)
    return torch.optim.Adam(params, lr=settings.lr, betas=(0.9, 0.999), foreach=True, capturable=capturable)


def _result(final: Tensor, trained: tuple[Tensor, dict[int, Tensor], str, Tensor | None], settings: AdaptSettings,
            targets: Tensor, roi: Tensor | None) -> AdaptResult:  # fmt: skip
    """Package the final images; the last step's snapshot is the final image itself."""
    from cleftscore.gan.dynamics import roi_residual_energy

    losses, snapshots, mode, curve = trained
    if settings.steps in settings.snapshot_steps:
        snapshots[settings.steps] = final.clone()
    if curve is not None:
        curve[:, settings.steps] = roi_residual_energy(final, targets, roi)
    return AdaptResult(
        images=final,
        snapshots={s: snapshots[s] for s in sorted(settings.snapshot_steps)},
        losses=losses.cpu().numpy(),
        step_mode=mode,
        roi_curve=None if curve is None else curve.cpu().numpy(),
    )


def _adapt_vmap(G, ws, noises, targets, *, settings, loss_fn, progress, roi=None) -> AdaptResult:
    """All photos at once: per-photo weights stacked on axis 0, synthesis under vmap."""
    from torch.func import functional_call, vmap

    device = targets.device
    n = targets.shape[0]
    force_fp32, amp_dtype = resolve_precision(settings.precision, device)
    synth = G.synthesis
    was_training = synth.training
    synth.eval()  # fused modulated convolutions; restored below
    try:
        params = {
            name: p.detach().float().unsqueeze(0).repeat(n, *([1] * p.ndim)).requires_grad_(True)
            for name, p in synth.named_parameters()
            if not name.endswith(settings.freeze or ("\0",))
        }
        buffers = dict(synth.named_buffers())
        buffers.update({name: p.detach() for name, p in synth.named_parameters() if name not in params})
        opt = _adam(list(params.values()), settings, device)

        def one(p: dict[str, Tensor], w_i: Tensor, noise_i: list[Tensor]) -> Tensor:
            out = functional_call(
                synth,
                (p, buffers),
                (w_i.unsqueeze(0),),
                {"noise_mode": "const", "noise": [t.unsqueeze(0) for t in noise_i], "force_fp32": force_fp32},
            )
            return out.squeeze(0)

        run = vmap(one, in_dims=(0, 0, 0))
        trained = _train(
            lambda: run(params, ws, noises), list(params.values()), opt, targets,
            settings=settings, loss_fn=loss_fn, amp_dtype=amp_dtype, progress=progress, roi=roi,
        )  # fmt: skip
        with torch.no_grad():
            force_fp32 = True  # the final image is always synthesised in float32
            final = run(params, ws, noises).float()
    finally:
        synth.train(was_training)
    return _result(final, trained, settings, targets, roi)


def _adapt_copy(G, ws, noises, targets, *, settings, loss_fn, progress, roi=None) -> AdaptResult:
    """Plain training of a deep copy of the synthesis network (any batch size; used per photo)."""
    device = targets.device
    force_fp32, amp_dtype = resolve_precision(settings.precision, device)
    synth = copy.deepcopy(G.synthesis).float().eval().requires_grad_(True)
    for name, p in synth.named_parameters():
        if settings.freeze and name.endswith(settings.freeze):
            p.requires_grad_(False)
    plist = [p for p in synth.parameters() if p.requires_grad]
    opt = _adam(plist, settings, device)
    trained = _train(
        lambda: synth(ws, noise_mode="const", noise=noises, force_fp32=force_fp32), plist, opt, targets,
        settings=settings, loss_fn=loss_fn, amp_dtype=amp_dtype, progress=progress, roi=roi,
    )  # fmt: skip
    with torch.no_grad():
        final = synth(ws, noise_mode="const", noise=noises, force_fp32=True).float()
    return _result(final, trained, settings, targets, roi)
