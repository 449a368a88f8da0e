"""The normative reference of the face-referenced asymmetry score: its distribution on normal faces.

:func:`load_reference` reads the statistics shipped in ``cleftscore/data/asymmetry_reference.json``
(percentiles of the score over normal adult reference photos, and the heat map's colour scale);
:class:`NormativeReference` turns a score into "less symmetric than x % of normal faces".
Statistics only: no photo is stored.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cleftscore.score.asymmetry import AsymmetrySettings

__all__ = ["DEFAULT_HEATMAP_SCALE", "NormativeReference", "load_reference"]

#: ``heatmap_scale`` of a reference JSON written before the field existed (the 99th percentile of
#: the default heat map in the upper-lip skin, in multiples of the face's control-region median,
#: median over the 115 normal reference photos, as measured for the shipped reference on 2026-12-02).
DEFAULT_HEATMAP_SCALE = 12.4262009


@dataclass(frozen=True)
class NormativeReference:
    """The new score's distribution on normal reference photos (statistics only, no photos).

    Attributes
    ----------
    quantiles : tuple of float
        Scores at the percentiles 0, 1, ..., 100 of the reference photos (non-decreasing).
    n : int
        How many photos the statistics come from.
    source : str
        Where they come from, in words.
    settings : dict
        :meth:`AsymmetrySettings.to_dict` of the score they were measured with.
    heatmap_scale : float
        The 99th percentile of the default heat map inside the default ROI (the upper-lip
        skin), median over the reference photos: the fixed top of the heat map's colour scale
        (the pipeline draws up to twice it). A JSON without it (written before the field
        existed) reads as :data:`DEFAULT_HEATMAP_SCALE`.
    """

    quantiles: tuple[float, ...]
    n: int
    source: str
    settings: dict
    heatmap_scale: float = DEFAULT_HEATMAP_SCALE

    def __post_init__(self) -> None:
        q = np.asarray(self.quantiles, dtype=np.float64)
        if q.shape != (101,) or not np.all(np.isfinite(q)) or np.any(np.diff(q) < 0):
            raise ValueError("quantiles must be 101 finite, non-decreasing scores (percentiles 0..100)")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        hs = self.heatmap_scale
        if isinstance(hs, bool) or not isinstance(hs, (int, float)) or not (math.isfinite(hs) and hs > 0):
            raise ValueError(f"heatmap_scale must be a positive number, got {hs!r}")
        object.__setattr__(self, "heatmap_scale", float(hs))

    def fraction_more_symmetric(self, score: float) -> float:
        """Fraction (0..1) of the reference photos that score as more symmetric than ``score``.

        ``0.97`` reads "less symmetric than 97 % of the normal reference photos". Linear
        between the stored percentiles; 1 below the lowest and 0 above the highest.
        """
        q = np.asarray(self.quantiles, dtype=np.float64)
        s = float(score)
        if not math.isfinite(s):
            raise ValueError(f"score must be finite, got {score}")
        if s <= q[0]:
            return 1.0
        if s >= q[-1]:
            return 0.0
        pct = (
            float(np.interp(s, q, np.arange(101.0)))
            if np.all(np.diff(q) > 0)
            else float(np.searchsorted(q, s, side="right") - 1)
        )
        return 1.0 - pct / 100.0

    @classmethod
    def from_scores(cls, scores: np.ndarray, *, source: str, settings: AsymmetrySettings,
                    heatmap_scale: float = DEFAULT_HEATMAP_SCALE) -> NormativeReference:  # fmt: skip
        """Percentiles of a set of normal-photo scores (and the heat-map scale measured on them)."""
        v = np.asarray(scores, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        if v.size < 10:
            raise ValueError(f"a normative reference needs at least 10 scores, got {v.size}")
        return cls(tuple(float(x) for x in np.percentile(v, np.arange(101))), int(v.size), source, settings.to_dict(),
                   float(heatmap_scale))  # fmt: skip

    def to_dict(self) -> dict:
        """JSON-ready form (what ``load_reference`` reads)."""
        return dataclasses.asdict(self)


def load_reference(path: str | None = None) -> NormativeReference:
    """The normative reference shipped with the package (or one written by ``to_dict`` to ``path``).

    A JSON without ``heatmap_scale`` (older files) gets :data:`DEFAULT_HEATMAP_SCALE`.
    """
    import json
    from importlib import resources

    text = (
        resources.files("cleftscore").joinpath("data", "asymmetry_reference.json").read_text(encoding="utf-8")
        if path is None
        else open(path, encoding="utf-8").read()
    )
    d = json.loads(text)
    return NormativeReference(tuple(d["quantiles"]), int(d["n"]), str(d["source"]), dict(d["settings"]),
                              float(d.get("heatmap_scale", DEFAULT_HEATMAP_SCALE)))  # fmt: skip
