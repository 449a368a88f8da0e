"""Mechanism benchmark: planted anomalies on a generator's own samples.

K samples of a generator are the "normal" faces; synthetic defects of five graded severities
are painted into each (a notch that shifts a narrow vertical band of pixels down, plus a colour
blob of growing radius and opacity, in the lower half) at known masks. Inversion + adaptation
should reconstruct the normal image and leave the defect in the residual: the residual energy
inside the mask should grow with severity, and the residual map should find the mask.

Residual definition (as the pipeline's PSE before erosion): per-pixel squared difference of the
defective input and its reconstruction, summed over the RGB channels, images in [-1, 1].
PSNR uses the [-1, 1] range (peak-to-peak 2): ``10 log10(4 / MSE)``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cleftscore.gan.adapt import AdaptSettings, adapt
from cleftscore.gan.invert import InversionSettings, invert
from cleftscore.gan.wstats import w_stats

__all__ = [
    "PlantedSet",
    "PlantedSettings",
    "build_planted_set",
    "environment",
    "run_planted",
    "plant_defect",
    "auroc",
    "prepare_generator",
    "BenchmarkGenerator",
    "SEVERITIES",
]

logger = logging.getLogger(__name__)

SEVERITIES = (1, 2, 3, 4, 5)
#: Notch shift (pixels at 64 px; scaled with resolution) per severity.
_SHIFTS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6}


@dataclass(frozen=True)
class PlantedSettings:
    """Settings of the planted-anomaly benchmark.

    Parameters
    ----------
    k : int
        Number of normal samples (each gets 5 defective copies).
    steps : int
        Inversion steps.
    adapt_steps : int
        Adaptation steps; metrics are reported after 10, 25 and 50 (those <= adapt_steps) and
        at ``adapt_steps``.
    loss : {"mse", "lpips"}
        Loss of inversion; adaptation uses MSE, plus LPIPS when ``loss="lpips"``.
    truncation_psi : float
        Truncation of the samples.
    noise_strength_scale : float
        Every layer's noise strength is multiplied by this (random golden generators have far
        larger noise strengths than a trained model).
    seed : int
        Seed of the samples, defect placement and inversion randomness.
    precision : str
        Precision of inversion and adaptation.
    optimize_noise : bool
        Optimise the noise maps during inversion (official projector: yes).
    adapt_lr : float
        Adaptation learning rate.
    adapt_freeze : tuple of str
        Synthesis parameters kept fixed during adaptation (see :class:`AdaptSettings`).
    """

    k: int = 3
    steps: int = 300
    adapt_steps: int = 50
    loss: str = "mse"
    truncation_psi: float = 0.7
    noise_strength_scale: float = 0.1
    seed: int = 0
    precision: str = "fp32"
    optimize_noise: bool = True
    adapt_lr: float = 3e-4
    adapt_freeze: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.steps < 1 or self.adapt_steps < 0:
            raise ValueError("steps must be >= 1 and adapt_steps >= 0")
        if self.loss not in ("mse", "lpips"):
            raise ValueError(f"loss must be 'mse' or 'lpips', got {self.loss!r}")
        if self.noise_strength_scale < 0:
            raise ValueError("noise_strength_scale must be >= 0")


class _AffineSynthesis(torch.nn.Module):
    """A synthesis network followed by a fixed ``scale * x + shift`` (no parameters of its own)."""

    def __init__(self, net: torch.nn.Module, *, scale: float, shift: float) -> None:
        super().__init__()
        self.net = net
        self.scale = float(scale)
        self.shift = float(shift)
        self.num_ws = net.num_ws
        self.w_dim = net.w_dim
        self.img_resolution = net.img_resolution

    def noise_layers(self) -> list[tuple[str, int]]:
        return self.net.noise_layers()

    def forward(self, ws: Tensor, **kwargs) -> Tensor:
        return self.net(ws, **kwargs) * self.scale + self.shift


class BenchmarkGenerator(torch.nn.Module):
    """A generator whose images are mapped by a fixed affine map (kept outside the weights).

    Exposes what inversion and adaptation use: ``mapping``, ``synthesis`` (with
    ``noise_layers()``), ``num_ws``, ``z_dim``, ``w_dim``, ``img_resolution`` and ``forward``.
    The affine map is not folded into the toRGB weights: that would change how far an Adam step
    moves the image, i.e. the strength of the adaptation.
    """

    def __init__(self, G: torch.nn.Module, *, scale: float, shift: float) -> None:
        super().__init__()
        self.mapping = G.mapping
        self.synthesis = _AffineSynthesis(G.synthesis, scale=scale, shift=shift)
        self.num_ws, self.z_dim, self.w_dim, self.img_resolution = G.num_ws, G.z_dim, G.w_dim, G.img_resolution

    def forward(self, z: Tensor, c: Tensor | None = None, *, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, **kwargs) -> Tensor:  # fmt: skip
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **kwargs)


def prepare_generator(
    G: torch.nn.Module, *, noise_strength_scale: float, scale: float, shift: float
) -> BenchmarkGenerator:
    """A copy of ``G`` with noise strengths scaled, whose images are ``scale * G + shift``.

    ``G`` itself is not modified.
    """
    G2 = copy.deepcopy(G).float().eval().requires_grad_(False)
    with torch.no_grad():
        for name, p in G2.synthesis.named_parameters():
            if name.endswith("noise_strength"):
                p.mul_(noise_strength_scale)
    return BenchmarkGenerator(G2, scale=scale, shift=shift).eval()


def plant_defect(
    clean: Tensor, severity: int, *, cx: int, cy: int, color: tuple[float, float, float]
) -> tuple[Tensor, Tensor]:
    """Paint a defect of ``severity`` (1..5) into ``clean`` ([3, R, R] in [-1, 1]).

    A notch: a vertical band (width R/16, height R/4) centred at ``(cx, cy)`` shifted down by
    1, 2, 3, 4 or 6 px (at 64 px; scaled with R); plus a colour disc of radius
    ``(1 + severity) * R / 64`` px and uniform opacity ``0.15 * severity`` with a hard edge,
    centred on the notch's bottom end.

    The hard edge matters: a soft-edged (radially fading) blob is a smooth, low-frequency
    pattern of the kind a StyleGAN2 synthesises natively, so inversion and the first adaptation
    steps reproduce it, and the more so the larger it is (measured with the g64 benchmark
    generator, K=3: after 50 adaptation steps only 3 % of a severity-5 soft blob's energy
    survived against 8 % of a severity-4 one, so residual energy fell from severity 3 to 5 and
    Spearman rho dropped to 0.61). Like a cleft, the disc's sharp boundary is what the generator
    cannot make in a few steps.

    Returns
    -------
    defective : Tensor
        ``[3, R, R]``.
    mask : Tensor
        ``[R, R]`` bool, the pixels the defect changed.
    """
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    r = clean.shape[-1]
    f = r / 64
    out = clean.clone()
    shift = max(1, round(_SHIFTS[severity] * f))
    half_w = max(1, round(2 * f))
    half_h = max(2, round(8 * f))
    x0, x1 = max(0, cx - half_w), min(r, cx + half_w)
    y0, y1 = max(0, cy - half_h), min(r, cy + half_h)
    band = clean[:, y0:y1, x0:x1]
    # Shift down: rows y0+shift..y1 take rows y0..y1-shift; the top rows repeat the first row.
    shifted = torch.cat([band[:, :1].expand(-1, shift, -1), band[:, : band.shape[1] - shift]], dim=1)
    out[:, y0:y1, x0:x1] = shifted
    yy, xx = torch.meshgrid(torch.arange(r, dtype=torch.float32), torch.arange(r, dtype=torch.float32), indexing="ij")
    radius = (1 + severity) * f
    dist = ((yy - y1) ** 2 + (xx - cx) ** 2).sqrt()
    alpha = (0.15 * severity) * (dist < radius).to(out.dtype)
    col = torch.tensor(color, dtype=out.dtype).reshape(3, 1, 1)
    out = out * (1 - alpha) + col * alpha
    mask = (out - clean).square().sum(dim=0) > 1e-6
    return out, mask


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (rank-based, ties averaged)."""
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _psnr(a: Tensor, b: Tensor) -> np.ndarray:
    mse = (a - b).square().mean(dim=(1, 2, 3)).double().cpu().numpy()
    return 10 * np.log10(4.0 / np.maximum(mse, 1e-20))


def _stage_metrics(
    recon: Tensor, clean: Tensor, defective: Tensor, masks: Tensor, clean_of: np.ndarray, severity: np.ndarray, k: int
) -> dict:
    """Metrics for one stage; the first k rows of ``recon`` are the clean inputs."""
    from scipy.stats import spearmanr

    psnr_clean = _psnr(recon[:k], clean)
    rec_d = recon[k:]
    resid = (defective - rec_d).square().sum(dim=1).cpu().numpy()  # [M, R, R]
    planted = (defective - clean[clean_of]).square().sum(dim=1).cpu().numpy()
    m = masks.cpu().numpy()
    energy = np.array([resid[i][m[i]].sum() for i in range(len(m))])
    surviving = np.array([resid[i][m[i]].sum() / max(planted[i][m[i]].sum(), 1e-20) for i in range(len(m))])
    aucs = np.array([auroc(resid[i], m[i]) for i in range(len(m))])
    rho = float(spearmanr(severity, energy).statistic) if len(set(severity.tolist())) > 1 else float("nan")
    return {
        "psnr_clean_db": float(psnr_clean.mean()),
        "psnr_clean_db_each": psnr_clean.round(3).tolist(),
        "spearman_rho": rho,
        "pixel_auroc_mean": float(aucs.mean()),
        "pixel_auroc_by_severity": {str(s): float(aucs[severity == s].mean()) for s in SEVERITIES},
        "mask_energy_by_severity": {str(s): float(energy[severity == s].mean()) for s in SEVERITIES},
        "surviving_fraction_by_severity": {str(s): float(surviving[severity == s].mean()) for s in SEVERITIES},
        "surviving_fraction_mean": float(surviving.mean()),
    }


@dataclass(frozen=True)
class PlantedSet:
    """The benchmark's images: K clean samples of a prepared generator and their planted copies.

    Attributes
    ----------
    generator : BenchmarkGenerator
        The prepared copy whose images lie in [-1, 1].
    clean : Tensor
        ``[K, 3, R, R]``.
    defective : Tensor
        ``[5K, 3, R, R]``, five severities per clean sample, in order.
    masks : Tensor
        ``[5K, R, R]`` bool, the pixels each defect changed.
    clean_of, severity : numpy.ndarray
        ``[5K]``: the clean sample each defective image came from, and its severity (1..5).
    targets : Tensor
        ``[6K, 3, R, R]``: ``clean`` then ``defective``.
    scale, shift : float
        The affine map of the raw samples into [-1, 1].
    """

    generator: BenchmarkGenerator
    clean: Tensor
    defective: Tensor
    masks: Tensor
    clean_of: np.ndarray
    severity: np.ndarray
    targets: Tensor
    scale: float
    shift: float

    @property
    def resolution(self) -> int:
        return int(self.clean.shape[-1])


def build_planted_set(G: torch.nn.Module, *, settings: PlantedSettings, device: torch.device) -> PlantedSet:
    """Sample K normal images from a prepared copy of ``G`` and plant five severities in each."""
    G = G.to(device)
    gen = torch.Generator(device="cpu").manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    k = settings.k
    r = G.img_resolution

    # Samples in raw units, then one affine map for all of them into [-1, 1], folded into G.
    z = torch.randn((k, G.z_dim), generator=gen).to(device)
    G_n = prepare_generator(G, noise_strength_scale=settings.noise_strength_scale, scale=1.0, shift=0.0)
    with torch.no_grad():
        raw = G_n(z, truncation_psi=settings.truncation_psi, noise_mode="const", force_fp32=True)
    lo, hi = float(raw.min()), float(raw.max())
    scale = 2.0 / max(hi - lo, 1e-12)
    shift = -1.0 - lo * scale
    Gb = prepare_generator(G, noise_strength_scale=settings.noise_strength_scale, scale=scale, shift=shift)
    with torch.no_grad():
        clean = Gb(z, truncation_psi=settings.truncation_psi, noise_mode="const", force_fp32=True).float()

    defective, masks, clean_of, severity = [], [], [], []
    clean_cpu = clean.cpu()
    for i in range(k):
        # One place per sample (lower half) and a colour opposite to the local mean colour, so
        # that the five severities of a sample differ only in size and strength.
        cx = int(rng.integers(round(0.3 * r), round(0.7 * r)))
        cy = int(rng.integers(round(0.6 * r), round(0.72 * r)))
        patch = clean_cpu[i, :, max(0, cy - r // 8) : cy + r // 8, max(0, cx - r // 8) : cx + r // 8]
        color = tuple(-0.9 if float(m) > 0 else 0.9 for m in patch.mean(dim=(1, 2)))
        for s in SEVERITIES:
            d, m = plant_defect(clean_cpu[i], s, cx=cx, cy=cy, color=color)
            defective.append(d)
            masks.append(m)
            clean_of.append(i)
            severity.append(s)
    defective_t = torch.stack(defective).to(device)
    masks_t = torch.stack(masks)
    clean_of_a = np.array(clean_of)
    severity_a = np.array(severity)
    targets = torch.cat([clean, defective_t])
    return PlantedSet(Gb, clean, defective_t, masks_t, clean_of_a, severity_a, targets, scale, shift)


def run_planted(
    G: torch.nn.Module,
    *,
    settings: PlantedSettings,
    loss_fn: torch.nn.Module | None = None,
    device: torch.device | str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Run the planted-anomaly benchmark and return a JSON-able report.

    Parameters
    ----------
    G : Generator
        The generator (not modified; a prepared copy is used).
    settings : PlantedSettings
        Sizes, steps, loss and seed.
    loss_fn : PerceptualDistance or None
        Needed when ``settings.loss == "lpips"``.
    device : torch.device, str or None
        Where to run (default: ``G``'s device).
    progress : callable or None
        ``progress(stage, step, total)`` with stage ``"invert"`` or ``"adapt"``.

    Returns
    -------
    dict
        Settings, environment, timings (s/image) and metrics after projection and after each
        reported adaptation step.
    """
    if settings.loss == "lpips" and loss_fn is None:
        raise ValueError("settings.loss='lpips' needs a loss_fn (PerceptualDistance with real VGG16 weights)")
    device = torch.device(device) if device is not None else next(G.parameters()).device
    ps = build_planted_set(G, settings=settings, device=device)
    Gb, clean, defective_t, masks_t = ps.generator, ps.clean, ps.defective, ps.masks
    clean_of_a, severity_a, targets, scale, shift = ps.clean_of, ps.severity, ps.targets, ps.scale, ps.shift
    k, r, n_img = settings.k, ps.resolution, ps.targets.shape[0]

    inv_settings = InversionSettings(
        steps=settings.steps, loss=settings.loss, precision=settings.precision, optimize_noise=settings.optimize_noise
    )
    t0 = time.perf_counter()
    stats = w_stats(Gb, samples=inv_settings.w_avg_samples, device=device)
    inv_gen = torch.Generator(device=device).manual_seed(settings.seed + 1)
    prog_i = (lambda a, b: progress("invert", a, b)) if progress else None
    inv = invert(Gb, targets, settings=inv_settings, loss_fn=loss_fn, generator=inv_gen, progress=prog_i, w_stats=stats)
    t_inv = time.perf_counter() - t0

    report_steps = sorted({s for s in (10, 25, 50) if s <= settings.adapt_steps} | {settings.adapt_steps} - {0})
    stages = {"projection": _stage_metrics(inv.images, clean, defective_t, masks_t, clean_of_a, severity_a, k)}
    t_ad = 0.0
    if settings.adapt_steps > 0:
        ad_settings = AdaptSettings(
            steps=settings.adapt_steps,
            lpips_weight=1.0 if settings.loss == "lpips" else 0.0,
            snapshot_steps=tuple(report_steps),
            precision=settings.precision,
            lr=settings.adapt_lr,
            freeze=settings.adapt_freeze,
        )
        prog_a = (lambda a, b: progress("adapt", a, b)) if progress else None
        t1 = time.perf_counter()
        ad = adapt(Gb, inv.w, inv.noises, targets, settings=ad_settings, loss_fn=loss_fn, progress=prog_a)
        t_ad = time.perf_counter() - t1
        for s in report_steps:
            stages[f"adapt_{s}"] = _stage_metrics(
                ad.snapshots[s], clean, defective_t, masks_t, clean_of_a, severity_a, k
            )
    final = stages[f"adapt_{report_steps[-1]}"] if settings.adapt_steps > 0 else stages["projection"]
    return {
        "benchmark": "planted",
        "settings": dataclasses.asdict(settings),
        "residual": "sum over RGB channels of squared difference, images in [-1, 1], no erosion",
        "psnr_range": "[-1, 1] (peak-to-peak 2)",
        "images": n_img,
        "resolution": r,
        "affine_to_unit_range": {"scale": scale, "shift": shift},
        "seconds_per_image": {
            "projection": t_inv / n_img,
            "adaptation": t_ad / n_img,
            "total": (t_inv + t_ad) / n_img,
        },
        "stages": stages,
        "final": {
            "spearman_rho": final["spearman_rho"],
            "pixel_auroc_mean": final["pixel_auroc_mean"],
            "psnr_clean_db_projection": stages["projection"]["psnr_clean_db"],
        },
        "environment": environment(device),
    }


def environment(device: torch.device) -> dict[str, object]:
    """Where a benchmark ran: torch version, device, threads, Python, machine."""
    return {
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
