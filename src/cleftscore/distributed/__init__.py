"""``cleftscore score --ray``: the GAN normalization spread over GPUs and nodes with Ray.

The driver (the process that runs ``cleftscore score``) reads and aligns the photos and writes
the run folder through the ordinary pipeline, so the folder is the one a single-process run
writes. Only the normalization moves: one Ray actor per GPU (or a chosen number of CPU actors)
loads the generator and LPIPS once and normalizes batches of ``--batch`` faces; a batch whose
worker dies is run again on another worker, a bounded number of times.

Ray is an optional extra (``pip install "cleftscore[ray]"``) and is imported only here, when a
run asks for it: ``import cleftscore`` and runs without ``--ray`` never load it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cleftscore.errors import CleftscoreError

if TYPE_CHECKING:
    from cleftscore.distributed.actors import RayPool
    from cleftscore.normalize.gan import GanSettings
    from cleftscore.run.record import PhotoResult
    from cleftscore.run.settings import PipelineSettings, ProgressHooks

__all__ = ["RaySettings", "WorkerInfo", "ray_pool", "score_photos_ray"]

#: What to install when Ray is missing (no square brackets: the CLI prints messages as rich markup).
INSTALL_HINT = "pip install -c constraints.txt ray (the ray extra of cleftscore, as in docs/ray.md)"


@dataclass(frozen=True)
class RaySettings:
    """Where the Ray workers run and how many there are.

    Parameters
    ----------
    address : str
        ``"auto"`` starts a Ray instance on this machine (bound to 127.0.0.1, no dashboard,
        stopped at the end); anything else is the address of a running cluster to join, as
        ``ray start --head`` prints it (``HOST:6379``, or ``ray://HOST:10001``).
    workers : int or None
        Number of workers; ``None`` means one per GPU of the cluster, or 2 CPU workers when it
        has no GPU (or the GAN settings ask for ``device="cpu"``).
    cpus_per_worker : float
        CPU cores Ray reserves for each worker (a CPU worker's PyTorch uses that many threads).
    max_retries : int
        How often a batch whose worker died is run again before its photos fail.
    max_restarts : int
        How often Ray restarts a worker that died (it reloads the generator).
    start_timeout_s : float
        How long to wait for the workers to be placed and load their weights.
    """

    address: str = "auto"
    workers: int | None = None
    cpus_per_worker: float = 1.0
    max_retries: int = 2
    max_restarts: int = 3
    start_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if not self.address.strip():
            raise ValueError("address must be 'auto' or a Ray cluster address such as HOST:6379")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.cpus_per_worker <= 0:
            raise ValueError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker}")
        if self.max_retries < 0 or self.max_restarts < 0:
            raise ValueError(f"max_retries and max_restarts must be >= 0, got {self.max_retries}, {self.max_restarts}")
        if self.start_timeout_s <= 0:
            raise ValueError(f"start_timeout_s must be > 0, got {self.start_timeout_s}")


@dataclass(frozen=True)
class WorkerInfo:
    """One Ray worker as the driver sees it: which process, and the batches it holds.

    ``batches`` are the ids (in order of dispatch, increasing over the run) of the batches sent
    to it and not yet back; ``ready`` is False while Ray restarts it.
    """

    index: int
    pid: int
    node: str
    device: str
    ready: bool
    batches: tuple[int, ...]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise CleftscoreError(f"--ray needs the optional Ray extra, which is not installed: {INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def ray_pool(gan: GanSettings, *, seed: int = 0, cache_dir: str | Path | None = None, ray: RaySettings | None = None,
             message: Callable[[str], None] | None = None) -> Iterator[RayPool]:  # fmt: skip
    """Start or join Ray, start the GAN workers, and stop them (and a Ray started here) after.

    Parameters
    ----------
    gan : GanSettings
        GAN settings of every worker (``batch`` is the batch each worker runs).
    seed : int
        Seed of every random draw (as in a single-process run).
    cache_dir : path, optional
        GAN cache folder of the workers; shared between nodes when it is on a shared filesystem.
    ray : RaySettings, optional
        Where and how many workers.
    message : callable, optional
        Told what is being started.

    Yields
    ------
    RayPool
        Its :meth:`~cleftscore.distributed.actors.RayPool.normalizer` goes to
        :func:`cleftscore.run.pipeline.score_photos` as ``normalizer_factory``.

    Raises
    ------
    CleftscoreError
        Ray not installed, the cluster unreachable or too small, or the workers cannot load
        the weights.
    """
    _import_ray()
    from cleftscore.distributed.actors import RayPool, ray_session

    settings = ray or RaySettings()
    with ray_session(settings, message=message):
        pool = RayPool(gan, seed=seed, cache_dir=cache_dir, settings=settings, message=message)
        try:
            yield pool
        finally:
            pool.close()


def score_photos_ray(
    paths: Sequence[str | Path],
    settings: PipelineSettings,
    *,
    ray: RaySettings | None = None,
    out_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    hooks: ProgressHooks | None = None,
    lpips_distance: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    keep_images: bool | None = None,
) -> list[PhotoResult]:
    """:func:`cleftscore.run.pipeline.score_photos` with the GAN normalization on Ray workers.

    Same parameters, results and run folder as :func:`~cleftscore.run.pipeline.score_photos`,
    plus ``ray`` (where and how many workers). Only the ``gan`` method is spread out.

    Raises
    ------
    CleftscoreError
        As :func:`~cleftscore.run.pipeline.score_photos`, and as :func:`ray_pool`; or a method
        other than ``gan``.
    """
    from cleftscore.run.pipeline import score_photos
    from cleftscore.run.settings import ProgressHooks

    if settings.method != "gan":
        raise CleftscoreError(
            f"--ray spreads the GAN normalizer over GPUs; the {settings.method} method needs none: leave --ray out"
        )
    hooks = hooks or ProgressHooks()
    with ray_pool(settings.gan, seed=settings.seed, cache_dir=cache_dir, ray=ray, message=hooks.message) as pool:
        return score_photos(paths, settings, out_dir=out_dir, cache_dir=cache_dir, hooks=hooks, lpips_distance=lpips_distance,
                            keep_images=keep_images, normalizer_factory=pool.normalizer)  # fmt: skip
