"""/api/v1/grid: grid workers (网格员) report what they find on patrol (channel grid, 主动发现)
in the grids they are bound to (``grid_workers``), and solve small problems on the spot with
evidence (就地解决): such a case is registered and closed at once, and counted as solved in the
grid (jiesu/stats/indicators.py ``grid_solution_rate``). Anything else goes the usual way:
routed to the responsible department.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api import intake
from api.deps import AppSettings, GridWorker, Pool, Temporal
from api.errors import QUERY_ERRORS, ApiError
from api.schemas import IntakeResponse
from jiesu.case.domain import (
    Channel,
    Citizen,
    ComplaintIntake,
    Line,
    Role,
    SpotSolution,
    Text,
    Urgency,
)

router = APIRouter(prefix="/grid", tags=["grid work"])


class PatrolReport(BaseModel):
    """A problem found on patrol (主动发现) in one of the worker's grids."""

    model_config = ConfigDict(extra="forbid")

    title: Line = Field(min_length=2, max_length=200)
    description: Text = Field(min_length=2, max_length=5000)
    category_id: Line = Field(min_length=1, max_length=64)
    grid_id: Line = Field(min_length=1, max_length=64, examples=["G-QH-01-01-1"])
    address: Line = Field(default="", max_length=300)
    urgency: Urgency | None = None
    reporter: Citizen = Field(description="The grid worker's name and phone, for the callback")
    solved_on_the_spot: SpotSolution | None = Field(
        default=None, description="就地解决: what was done, with evidence; the case closes at once"
    )

    @field_validator("reporter")
    @classmethod
    def _reachable(cls, reporter: Citizen) -> Citizen:
        if not reporter.reachable:
            raise ValueError("the reporter needs a phone number or an e-mail address")
        return reporter


@router.post(
    "/reports",
    status_code=status.HTTP_201_CREATED,
    response_model=IntakeResponse,
    responses={**QUERY_ERRORS, 200: {"model": IntakeResponse, "description": "A retry, or 并单"}},
    summary="Report a problem found on patrol (主动发现), or solved on the spot (就地解决)",
)
async def report_from_patrol(
    body: PatrolReport,
    response: Response,
    principal: GridWorker,
    pool: Pool,
    client: Temporal,
    settings: AppSettings,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> IntakeResponse:
    intake.check_as_input(body)  # the reporter's e-mail: one address
    grids = principal.scope.grids if principal.scope is not None else frozenset()
    if principal.role is Role.GRID_WORKER and body.grid_id not in grids:
        raise ApiError(403, "not_your_grid", f"you do not work in grid {body.grid_id}")
    report = ComplaintIntake(
        title=body.title, description=body.description, category_id=body.category_id,
        grid_id=body.grid_id, address=body.address, channel=Channel.GRID, urgency=body.urgency,
        citizen=body.reporter, solved_on_the_spot=body.solved_on_the_spot,
    )  # fmt: skip
    result = await intake.register(pool, client, settings, report, principal, idempotency_key)
    if result.replayed or result.merged:
        response.status_code = status.HTTP_200_OK
    return result
