"""Repeat reports (并单): a report of a problem that already has an open case is linked to
that case instead of opening a second one.

Same problem means, within the repeat window: the same citizen (phone), category and grid, or
the same non-empty address and category. The case's workflow counts the repeat; the third
report of the same open problem puts it under supervision.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
from temporalio.client import Client
from temporalio.service import RPCError

from api.deps import Principal
from api.errors import ApiError
from api.schemas import IntakeResponse
from jiesu.domain import ComplaintIntake, RepeatReport
from workflows.complaint import ComplaintWorkflow

_FIND_OPEN_CASE = """
SELECT c.case_id, c.urgency, c.received_at, i.citizen_token,
       (i.payload->'intake'->'citizen'->>'phone') = $3 AS same_citizen
FROM cases c JOIN intakes i USING (case_id)
WHERE c.status <> 'closed' AND c.category_id = $1 AND c.received_at > $5
  AND ((c.grid_id = $2 AND i.payload->'intake'->'citizen'->>'phone' = $3)
       OR ($4 <> '' AND i.payload->'intake'->>'address' = $4))
ORDER BY c.received_at
LIMIT 1
"""


async def find_open_case(
    conn: asyncpg.Connection, intake: ComplaintIntake, window: timedelta, now: datetime
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        _FIND_OPEN_CASE,
        intake.category_id,
        intake.grid_id,
        intake.citizen.phone,
        intake.address.strip(),
        now - window,
    )


def _response(case: asyncpg.Record, replayed: bool) -> IntakeResponse:
    return IntakeResponse(
        case_id=case["case_id"],
        status_url=f"/api/v1/complaints/{case['case_id']}",
        citizen_token=case["citizen_token"] if case["same_citizen"] else None,
        urgency=case["urgency"],
        received_at=case["received_at"],
        merged=True,
        replayed=replayed,
    )


async def link(
    conn: asyncpg.Connection,
    client: Client,
    case: asyncpg.Record,
    intake: ComplaintIntake,
    received_at: datetime,
    principal: Principal,
    idempotency_key: str | None,
    digest: str,
) -> IntakeResponse | None:
    """Record the repeat and tell the case. None: the case closed meanwhile (open a new one)."""
    report_id = await conn.fetchval(
        "INSERT INTO repeat_reports (case_id, idempotency_key, request_hash, payload)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        case["case_id"],
        idempotency_key,
        digest,
        {
            "intake": intake.model_dump(mode="json"),
            "received_at": received_at.isoformat(),
            "same_citizen": case["same_citizen"],
            "actor": principal.actor.model_dump(mode="json"),
        },
    )
    if report_id is None:  # a concurrent request with the same key won the race
        return await replay(conn, client, idempotency_key or "", digest)
    if not await _signal(client, case["case_id"], str(report_id), intake, received_at, principal):
        await conn.execute("DELETE FROM repeat_reports WHERE id = $1", report_id)
        return None
    return _response(case, replayed=False)


async def _signal(
    client: Client,
    case_id: str,
    report_id: str,
    intake: ComplaintIntake,
    received_at: datetime,
    principal: Principal,
) -> bool:
    report = RepeatReport(
        report_id=report_id,
        actor=principal.actor,
        channel=intake.channel,
        description=intake.description,
        received_at=received_at,
    )
    try:
        await client.get_workflow_handle(case_id).signal(ComplaintWorkflow.repeat_report, report)
    except RPCError:
        return False  # the case has closed since the read model said it was open
    return True


async def replay(
    conn: asyncpg.Connection, client: Client, key: str, digest: str
) -> IntakeResponse | None:
    """A retried intake that was linked to an open case answers the same way again."""
    row = await conn.fetchrow(
        "SELECT r.id, r.request_hash, r.payload, c.case_id, c.urgency, c.received_at,"
        " i.citizen_token FROM repeat_reports r JOIN cases c USING (case_id)"
        " JOIN intakes i USING (case_id) WHERE r.idempotency_key = $1",
        key,
    )
    if row is None:
        return None
    if row["request_hash"] != digest:
        raise ApiError(
            422, "idempotency_key_reused", "this Idempotency-Key was used for a different complaint"
        )
    case = {**dict(row), "same_citizen": row["payload"]["same_citizen"]}
    return _response(case, replayed=True)  # type: ignore[arg-type]
