"""The citizen's own actions (诉求人), authorised by the citizen token handed out with each
report: the case's own citizen rates, adds information and withdraws; the citizen of a
repeat report linked to the case (并单) adds information only. Each answers the case as a
citizen receives it (jiesu.access.citizen_view): the steps of the case and the reporter's own,
never the staff who took them nor the centre's internals."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter

from api import cases
from api.actions import ActionSpec, Call, add_actions
from api.auth_limit import Attempt, AuthAttempt
from api.deps import Pool, Principal
from api.errors import ApiError, not_found
from api.schemas import (
    ActionResult,
    CitizenActionResult,
    RatingRequest,
    SupplementRequest,
    WithdrawRequest,
)
from jiesu.access import citizen_tokens
from jiesu.access.citizen_view import Reporter, citizen_case
from jiesu.access.grids import rates_own_unit
from jiesu.case import lifecycle
from jiesu.case.domain import CaseState, RatingAction, SupplementAction, WithdrawAction
from workflows.complaint import ComplaintWorkflow as Case

router = APIRouter(prefix="/complaints/{case_id}", tags=["citizen (诉求人)"])


async def _reporter(pool: Pool, case_id: str, token: str) -> Reporter | None:
    """Whose token this is: the case's own citizen (``CASE_CITIZEN``), the citizen of one of
    its repeat reports, or nobody (None). Only the sha256 of a token is stored
    (citizen_tokens)."""
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
    return Reporter(report_id=row["report_id"])


@dataclass(frozen=True)
class CitizenCaller:
    """The citizen's token (a field of the body) stands for an API key: it must belong to a
    report of this case. With ``original_only`` (rating, withdrawing) only the original
    reporter's: the phone number of an intake is typed in, not verified, so a repeat report
    proves nothing about who the case's citizen is — only the token handed out with the
    case's own intake does.

    No such case and a wrong token get the same 404, so case numbers cannot be probed with
    made-up tokens; both count as failed authentications (api/auth_limit.py)."""

    original_only: bool
    dependency: object = Attempt
    also_forbidden: tuple[str, ...] = ()  # the 403s its action adds (a rating: own_unit_rating)

    @property
    def forbidden_codes(self) -> tuple[str, ...]:
        """The 403s this caller answers of its own (its operations' documentation)."""
        return (("original_reporter_only",) if self.original_only else ()) + self.also_forbidden

    async def perform(self, spec: ActionSpec, call: Call) -> CitizenActionResult:
        fields = dict(call.fields)
        attempt: AuthAttempt = call.credential
        reporter = await _reporter(call.pool, call.case_id, fields.pop("token"))
        if reporter is None:
            await attempt.failed()
            raise not_found(call.case_id)
        if self.original_only and not reporter.own:
            raise ApiError(
                403,
                "original_reporter_only",
                "a repeat report's token can add information; only the case's own citizen "
                "rates or withdraws it",
            )
        return await act_as(reporter, spec, call)


async def act_as(reporter: Reporter, spec: ActionSpec, call: Call) -> CitizenActionResult:
    """Perform ``spec`` for a reporter already known: by their token, or by the phone of an
    inbound SMS answering the rating prompt (api/routers/channels.py, ``CASE_CITIZEN``). The
    case is answered as that reporter receives it (jiesu.access.citizen_view.citizen_case):
    not the staff's logins and notes, not the centre's internals, not another reporter's
    steps or words (并单)."""
    result = await _act_as(reporter, spec, call)
    return CitizenActionResult(applied=result.applied, case=citizen_case(result.case, reporter))


async def _act_as(reporter: Reporter, spec: ActionSpec, call: Call) -> ActionResult:
    actor = reporter.actor
    fields = {k: v for k, v in call.fields.items() if k != "token"}
    act = spec.action(actor=actor, **fields)
    # the reporter (whose token it is) is the caller whose Idempotency-Key this is
    caller = Principal(name=actor.name, role=actor.role, department_id=None)
    rid = cases.request_id(caller, call.case_id, type(act).__name__, call.idempotency_key)
    # As for staff (api/cases.py perform): the read model's copy stands in for the query when
    # it allows the action — the workflow judges it anyway; anything else (no copy yet, a copy
    # that refuses, a retry of an applied action) asks the workflow, as the copy may be behind.
    copy = await cases.read_model_copy(call.pool, call.case_id)
    if copy is not None and spec.check(copy, act) is None:
        await _not_own_unit(call, spec, copy)
        return await cases.act(
            call.client, copy, spec.signal, act, spec.check, None, rid, stale=True,
            pool=call.pool, feed=call.feed, sent_at=call.arrived,
        )  # fmt: skip
    stale = False
    try:
        state = await cases.live_state(
            call.client, call.case_id, call.settings.query_timeout_seconds
        )
    except cases.Unanswered:  # worker down: the read model's copy; the workflow judges (202)
        state, stale = await cases.archived_state(call.pool, call.case_id), True
    if state is None and stale:  # registered (the token is its own), not yet readable
        raise cases.not_ready(call.case_id)
    if state is None:
        raise ApiError(409, "case_closed", f"case {call.case_id} is closed")
    await _not_own_unit(call, spec, state)
    return await cases.act(
        call.client, state, spec.signal, act, spec.check, None, rid, stale=stale,
        pool=call.pool, feed=call.feed, sent_at=call.arrived,
    )  # fmt: skip


async def _not_own_unit(call: Call, spec: ActionSpec, state: CaseState) -> None:
    """Refuse a rating of a grid worker's patrol report by that worker when their own unit
    leads or co-handles the case (jiesu.access.grids.rates_own_unit): the reporter of a patrol
    report is the worker, so its token — in the intake SMS to their phone — and the rating SMS
    from that phone are theirs. A rating is the citizen's verdict on the handling; it feeds the
    satisfaction rate and the unit's ranking, which a unit must not give itself. Checked here,
    before the signal, for every way a rating comes (API, the citizen page, an inbound SMS)."""
    if spec.action is not RatingAction:
        return
    worker = await rates_own_unit(call.pool, state)
    if worker is not None:
        raise ApiError(
            403,
            "own_unit_rating",
            f"this case is a patrol report by grid worker {worker}, handled by their own unit: "
            "it is not rated by its reporter",
        )


ORIGINAL_REPORTER = CitizenCaller(original_only=True)
RATER = CitizenCaller(original_only=True, also_forbidden=("own_unit_rating",))
ANY_REPORTER = CitizenCaller(original_only=False)

ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("/rating", "评价 The citizen rates the handling (the case's own citizen only)",
               RATER, signal=Case.rate, action=RatingAction,
               check=lifecycle.check_rating, body=RatingRequest, name="rate",
               result=CitizenActionResult),
    ActionSpec("/supplement", "补充诉求 A reporter of the case adds information: at most"
               f" {lifecycle.MAX_SUPPLEMENTS} a case, of which the citizens of its repeat"
               f" reports (并单) add at most {lifecycle.MAX_REPEAT_REPORT_SUPPLEMENTS} together"
               f" and {lifecycle.MAX_SUPPLEMENTS_PER_REPEAT_REPORTER} each; the case's own"
               " citizen keeps the rest. Past a limit: 409 supplement_limit",
               ANY_REPORTER, signal=Case.supplement, action=SupplementAction,
               check=lifecycle.check_supplement, body=SupplementRequest, name="supplement",
               result=CitizenActionResult),
    ActionSpec("/withdraw", "撤诉 The citizen withdraws the complaint"
               " (before the reply; the case's own citizen)",
               ORIGINAL_REPORTER, signal=Case.withdraw, action=WithdrawAction,
               check=lifecycle.check_withdraw, body=WithdrawRequest, name="withdraw",
               result=CitizenActionResult),
)  # fmt: skip
add_actions(router, ACTIONS)
