"""Scoring jobs: a queue with one worker thread that owns the device, state kept on disk.

A job is a set of uploaded photos to score into one visit with one method and region. The
worker scores them one photo at a time with :func:`cleftscore.study.ingest.score_into_visit`,
so every finished photo is in the study at once and a cancel takes effect at the next photo
(or the next GAN step). GPU work never runs concurrently because this thread is the only one
that runs the pipeline.

Job state lives in ``<study files>/web/server.sqlite`` (tables ``jobs``, ``job_photos`` and
``meta``, the latter holding the access token's hash), not in the study schema: it is the
server's working state, not part of the record. When a server starts, jobs that were queued or
running are marked ``interrupted``; their finished photos stay scored, and a re-run does the rest.

Uploads (the photos as the browser sent them, EXIF and GPS included) live in
``<study files>/web/uploads/job-*/`` only while their job may still need them: they are deleted
when the job ends (done, failed or cancelled), at start for every job that cannot be re-run,
and by ``cleftscore study check --clean``. The study keeps its own EXIF-free copies.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import queue
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cleftscore.errors import CleftscoreError

__all__ = [
    "ServerState",
    "ServerLock",
    "ServerBusyError",
    "JobQueue",
    "JobView",
    "JobPhotoView",
    "JOB_STATES",
    "ACTIVE_STATES",
]

log = logging.getLogger(__name__)

JOB_STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
ACTIVE_STATES = ("queued", "running")
#: Photo states that need no more work.
FINISHED_PHOTO = ("scored", "already", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, visit_id INTEGER NOT NULL, method TEXT NOT NULL, roi TEXT NOT NULL,
    status TEXT NOT NULL, message TEXT NOT NULL DEFAULT '', folder TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS job_photos (
    id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL REFERENCES jobs(id), position INTEGER NOT NULL,
    name TEXT NOT NULL, status TEXT NOT NULL, score REAL, message TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS ix_jobs_visit ON jobs (visit_id);
CREATE INDEX IF NOT EXISTS ix_job_photos_job ON job_photos (job_id, position);
"""


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class JobPhotoView:
    name: str
    status: str
    score: float | None
    message: str


@dataclass(frozen=True)
class JobView:
    """A job as pages and the JSON API show it."""

    id: int
    visit_id: int
    method: str
    roi: str
    status: str
    message: str
    created_at: str
    photos: tuple[JobPhotoView, ...]

    @property
    def finished(self) -> bool:
        return self.status not in ACTIVE_STATES

    @property
    def rerunnable(self) -> bool:
        # Only a job the server stopped keeps its uploads; any other end deletes them.
        return self.status == "interrupted" and any(p.status not in FINISHED_PHOTO for p in self.photos)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "visit_id": self.visit_id, "method": self.method, "roi": self.roi, "status": self.status,
                "message": self.message, "created_at": self.created_at, "finished": self.finished, "rerunnable": self.rerunnable,
                "photos": [p.__dict__ for p in self.photos]}  # fmt: skip


class ServerBusyError(CleftscoreError):
    """Another ``cleftscore serve`` holds the study's server lock."""


class ServerLock:
    """One server per study: an advisory lock on ``<db>.files/web/server.lock``, held while serving.

    Taken before anything of the study is opened or written, so a second server stops at once
    and leaves the first one's jobs and uploads alone. The operating system drops the lock
    when the process ends, even by SIGKILL.

    Parameters
    ----------
    db : Path
        The study database file.
    """

    def __init__(self, db: Path) -> None:
        from cleftscore.io import ProcessLock

        self.db = Path(db)
        self.path = self.db.with_name(self.db.name + ".files") / "web" / "server.lock"
        self._lock = ProcessLock(self.path)

    def __enter__(self) -> ServerLock:
        try:
            holder = self._lock.acquire()
        except OSError as exc:
            raise ServerBusyError(f"{self.path}: cannot take the study's server lock ({exc.strerror or exc})") from None
        if holder is not None:
            raise ServerBusyError(f"{self.db}: another cleftscore serve (process {holder}) is serving this study; "
                                  "use that one, or stop it first")  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class ServerState:
    """The server's own small SQLite file: jobs, their photos, and the access token's hash."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._db() as con:
            con.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            con = sqlite3.connect(self.path, timeout=10)
            try:
                con.execute("PRAGMA journal_mode=WAL")
                with con:
                    yield con
            finally:
                con.close()

    # -- meta
    def get_meta(self, key: str) -> str | None:
        with self._db() as con:
            row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._db() as con:
            con.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- jobs
    def add_job(self, visit_id: int, method: str, roi: str, folder: Path, names: list[str]) -> int:
        now = _now()
        with self._db() as con:
            cur = con.execute("INSERT INTO jobs (visit_id, method, roi, status, folder, created_at, updated_at) VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                              (visit_id, method, roi, str(folder), now, now))  # fmt: skip
            job_id = int(cur.lastrowid or 0)
            con.executemany("INSERT INTO job_photos (job_id, position, name, status) VALUES (?, ?, ?, 'queued')",
                            [(job_id, i, n) for i, n in enumerate(names)])  # fmt: skip
        return job_id

    def job(self, job_id: int) -> JobView | None:
        with self._db() as con:
            row = con.execute(
                "SELECT id, visit_id, method, roi, status, message, created_at FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None:
                return None
            photos = con.execute(
                "SELECT name, status, score, message FROM job_photos WHERE job_id = ? ORDER BY position", (job_id,)
            ).fetchall()
        return JobView(*row, photos=tuple(JobPhotoView(*p) for p in photos))

    def jobs_of_visit(self, visit_id: int) -> list[JobView]:
        with self._db() as con:
            ids = [r[0] for r in con.execute("SELECT id FROM jobs WHERE visit_id = ? ORDER BY id DESC", (visit_id,))]
        return [j for j in (self.job(i) for i in ids) if j is not None]

    def folder(self, job_id: int) -> Path:
        with self._db() as con:
            return Path(con.execute("SELECT folder FROM jobs WHERE id = ?", (job_id,)).fetchone()[0])

    def set_job(self, job_id: int, status: str, message: str = "") -> None:
        with self._db() as con:
            con.execute(
                "UPDATE jobs SET status = ?, message = ?, updated_at = ? WHERE id = ?",
                (status, message, _now(), job_id),
            )

    def set_photo(
        self, job_id: int, position: int, status: str, *, score: float | None = None, message: str = ""
    ) -> None:
        folder = self.folder(job_id)
        message = message.replace(f"{folder}{os.sep}", "")  # the staging folder means nothing to the user
        with self._db() as con:
            con.execute("UPDATE job_photos SET status = ?, score = ?, message = ? WHERE job_id = ? AND position = ?",
                        (status, score, message, job_id, position))  # fmt: skip

    def mark_interrupted(self) -> list[int]:
        """Jobs a previous server left queued or running become ``interrupted``; returns their ids."""
        with self._db() as con:
            ids = [r[0] for r in con.execute("SELECT id FROM jobs WHERE status IN ('queued', 'running')")]
            for i in ids:
                con.execute("UPDATE jobs SET status = 'interrupted', message = 'the server stopped before this job finished; "
                            "re-run it to score the remaining photos', updated_at = ? WHERE id = ?", (_now(), i))  # fmt: skip
                con.execute(
                    "UPDATE job_photos SET status = 'interrupted' WHERE job_id = ? AND status IN ('queued', 'running')",
                    (i,),
                )
        return ids

    def clear_uploads(self) -> list[Path]:
        """Delete the uploads no job can use any more; returns the folders removed.

        Uploads are kept only while their job is queued, running, or interrupted with photos
        left to score (a re-run needs them). Anything else under ``uploads/`` (a finished job's
        folder that a crash left, a folder whose job was never recorded) goes. Call it only
        while no upload is being staged (at start, under the server lock).
        """
        root = self.path.parent / "uploads"
        if not root.is_dir():
            return []
        with self._db() as con:
            rows = con.execute("SELECT id, status, folder FROM jobs").fetchall()
        keep: set[Path] = set()
        for job_id, status, folder in rows:
            view = self.job(job_id)
            if status in ACTIVE_STATES or (view is not None and view.rerunnable):
                keep.add(Path(folder).resolve())
        removed = []
        for item in sorted(root.iterdir()):
            if item.resolve() not in keep:
                if item.is_dir() and not item.is_symlink():
                    shutil.rmtree(item, ignore_errors=True)
                else:
                    item.unlink(missing_ok=True)
                removed.append(item)
        return removed

    def requeue(self, job_id: int) -> None:
        with self._db() as con:
            con.execute(
                "UPDATE job_photos SET status = 'queued', message = '' WHERE job_id = ? AND status NOT IN ('scored', 'already', 'failed')",
                (job_id,),
            )
            con.execute(
                "UPDATE jobs SET status = 'queued', message = '', updated_at = ? WHERE id = ?", (_now(), job_id)
            )


class _Cancelled(Exception):
    pass


class JobQueue:
    """One worker thread scoring queued jobs in order; the only place the pipeline runs.

    Parameters
    ----------
    state : ServerState
    study : Study
        The open study the worker records into.
    make_settings : callable
        ``f(method, roi) -> PipelineSettings`` for a job.
    cache_dir : Path or None
        GAN normalization cache.
    """

    def __init__(self, state: ServerState, study: Any, make_settings: Any, *, cache_dir: Path | None = None) -> None:
        self.state = state
        self.study = study
        self.make_settings = make_settings
        self.cache_dir = cache_dir
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._cancel: set[int] = set()
        self._changed = threading.Condition()
        self._version = 0
        self._thread: threading.Thread | None = None
        self._steps: dict[int, list[int]] = {}  # job id -> [GAN steps done, planned] of the running photo
        self._stopping = threading.Event()
        self.interrupted = state.mark_interrupted()
        self.uploads_removed = state.clear_uploads()

    # -- change notification (for Server-Sent Events)
    def _bump(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def wait_change(self, seen: int, timeout: float) -> int:
        """Block until the version moves past ``seen`` or ``timeout`` passes; return the version."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != seen, timeout=timeout)
            return self._version

    @property
    def version(self) -> int:
        return self._version

    def steps(self, job_id: int) -> dict[str, int] | None:
        """GAN steps done and planned for the photo the job is scoring; None when there are none."""
        found = self._steps.get(job_id)
        return None if found is None else {"done": found[0], "total": found[1]}

    # -- control
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cleftscore-worker", daemon=True)
            self._thread.start()

    def request_stop(self) -> None:
        """Let the running job stop at its next photo (or GAN step); it is left interrupted."""
        self._stopping.set()

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread is not None:
            self.request_stop()
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def submit(self, job_id: int) -> None:
        self._queue.put(job_id)
        self._bump()

    def cancel(self, job_id: int) -> bool:
        """Ask a queued or running job to stop (at the next photo or GAN step)."""
        job = self.state.job(job_id)
        if job is None or job.finished:
            return False
        self._cancel.add(job_id)
        if job.status == "queued":
            self._finish_cancelled(job_id)
        self._bump()
        return True

    def rerun(self, job_id: int) -> bool:
        job = self.state.job(job_id)
        if job is None or not job.rerunnable:
            return False
        self._cancel.discard(job_id)
        self.state.requeue(job_id)
        self.submit(job_id)
        return True

    # -- the worker
    def _finish_cancelled(self, job_id: int) -> None:
        job = self.state.job(job_id)
        if job is None:
            return
        for i, p in enumerate(job.photos):
            if p.status in ("queued", "running"):
                self.state.set_photo(job_id, i, "cancelled", message="cancelled before it was scored")
        self.state.set_job(job_id, "cancelled", "cancelled; the photos scored before the cancel are kept")
        self._drop_uploads(job_id)

    def _drop_uploads(self, job_id: int) -> None:
        """A job that ended: its uploads (originals with their EXIF, GPS included) are deleted."""
        shutil.rmtree(self.state.folder(job_id), ignore_errors=True)

    def _run(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return  # jobs still queued are marked interrupted by the next server
            try:
                self._run_job(job_id)
            except Exception as exc:  # a bug must not kill the only worker
                log.exception("job %s failed", job_id)
                self.state.set_job(job_id, "failed", f"internal error: {exc}")
                self._drop_uploads(job_id)
            self._bump()

    def _run_job(self, job_id: int) -> None:
        from cleftscore.errors import CleftscoreError, WeightsMissingError
        from cleftscore.run.settings import ProgressHooks
        from cleftscore.study.ingest import score_into_visit

        job = self.state.job(job_id)
        if job is None or job.status != "queued":
            return  # cancelled while queued, or queued twice
        if job_id in self._cancel:
            self._finish_cancelled(job_id)
            return
        self.state.set_job(job_id, "running")
        self._bump()
        folder = self.state.folder(job_id)
        settings = self.make_settings(job.method, job.roi)

        def check_cancel() -> None:
            if job_id in self._cancel or self._stopping.is_set():
                raise _Cancelled

        def gan_start(_n_photos: int, total: int) -> None:
            self._steps[job_id] = [0, total]
            self._bump()

        def gan_grow(extra: int) -> None:
            self._steps.setdefault(job_id, [0, 0])[1] += extra

        def gan_step(done: int) -> None:
            counts = self._steps.setdefault(job_id, [0, 0])
            counts[0] += done
            self._bump()
            check_cancel()

        hooks = ProgressHooks(gan_start=gan_start, gan_step=gan_step, gan_grow=gan_grow,
                              message=lambda m: log.info("job %s: %s", job_id, m))  # fmt: skip
        for pos, photo in enumerate(job.photos):
            if photo.status != "queued":
                continue
            if job_id in self._cancel or self._stopping.is_set():
                break
            self.state.set_photo(job_id, pos, "running")
            self._steps.pop(job_id, None)
            self._bump()
            try:
                report = score_into_visit(self.study, job.visit_id, [folder / photo.name], settings, hooks=hooks,
                                          cache_dir=self.cache_dir)  # fmt: skip
            except _Cancelled:
                break
            except WeightsMissingError as exc:
                self.state.set_photo(job_id, pos, "failed", message=str(exc))
                self.state.set_job(job_id, "failed", f"{exc}; choose the asymmetry method, which needs no weights")
                self._drop_uploads(job_id)
                return
            except CleftscoreError as exc:
                self.state.set_photo(job_id, pos, "failed", message=str(exc))
                self._bump()
                continue
            line = report.lines[0] if report.lines else None
            if line is None:
                self.state.set_photo(job_id, pos, "failed", message="the pipeline returned nothing for this photo")
            else:
                status = {"added": "scored", "already": "already"}.get(line.status, "failed")
                self.state.set_photo(job_id, pos, status, score=line.score, message=line.message)
            self._bump()
        self._steps.pop(job_id, None)
        left = self.state.job(job_id)
        unfinished = left is not None and any(p.status in ("queued", "running") for p in left.photos)
        if self._stopping.is_set() and unfinished and job_id not in self._cancel:
            self.state.mark_interrupted()
            return
        if job_id in self._cancel:
            self._cancel.discard(job_id)
            self._finish_cancelled(job_id)
            return
        done = self.state.job(job_id)
        failed = sum(p.status == "failed" for p in done.photos) if done else 0
        self.state.set_job(job_id, "done", f"{failed} photo(s) failed" if failed else "")
        self._drop_uploads(job_id)  # every photo is in the study's own store now
