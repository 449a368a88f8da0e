"""One photo end to end, and batches of photos: align -> normalize -> heat map -> score.

This is the library behind ``cleftscore score`` and ``cleftscore rescore``; notebooks call
:func:`score_photos` and get the same results as the command line.

Normalization is the slow step. For the GAN method, photos are inverted and adapted in batches on
the chosen device, and every result is cached on disk under a key made of the aligned image
bytes, the generator's checksum and every setting that affects the GAN, so re-scoring (other
metric, region, erosion) and the evaluation grid never re-run it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
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
from cleftscore.io import IMAGE_SUFFIXES as _IO_SUFFIXES
from cleftscore.face.roi import load_user_mask, roi_mask
from cleftscore.score import PhotoScore, ScoreSettings, score_photo

__all__ = [
    "GanSettings",
    "PipelineSettings",
    "PhotoResult",
    "ProgressHooks",
    "score_photos",
    "rescore_run",
    "photo_ids",
    "normalization_cache_key",
    "IMAGE_SUFFIXES",
    "expand_inputs",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = tuple(sorted(_IO_SUFFIXES))
METHODS = ("gan", "asymmetry")
#: Bumped whenever the GAN normalization changes its output, so old cache entries are not reused.
NORMALIZATION_VERSION = "2"


@dataclass(frozen=True)
class GanSettings:
    """Settings of the GAN normalizer (paper Alg. 1 + Alg. 2).

    Parameters
    ----------
    generator : str or None
        A registry name (``ffhq``) or a path to a checkpoint; ``None`` uses the environment
        variable ``CLEFTSCORE_GENERATOR`` or the cached ``ffhq`` download.
    vgg16 : str or None
        Path to torchvision's VGG16 ImageNet weights for LPIPS; ``None`` uses
        ``CLEFTSCORE_VGG16`` or the weights cache.
    steps : int
        Inversion steps (paper: 2,000).
    adapt_steps : int
        Adaptation steps (paper: 50).
    snapshot_steps : tuple of int
        Adaptation steps at which to keep intermediate normalized faces (paper Fig. 8).
    loss : {"lpips", "mse"}
        Inversion/adaptation image loss. ``mse`` needs no VGG16 weights but is not the paper's.
    batch : int
        Photos inverted together on the device.
    device : str
        ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
    precision : str
        ``auto`` (fp16 in the generator's fp16 layers on CUDA, as the official model), ``fp32``,
        ``bf16``.
    early_stop : bool
        Stop the inversion early when the loss stops improving.
    compile : bool
        Compile the inversion step with ``torch.compile`` (minutes of compiling per batch size,
        then possibly faster steps on a GPU: for large batches of photos; numbers change only at
        float rounding level; falls back to the plain step if compiling fails). Independently of
        this, on a GPU the inversion steps, and the adaptation steps unless snapshots before the
        last step are asked for, are replayed as CUDA graphs.
    """

    generator: str | None = None
    vgg16: str | None = None
    steps: int = 2000
    adapt_steps: int = 50
    snapshot_steps: tuple[int, ...] = ()
    loss: str = "lpips"
    batch: int = 4
    device: str = "auto"
    precision: str = "auto"
    early_stop: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.adapt_steps < 0:
            raise ValueError(f"adapt_steps must be >= 0, got {self.adapt_steps}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if self.loss not in ("lpips", "mse"):
            raise ValueError(f"loss must be 'lpips' or 'mse', got {self.loss!r}")
        bad = [s for s in self.snapshot_steps if not 0 <= s <= self.adapt_steps]
        if bad:
            raise ValueError(
                f"snapshot steps {bad} lie outside 0..{self.adapt_steps} (the adaptation steps); raise --adapt-steps or drop them"
            )


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
    """What one photo produced. ``status`` is ``ok`` or ``failed`` (then ``message`` says why)."""

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
    landmark_asymmetry_px: float | None = None  # asymmetry method: RMS landmark residual
    normalization: dict[str, Any] = field(default_factory=dict)  # GAN method: how the steps ran

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class ProgressHooks:
    """Callbacks the CLI passes to show progress; every one is optional.

    ``photo_done(result)`` after each photo is finished (scored or failed);
    ``gan_start(n_photos, total_steps)`` once before the GAN starts;
    ``gan_step(done_steps)`` as GAN steps are issued (batch-level, inversion + adaptation; a
    negative count takes back the steps of an attempt that ran out of GPU memory);
    ``gan_grow(extra_steps)`` when splitting such a batch adds a batch's worth of steps;
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


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand folders into their image files (sorted); keep files as given.

    Raises
    ------
    CleftscoreError
        When an input does not exist or a folder holds no images.
    """
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            # An empty folder stays in the list and fails on its own row; the batch goes on.
            paths.extend(found or [p])
        else:
            # Missing files are reported per photo by the loader, so a batch goes on.
            paths.append(p)
    return paths


def photo_ids(paths: Sequence[Path]) -> list[str]:
    """Folder-safe unique ids from file stems (``name``, ``name-2``, ...)."""
    seen: dict[str, int] = {}
    ids = []
    for p in paths:
        stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(p).stem).lstrip(".") or "photo"
        n = seen.get(stem.lower(), 0) + 1  # case-blind: macOS and Windows folders are
        seen[stem.lower()] = n
        ids.append(stem if n == 1 else f"{stem}-{n}")
    return ids


def _resolve_device(spec: str) -> Any:
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CleftscoreError("--device cuda was asked for, but PyTorch sees no CUDA GPU here; use --device cpu")
    return dev


def _sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """Where normalizations are cached: ``$CLEFTSCORE_CACHE/normalized`` or the user cache."""
    env = os.environ.get("CLEFTSCORE_CACHE")
    if env:
        return Path(env) / "normalized"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("cleftscore")) / "normalized"


def normalization_cache_key(aligned: np.ndarray, generator_sha256: str, settings: dict[str, Any]) -> str:
    """Cache key of one GAN normalization: aligned pixels + generator checksum + settings."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(aligned, dtype=np.uint8).tobytes())
    h.update(str(aligned.shape).encode())
    h.update(generator_sha256.encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


def _to_uint8(images: Any) -> np.ndarray:
    """Generator output [N,3,H,W] in [-1,1] -> (N,H,W,3) uint8."""
    import torch

    x = (images.detach().float().clamp(-1, 1) + 1) * 127.5
    return x.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _to_tensor(images: Sequence[np.ndarray], device: Any) -> Any:
    """(H,W,3) uint8 images -> [N,3,H,W] float32 in [-1,1] on ``device``."""
    import torch

    arr = np.stack([np.asarray(im, dtype=np.uint8) for im in images])
    t = torch.from_numpy(arr).to(device).permute(0, 3, 1, 2).float()
    return t / 127.5 - 1.0


class _GanNormalizer:
    """Loads the generator and LPIPS once, then normalizes aligned faces batch by batch."""

    def __init__(self, settings: PipelineSettings, *, cache_dir: Path, hooks: ProgressHooks) -> None:

        from cleftscore.gan.checkpoints import load_generator
        from cleftscore.weights import resolve_generator

        self.settings = settings
        self.gs = settings.gan
        self.hooks = hooks
        self.cache_dir = cache_dir
        self.device = _resolve_device(self.gs.device)
        gen_path = resolve_generator(self.gs.generator)
        self.generator_path = Path(gen_path)
        self.generator_sha256 = _sha256_file(self.generator_path)
        self.G = load_generator(self.generator_path, device=self.device)
        self.loss_fn = None
        self.vgg16_path: Path | None = None
        if self.gs.loss == "lpips":
            from cleftscore.perceptual import PerceptualDistance
            from cleftscore.weights import resolve_vgg16

            self.vgg16_path = Path(resolve_vgg16(self.gs.vgg16))
            self.loss_fn = PerceptualDistance(vgg16_weights=self.vgg16_path).to(self.device)
        self.resolution = int(self.G.img_resolution)
        self._w_stats: tuple[Any, float] | None = None

    def w_stats(self) -> tuple[Any, float]:
        """(w_avg, w_std) from 10,000 mapped z, computed once per generator and kept on disk."""
        import torch

        from cleftscore.gan.wstats import w_stats

        if self._w_stats is None:
            path = self.cache_dir / "wstats" / f"{self.generator_sha256}.npz"
            try:
                with np.load(path) as data:
                    self._w_stats = (torch.from_numpy(data["w_avg"]).to(self.device), float(data["w_std"]))
            except (OSError, KeyError, ValueError):
                w_avg, w_std = w_stats(self.G, device=self.device)
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez(path, w_avg=w_avg.detach().cpu().numpy(), w_std=np.float64(w_std))
                self._w_stats = (w_avg, float(w_std))
        return self._w_stats

    # Settings that change the normalized face (not the scoring settings).
    def key_settings(self) -> dict[str, Any]:
        gs = dataclasses.asdict(self.gs)
        for k in ("generator", "vgg16", "device"):
            gs.pop(k)
        if not self.gs.early_stop:
            # Each photo has its own random stream, so its result does not depend on its
            # batch; an early stop is decided per batch, so then the batch size counts.
            gs.pop("batch")
        gs["seed"] = self.settings.seed
        # CPU and CUDA draw different random numbers, and "auto" precision means fp16 on CUDA
        # but fp32 on the CPU: both change the normalized face.
        gs["device_type"] = self.device.type
        gs["algorithm_version"] = NORMALIZATION_VERSION
        gs["vgg16_sha256"] = _sha256_file(self.vgg16_path) if self.vgg16_path else None
        return gs

    def describe(self) -> dict[str, Any]:
        return {
            "generator": str(self.generator_path),
            "generator_sha256": self.generator_sha256,
            "vgg16": str(self.vgg16_path) if self.vgg16_path else None,
            "device": str(self.device),
            "resolution": self.resolution,
        }

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / key

    def load_cached(self, key: str) -> dict[str, Any] | None:
        from cleftscore.io import load_image

        d = self._cache_path(key)
        if not (d / "done").exists():
            return None
        try:
            out = {
                "normalized": load_image(d / "normalized.png"),
                "inverted": load_image(d / "inverted.png"),
                "snapshots": {
                    int(p.stem.split("_")[1]): load_image(p) for p in sorted(d.glob("snapshot_*.png"))
                },
                "meta": json.loads((d / "meta.json").read_text()),
            }
        except (OSError, ValueError, CleftscoreError) as exc:
            log.warning("ignoring a damaged cache entry %s: %s", d, exc)
            return None
        return out

    def store(self, key: str, entry: dict[str, Any]) -> None:
        from cleftscore.report import write_json, write_png

        d = self._cache_path(key)
        d.mkdir(parents=True, exist_ok=True)
        write_png(d / "normalized.png", entry["normalized"])
        write_png(d / "inverted.png", entry["inverted"])
        for step, img in entry["snapshots"].items():
            write_png(d / f"snapshot_{step:05d}.png", img)
        np.save(d / "w.npy", entry["w"])
        write_json(d / "meta.json", entry["meta"])
        (d / "done").write_text("ok\n")

    def run_batch(
        self, aligned: list[np.ndarray], keys: list[str], report: Callable[[int], None] | None = None
    ) -> list[dict[str, Any]]:
        """Invert and adapt a batch of aligned faces; returns one entry per face.

        Each face's random draws come from its own generator, seeded by its cache key (which
        holds the seed), so a face gets the same result whatever else is in its batch.
        ``report(n)`` is told of every ``n`` batch steps issued (inversion, then adaptation).
        """
        import torch

        from cleftscore.gan.adapt import AdaptSettings, adapt
        from cleftscore.gan.fused import fused_kernels_active
        from cleftscore.gan.invert import InversionSettings, invert

        gs = self.gs
        targets = _to_tensor(aligned, self.device)
        rng = [torch.Generator(device=self.device).manual_seed(int(key[:15], 16)) for key in keys]
        inv_settings = InversionSettings(
            steps=gs.steps, loss=gs.loss, early_stop=gs.early_stop, precision=gs.precision, compile=gs.compile
        )
        report = report or (lambda n: None)
        adapt_seen = [0]

        def on_step(step: int, total: int) -> None:
            report(1)

        def on_adapt_step(step: int, total: int) -> None:
            # When adaptation falls back to one photo at a time, each photo counts 1..steps
            # again: only new highs are batch steps.
            if step > adapt_seen[0]:
                report(step - adapt_seen[0])
                adapt_seen[0] = step

        t0 = time.perf_counter()
        inv = invert(
            self.G, targets, settings=inv_settings, loss_fn=self.loss_fn, generator=rng, progress=on_step, w_stats=self.w_stats()
        )
        t_inv = time.perf_counter() - t0
        # Count steps an early stop skipped, so the progress bar still ends at 100 %.
        if inv.steps_run < gs.steps:
            report(gs.steps - inv.steps_run)
        snapshots: dict[int, Any] = {}
        if gs.adapt_steps > 0:
            ad_settings = AdaptSettings(
                steps=gs.adapt_steps,
                snapshot_steps=tuple(gs.snapshot_steps),
                precision=gs.precision,
                lpips_weight=1.0 if gs.loss == "lpips" else 0.0,
            )
            t1 = time.perf_counter()
            ad = adapt(self.G, inv.w, inv.noises, targets, settings=ad_settings, loss_fn=self.loss_fn, progress=on_adapt_step)
            t_adapt = time.perf_counter() - t1
            normalized = _to_uint8(ad.images)
            snapshots = {k: _to_uint8(v) for k, v in ad.snapshots.items()}
        else:
            t_adapt = 0.0
            normalized = _to_uint8(inv.images)
        inverted = _to_uint8(inv.images)
        w = inv.w.detach().float().cpu().numpy()
        n = len(aligned)
        entries = []
        for i in range(n):
            entries.append(
                {
                    "normalized": normalized[i],
                    "inverted": inverted[i],
                    "snapshots": {k: v[i] for k, v in snapshots.items()},
                    "w": w[i],
                    "meta": {
                        "inversion_steps_run": int(inv.steps_run),
                        "inversion_step_mode": inv.step_mode,
                        "fused_gpu_kernels": fused_kernels_active(self.device),
                        "final_inversion_loss": float(inv.losses[i, inv.steps_run - 1]),
                        "time_inversion_s": t_inv / n,
                        "time_adaptation_s": t_adapt / n,
                        "batch_size": n,
                        **self.describe(),
                    },
                }
            )
        return entries


def _display_name(path: str | Path) -> str:
    """The file name as text that can always be written (foreign encodings escaped)."""
    return os.fsdecode(path).encode("utf-8", "backslashreplace").decode("utf-8")


def _fail(res: PhotoResult, exc: BaseException, *, stage: str = "") -> None:
    """Mark a photo failed with a one-line message naming the file."""
    if isinstance(exc, CleftscoreError):
        text = str(exc)
    else:
        where = f" while {stage}" if stage else ""
        text = f"unexpected error{where} ({type(exc).__name__}: {exc})"
        log.debug("unexpected error on %s", res.file, exc_info=exc)
    text = " ".join(text.split())  # one line
    res.status = "failed"
    res.message = text if res.file in text else f"{res.file}: {text}"


#: Largest landmark residual of the mirror registration, in eye distances, that still counts as a
#: face seen from the front. Frontal sample photos give 0.004-0.03; a face in near profile gave
#: 16 (its mirror image cannot be registered, and the "normalized" face is a flat colour).
MAX_MIRROR_RESIDUAL = 1.0


def _asymmetry_normalize(prepared: PreparedPhoto) -> tuple[np.ndarray, float]:
    """The mirrored, registered face and its landmark-level asymmetry index (pixels, RMS).

    Raises
    ------
    CleftscoreError
        When the face is turned too far for its mirror image to be registered.
    """
    from cleftscore.mirror import mirror_normalize

    lm = np.asarray(prepared.aligned.landmarks, dtype=np.float64)
    mirrored = mirror_normalize(prepared.aligned.image, lm)
    eyes = float(np.linalg.norm(lm[36:42].mean(axis=0) - lm[42:48].mean(axis=0)))
    ratio = mirrored.residual_landmark_error / max(eyes, 1e-6)
    if not ratio <= MAX_MIRROR_RESIDUAL:
        raise CleftscoreError(
            "the face is turned too far from the front for the asymmetry method "
            f"(its landmarks lie {ratio:.1f} eye distances from their mirror image); use a frontal photo"
        )
    return mirrored.image, mirrored.residual_landmark_error


def _mask_for(prepared: PreparedPhoto, score_settings: ScoreSettings) -> np.ndarray:
    size = prepared.aligned.size
    if score_settings.mask_file:
        return load_user_mask(score_settings.mask_file, size)
    return roi_mask(prepared.aligned.landmarks, size, region=score_settings.roi)


def _score_result(result: PhotoResult, settings: ScoreSettings, lpips_distance: Any) -> None:
    assert result.aligned is not None and result.normalized is not None and result.mask is not None
    ps: PhotoScore = score_photo(
        result.aligned, result.normalized, result.mask, settings=settings, lpips_distance=lpips_distance
    )
    result.score = float(ps.score)
    result.heatmap = ps.heatmap


def score_photos(
    paths: Sequence[str | Path],
    settings: PipelineSettings | None = None,
    *,
    out_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    hooks: ProgressHooks | None = None,
    lpips_distance: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> list[PhotoResult]:
    """Score photos end to end; bad photos become ``failed`` results, never exceptions.

    Parameters
    ----------
    paths : sequence of path
        Photo files (folders are expanded to their images).
    settings : PipelineSettings, optional
        Every setting; defaults to the paper's (GAN method, 2,000 + 50 steps, YCbCr, 3x3
        erosion, mouth region).
    out_dir : path, optional
        When given, each photo's outputs go to ``out_dir/photos/<photo_id>/`` as soon as it is
        done, and ``scores.csv`` + ``report.html`` summarise the run.
    cache_dir : path, optional
        Cache of GAN normalizations (default :func:`default_cache_dir`).
    hooks : ProgressHooks, optional
        Progress callbacks.
    lpips_distance : callable, optional
        Spatial LPIPS for ``metric="lpips"`` scoring: ``f(a_uint8, b_uint8) -> (H, W)``.

    Returns
    -------
    list of PhotoResult
        One per input photo, in input order.

    Raises
    ------
    CleftscoreError
        Only for problems that stop the whole run (generator or VGG16 weights missing or
        unreadable); problems with single photos are reported in their results.
    """
    settings = settings or PipelineSettings()
    hooks = hooks or ProgressHooks()
    file_paths = expand_inputs(paths)
    ids = photo_ids(file_paths)
    out = Path(out_dir) if out_dir is not None else None
    if settings.score.difference.metric == "lpips" and lpips_distance is None:
        raise CleftscoreError("metric 'lpips' needs VGG16 weights: pass --vgg16 PATH (see `cleftscore weights fetch vgg16`)")

    normalizer: _GanNormalizer | None = None
    size = settings.size
    if settings.method == "gan":
        normalizer = _GanNormalizer(settings, cache_dir=Path(cache_dir) if cache_dir else default_cache_dir(), hooks=hooks)
        if size is not None and size != normalizer.resolution:
            raise CleftscoreError(
                f"--size {size} does not match the generator's resolution {normalizer.resolution}; leave --size out"
            )
        size = normalizer.resolution
        if normalizer.device.type == "cpu" and size >= 512:
            hooks._msg(
                f"Running a {size}x{size} generator on the CPU takes hours per photo at "
                f"{settings.gan.steps} + {settings.gan.adapt_steps} steps; use a CUDA GPU, or "
                "--steps 100 --adapt-steps 10 for a quick (less faithful) look."
            )
    size = size or 1024

    results: list[PhotoResult] = []
    run_info = _run_info(settings, normalizer)

    def finish(res: PhotoResult) -> None:
        if res.ok:
            try:
                _score_result(res, settings.score, lpips_distance)
            except Exception as exc:  # noqa: BLE001 - one photo never stops the batch
                _fail(res, exc, stage="scoring")
        if out is not None:
            try:
                _write_photo_outputs(out, res, settings, run_info)
            except Exception as exc:  # noqa: BLE001
                _fail(res, exc, stage="writing its outputs")
                try:
                    _write_photo_outputs(out, res, settings, run_info)  # the failed record alone
                except Exception:  # noqa: BLE001 - e.g. the disk is full; the message still shows
                    log.warning("could not write the record of %s", res.file)
        if hooks.photo_done is not None:
            hooks.photo_done(res)

    # 1. Align every photo (cheap) so the GAN batches only hold usable faces.
    pending: list[PhotoResult] = []
    for path, pid in zip(file_paths, ids):
        res = PhotoResult(file=_display_name(path), photo_id=pid, status="ok", method=settings.method)
        t0 = time.perf_counter()
        try:
            prepared = prepare_photo(path, size=size, detector=settings.detector)
            res.prepared = prepared
            res.aligned = prepared.aligned.image
            res.notes = tuple(prepared.notes)
            res.mask = _mask_for(prepared, settings.score)
        except Exception as exc:  # noqa: BLE001 - one photo never stops the batch
            res.prepared = res.aligned = res.mask = None
            _fail(res, exc, stage="aligning")
        res.timings["align_s"] = time.perf_counter() - t0
        results.append(res)
        if not res.ok:
            finish(res)
        else:
            pending.append(res)

    # 2. Normalize.
    if settings.method == "asymmetry":
        for res in pending:
            t0 = time.perf_counter()
            try:
                assert res.prepared is not None
                res.normalized, res.landmark_asymmetry_px = _asymmetry_normalize(res.prepared)
            except Exception as exc:  # noqa: BLE001
                _fail(res, exc, stage="normalizing")
            res.timings["normalize_s"] = time.perf_counter() - t0
            finish(res)
        return results

    assert normalizer is not None
    key_settings = normalizer.key_settings()
    todo: list[tuple[PhotoResult, str]] = []
    for res in pending:
        assert res.aligned is not None
        key = normalization_cache_key(res.aligned, normalizer.generator_sha256, key_settings)
        cached = normalizer.load_cached(key)
        if cached is not None:
            res.normalized, res.inverted = cached["normalized"], cached["inverted"]
            res.snapshots = cached["snapshots"]
            res.cached = True
            res.timings.update({k: v for k, v in cached["meta"].items() if k.startswith("time_")})
            res.normalization = _normalization_info(cached["meta"])
            finish(res)
        else:
            todo.append((res, key))
    if todo and hooks.gan_start is not None:
        hooks.gan_start(len(todo), (settings.gan.steps + settings.gan.adapt_steps) * math.ceil(len(todo) / settings.gan.batch))
    bs = settings.gan.batch
    # Heat maps, scores and files of one batch are made on a worker thread while the device
    # works on the next batch (the step loop needs little of the host). One worker: photos are
    # finished in order. Leaving the block waits for it, also on Ctrl-C, so no output is cut.
    # Not with LPIPS heat maps: GPU work from another thread could break a CUDA graph capture.
    workers = 0 if lpips_distance is not None else 1
    with _Finisher(workers) as pool:
        finishing = []

        def submit(res: PhotoResult) -> None:
            finishing.append(pool.submit(finish, res))

        def store_and_finish(res: PhotoResult, key: str, entry: dict[str, Any]) -> None:
            try:
                normalizer.store(key, entry)
            except OSError as exc:
                hooks._msg(f"could not cache the normalization of {res.file}: {exc}")
            finish(res)

        for start in range(0, len(todo), bs):
            chunk = todo[start : start + bs]
            try:
                entries = _run_batch_with_fallback(normalizer, [r.aligned for r, _ in chunk], [k for _, k in chunk], hooks)  # type: ignore[misc]
            except Exception as exc:  # noqa: BLE001 - e.g. CPU out of memory: these photos fail, others go on
                for res, _ in chunk:
                    _fail(res, exc, stage="normalizing with the GAN")
                    submit(res)
                continue
            for (res, key), entry in zip(chunk, entries):
                res.normalized, res.inverted = entry["normalized"], entry["inverted"]
                res.snapshots = entry["snapshots"]
                res.timings.update({k: v for k, v in entry["meta"].items() if k.startswith("time_")})
                res.normalization = _normalization_info(entry["meta"])
                finishing.append(pool.submit(store_and_finish, res, key, entry))
    for future in finishing:
        future.result()  # an error outside the per-photo guards (e.g. in a hook) is not lost
    return results


#: What result.json says about how a photo's GAN normalization ran (from its cache record).
_NORMALIZATION_KEYS = ("inversion_steps_run", "inversion_step_mode", "fused_gpu_kernels", "final_inversion_loss", "batch_size")


def _normalization_info(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta[k] for k in _NORMALIZATION_KEYS if k in meta}


class _Finisher:
    """A one-thread executor (``workers=1``), or one that runs each task at once (``workers=0``)."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cleftscore-outputs") if workers else None

    def __enter__(self) -> "_Finisher":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def submit(self, fn: Callable[..., None], *args: Any) -> Future:
        if self._pool is not None:
            return self._pool.submit(fn, *args)
        done: Future = Future()
        fn(*args)
        done.set_result(None)
        return done


def _run_batch_with_fallback(
    normalizer: _GanNormalizer, aligned: list[np.ndarray], keys: list[str], hooks: ProgressHooks
) -> list[dict[str, Any]]:
    """Run a batch; on CUDA out-of-memory, split it in halves (down to one photo).

    The progress of a failed attempt is taken back, and the bar grows by the steps of the
    extra batch, so it still ends at 100 %.
    """
    import torch

    reported = 0

    def report(n: int) -> None:
        nonlocal reported
        reported += n
        if hooks.gan_step is not None:
            hooks.gan_step(n)

    try:
        return normalizer.run_batch(aligned, keys, report)
    except torch.cuda.OutOfMemoryError:
        if len(aligned) == 1:
            raise CleftscoreError("the GPU ran out of memory on a single photo; try --device cpu or a smaller model") from None
        torch.cuda.empty_cache()
        if reported and hooks.gan_step is not None:
            hooks.gan_step(-reported)
        if hooks.gan_grow is not None:
            hooks.gan_grow(normalizer.gs.steps + normalizer.gs.adapt_steps)
        half = len(aligned) // 2
        hooks._msg(f"GPU memory is short for a batch of {len(aligned)}; retrying in batches of {half}")
        return _run_batch_with_fallback(normalizer, aligned[:half], keys[:half], hooks) + _run_batch_with_fallback(
            normalizer, aligned[half:], keys[half:], hooks
        )


def _run_info(settings: PipelineSettings, normalizer: _GanNormalizer | None) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "cleftscore_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "settings": settings.to_dict(),
    }
    if normalizer is not None:
        info.update(normalizer.describe())
    return info


def result_record(res: PhotoResult, settings: PipelineSettings, run_info: dict[str, Any]) -> dict[str, Any]:
    """The JSON record of one photo (``result.json``); also the source of its CSV row."""
    rec: dict[str, Any] = {
        "file": res.file,
        "photo_id": res.photo_id,
        "status": res.status,
        "message": res.message,
        "method": settings.method,
        "score": res.score,
        "score_definition": "S = -log(sqrt(sum over ROI of eroded PSE) / N); higher = closer to normal",
        "notes": list(res.notes),
        "cached": res.cached,
        "timings": res.timings,
        **run_info,
    }
    if res.normalization:
        rec["normalization"] = res.normalization
    if res.landmark_asymmetry_px is not None:
        rec["landmark_asymmetry_px"] = res.landmark_asymmetry_px
        rec["landmark_asymmetry_definition"] = (
            "RMS distance (pixels, aligned size) between the 68 landmarks and their mirrored, "
            "registered positions; about 0 for a symmetric face"
        )
    if res.prepared is not None:
        a = res.prepared.aligned
        rec.update(
            {
                "size": a.size,
                "faces_found": res.prepared.n_faces,
                "face_box": [res.prepared.box.left, res.prepared.box.top, res.prepared.box.right, res.prepared.box.bottom],
                "detector_score": res.prepared.box.score,
                "landmarks_aligned": np.asarray(a.landmarks).tolist(),
                "landmarks_original": np.asarray(a.landmarks_original).tolist(),
                "to_original": np.asarray(a.to_original).tolist(),
                "original_shape": list(a.original_shape),
            }
        )
    rec["mask_file"] = settings.score.mask_file
    return rec


CSV_COLUMNS = [
    "file",
    "photo_id",
    "status",
    "score",
    "message",
    "method",
    "landmark_asymmetry_px",
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
]


def csv_row(rec: dict[str, Any]) -> dict[str, Any]:
    """Flatten a ``result.json`` record into one CSV row with every setting."""
    s = rec["settings"]
    sc, gs = s["score"], s["gan"]
    gan = s["method"] == "gan"
    t = rec.get("timings", {})
    return {
        "file": rec["file"],
        "photo_id": rec["photo_id"],
        "status": rec["status"],
        "score": "" if rec.get("score") is None else f"{rec['score']:.6f}",
        "message": rec.get("message", ""),
        "method": s["method"],
        "landmark_asymmetry_px": "" if rec.get("landmark_asymmetry_px") is None else f"{rec['landmark_asymmetry_px']:.3f}",
        "roi": sc["roi"],
        "mask_file": sc.get("mask_file") or "",
        "metric": sc["difference"]["metric"],
        "colorspace": sc["difference"]["colorspace"],
        "erosion": sc["difference"]["erosion"],
        "size": rec.get("size", ""),
        "detector": s["detector"],
        "faces_found": rec.get("faces_found", ""),
        "steps": gs["steps"] if gan else "",
        "adapt_steps": gs["adapt_steps"] if gan else "",
        "loss": gs["loss"] if gan else "",
        "seed": s["seed"],
        "generator": rec.get("generator", "") if gan else "",
        "generator_sha256": rec.get("generator_sha256", "") if gan else "",
        "device": rec.get("device", "") if gan else "cpu",
        "precision": gs["precision"] if gan else "",
        "cached": rec.get("cached", False),
        "time_align_s": f"{t.get('align_s', 0.0):.2f}",
        "time_normalize_s": f"{t.get('normalize_s', t.get('time_inversion_s', 0.0) + t.get('time_adaptation_s', 0.0)):.2f}",
        "notes": "; ".join(rec.get("notes", [])),
        "cleftscore_version": rec.get("cleftscore_version", ""),
        "calibrated_rating": _fmt_opt(rec.get("calibration", {}).get("calibrated_rating")),
        "severity_0_100": _fmt_opt(rec.get("calibration", {}).get("severity_0_100")),
    }


def _fmt_opt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _write_photo_outputs(out: Path, res: PhotoResult, settings: PipelineSettings, run_info: dict[str, Any]) -> None:
    from cleftscore.report import write_json

    d = out / "photos" / res.photo_id
    d.mkdir(parents=True, exist_ok=True)
    if res.ok:
        _write_photo_pictures(d, res)
    write_json(d / "result.json", result_record(res, settings, run_info))


MAX_OVERLAY_SIDE = 4096


def _overlay_frame(prepared: PreparedPhoto) -> tuple[Any, np.ndarray]:
    """The alignment and original photo for ``overlay_original.png``, at most 4096 px a side.

    Overlays of 50-megapixel photos at full size need gigabytes; a slide needs far less.
    """
    from PIL import Image

    original = prepared.original
    h, w = original.shape[:2]
    scale = MAX_OVERLAY_SIDE / max(h, w)
    if scale >= 1:
        return prepared.aligned, original
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.asarray(Image.fromarray(original).resize((nw, nh), Image.Resampling.BOX))
    to_small = np.diag([nw / w, nh / h, 1.0])
    aligned = dataclasses.replace(
        prepared.aligned, to_original=to_small @ prepared.aligned.to_original, original_shape=(nh, nw)
    )
    return aligned, small


def _write_photo_pictures(d: Path, res: PhotoResult) -> None:
    """Aligned, normalized, heat map, overlays and a panel strip for one scored photo."""
    from cleftscore.face.align import warp_to_original
    from cleftscore.report import colorize, heatmap_figure, overlay, panel, write_png

    assert res.aligned is not None and res.normalized is not None and res.heatmap is not None
    write_png(d / "aligned.png", res.aligned)
    write_png(d / "normalized.png", res.normalized)
    if res.inverted is not None:
        write_png(d / "inverted.png", res.inverted)
    if res.snapshots:
        (d / "snapshots").mkdir(exist_ok=True)
        for step, img in sorted(res.snapshots.items()):
            write_png(d / "snapshots" / f"step_{step:04d}.png", img)
    shown = res.heatmap if res.mask is None else res.heatmap * (res.mask > 0)
    vmax = float(np.percentile(shown[shown > 0], 99.5)) if np.any(shown > 0) else 1.0
    title = f"S = {res.score:.3f}" if res.score is not None else None
    write_png(d / "heatmap.png", heatmap_figure(res.heatmap, vmax=vmax, title=title))
    ov = overlay(res.aligned, res.heatmap, mask=res.mask, vmax=vmax)
    write_png(d / "overlay.png", ov)
    if res.prepared is not None:
        aligned, original = _overlay_frame(res.prepared)
        hm_o = warp_to_original(res.heatmap, aligned, order=1, fill=0)
        mask_o = warp_to_original(res.mask, aligned, order=1, fill=0) if res.mask is not None else None
        write_png(d / "overlay_original.png", overlay(original, hm_o, mask=mask_o, vmax=vmax))
    images = [res.aligned, res.normalized, colorize(res.heatmap, vmax=vmax), ov]
    labels = ["aligned", "normalized", "heat map", "overlay"]
    if res.inverted is not None:
        images.insert(1, res.inverted)
        labels.insert(1, "inverted (no adaptation)")
    write_png(d / "panel.png", panel(images, labels))


def rescore_run(
    run_dir: str | Path,
    score_settings: ScoreSettings,
    *,
    lpips_distance: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    hooks: ProgressHooks | None = None,
) -> list[PhotoResult]:
    """Recompute heat maps and scores of a finished run with other scoring settings.

    Reads ``aligned.png``, ``normalized.png`` and ``result.json`` of every photo in
    ``run_dir/photos``; the GAN is not run. Pictures, ``result.json``, ``scores.csv`` and
    ``report.html`` are rewritten.
    """
    from cleftscore.io import load_image

    hooks = hooks or ProgressHooks()
    run = Path(run_dir)
    photos_dir = run / "photos"
    if not photos_dir.is_dir():
        raise CleftscoreError(f"{run}: not a cleftscore run folder (no photos/ inside); run `cleftscore score` first")
    if score_settings.difference.metric == "lpips" and lpips_distance is None:
        raise WeightsMissingError("metric 'lpips' needs VGG16 weights: pass --vgg16 PATH (see `cleftscore weights fetch vgg16`)")
    results = []
    for d in sorted(p for p in photos_dir.iterdir() if p.is_dir()):
        rec_path = d / "result.json"
        if not rec_path.exists():
            continue
        rec = _read_record(rec_path)
        if rec is None:
            hooks._msg(f"{rec_path}: unreadable record (interrupted run?); skipped, re-run `cleftscore score` for it")
            continue
        old = rec["settings"]
        settings = PipelineSettings(
            method=old["method"],
            size=old["size"],
            detector=old["detector"],
            score=score_settings,
            gan=GanSettings(**{**old["gan"], "snapshot_steps": tuple(old["gan"]["snapshot_steps"])}),
            seed=old["seed"],
        )
        res = PhotoResult(file=rec["file"], photo_id=rec["photo_id"], status=rec["status"], message=rec.get("message", ""), method=old["method"])
        res.notes = tuple(rec.get("notes", []))
        res.timings = rec.get("timings", {})
        res.cached = True
        run_info = {k: rec[k] for k in ("cleftscore_version", "torch_version", "python_version", "generator", "generator_sha256", "vgg16", "device", "resolution") if k in rec}
        run_info["settings"] = settings.to_dict()
        extra = {k: rec[k] for k in ("size", "faces_found", "face_box", "detector_score", "landmarks_aligned", "landmarks_original", "to_original", "original_shape", "landmark_asymmetry_px", "landmark_asymmetry_definition", "normalization") if k in rec}
        if res.ok:
            try:
                res.aligned = load_image(d / "aligned.png")
                res.normalized = load_image(d / "normalized.png")
                if (d / "inverted.png").exists():
                    res.inverted = load_image(d / "inverted.png")
                size = res.aligned.shape[0]
                if score_settings.mask_file:
                    res.mask = load_user_mask(score_settings.mask_file, size)
                else:
                    res.mask = roi_mask(np.asarray(rec["landmarks_aligned"]), size, region=score_settings.roi)
                _score_result(res, score_settings, lpips_distance)
                res.prepared = _prepared_from_record(rec, res.aligned)
            except CleftscoreError as exc:
                res.status, res.message = "failed", f"{res.file}: {exc}"
        if res.ok:
            _write_photo_pictures(d, res)
        record = result_record(res, settings, run_info)
        record.update(extra)
        from cleftscore.report import write_json

        write_json(rec_path, record)
        results.append(res)
        if hooks.photo_done is not None:
            hooks.photo_done(res)
    if not results:
        raise CleftscoreError(f"{run}: no photo results found under photos/")
    return results


def _prepared_from_record(rec: dict[str, Any], aligned_image: np.ndarray) -> PreparedPhoto | None:
    """Rebuild enough of a PreparedPhoto from ``result.json`` to draw on the original photo."""
    from cleftscore.face.align import AlignedFace
    from cleftscore.face.detect import FaceBox
    from cleftscore.io import load_image

    try:
        original = load_image(rec["file"])
    except CleftscoreError:
        return None  # the original photo moved: skip the overlay on it
    box = rec.get("face_box") or [0, 0, 0, 0]
    aligned = AlignedFace(
        image=aligned_image,
        size=int(aligned_image.shape[0]),
        landmarks=np.asarray(rec["landmarks_aligned"], dtype=np.float64),
        landmarks_original=np.asarray(rec["landmarks_original"], dtype=np.float64),
        to_original=np.asarray(rec["to_original"], dtype=np.float64),
        original_shape=tuple(rec["original_shape"]),
    )
    return PreparedPhoto(
        path=Path(rec["file"]),
        original=original,
        box=FaceBox(left=box[0], top=box[1], right=box[2], bottom=box[3], score=float(rec.get("detector_score") or 0.0), detector=rec["settings"]["detector"]),
        n_faces=int(rec.get("faces_found") or 1),
        aligned=aligned,
        notes=tuple(rec.get("notes", [])),
    )


def _read_record(path: Path) -> dict[str, Any] | None:
    """A photo's ``result.json``, or None when it is unreadable (e.g. an interrupted write)."""
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and "settings" in rec and "file" in rec else None


def write_run_summary(run_dir: str | Path, photo_ids: Sequence[str] | None = None) -> tuple[Path, Path]:
    """Write ``scores.csv`` and ``report.html`` from the ``result.json`` files of a run.

    Parameters
    ----------
    run_dir : path
        The run folder (``out_dir`` of :func:`score_photos`).
    photo_ids : sequence of str, optional
        Photos to include, in this order; default every photo folder of the run.

    Returns
    -------
    (Path, Path)
        The CSV and HTML paths.
    """
    from cleftscore.report import write_csv, write_html_report

    run = Path(run_dir)
    photos = run / "photos"
    if photo_ids is None:
        photo_ids = sorted(p.name for p in photos.iterdir() if (p / "result.json").exists()) if photos.is_dir() else []
    rows, html_rows = [], []
    for pid in photo_ids:
        rec_path = photos / pid / "result.json"
        if not rec_path.exists():
            continue  # interrupted before this photo finished
        rec = _read_record(rec_path)
        if rec is None:
            row = {"file": pid, "photo_id": pid, "status": "failed", "message": f"{rec_path}: unreadable record (interrupted run?)"}
            rows.append(row)
            html_rows.append(row)
            continue
        row = csv_row(rec)
        rows.append(row)
        panel_png = photos / pid / "panel.png"
        html_rows.append({**row, "panel_png": str(panel_png) if panel_png.exists() else None})
    csv_path, html_path = run / "scores.csv", run / "report.html"
    write_csv(csv_path, rows, columns=CSV_COLUMNS)
    write_html_report(
        html_path,
        html_rows,
        title="cleftscore report",
        columns=["file", "status", "score", "method", "roi", "metric", "colorspace", "erosion", "message", "notes"],
    )
    return csv_path, html_path


def make_lpips_distance(vgg16: str | Path | None, *, device: str = "auto") -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Spatial LPIPS on two uint8 images, for ``metric="lpips"`` heat maps.

    Returns a function ``f(a, b) -> (H, W) float32`` (higher = more different). Needs the real
    VGG16 weights; raises :class:`WeightsMissingError` with instructions when they are absent.
    """
    import torch

    from cleftscore.perceptual import PerceptualDistance
    from cleftscore.weights import resolve_vgg16

    dev = _resolve_device(device)
    metric = PerceptualDistance(vgg16_weights=resolve_vgg16(vgg16), spatial=True).to(dev)

    def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            ta, tb = _to_tensor([a], dev), _to_tensor([b], dev)
            return metric(ta, tb)[0, 0].float().cpu().numpy()

    return distance


def calibrate_run(
    run_dir: str | Path,
    ratings_path: str | Path,
    *,
    higher_is: str = "normal",
    scale: tuple[float, float] = (1.0, 7.0),
) -> dict[str, Any]:
    """Fit scores to human ratings of (some of) the run's photos and add calibrated columns.

    Only ever done when the user gives rated photos: the tool never invents a scale. Every
    scored photo of the run then gets ``calibrated_rating`` (on the raters' scale) and
    ``severity_0_100`` (0 = the normal end of the fitted scale) in its ``result.json``; the
    fit itself goes to ``calibration.json``. Re-run :func:`write_run_summary` afterwards.

    Returns
    -------
    dict
        The fit (slope, intercept, r, n, scale, direction) and the photos used.
    """
    from cleftscore.evaluate import match_ratings, read_ratings
    from cleftscore.report import write_json
    from cleftscore.score import fit_calibration, severity_0_100

    if higher_is not in ("normal", "abnormal"):
        raise ValueError(f"higher_is must be 'normal' or 'abnormal', got {higher_is!r}")
    run = Path(run_dir)
    records = {}
    for rec_path in sorted((run / "photos").glob("*/result.json")):
        rec = _read_record(rec_path)
        if rec is not None and rec.get("status") == "ok" and rec.get("score") is not None:
            records[rec["file"]] = (rec_path, rec)
    matched = match_ratings({f: r[1]["score"] for f, r in records.items()}, read_ratings(ratings_path))
    try:
        cal = fit_calibration(matched.scores, matched.ratings, scale=scale, higher_is_normal=higher_is == "normal")
    except ValueError as exc:
        raise CleftscoreError(f"{ratings_path}: cannot calibrate: {exc}") from None
    for rec_path, rec in records.values():
        rec["calibration"] = {
            "calibrated_rating": cal.apply(rec["score"]),
            "severity_0_100": severity_0_100(rec["score"], cal),
            "ratings_file": str(ratings_path),
        }
        write_json(rec_path, rec)
    fit = {**dataclasses.asdict(cal), "ratings_file": str(ratings_path), "photos_used": list(matched.files),
           "unrated_photos": list(matched.missing_in_ratings), "rated_but_not_in_run": list(matched.missing_in_run)}
    write_json(run / "calibration.json", fit)
    return fit
