"""Notification templates (通知模板): an admin's wording for one kind of notice.

A template replaces the built-in subject and body of the notices of one event kind to one
kind of recipient (``notification_templates``; managed by jiesu/admin/templates.py). It is a
``string.Template`` — ``$case_id``, ``${subject}`` — never ``str.format``, whose attribute
look-ups a template writer could abuse. The built-in text stays available as ``$subject`` and
``$body``, so a county can add a line without rewriting what the rules say.
"""

from __future__ import annotations

from string import Template

import asyncpg

from jiesu.notify.notices import Notice

FIELDS = frozenset({"case_id", "subject", "body", "recipient_id", "event_kind"})
Templates = dict[tuple[str, str], tuple[str, str]]  # (event kind, recipient kind) → texts


def check(text: str) -> None:
    """ValueError when ``text`` is not a template of the known fields."""
    template = Template(text)
    if not template.is_valid():
        raise ValueError("a template uses $name or ${name}; write $$ for a dollar sign")
    unknown = set(template.get_identifiers()) - FIELDS
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}; known: {sorted(FIELDS)}")


async def load(conn: asyncpg.Connection | asyncpg.Pool) -> Templates:
    rows = await conn.fetch(
        "SELECT event_kind, recipient_kind, subject, body FROM notification_templates"
    )
    return {(r["event_kind"], r["recipient_kind"]): (r["subject"], r["body"]) for r in rows}


def apply(notice: Notice, templates: Templates) -> Notice:
    """The notice in its template's words, or as it is when there is none."""
    texts = templates.get((notice.event_kind.value, notice.recipient_kind))
    if texts is None:
        return notice
    fields = {
        "case_id": notice.case_id, "subject": notice.subject, "body": notice.body,
        "recipient_id": notice.recipient_id, "event_kind": notice.event_kind.value,
    }  # fmt: skip
    # safe_substitute: a template stored before a field was renamed still renders.
    subject, body = (Template(t).safe_substitute(fields) for t in texts)
    return notice.model_copy(update={"subject": subject, "body": body})
