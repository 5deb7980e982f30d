"""Notification templates: set, list, remove — each change logged (rendering:
jiesu/notify/templates.py)."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, field_validator

from jiesu.admin import changes
from jiesu.admin.errors import not_found
from jiesu.case.domain import Actor, EventKind, Line, Text
from jiesu.notify import templates as rendering
from jiesu.notify.notices import RecipientKind

ENTITY = "notification_template"


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: Annotated[Line, Field(min_length=1, max_length=300, examples=["【接诉即办】$subject"])]
    body: Annotated[Text, Field(min_length=1, max_length=5000, examples=["$body\n青河县12345"])]

    @field_validator("subject", "body")
    @classmethod
    def _template(cls, value: str) -> str:
        rendering.check(value)
        return value


class NotificationTemplate(TemplateIn):
    event_kind: EventKind
    recipient_kind: RecipientKind


def _entity_id(event_kind: EventKind, recipient_kind: str) -> str:
    return f"{event_kind.value}/{recipient_kind}"


async def list_templates(db: asyncpg.Pool) -> list[NotificationTemplate]:
    rows = await db.fetch(
        "SELECT event_kind, recipient_kind, subject, body FROM notification_templates"
        " ORDER BY event_kind, recipient_kind"
    )
    return [NotificationTemplate.model_validate(dict(r)) for r in rows]


async def put_template(
    pool: asyncpg.Pool, actor: Actor, event_kind: EventKind, recipient_kind: RecipientKind,
    body: TemplateIn,
) -> NotificationTemplate:
    new = NotificationTemplate(event_kind=event_kind, recipient_kind=recipient_kind,
                               subject=body.subject, body=body.body)
    async with pool.acquire() as conn, conn.transaction():
        old = await conn.fetchrow(
            "SELECT subject, body FROM notification_templates"
            " WHERE event_kind = $1 AND recipient_kind = $2 FOR UPDATE",
            event_kind.value, recipient_kind,
        )  # fmt: skip
        after = {"subject": new.subject, "body": new.body}
        if old is not None and dict(old) == after:
            return new
        await conn.execute(
            "INSERT INTO notification_templates (event_kind, recipient_kind, subject, body)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (event_kind, recipient_kind) DO UPDATE"
            " SET subject = EXCLUDED.subject, body = EXCLUDED.body, updated_at = now()",
            event_kind.value, recipient_kind, new.subject, new.body,
        )  # fmt: skip
        await changes.record(conn, actor, ENTITY, _entity_id(event_kind, recipient_kind),
                             "create" if old is None else "update",
                             None if old is None else dict(old), after)
    return new


async def delete_template(
    pool: asyncpg.Pool, actor: Actor, event_kind: EventKind, recipient_kind: RecipientKind
) -> None:
    """Back to the built-in wording."""
    async with pool.acquire() as conn, conn.transaction():
        old = await conn.fetchrow(
            "DELETE FROM notification_templates WHERE event_kind = $1 AND recipient_kind = $2"
            " RETURNING subject, body",
            event_kind.value, recipient_kind,
        )  # fmt: skip
        if old is None:
            raise not_found("template_not_found", "no template for "
                            f"{_entity_id(event_kind, recipient_kind)}")
        await changes.record(conn, actor, ENTITY, _entity_id(event_kind, recipient_kind),
                             "delete", dict(old), None)
