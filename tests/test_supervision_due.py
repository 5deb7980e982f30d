"""督办's deadline for the unit (``due``) is at most the policy's ``max_extension_days`` ahead
(and so are 会办's contribution deadlines, by 督办 or by /co-handlers).

The ladder's first step lasts until ``due``, and one ladder climbs at a time: an order due in
2099 (accepted: any timezone-aware moment to the year 2100 was) kept the case's ladder on its
first step (提醒) for decades. The department's breaches started no ladder of their own (one
was climbing), no later order could be given (``already_supervised``), and the ladder ended
only when the unit replied. Now such an order is ``409 due_too_far`` and the case is unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from helpers import OPERATOR, SUPERVISOR, act, case, eventually, handle_of, register
from temporalio.client import Client

from jiesu.case import lifecycle
from jiesu.case.domain import (
    Actor,
    CaseState,
    Channel,
    CoHandlersAction,
    Deadlines,
    DepartmentRef,
    EventKind,
    Role,
    Status,
    SupervisionAction,
    Urgency,
)
from workflows.complaint import ComplaintWorkflow

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _in(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def _assigned(api: httpx.AsyncClient, case_id: str) -> dict[str, Any] | None:
    state = await case(api, case_id, OPERATOR)
    return state if state["status"] == "assigned" else None


async def test_an_order_due_beyond_the_bound_is_refused_and_changes_nothing(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = (await register(api))["case_id"]
    await eventually(lambda: _assigned(api, case_id), within=30)
    for due in (_in(91), "2099-12-31T00:00:00+08:00"):
        refused = await act(api, case_id, "supervision", SUPERVISOR, expect=409,
                            form="urge", note="Hurry", due=due)  # fmt: skip
        assert refused["error"]["code"] == "due_too_far", refused
        assert "90" in refused["error"]["message"], refused
    joint = await act(api, case_id, "supervision", SUPERVISOR, expect=409, form="joint_handling",
                      department_ids=["police"], contribution_due=_in(400))  # fmt: skip
    assert joint["error"]["code"] == "due_too_far", joint
    convened = await act(api, case_id, "co-handlers", SUPERVISOR, expect=409,
                         department_ids=["police"], due=_in(400))  # fmt: skip
    assert convened["error"]["code"] == "due_too_far", convened
    state = await case(api, case_id, OPERATOR)
    assert state["escalation"] is None and state["co_handlers"] == [], state
    assert "escalation_started" not in [e["kind"] for e in state["events"]]
    # within the bound: the order stands (200, or 202 on a loaded machine: then it is waited for)
    ordered = await api.post(f"/api/v1/complaints/{case_id}/supervision", headers=SUPERVISOR,
                             json={"form": "urge", "note": "Hurry", "due": _in(89)})  # fmt: skip
    assert ordered.status_code in (200, 202), ordered.text

    async def supervised() -> bool:
        escalation = (await case(api, case_id, OPERATOR))["escalation"]
        return bool(escalation and escalation["active"])

    await eventually(supervised, within=30)
    await handle_of(client, case_id).terminate("test finished")


async def test_the_case_refuses_an_order_due_beyond_the_bound_whoever_sends_it(
    api: httpx.AsyncClient, client: Client
) -> None:
    """The bound was the API's only: an order the API judged from its read-model copy (the
    worker silent) or one signalled by any Temporal client started the decades-long ladder.
    Since supervision-due-bounded-v1 (epoch lean-case-v7) the case refuses it itself."""
    case_id = (await register(api))["case_id"]
    await eventually(lambda: _assigned(api, case_id), within=30)
    handle = handle_of(client, case_id)
    boss = Actor(role=Role.SUPERVISOR, name="any client")
    far = datetime.now(UTC) + timedelta(days=400)
    await handle.signal("supervise", SupervisionAction(actor=boss, form="urge", note="Hurry",
                                                       due=far))  # fmt: skip
    police = [DepartmentRef(id="police", name="县公安局")]
    await handle.signal("add_co_handlers", CoHandlersAction(actor=boss, departments=police,
                                                            due=far))  # fmt: skip

    async def refused() -> list[str] | None:
        state = await handle.query(ComplaintWorkflow.state)
        codes = [e.data["code"] for e in state.events if e.kind is EventKind.REJECTED]
        return codes if len(codes) >= 2 else None

    assert await eventually(refused, within=30) == ["due_too_far", "due_too_far"]
    state = await handle.query(ComplaintWorkflow.state)
    assert state.escalation is None and state.co_handlers == []
    await handle.terminate("test finished")


def test_the_bound_is_the_policy_recorded_in_the_case() -> None:
    state = CaseState(
        case_id="JS1", status=Status.ASSIGNED, title="t", category_id="c", grid_id="g",
        address="", channel=Channel.HOTLINE, urgency=Urgency.GENERAL, received_at=NOW,
        assignment={"department_id": "u", "department_name": "U",  # type: ignore[arg-type]
                    "assigned_at": NOW, "by_rule": True},
        deadlines=Deadlines(accept=NOW + timedelta(hours=2), finish=NOW + timedelta(days=2),
                            rating_window_hours=72, max_extension_days=10),
    )  # fmt: skip
    order = SupervisionAction(actor=Actor(role=Role.SUPERVISOR, name="centre"), form="urge",
                              due=NOW + timedelta(days=11))  # fmt: skip
    refusal = lifecycle.check_supervision(state, order, NOW)
    assert refusal is not None and refusal.code == "due_too_far"
    within = order.model_copy(update={"due": NOW + timedelta(days=10)})
    assert lifecycle.check_supervision(state, within, NOW) is None
