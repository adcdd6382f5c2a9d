"""Errors as responses: which error becomes which status, and how routes document them.

Errors a client can act on become 4xx with a one-line reason, never a 500. Reasons the server
wrote go through ``redact`` (no server paths); a refused path is the client's own text, echoed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from pixseek.api.roots import PathRefusedError
from pixseek.api.schemas import Problem
from pixseek.errors import ConflictError, NotFoundError, PixseekError
from pixseek.library import CollectionMismatchError, DatabaseError

# What FastAPI's ``responses=`` takes: status -> OpenAPI response (a "model", a "description").
Responses = dict[int | str, dict[str, Any]]

ERRORS: Responses = {400: {"model": Problem}, 404: {"model": Problem}, 422: {"model": Problem}}
PATH_ERRORS: Responses = {
    **ERRORS,
    403: {"model": Problem, "description": "A path outside the library roots"},
}

# Starlette answers an error with the handler of the nearest class in its MRO: a NotFoundError
# (a PixseekError) gets 404, any other PixseekError 400.
STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (PathRefusedError, 403),
    (NotFoundError, 404),
    (CollectionMismatchError, 409),
    (ConflictError, 409),
    (PixseekError, 400),
    (DatabaseError, 503),
)


def with_problems(responses: Responses, *statuses: int) -> Responses:
    """``responses`` plus a Problem body for each of ``statuses``."""
    return {**responses, **{status: {"model": Problem} for status in statuses}}


def problem(status: int, detail: str) -> JSONResponse:
    # Client text echoed in a reason may hold lone surrogates, which UTF-8 cannot encode.
    clean = detail.encode("utf-8", "replace").decode("utf-8")
    return JSONResponse({"detail": clean}, status_code=status)


def install_error_handlers(app: FastAPI, redact: Callable[[str], str]) -> None:
    for error_type, status in STATUS_OF:
        app.add_exception_handler(error_type, _reason_handler(status, redact))
    app.add_exception_handler(StarletteHTTPException, _http_error_handler(redact))
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(ValidationError, _invalid)


def _reason_handler(status: int, redact: Callable[[str], str]) -> Callable[[Request, Exception], Response]:
    """The error's message as the reason, redacted unless it is a refused path (the client's own)."""

    def handle(_request: Request, error: Exception) -> Response:
        return problem(status, str(error) if isinstance(error, PathRefusedError) else redact(str(error)))

    return handle


def _http_error_handler(redact: Callable[[str], str]) -> Callable[[Request, Exception], Awaitable[Response]]:
    """Handlers' own HTTPExceptions (e.g. an OSError's text in a 422), redacted likewise."""

    async def handle(request: Request, error: Exception) -> Response:
        if not isinstance(error, StarletteHTTPException):
            raise error  # registered for HTTPException only
        if isinstance(error.detail, str):
            error.detail = redact(error.detail)
        return await http_exception_handler(request, error)

    return handle


def _invalid(_request: Request, error: Exception) -> Response:
    """Validation errors as one line ('body.k: Input should be ...'), like every other error."""
    if not isinstance(error, RequestValidationError | ValidationError):
        raise error  # registered for validation errors only
    reasons = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        reasons.append(f"{where}: {item['msg']}" if where else item["msg"])
    return problem(422, "; ".join(reasons))
