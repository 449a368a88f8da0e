"""Agreement between machine scores and human ratings: the paper's Table 1 for your own photos.

Given a run folder written by ``cleftscore score`` and human ratings (``file,rating``), this
module computes Pearson's r and Spearman's rho with percentile-bootstrap confidence intervals
(:func:`cleftscore.evaluate.statistics.correlate`), for every row of the grid

    {PSE, LPIPS, SSIM} x {base, +YCbCr, +erosion, +both} x {mouth, face}
    x {GAN with adaptation, GAN inversion without adaptation, asymmetry (mirror)}

from the cached aligned and normalized images (the GAN never runs again). The asymmetry
normalizer is cheap and is made again on the fly, so a GAN run shows both methods side by side.
A positive r means agreement with the raters whatever the rating direction (see
:mod:`cleftscore.evaluate.statistics`); raw ratings are kept unchanged in every row.

:func:`evaluate_run` builds the grid; :mod:`cleftscore.evaluate.markdown` lays it out like the
paper's table and :func:`cleftscore.evaluate.files.write_evaluation` writes its files.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cleftscore.errors import CleftscoreError
from cleftscore.evaluate.photos import RunContents, RunPhoto, mirror_reference, read_run, resolve_mask
from cleftscore.evaluate.ratings import Matched, match_ratings, name_keys, read_ratings
from cleftscore.evaluate.statistics import HigherIs, check_higher_is, correlate

__all__ = [
    "FACE_REFERENCED_KEY",
    "GRID_METRICS",
    "GRID_NORMALIZERS",
    "GRID_REGIONS",
    "GRID_VARIANTS",
    "LPIPS_MISSING_REASON",
    "Evaluation",
    "GridRow",
    "evaluate_run",
    "evaluation_grid",
]

logger = logging.getLogger(__name__)

#: Normalizers of the grid: GAN with adaptation (``normalized.png``), GAN inversion without
#: adaptation (``inverted.png``), and the face's landmark-registered mirror image.
GRID_NORMALIZERS: tuple[str, ...] = ("gan-adapted", "gan-inversion", "asymmetry")
#: Metrics in the paper's Table 1 order.
GRID_METRICS: tuple[str, ...] = ("lpips", "pse", "ssim")
#: Variant name -> (colour space, erosion size), as in the paper's Table 1 columns.
GRID_VARIANTS: dict[str, tuple[str, int]] = {
    "base": ("rgb", 0),
    "+ycbcr": ("ycbcr", 0),
    "+erosion": ("rgb", 3),
    "+both": ("ycbcr", 3),
}
GRID_REGIONS: tuple[str, ...] = ("mouth", "face")
#: The asymmetry method's face-referenced score (its score column by default) as one more grid
#: row: it has its own difference (lighting-normalised, shift-tolerant, with a valley term) and region
#: (upper-lip skin against the face's control regions), so it is outside the metric x variant x region grid.
FACE_REFERENCED_KEY: tuple[str, str, str, str] = ("asymmetry", "face-referenced", "own", "upper-lip skin")
#: Why LPIPS rows are empty when no VGG16 weights were given (never random weights).
LPIPS_MISSING_REASON = "no VGG16 weights: cleftscore weights fetch vgg16"

GridKey = tuple[str, str, str, str]
LpipsDistance = Callable[[np.ndarray, np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridRow:
    """One row of the evaluation grid.

    Attributes
    ----------
    normalizer : str
        One of :data:`GRID_NORMALIZERS`.
    metric : str
        ``"pse"``, ``"lpips"`` or ``"ssim"``.
    variant : str
        ``"base"`` (RGB, no erosion), ``"+ycbcr"``, ``"+erosion"`` (3 x 3) or ``"+both"``.
    region : str
        ``"mouth"`` or ``"face"`` (a user mask replaces both when the run used one; see note).
    n : int
        Photos in the correlation (0 when the row could not be computed).
    pearson_r, pearson_ci, pearson_p, spearman_rho, spearman_ci, spearman_p : float
        As in :class:`Correlation`; NaN when the row is not available.
    note : str
        Empty, or why the row is missing or what was left out.
    files, scores, ratings : tuple
        The photos, their scores and their raw ratings behind the row.
    """

    normalizer: str
    metric: str
    variant: str
    region: str
    n: int
    pearson_r: float
    pearson_ci: tuple[float, float]
    pearson_p: float
    spearman_rho: float
    spearman_ci: tuple[float, float]
    spearman_p: float
    note: str = ""
    files: tuple[str, ...] = field(default=(), repr=False)
    scores: tuple[float, ...] = field(default=(), repr=False)
    ratings: tuple[float, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.key == FACE_REFERENCED_KEY:
            pass
        elif self.normalizer not in GRID_NORMALIZERS:
            raise ValueError(f"unknown normalizer {self.normalizer!r}")
        elif self.metric not in GRID_METRICS:
            raise ValueError(f"unknown metric {self.metric!r}")
        elif self.variant not in GRID_VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}")
        elif self.region not in GRID_REGIONS:
            raise ValueError(f"unknown region {self.region!r}")
        if not (len(self.files) == len(self.scores) == len(self.ratings)):
            raise ValueError("GridRow: files, scores and ratings must have equal length")

    @property
    def available(self) -> bool:
        """Whether the row has a correlation."""
        return math.isfinite(self.pearson_r)

    @property
    def key(self) -> tuple[str, str, str, str]:
        """(normalizer, metric, variant, region)."""
        return (self.normalizer, self.metric, self.variant, self.region)

    def as_dict(self) -> dict[str, Any]:
        """Flat record for CSV / JSON (NaN kept as float)."""
        return {
            "normalizer": self.normalizer,
            "metric": self.metric,
            "variant": self.variant,
            "region": self.region,
            "n": self.n,
            "pearson_r": self.pearson_r,
            "pearson_ci_low": self.pearson_ci[0],
            "pearson_ci_high": self.pearson_ci[1],
            "pearson_p": self.pearson_p,
            "spearman_rho": self.spearman_rho,
            "spearman_ci_low": self.spearman_ci[0],
            "spearman_ci_high": self.spearman_ci[1],
            "spearman_p": self.spearman_p,
            "note": self.note,
        }

    @classmethod
    def unavailable(cls, key: GridKey, note: str, *, n: int = 0) -> GridRow:
        """A row without a correlation (NaN numbers), ``note`` saying why."""
        nan_ci = (math.nan, math.nan)
        return cls(*key, n=n, pearson_r=math.nan, pearson_ci=nan_ci, pearson_p=math.nan,
                   spearman_rho=math.nan, spearman_ci=nan_ci, spearman_p=math.nan, note=note)  # fmt: skip


@dataclass(frozen=True)
class Evaluation:
    """Everything ``cleftscore evaluate`` reports.

    Attributes
    ----------
    run_dir : Path
        The evaluated run folder.
    method : str
        The run's normalization method (``"gan"``, ``"asymmetry"`` or ``"mixed"``).
    higher_is : {"normal", "abnormal"}
        Rating direction used.
    n_boot, ci, seed
        Bootstrap settings.
    rows : tuple of GridRow
        The grid (every normalizer present, metric, variant, region).
    matched : tuple of str
        Run photos that have a rating.
    missing_in_run : tuple of str
        Rated files that are not among the run's scored photos (failed photos included).
    missing_in_ratings : tuple of str
        Scored photos without a rating.
    failed : tuple of (str, str)
        Photos the run could not score, with the reason.
    notes : tuple of str
        Run-level remarks (missing normalizers, user masks, LPIPS availability).
    """

    run_dir: Path
    method: str
    higher_is: str
    n_boot: int
    ci: float
    seed: int
    rows: tuple[GridRow, ...]
    matched: tuple[str, ...]
    missing_in_run: tuple[str, ...]
    missing_in_ratings: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    measure_rows: tuple[dict[str, Any], ...] = ()
    face_referenced: bool = False

    @property
    def headline_key(self) -> tuple[str, str, str, str]:
        """The row of the run's own score column: the configured method's PSE, +both, mouth row
        (the paper's 0.942 cell), or for an asymmetry run with the face-referenced score, that row."""
        if self.method == "asymmetry":
            return FACE_REFERENCED_KEY if self.face_referenced else ("asymmetry", "pse", "+both", "mouth")
        return ("gan-adapted", "pse", "+both", "mouth")

    @property
    def headline(self) -> GridRow | None:
        """The headline row, or None when the grid lacks it."""
        return next((r for r in self.rows if r.key == self.headline_key), None)

    def best(self, k: int = 5) -> list[GridRow]:
        """The ``k`` available rows with the highest Pearson r."""
        rows = [r for r in self.rows if r.available]
        return sorted(rows, key=lambda r: r.pearson_r, reverse=True)[:k]


# ----------------------------------------------------------------------------------------------
# One photo's scores
# ----------------------------------------------------------------------------------------------


def _region_masks(
    photo: RunPhoto, run_dir: Path, landmarks: np.ndarray, size: int, mask_notes: list[str]
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The grid's region masks of one photo, and the user mask when the run used one."""
    if photo.mask_file:
        mask_path = resolve_mask(photo, run_dir)
        if mask_path is None:
            mask_notes.append(f"{photo.name}: mask file {photo.mask_file} not found; landmark regions used")
        else:
            from cleftscore.face.roi import load_user_mask

            user_mask = load_user_mask(mask_path, size)
            mask_notes.append(f"{photo.name}: user mask {mask_path.name} replaces mouth and face")
            return dict.fromkeys(GRID_REGIONS, user_mask), user_mask
    from cleftscore.face.roi import roi_mask

    return {r: roi_mask(landmarks, size, region=r) for r in GRID_REGIONS}, None


def _reference(photo: RunPhoto, normalizer: str, aligned: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The normalized face ``normalizer`` compares the aligned face with (cached or made again)."""
    from cleftscore.io import load_image

    if normalizer == "gan-adapted" or (normalizer == "asymmetry" and photo.method == "asymmetry"):
        return load_image(photo.folder / "normalized.png")
    if normalizer == "gan-inversion":
        return load_image(photo.folder / "inverted.png")
    return mirror_reference(aligned, landmarks)


def _metric_scores(
    aligned: np.ndarray,
    reference: np.ndarray,
    masks: Mapping[str, np.ndarray],
    *,
    metric: str,
    lpips_distance: LpipsDistance | None,
) -> dict[tuple[str, str], float]:
    """(variant, region) -> S of one metric; each colour space's map is computed once, before erosion."""
    from cleftscore.heatmap import DifferenceSettings, difference_map, erode
    from cleftscore.score.paper import roi_score

    out: dict[tuple[str, str], float] = {}
    for colorspace in ("rgb", "ycbcr"):
        raw = difference_map(
            aligned,
            reference,
            settings=DifferenceSettings(metric=metric, colorspace=colorspace, erosion=0),
            lpips_distance=lpips_distance,
        )
        eroded: dict[int, np.ndarray] = {}
        for variant, (cs, erosion) in GRID_VARIANTS.items():
            if cs != colorspace:
                continue
            if erosion not in eroded:
                eroded[erosion] = erode(raw, size=erosion) if erosion > 1 else raw
            for region, mask in masks.items():
                out[(variant, region)] = float(roi_score(eroded[erosion], mask))
    return out


def _photo_scores(
    photo: RunPhoto,
    run_dir: Path,
    *,
    normalizers: Sequence[str],
    metrics: Sequence[str],
    lpips_distance: LpipsDistance | None,
    problems: dict[str, list[str]],
    mask_notes: list[str],
) -> dict[GridKey, float]:
    """Every grid score of one photo (keys: normalizer, metric, variant, region)."""
    from cleftscore.io import load_image

    aligned = load_image(photo.folder / "aligned.png")
    size = aligned.shape[0]
    if aligned.shape[:2] != (size, size):
        raise CleftscoreError(f"{photo.folder / 'aligned.png'}: not square ({aligned.shape})")
    landmarks = photo.landmarks * (size / photo.size) if photo.size != size else photo.landmarks
    masks, user_mask = _region_masks(photo, run_dir, landmarks, size, mask_notes)

    out: dict[GridKey, float] = {}
    for normalizer in normalizers:
        try:
            reference = _reference(photo, normalizer, aligned, landmarks)
        except (CleftscoreError, ValueError, OSError) as exc:
            problems.setdefault(normalizer, []).append(f"{photo.name}: {exc}")
            continue
        if reference.shape != aligned.shape:
            problems.setdefault(normalizer, []).append(
                f"{photo.name}: {normalizer} image is {reference.shape}, aligned is {aligned.shape}"
            )
            continue
        if normalizer == "asymmetry":
            from cleftscore.score.paper import ScoreSettings, score_face_referenced

            fr, _ = score_face_referenced(aligned, reference, landmarks, settings=ScoreSettings(), user_mask=user_mask)
            out[FACE_REFERENCED_KEY] = fr.score
        for metric in metrics:
            cells = _metric_scores(aligned, reference, masks, metric=metric, lpips_distance=lpips_distance)
            out.update({(normalizer, metric, variant, region): s for (variant, region), s in cells.items()})
    return out


# ----------------------------------------------------------------------------------------------
# The grid
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """What a run can be evaluated with: its method, the grid's normalizers and metrics."""

    method: str
    normalizers: tuple[str, ...]
    metrics: tuple[str, ...]
    notes: tuple[str, ...]


def _plan(photos: Sequence[RunPhoto], *, lpips: bool, lpips_missing_reason: str) -> _Plan:
    methods = sorted({p.method for p in photos})
    method = methods[0] if len(methods) == 1 else ("mixed" if methods else "none")
    notes: list[str] = []
    has_gan = any(p.method == "gan" for p in photos)
    if not has_gan:
        notes.append(
            "GAN rows (with/without adaptation) are missing: the run used --method asymmetry, so "
            "no GAN normalizations are cached; run `cleftscore score --method gan` to add them"
        )
    metrics = tuple(m for m in GRID_METRICS if lpips or m != "lpips")
    if not lpips:
        notes.append(f"LPIPS rows: n/a ({lpips_missing_reason})")
    normalizers = GRID_NORMALIZERS if has_gan else ("asymmetry",)
    return _Plan(method=method, normalizers=normalizers, metrics=metrics, notes=tuple(notes))


def _rated(run_dir: Path, run: RunContents, ratings: Mapping[str, float]) -> tuple[dict[str, float], Matched]:
    """(photo name -> rating, the match), matched on names first so unrated photos are never processed."""
    matched = match_ratings({p.name: 0.0 for p in run.photos}, ratings)
    if matched.n < 3:
        extra = ""
        if matched.missing_in_run:
            shown = ", ".join(matched.missing_in_run[:5])
            extra = f"; rated but not in the run: {shown}" + (" ..." if len(matched.missing_in_run) > 5 else "")
        raise CleftscoreError(
            f"{run_dir}: only {matched.n} scored photo(s) have a rating; a correlation needs at "
            f"least 3 (the ratings 'file' column must name the photos){extra}"
        )
    return dict(zip(matched.files, matched.ratings.tolist(), strict=True)), matched


@dataclass
class _Cells:
    """Grid scores of the rated photos (key -> photo -> S) and what went wrong on the way."""

    per_key: dict[GridKey, dict[str, float]] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)
    mask_notes: list[str] = field(default_factory=list)


def _grid_cells(
    run: RunContents,
    run_dir: Path,
    rating_of: Mapping[str, float],
    plan: _Plan,
    lpips_distance: LpipsDistance | None,
) -> _Cells:
    cells = _Cells()
    for photo in run.photos:
        if photo.name not in rating_of:
            continue
        photo_normalizers = [nz for nz in plan.normalizers if not (nz.startswith("gan-") and photo.method != "gan")]
        for nz in plan.normalizers:
            if nz not in photo_normalizers:
                cells.problems.setdefault(nz, []).append(f"{photo.name}: scored with {photo.method}")
        logger.info("evaluating %s", photo.name)
        try:
            scores = _photo_scores(
                photo,
                run_dir,
                normalizers=photo_normalizers,
                metrics=plan.metrics,
                lpips_distance=lpips_distance,
                problems=cells.problems,
                mask_notes=cells.mask_notes,
            )
        except (CleftscoreError, OSError) as exc:
            for nz in photo_normalizers:
                cells.problems.setdefault(nz, []).append(f"{photo.name}: {exc}")
            continue
        for key, value in scores.items():
            cells.per_key.setdefault(key, {})[photo.name] = value
    return cells


def _grid_rows(
    cells: _Cells,
    rating_of: Mapping[str, float],
    normalizers: Sequence[str],
    *,
    lpips_note: str | None,
    higher_is: HigherIs,
    n_boot: int,
    ci: float,
    seed: int,
) -> list[GridRow]:
    """Every row of the grid, in table order; LPIPS rows say ``lpips_note`` when it is given."""
    rows: list[GridRow] = []
    for normalizer in normalizers:
        keys: list[GridKey] = [FACE_REFERENCED_KEY] if normalizer == "asymmetry" else []
        keys += [(normalizer, m, v, r) for m in GRID_METRICS for v in GRID_VARIANTS for r in GRID_REGIONS]
        left_out = cells.problems.get(normalizer, [])
        for key in keys:
            if key[1] == "lpips" and lpips_note is not None:
                rows.append(GridRow.unavailable(key, lpips_note))
                continue
            rows.append(_grid_row(key, cells.per_key.get(key, {}), rating_of, left_out,
                                  higher_is=higher_is, n_boot=n_boot, ci=ci, seed=seed))  # fmt: skip
    return rows


def _problem_notes(problems: Mapping[str, Sequence[str]]) -> list[str]:
    return [
        f"{normalizer}: {len(items)} photo(s) left out ({'; '.join(items[:3])}"
        + (" ..." if len(items) > 3 else "")
        + ")"
        for normalizer, items in problems.items()
    ]


def evaluate_run(
    run_dir: str | Path,
    ratings: Mapping[str, float] | str | Path,
    *,
    higher_is: HigherIs = "normal",
    lpips_distance: LpipsDistance | None = None,
    lpips_missing_reason: str = LPIPS_MISSING_REASON,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> Evaluation:
    """Correlate every grid cell of a run folder with human ratings.

    Parameters
    ----------
    run_dir : str or Path
        Folder written by ``cleftscore score`` (``scores.csv``, ``photos/<id>/...``).
    ratings : mapping or path
        Ratings (``file -> rating``) or the CSV to read with
        :func:`cleftscore.evaluate.ratings.read_ratings`.
    higher_is : {"normal", "abnormal"}
        Rating direction; see :func:`cleftscore.evaluate.statistics.correlate`.
    lpips_distance : callable, optional
        Spatial LPIPS ``(a, b) -> (H, W)`` on uint8 images (see
        :func:`cleftscore.heatmap.lpips_map`). Without it the LPIPS rows are reported as
        not available with ``lpips_missing_reason``; they are never computed with random
        weights.
    lpips_missing_reason : str
        Note of the LPIPS rows when ``lpips_distance`` is None.
    n_boot, ci, seed
        Bootstrap settings of :func:`cleftscore.evaluate.statistics.correlate`; every row uses
        the same seed.

    Returns
    -------
    Evaluation

    Raises
    ------
    CleftscoreError
        Not a run folder, an unreadable ratings file, ambiguous names, or fewer than 3 scored
        photos with a rating.

    Notes
    -----
    Each photo's difference map is computed once per (normalizer, metric, colour space) without
    erosion; the erosion variants and both regions are derived from it. GAN rows need the run's
    ``normalized.png`` / ``inverted.png`` (method ``gan``); the asymmetry rows are computed from
    ``aligned.png`` and the landmarks (or read from ``normalized.png`` for an asymmetry run).
    """
    run_dir = Path(run_dir)
    check_higher_is(higher_is)
    if not isinstance(ratings, Mapping):
        ratings = read_ratings(ratings)
    run = read_run(run_dir)
    plan = _plan(run.photos, lpips=lpips_distance is not None, lpips_missing_reason=lpips_missing_reason)
    rating_of, matched = _rated(run_dir, run, ratings)
    cells = _grid_cells(run, run_dir, rating_of, plan, lpips_distance)
    lpips_note = None if lpips_distance is not None else f"n/a ({lpips_missing_reason})"
    rows = _grid_rows(cells, rating_of, plan.normalizers, lpips_note=lpips_note,
                      higher_is=higher_is, n_boot=n_boot, ci=ci, seed=seed)  # fmt: skip
    failed_names = {name_keys(f)[1] for f, _ in run.failed}
    missing_in_run = tuple(
        f + (" (failed in the run)" if name_keys(f)[1] in failed_names else "") for f in matched.missing_in_run
    )
    return Evaluation(
        run_dir=run_dir,
        method=plan.method,
        higher_is=higher_is,
        n_boot=n_boot,
        ci=ci,
        seed=seed,
        rows=tuple(rows),
        measure_rows=_measure_rows(run.photos, rating_of, higher_is=higher_is, n_boot=n_boot, ci=ci, seed=seed),
        matched=matched.files,
        missing_in_run=missing_in_run,
        missing_in_ratings=matched.missing_in_ratings,
        failed=run.failed,
        notes=(*plan.notes, *cells.mask_notes, *_problem_notes(cells.problems)),
        face_referenced=any(p.face_referenced for p in run.photos),
    )


def _measure_rows(photos: Sequence[RunPhoto], rating_of: Mapping[str, float], *, higher_is: HigherIs,
                  n_boot: int, ci: float, seed: int) -> tuple[dict[str, Any], ...]:  # fmt: skip
    """Correlations of the records' other measures (``landmark_asymmetry_px``, the dynamics
    indices, ...) with the ratings, as the measures stand (their direction is their own: a
    negative r means higher values go with more abnormal ratings)."""
    rows = []
    names = sorted({k for p in photos for k in p.measures})
    for name in names:
        pairs = [(p.measures[name], rating_of[p.name]) for p in photos
                 if p.name in rating_of and name in p.measures and math.isfinite(p.measures[name])]  # fmt: skip
        row: dict[str, Any] = {"measure": name, "n": len(pairs)}
        if len(pairs) >= 3 and len({v for v, _ in pairs}) > 1:
            c = correlate(
                [v for v, _ in pairs], [r for _, r in pairs], higher_is=higher_is, n_boot=n_boot, ci=ci, seed=seed
            )
            row.update(pearson_r=c.pearson_r, pearson_ci_low=c.pearson_ci[0], pearson_ci_high=c.pearson_ci[1],
                       spearman_rho=c.spearman_rho, spearman_p=c.spearman_p)  # fmt: skip
        else:
            row["note"] = "fewer than 3 rated photos with distinct values"
        rows.append(row)
    return tuple(rows)


def _grid_row(
    key: GridKey,
    scores: Mapping[str, float],
    rating_of: Mapping[str, float],
    left_out: Sequence[str],
    *,
    higher_is: HigherIs,
    n_boot: int,
    ci: float,
    seed: int,
) -> GridRow:
    notes: list[str] = []
    if left_out:
        notes.append(f"{len(left_out)} photo(s) without this normalizer")
    files = [f for f in scores if f in rating_of]
    infinite = [f for f in files if not math.isfinite(scores[f])]
    if infinite:
        notes.append(f"{len(infinite)} photo(s) with zero difference in the region left out")
        files = [f for f in files if f not in infinite]
    x = [scores[f] for f in files]
    y = [rating_of[f] for f in files]
    try:
        c = correlate(x, y, higher_is=higher_is, n_boot=n_boot, ci=ci, seed=seed)
    except ValueError as exc:
        return GridRow.unavailable(key, "; ".join([*notes, f"n/a ({exc})"]), n=len(files))
    return GridRow(
        *key,
        n=c.n,
        pearson_r=c.pearson_r,
        pearson_ci=c.pearson_ci,
        pearson_p=c.pearson_p,
        spearman_rho=c.spearman_rho,
        spearman_ci=c.spearman_ci,
        spearman_p=c.spearman_p,
        note="; ".join(notes),
        files=tuple(files),
        scores=tuple(x),
        ratings=tuple(y),
    )


def evaluation_grid(
    run_dir: str | Path,
    ratings: Mapping[str, float] | str | Path,
    *,
    higher_is: HigherIs = "normal",
    lpips_distance: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> list[GridRow]:
    """The rows of :func:`evaluate_run` (the paper's Table 1 for a run folder).

    Parameters
    ----------
    run_dir, ratings, higher_is, lpips_distance, n_boot, seed
        As in :func:`evaluate_run`.

    Returns
    -------
    list of GridRow
    """
    return list(
        evaluate_run(
            run_dir,
            ratings,
            higher_is=higher_is,
            lpips_distance=lpips_distance,
            n_boot=n_boot,
            seed=seed,
        ).rows
    )
