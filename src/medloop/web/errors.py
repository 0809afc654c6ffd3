"""Domain errors -> HTTP status codes: the one place the mapping lives."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

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


async def _medloop_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, MedloopError)
    code = status_for(error)
    if code >= 500:
        logger.error("request failed: %s", type(error).__name__)
    return JSONResponse({"detail": str(error)}, status_code=code)


def _finite(value: Any) -> Any:
    """JSON has no inf or NaN: such values (echoed inputs) become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


async def _invalid_request(_request: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422, safe for inputs such as 1e400 that JSON cannot carry back."""
    assert isinstance(error, RequestValidationError)
    return JSONResponse({"detail": _finite(jsonable_encoder(error.errors()))}, status_code=422)


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
