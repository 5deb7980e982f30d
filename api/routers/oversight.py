"""The centre's work lists (issue 14): extension requests and returns waiting for a decision
(延期待审, 退单待审) and the accountability records of the supervision ladder (问责记录). A
department sees its own."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CaseId, Pool, Principal, Supervisor, Viewer
from api.errors import ERRORS, QUERY_ERRORS, ApiError
from jiesu.case import lifecycle
from jiesu.case.domain import Instant, Line, Role, Text
from jiesu.readmodel import accountability, oversight

router = APIRouter(tags=["supervision (派单 / 督办)"])

Limit = Annotated[int, Query(ge=1, le=500)]


class PendingExtension(BaseModel):
    case_id: str
    title: str
    department_id: str | None
    urgency: str
    finish_deadline: datetime | None
    requested_at: datetime
    requested_by: str
    reasons: str
    measures: str
    promised_finish: datetime | None
    decision_due: datetime | None  # None: the policy set no decision deadline


class PendingReturn(BaseModel):
    case_id: str
    title: str
    department_id: str | None
    urgency: str
    finish_deadline: datetime | None  # the department's deadline keeps running meanwhile
    requested_at: datetime
    requested_by: str
    reason: str
    decision_due: datetime | None  # None: the policy set no decision deadline


class AccountabilityRecord(BaseModel):
    case_id: str
    seq: int
    department_id: str | None
    department_name: str | None
    persons: list[str]
    reason: str
    decision: str
    ordered: bool  # a supervisor's 问责 order (else the ladder climbed there by itself)
    recorded_at: datetime


def _scope(principal: Principal, department_id: str | None) -> str | None:
    """A department sees only its own records."""
    if principal.role is not Role.DEPARTMENT:
        return department_id
    if department_id not in (None, principal.department_id):
        raise ApiError(403, "forbidden", "you can list only your own department's records")
    return principal.department_id


@router.get(
    "/extensions/pending",
    response_model=list[PendingExtension],
    responses=QUERY_ERRORS,
    summary="延期待审 Extension requests waiting for a decision, the most urgent first",
)
async def pending_extensions(
    principal: Viewer,
    pool: Pool,
    department_id: Annotated[Line | None, Query(max_length=64)] = None,
    limit: Limit = 100,
) -> list[dict]:
    return await oversight.pending_extensions(pool, _scope(principal, department_id), limit)


@router.get(
    "/returns/pending",
    response_model=list[PendingReturn],
    responses=QUERY_ERRORS,
    summary="退单待审 Returns waiting for the centre's decision (JIESU_RETURN_NEEDS_APPROVAL)",
)
async def pending_returns(
    principal: Viewer,
    pool: Pool,
    department_id: Annotated[Line | None, Query(max_length=64)] = None,
    limit: Limit = 100,
) -> list[dict]:
    return await oversight.pending_returns(pool, _scope(principal, department_id), limit)


@router.get(
    "/accountability",
    response_model=list[AccountabilityRecord],
    responses=QUERY_ERRORS,
    summary="问责记录 Accountability records (unit, persons, reason, decision), newest first",
)
async def accountability_records(
    principal: Viewer,
    pool: Pool,
    department_id: Annotated[Line | None, Query(max_length=64)] = None,
    since: Annotated[Instant | None, Query(description="Timezone-aware")] = None,
    until: Annotated[Instant | None, Query(description="Timezone-aware")] = None,
    limit: Limit = 100,
) -> list[dict]:
    scope = _scope(principal, department_id)
    return await oversight.accountability_records(pool, scope, since, until, limit)


class AccountabilityCompletion(BaseModel):
    """问责 completed by the centre: who is held accountable, and what was decided."""

    model_config = ConfigDict(extra="forbid")

    persons: list[Annotated[Line, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=20, examples=[["王某（城管局执法队队长）"]]
    )
    decision: Text = Field(min_length=2, max_length=2000, examples=["通报批评，扣减年度考评分"])


@router.put(
    "/accountability/{case_id}/{seq}",
    response_model=AccountabilityRecord,
    responses=ERRORS,
    summary="问责 Complete an accountability record: the persons and the decision (recorded in "
    "the change log, GET /api/v1/admin/changes?entity=accountability_record)",
)
async def complete_accountability(
    case_id: CaseId,
    seq: Annotated[int, Path(ge=0, le=1_000_000)],
    body: AccountabilityCompletion,
    principal: Supervisor,
    pool: Pool,
) -> dict:
    """Idempotent: the same completion again changes nothing and records nothing."""
    persons = [p.strip() for p in body.persons]
    if not all(persons):
        raise ApiError(422, "invalid_persons", "a person's name cannot be blank")
    blank = lifecycle.blank_text({"decision": body.decision}, persons)
    if blank is not None:  # invisible characters only (zero-width spaces, direction marks)
        raise ApiError(422, blank.code, blank.reason)
    try:
        await accountability.complete(
            pool, case_id, seq, persons, body.decision.strip(), principal.actor
        )
    except accountability.NoSuchRecord:
        raise ApiError(404, "no_such_record", f"no accountability record {case_id}/{seq}") from None
    record = await oversight.accountability_record(pool, case_id, seq)
    assert record is not None
    return record
