"""A department's handling of its case (承办): accept, contact, reply, return, raise a level,
ask for an extension, contribute as a co-handler."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

from fastapi import APIRouter, Response

from api import cases
from api.deps import CaseId, Department, Pool, Temporal
from api.errors import ACTION_ERRORS
from api.schemas import ActionResult, answer
from jiesu import lifecycle
from jiesu.domain import (
    AcceptAction,
    ContactAction,
    ContactInput,
    ContributionAction,
    ContributionInput,
    ExtensionAction,
    ExtensionInput,
    RaiseLevelAction,
    RaiseLevelInput,
    ReplyAction,
    ReplyInput,
    ReturnAction,
    ReturnInput,
)
from workflows.complaint import ComplaintWorkflow

router = APIRouter(prefix="/complaints/{case_id}", tags=["handling (承办)"])
_post = partial(router.post, response_model=ActionResult, responses=ACTION_ERRORS)


def _now_checked(check):  # checks that compare with the clock get the API's "now"
    return lambda state, action: check(state, action, datetime.now(UTC))


@_post("/accept", summary="签收 Accept the case")
async def accept(
    case_id: CaseId, principal: Department, pool: Pool, client: Temporal, response: Response
) -> ActionResult:
    return answer(
        response,
        await cases.perform(
            client,
            pool,
            case_id,
            principal,
            ComplaintWorkflow.accept,
            lambda _: AcceptAction(actor=principal.actor),
            lifecycle.check_accept,
        ),
    )


@_post("/contact", summary="联系诉求人 Record contact with the citizen")
async def contact(
    case_id: CaseId,
    principal: Department,
    pool: Pool,
    client: Temporal,
    response: Response,
    body: ContactInput | None = None,
) -> ActionResult:
    fields = (body or ContactInput()).model_dump()
    return answer(
        response,
        await cases.perform(
            client,
            pool,
            case_id,
            principal,
            ComplaintWorkflow.contact,
            lambda _: ContactAction(actor=principal.actor, **fields),
            lifecycle.check_contact,
        ),
    )


@_post("/reply", summary="办结答复 Reply with the outcome and evidence")
async def reply(
    case_id: CaseId,
    body: ReplyInput,
    principal: Department,
    pool: Pool,
    client: Temporal,
    response: Response,
) -> ActionResult:
    return answer(
        response,
        await cases.perform(
            client,
            pool,
            case_id,
            principal,
            ComplaintWorkflow.reply,
            lambda _: ReplyAction(actor=principal.actor, **body.model_dump()),
            lifecycle.check_reply,
        ),
    )


@_post("/return", summary="退单 Return the case: not this department's responsibility")
async def return_case(
    case_id: CaseId,
    body: ReturnInput,
    principal: Department,
    pool: Pool,
    client: Temporal,
    response: Response,
) -> ActionResult:
    return answer(
        response,
        await cases.perform(
            client,
            pool,
            case_id,
            principal,
            ComplaintWorkflow.return_case,
            lambda _: ReturnAction(actor=principal.actor, **body.model_dump()),
            _now_checked(lifecycle.check_return),
        ),
    )


@_post("/raise-level", summary="提级办 Beyond this department's authority: the level above")
async def raise_level(
    case_id: CaseId,
    body: RaiseLevelInput,
    principal: Department,
    pool: Pool,
    client: Temporal,
    response: Response,
) -> ActionResult:
    return answer(
        response,
        await cases.perform(
            client,
            pool,
            case_id,
            principal,
            ComplaintWorkflow.raise_level,
            lambda _: RaiseLevelAction(actor=principal.actor, **body.model_dump()),
            lifecycle.check_raise_level,
        ),
    )


@_post("/extension", summary="延期申请 Ask for more time: reasons, measures, promised date")
async def request_extension(
    case_id: CaseId,
    body: ExtensionInput,
    principal: Department,
    pool: Pool,
    client: Temporal,
    response: Response,
) -> ActionResult:
    return answer(
        response,
        await cases.perform(
            client,
            pool,
            case_id,
            principal,
            ComplaintWorkflow.request_extension,
            lambda _: ExtensionAction(actor=principal.actor, **body.model_dump()),
            _now_checked(lifecycle.check_extension),
        ),
    )


@_post("/contribution", summary="协办意见 A co-handling department's contribution")
async def contribute(
    case_id: CaseId,
    body: ContributionInput,
    principal: Department,
    pool: Pool,
    client: Temporal,
    response: Response,
) -> ActionResult:
    return answer(
        response,
        await cases.perform(
            client,
            pool,
            case_id,
            principal,
            ComplaintWorkflow.contribute,
            lambda _: ContributionAction(actor=principal.actor, **body.model_dump()),
            lifecycle.check_contribution,
        ),
    )
