"""The FastAPI application: server-rendered pages, JSON endpoints and the scoring queue.

:func:`create_app` builds everything from a :class:`~cleftscore.web.settings.WebSettings`;
nothing is global, so tests build as many apps as they like. Pages are Jinja2 templates with a
little plain JavaScript, all shipped in the package; the Content-Security-Policy lets the
browser load nothing from anywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, HTTPException, Path as PathParam, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from cleftscore.errors import CleftscoreError
from cleftscore.study.db import NotFoundError, Study, StudyError, open_study
from cleftscore.web import queries
from cleftscore.web.jobs import JobQueue, ServerState
from cleftscore.web.security import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, Guard
from cleftscore.web.settings import WebSettings
from cleftscore.web.uploads import CheckedPhoto, UploadError, check_photo

__all__ = ["create_app", "WebConfigError", "gan_availability", "MethodChoice"]

HERE = Path(__file__).resolve().parent
_ID = Annotated[int, PathParam(ge=1, le=2**62)]
_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"
_STORED = re.compile(r"(photos|pictures)/[0-9a-f]{2}/[0-9a-f]{64}\.(png|jpg)")
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")  # fmt: skip
ROIS = ("mouth", "face", "full")
METHODS = ("asymmetry", "gan")


class WebConfigError(CleftscoreError):
    """A server that must not start as configured (e.g. a public host without an access token)."""


@dataclass(frozen=True)
class MethodChoice:
    name: str
    available: bool
    reason: str


def gan_availability(gan: Any = None) -> MethodChoice:
    """Whether the GAN method can run here: its generator (and VGG16 for the LPIPS loss) must be present.

    Parameters
    ----------
    gan : GanSettings, optional
        The settings GAN jobs will use (default: the paper's).
    """
    from cleftscore.weights import resolve_generator, resolve_vgg16

    try:
        resolve_generator(getattr(gan, "generator", None))
        if getattr(gan, "loss", "lpips") == "lpips":
            resolve_vgg16(getattr(gan, "vgg16", None))
    except CleftscoreError as exc:
        return MethodChoice("gan", False, f"the GAN method needs model weights that are not on this machine ({exc})")
    return MethodChoice("gan", True, "")


# ---------------------------------------------------------------------------------- JSON models

class PatientIn(BaseModel):
    code: str = Field(pattern=_CODE_PATTERN, description="Pseudonymous code, never a name.")
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    cleft_type: Literal["lip", "lip-alveolus", "lip-palate", "other"] | None = None
    cleft_side: Literal["left", "right", "bilateral", "median"] | None = None


class PatientOut(BaseModel):
    code: str
    birth_year: int | None
    cleft_type: str | None
    cleft_side: str | None
    visits: int
    photos: int


class VisitIn(BaseModel):
    date: dt.date
    phase: Literal["pre-op", "post-op", "follow-up"]
    procedure: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=2000)


class VisitOut(BaseModel):
    id: int
    patient: str
    date: dt.date
    phase: str
    procedure: str | None
    photos: int
    mean_score: float | None


class ScoreOut(BaseModel):
    id: int
    method: str
    roi: str
    score: float
    settings_key: str
    pictures: dict[str, str]


class PhotoOut(BaseModel):
    id: int
    name: str
    width: int
    height: int
    scores: list[ScoreOut]


class VisitDetailOut(VisitOut):
    photo_list: list[PhotoOut]


class JobPhotoOut(BaseModel):
    name: str
    status: str
    score: float | None
    message: str


class JobOut(BaseModel):
    id: int
    visit_id: int
    method: str
    roi: str
    status: str
    message: str
    created_at: str
    finished: bool
    rerunnable: bool
    photos: list[JobPhotoOut]


class MethodOut(BaseModel):
    name: str
    available: bool
    reason: str


class Problem(BaseModel):
    detail: str | list[str]


_ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": Problem}, 404: {"model": Problem}, 409: {"model": Problem}}


# ---------------------------------------------------------------------------------- the app

@dataclass
class _Ctx:
    """Everything one app instance holds (attached to ``app.state.ctx``)."""

    settings: WebSettings
    study: Study
    state: ServerState
    guard: Guard
    jobs: JobQueue
    templates: Jinja2Templates
    gan: MethodChoice


def _make_settings(web: WebSettings) -> Any:
    from cleftscore.pipeline import PipelineSettings
    from cleftscore.score import ScoreSettings

    def make(method: str, roi: str) -> PipelineSettings:
        return PipelineSettings(method=method, size=web.size, detector=web.detector, score=ScoreSettings(roi=roi), gan=web.gan_settings)

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

    templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True))
    ctx = _Ctx(settings, study, state, Guard(settings.allowed_hosts, settings.token_hash), jobs, templates,
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
    _install_guards(app, ctx)
    app.add_middleware(_BodyLimit, limit=ctx.settings.max_files * ctx.settings.max_file_bytes + (1 << 20))
    _install_errors(app)
    _pages(app, ctx)
    _api(app, ctx)
    return app


def _version() -> str:
    from cleftscore import __version__

    return __version__


def _install_guards(app: FastAPI, ctx: _Ctx) -> None:
    guard = ctx.guard
    limit = ctx.settings.max_files * ctx.settings.max_file_bytes + (1 << 20)

    @app.middleware("http")
    async def guards(request: Request, call_next: Any) -> Response:
        if not guard.host_ok(request.headers.get("host")):
            return PlainTextResponse("this server answers only to its own host names (the Host header was "
                                     f"{request.headers.get('host')!r}); open it as http://127.0.0.1:PORT/", status_code=421)  # fmt: skip
        origin = request.headers.get("origin")
        if origin and origin != "null" and not guard.host_ok(origin.split("://", 1)[-1]):
            return PlainTextResponse("requests from other sites are refused", status_code=403)
        path = request.url.path
        open_path = path.startswith("/static/") or path == "/login"
        bearer = request.headers.get("authorization", "")
        token = bearer[7:] if bearer.lower().startswith("bearer ") else None
        if not open_path and not guard.authorized(cookie=request.cookies.get(SESSION_COOKIE), bearer=token):
            if path.startswith("/api/") or request.method not in SAFE_METHODS:
                return JSONResponse({"detail": "an access token is needed: log in at /login or send Authorization: Bearer TOKEN"}, status_code=401)
            return RedirectResponse("/login", status_code=303)
        if request.method not in SAFE_METHODS and path != "/login" and not guard.csrf_ok(request.headers.get(CSRF_HEADER)):
            return JSONResponse({"detail": "missing or wrong CSRF token: send the X-CSRF-Token header from the page's "
                                           "<meta name=csrf-token>; reload the page if the server restarted"}, status_code=403)  # fmt: skip
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return JSONResponse({"detail": f"the upload is {int(length) / 1e6:.1f} MB, over the limit of {ctx.settings.max_files} "
                                           f"photos of {ctx.settings.max_file_bytes / 1e6:.1f} MB each; nothing was stored"},
                                status_code=413)  # fmt: skip
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Cache-Control", "no-store")
        return response


class _TooLarge(Exception):
    pass


class _BodyLimit:
    """Stops reading a request body past ``limit`` bytes, also when no Content-Length announced it.

    The guard middleware refuses an announced oversized body before reading it; a chunked one
    is counted here as it arrives. Past the limit, reading fails (FastAPI then answers 400) and
    that answer is replaced by a 413 that says why.
    """

    def __init__(self, app: Any, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen = 0
        over = False

        async def counted() -> Any:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True
                    raise _TooLarge
            return message

        async def replaced(message: Any) -> None:
            if not over:
                await send(message)
            elif message["type"] == "http.response.start":
                body = json.dumps({"detail": f"the upload is over the limit of {self.limit / 1e6:.1f} MB; nothing was stored"}).encode()
                await send({"type": "http.response.start", "status": 413,
                            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})  # fmt: skip
                await send({"type": "http.response.body", "body": body})

        await self.app(scope, counted, replaced)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(NotFoundError)
    async def not_found(_request: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(StudyError)
    async def study_error(_request: Request, exc: StudyError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)


def _page(ctx: _Ctx, request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    values.update(csrf=ctx.guard.csrf_token, definition=queries.SCORE_DEFINITION)
    return ctx.templates.TemplateResponse(request, name, values, status_code=status_code)


def _visit_out(page: queries.VisitPage) -> dict[str, Any]:
    return {"id": page.id, "patient": page.code, "date": page.date, "phase": page.phase, "procedure": page.procedure,
            "photos": len(page.photos), "mean_score": page.mean_score}  # fmt: skip


def _patient_outcomes(study: Study, code: str, method: str | None) -> tuple[list[Any], str]:
    from cleftscore.study.outcomes import compute_outcomes

    try:
        out = compute_outcomes(study, method=method, n_boot=2000, seed=0)
    except StudyError as exc:
        return [], str(exc)
    return [c for c in out.changes if c.code == code], f"method {out.method}, settings {out.settings_key[:12]}; " + " ".join(out.notes)


def _pages(app: FastAPI, ctx: _Ctx) -> None:
    study = ctx.study

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_page(request: Request) -> HTMLResponse:
        return _page(ctx, request, "login.html", error="")

    @app.post("/login", include_in_schema=False)
    async def login(request: Request, token: Annotated[str, Form()] = "") -> Response:
        if not ctx.guard.token_ok(token) or ctx.guard.token_hash is None:
            return _page(ctx, request, "login.html", status_code=401, error="wrong access token" if ctx.guard.token_hash else "no token is needed here")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, ctx.guard.open_session(), httponly=True, samesite="strict")
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def patients_page(request: Request, q: Annotated[str, Query(max_length=64)] = "") -> HTMLResponse:
        rows = await asyncio.to_thread(queries.patients, study, q)
        return _page(ctx, request, "patients.html", patients=rows, q=q)

    @app.get("/patients/{code}", response_class=HTMLResponse, include_in_schema=False)
    async def patient_html(request: Request, code: str, method: Annotated[str | None, Query(max_length=32)] = None) -> HTMLResponse:
        page = await asyncio.to_thread(queries.patient_page, study, code)
        changes, outcome_note = await asyncio.to_thread(_patient_outcomes, study, code, method)
        methods = sorted({m for v in page.visits for m in v.methods})
        return _page(ctx, request, "patient.html", p=page.patient, visits=page.visits, changes=changes, outcome_note=outcome_note,
                     today=dt.date.today().isoformat(), methods=methods, method=method or "")  # fmt: skip

    @app.get("/patients/{code}/timeline.png", include_in_schema=False)
    async def timeline(code: str, method: Annotated[str | None, Query(max_length=32)] = None) -> Response:
        from cleftscore.study.outcomes import compute_outcomes
        from cleftscore.study.plots import timeline_png

        def draw() -> bytes | None:
            try:
                out = compute_outcomes(study, method=method, n_boot=100)
            except StudyError:
                return None
            series = [s for s in out.patients if s.code == code]
            return timeline_png(series[0], study.files) if series and series[0].visits else None

        png = await asyncio.to_thread(draw)
        if png is None:
            raise HTTPException(404, f"patient {code!r} has no scored visits yet")
        return Response(png, media_type="image/png")

    @app.get("/visits/{visit_id}", response_class=HTMLResponse, include_in_schema=False)
    async def visit_html(request: Request, visit_id: _ID) -> HTMLResponse:
        page = await asyncio.to_thread(queries.visit_page, study, visit_id)
        job_list = await asyncio.to_thread(ctx.state.jobs_of_visit, visit_id)
        return _page(ctx, request, "visit.html", v=page, jobs=job_list, gan=ctx.gan, rois=ROIS, limits=ctx.settings)

    @app.get("/compare", response_class=HTMLResponse, include_in_schema=False)
    async def compare(request: Request, a: Annotated[int, Query(ge=1, le=2**62)], b: Annotated[int, Query(ge=1, le=2**62)]) -> HTMLResponse:
        left = await asyncio.to_thread(queries.visit_page, study, a)
        right = await asyncio.to_thread(queries.visit_page, study, b)
        return _page(ctx, request, "compare.html", left=left, right=right)

    @app.get("/visits/{visit_id}/report", response_class=HTMLResponse, include_in_schema=False)
    async def report(request: Request, visit_id: _ID) -> HTMLResponse:
        page = await asyncio.to_thread(queries.visit_page, study, visit_id)
        return _page(ctx, request, "report.html", v=page)

    @app.get("/visits/{visit_id}/scores.csv", include_in_schema=False)
    async def csv_download(visit_id: _ID) -> Response:
        from cleftscore.report import write_csv

        page = await asyncio.to_thread(queries.visit_page, study, visit_id)
        with tempfile.TemporaryDirectory(dir=study.files) as tmp:
            path = write_csv(Path(tmp) / "scores.csv", queries.visit_csv_rows(page), columns=queries.CSV_COLUMNS)
            data = path.read_bytes()
        name = f"{page.code}_visit{page.id}_{page.date.isoformat()}_scores.csv"
        return Response(data, media_type="text/csv; charset=utf-8", headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/files/{rel:path}", include_in_schema=False)
    async def stored_file(rel: str) -> Response:
        if not _STORED.fullmatch(rel) or not (study.files / rel).is_file():
            raise HTTPException(404, "no such stored picture")
        return FileResponse(study.files / rel, headers={"Cache-Control": "private, max-age=86400, immutable"})


def _job_or_404(ctx: _Ctx, job_id: int) -> Any:
    job = ctx.state.job(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job


def _api(app: FastAPI, ctx: _Ctx) -> None:
    from cleftscore.study import records

    study = ctx.study

    @app.get("/api/methods", response_model=list[MethodOut])
    async def methods() -> list[dict[str, Any]]:
        """The normalization methods and whether each can run on this machine."""
        return [{"name": "asymmetry", "available": True, "reason": ""}, ctx.gan.__dict__]

    @app.get("/api/patients", response_model=list[PatientOut])
    async def list_patients(q: Annotated[str, Query(max_length=64, description="Part of the code.")] = "") -> list[Any]:
        """Patients whose code contains ``q``."""
        return [r.__dict__ for r in await asyncio.to_thread(queries.patients, study, q)]

    @app.post("/api/patients", response_model=PatientOut, status_code=201, responses=_ERRORS)
    async def create_patient(body: PatientIn) -> dict[str, Any]:
        """Add a patient by pseudonymous code."""
        await asyncio.to_thread(records.add_patient, study, body.code, birth_year=body.birth_year, cleft_type=body.cleft_type,
                                cleft_side=body.cleft_side)  # fmt: skip
        return (await asyncio.to_thread(queries.patient_page, study, body.code)).patient.__dict__

    @app.get("/api/patients/{code}", response_model=PatientOut, responses=_ERRORS)
    async def get_patient(code: str) -> dict[str, Any]:
        return (await asyncio.to_thread(queries.patient_page, study, code)).patient.__dict__

    @app.get("/api/patients/{code}/visits", response_model=list[VisitOut], responses=_ERRORS)
    async def patient_visits(code: str) -> list[dict[str, Any]]:
        page = await asyncio.to_thread(queries.patient_page, study, code)
        return [{"id": v.id, "patient": code, "date": v.date, "phase": v.phase, "procedure": v.procedure, "photos": v.photos,
                 "mean_score": v.mean_score} for v in page.visits]  # fmt: skip

    @app.post("/api/patients/{code}/visits", response_model=VisitOut, status_code=201, responses=_ERRORS)
    async def create_visit(code: str, body: VisitIn) -> dict[str, Any]:
        """Add a visit of a patient."""
        visit = await asyncio.to_thread(records.add_visit, study, code, date=body.date, phase=body.phase, procedure=body.procedure,
                                        note=body.note)  # fmt: skip
        return _visit_out(await asyncio.to_thread(queries.visit_page, study, visit.id))

    @app.get("/api/visits/{visit_id}", response_model=VisitDetailOut, responses=_ERRORS)
    async def get_visit(visit_id: _ID) -> dict[str, Any]:
        page = await asyncio.to_thread(queries.visit_page, study, visit_id)
        out = _visit_out(page)
        out["photo_list"] = [{"id": p.id, "name": p.name, "width": p.width, "height": p.height,
                              "scores": [{"id": s.id, "method": s.method, "roi": s.roi, "score": s.score, "settings_key": s.settings_key,
                                          "pictures": s.pictures} for s in p.scores]} for p in page.photos]  # fmt: skip
        return out

    @app.get("/api/visits/{visit_id}/jobs", response_model=list[JobOut], responses=_ERRORS)
    async def visit_jobs(visit_id: _ID) -> list[dict[str, Any]]:
        return [j.to_dict() for j in await asyncio.to_thread(ctx.state.jobs_of_visit, visit_id)]

    @app.post("/api/visits/{visit_id}/jobs", response_model=JobOut, status_code=202,
              responses={**_ERRORS, 413: {"model": Problem}, 415: {"model": Problem}})  # fmt: skip
    async def upload(visit_id: _ID, files: Annotated[list[UploadFile], File(description="Photos (content is checked, not names).")],
                     method: Annotated[Literal["asymmetry", "gan"], Form()] = "asymmetry",
                     roi: Annotated[Literal["mouth", "face", "full"], Form()] = "mouth") -> dict[str, Any]:  # fmt: skip
        """Upload photos of a visit and queue a job that scores them (progress: ``/api/jobs/{id}/events``)."""
        limits = ctx.settings
        await asyncio.to_thread(queries.visit_page, study, visit_id)  # 404 for an unknown visit, before reading photos
        if method == "gan" and not ctx.gan.available:
            raise HTTPException(409, ctx.gan.reason + "; choose the asymmetry method")
        if not files:
            raise HTTPException(400, "no photo in the upload")
        if len(files) > limits.max_files:
            raise HTTPException(413, f"{len(files)} photos in one upload; the limit is {limits.max_files}. Nothing was stored.")
        checked: list[CheckedPhoto] = []
        problems: list[str] = []
        for f in files:
            data = await f.read(limits.max_file_bytes + 1)
            try:
                checked.append(await asyncio.to_thread(check_photo, f.filename or "", data, max_bytes=limits.max_file_bytes,
                                                       max_pixels=limits.max_pixels))  # fmt: skip
            except UploadError as exc:
                problems.append(str(exc))
        if problems:
            too_big = all("over the limit" in p for p in problems)
            raise HTTPException(413 if too_big else 415, problems + ["Nothing was stored; fix these and upload again."])
        job_id = await asyncio.to_thread(_stage, ctx, visit_id, method, roi, checked)
        ctx.jobs.submit(job_id)
        return _job_or_404(ctx, job_id).to_dict()

    @app.get("/api/jobs/{job_id}", response_model=JobOut, responses=_ERRORS)
    async def get_job(job_id: _ID) -> dict[str, Any]:
        return _job_or_404(ctx, job_id).to_dict()

    @app.post("/api/jobs/{job_id}/cancel", response_model=JobOut, responses=_ERRORS)
    async def cancel(job_id: _ID) -> dict[str, Any]:
        """Stop a queued or running job; photos scored before the cancel are kept."""
        job = _job_or_404(ctx, job_id)
        if not ctx.jobs.cancel(job_id):
            raise HTTPException(409, f"job {job_id} is {job.status}, nothing to cancel")
        return _job_or_404(ctx, job_id).to_dict()

    @app.post("/api/jobs/{job_id}/rerun", response_model=JobOut, responses=_ERRORS)
    async def rerun(job_id: _ID) -> dict[str, Any]:
        """Queue an interrupted or cancelled job again: only its unfinished photos are scored."""
        job = _job_or_404(ctx, job_id)
        if not ctx.jobs.rerun(job_id):
            raise HTTPException(409, f"job {job_id} is {job.status} with nothing left to score")
        return _job_or_404(ctx, job_id).to_dict()

    @app.get("/api/jobs/{job_id}/events", include_in_schema=False)
    async def events(request: Request, job_id: _ID) -> StreamingResponse:
        _job_or_404(ctx, job_id)

        async def stream() -> AsyncIterator[str]:
            # Polling a counter keeps no executor thread per open page (a few threads serve every request).
            while not await request.is_disconnected():
                seen = ctx.jobs.version  # before reading, so a change in between is not missed
                job = await asyncio.to_thread(ctx.state.job, job_id)
                if job is None:
                    return
                event = job.to_dict()
                event["steps"] = ctx.jobs.steps(job_id)
                yield f"event: job\ndata: {json.dumps(event)}\n\n"
                if job.finished:
                    return
                for _ in range(60):
                    await asyncio.sleep(0.25)
                    if ctx.jobs.version != seen:
                        break
                else:
                    yield ": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _stage(ctx: _Ctx, visit_id: int, method: str, roi: str, photos: list[CheckedPhoto]) -> int:
    """Write the checked photos into a fresh job folder and record the job (all of it, or nothing)."""
    root = ctx.study.files / "web" / "uploads"
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="job-", dir=root))
    names: list[str] = []
    try:
        for p in photos:
            name = p.name
            stem, suffix = name.rsplit(".", 1)
            k = 1
            while name in names:
                k += 1
                name = f"{stem}_{k}.{suffix}"
            (folder / name).write_bytes(p.data)
            names.append(name)
        return ctx.state.add_job(visit_id, method, roi, folder, names)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
