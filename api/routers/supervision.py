"""The hotline centre's actions (派单 / 督办): dispatch, choose in a reassignment, decide on
extensions, joint handling, supervision, callbacks."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from api import cases
from api.actions import IdempotencyKey, add_action
from api.deps import AppSettings, CaseId, CentreStaff, Pool, Supervisor, Temporal
from api.errors import ACTION_ERRORS, ApiError
from api.schemas import ActionResult, answer
from jiesu.case import lifecycle
from jiesu.case.domain import (
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
    Line,
    ReassignChoice,
    ReassignChoiceInput,
    SupervisionAction,
    SupervisionInput,
    WaiveAction,
)
from workflows.complaint import ComplaintWorkflow as Case
from workflows.reassignment import ReassignmentWorkflow

router = APIRouter(prefix="/complaints/{case_id}", tags=["supervision (派单 / 督办)"])


async def _with_department_name(pool: Any, fields: dict[str, Any]) -> dict[str, Any]:
    return {**fields, "department_name": await cases.department_ref(pool, fields["department_id"])}


async def _co_handlers(pool: Any, fields: dict[str, Any]) -> dict[str, Any]:
    departments = [
        DepartmentRef(id=d, name=await cases.department_ref(pool, d))
        for d in dict.fromkeys(fields["department_ids"])
    ]
    return {"departments": departments, "note": fields["note"]}


def _reassignment_child(state: CaseState) -> str:
    if state.reassignment is None:
        raise ApiError(409, "no_reassignment", f"case {state.case_id} is not being reassigned")
    return state.reassignment.child_id


add_action(router, "/dispatch", summary="人工派单 Dispatch a case from the centre's queue",
           caller=Supervisor, signal=Case.dispatch, action=DispatchAction,
           check=lifecycle.check_dispatch, body=DispatchInput, prepare=_with_department_name)
add_action(router, "/reassign", summary="改派 Choose the department in a pending reassignment",
           caller=Supervisor, signal=ReassignmentWorkflow.choose, action=ReassignChoice,
           check=lifecycle.check_reassign_choice, body=ReassignChoiceInput,
           prepare=_with_department_name, target=_reassignment_child)
add_action(router, "/extension/decision",
           summary="延期审批 Approve or reject the extension request",
           caller=Supervisor, signal=Case.decide_extension, action=ExtensionDecisionAction,
           check=lifecycle.check_extension_decision, body=ExtensionDecisionInput)
add_action(router, "/co-handlers", summary="会办 Add co-handling (协办) departments",
           caller=Supervisor, signal=Case.add_co_handlers, action=CoHandlersAction,
           check=lifecycle.check_co_handlers, body=CoHandlersInput, prepare=_co_handlers)
add_action(router, "/supervision", summary="督办 Put the case on the supervision ladder",
           caller=Supervisor, signal=Case.supervise, action=SupervisionAction,
           check=lifecycle.check_supervision, body=SupervisionInput, optional_body=True)
add_action(router, "/callback", summary="回访 Record the verdict the citizen gave by phone",
           caller=CentreStaff, signal=Case.callback, action=CallbackAction,
           check=lifecycle.check_callback, body=CallbackInput)


@router.post(
    "/co-handlers/{department_id}/waive",
    response_model=ActionResult,
    responses=ACTION_ERRORS,
    summary="Waive a co-handler's contribution",
)
async def waive_co_handler(
    case_id: CaseId,
    # validated as WaiveAction's field is, so that a bad id is a 422, not a 500
    department_id: Annotated[Line, Path(min_length=1, max_length=64)],
    principal: Supervisor,
    pool: Pool,
    client: Temporal,
    settings: AppSettings,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> ActionResult:
    result = await cases.perform(
        client, pool, case_id, principal, Case.waive_co_handler,
        lambda _: WaiveAction(actor=principal.actor, department_id=department_id),
        lifecycle.check_waive, action_name=f"co-handlers/{department_id}/waive",
        idempotency_key=idempotency_key, rpc_seconds=settings.query_timeout_seconds,
    )
    return answer(response, result)
