"""Red team of lean-case-v19 (promise-watched-v1) and lean-case-v20 (closed-case-not-reassigned-v1,
judged-as-reassigning-v1, lapse-rechecked-v1). Its seven defects (strict xfails on v20) are
fixed by lean-case-v21 (messages-after-decisions-v1: the messages of a task that decided a
reassignment or a verdict wait until the main loop has begun it); each of those tests failed on
v20's workflow and passes now. What follows is the red team's account of v20.

v20 judges a message applied after a decided reassignment (``_reassign_next``: a 退单, 提级办,
二次交办 the main loop has not begun) against the case's *status* as the reassignment will leave
it (``_judged_state``). But beginning a reassignment changes more than the status: at the
reassignment bound the case is queued at the centre (a new round, the centre holding it), its
co-handlers are released and the ladder starts (``reassignment_limit``); below it the
reassignment's start is recorded (``reassignment_started``). A message in the deciding task is
judged against a copy with only the status changed, and then applied to the real case, which
still has none of that. And a 撤诉 in that task now closes the case before the main loop gets
to the reassignment, which it then skips wholesale (``_reassign`` returns before recording
anything), where with the worker up the reassignment's start (or the queueing and its ladder)
was recorded before the withdrawal. And ``_judged_state`` judges as reassigning only a case its
unit holds (assigned, handling): a 二次交办 of a *replied* case leaves the message after it in
that task judged against ``replied`` — a 撤诉 the worker-up case takes (it is reassigning,
before the reply) is refused, and the withdrawn case goes to a new unit.

Each test sends a 退单 and a second message while the worker is down (one workflow task, the
SDK applies both signals before the main loop runs), then compares what the case records with
what the worker-up order records (each docstring says it). Defects were strict xfails.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from helpers import (
    Scenarios,
    case_settled,
    ended_and_replayed,
    outage_scenarios,
    own_case,
    own_queue,
    refusals,
    signal_sent,
    started_assigned,
    state_of,
    timeline_of,
    until_past,
    urgent_start,
)
from temporalio.client import Client, WorkflowHandle
from test_actions_timed_when_sent_attacks import CITIZEN, URGENT_FINISH
from test_hostile_messages import SUPERVISOR, URBAN, WATER, kinds, until
from test_promised_date_watched import _approved_after_the_breach, _finish_breaches

from jiesu.case.domain import CaseState, EscalationTrigger, EventKind, Status
from jiesu.config import Settings
from worker import build_worker

Step = Callable[[WorkflowHandle], Awaitable[None]]
WATER_REF = {"id": "water", "name": "县水务局"}


async def _nothing_more(_: WorkflowHandle) -> None:
    return None


async def _returned_in_one_task_with(
    client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
    name: str,
    message: Step,
    done: Callable[[CaseState], bool],
    before: Step = _nothing_more,
) -> CaseState:
    """A general case accepted by its unit (then ``before``) with the worker up; with the
    worker down, the unit's 退单 (no approval needed) and then ``message``; the worker comes
    back and applies both in one task. The case once ``done`` (or its workflow ended)."""
    quick = settings.model_copy(update={"dispatcher_window_minutes": 0.01})
    case_id, queue = own_case(name)
    async with build_worker(client, pool, own_queue(quick, queue)):
        handle = await started_assigned(client, case_id, queue)
        await signal_sent(handle, "accept", URBAN)
        await until(client, case_id, lambda s: s.status is Status.HANDLING)
        await before(handle)
    await signal_sent(handle, "return", URBAN, reason="Not ours: police")  # the worker is gone
    await message(handle)
    async with build_worker(client, pool, own_queue(quick, queue)):
        s = await case_settled(handle, done)
        await ended_and_replayed(handle)
    return s


def _at_the_bound(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_reassignments": 0})


def _before_close(s: CaseState) -> list[EventKind]:
    closed = next(n for n, e in enumerate(s.events) if e.kind is EventKind.CLOSED)
    return [e.kind for e in s.events[:closed]]


# --- judged-as-reassigning-v1: only the status is judged -----------------------------------


async def _a_return_at_the_bound_and_a_supervision_order_in_one_task(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:

    async def supervise(handle: WorkflowHandle) -> None:
        await signal_sent(handle, "supervise", SUPERVISOR, form="supervise", note="Dispatch it")

    s = await _returned_in_one_task_with(
        client, pool, _at_the_bound(settings), "boundsupervise", supervise,
        lambda s: s.status is Status.DISPATCHING and s.escalation is not None,
    )  # fmt: skip
    assert s.status is Status.DISPATCHING, timeline_of(s)
    assert refusals(s) == {"supervise": "already_supervised"}, timeline_of(s)
    assert s.escalation is not None, timeline_of(s)
    assert s.escalation.trigger is EscalationTrigger.REASSIGNMENT_LIMIT, timeline_of(s)


async def test_a_return_at_the_bound_and_a_supervision_order_in_one_task(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """max_reassignments 0: the unit's 退单 queues the case at the centre, and the queue puts
    it on the ladder (reassignment_limit). Worker up: the 退单 applies, the main loop queues the
    case and starts that ladder in the same task; a supervisor's 督办 after it is refused
    (already_supervised), and the ladder stays reassignment_limit's. Both in one task (v20):
    the 督办 is judged against a copy of the case with status dispatching but no ladder yet —
    taken (escalation_started by the supervisor, counted against MAX_SUPERVISION_ORDERS, the
    ladder's department the returning unit); the queue's ladder then never starts."""
    await outages.of(request)


async def _a_return_at_the_bound_and_a_waiver_in_one_task(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:

    async def convened(handle: WorkflowHandle) -> None:
        await signal_sent(handle, "add_co_handlers", SUPERVISOR, departments=[WATER_REF])
        await until(client, handle.id, lambda s: bool(s.co_handlers))

    async def waive(handle: WorkflowHandle) -> None:
        await signal_sent(handle, "waive_co_handler", SUPERVISOR, department_id="water")

    s = await _returned_in_one_task_with(
        client, pool, _at_the_bound(settings), "boundwaive", waive,
        lambda s: s.status is Status.DISPATCHING and s.escalation is not None, before=convened,
    )  # fmt: skip
    assert s.status is Status.DISPATCHING, timeline_of(s)
    assert refusals(s) == {"waive_co_handler": "no_pending_co_handler"}, timeline_of(s)
    waivers = [e for e in s.events if e.kind is EventKind.CO_HANDLER_WAIVED]
    assert [(e.actor.role.value, e.data.get("reason")) for e in waivers] == [
        ("system", "round_ended")
    ], timeline_of(s)


async def test_a_return_at_the_bound_and_a_waiver_in_one_task(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """max_reassignments 0, a co-handler (water) convened and owing its contribution. Worker
    up: the 退单 queues the case, and the queue releases the co-handler (co_handler_waived by
    the system, reason round_ended); a supervisor's 免除协办 of water after it is refused
    (no_pending_co_handler). Both in one task (v20): the waiver is judged with status
    dispatching but water still owing — taken, recorded as the supervisor's release."""
    await outages.of(request)


async def _a_return_at_the_bound_and_a_contribution_in_one_task(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:

    async def convened(handle: WorkflowHandle) -> None:
        await signal_sent(handle, "add_co_handlers", SUPERVISOR, departments=[WATER_REF])
        await until(client, handle.id, lambda s: bool(s.co_handlers))

    async def contribute(handle: WorkflowHandle) -> None:
        await signal_sent(handle, "contribute", WATER, text="Pipe checked")

    s = await _returned_in_one_task_with(
        client, pool, _at_the_bound(settings), "boundcontribute", contribute,
        lambda s: s.status is Status.DISPATCHING and bool(refusals(s)), before=convened,
    )  # fmt: skip
    assert refusals(s) == {"contribute": "co_handler_released"}, timeline_of(s)


async def test_a_return_at_the_bound_and_a_contribution_in_one_task(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """As the waiver: worker up, the queue has released water when its 协办 contribution comes,
    refused co_handler_released (it owes nothing). Both in one task (v20): judged with status
    dispatching, water not released: refused wrong_status — a refusal still, with the wrong
    reason recorded and answered to the co-handler."""
    await outages.of(request)


# --- closed-case-not-reassigned-v1: the reassignment begun is not recorded -------------------


async def _a_return_and_a_withdrawal_in_one_task_record_the_reassignment_begun(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:

    async def withdraw(handle: WorkflowHandle) -> None:
        await signal_sent(handle, "withdraw", CITIZEN, reason="Sorted it myself")

    s = await _returned_in_one_task_with(
        client, pool, settings, "returnwithdrawn", withdraw, lambda s: s.status is Status.CLOSED
    )
    assert s.status is Status.CLOSED, timeline_of(s)
    before = _before_close(s)
    assert EventKind.REASSIGNMENT_STARTED in before, timeline_of(s)
    assert before.index(EventKind.REASSIGNMENT_STARTED) < before.index(EventKind.WITHDRAWN)


async def test_a_return_and_a_withdrawal_in_one_task_record_the_reassignment_begun(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Worker up: the 退单 applies and the main loop begins its reassignment in that task
    (reassignment_started, status reassigning, reassignments 1); the 撤诉 after it closes the
    case (tests/test_v18_attacks.py's worker-up guard shows it reassigning, then closed).
    Both in one task (v20): the 撤诉 closes the case first, ``_reassign`` sees it closed and
    returns at once — the case stays closed, as it should, but its record lacks the
    reassignment the 退单 began: returned, withdrawn, closed."""
    await outages.of(request)


async def _a_return_at_the_bound_and_a_withdrawal_in_one_task_record_the_queue(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:

    async def withdraw(handle: WorkflowHandle) -> None:
        await signal_sent(handle, "withdraw", CITIZEN, reason="Sorted it myself")

    s = await _returned_in_one_task_with(
        client, pool, _at_the_bound(settings), "boundwithdrawn", withdraw,
        lambda s: s.status is Status.CLOSED,
    )  # fmt: skip
    assert s.status is Status.CLOSED, timeline_of(s)
    before = _before_close(s)
    assert EventKind.QUEUED in before, timeline_of(s)
    triggers = [e.data.get("trigger") for e in s.events if e.kind is EventKind.ESCALATION_STARTED]
    assert triggers == ["reassignment_limit"], timeline_of(s)


async def test_a_return_at_the_bound_and_a_withdrawal_in_one_task_record_the_queue(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """max_reassignments 0. Worker up: the 退单 queues the case at the centre in its task
    (queued, escalation_started reassignment_limit: the unit returned too often); the 撤诉
    then closes the queued case. Both in one task (v20): closed first, and ``_reassign``
    returns before ``_to_centre_queue``: no queued, no reassignment_limit ladder recorded."""
    await outages.of(request)


# --- promise-watched-v1: the promised date already past at the late approval -------------------


async def _a_late_approval_past_the_promise_in_an_outage_records_both_breaches(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    case_id, queue = own_case("latepromise")
    start = urgent_start(case_id, URGENT_FINISH, timedelta(seconds=5))
    async with build_worker(client, pool, own_queue(settings, queue)):
        handle = await started_assigned(client, case_id, queue, start)
        s = await state_of(client, case_id)
        assert s.deadlines is not None
        finish = s.deadlines.finish
        for step in ("accept", "contact"):
            await signal_sent(handle, step, URBAN)
        await until(client, case_id, lambda s: s.contacted_at is not None)
        promised = finish + timedelta(seconds=2)
        await signal_sent(handle, "request_extension", URBAN, reasons="Main pipe",
                          measures="Tanker", promised_finish=promised.isoformat())  # fmt: skip
        s = await until(client, case_id, lambda s: s.extension is not None)
    assert datetime.now(UTC) < finish, "the setup overran the finish deadline"
    await until_past(promised + timedelta(seconds=1))
    await signal_sent(handle, "decide_extension", SUPERVISOR, approved=True)
    async with build_worker(client, pool, own_queue(settings, queue)):
        s = await case_settled(handle, lambda s: len(_finish_breaches(s)) >= 2, within=20)
        await handle.terminate("test finished")
    assert s.extension_count == 1, timeline_of(s)
    assert _finish_breaches(s) == [finish, promised], timeline_of(s)
    recorded = [e.data["deadline"] for e in s.events if e.kind is EventKind.DEADLINE_BREACHED
                and e.data["deadline_kind"] == "finish"]  # fmt: skip
    assert recorded == [finish.isoformat(), promised.isoformat()], timeline_of(s)


async def test_a_late_approval_past_the_promise_in_an_outage_records_both_breaches(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard (held). 延期 asked in time for a date 2 s past the finish deadline; the worker goes
    down, both dates pass, and the centre approves after the promised date. Worker up: the
    finish deadline's breach at its time; the approval moves the deadline to a date already
    past, and the promise's new watch records its breach at once: two breaches, the deadline
    and the promise. Worker down: the approval and the deadline's timer in one task —
    ``_breached_before_moved`` records the deadline, the new watch the promise; once each."""
    await outages.of(request)


async def _worker_up_the_order_the_bound_attacks_compare_with(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    quick = _at_the_bound(settings).model_copy(update={"dispatcher_window_minutes": 0.01})
    case_id, queue = own_case("boundup")
    async with build_worker(client, pool, own_queue(quick, queue)):
        handle = await started_assigned(client, case_id, queue)
        await signal_sent(handle, "accept", URBAN)
        await signal_sent(handle, "add_co_handlers", SUPERVISOR, departments=[WATER_REF])
        await until(client, case_id, lambda s: bool(s.co_handlers))
        await signal_sent(handle, "return", URBAN, reason="Not ours: police")
        await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
        await signal_sent(handle, "supervise", SUPERVISOR, form="supervise", note="Dispatch it")
        await signal_sent(handle, "waive_co_handler", SUPERVISOR, department_id="water")
        await signal_sent(handle, "contribute", WATER, text="Pipe checked")
        await signal_sent(handle, "withdraw", CITIZEN, reason="Sorted it myself")
        s = await until(client, case_id, lambda s: s.status is Status.CLOSED)
        await ended_and_replayed(handle)
    assert refusals(s) == {
        "supervise": "already_supervised",
        "waive_co_handler": "no_pending_co_handler",
        "contribute": "co_handler_released",
    }, timeline_of(s)
    before = _before_close(s)
    assert before.index(EventKind.QUEUED) < before.index(EventKind.WITHDRAWN), timeline_of(s)
    triggers = [e.data.get("trigger") for e in s.events if e.kind is EventKind.ESCALATION_STARTED]
    assert triggers == ["reassignment_limit"], timeline_of(s)
    waivers = [e for e in s.events if e.kind is EventKind.CO_HANDLER_WAIVED]
    assert [(e.actor.role.value, e.data.get("reason")) for e in waivers] == [
        ("system", "round_ended")
    ], timeline_of(s)


async def test_worker_up_the_order_the_bound_attacks_compare_with(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard, no outage: what the worker-up order records for the attacks at the bound above.
    The 退单 queues the case (queued, the reassignment_limit ladder, water released by the
    system); then the 督办 is refused already_supervised, the 免除协办 no_pending_co_handler,
    water's contribution co_handler_released; the 撤诉 closes the queued case."""
    await outages.of(request)


# --- judged-as-reassigning-v1 judges only a unit's case: a 二次交办 of a replied case -------------


async def _replied(client: Client, handle: WorkflowHandle) -> None:
    for step in ("accept", "contact"):
        await signal_sent(handle, step, URBAN)
    await until(client, handle.id, lambda s: s.contacted_at is not None)
    await signal_sent(handle, "reply", URBAN, outcome="resolved", text="Turned down")
    await until(client, handle.id, lambda s: s.status is Status.REPLIED)


async def _second_assignment(handle: WorkflowHandle) -> None:
    await signal_sent(handle, "order_second_assignment", SUPERVISOR, reason="Reply not credible",
                      department_id="water", department_name="县水务局")  # fmt: skip


async def _a_second_assignment_of_a_replied_case_and_a_withdrawal_in_one_task(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    quick = settings.model_copy(update={"dispatcher_window_minutes": 0.01})
    case_id, queue = own_case("secondwithdraw")
    async with build_worker(client, pool, own_queue(quick, queue)):
        handle = await started_assigned(client, case_id, queue)
        await _replied(client, handle)
    await _second_assignment(handle)  # the worker is gone
    await signal_sent(handle, "withdraw", CITIZEN, reason="Sorted it myself")
    async with build_worker(client, pool, own_queue(quick, queue)):
        s = await case_settled(handle, lambda s: s.status is Status.CLOSED or s.round > 1)
        await ended_and_replayed(handle)
    assert refusals(s) == {}, timeline_of(s)
    assert s.status is Status.CLOSED, timeline_of(s)


async def test_a_second_assignment_of_a_replied_case_and_a_withdrawal_in_one_task(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """The unit replied; a supervisor orders a 二次交办 on review of the reply, and the citizen
    then withdraws. Worker up: the order applies and the main loop begins the reassignment
    (status reassigning — before the reply, for 撤诉's rule); the 撤诉 closes the case
    (the guard below). Both in one task (v20): the 撤诉 is judged against the case as it
    stands — replied, as ``_judged_state`` leaves a case its unit does not hold — refused
    wrong_status, and the case the citizen withdrew goes to a new unit, a new round."""
    await outages.of(request)


async def _worker_up_a_withdrawal_after_a_second_assignment_of_a_replied_case(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    quick = settings.model_copy(update={"dispatcher_window_minutes": 0.01})
    case_id, queue = own_case("secondwithdrawup")
    async with build_worker(client, pool, own_queue(quick, queue)):
        handle = await started_assigned(client, case_id, queue)
        await _replied(client, handle)
        await _second_assignment(handle)
        await until(client, case_id, lambda s: s.status is not Status.REPLIED)
        await signal_sent(handle, "withdraw", CITIZEN, reason="Sorted it myself")
        s = await until(client, case_id, lambda s: s.status is Status.CLOSED)
        await ended_and_replayed(handle)
    assert refusals(s) == {}, timeline_of(s)
    assert kinds(s, EventKind.WITHDRAWN), timeline_of(s)


async def test_worker_up_a_withdrawal_after_a_second_assignment_of_a_replied_case(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard, no outage: the worker-up order of the xfail above — the 二次交办 applied and
    the case passed on (reassigning, or its new round), the 撤诉 closes it."""
    await outages.of(request)


# --- a 重办 the main loop starts: no message sees it coming ----------------------------------


async def _replied_case(
    client: Client, pool: asyncpg.Pool, settings: Settings, name: str
) -> tuple[WorkflowHandle, str, Settings]:
    quick = settings.model_copy(update={"dispatcher_window_minutes": 0.01})
    case_id, queue = own_case(name)
    async with build_worker(client, pool, own_queue(quick, queue)):
        handle = await started_assigned(client, case_id, queue)
        await _replied(client, handle)
    return handle, queue, quick


async def _an_unsatisfied_rating_and_a_withdrawal_in_one_task(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    handle, queue, quick = await _replied_case(client, pool, settings, "ratewithdraw")
    await signal_sent(handle, "rate", CITIZEN, rating="unsatisfied", comment="Still loud")
    await signal_sent(handle, "withdraw", CITIZEN, reason="Sorted it myself")
    async with build_worker(client, pool, own_queue(quick, queue)):
        s = await case_settled(handle, lambda s: s.status is Status.CLOSED or s.round > 1)
        await ended_and_replayed(handle)
    assert refusals(s) == {}, timeline_of(s)
    assert s.status is Status.CLOSED, timeline_of(s)


async def test_an_unsatisfied_rating_and_a_withdrawal_in_one_task(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """The citizen rates the reply unsatisfied, then withdraws. Worker up: the rating applies
    and the main loop starts the 重办 in that task (rehandle_started, reassigning); the 撤诉
    after it is before the new reply and closes the case (the guard below). Both in one task
    (the worker down; every epoch, v20's ``_judged_state`` does not see a 重办, which is not
    asked for until the main loop runs): the 撤诉 is judged against the replied case, refused
    wrong_status, and the case the citizen withdrew is rehandled by a new round."""
    await outages.of(request)


async def _worker_up_a_withdrawal_after_an_unsatisfied_rating(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    handle, queue, quick = await _replied_case(client, pool, settings, "ratewithdrawup")
    async with build_worker(client, pool, own_queue(quick, queue)):
        await signal_sent(handle, "rate", CITIZEN, rating="unsatisfied", comment="Still loud")
        await until(client, handle.id, lambda s: s.status is not Status.REPLIED)
        await signal_sent(handle, "withdraw", CITIZEN, reason="Sorted it myself")
        s = await until(client, handle.id, lambda s: s.status is Status.CLOSED)
        await ended_and_replayed(handle)
    assert refusals(s) == {}, timeline_of(s)
    assert kinds(s, EventKind.REHANDLE_STARTED) and kinds(s, EventKind.WITHDRAWN), timeline_of(s)


async def test_worker_up_a_withdrawal_after_an_unsatisfied_rating(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard, no outage: the worker-up order of the xfail above."""
    await outages.of(request)


# --- promise-watched-v1: the promise's watch ends at a reassignment ----------------------------


async def _a_promise_watched_after_a_late_approval_ends_at_a_raise(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    case_id, queue = own_case("promiseraised")
    start = urgent_start(case_id, URGENT_FINISH, timedelta(seconds=4))
    async with build_worker(client, pool, own_queue(settings, queue)):
        handle = await started_assigned(client, case_id, queue, start)
        s = await state_of(client, case_id)
        assert s.deadlines is not None
        finish = s.deadlines.finish
        promised = await _approved_after_the_breach(client, handle, finish)
        await signal_sent(handle, "raise_level", URBAN, reason="Beyond our authority")
        await until(client, case_id, lambda s: s.status is not Status.HANDLING)
        await until_past(promised + timedelta(seconds=1))
        s = await until(client, case_id, lambda s: True)
        await ended_and_replayed(handle)
    assert kinds(s, EventKind.REASSIGNMENT_STARTED), timeline_of(s)
    assert _finish_breaches(s) == [finish], timeline_of(s)


async def test_a_promise_watched_after_a_late_approval_ends_at_a_raise(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard (held), worker up, real time: the centre approves the 延期 after the finish
    deadline's breach (the promise is watched, v19); the unit then raises the case (提级办)
    before its promised date. The promise's watch ends at the reassignment like the round's
    other watches (``ends_at_reassignment``): no breach of the promised date follows."""
    await outages.of(request)


# each test_x awaits its scenario _x, all run at once (helpers.outage_scenarios)
outages = outage_scenarios(
    _a_return_at_the_bound_and_a_supervision_order_in_one_task,
    _a_return_at_the_bound_and_a_waiver_in_one_task,
    _a_return_at_the_bound_and_a_contribution_in_one_task,
    _a_return_and_a_withdrawal_in_one_task_record_the_reassignment_begun,
    _a_return_at_the_bound_and_a_withdrawal_in_one_task_record_the_queue,
    _a_late_approval_past_the_promise_in_an_outage_records_both_breaches,
    _worker_up_the_order_the_bound_attacks_compare_with,
    _a_second_assignment_of_a_replied_case_and_a_withdrawal_in_one_task,
    _worker_up_a_withdrawal_after_a_second_assignment_of_a_replied_case,
    _an_unsatisfied_rating_and_a_withdrawal_in_one_task,
    _worker_up_a_withdrawal_after_an_unsatisfied_rating,
    _a_promise_watched_after_a_late_approval_ends_at_a_raise,
)
