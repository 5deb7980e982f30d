"""The citizen's own actions (诉求人), authorised by the citizen token handed out with each
report: the case's own citizen rates, adds information and withdraws; the citizen of a
repeat report linked to the case (并单) adds information only."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import APIRouter, Response

from api import cases
from api.actions import IdempotencyKey
from api.auth_limit import Attempt, AuthAttempt
from api.deps import AppSettings, CaseId, Pool, Principal, Temporal
from api.errors import ACTION_ERRORS, ApiError, not_found
from api.schemas import (
    ActionResult,
    CitizenRequest,
    RatingRequest,
    SupplementRequest,
    WithdrawRequest,
    answer,
)
from jiesu.access import citizen_tokens
from jiesu.case import lifecycle
from jiesu.case.domain import (
    Actor,
    CaseState,
    RatingAction,
    Role,
    SupplementAction,
    WithdrawAction,
)
from jiesu.case.lifecycle import Refusal
from workflows.complaint import ComplaintWorkflow as Case

router = APIRouter(prefix="/complaints/{case_id}", tags=["citizen (诉求人)"])
_post = partial(router.post, response_model=ActionResult, responses=ACTION_ERRORS)

CITIZEN = Actor(role=Role.CITIZEN, name="citizen")


async def _reporter(pool: Pool, case_id: str, token: str) -> Actor | None:
    """Whose token this is: the case's own citizen (``CITIZEN``), the citizen of one of its
    repeat reports, or nobody (None). Only the sha256 of a token is stored (citizen_tokens)."""
    row = await pool.fetchrow(
        "SELECT NULL::bigint AS report_id FROM intakes"
        " WHERE case_id = $1 AND token_hash = $2 AND state = 'started'"
        " UNION ALL SELECT id FROM repeat_reports"
        " WHERE case_id = $1 AND token_hash = $2 AND state = 'started'"
        " LIMIT 1",
        case_id,
        citizen_tokens.digest(token),
    )
    if row is None:
        return None
    if row["report_id"] is None:
        return CITIZEN
    return Actor(role=Role.CITIZEN, name=f"citizen of repeat report {row['report_id']}")


async def _act_as_citizen(
    pool: Pool, client: Temporal, case_id: str, body: CitizenRequest, response: Response,
    signal: Any, action: Callable[[Actor], Any],
    check: Callable[[CaseState, Any], Refusal | None], *, original_only: bool,
    attempt: AuthAttempt, settings: AppSettings, key: str | None,
) -> ActionResult:
    """The citizen's token stands for an API key: it must belong to a report of this case.
    Rating and withdrawing are the original reporter's alone: the phone number of an intake
    is typed in, not verified, so a repeat report proves nothing about who the case's
    citizen is — only the token handed out with the case's own intake does.

    No such case and a wrong token get the same 404, so case numbers cannot be probed with
    made-up tokens; both count as failed authentications (api/auth_limit.py)."""
    actor = await _reporter(pool, case_id, body.token)
    if actor is None:
        await attempt.failed()
        raise not_found(case_id)
    if original_only and actor != CITIZEN:
        raise ApiError(
            403,
            "original_reporter_only",
            "a repeat report's token can add information; only the case's own citizen "
            "rates or withdraws it",
        )
    try:
        state = await cases.live_state(client, case_id, settings.query_timeout_seconds)
    except cases.Unanswered:  # worker down: check against the read model, signal (202)
        state = await cases.archived_state(pool, case_id)
    if state is None:
        raise ApiError(409, "case_closed", f"case {case_id} is closed")
    act = action(actor)
    # the reporter (whose token it is) is the caller whose Idempotency-Key this is
    caller = Principal(name=actor.name, role=actor.role, department_id=None)
    rid = cases.request_id(caller, case_id, type(act).__name__, key)
    return answer(response, await cases.act(client, state, signal, act, check, None, rid))


@_post("/rating", summary="评价 The citizen rates the handling (the case's own citizen only)")
async def rate(
    case_id: CaseId, body: RatingRequest, pool: Pool, client: Temporal, response: Response,
    attempt: Attempt, settings: AppSettings, idempotency_key: IdempotencyKey = None,
) -> ActionResult:
    def action(actor: Actor) -> RatingAction:
        return RatingAction(actor=actor, rating=body.rating, comment=body.comment)

    return await _act_as_citizen(
        pool, client, case_id, body, response, Case.rate, action, lifecycle.check_rating,
        original_only=True, attempt=attempt, settings=settings,
        key=idempotency_key,
    )


@_post("/supplement", summary="补充诉求 A reporter of the case adds information")
async def supplement(
    case_id: CaseId, body: SupplementRequest, pool: Pool, client: Temporal, response: Response,
    attempt: Attempt, settings: AppSettings, idempotency_key: IdempotencyKey = None,
) -> ActionResult:
    def action(actor: Actor) -> SupplementAction:
        return SupplementAction(actor=actor, text=body.text)

    return await _act_as_citizen(
        pool, client, case_id, body, response, Case.supplement, action,
        lifecycle.check_supplement, original_only=False, attempt=attempt, settings=settings,
        key=idempotency_key,
    )


@_post(
    "/withdraw",
    summary="撤诉 The citizen withdraws the complaint (before the reply; the case's own citizen)",
)
async def withdraw(
    case_id: CaseId, body: WithdrawRequest, pool: Pool, client: Temporal, response: Response,
    attempt: Attempt, settings: AppSettings, idempotency_key: IdempotencyKey = None,
) -> ActionResult:
    def action(actor: Actor) -> WithdrawAction:
        return WithdrawAction(actor=actor, reason=body.reason)

    return await _act_as_citizen(
        pool, client, case_id, body, response, Case.withdraw, action, lifecycle.check_withdraw,
        original_only=True, attempt=attempt, settings=settings,
        key=idempotency_key,
    )
