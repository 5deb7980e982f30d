"""The FastAPI application. ``python -m api`` (uvicorn's ``api.main:app``, api/__main__.py)
serves it with settings from the environment; tests call :func:`create_app` with their own
Temporal client and pool."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import Depends, FastAPI
from opentelemetry.sdk.trace import TracerProvider
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client

from api import errors, media, open311
from api.auth_limit import AuthFailureLimiter
from api.body_limit import BodyLimit
from api.console.app import mount as mount_console
from api.docs import STATIC_PREFIX, offline_app
from api.headers import SecurityHeaders
from api.observability import MetricsListener, instrument_metrics, instrument_tracing
from api.routers import (
    admin,
    administration,
    attachments,
    channels,
    citizen,
    complaints,
    content,
    grid,
    handling,
    health,
    keys,
    knowledge,
    oversight,
    self_service,
    session,
    stats,
    supervision,
    users,
)
from api.routers import audit as audit_routes
from jiesu import db
from jiesu.client import connect
from jiesu.config import Settings, get_settings
from jiesu.exiting import CannotStart
from jiesu.gc_tuning import freeze_startup_objects
from jiesu.intake import similarity
from jiesu.notify import sms
from jiesu.readmodel.changes import ProjectionFeed
from jiesu.stats.answers import Answers
from jiesu.telemetry import start_tracing, temporal_interceptors

log = logging.getLogger(__name__)

DESCRIPTION = """
Jiesu (接诉即办) — a 12345-style government service hotline.

Every complaint is a case (工单) with its own durable workflow: intake (受理), routing to the
responsible department (派单), acceptance (签收), contact with the citizen, reply (办结答复) and
the citizen's rating (评价), under hard time limits.

Authenticate with an API key: `Authorization: Bearer <key>` (admins create and revoke keys at
`/api/v1/admin/keys` or with `jiesu keys`), or as a person with the `jiesu_session` cookie
from `POST /api/v1/session` (unsafe methods then carry the session's CSRF token in
`X-CSRF-Token`). Too many failed authentications from one client
are answered `429` with `Retry-After`. Errors always have the shape
`{"error": {"code": "...", "message": "...", "details": [...], "request_id": "..."}}`; every
response carries an `X-Request-ID` header (yours, when you send a sane one). `503` with
`Retry-After` means Temporal (`temporal_unavailable`) or PostgreSQL (`database_unavailable`)
cannot be reached. Every `error.code` and its meaning is listed in the `ErrorBody.code`
field's `x-error-codes` (and docs/errors.md). Action endpoints take an `Idempotency-Key`
header: a retry with the same key is answered with the original result and is never applied
twice.
"""


def wrap_outermost(app: FastAPI, middleware: Callable[..., ASGIApp], **options: Any) -> None:
    """Put ``middleware`` outside Starlette's ServerErrorMiddleware (which ``add_middleware``
    cannot): so that it also sees the 500 answers that ServerErrorMiddleware sends."""
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: middleware(build(), **options)  # type: ignore[method-assign]


class RefusalInOneLine:
    """uvicorn logs the message of a failed start-up, and Starlette makes that message the
    traceback. A refusal to start (jiesu.exiting.CannotStart: the database's schema behind
    this code) says all there is to say in its own one line: that line is logged instead."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def say(message: Message) -> None:
            # Sent from the router's except block: the exception it handles is the refusal.
            refusal = sys.exc_info()[1]
            if message["type"] == "lifespan.startup.failed" and isinstance(refusal, CannotStart):
                message = {**message, "message": str(refusal)}
            await send(message)

        await self.app(scope, receive, say)


async def _check_schema(pool: asyncpg.Pool, own_pool: bool) -> None:
    """Refuse to start on a database behind this code: a page reading a column not there yet
    would answer 500 (docs/operations.md, Upgrading). A database that cannot be reached is
    not refused: the API starts and answers 503 until it is back, as it always has."""
    try:
        await db.check_schema(pool, "API")
    except db.SchemaNotReady:
        if own_pool:
            await pool.close()
        raise  # uvicorn: one line (RefusalInOneLine), exit 3
    except Exception as err:
        if not errors.is_database_down(err):
            raise
        log.warning("the database's schema was not checked: PostgreSQL cannot be reached (%s)",
                    err)  # fmt: skip


async def build_routes(app: FastAPI) -> None:
    """FastAPI builds an included router's routes (their fields, validators, dependency
    trees: ~33,000 objects here) when a request first reaches them. One request that matches
    no route walks them all: built at start-up, they are frozen with the rest
    (jiesu.gc_tuning) instead of being walked by every full collection afterwards."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/-", "raw_path": b"/-", "root_path": "", "query_string": b"",
        "headers": [], "server": ("localhost", 80), "client": ("127.0.0.1", 0),
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: dict[str, Any]) -> None:
        pass  # the 404 goes nowhere

    await app.router(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    client: Client | None = None,
    pool: asyncpg.Pool | None = None,
    sms_gateway: sms.SmsGateway | None = None,
    tracer_provider: TracerProvider | None = None,
    freeze_gc: bool = False,
) -> FastAPI:
    """``tracer_provider``: trace requests with it (tests); by default the OTLP one when
    OTEL_EXPORTER_OTLP_ENDPOINT is set, else no tracing at all (jiesu.telemetry).
    ``freeze_gc``: once started, keep the start-up objects out of the garbage collector's
    full collections (jiesu.gc_tuning) — the served app's, not the tests' many apps."""
    settings = settings or get_settings()
    own_tracing = tracer_provider is None
    tracer_provider = tracer_provider or start_tracing("jiesu-api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        await asyncio.to_thread(similarity.warm_up)  # not inside the first intake's request
        # Lazy: the API starts (and answers 503 temporal_unavailable) while Temporal is down.
        app.state.temporal = client or await connect(
            settings, lazy=True, interceptors=temporal_interceptors(tracer_provider)
        )
        own_pool = pool is None
        app.state.pool = pool or await db.create_pool(settings.database_url)
        await _check_schema(app.state.pool, own_pool)
        # Counted in PostgreSQL (jiesu.rate_limits): shared by the replicas, kept over restarts.
        app.state.auth_limiter = AuthFailureLimiter.from_settings(settings, app.state.pool)
        app.state.self_service_limits = self_service.limits_from_settings(
            settings, app.state.pool
        )
        app.state.projection_feed = ProjectionFeed(settings.database_url)
        await app.state.projection_feed.start()  # down: actions ask the workflow (cases.act)
        app.state.sms_gateway = sms_gateway or sms.gateway_from_settings(settings, app.state.pool)
        listener = MetricsListener(settings.api_metrics_address, app.state.metrics_registry)
        if settings.api_metrics_address:
            listener.start()
        if freeze_gc:
            await build_routes(app)
            freeze_startup_objects()
        # The mounted Open311 sub-application runs no lifespan of its own: it shares ours.
        for name in ("settings", "temporal", "pool", "auth_limiter"):
            setattr(georeport.state, name, getattr(app.state, name))
        try:
            yield
        finally:
            listener.stop()
            await app.state.projection_feed.close()
            if own_pool:
                await app.state.pool.close()
            if own_tracing and tracer_provider is not None:
                tracer_provider.shutdown()  # sends the spans still batched

    app = offline_app(
        title="Jiesu API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=errors.COMMON_ERRORS,
        dependencies=[Depends(media.json_bodies_only)],
    )
    app.state.freeze_gc = freeze_gc
    app.state.stat_answers = Answers()  # statistics answers kept until the figures move
    if tracer_provider is not None:
        # Before wrap_outermost: the instrumentation rebuilds Starlette's own stack (it expects
        # ServerErrorMiddleware outermost), and SecurityHeaders then wraps the result.
        instrument_tracing(app, tracer_provider)
    wrap_outermost(app, SecurityHeaders, cacheable_prefix=STATIC_PREFIX)
    wrap_outermost(app, RefusalInOneLine)
    # Before errors.install: inside RequestContext, so a 413 carries the request id.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    errors.install(app)
    # After errors.install: outside RequestContext, so a request that raised is counted as
    # the 500 or 503 it was answered with.
    app.state.metrics_registry = instrument_metrics(app)
    app.include_router(health.router)
    app.include_router(complaints.router, prefix="/api/v1")
    app.include_router(handling.router, prefix="/api/v1")
    app.include_router(supervision.router, prefix="/api/v1")
    app.include_router(oversight.router, prefix="/api/v1")
    app.include_router(citizen.router, prefix="/api/v1")
    app.include_router(audit_routes.router, prefix="/api/v1")
    app.include_router(stats.router, prefix="/api/v1")
    app.include_router(keys.router, prefix="/api/v1")
    app.include_router(session.router, prefix="/api/v1")
    app.include_router(session.audit_router, prefix="/api/v1")  # /audit/sign-ins
    app.include_router(users.router, prefix="/api/v1")
    app.include_router(channels.router, prefix="/api/v1")
    app.include_router(attachments.router, prefix="/api/v1")
    app.include_router(self_service.router, prefix="/api/v1")
    app.include_router(self_service.form_router)  # /report, the public form
    app.include_router(administration.router, prefix="/api/v1")
    app.include_router(content.router, prefix="/api/v1")
    app.include_router(knowledge.router, prefix="/api/v1")
    app.include_router(grid.router, prefix="/api/v1")
    app.include_router(admin.router)  # /api/v1/admin/doctor and /metrics
    mount_console(app, settings)  # /console and /my/<token> (api/console)
    georeport = open311.build()
    app.mount(open311.PREFIX, georeport)  # GeoReport v2, its own formats and errors
    return app


app = create_app(freeze_gc=True)
