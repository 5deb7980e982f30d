"""One error shape for every 4xx: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


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
    415: {"model": ErrorResponse, "description": "Unsupported body media type"},
    429: {
        "model": ErrorResponse,
        "description": "Too many failed authentications from this client",
        "headers": _RETRY_AFTER,
    },
    503: {
        "model": ErrorResponse,
        "description": "Temporal or PostgreSQL is unavailable: retry later",
        "headers": _RETRY_AFTER,
    },
}
ACTION_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: {"model": ErrorResponse, "description": "The case cannot take this action now"},
}


def not_found(case_id: str) -> ApiError:
    return ApiError(404, "case_not_found", f"no case {case_id} visible to you")


def _respond(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details))
    return JSONResponse(
        status_code=status, content=body.model_dump(exclude_none=True), headers=headers
    )


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in err.get("loc", ())), "problem": err.get("msg", "")}
        for err in exc.errors()
    ]


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _respond(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        first = details[0] if details else {"field": "", "problem": "invalid request"}
        message = f"invalid request: {first['field']}: {first['problem']}"
        return _respond(422, "invalid_request", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _respond(exc.status_code, code, str(exc.detail))
