"""Middleware and error handlers: Host, Origin, token, CSRF and body-size checks, security headers."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from cleftscore.study.db import NotFoundError, StudyError
from cleftscore.web.context import AppContext
from cleftscore.web.security import CSRF_FIELD, CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE

__all__ = ["install_guards", "install_errors", "install_logout", "BodyLimit", "CSP"]

#: The browser may load scripts, styles, pictures and connections from this server only.
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")  # fmt: skip


def install_guards(app: FastAPI, ctx: AppContext) -> None:
    guard = ctx.guard
    limit = ctx.settings.max_files * ctx.settings.max_file_bytes + (1 << 20)

    @app.middleware("http")
    async def guards(request: Request, call_next: Any) -> Response:
        if not guard.host_ok(request.headers.get("host")):
            return PlainTextResponse("this server answers only to its own host names (the Host header was "
                                     f"{request.headers.get('host')!r}); open it as http://127.0.0.1:PORT/", status_code=421)  # fmt: skip
        origin = request.headers.get("origin")
        if origin and not guard.origin_ok(origin, host_header=request.headers.get("host"), scheme=request.url.scheme):
            return PlainTextResponse("requests from other sites are refused", status_code=403)
        path = request.url.path
        if path == "/login" and request.method == "POST":
            client = request.client.host if request.client is not None else "unknown"
            if not guard.login_allowed(client):
                return PlainTextResponse(f"too many login attempts; wait {guard.login_window:.0f} seconds and try again",
                                         status_code=429, headers={"Retry-After": f"{guard.login_window:.0f}"})  # fmt: skip
        open_path = path.startswith("/static/") or path == "/login"
        bearer = request.headers.get("authorization", "")
        token = bearer[7:] if bearer.lower().startswith("bearer ") else None
        if not open_path and not guard.authorized(cookie=request.cookies.get(SESSION_COOKIE), bearer=token):
            if path.startswith("/api/") or request.method not in SAFE_METHODS:
                return JSONResponse(
                    {"detail": "an access token is needed: log in at /login or send Authorization: Bearer TOKEN"},
                    status_code=401,
                )
            return RedirectResponse("/login", status_code=303)
        if (
            request.method not in SAFE_METHODS
            and path not in ("/login", "/logout")  # /logout checks its form's token itself
            and not guard.csrf_ok(request.headers.get(CSRF_HEADER))
        ):
            return JSONResponse({"detail": "missing or wrong CSRF token: send the X-CSRF-Token header from the page's "
                                           "<meta name=csrf-token>; reload the page if the server restarted"}, status_code=403)  # fmt: skip
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return JSONResponse({"detail": f"the upload is {int(length) / 1e6:.1f} MB, over the limit of {ctx.settings.max_files} "
                                           f"photos of {ctx.settings.max_file_bytes / 1e6:.1f} MB each; nothing was stored"},
                                status_code=413)  # fmt: skip
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Cache-Control", "no-store")
        return response


def install_logout(app: FastAPI, ctx: AppContext) -> None:
    """``POST /logout``: the session cookie stops working at once (CSRF-checked like every POST)."""

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        # The page's Log out button is a plain form: its CSRF token comes as a field, scripts send the header.
        token = request.headers.get(CSRF_HEADER)
        if token is None:
            token = str((await request.form()).get(CSRF_FIELD) or "") or None
        if not ctx.guard.csrf_ok(token):
            return JSONResponse(
                {"detail": "missing or wrong CSRF token; reload the page and log out again"}, status_code=403
            )
        ctx.guard.close_session(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login" if ctx.guard.token_hash else "/", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response


class _TooLarge(Exception):
    pass


class BodyLimit:
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
                body = json.dumps(
                    {"detail": f"the upload is over the limit of {self.limit / 1e6:.1f} MB; nothing was stored"}
                ).encode()
                await send({"type": "http.response.start", "status": 413,
                            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})  # fmt: skip
                await send({"type": "http.response.body", "body": body})

        await self.app(scope, counted, replaced)


def install_errors(app: FastAPI) -> None:
    @app.exception_handler(NotFoundError)
    async def not_found(_request: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(StudyError)
    async def study_error(_request: Request, exc: StudyError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)
