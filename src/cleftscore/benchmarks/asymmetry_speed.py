"""Seconds per photo of the weights-free path (``--method asymmetry``) on one CPU core, stage by stage.

The path a photo takes through ``cleftscore score --method asymmetry``: load, face detection,
landmarks, FFHQ alignment, the mirror normalizer, the paper's S, the face-referenced score, the
pictures, PNG/JPEG encoding and the record and CSV. Each stage is timed alone on the previous
stage's output (the median of ``repeats`` calls), and the whole photo is timed through the
pipeline itself (:func:`cleftscore.run.pipeline.score_photos` into a fresh run folder, pictures,
record, CSV and HTML included).

The process is pinned to one core while it runs (CPU affinity, OpenCV and torch threads, and the
OpenMP/MKL/OpenBLAS variables for libraries that read them later); the JSON says what was
pinned. The stages are plain callables in a :class:`SpeedStages` record, so the same timing can
drive an older version of the package (a script builds the record from that version's names).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_SIZES",
    "SpeedStages",
    "default_stages",
    "one_core",
    "run_asymmetry_speed",
    "scaled_copies",
]

#: Longest sides of the synthetic up/down-scaled copies of one photo.
DEFAULT_SIZES = (512, 1024, 2048, 4096)
#: Pictures of a scored photo in the order the pipeline makes them.
PICTURES = ("heatmap.png", "overlay.png", "overlay_original.png", "colorize", "colorbar", "panel.png", "thumb.jpg")


@dataclass(frozen=True)
class SpeedStages:
    """The functions of the weights-free path that are timed, with the signatures the harness calls.

    Attributes
    ----------
    load : callable
        ``load(path) -> (H, W, 3) uint8``.
    detect : callable
        ``detect(image) -> list of boxes`` (largest first).
    landmarks : callable
        ``landmarks(image, box) -> (68, 2)``.
    align : callable
        ``align(image, landmarks, size) -> AlignedFace``.
    mask : callable
        ``mask(landmarks_aligned, size) -> (S, S) float32``, the pipeline's ROI of S.
    mirror : callable
        ``mirror(aligned_face) -> (S, S, 3) uint8 or None`` (None: the normalizer refused the face).
    paper_score : callable
        ``paper_score(aligned, normalized, mask) -> (score, heatmap)``.
    face_score : callable
        ``face_score(aligned, normalized, landmarks) -> (score, heatmap, region)``.
    normal_fraction : callable
        ``normal_fraction(score) -> float`` (reads the normative reference).
    heatmap_top : callable
        ``heatmap_top() -> float``, the run's colour-scale top.
    pictures : module-like
        Has ``heatmap_figure``, ``overlay``, ``overlay_on_original``, ``colorize``, ``colorbar``,
        ``panel``, ``thumbnail_jpeg``, ``score_pictures`` and ``PANEL_HEIGHT``.
    write_png : callable
        ``write_png(path, image)``.
    write_json : callable
        ``write_json(path, data)``.
    whole : callable
        ``whole(paths, out_dir)``: the pipeline on these photos into a fresh run folder.
    write_summary : callable
        ``write_summary(run_dir)``: scores.csv and report.html of a finished run.
    version : str
        Which code this is (for the JSON).
    """

    load: Callable[[Path], np.ndarray]
    detect: Callable[[np.ndarray], Sequence[Any]]
    landmarks: Callable[[np.ndarray, Any], np.ndarray]
    align: Callable[[np.ndarray, np.ndarray, int], Any]
    mask: Callable[[np.ndarray, int], np.ndarray]
    mirror: Callable[[Any], np.ndarray | None]
    paper_score: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[float, np.ndarray]]
    face_score: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[float, np.ndarray, np.ndarray]]
    normal_fraction: Callable[[float], float]
    heatmap_top: Callable[[], float]
    pictures: Any
    write_png: Callable[[Path, np.ndarray], Any]
    write_json: Callable[[Path, Any], Any]
    whole: Callable[[Sequence[Path], Path], Any]
    write_summary: Callable[[Path], Any]
    version: str


def default_stages() -> SpeedStages:
    """The stages of this checkout, called as the pipeline calls them (default settings)."""
    from cleftscore import __version__
    from cleftscore.face.align import align_face
    from cleftscore.face.detect import detect_faces
    from cleftscore.face.landmarks import predict_landmarks
    from cleftscore.face.roi import roi_mask
    from cleftscore.io import load_image, write_json, write_png
    from cleftscore.normalize.mirror import MirrorNormalizer
    from cleftscore.report import pictures
    from cleftscore.score.paper import ScoreSettings, heatmap_top, score_face_referenced, score_photo
    from cleftscore.score.reference import load_reference

    settings = ScoreSettings()
    normalizer = MirrorNormalizer()

    def mirror(face: Any) -> np.ndarray | None:
        return normalizer.normalize([face])[0].image

    def paper(aligned: np.ndarray, normalized: np.ndarray, mask: np.ndarray) -> tuple[float, np.ndarray]:
        r = score_photo(aligned, normalized, mask, settings=settings)
        return r.score, r.heatmap

    def whole(paths: Sequence[Path], out: Path) -> Any:
        from cleftscore.run.pipeline import score_photos
        from cleftscore.run.settings import PipelineSettings

        return score_photos(list(paths), PipelineSettings(method="asymmetry"), out_dir=out)

    def write_summary(run: Path) -> Any:
        from cleftscore.run.folder import write_run_summary

        return write_run_summary(run)

    def face(aligned: np.ndarray, normalized: np.ndarray, lm: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        r, region = score_face_referenced(aligned, normalized, lm, settings=settings)
        return r.score, r.heatmap, region

    return SpeedStages(
        load=load_image,
        detect=lambda img: detect_faces(img, detector="hog"),
        landmarks=predict_landmarks,
        align=lambda img, lm, size: align_face(img, lm, size=size),
        mask=lambda lm, size: roi_mask(lm, size, region=settings.roi),
        mirror=mirror,
        paper_score=paper,
        face_score=face,
        normal_fraction=lambda s: load_reference().fraction_more_symmetric(s),
        heatmap_top=lambda: heatmap_top("asymmetry", settings),
        pictures=pictures,
        write_png=write_png,
        write_json=write_json,
        whole=whole,
        write_summary=write_summary,
        version=f"cleftscore {__version__} ({Path(__file__).resolve().parents[1]})",
    )


@contextlib.contextmanager
def one_core() -> Iterator[dict[str, Any]]:
    """Pin this process to one CPU core while the block runs; yields what was pinned.

    CPU affinity (Linux), OpenCV's thread count and torch's intra-op threads are set in the
    process and restored afterwards; ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and
    ``OPENBLAS_NUM_THREADS`` are set to 1 for libraries that read them when they load (a library
    already loaded keeps its pool, but the affinity still holds it to one core).
    """
    import cv2

    info: dict[str, Any] = {}
    old_env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    for k in old_env:
        os.environ[k] = "1"
    info["env"] = dict.fromkeys(old_env, "1")
    old_affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if old_affinity:
        cpu = min(old_affinity)
        os.sched_setaffinity(0, {cpu})
        info["cpu_affinity"] = [cpu]
    else:
        info["cpu_affinity"] = "not settable on this platform"
    old_cv = cv2.getNumThreads()
    cv2.setNumThreads(1)
    info["cv2_threads"] = 1
    torch = None
    if importlib.util.find_spec("torch") is not None:
        import torch

        old_torch = torch.get_num_threads()
        torch.set_num_threads(1)
        info["torch_threads"] = 1
    try:
        yield info
    finally:
        cv2.setNumThreads(old_cv)
        if torch is not None:
            torch.set_num_threads(old_torch)
        if old_affinity:
            os.sched_setaffinity(0, old_affinity)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def scaled_copies(photo: Path, sizes: Sequence[int], folder: Path) -> list[Path]:
    """JPEG copies (quality 95) of ``photo`` with these longest sides (area-averaged down, bicubic up)."""
    import cv2

    from cleftscore.io import load_image

    img = load_image(photo)
    h, w = img.shape[:2]
    out = []
    for side in sizes:
        k = side / max(h, w)
        size = (max(1, round(w * k)), max(1, round(h * k)))
        interp = cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC
        small = cv2.resize(img, size, interpolation=interp)
        path = folder / f"{photo.stem}_{side}px.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        out.append(path)
    return out


def _median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def _picture_times(st: SpeedStages, c: dict[str, Any], repeats: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Each picture of :func:`score_pictures`, made as it makes them."""
    p = st.pictures
    hm, mask, vmax, aligned = c["heatmap"], c["region"], c["vmax"], c["aligned"]
    title = f"score = {c['score']:.3f}"
    units = "difference in multiples of the face's own (control-region) residual"
    times: dict[str, float] = {}
    made: dict[str, Any] = {}
    calls = {
        "heatmap.png": lambda: p.heatmap_figure(hm, vmax=vmax, title=title, units=units),
        "overlay.png": lambda: p.overlay(aligned, hm, mask=mask, vmax=vmax),
        "overlay_original.png": lambda: p.overlay_on_original(c["image"], c["face"], hm, mask=mask, vmax=vmax),
        "colorize": lambda: p.colorize(hm, vmax=vmax),
        "colorbar": lambda: p.colorbar(vmax, min(p.PANEL_HEIGHT, aligned.shape[0])),
    }
    for name, fn in calls.items():
        times[name], made[name] = _median_time(fn, repeats)
    images = [aligned, c["normalized"], made["colorize"], made["overlay.png"], made["colorbar"]]
    labels = ["aligned", "normalized", "heat map", "overlay", "scale"]
    height = min(p.PANEL_HEIGHT, aligned.shape[0])
    times["panel.png"], made["panel.png"] = _median_time(lambda: p.panel(images, labels, height=height), repeats)
    times["thumb.jpg"], made["thumb.jpg"] = _median_time(lambda: p.thumbnail_jpeg(made["panel.png"]), repeats)
    times["score_pictures (all)"], _ = _median_time(
        lambda: p.score_pictures(
            aligned,
            c["normalized"],
            hm,
            mask=mask,
            score=c["score"],
            original=c["image"],
            aligned_face=c["face"],
            vmax=vmax,
            units=units,
        ),  # fmt: skip
        repeats,
    )
    return times, made


def _time_photo(st: SpeedStages, path: Path, *, size: int, repeats: int, scratch: Path) -> dict[str, Any]:
    """Stage times of one photo; stops at the first stage that refuses it (no face, turned away)."""
    t: dict[str, float] = {}
    row: dict[str, Any] = {"photo": str(path), "stages_s": t}
    t["load"], image = _median_time(lambda: st.load(path), repeats)
    row["shape"] = list(image.shape[:2])
    t["detect"], boxes = _median_time(lambda: st.detect(image), repeats)
    if not boxes:
        row["status"] = "no face"
        return row
    t["landmarks"], lm = _median_time(lambda: st.landmarks(image, boxes[0]), repeats)
    t["align"], face = _median_time(lambda: st.align(image, lm, size), repeats)
    t["roi_mask"], mask = _median_time(lambda: st.mask(face.landmarks, size), repeats)
    t["mirror"], normalized = _median_time(lambda: st.mirror(face), repeats)
    if normalized is None:
        row["status"] = "refused by the mirror normalizer"
        return row
    aligned = face.image
    t["paper_score"], (paper, _) = _median_time(lambda: st.paper_score(aligned, normalized, mask), repeats)
    t["face_referenced_score"], (score, heat, region) = _median_time(
        lambda: st.face_score(aligned, normalized, face.landmarks), repeats
    )
    t["normal_fraction"], _ = _median_time(lambda: st.normal_fraction(score), repeats)
    t["heatmap_top"], vmax = _median_time(st.heatmap_top, repeats)
    ctx = {"heatmap": heat, "region": region.astype(np.float32), "vmax": vmax, "aligned": aligned,
           "normalized": normalized, "score": score, "image": image, "face": face}  # fmt: skip
    pic_times, made = _picture_times(st, ctx, repeats)
    row["pictures_s"] = pic_times
    enc: dict[str, float] = {}
    arrays = {"aligned.png": aligned, "normalized.png": normalized,
              **{k: v for k, v in made.items() if k.endswith(".png")}}  # fmt: skip
    for name, arr in arrays.items():
        enc[name], _ = _median_time(lambda a=arr, n=name: st.write_png(scratch / n, a), repeats)
    enc["thumb.jpg (bytes)"], _ = _median_time(lambda: (scratch / "thumb.jpg").write_bytes(made["thumb.jpg"]), repeats)
    row["encode_s"] = enc
    row["status"] = "ok"
    row["score"], row["paper_S"] = float(score), float(paper)
    return row


def _time_whole(st: SpeedStages, path: Path, *, repeats: int, scratch: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    runs = []

    def one() -> None:
        run = Path(tempfile.mkdtemp(dir=scratch))
        runs.append(run)
        st.whole([path], run)

    out["whole_photo"], _ = _median_time(one, repeats)
    run = runs[-1]
    out["write_summary (csv+html)"], _ = _median_time(lambda: st.write_summary(run), repeats)
    records = sorted(run.glob("photos/*/result.json"))
    if records:
        import json

        data = json.loads(records[0].read_text(encoding="utf-8"))
        out["write_record (result.json)"], _ = _median_time(lambda: st.write_json(scratch / "r.json", data), repeats)
    return out


def run_asymmetry_speed(
    photos: Sequence[str | os.PathLike[str]],
    *,
    sizes: Sequence[int] = DEFAULT_SIZES,
    scale_source: str | os.PathLike[str] | None = None,
    repeats: int = 3,
    aligned_size: int = 1024,
    stages: SpeedStages | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time every stage of the weights-free path, and the whole photo, on one CPU core.

    Parameters
    ----------
    photos : sequence of path
        Photo files or folders (their image files, not recursive) to time as they are.
    sizes : sequence of int
        Longest sides of synthetic copies of ``scale_source`` (JPEG, quality 95).
    scale_source : path, optional
        The photo scaled to ``sizes`` (default: the photo with the most pixels among ``photos``).
    repeats : int
        Calls per stage; the median is reported (>= 1).
    aligned_size : int
        Side of the aligned face (the pipeline's default 1024).
    stages : SpeedStages, optional
        What to time (default :func:`default_stages`, this checkout).
    progress : callable, optional
        Called with one line per photo.

    Returns
    -------
    dict
        JSON-able: ``pinning`` (what was held to one core), ``machine``, ``code``, ``repeats``,
        and ``photos``: per photo its shape, ``status``, ``stages_s`` (seconds, medians),
        ``pictures_s``, ``encode_s``, ``whole_s`` (the pipeline on this one photo, and the
        record and CSV writing), ``sum_of_stages_s`` and the scores.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    st = stages or default_stages()
    files: list[Path] = []
    for item in photos:
        p = Path(item)
        files += sorted(f for f in p.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png")) if p.is_dir() else [p]
    if not files:
        raise ValueError("no photos to time")
    load_start = os.getloadavg()[0]  # other work on the machine inflates the times
    with tempfile.TemporaryDirectory(prefix="cleftscore-speed-") as tmp, one_core() as pinning:
        scratch = Path(tmp)
        source = Path(scale_source) if scale_source is not None else max(files, key=_pixels)
        copies = scaled_copies(source, sizes, scratch) if sizes else []
        st.whole([files[0]], scratch / "warm-up")  # imports and first-call costs stay out of the times
        rows = []
        for path in [*files, *copies]:
            row = _time_photo(st, path, size=aligned_size, repeats=repeats, scratch=scratch)
            row["whole_s"] = _time_whole(st, path, repeats=repeats, scratch=scratch)
            row["sum_of_stages_s"] = _sum(row)
            if path in copies:
                row["photo"] = f"{source.name} scaled to {path.stem.rsplit('_', 1)[-1]}"
            rows.append(row)
            if progress is not None:
                progress(f"{row['photo']}: {row['whole_s']['whole_photo']:.2f} s per photo ({row['status']})")
    return {
        "benchmark": "asymmetry-speed",
        "code": st.version,
        "pinning": pinning,
        "machine": {"cpu": _cpu_name(), "logical_cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "repeats": repeats,
        "aligned_size": aligned_size,
        "statistic": "median of the repeats, seconds",
        "photos": rows,
    }


def _sum(row: Mapping[str, Any]) -> float:
    total = sum(row["stages_s"].values())
    pics = dict(row.get("pictures_s", {}))
    pics.pop("score_pictures (all)", None)
    total += sum(pics.values()) + sum(row.get("encode_s", {}).values())
    whole = row.get("whole_s", {})
    return float(total + whole.get("write_summary (csv+html)", 0.0) + whole.get("write_record (result.json)", 0.0))


def _pixels(path: Path) -> int:
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.size[0] * im.size[1]
    except OSError:
        return 0


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
