"""Liveness for load balancers and docker-compose health checks."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Pool

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The API is up and reaches its database")
async def healthz(pool: Pool) -> dict[str, str]:
    await pool.fetchval("SELECT 1")
    return {"status": "ok"}
