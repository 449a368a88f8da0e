"""Planted benchmark of the adaptation-dynamics indices (:mod:`cleftscore.gan.dynamics`).

The planted set of :mod:`cleftscore.benchmarks.planted` (K generated normal faces, five graded
defects planted in each) is inverted, then adapted for ``dynamics_steps`` steps while the ROI
residual curve is recorded. The ROI is a fixed box over the lower face where the defects are
planted (as the pipeline's mouth/nose region would be), the same for a clean face and its
defective copies. For each fraction ``f`` the report gives Spearman's rho between severity
(0 for the clean faces) and the reappearance step, and the same for the curve area and for the
ordinary residual energy after ``adapt_steps`` steps (the normalized image's).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from cleftscore.benchmarks.planted import PlantedSettings, build_planted_set, environment
from cleftscore.gan.adapt import AdaptSettings, adapt
from cleftscore.gan.dynamics import curve_indices, roi_residual_energy
from cleftscore.gan.invert import InversionSettings, invert
from cleftscore.gan.wstats import w_stats

__all__ = ["DynamicsBenchSettings", "run_dynamics", "FRACTIONS"]

#: Fractions f tried for the reappearance step.
FRACTIONS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class DynamicsBenchSettings:
    """Settings of the dynamics benchmark.

    Parameters
    ----------
    planted : PlantedSettings
        The planted set, inversion and the normalized image's adaptation (``adapt_steps``).
    dynamics_steps : int
        Adaptation steps recorded (paper: the cleft returns beyond about 50).
    roi_box : tuple of float
        ``(top, bottom, left, right)`` of the ROI as fractions of the image side.
    """

    planted: PlantedSettings = PlantedSettings()
    dynamics_steps: int = 300
    roi_box: tuple[float, float, float, float] = (0.45, 1.0, 0.15, 0.85)

    def __post_init__(self) -> None:
        if self.dynamics_steps < max(1, self.planted.adapt_steps):
            raise ValueError("dynamics_steps must be >= 1 and >= planted.adapt_steps")
        t, b, left, r = self.roi_box
        if not (0 <= t < b <= 1 and 0 <= left < r <= 1):
            raise ValueError(f"roi_box must be (top, bottom, left, right) fractions, got {self.roi_box}")


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(set(np.asarray(y).tolist())) < 2:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def _first_at_or_below(curves: np.ndarray, thresholds: np.ndarray, start: int = 0) -> np.ndarray:
    """Per curve, the first step >= ``start`` with a value <= its threshold (the last step if none)."""
    hit = curves[:, start:] <= thresholds[:, None]
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + start, curves.shape[1] - 1)


def _candidate_indices(curves: np.ndarray, severity: np.ndarray, *, k: int, adapt_steps: int) -> dict:
    """Spearman rho with severity of other ways to read "steps until the defect is rebuilt".

    - ``after_normalized_f``: steps until E falls to f of its value at the normalized step (the
      normal parts are rebuilt by then, so what is left is mostly the defect);
    - ``absolute_m``: steps until E falls to m times the clean faces' median E at the normalized
      step (an absolute level; in real use it would need a level measured on normal faces);
    - ``energy_integral``: the mean of E over all steps.
    """
    out: dict[str, float] = {}
    ref = curves[:, adapt_steps]
    for f in (0.25, 0.5, 0.75):
        steps = _first_at_or_below(curves, f * ref, start=adapt_steps)
        out[f"after_normalized_{f}"] = _spearman(steps, severity)
    tau = float(np.median(ref[:k]))
    for m in (1.0, 2.0, 4.0):
        out[f"absolute_{m:g}"] = _spearman(_first_at_or_below(curves, np.full(len(curves), m * tau)), severity)
    out["energy_integral"] = _spearman(curves.mean(axis=1), severity)
    return out


def run_dynamics(
    G: torch.nn.Module,
    *,
    settings: DynamicsBenchSettings,
    device: torch.device | str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Run the benchmark; a JSON-able report with the curves' indices and their correlations."""
    ps_settings = settings.planted
    if ps_settings.loss != "mse":
        raise ValueError("the dynamics benchmark runs without LPIPS (planted.loss='mse')")
    device = torch.device(device) if device is not None else next(G.parameters()).device
    ps = build_planted_set(G.to(device), settings=ps_settings, device=device)
    n, r = ps.targets.shape[0], ps.resolution
    severity = np.concatenate([np.zeros(ps_settings.k, dtype=int), ps.severity])
    t, b, left, rr = (round(f * r) for f in settings.roi_box)
    roi = torch.zeros((n, r, r), device=device)
    roi[:, t:b, left:rr] = 1.0
    covered = float(ps.masks[:, t:b, left:rr].sum() / ps.masks.sum())

    inv_settings = InversionSettings(steps=ps_settings.steps, loss="mse", precision=ps_settings.precision,
                                     optimize_noise=ps_settings.optimize_noise)  # fmt: skip
    t0 = time.perf_counter()
    stats = w_stats(ps.generator, samples=inv_settings.w_avg_samples, device=device)
    inv = invert(ps.generator, ps.targets, settings=inv_settings, loss_fn=None,
                 generator=torch.Generator(device=device).manual_seed(ps_settings.seed + 1),
                 progress=(lambda a, c: progress("invert", a, c)) if progress else None, w_stats=stats)  # fmt: skip
    t_inv = time.perf_counter() - t0
    ad_settings = AdaptSettings(steps=settings.dynamics_steps, lpips_weight=0.0, precision=ps_settings.precision,
                                lr=ps_settings.adapt_lr, freeze=ps_settings.adapt_freeze)  # fmt: skip
    t1 = time.perf_counter()
    ad = adapt(ps.generator, inv.w, inv.noises, ps.targets, settings=ad_settings, loss_fn=None, roi=roi,
               progress=(lambda a, c: progress("adapt", a, c)) if progress else None)  # fmt: skip
    t_ad = time.perf_counter() - t1
    curves = ad.roi_curve
    with torch.no_grad():
        check = roi_residual_energy(ad.images, ps.targets, roi).cpu().numpy()
    assert np.allclose(curves[:, -1], check, rtol=1e-4)

    by_f = {}
    for f in FRACTIONS:
        ix = [curve_indices(c, fraction=f) for c in curves]
        steps = np.array([i.reappearance_step for i in ix])
        by_f[str(f)] = {
            "spearman_rho_step": _spearman(steps, severity),
            "spearman_rho_step_defective_only": _spearman(steps[ps_settings.k :], severity[ps_settings.k :]),
            "censored": int(sum(not i.reached for i in ix)),
            "mean_step_by_severity": {str(s): float(steps[severity == s].mean()) for s in range(6)},
        }
    auc = np.array([curve_indices(c).curve_auc for c in curves])
    a = ps_settings.adapt_steps
    energy_at = curves[:, a]
    candidates = _candidate_indices(curves, severity, k=ps_settings.k, adapt_steps=a)
    best_f = max(FRACTIONS, key=lambda f: (np.nan_to_num(by_f[str(f)]["spearman_rho_step"], nan=-2), -abs(f - 0.5)))
    return {
        "benchmark": "dynamics-planted",
        "settings": dataclasses.asdict(settings),
        "images": n,
        "resolution": r,
        "roi_covers_planted_pixels": covered,
        "curve": "ROI residual energy per step: YCbCr squared difference, 3x3 erosion, mean over the ROI box",
        "seconds_per_image": {"projection": t_inv / n, "adaptation": t_ad / n},
        "by_fraction": by_f,
        "best_fraction": best_f,
        "curve_auc": {
            "spearman_rho": _spearman(auc, severity),
            "spearman_rho_defective_only": _spearman(auc[ps_settings.k :], severity[ps_settings.k :]),
            "mean_by_severity": {str(s): float(auc[severity == s].mean()) for s in range(6)},
        },
        f"energy_at_step_{a}": {
            "spearman_rho": _spearman(energy_at, severity),
            "mean_by_severity": {str(s): float(energy_at[severity == s].mean()) for s in range(6)},
        },
        "candidate_indices": candidates,
        "severity": severity.tolist(),
        "curves": curves.round(5).tolist(),
        "mean_normalised_curve_by_severity": {
            str(s): (curves[severity == s] / curves[severity == s][:, :1])
            .mean(axis=0)[:: max(1, settings.dynamics_steps // 30)]
            .round(4)
            .tolist()
            for s in range(6)
        },
        "environment": environment(device),
    }
