"""Red team of lean-case-v18 (lapses-before-later-actions-v1, commit 8818e76).

v18 takes the centre's lapses (逾期视为同意 of a pending 延期 or 退单) due before a message's time
first, inside that message's handling, "as their timers would with the worker up". These tests
set the worker down across a decision window's end (windows of 3 s), send a message after it,
and compare what the case records with what the worker-up order records (each docstring says
it). A 退单 upheld by a lapse taken so only *asks* for its reassignment (``_reassign_next``, the
main loop carries it out after the message): the message is judged against a unit still
holding the case, where with the worker up the case was already being reassigned (status
``reassigning``) or in its new round. The nine defects found (strict xfails until then) are
fixed by lean-case-v20 (closed-case-not-reassigned-v1, judged-as-reassigning-v1,
lapse-rechecked-v1; each of those tests failed on v19's workflow and passes now); attacks that
held are plain guards. Each defect test's docstring says what the worker-up order records.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
import pytest
import temporalio.worker._workflow as sdk_workflow
from helpers import (
    Scenarios,
    case_down_across,
    case_settled,
    ended,
    event_count,
    in_time,
    keep_history,
    nothing,
    own_case,
    own_queue,
    refusals,
    scenarios_of,
    signal_sent,
    started_assigned,
    timeline_of,
)
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.worker._workflow_instance import _WorkflowLogicFlag
from test_actions_timed_when_sent import URGENT_CONTACT, _across_an_outage
from test_actions_timed_when_sent_attacks import CITIZEN
from test_hostile_messages import SUPERVISOR, URBAN, kinds, until
from test_lapse_before_late_actions import DECISION_HOURS, _rejected_late

from jiesu.case.domain import CaseState, DeadlineKind, EventKind, Status
from jiesu.config import Settings
from worker import build_worker
from workflows import patches as patches_module

Before = Callable[[WorkflowHandle], Awaitable[None]]


def _returns_decided(settings: Settings, **more: Any) -> Settings:
    """The centre decides every 退单, within 3 s; a reassignment's dispatcher window is 0.6 s
    (then the rules choose the next unit)."""
    update = {
        "return_needs_approval": True, "return_decision_hours": DECISION_HOURS,
        "dispatcher_window_minutes": 0.01, **more,
    }  # fmt: skip
    return settings.model_copy(update=update)


def _accepted_and_returned(client: Client, contact: bool = False) -> Before:
    """签收 (and 联系), then a 退单 the centre must decide within 3 s."""

    async def before(handle: WorkflowHandle) -> None:
        await signal_sent(handle, "accept", URBAN)
        await until(client, handle.id, lambda s: s.status is Status.HANDLING)
        if contact:
            await signal_sent(handle, "contact", URBAN)
            await until(client, handle.id, lambda s: s.contacted_at is not None)
        await signal_sent(handle, "return", URBAN, reason="Not ours: police")
        await until(client, handle.id, lambda s: s.pending_return is not None)

    return before


def _returned_then_extension_asked(client: Client) -> Before:
    """签收, a 退单 awaiting the centre (3 s), then a 延期 request (its own window, 6 s, ending
    after the return's)."""

    async def before(handle: WorkflowHandle) -> None:
        await _accepted_and_returned(client)(handle)
        s = await until(client, handle.id, lambda s: s.deadlines is not None)
        assert s.deadlines is not None
        promised = (s.deadlines.finish + timedelta(days=1)).isoformat()
        await signal_sent(handle, "request_extension", URBAN, reasons="Needs the police first",
                          measures="Patrols asked", promised_finish=promised)  # fmt: skip
        s = await until(client, handle.id, lambda s: s.extension is not None)
        assert s.pending_return is not None and s.extension is not None
        assert s.pending_return.decision_due is not None and s.extension.decision_due is not None
        assert s.pending_return.decision_due < s.extension.decision_due

    return before


# --- the module's scenarios, run at once (helpers.Scenarios) --------------------------------


def _reassigned(s: CaseState) -> bool:
    return bool(kinds(s, EventKind.REASSIGNED))


def _dispatching(s: CaseState) -> bool:
    return s.status is Status.DISPATCHING


@pytest.fixture(scope="module")
async def outages(
    request: pytest.FixtureRequest, client: Client, pool: asyncpg.Pool, settings: Settings
) -> AsyncIterator[Scenarios]:
    """The scenarios of this module's tests on today's workflow, each on a task queue of its
    own, run at once: each test asserts on its own scenario's result. Each scenario is what its
    test did before (the same messages, windows and outages, in the same order)."""
    withdrawn = partial(_withdrawn_after_a_returns_window, client, pool)
    runs = {
        "test_a_withdrawal_after_a_returns_window_leaves_the_case_closed": partial(
            withdrawn, _returns_decided(settings), "withdrawafterlapse",
            "withdrawal_after_the_return_lapse", _reassigned,
        ),
        "test_worker_up_a_reply_and_a_withdrawal_after_the_returns_lapse": partial(
            _reply_and_withdrawal_after_the_returns_lapse, client, pool, settings
        ),
        "test_a_reply_after_a_returns_window_is_refused": partial(
            _reply_after_a_returns_window, client, pool, settings
        ),
        "test_worker_up_a_return_upheld_first_leaves_the_extension_undecided": partial(
            _return_upheld_first_worker_up, client, pool, settings
        ),
        "test_a_message_after_both_windows_takes_only_the_returns_lapse": partial(
            _message_after_both_windows, client, pool, settings
        ),
        "test_a_late_rejection_and_the_lapse_timer_in_one_task_record_one_lapse": partial(
            _rejected_late, client, pool, settings, "late_rejection_one_lapse"
        ),
        "test_a_return_at_the_bound_upheld_before_a_late_rejection_queues_without_a_breach": (
            partial(_return_at_the_bound_rejected_late, client, pool, settings)
        ),
        "test_a_raise_before_the_window_then_a_message_after_it_takes_no_extension_lapse": (
            partial(_raised_then_supplemented, client, pool, settings, "raise_then_supplement")
        ),
        "test_both_windows_ending_in_one_task_take_only_the_returns_lapse": partial(
            _both_windows_in_one_task, client, pool, settings
        ),
        "test_a_withdrawal_after_a_returns_window_at_the_bound_leaves_the_case_closed": partial(
            withdrawn, _returns_decided(settings, max_reassignments=0), "withdrawatbound",
            "withdrawal_after_the_return_lapse_at_the_bound", _dispatching,
        ),
        "test_an_extension_asked_after_a_returns_window_is_refused": partial(
            _extension_after_a_returns_window, client, pool, settings
        ),
        "test_a_return_and_a_withdrawal_in_one_task_leave_the_case_closed": partial(
            _return_and_withdrawal_in_one_task, client, pool, settings
        ),
    }
    async with scenarios_of(request, runs) as scenarios:
        yield scenarios


@pytest.fixture(scope="module")
async def outages_before_v18(
    request: pytest.FixtureRequest, client: Client, pool: asyncpg.Pool, settings: Settings,
    outages: Scenarios,
) -> AsyncIterator[Scenarios]:
    """The two lean-case-v17 cases (patches.EPOCHS cut after v17), run at once once the
    scenarios of today's workflow have ended (the epochs are those of every worker of this
    process); the epochs are restored before any other test runs."""
    await outages.settled()
    v17 = next(n for n, (e, _) in enumerate(patches_module.EPOCHS) if e == "lean-case-v17")
    runs = {
        "test_a_case_before_v18_stays_closed_after_a_withdrawal_past_the_window": partial(
            _withdrawn_after_a_returns_window, client, pool, _returns_decided(settings),
            "withdrawv17", "withdrawal_after_the_return_window_v17", _reassigned,
        ),
        "test_a_case_before_v18_takes_no_extension_lapse_after_a_raise": partial(
            _raised_then_supplemented, client, pool, settings, "raise_then_supplement_v17"
        ),
    }
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(patches_module, "EPOCHS", patches_module.EPOCHS[: v17 + 1])
        async with scenarios_of(request, runs) as before_v18:
            await before_v18.settled()
    yield before_v18


# --- (a) a withdrawal after a 退单's window -----------------------------------------------------


async def _withdrawn_after_a_returns_window(
    client: Client, pool: asyncpg.Pool, quick: Settings, name: str, history: str,
    done: Callable[[CaseState], bool],
) -> tuple[CaseState, WorkflowExecutionStatus]:
    """A 退单 awaits the centre; its window ends with the worker down and the citizen's 撤诉
    comes after. The case once ``done`` (or ended), and how its workflow ended."""
    handle, queue = await case_down_across(
        client, pool, quick, name, b"return decision deadline", _accepted_and_returned(client)
    )  # fmt: skip
    await signal_sent(handle, "withdraw", CITIZEN, reason="Sorted it myself")
    async with build_worker(client, pool, own_queue(quick, queue)):
        s = await case_settled(handle, done)
        ended = (await handle.describe()).status
        if ended is WorkflowExecutionStatus.RUNNING:
            await handle.terminate("test finished")
        await keep_history(handle, history)
    return s, ended


async def test_a_withdrawal_after_a_returns_window_leaves_the_case_closed(
    outages: Scenarios,
) -> None:
    """Worker up: the return is upheld by lapse at its window's end (return_decision_overdue,
    return_upheld) and the reassignment begins (or is done); the citizen's 撤诉, sent after,
    closes the case, and it stays closed (the reassignment sees the close and stops; the
    workflow completes). Worker down across the window, the 撤诉 applied in the timer's task:
    v18 takes the lapse inside the 撤诉, the case closes, and the main loop then reassigns the
    closed case — a new round assigns a unit a case the citizen withdrew."""
    s, ended = await outages.of("test_a_withdrawal_after_a_returns_window_leaves_the_case_closed")
    assert kinds(s, EventKind.RETURN_DECISION_OVERDUE), timeline_of(s)
    assert s.status is Status.CLOSED, timeline_of(s)
    assert ended is WorkflowExecutionStatus.COMPLETED, timeline_of(s)
    closed = next(n for n, e in enumerate(s.events) if e.kind is EventKind.CLOSED)
    after = [e.kind for e in s.events[closed + 1 :]]
    assert EventKind.REASSIGNED not in after and EventKind.ROUTED not in after, timeline_of(s)
    # lean-case-v22: the 撤诉 waits for the reassignment the lapse decided, as with the worker
    # up (v18–v21 closed the case first: no reassignment_started on the record)
    order = [e.kind for e in s.events]
    assert EventKind.REASSIGNMENT_STARTED in order, timeline_of(s)
    assert order.index(EventKind.REASSIGNMENT_STARTED) < order.index(EventKind.WITHDRAWN)


async def _reply_and_withdrawal_after_the_returns_lapse(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    quick = settings.model_copy(
        update={"return_needs_approval": True, "return_decision_hours": DECISION_HOURS}
    )
    case_id, queue = own_case("returnlapseup")
    async with build_worker(client, pool, own_queue(quick, queue)):
        handle = await started_assigned(client, case_id, queue)
        await _accepted_and_returned(client, contact=True)(handle)
        await until(client, case_id, lambda s: s.status is Status.REASSIGNING, within=30)
        await signal_sent(handle, "reply", URBAN, outcome="resolved", text="Done after all")
        finish = (datetime.now(UTC) + timedelta(days=30)).isoformat()
        await signal_sent(handle, "request_extension", URBAN, reasons="After all",
                          measures="None", promised_finish=finish)  # fmt: skip
        await signal_sent(handle, "withdraw", CITIZEN, reason="Sorted it myself")
        s = await until(client, case_id, lambda s: s.status is Status.CLOSED)
        await ended(handle)  # closed: it may have ended already
    return s


async def test_worker_up_a_reply_and_a_withdrawal_after_the_returns_lapse(
    outages: Scenarios,
) -> None:
    """The worker-up order of the withdrawal, reply and 延期 xfails (a guard, no outage): the
    return's window ends, it is upheld by lapse and the case is reassigning (the dispatcher's
    window is left at its 30 min, so it stays so); the returning unit's reply and 延期 are
    refused (wrong_status), and the citizen's 撤诉 closes the case, which stays closed."""
    s = await outages.of("test_worker_up_a_reply_and_a_withdrawal_after_the_returns_lapse")
    refused = refusals(s)
    assert refused == {"reply": "wrong_status", "request_extension": "wrong_status"}, refused
    assert not kinds(s, EventKind.REPLIED) and not kinds(s, EventKind.EXTENSION_REQUESTED)
    closed = next(n for n, e in enumerate(s.events) if e.kind is EventKind.CLOSED)
    assert s.events[closed - 1].kind is EventKind.WITHDRAWN, timeline_of(s)
    assert closed == len(s.events) - 1, timeline_of(s)


# --- (a) the returning unit's reply after its 退单's window ----------------------------------


async def _reply_after_a_returns_window(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    quick = _returns_decided(settings)
    handle, queue = await case_down_across(
        client, pool, quick, "replyafterreturnlapse", b"return decision deadline",
        _accepted_and_returned(client, True),
    )  # fmt: skip
    await signal_sent(handle, "reply", URBAN, outcome="resolved", text="Done after all")
    async with build_worker(client, pool, own_queue(quick, queue)):
        s = await case_settled(handle, lambda s: bool(kinds(s, EventKind.REASSIGNED))
                               or s.status is Status.DISPATCHING)  # fmt: skip
        await handle.terminate("test finished")
        await keep_history(handle, "reply_after_the_return_lapse")
    return s


async def test_a_reply_after_a_returns_window_is_refused(outages: Scenarios) -> None:
    """The unit returned the case in time (the centre decides), then — the centre silent past
    its window — replies to it after all. Worker up: upheld by lapse at the window's end, the
    case is reassigning (or in its new round) when the reply comes: refused (wrong_status, or
    not the assigned unit), no ``replied``. Worker down, v18: the lapse is taken inside the
    reply, the reply then passes (status handling, nothing pending) and is recorded — a
    ``replied`` of the unit whose 退单 was just upheld, wiped by the reassignment after it."""
    s = await outages.of("test_a_reply_after_a_returns_window_is_refused")
    assert kinds(s, EventKind.RETURN_UPHELD), timeline_of(s)
    assert not kinds(s, EventKind.REPLIED), timeline_of(s)
    refused = [e.data["code"] for e in s.events
               if e.kind is EventKind.REJECTED and e.data.get("action") == "reply"]  # fmt: skip
    assert refused, timeline_of(s)


# --- (a) a 退单 and a 延期 both pending -------------------------------------------------------


async def _return_upheld_first_worker_up(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    quick = _returns_decided(settings, extension_decision_hours=2 * DECISION_HOURS)
    case_id, queue = own_case("bothpendingup")
    async with build_worker(client, pool, own_queue(quick, queue)):
        handle = await started_assigned(client, case_id, queue)
        await _returned_then_extension_asked(client)(handle)
        # the new round clears the extension: its watch ends there, before its window does
        s = await until(client, case_id, lambda s: s.round > 1, within=60)
        assert s.extension is None
        await handle.terminate("test finished")
    return s


async def test_worker_up_a_return_upheld_first_leaves_the_extension_undecided(
    outages: Scenarios,
) -> None:
    """The worker-up order of the next test (a guard, no outage): the return's window ends
    first, it is upheld by lapse and the case reassigned; the extension's window then ends
    with the unit no longer holding the case (its watch ends at the reassignment): no
    extension_decision_overdue, no extension approved for the unit that returned the case."""
    s = await outages.of("test_worker_up_a_return_upheld_first_leaves_the_extension_undecided")
    assert kinds(s, EventKind.RETURN_DECISION_OVERDUE), timeline_of(s)
    assert not kinds(s, EventKind.EXTENSION_DECISION_OVERDUE), timeline_of(s)
    assert not kinds(s, EventKind.EXTENSION_DECIDED), timeline_of(s)


async def _message_after_both_windows(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    quick = _returns_decided(settings, extension_decision_hours=2 * DECISION_HOURS)
    handle, queue = await case_down_across(
        client, pool, quick, "bothpending", b"extension decision deadline",
        _returned_then_extension_asked(client), inside=(b"return decision deadline",),
    )  # fmt: skip
    await signal_sent(handle, "supplement", CITIZEN, text="It is louder at night")
    async with build_worker(client, pool, own_queue(quick, queue)):
        s = await until(client, handle.id, lambda s: s.round > 1, within=60)
        await handle.terminate("test finished")
        await keep_history(handle, "both_lapses_before_a_supplement")
    return s


async def test_a_message_after_both_windows_takes_only_the_returns_lapse(
    outages: Scenarios,
) -> None:
    """A 退单 and a 延期 both await the centre, the return's window ending first; both end
    with the worker down, and the citizen's 补充诉求 comes after. Worker up (the guard above):
    the return is upheld by lapse and the case reassigned; the extension is never approved
    (no extension_decision_overdue against the centre, no extension_decided). v18: both
    lapses are taken inside the supplement, in due order — the return's only asks for its
    reassignment, so the extension is still 'owed' and approved by lapse for the unit whose
    return was just upheld: the centre charged a lapse it never owed."""
    s = await outages.of("test_a_message_after_both_windows_takes_only_the_returns_lapse")
    assert kinds(s, EventKind.RETURN_DECISION_OVERDUE), timeline_of(s)
    assert not kinds(s, EventKind.EXTENSION_DECISION_OVERDUE), timeline_of(s)
    assert not kinds(s, EventKind.EXTENSION_DECIDED), timeline_of(s)


# --- (c) the watcher and the early lapse: one lapse each -------------------------------------


async def test_a_late_rejection_and_the_lapse_timer_in_one_task_record_one_lapse(
    outages: Scenarios,
) -> None:
    """Guard (held): the late decision takes the lapse early; the window's timer fires in
    the same task, and its watch must not take it again. Worker up: one
    extension_decision_overdue, one extension_decided (approved), the finish deadline moved
    once (extension_count 1), the rejection refused."""
    s = await outages.of("test_a_late_rejection_and_the_lapse_timer_in_one_task_record_one_lapse")
    assert event_count(s, EventKind.EXTENSION_DECISION_OVERDUE) == 1, timeline_of(s)
    assert event_count(s, EventKind.EXTENSION_DECIDED) == 1, timeline_of(s)
    assert s.extension_count == 1, s.extension_count


async def test_under_single_batch_activations_the_lapse_is_taken_once(
    client: Client, pool: asyncpg.Pool, settings: Settings, monkeypatch: pytest.MonkeyPatch,
    outages: Scenarios, outages_before_v18: Scenarios,
) -> None:
    """The guard above, with the SDK's PROCESS_WORKFLOW_ACTIVATION_JOBS_AS_SINGLE_BATCH on (the
    SDK says it will enable it by default; a worker with it turns it on for a running case's
    next new task too). Worker up: one extension_decision_overdue, extension_count 1. With it,
    v18's early lapse and the watch's both record: two overdues, the finish moved twice in the
    count. (The 退单's variant records return_decision_overdue twice and its second uphold
    fails an assertion inside the watch — to surface when the case closes and gathers it.)"""
    await outages.settled()  # the flag is the SDK's, for every worker this process starts
    await outages_before_v18.settled()
    monkeypatch.setattr(
        sdk_workflow,
        "_DEFAULT_ENABLED_WORKFLOW_LOGIC_FLAGS",
        frozenset({_WorkflowLogicFlag.PROCESS_WORKFLOW_ACTIVATION_JOBS_AS_SINGLE_BATCH}),
    )
    s = await _rejected_late(client, pool, settings, "late_rejection_single_batch")
    assert event_count(s, EventKind.EXTENSION_DECISION_OVERDUE) == 1, timeline_of(s)
    assert s.extension_count == 1, s.extension_count


# --- (a) a 退单 upheld by the lapse at the reassignment bound --------------------------------


async def _return_at_the_bound_rejected_late(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    quick = _returns_decided(settings, max_reassignments=0)

    async def returned(handle: WorkflowHandle) -> None:
        await signal_sent(handle, "accept", URBAN)
        await until(client, handle.id, lambda s: s.status is Status.HANDLING)
        await signal_sent(handle, "return", URBAN, reason="Not ours: police")
        s = await until(client, handle.id, lambda s: s.pending_return is not None)
        assert s.deadlines is not None and s.pending_return is not None
        assert s.pending_return.decision_due is not None
        in_time(handle, s.pending_return.decision_due < s.deadlines.contact,
                "the return's window ends after the contact deadline")  # fmt: skip

    handle, queue = await _across_an_outage(
        client, pool, quick, "boundrejectedlate", URGENT_CONTACT, returned,
        nothing, b"contact deadline", inside=(b"return decision deadline",),
    )  # fmt: skip
    await signal_sent(handle, "decide_return", SUPERVISOR, upheld=False, note="It is yours")
    async with build_worker(client, pool, own_queue(quick, queue)):
        s = await until(client, handle.id, lambda s: s.status is Status.DISPATCHING
                        and bool(kinds(s, EventKind.REJECTED)), within=60)  # fmt: skip
        await handle.terminate("test finished")
        await keep_history(handle, "bound_return_upheld_before_a_late_rejection")
    return s


async def test_a_return_at_the_bound_upheld_before_a_late_rejection_queues_without_a_breach(
    outages: Scenarios,
) -> None:
    """Guard (held): max_reassignments 0, so an upheld 退单 sends the case to the centre's queue
    (_breached_before_queued). The centre's window (3 s) ends before the contact deadline,
    both with the worker down, and the centre rejects the return after both. Worker up:
    upheld by lapse at the window's end and queued, the contact deadline then not the unit's:
    one return_decision_overdue, queued, no 联系 breach, the rejection refused
    (no_return_pending)."""
    s = await outages.of(
        "test_a_return_at_the_bound_upheld_before_a_late_rejection_queues_without_a_breach"
    )
    assert event_count(s, EventKind.RETURN_DECISION_OVERDUE) == 1, timeline_of(s)
    assert kinds(s, EventKind.QUEUED) and not kinds(s, EventKind.RETURN_REJECTED), timeline_of(s)
    assert DeadlineKind.CONTACT not in [b.kind for b in s.breaches], timeline_of(s)
    refused = [e.data["code"] for e in s.events if e.kind is EventKind.REJECTED]
    assert refused == ["no_return_pending"], timeline_of(s)


# --- a withdrawal after a 退单's window: the case before v18 -------------------------------


async def test_a_case_before_v18_stays_closed_after_a_withdrawal_past_the_window(
    outages_before_v18: Scenarios,
) -> None:
    """Guard: the withdrawn case reopened by v18 (the xfail above) is a regression — a
    lean-case-v17 case given the same messages stays closed (the 撤诉 applied first; its
    lapse is never recorded, v18's finding, but the citizen's close holds)."""
    s, ended = await outages_before_v18.of(
        "test_a_case_before_v18_stays_closed_after_a_withdrawal_past_the_window"
    )
    assert s.status is Status.CLOSED and ended is WorkflowExecutionStatus.COMPLETED, timeline_of(s)
    assert not kinds(s, EventKind.REASSIGNMENT_STARTED), timeline_of(s)


# --- (a) a reassignment applied in the same task, then a message after the window ----------


async def _raised_then_supplemented(
    client: Client, pool: asyncpg.Pool, settings: Settings, name: str
) -> tuple[CaseState, datetime]:
    """A 延期 awaits the centre (window 6 s); with the worker down the unit asks 提级办 before
    the window ends and the citizen adds a 补充诉求 after it: both reach the worker in one task
    with the window's timer. Returns the case once reassigned, and the window's end."""
    quick = settings.model_copy(update={
        "extension_decision_hours": 2 * DECISION_HOURS, "dispatcher_window_minutes": 0.01,
    })  # fmt: skip
    due: list[datetime] = []

    async def asked(handle: WorkflowHandle) -> None:
        await signal_sent(handle, "accept", URBAN)
        s = await until(client, handle.id, lambda s: s.status is Status.HANDLING)
        assert s.deadlines is not None
        promised = (s.deadlines.finish + timedelta(days=1)).isoformat()
        await signal_sent(handle, "request_extension", URBAN, reasons="Needs a permit",
                          measures="Noise meter installed", promised_finish=promised)  # fmt: skip
        s = await until(client, handle.id, lambda s: s.extension is not None)
        assert s.extension is not None and s.extension.decision_due is not None
        due[:] = [s.extension.decision_due]

    async def raised(handle: WorkflowHandle) -> None:
        in_time(handle, datetime.now(UTC) < due[0], "the setup overran the extension's window")
        await signal_sent(handle, "raise_level", URBAN, reason="Needs the district")

    handle, queue = await case_down_across(
        client, pool, quick, name.replace("_", ""), b"extension decision deadline", asked, raised
    )  # fmt: skip
    await signal_sent(handle, "supplement", CITIZEN, text="It is louder at night")
    async with build_worker(client, pool, own_queue(quick, queue)):
        s = await until(client, handle.id, lambda s: s.round > 1, within=60)
        await handle.terminate("test finished")
        await keep_history(handle, name)
    raise_at = next(e.at for e in s.events if e.kind is EventKind.LEVEL_RAISE_REQUESTED)
    assert raise_at < due[0], timeline_of(s)
    return s, due[0]


async def test_a_raise_before_the_window_then_a_message_after_it_takes_no_extension_lapse(
    outages: Scenarios,
) -> None:
    """Worker up: the 提级办 (sent before the window's end) applies at once (reassigning), the
    extension's watch ends there, the window's end records nothing: no
    extension_decision_overdue against the centre, no extension approved for a unit that gave
    the case up. v18: the raise only asks for its reassignment; the supplement's
    _lapses_before finds the extension 'owed' (status still handling) and approves it by lapse
    at the window's end. A regression: the v17 case (next test) records nothing."""
    s, _ = await outages.of(
        "test_a_raise_before_the_window_then_a_message_after_it_takes_no_extension_lapse"
    )
    assert not kinds(s, EventKind.EXTENSION_DECISION_OVERDUE), timeline_of(s)
    assert not kinds(s, EventKind.EXTENSION_DECIDED), timeline_of(s)


async def test_a_case_before_v18_takes_no_extension_lapse_after_a_raise(
    outages_before_v18: Scenarios,
) -> None:
    """Guard: the same messages on a lean-case-v17 case record no lapse (the raise's
    reassignment begins before the window's timer is judged), as with the worker up."""
    s, _ = await outages_before_v18.of(
        "test_a_case_before_v18_takes_no_extension_lapse_after_a_raise"
    )
    assert not kinds(s, EventKind.EXTENSION_DECISION_OVERDUE), timeline_of(s)
    assert not kinds(s, EventKind.EXTENSION_DECIDED), timeline_of(s)


# --- both windows' timers in one task, no message (not v18's code: the principle) ---------


async def _both_windows_in_one_task(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    quick = _returns_decided(settings, extension_decision_hours=2 * DECISION_HOURS)
    handle, queue = await case_down_across(
        client, pool, quick, "bothtimers", b"extension decision deadline",
        _returned_then_extension_asked(client), inside=(b"return decision deadline",),
    )  # fmt: skip
    async with build_worker(client, pool, own_queue(quick, queue)):
        s = await until(client, handle.id, lambda s: s.round > 1, within=60)
        await handle.terminate("test finished")
        await keep_history(handle, "both_windows_in_one_task")
    return s


async def test_both_windows_ending_in_one_task_take_only_the_returns_lapse(
    outages: Scenarios,
) -> None:
    """The 退单 and 延期 of the both-pending test, with no message after: the two windows'
    timers reach the worker in one task. Worker up (the guard above): only the return's lapse.
    The return's watch only asks for the reassignment; if the extension's watch then judges
    before the main loop has carried it out, the extension is approved by lapse too."""
    s = await outages.of("test_both_windows_ending_in_one_task_take_only_the_returns_lapse")
    assert kinds(s, EventKind.RETURN_DECISION_OVERDUE), timeline_of(s)
    assert not kinds(s, EventKind.EXTENSION_DECISION_OVERDUE), timeline_of(s)


async def test_a_withdrawal_after_a_returns_window_at_the_bound_leaves_the_case_closed(
    outages: Scenarios,
) -> None:
    """As the first test, with max_reassignments 0: the upheld return sends the case to the
    centre's queue (_breached_before_queued, _to_centre_queue). Worker up: upheld by lapse
    and queued at the window's end; the 撤诉 after closes the queued case, which stays closed
    (the workflow completes). v18: the 撤诉 closes the case first, then the main loop queues
    the closed case for a dispatcher (status dispatching, a ``queued`` after ``closed``)."""
    s, ended = await outages.of(
        "test_a_withdrawal_after_a_returns_window_at_the_bound_leaves_the_case_closed"
    )
    assert kinds(s, EventKind.RETURN_DECISION_OVERDUE), timeline_of(s)
    assert s.status is Status.CLOSED and ended is WorkflowExecutionStatus.COMPLETED, timeline_of(s)
    closed = next(n for n, e in enumerate(s.events) if e.kind is EventKind.CLOSED)
    assert EventKind.QUEUED not in [e.kind for e in s.events[closed + 1 :]], timeline_of(s)


async def _extension_after_a_returns_window(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    quick = _returns_decided(settings)
    handle, queue = await case_down_across(
        client, pool, quick, "extendafterreturnlapse", b"return decision deadline",
        _accepted_and_returned(client),
    )  # fmt: skip
    finish = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    await signal_sent(handle, "request_extension", URBAN, reasons="We will do it after all",
                      measures="None", promised_finish=finish)  # fmt: skip
    async with build_worker(client, pool, own_queue(quick, queue)):
        s = await until(client, handle.id, lambda s: s.round > 1, within=60)
        await handle.terminate("test finished")
        await keep_history(handle, "extension_after_the_return_lapse")
    return s


async def test_an_extension_asked_after_a_returns_window_is_refused(outages: Scenarios) -> None:
    """The unit returned the case in time; after the centre's window it asks a 延期 instead.
    Worker up: upheld by lapse at the window's end, the case reassigning (or in its new round)
    when the request comes: refused (wrong_status, or not the assigned unit). v18: the lapse
    is taken inside the request, which then passes and is recorded (extension_requested, its
    decision timer started) for a unit whose 退单 was just upheld."""
    s = await outages.of("test_an_extension_asked_after_a_returns_window_is_refused")
    assert kinds(s, EventKind.RETURN_UPHELD), timeline_of(s)
    assert not kinds(s, EventKind.EXTENSION_REQUESTED), timeline_of(s)


async def _return_and_withdrawal_in_one_task(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> tuple[CaseState, WorkflowExecutionStatus]:
    quick = settings.model_copy(update={"dispatcher_window_minutes": 0.01})
    case_id, queue = own_case("returnwithdraw")
    async with build_worker(client, pool, own_queue(quick, queue)):
        handle = await started_assigned(client, case_id, queue)
        await signal_sent(handle, "accept", URBAN)
        await until(client, case_id, lambda s: s.status is Status.HANDLING)
    await signal_sent(handle, "return", URBAN, reason="Not ours: police")  # the worker is gone
    await signal_sent(handle, "withdraw", CITIZEN, reason="Sorted it myself")
    async with build_worker(client, pool, own_queue(quick, queue)):
        s = await case_settled(handle, lambda s: bool(kinds(s, EventKind.REASSIGNED)))
        ended = (await handle.describe()).status
        if ended is WorkflowExecutionStatus.RUNNING:
            await handle.terminate("test finished")
        await keep_history(handle, "return_and_withdrawal_in_one_task")
    return s, ended


async def test_a_return_and_a_withdrawal_in_one_task_leave_the_case_closed(
    outages: Scenarios,
) -> None:
    """No lapse, no approval: the unit's 退单 and then the citizen's 撤诉 reach the worker in
    one task (both sent while it is down). Worker up: the 退单 applies and the case is
    reassigning; the 撤诉 closes it, and it stays closed. In one task: the 退单 only asks for
    its reassignment, the 撤诉 closes the case, the main loop reassigns the closed case. The
    root of v18's withdrawal finding: any message applied between a reassignment asked and
    the main loop carrying it out is judged against a unit still holding the case."""
    s, ended = await outages.of("test_a_return_and_a_withdrawal_in_one_task_leave_the_case_closed")
    assert s.status is Status.CLOSED and ended is WorkflowExecutionStatus.COMPLETED, timeline_of(s)
    closed = next(n for n, e in enumerate(s.events) if e.kind is EventKind.CLOSED)
    assert EventKind.REASSIGNED not in [e.kind for e in s.events[closed + 1 :]], timeline_of(s)
