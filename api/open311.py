"""Open311 GeoReport v2 at ``/open311/v2/`` (http://wiki.open311.org/GeoReport_v2).

A sub-application of its own, so that it speaks the protocol end to end: resources end in
``.json`` or ``.xml``, POST bodies are ``application/x-www-form-urlencoded``, and every error
— a bad parameter, an unknown path, an outage — is the spec's ``errors`` document (404 for
what does not exist, 403 for a missing or wrong ``api_key``, 400 for anything else; 503 with
Retry-After when Temporal or PostgreSQL is down), never the rest of the API's error shape.
The service behind it is :mod:`jiesu.intake.open311`. Not in the OpenAPI document: the
GeoReport v2 spec is its reference (docs/open311.md).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree as ET

from fastapi import FastAPI, Request, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth_limit import client_of
from api.deps import KEY_HOLDER_SQL
from api.errors import RETRY_AFTER_SECONDS, ApiError, is_bad_value, is_database_down
from jiesu.access.security import hash_api_key
from jiesu.case.domain import MAX_YEAR, MIN_YEAR, OPERATOR_ROLES, Actor, Role
from jiesu.client import is_temporal_down
from jiesu.intake import open311
from jiesu.intake.errors import (
    IdempotencyConflict,
    IntakeContended,
    IntakeError,
    IntakeRefused,
    TemporalUnavailable,
)

log = logging.getLogger("jiesu.api.open311")

PREFIX = "/open311/v2"
FORMATS = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
MAX_BODY = 64 * 1024
# XML element names: the list's root and its items (the spec's "Spark convention" mapping).
ROOTS = {"services": ("services", "service"), "requests": ("service_requests", "request"),
         "errors": ("errors", "error")}


class Open311Error(Exception):
    def __init__(self, status: int, description: str, *,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.code = status, description, status
        if status == 503:
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        self.headers = headers


# --- rendering --------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _element(tag: str, value: Any) -> ET.Element:
    element = ET.Element(tag)
    if isinstance(value, dict):
        for key, child in value.items():
            element.append(_element(key, child))
    elif isinstance(value, list):  # e.g. attributes → attribute, values → value
        for child in value:
            element.append(_element(tag[:-1], child))
    else:
        element.text = _text(value)
    return element


def to_xml(kind: str, items: list[dict[str, Any]] | dict[str, Any]) -> bytes:
    if isinstance(items, dict):  # a service definition: one document, not a list
        root = _element("service_definition", items)
    else:
        root_tag, item_tag = ROOTS[kind]
        root = ET.Element(root_tag)
        root.extend(_element(item_tag, item) for item in items)
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            + ET.tostring(root, encoding="unicode")).encode("utf-8")


def render(fmt: str, kind: str, body: Any, status: int = 200,
           headers: dict[str, str] | None = None) -> Response:
    content = (json.dumps(body, ensure_ascii=False).encode("utf-8") if fmt == "json"
               else to_xml(kind, body))
    return Response(content, status_code=status, media_type=FORMATS[fmt], headers=headers)


def error(fmt: str, exc: Open311Error, headers: dict[str, str] | None = None) -> Response:
    body = [{"code": exc.code, "description": exc.description}]
    return render(fmt if fmt in FORMATS else "xml", "errors", body, exc.status, headers)


# --- the protocol's parameters ------------------------------------------------------------------


def split_format(resource: str) -> tuple[str, str]:
    """``"638344.json"`` → ("638344", "json"); 400 without a known format."""
    name, dot, fmt = resource.rpartition(".")
    if not dot or fmt not in FORMATS:
        raise Open311Error(400, "append the format to the resource: .json or .xml")
    if not name:
        raise Open311Error(400, "the resource's name is missing")
    return name, fmt


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _w3_date(params: dict[str, str], name: str) -> datetime | None:
    value = params.get(name) or None
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Open311Error(400, f"{name} must be a w3 datetime, e.g. 2010-01-01T00:00:00Z") from exc
    if at.tzinfo is None:
        raise Open311Error(400, f"{name} needs its time zone (Z or +08:00)")
    # the 90-day window is counted from it and PostgreSQL compares it: year 1 and 9999 overflow
    if not MIN_YEAR <= at.year <= MAX_YEAR:
        raise Open311Error(400, f"{name} must lie in the years {MIN_YEAR}..{MAX_YEAR}")
    return at


def refuse_nul(values: Iterable[str]) -> None:
    """PostgreSQL's text cannot hold a NUL character: a parameter with one is refused (400)
    before it reaches a query, instead of failing there."""
    if any("\x00" in value for value in values):
        raise Open311Error(400, "a parameter contains a NUL character")


def _parameters(request: Request) -> list[str]:
    """The path and every query parameter's name and value, for :func:`refuse_nul`."""
    return [request.url.path, *(part for pair in request.query_params.multi_items()
                                for part in pair)]  # fmt: skip


def _number(params: dict[str, str], name: str, bound: float) -> float | None:
    value = params.get(name) or None
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError as exc:
        raise Open311Error(400, f"{name} must be a number") from exc
    if not math.isfinite(number) or abs(number) > bound:
        raise Open311Error(400, f"{name} must be within ±{bound:g}")
    return number


def report_of(params: dict[str, str]) -> open311.Report:
    lat, long = _number(params, "lat", 90), _number(params, "long", 180)
    if (lat is None) != (long is None):
        raise Open311Error(400, "lat and long go together")
    if not params.get("service_code"):
        raise Open311Error(400, "service_code was not provided")
    fields = ("address_string", "address_id", "description", "first_name", "last_name",
              "phone", "email", "media_url")
    return open311.Report(service_code=params["service_code"], lat=lat, long=long,
                          **{f: params.get(f, "").strip() for f in fields})


async def _form(request: Request) -> dict[str, str]:
    """The POST's arguments: the urlencoded body, then the query string (first value wins)."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = await request.body()
    if len(body) > MAX_BODY:
        raise Open311Error(400, f"the request is larger than {MAX_BODY} bytes")
    if body and media != "application/x-www-form-urlencoded":
        raise Open311Error(400, "send the arguments as application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise Open311Error(400, "the body is not UTF-8") from exc
    refuse_nul(part for pair in pairs for part in pair)
    params = dict(request.query_params)
    for key, value in reversed(pairs):
        params[key] = value
    return params


async def _not_blocked(request: Request) -> None:
    """The API's failed-authentication limit (api/auth_limit.py) holds here too: a client
    that guessed too many keys or tokens is answered 429 before anything is looked up."""
    try:
        await request.app.state.auth_limiter.check(client_of(request))
    except ApiError as exc:
        raise Open311Error(429, exc.message, headers=exc.headers) from exc


async def _failed(request: Request) -> None:
    await request.app.state.auth_limiter.failed(client_of(request))


async def _operator(request: Request, api_key: str | None) -> Actor:
    """The spec's api_key is one of our API keys, of a role that may register cases."""
    await _not_blocked(request)
    if not api_key:
        raise Open311Error(403, "api_key was not provided")
    row = await request.app.state.pool.fetchrow(KEY_HOLDER_SQL, hash_api_key(api_key))
    if row is None:
        await _failed(request)
        raise Open311Error(403, "invalid api_key: it is not known or was revoked")
    if Role(row["role"]) not in OPERATOR_ROLES:
        raise Open311Error(403, "invalid api_key: it must be a key that may register cases")
    return Actor(role=Role(row["role"]), name=row["name"], department_id=row["department_id"])


# --- the resources -------------------------------------------------------------------------------


def _intake_error(err: IntakeError) -> Open311Error:
    if isinstance(err, TemporalUnavailable | IntakeContended):
        return Open311Error(503, f"{err.message}; retry in {RETRY_AFTER_SECONDS} s")
    if isinstance(err, IntakeRefused | IdempotencyConflict):
        return Open311Error(400, err.message)
    return Open311Error(400, "the request could not be filed")


def _failure(exc: Exception) -> Open311Error:
    """What the client is told about a failure (logged when unexpected)."""
    if isinstance(exc, Open311Error):
        return exc
    if isinstance(exc, open311.NotFound):
        return Open311Error(404, str(exc))
    if isinstance(exc, IntakeError):
        return _intake_error(exc)
    if isinstance(exc, ValidationError):
        messages = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return Open311Error(400, messages[:1000])
    if isinstance(exc, ValueError):
        return Open311Error(400, str(exc))
    if is_bad_value(exc):  # the net under refuse_nul and the checks above (api/errors.py)
        log.warning("open311: a value PostgreSQL refused", exc_info=exc)
        return Open311Error(400, "a value in the request cannot be stored or compared")
    if is_temporal_down(exc) or is_database_down(exc):
        return Open311Error(503, "the service is unavailable; retry shortly")
    log.exception("open311 request failed", exc_info=exc)
    return Open311Error(500, "internal error")


async def _answer(
    fmt: str, request: Request, work: Callable[[], Awaitable[Response]]
) -> Response:
    """Run a resource's work and turn every failure into the spec's error document."""
    try:
        refuse_nul(_parameters(request))
        return await work()
    except Exception as exc:
        failure = _failure(exc)
        return error(fmt, failure, failure.headers)


def build() -> FastAPI:
    """The sub-application; create_app mounts it and hands it the pool, client, settings."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        fmt = request.url.path.rpartition(".")[2]
        status = 404 if exc.status_code == 404 else 400
        what = "no such resource" if status == 404 else f"not allowed: {request.method}"
        return error(fmt, Open311Error(status, what))

    @app.get("/services{suffix}")
    async def services(request: Request, suffix: str) -> Response:
        fmt = suffix.removeprefix(".")

        async def work() -> Response:
            split_format(f"services{suffix}")
            pool = request.app.state.pool
            await open311.check_jurisdiction(pool, request.query_params.get("jurisdiction_id"))
            return render(fmt, "services", await open311.services(pool))

        return await _answer(fmt, request, work)

    @app.get("/services/{resource}")
    async def service_definition(request: Request, resource: str) -> Response:
        fmt = resource.rpartition(".")[2]

        async def work() -> Response:
            code, _ = split_format(resource)
            pool = request.app.state.pool
            await open311.check_jurisdiction(pool, request.query_params.get("jurisdiction_id"))
            return render(fmt, "definition", await open311.service_definition(pool, code))

        return await _answer(fmt, request, work)

    @app.get("/requests{suffix}")
    async def list_requests(request: Request, suffix: str) -> Response:
        fmt = suffix.removeprefix(".")

        async def work() -> Response:
            split_format(f"requests{suffix}")
            params, state = dict(request.query_params), request.app.state
            await open311.check_jurisdiction(state.pool, params.get("jurisdiction_id"))
            statuses = _csv(params.get("status"))
            if set(statuses) - {"open", "closed"}:
                raise Open311Error(400, "status is open, closed or both (comma delimited)")
            query = open311.Query(
                ids=_csv(params.get("service_request_id")),
                service_codes=_csv(params.get("service_code")), statuses=statuses,
                start=_w3_date(params, "start_date"), end=_w3_date(params, "end_date"),
            )  # fmt: skip
            return render(fmt, "requests", await open311.requests(state.pool, state.settings,
                                                                  query))

        return await _answer(fmt, request, work)

    @app.post("/requests{suffix}")
    async def create_request(request: Request, suffix: str) -> Response:
        fmt = suffix.removeprefix(".")

        async def work() -> Response:
            split_format(f"requests{suffix}")
            params, state = await _form(request), request.app.state
            actor = await _operator(request, params.get("api_key"))
            await open311.check_jurisdiction(state.pool, params.get("jurisdiction_id"))
            filed = await open311.file_report(
                state.pool, state.temporal, state.settings, report_of(params), actor,
                request.headers.get("idempotency-key"),
            )  # fmt: skip
            # free text for people (Chinese only, as every text to citizens and integrators);
            # a program tells the two apart by the status: 201 filed, 200 merged or a retry
            notice = "已并入同一问题的在办工单" if filed.merged else "已受理"
            body = [{"service_request_id": filed.case_id, "service_notice": notice,
                     "account_id": None}]
            return render(fmt, "requests", body, 200 if filed.replayed or filed.merged else 201)

        return await _answer(fmt, request, work)

    @app.get("/requests/{resource}")
    async def get_request(request: Request, resource: str) -> Response:
        fmt = resource.rpartition(".")[2]

        async def work() -> Response:
            case_id, _ = split_format(resource)
            state = request.app.state
            await open311.check_jurisdiction(state.pool, request.query_params.get(
                "jurisdiction_id"))
            return render(fmt, "requests", [await open311.request(state.pool, state.settings,
                                                                  case_id)])

        return await _answer(fmt, request, work)

    @app.get("/tokens/{resource}")
    async def token(request: Request, resource: str) -> Response:
        fmt = resource.rpartition(".")[2]

        async def work() -> Response:
            value, _ = split_format(resource)
            await _not_blocked(request)
            try:
                case_id = await open311.token_request(request.app.state.pool, value)
            except open311.NotFound:
                await _failed(request)  # a wrong token counts, as on the citizen's actions
                raise
            return render(fmt, "requests", [{"service_request_id": case_id, "token": value}])

        return await _answer(fmt, request, work)

    return app
