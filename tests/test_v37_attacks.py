"""Red team of lean-case-v37 (2026-11-25): ``units-looked-up-v1`` (a 派单 out of the centre's
queue, a 会办 and a 督办 of the form 会办 are looked up by the case itself, in its main loop:
``_carry_out_dispatch``, ``_convene_looked_up``; refused ``unknown_department``; the messages
after them wait) and ``queue-not-to-returner-v1`` (``lifecycle.returned_into_the_queue``).

Attacked as any Temporal client, a dying worker (several messages in one workflow task, a
timer in the task of a stashed order), a slow database and the API would.

Defects found (strict xfails, each failing with AssertionError under ``--runxfail``; the first
four fixed the same day by lean-case-v39, ``looked-up-in-order-v1``: a dispatch from the bound
keeps the case in the queue while it is looked up, a lapse's or a breach's timer that runs out
during a look-up waits for the action, a 督办's ``department_ids`` are looked up too — their
tests pass; the last two, older, by lean-case-v40: a ladder whose case closed first ends with
no step and no child, a step of a ladder that has done its duty is stale — their tests pass):

- a 派单 refused by the look-up at the reassignment bound, in the 退单's task, before the unit's
  督办 ladder has stopped: ``_queued_after_bound``, cleared while the 派单 is looked up, ends
  ``_queue_ladder_after_the_units`` without the queue's ladder — the case waits in the centre's
  queue supervised by nobody (test_a_refused_dispatch_at_the_bound_leaves_the_queue_on_its_ladder);
- a 督办 of the form 会办 sent before the unit's 签收 deadline, the worker down across it: the
  deadline's timer starts the breach's ladder during the look-up and the order is refused
  already_supervised (a 提醒 order in the same place is taken: its twin, a guard);
- a 会办 sent before the centre's window on a 退单 lapsed (逾期视为同意), the worker down across
  it: the lapse upholds the return during the look-up and the 会办 is refused wrong_status;
- a 督办 of the form 会办 naming its units in ``department_ids`` only (``departments`` empty,
  any Temporal client): no look-up, a ladder at 会办 with nobody convened;
- not v37's, met on the way: a ladder's first step recorded after a 撤诉 of the order's task
  closed the case (``escalated`` after ``closed``, a ladder child started for a closed case);
  the queue ladder's step behind a 派单 in its task recorded as 催办 against the unit dispatched.

Guards that hold: a 会办's task with a retry of it, a second 会办, a contribution, a waiver and
the unit's reply (each answered once, in order; the departments' own names, in the read model
too); a 撤诉 in a 督办-会办's task and a 会办 after it; a 派单, a 督办-会办 and a 签收 in one task;
a refused 派单, its retry and a good one in one task; a 派单, a 撤诉 and a 派单 in one task; a
refused 派单 out of the queue at the bound, then a good one (a fresh round, new deadlines, the
queue's ladder stopped); a slow look-up of a 会办 and of a 派单 (messages of later tasks wait,
keep their order, are answered once); the API's 409 unknown_department for a refusal the case
alone makes (a unit retired between the API's look-up and the case's), within its wait, and
the same answer to a keyed retry; returned_into_the_queue after a 退单 upheld by lapse (API and
case), after a 提级办, and along each path to the queue (pure).

Every case's history is replayed with today's code (``replay_checked``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from unittest.mock import patch

import asyncpg
import httpx
import pytest
from helpers import (
    SUPERVISOR,
    Scenarios,
    SetupFailed,
    act,
    case_down_across,
    case_settled,
    case_when,
    department_clerk,
    event_kinds,
    eventually,
    handle_of,
    ladder_of,
    ladders_started,
    outage_scenarios,
    own_case,
    own_queue,
    refusals,
    register,
    replay_checked,
    rid,
    sent,
    start_of,
    started_assigned,
    timeline_of,
    token_in,
    until,
    urgent_start,
    worker_down_across,
)
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from test_supervision_rules import NOW as RULES_NOW
from test_supervision_rules import _case as _rules_case

from jiesu.case import lifecycle
from jiesu.case.domain import (
    Actor,
    CaseEvent,
    CaseState,
    DispatchAction,
    EventKind,
    Role,
    Status,
)
from jiesu.config import Settings
from worker import activities as house_activities
from worker import build_worker
from workflows import ALL_WORKFLOWS, ComplaintWorkflow

URBAN = department_clerk("urban-management")
WATER = department_clerk("water")
CITY = department_clerk("city-gov")
DISPATCHER = Actor(role=Role.SUPERVISOR, name="v37 supervisor")
CITIZEN = Actor(role=Role.CITIZEN, name="Wang Fang")
NAMES = {"water": "县水务局", "police": "县公安局", "urban-management": "县城市管理局"}
URGENT_ACCEPT = timedelta(minutes=30)  # jiesu.case.sla: an urgent case is accepted in 30 min
GHOST = "v37-no-such-unit"


def _msg(actor: Actor, **data: Any) -> dict[str, Any]:
    """A message as the API sends it: a request id of its own, stamped now."""
    return {"actor": sent(rid(actor), datetime.now(UTC)), **data}


def _rid(message: dict[str, Any]) -> str:
    return str(message["actor"]["request_id"])


def _by_request(s: CaseState, message: dict[str, Any]) -> list[EventKind]:
    """The events the message caused (its request id), in order."""
    return [e.kind for e in s.events if e.actor.request_id == _rid(message)]


def _first_seq(s: CaseState, message: dict[str, Any]) -> int:
    return next(e.seq for e in s.events if e.actor.request_id == _rid(message))


def _codes(s: CaseState, action: str) -> list[str]:
    return [e.data["code"] for e in s.events
            if e.kind is EventKind.REJECTED and e.data["action"] == action]  # fmt: skip


def _queue_ladders(s: CaseState) -> list[int]:
    return [e.data["n"] for e in s.events if e.kind is EventKind.ESCALATION_STARTED
            and e.data.get("trigger") == "reassignment_limit"]  # fmt: skip


def _joint(departments: list[tuple[str, str]], **extra: Any) -> dict[str, Any]:
    """A 督办 of the form 会办 as the API sends it (``departments`` with the payload's names)."""
    due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    return _msg(DISPATCHER, form="joint_handling", note="会办",
                department_ids=[d for d, _ in departments],
                departments=[{"id": d, "name": n} for d, n in departments],
                contribution_due=due, **extra)  # fmt: skip


def _co_handlers(*departments: tuple[str, str]) -> dict[str, Any]:
    return _msg(DISPATCHER, note="会办",
                departments=[{"id": d, "name": n} for d, n in departments])  # fmt: skip


def _check(condition: bool, what: str) -> None:
    """A precondition of the scenario: not the defect its test names (SetupFailed)."""
    if not condition:
        raise SetupFailed(what)


async def _ended_replayed(handle: WorkflowHandle[Any, Any]) -> None:
    if (await handle.describe()).status.name == "RUNNING":
        await handle.terminate("test over")
    await replay_checked(await handle.fetch_history())


# --- 1. a refused 派单 at the bound, the unit's ladder still climbing --------------------------


def _bound(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_reassignments": 0, "dispatcher_window_minutes": 0.01})


async def _a_refused_dispatch_at_the_bound_leaves_the_queue_on_its_ladder(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    """max_reassignments 0; a supervisor's 督办 (提醒) climbs against urban management, which
    has accepted. The worker stops; urban management's 退单 (at the bound: the centre's queue)
    and a 派单 to a unit that does not exist reach the case in one task. The 派单 is refused;
    once the unit's ladder has stopped (the round ended), the queue should be on its own ladder
    (reassignment_limit, QUEUE_LADDER_AFTER_THE_UNITS), as it is without the refused 派单
    (test_v24_attacks' ``_two_returns_at_the_bound_in_one_task_leave_the_queue_on_its_ladder``)."""
    own = own_queue(_bound(settings), f"v37q-{uuid.uuid4().hex[:6]}")
    case_id = f"JS-V37A-QLAD-{uuid.uuid4().hex[:6]}"
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue)
        await handle.signal("accept", _msg(URBAN))
        await handle.signal("supervise", _msg(DISPATCHER, form="remind", note="Hurry up"))
        await until(client, case_id, lambda s: bool(s.escalation and s.escalation.active))
    await handle.signal("return", _msg(URBAN, reason="Not ours: police"))
    ghost = _msg(DISPATCHER, department_id=GHOST, department_name="假单位")
    await handle.signal("dispatch", ghost)
    try:
        async with build_worker(client, pool, own):
            s = await case_settled(handle, lambda s: "dispatch" in refusals(s) and any(
                e.kind is EventKind.ESCALATION_STOPPED for e in s.events))  # fmt: skip
            _check(refusals(s).get("dispatch") == "unknown_department", timeline_of(s))
            _check(s.status is Status.DISPATCHING, timeline_of(s))
            # the queue's ladder starts in the task its unit's ladder stopped in, or never
            s = await case_settled(handle, lambda s: bool(_queue_ladders(s)), within=3)
            await replay_checked(await handle.fetch_history())
    finally:
        await handle.terminate("test over")
    return s


async def test_a_refused_dispatch_at_the_bound_leaves_the_queue_on_its_ladder(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    s = await outages.of(request)
    assert s.status is Status.DISPATCHING, timeline_of(s)
    assert _queue_ladders(s), (
        f"no reassignment_limit ladder once the unit's stopped: {timeline_of(s)}")


# --- 2. a 督办 of the form 会办 sent before a deadline, the worker down across it -------------


async def _a_joint_order_sent_before_the_deadline_is_taken(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> tuple[CaseState, dict[str, Any]]:
    """An urgent case urban management has not accepted; the worker stops; a supervisor's 督办
    of the form 会办 (water) is sent before the 签收 deadline, which passes with the worker down:
    the order and the deadline's timer reach the case in one task."""
    order: list[dict[str, Any]] = []

    async def send(handle: WorkflowHandle[Any, Any]) -> None:
        order.append(_joint([("water", "假水务局")]))
        await handle.signal("supervise", order[-1])

    s = await _order_across_the_deadline(
        client, pool, settings, "v37joint", send,
        lambda s: s.escalation is not None and bool(s.breaches)
        and ("supervise" in refusals(s) or bool(s.co_handlers)),
    )  # fmt: skip
    return s, order[-1]


async def test_a_joint_order_sent_before_the_deadline_is_taken(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    s, order = await outages.of(request)
    e = s.escalation
    assert "supervise" not in refusals(s), (
        f"the order sent in time was refused {refusals(s)['supervise']}: {timeline_of(s)}")
    assert e is not None and e.trigger.value == "supervisor", timeline_of(s)
    assert [(c.department_id, c.department_name) for c in s.co_handlers] == [
        ("water", NAMES["water"])], s.co_handlers
    assert _by_request(s, order)[0] is EventKind.ESCALATION_STARTED, timeline_of(s)


async def _a_remind_order_sent_before_the_deadline_is_taken(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    """The twin of the last scenario with a 督办 of the form 提醒 (not stashed: applied in the
    message's handler)."""

    async def send(handle: WorkflowHandle[Any, Any]) -> None:
        await handle.signal("supervise", _msg(DISPATCHER, form="remind", note="Hurry up"))

    return await _order_across_the_deadline(
        client, pool, settings, "v37remind", send,
        lambda s: s.escalation is not None and bool(s.breaches)
        and ("supervise" in refusals(s) or s.escalation.form is not None),
    )  # fmt: skip


async def _order_across_the_deadline(
    client: Client, pool: asyncpg.Pool, settings: Settings, tag: str,
    send: Callable[[WorkflowHandle[Any, Any]], Awaitable[None]],
    settled: Callable[[CaseState], bool],
) -> CaseState:  # fmt: skip
    """An urgent case urban management has not accepted; the worker stops; ``send`` is sent
    before the 签收 deadline, which passes with the worker down: it and the deadline's timer
    reach the case in one task. The case once ``settled``, its history replayed."""

    async def nothing(_: WorkflowHandle[Any, Any]) -> None:
        return None

    handle, queue = await case_down_across(
        client, pool, settings, tag, b"accept deadline", nothing, send,
        start=lambda case_id, slack: urgent_start(case_id, URGENT_ACCEPT, slack),
    )  # fmt: skip
    try:
        async with build_worker(client, pool, own_queue(settings, queue)):
            s = await case_settled(handle, settled)
            _check(bool(s.breaches), timeline_of(s))
            await replay_checked(await handle.fetch_history())
    finally:
        await handle.terminate("test over")
    return s


async def test_a_remind_order_sent_before_the_deadline_is_taken(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard (the finding's twin): the same order of the form 提醒 is taken, the breach after
    it starts no ladder of its own."""
    s = await outages.of(request)
    assert "supervise" not in refusals(s), timeline_of(s)
    assert s.escalation is not None and s.escalation.trigger.value == "supervisor", timeline_of(s)
    assert [n for n, _ in ladders_started(s)] == [1], timeline_of(s)


async def _a_ladders_first_step_after_a_withdrawal_in_its_task(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    """Urban management holds the case; the worker stops; a 督办 (提醒) and the citizen's 撤诉
    reach the case in one task."""
    own = own_queue(settings, f"v37f-{uuid.uuid4().hex[:6]}")
    case_id = f"JS-V37A-FIRST-{uuid.uuid4().hex[:6]}"
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue)
    await handle.signal("supervise", _msg(DISPATCHER, form="remind", note="Hurry up"))
    await handle.signal("withdraw", _msg(CITIZEN, reason="Sorted it myself"))
    async with build_worker(client, pool, own):
        s = await case_settled(handle, lambda s: False, within=15)  # until its workflow ends
        _check(s.status is Status.CLOSED, timeline_of(s))
        await replay_checked(await handle.fetch_history())
    return s


async def test_a_ladders_first_step_after_a_withdrawal_in_its_task(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    s = await outages.of(request)
    closed = event_kinds(s).index("closed")
    late = [e.kind.value for e in s.events[closed + 1:]
            if e.kind not in (EventKind.ESCALATION_STOPPED, EventKind.REJECTED)]  # fmt: skip
    assert not late, f"recorded after the close: {late}: {timeline_of(s)}"


# --- 3. a 会办 sent before a 退单's window lapsed, the worker down across it ---------------------


async def _a_co_handling_order_sent_before_a_return_lapsed(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> tuple[CaseState, dict[str, Any], dict[str, Any]]:
    """The centre decides a 退单 within a window (逾期视为同意). Urban management accepts and
    returns the case; the worker stops; a 会办 (water) is sent before the window ends, which
    passes with the worker down: the 会办 and the window's timer reach the case in one task.
    With the worker back, the case is reassigned (the dispatcher's window 6 s); the citizen
    withdraws meanwhile."""
    order: list[dict[str, Any]] = []

    async def setup(slack: timedelta) -> tuple[WorkflowHandle[Any, Any], str]:
        case_id, queue = own_case("v37lapse")
        own = own_queue(settings.model_copy(update={
            "return_needs_approval": True, "return_decision_hours": slack.total_seconds() / 3600,
            "dispatcher_window_minutes": 0.1}), queue)  # fmt: skip
        async with build_worker(client, pool, own):
            handle = await started_assigned(client, case_id, queue)
            await handle.signal("accept", _msg(URBAN))
            await handle.signal("return", _msg(URBAN, reason="Not ours: water"))
            await until(client, case_id, lambda s: s.pending_return is not None)
        order.append(_co_handlers(("water", "假水务局")))
        await handle.signal("add_co_handlers", order[-1])
        return handle, queue

    handle, queue = await worker_down_across(setup, b"return decision deadline")
    own = own_queue(settings.model_copy(update={
        "return_needs_approval": True, "dispatcher_window_minutes": 0.1}), queue)  # fmt: skip
    try:
        async with build_worker(client, pool, own):
            s = await until(client, handle.id, lambda s: s.status is Status.REASSIGNING)
            _check(EventKind.RETURN_UPHELD in [e.kind for e in s.events], timeline_of(s))
            withdraw = _msg(CITIZEN, reason="Sorted it myself")
            await handle.signal("withdraw", withdraw)
            s = await case_settled(handle, lambda s: s.status is Status.CLOSED, within=20)
            _check(s.status is Status.CLOSED, timeline_of(s))
    finally:
        await _ended_replayed(handle)
    return s, order[-1], withdraw


async def test_a_co_handling_order_sent_before_a_return_lapsed(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    s, order, withdraw = await outages.of(request)
    kinds = event_kinds(s)
    assert "add_co_handlers" not in refusals(s), (
        f"the 会办 sent before the lapse was refused {refusals(s)['add_co_handlers']}: "
        f"{timeline_of(s)}")  # fmt: skip
    assert _by_request(s, order) == [EventKind.CO_HANDLERS_ADDED], timeline_of(s)
    assert _first_seq(s, order) < kinds.index("return_upheld") + 1, (
        f"the 会办 sent before the lapse was applied after it: {timeline_of(s)}")
    # (water still owes on the closed case, as with the worker up: the citizen withdrew while
    # the case was being reassigned, before the new round that releases it)
    assert _by_request(s, withdraw)[0] is EventKind.WITHDRAWN, timeline_of(s)
    assert "reassigned" not in kinds[: _first_seq(s, withdraw)], (
        f"the withdrawn case was given to a unit first: {timeline_of(s)}")


async def _projected_co_handlers(
    pool: asyncpg.Pool, case_id: str, n: int
) -> list[tuple[str, str]] | None:
    """The co-handlers the read model shows (their names as projected), once it has ``n``."""
    state = await pool.fetchval("SELECT state FROM cases WHERE case_id = $1", case_id)
    found = [(c["department_id"], c["department_name"])
             for c in ((state or {}).get("co_handlers") or [])]  # fmt: skip
    return found if len(found) >= n else None


# --- 4. a 会办's messages in its task --------------------------------------------------------


async def _messages_in_the_task_of_a_co_handling_order(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> tuple[CaseState, list[dict[str, Any]]]:
    """Urban management has accepted and contacted; the worker stops; in one task: a 会办
    (water, a payload name of its own), its retry (same request id), a second 会办 (police),
    water's contribution, the centre's waiver of police and urban management's reply."""
    own = own_queue(settings, f"v37m-{uuid.uuid4().hex[:6]}")
    case_id = f"JS-V37A-MSGS-{uuid.uuid4().hex[:6]}"
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue)
        await handle.signal("accept", _msg(URBAN))
        await handle.signal("contact", _msg(URBAN, note="Called"))
        await until(client, case_id, lambda s: s.contacted_at is not None)
    first = _co_handlers(("water", "假水务局"))
    messages = [
        ("add_co_handlers", first),
        ("add_co_handlers", first),  # a retry: the same request id
        ("add_co_handlers", _co_handlers(("police", "假公安局"))),
        ("contribute", _msg(WATER, text="Pipe inspected")),
        ("waive_co_handler", _msg(DISPATCHER, department_id="police")),
        ("reply", _msg(URBAN, outcome="resolved", text="The shop turned it down")),
    ]
    for name, message in messages:
        await handle.signal(name, message)
    try:
        async with build_worker(client, pool, own):
            s = await case_settled(handle, lambda s: s.status is Status.REPLIED
                                   or "reply" in refusals(s))  # fmt: skip
            projected = await eventually(partial(_projected_co_handlers, pool, case_id, 2))
            await replay_checked(await handle.fetch_history())
    finally:
        await handle.terminate("test over")
    return s, [m for _, m in messages], projected


async def test_messages_in_the_task_of_a_co_handling_order(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard: each message answered once, in the order sent (the retry not at all); the
    co-handlers under the departments' own names; the reply taken once both are settled."""
    s, (water, _retry, police, contribution, waiver, reply), projected = await outages.of(
        request)  # fmt: skip
    caused = [_by_request(s, m) for m in (water, police, contribution, waiver, reply)]
    assert caused == [[EventKind.CO_HANDLERS_ADDED], [EventKind.CO_HANDLERS_ADDED],
                      [EventKind.CONTRIBUTED], [EventKind.CO_HANDLER_WAIVED],
                      [EventKind.REPLIED]], timeline_of(s)  # fmt: skip
    seqs = [_first_seq(s, m) for m in (water, police, contribution, waiver, reply)]
    assert seqs == sorted(seqs), timeline_of(s)
    assert [(c.department_id, c.department_name) for c in s.co_handlers] == [
        ("water", NAMES["water"]), ("police", NAMES["police"])], s.co_handlers
    assert s.status is Status.REPLIED and not refusals(s), timeline_of(s)
    assert projected == [("water", NAMES["water"]), ("police", NAMES["police"])], projected


# --- 5. a 撤诉 in a 督办-会办's task -----------------------------------------------------------


async def _a_withdrawal_in_the_task_of_a_joint_order(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> tuple[CaseState, list[dict[str, Any]]]:
    """Urban management holds the case; the worker stops; in one task: a 督办 of the form 会办
    (water), the citizen's 撤诉, a 会办 (police)."""
    own = own_queue(settings, f"v37w-{uuid.uuid4().hex[:6]}")
    case_id = f"JS-V37A-WDRAW-{uuid.uuid4().hex[:6]}"
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue)
    messages = [("supervise", _joint([("water", "假水务局")])),
                ("withdraw", _msg(CITIZEN, reason="Sorted it myself")),
                ("add_co_handlers", _co_handlers(("police", "假公安局")))]  # fmt: skip
    for name, message in messages:
        await handle.signal(name, message)
    async with build_worker(client, pool, own):
        s = await case_settled(handle, lambda s: False, within=15)  # until its workflow ends
        _check((await handle.describe()).status.name == "COMPLETED", timeline_of(s))
        s = await handle.query(ComplaintWorkflow.state)
        await replay_checked(await handle.fetch_history())
    return s, [m for _, m in messages]


async def test_a_withdrawal_in_the_task_of_a_joint_order(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard: the order is taken (its ladder, water convened), then the 撤诉 closes the case,
    then the 会办 is refused wrong_status; nothing applied after the close; the workflow ends."""
    s, (order, withdraw, late) = await outages.of(request)
    assert _by_request(s, order)[0] is EventKind.ESCALATION_STARTED, timeline_of(s)
    assert _by_request(s, withdraw)[0] is EventKind.WITHDRAWN, timeline_of(s)
    assert _by_request(s, late) == [EventKind.REJECTED], timeline_of(s)
    assert _codes(s, "add_co_handlers") == ["wrong_status"], timeline_of(s)
    seqs = [_first_seq(s, m) for m in (order, withdraw, late)]
    assert seqs == sorted(seqs), timeline_of(s)
    assert [c.department_id for c in s.co_handlers] == ["water"], s.co_handlers
    closed = event_kinds(s).index("closed")
    # the ladder's first step, recorded by its task after the close, is the xfail below's
    after = (EventKind.REJECTED, EventKind.ESCALATION_STOPPED, EventKind.ESCALATED)
    assert all(e.kind in after for e in s.events[closed + 1:]), timeline_of(s)
    assert s.escalation is not None and not s.escalation.active, timeline_of(s)


# --- 6. a refused 派单, its retry and a good one in one task ---------------------------------


async def _a_refused_dispatch_its_retry_and_a_good_one_in_one_task(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> tuple[CaseState, list[dict[str, Any]]]:
    """A case in the centre's queue from its receipt (no routing rule for stray animals); the
    worker stops; in one task: a 派单 to a unit that does not exist, its retry, a 派单 to water
    (a payload name of its own) and water's 签收."""
    own = own_queue(settings, f"v37d-{uuid.uuid4().hex[:6]}")
    async with build_worker(client, pool, own):
        handle = await _queued_from_its_receipt(client, pool, own, "DISP")
    ghost = _msg(DISPATCHER, department_id=GHOST, department_name="假单位")
    good = _msg(DISPATCHER, department_id="water", department_name="假水务局")
    accept = _msg(WATER)
    for name, message in (("dispatch", ghost), ("dispatch", ghost), ("dispatch", good),
                          ("accept", accept)):  # fmt: skip
        await handle.signal(name, message)
    try:
        async with build_worker(client, pool, own):
            s = await case_settled(handle, lambda s: s.status is Status.HANDLING
                                   or "accept" in refusals(s))  # fmt: skip
            await replay_checked(await handle.fetch_history())
    finally:
        await handle.terminate("test over")
    return s, [ghost, good, accept]


async def test_a_refused_dispatch_its_retry_and_a_good_one_in_one_task(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard: the 派单 to nobody refused once (unknown_department; its retry not answered
    again); water takes the case under its own name, with the unit's deadlines from then; the
    签收 after it is taken."""
    s, (ghost, good, accept) = await outages.of(request)
    assert _by_request(s, ghost) == [EventKind.REJECTED], timeline_of(s)
    assert _codes(s, "dispatch") == ["unknown_department"], timeline_of(s)
    assert _by_request(s, good) == [EventKind.DISPATCHED], timeline_of(s)
    dispatched = next(e for e in s.events if e.kind is EventKind.DISPATCHED)
    assert dispatched.data["department_name"] == NAMES["water"], dispatched.data
    assert s.assignment is not None and s.assignment.department_name == NAMES["water"]
    assert _by_request(s, accept) == [EventKind.ACCEPTED], timeline_of(s)
    assert s.round == 1 and s.status is Status.HANDLING, timeline_of(s)
    kinds = event_kinds(s)
    assert kinds.count("deadlines_set") == 2 and kinds.index("dispatched") > max(
        i for i, k in enumerate(kinds) if k == "deadlines_set"), timeline_of(s)


async def _queued_from_its_receipt(
    client: Client, pool: asyncpg.Pool, own: Settings, tag: str
) -> WorkflowHandle[Any, Any]:
    """A case in the centre's queue from its receipt (no routing rule for stray animals)."""
    case_id = f"JS-V37A-{tag}-{uuid.uuid4().hex[:6]}"
    start = start_of(case_id)
    start = start.model_copy(update={
        "facts": start.facts.model_copy(update={"category_id": "stray_animals"})})  # fmt: skip
    handle = await client.start_workflow(
        ComplaintWorkflow.run, start, id=case_id, task_queue=own.task_queue)
    await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
    return handle


async def _a_dispatch_a_joint_order_and_an_accept_in_one_task(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> tuple[CaseState, list[dict[str, Any]]]:
    """A case in the centre's queue; the worker stops; in one task: a 派单 to water, a 督办 of
    the form 会办 (police) and water's 签收 — the 派单 looked up, then the order waiting for it
    (SUPERVISION_AFTER_DISPATCH) and looked up in turn, the 签收 behind both."""
    own = own_queue(settings, f"v37j-{uuid.uuid4().hex[:6]}")
    async with build_worker(client, pool, own):
        handle = await _queued_from_its_receipt(client, pool, own, "CHAIN")
    messages = [("dispatch", _msg(DISPATCHER, department_id="water", department_name="假水务局")),
                ("supervise", _joint([("police", "假公安局")])),
                ("accept", _msg(WATER))]  # fmt: skip
    for name, message in messages:
        await handle.signal(name, message)
    try:
        async with build_worker(client, pool, own):
            s = await case_settled(handle, lambda s: s.status is Status.HANDLING
                                   or "accept" in refusals(s))  # fmt: skip
            await replay_checked(await handle.fetch_history())
    finally:
        await handle.terminate("test over")
    return s, [m for _, m in messages]


async def test_a_dispatch_a_joint_order_and_an_accept_in_one_task(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard: water holds the case (its own name), then the order presses water and convenes
    police (its own name), then water's 签收 — each once, in the order sent."""
    s, (dispatch, order, accept) = await outages.of(request)
    caused = [_by_request(s, m)[:1] for m in (dispatch, order, accept)]
    assert caused == [[EventKind.DISPATCHED], [EventKind.ESCALATION_STARTED],
                      [EventKind.ACCEPTED]], timeline_of(s)  # fmt: skip
    seqs = [_first_seq(s, m) for m in (dispatch, order, accept)]
    assert seqs == sorted(seqs) and not refusals(s), timeline_of(s)
    assert s.assignment is not None and s.assignment.department_name == NAMES["water"]
    assert s.escalation is not None and s.escalation.department_id == "water", s.escalation
    assert [(c.department_id, c.department_name) for c in s.co_handlers] == [
        ("police", NAMES["police"])], s.co_handlers


# --- 7. a refused 派单 out of the queue at the bound, then a good one --------------------------


async def _a_refused_dispatch_at_the_bound_then_a_good_one_takes_a_fresh_round(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> tuple[CaseState, CaseState]:
    """max_reassignments 0, no ladder climbing: urban management's 退单 queues the case on the
    queue's ladder. With the worker up: a 派单 to a unit that does not exist, then (once it is
    refused) a 派单 to water."""
    own = own_queue(_bound(settings), f"v37b-{uuid.uuid4().hex[:6]}")
    case_id = f"JS-V37A-BOUND-{uuid.uuid4().hex[:6]}"
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue)
        try:
            await handle.signal("accept", _msg(URBAN))
            await handle.signal("return", _msg(URBAN, reason="Not ours: police"))
            await until(client, case_id, lambda s: s.status is Status.DISPATCHING
                        and bool(_queue_ladders(s)))  # fmt: skip
            await handle.signal("dispatch", _msg(DISPATCHER, department_id=GHOST,
                                                 department_name="假单位"))  # fmt: skip
            refused = await until(client, case_id, lambda s: "dispatch" in refusals(s))
            await handle.signal("dispatch", _msg(DISPATCHER, department_id="water",
                                                 department_name="假水务局"))  # fmt: skip
            s = await until(client, case_id, lambda s: s.status is Status.ASSIGNED and bool(
                s.escalation and not s.escalation.active))  # fmt: skip
            await replay_checked(await handle.fetch_history())
        finally:
            await handle.terminate("test over")
    return refused, s


async def test_a_refused_dispatch_at_the_bound_then_a_good_one_takes_a_fresh_round(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard: the refused 派单 leaves the case queued, its ladder climbing; the good one starts
    a new round (reassigned, fresh deadlines) for water under its own name and stops the
    queue's ladder."""
    refused, s = await outages.of(request)
    assert refusals(refused)["dispatch"] == "unknown_department", timeline_of(refused)
    assert refused.status is Status.DISPATCHING, timeline_of(refused)
    assert refused.escalation is not None and refused.escalation.active, timeline_of(refused)
    assert s.round == refused.round + 1, (refused.round, s.round, timeline_of(s))
    reassigned = [e for e in s.events if e.kind is EventKind.REASSIGNED]
    assert [e.data["department_name"] for e in reassigned][-1:] == [NAMES["water"]], reassigned
    kinds = event_kinds(s)
    last = len(kinds) - 1 - kinds[::-1].index("deadlines_set")
    assert last > kinds.index("queued"), timeline_of(s)
    assert s.deadlines is not None and s.deadlines.accept > reassigned[-1].at, s.deadlines


async def _a_queue_ladders_step_in_the_task_of_a_dispatch(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    """max_reassignments 0: urban management's 退单 queues the case on the queue's ladder
    (reassignment_limit, 提醒: it presses the centre's dispatch desk). The worker stops; a 派单
    to water and the queue ladder's next step (催办, signed with the ladder's word as its child
    sends it when its step is due) reach the case in one task."""
    own = own_queue(_bound(settings), f"v37k-{uuid.uuid4().hex[:6]}")
    case_id = f"JS-V37A-QSTEP-{uuid.uuid4().hex[:6]}"
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue)
        await handle.signal("accept", _msg(URBAN))
        await handle.signal("return", _msg(URBAN, reason="Not ours: police"))
        await until(client, case_id, lambda s: bool(_queue_ladders(s)
                    and s.escalation and s.escalation.active))  # fmt: skip
        token = await token_in(await ladder_of(client, case_id, 1))
    await handle.signal("dispatch", _msg(DISPATCHER, department_id="water",
                                         department_name="县水务局"))  # fmt: skip
    await handle.signal("escalation_step", {"n": 1, "level": 2, "token": token})
    try:
        async with build_worker(client, pool, own):
            s = await case_settled(handle, lambda s: s.status is Status.ASSIGNED and bool(
                s.escalation and not s.escalation.active))  # fmt: skip
            _check(s.department_id == "water", timeline_of(s))
            await replay_checked(await handle.fetch_history())
    finally:
        await handle.terminate("test over")
    return s


async def test_a_queue_ladders_step_in_the_task_of_a_dispatch(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    s = await outages.of(request)
    against = [e.data for e in s.events if e.kind is EventKind.ESCALATED
               and e.data.get("department_id") == "water"]  # fmt: skip
    assert not against, f"the queue's ladder climbed against water: {against}: {timeline_of(s)}"


# --- 8. a slow look-up: the messages of later tasks wait behind it ---------------------------

_HELD: dict[str, asyncio.Event] = {}  # a case's look-up, held until the test sets it
_HOLDING: dict[str, asyncio.Event] = {}  # set once its look-up is held
QUICK_TASKS = timedelta(seconds=2)  # a task whose local activity runs is heartbeaten at 1.6 s


@asynccontextmanager
async def _slow_lookups(
    client: Client, pool: asyncpg.Pool, settings: Settings, queue: str
) -> AsyncIterator[None]:
    """A worker whose look-ups of units (known_department, known_departments) wait, for a case
    in ``_HELD``, until the test lets them go: a slow database, longer than a task's heartbeat,
    so that messages sent meanwhile reach the case in tasks of their own."""
    acts = house_activities(pool, settings.model_copy(update={"task_queue": queue}))
    one = next(a for a in acts if getattr(a, "__name__", "") == "known_department")
    many = next(a for a in acts if getattr(a, "__name__", "") == "known_departments")

    async def held() -> None:
        case_id = activity.info().workflow_id
        if case_id in _HELD:
            _HOLDING[case_id].set()
            await asyncio.wait_for(_HELD[case_id].wait(), 30)

    @activity.defn(name="known_department")
    async def known_department(department_id: str) -> Any:
        await held()
        return await one(department_id)

    @activity.defn(name="known_departments")
    async def known_departments(department_ids: list[str]) -> Any:
        await held()
        return await many(department_ids)

    house = [a for a in acts if a not in (one, many)]
    async with Worker(client, task_queue=queue, workflows=ALL_WORKFLOWS,
                      activities=[*house, known_department, known_departments],
                      workflow_runner=UnsandboxedWorkflowRunner()):  # fmt: skip
        yield


async def _delivered(handle: WorkflowHandle[Any, Any]) -> bool:
    """Has a workflow task completed since the last signal reached the case (so the case has
    taken every signal sent, while its look-up is held)?"""
    last_signal = last_completed = 0
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            last_signal = event.event_id
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            last_completed = event.event_id
    return last_completed > last_signal


async def _held_while(
    handle: WorkflowHandle[Any, Any], first: tuple[str, dict[str, Any]],
    later: list[tuple[str, dict[str, Any]]],
) -> None:  # fmt: skip
    """``first`` sent, its look-up held; ``later`` sent and taken by the case in later tasks;
    then the look-up goes on."""
    _HELD[handle.id], _HOLDING[handle.id] = asyncio.Event(), asyncio.Event()
    try:
        await handle.signal(*first)
        await asyncio.wait_for(_HOLDING[handle.id].wait(), 30)
        for name, message in later:
            await handle.signal(name, message)
        await eventually(lambda: _delivered(handle), within=20)
        _HELD[handle.id].set()
    finally:
        _HELD.pop(handle.id, None)
        _HOLDING.pop(handle.id, None)


async def _messages_while_a_co_handling_order_is_looked_up(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> tuple[CaseState, list[dict[str, Any]]]:
    """Urban management has accepted and contacted; a 会办 (water) is looked up slowly; water's
    contribution, urban management's reply and the citizen's 撤诉 reach the case meanwhile,
    each in a later task."""
    queue = f"v37s-{uuid.uuid4().hex[:6]}"
    case_id = f"JS-V37A-SLOWC-{uuid.uuid4().hex[:6]}"
    async with _slow_lookups(client, pool, settings, queue):
        handle = await client.start_workflow(ComplaintWorkflow.run, start_of(case_id),
                                             id=case_id, task_queue=queue,
                                             task_timeout=QUICK_TASKS)  # fmt: skip
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        await handle.signal("accept", _msg(URBAN))
        await handle.signal("contact", _msg(URBAN, note="Called"))
        await until(client, case_id, lambda s: s.contacted_at is not None)
        order = _co_handlers(("water", "假水务局"))
        later = [("contribute", _msg(WATER, text="Pipe inspected")),
                 ("reply", _msg(URBAN, outcome="resolved", text="Turned down")),
                 ("withdraw", _msg(CITIZEN, reason="Sorted it myself"))]  # fmt: skip
        await _held_while(handle, ("add_co_handlers", order), later)
        s = await case_settled(handle, lambda s: bool(_by_request(s, later[-1][1])), within=20)
        await _ended_replayed(handle)
    return s, [order, *(m for _, m in later)]


async def test_messages_while_a_co_handling_order_is_looked_up(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard: the messages of later tasks wait for the slow look-up: water is convened under
    its own name, then its contribution, the reply and the 撤诉 are taken in turn (the 撤诉 of
    a replied case refused), each once; the history replays."""
    s, (order, contribution, reply, withdraw) = await outages.of(request)
    caused = [_by_request(s, m) for m in (order, contribution, reply, withdraw)]
    assert caused == [[EventKind.CO_HANDLERS_ADDED], [EventKind.CONTRIBUTED],
                      [EventKind.REPLIED], [EventKind.REJECTED]], timeline_of(s)  # fmt: skip
    assert _codes(s, "withdraw") == ["wrong_status"], timeline_of(s)
    seqs = [_first_seq(s, m) for m in (order, contribution, reply, withdraw)]
    assert seqs == sorted(seqs), timeline_of(s)
    assert [(c.department_id, c.department_name) for c in s.co_handlers] == [
        ("water", NAMES["water"])], s.co_handlers


async def _messages_while_a_dispatch_is_looked_up(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> tuple[CaseState, list[dict[str, Any]]]:
    """A case in the centre's queue; a 派单 to water is looked up slowly; water's 签收, a second
    派单 (police) and the citizen's 撤诉 reach the case meanwhile, each in a later task."""
    queue = f"v37t-{uuid.uuid4().hex[:6]}"
    case_id = f"JS-V37A-SLOWD-{uuid.uuid4().hex[:6]}"
    start = start_of(case_id)
    start = start.model_copy(update={
        "facts": start.facts.model_copy(update={"category_id": "stray_animals"})})  # fmt: skip
    async with _slow_lookups(client, pool, settings, queue):
        handle = await client.start_workflow(ComplaintWorkflow.run, start, id=case_id,
                                             task_queue=queue, task_timeout=QUICK_TASKS)
        await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
        dispatch = _msg(DISPATCHER, department_id="water", department_name="假水务局")
        later = [("accept", _msg(WATER)),
                 ("dispatch", _msg(DISPATCHER, department_id="police", department_name="公安")),
                 ("withdraw", _msg(CITIZEN, reason="Caught it myself"))]  # fmt: skip
        await _held_while(handle, ("dispatch", dispatch), later)
        s = await case_settled(handle, lambda s: s.status is Status.CLOSED, within=20)
        await _ended_replayed(handle)
    return s, [dispatch, *(m for _, m in later)]


async def test_messages_while_a_dispatch_is_looked_up(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard: water holds the case (its own name), then its 签收, the second 派单 refused, the
    撤诉 — in the order sent, each once; the history replays."""
    s, (dispatch, accept, second, withdraw) = await outages.of(request)
    caused = [_by_request(s, m)[:1] for m in (dispatch, accept, second, withdraw)]
    assert caused == [[EventKind.DISPATCHED], [EventKind.ACCEPTED], [EventKind.REJECTED],
                      [EventKind.WITHDRAWN]], timeline_of(s)  # fmt: skip
    seqs = [_first_seq(s, m) for m in (dispatch, accept, second, withdraw)]
    assert seqs == sorted(seqs), timeline_of(s)
    assert s.assignment is not None and s.assignment.department_name == NAMES["water"]


async def _a_dispatch_a_withdrawal_and_a_dispatch_in_one_task(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> tuple[CaseState, list[dict[str, Any]]]:
    """A case in the centre's queue; the worker stops; in one task: a 派单 to water, the
    citizen's 撤诉 and a 派单 to police."""
    own = own_queue(settings, f"v37x-{uuid.uuid4().hex[:6]}")
    async with build_worker(client, pool, own):
        handle = await _queued_from_its_receipt(client, pool, own, "DWD")
    messages = [("dispatch", _msg(DISPATCHER, department_id="water", department_name="水")),
                ("withdraw", _msg(CITIZEN, reason="Caught it myself")),
                ("dispatch", _msg(DISPATCHER, department_id="police", department_name="警"))]
    for name, message in messages:
        await handle.signal(name, message)
    async with build_worker(client, pool, own):
        s = await case_settled(handle, lambda s: False, within=15)  # until its workflow ends
        _check((await handle.describe()).status.name == "COMPLETED", timeline_of(s))
        await replay_checked(await handle.fetch_history())
    return s, [m for _, m in messages]


async def test_a_dispatch_a_withdrawal_and_a_dispatch_in_one_task(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard: water is given the case, then the 撤诉 closes it, then the second 派单 is refused
    wrong_status; nothing after the close; the workflow ends."""
    s, (first, withdraw, second) = await outages.of(request)
    caused = [_by_request(s, m)[:1] for m in (first, withdraw, second)]
    assert caused == [[EventKind.DISPATCHED], [EventKind.WITHDRAWN], [EventKind.REJECTED]], (
        timeline_of(s))  # fmt: skip
    assert _codes(s, "dispatch") == ["wrong_status"], timeline_of(s)
    closed = event_kinds(s).index("closed")
    assert [e.kind for e in s.events[closed + 1:]] == [EventKind.REJECTED], timeline_of(s)


outages = outage_scenarios(
    _a_refused_dispatch_at_the_bound_leaves_the_queue_on_its_ladder,
    _a_joint_order_sent_before_the_deadline_is_taken,
    _a_co_handling_order_sent_before_a_return_lapsed,
    _a_remind_order_sent_before_the_deadline_is_taken,
    _a_ladders_first_step_after_a_withdrawal_in_its_task,
    _messages_in_the_task_of_a_co_handling_order,
    _a_withdrawal_in_the_task_of_a_joint_order,
    _a_refused_dispatch_its_retry_and_a_good_one_in_one_task,
    _a_dispatch_a_joint_order_and_an_accept_in_one_task,
    _a_dispatch_a_withdrawal_and_a_dispatch_in_one_task,
    _a_queue_ladders_step_in_the_task_of_a_dispatch,
    _messages_while_a_co_handling_order_is_looked_up,
    _messages_while_a_dispatch_is_looked_up,
    _a_refused_dispatch_at_the_bound_then_a_good_one_takes_a_fresh_round,
)


# --- 8. a 督办 of the form 会办 with its units in department_ids only -------------------------


async def test_a_joint_order_naming_its_units_in_department_ids_only(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = (await register(api))["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    handle = handle_of(client, case_id)
    due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    order = _msg(DISPATCHER, form="joint_handling", note="会办", department_ids=[GHOST],
                 departments=[], contribution_due=due)  # fmt: skip
    await handle.signal("supervise", order)
    s = await case_settled(handle, lambda s: s.escalation is not None
                           or "supervise" in refusals(s), within=15)  # fmt: skip
    await _ended_replayed(handle)
    assert s.escalation is None and refusals(s).get("supervise") == "unknown_department", (
        f"a 会办 order naming {GHOST} taken: ladder {s.escalation and s.escalation.form}, "
        f"co-handlers {s.co_handlers}: {timeline_of(s)}")


# --- 9. the API's answer to a refusal the case alone makes -----------------------------------


async def _passes_any(pool: Any, department_id: str) -> str:
    """The API's look-up as it answered a moment before the unit was retired."""
    return f"看似在用的{department_id}"


async def _answered(api: httpx.AsyncClient, case_id: str, action: str, key: str,
                    **body: Any) -> tuple[int, str, float]:  # fmt: skip
    began = time.monotonic()
    r = await api.post(f"/api/v1/complaints/{case_id}/{action}", json=body,
                       headers={**SUPERVISOR, "Idempotency-Key": key})  # fmt: skip
    return r.status_code, r.json().get("error", {}).get("code", ""), time.monotonic() - began


async def test_the_api_answers_the_cases_own_refusals(
    api: httpx.AsyncClient, client: Client
) -> None:
    """Guard: a unit out of service by the time the case looks it up (the API's look-up let it
    through a moment before: patched here) — the 会办, the 督办 of the form 会办 and the 派单 are
    each answered 409 unknown_department, within the API's wait, and a retry under the same
    Idempotency-Key gets the same answer without a second refusal recorded."""
    held = (await register(api))["case_id"]
    await case_when(api, held, lambda s: s["status"] == "assigned")
    queued = (await register(api, category_id="stray_animals"))["case_id"]
    await case_when(api, queued, lambda s: s["status"] == "dispatching")
    due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    calls = [
        (held, "co-handlers", {"department_ids": [GHOST], "note": "会办"}),
        (held, "supervision", {"form": "joint_handling", "note": "会办", "department_ids": [GHOST],
                               "contribution_due": due}),
        (queued, "dispatch", {"department_id": GHOST}),
    ]  # fmt: skip
    answers = []
    with patch("api.cases.department_ref", _passes_any):
        for case_id, action, body in calls:
            key = uuid.uuid4().hex
            answers.append(await _answered(api, case_id, action, key, **body))
            answers.append(await _answered(api, case_id, action, key, **body))
    for status, code, took in answers:
        assert (status, code) == (409, "unknown_department"), answers
        assert took < 10, answers
    for case_id in (held, queued):
        s = await until(client, case_id, lambda s: True)
        counted = Counter(e.data["action"] for e in s.events if e.kind is EventKind.REJECTED)
        assert all(n == 1 for n in counted.values()), (counted, timeline_of(s))
        assert not s.co_handlers and s.escalation is None, timeline_of(s)
        await _ended_replayed(handle_of(client, case_id))


# --- 10. returned_into_the_queue's edges ---------------------------------------------------


async def test_the_queue_refuses_the_unit_whose_return_was_upheld_by_lapse(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    """Guard: max_reassignments 0; the centre decides 退单 within 1 s. Urban management's
    退单 lapses (逾期视为同意) and the case goes to the centre's queue: a 派单 back to it is
    refused 409 returned_by_this_unit by the API, and by the case when signalled directly;
    water takes it."""
    own = own_queue(_bound(settings).model_copy(update={
        "return_needs_approval": True, "return_decision_hours": 1 / 3600}),
        f"v37l-{uuid.uuid4().hex[:6]}")  # fmt: skip
    case_id = f"JS-V37A-LAPSE-{uuid.uuid4().hex[:6]}"
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue)
        try:
            await handle.signal("accept", _msg(URBAN))
            await handle.signal("return", _msg(URBAN, reason="Not ours: water"))
            s = await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
            kinds = event_kinds(s)
            assert "return_decision_overdue" in kinds and "return_upheld" in kinds, kinds
            await case_when(api, case_id, lambda c: c["status"] == "dispatching")
            refused = await act(api, case_id, "dispatch", SUPERVISOR, expect=409,
                                department_id="urban-management")  # fmt: skip
            assert refused["error"]["code"] == "returned_by_this_unit", refused
            await handle.signal("dispatch", _msg(DISPATCHER, department_id="urban-management",
                                                 department_name="城管"))  # fmt: skip
            s = await until(client, case_id, lambda s: "dispatch" in refusals(s))
            assert refusals(s)["dispatch"] == "returned_by_this_unit", timeline_of(s)
            await act(api, case_id, "dispatch", SUPERVISOR, department_id="water")
            s = await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
            assert s.department_id == "water", timeline_of(s)
            await replay_checked(await handle.fetch_history())
        finally:
            await handle.terminate("test over")


async def test_the_queue_may_dispatch_to_a_unit_that_raised_the_case(
    api: httpx.AsyncClient, client: Client
) -> None:
    """Guard: no 退单 at all — urban management raises the case (提级办) to the city
    government, which raises it again (no level above: the centre's queue). A 派单 back to
    urban management is no return's: the API takes it."""
    case_id = (await register(api))["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    handle = handle_of(client, case_id)
    try:
        await handle.signal("raise_level", _msg(URBAN, reason="超出本局职权"))
        await until(client, case_id, lambda s: s.department_id == "city-gov", within=20)
        await handle.signal("raise_level", _msg(CITY, reason="无更上级"))
        await until(client, case_id, lambda s: s.status is Status.DISPATCHING, within=20)
        await case_when(api, case_id, lambda c: c["status"] == "dispatching")
        await act(api, case_id, "dispatch", SUPERVISOR, department_id="urban-management")
        s = await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        assert s.department_id == "urban-management", timeline_of(s)
    finally:
        await _ended_replayed(handle)


def _story(*events: tuple[EventKind, str, dict[str, Any]]) -> CaseState:
    case = _rules_case(Status.DISPATCHING)
    case.events = [CaseEvent(seq=n, kind=kind, at=RULES_NOW, actor=DISPATCHER,
                             data={"department_id": unit, **data})
                   for n, (kind, unit, data) in enumerate(events, 1)]  # fmt: skip
    return case


def _e(kind: EventKind, unit: str, **data: Any) -> tuple[EventKind, str, dict[str, Any]]:
    return kind, unit, data


_A, _B, _Q = "urban-management", "water", "centre"


@pytest.mark.parametrize(("story", "refused", "allowed"), [
    # upheld by the centre's lapse (逾期视为同意), the bound: the queue
    ([_e(EventKind.ROUTED, _A), _e(EventKind.RETURNED, _A, awaiting_approval=True),
      _e(EventKind.RETURN_DECISION_OVERDUE, _A), _e(EventKind.RETURN_UPHELD, _A),
      _e(EventKind.QUEUED, _Q)], [_A], [_B]),
    # a second return, by another unit that held the case since: only that one is refused
    ([_e(EventKind.ROUTED, _A), _e(EventKind.RETURNED, _A), _e(EventKind.REASSIGNED, _B),
      _e(EventKind.ACCEPTED, _B), _e(EventKind.RETURNED, _B), _e(EventKind.QUEUED, _Q)],
     [_B], [_A]),
    # the reassignment child ended without a choice: the centre's queue decides
    ([_e(EventKind.ROUTED, _A), _e(EventKind.RETURNED, _A),
      _e(EventKind.REASSIGNMENT_STARTED, _A), _e(EventKind.REASSIGNMENT_FAILED, _A),
      _e(EventKind.REASSIGNED, _Q)], [_A], [_B]),
    # 提级办 with no level above: no 退单, anyone may take it
    ([_e(EventKind.ROUTED, _A), _e(EventKind.LEVEL_RAISE_REQUESTED, _A),
      _e(EventKind.REASSIGNED, _Q)], [], [_A, _B]),
    # a return the centre rejected, then 二次交办 to the queue
    ([_e(EventKind.ROUTED, _A), _e(EventKind.RETURNED, _A, awaiting_approval=True),
      _e(EventKind.RETURN_REJECTED, _A), _e(EventKind.SECOND_ASSIGNMENT_ORDERED, _A),
      _e(EventKind.REASSIGNED, _Q)], [], [_A, _B]),
    # 移交 from the returning unit's successor, which returns at the bound
    ([_e(EventKind.ROUTED, _A), _e(EventKind.RETURNED, _A), _e(EventKind.REASSIGNED, "police"),
      _e(EventKind.HANDED_OVER, "police", to_department_id=_B), _e(EventKind.REASSIGNED, _B),
      _e(EventKind.RETURNED, _B), _e(EventKind.QUEUED, _Q)], [_B], [_A, "police"]),
    # routed to the centre's queue at intake, a dispatch refused by the look-up since
    ([_e(EventKind.QUEUED, _Q), _e(EventKind.REJECTED, _Q, action="dispatch")], [], [_A]),
])  # fmt: skip
def test_the_queues_rule_on_the_returning_unit_by_its_path(
    story: list[tuple[EventKind, str, dict[str, Any]]], refused: list[str], allowed: list[str]
) -> None:
    """Guard: lifecycle.returned_into_the_queue (the API's 409 and the case's refusal) along
    the paths a case reaches the centre's queue by."""
    case = _story(*story)
    for unit in refused + allowed:
        found = lifecycle.check_dispatch(case, DispatchAction(
            actor=DISPATCHER, department_id=unit, department_name="U"))  # fmt: skip
        assert (found.code if found else None) == (
            "returned_by_this_unit" if unit in refused else None), (unit, found)
