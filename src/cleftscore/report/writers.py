"""Spreadsheet files a clinician opens: CSV with formula-safe cells.

A cell that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, carriage return
at the start) is quoted; numbers stay numbers. Files are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cleftscore.io import to_jsonable

logger = logging.getLogger(__name__)

__all__ = [
    "write_csv",
]


#: First characters that make a spreadsheet read a cell as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> str:
    v = to_jsonable(value)
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)  # a negative number is a number, not a formula
    text = json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else str(v)
    if text.startswith(_FORMULA_START) and not _is_number(text):
        # A leading apostrophe is how spreadsheets mark text; the file name stays readable.
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text)) and text.strip() == text
    except ValueError:
        return False


def _columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        return list(columns)
    seen: dict[str, None] = {}
    for row in rows:
        for k in row:
            seen.setdefault(str(k), None)
    return list(seen)


def write_csv(
    path: str | os.PathLike,
    rows: Sequence[Mapping[str, Any]],
    *,
    columns: Sequence[str] | None = None,
) -> Path:
    """Write rows as CSV that spreadsheets open directly.

    Parameters
    ----------
    path : path-like
        Destination file (parent folders are created).
    rows : sequence of dict
        One dict per photo. Missing keys give empty cells; NaN and None give empty cells;
        lists and dicts are written as JSON text.
    columns : sequence of str, optional
        Column order. Default: the union of the rows' keys in first-seen order.

    Returns
    -------
    Path
        The written path.

    Notes
    -----
    UTF-8 with a byte-order mark (Excel then reads accented file names correctly), comma
    separated, ``\\r\\n`` line ends, quoted where needed. Text that a spreadsheet would
    evaluate as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return)
    gets a leading apostrophe; numbers are written as they are. The file is written under a
    temporary name and renamed.
    """
    from cleftscore.io import atomic_write_bytes

    cols = _columns(rows, columns)
    fh = io.StringIO(newline="")
    writer = csv.writer(fh)
    writer.writerow(cols)
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in cols])
    return atomic_write_bytes(path, fh.getvalue().encode("utf-8-sig", errors="backslashreplace"))
