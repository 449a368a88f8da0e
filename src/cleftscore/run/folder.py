"""The run folder: one place that knows its layout, its lock and the CSV columns.

A run folder (``cleftscore score --out DIR``) holds::

    DIR/.cleftscore.lock          advisory lock: one run writes here at a time
    DIR/run.json                  settings and photos of the latest score/rescore
    DIR/scores.csv                one row per photo (failed and stale rows say so)
    DIR/report.html               thumbnails linking to the full-size pictures
    DIR/photos/<photo_id>/        result.json + the photo's pictures

Every file is written under a temporary name and renamed. A photo's folder is built complete
under ``photos/.new-<id>-<pid>`` and then put in the place of the old one in one step, so a
record and its pictures always belong to the same photo and a failed record has no pictures.
Nothing here ever rewrites a file in place; unchanged pictures are hard-linked into the new
folder.

The content of ``result.json`` is :class:`cleftscore.run.record.PhotoRecord`; this module reads
and writes it, and turns records into the CSV's rows (one column per measure).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cleftscore.errors import CleftscoreError
from cleftscore.run.record import RECORD_VERSION, THUMBNAIL, PhotoRecord

__all__ = [
    "CSV_COLUMNS",
    "RunFolderBusyError",
    "RunLock",
    "csv_columns",
    "csv_row",
    "is_run_folder",
    "list_photo_ids",
    "photo_dir",
    "read_picture",
    "read_record",
    "read_run_settings",
    "read_records",
    "settings_differences",
    "write_photo",
    "write_run_settings",
    "write_run_summary",
    "write_summary",
]

RECORD_FILE = "result.json"
RUN_FILE = "run.json"
LOCK_FILE = ".cleftscore.lock"
CSV_FILE = "scores.csv"
REPORT_FILE = "report.html"
PHOTOS_DIR = "photos"


class RunFolderBusyError(CleftscoreError):
    """Another cleftscore process is writing into the same run folder."""


# ----------------------------------------------------------------------------- reading


def photo_dir(run_dir: str | os.PathLike[str], photo_id: str) -> Path:
    """The folder of one photo in a run."""
    return Path(run_dir) / PHOTOS_DIR / photo_id


def is_run_folder(run_dir: str | os.PathLike[str]) -> bool:
    """Whether ``run_dir`` looks like a run folder (has ``photos/``)."""
    return (Path(run_dir) / PHOTOS_DIR).is_dir()


def list_photo_ids(run_dir: str | os.PathLike[str]) -> list[str]:
    """Every photo folder of a run (sorted), finished or not; staging folders are skipped."""
    photos = Path(run_dir) / PHOTOS_DIR
    if not photos.is_dir():
        return []
    return sorted(p.name for p in photos.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_record(run_dir: str | os.PathLike[str], photo_id: str) -> PhotoRecord:
    """The record of one photo; an unreadable one becomes a ``failed``, ``damaged`` record.

    Never raises for a bad file: the message names the file and says what to do, so every
    caller shows it as a failed row.
    """
    path = photo_dir(run_dir, photo_id) / RECORD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, Mapping):
            raise TypeError("not a JSON object")
        record = PhotoRecord.from_json(data)
    except FileNotFoundError:
        reason = "no result.json (an interrupted run of an older cleftscore?)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = f"unreadable record ({type(exc).__name__}: {' '.join(str(exc).split())})"
    else:
        if record.photo_id != photo_id:
            reason = f"record names photo {record.photo_id!r}, not this folder"
        else:
            return record
    return PhotoRecord(
        file=photo_id,
        photo_id=photo_id,
        status="failed",
        message=f"{path}: {reason}; left as it is, score the photo again to replace it",
        damaged=True,
    )


def read_picture(run_dir: str | os.PathLike[str], photo_id: str, name: str) -> bytes:
    """The bytes of a picture a record lists, read only from inside the photo's folder.

    A run folder may come from anywhere, so nothing it says is followed out of it: ``name``
    must be a plain relative path (no ``..``, not absolute), and no part of the way from the
    run folder to the file may be a symbolic link.

    Raises
    ------
    CleftscoreError
        A name that leads out of the folder, or a symbolic link on the way (the message says which).
    OSError
        The file cannot be read (missing, permission).
    """
    from pathlib import PurePosixPath

    rel = PurePosixPath(name)
    folder = photo_dir(run_dir, photo_id)
    if not rel.parts or "\\" in name or rel.is_absolute() or any(part in ("..", ".", "") for part in rel.parts):
        raise CleftscoreError(f"{folder / 'result.json'}: lists the picture {name!r}, which is not a file inside "
                              "the photo's folder; the run folder was altered, score the photo again")  # fmt: skip
    root = Path(run_dir)
    here = root
    for part in (PHOTOS_DIR, photo_id, *rel.parts):
        here = here / part
        if here.is_symlink():
            raise CleftscoreError(f"{here}: a symbolic link in the run folder; links are not followed "
                                  "(they could lead to any file), copy the file in instead")  # fmt: skip
    fd = os.open(here, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise CleftscoreError(f"{here}: not a regular file; the run folder was altered, score the photo again")
        return fh.read()


def read_records(run_dir: str | os.PathLike[str], photo_ids: Sequence[str] | None = None) -> list[PhotoRecord]:
    """Records of the given photos (default: every photo folder), damaged ones included."""
    ids = list_photo_ids(run_dir) if photo_ids is None else list(photo_ids)
    return [read_record(run_dir, pid) for pid in ids if photo_dir(run_dir, pid).is_dir()]


def read_run_settings(run_dir: str | os.PathLike[str]) -> tuple[dict[str, Any] | None, list[str] | None]:
    """(settings, photo ids) of the latest run into the folder, from ``run.json``; Nones if absent."""
    try:
        data = json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))
        return dict(data["settings"]), [str(p) for p in data["photo_ids"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


# ----------------------------------------------------------------------------- writing


def write_run_settings(run_dir: str | os.PathLike[str], settings: Mapping[str, Any], photo_ids: Sequence[str]) -> None:
    """Record which settings and photos the current run is about (``run.json``)."""
    from cleftscore.io import write_json

    write_json(
        Path(run_dir) / RUN_FILE,
        {"record_version": RECORD_VERSION, "settings": dict(settings), "photo_ids": list(photo_ids)},
    )


def write_photo(
    run_dir: str | os.PathLike[str],
    record: PhotoRecord,
    files: Mapping[str, np.ndarray | bytes | Path],
) -> Path:
    """Write one photo's folder complete, then put it in the place of the old one.

    Parameters
    ----------
    run_dir : path
        The run folder.
    record : PhotoRecord
        The record; its ``pictures`` must name exactly the keys of ``files``.
    files : mapping of str -> ndarray, bytes or Path
        Relative file name -> a uint8 image (written as PNG), bytes (written as they are) or an
        existing file (hard-linked, or copied).

    Returns
    -------
    Path
        The photo's folder.
    """
    from cleftscore.io import atomic_write_bytes, link_or_copy, replace_folder, write_json, write_png

    if set(files) != set(record.pictures):
        raise ValueError(f"record lists pictures {sorted(record.pictures)} but files {sorted(files)} were given")
    photos = Path(run_dir) / PHOTOS_DIR
    target = photos / record.photo_id
    staging = photos / f".new-{record.photo_id}-{os.getpid()}"
    import shutil

    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for name, content in files.items():
            dst = staging / name
            if isinstance(content, Path):
                link_or_copy(content, dst)
            elif isinstance(content, bytes):
                atomic_write_bytes(dst, content)
            else:
                write_png(dst, content)
        write_json(staging / RECORD_FILE, record.to_json())
        replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


# ----------------------------------------------------------------------------- CSV


#: The CSV's fixed columns; measure columns (:attr:`PhotoRecord.measures`) follow ``message``.
CSV_COLUMNS = (
    "file",
    "photo_id",
    "status",
    "reading",
    "score",
    "quality",
    "message",
    "method",
    "roi",
    "mask_file",
    "metric",
    "colorspace",
    "erosion",
    "size",
    "detector",
    "faces_found",
    "steps",
    "adapt_steps",
    "loss",
    "seed",
    "generator",
    "generator_sha256",
    "device",
    "precision",
    "cached",
    "time_align_s",
    "time_normalize_s",
    "notes",
    "cleftscore_version",
    "calibrated_rating",
    "severity_0_100",
    "score_definition",
)
#: Measures that always get a column (empty where a method has none), so CSVs of both methods line up.
STANDARD_MEASURES = ("landmark_asymmetry_px",)
#: Measures that place the score among normal faces: the headline, right after ``reading``.
HEADLINE_MEASURES = ("reference_percentile", "reference_z")


def csv_columns(records: Sequence[PhotoRecord]) -> list[str]:
    """Columns of a CSV of these records: the reading first, fixed ones, then every other measure name seen."""
    names = list(STANDARD_MEASURES)
    for r in records:
        names.extend(k for k in r.measures if k not in names and k not in HEADLINE_MEASURES)
    k = CSV_COLUMNS.index("reading") + 1
    i = CSV_COLUMNS.index("method") + 1
    return [*CSV_COLUMNS[:k], *HEADLINE_MEASURES, *CSV_COLUMNS[k:i], *names, *CSV_COLUMNS[i:]]


def _reading(record: PhotoRecord) -> str:
    """The reading among normal faces (within the normal range / borderline / outside), from the record's percentile."""
    from cleftscore.score.reference import reading_of

    m = record.measures.get("reference_percentile")
    return reading_of(m.value) if m is not None and record.ok else ""


def _fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


#: Settings that do not change a score (how fast, not what): not compared for staleness.
#: ``reference`` places a score among normal faces; it does not change the score.
_NEUTRAL_SETTINGS = ("gan.batch", "gan.compile", "gan.device", "gan.generator", "gan.vgg16", "reference")


def settings_differences(record: Mapping[str, Any], run: Mapping[str, Any]) -> list[str]:
    """Settings of a record that differ from the run's, as ``name=record (not run)``.

    Only the settings ``run`` names are compared (a rescore names only ``score``). GAN
    settings are ignored when neither uses the GAN, and so are settings that only change speed.
    """
    fa, fb = _flat(record), _flat(run)
    skip = set(_NEUTRAL_SETTINGS)
    if fa.get("method") != "gan" and fb.get("method", fa.get("method")) != "gan":
        skip |= {k for k in fb if k.startswith("gan.")}
    if fa.get("method") != "asymmetry" and fb.get("method", fa.get("method")) != "asymmetry":
        skip.add("score.asymmetry_score")  # the GAN method's score is S whatever this says
    keys = sorted(k for k in fb if k not in skip and fa.get(k) != fb.get(k))
    return [f"{k}={fa.get(k)} (not {fb.get(k)})" for k in keys]


def csv_row(record: PhotoRecord, *, stale: Sequence[str] = ()) -> dict[str, Any]:
    """One CSV row with every setting; ``stale`` lists settings that differ from the run's."""
    s = record.settings
    sc = s.get("score") or {}
    diff = sc.get("difference") or {}
    gs = s.get("gan") or {}
    gan = s.get("method") == "gan"
    t = record.timings
    env = record.environment
    cal = record.calibration or {}
    g = record.geometry
    status, score, message = record.status, _fmt(record.score, 6), record.message
    if stale and record.ok:
        status, score = "stale", ""
        message = (
            "scored with other settings than this run: "
            + ", ".join(stale)
            + "; run `cleftscore rescore` or score it again"
        )
    row: dict[str, Any] = {
        "file": record.file,
        "photo_id": record.photo_id,
        "status": status,
        "reading": _reading(record) if status == "ok" else "",
        "score": score,
        "quality": record.quality,
        "message": message,
        "method": record.method,
        "roi": sc.get("roi", ""),
        "mask_file": sc.get("mask_file") or "",
        "metric": diff.get("metric", ""),
        "colorspace": diff.get("colorspace", ""),
        "erosion": diff.get("erosion", ""),
        "size": g.size if g is not None else "",
        "detector": s.get("detector", ""),
        "faces_found": g.faces_found if g is not None else "",
        "steps": gs.get("steps", "") if gan else "",
        "adapt_steps": gs.get("adapt_steps", "") if gan else "",
        "loss": gs.get("loss", "") if gan else "",
        "seed": s.get("seed", ""),
        "generator": env.get("generator", "") if gan else "",
        "generator_sha256": env.get("generator_sha256", "") if gan else "",
        "device": env.get("device", "") if gan else "cpu",
        "precision": gs.get("precision", "") if gan else "",
        "cached": record.cached,
        "time_align_s": f"{t.get('align_s', 0.0):.2f}",
        "time_normalize_s": f"{t.get('normalize_s', t.get('time_inversion_s', 0.0) + t.get('time_adaptation_s', 0.0)):.2f}",
        "notes": "; ".join(record.notes),
        "cleftscore_version": env.get("cleftscore_version", ""),
        "calibrated_rating": _fmt(cal.get("calibrated_rating"), 3),
        "severity_0_100": _fmt(cal.get("severity_0_100"), 3),
        "score_definition": record.score_definition if record.ok else "",
    }
    for name, m in record.measures.items():
        row[name] = f"{m.value:.3f}"
    return row


def write_summary(
    run_dir: str | os.PathLike[str],
    records: Sequence[PhotoRecord],
    *,
    settings: Mapping[str, Any] | None,
) -> tuple[Path, Path]:
    """Write ``scores.csv`` and ``report.html`` from records.

    Rows whose record was made with other settings than ``settings`` (the run's) are marked
    ``stale``, with the differing settings in the message and no score.
    """
    from cleftscore.report.html import write_html_report
    from cleftscore.report.writers import write_csv

    run = Path(run_dir)
    rows, html_rows = [], []
    for r in records:
        stale = settings_differences(r.settings, settings) if settings is not None and r.ok and not r.damaged else []
        row = csv_row(r, stale=stale)
        rows.append(row)
        folder = photo_dir(run, r.photo_id)
        thumb = folder / THUMBNAIL if r.ok and THUMBNAIL in r.pictures else None
        html_rows.append(
            {
                **row,
                "panel_png": str(thumb) if thumb is not None and thumb.is_file() else None,
                "panel_link": f"{PHOTOS_DIR}/{r.photo_id}/panel.png" if r.ok and "panel.png" in r.pictures else None,
            }
        )
    csv_path, html_path = run / CSV_FILE, run / REPORT_FILE
    cols = csv_columns(records)
    write_csv(csv_path, rows, columns=cols)
    measured = {name for r in records for name in r.measures}
    definitions = sorted({r.score_definition for r in records if r.ok})
    write_html_report(
        html_path,
        html_rows,
        title="cleftscore report",
        settings={"score": " | ".join(definitions)} if definitions else None,
        columns=[
            "file",
            "status",
            "score",
            "method",
            "roi",
            "metric",
            "colorspace",
            "erosion",
            *(c for c in cols if c in measured),
            "message",
            "notes",
        ],  # fmt: skip
    )
    return csv_path, html_path


def write_run_summary(run_dir: str | os.PathLike[str], photo_ids: Sequence[str] | None = None) -> tuple[Path, Path]:
    """Write ``scores.csv`` and ``report.html`` from the records of a run.

    Parameters
    ----------
    run_dir : path
        The run folder (``out_dir`` of :func:`cleftscore.score_photos`).
    photo_ids : sequence of str, optional
        Photos to include, in this order; default those of the latest score or rescore
        (``run.json``), or every photo folder.

    Returns
    -------
    (Path, Path)
        The CSV and HTML paths.
    """
    run = Path(run_dir)
    with RunLock(run):
        settings, latest = read_run_settings(run)
        ids = list(photo_ids) if photo_ids is not None else latest if latest is not None else list_photo_ids(run)
        return write_summary(run, read_records(run, ids), settings=settings)


# ----------------------------------------------------------------------------- the lock


class RunLock:
    """Advisory lock on a run folder, held for a whole score, rescore or calibration.

    A second process that tries to take it fails at once with :class:`RunFolderBusyError`. The
    operating system drops the lock when its process ends, even by SIGKILL, so a crash never
    leaves a folder locked. Taking it also undoes what a crashed run left half-done. Inside the
    process that holds it, taking it again is allowed (the command line holds it around
    ``score_photos``, which takes it too).

    Examples
    --------
    >>> with RunLock(out_dir):            # doctest: +SKIP
    ...     ...                           # write into out_dir
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        from cleftscore.io import ProcessLock

        self.run_dir = Path(run_dir)
        self._lock = ProcessLock(self.run_dir / LOCK_FILE)

    def __enter__(self) -> RunLock:
        try:
            holder = self._lock.acquire()
        except OSError as exc:
            raise CleftscoreError(
                f"{self.run_dir}: cannot write into this folder ({exc.strerror or exc}); choose another --out"
            ) from None
        if holder == str(os.getpid()):
            return self  # this process holds it already
        if holder is not None:
            raise RunFolderBusyError(
                f"{self.run_dir}: another cleftscore run (process {holder}) is writing into this folder; "
                "wait for it to finish or choose another --out"
            )
        from cleftscore.io import restore_replaced_folders

        restore_replaced_folders(self.run_dir / PHOTOS_DIR)
        for tmp in self.run_dir.glob(".*.tmp"):  # a summary file cut short by a crash
            tmp.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


@contextlib.contextmanager
def locked(run_dir: str | os.PathLike[str] | None) -> Iterator[None]:
    """:class:`RunLock` on ``run_dir``, or nothing when it is None."""
    if run_dir is None:
        yield
        return
    with RunLock(run_dir):
        yield
