"""Outcome pictures as PNG bytes: a timeline per patient and a before/after cohort plot.

Pure functions of plain records (plus the stored heat-map thumbnails they name); the caller
writes the bytes. What a record must offer is said here by the protocols :class:`Visit`,
:class:`Timeline` and :class:`CohortPairs` (the study's outcome records have those fields), so
this module never imports the study. Matplotlib's object API is used without pyplot, so nothing
global (backend, open figures) changes.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

__all__ = ["CohortPairs", "Timeline", "Visit", "cohort_png", "timeline_png"]


class Visit(Protocol):
    """One scored visit on a timeline."""

    @property
    def date(self) -> dt.date: ...

    @property
    def phase(self) -> str:
        """``pre-op``, ``post-op`` or ``follow-up`` (another phase is drawn grey)."""
        ...

    @property
    def procedure(self) -> str | None: ...

    @property
    def scores(self) -> Sequence[float]:
        """One score per photo of the visit."""
        ...

    @property
    def mean(self) -> float:
        """The visit's mean score."""
        ...

    @property
    def thumbnails(self) -> Sequence[str]:
        """Paths of the photos' heat-map overlays, relative to the study's file folder ('' if none)."""
        ...


class Timeline(Protocol):
    """A patient's scored visits in date order."""

    @property
    def code(self) -> str: ...

    @property
    def visits(self) -> Sequence[Visit]: ...


class CohortPairs(Protocol):
    """Each patient's mean score before repair and at one later visit, and the paired statistics."""

    @property
    def after(self) -> str:
        """Which later visit (``last`` or ``first``)."""
        ...

    @property
    def codes(self) -> Sequence[str]: ...

    @property
    def before(self) -> Sequence[float]: ...

    @property
    def later(self) -> Sequence[float]: ...

    @property
    def mean_change(self) -> float | None: ...

    @property
    def ci_low(self) -> float | None: ...

    @property
    def ci_high(self) -> float | None: ...

    @property
    def p_value(self) -> float | None: ...


_PHASE_COLOURS = {"pre-op": "#c0392b", "post-op": "#2471a3", "follow-up": "#1e8449"}
THUMB_PX = 96


def _png(fig: object) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # type: ignore[arg-type]
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)  # type: ignore[attr-defined]
    return buf.getvalue()


def _thumbnail(path: Path) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMB_PX, THUMB_PX))
            return np.asarray(im)
    except OSError:
        return None  # a missing picture leaves a gap, not a failed plot


def timeline_png(series: Timeline, files: Path) -> bytes:
    """Score against date for one patient: photos as dots, visit means joined, visits marked.

    Parameters
    ----------
    series : Timeline
        The patient's scored visits (e.g. :class:`cleftscore.study.outcomes.PatientSeries`).
    files : Path
        The study's file folder (where the thumbnails named in ``series`` are).

    Returns
    -------
    bytes
        A PNG: the timeline on top, one heat-map overlay thumbnail per visit underneath.
    """
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    visits = series.visits
    fig = Figure(figsize=(max(6.0, 2.0 * len(visits)), 5.2), layout="constrained")
    grid = fig.add_gridspec(2, max(1, len(visits)), height_ratios=(3, 1.3))
    ax = fig.add_subplot(grid[0, :])
    dates = [v.date for v in visits]
    for v in visits:
        colour = _PHASE_COLOURS.get(v.phase, "grey")
        ax.axvline(v.date, color=colour, lw=1, ls="--", alpha=0.6)
        ax.scatter([v.date] * len(v.scores), v.scores, color=colour, s=22, alpha=0.8, zorder=3)
        label = v.phase + (f"\n{v.procedure}" if v.procedure else "")
        ax.annotate(label, (v.date, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -3), textcoords="offset points",
                    va="top", fontsize=8, color=colour)  # fmt: skip
    if visits:
        ax.plot(dates, [v.mean for v in visits], color="black", lw=1.5, marker="D", ms=5, zorder=4, label="visit mean")
        ax.legend(loc="lower right", fontsize=8)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_ylabel("score (higher = closer to normal)")
    ax.set_title(f"patient {series.code}")
    ax.margins(x=0.15, y=0.25)
    for i, v in enumerate(visits):
        tax = fig.add_subplot(grid[1, i])
        tax.set_axis_off()
        thumb = _thumbnail(files / v.thumbnails[0]) if v.thumbnails and v.thumbnails[0] else None
        if thumb is not None:
            tax.imshow(thumb)
        tax.set_title(f"{v.date.isoformat()}\n{v.phase}, {len(v.scores)} photo(s)", fontsize=7)
    return _png(fig)


def cohort_png(cohort: CohortPairs) -> bytes:
    """Before vs after for every patient of the cohort comparison, as paired lines.

    Parameters
    ----------
    cohort : CohortPairs
        The pairs and their statistics (e.g. :class:`cleftscore.study.outcomes.CohortChange`).

    Returns
    -------
    bytes
        A PNG; the title gives the mean change, its 95 % CI and the paired t-test p-value.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 5.0), layout="constrained")
    ax = fig.add_subplot()
    for code, b, a in zip(cohort.codes, cohort.before, cohort.later, strict=True):
        colour = "#1e8449" if a >= b else "#c0392b"
        ax.plot([0, 1], [b, a], color=colour, marker="o", lw=1.5)
        ax.annotate(code, (1, a), xytext=(5, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_xticks([0, 1], ["pre-op", f"later visit ({cohort.after})"])
    ax.set_xlim(-0.3, 1.45)
    ax.set_ylabel("mean score of the visit (higher = closer to normal)")
    title = f"{len(cohort.codes)} patient(s)"
    if cohort.mean_change is not None:
        title += f"\nmean change {cohort.mean_change:+.3f}"
        if cohort.ci_low is not None and cohort.ci_high is not None:
            title += f" (95% CI {cohort.ci_low:+.3f} to {cohort.ci_high:+.3f})"
        if cohort.p_value is not None:
            title += f"\npaired t-test p = {cohort.p_value:.3g}"
    ax.set_title(title, fontsize=9)
    return _png(fig)
