"""问责 records (issue 14): the rows of ``accountability_records`` that a projection's new
events carry. Keyed by the event (case, seq): a retried projection inserts each once."""

from __future__ import annotations

from typing import Any

import asyncpg

from jiesu.case.domain import CaseEvent, EventKind

_INSERT = """
INSERT INTO accountability_records (
    case_id, seq, department_id, persons, reason, decision, ordered, recorded_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (case_id, seq) DO NOTHING
"""


def _row(case_id: str, event: CaseEvent) -> tuple[Any, ...]:
    d = event.data  # read with defaults: an odd event must never stall the read model
    persons = d.get("persons") if isinstance(d.get("persons"), list) else []
    return (
        case_id,
        event.seq,
        d.get("department_id"),
        [str(p) for p in persons],
        str(d.get("reason") or ""),
        str(d.get("decision") or ""),
        bool(d.get("ordered")),
        event.at,
    )


async def store(conn: asyncpg.Connection, case_id: str, events: list[CaseEvent]) -> None:
    rows = [_row(case_id, e) for e in events if e.kind is EventKind.ACCOUNTABILITY_RECORDED]
    if rows:
        await conn.executemany(_INSERT, rows)
