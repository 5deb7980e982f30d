"""A co-handler the centre released (免除协办, waive) — or a new round released — that still
sends its contribution is refused ``co_handler_released`` (co-handler-released-v1, epoch
``lean-case-v8``), by the API (409) and by the case itself, whoever sends it.

Before, the refusal was ``already_done`` worded "has already contributed": false — it never
contributed; it was released and owes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
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
    replay_checked,
)
from temporalio.client import Client

from api.cases import read_model_copy
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
    SupervisionAction,
    SupervisionForm,
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


def _case_with(co_handlers: list[CoHandler], *, since_v8: bool = True) -> CaseState:
    return CaseState(reconvenes_released=since_v8,
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
    before = lifecycle.CHECKS[CaseSignal.ADD_CO_HANDLERS]  # the case's rule, by its state
    refusal = before(_case_with([released], since_v8=False), _convene("market"), NOW)
    assert refusal is not None and refusal.code == "already_involved"
    contributed = CoHandler(department_id="market", department_name="M", contributed_at=NOW)
    refusal = lifecycle.check_co_handlers_at(_case_with([contributed]), _convene("market"), NOW)
    assert refusal is not None and refusal.code == "already_involved"  # only released ones


def test_convening_again_counts_towards_the_case_bound() -> None:
    released = [CoHandler(department_id=f"d{n}", department_name="D", waived=True)
                for n in range(lifecycle.MAX_CO_HANDLERS)]  # fmt: skip
    refusal = lifecycle.check_co_handlers_at(_case_with(released), _convene("d0"), NOW)
    assert refusal is not None and refusal.code == "co_handler_limit"


def test_the_api_and_the_console_judge_a_case_before_v8_by_its_own_rule() -> None:
    """The API's 会办 and 督办 checks and the console's pickers judge by the case's rule
    (CaseState.reconvenes_released, set by the workflow from its epoch). Before, they judged
    every case by lean-case-v8's: a case before it was offered its released co-handler, the
    API sent the 会办, and the case refused it already_involved."""
    released = CoHandler(department_id="market", department_name="M", waived=True)
    old = _case_with([released], since_v8=False)
    case_rule = lifecycle.CHECKS[CaseSignal.ADD_CO_HANDLERS]  # what the workflow asks
    api_rule = lifecycle.CHECKS[CaseSignal.ADD_CO_HANDLERS]
    assert case_rule(old, _convene("market"), NOW).code == "already_involved"  # type: ignore[union-attr]
    refusal = api_rule(old, _convene("market"), NOW)
    assert refusal is not None and refusal.code == "already_involved", refusal
    assert lifecycle.co_handler_choices(old, ["market", "police"]) == ["police"]
    order = SupervisionAction(
        actor=Actor(role=Role.SUPERVISOR, name="centre"), form=SupervisionForm.JOINT_HANDLING,
        note="会办", department_ids=["market"], departments=[DepartmentRef(id="market", name="M")],
    )  # fmt: skip
    refusal = lifecycle.check_supervision(old, order, NOW)
    assert refusal is not None and refusal.code == "already_involved", refusal
    # a case of lean-case-v8 is offered it, and the API lets the 会办 through
    new = _case_with([released])
    assert lifecycle.co_handler_choices(new, ["market", "police"]) == ["market", "police"]
    assert api_rule(new, _convene("market"), NOW) is None
    assert lifecycle.check_supervision(new, order, NOW) is None


async def test_a_case_says_which_rule_of_convening_it_runs(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    """A case of lean-case-v8 says so in its state (the workflow's query and the read
    model's copy the API and the console judge from)."""
    case_id = (await register(api))["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    handle = handle_of(client, case_id)
    assert (await handle.query(ComplaintWorkflow.state)).reconvenes_released is True
    copy = await read_model_copy(pool, case_id)
    assert copy is not None and copy.reconvenes_released is True
    await handle.terminate("test finished")


async def test_a_co_handler_convened_and_released_again_and_again_stops_at_the_bound(
    api: httpx.AsyncClient, client: Client
) -> None:
    """会办 and 免除协办 of the same unit over and over: each convening is an entry of its own,
    counted towards the case's MAX_CO_HANDLERS (then 409 co_handler_limit, and the case
    itself refuses it from any client); a contribution lands on the one entry that owes it,
    a second is already_done, and the history replays."""
    case_id = (await register(api))["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    for _ in range(lifecycle.MAX_CO_HANDLERS - 1):
        await act(api, case_id, "co-handlers", SUPERVISOR, department_ids=["market"])
        await act(api, case_id, "co-handlers/market/waive", SUPERVISOR)
    await act(api, case_id, "co-handlers", SUPERVISOR, department_ids=["market"])  # the 20th
    await act(api, case_id, "co-handlers/market/waive", SUPERVISOR)
    refused = await api.post(f"/api/v1/complaints/{case_id}/co-handlers",
                             json={"department_ids": ["market"]}, headers=SUPERVISOR)  # fmt: skip
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "co_handler_limit"
    handle = handle_of(client, case_id)
    actor = Actor(role=Role.SUPERVISOR, name="centre", request_id="past-the-bound")
    await handle.signal("add_co_handlers", CoHandlersAction(
        actor=actor, departments=[DepartmentRef(id="market", name="M")]))  # fmt: skip

    async def refused_by_the_case() -> str | None:
        state = await handle.query(ComplaintWorkflow.state)
        found = [e for e in state.events if e.actor.request_id == "past-the-bound"]
        return found[0].data.get("code") if found else None

    assert await eventually(refused_by_the_case, within=30) == "co_handler_limit"
    state = await handle.query(ComplaintWorkflow.state)
    assert len(state.co_handlers) == lifecycle.MAX_CO_HANDLERS
    assert all(c.waived and c.contributed_at is None for c in state.co_handlers)
    # released the last time: its contribution is refused as released, whichever entry
    late = await api.post(f"/api/v1/complaints/{case_id}/contribution",
                          json={"text": "Visited"}, headers=MARKET)  # fmt: skip
    assert late.status_code == 409 and late.json()["error"]["code"] == "co_handler_released"
    await handle.terminate("test finished")
    await replay_checked(await handle.fetch_history())
