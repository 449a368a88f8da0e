"""Agreement between machine scores and human ratings: the paper's Table 1 for your own photos.

Given a run folder written by ``cleftscore score`` and a CSV of human ratings (``file,rating``),
this module computes Pearson's r and Spearman's rho with percentile-bootstrap confidence
intervals, for every row of the grid

    {PSE, LPIPS, SSIM} x {base, +YCbCr, +erosion, +both} x {mouth, face}
    x {GAN with adaptation, GAN inversion without adaptation, asymmetry (mirror)}

from the cached aligned and normalized images (the GAN never runs again). The asymmetry
normalizer is cheap and is computed on the fly, so a GAN run shows both methods side by side.

Sign convention
---------------
A cleftscore score S is *higher for a more normal face*. With the paper's rating scale
(1 = most abnormal, 7 = normal; ``higher_is="normal"``) a method that agrees with the raters has a
*positive* correlation. When the ratings run the other way (``higher_is="abnormal"``, e.g. a
severity grade), the ratings are negated before correlating, so a positive r still means
agreement. Raw ratings are kept unchanged in every record and in the scatter plot.

The statistics (:func:`read_ratings`, :func:`match_ratings`, :func:`correlate`) are plain
functions; :func:`evaluate_run` builds the grid and :func:`write_evaluation` writes
``grid.csv``, ``grid.md``, ``summary.json`` and ``scatter.png``.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cleftscore.errors import CleftscoreError

__all__ = [
    "GRID_METRICS",
    "GRID_NORMALIZERS",
    "GRID_REGIONS",
    "GRID_VARIANTS",
    "LPIPS_MISSING_REASON",
    "Correlation",
    "Evaluation",
    "EvaluationFiles",
    "GridRow",
    "Matched",
    "correlate",
    "evaluate_run",
    "evaluation_grid",
    "grid_markdown",
    "match_ratings",
    "read_ratings",
    "scatter_image",
    "write_evaluation",
]

logger = logging.getLogger(__name__)

HigherIs = Literal["normal", "abnormal"]

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

_NORMALIZER_TITLES = {
    "gan-adapted": "With adaptation (GAN inversion + fine-tuning, normalized.png)",
    "gan-inversion": "Without adaptation (GAN inversion only, inverted.png)",
    "asymmetry": "Asymmetry (landmark-registered mirror image)",
}
_METRIC_LABELS = {"lpips": "LPIPS", "pse": "PSE", "ssim": "SSIM", "face-referenced": "face-referenced score"}
_VARIANT_LABELS = {
    "base": "Base",
    "+ycbcr": "+YCbCr",
    "+erosion": "+Erosion",
    "+both": "+Both",
    "own": "(own difference)",
}
_REGION_LABELS = {"mouth": "Mouth", "face": "Face", "upper-lip skin": "upper-lip skin"}


# ----------------------------------------------------------------------------------------------
# Ratings
# ----------------------------------------------------------------------------------------------


def _name_keys(name: str) -> tuple[str, str, str]:
    """(full path, basename, stem), lower case, with both ``/`` and ``\\`` as separators."""
    full = name.strip().replace("\\", "/").lower()
    base = full.rstrip("/").rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    return full, base, stem


def read_ratings(path: str | Path) -> dict[str, float]:
    """Read a human-ratings CSV with columns ``file`` and ``rating``.

    Parameters
    ----------
    path : str or Path
        CSV file (comma, semicolon or tab separated; a UTF-8 byte-order mark is accepted). The
        header must contain ``file`` and ``rating`` (any case, any order, extra columns ignored).
        ``file`` may be a basename (``p01.jpg``), a stem (``p01``) or a full path; see
        :func:`match_ratings` for how it is matched to the photos of a run.

    Returns
    -------
    dict of str to float
        ``file`` as written in the CSV (stripped) -> rating, in file order.

    Raises
    ------
    CleftscoreError
        The file is missing or unreadable, a column is missing, a rating is empty, not a
        number or not finite, or two lines name the same photo; every message is one line that
        names the file and, where it applies, the line number.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CleftscoreError(f"{path}: ratings file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CleftscoreError(f"{path}: cannot read the ratings file ({exc})") from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if not first:
        raise CleftscoreError(f"{path}: ratings file is empty; expected a header 'file,rating'")
    delimiter = max(",;\t", key=first.count) if any(d in first for d in ",;\t") else ","
    reader = csv.reader(lines, delimiter=delimiter)
    header: list[str] | None = None
    header_line = 0
    out: dict[str, float] = {}
    seen: dict[tuple[str, str, str], tuple[str, int]] = {}
    for lineno, row in enumerate(reader, start=1):
        if not row or all(not c.strip() for c in row):
            continue
        if header is None:
            header = [c.strip().lower() for c in row]
            header_line = lineno
            missing = [c for c in ("file", "rating") if c not in header]
            if missing:
                raise CleftscoreError(
                    f"{path} line {lineno}: missing column(s) {', '.join(missing)}; the header "
                    f"must name 'file' and 'rating' (found: {', '.join(header) or 'nothing'})"
                )
            i_file, i_rating = header.index("file"), header.index("rating")
            continue
        name = row[i_file].strip() if i_file < len(row) else ""
        value = row[i_rating].strip() if i_rating < len(row) else ""
        if not name:
            raise CleftscoreError(f"{path} line {lineno}: the 'file' column is empty")
        if not value:
            raise CleftscoreError(f"{path} line {lineno}: no rating for {name!r}")
        try:
            rating = float(value)
        except ValueError:
            raise CleftscoreError(f"{path} line {lineno}: rating {value!r} for {name!r} is not a number") from None
        if not math.isfinite(rating):
            raise CleftscoreError(f"{path} line {lineno}: rating {value!r} for {name!r} is not a finite number")
        key = _name_keys(name)
        if key in seen:
            prev_name, prev_line = seen[key]
            raise CleftscoreError(
                f"{path} line {lineno}: {name!r} is rated twice (also line {prev_line}: "
                f"{prev_name!r}); keep one rating per photo (average the raters first)"
            )
        seen[key] = (name, lineno)
        out[name] = rating
    if header is None:
        raise CleftscoreError(f"{path}: ratings file is empty; expected a header 'file,rating'")
    if not out:
        raise CleftscoreError(f"{path}: no ratings below the header (line {header_line})")
    return out


@dataclass(frozen=True, eq=False)
class Matched:
    """Scores and ratings of the photos present in both, in run order.

    Attributes
    ----------
    files : tuple of str
        Keys of ``scores`` (the run's photo names) that have a rating.
    scores : (n,) ndarray of float64
        Their scores.
    ratings : (n,) ndarray of float64
        Their ratings, as written in the ratings file (not flipped).
    rating_files : tuple of str
        The ratings-file entry matched to each of ``files``.
    missing_in_run : tuple of str
        Ratings-file entries with no photo in the run.
    missing_in_ratings : tuple of str
        Run photos with no rating.
    """

    files: tuple[str, ...]
    scores: np.ndarray
    ratings: np.ndarray
    rating_files: tuple[str, ...]
    missing_in_run: tuple[str, ...]
    missing_in_ratings: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.files)
        if self.scores.shape != (n,) or self.ratings.shape != (n,) or len(self.rating_files) != n:
            raise ValueError(
                f"Matched: files, scores, ratings and rating_files must all have length {n}, "
                f"got {self.scores.shape}, {self.ratings.shape}, {len(self.rating_files)}"
            )

    @property
    def n(self) -> int:
        """Number of matched photos."""
        return len(self.files)


def match_ratings(scores: Mapping[str, float], ratings: Mapping[str, float]) -> Matched:
    """Pair each photo's score with its rating.

    Parameters
    ----------
    scores : mapping of str to float
        Photo name (as recorded by the run, usually the original path) -> score.
    ratings : mapping of str to float
        Ratings-file entry -> rating (from :func:`read_ratings`).

    Returns
    -------
    Matched
        The pairs plus the entries missing on either side (not an error).

    Raises
    ------
    CleftscoreError
        A name is ambiguous: one ratings entry fits several photos, or one photo several
        entries, even after trying the full path.

    Notes
    -----
    Names are compared case-insensitively, with ``/`` and ``\\`` treated alike, in this order:
    full path, basename (``p01.jpg``), stem (``p01``, so ``p01.JPG`` matches ``p01.png``). A
    ratings entry is matched at the first level where it is unique.
    """
    run_keys = {name: _name_keys(name) for name in scores}
    rate_keys = {name: _name_keys(name) for name in ratings}
    pair: dict[str, str] = {}  # run name -> ratings entry
    used: set[str] = set()
    for level in range(3):
        run_index: dict[str, list[str]] = {}
        for name, keys in run_keys.items():
            if name not in pair:
                run_index.setdefault(keys[level], []).append(name)
        rate_index: dict[str, list[str]] = {}
        for name, keys in rate_keys.items():
            if name not in used:
                rate_index.setdefault(keys[level], []).append(name)
        for key, run_names in run_index.items():
            rate_names = rate_index.get(key)
            if not rate_names:
                continue
            if len(run_names) == 1 and len(rate_names) == 1:
                pair[run_names[0]] = rate_names[0]
                used.add(rate_names[0])
            elif level == 2:
                raise CleftscoreError(
                    f"ambiguous photo name {key!r}: ratings {sorted(rate_names)} and run photos "
                    f"{sorted(run_names)} cannot be paired; give full file names or paths in "
                    "the ratings file"
                )
    files = tuple(name for name in scores if name in pair)
    return Matched(
        files=files,
        scores=np.array([float(scores[f]) for f in files], dtype=np.float64),
        ratings=np.array([float(ratings[pair[f]]) for f in files], dtype=np.float64),
        rating_files=tuple(pair[f] for f in files),
        missing_in_run=tuple(name for name in ratings if name not in used),
        missing_in_ratings=tuple(name for name in scores if name not in pair),
    )


# ----------------------------------------------------------------------------------------------
# Correlation with bootstrap confidence intervals
# ----------------------------------------------------------------------------------------------


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
    if higher_is not in ("normal", "abnormal"):
        raise ValueError(f"higher_is must be 'normal' or 'abnormal', got {higher_is!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be a confidence level in (0, 1), e.g. 0.95; got {ci!r}")
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


# ----------------------------------------------------------------------------------------------
# Run folder
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Photo:
    """One scored photo of a run folder."""

    name: str  # original file as recorded by the run
    photo_id: str
    folder: Path
    method: str
    landmarks: np.ndarray  # (68, 2) aligned frame
    size: int
    mask_file: str | None
    measures: Mapping[str, float] = field(default_factory=dict)  # result.json measures (name -> value)
    face_referenced: bool = False  # the record's score is the face-referenced asymmetry score


@dataclass(frozen=True)
class _RunContents:
    photos: tuple[_Photo, ...]
    failed: tuple[tuple[str, str], ...]  # (file, message)


def _read_run(run_dir: Path) -> _RunContents:
    """Every photo record of a run folder (those of its latest score or rescore)."""
    from cleftscore.run.folder import is_run_folder, list_photo_ids, photo_dir, read_records, read_run_settings

    if not run_dir.is_dir():
        raise CleftscoreError(f"{run_dir}: run folder not found; run `cleftscore score ... --out {run_dir}` first")
    _, latest = read_run_settings(run_dir)
    ids = latest if latest is not None else list_photo_ids(run_dir)
    if not is_run_folder(run_dir) or not ids:
        raise CleftscoreError(
            f"{run_dir}: not a cleftscore run folder (no photos/*/result.json); "
            "evaluate the folder written by `cleftscore score --out DIR`"
        )
    failed: list[tuple[str, str]] = []
    photos: list[_Photo] = []
    for rec in read_records(run_dir, ids):
        if not rec.ok:
            failed.append((rec.file, rec.message))
            continue
        if rec.geometry is None or "aligned.png" not in rec.pictures:
            failed.append(
                (rec.file, f"{photo_dir(run_dir, rec.photo_id)}: the record has no face geometry or aligned picture")
            )
            continue
        photos.append(
            _Photo(
                name=rec.file,
                photo_id=rec.photo_id,
                folder=photo_dir(run_dir, rec.photo_id),
                method=rec.method or "gan",
                landmarks=rec.geometry.landmarks_aligned,
                size=rec.geometry.size,
                mask_file=(rec.settings.get("score") or {}).get("mask_file") or None,
                measures={k: m.value for k, m in rec.measures.items()},
                face_referenced=rec.method == "asymmetry"
                and (rec.settings.get("score") or {}).get("asymmetry_score") == "face-referenced",
            )
        )
    return _RunContents(photos=tuple(photos), failed=tuple(failed))


def _resolve_mask(photo: _Photo, run_dir: Path) -> Path | None:
    assert photo.mask_file is not None
    raw = Path(photo.mask_file)
    for cand in (raw, run_dir / raw, photo.folder / raw):
        if cand.is_file():
            return cand
    return None


# ----------------------------------------------------------------------------------------------
# The grid
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


_NAN_CI = (math.nan, math.nan)


def _empty_row(key: tuple[str, str, str, str], note: str, n: int = 0) -> GridRow:
    return GridRow(
        *key,
        n=n,
        pearson_r=math.nan,
        pearson_ci=_NAN_CI,
        pearson_p=math.nan,
        spearman_rho=math.nan,
        spearman_ci=_NAN_CI,
        spearman_p=math.nan,
        note=note,
    )


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


def _photo_scores(
    photo: _Photo,
    run_dir: Path,
    *,
    normalizers: Sequence[str],
    metrics: Sequence[str],
    lpips_distance: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
    problems: dict[str, list[str]],
    mask_notes: list[str],
) -> dict[tuple[str, str, str, str], float]:
    """Every grid score of one photo (keys: normalizer, metric, variant, region)."""
    from cleftscore.heatmap import DifferenceSettings, difference_map, erode
    from cleftscore.io import load_image
    from cleftscore.score.paper import roi_score

    aligned = load_image(photo.folder / "aligned.png")
    size = aligned.shape[0]
    if aligned.shape[:2] != (size, size):
        raise CleftscoreError(f"{photo.folder / 'aligned.png'}: not square ({aligned.shape})")
    landmarks = photo.landmarks * (size / photo.size) if photo.size != size else photo.landmarks

    masks: dict[str, np.ndarray] = {}
    user_mask: np.ndarray | None = None
    if photo.mask_file:
        mask_path = _resolve_mask(photo, run_dir)
        if mask_path is None:
            mask_notes.append(f"{photo.name}: mask file {photo.mask_file} not found; landmark regions used")
        else:
            from cleftscore.face.roi import load_user_mask

            user_mask = load_user_mask(mask_path, size)
            masks = dict.fromkeys(GRID_REGIONS, user_mask)
            mask_notes.append(f"{photo.name}: user mask {mask_path.name} replaces mouth and face")
    if not masks:
        from cleftscore.face.roi import roi_mask

        masks = {r: roi_mask(landmarks, size, region=r) for r in GRID_REGIONS}

    out: dict[tuple[str, str, str, str], float] = {}
    for normalizer in normalizers:
        try:
            if normalizer == "gan-adapted" or (normalizer == "asymmetry" and photo.method == "asymmetry"):
                reference = load_image(photo.folder / "normalized.png")
            elif normalizer == "gan-inversion":
                reference = load_image(photo.folder / "inverted.png")
            else:
                reference = _mirror_reference(aligned, landmarks)
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
                        out[(normalizer, metric, variant, region)] = float(roi_score(eroded[erosion], mask))
    return out


def _mirror_reference(aligned: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The asymmetry normalizer's face, through the same door as ``score`` (frontal check included)."""
    from cleftscore.face.align import AlignedFace
    from cleftscore.normalize.mirror import MirrorNormalizer

    size = aligned.shape[0]
    face = AlignedFace(image=aligned, size=size, landmarks=landmarks, landmarks_original=landmarks,
                       to_original=np.eye(3), original_shape=(size, size))  # fmt: skip
    (norm,) = MirrorNormalizer().normalize([face])
    if norm.image is None:
        raise CleftscoreError(norm.error)
    return norm.image


def evaluate_run(
    run_dir: str | Path,
    ratings: Mapping[str, float] | str | Path,
    *,
    higher_is: HigherIs = "normal",
    lpips_distance: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
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
        Ratings (``file -> rating``) or the CSV to read with :func:`read_ratings`.
    higher_is : {"normal", "abnormal"}
        Rating direction; see :func:`correlate`.
    lpips_distance : callable, optional
        Spatial LPIPS ``(a, b) -> (H, W)`` on uint8 images (see
        :func:`cleftscore.heatmap.lpips_map`). Without it the LPIPS rows are reported as
        not available with ``lpips_missing_reason``; they are never computed with random
        weights.
    lpips_missing_reason : str
        Note of the LPIPS rows when ``lpips_distance`` is None.
    n_boot, ci, seed
        Bootstrap settings of :func:`correlate`; every row uses the same seed.

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
    if higher_is not in ("normal", "abnormal"):
        raise ValueError(f"higher_is must be 'normal' or 'abnormal', got {higher_is!r}")
    if not isinstance(ratings, Mapping):
        ratings = read_ratings(ratings)
    run = _read_run(run_dir)

    methods = sorted({p.method for p in run.photos})
    method = methods[0] if len(methods) == 1 else ("mixed" if methods else "none")
    notes: list[str] = []
    has_gan = any(p.method == "gan" for p in run.photos)
    normalizers = list(GRID_NORMALIZERS) if has_gan else ["asymmetry"]
    if not has_gan:
        notes.append(
            "GAN rows (with/without adaptation) are missing: the run used --method asymmetry, so "
            "no GAN normalizations are cached; run `cleftscore score --method gan` to add them"
        )
    metrics = list(GRID_METRICS)
    if lpips_distance is None:
        metrics.remove("lpips")
        notes.append(f"LPIPS rows: n/a ({lpips_missing_reason})")

    # Match on photo names first, so unrated photos are not processed at all.
    matched = match_ratings({p.name: 0.0 for p in run.photos}, ratings)
    failed_names = {_name_keys(f)[1] for f, _ in run.failed}
    if matched.n < 3:
        extra = ""
        if matched.missing_in_run:
            shown = ", ".join(matched.missing_in_run[:5])
            extra = f"; rated but not in the run: {shown}" + (" ..." if len(matched.missing_in_run) > 5 else "")
        raise CleftscoreError(
            f"{run_dir}: only {matched.n} scored photo(s) have a rating; a correlation needs at "
            f"least 3 (the ratings 'file' column must name the photos){extra}"
        )
    rating_of = dict(zip(matched.files, matched.ratings.tolist(), strict=True))

    problems: dict[str, list[str]] = {}
    mask_notes: list[str] = []
    per_key: dict[tuple[str, str, str, str], dict[str, float]] = {}
    for photo in run.photos:
        if photo.name not in rating_of:
            continue
        photo_normalizers = [nz for nz in normalizers if not (nz.startswith("gan-") and photo.method != "gan")]
        for nz in normalizers:
            if nz not in photo_normalizers:
                problems.setdefault(nz, []).append(f"{photo.name}: scored with {photo.method}")
        logger.info("evaluating %s", photo.name)
        try:
            scores = _photo_scores(
                photo,
                run_dir,
                normalizers=photo_normalizers,
                metrics=metrics,
                lpips_distance=lpips_distance,
                problems=problems,
                mask_notes=mask_notes,
            )
        except (CleftscoreError, OSError) as exc:
            for nz in photo_normalizers:
                problems.setdefault(nz, []).append(f"{photo.name}: {exc}")
            continue
        for key, value in scores.items():
            per_key.setdefault(key, {})[photo.name] = value
    if mask_notes:
        notes.extend(mask_notes)

    rows: list[GridRow] = []
    for normalizer in normalizers:
        left_out = problems.get(normalizer, [])
        if normalizer == "asymmetry":
            rows.append(_grid_row(FACE_REFERENCED_KEY, per_key.get(FACE_REFERENCED_KEY, {}), rating_of, left_out,
                                  higher_is=higher_is, n_boot=n_boot, ci=ci, seed=seed))  # fmt: skip
        for metric in GRID_METRICS:
            for variant in GRID_VARIANTS:
                for region in GRID_REGIONS:
                    key = (normalizer, metric, variant, region)
                    if metric == "lpips" and lpips_distance is None:
                        rows.append(_empty_row(key, f"n/a ({lpips_missing_reason})"))
                        continue
                    rows.append(
                        _grid_row(
                            key,
                            per_key.get(key, {}),
                            rating_of,
                            left_out,
                            higher_is=higher_is,
                            n_boot=n_boot,
                            ci=ci,
                            seed=seed,
                        )
                    )
    for normalizer, items in problems.items():
        notes.append(
            f"{normalizer}: {len(items)} photo(s) left out ({'; '.join(items[:3])}"
            + (" ..." if len(items) > 3 else "")
            + ")"
        )

    missing_in_run = tuple(
        f + (" (failed in the run)" if _name_keys(f)[1] in failed_names else "") for f in matched.missing_in_run
    )
    return Evaluation(
        run_dir=run_dir,
        method=method,
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
        notes=tuple(notes),
        face_referenced=any(p.face_referenced for p in run.photos),
    )


def _measure_rows(photos: Sequence[_Photo], rating_of: Mapping[str, float], *, higher_is: HigherIs,
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
    key: tuple[str, str, str, str],
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
        return _empty_row(key, "; ".join([*notes, f"n/a ({exc})"]), n=len(files))
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


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------


def _fmt(value: float, scale: float = 1.0, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(value) else f"{value * scale:.{digits}f}"


def grid_markdown(evaluation: Evaluation) -> str:
    """The grid as Markdown, laid out like the paper's Table 1.

    Parameters
    ----------
    evaluation : Evaluation

    Returns
    -------
    str
        One table per normalizer; rows are metrics, columns region x variant, values Pearson
        r x 100 (one decimal), ``n/a`` where a row is not available; notes below.
    """
    ev = evaluation
    by_key = {r.key: r for r in ev.rows}
    lines = [
        "# cleftscore evaluation",
        "",
        f"Run: `{ev.run_dir}` (method: {ev.method}); {len(ev.matched)} rated photo(s); ratings: "
        f"higher = more {ev.higher_is}. Values are Pearson r x 100 between scores and ratings "
        "(positive = agreement); the paper reports 94.2 for PSE +Both, mouth, with adaptation.",
        "",
    ]
    head = ev.headline
    if head is not None and head.available:
        what = "face-referenced score" if head.key == FACE_REFERENCED_KEY else "PSE +Both, mouth"
        lines += [
            f"**Headline** ({head.normalizer}, {what}; the run's score column): r = {head.pearson_r:.3f} "
            f"[{_fmt(head.pearson_ci[0])}, {_fmt(head.pearson_ci[1])}], "
            f"rho = {head.spearman_rho:.3f}, n = {head.n} "
            f"({ev.ci:.0%} percentile bootstrap, {ev.n_boot} resamples, seed {ev.seed}).",
            "",
        ]
    columns = [(g, v) for g in GRID_REGIONS for v in GRID_VARIANTS]
    normalizers = [nz for nz in GRID_NORMALIZERS if any(r.normalizer == nz for r in ev.rows)]
    for nz in normalizers:
        lines += [f"## {_NORMALIZER_TITLES[nz]}", ""]
        header = ["Heat map"] + [f"{_REGION_LABELS[g]} {_VARIANT_LABELS[v]}" for g, v in columns]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * len(columns)) + "|")
        ns: set[int] = set()
        for metric in GRID_METRICS:
            cells = [_METRIC_LABELS[metric]]
            for region, variant in columns:
                row = by_key.get((nz, metric, variant, region))
                cells.append(_fmt(row.pearson_r, 100.0, 1) if row is not None else "n/a")
                if row is not None and row.available:
                    ns.add(row.n)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        fr = by_key.get(FACE_REFERENCED_KEY) if nz == "asymmetry" else None
        if fr is not None:
            lines += [f"Face-referenced score (lighting-normalised, shift-tolerant difference and one-sided dark valleys; upper-lip skin "
                      f"against the face's control regions): r x 100 = {_fmt(fr.pearson_r, 100.0, 1)}, n = {fr.n}. "
                      "The table above is the paper's S of the same face and mirror.", ""]  # fmt: skip
        if ns:
            lines.append(f"n = {', '.join(str(n) for n in sorted(ns))} photo(s).")
        row_notes = sorted({r.note for r in ev.rows if r.normalizer == nz and r.note})
        for note in row_notes:
            lines.append(f"- {note}")
        lines.append("")
    if ev.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in ev.notes] + [""]
    if ev.missing_in_run or ev.missing_in_ratings:
        lines += ["## Photos not matched", ""]
        if ev.missing_in_run:
            lines.append("- Rated but not scored in the run: " + ", ".join(ev.missing_in_run))
        if ev.missing_in_ratings:
            lines.append("- Scored but not rated: " + ", ".join(ev.missing_in_ratings))
        lines.append("")
    if ev.measure_rows:
        lines += ["", "## Other measures of the records", "",
                  "Pearson r x 100 with the ratings, each measure as it stands (negative: higher values go with more abnormal ratings).", "",
                  "| measure | n | r x 100 | rho |", "|---|---|---|---|"]  # fmt: skip
        for m in ev.measure_rows:
            r, rho = m.get("pearson_r", float("nan")), m.get("spearman_rho", float("nan"))
            lines.append(f"| {m['measure']} | {m['n']} | {_fmt(r, 100, 1)} | {_fmt(rho)} |")
    lines.append("Full numbers (confidence intervals, Spearman rho, p-values): `grid.csv`.")
    return "\n".join(lines) + "\n"


def _stem(name: str) -> str:
    """File name without folder and extension, case kept (for plot labels)."""
    base = name.strip().replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base


def scatter_image(row: GridRow, *, higher_is: HigherIs = "normal", ci: float = 0.95) -> np.ndarray:
    """Scatter plot of score against rating for one grid row, as an RGB image.

    Parameters
    ----------
    row : GridRow
        An available row (its ``files``, ``scores`` and ``ratings`` are plotted).
    higher_is : {"normal", "abnormal"}
        Rating direction, for the axis label.
    ci : float
        Confidence level shown in the title.

    Returns
    -------
    (H, W, 3) ndarray of uint8
        The rendered figure (matplotlib, Agg backend): points labelled by file stem, the
        least-squares line of score on rating, r and its interval in the title.

    Raises
    ------
    ValueError
        The row has fewer than 2 points.
    """
    if len(row.scores) < 2:
        raise ValueError(f"a scatter plot needs at least 2 points, row has {len(row.scores)}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = np.asarray(row.ratings, dtype=np.float64)
    y = np.asarray(row.scores, dtype=np.float64)
    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(x, y, s=24, color="tab:blue", zorder=3)
    for name, xi, yi in zip(row.files, x, y, strict=True):
        ax.annotate(_stem(name), (xi, yi), xytext=(3, 3), textcoords="offset points", fontsize=7)
    if np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(xs, slope * xs + intercept, color="tab:red", lw=1.2, label="least-squares fit")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel(f"human rating (higher = more {higher_is})")
    ax.set_ylabel("cleftscore score (higher = more normal)")
    ax.set_title(
        f"{row.normalizer}, {_METRIC_LABELS[row.metric]} {_VARIANT_LABELS[row.variant]}, "
        f"{row.region}\nPearson r = {_fmt(row.pearson_r)} "
        f"[{_fmt(row.pearson_ci[0])}, {_fmt(row.pearson_ci[1])}] ({ci:.0%} CI), "
        f"rho = {_fmt(row.spearman_rho)}, n = {row.n}",
        fontsize=9,
    )
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])


@dataclass(frozen=True)
class EvaluationFiles:
    """Paths written by :func:`write_evaluation` (``scatter`` is None without an available row)."""

    grid_csv: Path
    grid_md: Path
    summary_json: Path
    scatter_png: Path | None


def write_evaluation(evaluation: Evaluation, out_dir: str | Path) -> EvaluationFiles:
    """Write ``grid.csv``, ``grid.md``, ``summary.json`` and ``scatter.png``.

    Parameters
    ----------
    evaluation : Evaluation
    out_dir : str or Path
        Created if needed (``RUN_DIR/evaluation`` by default in the CLI).

    Returns
    -------
    EvaluationFiles
    """
    from cleftscore.io import write_json, write_png
    from cleftscore.report.writers import write_csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ev = evaluation
    grid_csv = out / "grid.csv"
    records = [r.as_dict() for r in ev.rows]
    columns = list(records[0]) if records else list(_empty_row(("asymmetry", "pse", "base", "mouth"), "").as_dict())
    write_csv(grid_csv, records, columns=columns)

    grid_md = out / "grid.md"
    grid_md.write_text(grid_markdown(ev), encoding="utf-8")

    best = ev.best(5)
    scatter: Path | None = None
    if best:
        scatter = out / "scatter.png"
        write_png(scatter, scatter_image(best[0], higher_is=ev.higher_is, ci=ev.ci))

    head = ev.headline
    summary = {
        "run_dir": str(ev.run_dir),
        "method": ev.method,
        "higher_is": ev.higher_is,
        "bootstrap": {"n_boot": ev.n_boot, "ci": ev.ci, "seed": ev.seed, "kind": "percentile"},
        "n_rated": len(ev.matched),
        "headline": head.as_dict() if head is not None else None,
        "best": [r.as_dict() for r in best],
        "scatter_row": best[0].as_dict() if best else None,
        "missing_in_run": list(ev.missing_in_run),
        "missing_in_ratings": list(ev.missing_in_ratings),
        "failed": [{"file": f, "message": m} for f, m in ev.failed],
        "notes": list(ev.notes),
        "rows": records,
        "measures": list(ev.measure_rows),
        "headline_photos": [
            {"file": f, "score": x, "rating": y} for f, x, y in zip(head.files, head.scores, head.ratings, strict=True)
        ]
        if head is not None
        else [],
    }
    summary_json = write_json(out / "summary.json", summary)
    return EvaluationFiles(grid_csv=grid_csv, grid_md=grid_md, summary_json=summary_json, scatter_png=scatter)
