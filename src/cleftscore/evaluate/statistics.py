"""Correlation of scores with ratings: Pearson and Spearman with percentile-bootstrap intervals.

Sign convention
---------------
A cleftscore score S is *higher for a more normal face*. With the paper's rating scale
(1 = most abnormal, 7 = normal; ``higher_is="normal"``) a method that agrees with the raters has a
*positive* correlation. When the ratings run the other way (``higher_is="abnormal"``, e.g. a
severity grade), the ratings are negated before correlating, so a positive r still means
agreement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["HIGHER_IS", "Correlation", "HigherIs", "check_higher_is", "correlate"]

HigherIs = Literal["normal", "abnormal"]
#: What a higher rating can mean.
HIGHER_IS: tuple[str, ...] = ("normal", "abnormal")


def check_higher_is(higher_is: str) -> None:
    """Raise ``ValueError`` unless ``higher_is`` is ``"normal"`` or ``"abnormal"``."""
    if higher_is not in HIGHER_IS:
        raise ValueError(f"higher_is must be 'normal' or 'abnormal', got {higher_is!r}")


@dataclass(frozen=True)
class Correlation:
    """Pearson and Spearman correlation with percentile-bootstrap confidence intervals.

    Attributes
    ----------
    pearson_r, spearman_rho : float
        Correlation coefficients, oriented so that positive = the scores agree with the raters
        (see the module's sign convention).
    pearson_ci, spearman_ci : (float, float)
        Lower and upper bounds of the bootstrap interval (NaN when ``n_boot`` was 0).
    pearson_p, spearman_p : float
        Two-sided p-values of :func:`scipy.stats.pearsonr` / :func:`scipy.stats.spearmanr`.
    n : int
        Number of photos.
    """

    pearson_r: float
    pearson_ci: tuple[float, float]
    pearson_p: float
    spearman_rho: float
    spearman_ci: tuple[float, float]
    spearman_p: float
    n: int

    def __post_init__(self) -> None:
        if self.n < 3:
            raise ValueError(f"a correlation needs n >= 3, got n={self.n}")
        for name in ("pearson_ci", "spearman_ci"):
            value = getattr(self, name)
            if not (isinstance(value, tuple) and len(value) == 2):
                raise ValueError(f"{name} must be a (low, high) tuple, got {value!r}")


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of two (B, n) arrays; NaN where a row is constant."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    num = np.einsum("ij,ij->i", xc, yc)
    den = np.sqrt(np.einsum("ij,ij->i", xc, xc) * np.einsum("ij,ij->i", yc, yc))
    out = np.full(x.shape[0], np.nan)
    ok = den > 1e-12 * (np.abs(num) + 1.0) if x.size else np.zeros(0, dtype=bool)
    np.divide(num, den, out=out, where=ok)
    return np.clip(out, -1.0, 1.0)


def _interval(samples: np.ndarray, ci: float) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return (math.nan, math.nan)
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.percentile(samples, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return (float(lo), float(hi))


def _pairs(
    scores: Sequence[float] | np.ndarray, ratings: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and ratings as float64 arrays, checked: 1-D, equal length >= 3, finite, not constant."""
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(ratings, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"scores and ratings must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    n = int(x.shape[0])
    if n < 3:
        raise ValueError(f"a correlation needs at least 3 rated photos, got {n}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("scores and ratings must be finite numbers (found NaN or infinity)")
    if np.ptp(x) == 0.0:
        raise ValueError(f"all {n} scores are equal ({x[0]:.6g}); the correlation is undefined")
    if np.ptp(y) == 0.0:
        raise ValueError(f"all {n} ratings are equal ({y[0]:.6g}); the correlation is undefined")
    return x, y


def correlate(
    scores: Sequence[float] | np.ndarray,
    ratings: Sequence[float] | np.ndarray,
    *,
    higher_is: HigherIs = "normal",
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int | np.random.Generator = 0,
) -> Correlation:
    """Pearson r and Spearman rho between scores and ratings, with bootstrap intervals.

    Parameters
    ----------
    scores : (n,) array_like of float
        Machine scores, higher = more normal (cleftscore's S).
    ratings : (n,) array_like of float
        Human ratings in the same order.
    higher_is : {"normal", "abnormal"}
        What a higher *rating* means. ``"normal"`` (the paper: 1 = most abnormal, 7 = normal)
        correlates as is; ``"abnormal"`` negates the ratings first, so that in both cases a
        positive coefficient means the scores agree with the raters.
    n_boot : int
        Bootstrap resamples (photos drawn with replacement); 0 skips the intervals (NaN).
    ci : float
        Confidence level of the percentile intervals, in (0, 1).
    seed : int or numpy.random.Generator
        Seed of (or the) generator that draws the resamples; the same seed gives the same
        intervals.

    Returns
    -------
    Correlation

    Raises
    ------
    ValueError
        Fewer than 3 pairs, arrays of different length or not 1-D, non-finite values, constant
        scores or ratings (correlation undefined), an unknown ``higher_is``, ``n_boot < 0`` or
        ``ci`` outside (0, 1).

    Notes
    -----
    Percentile bootstrap: the interval is the ``(1 - ci) / 2`` and ``(1 + ci) / 2`` quantiles of
    the coefficient over the resamples; Spearman's rho of a resample is Pearson's r of its
    average ranks. Resamples in which scores or ratings are constant are left out.
    """
    check_higher_is(higher_is)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be a confidence level in (0, 1), e.g. 0.95; got {ci!r}")
    x, y = _pairs(scores, ratings)
    n = int(x.shape[0])
    if higher_is == "abnormal":
        y = -y

    from scipy import stats

    pr = stats.pearsonr(x, y)
    sr = stats.spearmanr(x, y)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if n_boot > 0:
        idx = rng.integers(0, n, size=(n_boot, n))
        xb, yb = x[idx], y[idx]
        boot_r = _rowwise_pearson(xb, yb)
        boot_rho = _rowwise_pearson(stats.rankdata(xb, axis=1), stats.rankdata(yb, axis=1))
        pearson_ci, spearman_ci = _interval(boot_r, ci), _interval(boot_rho, ci)
    else:
        pearson_ci = spearman_ci = (math.nan, math.nan)
    return Correlation(
        pearson_r=float(pr.statistic),
        pearson_ci=pearson_ci,
        pearson_p=float(pr.pvalue),
        spearman_rho=float(sr.statistic),
        spearman_ci=spearman_ci,
        spearman_p=float(sr.pvalue),
        n=n,
    )
