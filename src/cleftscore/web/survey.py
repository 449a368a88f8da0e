"""Rater surveys in the web app: the organiser's pages, and the raters' own small application.

Organiser (behind the app's usual access token, Host and CSRF checks): ``/surveys`` lists and
makes surveys, ``/surveys/{id}`` shows progress and invites raters (each link is shown once),
``/surveys/{id}/report`` shows the reliability report, and two CSV downloads export the ratings.

Raters reach only ``/survey/r/{token}...``: the rating page, its pictures and two form posts.
These requests never enter the main application. :class:`RaterDispatch`, the outermost
middleware, hands them to a separate FastAPI app that knows only the rater routes and admits a
request only on its invitation token (which selects one rater of one survey). It applies the same
Host and Origin checks and security headers as the main app; its form posts carry a CSRF value
derived from the server's CSRF secret and the token. A rater token presented anywhere else (as
bearer, cookie or path) is an unknown credential there, so every other route stays closed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import tempfile
from typing import Annotated, Any

from fastapi import FastAPI, Form, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from cleftscore.study.db import NotFoundError, StudyError
from cleftscore.study.survey import (
    CROPS,
    PhotoSelection,
    close_survey,
    create_survey,
    invite_raters,
    parse_scale,
    rater_photo,
    rater_state,
    record_rating,
    submit,
    survey_status,
)
from cleftscore.study.survey_report import export_ratings, survey_report
from cleftscore.web.context import ID, AppContext
from cleftscore.web.guards import CSP, BodyLimit

__all__ = ["install_survey", "RaterDispatch", "RATER_PREFIX"]

#: Every rater URL starts with this; nothing else is reachable with a rater token.
RATER_PREFIX = "/survey/r/"


class SurveyIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    phases: str = ""
    patients: str = ""
    visits: str = ""
    scale: str = "1-7"
    higher_is: str = "normal"
    repeat_fraction: float = Field(default=0.2, ge=0.0, le=1.0)
    crop: str = "face"
    instructions: str = Field(default="", max_length=2000)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)


class RatersIn(BaseModel):
    codes: str = Field(min_length=1, max_length=4000)
    base_url: str = Field(default="", max_length=300)


def _words(text: str) -> tuple[str, ...]:
    return tuple(w for w in text.replace(",", " ").split() if w)


def _page(
    ctx: AppContext, request: Request, name: str, *, csrf: str, status_code: int = 200, **values: Any
) -> HTMLResponse:
    values.update(csrf=csrf)
    return ctx.templates.TemplateResponse(request, name, values, status_code=status_code)


def rater_csrf(ctx: AppContext, token: str) -> str:
    """The CSRF value of one rater's forms: the server's secret and the token, hashed together."""
    return hmac.new(ctx.guard.csrf_token.encode(), token.encode(), hashlib.sha256).hexdigest()


def install_survey(app: FastAPI, ctx: AppContext) -> None:
    """Add the organiser's survey pages to ``app`` and route rater links to their own application."""
    _install_organiser(app, ctx)
    app.add_middleware(RaterDispatch, rater_app=_rater_app(ctx))


def _install_organiser(app: FastAPI, ctx: AppContext) -> None:
    study = ctx.study

    @app.get("/surveys", response_class=HTMLResponse, include_in_schema=False)
    async def surveys_page(request: Request) -> HTMLResponse:
        rows = await asyncio.to_thread(survey_status, study)
        return _page(ctx, request, "survey_list.html", csrf=ctx.guard.csrf_token, surveys=rows, crops=CROPS)

    @app.post("/api/surveys", status_code=201, include_in_schema=False)
    async def new_survey(body: SurveyIn) -> dict[str, Any]:
        def make() -> Any:
            try:
                scale = parse_scale(body.scale, higher_is=body.higher_is)
                visits = tuple(int(v) for v in _words(body.visits))
                selection = PhotoSelection(visits=visits, patients=_words(body.patients), phases=_words(body.phases))
            except ValueError as exc:
                raise StudyError(str(exc)) from None
            try:
                return create_survey(study, body.title, selection, scale=scale, repeat_fraction=body.repeat_fraction,
                                     crop=body.crop, seed=body.seed, instructions=body.instructions)  # fmt: skip
            except ValueError as exc:
                raise StudyError(str(exc)) from None

        info = await asyncio.to_thread(make)
        return {"id": info.id, "title": info.title, "n_photos": info.n_photos, "seed": info.seed}

    @app.get("/surveys/{survey_id}", response_class=HTMLResponse, include_in_schema=False)
    async def survey_page(request: Request, survey_id: ID) -> HTMLResponse:
        status = (await asyncio.to_thread(survey_status, study, survey_id))[0]
        base = f"{request.url.scheme}://{request.headers.get('host', '')}"
        return _page(ctx, request, "survey_detail.html", csrf=ctx.guard.csrf_token, s=status, base_url=base)

    @app.post("/api/surveys/{survey_id}/raters", status_code=201, include_in_schema=False)
    async def invite(request: Request, survey_id: ID, body: RatersIn) -> dict[str, Any]:
        base = body.base_url or f"{request.url.scheme}://{request.headers.get('host', '')}"
        invitations = await asyncio.to_thread(invite_raters, study, survey_id, _words(body.codes), base_url=base)
        return {"raters": [{"code": i.code, "link": i.link} for i in invitations]}

    @app.post("/api/surveys/{survey_id}/close", include_in_schema=False)
    async def close(survey_id: ID) -> dict[str, Any]:
        await asyncio.to_thread(close_survey, study, survey_id)
        return {"id": survey_id, "closed": True}

    @app.get("/surveys/{survey_id}/report", response_class=HTMLResponse, include_in_schema=False)
    async def report_page(request: Request, survey_id: ID) -> HTMLResponse:
        report = await asyncio.to_thread(survey_report, study, survey_id, n_boot=2000, seed=0)
        return _page(ctx, request, "survey_report.html", csrf=ctx.guard.csrf_token, r=report)

    @app.get("/surveys/{survey_id}/{name}.csv", include_in_schema=False)
    async def ratings_csv(survey_id: ID, name: str) -> Response:
        if name not in ("ratings", "ratings_long"):
            raise HTTPException(404, "no such export")

        def write() -> bytes:
            with tempfile.TemporaryDirectory(dir=study.files) as tmp:
                wide, long = export_ratings(study, survey_id, tmp)
                return (wide if name == "ratings" else long).read_bytes()

        data = await asyncio.to_thread(write)
        return Response(data, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="survey{survey_id}_{name}.csv"'})  # fmt: skip


def _rater_app(ctx: AppContext) -> FastAPI:
    """The application a rater's link reaches: the rating page, its pictures and two form posts."""
    study = ctx.study
    rapp = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    rapp.add_middleware(BodyLimit, limit=64 * 1024)

    @rapp.middleware("http")
    async def rater_guard(request: Request, call_next: Any) -> Response:
        if not ctx.guard.host_ok(request.headers.get("host")):
            return PlainTextResponse("this server answers only to its own host names", status_code=421)
        origin = request.headers.get("origin")
        if origin and origin != "null" and not ctx.guard.host_ok(origin.split("://", 1)[-1]):
            return PlainTextResponse("requests from other sites are refused", status_code=403)
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL: never pass it on
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"
        return response

    @rapp.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> Response:
        return _rater_error(ctx, request, str(exc), 404)

    @rapp.exception_handler(StudyError)
    async def refused(request: Request, exc: StudyError) -> Response:
        return _rater_error(ctx, request, str(exc), 409)

    @rapp.get("/survey/r/{token}", response_class=HTMLResponse)
    async def rate_page(
        request: Request, token: str, at: Annotated[int | None, Query(ge=1, le=100000)] = None
    ) -> HTMLResponse:
        state = await asyncio.to_thread(rater_state, study, token)
        position = None  # None: every photo is rated (the page offers to submit), or nothing is open any more
        if not (state.submitted or state.closed):
            nxt = state.next_position
            last_open = nxt if nxt is not None else state.total - 1
            position = at - 1 if at is not None and at - 1 <= last_open else nxt
        return _page(ctx, request, "survey_rate.html", csrf=rater_csrf(ctx, token), st=state, token=token,
                     position=position)  # fmt: skip

    @rapp.get("/survey/r/{token}/photo/{number}.png")
    async def photo(token: str, number: Annotated[int, PathParam(ge=1, le=100000)]) -> Response:
        data = await asyncio.to_thread(rater_photo, study, token, number - 1)
        return Response(data, media_type="image/png")

    def _check(token: str, csrf: str) -> None:
        if not hmac.compare_digest(csrf.encode(), rater_csrf(ctx, token).encode()):
            raise HTTPException(403, "this form is out of date; reload the page")

    @rapp.post("/survey/r/{token}/rate")
    async def rate(
        token: str,
        position: Annotated[int, Form(ge=1, le=100000)],
        rating: Annotated[int, Form(ge=-1000, le=1000)],
        csrf: Annotated[str, Form(max_length=100)] = "",
    ) -> Response:
        _check(token, csrf)
        await asyncio.to_thread(record_rating, study, token, position=position - 1, rating=rating)
        return RedirectResponse(f"{RATER_PREFIX}{token}", status_code=303)

    @rapp.post("/survey/r/{token}/submit")
    async def submit_all(token: str, csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
        _check(token, csrf)
        await asyncio.to_thread(submit, study, token)
        return RedirectResponse(f"{RATER_PREFIX}{token}", status_code=303)

    @rapp.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _rater_error(ctx, request, str(exc.detail), exc.status_code)

    @rapp.exception_handler(404)
    async def no_route(request: Request, _exc: Exception) -> Response:
        return _rater_error(ctx, request, "there is no such page", 404)

    return rapp


def _rater_error(ctx: AppContext, request: Request, message: str, status: int) -> Response:
    if request.method == "GET" and not request.url.path.endswith(".png"):
        return _page(ctx, request, "survey_rate.html", csrf="", status_code=status, st=None, token="", position=None,
                     error=message)  # fmt: skip
    return JSONResponse({"detail": message}, status_code=status)


class RaterDispatch:
    """Outermost middleware: rater links go to the rater application, everything else to the app.

    Parameters
    ----------
    app : ASGI app
        The main application (with its access-token guard).
    rater_app : ASGI app
        The application of :data:`RATER_PREFIX` paths only.
    """

    def __init__(self, app: Any, *, rater_app: Any) -> None:
        self.app = app
        self.rater_app = rater_app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(RATER_PREFIX):
            await self.rater_app(scope, receive, send)
            return
        await self.app(scope, receive, send)
