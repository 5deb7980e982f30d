"""移交: a retired department's open cases handed to the unit that takes over its work.

A department retired in a reorganisation (jiesu.admin.departments) keeps the cases it holds;
its people may finish them, or the centre hands them over here. Each case it holds
(``assigned`` or ``handling``) gets a ``hand_over`` message and carries it out itself: it looks
both units up (the holder out of service, the successor in it) and starts a round with the
successor — fresh deadlines, no breach, not a 二次交办 against the retired unit (lean-case-v32,
workflows/complaint.py ``_hand_over``). The case's ``handed_over`` event says who, when and
why, for the auditors.

A case the unit holds in another state is left and said so: a replied one waits for the
citizen's rating (a rehandle would come back to the unit: hand over again then). A case where
it is only a co-handler (协办) is not its to hand over: listed in ``left`` while its
contribution is owed, for the centre to waive it (免除协办).

Each case's message carries a request id made of the call and the case; a case applies a
request id once (applied or refused). A retry of the same call — the same ``Idempotency-Key``,
unit, successor and ``after`` (a timeout, a crash half-way) — sends the same ids, and no case
applies one twice. Without a key each call is new: a case told again before it carried out the
first is refused ``reassignment_pending`` (harmless; its 办理经过 says so). The ids cannot be
guessed from the unit: a client that squatted a predictable id would have made the real
handover a silent no-op, and so did a first handover the case refused (its successor retired
meanwhile) for every later one (the red team of 2026-11-25, tests/test_v33_attacks.py). Cases
already handed over are no longer the unit's and are not listed again. At most ``limit`` cases
per call, oldest first; ``remaining`` says how many more there are after them: call again
with ``after`` = ``next``.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import asyncpg
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from jiesu.admin.departments import IN_SERVICE, name_for_work
from jiesu.admin.errors import conflict, invalid, not_found
from jiesu.case.domain import (
    Actor,
    CaseSignal,
    HandoverAction,
    Line,
    Status,
    Text,
)
from jiesu.case.lifecycle import WITH_DEPARTMENT, blank_text, check_assignee

MAX_LIMIT = 1000
_HANDED = tuple(s.value for s in WITH_DEPARTMENT)  # what lifecycle.check_handover takes
_WHY_LEFT = {  # by status: why a case the unit holds is not handed over now
    Status.REPLIED.value: "replied: the citizen's rating decides (a rehandle comes back to the "
    "unit: hand over again then)",
}


class Handover(BaseModel):
    model_config = ConfigDict(extra="forbid")

    department_id: Line = Field(min_length=1, max_length=64, description="The unit that takes "
                                "over the work: in service, not the centre")
    reason: Text = Field(min_length=2, max_length=2000, description="Why, for the case's "
                         "record, e.g. the reorganisation's decision")
    limit: int = Field(default=200, ge=1, le=MAX_LIMIT, description="Cases per call, oldest "
                       "first; call again with after = next while remaining > 0")
    after: Line | None = Field(default=None, min_length=1, max_length=100, description="The "
                               "last case of the previous call (its next): this call goes on "
                               "after it")


class LeftCase(BaseModel):
    case_id: str
    status: Status
    why: str


class HandoverSent(BaseModel):
    """What the handover sent: each case carries it out in a moment (or refuses it, in its
    办理经过); the department's standing counts what it still holds."""

    department_id: str
    to_department_id: str
    to_department_name: str = ""
    sent: list[str] = Field(description="Cases told to go to the successor")
    left: list[LeftCase] = Field(description="Once nothing remains: the cases it holds that "
                                 "are not handed over now, and why")
    remaining: int = Field(description="Cases it holds after these: call again with after = "
                           "next")
    next: str | None = Field(default=None, description="The last case sent, while more remain")


def call_id(actor: Actor, department_id: str, body: Handover, key: str | None) -> str:
    """One call of a handover: from the caller's Idempotency-Key (the same on a retry of that
    call; another for another successor or batch), else new."""
    if key is None:
        return uuid.uuid4().hex
    said = "\x1f".join((actor.name, department_id, body.department_id, body.after or "", key))
    return hashlib.sha256(said.encode()).hexdigest()[:32]


def request_id(call: str, case_id: str) -> str:
    """One case's message of one call (:func:`call_id`)."""
    return f"hand-over:{call}:{case_id}"


async def _retired(pool: asyncpg.Pool, department_id: str) -> None:
    """Out of service by the one rule the cases use too (IN_SERVICE, the database's clock)."""
    row = await pool.fetchrow(f"SELECT {IN_SERVICE} AS serving FROM departments d WHERE d.id = $1",
                              department_id)  # fmt: skip
    if row is None:
        raise not_found("department_not_found", f"no department {department_id!r}")
    if row["serving"]:
        raise conflict("department_in_service", f"department {department_id!r} is in service: "
                       "retire it first (its cases are handed over from then on)")


async def _successor(pool: asyncpg.Pool, department_id: str, body: Handover) -> str:
    blank = blank_text({"reason": body.reason})  # as the case's own 移交 (api/routers)
    if blank is not None:
        raise invalid(blank.code, blank.reason)
    centre = check_assignee(body.department_id)
    if centre is not None:
        raise invalid(centre.code, centre.reason)
    if body.department_id == department_id:
        raise invalid("same_department", "name another unit: this one is out of service")
    return await name_for_work(pool, body.department_id)


# The unit's cases a handover gives on, oldest first, after the case $3 (none: from the first)
_HELD = """
FROM cases WHERE department_id = $1 AND status = ANY($2::text[])
  AND ($3::text IS NULL OR (received_at, case_id) > (
       SELECT received_at, case_id FROM cases WHERE case_id = $3))
"""


async def _cursor(pool: asyncpg.Pool, after: str | None) -> None:
    """``after`` names a case (else every comparison with it is unknown and nothing listed)."""
    if after is not None and not await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM cases WHERE case_id = $1)", after
    ):
        raise invalid("invalid_cursor", f"after: no case {after!r}")


async def _held(pool: asyncpg.Pool, department_id: str, limit: int,
                after: str | None) -> list[str]:  # fmt: skip
    rows = await pool.fetch(f"SELECT case_id {_HELD} ORDER BY received_at, case_id LIMIT $4",
                            department_id, list(_HANDED), after, limit)  # fmt: skip
    return [r["case_id"] for r in rows]


async def _count_held(pool: asyncpg.Pool, department_id: str, after: str | None) -> int:
    count: int = await pool.fetchval(f"SELECT count(*) {_HELD}", department_id,
                                     list(_HANDED), after)  # fmt: skip
    return count


# Open cases where the unit is a co-handler (协办) still owing its contribution: the lead unit
# cannot reply until the centre waives it (免除协办).
_CO_HANDLING = """
SELECT case_id, status FROM cases
WHERE status <> $2 AND department_id IS DISTINCT FROM $1
  AND EXISTS (SELECT 1 FROM jsonb_array_elements(state -> 'co_handlers') c
              WHERE c ->> 'department_id' = $1 AND c ->> 'contributed_at' IS NULL
                AND NOT coalesce((c ->> 'waived')::boolean, false))
ORDER BY received_at, case_id LIMIT $3
"""
_CO_HANDLER_LEFT = ("co-handler (协办) still owing its contribution: the lead unit cannot reply "
                    "until the centre waives it (免除协办)")


async def _left(pool: asyncpg.Pool, department_id: str, exclude: list[str]) -> list[LeftCase]:
    """``exclude``: the cases just sent (the read model may show one reassigning)."""
    rows = await pool.fetch(
        "SELECT case_id, status FROM cases WHERE department_id = $1"
        " AND status <> ALL($2::text[]) AND case_id <> ALL($4::text[])"
        " ORDER BY received_at, case_id LIMIT $3",
        department_id, [*_HANDED, Status.CLOSED.value], MAX_LIMIT, exclude,
    )  # fmt: skip
    co = await pool.fetch(_CO_HANDLING, department_id, Status.CLOSED.value, MAX_LIMIT)
    return [
        *(LeftCase(case_id=r["case_id"], status=r["status"],
                   why=_WHY_LEFT.get(r["status"], "being passed on already")) for r in rows),
        *(LeftCase(case_id=r["case_id"], status=r["status"], why=_CO_HANDLER_LEFT) for r in co),
    ]  # fmt: skip


async def _signal(client: Client, case_id: str, action: HandoverAction) -> bool:
    """False when the case's workflow has ended (closed after the read model was read)."""
    try:
        await client.get_workflow_handle(case_id).signal(CaseSignal.HAND_OVER.value, action)
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def hand_over(
    pool: asyncpg.Pool, client: Client, actor: Actor, department_id: str, body: Handover,
    *, key: str | None = None,
) -> HandoverSent:  # fmt: skip
    """Send each open case of the retired ``department_id`` to ``body.department_id`` (at most
    ``body.limit``, after ``body.after``); ``key``: the caller's Idempotency-Key."""
    await _retired(pool, department_id)
    name = await _successor(pool, department_id, body)
    await _cursor(pool, body.after)
    call = call_id(actor, department_id, body, key)
    sent: list[str] = []
    listed = await _held(pool, department_id, body.limit, body.after)
    for case_id in listed:
        action = HandoverAction(
            actor=actor.model_copy(update={"request_id": request_id(call, case_id),
                                           "sent_at": datetime.now(UTC)}),
            from_department_id=department_id,
            department_id=body.department_id,
            department_name=name,
            reason=body.reason,
        )  # fmt: skip
        if await _signal(client, case_id, action):
            sent.append(case_id)
    remaining = await _count_held(pool, department_id, listed[-1]) if listed else 0
    # what stays is said once, at the last batch (a scan of the open cases' co-handlers)
    left = [] if remaining else await _left(pool, department_id, exclude=sent)
    return HandoverSent(department_id=department_id, to_department_id=body.department_id,
                        to_department_name=name, sent=sent, left=left, remaining=remaining,
                        next=listed[-1] if remaining else None)  # fmt: skip
