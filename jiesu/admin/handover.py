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

Each case's message carries a request id made of the unit, the moment it was retired and the
case: a retry of the whole handover (a timeout, a crash half-way) sends the messages again and
no case applies one twice; cases already handed over are no longer the unit's and are not
listed again. At most ``limit`` cases per call: ``remaining`` says how many more there are.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from jiesu.admin.departments import name_for_work
from jiesu.admin.errors import conflict, invalid, not_found
from jiesu.case.domain import (
    CENTRE_ID,
    Actor,
    CaseSignal,
    HandoverAction,
    Line,
    Status,
    Text,
)
from jiesu.case.lifecycle import blank_text

MAX_LIMIT = 1000
_HANDED = (Status.ASSIGNED.value, Status.HANDLING.value)  # lifecycle.WITH_DEPARTMENT
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
    limit: int = Field(default=200, ge=1, le=MAX_LIMIT, description="Cases per call; call again "
                       "while remaining > 0")


class LeftCase(BaseModel):
    case_id: str
    status: Status
    why: str


class HandoverSent(BaseModel):
    """What the handover sent: each case carries it out in a moment (or refuses it, in its
    办理经过); the department's standing counts what it still holds."""

    department_id: str
    to_department_id: str
    sent: list[str] = Field(description="Cases told to go to the successor")
    left: list[LeftCase] = Field(description="Cases it holds that are not handed over now")
    remaining: int = Field(description="More cases to hand over: call again")


def request_id(department_id: str, retired_at: datetime, case_id: str) -> str:
    """One case's message of this retirement's handover: the same on every retry."""
    return f"hand-over:{department_id}:{int(retired_at.timestamp() * 1e6)}:{case_id}"


async def _retired(pool: asyncpg.Pool, department_id: str) -> datetime:
    row = await pool.fetchrow("SELECT retired_at FROM departments WHERE id = $1", department_id)
    if row is None:
        raise not_found("department_not_found", f"no department {department_id!r}")
    retired_at = row["retired_at"]
    if retired_at is None or retired_at > datetime.now(UTC):
        raise conflict("department_in_service", f"department {department_id!r} is in service: "
                       "retire it first (its cases are handed over from then on)")
    return retired_at


async def _successor(pool: asyncpg.Pool, department_id: str, body: Handover) -> str:
    blank = blank_text({"reason": body.reason})  # as the case's own 移交 (api/routers)
    if blank is not None:
        raise invalid(blank.code, blank.reason)
    if body.department_id == CENTRE_ID:
        raise invalid("centre_not_assignee", "the hotline centre dispatches cases; name the "
                      "unit that takes over the work")
    if body.department_id == department_id:
        raise invalid("same_department", "name another unit: this one is out of service")
    return await name_for_work(pool, body.department_id)


async def _held(pool: asyncpg.Pool, department_id: str, limit: int) -> list[str]:
    rows = await pool.fetch(
        "SELECT case_id FROM cases WHERE department_id = $1 AND status = ANY($2::text[])"
        " ORDER BY received_at, case_id LIMIT $3",
        department_id, list(_HANDED), limit,
    )  # fmt: skip
    return [r["case_id"] for r in rows]


async def _count_held(pool: asyncpg.Pool, department_id: str) -> int:
    return await pool.fetchval(
        "SELECT count(*) FROM cases WHERE department_id = $1 AND status = ANY($2::text[])",
        department_id, list(_HANDED),
    )  # fmt: skip


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


async def _left(pool: asyncpg.Pool, department_id: str) -> list[LeftCase]:
    rows = await pool.fetch(
        "SELECT case_id, status FROM cases WHERE department_id = $1"
        " AND status <> ALL($2::text[]) ORDER BY received_at, case_id LIMIT $3",
        department_id, [*_HANDED, Status.CLOSED.value], MAX_LIMIT,
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
    pool: asyncpg.Pool, client: Client, actor: Actor, department_id: str, body: Handover
) -> HandoverSent:
    """Send each open case of the retired ``department_id`` to ``body.department_id``."""
    retired_at = await _retired(pool, department_id)
    name = await _successor(pool, department_id, body)
    sent: list[str] = []
    for case_id in await _held(pool, department_id, body.limit):
        rid = request_id(department_id, retired_at, case_id)
        action = HandoverAction(
            actor=actor.model_copy(update={"request_id": rid, "sent_at": datetime.now(UTC)}),
            from_department_id=department_id,
            department_id=body.department_id,
            department_name=name,
            reason=body.reason,
        )
        if await _signal(client, case_id, action):
            sent.append(case_id)
    remaining = max(0, await _count_held(pool, department_id) - len(sent))
    return HandoverSent(department_id=department_id, to_department_id=body.department_id,
                        sent=sent, left=await _left(pool, department_id), remaining=remaining)
