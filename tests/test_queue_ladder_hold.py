"""A supervision ladder already climbing when the case enters the centre's dispatch queue (待派单)
holds at 督办 while the case waits there (queue-holds-ladder-v1, epoch ``lean-case-v10``).

``queued-ladder-ceiling-v1`` (lean-case-v9) gave a ceiling only to a ladder *started* in the
queue. A ladder started before — by dissatisfaction, which supervises the rehandling round (重办)
until its reply, when that round ended in the queue; by a 督办 order or repeat reports taken
before the case's planning routed it to the queue — kept climbing every interval the queue
waited, and recorded 会办, then 问责 with an accountability referral, against the centre itself.
Now the case tells such a ladder to hold when it enters the queue, and to climb again when a
unit has the case once more.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from helpers import (
    SUPERVISOR,
    act,
    case_when,
    department,
    eventually,
    exists,
    handle_of,
    keep_history,
    ladder_of,
    register,
)
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from test_hostile_messages import CITIZEN, rid, start_of, until
from test_hostile_messages import SUPERVISOR as SUPERVISOR_ACTOR
from test_hostile_messages import URBAN as URBAN_ACTOR

from jiesu.case.domain import (
    CENTRE_ID,
    CaseFacts,
    EscalationLevel,
    EscalationRequest,
    EscalationTrigger,
    EventKind,
    Status,
)
from workflows import ComplaintWorkflow
from workflows.escalation import EscalationWorkflow

URBAN = department("urban-management")


def _kinds(state: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in state["events"]]


def _steps(state: dict[str, Any]) -> list[tuple[int, str | None]]:
    return [(e["data"]["level"], e["data"]["department_id"])
            for e in state["events"] if e["kind"] == "escalated"]  # fmt: skip


async def _replied(api: httpx.AsyncClient, case_id: str) -> None:
    await act(api, case_id, "accept", URBAN)
    await act(api, case_id, "contact", URBAN)
    await act(api, case_id, "reply", URBAN, outcome="resolved", text="已处理")


async def test_a_dissatisfaction_ladder_whose_rehandling_ends_in_the_queue_holds_at_supervise(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment
) -> None:
    """The second unsatisfied rating starts the dissatisfaction ladder against the unit and
    rehandles; the reassignment ends in the centre's queue (its child stopped by an operator).
    The ladder climbs to 督办 there and holds however long the queue waits — before, 会办 and
    问责 followed against the centre. Dispatched, the unit has the rehandling round and the
    ladder climbs again against it, until its reply."""
    created = await register(api)  # → urban management
    case_id, token = created["case_id"], created["citizen_token"]
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    for n in (1, 2):  # max_unsatisfied_rounds: 2
        await _replied(api, case_id)
        await act(api, case_id, "rating", token=token, rating="unsatisfied")
        await case_when(api, case_id, lambda s: s["status"] == "reassigning")
        if n == 1:
            await act(api, case_id, "reassign", SUPERVISOR, department_id="urban-management")
            await case_when(api, case_id, lambda s: s["status"] == "assigned")
    child = client.get_workflow_handle(f"{case_id}-reassign-2")
    await eventually(lambda: exists(child), within=30)
    await child.terminate("an operator ended the reassignment")  # → the centre's queue
    await case_when(api, case_id, lambda s: s["status"] == "dispatching")
    ladder = await ladder_of(client, case_id)
    await env.fast_forward(ladder, timedelta(hours=10, minutes=1))  # five intervals
    state = await case_when(api, case_id, lambda s: s["escalation_level"] >= 3)
    assert state["status"] == "dispatching", state["status"]
    assert "accountability_recorded" not in _kinds(state), _steps(state)
    assert _steps(state) == [(1, "urban-management"), (2, CENTRE_ID), (3, CENTRE_ID)], (
        _steps(state))
    assert state["escalation"]["active"], state["escalation"]

    await act(api, case_id, "dispatch", SUPERVISOR, department_id="urban-management")
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    # the unit has the rehandling round: the ladder climbs against it again (会办)
    await env.fast_forward(ladder, timedelta(hours=2, minutes=1))
    state = await case_when(api, case_id, lambda s: s["escalation_level"] >= 4)
    assert _steps(state)[3:] == [(4, "urban-management")], _steps(state)
    await _replied(api, case_id)
    state = await case_when(api, case_id, lambda s: not s["escalation"]["active"])
    stopped = next(e for e in state["events"] if e["kind"] == "escalation_stopped")
    assert stopped["data"]["final_level"] == 4 and stopped["data"]["stopped"], stopped
    handle = handle_of(client, case_id)
    await handle.terminate("test over")
    await keep_history(handle, "dissatisfaction_ladder_held_in_the_queue")


async def test_an_order_taken_before_the_plan_holds_at_supervise_once_the_case_is_queued(
    client: Client, env: WorkflowEnvironment, settings: Any
) -> None:
    """A 督办 order sent with the case's start (any Temporal client: signal-with-start) is
    taken before the planning routes the case — here to the queue (no rule for the category).
    Its ladder started before the case was queued: it holds at 督办 in the queue. Before, it
    climbed to 问责 against the centre. The dispatch ends it."""
    case_id = f"JS-QHOLD-{uuid.uuid4().hex[:8]}"
    start = start_of(case_id)
    start = start.model_copy(update={"facts": CaseFacts(
        title="Stray dogs", category_id="stray_animals", grid_id="G-QH-01-01-1",
        address=f"幸福路{case_id}")})  # fmt: skip
    order = {"actor": rid(SUPERVISOR_ACTOR), "form": "supervise", "note": "请尽快派单"}
    handle = await client.start_workflow(
        ComplaintWorkflow.run, start, id=case_id, task_queue=settings.task_queue,
        start_signal="supervise", start_signal_args=[order],
    )  # fmt: skip
    try:
        await until(client, case_id, lambda s: s.status is Status.DISPATCHING
                    and s.escalation is not None)  # fmt: skip
        ladder = await ladder_of(client, case_id)
        await env.fast_forward(ladder, timedelta(hours=6, minutes=1))  # three intervals
        s = await until(client, case_id, lambda s: s.escalation_level >= 3)
        assert s.status is Status.DISPATCHING
        escalated = [(e.data["level"], e.data["department_id"]) for e in s.events
                     if e.kind is EventKind.ESCALATED]  # fmt: skip
        assert all(level <= 3 for level, _ in escalated), escalated
        assert not any(e.kind is EventKind.ACCOUNTABILITY_RECORDED for e in s.events), escalated
        assert s.escalation is not None and s.escalation.active
        await handle.signal("dispatch", {"actor": rid(SUPERVISOR_ACTOR),
                                         "department_id": "urban-management",
                                         "department_name": "urban-management"})  # fmt: skip
        s = await until(client, case_id, lambda s: s.escalation is not None
                        and not s.escalation.active)  # fmt: skip
        assert s.status is Status.ASSIGNED
    finally:
        await handle.terminate("test over")


async def _squatted(
    client: Client, settings: Any, case_id: str, child_id: str
) -> tuple[WorkflowHandle[Any, Any], WorkflowHandle[Any, Any]]:
    """A workflow another client started under the case's ``child_id`` first (a ladder with a
    ceiling, so that it never ends), then the case: (the squatter, the case)."""
    squatter = await client.start_workflow(
        EscalationWorkflow.run,
        EscalationRequest(case_id=case_id, n=1, trigger=EscalationTrigger.SUPERVISOR,
                          department_id=None, step_hours=2.0, first_step_taken=True,
                          ceiling=EscalationLevel.REMIND),
        id=child_id, task_queue=settings.task_queue,
    )  # fmt: skip
    case = await client.start_workflow(
        ComplaintWorkflow.run, start_of(case_id), id=case_id, task_queue=settings.task_queue
    )
    return squatter, case


async def test_a_ladder_child_id_taken_by_another_client_leaves_the_case_able_to_close(
    client: Client, settings: Any
) -> None:
    """Any Temporal client may start an EscalationWorkflow under the id the case gives its next
    ladder (``<case>-escalation-1``), with a ceiling of its choosing so that it never ends. The
    case's own start of its ladder is then refused (already started). Since lean-case-v10
    (ladder-child-id-taken-v1) the ladder is recorded stopped where it stood, the next order
    starts the next ladder, and the case closes. Before, the ladder stayed active for ever (every
    order refused already_supervised) and the case's workflow failed at its close, which
    re-raised the start's failure (WorkflowFailureError: "Workflow execution already started")."""
    case_id = f"JS-QSQUAT-{uuid.uuid4().hex[:8]}"
    squatter, handle = await _squatted(client, settings, case_id, f"{case_id}-escalation-1")
    try:
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        order = {"actor": rid(SUPERVISOR_ACTOR), "form": "supervise", "note": "请尽快办理"}
        await handle.signal("supervise", order)
        s = await until(client, case_id, lambda s: s.escalation is not None
                        and not s.escalation.active)  # fmt: skip
        stopped = [e.data for e in s.events if e.kind is EventKind.ESCALATION_STOPPED]
        assert stopped == [{"n": 1, "final_level": 3, "stopped": False,
                            "reason": "child_id_taken",
                            "child_id": f"{case_id}-escalation-1"}], stopped  # fmt: skip
        await handle.signal("supervise", {**order, "actor": rid(SUPERVISOR_ACTOR)})
        s = await until(client, case_id, lambda s: s.escalation is not None
                        and s.escalation.n == 2 and s.escalation.active)  # fmt: skip
        await handle.signal("withdraw", {"actor": rid(CITIZEN)})
        outcome = await asyncio.wait_for(handle.result(), timeout=30)
        assert outcome.status is Status.CLOSED
        s = await handle.query(ComplaintWorkflow.state)
        assert s.escalation is not None and not s.escalation.active, s.escalation
    finally:
        if (await handle.describe()).status.name == "RUNNING":
            await handle.terminate("test over")
        await squatter.terminate("test over")


async def test_a_reassignment_child_id_taken_by_another_client_sends_the_case_to_the_queue(
    client: Client, settings: Any
) -> None:
    """The same with the reassignment child's id (``<case>-reassign-1``): a workflow another
    client started there first (any type; a held ladder never ends). Since lean-case-v10 the
    reassignment is recorded failed and the centre's dispatcher decides, as when the child ends
    without a choice (reassignment-child-ended-v1). Before, the start's failure ended the case's
    workflow at the unit's return: FAILED, its state left reassigning."""
    case_id = f"JS-RSQUAT-{uuid.uuid4().hex[:8]}"
    squatter, handle = await _squatted(client, settings, case_id, f"{case_id}-reassign-1")
    try:
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        await handle.signal("return", {"actor": rid(URBAN_ACTOR), "reason": "Not ours"})
        s = await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
        failed = [e.data for e in s.events if e.kind is EventKind.REASSIGNMENT_FAILED]
        assert [f["child_id"] for f in failed] == [f"{case_id}-reassign-1"], failed
        assert s.assignment is not None and s.assignment.department_id == CENTRE_ID
        await handle.signal("withdraw", {"actor": rid(CITIZEN)})
        outcome = await asyncio.wait_for(handle.result(), timeout=30)
        assert outcome.status is Status.CLOSED
    finally:
        if (await handle.describe()).status.name == "RUNNING":
            await handle.terminate("test over")
        await squatter.terminate("test over")


async def test_an_accountability_order_taken_before_the_plan_is_refused(
    client: Client, settings: Any
) -> None:
    """问责 sent with the case's start (signal-with-start, any Temporal client) is taken before
    the planning has given the case any unit. Since lean-case-v10 it is refused
    ``centre_not_supervised`` as on a queued case: there is no unit to refer. Before, it was
    applied and recorded an accountability referral of no unit or of the centre."""
    case_id = f"JS-QACC-{uuid.uuid4().hex[:8]}"
    order = {"actor": rid(SUPERVISOR_ACTOR), "form": "accountability", "note": "迟迟不办",
             "persons": ["张三"], "decision": "通报批评"}  # fmt: skip
    handle = await client.start_workflow(
        ComplaintWorkflow.run, start_of(case_id), id=case_id, task_queue=settings.task_queue,
        start_signal="supervise", start_signal_args=[order],
    )  # fmt: skip
    try:
        s = await until(client, case_id, lambda s: s.status is Status.ASSIGNED and any(
            e.kind in (EventKind.REJECTED, EventKind.ACCOUNTABILITY_RECORDED) for e in s.events))
        accountability = [e.data for e in s.events
                          if e.kind is EventKind.ACCOUNTABILITY_RECORDED]  # fmt: skip
        assert accountability == [], accountability
        refused = [e.data for e in s.events if e.kind is EventKind.REJECTED]
        assert [r["code"] for r in refused] == ["centre_not_supervised"], refused
        assert s.escalation is None
        assert not any(e.kind is EventKind.ACCOUNTABILITY_RECORDED for e in s.events)
    finally:
        await handle.terminate("test over")


async def test_a_forged_ladder_step_above_supervise_on_a_queued_case_is_refused(
    api: httpx.AsyncClient, client: Client
) -> None:
    """``escalation_step`` is an ordinary signal any client can send (or a hold a forged
    ``release`` lifted would send): on a case held at 督办 in the queue, a step to 会办 or 问责
    recorded an accountability referral against the centre, past the ceiling of
    queued-ladder-ceiling-v1. Since lean-case-v10 (queued-steps-held-v1) a step above 督办 on a
    queued case is refused ``centre_not_supervised``."""
    case_id = (await register(api, category_id="stray_animals", title="Stray dogs"))["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "dispatching")
    await act(api, case_id, "supervision", SUPERVISOR, form="supervise", note="请尽快派单")
    await case_when(api, case_id, lambda s: s["escalation_level"] == 3)
    handle = handle_of(client, case_id)
    try:
        for step in ({"n": 1, "level": 4}, {"n": 1, "level": 5}):
            await handle.signal("escalation_step", step)
        s = await until(client, case_id, lambda s: len(
            [e for e in s.events if e.kind is EventKind.REJECTED]) >= 2)  # fmt: skip
        refused = [e.data["code"] for e in s.events if e.kind is EventKind.REJECTED]
        assert refused == ["centre_not_supervised"] * 2, refused
        assert not any(e.kind is EventKind.ACCOUNTABILITY_RECORDED for e in s.events)
        assert s.escalation_level == 3 and s.escalation is not None and s.escalation.active
    finally:
        await handle.terminate("test over")


async def test_after_the_dispatch_the_unit_gets_a_ladder_of_its_own_breach_without_the_ceiling(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment
) -> None:
    """The queue's ladder held at 督办 ends at the dispatch; the unit's own late accept starts a
    new ladder against the unit, which climbs past 督办 (the queue's ceiling is not carried
    over). An attack on queued-ladder-ceiling-v1 that held."""
    created = await register(api, category_id="stray_animals", title="Stray dogs")
    case_id = created["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "dispatching")
    await act(api, case_id, "supervision", SUPERVISOR, form="supervise", note="请尽快派单")
    await case_when(api, case_id, lambda s: s["escalation_level"] == 3)
    await act(api, case_id, "dispatch", SUPERVISOR, department_id="urban-management")
    state = await case_when(api, case_id, lambda s: s["status"] == "assigned"
                            and not s["escalation"]["active"])  # fmt: skip
    handle = handle_of(client, case_id)
    now = await env.get_current_time(handle)
    accept = datetime.fromisoformat(state["deadlines"]["accept"])
    await env.fast_forward(handle, accept - now + timedelta(seconds=1))
    await case_when(api, case_id, lambda s: s["escalation"]["n"] == 2)
    ladder = await ladder_of(client, case_id, 2)
    await env.fast_forward(ladder, timedelta(hours=6, minutes=1))  # three intervals
    state = await case_when(api, case_id, lambda s: s["escalation_level"] >= 4)
    assert state["escalation"]["trigger"] == "accept_breached", state["escalation"]
    unit_steps = [step for step in _steps(state) if step[1] == "urban-management"]
    assert unit_steps[:2] == [(1, "urban-management"), (2, "urban-management")], _steps(state)
    assert (4, "urban-management") in unit_steps, _steps(state)
    assert (4, CENTRE_ID) not in _steps(state) and (5, CENTRE_ID) not in _steps(state)
    await handle.terminate("test over")


async def test_a_dispatch_to_the_centre_signalled_directly_is_refused(
    api: httpx.AsyncClient, client: Client
) -> None:
    """The API refuses a dispatch naming the centre (422 centre_not_assignee), but the case took
    one signalled directly (any Temporal client, a hand-made payload): the case left the queue
    ``assigned`` to the centre, its queue ladder stopped, and the centre's own deadlines and
    breaches started a ladder against the centre with no ceiling — 会办 and 问责 of the centre.
    Since lean-case-v10 (centre-not-dispatched-v1) the case refuses it: recorded rejected
    ``centre_not_assignee``, the case still queued."""
    case_id = (await register(api, category_id="stray_animals", title="Stray dogs"))["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "dispatching")
    handle = handle_of(client, case_id)
    try:
        await handle.signal("dispatch", {"actor": rid(SUPERVISOR_ACTOR), "department_id": CENTRE_ID,
                                         "department_name": "12345热线中心"})  # fmt: skip
        s = await until(client, case_id, lambda s: any(
            e.kind in (EventKind.REJECTED, EventKind.DISPATCHED) for e in s.events))
        refused = [e.data["code"] for e in s.events if e.kind is EventKind.REJECTED]
        assert refused == ["centre_not_assignee"], (refused, s.status)
        assert s.status is Status.DISPATCHING
    finally:
        await handle.terminate("test over")


async def test_a_ladder_of_an_older_case_ignores_a_stray_hold(
    client: Client, env: WorkflowEnvironment, settings: Any
) -> None:
    """``hold`` is obeyed only by a ladder its case started with ``obeys_hold`` (lean-case-v10).
    A ladder started by an older case has no such field and ignored ``hold`` (an unknown
    message) when it ran: if the new code obeyed a stray ``hold`` any client had sent it, its
    replay would take another path than its history, and the running ladder would fail its
    tasks. Here a ladder whose input has no ``obeys_hold`` gets ``hold`` and still climbs to
    问责 (before the fix it held at 督办 and never ended)."""
    case_id = f"JS-OLDHOLD-{uuid.uuid4().hex[:8]}"
    case = await client.start_workflow(
        ComplaintWorkflow.run, start_of(case_id), id=case_id, task_queue=settings.task_queue
    )
    try:
        ladder = await client.start_workflow(
            EscalationWorkflow.run,
            EscalationRequest(case_id=case_id, n=9, trigger=EscalationTrigger.SUPERVISOR,
                              department_id=None, step_hours=1.0, first_step_taken=True,
                              start_level=EscalationLevel.SUPERVISE),
            id=f"{case_id}-older-ladder", task_queue=settings.task_queue,
        )  # fmt: skip
        await ladder.signal(EscalationWorkflow.hold)
        await env.fast_forward(ladder, timedelta(hours=2, minutes=1))
        outcome = await asyncio.wait_for(ladder.result(), timeout=60)
        assert outcome.final_level is EscalationLevel.ACCOUNTABILITY and not outcome.stopped
    finally:
        await case.terminate("test over")
