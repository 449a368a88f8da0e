"""How far human raters agree with each other and with themselves: the ceiling of any score.

A panel's ratings arrive as a raters x photos matrix (:class:`RatingMatrix`, NaN = not rated).
From it this module reports

- each photo's mean rating with a t confidence interval and its number of raters
  (:func:`photo_means`);
- the intraclass correlations of Shrout and Fleiss (1979) with their 95% intervals, computed by
  :func:`pingouin.intraclass_corr` (:func:`icc`): ICC(2,1) (two-way random effects, absolute
  agreement, one rater) and ICC(2,k) (the same for the mean of the k raters), beside ICC(1,1),
  ICC(3,1) and ICC(3,k);
- Krippendorff's alpha for ordinal data, which tolerates missing ratings
  (:func:`ordinal_alpha`, by the ``krippendorff`` package);
- intra-rater agreement of a rater's first and repeated ratings of the same photos, as a weighted
  Cohen's kappa (:func:`repeat_kappa`, by :func:`sklearn.metrics.cohen_kappa_score`);
- each rater against the mean of all the others, so raters far from the panel can be named
  (:func:`rater_agreement`);
- the reliability ceiling: no score can correlate with the panel mean better than the square root
  of the mean's own reliability (:func:`correlation_ceiling`).

Only the bookkeeping around them is written here; the statistics come from those libraries.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "Estimate",
    "IccResult",
    "PhotoMean",
    "RaterAgreement",
    "RatingMatrix",
    "correlation_ceiling",
    "icc",
    "ordinal_alpha",
    "photo_means",
    "rater_agreement",
    "rating_matrix",
    "repeat_kappa",
]

KappaWeights = Literal["linear", "quadratic"]


@dataclass(frozen=True)
class RatingMatrix:
    """Ratings of a panel: one row per rater, one column per photo, NaN where a rater gave none.

    Attributes
    ----------
    raters : tuple of str
        Rater codes, in row order.
    photos : tuple of str
        Photo keys, in column order.
    values : ndarray, shape (n_raters, n_photos), float64
    """

    raters: tuple[str, ...]
    photos: tuple[str, ...]
    values: np.ndarray

    def __post_init__(self) -> None:
        v = self.values
        if not isinstance(v, np.ndarray) or v.dtype != np.float64 or v.ndim != 2:
            raise ValueError("values must be a 2-D float64 array (raters x photos)")
        if v.shape != (len(self.raters), len(self.photos)):
            raise ValueError(f"values has shape {v.shape}, expected ({len(self.raters)}, {len(self.photos)})")
        if len(set(self.raters)) != len(self.raters) or len(set(self.photos)) != len(self.photos):
            raise ValueError("rater codes and photo keys must be unique")
        if np.isinf(v).any():
            raise ValueError("ratings must be finite (NaN marks a missing rating)")

    def complete_raters(self) -> RatingMatrix:
        """The raters who rated every photo (the balanced design that ICCs need)."""
        keep = ~np.isnan(self.values).any(axis=1)
        return RatingMatrix(tuple(r for r, k in zip(self.raters, keep, strict=True) if k), self.photos,
                            self.values[keep].copy())  # fmt: skip


def rating_matrix(ratings: Iterable[tuple[str, str, float]]) -> RatingMatrix:
    """Build a :class:`RatingMatrix` from ``(rater, photo, rating)`` triples.

    Raters and photos keep the order of their first appearance.

    Raises
    ------
    ValueError
        A rater who rated the same photo twice (repeats belong to :func:`repeat_kappa`), or a
        rating that is not a finite number.
    """
    raters: dict[str, int] = {}
    photos: dict[str, int] = {}
    cells: dict[tuple[int, int], float] = {}
    for rater, photo, rating in ratings:
        value = float(rating)
        if not math.isfinite(value):
            raise ValueError(f"rater {rater}: rating of {photo} is not a finite number ({rating!r})")
        key = (raters.setdefault(rater, len(raters)), photos.setdefault(photo, len(photos)))
        if key in cells:
            raise ValueError(f"rater {rater} rated {photo} twice; pass only first ratings here")
        cells[key] = value
    values = np.full((len(raters), len(photos)), np.nan)
    for (i, j), value in cells.items():
        values[i, j] = value
    return RatingMatrix(tuple(raters), tuple(photos), values)


@dataclass(frozen=True)
class Estimate:
    """A coefficient with the bounds of its confidence interval (NaN when not available)."""

    value: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class PhotoMean:
    """One photo's panel mean rating, its t interval and the number of raters behind it."""

    photo: str
    mean: float
    ci_low: float
    ci_high: float
    n_raters: int
    sd: float


def photo_means(matrix: RatingMatrix, *, ci: float = 0.95) -> tuple[PhotoMean, ...]:
    """Mean rating of each photo with a Student-t confidence interval.

    Parameters
    ----------
    matrix : RatingMatrix
    ci : float
        Confidence level in (0, 1).

    Returns
    -------
    tuple of PhotoMean
        In the matrix's photo order; the interval is NaN with fewer than 2 raters, the mean with none.
    """
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    from scipy import stats

    out = []
    for j, photo in enumerate(matrix.photos):
        col = matrix.values[:, j]
        col = col[~np.isnan(col)]
        n = int(col.size)
        mean = float(col.mean()) if n else math.nan
        sd = float(col.std(ddof=1)) if n > 1 else math.nan
        if n > 1:
            half = float(stats.t.ppf(0.5 + ci / 2.0, n - 1)) * sd / math.sqrt(n)
            low, high = mean - half, mean + half
        else:
            low = high = math.nan
        out.append(PhotoMean(photo, mean, low, high, n, sd))
    return tuple(out)


@dataclass(frozen=True)
class IccResult:
    """Intraclass correlations of Shrout and Fleiss (1979) with 95% confidence intervals.

    Attributes
    ----------
    icc1_1 : Estimate
        ICC(1,1): one-way random effects (each photo rated by different raters).
    icc2_1, icc2_k : Estimate
        ICC(2,1), ICC(2,k): two-way random effects, absolute agreement, of one rater and of the
        mean of the k raters (pingouin's ICC(A,1) and ICC(A,k)).
    icc3_1, icc3_k : Estimate
        ICC(3,1), ICC(3,k): two-way mixed effects, consistency (pingouin's ICC(C,1), ICC(C,k)).
    n_photos, n_raters : int
        The balanced design they were computed on.
    """

    icc1_1: Estimate
    icc2_1: Estimate
    icc2_k: Estimate
    icc3_1: Estimate
    icc3_k: Estimate
    n_photos: int
    n_raters: int


def icc(matrix: RatingMatrix) -> IccResult:
    """Shrout and Fleiss's intraclass correlations of a complete raters x photos matrix.

    Parameters
    ----------
    matrix : RatingMatrix
        Every rater must have rated every photo (use :meth:`RatingMatrix.complete_raters`).

    Returns
    -------
    IccResult

    Raises
    ------
    ValueError
        Missing ratings, fewer than 2 raters or fewer than 3 photos, or ratings that do not vary.

    Notes
    -----
    Computed by :func:`pingouin.intraclass_corr` (its intervals are at the 95% level, from the
    F distribution as in Shrout and Fleiss).

    References
    ----------
    Shrout, P. E. and Fleiss, J. L. (1979). Intraclass correlations: uses in assessing rater
    reliability. Psychological Bulletin 86(2), 420-428.
    """
    v = matrix.values
    if np.isnan(v).any():
        raise ValueError("ICCs need every rater to rate every photo; pass matrix.complete_raters()")
    n_raters, n_photos = v.shape
    if n_raters < 2 or n_photos < 3:
        raise ValueError(f"ICCs need at least 2 raters and 3 photos, got {n_raters} and {n_photos}")
    if np.ptp(v) == 0.0:
        raise ValueError("every rating is the same; the ICCs are undefined")
    import pandas as pd
    import pingouin

    frame = pd.DataFrame(
        {
            "photo": np.tile(np.arange(n_photos), n_raters),
            "rater": np.repeat(np.arange(n_raters), n_photos),
            "rating": v.reshape(-1),
        }
    )
    # pingouin's own use of a pandas keyword pandas plans to drop; and with no residual variance
    # (identical raters) its F-based intervals divide by zero and come back NaN, as they should.
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        table = pingouin.intraclass_corr(data=frame, targets="photo", raters="rater", ratings="rating")
    rows = {str(t): (float(i), tuple(float(c) for c in ci)) for t, i, ci in zip(table["Type"], table["ICC"], table["CI95"], strict=True)}  # fmt: skip

    def est(*names: str) -> Estimate:
        name = next(n for n in names if n in rows)  # pingouin 0.7 says ICC(A,1), older ones ICC2
        value, (low, high) = rows[name]
        return Estimate(value, low, high)

    return IccResult(
        icc1_1=est("ICC(1,1)", "ICC1"),
        icc2_1=est("ICC(A,1)", "ICC2"),
        icc2_k=est("ICC(A,k)", "ICC2k"),
        icc3_1=est("ICC(C,1)", "ICC3"),
        icc3_k=est("ICC(C,k)", "ICC3k"),
        n_photos=n_photos,
        n_raters=n_raters,
    )


def ordinal_alpha(matrix: RatingMatrix, *, scale: Sequence[float]) -> float:
    """Krippendorff's alpha for ordinal ratings (missing ratings allowed).

    Parameters
    ----------
    matrix : RatingMatrix
    scale : sequence of float
        Every value of the rating scale in order (e.g. 1..7), also those nobody used.

    Returns
    -------
    float
        1 = perfect agreement, 0 = agreement expected by chance.

    Raises
    ------
    ValueError
        A rating outside ``scale``, or fewer than 2 ratings of any photo rated twice.

    References
    ----------
    Krippendorff, K. (2011). Computing Krippendorff's alpha-reliability. University of
    Pennsylvania, Annenberg School for Communication, departmental paper 43.
    """
    domain = np.asarray(scale, dtype=np.float64)
    v = matrix.values
    seen = v[~np.isnan(v)]
    if domain.ndim != 1 or domain.size < 2 or np.any(np.diff(domain) <= 0):
        raise ValueError(f"scale must list at least 2 increasing values, got {list(scale)!r}")
    outside = sorted(set(seen.tolist()) - set(domain.tolist()))
    if outside:
        raise ValueError(f"ratings {outside} are not on the scale {domain.tolist()}")
    pairable = (np.sum(~np.isnan(v), axis=0) >= 2).sum()
    if pairable < 1:
        raise ValueError("Krippendorff's alpha needs at least one photo rated by 2 or more raters")
    if np.unique(seen).size < 2:
        raise ValueError("every rating is the same; Krippendorff's alpha is undefined")
    import krippendorff

    return float(krippendorff.alpha(reliability_data=v, value_domain=domain, level_of_measurement="ordinal"))


def repeat_kappa(
    first: Sequence[float], second: Sequence[float], *, scale: Sequence[float], weights: KappaWeights = "quadratic"
) -> float:
    """Weighted Cohen's kappa between first and repeated ratings of the same photos.

    Parameters
    ----------
    first, second : sequence of float
        The two ratings of each repeated photo, paired by position.
    scale : sequence of float
        Every value of the rating scale in order.
    weights : {"quadratic", "linear"}
        Disagreement weights (quadratic: a 2-point miss counts four times a 1-point miss).

    Returns
    -------
    float
        NaN when the kappa is undefined (fewer than 2 pairs, or one value throughout).
    """
    if weights not in ("linear", "quadratic"):
        raise ValueError(f"weights must be 'linear' or 'quadratic', got {weights!r}")
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"first and second must be 1-D of equal length, got {a.shape} and {b.shape}")
    labels = [float(x) for x in scale]
    outside = sorted(set(a.tolist() + b.tolist()) - set(labels))
    if outside:
        raise ValueError(f"ratings {outside} are not on the scale {labels}")
    if a.size < 2 or np.unique(np.concatenate([a, b])).size < 2:
        return math.nan
    from sklearn.metrics import cohen_kappa_score

    with np.errstate(invalid="ignore", divide="ignore"):
        value = float(cohen_kappa_score(a, b, labels=labels, weights=weights))
    return value


@dataclass(frozen=True)
class RaterAgreement:
    """One rater against the mean of the other raters on the photos they both rated.

    Attributes
    ----------
    rater : str
    n : int
        Photos the rater rated that at least one other rater rated too.
    r : float
        Pearson r with the others' mean (NaN when undefined).
    mean_abs_diff : float
        Mean absolute difference from the others' mean, in rating points.
    far : bool
        Whether the rater is far from the panel: ``r`` below the threshold or undefined (one value
        throughout), or the difference above its threshold.
    """

    rater: str
    n: int
    r: float
    mean_abs_diff: float
    far: bool


def rater_agreement(
    matrix: RatingMatrix, *, min_r: float = 0.5, max_mean_abs_diff: float = 1.5
) -> tuple[RaterAgreement, ...]:
    """Each rater against the leave-one-out panel mean; raters far from the panel flagged.

    Parameters
    ----------
    matrix : RatingMatrix
    min_r : float
        A rater whose Pearson r with the others' mean is below this is far from the panel.
    max_mean_abs_diff : float
        So is one whose ratings differ from the others' mean by more than this on average.

    Returns
    -------
    tuple of RaterAgreement
        In the matrix's rater order; with fewer than 3 common photos a rater is never flagged.
    """
    v = matrix.values
    rated = ~np.isnan(v)
    sums = np.nansum(v, axis=0)
    counts = rated.sum(axis=0)
    out = []
    for i, rater in enumerate(matrix.raters):
        others_n = counts - rated[i]
        use = rated[i] & (others_n > 0)
        n = int(use.sum())
        if n == 0:
            out.append(RaterAgreement(rater, 0, math.nan, math.nan, False))
            continue
        mine = v[i, use]
        others = (sums[use] - mine) / others_n[use]
        diff = float(np.mean(np.abs(mine - others)))
        r = math.nan
        if n >= 3 and np.ptp(mine) > 0 and np.ptp(others) > 0:
            r = float(np.corrcoef(mine, others)[0, 1])
        far = n >= 3 and ((math.isfinite(r) and r < min_r) or not math.isfinite(r) or diff > max_mean_abs_diff)
        out.append(RaterAgreement(rater, n, r, diff, bool(far)))
    return tuple(out)


def correlation_ceiling(reliability: float) -> float:
    """The highest correlation any score can reach with a panel mean of this reliability.

    Parameters
    ----------
    reliability : float
        Reliability of the panel mean, e.g. its ICC(3,k) (consistency of the mean of k raters).

    Returns
    -------
    float
        ``sqrt(reliability)`` (Spearman's attenuation bound for an error-free score); NaN when the
        reliability is NaN or not positive.
    """
    if not math.isfinite(reliability) or reliability <= 0.0:
        return math.nan
    return math.sqrt(min(reliability, 1.0))
