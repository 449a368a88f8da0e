"""Human ratings: the ratings file, and pairing its entries with the photos of a run.

A ratings file is a CSV with the columns ``file`` and ``rating`` (:func:`read_ratings`); its
``file`` entries are matched to the run's photo names by full path, basename or stem
(:func:`match_ratings`), case-insensitively.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cleftscore.errors import CleftscoreError

__all__ = ["Matched", "match_ratings", "name_keys", "read_ratings"]


def name_keys(name: str) -> tuple[str, str, str]:
    """(full path, basename, stem) of a photo name, lower case, ``/`` and ``\\`` alike.

    Parameters
    ----------
    name : str
        A photo name as a run records it or a ratings file writes it.

    Returns
    -------
    tuple of 3 str
        The keys :func:`match_ratings` compares, most specific first.
    """
    full = name.strip().replace("\\", "/").lower()
    base = full.rstrip("/").rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    return full, base, stem


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CleftscoreError(f"{path}: ratings file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CleftscoreError(f"{path}: cannot read the ratings file ({exc})") from None


def _delimiter(lines: Sequence[str]) -> str:
    """The most frequent of comma, semicolon and tab in the first non-empty line (comma if none)."""
    first = next((ln for ln in lines if ln.strip()), "")
    return max(",;\t", key=first.count) if any(d in first for d in ",;\t") else ","


def _columns(path: Path, lineno: int, row: Sequence[str]) -> tuple[int, int]:
    """Indices of ``file`` and ``rating`` in the header row."""
    header = [c.strip().lower() for c in row]
    missing = [c for c in ("file", "rating") if c not in header]
    if missing:
        raise CleftscoreError(
            f"{path} line {lineno}: missing column(s) {', '.join(missing)}; the header "
            f"must name 'file' and 'rating' (found: {', '.join(header) or 'nothing'})"
        )
    return header.index("file"), header.index("rating")


def _rating(path: Path, lineno: int, row: Sequence[str], columns: tuple[int, int]) -> tuple[str, float]:
    """(file, rating) of one line below the header."""
    i_file, i_rating = columns
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
    return name, rating


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
    lines = _read_text(path).splitlines()
    columns: tuple[int, int] | None = None
    header_line = 0
    out: dict[str, float] = {}
    seen: dict[tuple[str, str, str], tuple[str, int]] = {}
    for lineno, row in enumerate(csv.reader(lines, delimiter=_delimiter(lines)), start=1):
        if not row or all(not c.strip() for c in row):
            continue
        if columns is None:
            columns, header_line = _columns(path, lineno, row), lineno
            continue
        name, rating = _rating(path, lineno, row, columns)
        key = name_keys(name)
        if key in seen:
            prev_name, prev_line = seen[key]
            raise CleftscoreError(
                f"{path} line {lineno}: {name!r} is rated twice (also line {prev_line}: "
                f"{prev_name!r}); keep one rating per photo (average the raters first)"
            )
        seen[key] = (name, lineno)
        out[name] = rating
    if columns is None:
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


def _index(
    keys: Mapping[str, tuple[str, str, str]], level: int, taken: set[str] | dict[str, str]
) -> dict[str, list[str]]:
    """Key at ``level`` -> the names not yet paired that have it."""
    index: dict[str, list[str]] = {}
    for name, k in keys.items():
        if name not in taken:
            index.setdefault(k[level], []).append(name)
    return index


def _pair_level(
    run_keys: Mapping[str, tuple[str, str, str]],
    rate_keys: Mapping[str, tuple[str, str, str]],
    level: int,
    pair: dict[str, str],
    used: set[str],
) -> None:
    """Pair the names still free whose key at ``level`` is unique on both sides (in place)."""
    run_index = _index(run_keys, level, pair)
    rate_index = _index(rate_keys, level, used)
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
    run_keys = {name: name_keys(name) for name in scores}
    rate_keys = {name: name_keys(name) for name in ratings}
    pair: dict[str, str] = {}  # run name -> ratings entry
    used: set[str] = set()
    for level in range(3):
        _pair_level(run_keys, rate_keys, level, pair, used)
    files = tuple(name for name in scores if name in pair)
    return Matched(
        files=files,
        scores=np.array([float(scores[f]) for f in files], dtype=np.float64),
        ratings=np.array([float(ratings[pair[f]]) for f in files], dtype=np.float64),
        rating_files=tuple(pair[f] for f in files),
        missing_in_run=tuple(name for name in ratings if name not in used),
        missing_in_ratings=tuple(name for name in scores if name not in pair),
    )
