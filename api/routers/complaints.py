"""/api/v1/complaints: intake (受理) and case views. Actions on a case live in their own
routers: handling (departments), supervision (the centre) and citizen."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from api import cases, intake
from api.deps import AppServices, CaseId, Operator, Pool, Staff
from api.errors import ERRORS, QUERY_ERRORS, ApiError
from api.schemas import CASE_SOURCE_HEADER, CasePage, CaseSummary, CaseView, IntakeResponse
from jiesu.access import content
from jiesu.access.grids import GridScope
from jiesu.case.domain import Channel, ComplaintIntake, Instant, Line, Role, Status, Urgency
from jiesu.case.sla import is_late

router = APIRouter(prefix="/complaints", tags=["complaints"])

Filter = Annotated[Line | None, Query(max_length=100)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=IntakeResponse,
    responses={
        **QUERY_ERRORS,
        200: {
            "model": IntakeResponse,
            "description": "No new case: a retry (same Idempotency-Key) or a repeat report "
            "linked to the open case of the same problem (并单)",
        },
    },
    summary="Register a complaint (受理)",
)
async def register_complaint(
    body: ComplaintIntake,
    response: Response,
    principal: Operator,
    services: AppServices,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description="Send the same key when retrying: the same case comes back, never two.",
        ),
    ] = None,
) -> IntakeResponse:
    intake.check_as_input(body)
    pool, client, settings = services.pool, services.client, services.settings
    result = await intake.register(pool, client, settings, body, principal, idempotency_key)
    if result.replayed or result.merged:  # no new case was created
        response.status_code = status.HTTP_200_OK
    return result


@router.get("", response_model=CasePage, responses=QUERY_ERRORS, summary="List and filter cases")
async def list_complaints(
    principal: Staff,
    pool: Pool,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    department_id: Filter = None,
    category_id: Filter = None,
    grid_id: Filter = None,
    urgency: Urgency | None = None,
    channel: Channel | None = None,
    overdue: Annotated[
        bool | None,
        Query(
            description="Only late cases (逾期): a deadline breached, or a step whose deadline "
            "has passed undone (not accepted, not contacted, still open past the finish "
            "deadline), from the deadline on, before the breach is recorded. Not the 超时量 "
            "statistic, which counts recorded finish breaches only."
        ),
    ] = None,
    received_from: Annotated[Instant | None, Query(description="Timezone-aware")] = None,
    received_to: Annotated[Instant | None, Query(description="Timezone-aware")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[
        int,
        Query(
            ge=0,
            le=100_000,
            description="Cases to skip. Each skipped case is read: prefer `after` for deep "
            "pages. Not with `after` (422 offset_with_after).",
        ),
    ] = 0,
    after: Annotated[
        str | None,
        Query(
            max_length=200,
            description="A page's `next_after`: the cases after that page's last one, with "
            "the same filters (keyset paging). A position, not a permission: the filters and "
            "your own scope apply as always. Anything but a cursor the API gave: 422 "
            "invalid_cursor.",
        ),
    ] = None,
) -> CasePage:
    position = None
    if after is not None:
        if offset:
            raise ApiError(422, "offset_with_after", "page with offset or with after, not both")
        try:
            position = cases.decode_cursor(after)
        except ValueError as exc:
            raise ApiError(
                422, "invalid_cursor", "after is not a cursor this API gave (next_after)"
            ) from exc
    if principal.role is Role.DEPARTMENT:
        if department_id not in (None, principal.department_id):
            raise ApiError(403, "forbidden", "you can list only your own department's cases")
        department_id = principal.department_id
    within = None
    if principal.role is Role.GRID_WORKER:  # 网格员: the cases of their grids only
        within = principal.scope or GridScope()
        if grid_id is not None and grid_id not in within.grids:
            raise ApiError(403, "not_your_grid", f"you do not work in grid {grid_id}")
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
        within=within,
        limit=limit + 1,
        offset=offset,
        after=position,
    )
    now = datetime.now(UTC)
    items = [CaseSummary.model_validate({**r, "overdue": is_late(r, now)}) for r in rows]
    more = len(items) > limit
    last = rows[limit - 1] if more else None
    return CasePage(
        items=items[:limit],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if more and position is None else None,
        next_after=cases.encode_cursor(last["received_at"], last["case_id"]) if last else None,
    )


@router.get(
    "/{case_id}", response_model=CaseView, responses=ERRORS, summary="A case's current state"
)
async def get_complaint(
    case_id: CaseId,
    principal: Staff,
    services: AppServices,
    response: Response,
) -> CaseView:
    found = await cases.sourced_state(
        services.client, services.pool, case_id, principal,
        services.settings.query_timeout_seconds,
    )  # fmt: skip
    # the content its events carry (补充诉求, 并单, evidence), shown unmasked: a recorded view
    viewer = cases.viewer_of(principal)
    carried = content.carried_fields(viewer, found.state)
    if carried:
        await content.record_view(services.pool, case_id, viewer, carried)
    response.headers[CASE_SOURCE_HEADER] = found.source
    return CaseView(**dict(found.state), source=found.source)
