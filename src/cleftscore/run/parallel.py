"""Photos scored side by side in several processes (``cleftscore score/rescore --workers N``).

Only for normalizers that need no weights (the asymmetry method): each worker process scores
whole photos, from the file to its folder in the run, with the same functions a single-process
run uses, so the run folder is the same. The parent hands out photos, a few at a time, and
reports them in input order. Workers are started with ``spawn`` (the parent may hold torch and
threads, which a fork would copy half-way), end by themselves when the parent is killed, and ignore
Ctrl-C: on an interrupt the parent stops handing out photos and waits for those under way, so
every photo is written whole or not at all.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cleftscore.run.inputs import InputPhoto
    from cleftscore.run.photo import RunContext
    from cleftscore.run.record import PhotoResult
    from cleftscore.run.settings import ProgressHooks

__all__ = ["process_pool", "score_in_processes"]

#: Photos handed to each worker ahead of time: enough to keep it busy, few to finish on Ctrl-C.
AHEAD = 2


#: Seconds between a worker's checks that the process that started it is still alive.
PARENT_CHECK_S = 1.0


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(PARENT_CHECK_S)
        if os.getppid() != parent:
            # The parent was killed (SIGKILL, OOM): nobody will collect this worker's photo, and
            # its folder writes are atomic, so stop now rather than linger holding memory.
            os._exit(1)


def _start_worker(parent: int) -> None:
    # The parent decides what an interrupt means (finish the photos under way, then stop).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), name="cleftscore-parent-watch", daemon=True).start()


def process_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` spawned processes that ignore Ctrl-C and end when this process is killed."""
    import multiprocessing

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(os.getpid(),))  # fmt: skip


def _score_in_worker(item: InputPhoto, ctx: RunContext) -> PhotoResult:
    from cleftscore.normalize import make_normalizer
    from cleftscore.run.photo import score_one_photo

    settings = ctx.settings
    normalizer = make_normalizer(settings.method, gan=settings.gan, seed=settings.seed)
    try:
        return score_one_photo(item, ctx, normalizer)
    finally:
        normalizer.close()


def _submit(pool: ProcessPoolExecutor, item: InputPhoto, ctx: RunContext) -> Future:
    try:
        return pool.submit(_score_in_worker, item, ctx)
    except BrokenProcessPool as exc:  # a worker died: the photos not yet handed out fail too
        failed: Future = Future()
        failed.set_exception(exc)
        return failed


def _outcome(future: Future, item: InputPhoto, ctx: RunContext) -> PhotoResult:
    from cleftscore.run.photo import lost_photo

    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - a lost photo fails alone (e.g. its process was killed)
        return lost_photo(item, ctx, exc)


def score_in_processes(
    inputs: Sequence[InputPhoto], ctx: RunContext, *, workers: int, hooks: ProgressHooks
) -> list[PhotoResult]:
    """Score photos in ``workers`` processes; results, records and hooks as in one process.

    Parameters
    ----------
    inputs : sequence of InputPhoto
        The photos with their ids.
    ctx : RunContext
        The run's settings and folder (picklable: no LPIPS callable).
    workers : int
        Processes, >= 1.
    hooks : ProgressHooks
        ``photo_done`` is called in this process, one photo at a time, in input order.

    Returns
    -------
    list of PhotoResult
        One per photo, in input order.
    """
    if ctx.lpips_distance is not None:
        raise ValueError("LPIPS heat maps are made in one process; use workers=1")
    results: list[PhotoResult | None] = [None] * len(inputs)
    told = 0
    queue = iter(enumerate(inputs))
    pool = process_pool(workers)
    try:
        under_way = {_submit(pool, item, ctx): i for i, item in itertools.islice(queue, AHEAD * workers)}
        while under_way:
            done, _ = wait(under_way, return_when=FIRST_COMPLETED)
            for future in done:
                i = under_way.pop(future)
                results[i] = _outcome(future, inputs[i], ctx)
            under_way.update({_submit(pool, item, ctx): i for i, item in itertools.islice(queue, len(done))})
            while told < len(results) and results[told] is not None:
                hooks.done(results[told])  # type: ignore[arg-type]
                told += 1
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # photos under way are finished whole
    return results  # type: ignore[return-value]
