"""The doctor's repairs (``jiesu repair``): write a case's read model again, send notices again.
The examination itself is jiesu.health.checks (read-only; the API's admin endpoint runs it too).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from temporalio.client import Client

from jiesu.case.domain import CaseProjection
from jiesu.health.checks import case_state
from jiesu.readmodel.projection import write_case


async def reproject_case(
    client: Client, pool: asyncpg.Pool, case_id: str, *, rebuild: bool = False
) -> tuple[int, int]:
    """Write the case's read model again from the workflow's state (the same idempotent code
    the projection activity runs, jiesu.readmodel); returns (read-model version before, after).

    The projection never moves a row back nor rewrites an event, so a read model that
    *diverged* is rebuilt: ``rebuild`` first drops the case's event list and version. Notices
    are keyed by event number and recipient: those already written are not written again."""
    state = await case_state(client, case_id)
    before = await pool.fetchval("SELECT version FROM cases WHERE case_id = $1", case_id) or 0
    if rebuild:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM case_events WHERE case_id = $1", case_id)
            await conn.execute("UPDATE cases SET version = 0 WHERE case_id = $1", case_id)
    if state.events:
        await write_case(pool, CaseProjection(
            state=state.model_copy(update={"events": []}),
            new_events=state.events,
            version=state.events[-1].seq,
        ))
    after = await pool.fetchval("SELECT version FROM cases WHERE case_id = $1", case_id) or 0
    return before, after


# A notice is sent again from now on: failed and waiting ones at once, and a 'sending' one
# only when its lease ran out (a live dispatcher is still on it). ``attempts`` of a claimed row
# stays as it is (it fences the old claim's marks); a failed row starts its attempts afresh.
_RESEND = """
UPDATE notifications
SET status = 'pending', not_before = now(), lease_until = NULL,
    attempts = CASE WHEN status = 'sending' THEN attempts ELSE 0 END
WHERE key = ANY($1::text[])
  AND (status IN ('pending', 'failed') OR (status = 'sending' AND lease_until < now()))
RETURNING key
"""


async def resend_notices(
    pool: asyncpg.Pool, keys: Sequence[str] = (), *, case_id: str | None = None
) -> list[str]:
    """Make notices due again now (by key, or every unsent notice of a case); returns the keys
    that will be sent. Notices already sent, and notices a live dispatcher holds, are left."""
    wanted = list(keys)
    if case_id is not None:
        wanted += [r["key"] for r in await pool.fetch(
            "SELECT key FROM notifications WHERE case_id = $1 AND status <> 'sent'", case_id
        )]
    return [r["key"] for r in await pool.fetch(_RESEND, wanted)]
