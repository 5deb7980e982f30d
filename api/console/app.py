"""Mount the console on the API app: ``/console`` for staff, ``/my/<token>`` for citizens.

Each is a FastAPI app of its own (mounted, so none of its pages is in the API's OpenAPI and
the API's JSON-only rule does not apply to its forms) sharing the API's state: the same pool,
Temporal client, settings and failed-authentication limiter."""

from __future__ import annotations

import logging

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from api.console import (
    admin,
    audit,
    cases,
    citizen,
    files,
    intake,
    login,
    lookup,
    people,
    supervision,
)
from api.console.web import PREFIX, STATIC, SignInRequired, error_page, redirect, set_timezone
from api.errors import ApiError
from jiesu.case import glossary
from jiesu.config import Settings
from jiesu.notify.links import FOLLOW_UP_PATH

log = logging.getLogger("jiesu.console")

HTTP_WORDS = {
    404: "页面不存在",
    405: "此地址用于提交表单，不能直接打开：请回到页面上操作",
}
"""What a page says for Starlette's own HTTP errors (its details are English phrases)."""


def _sub_app(parent: FastAPI) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state = parent.state  # the API's pool, client, settings and limiter

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        # the API's own errors (a case not found) speak English: their Chinese words
        message = glossary.refusal(exc.code, exc.message) if exc.message.isascii() else exc.message
        response = error_page(request, exc.status, message)
        response.headers.update(exc.headers or {})
        return response

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = str(exc.detail)
        # Starlette's own details are English reason phrases ("Method Not Allowed"): said in
        # Chinese; a detail we wrote in Chinese is shown as is
        said = HTTP_WORDS.get(exc.status_code, "请求未能处理")
        message = detail if not detail.isascii() else said
        return error_page(request, exc.status_code, message)

    async def invalid(request: Request, exc: Exception) -> Response:
        return error_page(request, 422, "请求参数有误")

    async def bad_value(request: Request, exc: Exception) -> Response:
        # as the API's net (api/errors.py is_bad_value): a value PostgreSQL refused is the
        # request's fault; logged, as a page's own checks should have refused it first
        log.warning("console: a value PostgreSQL refused on %s", request.url.path, exc_info=exc)
        return error_page(request, 422, "请求中有无法处理的值（如空字符、超出范围的日期）")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(asyncpg.DataError, bad_value)
    app.add_exception_handler(OverflowError, bad_value)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    return app


def mount(parent: FastAPI, settings: Settings) -> None:
    set_timezone(settings.timezone)
    citizen.redact_access_log()

    console = _sub_app(parent)

    async def sign_in(request: Request, exc: Exception) -> Response:
        return redirect(PREFIX + "/login")

    console.add_exception_handler(SignInRequired, sign_in)
    console.mount("/static", StaticFiles(directory=STATIC), name="static")
    for group in (login, intake, lookup, cases, files, supervision, audit, people, admin):
        console.include_router(group.router)
    parent.mount(PREFIX, console)

    mine = _sub_app(parent)
    mine.include_router(citizen.router)
    parent.mount(FOLLOW_UP_PATH.rstrip("/"), mine)
