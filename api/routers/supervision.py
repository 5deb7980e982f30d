"""The hotline centre's actions (派单 / 督办): dispatch, choose in a reassignment, decide on
extensions, joint handling, supervision, callbacks."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Response

from api import cases
from api.deps import CaseId, CentreStaff, Pool, Supervisor, Temporal
from api.errors import ACTION_ERRORS, ApiError
from api.schemas import ActionResult, answer
from jiesu import lifecycle
from jiesu.domain import (
    CallbackAction,
    CallbackInput,
    CaseState,
    CoHandlersAction,
    CoHandlersInput,
    DepartmentRef,
    DispatchAction,
    DispatchInput,
    ExtensionDecisionAction,
    ExtensionDecisionInput,
    ReassignChoice,
    ReassignChoiceInput,
    SupervisionAction,
    SupervisionInput,
    WaiveAction,
)
from workflows.complaint import ComplaintWorkflow
from workflows.reassignment import ReassignmentWorkflow

router = APIRouter(prefix="/complaints/{case_id}", tags=["supervision (派单 / 督办)"])
_post = partial(router.post, response_model=ActionResult, responses=ACTION_ERRORS)


@_post("/dispatch", summary="人工派单 Dispatch a case from the centre's queue")
async def dispatch(
    case_id: CaseId,
    body: DispatchInput,
    principal: Supervisor,
    pool: Pool,
    client: Temporal,
    response: Response,
) -> ActionResult:
    name = await cases.department_ref(pool, body.department_id)
    return answer(
        response,
        await cases.perform(
            client,
            pool,
            case_id,
            principal,
            ComplaintWorkflow.dispatch,
            lambda _: DispatchAction(
                actor=principal.actor, department_name=name, **body.model_dump()
            ),
            lifecycle.check_dispatch,
        ),
    )


def _reassignment_child(state: CaseState) -> str:
    if state.reassignment is None:
        raise ApiError(409, "no_reassignment", f"case {state.case_id} is not being reassigned")
    return state.reassignment.child_id


@_post("/reassign", summary="改派 Choose the department in a pending reassignment")
async def reassign(
    case_id: CaseId,
    body: ReassignChoiceInput,
    principal: Supervisor,
    pool: Pool,
    client: Temporal,
    response: Response,
) -> ActionResult:
    name = await cases.department_ref(pool, body.department_id)
    return answer(
        response,
        await cases.perform(
            client,
            pool,
            case_id,
            principal,
            ReassignmentWorkflow.choose,
            lambda _: ReassignChoice(
                actor=principal.actor, department_name=name, **body.model_dump()
            ),
            lifecycle.check_reassign_choice,
            target=_reassignment_child,
        ),
    )


@_post("/extension/decision", summary="延期审批 Approve or reject the extension request")
async def decide_extension(
    case_id: CaseId,
    body: ExtensionDecisionInput,
    principal: Supervisor,
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
            ComplaintWorkflow.decide_extension,
            lambda _: ExtensionDecisionAction(actor=principal.actor, **body.model_dump()),
            lifecycle.check_extension_decision,
        ),
    )


@_post("/co-handlers", summary="会办 Add co-handling (协办) departments")
async def add_co_handlers(
    case_id: CaseId,
    body: CoHandlersInput,
    principal: Supervisor,
    pool: Pool,
    client: Temporal,
    response: Response,
) -> ActionResult:
    departments = [
        DepartmentRef(id=d, name=await cases.department_ref(pool, d))
        for d in dict.fromkeys(body.department_ids)
    ]
    return answer(
        response,
        await cases.perform(
            client,
            pool,
            case_id,
            principal,
            ComplaintWorkflow.add_co_handlers,
            lambda _: CoHandlersAction(
                actor=principal.actor, departments=departments, note=body.note
            ),
            lifecycle.check_co_handlers,
        ),
    )


@_post("/co-handlers/{department_id}/waive", summary="Waive a co-handler's contribution")
async def waive_co_handler(
    case_id: CaseId,
    department_id: str,
    principal: Supervisor,
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
            ComplaintWorkflow.waive_co_handler,
            lambda _: WaiveAction(actor=principal.actor, department_id=department_id),
            lifecycle.check_waive,
        ),
    )


@_post("/supervision", summary="督办 Put the case on the supervision ladder")
async def supervise(
    case_id: CaseId,
    principal: Supervisor,
    pool: Pool,
    client: Temporal,
    response: Response,
    body: SupervisionInput | None = None,
) -> ActionResult:
    fields = (body or SupervisionInput()).model_dump()
    return answer(
        response,
        await cases.perform(
            client,
            pool,
            case_id,
            principal,
            ComplaintWorkflow.supervise,
            lambda _: SupervisionAction(actor=principal.actor, **fields),
            lifecycle.check_supervision,
        ),
    )


@_post("/callback", summary="回访 Record the verdict the citizen gave by phone")
async def callback(
    case_id: CaseId,
    body: CallbackInput,
    principal: CentreStaff,
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
            ComplaintWorkflow.callback,
            lambda _: CallbackAction(actor=principal.actor, **body.model_dump()),
            lifecycle.check_callback,
        ),
    )
