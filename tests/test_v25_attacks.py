"""Red team of lean-case-v25 and the surfaces around it not attacked before.

- 重办 (a rehandle after a 不满意 rating) that should put the rehandling round on the
  dissatisfaction ladder, while another ladder climbs (a 并单 ladder started after the reply),
  and at the reassignment bound (the rehandling unit's 退单 queues the case);
- a 派单 out of the centre's queue whose unit's deadlines are slow to compute (a slow
  database: ``_SLOW``), with a supervisor's 督办 in a later task, and its worker-up twin; a
  督办 while the case is reassigned (改派中, the worker up);
- a 派单 of a case routing could not place with the new unit's 退单 in the same task (the
  worker down), and its worker-up twin;
- the refile of v23/v25 when several closed cases refile into one open case at once, when the
  same report reaches the closed case twice, when the case they would merge into closes in
  between, and what the repeat reporter's token shows of it;
- the intake's request dying once its 并单 reached a case that closed and refiles it: the
  client's keyed retry, and ``jiesu repair intakes`` (settle_pending) before and after the
  refile;
- the reassignment child's ``choose`` from any Temporal client (the centre; a citizen actor).

Defects found (each a strict xfail first, run with ``--runxfail`` to see it fail on the code
before its fix; all fixed the same session, 2026-11-24): the rehandling round of the last
不满意 on no ladder when another ladder climbed, and a 督办 during a 派单's set-up spent on the
centre (lean-case-v27); one during a reassignment spent on the returning unit, a forged choice
making the centre the case's unit, a citizen's forged choice taken (lean-case-v26); a
refiled report's token showing nothing of it (the citizen view); a keyed retry filing a
refiled report a second time, the repair deleting a refiled report, or losing it outright
when run during the refile (the intake). Guards: a rehandle at the bound; the 派单 and 退单 in
one task (and twin); three refiles into one open case, a duplicate 并单 and a refile into a
closing case; the keyed retry of a report an open case counted; the 督办 after a 派单 (worker
up).

Every scenario runs at once with the others (``outages``, helpers.Scenarios); each case's
history is replayed with today's code at its scenario's end.
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
    OPERATOR,
    Scenarios,
    attack_case_id,
    case_settled,
    child_of,
    complaint,
    department_clerk,
    event_kinds,
    eventually,
    handle_of,
    ladder_stopped,
    ladders_started,
    outage_scenarios,
    own_queue,
    refusals,
    replay_checked,
    served,
    setup_checked,
    signal_sent,
    started_assigned,
    timeline_of,
)
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from test_actions_timed_when_sent_attacks import CITIZEN
from test_hostile_messages import (
    _RELEASE,
    _SLOW,
    QUICK_TASKS,
    SUPERVISOR,
    URBAN,
    WATER,
    private_worker,
    rid,
    start_of,
    until,
)
from test_v20_attacks import _replied
from test_v21_orders_attacks import _act, _groups

from api.main import create_app
from jiesu.access.citizen_view import Reporter, citizen_case
from jiesu.case.domain import (
    CENTRE_ID,
    Actor,
    CaseState,
    ComplaintIntake,
    EscalationLevel,
    EscalationTrigger,
    EventKind,
    Role,
    Status,
)
from jiesu.config import Settings
from jiesu.intake import filing, merge
from worker import build_worker
from workflows import ComplaintWorkflow

COMPLAINTS = "/api/v1/complaints"
REPORTER = Actor(role=Role.CITIZEN, name="v25-attacks-reporter")
OPERATOR_ACTOR = Actor(role=Role.OPERATOR, name="v25-attacks-operator")


def _repeat(report_id: str | None = None) -> dict[str, Any]:
    """A 并单 as the intake signals it (a made-up report id unless given)."""
    return {
        "report_id": report_id or f"r-{uuid.uuid4().hex[:8]}", "actor": rid(REPORTER),
        "channel": "hotline", "description": "The loudspeaker again, every night",
        "received_at": datetime.now(UTC).isoformat(),
    }  # fmt: skip


def _rehandling(settings: Settings, bound: bool) -> Settings:
    """The first 不满意 is the last rehandle allowed: its round goes on the dissatisfaction
    ladder (``_rehandle``: unsatisfied_rounds >= max_unsatisfied_rounds)."""
    quick = _groups(settings)["bound" if bound else "quick"]
    return own_queue(quick.model_copy(update={"max_unsatisfied_rounds": 1}),
                     f"v25h-{uuid.uuid4().hex[:8]}")  # fmt: skip


# --- 1. 重办 at the last unsatisfied round -------------------------------------------------


async def _a_rehandle_at_the_last_round_is_supervised_though_another_ladder_climbed(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    """Replied; two 并单 in the rating window start the repeat reports' ladder (it presses the
    unit until a reply that came before it: it climbs on); then the citizen's 不满意 at the last
    round allowed: 重办, whose round the dissatisfaction ladder should supervise."""
    own = _rehandling(settings, bound=False)
    case_id = attack_case_id("V25A", "rrep")
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue)
        await _replied(client, handle)
        for _ in range(2):
            await handle.signal("repeat_report", _repeat())
        await until(client, case_id, lambda s: bool(s.escalation and s.escalation.active))
        await signal_sent(handle, "rate", CITIZEN, rating="unsatisfied", comment="Still loud")
        s = await case_settled(handle, lambda s: s.round > 1 and s.status is Status.ASSIGNED and (
            ladder_stopped(s, 1) or ((1, "dissatisfaction") not in ladders_started(s) and len(
                ladders_started(s)) > 1)))  # fmt: skip
        await replay_checked(await handle.fetch_history())
        await handle.terminate("test over")
    return s


async def test_a_rehandle_at_the_last_round_is_supervised_though_another_ladder_climbed(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    s = await outages.of(request)
    assert s.round > 1 and s.status is Status.ASSIGNED, timeline_of(s)
    assert ladders_started(s)[0] == (1, "repeat_reports"), timeline_of(s)
    e = s.escalation
    assert e is not None and e.active, (
        f"the rehandling round is on no ladder: ladders {ladders_started(s)}; {timeline_of(s)}")


@dataclass
class Rehandled:
    queued: CaseState  # after the rehandling unit's 退单 at the bound
    dispatched: CaseState  # after the centre's 派单 to water
    replied: CaseState  # after water's reply


async def _a_rehandle_at_the_bound_stays_on_the_dissatisfaction_ladder_to_its_reply(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> Rehandled:
    """max_reassignments 0 (the bound reached by any 退单), max_unsatisfied_rounds 1: a 不满意
    rehandles the case on the dissatisfaction ladder; the rehandling unit's 退单 queues it at the
    centre; the centre's 派单 to water; water's reply."""
    own = _rehandling(settings, bound=True)
    case_id = attack_case_id("V25A", "rbound")
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue)
        await _replied(client, handle)
        await signal_sent(handle, "rate", CITIZEN, rating="unsatisfied", comment="Still loud")
        s = await until(client, case_id, lambda s: s.round > 1 and s.status is Status.ASSIGNED)
        unit = department_clerk(s.department_id)
        await signal_sent(handle, "accept", unit)
        await until(client, case_id, lambda s: s.status is Status.HANDLING)
        await signal_sent(handle, "return", unit, reason="Not ours after all")
        queued = await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
        await signal_sent(handle, "dispatch", SUPERVISOR, department_id="water",
                          department_name="县水务局")  # fmt: skip
        dispatched = await until(
            client, case_id, lambda s: s.status is Status.ASSIGNED and s.department_id == "water")
        for step in ("accept", "contact"):
            await signal_sent(handle, step, WATER)
        await until(client, case_id, lambda s: s.contacted_at is not None)
        await signal_sent(handle, "reply", WATER, outcome="resolved", text="Fixed the speaker")
        replied = await case_settled(handle, lambda s: s.status is Status.REPLIED and not (
            s.escalation and s.escalation.active))  # fmt: skip
        await replay_checked(await handle.fetch_history())
        await handle.terminate("test over")
    return Rehandled(queued, dispatched, replied)


async def test_a_rehandle_at_the_bound_stays_on_the_dissatisfaction_ladder_to_its_reply(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard. The rehandle is not a 退单: at the bound it goes to a unit (not the queue), on the
    dissatisfaction ladder; that unit's 退单 at the bound queues the case with the ladder held
    at 督办 at most and no queue ladder beside it; it follows the case to water and stops at
    water's reply."""
    r = await outages.of(request)
    q = r.queued
    assert ladders_started(q) == [(1, "dissatisfaction")], timeline_of(q)
    assert q.escalation is not None and q.escalation.active, timeline_of(q)
    assert q.escalation.level <= EscalationLevel.SUPERVISE, timeline_of(q)
    d = r.dispatched
    assert ladders_started(d) == [(1, "dissatisfaction")], timeline_of(d)
    assert d.escalation is not None and d.escalation.active, timeline_of(d)
    p = r.replied
    assert p.escalation is not None and not p.escalation.active, timeline_of(p)
    assert p.status is Status.REPLIED and not refusals(p), timeline_of(p)


# --- 2. a 督办 in a later task while the 派单's deadlines are computed ----------------------


def _unrouted(case_id: str) -> Any:
    start = start_of(case_id)
    return start.model_copy(update={
        "facts": start.facts.model_copy(update={"category_id": "stray_animals"})})  # fmt: skip


async def _slow_dispatch(
    client: Client, pool: asyncpg.Pool, settings: Settings, case_id: str,
    during: Callable[[WorkflowHandle[Any, Any]], Awaitable[None]],
    done: Callable[[CaseState], bool], within: float = 30,
) -> CaseState:
    """An unrouted case in the centre's queue; the worker up, the 派单 to urban management,
    whose deadlines are slow to compute (``_SLOW``); ``during`` sent meanwhile, each in a task
    of its own; the computation released; the case once ``done`` (or after ``within`` s)."""
    queue = f"slow-{uuid.uuid4().hex[:8]}"
    async with private_worker(client, pool, settings, queue):
        handle = await client.start_workflow(
            ComplaintWorkflow.run, _unrouted(case_id), id=case_id, task_queue=queue,
            task_timeout=QUICK_TASKS,
        )  # fmt: skip
        await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
        _SLOW[case_id] = started = asyncio.Event()
        _RELEASE[case_id] = release = asyncio.Event()
        try:
            await signal_sent(handle, "dispatch", SUPERVISOR, department_id="urban-management",
                              department_name="城管局")  # fmt: skip
            await asyncio.wait_for(started.wait(), 30)  # the unit's deadlines being computed
            await during(handle)
            release.set()
            s = await case_settled(handle, done, within=within)
            await replay_checked(await handle.fetch_history())
        finally:
            _SLOW.pop(case_id, None)
            _RELEASE.pop(case_id, None)
            if (await handle.describe()).status.name == "RUNNING":
                await handle.terminate("test over")
    return s


async def _a_supervision_while_a_dispatch_is_set_up(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    """An unrouted case in the centre's queue; the worker up, the unit's deadlines slow to
    compute (``_SLOW``): the 派单 to urban management is taken; while its deadlines are computed,
    a supervisor's 督办 arrives in a later workflow task."""
    case_id = attack_case_id("V25A", "supdisp")

    async def supervised(handle: WorkflowHandle[Any, Any]) -> None:
        await signal_sent(handle, "supervise", SUPERVISOR, form="urge", note="Hurry up")
        await until(client, case_id, lambda s: any(
            e.kind is EventKind.ESCALATION_STARTED or refusals(s).get("supervise")
            for e in s.events))  # fmt: skip

    return await _slow_dispatch(
        client, pool, settings, case_id, supervised,
        lambda s: s.status is Status.ASSIGNED and (
            ladder_stopped(s, 1) or s.escalation is None or s.escalation.department_id == (
                "urban-management")), within=20)  # fmt: skip


async def _a_supervision_after_a_dispatch_worker_up(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    """The twin: the 督办 sent once the case shows the 派单 applied."""
    queue = f"v25t-{uuid.uuid4().hex[:8]}"
    case_id = attack_case_id("V25A", "supup")
    async with build_worker(client, pool, own_queue(settings, queue)):
        handle = await client.start_workflow(
            ComplaintWorkflow.run, _unrouted(case_id), id=case_id, task_queue=queue)
        await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
        await signal_sent(handle, "dispatch", SUPERVISOR, department_id="urban-management",
                          department_name="城管局")  # fmt: skip
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        await signal_sent(handle, "supervise", SUPERVISOR, form="urge", note="Hurry up")
        s = await until(client, case_id, lambda s: bool(s.escalation and s.escalation.active))
        await replay_checked(await handle.fetch_history())
        await handle.terminate("test over")
    return s


def _supervises_the_unit(s: CaseState) -> None:
    e = s.escalation
    assert s.status is Status.ASSIGNED and s.department_id == "urban-management", timeline_of(s)
    assert e is not None and e.form is not None, timeline_of(s)
    assert e.department_id == "urban-management", (
        f"the 督办 pressed {e.department_id!r}, not the unit: {timeline_of(s)}")
    assert e.active, timeline_of(s)


async def test_a_supervision_while_a_dispatch_is_set_up(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    _supervises_the_unit(await outages.of(request))


async def test_a_supervision_after_a_dispatch_worker_up(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard (the twin): the 督办 presses the unit the case was dispatched to."""
    _supervises_the_unit(await outages.of(request))


# --- 3. a 派单 of an unrouted case and the unit's 退单 in one task ------------------------


def _requeued(s: CaseState) -> bool:
    return s.status is Status.DISPATCHING and event_kinds(s).count("queued") >= 2


async def _a_dispatch_and_its_units_return_in_one_task(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    """Stray animals (no routing rule): in the queue from receipt. The worker down: the 派单 to
    urban management and urban management's 退单 in one task. Worker back: the 退单 meets the
    unit holding the case, the reassignment finds no other unit, the case is queued again."""
    own = own_queue(_groups(settings)["quick"], f"v25d-{uuid.uuid4().hex[:8]}")
    case_id = attack_case_id("V25A", "dispret")
    async with build_worker(client, pool, own):
        handle = await client.start_workflow(
            ComplaintWorkflow.run, _unrouted(case_id), id=case_id, task_queue=own.task_queue)
        await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
    await handle.signal("dispatch", _act(SUPERVISOR, department_id="urban-management",
                                         department_name="城管局")())  # fmt: skip
    await handle.signal("return", _act(URBAN, reason="Not ours: animal control")())
    async with build_worker(client, pool, own):
        s = await case_settled(handle, _requeued)
        await replay_checked(await handle.fetch_history())
        await handle.terminate("test over")
    return s


async def _a_dispatch_and_its_units_return_worker_up(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    own = own_queue(_groups(settings)["quick"], f"v25e-{uuid.uuid4().hex[:8]}")
    case_id = attack_case_id("V25A", "dispretup")
    async with build_worker(client, pool, own):
        handle = await client.start_workflow(
            ComplaintWorkflow.run, _unrouted(case_id), id=case_id, task_queue=own.task_queue)
        await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
        await handle.signal("dispatch", _act(SUPERVISOR, department_id="urban-management",
                                             department_name="城管局")())  # fmt: skip
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        await handle.signal("return", _act(URBAN, reason="Not ours: animal control")())
        s = await case_settled(handle, _requeued)
        await replay_checked(await handle.fetch_history())
        await handle.terminate("test over")
    return s


def _requeued_as_worker_up(s: CaseState) -> None:
    assert not refusals(s), timeline_of(s)
    kinds = event_kinds(s)
    assert kinds.count("dispatched") == 1 and kinds.count("returned") == 1, timeline_of(s)
    assert kinds.index("dispatched") < kinds.index("returned"), timeline_of(s)
    assert _requeued(s) and s.reassignments == 1, timeline_of(s)


async def test_a_dispatch_and_its_units_return_in_one_task(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard (outage): as with the worker up (the twin below)."""
    _requeued_as_worker_up(await outages.of(request))


async def test_a_dispatch_and_its_units_return_worker_up(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    _requeued_as_worker_up(await outages.of(request))


# --- 4. refiles (v23/v25) into one open case, twice, and into a case closing meanwhile ------


@dataclass
class Refiled:
    reports: dict[str, tuple[str, int]]  # name -> (the closed case, its 并单's repeat_reports.id)
    open_case: str  # B: the open case the reports of A1-A3 are of
    closing_case: str  # C: the case the reports of A4-A5 are of, withdrawn meanwhile
    states: dict[str, CaseState] = field(default_factory=dict)  # B and the A's, at the end
    started: list[str] = field(default_factory=list)  # every case to terminate at the end


async def _filed_as(pool: asyncpg.Pool, case_id: str, report_id: int) -> list[tuple[str, Any]]:
    """Each filing the refile of (case, report) made: a new case (id None) or a 并单 (its id)."""
    key = f"jiesu-refile:{case_id}:{report_id}"
    rows = await pool.fetch(
        "SELECT case_id, NULL::bigint AS id FROM intakes"
        " WHERE idempotency_key IN ($1, $1 || ':now')"
        " UNION ALL SELECT case_id, id FROM repeat_reports"
        " WHERE idempotency_key IN ($1, $1 || ':now')",
        key,
    )  # fmt: skip
    return [(r["case_id"], r["id"]) for r in rows]


async def _closed(pool: asyncpg.Pool, case_id: str) -> bool:
    return await pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id) == "closed"


async def _where_it_went(pool: asyncpg.Pool, case_id: str, report_id: int) -> list[Any]:
    """The report's path through refiles: each hop must be filed once; a 并单 of a case that
    closed before taking it is followed on (that case refiled it in turn)."""
    path: list[Any] = []
    while True:
        hops = await _filed_as(pool, case_id, report_id)
        path.append(hops)
        if len(hops) != 1:
            return path
        case_id, next_id = hops[0]
        if next_id is None or not await _closed(pool, case_id):
            return path
        report_id = next_id


async def _refiles_into_one_open_case_and_into_a_closing_one(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> Refiled:
    """Five cases A1-A5 filed and assigned; the worker down: each withdrawn by its citizen and
    reported again (merged: the read model shows it open). The reports of A1-A3 are made of
    B's problem (its address), those of A4-A5 of C's; A1's 并单 reaches it a second time (the
    intake's signal again). C is on a queue of its own, withdrawn too, its worker down until
    the A's have refiled into it. The A's worker back: A1-A3 refile into B at once, A4-A5 into
    C, which then takes them closed and refiles them in turn."""
    own = own_queue(settings, f"v25f-{uuid.uuid4().hex[:8]}")
    apart = own_queue(settings, f"v25g-{uuid.uuid4().hex[:8]}")
    names = [f"A{n}" for n in range(1, 6)]
    bodies = {name: complaint() for name in names}
    b_body, c_body = complaint(), complaint()
    ran = Refiled({}, "", "")
    try:
        async with (
            served(create_app(own, client=client, pool=pool)) as api,
            served(create_app(apart, client=client, pool=pool)) as api_apart,
        ):  # fmt: skip
            async with build_worker(client, pool, own), build_worker(client, pool, apart):
                for name, body in {**bodies, "B": b_body}.items():
                    filed = await api.post(COMPLAINTS, json=body, headers=OPERATOR)
                    assert filed.status_code == 201, filed.text
                    ran.started.append(filed.json()["case_id"])
                    ran.reports[name] = (filed.json()["case_id"], 0)
                filed = await api_apart.post(COMPLAINTS, json=c_body, headers=OPERATOR)
                assert filed.status_code == 201, filed.text
                ran.closing_case = filed.json()["case_id"]
                ran.started.append(ran.closing_case)
                ran.open_case = ran.reports.pop("B")[0]
                for case_id in ran.started:
                    await eventually(lambda c=case_id: pool.fetchval(
                        "SELECT status = 'assigned' FROM cases WHERE case_id = $1", c),
                        within=30)  # fmt: skip
            for name in names:  # the workers are down
                case_id = ran.reports[name][0]
                await handle_of(client, case_id).signal(
                    "withdraw", {"actor": rid(CITIZEN), "reason": "Sorted it myself"})
                again = await api.post(
                    COMPLAINTS, json={**bodies[name], "channel": "wechat"}, headers=OPERATOR)
                assert again.status_code == 200 and again.json()["merged"], again.text
                report_id = await pool.fetchval(
                    "SELECT id FROM repeat_reports WHERE case_id = $1", case_id)
                ran.reports[name] = (case_id, report_id)
                address = (b_body if name in ("A1", "A2", "A3") else c_body)["address"]
                await pool.execute(
                    "UPDATE repeat_reports SET payload = jsonb_set(payload, '{intake,address}',"
                    " to_jsonb($2::text)) WHERE id = $1",
                    report_id, address,
                )  # fmt: skip
            a1, a1_report = ran.reports["A1"]
            payload = await pool.fetchval(
                "SELECT payload FROM repeat_reports WHERE id = $1", a1_report)
            await handle_of(client, a1).signal(  # the intake's own signal of it, again
                "repeat_report", merge.repeat_signal(a1_report, payload))
            await handle_of(client, ran.closing_case).signal(
                "withdraw", {"actor": rid(CITIZEN), "reason": "Sorted it myself"})
        async with build_worker(client, pool, own):
            await asyncio.gather(*(asyncio.wait_for(handle_of(client, c).result(), 90)
                                   for c, _ in ran.reports.values()))  # fmt: skip
            async with build_worker(client, pool, apart):
                await asyncio.wait_for(handle_of(client, ran.closing_case).result(), 90)
                for name in ("A4", "A5"):
                    path = await _where_it_went(pool, *ran.reports[name])
                    ran.started.extend(c for hops in path for c, _ in hops)
                for case_id in {ran.open_case, *(c for c, _ in ran.reports.values())}:
                    ran.states[case_id] = await handle_of(client, case_id).query(
                        ComplaintWorkflow.state)
                for case_id, _ in ran.reports.values():
                    await replay_checked(await handle_of(client, case_id).fetch_history())
                await replay_checked(await handle_of(client, ran.closing_case).fetch_history())
        return ran
    finally:
        for case_id in set(ran.started):
            with contextlib.suppress(RPCError):
                await handle_of(client, case_id).terminate("test over")


async def test_refiles_into_one_open_case_and_into_a_closing_one(
    outages: Scenarios, request: pytest.FixtureRequest, pool: asyncpg.Pool
) -> None:
    """Guard. Three closed cases refile at once into one open case B: each report a 并单 of B,
    once (B counts three; its repeat ladder started once); A1, which took its report twice,
    refiled it once."""
    r = await outages.of(request)
    b = r.states[r.open_case]
    for name in ("A1", "A2", "A3"):
        path = await _where_it_went(pool, *r.reports[name])
        assert len(path) == 1 and len(path[0]) == 1, (name, path)
        assert path[0][0][0] == r.open_case, (name, path)
        a = r.states[r.reports[name][0]]
        refiled = [e.data for e in a.events if e.kind is EventKind.REPEAT_REFILED]
        assert len(refiled) == 1 and refiled[0]["refiled_as"] == r.open_case, (name, refiled)
    ids = [e.data["report_id"] for e in b.events if e.kind is EventKind.REPEAT_REPORTED]
    assert len(ids) == 3 == len(set(ids)) == b.repeat_count, timeline_of(b)
    triggers = [t for _, t in ladders_started(b)]
    assert triggers == [EscalationTrigger.REPEAT_REPORTS.value], timeline_of(b)


async def test_a_refile_into_a_case_that_closed_meanwhile_is_filed_again_once(
    outages: Scenarios, pool: asyncpg.Pool
) -> None:
    """Guard. The reports of A4 and A5 were refiled into C, open in the read model, which then
    took them closed: C refiled each in turn, once, into one open case of the problem."""
    try:  # the scenario of the test above, which gives both their cases
        r = await outages.of("test_refiles_into_one_open_case_and_into_a_closing_one")
    except KeyError:
        pytest.skip("runs with test_refiles_into_one_open_case_and_into_a_closing_one")
    finals = set()
    for name in ("A4", "A5"):
        path = await _where_it_went(pool, *r.reports[name])
        assert all(len(hops) == 1 for hops in path), (name, path)
        assert path[0][0][0] == r.closing_case, (name, path)  # merged into C first
        final = path[-1][0][0]
        assert final != r.closing_case and not await _closed(pool, final), (name, path)
        finals.add(final)
    assert len(finals) == 1, finals  # one problem, one open case: the first refile's


async def test_a_refiled_reports_token_shows_where_it_went(outages: Scenarios) -> None:
    try:  # the scenario of test_refiles_into_one_open_case_and_into_a_closing_one
        r = await outages.of("test_refiles_into_one_open_case_and_into_a_closing_one")
    except KeyError:
        pytest.skip("runs with test_refiles_into_one_open_case_and_into_a_closing_one")
    case_id, report_id = r.reports["A2"]
    view = citizen_case(r.states[case_id], Reporter(report_id=report_id))
    shown = [(e.kind.value, e.yours) for e in view.events]
    assert view.status is Status.CLOSED and view.resolution is not None, shown
    assert any(e.yours for e in view.events), (
        f"the reporter of 并单 {report_id} (refiled as {r.open_case}) is shown: {shown}")


# --- 5. the intake's request dies after its 并单 reached a case that closed and refiled it ----


class PowerCut(BaseException):
    """The API process dies here (not an Exception: nothing may handle it)."""


class _DiesAfterTheSignal:
    """The Temporal client of one intake request that dies once the repeat's signal has reached
    the case, before its row is marked ``started`` (the row stays ``pending``)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def get_workflow_handle(self, workflow_id: str) -> Any:
        real = self._client.get_workflow_handle(workflow_id)

        class Handle:
            async def signal(self, *args: Any, **kwargs: Any) -> None:
                await real.signal(*args, **kwargs)
                raise PowerCut

        return Handle()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@dataclass
class Crashed:
    case_id: str  # A: the case the 并单 was merged into
    report_id: int
    refiled_as: str | None  # the case A's refile filed it as (None: the worker-up twin)
    key: str  # the client's Idempotency-Key
    intake: ComplaintIntake
    own: Settings  # its worker's (on A's task queue: a query of the ended A is answered there)
    started: list[str] = field(default_factory=list)


REPAIR_HORIZON = timedelta(hours=24)
"""The repair's ``older_than`` here: the rows of the scenarios it is run for are made older
(AGED_FOR_THE_REPAIR); the keyed retries' rows (2 hours) are left to their retries."""
AGED_FOR_THE_REPAIR = timedelta(hours=30)


async def _a_report_whose_request_died(
    client: Client, pool: asyncpg.Pool, settings: Settings, withdrawn: bool,
    aged: timedelta = timedelta(hours=2),
) -> Crashed:
    """Case A filed and assigned; the worker down; A withdrawn (``withdrawn``; the worker-up
    twin: not); the same problem reported again with an Idempotency-Key, merged into A, and
    the request dies once A has the report's signal. The worker back: A (closed) refiles the
    report as a new case N and ends. The report's row is left pending, older than the repair's
    horizon (an hour)."""
    own = own_queue(settings, f"v25p-{uuid.uuid4().hex[:8]}")
    body = complaint()
    async with build_worker(client, pool, own):
        first = await filing.register(pool, client, own, ComplaintIntake.model_validate(body),
                                      OPERATOR_ACTOR, None)  # fmt: skip
        await until(client, first.case_id, lambda s: s.status is Status.ASSIGNED)
    a = handle_of(client, first.case_id)
    if withdrawn:
        await a.signal("withdraw", {"actor": rid(CITIZEN), "reason": "Sorted it myself"})
    key, again = f"v25-crash-{uuid.uuid4().hex}", ComplaintIntake.model_validate(
        {**body, "channel": "wechat"})  # fmt: skip
    with contextlib.suppress(PowerCut):
        await filing.register(pool, _DiesAfterTheSignal(client), own, again,  # type: ignore[arg-type]
                              OPERATOR_ACTOR, key)  # fmt: skip
    row = await pool.fetchrow("SELECT id, state FROM repeat_reports WHERE case_id = $1", a.id)
    assert row["state"] == "pending", row
    await pool.execute("UPDATE repeat_reports SET created_at = now() - $2::interval"
                       " WHERE id = $1", row["id"], aged)  # fmt: skip
    crashed = Crashed(a.id, row["id"], None, key, again, own, [a.id])
    async with build_worker(client, pool, own):
        if withdrawn:
            await asyncio.wait_for(a.result(), 60)
            crashed.refiled_as = await pool.fetchval(
                "SELECT refiled_as FROM repeat_reports WHERE id = $1", row["id"])
            assert crashed.refiled_as is not None, "precondition: the closed case refiled it"
            crashed.started.append(crashed.refiled_as)
        else:
            await until(client, a.id, lambda s: s.repeat_count == 1)
        await replay_checked(await a.fetch_history())
    return crashed


async def _end(client: Client, crashed: Crashed) -> None:
    for case_id in crashed.started:
        with contextlib.suppress(RPCError):
            await handle_of(client, case_id).terminate("test over")


async def _a_keyed_retry_after_the_crash(
    client: Client, pool: asyncpg.Pool, settings: Settings, withdrawn: bool
) -> tuple[Crashed, filing.Filing, int]:
    """The client retries the request that died, with its Idempotency-Key, once the case has
    dealt with the report: (the setup, the retry's answer, the 并单 of the refiled case N)."""
    crashed = await _a_report_whose_request_died(client, pool, settings, withdrawn)
    try:
        async with build_worker(client, pool, crashed.own):
            retry = await filing.register(pool, client, crashed.own, crashed.intake, OPERATOR_ACTOR,
                                          crashed.key)  # fmt: skip
        crashed.started.append(retry.case_id)
        of_n = 0 if crashed.refiled_as is None else await pool.fetchval(
            "SELECT count(*) FROM repeat_reports WHERE case_id = $1", crashed.refiled_as)
        return crashed, retry, of_n
    finally:
        await _end(client, crashed)


async def _a_keyed_retry_of_a_report_the_closed_case_refiled_gets_its_filing(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> tuple[Crashed, filing.Filing, int]:
    return await _a_keyed_retry_after_the_crash(client, pool, settings, withdrawn=True)


async def _a_keyed_retry_of_a_report_the_open_case_counted_gets_its_filing(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> tuple[Crashed, filing.Filing, int]:
    return await _a_keyed_retry_after_the_crash(client, pool, settings, withdrawn=False)


async def test_a_keyed_retry_of_a_report_the_closed_case_refiled_gets_its_filing(
    outages: Scenarios, request: pytest.FixtureRequest, pool: asyncpg.Pool
) -> None:
    crashed, retry, of_n = await outages.of(request)
    assert of_n == 0, (
        f"the retry filed the report again as a 并单 of {crashed.refiled_as}, the case the "
        f"refile made of it (answer: {retry})")
    assert retry.replayed, retry
    assert await pool.fetchval("SELECT refiled_as FROM repeat_reports WHERE id = $1",
                               crashed.report_id) == crashed.refiled_as  # fmt: skip


async def test_a_keyed_retry_of_a_report_the_open_case_counted_gets_its_filing(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard (the twin, A not withdrawn): the retry completes the pending row, A keeps it."""
    crashed, retry, _ = await outages.of(request)
    assert retry.replayed and retry.merged and retry.case_id == crashed.case_id, retry
    assert retry.report_id == crashed.report_id, retry


async def _settling_a_report_the_closed_case_refiled_keeps_it(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> tuple[Crashed, filing.Settled, Any]:
    """``jiesu repair intakes`` (settle_pending) once the closed case has refiled the report."""
    crashed = await _a_report_whose_request_died(client, pool, settings, withdrawn=True,
                                                 aged=AGED_FOR_THE_REPAIR)  # fmt: skip
    try:
        async with build_worker(client, pool, crashed.own):  # it answers the ended A's query
            settled = await filing.settle_pending(pool, client, REPAIR_HORIZON)
        row = await pool.fetchrow(
            "SELECT state, refiled_as FROM repeat_reports WHERE id = $1", crashed.report_id)
        return crashed, settled, row
    finally:
        await _end(client, crashed)


async def test_settling_a_report_the_closed_case_refiled_keeps_it(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    crashed, settled, row = await outages.of(request)
    name = f"{crashed.case_id}/repeat-{crashed.report_id}"
    assert name not in settled.removed, f"the repair removed the refiled report: {settled}"
    assert row is not None and row["state"] == "started", row
    assert row["refiled_as"] == crashed.refiled_as, row


_SLOW_REFILE = """
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger AS $$
BEGIN
    PERFORM pg_sleep(8);  -- the refile's bookkeeping of the batch's first report, slow
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER {name} BEFORE UPDATE ON repeat_reports FOR EACH ROW
WHEN (NEW.id = {report_id} AND NEW.refiled_as IS NOT NULL) EXECUTE FUNCTION {name}();
"""


async def _a_report_settled_while_its_closed_case_refiles_is_not_lost(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> tuple[dict[str, Any], filing.Settled, str]:
    """Case A filed and assigned; the worker down; A withdrawn; two reports of its problem
    merged into it: R1 filed, R2's request dying once A has its signal (pending, aged). The
    worker back: A (closed) refiles both in one batch; while the batch is at R1 (its
    bookkeeping slow: a test trigger), ``jiesu repair intakes`` runs. Returns A's record of R2,
    what the repair did, and R2's name in it."""
    own = own_queue(settings, f"v25s-{uuid.uuid4().hex[:8]}")
    body = complaint()
    started: list[str] = []
    trigger = f"v25_attacks_slow_{uuid.uuid4().hex[:8]}"
    try:
        async with build_worker(client, pool, own):
            first = await filing.register(pool, client, own, ComplaintIntake.model_validate(
                body), OPERATOR_ACTOR, None)  # fmt: skip
            started.append(first.case_id)
            await until(client, first.case_id, lambda s: s.status is Status.ASSIGNED)
        a = handle_of(client, first.case_id)
        await a.signal("withdraw", {"actor": rid(CITIZEN), "reason": "Sorted it myself"})
        r1 = await filing.register(pool, client, own, ComplaintIntake.model_validate(
            {**body, "channel": "wechat"}), OPERATOR_ACTOR, None)  # fmt: skip
        with contextlib.suppress(PowerCut):
            await filing.register(pool, _DiesAfterTheSignal(client), own,  # type: ignore[arg-type]
                                  ComplaintIntake.model_validate({**body, "channel": "app"}),
                                  OPERATOR_ACTOR, f"v25-crash-{uuid.uuid4().hex}")  # fmt: skip
        r2 = await pool.fetchval(
            "SELECT id FROM repeat_reports WHERE case_id = $1 AND state = 'pending'", a.id)
        assert r1.merged and r2 is not None, (r1, r2)
        await pool.execute("UPDATE repeat_reports SET created_at = now() - $2::interval"
                           " WHERE id = $1", r2, AGED_FOR_THE_REPAIR)  # fmt: skip
        await pool.execute(_SLOW_REFILE.format(name=trigger, report_id=int(r1.report_id or 0)))
        async with build_worker(client, pool, own):
            n = await eventually(lambda: pool.fetchval(
                "SELECT case_id FROM intakes WHERE idempotency_key = $1",
                f"jiesu-refile:{a.id}:{r1.report_id}"), within=30)  # fmt: skip
            started.append(n)
            settled = await filing.settle_pending(pool, client, REPAIR_HORIZON)
            await asyncio.wait_for(a.result(), 60)
            s = await a.query(ComplaintWorkflow.state)
            for e in s.events:
                if e.kind is EventKind.REPEAT_REFILED and e.data.get("refiled_as"):
                    started.append(e.data["refiled_as"])
            await replay_checked(await a.fetch_history())
        (mine,) = [e.data for e in s.events if e.kind is EventKind.REPEAT_REFILED
                   and e.data["report_id"] == str(r2)]  # fmt: skip
        return mine, settled, f"{a.id}/repeat-{r2}"
    finally:
        await pool.execute(f"DROP TRIGGER IF EXISTS {trigger} ON repeat_reports")
        await pool.execute(f"DROP FUNCTION IF EXISTS {trigger}()")
        for case_id in set(started):
            with contextlib.suppress(RPCError):
                await handle_of(client, case_id).terminate("test over")


async def test_a_report_settled_while_its_closed_case_refiles_is_not_lost(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    mine, settled, name = await outages.of(request)
    assert mine["refiled_as"] is not None, (
        f"R2 was filed nowhere: {mine}; the repair removed {settled.removed}")
    assert name not in settled.removed, settled


# --- 6. the reassignment child's ``choose`` from any Temporal client ------------------------


async def _forged_choice(
    client: Client, pool: asyncpg.Pool, settings: Settings, name: str, choice: dict[str, Any]
) -> CaseState:
    """Urban management accepts and returns the case (no approval, under the bound): the
    reassignment child waits for the dispatcher's choice (a 6 s window); a Temporal client
    signals it ``choice``. The case once its new round is set up."""
    own = own_queue(settings.model_copy(update={"dispatcher_window_minutes": 0.1}),
                    f"v25k-{uuid.uuid4().hex[:8]}")  # fmt: skip
    case_id = attack_case_id("V25A", name)
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue)
        await signal_sent(handle, "accept", URBAN)
        await until(client, case_id, lambda s: s.status is Status.HANDLING)
        await signal_sent(handle, "return", URBAN, reason="Not ours: police")
        s = await until(client, case_id, lambda s: s.reassignment is not None)
        assert s.reassignment is not None
        child = await child_of(client, s.reassignment.child_id)
        await child.signal("choose", choice)
        s = await case_settled(handle, lambda s: s.round > 1 and s.status is not Status.REASSIGNING)
        await replay_checked(await handle.fetch_history())
        await handle.terminate("test over")
    return s


async def _a_forged_choice_of_the_centre_does_not_make_it_the_cases_unit(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    choice = {"actor": rid(SUPERVISOR), "department_id": CENTRE_ID, "department_name": "中心"}
    return await _forged_choice(client, pool, settings, "choosecentre", choice)


async def test_a_forged_choice_of_the_centre_does_not_make_it_the_cases_unit(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    s = await outages.of(request)
    assert s.round > 1, timeline_of(s)
    assert not (s.status is Status.ASSIGNED and s.department_id == CENTRE_ID), (
        f"the case is assigned to the centre as a unit: {s.status} {s.assignment}; "
        f"{timeline_of(s)}")


async def _a_choice_by_a_non_dispatcher_is_not_taken(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    choice = {"actor": rid(CITIZEN), "department_id": "water", "department_name": "县水务局"}
    return await _forged_choice(client, pool, settings, "choosecitizen", choice)


async def test_a_choice_by_a_non_dispatcher_is_not_taken(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    s = await outages.of(request)
    (reassigned,) = [e for e in s.events if e.kind is EventKind.REASSIGNED]
    assert reassigned.actor.role is not Role.CITIZEN, (
        f"a citizen chose the unit: {reassigned.data} by {reassigned.actor}; {timeline_of(s)}")


async def _a_supervision_while_the_case_is_reassigned(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    """Worker up. Urban management returns the case (under the bound): it is REASSIGNING, the
    child waiting for the dispatcher's choice (6 s); a supervisor's 督办 (催办) meanwhile; the
    rule picks the next unit."""
    own = own_queue(settings.model_copy(update={"dispatcher_window_minutes": 0.1}),
                    f"v25m-{uuid.uuid4().hex[:8]}")  # fmt: skip
    case_id = attack_case_id("V25A", "supreass")
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue)
        await signal_sent(handle, "accept", URBAN)
        await until(client, case_id, lambda s: s.status is Status.HANDLING)
        await signal_sent(handle, "return", URBAN, reason="Not ours: police")
        await until(client, case_id, lambda s: s.status is Status.REASSIGNING)
        await signal_sent(handle, "supervise", SUPERVISOR, form="urge", note="Hurry up")
        await until(client, case_id, lambda s: bool(ladders_started(s)) or bool(refusals(s)))
        s = await case_settled(handle, lambda s: s.round > 1 and s.status is not Status.REASSIGNING
                               and (ladder_stopped(s, 1) or bool(refusals(s))),
                               within=30)  # fmt: skip
        await replay_checked(await handle.fetch_history())
        await handle.terminate("test over")
    return s


async def test_a_supervision_while_the_case_is_reassigned(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    s = await outages.of(request)
    if refusals(s).get("supervise"):
        return  # refused (wrong_status): the supervisor is told, nothing is lost
    e = s.escalation
    assert e is not None and e.department_id == s.department_id != "urban-management", (
        f"the 督办 pressed {e.department_id if e else None!r}; the case is with "
        f"{s.department_id!r}: {timeline_of(s)}")
    assert e.active, timeline_of(s)


# each test_x awaits its scenario _x, all run at once (helpers.outage_scenarios)
outages = outage_scenarios(*map(setup_checked, [
    _a_rehandle_at_the_last_round_is_supervised_though_another_ladder_climbed,
    _a_rehandle_at_the_bound_stays_on_the_dissatisfaction_ladder_to_its_reply,
    _a_supervision_while_a_dispatch_is_set_up,
    _a_supervision_after_a_dispatch_worker_up,
    _a_dispatch_and_its_units_return_in_one_task,
    _a_dispatch_and_its_units_return_worker_up,
    _refiles_into_one_open_case_and_into_a_closing_one,
    _a_keyed_retry_of_a_report_the_closed_case_refiled_gets_its_filing,
    _a_keyed_retry_of_a_report_the_open_case_counted_gets_its_filing,
    _settling_a_report_the_closed_case_refiled_keeps_it,
    _a_report_settled_while_its_closed_case_refiles_is_not_lost,
    _a_forged_choice_of_the_centre_does_not_make_it_the_cases_unit,
    _a_choice_by_a_non_dispatcher_is_not_taken,
    _a_supervision_while_the_case_is_reassigned,
]), at_once=10)
