"""lean-case-v12 (actions-timed-when-sent-v1) attacked: the worker down across a deadline, and
actions the case applies late, timed when they were sent (``Actor.sent_at``).

Each test stops the worker across a deadline with a task queue of its own (the pattern of
tests/test_actions_timed_when_sent.py). Each failed on lean-case-v12 (most were fixed by
lean-case-v13; the late approval of an extension, a strict xfail until then, by v14)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import (
    Scenarios,
    Step,
    act,
    closed_state,
    department,
    ended,
    eventually,
    handle_of,
    in_time,
    keep_history,
    nothing,
    outage_scenarios,
    own_case,
    own_queue,
    settled_consistency,
    started_assigned,
    until_past,
    worker_down_across,
)
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from test_actions_timed_when_sent import (
    URGENT_ACCEPT,
    _across_an_outage,
    sent,
)
from test_hostile_messages import SUPERVISOR, URBAN, WATER, kinds, rid, start_of, until

from api import cases as api_cases
from jiesu.audit.timeline import decode_history
from jiesu.case.domain import (
    CASE_CITIZEN_NAME,
    Actor,
    DeadlineKind,
    EventKind,
    Role,
    Status,
)
from jiesu.config import Settings
from worker import build_worker
from workflows import ComplaintWorkflow

URGENT_FINISH = timedelta(hours=24)  # jiesu.case.sla: an urgent case is finished in 24 h
CITIZEN = Actor(role=Role.CITIZEN, name=CASE_CITIZEN_NAME)  # the case's own citizen (token)



async def _a_withdrawal_sent_after_the_accept_deadline_keeps_the_units_breach(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    handle, queue = await _across_an_outage(
        client, pool, settings, "latewithdraw", URGENT_ACCEPT, nothing, nothing,
        b"accept deadline",
    )  # fmt: skip
    # the deadline passed (its timer fired) unaccepted; the citizen withdraws now
    withdraw = {"actor": sent(rid(CITIZEN), datetime.now(UTC)), "reason": "Sorted it myself"}
    await handle.signal("withdraw", withdraw)
    async with build_worker(client, pool, own_queue(settings, queue)):
        s = await closed_state(handle)
    assert s.resolution is not None and s.resolution.value == "withdrawn"
    assert s.deadlines is not None and s.closed_at is not None
    assert s.closed_at > s.deadlines.accept  # withdrawn after the deadline, as recorded
    assert [b.kind for b in s.breaches] == [DeadlineKind.ACCEPT], s.breaches


async def test_a_withdrawal_sent_after_the_accept_deadline_keeps_the_units_breach(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """With the worker up (v11 and v12 alike) the accept deadline's timer records 签收 超时
    at the deadline, and a later 撤诉 closes the case with the breach on the unit's record.
    With the worker down across the deadline, the withdrawal (sent after it) and the timer
    reach the worker in one task: the case is closed first, and the watch sees the deadline
    met — the breach is never recorded, and 响应率 leaves the case out."""
    await outages.of(request)


async def _handling_with_an_extension_asked(client: Client, handle: WorkflowHandle) -> None:
    """签收, 联系, then 延期申请 for a day after the finish deadline (all in time: the case
    is past its accept and contact deadlines, which it breached at once, by construction)."""
    await handle.signal("accept", {"actor": sent(rid(URBAN), datetime.now(UTC))})
    await until(client, handle.id, lambda s: s.status is Status.HANDLING)
    await handle.signal("contact", {"actor": sent(rid(URBAN), datetime.now(UTC))})
    s = await until(client, handle.id, lambda s: s.contacted_at is not None)
    assert s.deadlines is not None
    ask = {
        "actor": sent(rid(URBAN), datetime.now(UTC)),
        "reasons": "Main pipe must be replaced",
        "measures": "Water tanker on site",
        "promised_finish": (s.deadlines.finish + timedelta(days=1)).isoformat(),
    }
    await handle.signal("request_extension", ask)
    await until(client, handle.id, lambda s: s.extension is not None)


async def _an_extension_approved_after_the_finish_deadline_keeps_the_breach(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    handle, queue = await _across_an_outage(
        client, pool, settings, "lateapproval", URGENT_FINISH,
        lambda h: _handling_with_an_extension_asked(client, h), nothing, b"finish deadline",
    )  # fmt: skip
    # the finish deadline passed (its timer fired); the centre approves now, the unit replies
    decision = {"actor": sent(rid(SUPERVISOR), datetime.now(UTC)), "approved": True}
    await handle.signal("decide_extension", decision)
    reply = {"actor": sent(rid(URBAN), datetime.now(UTC)), "outcome": "resolved",
             "text": "The pipe is replaced"}  # fmt: skip
    await handle.signal("reply", reply)
    async with build_worker(client, pool, own_queue(settings, queue)):
        s = await until(client, handle.id, lambda s: s.status is Status.REPLIED, within=60)
        decided = next(e for e in s.events if e.kind is EventKind.EXTENSION_DECIDED)
        assert s.extension is not None
        original = s.extension.promised_finish - timedelta(days=1)  # the deadline it moved
        assert decided.at > original  # approved after the deadline it moved, as recorded
        finish = [b for b in s.breaches if b.kind is DeadlineKind.FINISH]
        await handle.terminate("test finished")
        await keep_history(handle, "late_approval_in_the_timers_task")
    assert finish, s.breaches


def _extension_asked_to_lapse_first(client: Client) -> Step:
    """``_handling_with_an_extension_asked`` for a case whose centre has a window shorter than
    the time to its finish deadline: the window must end first (else set up again)."""

    async def asked(handle: WorkflowHandle) -> None:
        await _handling_with_an_extension_asked(client, handle)
        s = await handle.query(ComplaintWorkflow.state)
        assert s.deadlines is not None and s.extension is not None
        assert s.extension.decision_due is not None
        in_time(handle, s.extension.decision_due < s.deadlines.finish,
                "the extension's window ends after the finish deadline")  # fmt: skip

    return asked


async def test_an_extension_approved_after_the_finish_deadline_keeps_the_breach(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """The unit asked for an extension in time; the centre approves it only after the finish
    deadline, and the unit replies after the deadline (before the promised date). With the
    worker up the finish timer fires at the deadline, the request still undecided: 办结 超时 is
    recorded (the 超时量 statistic counts it), and the approval comes after. With the worker
    down, the approval, the late reply and the timer reach it in one task: the approval moved
    the deadline before the watch looked, and before lean-case-v14 no breach was recorded."""
    await outages.of(request)


async def _an_extension_approved_in_time_and_a_reply_after_the_old_deadline_is_no_breach(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    async def approve_in_time(handle: WorkflowHandle) -> None:
        decision = {"actor": sent(rid(SUPERVISOR), datetime.now(UTC)), "approved": True}
        await handle.signal("decide_extension", decision)

    handle, queue = await _across_an_outage(
        client, pool, settings, "timelyapproval", URGENT_FINISH,
        lambda h: _handling_with_an_extension_asked(client, h), approve_in_time,
        b"finish deadline",
    )  # fmt: skip
    reply = {"actor": sent(rid(URBAN), datetime.now(UTC)), "outcome": "resolved",
             "text": "The pipe is replaced"}  # fmt: skip
    await handle.signal("reply", reply)
    async with build_worker(client, pool, own_queue(settings, queue)):
        s = await until(client, handle.id, lambda s: s.status is Status.REPLIED, within=60)
        assert s.extension_count == 1
        assert not [b for b in s.breaches if b.kind is DeadlineKind.FINISH], s.breaches
        # the events keep no sent_at; the actors the state keeps (the reply's, the
        # extension's requester) do, as the signal carried them
        replied = next(e for e in s.events if e.kind is EventKind.REPLIED)
        assert replied.actor.sent_at is None and s.reply is not None
        assert s.reply.by.sent_at is not None and s.extension is not None
        assert s.extension.requested_by.sent_at is not None
        await handle.terminate("test finished")


async def test_an_extension_approved_in_time_and_a_reply_after_the_old_deadline_is_no_breach(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """The other side of the one above (passes today, and must after its fix): the centre
    approves before the finish deadline, the unit replies after it (before the promised date),
    both applied with the deadline's timer while the worker was down: no breach."""
    await outages.of(request)


async def _convened(
    client: Client, pool: asyncpg.Pool, settings: Settings, name: str, due_in: timedelta
) -> tuple[WorkflowHandle, str]:
    """A general case assigned to urban management, water convened as co-handler (会办) with a
    contribution deadline ``due_in`` from the order, the worker then stopped (returned: the
    handle, the queue)."""
    case_id, queue = own_case(name)
    async with build_worker(client, pool, own_queue(settings, queue)):
        handle = await started_assigned(client, case_id, queue)
        water = [{"id": "water", "name": "Water"}]
        due = datetime.now(UTC) + due_in
        convene = {"actor": sent(rid(SUPERVISOR), datetime.now(UTC)), "departments": water,
                   "due": due.isoformat()}  # fmt: skip
        await handle.signal("add_co_handlers", convene)
        await until(client, case_id, lambda s: s.co_handlers)
    return handle, queue


async def _a_contribution_sent_after_its_due_is_overdue(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    handle, queue = await worker_down_across(
        lambda slack: _convened(client, pool, settings, "latecontribution", slack),
        b"contribution deadline water",
    )
    contribution = {"actor": sent(rid(WATER), datetime.now(UTC)), "text": "Pipe map attached"}
    await handle.signal("contribute", contribution)
    async with build_worker(client, pool, own_queue(settings, queue)):
        s = await until(client, handle.id, lambda s: s.co_handlers[0].done, within=60)
        co = s.co_handlers[0]
        assert co.due is not None and co.contributed_at is not None
        assert co.contributed_at > co.due  # late, as recorded
        overdue = kinds(s, EventKind.CONTRIBUTION_OVERDUE)
        await handle.terminate("test finished")
    assert overdue, [e.kind for e in s.events]


async def test_a_contribution_sent_after_its_due_is_overdue(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """会办: with the worker up, a co-handler silent past its due is recorded
    ``contribution_overdue`` at the due. With the worker down across the due, its contribution
    sent after it and the due's timer reach the worker in one task: the contribution is applied
    first (recorded at its sent time, after the due) and the overdue is never recorded."""
    await outages.of(request)


async def _signalled_actors(handle: WorkflowHandle, name: str) -> list[dict[str, Any]]:
    found = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attrs = event.workflow_execution_signaled_event_attributes
            if attrs.signal_name == name:
                found.append(json.loads(attrs.input.payloads[0].data)["actor"])
    return found


async def test_the_api_stamps_an_action_when_its_request_came_in_not_after_its_reads(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool, settings: Settings,
    monkeypatch: pytest.MonkeyPatch, outages: Scenarios,
) -> None:
    """``sent_at`` is documented as when the request reached the API. With the worker down
    the API asks the workflow first whenever its read-model copy refuses the action (a copy
    behind: the 签收 just sent is not projected, so 联系 looks premature) and waits the
    query's timeout (JIESU_QUERY_TIMEOUT_SECONDS, 2 s) before it signals: the action was
    stamped that much later than it came in — a 联系 sent a second before its deadline was
    the unit's breach."""
    await outages.settled()  # timed to the second: alone in the process, as it always was
    # Each action then waits for the worker to apply it (APPLY_WAIT_SECONDS, 5 s) before its
    # 202: after the stamp, and not what this test is about. The query's timeout stays 2 s.
    monkeypatch.setattr(api_cases, "APPLY_WAIT_SECONDS", 1.0)
    queue = f"apistamp-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-APISTAMP-{uuid.uuid4().hex[:8]}"
    handle = handle_of(client, case_id)
    urban = department("urban-management")
    async with build_worker(client, pool, own_queue(settings, queue)):
        await client.start_workflow(
            ComplaintWorkflow.run, start_of(case_id), id=case_id, task_queue=queue
        )
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        await eventually(lambda: pool.fetchval(
            "SELECT status = 'assigned' FROM cases WHERE case_id = $1", case_id))  # fmt: skip
    # the worker is down: the accept is signalled (the copy allows it), not applied
    await act(api, case_id, "accept", urban, expect=202)
    came_in = datetime.now(UTC)
    await act(api, case_id, "contact", urban, expect=202)
    [actor] = await _signalled_actors(handle, "contact")
    stamped = datetime.fromisoformat(actor["sent_at"])
    async with build_worker(client, pool, own_queue(settings, queue)):
        s = await until(client, case_id, lambda s: s.contacted_at is not None, within=60)
        await handle.terminate("test finished")
    assert s.contacted_at == stamped
    assert stamped - came_in < timedelta(seconds=1), (came_in, stamped)


DECISION_HOURS = 8 / 3600  # the centre's window to decide an extension, in this test: 8 s


async def _an_extension_request_applied_after_its_decision_window_gives_the_centre_time(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    quick = settings.model_copy(update={"extension_decision_hours": DECISION_HOURS})
    finish: list[datetime] = []  # the last of each is this case's (a setup may run again)
    asked: list[datetime] = []

    async def down_to_the_window(handle: WorkflowHandle) -> None:
        s = await handle.query(ComplaintWorkflow.state)
        assert s.deadlines is not None and s.deadlines.extension_decision_hours == DECISION_HOURS
        finish.append(s.deadlines.finish)

    async def ask(handle: WorkflowHandle) -> None:  # the worker is down
        asked.append(datetime.now(UTC))
        request = {
            "actor": sent(rid(URBAN), asked[-1]),
            "reasons": "Main pipe must be replaced",
            "measures": "Water tanker on site",
            "promised_finish": (finish[-1] + timedelta(days=1)).isoformat(),
        }
        await handle.signal("request_extension", request)

    handle, queue = await _across_an_outage(
        client, pool, quick, "lateextension", URGENT_ACCEPT, down_to_the_window, ask,
        b"accept deadline",
    )  # fmt: skip
    await until_past(asked[-1] + timedelta(hours=DECISION_HOURS))  # the outage outlasts it
    async with build_worker(client, pool, own_queue(quick, queue)):
        s = await until(client, handle.id, lambda s: s.extension is not None, within=60)
        assert s.extension is not None and s.extension.decision_due is not None
        applied = next(e for e in s.events if e.kind is EventKind.EXTENSION_REQUESTED)
        overdue = kinds(s, EventKind.EXTENSION_DECISION_OVERDUE)
        await handle.terminate("test finished")
    assert applied.at == s.extension.requested_at
    assert not overdue, [e.kind for e in s.events]  # the centre had no moment to decide
    assert s.extension.approved is None


async def test_an_extension_request_applied_after_its_decision_window_gives_the_centre_time(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """延期审批时限: the centre decides a request within extension_decision_hours, or it is
    approved and the lapse recorded against the centre. The centre reads the request from the
    case (its pending list is the read model's); with the worker down the request is not
    there. Timed when sent, a request applied after its window is approved, and the centre's
    lapse recorded, in the task that first shows it — the outage, not the centre, used up the
    window (a dispatch's deadlines, by contrast, run from when the case applies it)."""
    await outages.of(request)


async def _a_co_handling_due_that_passed_in_an_outage_is_not_overdue_at_once(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    due: list[datetime] = []  # the last is this case's (a setup may run again)

    async def convene(handle: WorkflowHandle) -> None:
        water = [{"id": "water", "name": "Water"}]
        due.append(datetime.now(UTC) + timedelta(seconds=5))
        order = {"actor": sent(rid(SUPERVISOR), datetime.now(UTC)), "departments": water,
                 "due": due[-1].isoformat()}  # fmt: skip
        await handle.signal("add_co_handlers", order)

    handle, queue = await _across_an_outage(
        client, pool, settings, "pastdue", URGENT_ACCEPT, nothing, convene, b"accept deadline"
    )
    await until_past(due[-1])  # the worker comes back after the due
    async with build_worker(client, pool, own_queue(settings, queue)):
        s = await until(client, handle.id, lambda s: s.breaches and (
            kinds(s, EventKind.CO_HANDLERS_ADDED) or kinds(s, EventKind.REJECTED)), within=60)
        convened = kinds(s, EventKind.CO_HANDLERS_ADDED)
        overdue = kinds(s, EventKind.CONTRIBUTION_OVERDUE)
        await handle.terminate("test finished")
    assert not (convened and overdue), [e.kind for e in s.events]


async def test_a_co_handling_due_that_passed_in_an_outage_is_not_overdue_at_once(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """会办 with a contribution due a few seconds ahead, sent while the worker is down and
    applied after the due: before v12 the case refused it (``invalid_due``: the due was past
    when it was applied); now it convenes the co-handler and records ``contribution_overdue``
    against it in the same moment — a department that could not have seen the order."""
    await outages.of(request)


async def _a_dispatch_applied_late_gives_the_unit_its_time_from_when_the_case_applied_it(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    queue = f"latedispatch-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-LATEDISPATCH-{uuid.uuid4().hex[:8]}"
    start = start_of(case_id)
    start = start.model_copy(update={"facts": start.facts.model_copy(
        update={"category_id": "stray_animals"})})  # fmt: skip  # no rule: the queue
    handle = handle_of(client, case_id)
    async with build_worker(client, pool, own_queue(settings, queue)):
        await client.start_workflow(ComplaintWorkflow.run, start, id=case_id, task_queue=queue)
        await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
    sent_at = datetime.now(UTC)
    dispatch = {"actor": sent(rid(SUPERVISOR), sent_at), "department_id": "water",
                "department_name": "县水务局"}  # fmt: skip
    await handle.signal("dispatch", dispatch)
    async with build_worker(client, pool, own_queue(settings, queue)):
        s = await until(client, case_id, lambda s: s.status is Status.ASSIGNED, within=60)
        await handle.terminate("test finished")
    assert s.assignment is not None and s.assignment.department_id == "water"
    dispatched = next(e for e in s.events if e.kind is EventKind.DISPATCHED)
    assert s.assignment.assigned_at == dispatched.at > sent_at


async def test_a_dispatch_applied_late_gives_the_unit_its_time_from_when_the_case_applied_it(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """人工派单 out of the centre's queue, sent while the worker is down: the case judges it at
    its sent time, but the assignment and the unit's deadlines run from when the case applied
    it (the unit sees it only then) — as its ``dispatched`` event says. (docs/auditing.md
    listed a dispatch's ``assigned_at`` among the times set to the action's time: it is not.)"""
    await outages.of(request)


async def _actions_applied_late_keep_the_audit_consistent_and_explained(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    case_id, queue = own_case("lateaudit")
    async with build_worker(client, pool, own_queue(settings, queue)):
        handle = await started_assigned(client, case_id, queue)
    times = [datetime.now(UTC)]
    await handle.signal("accept", {"actor": sent(rid(URBAN), times[0])})
    times.append(datetime.now(UTC))
    await handle.signal("contact", {"actor": sent(rid(URBAN), times[1])})
    async with build_worker(client, pool, own_queue(settings, queue)):
        s = await until(client, case_id, lambda s: s.contacted_at is not None, within=60)
        assert (s.accepted_at, s.contacted_at) == (times[0], times[1])
        await eventually(lambda: pool.fetchval(
            "SELECT contacted_at IS NOT NULL FROM cases WHERE case_id = $1", case_id))  # fmt: skip
        consistency = await settled_consistency(client, pool, case_id)
        history = await handle.fetch_history()
        await handle.terminate("test finished")
    assert consistency.ok, (consistency.divergences, consistency.error)
    timeline = decode_history(history)
    signals = [e for e in timeline.entries if e.kind == "signal"]
    assert [e.details["outcome"] for e in signals] == ["applied", "applied"], signals
    assert [datetime.fromisoformat(e.details["sent_at"]) for e in signals] == times


async def test_actions_applied_late_keep_the_audit_consistent_and_explained(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """签收 and 联系 sent while the worker is down, applied when it is back (timed when sent,
    before the task that applied them): the read model's events are the history's (the
    consistency check), and the auditor's timeline matches each signal to the event it caused,
    with its ``sent_at`` and the event at that time."""
    await outages.of(request)


async def _a_rating_sent_after_the_rating_window_does_not_reopen_the_case(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    quick: list[Settings] = []  # the last of each is this case's (a setup may run again)
    window_end: list[datetime] = []

    async def replied(slack: timedelta) -> tuple[WorkflowHandle, str]:
        """A case replied to, its rating window (评价期, from the reply) ``slack`` long."""
        hours = slack / timedelta(hours=1)
        quick.append(settings.model_copy(update={"rating_window_hours": hours}))
        queue = f"laterating-{uuid.uuid4().hex[:8]}"
        case_id = f"JS-LATERATING-{uuid.uuid4().hex[:8]}"
        handle = handle_of(client, case_id)
        async with build_worker(client, pool, own_queue(quick[-1], queue)):
            await client.start_workflow(
                ComplaintWorkflow.run, start_of(case_id), id=case_id, task_queue=queue
            )
            await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
            for name, extra in (("accept", {}), ("contact", {}),
                                ("reply", {"outcome": "resolved", "text": "Adverts stopped"})):
                await handle.signal(name, {"actor": sent(rid(URBAN), datetime.now(UTC)), **extra})
            s = await until(client, case_id, lambda s: s.status is Status.REPLIED)
            assert s.deadlines is not None and s.deadlines.rating_window_hours == hours
            assert s.reply is not None
            window_end.append(s.reply.at + timedelta(hours=hours))
        return handle, queue

    handle, queue = await worker_down_across(replied, b"rating window")
    verdict = {"actor": sent(rid(CITIZEN), datetime.now(UTC)), "rating": "unsatisfied",
               "comment": "Still loud"}  # fmt: skip
    await handle.signal("rate", verdict)
    async with build_worker(client, pool, own_queue(quick[-1], queue)):
        s = await until(client, handle.id, lambda s: s.status is not Status.REPLIED, within=60)
        rehandled = kinds(s, EventKind.REHANDLE_STARTED)
        await ended(handle)  # closed unrated (the right outcome) it may have ended already
    rated = [e for e in s.events if e.kind is EventKind.RATED]
    assert not rehandled, [e.kind.value for e in s.events]
    assert not rated or rated[0].at <= window_end[-1], [(e.kind, e.at) for e in s.events]


async def test_a_rating_sent_after_the_rating_window_does_not_reopen_the_case(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """评价: with the worker up the rating window's timer closes the case unrated (not_rated)
    and a verdict after it is refused (the case is closed). With the worker down across the
    window's end, an 不满意 sent after it and the timer reach the worker in one task: the
    verdict is applied first, and the case starts 重办 — a new round for the unit and an
    unsatisfied verdict in 满意率, for a verdict sent too late."""
    await outages.of(request)


async def _a_supervision_due_that_passed_in_an_outage_is_not_over_at_once(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    due: list[datetime] = []  # the last is this case's (a setup may run again)

    async def order(handle: WorkflowHandle) -> None:
        due.append(datetime.now(UTC) + timedelta(seconds=5))
        supervise = {"actor": sent(rid(SUPERVISOR), datetime.now(UTC)), "form": "urge",
                     "note": "Reply today", "due": due[-1].isoformat()}  # fmt: skip
        await handle.signal("supervise", supervise)

    handle, queue = await _across_an_outage(
        client, pool, settings, "pastorder", URGENT_ACCEPT, nothing, order, b"accept deadline"
    )
    await until_past(due[-1])  # the worker comes back after the due
    async with build_worker(client, pool, own_queue(settings, queue)):
        s = await until(client, handle.id, lambda s: s.breaches and (
            kinds(s, EventKind.ESCALATION_STARTED) or kinds(s, EventKind.REJECTED)), within=60)
        applied = s.breaches[0].at  # the worker's clock in the task that applied the order
        ordered = [e for e in kinds(s, EventKind.ESCALATION_STARTED) if e.get("form") == "urge"]
        await handle.terminate("test finished")
    assert not ordered or datetime.fromisoformat(ordered[0]["due"]) > applied, (ordered, applied)


async def test_a_supervision_due_that_passed_in_an_outage_is_not_over_at_once(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """督办单 with a deadline for the unit a few seconds ahead, sent while the worker is down
    and applied after it: v11 refused it (``invalid_due``, the due past when applied); now the
    ladder starts with its first step (催办) already past its due, and climbs on at once
    against a unit that could not have seen the order."""
    await outages.of(request)


# each test_x awaits its scenario _x, all run at once (helpers.outage_scenarios)
outages = outage_scenarios(
    _a_withdrawal_sent_after_the_accept_deadline_keeps_the_units_breach,
    _an_extension_approved_after_the_finish_deadline_keeps_the_breach,
    _an_extension_approved_in_time_and_a_reply_after_the_old_deadline_is_no_breach,
    _a_contribution_sent_after_its_due_is_overdue,
    _an_extension_request_applied_after_its_decision_window_gives_the_centre_time,
    _a_co_handling_due_that_passed_in_an_outage_is_not_overdue_at_once,
    _a_dispatch_applied_late_gives_the_unit_its_time_from_when_the_case_applied_it,
    _actions_applied_late_keep_the_audit_consistent_and_explained,
    _a_rating_sent_after_the_rating_window_does_not_reopen_the_case,
    _a_supervision_due_that_passed_in_an_outage_is_not_over_at_once,
)
