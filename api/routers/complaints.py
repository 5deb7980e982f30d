"""/api/v1/complaints: intake, case views and the department's actions on a case."""

from __future__ import annotations

from datetime import UTC, datetime
from hmac import compare_digest as secrets_equal
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response, status

from api import cases, intake
from api.deps import STAFF, AppSettings, Pool, Principal, Temporal, require
from api.errors import ApiError, ErrorResponse
from api.schemas import ActionResult, CasePage, CaseSummary, IntakeResponse, RatingRequest
from jiesu import lifecycle
from jiesu.domain import (
    AcceptAction,
    Actor,
    CaseState,
    Channel,
    ComplaintIntake,
    ContactAction,
    ContactInput,
    DispatchAction,
    DispatchInput,
    RatingAction,
    ReplyAction,
    ReplyInput,
    Role,
    Status,
    Urgency,
)
from workflows.complaint import ComplaintWorkflow

router = APIRouter(prefix="/complaints", tags=["complaints"])

_ERRORS = {
    401: {"model": ErrorResponse, "description": "No or unknown API key"},
    403: {"model": ErrorResponse, "description": "Your role may not do this"},
    404: {"model": ErrorResponse, "description": "No such case visible to you"},
    422: {"model": ErrorResponse, "description": "Invalid input"},
}
_ACTION_ERRORS = {
    **_ERRORS,
    409: {"model": ErrorResponse, "description": "The case cannot take this action now"},
}

Operator = Annotated[Principal, Depends(require(Role.OPERATOR))]
Staff = Annotated[Principal, Depends(require(*STAFF))]
Department = Annotated[Principal, Depends(require(Role.DEPARTMENT))]
Dispatcher = Annotated[Principal, Depends(require(Role.SUPERVISOR))]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=IntakeResponse,
    responses={**_ERRORS, 200: {"model": IntakeResponse, "description": "Idempotent replay"}},
    summary="Register a complaint (受理)",
)
async def register_complaint(
    body: ComplaintIntake,
    response: Response,
    principal: Operator,
    pool: Pool,
    client: Temporal,
    settings: AppSettings,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description="Send the same key when retrying: the same case comes back, never two.",
        ),
    ] = None,
) -> IntakeResponse:
    result = await intake.register(pool, client, settings, body, principal, idempotency_key)
    if result.replayed:
        response.status_code = status.HTTP_200_OK
    return result


@router.get("", response_model=CasePage, responses=_ERRORS, summary="List and filter cases")
async def list_complaints(
    principal: Staff,
    pool: Pool,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    department_id: str | None = None,
    category_id: str | None = None,
    grid_id: str | None = None,
    urgency: Urgency | None = None,
    channel: Channel | None = None,
    overdue: Annotated[
        bool | None, Query(description="Only cases with a breached or passed deadline")
    ] = None,
    received_from: datetime | None = None,
    received_to: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> CasePage:
    if principal.role is Role.DEPARTMENT:
        if department_id not in (None, principal.department_id):
            raise ApiError(403, "forbidden", "you can list only your own department's cases")
        department_id = principal.department_id
    rows = await cases.search(
        pool,
        status=status_,
        department_id=department_id,
        category_id=category_id,
        grid_id=grid_id,
        urgency=urgency,
        channel=channel,
        overdue=overdue,
        received_from=received_from,
        received_to=received_to,
        limit=limit + 1,
        offset=offset,
    )
    now = datetime.now(UTC)
    items = [CaseSummary.model_validate({**r, "overdue": _overdue(r, now)}) for r in rows]
    more = len(items) > limit
    return CasePage(
        items=items[:limit], limit=limit, offset=offset, next_offset=offset + limit if more else None
    )


def _overdue(row: dict, now: datetime) -> bool:
    open_ = row["status"] != Status.CLOSED.value
    late = row["finish_deadline"] is not None and row["finish_deadline"] < now
    return bool(row["breaches"]) or (open_ and late)


@router.get(
    "/{case_id}", response_model=CaseState, responses=_ERRORS, summary="A case's current state"
)
async def get_complaint(case_id: str, principal: Staff, pool: Pool, client: Temporal) -> CaseState:
    return await cases.visible_state(client, pool, case_id, principal)


@router.post(
    "/{case_id}/accept", response_model=ActionResult, responses=_ACTION_ERRORS, summary="签收 Accept"
)
async def accept(
    case_id: str, principal: Department, pool: Pool, client: Temporal, response: Response
) -> ActionResult:
    state = await cases.visible_state(client, pool, case_id, principal)
    action = AcceptAction(actor=principal.actor)
    return _status(response, await cases.act(
        client, state, ComplaintWorkflow.accept, action, lifecycle.check_accept
    ))


@router.post(
    "/{case_id}/contact",
    response_model=ActionResult,
    responses=_ACTION_ERRORS,
    summary="联系诉求人 Record contact with the citizen",
)
async def contact(
    case_id: str,
    principal: Department,
    pool: Pool,
    client: Temporal,
    response: Response,
    body: ContactInput | None = None,
) -> ActionResult:
    state = await cases.visible_state(client, pool, case_id, principal)
    action = ContactAction(actor=principal.actor, **(body or ContactInput()).model_dump())
    return _status(response, await cases.act(
        client, state, ComplaintWorkflow.contact, action, lifecycle.check_contact
    ))


@router.post(
    "/{case_id}/reply",
    response_model=ActionResult,
    responses=_ACTION_ERRORS,
    summary="办结答复 Reply with the outcome and evidence",
)
async def reply(
    case_id: str,
    body: ReplyInput,
    principal: Department,
    pool: Pool,
    client: Temporal,
    response: Response,
) -> ActionResult:
    state = await cases.visible_state(client, pool, case_id, principal)
    action = ReplyAction(actor=principal.actor, **body.model_dump())
    return _status(response, await cases.act(
        client, state, ComplaintWorkflow.reply, action, lifecycle.check_reply
    ))


@router.post(
    "/{case_id}/dispatch",
    response_model=ActionResult,
    responses=_ACTION_ERRORS,
    summary="人工派单 Dispatch a case from the centre's queue",
)
async def dispatch(
    case_id: str,
    body: DispatchInput,
    principal: Dispatcher,
    pool: Pool,
    client: Temporal,
    response: Response,
) -> ActionResult:
    name = await pool.fetchval("SELECT name FROM departments WHERE id = $1", body.department_id)
    if name is None:
        raise ApiError(422, "unknown_department", f"no department {body.department_id!r}")
    state = await cases.visible_state(client, pool, case_id, principal)
    action = DispatchAction(actor=principal.actor, department_name=name, **body.model_dump())
    return _status(response, await cases.act(
        client, state, ComplaintWorkflow.dispatch, action, lifecycle.check_dispatch
    ))


@router.post(
    "/{case_id}/rating",
    response_model=ActionResult,
    responses=_ACTION_ERRORS,
    summary="评价 The citizen rates the handling (with the case's citizen token)",
)
async def rate(
    case_id: str, body: RatingRequest, pool: Pool, client: Temporal, response: Response
) -> ActionResult:
    token = await pool.fetchval("SELECT citizen_token FROM intakes WHERE case_id = $1", case_id)
    if token is None or not secrets_equal(token, body.token):
        raise ApiError(403, "invalid_citizen_token", "this token does not belong to this case")
    state = await cases.live_state(client, case_id)
    if state is None:
        raise ApiError(409, "case_closed", f"case {case_id} is closed")
    action = RatingAction(
        actor=Actor(role=Role.CITIZEN, name="citizen"), rating=body.rating, comment=body.comment
    )
    return _status(response, await cases.act(
        client, state, ComplaintWorkflow.rate, action, lifecycle.check_rating
    ))


def _status(response: Response, result: ActionResult) -> ActionResult:
    if not result.applied:
        response.status_code = status.HTTP_202_ACCEPTED
    return result
