"""The change log (变更记录): every administrative change, who made it, when, and the record
before and after. Written in the same transaction as the change itself; the table refuses
UPDATE and DELETE (migration 0010), so the log only grows."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel

from jiesu.case.domain import Actor

Action = Literal["create", "update", "delete", "retire", "reinstate"]
MAX_LIMIT = 1000


class Change(BaseModel):
    id: int
    at: datetime
    actor: Actor
    entity: str
    entity_id: str
    action: Action
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def _jsonable(record: dict[str, Any] | None) -> str | None:
    return None if record is None else json.dumps(record, default=str, ensure_ascii=False)


async def record(
    conn: asyncpg.Connection,
    actor: Actor,
    entity: str,
    entity_id: str,
    action: Action,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    """Append one change; call inside the transaction that makes it."""
    await conn.execute(
        "INSERT INTO admin_changes (actor, entity, entity_id, action, before, after)"
        " VALUES ($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb)",
        actor.model_dump(mode="json"), entity, entity_id, action,
        _jsonable(before), _jsonable(after),
    )  # fmt: skip


async def list_changes(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    entity: str | None = None,
    entity_id: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[Change]:
    """Newest first; page with ``before_id`` (the smallest id of the previous page)."""
    rows = await db.fetch(
        "SELECT id, at, actor, entity, entity_id, action, before, after FROM admin_changes"
        " WHERE ($1::text IS NULL OR entity = $1) AND ($2::text IS NULL OR entity_id = $2)"
        " AND ($3::bigint IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
        entity, entity_id, before_id, min(limit, MAX_LIMIT),
    )  # fmt: skip
    return [Change.model_validate(dict(r)) for r in rows]
