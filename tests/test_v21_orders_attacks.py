"""Red team of lean-case-v21 (messages-after-decisions-v1): orders nobody had attacked yet.

v21 holds the later messages of a workflow task that decided something the main loop carries
out — a reassignment (``_reassign_next``) or the verdict on a reply — until the loop has begun
it (``_waits_for_loop``, ``_deferred``, ``_release_deferred``). Attacked here, each with the
worker stopped across an outage, the messages sent meanwhile, and the worker restarted (one
workflow task per case, the SDK applying its signals first), compared with what the same
messages give with the worker up (the ``*_worker_up`` twins, each message sent once the one
before has been applied):

- a dispatch (派单) out of the centre's queue — after the reassignment bound (a new round) and
  of a case routing could not place (the round it waited in) — with the new unit's messages
  (签收, 延期 request, 退单) and a supervisor's 督办 in its task;
- the supervision ladder's ``escalation_step`` (sent by the ladder's child; forged here as the
  child sends it, the child's own timers being hours away) in the task of a 退单 at the bound and
  of a 提级办;
- a 并单 (``repeat_report``) in the task of a 撤诉 and of a closing rating;
- a 督办 sent after a 退单's decision window lapsed at the bound (the message that takes the
  lapse itself, ``_lapses_before``).

All the outage cases run together, under one outage (a module fixture, ``_outage``), and the
worker-up twins together too (``_worker_up``), to keep the file's time modest. Every case's
history is replayed with today's code at its test's end (``replay_checked``).

Fixed since (their xfail marks removed): the messages that take a 退单's lapse themselves
(lean-case-v22, messages-after-lapses-v1: the three ``…after_a_returns_window_at_the_bound…``
tests XPASSed on it); the 并单 a closing case took and dropped (lean-case-v23,
repeats-after-close-refiled-v1: filed again, ``repeat_refiled``); the
dispatch out of the queue (D1: the messages of its task wait until the unit holds the case)
and the bound's queue left without its ladder (D4: the queue's ladder starts once the unit's
has stopped), both by lean-case-v24. No xfail is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from helpers import (
    case_settled,
    complaint,
    event_count,
    eventually,
    handle_of,
    ladder_token,
    own_queue,
    refusals,
    replay_checked,
    timeline_of,
    timer_fired,
)
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from test_actions_timed_when_sent import sent
from test_actions_timed_when_sent_attacks import CITIZEN
from test_hostile_messages import SUPERVISOR, URBAN, WATER, rid, start_of, until
from test_v20_attacks import _replied

from jiesu.case.domain import Actor, CaseState, ComplaintIntake, EventKind, Role, Status
from jiesu.config import Settings
from jiesu.intake import filing
from worker import build_worker
from workflows import ComplaintWorkflow

Payload = Callable[[], dict[str, Any]]
Setup = Callable[[Client, WorkflowHandle], Awaitable[None]]
LAPSE = b"return decision deadline"
WINDOW_SECONDS = 6.0  # the centre's window to decide a 退单 in the lapse cases
REPORTER = Actor(role=Role.CITIZEN, name="并单诉求人")
OPERATOR = Actor(role=Role.OPERATOR, name="v21-orders-operator")


def _act(actor: Actor, **data: Any) -> Payload:
    """A message's payload as the API sends it, stamped when it is sent."""
    return lambda: {"actor": sent(rid(actor), datetime.now(UTC)), **data}


def _dispatch(to: str) -> Payload:
    return _act(SUPERVISOR, department_id=to, department_name=to)


def _extension() -> Payload:
    promised = (datetime.now(UTC) + timedelta(days=20)).isoformat()
    return _act(WATER, reasons="Needs a contractor", measures="Site visited",
                promised_finish=promised)  # fmt: skip


def _repeat() -> Payload:
    def payload() -> dict[str, Any]:
        return {
            "report_id": f"r-{uuid.uuid4().hex[:8]}", "actor": rid(REPORTER),
            "channel": "hotline", "description": "The loudspeaker again, every night",
            "received_at": datetime.now(UTC).isoformat(),
        }  # fmt: skip

    return payload


def _step(level: int) -> Payload:
    """The ladder child's ``escalation_step`` of ladder 1 (as the child sends it)."""
    return lambda: {"n": 1, "level": level}


@dataclass
class Message:
    signal: str
    payload: Payload
    applied: Callable[[CaseState], bool]  # worker up: the case has applied it
    after_lapse: bool = False  # outage: sent once the case's 退单 window has lapsed


@dataclass
class Scenario:
    settings: str  # which worker's settings (GROUPS)
    category: str
    setup: Setup
    messages: list[Message]
    done: Callable[[CaseState], bool]


@dataclass
class Ran:
    handle: WorkflowHandle
    state: CaseState
    signal_errors: dict[str, RPCStatusCode] = field(default_factory=dict)
    later: CaseState | None = None  # once on the queue's ladder (QUEUE_LADDER_SCENARIOS)


def _groups(settings: Settings) -> dict[str, Settings]:
    quick = settings.model_copy(update={"dispatcher_window_minutes": 0.01})
    return {
        "quick": quick,
        "bound": quick.model_copy(update={"max_reassignments": 0}),
        "lapse": quick.model_copy(update={
            "max_reassignments": 0, "return_needs_approval": True,
            "return_decision_hours": WINDOW_SECONDS / 3600,
        }),
    }


# --- the cases as the worker up brings them to the outage -----------------------------------


async def _signal(client: Client, handle: WorkflowHandle, name: str, payload: Payload) -> None:
    body = payload()
    if name == "escalation_step":  # as the ladder sends it: with the case's word (v31)
        body["token"] = await ladder_token(client, handle.id, body["n"])
    await handle.signal(name, body)


async def _accepted(client: Client, handle: WorkflowHandle) -> None:
    await until(client, handle.id, lambda s: s.status is Status.ASSIGNED)
    await _signal(client, handle, "accept", _act(URBAN))
    await until(client, handle.id, lambda s: s.status is Status.HANDLING)


async def _queued_at_the_bound(client: Client, handle: WorkflowHandle) -> None:
    """max_reassignments 0: urban management's 退单 queues the case at the centre, on the
    ladder of the bound (reassignment_limit)."""
    await _accepted(client, handle)
    await _signal(client, handle, "return", _act(URBAN, reason="Not ours: police"))
    await until(client, handle.id, lambda s: s.status is Status.DISPATCHING and bool(
        s.escalation and s.escalation.active))  # fmt: skip


async def _queued_unrouted(client: Client, handle: WorkflowHandle) -> None:
    """No routing rule (stray animals): the case waits in the centre's queue from receipt."""
    await until(client, handle.id, lambda s: s.status is Status.DISPATCHING)


async def _supervised(client: Client, handle: WorkflowHandle) -> None:
    """Accepted, then a supervisor's 督办 at 提醒 (ladder 1 climbing, its first step taken)."""
    await _accepted(client, handle)
    await _signal(client, handle, "supervise", _act(SUPERVISOR, form="remind", note="Hurry up"))
    await until(client, handle.id, lambda s: bool(s.escalation and s.escalation.active))


async def _replied_case(client: Client, handle: WorkflowHandle) -> None:
    await until(client, handle.id, lambda s: s.status is Status.ASSIGNED)
    await _replied(client, handle)


async def _return_pending(client: Client, handle: WorkflowHandle) -> None:
    """Accepted, then a 退单 the centre must decide within WINDOW_SECONDS (the bound at 0)."""
    await _accepted(client, handle)
    await _signal(client, handle, "return", _act(URBAN, reason="Not ours: police"))
    await until(client, handle.id, lambda s: s.pending_return is not None)


async def _supervised_then_return_pending(client: Client, handle: WorkflowHandle) -> None:
    """A supervisor's ladder climbing (提醒), then a 退单 the centre must decide."""
    await _supervised(client, handle)
    await _signal(client, handle, "return", _act(URBAN, reason="Not ours: police"))
    await until(client, handle.id, lambda s: s.pending_return is not None)


# --- what is asserted of a case -------------------------------------------------------------


def _has(kind: EventKind, n: int = 1) -> Callable[[CaseState], bool]:
    return lambda s: event_count(s, kind) >= n


def _assigned_to(unit: str) -> Callable[[CaseState], bool]:
    return lambda s: s.status is Status.ASSIGNED and s.department_id == unit


def _closed(s: CaseState) -> bool:
    return s.status is Status.CLOSED


def _repeat_on_record(s: CaseState) -> bool:
    """Counted, refused, or (lean-case-v23, the case closed) filed again: repeat_refiled."""
    return any(
        e.kind in (EventKind.REPEAT_REPORTED, EventKind.REPEAT_REFILED)
        or (e.kind is EventKind.REJECTED and e.data.get("action") == "repeat_report")
        for e in s.events
    )


def _closed_with_the_report(s: CaseState) -> bool:
    return s.status is Status.CLOSED and _repeat_on_record(s)


SCENARIOS: dict[str, Scenario] = {
    # 1. a dispatch out of the queue with the new unit's messages
    "bound_dispatch_accept_extension": Scenario(
        "bound", "noise_commercial", _queued_at_the_bound,
        [
            Message("dispatch", _dispatch("water"), _assigned_to("water")),
            Message("accept", _act(WATER), _has(EventKind.ACCEPTED, 2)),
            Message("request_extension", _extension(), _has(EventKind.EXTENSION_REQUESTED)),
        ],
        lambda s: s.status is not Status.DISPATCHING and len(s.events) > 0,
    ),
    "bound_dispatch_return": Scenario(
        "bound", "noise_commercial", _queued_at_the_bound,
        [
            Message("dispatch", _dispatch("water"), _assigned_to("water")),
            Message("return", _act(WATER, reason="Not ours either: housing"),
                    _has(EventKind.RETURNED, 2)),
        ],
        lambda s: event_count(s, EventKind.REASSIGNED) >= 1,
    ),
    "unrouted_dispatch_accept": Scenario(
        "quick", "stray_animals", _queued_unrouted,
        [
            Message("dispatch", _dispatch("urban-management"), _assigned_to("urban-management")),
            Message("accept", _act(URBAN), _has(EventKind.ACCEPTED)),
        ],
        lambda s: s.status is not Status.DISPATCHING,
    ),
    "unrouted_dispatch_supervise": Scenario(
        "quick", "stray_animals", _queued_unrouted,
        [
            Message("dispatch", _dispatch("urban-management"), _assigned_to("urban-management")),
            Message("supervise", _act(SUPERVISOR, form="supervise", note="Get on with it"),
                    _has(EventKind.ESCALATION_STARTED)),
        ],
        lambda s: s.status is not Status.DISPATCHING and s.escalation is not None,
    ),
    "unrouted_dispatch_withdraw": Scenario(
        "quick", "stray_animals", _queued_unrouted,
        [
            Message("dispatch", _dispatch("urban-management"), _assigned_to("urban-management")),
            Message("withdraw", _act(CITIZEN, reason="Sorted it myself"), _closed),
        ],
        lambda s: _closed(s) and (_has(EventKind.DISPATCHED)(s) or _has(EventKind.REJECTED)(s)),
    ),
    "bound_return_dispatch": Scenario(
        "bound", "noise_commercial", _accepted,
        [
            Message("return", _act(URBAN, reason="Not ours: police"), _has(EventKind.QUEUED)),
            Message("dispatch", _dispatch("water"), _assigned_to("water")),
        ],
        lambda s: _assigned_to("water")(s) or bool(refusals(s)),
    ),
    "lapse_dispatch": Scenario(
        "lapse", "noise_commercial", _return_pending,
        [
            Message("dispatch", _dispatch("water"), _assigned_to("water"), after_lapse=True),
        ],
        lambda s: _assigned_to("water")(s) or (
            s.status is Status.DISPATCHING and bool(refusals(s))),
    ),
    # 2. the ladder's step in the task of a decided 退单 / 提级办 (guards)
    "bound_return_step": Scenario(
        "bound", "noise_commercial", _supervised,
        [
            Message("return", _act(URBAN, reason="Not ours: police"), _has(EventKind.QUEUED)),
            Message("escalation_step", _step(4), lambda s: bool(refusals(s))),
        ],
        lambda s: bool(refusals(s)),
    ),
    "raise_level_step": Scenario(
        "quick", "noise_commercial", _supervised,
        [
            Message("raise_level", _act(URBAN, reason="Beyond our authority"),
                    _has(EventKind.REASSIGNMENT_STARTED)),
            Message("escalation_step", _step(2), _has(EventKind.ESCALATED, 2)),
        ],
        lambda s: event_count(s, EventKind.ESCALATED) >= 2 or bool(refusals(s)),
    ),
    "decided_return_step": Scenario(
        "lapse", "noise_commercial", _supervised_then_return_pending,
        [
            Message("decide_return", _act(SUPERVISOR, upheld=True, note="Police matter"),
                    _has(EventKind.QUEUED)),
            Message("escalation_step", _step(2), lambda s: bool(refusals(s)) or event_count(
                s, EventKind.ESCALATED) >= 2),
        ],
        lambda s: s.status is Status.DISPATCHING and (
            bool(refusals(s)) or event_count(s, EventKind.ESCALATED) >= 2),
    ),
    "lapse_step": Scenario(
        "lapse", "noise_commercial", _supervised_then_return_pending,
        [
            Message("escalation_step", _step(2), lambda s: bool(refusals(s)) or event_count(
                s, EventKind.ESCALATED) >= 2, after_lapse=True),
        ],
        lambda s: s.status is Status.DISPATCHING and (
            bool(refusals(s)) or event_count(s, EventKind.ESCALATED) >= 2),
    ),
    # 3. a 并单 reaching a case that closes in the same task
    "withdraw_repeat": Scenario(
        "quick", "noise_commercial", _accepted,
        [
            Message("withdraw", _act(CITIZEN, reason="Sorted it myself"), _closed),
            Message("repeat_report", _repeat(), _closed),
        ],
        _closed_with_the_report,  # (the report filed again after the close: v23)
    ),
    "rating_repeat": Scenario(
        "quick", "noise_commercial", _replied_case,
        [
            Message("rate", _act(CITIZEN, rating="satisfied", comment="Quiet now"), _closed),
            Message("repeat_report", _repeat(), _closed),
        ],
        _closed_with_the_report,  # (the report filed again after the close: v23)
    ),
    "rating_supplement": Scenario(
        "quick", "noise_commercial", _replied_case,
        [
            Message("rate", _act(CITIZEN, rating="satisfied", comment="Quiet now"), _closed),
            Message("supplement", _act(CITIZEN, text="It was the shop at No. 12"), _closed),
        ],
        lambda s: _closed(s) and bool(refusals(s)),
    ),
    # 4. a 督办 that takes a 退单's lapse at the bound
    "lapse_supervise": Scenario(
        "lapse", "noise_commercial", _return_pending,
        [
            Message("supervise", _act(SUPERVISOR, form="supervise", note="Dispatch it"),
                    lambda s: bool(refusals(s)) or event_count(s, EventKind.ESCALATION_STARTED) > 1,
                    after_lapse=True),
        ],
        lambda s: s.status is Status.DISPATCHING and s.escalation is not None,
    ),
}


async def _started(
    client: Client, queues: dict[str, str], name: str, scenario: Scenario
) -> WorkflowHandle:
    case_id = f"JS-V21O-{name.upper().replace('_', '')[:18]}-{uuid.uuid4().hex[:6]}"
    start = start_of(case_id)
    start = start.model_copy(update={
        "facts": start.facts.model_copy(update={"category_id": scenario.category})})  # fmt: skip
    await client.start_workflow(
        ComplaintWorkflow.run, start, id=case_id, task_queue=queues[scenario.settings]
    )
    handle = handle_of(client, case_id)
    await scenario.setup(client, handle)
    return handle


@contextlib.asynccontextmanager
async def _workers(client: Client, pool: asyncpg.Pool, groups: dict[str, Settings],
                   queues: dict[str, str]):  # fmt: skip
    async with contextlib.AsyncExitStack() as stack:
        for group, own in groups.items():
            worker = build_worker(client, pool, own_queue(own, queues[group]))
            await stack.enter_async_context(worker)
        yield


async def _ran(handle: WorkflowHandle, done: Callable[[CaseState], bool]) -> CaseState:
    return await case_settled(handle, done, within=45)


@pytest.fixture(scope="module")
async def _outage(client: Client, pool: asyncpg.Pool, settings: Settings) -> dict[str, Ran]:
    """Every scenario's case brought to its outage with the workers up (the lapse cases last,
    their windows running); the workers stopped; each case's messages sent (the lapse cases'
    once their windows have lapsed, the workers still down); the workers back: each case
    applies what it got in one workflow task."""
    groups = _groups(settings)
    queues = {g: f"v21o-{g}-{uuid.uuid4().hex[:6]}" for g in groups}
    handles: dict[str, WorkflowHandle] = {}
    ordered = sorted(SCENARIOS.items(), key=lambda kv: kv[1].settings == "lapse")
    async with _workers(client, pool, groups, queues):
        for lapse in (False, True):  # the lapse cases last, all set up together
            names = [n for n, s in ordered if (s.settings == "lapse") is lapse]
            started = await asyncio.gather(*(
                _started(client, queues, n, SCENARIOS[n]) for n in names))  # fmt: skip
            handles.update(zip(names, started, strict=True))
    for name, scenario in ordered:  # the workers are gone
        if scenario.settings == "lapse":
            assert not await timer_fired(handles[name], LAPSE), "setup overran the window"
        for m in scenario.messages:
            if not m.after_lapse:
                await _signal(client, handles[name], m.signal, m.payload)
    for name, scenario in ordered:
        if any(m.after_lapse for m in scenario.messages):
            await eventually(lambda h=handles[name]: timer_fired(h, LAPSE), within=60)
            for m in scenario.messages:
                if m.after_lapse:
                    await _signal(client, handles[name], m.signal, m.payload)
    async with _workers(client, pool, groups, queues):
        states = await asyncio.gather(*(
            _ran(handles[name], s.done) for name, s in SCENARIOS.items()))  # fmt: skip
    return {name: Ran(handles[name], st) for name, st, in zip(SCENARIOS, states, strict=True)}


@pytest.fixture(scope="module")
async def _worker_up(client: Client, pool: asyncpg.Pool, settings: Settings) -> dict[str, Ran]:
    """The same cases and messages with the workers up: each message sent once the case has
    applied the one before (for the lapse case: once the lapse has queued the case). A message
    to a workflow that has completed is not delivered: its RPC error is kept."""
    groups = _groups(settings)
    queues = {g: f"v21u-{g}-{uuid.uuid4().hex[:6]}" for g in groups}

    async def one(name: str, scenario: Scenario) -> Ran:
        handle = await _started(client, queues, name, scenario)
        errors: dict[str, RPCStatusCode] = {}
        for m in scenario.messages:
            if m.after_lapse:
                await until(client, handle.id, lambda s: s.status is Status.DISPATCHING,
                            within=60)  # fmt: skip
            if (await handle.describe()).status is not WorkflowExecutionStatus.RUNNING:
                try:
                    await _signal(client, handle, m.signal, m.payload)
                except RPCError as err:
                    errors[m.signal] = err.status
                continue
            await _signal(client, handle, m.signal, m.payload)
            state = await case_settled(handle, m.applied, within=30)
            if state.status is Status.CLOSED:  # the workflow completes in the closing task
                await asyncio.wait_for(handle.result(), timeout=30)
        state = await _ran(handle, scenario.done)
        later = None
        if name in QUEUE_LADDER_SCENARIOS:  # the queue's ladder starts after the unit's stops
            later = await case_settled(handle, _on_the_queues_ladder, within=30)
        return Ran(handle, state, errors, later)

    async with _workers(client, pool, groups, queues):
        ran = await asyncio.gather(*(one(n, s) for n, s in SCENARIOS.items()))
    return dict(zip(SCENARIOS, ran, strict=True))


async def _replayed(ran: Ran) -> None:
    """Terminate the case if it still runs, then replay its history with today's code."""
    if (await ran.handle.describe()).status is WorkflowExecutionStatus.RUNNING:
        with contextlib.suppress(RPCError):
            await ran.handle.terminate("test finished")
    await replay_checked(await ran.handle.fetch_history())


# --- 1. a dispatch out of the centre's queue with the new unit's messages --------------------


def _unit_took_the_case(s: CaseState) -> None:
    """The new unit's messages, sent after the dispatch, applied as to its case: nothing
    refused (a refusal would be ``not_assigned``: the centre still holding the case)."""
    assert refusals(s) == {}, timeline_of(s)


def _check_bound_dispatch_accept_extension(s: CaseState) -> None:
    _unit_took_the_case(s)
    assert s.department_id == "water" and s.status is Status.HANDLING, timeline_of(s)
    assert event_count(s, EventKind.EXTENSION_REQUESTED) == 1, timeline_of(s)


def _check_bound_dispatch_return(s: CaseState) -> None:
    _unit_took_the_case(s)
    returned = [e.data.get("department_id") for e in s.events if e.kind is EventKind.RETURNED]
    assert returned == ["urban-management", "water"], timeline_of(s)


def _check_unrouted_dispatch_accept(s: CaseState) -> None:
    _unit_took_the_case(s)
    assert s.department_id == "urban-management" and s.status is Status.HANDLING, timeline_of(s)


def _check_unrouted_dispatch_supervise(s: CaseState) -> None:
    """The 督办 sent after the dispatch presses the unit the case was dispatched to: its ladder
    climbs against urban management. Not a ladder against the centre's queue (held at 督办)
    that the dispatch then ends at once."""
    started = [e.data for e in s.events if e.kind is EventKind.ESCALATION_STARTED]
    assert [d.get("department_id") for d in started] == ["urban-management"], timeline_of(s)
    assert s.escalation is not None and s.escalation.active, timeline_of(s)


async def test_a_dispatch_at_the_bound_and_the_units_accept_and_extension_in_one_task(
    _outage: dict[str, Ran],
) -> None:
    """Queued at the bound; worker down: the dispatcher's 派单 to water, then water's 签收 and
    延期 request. Worker up (the twin below): water holds the case, handling, its request
    recorded. One task: both are judged against the case still queued at the centre and
    refused ``not_assigned``; water holds a case it never accepted, its accept deadline
    running."""
    ran = _outage["bound_dispatch_accept_extension"]
    try:
        _check_bound_dispatch_accept_extension(ran.state)
    finally:
        await _replayed(ran)


async def test_a_dispatch_at_the_bound_and_the_units_accept_and_extension_worker_up(
    _worker_up: dict[str, Ran],
) -> None:
    ran = _worker_up["bound_dispatch_accept_extension"]
    _check_bound_dispatch_accept_extension(ran.state)
    await _replayed(ran)


async def test_a_dispatch_at_the_bound_and_the_units_return_in_one_task(
    _outage: dict[str, Ran],
) -> None:
    """Queued at the bound; worker down: 派单 to water, then water's 退单 ("not ours either").
    Worker up: the 退单 applies (at the bound still: queued again). One task: refused
    ``not_assigned``; water keeps a case it said is not its own."""
    ran = _outage["bound_dispatch_return"]
    try:
        _check_bound_dispatch_return(ran.state)
    finally:
        await _replayed(ran)


async def test_a_dispatch_at_the_bound_and_the_units_return_worker_up(
    _worker_up: dict[str, Ran],
) -> None:
    ran = _worker_up["bound_dispatch_return"]
    _check_bound_dispatch_return(ran.state)
    await _replayed(ran)


async def test_a_dispatch_of_an_unrouted_case_and_the_units_accept_in_one_task(
    _outage: dict[str, Ran],
) -> None:
    """No routing rule: queued from receipt (the dispatch keeps the round). Worker down: 派单 to
    urban management, then its 签收. Worker up: handling. One task: refused ``not_assigned``."""
    ran = _outage["unrouted_dispatch_accept"]
    try:
        _check_unrouted_dispatch_accept(ran.state)
    finally:
        await _replayed(ran)


async def test_a_dispatch_of_an_unrouted_case_and_the_units_accept_worker_up(
    _worker_up: dict[str, Ran],
) -> None:
    ran = _worker_up["unrouted_dispatch_accept"]
    _check_unrouted_dispatch_accept(ran.state)
    await _replayed(ran)


async def test_a_dispatch_and_a_supervision_order_in_one_task(_outage: dict[str, Ran]) -> None:
    """Queued from receipt; worker down: 派单 to urban management, then a supervisor's 督办 (sent
    after the dispatch, meant for the unit). Worker up: the ladder climbs against urban
    management. One task: the order is taken against the queued case (the centre, held at
    督办), and the dispatch, applied after it, ends that ladder at once: the unit is never
    supervised and the order counts against the case's MAX_SUPERVISION_ORDERS."""
    ran = _outage["unrouted_dispatch_supervise"]
    try:
        _check_unrouted_dispatch_supervise(ran.state)
    finally:
        await _replayed(ran)


async def test_a_dispatch_and_a_supervision_order_worker_up(_worker_up: dict[str, Ran]) -> None:
    ran = _worker_up["unrouted_dispatch_supervise"]
    _check_unrouted_dispatch_supervise(ran.state)
    await _replayed(ran)


# --- 2. the ladder's step in the task of a decided 退单 or 提级办 (guards) ----------------------


def _check_bound_return_step(s: CaseState) -> None:
    """A 会办 step (level 4) of the supervisor's ladder after the 退单 at the bound queued the
    case: refused (the queue holds the ladder at 督办 — centre_not_supervised — or the ladder
    has stopped at the queue's new round — stale_step); no 会办 against anyone."""
    assert set(refusals(s)) == {"escalation_step"}, timeline_of(s)
    assert refusals(s)["escalation_step"] in ("centre_not_supervised", "stale_step"), timeline_of(s)
    assert not any(e.kind is EventKind.ESCALATED and e.data["level"] == 4 for e in s.events)


def _check_raise_level_step(s: CaseState) -> None:
    """A 催办 step (level 2) after a 提级办: applied once, after reassignment_started, against
    the unit that held the round (the ladder's round has not ended yet)."""
    assert refusals(s) == {}, timeline_of(s)
    steps = [e for e in s.events if e.kind is EventKind.ESCALATED and e.data["level"] == 2]
    assert [e.data["department_id"] for e in steps] == ["urban-management"], timeline_of(s)
    kinds = [e.kind for e in s.events]
    assert kinds.index(EventKind.REASSIGNMENT_STARTED) < s.events.index(steps[0]), timeline_of(s)


async def test_a_return_at_the_bound_and_a_ladder_step_in_one_task(
    _outage: dict[str, Ran], _worker_up: dict[str, Ran]
) -> None:
    for ran in (_outage["bound_return_step"], _worker_up["bound_return_step"]):
        _check_bound_return_step(ran.state)
        await _replayed(ran)


async def test_a_raise_level_and_a_ladder_step_in_one_task(
    _outage: dict[str, Ran], _worker_up: dict[str, Ran]
) -> None:
    for ran in (_outage["raise_level_step"], _worker_up["raise_level_step"]):
        _check_raise_level_step(ran.state)
        await _replayed(ran)


# --- 3. a 并单 reaching a case that closes in the same task -----------------------------------


REPEAT_XFAIL = (
    "a repeat report the closed case takes is dropped without a trace (``_on_repeat_report`` "
    "returns silently); with the worker up the completed workflow refuses the signal "
    "(NOT_FOUND) and the intake files the report as a case of its own"
)


def _check_repeat_kept(s: CaseState) -> None:
    assert _repeat_on_record(s), (
        f"the repeat report left no trace on the closed case: {timeline_of(s)}"
    )


async def test_a_withdrawal_and_a_repeat_report_in_one_task(_outage: dict[str, Ran]) -> None:
    """Worker down: the citizen's 撤诉, then intake's 并单 of a new report of the same problem
    (the read model still shows the case open: the intake signals it, the signal is taken, the
    reporter is told the report joined the case — jiesu.intake.filing._tell_case). Worker up
    (the twin): the withdrawal closes the case and its workflow completes; the 并单 signal is
    refused NOT_FOUND, and the intake files the report as a new case. One task: the closed case
    takes the report and drops it — no repeat_reported, no refusal — and nobody handles the
    reporter's problem."""
    ran = _outage["withdraw_repeat"]
    try:
        _check_repeat_kept(ran.state)
    finally:
        await _replayed(ran)


async def test_a_closing_rating_and_a_repeat_report_in_one_task(_outage: dict[str, Ran]) -> None:
    """The unit replied. Worker down: the citizen's 满意 rating, then a 并单. One task (v21): the
    report waits behind the verdict (``_deferred``), is released at the close and dropped."""
    ran = _outage["rating_repeat"]
    try:
        _check_repeat_kept(ran.state)
    finally:
        await _replayed(ran)


async def test_a_repeat_report_after_the_close_worker_up(_worker_up: dict[str, Ran]) -> None:
    """Worker up: the closing message completes the workflow; the 并单 after it is refused by
    Temporal (NOT_FOUND), which the intake takes as the case closed (``_tell_case`` False: the
    report opens a case of its own)."""
    for name in ("withdraw_repeat", "rating_repeat"):
        ran = _worker_up[name]
        assert ran.signal_errors == {"repeat_report": RPCStatusCode.NOT_FOUND}, ran.signal_errors
        assert not _repeat_on_record(ran.state), timeline_of(ran.state)
        await _replayed(ran)


async def test_a_closing_rating_and_a_supplement_in_one_task(
    _outage: dict[str, Ran], _worker_up: dict[str, Ran]
) -> None:
    """Guard: a 补充诉求 behind a closing 满意 rating waits for the close (v21) and is refused on
    the record (wrong_status), the citizen answered 409; with the worker up the completed
    workflow refuses the signal (NOT_FOUND; the API, its read model closed, answers 409)."""
    outage, up = _outage["rating_supplement"], _worker_up["rating_supplement"]
    assert refusals(outage.state) == {"supplement": "wrong_status"}, timeline_of(outage.state)
    assert up.signal_errors == {"supplement": RPCStatusCode.NOT_FOUND}, up.signal_errors
    for ran in (outage, up):
        await _replayed(ran)


# --- 4. a 督办 that takes a 退单's lapse at the bound -----------------------------------------


def _check_lapse_supervise(s: CaseState) -> None:
    """The 退单 upheld by the centre's lapse queues the case at the bound, on the queue's ladder
    (reassignment_limit); the 督办 sent after the lapse is refused already_supervised."""
    assert s.status is Status.DISPATCHING, timeline_of(s)
    assert refusals(s) == {"supervise": "already_supervised"}, timeline_of(s)
    assert s.escalation is not None and s.escalation.trigger.value == "reassignment_limit", (
        timeline_of(s)
    )


async def test_a_supervision_order_after_a_returns_window_at_the_bound_in_one_task(
    _outage: dict[str, Ran],
) -> None:
    """max_reassignments 0, the centre's window to decide urban management's 退单 6 s. Worker
    down across the window's end; a supervisor's 督办 sent after it. Worker up (the twin): the
    lapse upholds the 退单, the case is queued with the ladder of the bound; the 督办 is refused
    already_supervised. One task: the 督办's own handling takes the lapse, then judges it
    against a copy with status dispatching and no ladder — taken (the supervisor's ladder,
    against urban management), and the queue's ladder never starts."""
    ran = _outage["lapse_supervise"]
    try:
        _check_lapse_supervise(ran.state)
    finally:
        await _replayed(ran)


async def test_a_supervision_order_after_a_returns_window_at_the_bound_worker_up(
    _worker_up: dict[str, Ran],
) -> None:
    ran = _worker_up["lapse_supervise"]
    _check_lapse_supervise(ran.state)
    await _replayed(ran)


# --- 2b. the ladder's step in the task of a 退单 upheld at the bound ---------------------------


def _no_step_against_the_returning_unit(s: CaseState) -> None:
    """Once the 退单 is upheld at the bound the case waits in the centre's queue: a later step
    of the supervisor's ladder is refused (stale, the ladder stopped at the queue's new round)
    or recorded against the centre — never a 催办 of urban management, which no longer holds
    the case (the step's notice tells its department to act at once)."""
    against = [
        e.data["department_id"] for e in s.events
        if e.kind is EventKind.ESCALATED and e.data["level"] == 2
    ]  # fmt: skip
    assert "urban-management" not in against, timeline_of(s)


async def test_a_return_upheld_at_the_bound_and_a_ladder_step_in_one_task(
    _outage: dict[str, Ran], _worker_up: dict[str, Ran]
) -> None:
    """Guard: the centre's decision upholding the 退单, then the ladder's 催办 step, both in one
    task: the step waits for the queue (v21) and meets the queued case."""
    for ran in (_outage["decided_return_step"], _worker_up["decided_return_step"]):
        _no_step_against_the_returning_unit(ran.state)
        await _replayed(ran)


async def test_a_ladder_step_after_a_returns_window_at_the_bound_in_one_task(
    _outage: dict[str, Ran],
) -> None:
    """A supervisor's ladder climbing; urban management's 退单 awaiting the centre (6 s); the
    worker down across the window's end; the ladder's 催办 step after it. Worker up (the twin):
    the lapse upholds the 退单, the case is queued, the step meets the queued case. One task:
    the step's handling takes the lapse and is judged against the queued copy (a 催办 passes
    the queue's 督办 ceiling), then recorded against the real case, still urban management's:
    escalated, department urban-management — its notice tells a unit whose 退单 was upheld to
    act on the case at once."""
    ran = _outage["lapse_step"]
    try:
        _no_step_against_the_returning_unit(ran.state)
    finally:
        await _replayed(ran)


async def test_a_ladder_step_after_a_returns_window_at_the_bound_worker_up(
    _worker_up: dict[str, Ran],
) -> None:
    ran = _worker_up["lapse_step"]
    _no_step_against_the_returning_unit(ran.state)
    await _replayed(ran)


# --- 1b. a dispatch and a 撤诉; a 退单 and a dispatch ----------------------------------------


def _check_dispatch_then_withdrawal(s: CaseState) -> None:
    """The dispatch, sent first, gives urban management the case; the 撤诉 after it closes the
    case: dispatched, then withdrawn, nothing refused (the dispatcher is told it took)."""
    assert refusals(s) == {}, timeline_of(s)
    kinds = [e.kind for e in s.events]
    assert EventKind.DISPATCHED in kinds, timeline_of(s)
    assert kinds.index(EventKind.DISPATCHED) < kinds.index(EventKind.WITHDRAWN), timeline_of(s)


async def test_a_dispatch_and_a_withdrawal_in_one_task(_outage: dict[str, Ran]) -> None:
    """Queued from receipt; worker down: 派单 to urban management, then the citizen's 撤诉.
    Worker up: dispatched, then withdrawn. One task: the 撤诉 closes the case before the main
    loop sets up the dispatch, which is then recorded refused (``wrong_status``, "the case
    closed before the dispatch … took effect", dispatch-overtaken-recorded-v1) — the dispatcher
    is answered 409 for a dispatch sent before the withdrawal. The case is closed either way."""
    ran = _outage["unrouted_dispatch_withdraw"]
    try:
        _check_dispatch_then_withdrawal(ran.state)
    finally:
        await _replayed(ran)


async def test_a_dispatch_and_a_withdrawal_worker_up(_worker_up: dict[str, Ran]) -> None:
    ran = _worker_up["unrouted_dispatch_withdraw"]
    _check_dispatch_then_withdrawal(ran.state)
    await _replayed(ran)


def _check_dispatched_to_water(s: CaseState) -> None:
    assert refusals(s) == {}, timeline_of(s)
    assert s.department_id == "water" and s.status is Status.ASSIGNED, timeline_of(s)


async def test_a_return_at_the_bound_and_a_dispatch_in_one_task(
    _outage: dict[str, Ran], _worker_up: dict[str, Ran]
) -> None:
    """Guard: the 退单 queues the case at the bound; a dispatch in its task waits for the queue
    (v21) and gives water the case, as with the worker up."""
    for ran in (_outage["bound_return_dispatch"], _worker_up["bound_return_dispatch"]):
        _check_dispatched_to_water(ran.state)
        await _replayed(ran)


async def test_a_dispatch_after_a_returns_window_at_the_bound_in_one_task(
    _outage: dict[str, Ran],
) -> None:
    """The centre's window on urban management's 退单 (6 s) ends with the worker down; a
    dispatcher's 派单 to water sent after it (a Temporal client, or a copy of the case ahead of
    the history: the API refuses it while its read model still shows the unit). Worker up: the
    lapse queued the case and the dispatch gives water the case. One task: the dispatch takes
    the lapse, then is judged against the case still handling — refused ``wrong_status`` — and
    the case waits in the queue for a dispatch that was sent."""
    ran = _outage["lapse_dispatch"]
    try:
        _check_dispatched_to_water(ran.state)
    finally:
        await _replayed(ran)


async def test_a_dispatch_after_a_returns_window_at_the_bound_worker_up(
    _worker_up: dict[str, Ran],
) -> None:
    ran = _worker_up["lapse_dispatch"]
    _check_dispatched_to_water(ran.state)
    await _replayed(ran)


# --- found on the way: the bound's queue left without its ladder (worker up too) -------------


async def test_a_return_at_the_bound_while_a_supervisor_ladder_climbs_leaves_the_queue_supervised(
    _worker_up: dict[str, Ran],
) -> None:
    """Worker up. A supervisor's 督办 ladder (提醒) climbs against urban management; its 退单 at
    the bound queues the case at the centre. A case queued at the bound without a ladder goes
    on the queue's ladder (reassignment_limit; docs/supervision.md: "the reassignment bound's
    queue" presses the dispatch desk up to 督办). Here the supervisor's ladder stops (the unit's
    round ended) and no other starts: the centre's queue waits unsupervised."""
    for name in QUEUE_LADDER_SCENARIOS:
        # lean-case-v24: the queue's ladder starts once the unit's has stopped (a round trip
        # with its child after the state the scenario captured): the fixture asked again
        s = _worker_up[name].later
        assert s is not None and _on_the_queues_ladder(s), (
            f"{name}: the queued case's ladder: {s.escalation and s.escalation.trigger.value}, "
            f"active {s.escalation and s.escalation.active}: {timeline_of(s)}"
        )


QUEUE_LADDER_SCENARIOS = ("bound_return_step", "decided_return_step", "lapse_step")


def _on_the_queues_ladder(s: CaseState) -> bool:
    e = s.escalation
    return e is not None and e.trigger.value == "reassignment_limit" and e.active


# --- 3b. the same 并单 through the intake: the reporter is told the report joined the case ---


async def _filed_after_a_withdrawal(
    client: Client, pool: asyncpg.Pool, settings: Settings, *, worker_up: bool
) -> tuple[filing.Filing, CaseState]:
    """A report filed through the intake (jiesu.intake.filing.register) on a queue of its own;
    its citizen's 撤诉; then the same citizen at the same address reports again. ``worker_up``:
    the 撤诉 is applied and the workflow completed before the second report; else the worker is
    down from the 撤诉 to after the second report (one task for both). Returns the second
    report's filing and the first case as it ends."""
    own = own_queue(settings.model_copy(update={"dispatcher_window_minutes": 0.01}),
                    f"v21o-intake-{uuid.uuid4().hex[:6]}")  # fmt: skip
    body = complaint()
    async with build_worker(client, pool, own):
        first = await filing.register(
            pool, client, own, ComplaintIntake.model_validate(body), OPERATOR, None
        )
        handle = handle_of(client, first.case_id)
        await until(client, first.case_id, lambda s: s.status is Status.ASSIGNED)
        await eventually(lambda: _read_model_has(pool, first.case_id), within=30)
        if worker_up:
            await _signal(client, handle, "withdraw", _act(CITIZEN, reason="Sorted it myself"))
            await asyncio.wait_for(handle.result(), timeout=30)
            await eventually(lambda: _read_model_closed(pool, first.case_id), within=30)
    if not worker_up:  # the worker is gone
        await _signal(client, handle, "withdraw", _act(CITIZEN, reason="Sorted it myself"))
    again = ComplaintIntake.model_validate({**body, "description": "The loudspeaker again."})
    second = await filing.register(pool, client, own, again, OPERATOR, None)
    async with build_worker(client, pool, own):
        await asyncio.wait_for(handle.result(), timeout=30)
        state = await handle.query(ComplaintWorkflow.state)
        if second.case_id != first.case_id:
            await handle_of(client, second.case_id).terminate("test finished")
        for e in state.events:  # a report filed again (lean-case-v23): its own case
            if e.kind is EventKind.REPEAT_REFILED and e.data.get("refiled_as"):
                await handle_of(client, e.data["refiled_as"]).terminate("test finished")
    await replay_checked(await handle.fetch_history())
    return second, state


async def _read_model_has(pool: asyncpg.Pool, case_id: str) -> bool:
    return bool(await pool.fetchval("SELECT 1 FROM cases WHERE case_id = $1", case_id))


async def _read_model_closed(pool: asyncpg.Pool, case_id: str) -> bool:
    status = await pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id)
    return status == Status.CLOSED.value


def _report_handled(second: filing.Filing, first_case: CaseState) -> None:
    """The second report is handled: a case of its own, or on the record of the case it
    joined — counted, or (lean-case-v23) filed again as another case. Not: told it joined a
    case that closed without a trace of it."""
    assert not second.merged or _repeat_on_record(first_case), (
        f"report told it joined {second.case_id} (merged), which closed without it: "
        f"{timeline_of(first_case)}"
    )
    refiled = [e for e in first_case.events if e.kind is EventKind.REPEAT_REFILED]
    assert all(e.data["refiled_as"] not in (None, second.case_id) for e in refiled), refiled


async def test_a_repeat_report_filed_during_an_outage_after_a_withdrawal(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    """Worker down after the citizen's 撤诉: the same citizen reports again; the read model
    still shows the case open, the intake merges the report into it (并单) — the signal is
    taken, the reporter is answered merged with a token of that case. The worker back, the
    case closes withdrawn and drops the report: nobody handles the second report."""
    second, state = await _filed_after_a_withdrawal(client, pool, settings, worker_up=False)
    _report_handled(second, state)


async def test_a_repeat_report_filed_after_a_withdrawal_worker_up(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    """Worker up: the withdrawn case is closed (read model, workflow completed); the second
    report opens a case of its own."""
    second, state = await _filed_after_a_withdrawal(client, pool, settings, worker_up=True)
    _report_handled(second, state)
    assert not second.merged
