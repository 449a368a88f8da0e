"""CPU timing of face preprocessing: load + detect + landmarks + FFHQ align to 1024 px.

Times each stage separately and the whole chain for two photos: the 1024 x 1024 sample (a crop
that needs little padding) and the 1200 x 1120 portrait (FFHQ's reflect padding and blur run), and
writes ``bench/results/align_speed.json``. Target: under 2 s per photo on the build machine's CPU.

Usage::

    python bench/align_speed.py [--reps 5] [--faces DIR] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path

from cleftscore.face.align import align_face
from cleftscore.face.detect import detect_faces
from cleftscore.face.landmarks import predict_landmarks
from cleftscore.io import load_image

log = logging.getLogger("bench.align_speed")

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ("aligned_1024_young_woman_bangs.jpg", "glasses_south_asian_male_blue_bg.jpg")


def _time_one(path: Path, size: int) -> dict[str, float]:
    c0 = time.process_time()
    t0 = time.perf_counter()
    image = load_image(path)
    t1 = time.perf_counter()
    box = detect_faces(image)[0]
    t2 = time.perf_counter()
    lm = predict_landmarks(image, box)
    t3 = time.perf_counter()
    align_face(image, lm, size=size)
    t4 = time.perf_counter()
    cpu = time.process_time() - c0
    return {
        "load": t1 - t0,
        "detect": t2 - t1,
        "landmarks": t3 - t2,
        "align": t4 - t3,
        "total": t4 - t0,
        "cpu_total": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "faces")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "align_speed.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    load_start = [round(v, 2) for v in os.getloadavg()]
    results = {}
    for name in PHOTOS:
        path = args.faces / name
        if not path.exists():
            log.warning("skipping %s (not found)", path)
            continue
        _time_one(path, args.size)  # warm-up: loads the landmark model, caches detectors
        runs = [_time_one(path, args.size) for _ in range(args.reps)]
        stages = {k: round(statistics.median(r[k] for r in runs), 4) for k in runs[0]}
        image_shape = list(load_image(path).shape)
        results[name] = {
            "image_shape": image_shape,
            "median_s": stages,
            "min_total_s": round(min(r["total"] for r in runs), 4),
            "max_total_s": round(max(r["total"] for r in runs), 4),
            "note": "median_s are wall-clock seconds; cpu_total is CPU seconds summed over threads",
        }
        log.info("%s %s: median total %.3f s %s", name, image_shape, stages["total"], stages)

    record = {
        "benchmark": "load + HOG detect + 68 landmarks + FFHQ align",
        "output_size": args.size,
        "reps": args.reps,
        "target_s": 2.0,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load_start,
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "note": "shared build machine: other jobs may run at the same time (see load average)",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
