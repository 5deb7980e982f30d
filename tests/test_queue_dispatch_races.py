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

import asyncpg
import httpx
from helpers import SUPERVISOR, act, eventually, handle_of, register, settled_consistency
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


async def test_an_accountability_order_signalled_to_a_queued_case_is_refused_and_recorded(
    api: httpx.AsyncClient, client: Client
) -> None:
    """问责 sent to a queued case past the API (any Temporal client): the workflow refuses it
    ``centre_not_supervised`` and records the refusal; no accountability against the centre."""
    case_id = await _queued(api, client)
    order = {"actor": _rid(DISPATCHER), "form": "accountability", "note": "派单迟缓",
             "persons": ["张三"], "decision": "通报批评"}  # fmt: skip
    await handle_of(client, case_id).signal("supervise", order)
    state = await _until(client, case_id, lambda s: EventKind.REJECTED in _kinds(s))
    rejected = next(e for e in state.events if e.kind is EventKind.REJECTED)
    assert rejected.data["code"] == "centre_not_supervised", rejected.data
    assert EventKind.ACCOUNTABILITY_RECORDED not in _kinds(state) and state.escalation is None
    await handle_of(client, case_id).terminate("test over")


async def _lock_waiter(pool: asyncpg.Pool, table: str) -> bool:
    return bool(await pool.fetchval(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " WHERE c.relname = $1 AND NOT l.granted", table,
    ))  # fmt: skip


async def _signalled(client: Client, case_id: str, name: str) -> bool:
    history = await handle_of(client, case_id).fetch_history()
    return any(
        e.workflow_execution_signaled_event_attributes.signal_name == name
        for e in history.events
        if e.HasField("workflow_execution_signaled_event_attributes")
    )


async def test_a_dispatch_a_withdrawal_overtook_is_refused_and_recorded(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    """A dispatch the case took, then a withdrawal (撤诉) applied while the dispatch's deadlines
    were computed: the case stays closed and no unit gets it. The dispatch is recorded refused —
    a ``rejected`` event of the dispatch, with its request id, in the case's timeline like any
    refused action — and the dispatcher's answer (here its keyed retry: the computation is held
    longer than the API's apply window, so the first answer may be 202) is 409 ``wrong_status``
    from that record. Before, nothing of the dispatch was recorded. The deadline computation is
    held on a lock of the calendar table, to keep the case in that window."""
    created = await register(api, category_id="stray_animals", title="Stray dogs")
    case_id, token = created["case_id"], created["citizen_token"]
    await _until(client, case_id, lambda s: s.status is Status.DISPATCHING)
    url = f"/api/v1/complaints/{case_id}"
    keyed = {**SUPERVISOR, "Idempotency-Key": uuid.uuid4().hex}
    body = {"department_id": "urban-management"}
    async with pool.acquire() as holder:
        locked = holder.transaction()
        await locked.start()
        await holder.execute("LOCK TABLE calendar_overrides IN ACCESS EXCLUSIVE MODE")
        try:
            dispatching = asyncio.create_task(api.post(f"{url}/dispatch", json=body,
                                                       headers=keyed))  # fmt: skip
            await eventually(lambda: _lock_waiter(pool, "calendar_overrides"), within=30)
            withdrawing = asyncio.create_task(api.post(
                f"{url}/withdraw", json={"token": token, "reason": "solved"}
            ))  # fmt: skip
            await eventually(lambda: _signalled(client, case_id, "withdraw"), within=30)
        finally:
            await locked.rollback()
    first = await asyncio.wait_for(dispatching, timeout=30)
    assert first.status_code in (202, 409), first.text
    assert (await asyncio.wait_for(withdrawing, timeout=30)).status_code in (200, 202)
    await asyncio.wait_for(handle_of(client, case_id).result(), timeout=60)
    state = await handle_of(client, case_id).query(ComplaintWorkflow.state)
    kinds = _kinds(state)
    assert state.status is Status.CLOSED and EventKind.DISPATCHED not in kinds, kinds
    rejected = [e for e in state.events if e.kind is EventKind.REJECTED]
    assert [e.data["action"] for e in rejected] == ["dispatch"], rejected
    assert rejected[0].data["code"] == "wrong_status" and rejected[0].actor.request_id, rejected
    assert kinds.index(EventKind.WITHDRAWN) < kinds.index(EventKind.REJECTED), kinds
    retried = await api.post(f"{url}/dispatch", json=body, headers=keyed)
    assert retried.status_code == 409, retried.text
    assert retried.json()["error"]["code"] == "wrong_status", retried.text
    assert "before the dispatch" in retried.json()["error"]["message"], retried.text
    # the auditor's consistency check: the refusal recorded after the close is in the read
    # model too, nothing pending or diverging (jiesu/audit/consistency.py)
    checked = await settled_consistency(client, pool, case_id)
    assert checked.ok, (checked.divergences, checked.error)
    assert checked.history_events == len(state.events), checked
