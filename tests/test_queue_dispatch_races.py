"""A dispatch out of the centre's queue (人工派单) since ``lean-case-v8`` computes the unit's
deadlines (a local activity) before it assigns: between the signal and the assignment the case
still shows 待派单. Messages racing that window — a second dispatch (a retry, a second
dispatcher), a withdrawal (撤诉), a supervision order (督办) given while it waited — are
applied once, never wedge the case, and charge the unit nothing of the queue's wait.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from helpers import SUPERVISOR, act, eventually, handle_of, register
from temporalio.client import Client, WorkflowExecutionStatus

from jiesu.case.domain import Actor, CaseState, EventKind, Role, Status
from workflows import ComplaintWorkflow

DISPATCHER = Actor(role=Role.SUPERVISOR, name="dispatcher")
CITIZEN = Actor(role=Role.CITIZEN, name="Wang Fang")


def _rid(actor: Actor) -> dict[str, Any]:
    return actor.model_copy(update={"request_id": uuid.uuid4().hex}).model_dump()


def _dispatch(actor: dict[str, Any], department_id: str) -> dict[str, Any]:
    return {"actor": actor, "department_id": department_id, "department_name": department_id}


async def _until(client: Client, case_id: str, test: Any, within: float = 30) -> CaseState:
    handle = handle_of(client, case_id)

    async def probe() -> CaseState | None:
        state = await handle.query(ComplaintWorkflow.state)
        return state if test(state) else None

    return await eventually(probe, within=within)


def _kinds(state: CaseState) -> list[EventKind]:
    return [e.kind for e in state.events]


async def _queued(api: httpx.AsyncClient, client: Client) -> str:
    case_id = (await register(api, category_id="stray_animals", title="Stray dogs"))["case_id"]
    await _until(client, case_id, lambda s: s.status is Status.DISPATCHING)
    return case_id


async def test_a_dispatch_retried_and_a_second_dispatch_apply_once(
    api: httpx.AsyncClient, client: Client
) -> None:
    """The same dispatch sent twice (a client's retry, same request id) and a second
    dispatcher's, all in the same moment: one department, one set of the unit's deadlines."""
    case_id = await _queued(api, client)
    handle = handle_of(client, case_id)
    first, second = _rid(DISPATCHER), _rid(DISPATCHER)
    await asyncio.gather(
        handle.signal("dispatch", _dispatch(first, "urban-management")),
        handle.signal("dispatch", _dispatch(first, "urban-management")),
        handle.signal("dispatch", _dispatch(second, "water")),
    )
    try:
        state = await _until(client, case_id, lambda s: s.status is Status.ASSIGNED and any(
            e.actor.request_id == second["request_id"] for e in s.events))  # fmt: skip
        kinds = _kinds(state)
        assert kinds.count(EventKind.DISPATCHED) == 1, kinds
        after_queue = kinds[kinds.index(EventKind.QUEUED):]
        assert after_queue.count(EventKind.DEADLINES_SET) == 1, after_queue
        by_first = [e.kind for e in state.events if e.actor.request_id == first["request_id"]]
        by_second = [e for e in state.events if e.actor.request_id == second["request_id"]]
        applied = "urban-management" if by_first == [EventKind.DISPATCHED] else "water"
        assert state.department_id == applied
        if applied == "urban-management":  # refused in the window, or once assigned
            codes = [e.data.get("code") for e in by_second]
            assert codes in (["reassignment_pending"], ["wrong_status"]), codes
    finally:
        await handle.terminate("test over")


async def test_a_withdrawal_racing_a_dispatch_closes_the_case_for_good(
    api: httpx.AsyncClient, client: Client
) -> None:
    """撤诉 in the same moment as a dispatch: the case closes, no unit is told it is theirs and
    no deadline of theirs starts, and the workflow ends (not held in the dispatch)."""
    case_id = await _queued(api, client)
    handle = handle_of(client, case_id)
    await asyncio.gather(
        handle.signal("dispatch", _dispatch(_rid(DISPATCHER), "urban-management")),
        handle.signal("withdraw", {"actor": _rid(CITIZEN), "reason": "solved"}),
    )
    await asyncio.wait_for(handle.result(), timeout=60)
    state = await handle.query(ComplaintWorkflow.state)
    assert state.status is Status.CLOSED
    kinds = _kinds(state)
    withdrawn_first = EventKind.WITHDRAWN in kinds and (
        EventKind.DISPATCHED not in kinds
        or kinds.index(EventKind.WITHDRAWN) < kinds.index(EventKind.DISPATCHED)
    )
    if withdrawn_first:
        assert EventKind.DISPATCHED not in kinds and state.breaches == [], kinds
    assert (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED


async def test_supervision_of_a_queued_case_ends_at_its_dispatch_and_spares_the_unit(
    api: httpx.AsyncClient, client: Client
) -> None:
    """督办 while the case waits in the queue presses the centre's dispatch: the ladder stops
    when the case is dispatched, and no step of it is recorded against the unit."""
    case_id = await _queued(api, client)
    await act(api, case_id, "supervision", SUPERVISOR, note="派单")
    await _until(client, case_id, lambda s: s.escalation is not None)
    await act(api, case_id, "dispatch", SUPERVISOR, department_id="urban-management")
    state = await _until(client, case_id, lambda s: s.status is Status.ASSIGNED and (
        s.escalation is not None and not s.escalation.active))  # fmt: skip
    steps = [e.data for e in state.events if e.kind is EventKind.ESCALATED]
    assert all(step["department_id"] != "urban-management" for step in steps), steps
    assert state.breaches == []
    await handle_of(client, case_id).terminate("test over")
