"""The centre's lapses (逾期视为同意) come before the actions sent after them (lean-case-v18).

With the worker up, the timer of the centre's window to decide a 延期 or a 退单 fires at the
window's end: the request is approved or upheld by lapse, the lapse recorded against the centre,
and whatever comes after meets a decided request. With the worker down across the window's
end, the SDK applies a signal before the timer in the task that brings both; before v18 the
centre's decision sent after its window pre-empted the lapse (no lapse recorded, and a rejection
left the old finish deadline to be breached), and a reply was judged against the undecided
request. Found by the twenty-second session's review (its scratch test is the first here).
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest
from helpers import (
    Scenarios,
    in_time,
    keep_history,
    nothing,
    outage_scenarios,
    own_queue,
    timer_fired,
)
from temporalio.client import Client, WorkflowHandle
from test_actions_timed_when_sent import URGENT_CONTACT, _across_an_outage, sent
from test_actions_timed_when_sent_attacks import (
    URGENT_FINISH,
    _extension_asked_to_lapse_first,
)
from test_hostile_messages import SUPERVISOR, URBAN, kinds, rid, until

from jiesu.case.domain import CaseState, DeadlineKind, EventKind, Status
from jiesu.config import Settings
from worker import build_worker
from workflows import patches as patches_module

DECISION_HOURS = 3 / 3600  # the centre's window: 3 s, ending before the case's deadline (5 s)


def _refused(s: CaseState, action: str) -> list[str]:
    return [e.data["code"] for e in s.events
            if e.kind is EventKind.REJECTED and e.data.get("action") == action]  # fmt: skip


def _finish_breaches(s: CaseState) -> list[datetime]:
    return [b.deadline for b in s.breaches if b.kind is DeadlineKind.FINISH]


async def _extension_lapsed_in_the_outage(
    client: Client, pool: asyncpg.Pool, settings: Settings, name: str
) -> tuple[WorkflowHandle, str, Settings]:
    """An urgent case handling with a 延期 asked (a day past the finish deadline); the centre's
    3 s window and then the finish deadline pass with the worker down."""
    quick = settings.model_copy(update={"extension_decision_hours": DECISION_HOURS})
    handle, queue = await _across_an_outage(
        client, pool, quick, name, URGENT_FINISH, _extension_asked_to_lapse_first(client),
        nothing, b"finish deadline", inside=(b"extension decision deadline",),
    )  # fmt: skip
    assert await timer_fired(handle, b"extension decision deadline")
    return handle, queue, quick


async def _rejected_late(
    client: Client, pool: asyncpg.Pool, settings: Settings, name: str
) -> CaseState:
    handle, queue, quick = await _extension_lapsed_in_the_outage(client, pool, settings, name)
    decision = {"actor": sent(rid(SUPERVISOR), datetime.now(UTC)), "approved": False}
    await handle.signal("decide_extension", decision)
    async with build_worker(client, pool, own_queue(quick, queue)):
        # the decision, the lapse's timer and the deadline's reach the worker in one task
        s = await until(
            client, handle.id,
            lambda s: s.extension is not None and s.extension.approved is not None, within=60,
        )  # fmt: skip
        await handle.terminate("test finished")
        await keep_history(handle, name)
    return s


async def _a_rejection_sent_after_the_window_finds_the_extension_approved_by_lapse(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    s = await _rejected_late(client, pool, settings, "late_rejection_after_the_lapse")
    assert kinds(s, EventKind.EXTENSION_DECISION_OVERDUE), [e.kind.value for e in s.events]
    assert s.extension is not None and s.extension.approved is True, s.extension
    assert _refused(s, "decide_extension") == ["no_extension_pending"]
    assert s.deadlines is not None and s.deadlines.finish == s.extension.promised_finish
    assert not _finish_breaches(s), s.breaches
    overdue = next(e for e in s.events if e.kind is EventKind.EXTENSION_DECISION_OVERDUE)
    assert s.extension.decision_due is not None and overdue.at == s.extension.decision_due


async def test_a_rejection_sent_after_the_window_finds_the_extension_approved_by_lapse(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Worker up: approved by lapse at the window's end (extension_decision_overdue), the
    finish deadline moved a day, the late rejection refused (no_extension_pending): no 办结
    breach. Before v18, in one task with the lapse's timer: the rejection applied, no lapse
    recorded, and the finish watch recorded 办结 超时 at the old deadline."""
    await outages.of(request)


async def test_a_case_before_v18_keeps_the_decision_that_came_first(
    client: Client, pool: asyncpg.Pool, settings: Settings, monkeypatch: pytest.MonkeyPatch,
    outages: Scenarios,
) -> None:
    """A case of lean-case-v17 replays as it ran: the late rejection applied, no lapse."""
    await outages.settled()  # the epochs are those of every worker of this process
    v17 = next(n for n, (e, _) in enumerate(patches_module.EPOCHS) if e == "lean-case-v17")
    monkeypatch.setattr(patches_module, "EPOCHS", patches_module.EPOCHS[: v17 + 1])
    s = await _rejected_late(client, pool, settings, "late_rejection_before_v18")
    assert not kinds(s, EventKind.EXTENSION_DECISION_OVERDUE)
    assert s.extension is not None and s.extension.approved is False
    assert _finish_breaches(s), s.breaches


async def _a_reply_after_the_lapse_and_the_old_deadline_meets_the_promised_date(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    handle, queue, quick = await _extension_lapsed_in_the_outage(
        client, pool, settings, "reply_after_the_lapse"
    )
    reply = {"actor": sent(rid(URBAN), datetime.now(UTC)), "outcome": "resolved",
             "text": "The pipe is replaced"}  # fmt: skip
    await handle.signal("reply", reply)
    async with build_worker(client, pool, own_queue(quick, queue)):
        s = await until(client, handle.id, lambda s: s.status is Status.REPLIED, within=60)
        await handle.terminate("test finished")
        await keep_history(handle, "reply_after_the_lapse_in_its_task")
    assert kinds(s, EventKind.EXTENSION_DECISION_OVERDUE), [e.kind.value for e in s.events]
    assert s.extension is not None and s.extension.approved is True
    assert not _finish_breaches(s), s.breaches
    order = [e.kind for e in s.events]
    assert order.index(EventKind.EXTENSION_DECIDED) < order.index(EventKind.REPLIED), order


async def test_a_reply_after_the_lapse_and_the_old_deadline_meets_the_promised_date(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """The unit replies after the old finish deadline, before the promised date; the centre
    never decided. Worker up: approved by lapse at the window's end, the reply in time of
    the moved deadline. Before v18, in one task: the reply applied first (the case replied,
    so the lapse's watch ended with nothing recorded), judged against the old deadline:
    办结 超时 against a unit whose request the centre let lapse."""
    await outages.of(request)


async def _a_return_rejected_after_its_window_finds_it_upheld_by_lapse(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    quick = settings.model_copy(
        update={"return_needs_approval": True, "return_decision_hours": DECISION_HOURS}
    )

    async def returned(handle: WorkflowHandle) -> None:
        await handle.signal("accept", {"actor": sent(rid(URBAN), datetime.now(UTC))})
        await until(client, handle.id, lambda s: s.status is Status.HANDLING)
        reason = {"actor": sent(rid(URBAN), datetime.now(UTC)), "reason": "Not ours: police"}
        await handle.signal("return", reason)
        s = await until(client, handle.id, lambda s: s.pending_return is not None)
        assert s.deadlines is not None and s.pending_return is not None
        assert s.pending_return.decision_due is not None
        in_time(handle, s.pending_return.decision_due < s.deadlines.contact,
                "the return's window ends after the contact deadline")  # fmt: skip

    handle, queue = await _across_an_outage(
        client, pool, quick, "returnrejectedlate", URGENT_CONTACT, returned, nothing,
        b"contact deadline", inside=(b"return decision deadline",),
    )  # fmt: skip
    assert await timer_fired(handle, b"return decision deadline")
    decision = {"actor": sent(rid(SUPERVISOR), datetime.now(UTC)), "upheld": False,
                "note": "It is yours"}  # fmt: skip
    await handle.signal("decide_return", decision)
    async with build_worker(client, pool, own_queue(quick, queue)):
        s = await until(
            client, handle.id,
            lambda s: kinds(s, EventKind.RETURN_UPHELD) or kinds(s, EventKind.RETURN_REJECTED),
            within=60,
        )  # fmt: skip
        await handle.terminate("test finished")
        await keep_history(handle, "return_rejected_after_the_lapse_in_its_task")
    assert kinds(s, EventKind.RETURN_DECISION_OVERDUE), [e.kind.value for e in s.events]
    assert kinds(s, EventKind.RETURN_UPHELD) and not kinds(s, EventKind.RETURN_REJECTED)
    assert _refused(s, "decide_return") == ["no_return_pending"]
    timeline = "  ".join(f"{e.kind.value}@{e.at.isoformat()[17:23]}" for e in s.events)
    assert DeadlineKind.CONTACT not in [b.kind for b in s.breaches], timeline


async def test_a_return_rejected_after_its_window_finds_it_upheld_by_lapse(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """退单审核: the unit returned the case in time; the centre's window (3 s) ends before the
    contact deadline, and the centre rejects the return only after both. Worker up: upheld by
    lapse (return_decision_overdue) and reassigned; the late rejection refused
    (no_return_pending); the contact deadline ends at the reassignment: no 联系 breach. Before
    v18, in one task: the rejection applied, the unit kept a case it returned in time, and
    the contact watch recorded 联系 超时."""
    await outages.of(request)


# each test_x awaits its scenario _x, all run at once (helpers.outage_scenarios)
outages = outage_scenarios(
    _a_rejection_sent_after_the_window_finds_the_extension_approved_by_lapse,
    _a_reply_after_the_lapse_and_the_old_deadline_meets_the_promised_date,
    _a_return_rejected_after_its_window_finds_it_upheld_by_lapse,
)
