"""The FastAPI application. ``uvicorn api.main:app`` serves it with settings from the
environment; tests call :func:`create_app` with their own Temporal client and pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI
from temporalio.client import Client

from api import errors
from api.routers import audit as audit_routes
from api.routers import citizen, complaints, handling, health, stats, supervision
from jiesu import db
from jiesu.client import connect
from jiesu.config import Settings, get_settings

DESCRIPTION = """
Jiesu (接诉即办) — a 12345-style government service hotline.

Every complaint is a case (工单) with its own durable workflow: intake (受理), routing to the
responsible department (派单), acceptance (签收), contact with the citizen, reply (办结答复) and
the citizen's rating (评价), under hard time limits.

Authenticate with an API key: `Authorization: Bearer <key>`. Errors always have the shape
`{"error": {"code": "...", "message": "...", "details": [...]}}`.
"""


def create_app(
    settings: Settings | None = None,
    *,
    client: Client | None = None,
    pool: asyncpg.Pool | None = None,
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.temporal = client or await connect(settings)
        own_pool = pool is None
        app.state.pool = pool or await db.create_pool(settings.database_url)
        try:
            yield
        finally:
            if own_pool:
                await app.state.pool.close()

    app = FastAPI(
        title="Jiesu API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=errors.COMMON_ERRORS,
    )
    errors.install(app)
    app.include_router(health.router)
    app.include_router(complaints.router, prefix="/api/v1")
    app.include_router(handling.router, prefix="/api/v1")
    app.include_router(supervision.router, prefix="/api/v1")
    app.include_router(citizen.router, prefix="/api/v1")
    app.include_router(audit_routes.router, prefix="/api/v1")
    app.include_router(stats.router, prefix="/api/v1")
    return app


app = create_app()
