"""Intake (受理): validate against reference data, number the case, start its workflow.

The intake row is committed before the workflow starts, and the workflow id is the case
number, so a request retried after any failure (same Idempotency-Key) finds its row and
starts — or finds already started — the very same workflow. Nothing accepted is lost and
no report becomes two cases.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from api import merge
from api.deps import Principal
from api.errors import ApiError
from api.schemas import IntakeResponse
from jiesu import search_attributes as sa
from jiesu.config import Settings
from jiesu.domain import CaseStart, ComplaintIntake, Status, Urgency
from jiesu.security import new_token
from workflows.complaint import ComplaintWorkflow

CLOCK_SKEW = timedelta(minutes=2)
MAX_BACKDATE = timedelta(hours=24)


def _request_hash(intake: ComplaintIntake) -> str:
    canonical = json.dumps(intake.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _received_at(intake: ComplaintIntake) -> datetime:
    now = datetime.now(UTC)
    at = intake.received_at
    if at is None:
        return now
    if at.tzinfo is None:
        raise ApiError(422, "invalid_received_at", "received_at needs a timezone, e.g. +08:00")
    if at > now + CLOCK_SKEW:
        raise ApiError(422, "invalid_received_at", "received_at is in the future")
    if at < now - MAX_BACKDATE:
        raise ApiError(422, "invalid_received_at", "received_at is more than 24 hours ago")
    return at


async def _urgency(conn: asyncpg.Connection, intake: ComplaintIntake) -> Urgency:
    default = await conn.fetchval(
        "SELECT default_urgency FROM categories WHERE id = $1", intake.category_id
    )
    if default is None:
        raise ApiError(422, "unknown_category", f"no complaint category {intake.category_id!r}")
    grid = await conn.fetchval(
        "SELECT 1 FROM areas WHERE id = $1 AND kind = 'grid'", intake.grid_id
    )
    if grid is None:
        raise ApiError(422, "unknown_grid", f"no grid {intake.grid_id!r}")
    return intake.urgency or Urgency(default)


async def _new_case_id(conn: asyncpg.Connection, settings: Settings, at: datetime) -> str:
    seq = await conn.fetchval("SELECT nextval('case_number_seq')")
    return f"JS{at.astimezone(ZoneInfo(settings.timezone)):%Y%m%d}-{seq:06d}"


async def _start(client: Client, settings: Settings, start: CaseStart) -> None:
    try:
        await client.start_workflow(
            ComplaintWorkflow.run,
            start,
            id=start.case_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.CASE_STATUS, Status.REGISTERED.value),
                    SearchAttributePair(sa.CASE_URGENCY, start.urgency.value),
                    SearchAttributePair(sa.CASE_CATEGORY, start.intake.category_id),
                    SearchAttributePair(sa.CASE_CHANNEL, start.intake.channel.value),
                ]
            ),
            static_summary=f"{start.case_id} {start.intake.title}"[:200],
        )
    except WorkflowAlreadyStartedError:
        pass  # a retry of an intake whose workflow did start: exactly what we want


def _response(case_id: str, token: str, start: CaseStart, replayed: bool) -> IntakeResponse:
    return IntakeResponse(
        case_id=case_id,
        status_url=f"/api/v1/complaints/{case_id}",
        citizen_token=token,
        urgency=start.urgency,
        received_at=start.received_at,
        replayed=replayed,
    )


async def _replay(
    conn: asyncpg.Connection, client: Client, settings: Settings, key: str, digest: str
) -> IntakeResponse | None:
    row = await conn.fetchrow(
        "SELECT case_id, request_hash, citizen_token, payload FROM intakes "
        "WHERE idempotency_key = $1",
        key,
    )
    if row is None:
        return None
    if row["request_hash"] != digest:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different complaint",
        )
    start = CaseStart.model_validate(row["payload"])
    await _start(client, settings, start)  # in case the first attempt died before starting
    return _response(row["case_id"], row["citizen_token"], start, replayed=True)


async def register(
    pool: asyncpg.Pool,
    client: Client,
    settings: Settings,
    intake: ComplaintIntake,
    principal: Principal,
    idempotency_key: str | None,
) -> IntakeResponse:
    idempotency_key = (idempotency_key or "").strip() or None  # an empty key is no key
    received_at = _received_at(intake)
    digest = _request_hash(intake)
    async with pool.acquire() as conn:
        if idempotency_key:
            replay = await _replay(conn, client, settings, idempotency_key, digest) or (
                await merge.replay(conn, client, idempotency_key, digest)
            )
            if replay:
                return replay
        urgency = await _urgency(conn, intake)
        window = timedelta(days=settings.repeat_window_days)
        open_case = await merge.find_open_case(conn, intake, window, received_at)
        if open_case is not None:
            linked = await merge.link(
                conn, client, open_case, intake, received_at, principal, idempotency_key, digest
            )
            if linked is not None:
                return linked
        case_id = await _new_case_id(conn, settings, received_at)
        token = new_token()
        start = CaseStart(
            case_id=case_id,
            intake=intake,
            urgency=urgency,
            received_at=received_at,
            registered_by=principal.actor,
        )
        inserted = await conn.fetchval(
            "INSERT INTO intakes (case_id, idempotency_key, request_hash, citizen_token, payload)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING"
            " RETURNING case_id",
            case_id,
            idempotency_key,
            digest,
            token,
            start.model_dump(mode="json"),
        )
        if inserted is None:  # a concurrent request with the same key won the race
            replay = await _replay(conn, client, settings, idempotency_key or "", digest)
            assert replay is not None
            return replay
    await _start(client, settings, start)
    return _response(case_id, token, start, replayed=False)
