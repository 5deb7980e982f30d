"""lean-case-v12 (actions-timed-when-sent-v1): a case times a unit's action when its request
was sent (``Actor.sent_at``, stamped by the API), not when the worker applied it.

The worker is down (a deploy, a crash, a backlog) across a deadline. When a worker is back, the
deadline's timer and the unit's action reach it in one workflow task, and the SDK applies the
signal first. Before v12 the watch then saw the deadline met, whatever the action's time: a
签收 sent long after the deadline was never a breach. And a 退单 sent before the deadline but
applied after it was the unit's breach. Now the case judges each by when it was sent: the late
签收 is a breach (and the case records it at the time it was sent), the timely 退单 is not."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from helpers import (
    Scenarios,
    Step,
    act,
    case_down_across,
    department,
    handle_of,
    keep_history,
    outage_scenarios,
    register,
    sent,
    urgent_start,
)
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from test_hostile_messages import URBAN, kinds, rid, start_of, until

from jiesu.audit.timeline import decode_history
from jiesu.case.domain import CaseStart, DeadlineKind, EventKind, Status
from jiesu.config import Settings
from worker import build_worker
from workflows import ComplaintWorkflow

URGENT_ACCEPT = timedelta(minutes=30)  # jiesu.case.sla: an urgent case is accepted in 30 min
URGENT_CONTACT = timedelta(hours=1)


async def _across_an_outage(
    client: Client, pool: asyncpg.Pool, settings: Settings, name: str, due_after: timedelta,
    before: Step, during: Step, summary: bytes, inside: tuple[bytes, ...] = (),
) -> tuple[WorkflowHandle, str]:
    """An urgent case whose deadline (``due_after`` its receipt) falls due a slack from now
    (helpers.worker_down_across): ``before`` with the worker up, then the worker stops,
    ``during`` is sent, and the deadline's timer fires; the worker is started again by the
    caller (returned: the handle, the task queue). ``before`` and ``during`` run again, on a
    new case, if the setup overran its slack or a window of ``inside`` ended before the worker
    stopped (helpers.case_down_across)."""

    def urgent(case_id: str, slack: timedelta) -> CaseStart:
        return urgent_start(case_id, due_after, slack)

    return await case_down_across(
        client, pool, settings, name, summary, before, during, start=urgent, inside=inside
    )


async def _a_late_accept_applied_with_the_deadlines_timer_is_a_breach(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    async def nothing(_: WorkflowHandle) -> None:
        return None

    handle, queue = await _across_an_outage(
        client, pool, settings, "lateaccept", URGENT_ACCEPT, nothing, nothing, b"accept deadline"
    )
    # the deadline has passed (its timer fired); the unit accepts now, the worker still down
    accept = {"actor": sent(rid(URBAN), datetime.now(UTC))}
    await handle.signal("accept", accept)
    own = settings.model_copy(update={"task_queue": queue})
    async with build_worker(client, pool, own):
        s = await until(client, handle.id, lambda s: s.status is Status.HANDLING, within=60)
        s = await until(client, handle.id, lambda s: s.breaches, within=30)
        assert [b.kind for b in s.breaches] == [DeadlineKind.ACCEPT], s.breaches
        assert s.deadlines is not None and s.accepted_at is not None
        assert s.accepted_at > s.deadlines.accept  # recorded when it was sent: late
        # done, if late: nothing left to supervise
        assert s.escalation is None, s.escalation
        accepted = next(e for e in s.events if e.kind is EventKind.ACCEPTED)
        assert accepted.actor.sent_at is None  # the event's time is the case's reading of it
        assert accepted.at == s.accepted_at
        await handle.terminate("test finished")
        await keep_history(handle, "late_accept_in_the_timers_task")


async def test_a_late_accept_applied_with_the_deadlines_timer_is_a_breach(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    await outages.of(request)


async def _an_accept_sent_in_time_while_the_worker_was_down_meets_the_deadline(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    sent_at: list[datetime] = []

    async def accept_in_time(handle: WorkflowHandle) -> None:
        sent_at.append(datetime.now(UTC))  # the last is this case's (a setup may run again)
        await handle.signal("accept", {"actor": sent(rid(URBAN), sent_at[-1])})

    async def nothing(_: WorkflowHandle) -> None:
        return None

    handle, queue = await _across_an_outage(
        client, pool, settings, "timelyaccept", URGENT_ACCEPT, nothing, accept_in_time,
        b"accept deadline",
    )
    own = settings.model_copy(update={"task_queue": queue})
    async with build_worker(client, pool, own):
        s = await until(client, handle.id, lambda s: s.status is Status.HANDLING, within=60)
        assert s.deadlines is not None and s.accepted_at is not None
        # applied after the deadline, timed when it was sent: before it
        assert s.accepted_at == sent_at[-1] < s.deadlines.accept
        assert datetime.now(UTC) > s.deadlines.accept
        assert not s.breaches, s.breaches  # v11 and before: none either (met at all)
        await handle.terminate("test finished")


async def test_an_accept_sent_in_time_while_the_worker_was_down_meets_the_deadline(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    await outages.of(request)


async def _a_return_sent_before_the_contact_deadline_and_applied_after_is_no_breach(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    async def accept(handle: WorkflowHandle) -> None:
        await handle.signal("accept", {"actor": sent(rid(URBAN), datetime.now(UTC))})
        await until(client, handle.id, lambda s: s.status is Status.HANDLING)

    async def return_in_time(handle: WorkflowHandle) -> None:
        reason = "Not ours: police work"
        actor = sent(rid(URBAN), datetime.now(UTC))
        await handle.signal("return", {"actor": actor, "reason": reason})

    handle, queue = await _across_an_outage(
        client, pool, settings, "timelyreturn", URGENT_CONTACT, accept, return_in_time,
        b"contact deadline",
    )
    own = settings.model_copy(update={"task_queue": queue})
    async with build_worker(client, pool, own):
        s = await until(client, handle.id, lambda s: s.status is not Status.HANDLING, within=60)
        assert kinds(s, EventKind.REASSIGNMENT_STARTED), [e.kind for e in s.events]
        assert s.deadlines is not None and s.reassignment is not None
        assert s.reassignment.started_at < s.deadlines.contact
        # (its accept deadline, 30 min, had passed at its start: that breach is recorded)
        contact = [b for b in s.breaches if b.kind is DeadlineKind.CONTACT]
        assert not contact, contact  # lean-case-v11 recorded 联系 超时 against the unit
        await handle.terminate("test finished")
        await keep_history(handle, "timely_return_applied_after_the_deadline")


async def test_a_return_sent_before_the_contact_deadline_and_applied_after_is_no_breach(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    await outages.of(request)


async def test_a_sent_time_before_the_cases_last_event_or_malformed_changes_no_order(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    """Any client can send any time: one before what the case has recorded is read as the
    case's last event (its events stay in order, and a step cannot be dated before the
    breach the case recorded); one without a zone is refused, recorded, and wedges nothing."""
    case_id = f"JS-SENTAT-{uuid.uuid4().hex[:8]}"
    handle = handle_of(client, case_id)
    await client.start_workflow(
        ComplaintWorkflow.run, start_of(case_id), id=case_id, task_queue=settings.task_queue
    )
    await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
    await handle.signal("accept", {"actor": sent(rid(URBAN), "2026-01-01T08:00:00")})
    s = await until(client, case_id, lambda s: kinds(s, EventKind.REJECTED))
    assert s.status is Status.ASSIGNED
    last = s.events[-1].at  # the refusal's
    await handle.signal("accept", {"actor": sent(rid(URBAN), datetime(2020, 1, 1, tzinfo=UTC))})
    s = await until(client, case_id, lambda s: s.status is Status.HANDLING)
    assert s.accepted_at == last
    assert [e.at for e in s.events] == sorted(e.at for e in s.events)
    await handle.terminate("test finished")


async def test_the_api_sends_each_action_with_the_time_it_came_in(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = (await register(api))["case_id"]
    before = datetime.now(UTC)
    await act(api, case_id, "accept", department("urban-management"))
    after = datetime.now(UTC)
    actors = []
    async for event in handle_of(client, case_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attrs = event.workflow_execution_signaled_event_attributes
            if attrs.signal_name == "accept":
                actors.append(json.loads(attrs.input.payloads[0].data)["actor"])
    assert len(actors) == 1, actors
    assert before <= datetime.fromisoformat(actors[0]["sent_at"]) <= after


def test_the_auditors_timeline_shows_when_each_action_was_sent() -> None:
    """The standard case, recorded through the API: each action's signal says when its request
    came in, and is matched to the event it caused (recorded without that time)."""
    path = Path(__file__).parent / "histories" / "urgent_happy_path.json"
    timeline = decode_history(WorkflowHistory.from_json("urgent", path.read_text("utf-8")))
    signals = [e for e in timeline.entries if e.kind == "signal"]
    assert [e.details["signal"] for e in signals] == ["accept", "contact", "reply", "rate"]
    for entry in signals:
        assert entry.details["outcome"] == "applied", entry
        assert "sent_at" not in (entry.actor or {})
        assert datetime.fromisoformat(entry.details["sent_at"]) <= entry.at, entry


# each test_x awaits its scenario _x, all run at once (helpers.outage_scenarios)
outages = outage_scenarios(
    _a_late_accept_applied_with_the_deadlines_timer_is_a_breach,
    _an_accept_sent_in_time_while_the_worker_was_down_meets_the_deadline,
    _a_return_sent_before_the_contact_deadline_and_applied_after_is_no_breach,
)
