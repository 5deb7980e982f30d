"""The citizen's own actions (诉求人), authorised by the case's citizen token handed out at
intake: rate, add information, withdraw."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from hmac import compare_digest
from typing import Any

from fastapi import APIRouter, Response

from api import cases
from api.deps import CaseId, Pool, Temporal
from api.errors import ACTION_ERRORS, ApiError
from api.schemas import (
    ActionResult,
    CitizenRequest,
    RatingRequest,
    SupplementRequest,
    WithdrawRequest,
    answer,
)
from jiesu import lifecycle
from jiesu.domain import (
    Actor,
    CaseState,
    RatingAction,
    Role,
    SupplementAction,
    WithdrawAction,
)
from jiesu.lifecycle import Refusal
from workflows.complaint import ComplaintWorkflow as Case

router = APIRouter(prefix="/complaints/{case_id}", tags=["citizen (诉求人)"])
_post = partial(router.post, response_model=ActionResult, responses=ACTION_ERRORS)

CITIZEN = Actor(role=Role.CITIZEN, name="citizen")


async def _act_as_citizen(
    pool: Pool, client: Temporal, case_id: str, body: CitizenRequest, response: Response,
    signal: Callable[..., Any], action: Any, check: Callable[[CaseState, Any], Refusal | None],
) -> ActionResult:
    """The citizen's token stands for an API key: it must belong to this case."""
    token = await pool.fetchval("SELECT citizen_token FROM intakes WHERE case_id = $1", case_id)
    if token is None or not compare_digest(token.encode(), body.token.encode()):
        raise ApiError(403, "invalid_citizen_token", "this token does not belong to this case")
    state = await cases.live_state(client, case_id)
    if state is None:
        raise ApiError(409, "case_closed", f"case {case_id} is closed")
    return answer(response, await cases.act(client, state, signal, action, check))


@_post("/rating", summary="评价 The citizen rates the handling")
async def rate(
    case_id: CaseId, body: RatingRequest, pool: Pool, client: Temporal, response: Response
) -> ActionResult:
    action = RatingAction(actor=CITIZEN, rating=body.rating, comment=body.comment)
    return await _act_as_citizen(
        pool, client, case_id, body, response, Case.rate, action, lifecycle.check_rating
    )


@_post("/supplement", summary="补充诉求 The citizen adds information")
async def supplement(
    case_id: CaseId, body: SupplementRequest, pool: Pool, client: Temporal, response: Response
) -> ActionResult:
    action = SupplementAction(actor=CITIZEN, text=body.text)
    return await _act_as_citizen(
        pool, client, case_id, body, response, Case.supplement, action, lifecycle.check_supplement
    )


@_post("/withdraw", summary="撤诉 The citizen withdraws the complaint (before the reply)")
async def withdraw(
    case_id: CaseId, body: WithdrawRequest, pool: Pool, client: Temporal, response: Response
) -> ActionResult:
    action = WithdrawAction(actor=CITIZEN, reason=body.reason)
    return await _act_as_citizen(
        pool, client, case_id, body, response, Case.withdraw, action, lifecycle.check_withdraw
    )
