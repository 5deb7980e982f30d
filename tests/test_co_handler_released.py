"""A co-handler the centre released (免除协办, waive) — or a new round released — that still
sends its contribution is refused ``co_handler_released`` (co-handler-released-v1, epoch
``lean-case-v8``), by the API (409) and by the case itself, whoever sends it.

Before, the refusal was ``already_done`` worded "has already contributed": false — it never
contributed; it was released and owes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from helpers import (
    SUPERVISOR,
    act,
    case_when,
    department,
    eventually,
    handle_of,
    keep_history,
    register,
)
from temporalio.client import Client

from jiesu.case import lifecycle
from jiesu.case.domain import (
    Actor,
    CaseSignal,
    CaseState,
    Channel,
    CoHandler,
    CoHandlersAction,
    ContributionAction,
    DepartmentRef,
    EventKind,
    Role,
    Status,
    Urgency,
)
from workflows.complaint import ComplaintWorkflow

MARKET = department("market")
NOW = datetime(2026, 11, 24, 9, tzinfo=UTC)


async def test_a_released_co_handler_that_contributes_is_told_it_was_released(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = (await register(api))["case_id"]  # → urban management
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    await act(api, case_id, "co-handlers", SUPERVISOR, department_ids=["market"])
    await act(api, case_id, "co-handlers/market/waive", SUPERVISOR)

    answer = await api.post(f"/api/v1/complaints/{case_id}/contribution",
                            json={"text": "Our inspectors visited"}, headers=MARKET)  # fmt: skip
    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["code"] == "co_handler_released", error
    assert "contributed" not in error["message"], error

    # signalled past the API (any Temporal client), the case refuses it the same way
    handle = handle_of(client, case_id)
    state = await handle.query(ComplaintWorkflow.state)
    market = next(c for c in state.co_handlers if c.department_id == "market")
    actor = Actor(role=Role.DEPARTMENT, name="market clerk", department_id="market")
    await handle.signal("contribute", ContributionAction(actor=actor, text="Visited"))

    async def refused() -> list[str] | None:
        state = await handle.query(ComplaintWorkflow.state)
        codes = [e.data["code"] for e in state.events if e.kind is EventKind.REJECTED]
        return codes or None

    assert await eventually(refused, within=30) == ["co_handler_released"]
    state = await handle.query(ComplaintWorkflow.state)
    assert next(c for c in state.co_handlers if c.department_id == "market") == market
    await handle.terminate("test finished")


async def test_a_released_co_handler_can_be_convened_again(
    api: httpx.AsyncClient, client: Client
) -> None:
    """Released (免除协办, or by a new round), a department is no co-handler any more: the
    centre may convene it again (reconvene-released-v1, epoch ``lean-case-v8``), once at a
    time — before, 会办 refused it ``already_involved`` for the rest of the case."""
    case_id = (await register(api))["case_id"]  # → urban management
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    await act(api, case_id, "co-handlers", SUPERVISOR, department_ids=["market"])
    await act(api, case_id, "co-handlers/market/waive", SUPERVISOR)

    again = await act(api, case_id, "co-handlers", SUPERVISOR, department_ids=["market"])
    entries = [(c["department_id"], c["waived"]) for c in again["case"]["co_handlers"]]
    assert entries == [("market", True), ("market", False)], entries
    # once at a time: convened and owing, it is refused again
    twice = await api.post(f"/api/v1/complaints/{case_id}/co-handlers",
                           json={"department_ids": ["market"]}, headers=SUPERVISOR)  # fmt: skip
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_involved"
    # it owes its contribution now, and gives it
    await act(api, case_id, "contribution", MARKET, text="Our inspectors visited")
    state = await case_when(api, case_id, lambda s: s["co_handlers"][-1]["contributed_at"])
    assert state["co_handlers"][0]["waived"] and state["co_handlers"][0]["contributed_at"] is None
    handle = handle_of(client, case_id)
    await handle.terminate("test finished")
    await keep_history(handle, "co_handler_convened_again")


def _case_with(co_handlers: list[CoHandler]) -> CaseState:
    return CaseState(
        case_id="JS1", status=Status.HANDLING, title="t", category_id="c", grid_id="g",
        address="", channel=Channel.HOTLINE, urgency=Urgency.GENERAL, received_at=NOW,
        assignment={"department_id": "u", "department_name": "U",  # type: ignore[arg-type]
                    "assigned_at": NOW, "by_rule": True},
        co_handlers=co_handlers,
    )  # fmt: skip


def _convene(*department_ids: str) -> CoHandlersAction:
    return CoHandlersAction(actor=Actor(role=Role.SUPERVISOR, name="centre"),
                            departments=[DepartmentRef(id=d, name=d) for d in department_ids])


def test_a_case_before_the_rule_keeps_a_released_co_handler_involved() -> None:
    released = CoHandler(department_id="market", department_name="M", waived=True)
    state = _case_with([released])
    assert lifecycle.check_co_handlers_at(state, _convene("market"), NOW) is None
    before = lifecycle.CHECKS_BEFORE_RECONVENING[CaseSignal.ADD_CO_HANDLERS]
    refusal = before(state, _convene("market"), NOW)
    assert refusal is not None and refusal.code == "already_involved"
    contributed = CoHandler(department_id="market", department_name="M", contributed_at=NOW)
    refusal = lifecycle.check_co_handlers_at(_case_with([contributed]), _convene("market"), NOW)
    assert refusal is not None and refusal.code == "already_involved"  # only released ones


def test_convening_again_counts_towards_the_case_bound() -> None:
    released = [CoHandler(department_id=f"d{n}", department_name="D", waived=True)
                for n in range(lifecycle.MAX_CO_HANDLERS)]  # fmt: skip
    refusal = lifecycle.check_co_handlers_at(_case_with(released), _convene("d0"), NOW)
    assert refusal is not None and refusal.code == "co_handler_limit"
