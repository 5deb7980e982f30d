"""The centre's work lists from the read model (issue 14): extension requests and returns
waiting for a decision (延期待审, 退单待审) and accountability records (问责记录)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from jiesu.case.domain import EventKind, sql_status
from jiesu.case.lifecycle import WITH_DEPARTMENT
from jiesu.readmodel.boards import BOARD_ROWS, Board, Listed, read

# A request is pending when it is the case's latest extension event, nothing ended its round
# since (a reassignment or the close clears it), and the case is still with a department.
_ENDING = (EventKind.EXTENSION_REQUESTED, EventKind.EXTENSION_DECIDED, EventKind.REASSIGNED,
           EventKind.CLOSED)  # fmt: skip
# 延期待审: read from the cases still with a department (cases_status), each case's latest
# ending event from case_events_extension — not every case's latest event first (a
# DISTINCT ON over the index, one entry per case ever closed or reassigned).
EXTENSIONS = Board(
    """c.case_id, c.title, c.department_id, c.urgency, c.finish_deadline,
       e.at AS requested_at, e.actor AS requested_by, e.data""",
    f"""FROM cases c CROSS JOIN LATERAL (
    SELECT kind, at, actor, data FROM case_events
    WHERE case_id = c.case_id AND kind IN ({", ".join(f"'{k.value}'" for k in _ENDING)})
    ORDER BY seq DESC LIMIT 1
) e
WHERE e.kind = '{EventKind.EXTENSION_REQUESTED.value}'
  AND c.status IN ({sql_status(*WITH_DEPARTMENT)})
  AND ($1::text IS NULL OR c.department_id = $1)""",
    "(e.data->>'decision_due')::timestamptz NULLS LAST, e.at, c.case_id",
    arity=1,
)

# A return is pending when its ``returned`` event awaits approval and is the case's latest
# return event (a decision, a reassignment or the close ends it).
_RETURN_KINDS = (EventKind.RETURNED, EventKind.RETURN_UPHELD, EventKind.RETURN_REJECTED,
                 EventKind.REASSIGNED, EventKind.CLOSED)  # fmt: skip
_PENDING_RETURNS = f"""
SELECT c.case_id, c.title, c.department_id, c.urgency, c.finish_deadline,
       e.at AS requested_at, e.actor AS requested_by, e.data
FROM (
    SELECT DISTINCT ON (case_id) case_id, kind, at, actor, data
    FROM case_events
    WHERE kind IN ({", ".join(f"'{k.value}'" for k in _RETURN_KINDS)})
    ORDER BY case_id, seq DESC
) e
JOIN cases c USING (case_id)
WHERE e.kind = '{EventKind.RETURNED.value}' AND (e.data->>'awaiting_approval')::boolean
  AND c.status IN ({sql_status(*WITH_DEPARTMENT)})
  AND ($1::text IS NULL OR c.department_id = $1)
ORDER BY (e.data->>'decision_due')::timestamptz NULLS LAST, e.at, c.case_id
LIMIT $2
"""

_RECORD_COLUMNS = """
SELECT a.case_id, a.seq, a.department_id, d.name AS department_name, a.persons, a.reason,
       a.decision, a.ordered, a.recorded_at
FROM accountability_records a LEFT JOIN departments d ON d.id = a.department_id
"""
_ACCOUNTABILITY = _RECORD_COLUMNS + """
WHERE ($1::text IS NULL OR a.department_id = $1)
  AND ($2::timestamptz IS NULL OR a.recorded_at >= $2)
  AND ($3::timestamptz IS NULL OR a.recorded_at < $3)
ORDER BY a.recorded_at DESC, a.case_id, a.seq
LIMIT $4
"""


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _pending(r: asyncpg.Record) -> dict[str, Any]:
    """What every pending request shows: the case, its department and who asked when."""
    return {
        "case_id": r["case_id"],
        "title": r["title"],
        "department_id": r["department_id"],
        "urgency": r["urgency"],
        "finish_deadline": r["finish_deadline"],
        "requested_at": r["requested_at"],
        "requested_by": r["requested_by"].get("name", "") if r["requested_by"] else "",
    }


def _extension(r: asyncpg.Record) -> dict[str, Any]:
    return {
        **_pending(r),
        "reasons": r["data"].get("reasons", ""),
        "measures": r["data"].get("measures", ""),
        "promised_finish": _when(r["data"].get("promised_finish")),
        "decision_due": _when(r["data"].get("decision_due")),
    }


async def pending_extensions(
    pool: asyncpg.Pool, department_id: str | None, limit: int
) -> list[dict[str, Any]]:
    return [_extension(r) for r in await pool.fetch(EXTENSIONS.rows_sql, department_id, limit)]


async def extensions_board(
    pool: asyncpg.Pool, department_id: str | None, limit: int = BOARD_ROWS
) -> Listed:
    """延期待审 as a board: the first ``limit`` requests and how many are pending in all."""
    return await read(pool, EXTENSIONS, department_id, limit=limit, shape=_extension)


async def pending_returns(
    pool: asyncpg.Pool, department_id: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await pool.fetch(_PENDING_RETURNS, department_id, limit)
    return [
        {
            **_pending(r),
            "reason": r["data"].get("reason", ""),
            "decision_due": _when(r["data"].get("decision_due")),
        }
        for r in rows
    ]


async def accountability_records(
    pool: asyncpg.Pool,
    department_id: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = await pool.fetch(_ACCOUNTABILITY, department_id, since, until, limit)
    return [dict(r) for r in rows]


async def accountability_record(
    pool: asyncpg.Pool, case_id: str, seq: int
) -> dict[str, Any] | None:
    row = await pool.fetchrow(_RECORD_COLUMNS + "WHERE a.case_id = $1 AND a.seq = $2", case_id, seq)
    return None if row is None else dict(row)


async def accountability_counts(
    conn: asyncpg.Connection | asyncpg.Pool, since: datetime, until: datetime
) -> dict[str, int]:
    """问责 records per department in [since, until): counted in the evaluation."""
    rows = await conn.fetch(
        "SELECT department_id, count(*) AS n FROM accountability_records "
        "WHERE recorded_at >= $1 AND recorded_at < $2 AND department_id IS NOT NULL "
        "GROUP BY department_id",
        since,
        until,
    )
    return {r["department_id"]: r["n"] for r in rows}



