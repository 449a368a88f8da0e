"""The ``gan`` normalizer: StyleGAN2 inversion + adaptation (paper Alg. 1 and 2), cached.

Faces are inverted and adapted in batches on the chosen device. Every result is cached on disk
(:mod:`cleftscore.normalize.cache`) under a key made of the aligned image bytes, the
generator's checksum and every setting that changes the GAN's output, so re-scoring and the
evaluation grid never run it again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cleftscore.errors import CleftscoreError
from cleftscore.normalize import GanProgress, Measure, Normalization
from cleftscore.normalize.cache import CacheEntry, NormalizationCache
from cleftscore.paths import normalization_cache_dir, sha256_file

if TYPE_CHECKING:
    from cleftscore.face.align import AlignedFace

__all__ = [
    "GanNormalizer",
    "GanSettings",
    "FUSED_KERNELS_ENV",
    "fused_kernels_wanted",
    "NORMALIZATION_VERSION",
    "normalization_cache_key",
    "resolve_device",
    "to_tensor",
    "to_uint8",
]

#: Bumped whenever the GAN normalization changes its output, so old cache entries are not reused.
NORMALIZATION_VERSION = "2"

#: Environment variable that turns the fused GPU kernels of the inversion off when set to ``0``;
#: read once, when a :class:`GanNormalizer` is built (never inside the network's ``forward``).
FUSED_KERNELS_ENV = "CLEFTSCORE_FUSED_KERNELS"


def fused_kernels_wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the inversion may use the fused GPU kernels: unless ``CLEFTSCORE_FUSED_KERNELS=0``.

    They change the normalized face at float-rounding level only, so the choice is not part of
    the cache key. ``environ`` defaults to ``os.environ``.
    """
    return (os.environ if environ is None else environ).get(FUSED_KERNELS_ENV, "1") != "0"


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
    dynamics_steps : int
        0: off. Otherwise adapt for this many steps (>= ``adapt_steps``) and record the ROI
        residual energy at every step (:mod:`cleftscore.gan.dynamics`): the normalized face is
        still the image after ``adapt_steps``; the extra steps give the reappearance indices,
        the curve and the reappearance strip.
    dynamics_fraction : float
        ``f`` of the reappearance step.
    dynamics_level : float or None
        An absolute ROI residual level (the curve's units, measured on normal faces of the same
        generator): also report the first step at which the residual falls to it.
    dynamics_roi : {"mouth", "nose", "face"}
        Region of the residual curve.
    strip_steps : tuple of int
        Steps shown in the reappearance strip (those up to ``dynamics_steps``).
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
    dynamics_steps: int = 0
    dynamics_fraction: float = 0.9  # cleftscore.gan.dynamics.DEFAULT_FRACTION (not imported: it needs torch)
    dynamics_level: float | None = None
    dynamics_roi: str = "mouth"
    strip_steps: tuple[int, ...] = (0, 50, 100, 200, 300)

    def __post_init__(self) -> None:
        if self.dynamics_steps and self.dynamics_steps < max(1, self.adapt_steps):
            raise ValueError(
                f"dynamics steps ({self.dynamics_steps}) must be at least the adaptation steps ({self.adapt_steps})"
            )
        if not 0.0 < self.dynamics_fraction < 1.0:
            raise ValueError(f"dynamics fraction must lie in (0, 1), got {self.dynamics_fraction}")
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


def resolve_device(spec: str) -> Any:
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CleftscoreError("--device cuda was asked for, but PyTorch sees no CUDA GPU here; use --device cpu")
    return dev


def normalization_cache_key(aligned: np.ndarray, generator_sha256: str, settings: dict[str, Any]) -> str:
    """Cache key of one GAN normalization: aligned pixels + generator checksum + settings."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(aligned, dtype=np.uint8).tobytes())
    h.update(str(aligned.shape).encode())
    h.update(generator_sha256.encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


def to_uint8(images: Any) -> np.ndarray:
    """Generator output [N,3,H,W] in [-1,1] -> (N,H,W,3) uint8."""
    import torch

    x = (images.detach().float().clamp(-1, 1) + 1) * 127.5
    return x.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def to_tensor(images: Sequence[np.ndarray], device: Any) -> Any:
    """(H,W,3) uint8 images -> [N,3,H,W] float32 in [-1,1] on ``device``."""
    import torch

    arr = np.stack([np.asarray(im, dtype=np.uint8) for im in images])
    t = torch.from_numpy(arr).to(device).permute(0, 3, 1, 2).float()
    return t / 127.5 - 1.0


class GanNormalizer:
    """Loads the generator and LPIPS once, then normalizes aligned faces batch by batch.

    Parameters
    ----------
    settings : GanSettings
        The GAN settings.
    seed : int
        Seed of every random draw; each face gets its own stream from its cache key, so its
        result does not depend on the other faces of its batch.
    cache_dir : path, optional
        Cache folder (default :func:`cleftscore.paths.normalization_cache_dir`).
    progress : GanProgress, optional
        Progress callbacks (batch steps, split batches, messages).

    Raises
    ------
    CleftscoreError
        Generator or VGG16 weights missing or unreadable; ``device`` asks for CUDA without one.
    """

    name = "gan"

    def __init__(
        self,
        settings: GanSettings,
        *,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        progress: GanProgress | None = None,
    ) -> None:
        from cleftscore.gan.checkpoints import load_generator
        from cleftscore.weights import replacement_hint_for_errors, resolve_generator

        self.gs = settings
        self.seed = seed
        self.progress = progress or GanProgress()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else normalization_cache_dir()
        self.cache = NormalizationCache(self.cache_dir, message=self._msg)
        self.device = resolve_device(self.gs.device)
        gen_path = resolve_generator(self.gs.generator)
        self.generator_path = Path(gen_path)
        self.generator_sha256 = sha256_file(self.generator_path)
        with replacement_hint_for_errors(self.generator_path):
            self.G = load_generator(self.generator_path, device=self.device)
        self.fused_kernels = fused_kernels_wanted()
        self.loss_fn = None
        self.vgg16_path: Path | None = None
        if self.gs.loss == "lpips":
            from cleftscore.perceptual import PerceptualDistance
            from cleftscore.weights import resolve_vgg16

            self.vgg16_path = Path(resolve_vgg16(self.gs.vgg16))
            self.loss_fn = PerceptualDistance(vgg16_weights=self.vgg16_path).to(self.device)
        self.resolution: int | None = int(self.G.img_resolution)
        self.batch_size = self.gs.batch
        self._w_stats: tuple[Any, float] | None = None
        self._key_settings: dict[str, Any] | None = None
        self._planned_batches = 0
        self._batches_run = 0

    def _msg(self, text: str) -> None:
        if self.progress.message is not None:
            self.progress.message(text)

    @property
    def steps_per_batch(self) -> int:
        return self.gs.steps + max(self.gs.adapt_steps, self.gs.dynamics_steps)

    def plan(self, n_faces: int) -> None:
        self._planned_batches = math.ceil(n_faces / self.gs.batch)
        if self.progress.start is not None:
            self.progress.start(n_faces, self.steps_per_batch * self._planned_batches)

    def close(self) -> None:
        # Faces planned for that were cached or failed to align: the bar still ends at its total.
        extra = self._batches_run - self._planned_batches
        if extra and self.progress.grow is not None:
            self.progress.grow(extra * self.steps_per_batch)
        self._planned_batches = self._batches_run = 0

    def key(self, face: AlignedFace) -> str:
        if self._key_settings is None:
            self._key_settings = self.key_settings()
        return normalization_cache_key(face.image, self.generator_sha256, self._key_settings)

    def cached(self, face: AlignedFace) -> Normalization | None:
        entry = self.cache.load(self.key(face))
        return None if entry is None else _normalization(entry, cached=True)

    def normalize(self, faces: Sequence[AlignedFace]) -> list[Normalization]:
        if not faces:
            return []
        self._batches_run += 1
        keys = [self.key(f) for f in faces]
        rois = seeds = None
        if self.gs.dynamics_steps:
            rois = [self.dynamics_roi(f) for f in faces]
            # Random draws as without dynamics, so that turning them on keeps the normalized face.
            base = self.key_settings(dynamics=False)
            seeds = [normalization_cache_key(f.image, self.generator_sha256, base) for f in faces]
        try:
            entries = _run_batch_with_fallback(self, [f.image for f in faces], keys, rois, seeds)
        except Exception as exc:  # noqa: BLE001 - e.g. CPU out of memory: these faces fail, others go on
            text = (
                str(exc)
                if isinstance(exc, CleftscoreError)
                else f"unexpected error while normalizing with the GAN ({type(exc).__name__}: {exc})"
            )
            return [Normalization(image=None, error=" ".join(text.split())) for _ in faces]
        out = []
        for key, entry in zip(keys, entries, strict=True):
            try:
                self.cache.store(key, entry)
            except OSError as exc:
                self._msg(f"could not cache a normalization in {self.cache_dir}: {exc}")
            out.append(_normalization(entry, cached=False))
        return out

    def dynamics_roi(self, face: AlignedFace) -> np.ndarray:
        """The residual curve's ROI of ``face`` (float mask in the aligned frame)."""
        from cleftscore.face.roi import roi_mask

        return roi_mask(face.landmarks, face.image.shape[0], region=self.gs.dynamics_roi).astype(np.float32)

    def w_stats(self) -> tuple[Any, float]:
        """(w_avg, w_std) from 10,000 mapped z, computed once per generator and kept on disk."""
        import torch

        from cleftscore.gan.wstats import w_stats

        if self._w_stats is None:
            path = self.cache_dir / "wstats" / f"{self.generator_sha256}.npz"
            try:
                with np.load(path) as data:
                    self._w_stats = (torch.from_numpy(data["w_avg"]).to(self.device), float(data["w_std"]))
            except Exception:  # noqa: BLE001 - missing or damaged (a zip error is no OSError): compute again
                import io

                from cleftscore.io import atomic_write_bytes

                w_avg, w_std = w_stats(self.G, device=self.device)
                buf = io.BytesIO()
                np.savez(buf, w_avg=w_avg.detach().cpu().numpy(), w_std=np.float64(w_std))
                atomic_write_bytes(path, buf.getvalue())
                self._w_stats = (w_avg, float(w_std))
        return self._w_stats

    # Settings that change the normalized face (not the scoring settings).
    def key_settings(self, *, dynamics: bool = True) -> dict[str, Any]:
        gs = dataclasses.asdict(self.gs)
        for k in ("generator", "vgg16", "device"):
            gs.pop(k)
        if not (dynamics and self.gs.dynamics_steps):
            # Off, the dynamics settings change nothing: keep the keys of earlier entries valid.
            for k in ("dynamics_steps", "dynamics_fraction", "dynamics_level", "dynamics_roi", "strip_steps"):
                gs.pop(k)
        if not self.gs.early_stop:
            # Each photo has its own random stream, so its result does not depend on its
            # batch; an early stop is decided per batch, so then the batch size counts.
            gs.pop("batch")
        gs["seed"] = self.seed
        # CPU and CUDA draw different random numbers, and "auto" precision means fp16 on CUDA
        # but fp32 on the CPU: both change the normalized face.
        gs["device_type"] = self.device.type
        gs["algorithm_version"] = NORMALIZATION_VERSION
        gs["vgg16_sha256"] = sha256_file(self.vgg16_path) if self.vgg16_path else None
        return gs

    def describe(self) -> dict[str, Any]:
        return {
            "generator": str(self.generator_path),
            "generator_sha256": self.generator_sha256,
            "vgg16": str(self.vgg16_path) if self.vgg16_path else None,
            "device": str(self.device),
            "resolution": self.resolution,
        }

    def run_batch(
        self,
        aligned: list[np.ndarray],
        keys: list[str],
        report: Callable[[int], None] | None = None,
        rois: list[np.ndarray] | None = None,
        seeds: list[str] | None = None,
    ) -> list[CacheEntry]:
        """Invert and adapt a batch of aligned faces; returns one entry per face.

        Each face's random draws come from its own generator, seeded by its cache key (which
        holds the seed), so a face gets the same result whatever else is in its batch.
        ``report(n)`` is told of every ``n`` batch steps issued (inversion, then adaptation).
        """
        import torch

        from cleftscore.gan.accel.fused import fused_kernels_active
        from cleftscore.gan.adapt import AdaptSettings, adapt
        from cleftscore.gan.invert import InversionSettings, invert

        gs = self.gs
        targets = to_tensor(aligned, self.device)
        rng = [torch.Generator(device=self.device).manual_seed(int(key[:15], 16)) for key in seeds or keys]
        inv_settings = InversionSettings(
            steps=gs.steps, loss=gs.loss, early_stop=gs.early_stop, precision=gs.precision, compile=gs.compile,
            fused_kernels=self.fused_kernels,
        )  # fmt: skip
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
            self.G,
            targets,
            settings=inv_settings,
            loss_fn=self.loss_fn,
            generator=rng,
            progress=on_step,
            w_stats=self.w_stats(),
        )
        t_inv = time.perf_counter() - t0
        # Count steps an early stop skipped, so the progress bar still ends at 100 %.
        if inv.steps_run < gs.steps:
            report(gs.steps - inv.steps_run)
        snapshots: dict[int, Any] = {}
        dynamics: list[dict[str, Any]] = [{} for _ in aligned]
        if gs.adapt_steps > 0 or gs.dynamics_steps:
            ad_settings = AdaptSettings(
                steps=gs.adapt_steps,
                snapshot_steps=tuple(gs.snapshot_steps),
                precision=gs.precision,
                lpips_weight=1.0 if gs.loss == "lpips" else 0.0,
            )
            roi = None
            if gs.dynamics_steps:
                from cleftscore.gan.dynamics import dynamics_adapt_settings

                ad_settings = dynamics_adapt_settings(ad_settings, gs.dynamics_steps, gs.strip_steps)
                roi = torch.from_numpy(np.stack(rois)).to(self.device)
            t1 = time.perf_counter()
            ad = adapt(self.G, inv.w, inv.noises, targets, settings=ad_settings, loss_fn=self.loss_fn,
                       progress=on_adapt_step, roi=roi)  # fmt: skip
            t_adapt = time.perf_counter() - t1
            snaps = {k: to_uint8(v) for k, v in ad.snapshots.items()}
            if gs.dynamics_steps:
                normalized = snaps[gs.adapt_steps] if gs.adapt_steps else to_uint8(inv.images)
                keep = set(gs.snapshot_steps) | {st for st in gs.strip_steps if st <= gs.dynamics_steps}
                snapshots = {k: v for k, v in snaps.items() if k in keep}
                dynamics = [_dynamics_meta(curve, gs) for curve in ad.roi_curve]
            else:
                normalized = to_uint8(ad.images)
                snapshots = snaps
        else:
            t_adapt = 0.0
            normalized = to_uint8(inv.images)
        inverted = to_uint8(inv.images)
        w = inv.w.detach().float().cpu().numpy()
        n = len(aligned)
        fused = self.fused_kernels and fused_kernels_active(self.device)
        described = self.describe()
        return [
            CacheEntry(
                normalized=normalized[i],
                inverted=inverted[i],
                snapshots={k: v[i] for k, v in snapshots.items()},
                w=w[i],
                meta={
                    "inversion_steps_run": int(inv.steps_run),
                    "inversion_step_mode": inv.step_mode,
                    "fused_gpu_kernels": fused,
                    "final_inversion_loss": float(inv.losses[i, inv.steps_run - 1]),
                    "time_inversion_s": t_inv / n,
                    "time_adaptation_s": t_adapt / n,
                    "batch_size": n,
                    **dynamics[i],
                    **described,
                },
            )
            for i in range(n)
        ]


def _dynamics_meta(curve: np.ndarray, gs: GanSettings) -> dict[str, Any]:
    """What a cache entry keeps of one photo's residual curve: the curve and its indices."""
    from cleftscore.gan.dynamics import curve_indices

    ix = curve_indices(curve, fraction=gs.dynamics_fraction, level=gs.dynamics_level)
    return {"dynamics": {**ix.to_dict(), "roi": gs.dynamics_roi, "adapt_steps": gs.adapt_steps,
                         "curve": [float(v) for v in np.asarray(curve, dtype=np.float64)]}}  # fmt: skip


def _run_batch_with_fallback(normalizer: GanNormalizer, aligned: list[np.ndarray], keys: list[str],
                             rois: list[np.ndarray] | None = None, seeds: list[str] | None = None) -> list[CacheEntry]:  # fmt: skip
    """Run a batch; on CUDA out-of-memory, split it in halves (down to one photo).

    The progress of a failed attempt is taken back, and the bar grows by the steps of the
    extra batch, so it still ends at 100 %.
    """
    import torch

    reported = 0

    def report(n: int) -> None:
        nonlocal reported
        reported += n
        if normalizer.progress.step is not None:
            normalizer.progress.step(n)

    try:
        # Only dynamics runs pass the ROIs and seeds, so a run_batch of the older form still fits.
        extra = {} if rois is None else {"rois": rois, "seeds": seeds}
        return normalizer.run_batch(aligned, keys, report, **extra)
    except torch.cuda.OutOfMemoryError:
        if len(aligned) == 1:
            raise CleftscoreError(
                "the GPU ran out of memory on a single photo; try --device cpu or a smaller model"
            ) from None
        torch.cuda.empty_cache()
        if reported and normalizer.progress.step is not None:
            normalizer.progress.step(-reported)
        if normalizer.progress.grow is not None:
            normalizer.progress.grow(normalizer.steps_per_batch)
        half = len(aligned) // 2
        normalizer._msg(f"GPU memory is short for a batch of {len(aligned)}; retrying in batches of {half}")

        def part(sl: slice) -> list[CacheEntry]:
            return _run_batch_with_fallback(normalizer, aligned[sl], keys[sl], None if rois is None else rois[sl],
                                            None if seeds is None else seeds[sl])  # fmt: skip

        return part(slice(None, half)) + part(slice(half, None))


#: What result.json says about how a photo's GAN normalization ran (from its cache entry).
_NORMALIZATION_KEYS = ("inversion_steps_run", "inversion_step_mode", "fused_gpu_kernels", "final_inversion_loss", "batch_size",
                       "dynamics")  # fmt: skip

#: The adaptation-dynamics indices as measures (result.json, scores.csv, the report, evaluate).
DYNAMICS_MEASURES = {
    "dynamics_residual_integral": (
        "residual_integral",
        "mean ROI residual energy over the adaptation steps (higher = more left to rebuild; docs/dynamics.md)",
    ),
    "dynamics_level_step": ("level_step", "adaptation steps until the ROI residual falls to the given level"),
    "dynamics_reappearance_step": (
        "reappearance_step",
        "adaptation steps until the ROI residual falls to f of its value before adaptation",
    ),
    "dynamics_curve_auc": ("curve_auc", "area under the ROI residual curve over its start, per step (0..1)"),
}


def _measures(meta: Mapping[str, Any]) -> dict[str, Measure]:
    dyn = meta.get("dynamics")
    if not isinstance(dyn, Mapping):
        return {}
    return {name: Measure(float(dyn[key]), text) for name, (key, text) in DYNAMICS_MEASURES.items()
            if dyn.get(key) is not None}  # fmt: skip


def _normalization(entry: CacheEntry, *, cached: bool) -> Normalization:
    return Normalization(
        image=entry.normalized,
        inverted=entry.inverted,
        snapshots=dict(entry.snapshots),
        measures=_measures(entry.meta),
        info={k: entry.meta[k] for k in _NORMALIZATION_KEYS if k in entry.meta},
        timings={k: float(v) for k, v in entry.meta.items() if k.startswith("time_")},
        cached=cached,
    )
