"""The hotline centre's actions (派单 / 督办): dispatch, choose in a reassignment, take a case
away (二次交办) or hand it over (移交), decide on returns and extensions, joint handling,
supervision, callbacks."""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path

from api import cases
from api.actions import ActionSpec, StaffCaller, add_actions
from api.deps import CentreStaff, Supervisor
from api.errors import ApiError
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
    HandoverAction,
    HandoverInput,
    Line,
    ReassignChoice,
    ReassignChoiceInput,
    ReturnDecisionAction,
    ReturnDecisionInput,
    SecondAssignmentAction,
    SecondAssignmentInput,
    SupervisionAction,
    SupervisionForm,
    SupervisionInput,
    WaiveAction,
)
from workflows.complaint import ComplaintWorkflow as Case
from workflows.reassignment import ReassignmentWorkflow

router = APIRouter(prefix="/complaints/{case_id}", tags=["supervision (派单 / 督办)"])

DISPATCHER = StaffCaller(Supervisor)


async def _with_department_name(pool: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """The department a dispatcher gives the case to (派单, 改派, 二次交办): one of the reference
    data, and not the hotline centre (lifecycle.check_assignee), else a 422 before the case
    is looked at."""
    refusal = lifecycle.check_assignee(fields["department_id"])
    if refusal is not None:
        raise ApiError(422, refusal.code, refusal.reason)
    return {**fields, "department_name": await cases.department_ref(pool, fields["department_id"])}


def _said(refusal: lifecycle.Refusal | None) -> None:
    if refusal is not None:
        raise ApiError(422, refusal.code, refusal.reason)


async def _second_assignment(pool: Any, fields: dict[str, Any]) -> dict[str, Any]:
    _said(lifecycle.blank_text({"reason": fields["reason"]}))
    return await _named_department(pool, fields)


async def _handover(pool: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """移交's reason must say something; the successor is a unit in service, not the centre.
    That the holder is out of service the case looks up itself (409 holder_in_service)."""
    _said(lifecycle.blank_text({"reason": fields["reason"]}))
    return await _with_department_name(pool, fields)


async def _return_decision(pool: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """A rejection's reason must say something (an upheld return needs none)."""
    _said(None if fields["upheld"] else lifecycle.blank_text({"note": fields.get("note", "")}))
    return fields


async def _supervision(pool: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """问责's reason (note), decision and persons must say something."""
    if fields.get("form") is SupervisionForm.ACCOUNTABILITY:
        texts = {"note": fields.get("note", ""), "decision": fields.get("decision", "")}
        _said(lifecycle.blank_text(texts, fields.get("persons") or []))
    return await _supervision_departments(pool, fields)


async def _co_handlers(pool: Any, fields: dict[str, Any]) -> dict[str, Any]:
    departments = [
        DepartmentRef(id=d, name=await cases.department_ref(pool, d))
        for d in dict.fromkeys(fields["department_ids"])
    ]
    return {"departments": departments, "note": fields["note"], "due": fields.get("due")}


async def _named_department(pool: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """二次交办 to a named department: its name from reference data (none named: none)."""
    if fields.get("department_id") is None:
        return fields
    return await _with_department_name(pool, fields)


async def _supervision_departments(pool: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """会办's co-handlers, checked against reference data like /co-handlers."""
    ids = dict.fromkeys(fields.get("department_ids") or [])
    return {
        **fields,
        "departments": [DepartmentRef(id=d, name=await cases.department_ref(pool, d)) for d in ids],
    }


def _at_now(check: Any) -> Any:  # checks that compare with the clock get the API's "now"
    return lambda state, action: check(state, action, datetime.now(UTC))


def _reassignment_child(state: CaseState) -> str:
    if state.reassignment is None:
        raise ApiError(409, "no_reassignment", f"case {state.case_id} is not being reassigned")
    return state.reassignment.child_id


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("/dispatch", "人工派单 Dispatch a case from the centre's queue", DISPATCHER,
               signal=Case.dispatch, action=DispatchAction, check=lifecycle.check_dispatch,
               body=DispatchInput, prepare=_with_department_name),
    ActionSpec("/reassign", "改派 Choose the department in a pending reassignment", DISPATCHER,
               signal=ReassignmentWorkflow.choose, action=ReassignChoice,
               check=lifecycle.check_reassign_choice, body=ReassignChoiceInput,
               prepare=_with_department_name, target=_reassignment_child),
    ActionSpec("/second-assignment", "二次交办 Take the case from an overdue department, or on "
               "review of its reply, and assign it again", DISPATCHER,
               signal=Case.order_second_assignment, action=SecondAssignmentAction,
               check=_at_now(lifecycle.check_second_assignment), body=SecondAssignmentInput,
               prepare=_second_assignment),
    ActionSpec("/hand-over", "移交 Hand the case of a unit out of service (停用) to the unit "
               "that takes over its work", DISPATCHER, signal=Case.hand_over,
               action=HandoverAction, check=lifecycle.check_handover, body=HandoverInput,
               prepare=_handover),
    ActionSpec("/return/decision", "退单审核 Uphold (reassign) or reject (with the reason) a "
               "department's return", DISPATCHER, signal=Case.decide_return,
               action=ReturnDecisionAction, check=lifecycle.check_return_decision,
               body=ReturnDecisionInput, prepare=_return_decision),
    ActionSpec("/extension/decision", "延期审批 Approve or reject the extension request",
               DISPATCHER, signal=Case.decide_extension, action=ExtensionDecisionAction,
               check=lifecycle.check_extension_decision, body=ExtensionDecisionInput),
    ActionSpec("/co-handlers", "会办 Add co-handling (协办) departments", DISPATCHER,
               signal=Case.add_co_handlers, action=CoHandlersAction,
               check=_at_now(lifecycle.check_co_handlers_at), body=CoHandlersInput,
               prepare=_co_handlers),
    ActionSpec("/co-handlers/{department_id}/waive", "Waive a co-handler's contribution",
               DISPATCHER, signal=Case.waive_co_handler, action=WaiveAction,
               check=lifecycle.check_waive, name="waive_co_handler",
               # validated as WaiveAction's field is, so that a bad id is a 422, not a 500
               path_fields={"department_id": Annotated[Line, Path(min_length=1, max_length=64)]}),
    ActionSpec("/supervision", "督办 Supervise the unit: form (提醒/催办/督办/会办/问责), opinion, "
               f"deadline (at most {lifecycle.MAX_SUPERVISION_ORDERS} orders a case: then 409"
               " supervision_limit)", DISPATCHER, signal=Case.supervise, action=SupervisionAction,
               check=_at_now(lifecycle.check_supervision), body=SupervisionInput,
               optional_body=True, prepare=_supervision),
    ActionSpec("/callback", "回访 Record the verdict the citizen gave by phone",
               StaffCaller(CentreStaff), signal=Case.callback, action=CallbackAction,
               check=lifecycle.check_callback, body=CallbackInput),
)  # fmt: skip
add_actions(router, ACTIONS)
