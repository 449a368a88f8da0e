"""The server-rendered pages (Jinja2 templates), the stored pictures and the CSV download."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from cleftscore.study.db import NotFoundError, Study, StudyError
from cleftscore.web import queries
from cleftscore.web.context import ID, ROIS, AppContext
from cleftscore.web.security import SESSION_COOKIE

__all__ = ["install_pages"]

# .npy: the heat map's values (heatmap.npy), for researchers who reuse the map.
_STORED = re.compile(r"(photos|pictures)/[0-9a-f]{2}/[0-9a-f]{64}\.(png|jpg|npy)")


def _page(ctx: AppContext, request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    values.update(csrf=ctx.guard.csrf_token, definition=queries.SCORE_DEFINITION, reading_note=queries.READING_NOTE)
    values.setdefault("login_needed", ctx.guard.token_hash is not None)  # shows the Log out button
    return ctx.templates.TemplateResponse(request, name, values, status_code=status_code)


def _patient_outcomes(study: Study, code: str, method: str | None) -> tuple[list[Any], str]:
    from cleftscore.study.outcomes import compute_outcomes

    try:
        out = compute_outcomes(study, method=method, n_boot=2000, seed=0)
    except StudyError as exc:
        return [], str(exc)
    method = "mirror" if out.method == "asymmetry" else out.method
    return [c for c in out.changes if c.code == code], f"Scores of the {method} method. " + " ".join(out.notes)


def _reference_of(ctx: AppContext, method: str | None) -> Any:
    """The reference of a method's default score (``serve --reference`` where it fits, else the shipped one), or None."""
    if method is None:
        return None
    return ctx.settings.reference_for(method, "face-referenced" if method == "asymmetry" else "paper")


#: The tab icon: a 32-pixel PNG (a dark rounded square, a light disc split by a line), kept here as
#: text so the static folder holds only text files.
_FAVICON_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAYAAABzenr0AAAAv0lEQVR42u2XsRGAIAxF4Z8lU1jZu4LbOI/buIK9lVPYa4scKMEQ8TQdJ/kvCZAzW"
    "jlWt92mMtoyjdpeQxLuY0AS7mNBGu4GoZ+AB+/AawKYB6PmwQTXFKuo4JjvTb/yV4CSIWUvuAWpPsgBp/giFzxWo9xnyJF9jNY7G9EfwDcCoPTzKzvTKv"
    "sIOKpwpYG7And9wSWU6gNuQereKiWrUG9PqdT/Vwx3VpO0ZRo1fAOjFPxwBJJB2Cycjc4S4/kO8eRRJu2fLoEAAAAASUVORK5CYII="
)


class PageNotFound(Exception):
    """What a page cannot show (answered with an HTML page that leads back)."""

    def __init__(self, message: str, *, status: int = 404) -> None:
        super().__init__(message)
        self.message, self.status = message, status


async def _lookup(what: str, fn: Any, *args: Any, **kw: Any) -> Any:
    """``fn(*args, **kw)`` in a thread; a study's refusal becomes :class:`PageNotFound` naming ``what``."""
    try:
        return await asyncio.to_thread(fn, *args, **kw)
    except NotFoundError:
        raise PageNotFound(f"There is no {what} in this study.") from None
    except StudyError as exc:
        raise PageNotFound(f"{what[0].upper()}{what[1:]}: {exc}", status=409) from None


def _install_not_found_page(app: FastAPI, ctx: AppContext) -> None:
    @app.exception_handler(PageNotFound)
    async def not_found_page(request: Request, exc: PageNotFound) -> HTMLResponse:
        title = "Not found" if exc.status == 404 else "Nothing to show yet"
        return _page(ctx, request, "error.html", status_code=exc.status, title=title, message=exc.message, back="/")


def _install_comparisons(app: FastAPI, ctx: AppContext) -> None:
    """The printable patient summary, the comparison of two visits and the favicon."""
    study = ctx.study

    @app.get("/compare", response_class=HTMLResponse, include_in_schema=False)
    async def compare(
        request: Request, a: Annotated[int, Query(ge=1, le=2**62)], b: Annotated[int, Query(ge=1, le=2**62)]
    ) -> HTMLResponse:
        left = await _lookup(f"visit {a}", queries.visit_page, study, a)
        right = await _lookup(f"visit {b}", queries.visit_page, study, b)
        change = await asyncio.to_thread(queries.visit_change, left, right, reference_for=ctx.settings.reference_for)
        return _page(ctx, request, "compare.html", left=left, right=right, change=change)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        import base64

        return Response(base64.b64decode(_FAVICON_PNG), media_type="image/png",
                        headers={"Cache-Control": "public, max-age=86400"})  # fmt: skip

    @app.get("/patients/{code}/summary", response_class=HTMLResponse, include_in_schema=False)
    async def summary_page(code: str, method: Annotated[str | None, Query(max_length=32)] = None) -> HTMLResponse:
        from cleftscore.study.summary import patient_summary_html

        page = await _lookup(f"patient {code}", patient_summary_html, study, code, method=method, n_boot=2000,
                             stylesheet="/summary.css")  # fmt: skip
        return HTMLResponse(page)

    @app.get("/summary.css", include_in_schema=False)
    async def summary_css() -> Response:
        # The same styles as a summary written to a file (inline there; this app's CSP refuses inline styles).
        from cleftscore.study.summary import SUMMARY_CSS

        return Response(SUMMARY_CSS, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


def install_pages(app: FastAPI, ctx: AppContext) -> None:
    study = ctx.study
    _install_comparisons(app, ctx)
    _install_not_found_page(app, ctx)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_page(request: Request) -> HTMLResponse:
        return _page(ctx, request, "login.html", error="")

    @app.post("/login", include_in_schema=False)
    async def login(request: Request, token: Annotated[str, Form()] = "") -> Response:
        if not ctx.guard.token_ok(token) or ctx.guard.token_hash is None:
            return _page(
                ctx,
                request,
                "login.html",
                status_code=401,
                error="wrong access token" if ctx.guard.token_hash else "no token is needed here",
            )
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, ctx.guard.open_session(), httponly=True, samesite="strict")
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def patients_page(request: Request, q: Annotated[str, Query(max_length=64)] = "") -> HTMLResponse:
        rows = await asyncio.to_thread(queries.patients, study, q)
        return _page(ctx, request, "patients.html", patients=rows, q=q)

    @app.get("/patients/{code}", response_class=HTMLResponse, include_in_schema=False)
    async def patient_html(
        request: Request, code: str, method: Annotated[str | None, Query(max_length=32)] = None
    ) -> HTMLResponse:
        page = await _lookup(f"patient {code}", queries.patient_page, study, code)
        changes, outcome_note = await asyncio.to_thread(_patient_outcomes, study, code, method)
        methods = sorted({m for v in page.visits for m in v.methods})
        ref = _reference_of(ctx, method or (methods[0] if len(methods) == 1 else None))
        return _page(ctx, request, "patient.html", p=page.patient, visits=page.visits, changes=changes, outcome_note=outcome_note,
                     today=dt.date.today().isoformat(), methods=methods, method=method or "",
                     spread=ref.spread if ref else None, reference_name=ref.name if ref else "")  # fmt: skip

    @app.get("/patients/{code}/timeline.png", include_in_schema=False)
    async def timeline(code: str, method: Annotated[str | None, Query(max_length=32)] = None) -> Response:
        from cleftscore.report.study_plots import timeline_png
        from cleftscore.study.outcomes import compute_outcomes

        def draw() -> bytes | None:
            try:
                # Every scored visit is drawn, photos that fail the quality gate too: the page's notes
                # say which of them the change leaves out.
                out = compute_outcomes(study, method=method, n_boot=100, include_failed_quality=True)
            except StudyError:
                return None
            series = [s for s in out.patients if s.code == code]
            return timeline_png(series[0], study.files) if series and series[0].visits else None

        key = (code, method, await asyncio.to_thread(queries.fingerprint, study))
        png = ctx.timelines.get(key)
        if png is None:
            png = await asyncio.to_thread(draw)
            if png is not None:
                if len(ctx.timelines) >= 64:
                    ctx.timelines.pop(next(iter(ctx.timelines)))  # the oldest drawing
                ctx.timelines[key] = png
        if png is None:
            raise HTTPException(404, f"patient {code!r} has no scored visits yet")
        return Response(png, media_type="image/png")

    @app.get("/visits/{visit_id}", response_class=HTMLResponse, include_in_schema=False)
    async def visit_html(request: Request, visit_id: ID) -> HTMLResponse:
        page = await _lookup(f"visit {visit_id}", queries.visit_page, study, visit_id)
        job_list = await asyncio.to_thread(ctx.state.jobs_of_visit, visit_id)
        return _page(ctx, request, "visit.html", v=page, jobs=job_list, gan=ctx.gan, rois=ROIS, limits=ctx.settings)

    @app.get("/visits/{visit_id}/report", response_class=HTMLResponse, include_in_schema=False)
    async def report(request: Request, visit_id: ID) -> HTMLResponse:
        page = await _lookup(f"visit {visit_id}", queries.visit_page, study, visit_id)
        return _page(ctx, request, "report.html", v=page)

    @app.get("/visits/{visit_id}/scores.csv", include_in_schema=False)
    async def csv_download(visit_id: ID) -> Response:
        from cleftscore.report.writers import write_csv

        page = await asyncio.to_thread(queries.visit_page, study, visit_id)
        with tempfile.TemporaryDirectory(dir=study.files) as tmp:
            rows = queries.visit_csv_rows(page)  # one column per measure after the fixed ones
            path = write_csv(Path(tmp) / "scores.csv", rows, columns=queries.visit_csv_columns(rows))
            data = path.read_bytes()
        name = f"{page.code}_visit{page.id}_{page.date.isoformat()}_scores.csv"
        return Response(
            data,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/files/{rel:path}", include_in_schema=False)
    async def stored_file(rel: str) -> Response:
        if not _STORED.fullmatch(rel) or not (study.files / rel).is_file():
            raise HTTPException(404, "no such stored picture")
        return FileResponse(study.files / rel, headers={"Cache-Control": "private, max-age=86400, immutable"})
