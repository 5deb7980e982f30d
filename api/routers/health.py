"""Liveness and readiness, for load balancers, orchestrators and docker-compose:

- ``GET /healthz`` — the API process is alive; it asks nothing of anybody (a restart cures
  what makes it fail);
- ``GET /readyz`` — it can serve: PostgreSQL and Temporal answer and a worker polls the case
  task queue (``jiesu.health.readiness``); otherwise ``503 not_ready`` naming each failed check.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AppSettings, Pool, Temporal
from api.errors import RETRY_AFTER_SECONDS, ApiError
from jiesu.health.readiness import Readiness, readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The API process is alive (checks no dependency)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The API can serve: PostgreSQL, Temporal and a worker polling the task queue "
    "(503 not_ready names the failed checks)",
)
async def readyz(client: Temporal, pool: Pool, settings: AppSettings) -> Readiness:
    answer = await readiness(client, pool, settings.task_queue)
    if not answer.ready:
        failed = [c for c in answer.checks if not c.ok]
        raise ApiError(
            503, "not_ready", "not ready: " + ", ".join(c.check for c in failed),
            [c.model_dump() for c in failed],
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )  # fmt: skip
    return answer
