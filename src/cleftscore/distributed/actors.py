"""Ray workers that run the GAN normalizer, and the driver-side normalizer that feeds them.

Imported only by :mod:`cleftscore.distributed` when a run asks for Ray (this module imports
``ray`` at the top).

How a run goes: the pipeline aligns photo after photo on the driver and asks
:meth:`RayNormalizer.cached` about each. A worker answers from its cache (on a thread of its own,
beside the batch it is running); a face that is not cached joins the next batch, and every full
batch is sent to the least busy worker at once, so the workers run while the driver aligns the
next photos. When the pipeline asks for the normalizations (:meth:`RayNormalizer.normalize`),
the driver waits for their batches, forwarding each worker's GAN steps to the progress bar. A
batch whose worker died (process killed, node lost) is sent again, to a live worker, at most
``max_retries`` times; after that its photos fail with a one-line reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import (
    GetTimeoutError,
    NodeDiedError,
    ObjectLostError,
    RayActorError,
    RayTaskError,
    WorkerCrashedError,
)

from cleftscore.distributed import RaySettings, WorkerInfo
from cleftscore.errors import CleftscoreError
from cleftscore.normalize import GanProgress, Normalization

if TYPE_CHECKING:
    from cleftscore.face.align import AlignedFace
    from cleftscore.normalize.gan import GanSettings

__all__ = ["RayNormalizer", "RayPool", "ray_session"]

log = logging.getLogger(__name__)

#: Errors that mean a batch was lost with its worker (not that the photos are bad): run it again.
LOST = (RayActorError, WorkerCrashedError, ObjectLostError, NodeDiedError)

#: Batches a worker holds at once: one running and one waiting, so it never idles between two.
PER_WORKER = 2
#: Seconds between two progress polls of a busy worker.
POLL_S = 0.5


# ----------------------------------------------------------------------------- Ray itself


@contextlib.contextmanager
def ray_session(settings: RaySettings, *, message: Callable[[str], None] | None = None) -> Iterator[None]:
    """Connect to Ray as ``settings.address`` says, and disconnect (stopping a local Ray) after.

    An existing connection of this process (``ray.init`` done by the caller) is used as it is
    and left open.
    """
    if ray.is_initialized():
        yield
        return
    say = message or log.info
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    # Usage statistics are off: photos are patient data and nothing is reported anywhere.
    # Ray reads this from the environment of the driver (and passes it to a Ray it starts).
    env = {**_NO_USAGE_STATS, **(_LOOPBACK_ONLY if settings.address == "auto" else {})}
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        if settings.address == "auto":
            say("Starting a local Ray instance (127.0.0.1 only, no dashboard)")
            _start_local_ray(options)
        else:
            say(f"Joining the Ray cluster at {settings.address}")
            ray.init(address=settings.address, **{k: v for k, v in options.items() if k != "include_dashboard"})
    except (ConnectionError, RuntimeError, ValueError) as exc:
        _restore(before)
        raise CleftscoreError(
            f"could not start or join Ray at {settings.address!r}: {' '.join(str(exc).split())}"
        ) from None
    try:
        yield
    finally:
        ray.shutdown()
        _restore(before)


_NO_USAGE_STATS = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_USAGE_STATS_PROMPT_ENABLED": "0"}
#: Ray's switch for a single-machine Ray: with it off, every Ray process takes 127.0.0.1 as this
#: node's address, so the GCS, raylets, object manager, workers and agents bind and advertise
#: loopback only. Without it Ray swaps ``_node_ip_address="127.0.0.1"`` for the machine's network
#: address (``resolve_ip_for_localhost``) and its servers listen on every interface.
_LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _start_local_ray(options: dict[str, Any]) -> None:
    """``ray.init`` of a Ray on this machine that listens on 127.0.0.1 only; its token file 0600."""
    from ray._private import ray_constants

    # The children read the switch from the environment; this process read it when Ray was
    # first imported, so it is set here too for the time of the start (restored after).
    was = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    # Files Ray writes at start (~/.ray/auth_token among them) are readable by their owner only.
    umask = os.umask(0o077)
    try:
        ray.init(address="local", _node_ip_address="127.0.0.1", **options)
    finally:
        os.umask(umask)
        ray_constants.ENABLE_RAY_CLUSTER = was
    _private_token_file()


def _private_token_file() -> None:
    """Make Ray's cluster token file readable by its owner only (an older Ray run left it 0644)."""
    token = Path.home() / ".ray" / "auth_token"
    with contextlib.suppress(OSError):
        st = token.stat()
        if st.st_uid == getattr(os, "getuid", lambda: st.st_uid)() and st.st_mode & 0o077:
            token.chmod(0o600)


def _restore(env: dict[str, str | None]) -> None:
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# ----------------------------------------------------------------------------- the worker


@dataclass(frozen=True)
class WorkerIdentity:
    """What a worker says about itself once its weights are loaded (``error`` if they are not)."""

    pid: int
    node: str
    error: str = ""
    description: dict[str, Any] = field(default_factory=dict)
    resolution: int | None = None


@dataclass(frozen=True)
class JobProgress:
    """GAN steps a worker issued for a batch (net of taken-back attempts) and planned extra steps."""

    steps: int = 0
    grow: int = 0


@dataclass(frozen=True)
class WorkerReport:
    """A progress poll: steps of the batches under way, and messages since the last poll."""

    pid: int
    jobs: dict[int, JobProgress]
    messages: tuple[str, ...]


@dataclass(frozen=True)
class JobResult:
    """A finished batch: one normalization per face, and the batch's final step counts."""

    normalizations: list[Normalization]
    progress: JobProgress


@ray.remote(concurrency_groups={"side": 1})
class GanWorker:
    """One GAN normalizer in a Ray actor: batches on the main thread, lookups and polls beside it."""

    def __init__(self, gan: GanSettings, seed: int, cache_dir: str | None) -> None:
        from cleftscore.normalize.gan import GanNormalizer

        self._lock = threading.Lock()
        self._jobs: dict[int, list[int]] = {}
        self._messages: list[str] = []
        self._job: int | None = None
        self._error = ""
        self._normalizer: GanNormalizer | None = None
        progress = GanProgress(step=self._step, grow=self._grow, message=self._message)
        try:
            self._normalizer = GanNormalizer(gan, seed=seed, cache_dir=cache_dir, progress=progress)
        except CleftscoreError as exc:
            self._error = str(exc)
        except Exception as exc:  # noqa: BLE001 - reported to the driver as one line
            self._error = f"unexpected error while loading the GAN ({type(exc).__name__}: {exc})"

    def _count(self, slot: int, n: int) -> None:
        with self._lock:
            if self._job is not None:
                self._jobs.setdefault(self._job, [0, 0])[slot] += n

    def _step(self, n: int) -> None:
        self._count(0, n)

    def _grow(self, n: int) -> None:
        self._count(1, n)

    def _message(self, text: str) -> None:
        with self._lock:
            self._messages.append(text)

    @ray.method(concurrency_group="side")
    def identity(self) -> WorkerIdentity:
        n = self._normalizer
        if n is None:
            return WorkerIdentity(pid=os.getpid(), node=socket.gethostname(), error=self._error)
        return WorkerIdentity(
            pid=os.getpid(), node=socket.gethostname(), description=n.describe(), resolution=n.resolution
        )

    @ray.method(concurrency_group="side")
    def report(self) -> WorkerReport:
        with self._lock:
            jobs = {job: JobProgress(steps=s, grow=g) for job, (s, g) in self._jobs.items()}
            messages, self._messages = tuple(self._messages), []
        return WorkerReport(pid=os.getpid(), jobs=jobs, messages=messages)

    @ray.method(concurrency_group="side")
    def cached(self, face: AlignedFace) -> Normalization | None:
        assert self._normalizer is not None
        return self._normalizer.cached(face)

    def normalize(self, job: int, *faces: AlignedFace) -> JobResult:
        assert self._normalizer is not None
        with self._lock:
            self._job = job
            self._jobs[job] = [0, 0]
        try:
            out = self._normalizer.normalize(list(faces))
        finally:
            with self._lock:
                self._job = None
                steps, grow = self._jobs.pop(job)
        return JobResult(normalizations=out, progress=JobProgress(steps=steps, grow=grow))


# ----------------------------------------------------------------------------- the driver


@dataclass(eq=False)
class _Worker:
    index: int
    handle: Any
    identity: WorkerIdentity
    ready: bool = True
    jobs: list[_Job] = field(default_factory=list)
    ping: Any = None  # ObjectRef of identity() while Ray restarts it
    ping_after: float = 0.0
    lost_at: float = 0.0
    deaths: int = 0
    poll: Any = None  # ObjectRef of report()
    polled_at: float = 0.0


@dataclass(eq=False)
class _Job:
    id: int
    faces: list[Any]  # ObjectRefs of the AlignedFaces
    attempts: int = 0
    worker: _Worker | None = None
    future: Any = None
    seen: JobProgress = field(default_factory=JobProgress)
    shown: JobProgress = field(default_factory=JobProgress)
    result: list[Normalization] | None = None


@dataclass(eq=False)
class _Ticket:
    face: Any  # the AlignedFace itself: tickets are found by identity
    ref: Any
    job: _Job | None = None
    index: int = 0


class RayPool:
    """The GAN workers of one run; :meth:`normalizer` is the pipeline's ``normalizer_factory``.

    Parameters
    ----------
    gan : GanSettings
        Settings of every worker's GAN normalizer.
    seed : int
        Seed of every random draw.
    cache_dir : path, optional
        The workers' GAN cache folder (default: each worker's user cache).
    settings : RaySettings
        How many workers, their CPUs, retries and restarts.
    message : callable, optional
        Told how many workers started.

    Raises
    ------
    CleftscoreError
        The cluster has too few GPUs or CPUs, the workers were not placed in time, or they
        cannot load the weights.
    """

    def __init__(self, gan: GanSettings, *, seed: int, cache_dir: str | Path | None, settings: RaySettings,
                 message: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.settings = settings
        self.batch = gan.batch
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpu = gpus > 0 and gan.device != "cpu"
        if not use_gpu and gan.device not in ("auto", "cpu"):
            raise CleftscoreError(
                f"--device {gan.device} asks for a GPU, but the Ray cluster has none; use --device cpu or auto"
            )
        n = settings.workers or (gpus if use_gpu else 2)
        cpus = float(resources.get("CPU", 0))
        if use_gpu and n > gpus:
            raise CleftscoreError(
                f"{n} Ray workers need {n} GPUs (one each); the cluster has {gpus}: ask for at most {gpus}"
            )
        if n * settings.cpus_per_worker > cpus:
            raise CleftscoreError(
                f"{n} Ray workers need {n * settings.cpus_per_worker:g} CPUs ({settings.cpus_per_worker:g} each); "
                f"the cluster has {cpus:g}: ask for fewer workers or fewer CPUs per worker"
            )
        # Ray hands each GPU worker its own card as "cuda"; an explicit cuda:N means nothing there.
        worker_gan = dataclasses.replace(gan, device="cuda" if use_gpu else "cpu")
        options = {"num_cpus": settings.cpus_per_worker, "num_gpus": 1 if use_gpu else 0,
                   "max_restarts": settings.max_restarts, "max_task_retries": 0}  # fmt: skip
        cache = str(cache_dir) if cache_dir is not None else None
        handles = [GanWorker.options(**options).remote(worker_gan, seed, cache) for _ in range(n)]
        try:
            identities = ray.get([h.identity.remote() for h in handles], timeout=settings.start_timeout_s)
        except GetTimeoutError:
            for h in handles:
                ray.kill(h, no_restart=True)
            raise CleftscoreError(
                f"the {n} Ray workers did not start within {settings.start_timeout_s:g} s; "
                "check `ray status` for free GPUs/CPUs and that cleftscore is installed on every node"
            ) from None
        errors = sorted({i.error for i in identities if i.error})
        if errors:
            for h in handles:
                ray.kill(h, no_restart=True)
            raise CleftscoreError(f"a Ray worker could not load the GAN: {errors[0]}")
        self.workers = [
            _Worker(index=i, handle=h, identity=ident)
            for i, (h, ident) in enumerate(zip(handles, identities, strict=True))
        ]
        kind = "GPU" if use_gpu else "CPU"
        nodes = len({w.identity.node for w in self.workers})
        (message or log.info)(f"{n} Ray {kind} workers on {nodes} node(s), batches of {gan.batch}")
        self.gan = gan

    def normalizer(self, progress: GanProgress) -> RayNormalizer:
        """The normalizer of one run on these workers, reporting to ``progress``."""
        return RayNormalizer(self, progress)

    def info(self) -> list[WorkerInfo]:
        """Each worker: process, node, device, whether it is up, and the batches it holds."""
        return [
            WorkerInfo(
                index=w.index,
                pid=w.identity.pid,
                node=w.identity.node,
                device=str(w.identity.description.get("device", "")),
                ready=w.ready,
                batches=tuple(j.id for j in w.jobs),
            )  # fmt: skip
            for w in self.workers
        ]

    def close(self) -> None:
        for w in self.workers:
            with contextlib.suppress(Exception):
                ray.kill(w.handle, no_restart=True)
        self.workers = []


class RayNormalizer:
    """The :class:`~cleftscore.normalize.Normalizer` of a run whose GAN work is on Ray workers.

    Takes ``batch_size`` faces per :meth:`normalize` from the pipeline (a few batches per
    worker), but sends them on in batches of the GAN's ``batch`` as soon as each is full (from
    :meth:`cached`), so the same faces share a batch as in a single-process run.
    """

    name = "gan"

    def __init__(self, pool: RayPool, progress: GanProgress) -> None:
        if not pool.workers:
            raise CleftscoreError("the Ray workers of this pool have been stopped")
        import torch

        self._pool = pool
        self._progress = progress
        self._batch = pool.batch
        first = pool.workers[0].identity
        self._description = dict(first.description)
        self.resolution: int | None = first.resolution
        self.device = torch.device(str(self._description.get("device", "cpu")))
        self.batch_size = self._batch * PER_WORKER * len(pool.workers)
        self._steps_per_batch = pool.gan.steps + pool.gan.adapt_steps
        self._tickets: dict[int, _Ticket] = {}
        self._waiting: list[_Ticket] = []
        self._queue: list[_Job] = []
        self._job_ids = itertools.count()
        self._turn = 0
        self._planned = False
        self._planned_batches = 0
        self._batches_run = 0
        self._abandoned = 0

    # -- the Normalizer interface

    def describe(self) -> dict[str, Any]:
        return dict(self._description)

    def plan(self, n_faces: int) -> None:
        self._planned_batches = math.ceil(n_faces / self._batch)
        self._planned = True
        if self._progress.start is not None:
            self._progress.start(n_faces, self._steps_per_batch * self._planned_batches)

    def cached(self, face: AlignedFace) -> Normalization | None:
        ref = ray.put(face)
        hit = self._lookup(ref)
        if hit is not None:
            return hit
        ticket = _Ticket(face=face, ref=ref)
        self._tickets[id(face)] = ticket
        self._waiting.append(ticket)
        if len(self._waiting) >= self._batch:
            self._form_job()
        self._pump(wait=False)
        return None

    def normalize(self, faces: Sequence[AlignedFace]) -> list[Normalization]:
        tickets = []
        for face in faces:
            t = self._tickets.get(id(face))
            if t is None or t.face is not face:  # not announced through cached()
                t = _Ticket(face=face, ref=ray.put(face))
                self._tickets[id(face)] = t
                self._waiting.append(t)
            tickets.append(t)
        while self._waiting:
            self._form_job()
        while any(t.job is None or t.job.result is None for t in tickets):
            self._pump(wait=True)
        out = []
        for t in tickets:
            assert t.job is not None and t.job.result is not None
            out.append(t.job.result[t.index])
            self._tickets.pop(id(t.face), None)
        return out

    def close(self) -> None:
        # Batches planned for that turned out cached, and batches given up: the bar still ends at its total.
        extra = self._batches_run - self._abandoned - self._planned_batches
        if extra and self._progress.grow is not None:
            self._progress.grow(extra * self._steps_per_batch)
        self._planned_batches = self._batches_run = self._abandoned = 0

    # -- lookups

    def _lookup(self, ref: Any) -> Normalization | None:
        """The cached normalization, asked of a ready worker (beside its batch); None if none answers."""
        for _ in range(len(self._pool.workers)):
            self._turn += 1
            w = self._pool.workers[self._turn % len(self._pool.workers)]
            if not w.ready:
                continue
            try:
                return ray.get(w.handle.cached.remote(ref))
            except LOST:
                self._lost_worker(w)
        return None

    # -- batches

    def _form_job(self) -> None:
        tickets, self._waiting = self._waiting[: self._batch], self._waiting[self._batch :]
        job = _Job(id=next(self._job_ids), faces=[t.ref for t in tickets])
        for i, t in enumerate(tickets):
            t.job, t.index = job, i
        self._batches_run += 1
        self._queue.append(job)
        self._dispatch()

    def _dispatch(self) -> None:
        while self._queue:
            free = [w for w in self._pool.workers if w.ready and len(w.jobs) < PER_WORKER]
            if not free:
                return
            w = min(free, key=lambda x: (len(x.jobs), x.index))
            job = self._queue.pop(0)
            job.worker, job.attempts = w, job.attempts + 1
            job.future = w.handle.normalize.remote(job.id, *job.faces)
            w.jobs.append(job)

    def _pump(self, *, wait: bool) -> None:
        """Collect finished batches, polls and restarts; send queued batches; poll busy workers."""
        if not self._pool.workers:
            while self._queue:
                self._give_up(
                    self._queue.pop(0),
                    "no Ray worker is left to normalize it (every worker died more often than Ray restarts them)",
                )
            return
        now = time.monotonic()
        for w in self._pool.workers:
            if w.jobs and w.ready and w.poll is None and now - w.polled_at >= POLL_S:
                w.poll, w.polled_at = w.handle.report.remote(), now
            if not w.ready and w.ping is None and now >= w.ping_after:
                w.ping = w.handle.identity.remote()
        pending = {j.future: ("job", j) for w in self._pool.workers for j in w.jobs}
        pending.update({w.poll: ("poll", w) for w in self._pool.workers if w.poll is not None})
        pending.update({w.ping: ("ping", w) for w in self._pool.workers if w.ping is not None})
        if pending:
            refs = list(pending)
            if wait:
                ray.wait(refs, num_returns=1, timeout=POLL_S)
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in ready:
                kind, what = pending[ref]
                # An earlier entry may have made this one stale (a worker dropped, its batches queued again).
                if kind == "job" and what.future is ref:
                    self._collect(what)
                elif kind == "poll" and what.poll is ref:
                    self._take_report(what)
                elif kind == "ping" and what.ping is ref:
                    self._take_ping(what)
        elif wait:
            time.sleep(POLL_S)  # every worker is restarting
        self._dispatch()
        self._show_progress()

    def _collect(self, job: _Job) -> None:
        w = job.worker
        assert w is not None
        try:
            result: JobResult = ray.get(job.future)
        except LOST as exc:
            w.jobs.remove(job)
            self._retry(job, type(exc).__name__)
            if isinstance(exc, RayActorError):
                self._lost_worker(w)
            return
        except RayTaskError as exc:
            w.jobs.remove(job)
            self._give_up(
                job,
                f"unexpected error on a Ray worker while normalizing with the GAN ({' '.join(str(exc.cause).split())})",
            )
            return
        w.jobs.remove(job)
        job.seen, job.result, job.future = result.progress, result.normalizations, None

    def _retry(self, job: _Job, why: str) -> None:
        # The lost attempt's steps come off the bar; the batch counts them again where it runs next.
        job.seen = JobProgress()
        job.future = job.worker = None
        n = len(job.faces)
        if job.attempts > self._pool.settings.max_retries:
            self._give_up(job, f"the Ray worker normalizing its batch died {job.attempts} times ({why}); "
                               "see the Ray logs under /tmp/ray/session_latest/logs")  # fmt: skip
            return
        self._msg(f"a Ray worker died while normalizing a batch of {n} photo(s); running the batch again "
                  f"(attempt {job.attempts + 1} of {self._pool.settings.max_retries + 1})")  # fmt: skip
        self._queue.insert(0, job)

    def _give_up(self, job: _Job, text: str) -> None:
        job.seen = JobProgress()
        job.future = job.worker = None
        job.result = [Normalization(image=None, error=text) for _ in job.faces]
        self._abandoned += 1

    def _lost_worker(self, w: _Worker) -> None:
        """A worker died: wait for Ray to restart it (its batches are retried elsewhere meanwhile)."""
        if not w.ready:
            return  # the same death, seen again
        w.ready, w.poll = False, None
        w.deaths += 1
        w.lost_at = w.ping_after = time.monotonic()
        if w.deaths > self._pool.settings.max_restarts:
            self._drop_worker(w, "it died more often than Ray restarts it")

    def _drop_worker(self, w: _Worker, why: str) -> None:
        self._pool.workers.remove(w)
        self._msg(f"a Ray worker is gone for good ({why}); {len(self._pool.workers)} left")
        for job in list(w.jobs):
            w.jobs.remove(job)
            self._retry(job, "worker gone")

    def _take_ping(self, w: _Worker) -> None:
        ping, w.ping = w.ping, None
        try:
            ident: WorkerIdentity = ray.get(ping)
        except LOST:
            # Unavailable while Ray restarts it, or a ping that reached the dying process.
            if time.monotonic() - w.lost_at > self._pool.settings.start_timeout_s:
                self._drop_worker(w, f"not back after {self._pool.settings.start_timeout_s:g} s")
            else:
                w.ping_after = time.monotonic() + POLL_S
            return
        if ident.error:
            self._drop_worker(w, f"after its restart it could not load the GAN: {ident.error}")
            return
        w.identity, w.ready = ident, True

    def _take_report(self, w: _Worker) -> None:
        poll, w.poll = w.poll, None
        try:
            report: WorkerReport = ray.get(poll)
        except LOST:
            return  # the batch's own result says what happened
        for text in report.messages:
            self._msg(text)
        by_id = {j.id: j for j in w.jobs}
        for job_id, seen in report.jobs.items():
            job = by_id.get(job_id)
            if job is not None and job.result is None:
                job.seen = seen

    def _show_progress(self) -> None:
        """Forward step counts the bar has not been told of (only once the run has been planned)."""
        if not self._planned:
            return
        jobs = {id(t.job): t.job for t in self._tickets.values() if t.job is not None}
        for job in jobs.values():
            steps, grow = job.seen.steps - job.shown.steps, job.seen.grow - job.shown.grow
            if steps and self._progress.step is not None:
                self._progress.step(steps)
            if grow and self._progress.grow is not None:
                self._progress.grow(grow)
            job.shown = job.seen

    def _msg(self, text: str) -> None:
        if self._progress.message is not None:
            self._progress.message(text)
        else:
            log.info(text)
