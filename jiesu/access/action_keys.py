"""An action's Idempotency-Key and the body it was first sent with (migration 0026).

An action's request id comes from its caller, case, action and key (``api.cases.request_id``),
so a retry is applied once and answered with the first attempt's outcome. A key reused with
another body is a different request under an old name: :func:`claim` tells the API, which
refuses it (422 ``idempotency_key_reused``, as the intake does) instead of answering 200 for
what the first body did. Rows are kept :data:`KEEP`; the hourly archive run purges older ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import asyncpg
from pydantic import BaseModel

from jiesu.db import in_batches

KEEP = timedelta(days=30)
PURGE_BATCH = 1000


def body_digest(action: BaseModel) -> str:
    """What the caller asked, without who asked (the actor is the API's, per attempt)."""
    body: dict[str, Any] = action.model_dump(mode="json", exclude={"actor"})
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def claim(pool: asyncpg.Pool, request_id: str, digest: str) -> bool:
    """Record ``digest`` as the body of ``request_id``'s key unless one is recorded already;
    False when the recorded body is another one. Two concurrent first attempts: one records,
    the other reads what it recorded."""
    inserted = await pool.fetchval(
        "INSERT INTO action_keys (request_id, body_digest) VALUES ($1, $2)"
        " ON CONFLICT (request_id) DO NOTHING RETURNING true",
        request_id, digest,
    )  # fmt: skip
    if inserted:
        return True
    recorded = await pool.fetchval(
        "SELECT body_digest FROM action_keys WHERE request_id = $1", request_id
    )
    return recorded is None or recorded == digest  # None: purged in between — nothing to hold


_PURGE = """
DELETE FROM action_keys WHERE request_id IN (
    SELECT request_id FROM action_keys WHERE created_at < now() - $1::interval
    ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
"""


async def purge(
    pool: asyncpg.Pool,
    keep: timedelta = KEEP,
    *,
    batch: int = PURGE_BATCH,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete the keys recorded more than ``keep`` ago, ``batch`` at a time; the number deleted."""
    return await in_batches(pool, _PURGE, keep, batch=batch, progress=progress)
