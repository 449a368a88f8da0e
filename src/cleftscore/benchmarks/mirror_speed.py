"""Wall time per photo of the weights-free asymmetry method on CPU (issue 7, target < 5 s).

Per photo: load + detect + landmarks + FFHQ alignment at 1024 px + mirror normalization + PSE
heat map + mouth-ROI score + every picture (false-colour figure with colour bar, overlay on the
aligned face, overlay warped back onto the photo, panel) + writing the PNG/JSON outputs. Per run:
scores.csv and report.html. ``cleftscore bench mirror-speed`` runs it and writes the report
(``bench/results/mirror_speed.json``). :mod:`cleftscore.benchmarks.asymmetry_speed` times the
same path stage by stage through the pipeline itself.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "TARGET_S", "photos_in", "run_mirror_speed"]

logger = logging.getLogger(__name__)

#: Photo file suffixes picked up from a folder.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"})

#: Seconds per photo the method should stay under.
TARGET_S = 5.0


def photos_in(folder: Path) -> list[Path]:
    """The photos of ``folder`` (by suffix), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _normalize_and_score(path: Path, *, size: int, warp: str, t: dict[str, float]) -> tuple:
    """Prepare, mirror and score one photo; stage times go into ``t``."""
    from cleftscore.face.prepare import prepare_photo
    from cleftscore.face.roi import roi_mask
    from cleftscore.heatmap import DifferenceSettings
    from cleftscore.normalize.mirror import mirror_normalize
    from cleftscore.score.paper import ScoreSettings, score_photo

    t0 = time.perf_counter()
    prep = prepare_photo(path, size=size)
    t["load_prepare"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    al = prep.aligned
    mres = mirror_normalize(al.image, al.landmarks, warp=warp)
    t["mirror"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    mask = roi_mask(al.landmarks, size, region="mouth")
    settings = ScoreSettings(roi="mouth", difference=DifferenceSettings())
    ps = score_photo(al.image, mres.image, mask, settings=settings)
    t["score"] = time.perf_counter() - t2
    return prep, mres, mask, settings, ps


def _pictures(prep, mres, mask: np.ndarray, ps, *, size: int) -> dict[str, np.ndarray]:
    """Every picture of a scored photo, by output file name."""
    from cleftscore.face.align import warp_to_original
    from cleftscore.report.pictures import colorize, heatmap_figure, overlay, panel

    al = prep.aligned
    inside = ps.heatmap[mask > 0.5]
    vmax = float(np.percentile(inside, 99.5)) if inside.size and inside.max() > 0 else None
    ov = overlay(al.image, ps.heatmap, mask=mask, vmax=vmax)
    ov_o = overlay(prep.original, warp_to_original(ps.heatmap, al), mask=warp_to_original(mask, al), vmax=vmax)
    strip = panel(
        [al.image, mres.image, colorize(ps.heatmap * mask, vmax=vmax), ov],
        ["aligned", "normalized (mirror)", "heat map", "overlay"],
        height=min(size, 512),
    )
    return {
        "aligned.png": al.image,
        "normalized.png": mres.image,
        "heatmap.png": heatmap_figure(ps.heatmap * mask, vmax=vmax, title=f"S = {ps.score:.3f}"),
        "overlay.png": ov,
        "overlay_original.png": ov_o,
        "panel.png": strip,
    }


def _one_photo(path: Path, out_dir: Path, *, size: int, warp: str) -> dict:
    """Score one photo the weights-free way, make and write its pictures; its row of the report."""
    from cleftscore.io import write_json, write_png

    t: dict[str, float] = {}
    t0 = time.perf_counter()
    prep, mres, mask, settings, ps = _normalize_and_score(path, size=size, warp=warp, t=t)
    t3 = time.perf_counter()
    pictures = _pictures(prep, mres, mask, ps, size=size)
    t["pictures"] = time.perf_counter() - t3
    t4 = time.perf_counter()
    d = out_dir / path.stem
    for name, image in pictures.items():
        write_png(d / name, image)
    write_json(
        d / "result.json",
        {
            "file": str(path),
            "method": "asymmetry",
            "score": ps.score,
            "roi_pixels": ps.roi_pixels,
            "settings": settings.to_dict(),
            "warp": warp,
            "midline_point": mres.midline_point,
            "midline_direction": mres.midline_direction,
            "residual_landmark_error": mres.residual_landmark_error,
            "notes": list(prep.notes),
        },
    )
    t["write"] = time.perf_counter() - t4
    t["total"] = time.perf_counter() - t0
    return {
        "file": path.name,
        "status": "ok",
        "score": ps.score,
        "message": "; ".join(prep.notes),
        "photo_shape": list(prep.original.shape[:2]),
        "residual_landmark_error_px": mres.residual_landmark_error,
        "seconds": {k: round(v, 4) for k, v in t.items()},
    }


def _timed_rows(photos: Sequence[Path], out_dir: Path, *, size: int, warp: str, repeat: int) -> list[dict]:
    """One row per photo and pass; a photo that fails is a row with status ``failed``."""
    from cleftscore.errors import CleftscoreError

    rows: list[dict] = []
    for rep in range(repeat):
        for p in photos:
            t0 = time.perf_counter()
            try:
                row = _one_photo(p, out_dir, size=size, warp=warp)
            except CleftscoreError as exc:
                row = {
                    "file": p.name,
                    "status": "failed",
                    "score": None,
                    "message": str(exc),
                    "seconds": {"total": round(time.perf_counter() - t0, 4)},
                }
            row["repeat"] = rep
            rows.append(row)
            logger.info("%-45s %-6s %6.2f s  S=%s", p.name, row["status"], row["seconds"]["total"], row["score"])
    return rows


def _run_report(rows: list[dict], out_dir: Path, *, size: int, warp: str) -> tuple[float, float]:
    """Write scores.csv and report.html of the rows; seconds taken and the HTML's size in kB."""
    from cleftscore.report.html import write_html_report
    from cleftscore.report.writers import write_csv

    t0 = time.perf_counter()
    flat = [{k: v for k, v in r.items() if k != "seconds"} | {"total_s": r["seconds"]["total"]} for r in rows]
    write_csv(out_dir / "scores.csv", flat)
    write_html_report(
        out_dir / "report.html",
        flat,
        columns=["file", "status", "score", "message", "total_s"],
        settings={"method": "asymmetry", "warp": warp, "size": size},
    )
    return time.perf_counter() - t0, (out_dir / "report.html").stat().st_size / 1024


def run_mirror_speed(photos: Sequence[Path], *, size: int = 1024, warp: str = "thin-plate", repeat: int = 1) -> dict:
    """Time the weights-free method on each photo, pictures and files included.

    Parameters
    ----------
    photos : sequence of Path
        Photos to score; the first also gets an untimed warm-up (imports, dlib model load).
    size : int
        Side of the aligned face in pixels.
    warp : {"thin-plate", "piecewise-affine"}
        Warp of the mirror normalization.
    repeat : int
        Timed passes over the photos.

    Returns
    -------
    dict
        JSON-ready report: per-photo seconds (mean, median, max over the photos that scored),
        whether the target is met, the time of the CSV and HTML report, the machine, and one
        row per photo and pass (``photos``, with each stage's seconds).

    Raises
    ------
    ValueError
        When ``photos`` is empty, ``repeat < 1`` or ``warp`` is unknown.
    """
    from cleftscore.errors import CleftscoreError

    if not photos:
        raise ValueError("no photos to time")
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    if warp not in ("thin-plate", "piecewise-affine"):
        raise ValueError(f"warp must be 'thin-plate' or 'piecewise-affine', got {warp!r}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            _one_photo(photos[0], Path(tmp), size=size, warp=warp)
        except CleftscoreError:
            pass
    with tempfile.TemporaryDirectory() as tmp:
        rows = _timed_rows(photos, Path(tmp), size=size, warp=warp, repeat=repeat)
        report_s, report_kb = _run_report(rows, Path(tmp), size=size, warp=warp)
    ok = [r["seconds"]["total"] for r in rows if r["status"] == "ok"]
    return {
        "benchmark": "mirror_speed",
        "what": "load+prepare+mirror_normalize+score+pictures+write per photo, CPU",
        "size": size,
        "warp": warp,
        "n_photos": len(photos),
        "n_ok": len(ok),
        "per_photo_s_mean": round(statistics.mean(ok), 3) if ok else None,
        "per_photo_s_median": round(statistics.median(ok), 3) if ok else None,
        "per_photo_s_max": round(max(ok), 3) if ok else None,
        "target_s": TARGET_S,
        "meets_target": bool(ok) and max(ok) < TARGET_S,
        "csv_and_html_report_s": round(report_s, 3),
        "report_html_kb": round(report_kb, 1),
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(),
        },
        "photos": rows,
    }
