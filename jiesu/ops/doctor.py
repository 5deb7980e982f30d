"""The doctor's repairs (``jiesu repair``): write a case's read model again, send notices again,
set aside a notice given up on that must never be sent. The examination itself is
jiesu.health.checks (read-only; the API's admin endpoint runs it too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

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


# --- setting a given-up notice aside -------------------------------------------------------

# Only a 'failed' notice is set aside: the dispatcher gave up on it, so none holds it, and no
# statement of the outbox moves it again (each mark is fenced by status = 'sending'; the claim
# takes pending and expired sending rows; _RESEND takes pending, failed and expired sending
# rows). The row keeps its attempts and last_error: why it failed stays beside why it was set
# aside. Migration 0045's CHECK refuses a set-aside row without who, when and why.
_SET_ASIDE = """
UPDATE notifications
SET status = 'set_aside', set_aside_at = now(), set_aside_by = $2, set_aside_reason = $3
WHERE key = ANY($1::text[]) AND status = 'failed'
RETURNING key
"""

_NOTICES_NAMED = """
SELECT key, status, set_aside_at, set_aside_by, set_aside_reason FROM notifications
WHERE key = ANY($1::text[]) OR case_id = $2
ORDER BY id
FOR UPDATE
"""


@dataclass
class SetAside:
    """What ``set_aside_notices`` did with each notice asked for."""

    set_aside: list[str] = field(default_factory=list)  # failed until now: set aside
    already: dict[str, datetime] = field(default_factory=dict)  # the same who and why, before
    refused: dict[str, str] = field(default_factory=dict)  # key → why it was left as it was

    @property
    def ok(self) -> bool:
        return not self.refused and bool(self.set_aside or self.already)


class EmptyReason(ValueError):
    """A notice is never set aside without a reason and a name: the audit trail says why."""


def _judge(
    outcome: SetAside, wanted: Sequence[str], rows: dict[str, asyncpg.Record], *,
    asked: set[str], by: str, reason: str,
) -> None:  # fmt: skip
    """Which of the notices wanted were set aside before by the same who and why (``already``)
    and which are refused, and why; the failed ones are left to be set aside."""
    for key in wanted:
        row = rows.get(key)
        if row is None:
            outcome.refused[key] = "unknown notice"
        elif row["status"] == "failed":
            continue
        elif row["status"] == "set_aside" and (row["set_aside_by"],
                                               row["set_aside_reason"]) == (by, reason):
            outcome.already[key] = row["set_aside_at"]
        elif key not in asked:
            continue  # of --case, and not failed: not meant (only its failed ones are)
        elif row["status"] == "set_aside":
            outcome.refused[key] = (
                f"set aside already on {row['set_aside_at'].isoformat()} by "
                f"{row['set_aside_by']}: {row['set_aside_reason']}")
        else:
            outcome.refused[key] = (f"not failed but {row['status']}: only a notice the "
                                    "outbox gave up on is set aside")


async def set_aside_notices(
    pool: asyncpg.Pool, keys: Sequence[str] = (), *, case_id: str | None = None, by: str,
    reason: str,
) -> SetAside:  # fmt: skip
    """Set aside notices the outbox gave up on (by key, or every failed notice of a case), so
    the doctor no longer lists them and nothing ever sends them; who, when and why recorded.

    Idempotent: a notice set aside before by the same person for the same reason is reported
    as ``already`` and not touched. Any other notice is refused with why: not failed
    (pending, sending, sent, skipped), set aside before by someone else or for another reason,
    unknown key — and then none is set aside (a typo among the keys changes nothing)."""
    by, reason = by.strip(), reason.strip()
    if not reason or not by:
        raise EmptyReason("a reason and a name are required to set a notice aside")
    outcome = SetAside()
    async with pool.acquire() as conn, conn.transaction():
        rows = {r["key"]: r for r in await conn.fetch(_NOTICES_NAMED, list(keys), case_id)}
        wanted = list(dict.fromkeys([*keys, *(rows if case_id is not None else ())]))
        failed = [k for k in wanted if k in rows and rows[k]["status"] == "failed"]
        _judge(outcome, wanted, rows, asked=set(keys), by=by, reason=reason)
        if failed and not outcome.refused:  # all or nothing: a slip in the list changes nothing
            outcome.set_aside = [r["key"] for r in await conn.fetch(_SET_ASIDE, failed, by,
                                                                    reason)]  # fmt: skip
    return outcome


_SET_ASIDE_LIST = """
SELECT key, case_id, recipient_kind, recipient_id, channel, attempts, last_error,
       set_aside_at, set_aside_by, set_aside_reason
FROM notifications
WHERE status = 'set_aside' AND ($1::text IS NULL OR case_id = $1)
  AND ($2::text[] IS NULL OR key = ANY($2::text[]))
ORDER BY set_aside_at, id
"""


async def notices_set_aside(
    pool: asyncpg.Pool, case_id: str | None = None, keys: Sequence[str] | None = None
) -> list[asyncpg.Record]:
    """The audit trail: every notice set aside (or a case's, or those of ``keys``), oldest
    decision first, with who, when and why, and why the outbox had given up on it."""
    return list(await pool.fetch(_SET_ASIDE_LIST, case_id,
                                 None if keys is None else list(keys)))
