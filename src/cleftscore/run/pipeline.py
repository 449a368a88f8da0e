"""Photos end to end, and re-scoring a finished run: align -> normalize -> heat map -> score.

This is the orchestration behind ``cleftscore score`` and ``cleftscore rescore``; notebooks call
:func:`score_photos` and get the same results as the command line. The stages live elsewhere:
alignment in :mod:`cleftscore.face`, normalizers in :mod:`cleftscore.normalize`, the score in
:mod:`cleftscore.score.paper`, pictures in :mod:`cleftscore.report.pictures` and the run-folder format in
:mod:`cleftscore.run.folder`.

Photos are processed as a stream: each one is aligned, normalized (the GAN in batches), scored
and written, and then its arrays are dropped, so memory does not grow with the number of
photos.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cleftscore import __version__
from cleftscore.errors import CleftscoreError, WeightsMissingError
from cleftscore.face.prepare import PreparedPhoto, prepare_photo
from cleftscore.face.roi import load_user_mask, roi_mask
from cleftscore.io import IMAGE_SUFFIXES as _IO_SUFFIXES
from cleftscore.io import find_images
from cleftscore.normalize import METHODS, GanProgress, Measure, Normalization, Normalizer, make_normalizer
from cleftscore.normalize.gan import GanSettings
from cleftscore.run.folder import (
    PICTURES,
    SNAPSHOTS_DIR,
    FaceGeometry,
    PhotoRecord,
    RunLock,
    list_photo_ids,
    locked,
    photo_dir,
    read_record,
    read_records,
    read_run_settings,
    settings_differences,
    write_photo,
    write_run_settings,
    write_summary,
)
from cleftscore.score.paper import ScoreSettings, score_photo

__all__ = [
    "PipelineSettings",
    "PhotoResult",
    "ProgressHooks",
    "score_photos",
    "rescore_run",
    "write_run_summary",
    "make_lpips_distance",
    "photo_ids",
    "IMAGE_SUFFIXES",
    "expand_inputs",
    "find_inputs",
]


log = logging.getLogger(__name__)

IMAGE_SUFFIXES = tuple(sorted(_IO_SUFFIXES))


@dataclass(frozen=True)
class PipelineSettings:
    """Every knob that produces a score; written to ``result.json`` and the CSV.

    Parameters
    ----------
    method : {"gan", "asymmetry"}
        Normalizer: the paper's StyleGAN2 inversion + adaptation, or the face's own mirror.
    size : int or None
        Side of the aligned face in pixels; ``None`` means the generator's resolution for the
        GAN method and 1024 for the asymmetry method.
    detector : {"hog", "haar"}
        Face detector.
    score : ScoreSettings
        Region, difference metric, colour space and erosion.
    gan : GanSettings
        GAN settings (ignored by the asymmetry method).
    seed : int
        Seed of every random draw (noise maps, w perturbation).
    """

    method: str = "gan"
    size: int | None = None
    detector: str = "hog"
    score: ScoreSettings = field(default_factory=ScoreSettings)
    gan: GanSettings = field(default_factory=GanSettings)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.size is not None and (self.size < 16 or self.size & (self.size - 1)):
            raise ValueError(f"size must be a power of two >= 16, got {self.size}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every setting."""
        return dataclasses.asdict(self)


@dataclass
class PhotoResult:
    """What one photo produced. ``status`` is ``ok`` or ``failed`` (then ``message`` says why).

    The arrays are kept only when :func:`score_photos` is asked to (by default when it writes
    no run folder); a run folder holds them as pictures instead.
    """

    file: str
    photo_id: str
    status: str
    message: str = ""
    method: str = ""
    score: float | None = None
    heatmap: np.ndarray | None = None  # (S, S) float32, aligned frame
    aligned: np.ndarray | None = None  # (S, S, 3) uint8
    normalized: np.ndarray | None = None  # (S, S, 3) uint8
    inverted: np.ndarray | None = None  # (S, S, 3) uint8, GAN without adaptation
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)
    mask: np.ndarray | None = None  # (S, S) float32 ROI weights
    prepared: PreparedPhoto | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    cached: bool = False
    measures: dict[str, Measure] = field(default_factory=dict)  # e.g. landmark_asymmetry_px
    normalization: dict[str, Any] = field(default_factory=dict)  # GAN method: how the steps ran
    score_definition: str = ""  # one line: what ``score`` is
    heatmap_max: float | None = None  # top of the heat map's colour scale, the same for the whole run
    heatmap_units: str = ""  # what the heat map's values are (the label of heatmap.png's colour bar)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def landmark_asymmetry_px(self) -> float | None:
        """Asymmetry method: RMS landmark residual of the mirror registration (pixels)."""
        m = self.measures.get("landmark_asymmetry_px")
        return None if m is None else m.value

    def release_images(self) -> None:
        """Drop the arrays (they are in the run folder now)."""
        self.heatmap = self.aligned = self.normalized = self.inverted = self.mask = None
        self.snapshots = {}
        self.prepared = None


@dataclass
class ProgressHooks:
    """Callbacks the CLI passes to show progress; every one is optional.

    ``photo_done(result)`` after each photo is finished (scored, failed or, in ``rescore``,
    kept as it was);
    ``gan_start(n_photos, total_steps)`` once before the GAN starts;
    ``gan_step(done_steps)`` as GAN steps are issued (batch-level, inversion + adaptation; a
    negative count takes back the steps of an attempt that ran out of GPU memory);
    ``gan_grow(extra_steps)`` when the planned total changes (a split batch adds a batch's
    steps; photos that turned out cached or unusable take theirs back);
    ``message(text)`` for notes and warnings.

    ``photo_done`` (and ``message``, for a cache write that failed) may be called from the
    worker thread that writes a GAN batch's outputs while the next batch runs; one photo at a
    time, in input order.
    """

    photo_done: Callable[[PhotoResult], None] | None = None
    gan_start: Callable[[int, int], None] | None = None
    gan_step: Callable[[int], None] | None = None
    gan_grow: Callable[[int], None] | None = None
    message: Callable[[str], None] | None = None

    def _msg(self, text: str) -> None:
        if self.message is not None:
            self.message(text)
        else:
            log.info(text)

    def _done(self, res: PhotoResult) -> None:
        if self.photo_done is not None:
            self.photo_done(res)


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputPhoto:
    """One photo to score and its photo id (folder name in the run)."""

    path: Path
    photo_id: str


def _safe_id(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).lstrip(".") or "photo"


def _unique(stems: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    ids = []
    for stem in stems:
        n = seen.get(stem.lower(), 0) + 1  # case-blind: macOS and Windows folders are
        seen[stem.lower()] = n
        ids.append(stem if n == 1 else f"{stem}-{n}")
    return ids


def photo_ids(paths: Sequence[str | Path]) -> list[str]:
    """Folder-safe unique ids from file stems (``name``, ``name-2``, ...)."""
    return _unique([_safe_id(Path(p).stem) for p in paths])


def find_inputs(inputs: Sequence[str | Path], *, require_images: bool = True) -> list[InputPhoto]:
    """Photos to score: files as given, folders searched recursively, each with its photo id.

    A photo found in a sub-folder keeps the sub-folder in its id (``patient1__front`` for
    ``photos/patient1/front.jpg`` given as ``photos``), so photos of different patients with
    the same file name stay apart. A folder with no image file anywhere inside stays in the
    list, and fails on its own row with a message saying so.

    Raises
    ------
    CleftscoreError
        With ``require_images``, when no input holds a usable file at all (every input a
        folder without images).
    """
    found: list[tuple[Path, str]] = []
    empty: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            images = find_images(p)
            if not images:
                empty.append(p)
                found.append((p, _safe_id(p.name)))
            for img in images:
                rel = img.relative_to(p).with_suffix("")
                found.append((img, "__".join(_safe_id(part) for part in rel.parts)))
        else:
            # Missing files are reported per photo by the loader, so a batch goes on.
            found.append((p, _safe_id(p.stem)))
    if require_images and found and len(empty) == len(found):
        raise CleftscoreError(
            f"no image files found in {', '.join(map(str, empty))} or its sub-folders "
            f"(looked for {', '.join(IMAGE_SUFFIXES)}); point to the folder that holds the photos"
        )
    ids = _unique([stem for _, stem in found])
    return [InputPhoto(path=p, photo_id=pid) for (p, _), pid in zip(found, ids, strict=True)]


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand folders into their image files (sub-folders too, sorted); keep files as given.

    A folder without images stays in the list (it fails on its own row).
    """
    return [i.path for i in find_inputs(inputs, require_images=False)]


# ----------------------------------------------------------------------------- one photo


def _display_name(path: str | Path) -> str:
    """The file name as text that can always be written (foreign encodings escaped)."""
    return os.fsdecode(path).encode("utf-8", "backslashreplace").decode("utf-8")


def _fail(res: PhotoResult, exc: BaseException | str, *, stage: str = "") -> None:
    """Mark a photo failed with a one-line message naming the file."""
    if isinstance(exc, str):
        text = exc
    elif isinstance(exc, CleftscoreError):
        text = str(exc)
    else:
        where = f" while {stage}" if stage else ""
        text = f"unexpected error{where} ({type(exc).__name__}: {exc})"
        log.debug("unexpected error on %s", res.file, exc_info=exc)
    text = " ".join(text.split())  # one line
    res.status = "failed"
    res.message = text if res.file in text else f"{res.file}: {text}"
    res.score = None


def _mask(landmarks: np.ndarray, size: int, score_settings: ScoreSettings) -> np.ndarray:
    if score_settings.mask_file:
        return load_user_mask(score_settings.mask_file, size)
    return roi_mask(landmarks, size, region=score_settings.roi)


#: Measures made with the score (recomputed by every rescore, so none of them outlives its settings).
_SCORE_MEASURES = ("asymmetry_score", "asymmetry_normal_fraction", "paper_S")


def _score_result(result: PhotoResult, settings: ScoreSettings, lpips_distance: Any, landmarks: np.ndarray) -> None:
    """Score, heat map and score-stage measures of a normalized photo.

    The asymmetry method's score column is the face-referenced score by default; the paper's S
    over ``settings.roi`` is then kept as the measure ``paper_S`` (and with ``asymmetry_score=
    "paper"`` the other way round), so both numbers are in every asymmetry record.
    """
    from cleftscore.normalize import Measure
    from cleftscore.score.paper import (
        ASYMMETRY_SCORE_DEFINITION,
        NORMAL_FRACTION_DEFINITION,
        PAPER_SCORE_DEFINITION,
        heatmap_top,
        score_definition,
        score_face_referenced,
    )

    assert result.aligned is not None and result.normalized is not None and result.mask is not None
    for name in _SCORE_MEASURES:
        result.measures.pop(name, None)
    paper = score_photo(
        result.aligned, result.normalized, result.mask, settings=settings, lpips_distance=lpips_distance
    )
    result.score, result.heatmap = float(paper.score), paper.heatmap
    result.heatmap_units = "difference energy (sum over channels)"
    result.score_definition = score_definition(result.method, settings)
    result.heatmap_max = heatmap_top(result.method, settings)
    if result.method != "asymmetry":
        return
    user = result.mask if settings.mask_file else None
    fr, region = score_face_referenced(result.aligned, result.normalized, landmarks, settings=settings, user_mask=user)
    if settings.face_referenced(result.method):
        region_name = f"user mask {settings.mask_file}" if settings.mask_file else f"{settings.roi} region"
        result.measures["paper_S"] = Measure(paper.score, f"{PAPER_SCORE_DEFINITION} ({region_name})", stage="score")
        result.score, result.heatmap, result.mask = float(fr.score), fr.heatmap, region.astype(np.float32)
        result.heatmap_units = "difference in multiples of the face's own (control-region) residual"
    else:
        result.measures["asymmetry_score"] = Measure(fr.score, ASYMMETRY_SCORE_DEFINITION, stage="score")
    from cleftscore.score.asymmetry import load_reference

    result.measures["asymmetry_normal_fraction"] = Measure(
        load_reference().fraction_more_symmetric(fr.score), NORMAL_FRACTION_DEFINITION, stage="score"
    )


def _apply(res: PhotoResult, norm: Normalization) -> None:
    if not norm.ok:
        _fail(res, norm.error, stage="normalizing")
        return
    res.normalized = norm.image
    res.inverted = norm.inverted
    res.snapshots = dict(norm.snapshots)
    res.measures.update(norm.measures)
    res.normalization = dict(norm.info)
    res.timings.update(norm.timings)
    res.cached = norm.cached


def _geometry(prepared: PreparedPhoto) -> FaceGeometry:
    a, box = prepared.aligned, prepared.box
    return FaceGeometry(
        size=a.size,
        faces_found=prepared.n_faces,
        face_box=(float(box.left), float(box.top), float(box.right), float(box.bottom)),
        detector_score=float(box.score),
        landmarks_aligned=a.landmarks,
        landmarks_original=a.landmarks_original,
        to_original=a.to_original,
        original_shape=tuple(a.original_shape),  # type: ignore[arg-type]
    )


def _environment(normalizer: Normalizer | None) -> dict[str, Any]:
    from importlib import metadata

    try:
        # Read from the installed package: importing torch for its version would cost the
        # asymmetry method (which never needs torch) seconds and hundreds of MB.
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = None
    env: dict[str, Any] = {
        "cleftscore_version": __version__,
        "torch_version": torch_version,
        "python_version": platform.python_version(),
    }
    if normalizer is not None:
        env.update(normalizer.describe())
    return env


def _record(res: PhotoResult, settings: dict[str, Any], environment: dict[str, Any], geometry: FaceGeometry | None,
            pictures: Sequence[str], calibration: dict[str, Any] | None = None) -> PhotoRecord:  # fmt: skip
    return PhotoRecord(
        file=res.file,
        photo_id=res.photo_id,
        status=res.status,
        message=res.message,
        method=res.method,
        score=res.score if res.ok else None,
        settings=settings,
        notes=res.notes,
        cached=res.cached,
        timings=dict(res.timings),
        environment=environment,
        geometry=geometry,
        measures=dict(res.measures) if res.ok else {},
        normalization=dict(res.normalization),
        calibration=calibration,
        pictures=tuple(pictures) if res.ok else (),
        score_definition=res.score_definition if res.ok else "",
        heatmap_max=res.heatmap_max if res.ok else None,
    )


def _score_pictures(res: PhotoResult, original: np.ndarray | None, aligned_face: Any) -> dict[str, np.ndarray | bytes]:
    """The pictures that depend on the score (see :func:`cleftscore.report.pictures.score_pictures`)."""
    from cleftscore.report.pictures import score_pictures

    assert (
        res.aligned is not None
        and res.normalized is not None
        and res.heatmap is not None
        and res.heatmap_max is not None
    )
    return score_pictures(res.aligned, res.normalized, res.heatmap, mask=res.mask, score=res.score, inverted=res.inverted,
                          original=original, aligned_face=aligned_face, vmax=res.heatmap_max, units=res.heatmap_units)  # fmt: skip


def _all_pictures(res: PhotoResult) -> dict[str, np.ndarray | bytes | Path]:
    assert res.aligned is not None and res.normalized is not None
    files: dict[str, np.ndarray | bytes | Path] = {"aligned.png": res.aligned, "normalized.png": res.normalized}
    if res.inverted is not None:
        files["inverted.png"] = res.inverted
    for step, img in sorted(res.snapshots.items()):
        files[f"{SNAPSHOTS_DIR}/step_{step:04d}.png"] = img
    prepared = res.prepared
    files.update(_score_pictures(res, prepared.original if prepared else None, prepared.aligned if prepared else None))
    files.update(_dynamics_pictures(res, files.get("panel.png")))
    return files


def _dynamics_pictures(res: PhotoResult, panel: Any) -> dict[str, np.ndarray]:
    """With adaptation dynamics: the curve (also joined to the panel) and the reappearance strip."""
    dyn = res.normalization.get("dynamics")
    if not isinstance(dyn, dict) or len(dyn.get("curve") or ()) < 2 or not dyn["curve"][0] > 0:
        return {}
    from PIL import Image

    from cleftscore.report.dynamics import curve_figure, reappearance_strip

    curve = curve_figure(np.asarray(dyn["curve"]), fraction=dyn["fraction"], reappearance_step=dyn["reappearance_step"],
                         reached=dyn["reached"], adapt_steps=dyn.get("adapt_steps", 0))  # fmt: skip
    out: dict[str, np.ndarray] = {"dynamics_curve.png": curve}
    if res.snapshots:
        out["reappearance_strip.png"] = reappearance_strip(res.snapshots)
    if isinstance(panel, np.ndarray):
        h = panel.shape[0]
        small = np.asarray(
            Image.fromarray(curve).resize((round(curve.shape[1] * h / curve.shape[0]), h), Image.Resampling.LANCZOS)
        )
        out["panel.png"] = np.concatenate([panel, np.full((h, 4, 3), 255, np.uint8), small], axis=1)
    return out


def _picture_order(names: Sequence[str]) -> list[str]:
    rank = {n: i for i, n in enumerate(PICTURES)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def _write_result(out: Path, res: PhotoResult, settings: dict[str, Any], environment: dict[str, Any],
                  geometry: FaceGeometry | None, files: dict[str, Any] | None, *, keep_old: bool = False) -> None:  # fmt: skip
    """Write the photo's fresh folder.

    If its pictures cannot be written, the photo fails and gets its failed record alone, or
    (``keep_old``, for a rescore) keeps its old folder, whose record and pictures still match.
    """
    try:
        files = files if res.ok and files is not None else {}
        write_photo(out, _record(res, settings, environment, geometry, _picture_order(list(files))), files)
    except Exception as exc:  # noqa: BLE001 - one photo never stops the batch
        _fail(res, exc, stage="writing its outputs")
        if keep_old:
            return
        try:
            write_photo(out, _record(res, settings, environment, geometry, ()), {})
        except Exception:  # noqa: BLE001 - e.g. the disk is full; the message still shows
            log.warning("could not write the record of %s", res.file)


# ----------------------------------------------------------------------------- score


class _Finisher:
    """A one-thread executor (``workers=1``), or one that runs each task at once (``workers=0``)."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cleftscore-outputs") if workers else None
        self.futures: list[Future] = []

    def __enter__(self) -> _Finisher:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        if self._pool is not None:
            self.futures.append(self._pool.submit(fn, *args))
            return
        fn(*args)

    def check(self) -> None:
        """Raise an error that escaped the per-photo guards (e.g. in a hook); drop finished futures."""
        for f in [f for f in self.futures if f.done()]:
            self.futures.remove(f)
            f.result()


def score_photos(
    paths: Sequence[str | Path],
    settings: PipelineSettings | None = None,
    *,
    out_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    hooks: ProgressHooks | None = None,
    lpips_distance: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    keep_images: bool | None = None,
    normalizer_factory: Callable[[GanProgress], Normalizer] | None = None,
) -> list[PhotoResult]:
    """Score photos end to end; bad photos become ``failed`` results, never exceptions.

    Parameters
    ----------
    paths : sequence of path
        Photo files, or folders (searched recursively; see :func:`find_inputs`).
    settings : PipelineSettings, optional
        Every setting; defaults to the paper's (GAN method, 2,000 + 50 steps, YCbCr, 3x3
        erosion, mouth region).
    out_dir : path, optional
        When given, each photo's outputs go to a fresh ``out_dir/photos/<photo_id>/`` as soon
        as it is done (replacing an older folder of that id whole), and ``scores.csv`` +
        ``report.html`` summarise the run, also when it is interrupted. The folder is locked
        for the run: a second run into it stops at once.
    cache_dir : path, optional
        Cache of GAN normalizations (default :func:`default_cache_dir`).
    hooks : ProgressHooks, optional
        Progress callbacks.
    lpips_distance : callable, optional
        Spatial LPIPS for ``metric="lpips"`` scoring: ``f(a_uint8, b_uint8) -> (H, W)``.
    keep_images : bool, optional
        Keep each photo's arrays (aligned, normalized, heat map...) in its result. Default:
        only when no ``out_dir`` is given, so a large run's memory stays flat.
    normalizer_factory : callable, optional
        ``f(progress) -> Normalizer`` making the normalizer instead of
        :func:`cleftscore.normalize.make_normalizer` (e.g. GAN workers on other machines); it
        must be of ``settings.method``.

    Returns
    -------
    list of PhotoResult
        One per input photo, in input order.

    Raises
    ------
    CleftscoreError
        Only for problems that stop the whole run (weights missing or unreadable, the output
        folder in use by another run, no image in any input folder); problems with single
        photos are reported in their results.
    """
    settings = settings or PipelineSettings()
    hooks = hooks or ProgressHooks()
    inputs = find_inputs(paths)
    out = Path(out_dir) if out_dir is not None else None
    keep = out is None if keep_images is None else keep_images
    if settings.score.difference.metric == "lpips" and lpips_distance is None:
        raise CleftscoreError(
            "metric 'lpips' needs VGG16 weights: pass --vgg16 PATH (see `cleftscore weights fetch vgg16`)"
        )
    ids = [i.photo_id for i in inputs]
    with locked(out):
        if out is not None:
            write_run_settings(out, settings.to_dict(), ids)
        try:
            return _score_stream(inputs, settings, out=out, cache_dir=cache_dir, hooks=hooks, lpips_distance=lpips_distance,
                                 keep=keep, normalizer_factory=normalizer_factory)  # fmt: skip
        finally:
            if out is not None:
                try:
                    write_summary(out, read_records(out, ids), settings=settings.to_dict())
                except OSError as exc:
                    hooks._msg(f"could not write the summary of {out}: {exc}")


def _score_stream(inputs: Sequence[InputPhoto], settings: PipelineSettings, *, out: Path | None, cache_dir: str | Path | None,
                  hooks: ProgressHooks, lpips_distance: Any, keep: bool,
                  normalizer_factory: Callable[[GanProgress], Normalizer] | None) -> list[PhotoResult]:  # fmt: skip
    progress = GanProgress(start=hooks.gan_start, step=hooks.gan_step, grow=hooks.gan_grow, message=hooks._msg)
    if normalizer_factory is not None:
        normalizer = normalizer_factory(progress)
        if normalizer.name != settings.method:
            raise ValueError(f"the normalizer is {normalizer.name!r}, the settings ask for {settings.method!r}")
    else:
        normalizer = make_normalizer(
            settings.method, gan=settings.gan, seed=settings.seed, cache_dir=cache_dir, progress=progress
        )
    size = settings.size
    if normalizer.resolution is not None:
        if size is not None and size != normalizer.resolution:
            raise CleftscoreError(
                f"--size {size} does not match the generator's resolution {normalizer.resolution}; leave --size out"
            )
        size = normalizer.resolution
        device = getattr(normalizer, "device", None)
        if device is not None and device.type == "cpu" and size >= 512:
            hooks._msg(
                f"Running a {size}x{size} generator on the CPU takes hours per photo at "
                f"{settings.gan.steps} + {settings.gan.adapt_steps} steps; use a CUDA GPU, or "
                "--steps 100 --adapt-steps 10 for a quick (less faithful) look."
            )
    size = size or 1024
    settings_dict = settings.to_dict()
    environment = _environment(normalizer)
    results: list[PhotoResult] = []

    def finish(res: PhotoResult) -> None:
        if res.ok:
            try:
                _score_result(res, settings.score, lpips_distance, res.prepared.aligned.landmarks)  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001 - one photo never stops the batch
                _fail(res, exc, stage="scoring")
        geometry = _geometry(res.prepared) if res.prepared is not None else None
        if out is not None:
            files = None
            if res.ok:
                try:
                    files = _all_pictures(res)
                except Exception as exc:  # noqa: BLE001
                    _fail(res, exc, stage="drawing its pictures")
            _write_result(out, res, settings_dict, environment, geometry, files)
            if not keep:
                res.release_images()
        hooks._done(res)

    # Heat maps, scores and files of one GAN batch are made on a worker thread while the device
    # works on the next batch (the step loop needs little of the host). One worker: photos are
    # finished in order. Leaving the block waits for it, also on Ctrl-C, so no output is cut.
    # Not with LPIPS heat maps: GPU work from another thread could break a CUDA graph capture.
    workers = 1 if settings.method == "gan" and lpips_distance is None else 0
    pending: list[PhotoResult] = []
    planned = False

    def flush(still_to_come: int) -> None:
        nonlocal planned
        if not pending:
            return
        if not planned:
            normalizer.plan(len(pending) + still_to_come)
            planned = True
        faces = [r.prepared.aligned for r in pending]  # type: ignore[union-attr]
        for res, norm in zip(pending, normalizer.normalize(faces), strict=True):
            _apply(res, norm)
            pool.submit(finish, res)
        pending.clear()

    with _Finisher(workers) as pool:
        for i, item in enumerate(inputs):
            res = PhotoResult(
                file=_display_name(item.path), photo_id=item.photo_id, status="ok", method=settings.method
            )
            results.append(res)
            t0 = time.perf_counter()
            try:
                res.prepared = prepare_photo(item.path, size=size, detector=settings.detector)
                res.aligned = res.prepared.aligned.image
                res.notes = tuple(res.prepared.notes)
                res.mask = _mask(res.prepared.aligned.landmarks, size, settings.score)
            except Exception as exc:  # noqa: BLE001 - one photo never stops the batch
                res.prepared = res.aligned = res.mask = None
                folder = CleftscoreError(f"{res.file}: a folder with no image files in it or its sub-folders")
                _fail(res, folder if item.path.is_dir() else exc, stage="aligning")
            res.timings["align_s"] = time.perf_counter() - t0
            if not res.ok:
                pool.submit(finish, res)
                continue
            hit = normalizer.cached(res.prepared.aligned)  # type: ignore[union-attr]
            if hit is not None:
                _apply(res, hit)
                pool.submit(finish, res)
                continue
            pending.append(res)
            if len(pending) >= normalizer.batch_size:
                flush(len(inputs) - i - 1)
            pool.check()
        flush(0)
        normalizer.close()
    for f in pool.futures:
        f.result()  # an error outside the per-photo guards (e.g. in a hook) is not lost
    return results


# ----------------------------------------------------------------------------- rescore


def _aligned_face(geometry: FaceGeometry, image: np.ndarray) -> Any:
    from cleftscore.face.align import AlignedFace

    return AlignedFace(
        image=image,
        size=int(image.shape[0]),
        landmarks=geometry.landmarks_aligned * (image.shape[0] / geometry.size),
        landmarks_original=geometry.landmarks_original,
        to_original=geometry.to_original,
        original_shape=geometry.original_shape,
    )


def _result_from_record(rec: PhotoRecord) -> PhotoResult:
    return PhotoResult(
        file=rec.file,
        photo_id=rec.photo_id,
        status=rec.status,
        message=rec.message,
        method=rec.method,
        score=rec.score,
        timings=dict(rec.timings),
        notes=rec.notes,
        cached=True,
        measures={k: m for k, m in rec.measures.items() if m.stage == "normalization"},
        normalization=dict(rec.normalization),
    )


def _rescore_one(
    run: Path, rec: PhotoRecord, score_settings: ScoreSettings, new_settings: dict[str, Any], lpips_distance: Any
) -> PhotoResult:
    """Score one recorded photo again; writes its fresh folder (pictures that did not change are linked)."""
    from cleftscore.io import load_image

    res = _result_from_record(rec)
    folder = photo_dir(run, rec.photo_id)
    kept = {name: folder / name for name in rec.pictures
            if (name in ("aligned.png", "normalized.png", "inverted.png") or name.startswith(SNAPSHOTS_DIR + "/"))
            and (folder / name).is_file()}  # fmt: skip
    for snap in sorted((folder / SNAPSHOTS_DIR).glob("*.png")):  # listed by version-2 records; found for older ones
        kept.setdefault(f"{SNAPSHOTS_DIR}/{snap.name}", snap)
    files: dict[str, Any] | None = None
    try:
        if rec.geometry is None:
            raise CleftscoreError(f"{folder / 'result.json'}: the record has no face geometry; score the photo again")
        res.aligned = load_image(kept["aligned.png"]) if "aligned.png" in kept else None
        res.normalized = load_image(kept["normalized.png"]) if "normalized.png" in kept else None
        if res.aligned is None or res.normalized is None:
            raise CleftscoreError(f"{folder}: aligned.png or normalized.png is missing; score the photo again")
        if "inverted.png" in kept:
            res.inverted = load_image(kept["inverted.png"])
        face = _aligned_face(rec.geometry, res.aligned)
        res.mask = _mask(face.landmarks, face.size, score_settings)
        _score_result(res, score_settings, lpips_distance, face.landmarks)
        try:
            original = load_image(rec.file)
        except CleftscoreError:
            original = None  # the original photo moved: no overlay on it
        files = {**kept, **_score_pictures(res, original, face)}
    except Exception as exc:  # noqa: BLE001 - one photo never stops the batch
        _fail(res, exc, stage="scoring")
        files = None
    if not res.ok:
        # The old folder stays as it was: its pictures and record still belong together.
        return res
    _write_result(run, res, new_settings, dict(rec.environment), rec.geometry, files, keep_old=True)
    res.release_images()
    return res


def rescore_run(
    run_dir: str | Path,
    score_settings: ScoreSettings,
    *,
    lpips_distance: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    hooks: ProgressHooks | None = None,
) -> list[PhotoResult]:
    """Recompute heat maps and scores of a finished run with other scoring settings.

    Reads each photo's ``result.json``, ``aligned.png`` and ``normalized.png``; the normalizer
    is not run. Each re-scored photo gets a fresh folder (its unchanged pictures hard-linked,
    nothing rewritten in place), so an interrupted rescore leaves every photo with a record
    and pictures that belong together. Photos already scored with these settings are kept as
    they are. Unreadable records and failed photos are kept too and reported as failed.
    ``scores.csv`` and ``report.html`` are rewritten, also when interrupted.

    Raises
    ------
    CleftscoreError
        Not a run folder, no photos in it, LPIPS without weights, or the folder in use.
    """
    hooks = hooks or ProgressHooks()
    run = Path(run_dir)
    if not (run / "photos").is_dir():
        raise CleftscoreError(f"{run}: not a cleftscore run folder (no photos/ inside); run `cleftscore score` first")
    if score_settings.difference.metric == "lpips" and lpips_distance is None:
        raise WeightsMissingError(
            "metric 'lpips' needs VGG16 weights: pass --vgg16 PATH (see `cleftscore weights fetch vgg16`)"
        )
    wanted = {"score": dataclasses.asdict(score_settings)}
    with RunLock(run):
        ids = list_photo_ids(run)
        if not ids:
            raise CleftscoreError(f"{run}: no photo results found under photos/")
        write_run_settings(run, wanted, ids)
        results: list[PhotoResult] = []
        # Two photos at a time: image encoding and most array work release the GIL. LPIPS maps
        # stay on one thread (one model on one device).
        workers = 1 if lpips_distance is not None else min(2, os.cpu_count() or 1)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cleftscore-rescore")

        def one(pid: str) -> PhotoResult:
            rec = read_record(run, pid)
            if not rec.ok or not settings_differences(rec.settings, wanted):
                return _result_from_record(rec)  # failed, unreadable, or already up to date
            return _rescore_one(run, rec, score_settings, {**rec.settings, "score": wanted["score"]}, lpips_distance)

        try:
            # Never more photos under way than workers, so an interrupt leaves little to finish.
            queue = iter(ids)
            under_way = [pool.submit(one, pid) for pid in itertools.islice(queue, workers)]
            while under_way:
                res = under_way.pop(0).result()
                under_way.extend(pool.submit(one, pid) for pid in itertools.islice(queue, 1))
                results.append(res)
                hooks._done(res)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # a photo under way is finished whole
            try:
                write_summary(run, read_records(run, ids), settings=wanted)
            except OSError as exc:
                hooks._msg(f"could not write the summary of {run}: {exc}")
    return results


def write_run_summary(run_dir: str | Path, photo_ids: Sequence[str] | None = None) -> tuple[Path, Path]:
    """Write ``scores.csv`` and ``report.html`` from the records of a run.

    Parameters
    ----------
    run_dir : path
        The run folder (``out_dir`` of :func:`score_photos`).
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


def make_lpips_distance(
    vgg16: str | Path | None, *, device: str = "auto"
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Spatial LPIPS on two uint8 images, for ``metric="lpips"`` heat maps.

    Returns a function ``f(a, b) -> (H, W) float32`` (higher = more different). Needs the real
    VGG16 weights; raises :class:`WeightsMissingError` with instructions when they are absent.
    """
    import torch

    from cleftscore.normalize.gan import resolve_device, to_tensor
    from cleftscore.perceptual import PerceptualDistance
    from cleftscore.weights import resolve_vgg16

    dev = resolve_device(device)
    metric = PerceptualDistance(vgg16_weights=resolve_vgg16(vgg16), spatial=True).to(dev)

    def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            ta, tb = to_tensor([a], dev), to_tensor([b], dev)
            return metric(ta, tb)[0, 0].float().cpu().numpy()

    return distance
