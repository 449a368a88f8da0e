"""Photos end to end as a stream: align -> normalize -> heat map -> score -> run folder.

This is the orchestration behind ``cleftscore score``; notebooks call :func:`score_photos` and
get the same results as the command line. The stages live elsewhere: alignment in
:mod:`cleftscore.face`, normalizers in :mod:`cleftscore.normalize`, the score in
:mod:`cleftscore.score`, one photo's way through them in :mod:`cleftscore.run.photo` and the
run-folder format in :mod:`cleftscore.run.folder`.

Photos are processed as a stream: each one is aligned, normalized (the GAN in batches), scored
and written, and then its arrays are dropped, so memory does not grow with the number of
photos.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from cleftscore import __version__
from cleftscore.errors import CleftscoreError
from cleftscore.normalize import GanProgress, Normalizer, make_normalizer
from cleftscore.run.folder import locked, read_records, write_run_settings, write_summary
from cleftscore.run.inputs import InputPhoto, find_inputs
from cleftscore.run.parallel import score_in_processes
from cleftscore.run.photo import PhotoWork, RunContext, align_photo, finish_photo
from cleftscore.run.record import PhotoResult
from cleftscore.run.settings import PipelineSettings, ProgressHooks

__all__ = ["score_photos"]


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
    workers: int = 1,
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
        Cache of GAN normalizations (default :func:`cleftscore.paths.normalization_cache_dir`).
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
    workers : int
        Processes that score photos side by side (weights-free methods only; see
        :func:`cleftscore.run.parallel.score_in_processes`). 1 scores them in this process. The
        GAN method, LPIPS heat maps and a ``normalizer_factory`` always use this process (the GAN
        batches photos on its device instead). The run folder is the same either way.

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
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    ids = [i.photo_id for i in inputs]
    with locked(out):
        if out is not None:
            write_run_settings(out, settings.to_dict(), ids)
        try:
            normalizer, size = _open_normalizer(settings, cache_dir=cache_dir, hooks=hooks, factory=normalizer_factory)
            ctx = RunContext(settings, size=size, environment=_environment(normalizer), out=out, keep=keep,
                             lpips_distance=lpips_distance)  # fmt: skip
            processes = min(workers, len(inputs))
            if processes > 1 and settings.method != "gan" and lpips_distance is None and normalizer_factory is None:
                normalizer.close()
                return score_in_processes(inputs, ctx, workers=processes, hooks=hooks)
            return _score_stream(inputs, ctx, normalizer, hooks)
        finally:
            if out is not None:
                try:
                    write_summary(out, read_records(out, ids), settings=settings.to_dict())
                except OSError as exc:
                    hooks.say(f"could not write the summary of {out}: {exc}")


def _open_normalizer(settings: PipelineSettings, *, cache_dir: str | Path | None, hooks: ProgressHooks,
                     factory: Callable[[GanProgress], Normalizer] | None) -> tuple[Normalizer, int]:  # fmt: skip
    """The run's normalizer and the side of its aligned faces."""
    progress = GanProgress(start=hooks.gan_start, step=hooks.gan_step, grow=hooks.gan_grow, message=hooks.say)
    if factory is not None:
        normalizer = factory(progress)
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
            hooks.say(
                f"Running a {size}x{size} generator on the CPU takes hours per photo at "
                f"{settings.gan.steps} + {settings.gan.adapt_steps} steps; use a CUDA GPU, or "
                "--steps 100 --adapt-steps 10 for a quick (less faithful) look."
            )
    return normalizer, size or 1024


def _score_stream(inputs: Sequence[InputPhoto], ctx: RunContext, normalizer: Normalizer,
                  hooks: ProgressHooks) -> list[PhotoResult]:  # fmt: skip
    """Every photo in this process: aligned one by one, normalized in batches, finished in input order."""
    results: dict[str, PhotoResult] = {}  # by photo id: a failed photo can finish before a batch

    def finish(work: PhotoWork) -> None:
        results[work.photo_id] = res = finish_photo(work, ctx)
        hooks.done(res)

    # Heat maps, scores and files of one GAN batch are made on a worker thread while the device
    # works on the next batch (the step loop needs little of the host). One worker: photos are
    # finished in order. Leaving the block waits for it, also on Ctrl-C, so no output is cut.
    # Not with LPIPS heat maps: GPU work from another thread could break a CUDA graph capture.
    workers = 1 if ctx.settings.method == "gan" and ctx.lpips_distance is None else 0
    pending: list[PhotoWork] = []
    planned = False

    def flush(still_to_come: int) -> None:
        nonlocal planned
        if not pending:
            return
        if not planned:
            normalizer.plan(len(pending) + still_to_come)
            planned = True
        faces = [w.prepared.aligned for w in pending]  # type: ignore[union-attr]
        for work, norm in zip(pending, normalizer.normalize(faces), strict=True):
            work.take(norm)
            pool.submit(finish, work)
        pending.clear()

    with _Finisher(workers) as pool:
        for i, item in enumerate(inputs):
            work = align_photo(item, ctx)
            hit = normalizer.cached(work.prepared.aligned) if work.prepared is not None else None
            if hit is not None:
                work.take(hit)
            if not work.ok or hit is not None:
                pool.submit(finish, work)
                continue
            pending.append(work)
            if len(pending) >= normalizer.batch_size:
                flush(len(inputs) - i - 1)
            pool.check()
        flush(0)
        normalizer.close()
    for f in pool.futures:
        f.result()  # an error outside the per-photo guards (e.g. in a hook) is not lost
    return [results[item.photo_id] for item in inputs]
