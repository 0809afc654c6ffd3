"""Domain errors -> HTTP status codes: the one place the mapping lives.

A browser asking for a page (not under /api, accepting HTML) gets every error as a page
of the site; API clients get JSON."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException

from medloop.exceptions import (
    ConfigError,
    ConflictError,
    DatasetUnavailableError,
    InvalidInputError,
    MedloopError,
    NotFittedError,
    NotFoundError,
)

logger = logging.getLogger(__name__)

STATUS: list[tuple[type[MedloopError], int]] = [
    (NotFoundError, 404),
    (ConflictError, 409),
    (NotFittedError, 409),
    (InvalidInputError, 422),
    (DatasetUnavailableError, 503),
    (ConfigError, 500),
]


def status_for(error: MedloopError) -> int:
    """The HTTP status code for a domain error (400 for any not listed)."""
    for kind, code in STATUS:
        if isinstance(error, kind):
            return code
    return 400


#: Titles of error pages by status code.
PAGE_TITLES = {401: "Please sign in", 403: "Not for your role", 404: "Not found"}
#: A form's CSRF token is missing or from another session: most often a page opened
#: before signing in again (in another tab); nothing is wrong with the person's role.
STALE_PAGE = (
    "missing or invalid CSRF token: this page was opened before your latest sign-in, or in "
    "another session; nothing was saved. Reload the page and try again."
)

#: Said to an API or htmx request whose session cookie went unused for the deployment's
#: idle time (`web.sessions`); a page is sent to the sign-in page, which says it too.
IDLE_SIGNED_OUT = "signed out after {minutes:g} minutes without activity; sign in again to go on"


def wants_page(request: Request) -> bool:
    """A browser asking for a page (or htmx for a panel), not a client of the JSON API."""
    if request.url.path.startswith("/api/"):
        return False
    return "text/html" in request.headers.get("accept", "") or "HX-Request" in request.headers


def _error_page(request: Request, status_code: int, message: str) -> Response:
    # Imported here: `rendering` imports this module.
    from medloop.web.rendering import message_page
    from medloop.web.security import SESSION_COOKIE
    from medloop.workflows.accounts import account_for_token

    session = request.cookies.get(SESSION_COOKIE)
    ws = request.app.state.ws
    account = account_for_token(ws, session, purpose="session") if session else None
    title = (
        "This page is out of date"
        if message == STALE_PAGE
        else PAGE_TITLES.get(status_code, "Cannot do that")
    )
    return message_page(request, account, status_code=status_code, title=title, message=message)


async def _medloop_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, MedloopError)
    code = status_for(error)
    if code >= 500:
        logger.error("request failed: %s", type(error).__name__)
    if wants_page(request):
        return _error_page(request, code, str(error))
    body = {"detail": str(error)} | ({"code": error.code} if error.code else {})
    return JSONResponse(body, status_code=code)


async def _http_error(request: Request, error: Exception) -> Response:
    """Starlette's and FastAPI's own errors (no such page, wrong method, 401/403)."""
    assert isinstance(error, HTTPException)
    if wants_page(request) and error.status_code >= 400:
        message = (
            f"There is no page at {request.url.path}."
            if error.status_code == 404
            else str(error.detail)
        )
        return _error_page(request, error.status_code, message)
    return await http_exception_handler(request, error)


async def _invalid_request(request: Request, error: Exception) -> Response:
    """FastAPI's 422 without the `input` it would echo back (a password, a patient's
    data; and inputs such as 1e400 that JSON cannot carry); a page says which part of
    the address or form was wrong."""
    assert isinstance(error, RequestValidationError)
    if wants_page(request):
        problems = [f"{' '.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in error.errors()]
        return _error_page(request, 422, "; ".join(problems))
    errors = [{k: v for k, v in e.items() if k != "input"} for e in error.errors()]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


#: Said when the database refuses a value SQLite would take (PostgreSQL: a NUL character
#: in text, a number out of range).
UNSTORABLE = (
    "the request holds a value the database cannot store (such as a NUL character, or a "
    "number out of range)"
)


async def _unstorable(request: Request, error: Exception) -> Response:
    """The request's fault, said as a 422: not a 500 with the statement and its
    parameters (a password, a patient's data) in the server's log."""
    assert isinstance(error, DataError)
    logger.warning("refused a value the database cannot store: %s", type(error.orig).__name__)
    if wants_page(request):
        return _error_page(request, 422, UNSTORABLE)
    return JSONResponse({"detail": UNSTORABLE}, status_code=422)


class PageStop(Exception):
    """Raised by a page's account dependency (`web.rendering`): answer with `response`
    (to the login page, or a 403 page) instead of the page."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _page_stop(_request: Request, error: Exception) -> Response:
    assert isinstance(error, PageStop)
    return error.response


def install(app: FastAPI) -> None:
    app.add_exception_handler(MedloopError, _medloop_error)
    app.add_exception_handler(PageStop, _page_stop)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(DataError, _unstorable)
