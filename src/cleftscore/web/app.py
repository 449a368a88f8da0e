"""The FastAPI application: server-rendered pages, JSON endpoints and the scoring queue.

:func:`create_app` builds everything from a :class:`~cleftscore.web.settings.WebSettings`;
nothing is global, so tests build as many apps as they like. Pages are Jinja2 templates with a
little plain JavaScript, all shipped in the package; the Content-Security-Policy lets the
browser load nothing from anywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from cleftscore.study.db import open_study
from cleftscore.web.api import install_api
from cleftscore.web.context import AppContext, MethodChoice, WebConfigError, gan_availability
from cleftscore.web.guards import BodyLimit, install_errors, install_guards, install_logout
from cleftscore.web.jobs import JobQueue, ServerState
from cleftscore.web.landmarks import install_landmarks
from cleftscore.web.pages import install_pages
from cleftscore.web.quicklook import install_quicklook
from cleftscore.web.security import Guard
from cleftscore.web.settings import WebSettings
from cleftscore.web.survey import install_survey

__all__ = ["create_app", "WebConfigError", "gan_availability", "MethodChoice"]

HERE = Path(__file__).resolve().parent


def _make_settings(web: WebSettings) -> Any:
    from cleftscore.run.settings import PipelineSettings
    from cleftscore.score.paper import ScoreSettings

    def make(method: str, roi: str) -> PipelineSettings:
        score = ScoreSettings(roi=roi)
        kind = "face-referenced" if score.face_referenced(method) else "paper"
        return PipelineSettings(method=method, size=web.size, detector=web.detector, score=score, gan=web.gan_settings,
                                reference=web.reference_path(method, kind))  # fmt: skip

    return make


def create_app(settings: WebSettings, *, gan: MethodChoice | None = None) -> FastAPI:
    """Build the web app on a study database.

    Parameters
    ----------
    settings : WebSettings
    gan : MethodChoice, optional
        Whether the GAN method is offered (default: :func:`gan_availability`).

    Returns
    -------
    FastAPI
        Its lifespan starts the worker thread and stops it (and closes the study) at shutdown.

    Raises
    ------
    WebConfigError
        A host that is not loopback without an access token.
    StudyError
        The database cannot be opened.
    """
    if not settings.loopback and settings.token_hash is None:
        raise WebConfigError(f"serving on {settings.host} (not this machine only) needs an access token; "
                             "`cleftscore serve` makes one on first start")  # fmt: skip
    study = open_study(settings.db, create=True)
    state = ServerState(study.files / "web" / "server.sqlite")
    jobs = JobQueue(state, study, _make_settings(settings), cache_dir=settings.cache_dir)
    import jinja2

    templates = Jinja2Templates(
        env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    )
    guard = Guard(settings.allowed_hosts, settings.token_hash, session_seconds=settings.session_hours * 3600)
    ctx = AppContext(settings, study, state, guard, jobs, templates,
               gan if gan is not None else gan_availability(settings.gan_settings))  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.start_worker:
            jobs.start()
        try:
            yield
        finally:
            await asyncio.to_thread(jobs.stop)
            study.close()

    app = FastAPI(title="cleftscore", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Local web app on a cleftscore study database. State-changing requests need the "
                              "X-CSRF-Token header (in every page's <meta name=csrf-token>).")  # fmt: skip
    app.state.ctx = ctx
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    install_guards(app, ctx)
    app.add_middleware(BodyLimit, limit=ctx.settings.max_files * ctx.settings.max_file_bytes + (1 << 20))
    install_errors(app)
    install_logout(app, ctx)
    install_pages(app, ctx)
    install_api(app, ctx)
    install_survey(app, ctx)
    install_landmarks(app, ctx)
    install_quicklook(app, ctx)
    return app


def _version() -> str:
    from cleftscore import __version__

    return __version__
