"""Response and request models that are the API's own (the domain models are reused as-is)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import Response, status
from pydantic import BaseModel, Field

from jiesu.access.citizen_view import CitizenCase
from jiesu.case.domain import (
    CaseState,
    Channel,
    Rating,
    RatingInput,
    Status,
    SupplementInput,
    Urgency,
    WithdrawInput,
)


class IntakeResponse(BaseModel):
    case_id: str = Field(examples=["JS20261121-000042"])
    status_url: str
    citizen_token: str | None = Field(
        description="Give this to the citizen who made this report; each report has its own. "
        "For the case's own intake it lets them rate, add information (supplement) and "
        "withdraw; for a repeat report (merged) it lets them add information only. Answered "
        "only to a channel system acting for the citizen (an API key of the operator or "
        "admin role: the app, WeChat); null for a staff person in a session and for a grid "
        "worker's patrol report — the citizen gets it in the intake notice's link: by SMS to "
        "a mobile number, else by e-mail when they left an address — and on a "
        "retry that can no longer recompute it (the token secret was rotated since; "
        "docs/intake.md)."
    )
    urgency: Urgency
    received_at: datetime
    merged: bool = Field(
        default=False,
        description="True when the report was linked to an open case of the same problem "
        "(并单): case_id is that case's number.",
    )
    replayed: bool = Field(
        default=False,
        description="True when an earlier request with the same Idempotency-Key "
        "already registered this case.",
    )


class CaseSummary(BaseModel):
    """A read-model row (eventually consistent with the workflow, typically within a second)."""

    case_id: str
    status: Status
    title: str
    category_id: str
    grid_id: str
    channel: Channel
    urgency: Urgency
    department_id: str | None
    received_at: datetime
    accept_deadline: datetime | None
    contact_deadline: datetime | None
    finish_deadline: datetime | None
    closed_at: datetime | None
    rating: Rating | None
    breaches: list[str]
    overdue: bool


class CasePage(BaseModel):
    items: list[CaseSummary]
    limit: int
    offset: int
    next_offset: int | None = Field(
        description="The offset of the next page; null on the last page and on a page asked "
        "for with `after` (an offset counts from the list's start, not from a cursor)."
    )
    next_after: str | None = Field(
        default=None,
        description="The cursor of the next page: send it as `after` (keyset paging: a deep "
        "page costs what the first does, and cases received meanwhile shift nothing). Null on "
        "the last page.",
    )


CASE_SOURCE_HEADER = "X-Case-Source"


class CaseView(CaseState):
    """A case as the API answers it: the state, and where it came from."""

    source: Literal["workflow", "read_model"] = Field(
        default="workflow",
        description="workflow: the case's own live answer. read_model: the workflow could not "
        "answer in time (worker down, Temporal unreachable) or is archived; the copy may lag "
        "the workflow by the events it has not projected yet. Also in the X-Case-Source header.",
    )


class ActionResult(BaseModel):
    """The case after the action. ``applied`` is False when the workflow has not processed
    the signal yet (answer 202): look at the case again shortly."""

    applied: bool
    case: CaseState


class CitizenActionResult(BaseModel):
    """The case after a citizen's action, as a citizen receives it (jiesu.access.citizen_view:
    the steps of the case and the reporter's own, no staff, no internals). ``applied`` as in
    :class:`ActionResult`."""

    applied: bool
    case: CitizenCase


class CitizenRequest(BaseModel):
    token: str = Field(min_length=8, max_length=200, description="The case's citizen token.")


class RatingRequest(RatingInput, CitizenRequest):
    pass


class SupplementRequest(SupplementInput, CitizenRequest):
    pass


class WithdrawRequest(WithdrawInput, CitizenRequest):
    pass


def answer(
    response: Response, result: ActionResult | CitizenActionResult
) -> ActionResult | CitizenActionResult:
    """200 when the workflow applied the action, 202 when it has not processed it yet."""
    if not result.applied:
        response.status_code = status.HTTP_202_ACCEPTED
    return result
