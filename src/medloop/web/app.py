"""`create_app(settings)`: the FastAPI application (JSON API, pages, static files)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from medloop import __version__
from medloop.config import Settings
from medloop.web import errors
from medloop.web.routes import api, pages
from medloop.web.security import LoginLimiter, SkipList
from medloop.workflows.workspace import Workspace

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
#: Requests with a larger body are refused with 413 before they are read.
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


def create_app(settings: Settings, *, workspace: Workspace | None = None) -> FastAPI:
    """Build the web app on a workspace (opened, and migrated, from `settings` if not given)."""
    ws = workspace or Workspace.open(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if workspace is None:
            ws.close()

    app = FastAPI(
        title="medloop",
        version=__version__,
        summary="Lay annotators, doctors and models labelling medical images together.",
        lifespan=lifespan,
    )
    app.state.ws = ws
    app.state.limiter = LoginLimiter()
    app.state.skips = SkipList()
    errors.install(app)

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse({"detail": "request body too large"}, status_code=413)
        response = await call_next(request)
        docs = request.url.path in DOCS_PATHS  # Swagger UI needs its inline script
        for name, value in SECURITY_HEADERS.items():
            if not (docs and name == "Content-Security-Policy"):
                response.headers.setdefault(name, value)
        return response

    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
