"""Optional calibration of scores to a human rating scale, fitted only from given ratings.

A linear map from the score to the raters' scale and a 0-100 severity derived from it. Plain
functions on numbers; the run folder's calibrated columns are written by
:mod:`cleftscore.evaluate.calibrate`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Calibration",
    "fit_calibration",
    "severity_0_100",
]


@dataclass(frozen=True)
class Calibration:
    """Linear map from the score S to a human rating scale.

    Attributes
    ----------
    slope, intercept : float
        ``rating ~= slope * S + intercept`` (least squares).
    r : float
        Pearson correlation of S and the ratings used for the fit.
    n : int
        Number of rated photos used.
    scale_min, scale_max : float
        Ends of the rating scale (paper: 1..7).
    higher_is_normal : bool
        True when ``scale_max`` is the normal end (paper: 7 = normal, 1 = most abnormal).
    """

    slope: float
    intercept: float
    r: float
    n: int
    scale_min: float = 1.0
    scale_max: float = 7.0
    higher_is_normal: bool = True

    def __post_init__(self) -> None:
        if not self.scale_max > self.scale_min:
            raise ValueError(f"scale_max must exceed scale_min, got {self.scale_min}..{self.scale_max}")
        for name in ("slope", "intercept", "r"):
            if not math.isfinite(float(getattr(self, name))):
                raise ValueError(f"calibration {name} must be finite, got {getattr(self, name)}")

    def apply(self, score: float) -> float:
        """Predicted rating for a score, clipped to ``[scale_min, scale_max]``."""
        value = self.slope * float(score) + self.intercept
        return float(min(max(value, self.scale_min), self.scale_max))


def fit_calibration(
    scores: Sequence[float],
    ratings: Sequence[float],
    *,
    scale: tuple[float, float] = (1.0, 7.0),
    higher_is_normal: bool = True,
) -> Calibration:
    """Least-squares line from scores S to human ratings.

    Only used when the user provides rated photos; the tool never invents a scale.

    Parameters
    ----------
    scores : sequence of float
        Scores S of the rated photos.
    ratings : sequence of float
        Their human ratings, inside ``scale``.
    scale : (float, float)
        ``(min, max)`` of the rating scale (paper: 1..7).
    higher_is_normal : bool
        True when the top of the scale means normal (paper: 7 = normal).

    Returns
    -------
    Calibration

    Raises
    ------
    ValueError
        Fewer than 3 photos, unequal lengths, non-finite values, ratings outside the scale or
        scores that are all equal.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(ratings, dtype=np.float64).ravel()
    if s.shape != y.shape:
        raise ValueError(f"got {s.size} scores but {y.size} ratings; they must pair up")
    if s.size < 3:
        raise ValueError(f"calibration needs at least 3 rated photos, got {s.size}")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(y))):
        raise ValueError("scores and ratings must be finite numbers")
    lo, hi = float(scale[0]), float(scale[1])
    if not hi > lo:
        raise ValueError(f"scale must be (min, max) with max > min, got {scale}")
    if y.min() < lo or y.max() > hi:
        raise ValueError(f"ratings must lie on the scale {lo:g}..{hi:g}, got {y.min():g}..{y.max():g}")
    if np.ptp(s) == 0.0:
        raise ValueError("all scores are equal; a calibration line cannot be fitted")
    slope, intercept = np.polyfit(s, y, 1)
    r = 0.0 if np.ptp(y) == 0.0 else float(np.corrcoef(s, y)[0, 1])
    return Calibration(
        slope=float(slope),
        intercept=float(intercept),
        r=r,
        n=int(s.size),
        scale_min=lo,
        scale_max=hi,
        higher_is_normal=bool(higher_is_normal),
    )


def severity_0_100(score: float, calibration: Calibration) -> float:
    """Severity on 0..100 from a calibrated score.

    Parameters
    ----------
    score : float
        Score S.
    calibration : Calibration
        Fit on the user's rated photos.

    Returns
    -------
    float
        0 = the normal end of the fitted rating scale, 100 = the most abnormal end; linear in
        the calibrated rating, clipped to 0..100.
    """
    rating = calibration.apply(score)
    span = calibration.scale_max - calibration.scale_min
    if calibration.higher_is_normal:
        frac = (calibration.scale_max - rating) / span
    else:
        frac = (rating - calibration.scale_min) / span
    return float(100.0 * min(max(frac, 0.0), 1.0))
