"""问责 records (issue 14): the rows of ``accountability_records`` that a projection's new
events carry, keyed by the event (case, seq): a retried projection inserts each once. The
centre completes a record the ladder created without persons (:func:`complete`); the
projection never overwrites a stored record, so the completion stays."""

from __future__ import annotations

from typing import Any

import asyncpg

from jiesu.admin import changes
from jiesu.case.domain import Actor, CaseEvent, EventKind

RECORD_ENTITY = "accountability_record"  # its changes in the change log: id "<case>/<seq>"

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


class NoSuchRecord(LookupError):
    """No accountability record (case, seq)."""


_FOR_UPDATE = """
SELECT persons, decision FROM accountability_records WHERE case_id = $1 AND seq = $2 FOR UPDATE
"""


async def complete(
    pool: asyncpg.Pool, case_id: str, seq: int, persons: list[str], decision: str, by: Actor
) -> bool:
    """问责 completed by the centre: the persons held accountable and the decision, on a
    record the ladder created without them (or a correction). The change is written to the
    change log (``admin_changes``, entity ``accountability_record``) in the same transaction.
    Returns False when the record already says exactly this (a retry: nothing written)."""
    after = {"persons": persons, "decision": decision}
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(_FOR_UPDATE, case_id, seq)
        if row is None:
            raise NoSuchRecord(f"{case_id}/{seq}")
        before = {"persons": list(row["persons"]), "decision": row["decision"]}
        if before == after:
            return False
        await conn.execute(
            "UPDATE accountability_records SET persons = $3, decision = $4, completed_at = now()"
            " WHERE case_id = $1 AND seq = $2",
            case_id, seq, persons, decision,
        )  # fmt: skip
        await changes.record(conn, by, RECORD_ENTITY, f"{case_id}/{seq}", "update", before, after)
    return True
