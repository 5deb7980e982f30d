"""Red team of lean-case-v26 and lean-case-v27 and the ladder/reassignment children's signals.

- a 督办 in the same task as the unit's 退单, or as the lapse that upholds it (the worker down),
  and their worker-up twins (``not-supervised-while-reassigned-v1``);
- the reassignment child's ``choose`` forged with a dispatcher's role but a department that
  does not exist (``reassign-choice-judged-v1`` judges the chooser's role only);
- a 督办 that waits behind a 派单 whose unit's deadlines are slow to compute (``_SLOW``;
  ``supervision-after-dispatch-v1``): with a client's retry of it and a 撤诉 after it; with a
  撤诉 before it (the dispatch dropped: the waiting 督办 must get a clear refusal);
- the supervision ladder child's ``stop``, ``hold`` and ``release`` from any Temporal client: a
  forged ``stop`` of a supervisor's 督办, a forged ``hold`` of it (and its unheld twin), a forged
  ``release`` of a ladder the case holds at 督办 in the centre's queue;
- the last 重办's dissatisfaction ladder started after another ladder
  (``rehandle-ladder-after-the-other-v1``) when the rehandle's round lands in the centre's
  queue, and its twin with no other ladder.

Defects found (2026-11-24). Fixed the same session (lean-case-v28): the rehandle's ladder
started in the queue after the other kept the queue's ceiling against the unit dispatched
(``rehandle-ladder-held-in-queue-v1``); a forged ``release`` in the queue ended the ladder
recorded stopped at 问责, a level the case refused (``ladder-outcome-judged-v1``: the case's
own level and account; the queue's ladder takes over); a forged dispatcher choice of a
department that does not exist was taken (lean-case-v29, ``chosen-unit-checked-v1``: the
case looks the unit up); a forged ``stop`` ended a supervisor's 督办 and a forged ``hold``
capped it at 督办 for good (lean-case-v30, ``ladder-orders-signed-v1``: the case's ladder takes
its orders with the case's word only; these tests send them bare).

Guards: a 督办 with the 退单 in one task (outage) and its twin; a 督办 in the task of the 退单's
lapse (outage) and its twin; a waiting 督办, its retry, a second 督办 and a 撤诉 behind a slow
派单; a 督办 after a 撤诉 that overtook the 派单; the unheld ladder; the rehandle into the queue
with no other ladder.

Every scenario runs at once with the others (``outages``, helpers.Scenarios); each case's
history is replayed with today's code at its scenario's end. Each defect's test was a strict
xfail first, and failed with ``--runxfail`` for the reason it named on the code before its fix.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from helpers import (
    Scenarios,
    attack_case_id,
    case_settled,
    department_clerk,
    eventually,
    ladder_of,
    ladder_stopped,
    ladders_started,
    outage_scenarios,
    own_queue,
    refusals,
    replay_checked,
    setup_checked,
    signal_sent,
    started_assigned,
    timeline_of,
    until_past,
)
from temporalio.client import Client, WorkflowHandle
from test_hostile_messages import (
    CITIZEN,
    SUPERVISOR,
    URBAN,
    rid,
    until,
)
from test_v20_attacks import _replied
from test_v21_orders_attacks import _groups
from test_v25_attacks import (
    _forged_choice,
    _rehandling,
    _repeat,
    _slow_dispatch,
    _unrouted,
)

from jiesu.case.domain import (
    CaseState,
    EscalationLevel,
    EventKind,
    Status,
)
from jiesu.config import Settings
from worker import build_worker
from workflows import ComplaintWorkflow


def _stop_record(s: CaseState, n: int) -> dict[str, Any] | None:
    stops = (e.data for e in s.events if e.kind is EventKind.ESCALATION_STOPPED)
    return next((data for data in stops if data.get("n") == n), None)


# --- 1. a 督办 in the same task as the 退单 (worker down), and its twin -----------------------


async def _supervised_with_the_return(
    client: Client, pool: asyncpg.Pool, settings: Settings, worker_down: bool
) -> CaseState:
    """Urban management accepts (worker up); its 退单 (under the bound) and a supervisor's 督办
    right after it — with the worker down both reach the case in one task; worker up, the 督办
    once the case is reassigning. The rule picks the next unit (the window 0.6 s)."""
    own = own_queue(_groups(settings)["quick"], f"v27r-{uuid.uuid4().hex[:8]}")
    case_id = attack_case_id("V27A", "supret" + ("down" if worker_down else "up"))
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue)
        await signal_sent(handle, "accept", URBAN)
        await until(client, case_id, lambda s: s.status is Status.HANDLING)
        if not worker_down:
            await signal_sent(handle, "return", URBAN, reason="Not ours: police")
            await until(client, case_id, lambda s: s.reassignment is not None
                        or s.round > 1)  # fmt: skip
            await signal_sent(handle, "supervise", SUPERVISOR, form="urge", note="Hurry up")
    if worker_down:
        await signal_sent(handle, "return", URBAN, reason="Not ours: police")
        await signal_sent(handle, "supervise", SUPERVISOR, form="urge", note="Hurry up")
    async with build_worker(client, pool, own):
        s = await case_settled(handle, lambda s: s.round > 1 and s.status is not Status.REASSIGNING
                               and bool(refusals(s) or ladders_started(s)), within=30)  # fmt: skip
        await replay_checked(await handle.fetch_history())
        await handle.terminate("test over")
    return s


async def _a_supervision_in_the_task_of_the_return(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    return await _supervised_with_the_return(client, pool, settings, worker_down=True)


async def _a_supervision_after_the_return_worker_up(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    return await _supervised_with_the_return(client, pool, settings, worker_down=False)


def _refused_or_on_the_new_unit(s: CaseState) -> None:
    assert s.round > 1, timeline_of(s)
    if refusals(s).get("supervise") == "wrong_status":
        assert not ladders_started(s), timeline_of(s)
        return
    e = s.escalation
    assert e is not None and e.active and e.department_id == s.department_id != (
        "urban-management"), (
        f"the 督办 pressed {e.department_id if e else None!r}; the case is with "
        f"{s.department_id!r}: {timeline_of(s)}")  # fmt: skip


async def test_a_supervision_in_the_task_of_the_return(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard (outage): the 督办 waits for the reassignment the 退单 decided (it is deferred
    behind it) and is refused wrong_status, as with the worker up."""
    _refused_or_on_the_new_unit(await outages.of(request))


async def test_a_supervision_after_the_return_worker_up(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard (the twin)."""
    _refused_or_on_the_new_unit(await outages.of(request))


async def _supervised_after_the_lapse(
    client: Client, pool: asyncpg.Pool, settings: Settings, worker_down: bool
) -> CaseState:
    """The 退单 needs the centre's approval, undecided 3 s upheld (逾期视为同意), under the
    bound. Urban management accepts and returns the case; the window ends — with the worker
    down, the 督办 sent after its end reaches the case in the task its lapse comes in (the case
    upholds the 退单 before the 督办: ``_lapses_before``); worker up, the 督办 once the lapse
    has reassigned the case."""
    own = own_queue(_groups(settings)["quick"].model_copy(update={
        "return_needs_approval": True, "return_decision_hours": 3 / 3600}),
        f"v27l-{uuid.uuid4().hex[:8]}")  # fmt: skip
    case_id = attack_case_id("V27A", "lapse" + ("down" if worker_down else "up"))
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue)
        await signal_sent(handle, "accept", URBAN)
        await until(client, case_id, lambda s: s.status is Status.HANDLING)
        await signal_sent(handle, "return", URBAN, reason="Not ours: police")
        s = await until(client, case_id, lambda s: s.pending_return is not None)
        assert s.pending_return is not None and s.pending_return.decision_due is not None
        window_end = s.pending_return.decision_due + timedelta(seconds=0.5)
        if not worker_down:
            await until(client, case_id, lambda s: s.reassignment is not None or s.round > 1)
            await signal_sent(handle, "supervise", SUPERVISOR, form="urge", note="Hurry up")
    if worker_down:
        await until_past(window_end)
        await signal_sent(handle, "supervise", SUPERVISOR, form="urge", note="Hurry up")
    async with build_worker(client, pool, own):
        s = await case_settled(handle, lambda s: s.round > 1 and s.status is not Status.REASSIGNING
                               and bool(refusals(s) or ladders_started(s)), within=30)  # fmt: skip
        await replay_checked(await handle.fetch_history())
        await handle.terminate("test over")
    return s


async def _a_supervision_in_the_task_of_the_returns_lapse(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    return await _supervised_after_the_lapse(client, pool, settings, worker_down=True)


async def _a_supervision_after_the_returns_lapse_worker_up(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    return await _supervised_after_the_lapse(client, pool, settings, worker_down=False)


async def test_a_supervision_in_the_task_of_the_returns_lapse(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard (outage): the lapse the 督办 brings upholds the 退单 first; the 督办 meets the
    reassigning case (refused wrong_status) or the next unit, as with the worker up."""
    _refused_or_on_the_new_unit(await outages.of(request))


async def test_a_supervision_after_the_returns_lapse_worker_up(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard (the twin)."""
    _refused_or_on_the_new_unit(await outages.of(request))


# --- 2. a forged choice with a dispatcher's role ----------------------------------------------


async def _a_forged_dispatcher_choice_of_no_department(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    """The reassignment child's ``choose`` from a Temporal client: a supervisor's actor, a
    department id the reference data does not hold (the API would answer 4xx)."""
    choice = {"actor": rid(SUPERVISOR), "department_id": "no-such-unit",
              "department_name": "不存在的单位"}  # fmt: skip
    return await _forged_choice(client, pool, settings, "ghost", choice)


async def test_a_forged_dispatcher_choice_of_no_department(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    s = await outages.of(request)
    assert s.round > 1, timeline_of(s)
    assert s.department_id != "no-such-unit", (
        f"the case is {s.status} with a department that does not exist: {s.assignment}; "
        f"{timeline_of(s)}")


# --- 3. a 督办 waiting behind a 派单 whose deadlines are slow ------------------------------


def _supervise_payload() -> dict[str, Any]:
    actor = {**rid(SUPERVISOR), "sent_at": datetime.now(UTC).isoformat()}
    return {"actor": actor, "form": "urge", "note": "Hurry up"}


async def _a_waiting_supervision_retried_then_withdrawn(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    """While the deadlines are computed: a 督办, the client's retry of it (the same request
    id), a second 督办 (another request), then the citizen's 撤诉."""

    async def during(handle: WorkflowHandle[Any, Any]) -> None:
        first = _supervise_payload()
        await handle.signal("supervise", first)
        await handle.signal("supervise", first)  # the retry
        await handle.signal("supervise", _supervise_payload())
        await signal_sent(handle, "withdraw", CITIZEN, reason="Sorted it myself")

    return await _slow_dispatch(client, pool, settings, attack_case_id("V27A", "waitwd"), during,
                                lambda s: s.status is Status.CLOSED and (
                                    not s.escalation or not s.escalation.active))  # fmt: skip


async def test_a_waiting_supervision_retried_then_withdrawn(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard: the waiting 督办 presses the unit once (the retry is a retry), the second is
    refused already_supervised, the 撤诉 after them closes the case and stops the ladder."""
    s = await outages.of(request)
    assert s.status is Status.CLOSED, timeline_of(s)
    started = [e for e in s.events if e.kind is EventKind.ESCALATION_STARTED]
    assert len(started) == 1, timeline_of(s)
    assert started[0].data.get("department_id") == "urban-management", started[0].data
    refusals = [e.data for e in s.events if e.kind is EventKind.REJECTED]
    assert [r["action"] for r in refusals] == ["supervise"], refusals
    kinds = [e.kind for e in s.events]
    assert kinds.index(EventKind.ESCALATION_STARTED) < kinds.index(EventKind.WITHDRAWN), (
        timeline_of(s))
    assert ladder_stopped(s, 1), timeline_of(s)


async def _a_supervision_after_a_withdrawal_overtook_the_dispatch(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    """While the deadlines are computed: the citizen's 撤诉 (it closes the case), then a
    supervisor's 督办 (it waits for the dispatch, which is dropped)."""

    async def during(handle: WorkflowHandle[Any, Any]) -> None:
        await signal_sent(handle, "withdraw", CITIZEN, reason="Sorted it myself")
        await until(client, handle.id, lambda s: s.status is Status.CLOSED)
        await signal_sent(handle, "supervise", SUPERVISOR, form="urge", note="Hurry up")

    return await _slow_dispatch(client, pool, settings, attack_case_id("V27A", "wdsup"), during,
                                lambda s: bool(refusals(s).get("supervise")))  # fmt: skip


async def test_a_supervision_after_a_withdrawal_overtook_the_dispatch(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard: the waiting 督办 is answered once the dropped dispatch is over: refused
    (wrong_status), no ladder on the closed case."""
    s = await outages.of(request)
    assert s.status is Status.CLOSED, timeline_of(s)
    assert refusals(s).get("supervise") == "wrong_status", (
        f"the waiting 督办 got no answer: {refusals(s)}; {timeline_of(s)}")
    assert not ladders_started(s), timeline_of(s)


# --- 4. the ladder child's stop / release from any Temporal client ---------------------------


async def _signalled(handle: WorkflowHandle[Any, Any], name: str) -> bool:
    history = await handle.fetch_history()
    return any(e.HasField("workflow_execution_signaled_event_attributes")
               and e.workflow_execution_signaled_event_attributes.signal_name == name
               for e in history.events)  # fmt: skip


async def _a_forged_stop_of_a_supervisors_order(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    """A supervisor's 督办 (催办) against urban management, which has done nothing; a Temporal
    client signals the ladder child ``stop``."""
    own = own_queue(_groups(settings)["quick"], f"v27t-{uuid.uuid4().hex[:8]}")
    case_id = attack_case_id("V27A", "fstop")
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue)
        await signal_sent(handle, "supervise", SUPERVISOR, form="urge", note="Hurry up")
        await until(client, case_id, lambda s: bool(s.escalation and s.escalation.active))
        ladder = await ladder_of(client, case_id, 1)
        await ladder.signal("stop")
        s = await case_settled(handle, lambda s: ladder_stopped(s, 1), within=15)
        await replay_checked(await handle.fetch_history())
        await handle.terminate("test over")
    return s


async def test_a_forged_stop_of_a_supervisors_order(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    s = await outages.of(request)
    assert s.status is Status.ASSIGNED and not s.reply, timeline_of(s)
    e = s.escalation
    assert e is not None and e.active, (
        f"a forged stop ended the supervisor's 督办: {_stop_record(s, 1)}; {timeline_of(s)}")


async def _a_forged_release_of_a_ladder_held_in_the_queue(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    """Steps of 3 s; the bound reached by any 退单; the first 不满意 the last rehandle allowed.
    Replied, rated 不满意: the rehandling round on the dissatisfaction ladder; the rehandling
    unit's 退单 queues the case and the case tells the ladder ``hold`` (督办 at most). A
    Temporal client signals the ladder ``release``."""
    own = _rehandling(settings.model_copy(update={"escalation_step_hours": 3 / 3600}),
                      bound=True)  # fmt: skip
    case_id = attack_case_id("V27A", "frel")
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue)
        await _replied(client, handle)
        await signal_sent(handle, "rate", CITIZEN, rating="unsatisfied", comment="Still loud")
        s = await until(client, case_id, lambda s: s.round > 1 and s.status is Status.ASSIGNED)
        unit = department_clerk(s.department_id)
        await signal_sent(handle, "accept", unit)
        await until(client, case_id, lambda s: s.status is Status.HANDLING)
        await signal_sent(handle, "return", unit, reason="Not ours after all")
        await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
        ladder = await ladder_of(client, case_id, 1)
        await eventually(lambda: _signalled(ladder, "hold"), within=20)
        await ladder.signal("release")
        s = await case_settled(handle, lambda s: ladder_stopped(s, 1), within=25)
        await replay_checked(await handle.fetch_history())
        await handle.terminate("test over")
    return s


async def test_a_forged_release_of_a_ladder_held_in_the_queue(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    s = await outages.of(request)
    assert s.status is Status.DISPATCHING, timeline_of(s)
    stop = _stop_record(s, 1)
    assert stop is None or stop["final_level"] <= EscalationLevel.SUPERVISE, (
        f"ladder 1 recorded stopped at level {stop['final_level']} in the queue (the case "
        f"refused {refusals(s)}): {timeline_of(s)}")
    # v28: recorded at the case's level, and the queue's own ladder takes over; since v30 the
    # forged release is not taken at all (ladder-orders-signed-v1): ladder 1 stays held
    assert stop is None or stop.get("reason") == "climbed_past_the_case", stop
    e = s.escalation
    assert e is not None and e.active, timeline_of(s)


async def _a_supervisors_ladder_climbs(
    client: Client, pool: asyncpg.Pool, settings: Settings, forged_hold: bool
) -> CaseState:
    """Steps of 3 s. A supervisor's 督办 (form supervise) against urban management, which does
    nothing; with ``forged_hold`` a Temporal client signals the ladder ``hold`` (the case is
    with its unit, not in the queue). The case once the ladder has reached 会办 — or, after
    four steps' time, as it stands."""
    own = own_queue(_groups(settings)["quick"].model_copy(update={
        "escalation_step_hours": 3 / 3600}), f"v27c-{uuid.uuid4().hex[:8]}")  # fmt: skip
    case_id = attack_case_id("V27A", "fhold" if forged_hold else "climb")
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue)
        await signal_sent(handle, "supervise", SUPERVISOR, form="supervise", note="Now")
        await until(client, case_id, lambda s: bool(s.escalation and s.escalation.active))
        ladder = await ladder_of(client, case_id, 1)
        if forged_hold:
            await ladder.signal("hold")
        s = await case_settled(handle, lambda s: s.escalation is not None and (
            s.escalation.level >= EscalationLevel.JOINT_HANDLING), within=12)  # fmt: skip
        await replay_checked(await handle.fetch_history())
        await handle.terminate("test over")
    return s


async def _a_forged_hold_of_a_supervisors_ladder(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    return await _a_supervisors_ladder_climbs(client, pool, settings, forged_hold=True)


async def _a_supervisors_ladder_climbs_unheld(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    return await _a_supervisors_ladder_climbs(client, pool, settings, forged_hold=False)


def _climbed_past_supervise(s: CaseState) -> None:
    assert s.status is Status.ASSIGNED, timeline_of(s)
    e = s.escalation
    assert e is not None and e.n == 1, timeline_of(s)
    assert e.level >= EscalationLevel.JOINT_HANDLING, (
        f"the ladder against the unit stays at {e.level.name.lower()} (active {e.active}) "
        f"four steps on: {timeline_of(s)}")


async def test_a_forged_hold_of_a_supervisors_ladder(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    _climbed_past_supervise(await outages.of(request))


async def test_a_supervisors_ladder_climbs_unheld(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard (the twin: no forged hold): the ladder climbs past 督办 within four steps."""
    _climbed_past_supervise(await outages.of(request))


# --- 5. the last 重办's ladder started after the other, with the round in the queue ---------


async def _rehandled_into_the_queue(
    client: Client, pool: asyncpg.Pool, settings: Settings, other_ladder: bool
) -> CaseState:
    """Steps of 3 s; the first 不满意 the last rehandle allowed. Stray animals (no routing rule):
    dispatched out of the queue to urban management, which replies; with ``other_ladder`` two
    并单 start the repeat reports' ladder. The citizen's 不满意: the rehandle's reassignment
    finds no unit by rule, the case waits in the centre's queue; the centre dispatches it to
    water, which does nothing. The case once its ladder has reached 会办 against water — or,
    after four steps' time, as it stands."""
    own = _rehandling(settings.model_copy(update={"escalation_step_hours": 3 / 3600}),
                      bound=False)  # fmt: skip
    case_id = attack_case_id("V27A", "rhq" + ("other" if other_ladder else "alone"))
    async with build_worker(client, pool, own):
        handle = await client.start_workflow(
            ComplaintWorkflow.run, _unrouted(case_id), id=case_id, task_queue=own.task_queue)
        await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
        await signal_sent(handle, "dispatch", SUPERVISOR, department_id="urban-management",
                          department_name="城管局")  # fmt: skip
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        await _replied(client, handle)
        if other_ladder:
            for _ in range(2):
                await handle.signal("repeat_report", _repeat())
            await until(client, case_id, lambda s: bool(s.escalation and s.escalation.active))
        await signal_sent(handle, "rate", CITIZEN, rating="unsatisfied", comment="Still there")
        await until(client, case_id, lambda s: s.round > 1 and s.status is Status.DISPATCHING
                    and any(t == "dissatisfaction" for _, t in ladders_started(s)))  # fmt: skip
        await signal_sent(handle, "dispatch", SUPERVISOR, department_id="water",
                          department_name="县水务局")  # fmt: skip
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        s = await case_settled(handle, lambda s: s.escalation is not None and (
            s.escalation.level >= EscalationLevel.JOINT_HANDLING), within=15)  # fmt: skip
        await replay_checked(await handle.fetch_history())
        await handle.terminate("test over")
    return s


async def _a_rehandle_into_the_queue_after_another_ladder(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    return await _rehandled_into_the_queue(client, pool, settings, other_ladder=True)


async def _a_rehandle_into_the_queue_alone(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    return await _rehandled_into_the_queue(client, pool, settings, other_ladder=False)


def _rehandling_supervised_past_the_queue(s: CaseState) -> None:
    assert s.status is Status.ASSIGNED and s.department_id == "water", timeline_of(s)
    e = s.escalation
    assert e is not None and e.trigger.value == "dissatisfaction" and e.active, timeline_of(s)
    assert e.level >= EscalationLevel.JOINT_HANDLING, (
        f"the rehandling round's ladder stays at {e.level.name.lower()} against water four "
        f"steps after its dispatch: {timeline_of(s)}")


async def test_a_rehandle_into_the_queue_after_another_ladder(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    _rehandling_supervised_past_the_queue(await outages.of(request))


async def test_a_rehandle_into_the_queue_alone(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard (the twin, no other ladder): the ladder, held at 督办 in the queue, climbs on
    against water once dispatched."""
    _rehandling_supervised_past_the_queue(await outages.of(request))


# each test_x awaits its scenario _x, all run at once (helpers.outage_scenarios)
outages = outage_scenarios(*map(setup_checked, [
    _a_supervision_in_the_task_of_the_return,
    _a_supervision_after_the_return_worker_up,
    _a_supervision_in_the_task_of_the_returns_lapse,
    _a_supervision_after_the_returns_lapse_worker_up,
    _a_forged_dispatcher_choice_of_no_department,
    _a_waiting_supervision_retried_then_withdrawn,
    _a_supervision_after_a_withdrawal_overtook_the_dispatch,
    _a_forged_stop_of_a_supervisors_order,
    _a_forged_release_of_a_ladder_held_in_the_queue,
    _a_forged_hold_of_a_supervisors_ladder,
    _a_supervisors_ladder_climbs_unheld,
    _a_rehandle_into_the_queue_after_another_ladder,
    _a_rehandle_into_the_queue_alone,
]), at_once=13)
