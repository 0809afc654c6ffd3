"""`create_app(settings)`: the FastAPI application (JSON API, pages, static files)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.datastructures import MutableHeaders
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medloop import __version__
from medloop.config import Settings
from medloop.web import errors
from medloop.web.rendering import STATIC
from medloop.web.routes import api, audit, dashboard, explain, exports, jobs, pages, patients
from medloop.web.security import LoginLimiter
from medloop.web.sessions import SessionRenewal
from medloop.workflows.jobs import JobWorker
from medloop.workflows.workspace import Workspace

logger = logging.getLogger(__name__)

#: Requests with a larger body (announced or streamed) are refused with 413.
MAX_BODY_BYTES = 1_000_000
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; frame-ancestors 'none'"
    ),
}
DOCS_PATHS = {"/docs", "/redoc", "/docs/oauth2-redirect"}
DOCS_STATIC = "/static/docs"
#: Sent in production on HTTPS responses: browsers then use HTTPS only for a year
#: (RFC 6797; over plain HTTP the header would be ignored, and a development server on
#: plain HTTP must stay reachable).
HSTS = ("Strict-Transport-Security", "max-age=31536000")
#: Responses that set no caching of their own are never stored (pages show patients'
#: data: after signing out, Back must not bring them back from the browser's cache).
NO_STORE = ("Cache-Control", "no-store")
#: A static file asked for by a versioned URL (`rendering.static_url`: the version is a
#: digest of its content) is kept by browsers for a year: a changed file has a new URL.
IMMUTABLE = ("Cache-Control", "public, max-age=31536000, immutable")
#: Static files from this size on are sent gzip-compressed to browsers that accept it
#: (htmx.min.js: 52 kB, 17 kB compressed). Only static files: they hold no secret, so
#: compression cannot leak one (BREACH); pages carry CSRF tokens beside echoed input.
GZIP_MIN_BYTES = 1000


class SecurityHeaders:
    """Adds `SECURITY_HEADERS`, `NO_STORE` outside /static (`IMMUTABLE` for a versioned
    static file), and with `hsts` `HSTS` on HTTPS, to every HTTP response that does not
    set them itself (plain ASGI: a `BaseHTTPMiddleware` costs each request a task group
    and a body stream)."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope["path"] in DOCS_PATHS  # Swagger UI needs its inline script
        static = scope["path"].startswith("/static/")
        versioned = static and "v" in parse_qs(scope["query_string"].decode("latin-1"))
        hsts = self.hsts and scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if not (docs and name == "Content-Security-Policy"):
                        headers.setdefault(name, value)
                if not static:
                    headers.setdefault(*NO_STORE)
                elif versioned and message["status"] == 200:
                    headers.setdefault(*IMMUTABLE)
                if hsts:
                    headers.setdefault(*HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    settings: Settings, *, workspace: Workspace | None = None, run_jobs: bool = True
) -> FastAPI:
    """Build the web app on a workspace (opened, and migrated, from `settings` if not given).

    With `run_jobs` the app runs background jobs (retraining) in a thread of its own
    process; one process per database may (`medloop serve --workers N` runs them in its
    main process and builds the request-serving apps without)."""
    ws = workspace or Workspace.open(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if run_jobs:
            worker.start()  # fails jobs a previous server left running, then runs queued ones
        yield
        if run_jobs:
            worker.stop()
        if workspace is None:
            ws.close()

    # FastAPIOffline: FastAPI whose /docs and /redoc load Swagger UI and ReDoc from
    # DOCS_STATIC, not from a CDN (a blank page on an offline hospital network).
    app = FastAPIOffline(
        static_url=DOCS_STATIC,
        title="medloop",
        version=__version__,
        summary="Lay annotators, doctors and models labelling medical images together.",
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
    )
    app.state.ws = ws
    app.state.jobs = worker = JobWorker(ws)
    app.state.limiter = LoginLimiter(ws)
    errors.install(app)

    app.add_middleware(SessionRenewal)
    app.add_middleware(SecurityHeaders, hsts=ws.settings.environment == "production")
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(explain.router)
    app.include_router(patients.router)
    for module in (dashboard, audit):
        app.include_router(module.api_router)
        app.include_router(module.router)
    app.include_router(jobs.router)
    app.include_router(exports.router)
    static = GZipMiddleware(StaticFiles(directory=STATIC), minimum_size=GZIP_MIN_BYTES)
    app.mount("/static", static, name="static")
    return app


def create_worker_app() -> FastAPI:
    """The app of one of several server processes (`medloop serve --workers N`): settings
    from the environment, requests only (the main process runs the background jobs)."""
    return create_app(Settings(), run_jobs=False)
