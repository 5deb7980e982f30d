"""Duplicated, retried or forged messages, and messages racing the case's own work, are
applied once and never undo what a person did: each test sends what a careless client, a
retry or a hostile one sends (review-wf; every test failed on main at a51763e).

Malformed payloads are tests/test_messages.py's; these are well-formed ones sent at the
wrong moment or twice.
"""
from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from helpers import (
    OPERATOR,
    act,
    case,
    department,
    handle_of,
    keep_history,
    register,
    rid,
    start_of,
    state_of,
    until,
)
from helpers import SUPERVISOR as SUPERVISOR_KEY
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from jiesu.case import lifecycle
from jiesu.case.domain import (
    Actor,
    CasePlan,
    CaseState,
    CoHandlersAction,
    DeadlineRequest,
    Deadlines,
    DepartmentRef,
    EventKind,
    PlanRequest,
    Role,
    Status,
    Urgency,
)
from worker import activities as house_activities
from workflows import ALL_WORKFLOWS, ComplaintWorkflow

URBAN = Actor(role=Role.DEPARTMENT, name="urban clerk", department_id="urban-management")
WATER = Actor(role=Role.DEPARTMENT, name="water clerk", department_id="water")
SUPERVISOR = Actor(role=Role.SUPERVISOR, name="supervisor")
CITIZEN = Actor(role=Role.CITIZEN, name="Wang Fang")
_SLOW: dict[str, asyncio.Event] = {}  # case id -> set when its slow planning began
_RELEASE: dict[str, asyncio.Event] = {}  # case id -> set by the test to end the slow planning
SLOW_FOR = 14.0
"""Seconds a slow planning lasts unless the test releases it: longer than a workflow task's
heartbeat at the default 10 s task timeout (tests/record_prepatch.py relies on it)."""
QUICK_TASKS = timedelta(seconds=2)
"""A case's workflow task timeout in the slow-planning tests: the worker heartbeats a task
whose local activity still runs at 80 % of it, so a signal is delivered in a task of its own
after ~1.6 s instead of ~8 s."""


def kinds(s: CaseState, kind: EventKind) -> list[dict[str, Any]]:
    return [e.data for e in s.events if e.kind is kind]


async def event_of(client, case_id, request: dict[str, Any]):
    s = await until(client, case_id,
                    lambda s: any(e.actor.request_id == request["request_id"] for e in s.events))
    return next(e for e in s.events if e.actor.request_id == request["request_id"])


@asynccontextmanager
async def private_worker(client, pool, settings, queue) -> AsyncIterator[None]:
    acts = house_activities(pool, settings.model_copy(update={"task_queue": queue}))
    real = next(a for a in acts if getattr(a, "__name__", "") == "compute_deadlines")
    real_plan = next(a for a in acts if getattr(a, "__name__", "") == "plan_case")

    async def slowly() -> None:
        started = _SLOW.pop(activity.info().workflow_id, None)
        if started is not None:  # a slow database: longer than a workflow task's heartbeat
            started.set()
            release = _RELEASE.pop(activity.info().workflow_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(release.wait(), SLOW_FOR)

    @activity.defn(name="compute_deadlines")
    async def compute_deadlines(request: DeadlineRequest) -> Deadlines:
        await slowly()
        return await real(request)

    @activity.defn(name="plan_case")
    async def plan_case(request: PlanRequest) -> CasePlan:
        await slowly()
        return await real_plan(request)

    house = [a for a in acts if a not in (real, real_plan)]
    async with Worker(client, task_queue=queue, workflows=ALL_WORKFLOWS,
                      activities=[*house, compute_deadlines, plan_case],
                      workflow_runner=UnsandboxedWorkflowRunner()):
        yield


async def test_a_department_named_twice_as_co_handler_is_refused(api, client) -> None:
    """会办 naming a department twice listed it twice: its one contribution settled one entry,
    the other kept the lead department's reply refused for ever — the citizen never got an
    answer. The message is refused now (``repeated_department``); nothing is added."""
    case_id = (await register(api))["case_id"]
    await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
    h = handle_of(client, case_id)
    await h.signal("accept", {"actor": rid(URBAN)})
    await h.signal("contact", {"actor": rid(URBAN)})
    water = {"id": "water", "name": "县水务局"}
    twice = rid(SUPERVISOR)
    await h.signal("add_co_handlers", {"actor": twice, "departments": [water, water]})
    refused = await event_of(client, case_id, twice)
    assert refused.kind is EventKind.REJECTED and refused.data["code"] == "repeated_department"
    await h.signal("add_co_handlers", {"actor": rid(SUPERVISOR), "departments": [water]})
    await h.signal("contribute", {"actor": rid(WATER), "text": "Pipe checked"})
    reply = rid(URBAN)
    await h.signal("reply", {"actor": reply, "outcome": "resolved", "text": "Turned down"})
    event = await event_of(client, case_id, reply)
    assert event.kind is EventKind.REPLIED, event.data
    s = await state_of(client, case_id)
    assert [c.department_id for c in s.co_handlers] == ["water"]
    await keep_history(h, "hostile_co_handler_named_twice")


async def test_joint_handling_order_checks_the_departments_it_convenes(api, client) -> None:
    """督办 in the form 会办 convenes ``departments`` (the API fills them in from
    ``department_ids``); a client sending other ones (the lead itself, or one twice) listed
    the lead as its own co-handler and wedged the reply the same way. Refused now."""
    case_id = (await register(api))["case_id"]
    await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
    h = handle_of(client, case_id)
    urban = {"id": "urban-management", "name": "城管局"}
    order = rid(SUPERVISOR)
    await h.signal("supervise", {
        "actor": order, "form": "joint_handling", "note": "together",
        "department_ids": ["water"], "departments": [urban],
    })  # fmt: skip
    refused = await event_of(client, case_id, order)
    assert refused.kind is EventKind.REJECTED and refused.data["code"] == "already_involved"
    assert (await state_of(client, case_id)).co_handlers == []


def test_a_department_named_twice_is_refused_by_the_api_rules_too() -> None:
    """The API runs the same rule (jiesu.case.lifecycle) and answers 409 at once."""
    water = DepartmentRef(id="water", name="县水务局")
    action = CoHandlersAction(actor=SUPERVISOR, departments=[water, water])
    state = CaseState(
        case_id="JS-1", status=Status.HANDLING, title="t", category_id="c", grid_id="g",
        address="a", channel="hotline", urgency=Urgency.GENERAL, received_at=datetime.now(UTC),
    )  # fmt: skip
    refusal = lifecycle.check_co_handlers(state, action)
    assert refusal is not None and refusal.code == "repeated_department"
    assert refusal.since == lifecycle.DISTINCT_CO_HANDLERS


async def test_a_case_withdrawn_in_its_first_task_stays_closed(client, settings) -> None:
    """撤诉 arriving with the case's start (or while it is planned) closed it, and the plan
    then assigned it anyway: a department was told to handle a withdrawn complaint, its
    deadlines ran and breached against it. The plan's deadlines are recorded; nobody is
    assigned and the case stays closed."""
    case_id = f"JS-REVIEW-{uuid.uuid4().hex[:8]}"
    h = await client.start_workflow(
        ComplaintWorkflow.run, start_of(case_id), id=case_id, task_queue=settings.task_queue,
        start_signal="withdraw", start_signal_args=[{"actor": rid(CITIZEN)}])
    s = await until(client, case_id, lambda s: s.deadlines is not None)
    try:
        assert s.status is Status.CLOSED, [(e.seq, e.kind.value) for e in s.events]
        assert not kinds(s, EventKind.ROUTED) and not kinds(s, EventKind.QUEUED)
        assert (await h.result()).status is Status.CLOSED
        await keep_history(h, "hostile_withdrawn_in_first_task")
    finally:
        if (await h.describe()).status is WorkflowExecutionStatus.RUNNING:
            await h.terminate("test over")


async def test_a_withdrawal_while_the_case_is_planned_keeps_it_closed(
    client, pool, settings
) -> None:
    """撤诉 arriving while the case's first plan (routing and deadlines, a local activity) is
    still being computed — longer than a workflow task's heartbeat, so the withdrawal is
    delivered in a task of its own before the plan returns. The case closes and stays closed:
    the plan's deadlines are recorded, nobody is assigned, no deadline runs."""
    queue = f"review-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-REVIEW-{uuid.uuid4().hex[:8]}"
    _SLOW[case_id] = started = asyncio.Event()
    _RELEASE[case_id] = release = asyncio.Event()
    async with private_worker(client, pool, settings, queue):
        h = await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                        task_queue=queue, task_timeout=QUICK_TASKS)
        try:
            await asyncio.wait_for(started.wait(), 30)  # the plan is being computed
            withdraw = rid(CITIZEN)
            await h.signal("withdraw", {"actor": withdraw, "reason": "sorted it out myself"})
            withdrawn = await event_of(client, case_id, withdraw)
            assert withdrawn.kind is EventKind.WITHDRAWN
            release.set()  # recorded while the plan was still being computed
            s = await until(client, case_id, lambda s: s.deadlines is not None, within=40)
            order = [e.kind for e in s.events]
            # delivered while the plan was computed: recorded before the plan's deadlines
            assert order.index(EventKind.WITHDRAWN) < order.index(EventKind.DEADLINES_SET), order
            assert s.status is Status.CLOSED and s.assignment is None, (s.status, s.assignment)
            assert not kinds(s, EventKind.ROUTED) and not kinds(s, EventKind.QUEUED)
            assert (await asyncio.wait_for(h.result(), 30)).status is Status.CLOSED
            await keep_history(h, "hostile_withdrawn_while_planning")
        finally:
            if (await h.describe()).status is WorkflowExecutionStatus.RUNNING:
                await h.terminate("test over")


async def test_a_withdrawal_during_a_new_round_stays_closed(client, pool, settings) -> None:
    """撤诉 while a reassignment's new round was computing its deadlines closed the case, and
    the round then started and assigned it anyway: the case the citizen withdrew was open
    again, with a department's deadlines running. It stays closed now."""
    queue = f"review-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-REVIEW-{uuid.uuid4().hex[:8]}"
    async with private_worker(client, pool, settings, queue):
        h = await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                        task_queue=queue, task_timeout=QUICK_TASKS)
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        _SLOW[case_id] = started = asyncio.Event()
        _RELEASE[case_id] = release = asyncio.Event()
        await h.signal("raise_level", {"actor": rid(URBAN), "reason": "Beyond our powers"})
        await asyncio.wait_for(started.wait(), 30)  # child chose; deadlines being computed
        withdraw = rid(CITIZEN)
        await h.signal("withdraw", {"actor": withdraw, "reason": "sorted it out myself"})
        assert (await event_of(client, case_id, withdraw)).kind is EventKind.WITHDRAWN
        release.set()  # recorded while the new round's deadlines were still being computed
        try:
            with contextlib.suppress(TimeoutError):  # the case ends once the deadlines are back
                await asyncio.wait_for(h.result(), 40)
            s = await state_of(client, case_id)
            assert s.status is Status.CLOSED, [(e.seq, e.kind.value) for e in s.events]
            assert s.round == 1 and not kinds(s, EventKind.REASSIGNED)
            await keep_history(h, "hostile_withdrawn_during_new_round")
        finally:
            if (await h.describe()).status is WorkflowExecutionStatus.RUNNING:
                await h.terminate("test over")


async def test_a_return_retried_while_the_worker_is_down_is_applied_once(
    client, pool, settings
) -> None:
    """退单 retried by a client without an Idempotency-Key while no worker ran: both signals
    came in one batch, the case still showed the department's status after the first, and
    the second was applied too — the department was counted as returning the case twice
    (returned_by feeds its statistics) and the reassignment ran twice. The second is refused
    now (``reassignment_pending``; since lean-case-v21 ``wrong_status``: it waits until the
    reassignment has begun, as with the worker up)."""
    queue = f"review-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-REVIEW-{uuid.uuid4().hex[:8]}"
    async with private_worker(client, pool, settings, queue):
        await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                    task_queue=queue)
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
    h = handle_of(client, case_id)
    for _ in range(2):  # API answered 202; the client retried without an Idempotency-Key
        await h.signal("return", {"actor": rid(URBAN), "reason": "Not ours: private land"})
    async with private_worker(client, pool, settings, queue):
        try:
            s = await until(client, case_id, lambda s: s.reassignment is not None, within=40)
            assert len(kinds(s, EventKind.RETURNED)) == 1
            assert s.returned_by == ["urban-management"]
            refused = [e.data for e in s.events if e.kind is EventKind.REJECTED]
            # since lean-case-v21 the retry waits until the reassignment has begun and meets the
            # reassigning case, as with the worker up (wrong_status); v20 and before refused it
            # as reassignment_pending (the history kept below is of such a case)
            assert [r["code"] for r in refused] == ["wrong_status"], refused
            await keep_history(h, "hostile_return_twice_in_one_batch")
        finally:
            await h.terminate("test over")


async def test_two_dispatches_out_of_the_queue_give_the_case_one_department(api, client) -> None:
    """派单 out of the centre's queue after the reassignment bound (S1): two dispatchers (or a
    retry with a new request id) dispatching at once both passed — the second assigned the
    case at once, then the first's new round took it to another department, each told it was
    theirs. One dispatch is applied; the other is refused."""
    case_id = (await register(api))["case_id"]
    await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
    for target in ("police", "market", "urban-management"):  # max_reassignments = 3
        current = (await case(api, case_id, OPERATOR))["assignment"]["department_id"]
        await act(api, case_id, "return", department(current), reason="Not ours")
        await until(client, case_id, lambda s: s.status is Status.REASSIGNING)
        await act(api, case_id, "reassign", SUPERVISOR_KEY, department_id=target)
    await act(api, case_id, "return", department("urban-management"), reason="Still not ours")
    await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
    h = handle_of(client, case_id)
    first, second = rid(SUPERVISOR), rid(SUPERVISOR)
    await asyncio.gather(
        h.signal("dispatch", {"actor": first, "department_id": "ecology",
                              "department_name": "生态环境局"}),
        h.signal("dispatch", {"actor": second, "department_id": "water",
                              "department_name": "县水务局"}),
    )  # fmt: skip
    try:
        one, other = await event_of(client, case_id, first), await event_of(client, case_id, second)
        s = await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        applied = [e for e in (one, other) if e.kind is not EventKind.REJECTED]
        assert len(applied) == 1, [(e.kind, e.data) for e in (one, other)]
        assert s.department_id == ("ecology" if applied[0] is one else "water")
        assert len(kinds(s, EventKind.DISPATCHED)) + len(kinds(s, EventKind.REASSIGNED)) == 4
        await keep_history(h, "hostile_two_dispatches_at_once")
    finally:
        await h.terminate("test over")


async def test_a_duplicated_or_forged_ladder_step_counts_once(api, client) -> None:
    """The escalation child's ``escalation_step`` is an ordinary signal any client can send:
    sent twice with 问责, it put two accountability records (问责) on the unit's file and a
    level the ladder never reached on the case. A step counts once, from the ladder climbing
    now, upwards; the others are recorded as refused (``stale_step``)."""
    case_id = (await register(api))["case_id"]
    await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
    h = handle_of(client, case_id)
    await h.signal("supervise", {"actor": rid(SUPERVISOR), "note": "hurry"})
    await until(client, case_id, lambda s: s.escalation_level >= 1)
    for step in ({"n": 1, "level": 5}, {"n": 1, "level": 5}, {"n": 7, "level": 2}):
        await h.signal("escalation_step", step)
    await h.signal("supplement", {"actor": rid(CITIZEN), "text": "marker"})
    s = await until(client, case_id, lambda s: kinds(s, EventKind.SUPPLEMENTED))
    # since lean-case-v31 a ladder climbs one step at a time: 问责 after 提醒 is not taken
    assert kinds(s, EventKind.ACCOUNTABILITY_RECORDED) == []
    assert [e for e in kinds(s, EventKind.ESCALATED) if e["level"] == 5] == []
    refused = [e for e in kinds(s, EventKind.REJECTED) if e["action"] == "escalation_step"]
    assert [r["code"] for r in refused] == ["stale_step"] * 3, refused
    await keep_history(h, "hostile_ladder_step_duplicated")
    await h.terminate("test over")




async def test_a_rating_after_a_second_assignment_of_the_reply_is_refused(
    client, pool, settings
) -> None:
    """二次交办 of a replied case, and the citizen's rating in the same batch (the worker was
    down): the rating was applied, then the new round cleared it — the citizen was answered
    200 for a verdict that counted for nothing. It is refused now (``reassignment_pending``
    before lean-case-v21; since, the rating waits until the reassignment has begun and meets the
    reassigning case, ``wrong_status``, as with the worker up); the citizen rates the next
    department's reply."""
    queue = f"review-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-REVIEW-{uuid.uuid4().hex[:8]}"
    h = handle_of(client, case_id)
    async with private_worker(client, pool, settings, queue):
        await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                    task_queue=queue)
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        await h.signal("accept", {"actor": rid(URBAN)})
        await h.signal("contact", {"actor": rid(URBAN)})
        await h.signal("reply", {"actor": rid(URBAN), "outcome": "resolved", "text": "Done"})
        await until(client, case_id, lambda s: s.status is Status.REPLIED)
    second, rating = rid(SUPERVISOR), rid(CITIZEN)
    await h.signal("order_second_assignment", {"actor": second, "reason": "Reply not credible",
                                               "department_id": "market"})
    await h.signal("rate", {"actor": rating, "rating": "satisfied"})
    async with private_worker(client, pool, settings, queue):
        try:
            refused = await event_of(client, case_id, rating)
            assert refused.kind is EventKind.REJECTED, refused.data
            assert refused.data["code"] == "wrong_status"  # v21: after the reassignment began
            s = await until(client, case_id, lambda s: s.round == 2)
            assert s.department_id == "market" and s.status is not Status.CLOSED
            assert not kinds(s, EventKind.RATED)
            await keep_history(h, "hostile_rating_after_second_assignment")
        finally:
            await h.terminate("test over")


async def test_messages_in_the_window_of_a_dispatch_out_of_the_queue(
    client, pool, settings
) -> None:
    """人工派单 since lean-case-v8 computes the unit's deadlines before it assigns; in that
    window (a slow database) the case still shows 待派单: a second dispatcher's dispatch is
    refused reassignment_pending, the first's retry is applied once, and a withdrawal (撤诉)
    closes the case for good — the dispatch is dropped, recorded refused for its dispatcher
    (``wrong_status``, since lean-case-v9; before, nothing of it was recorded), no unit is told
    the case is theirs, no deadline of theirs starts, and the workflow ends."""
    queue = f"review-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-REVIEW-{uuid.uuid4().hex[:8]}"
    start = start_of(case_id)
    start = start.model_copy(update={"facts": start.facts.model_copy(
        update={"category_id": "stray_animals"})})  # fmt: skip  # no rule: the queue
    async with private_worker(client, pool, settings, queue):
        h = await client.start_workflow(ComplaintWorkflow.run, start, id=case_id,
                                        task_queue=queue, task_timeout=QUICK_TASKS)
        try:
            await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
            _SLOW[case_id] = started = asyncio.Event()
            _RELEASE[case_id] = release = asyncio.Event()
            first, second = rid(SUPERVISOR), rid(SUPERVISOR)
            dispatch = {"actor": first, "department_id": "urban-management",
                        "department_name": "城管局"}  # fmt: skip
            await h.signal("dispatch", dispatch)
            await asyncio.wait_for(started.wait(), 30)  # the unit's deadlines being computed
            await h.signal("dispatch", dispatch)  # the client's retry
            await h.signal("dispatch", {"actor": second, "department_id": "water",
                                        "department_name": "县水务局"})  # fmt: skip
            refused = await event_of(client, case_id, second)
            assert refused.kind is EventKind.REJECTED
            assert refused.data["code"] == "reassignment_pending", refused.data
            withdraw = rid(CITIZEN)
            await h.signal("withdraw", {"actor": withdraw, "reason": "sorted it out myself"})
            assert (await event_of(client, case_id, withdraw)).kind is EventKind.WITHDRAWN
            release.set()
            assert (await asyncio.wait_for(h.result(), 40)).status is Status.CLOSED
            s = await state_of(client, case_id)
            assert not kinds(s, EventKind.DISPATCHED) and s.department_id != "urban-management"
            order = [e.kind for e in s.events]
            assert order.count(EventKind.DEADLINES_SET) == 1, order  # the receipt's only
            by_first = [e for e in s.events if e.actor.request_id == first["request_id"]]
            assert [(e.kind, e.data.get("code")) for e in by_first] == [
                (EventKind.REJECTED, "wrong_status")], by_first  # fmt: skip
            await keep_history(h, "hostile_withdrawn_during_dispatch")
        finally:
            if (await h.describe()).status is WorkflowExecutionStatus.RUNNING:
                await h.terminate("test over")
