"""CPU timing of face preprocessing: load + detect + landmarks + FFHQ align to 1024 px.

Times each stage separately and the whole chain for each photo; by default the two photos of
the project's shared face collection that span the range: the 1024 x 1024 sample (a crop that
needs little padding) and the 1200 x 1120 portrait (FFHQ's reflect padding and blur run).
Target: under 2 s per photo on the build machine's CPU. ``cleftscore bench align-speed`` runs
it and writes the report (``bench/results/align_speed.json``).
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["PHOTOS", "TARGET_S", "run_align_speed"]

logger = logging.getLogger(__name__)

#: The shared face collection's photos timed by default.
PHOTOS = ("aligned_1024_young_woman_bangs.jpg", "glasses_south_asian_male_blue_bg.jpg")

#: Seconds per photo the preprocessing should stay under.
TARGET_S = 2.0


def _time_one(path: Path, size: int) -> dict[str, float]:
    """Wall seconds of each stage of one photo, and the CPU seconds of the whole chain."""
    from cleftscore.face.align import align_face
    from cleftscore.face.detect import detect_faces
    from cleftscore.face.landmarks import predict_landmarks
    from cleftscore.io import load_image

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


def _time_photo(path: Path, *, reps: int, size: int) -> dict:
    """Median stage times of ``reps`` runs after one untimed warm-up."""
    from cleftscore.io import load_image

    _time_one(path, size)  # warm-up: loads the landmark model, caches detectors
    runs = [_time_one(path, size) for _ in range(reps)]
    stages = {k: round(statistics.median(r[k] for r in runs), 4) for k in runs[0]}
    image_shape = list(load_image(path).shape)
    logger.info("%s %s: median total %.3f s %s", path.name, image_shape, stages["total"], stages)
    return {
        "image_shape": image_shape,
        "median_s": stages,
        "min_total_s": round(min(r["total"] for r in runs), 4),
        "max_total_s": round(max(r["total"] for r in runs), 4),
        "note": "median_s are wall-clock seconds; cpu_total is CPU seconds summed over threads",
    }


def run_align_speed(faces: Path, *, photos: Sequence[str] = PHOTOS, reps: int = 5, size: int = 1024) -> dict:
    """Time load, detection, landmarks and alignment of each photo.

    Parameters
    ----------
    faces : Path
        Folder holding the photos.
    photos : sequence of str
        File names in ``faces``; a missing one is skipped with a warning.
    reps : int
        Timed runs per photo (after one untimed warm-up); the median is reported.
    size : int
        Side of the aligned face in pixels.

    Returns
    -------
    dict
        JSON-ready report: ``results`` per photo (``image_shape``, ``median_s`` per stage,
        ``min_total_s``, ``max_total_s``), the settings, the target, the CPU and the load
        average at the start and the end (the build machine is shared).

    Raises
    ------
    ValueError
        When ``reps < 1`` or ``size < 1``.
    """
    if reps < 1 or size < 1:
        raise ValueError(f"reps and size must be >= 1, got reps={reps}, size={size}")
    load_start = [round(v, 2) for v in os.getloadavg()]
    results = {}
    for name in photos:
        path = faces / name
        if not path.exists():
            logger.warning("skipping %s (not found)", path)
            continue
        results[name] = _time_photo(path, reps=reps, size=size)
    return {
        "benchmark": "load + HOG detect + 68 landmarks + FFHQ align",
        "output_size": size,
        "reps": reps,
        "target_s": TARGET_S,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load_start,
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "note": "shared build machine: other jobs may run at the same time (see load average)",
        "results": results,
    }
