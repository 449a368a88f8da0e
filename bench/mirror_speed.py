"""Wall time per photo of the weights-free asymmetry method on CPU (issue 7, target < 5 s).

Per photo: load + detect + landmarks + FFHQ alignment at 1024 px + mirror normalization + PSE
heat map + mouth-ROI score + every picture (false-colour figure with colour bar, overlay on the
aligned face, overlay warped back onto the photo, panel) + writing the PNG/JSON outputs. Per run:
scores.csv and report.html. Results go to ``bench/results/mirror_speed.json``.

Usage::

    python bench/mirror_speed.py [FACES_DIR] [--size 1024] [--warp thin-plate] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_FACES = HERE.parent.parent / "shared" / "faces"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"}


def _one_photo(path: Path, out_dir: Path, *, size: int, warp: str) -> dict:
    from cleftscore.face.align import warp_to_original
    from cleftscore.face.prepare import prepare_photo
    from cleftscore.face.roi import roi_mask
    from cleftscore.heatmap import DifferenceSettings
    from cleftscore.io import write_json, write_png
    from cleftscore.normalize.mirror import mirror_normalize
    from cleftscore.report.pictures import colorize, heatmap_figure, overlay, panel
    from cleftscore.score.paper import ScoreSettings, score_photo

    t = {}
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

    t3 = time.perf_counter()
    inside = ps.heatmap[mask > 0.5]
    vmax = float(np.percentile(inside, 99.5)) if inside.size and inside.max() > 0 else None
    fig = heatmap_figure(ps.heatmap * mask, vmax=vmax, title=f"S = {ps.score:.3f}")
    ov = overlay(al.image, ps.heatmap, mask=mask, vmax=vmax)
    hm_o = warp_to_original(ps.heatmap, al)
    mask_o = warp_to_original(mask, al)
    ov_o = overlay(prep.original, hm_o, mask=mask_o, vmax=vmax)
    strip = panel(
        [al.image, mres.image, colorize(ps.heatmap * mask, vmax=vmax), ov],
        ["aligned", "normalized (mirror)", "heat map", "overlay"],
        height=min(size, 512),
    )
    t["pictures"] = time.perf_counter() - t3

    t4 = time.perf_counter()
    d = out_dir / path.stem
    write_png(d / "aligned.png", al.image)
    write_png(d / "normalized.png", mres.image)
    write_png(d / "heatmap.png", fig)
    write_png(d / "overlay.png", ov)
    write_png(d / "overlay_original.png", ov_o)
    write_png(d / "panel.png", strip)
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
        "panel_png": str(d / "panel.png"),
        "seconds": {k: round(v, 4) for k, v in t.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("faces", nargs="?", default=str(DEFAULT_FACES))
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--warp", default="thin-plate", choices=["thin-plate", "piecewise-affine"])
    ap.add_argument("--repeat", type=int, default=1, help="timed passes over the photos")
    ap.add_argument("--out", default=str(HERE / "results" / "mirror_speed.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("mirror_speed")

    from cleftscore.errors import CleftscoreError
    from cleftscore.report.html import write_html_report
    from cleftscore.report.writers import write_csv

    photos = sorted(p for p in Path(args.faces).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        log.error("no photos in %s", args.faces)
        return 1
    # warm-up (imports, dlib model load) on the first photo, not timed
    with tempfile.TemporaryDirectory() as tmp:
        try:
            _one_photo(photos[0], Path(tmp), size=args.size, warp=args.warp)
        except CleftscoreError:
            pass
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp)
        for rep in range(args.repeat):
            for p in photos:
                t0 = time.perf_counter()
                try:
                    row = _one_photo(p, out_dir, size=args.size, warp=args.warp)
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
                log.info("%-45s %-6s %6.2f s  S=%s", p.name, row["status"], row["seconds"]["total"], row["score"])
        t0 = time.perf_counter()
        flat = [{k: v for k, v in r.items() if k != "seconds"} | {"total_s": r["seconds"]["total"]} for r in rows]
        write_csv(out_dir / "scores.csv", flat)
        write_html_report(
            out_dir / "report.html",
            flat,
            columns=["file", "status", "score", "message", "total_s"],
            settings={"method": "asymmetry", "warp": args.warp, "size": args.size},
        )
        report_s = time.perf_counter() - t0
        report_kb = (out_dir / "report.html").stat().st_size / 1024

    ok = [r["seconds"]["total"] for r in rows if r["status"] == "ok"]
    summary = {
        "benchmark": "mirror_speed",
        "what": "load+prepare+mirror_normalize+score+pictures+write per photo, CPU",
        "size": args.size,
        "warp": args.warp,
        "n_photos": len(photos),
        "n_ok": len(ok),
        "per_photo_s_mean": round(statistics.mean(ok), 3) if ok else None,
        "per_photo_s_median": round(statistics.median(ok), 3) if ok else None,
        "per_photo_s_max": round(max(ok), 3) if ok else None,
        "target_s": 5.0,
        "meets_target": bool(ok) and max(ok) < 5.0,
        "csv_and_html_report_s": round(report_s, 3),
        "report_html_kb": round(report_kb, 1),
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(),
        },
        "photos": rows,
    }
    for r in summary["photos"]:
        r.pop("panel_png", None)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    nan = float("nan")
    log.info(
        "mean %.2f s, max %.2f s per photo (%d ok of %d) -> %s",
        summary["per_photo_s_mean"] or nan,
        summary["per_photo_s_max"] or nan,
        len(ok),
        len(photos),
        out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
