"""One error shape for every error, 4xx and 5xx alike:
``{"error": {"code", "message", "details"?, "request_id"}}``, and an ``X-Request-ID`` header on
every response.

- A client's ``X-Request-ID`` is kept when it is sane (short, printable ASCII), else one is made.
- Temporal unreachable → 503 ``temporal_unavailable``; PostgreSQL unreachable → 503
  ``database_unavailable``; both with ``Retry-After``.
- Anything else unexpected → 500 ``internal_error``: logged with its traceback under the
  request id, never shown to the client.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import re
import uuid
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.error_codes import ERROR_CODES
from jiesu.client import is_temporal_down

log = logging.getLogger("jiesu.api")

REQUEST_ID_HEADER = "X-Request-ID"
RETRY_AFTER_SECONDS = 5
"""What a 503 tells the client to wait: a restarting Temporal or PostgreSQL is back in seconds."""

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=/@\-]{1,128}")
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def request_id() -> str:
    """The id of the request being served (empty outside a request)."""
    return _request_id.get()


class ErrorBody(BaseModel):
    code: str = Field(
        description="Machine-readable: one of the codes listed in `x-error-codes` (and "
        "docs/errors.md), with what each means. Match on the code, not on the message; treat "
        "a code you do not know by the answer's status.",
        json_schema_extra={"x-error-codes": ERROR_CODES},
    )
    message: str
    details: list[dict[str, Any]] | None = None
    request_id: str = Field(
        description="Also in the X-Request-ID header; quote it when reporting a problem."
    )


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    """Raise anywhere in a request to answer with this status and machine-readable code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        *,
        headers: dict[str, str] | None = None,  # e.g. Retry-After on 429 and 503
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = headers


def _unavailable(code: str, what: str) -> ApiError:
    return ApiError(
        503, code, f"{what} is unavailable; retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )  # fmt: skip


def temporal_unavailable() -> ApiError:
    return _unavailable("temporal_unavailable", "the workflow service (Temporal)")


def database_unavailable() -> ApiError:
    return _unavailable("database_unavailable", "the database (PostgreSQL)")


_POOL_GONE = ("pool is closed", "pool is closing", "connection is closed", "connection was closed")


# Lost connection; server shutting down or starting up; no connection slot left.
_DATABASE_DOWN = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
)


# A pooled connection whose server died mid-operation: its protocol is stuck in the dead
# operation's state (fault run 5, right after PostgreSQL restarted).
_STUCK_CONNECTION = "cannot switch to state"


def is_database_down(exc: BaseException) -> bool:
    if isinstance(exc, _DATABASE_DOWN):
        return True
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return _STUCK_CONNECTION in str(exc)
    if isinstance(exc, asyncpg.InterfaceError):
        return any(gone in str(exc) for gone in _POOL_GONE)
    return isinstance(exc, OSError)  # refused, reset, unreachable, connect timeout


def is_bad_value(exc: BaseException) -> bool:
    """PostgreSQL refused a value a request carried (SQLSTATE class 22, "data exception": a
    NUL character, a date out of its range...): the request's fault, and its transaction
    rolled back. Endpoints refuse such values first; this is the net under them."""
    return isinstance(exc, asyncpg.DataError | OverflowError)


def unexpected(exc: BaseException) -> ApiError:
    """The answer for an exception no endpoint handled."""
    if is_temporal_down(exc):
        return temporal_unavailable()
    if is_database_down(exc):
        return database_unavailable()
    if is_bad_value(exc):
        return ApiError(422, "invalid_value", "a value in the request cannot be stored or compared")
    return ApiError(500, "internal_error", "internal error; quote the request id to report it")


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No or unknown API key"},
    403: {"model": ErrorResponse, "description": "Your role may not do this"},
    404: {"model": ErrorResponse, "description": "No such case visible to you"},
    422: {"model": ErrorResponse, "description": "Invalid input"},
}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
}
# Answers that any operation can give, whatever it does: declared once for the whole app.
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Malformed request (a body that does not parse)"},
    405: {"model": ErrorResponse, "description": "This method is not allowed on this path"},
    413: {
        "model": ErrorResponse,
        "description": "The body is larger than the cap (payload_too_large: "
        "JIESU_MAX_BODY_BYTES, api/body_limit.py)",
    },
    415: {"model": ErrorResponse, "description": "Unsupported body media type"},
    429: {
        "model": ErrorResponse,
        "description": "Too many failed authentications from this client "
        "(too_many_failed_authentications), or, where an operation is rate-limited (the "
        "self-service codes and reports), too many requests (rate_limited)",
        "headers": _RETRY_AFTER,
    },
    500: {
        "model": ErrorResponse,
        "description": "Internal error (code internal_error): quote the request id to report it",
    },
    503: {
        "model": ErrorResponse,
        "description": "Temporal (temporal_unavailable) or PostgreSQL (database_unavailable) "
        "cannot be reached; a case just registered cannot be read yet (case_not_ready); "
        "/readyz: a dependency is not ready (not_ready); an intake whose problem kept "
        "changing under it (intake_contended): retry after the Retry-After seconds",
        "headers": _RETRY_AFTER,
    },
}
QUERY_ERRORS: dict[int | str, dict[str, Any]] = {s: r for s, r in ERRORS.items() if s != 404}
"""ERRORS of an operation that names no record (a list, a search, a creation): no 404."""
ACTION_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: {"model": ErrorResponse, "description": "The case cannot take this action now"},
}


def not_found(case_id: str) -> ApiError:
    return ApiError(404, "case_not_found", f"no case {case_id} visible to you")


def error_response(
    status: int, code: str, message: str, details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:  # fmt: skip
    body = ErrorResponse(
        error=ErrorBody(code=code, message=message, details=details, request_id=request_id())
    )
    return JSONResponse(
        status_code=status, content=body.model_dump(exclude_none=True), headers=headers
    )


def _respond(exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


MAX_DETAILS = 50
"""Problems a 422 lists at most. A 2 MiB body of unknown keys has 209,714 of them: all listed,
the answer was 14 MB and 2.3 s of CPU on the event loop."""


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in err.get("loc", ())), "problem": err.get("msg", "")}
        for err in itertools.islice(exc.errors(), MAX_DETAILS)
    ]


class RequestContext:
    """ASGI middleware: gives each request its id (header, logs, error bodies) and
    turns any exception that escaped the endpoints into the error shape (503 or 500)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        rid = given if _SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        token = _request_id.set(rid)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if started:  # too late for an error body: the client sees a cut response
                raise
            answer = unexpected(exc)
            if answer.code == "database_unavailable":
                await _expire_connections(scope)
            if answer.status == 500 or answer.code == "invalid_value":  # the latter: a gap
                log.exception("request %s failed", rid)  # in the endpoint's own validation
            else:
                log.warning("request %s: %s (%r)", rid, answer.code, exc)
            await _respond(answer)(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)


async def _expire_connections(scope: Scope) -> None:
    """Replace every pooled connection on its next use: after the database went away, an
    idle one may still be a dead server's (asyncpg drops the ones it saw close, not the one
    whose protocol a killed operation left stuck)."""
    pool = getattr(getattr(scope.get("app"), "state", None), "pool", None)
    if isinstance(pool, asyncpg.Pool) and not pool.is_closing():
        await pool.expire_connections()


def install(app: FastAPI) -> None:
    app.add_middleware(RequestContext)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _respond(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        first = details[0] if details else {"field": "", "problem": "invalid request"}
        message = f"invalid request: {first['field']}: {first['problem']}"
        return error_response(422, "invalid_request", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method the path has: Starlette's 405 names only those of the first route found
    (``GET /complaints`` and ``POST /complaints`` are two routes)."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    )
