"""Red team of lean-case-v23 (repeats-after-close-refiled-v1): the refile of a 并单 that reached
its case after the close (``_refile_late``, ``_refile_late_reports``, activities/refile.py).

All the cases run under one outage (a module fixture, ``_outage``): each is filed and assigned
with the worker up; the worker stops; the citizen's 撤诉 is sent (the read model cannot show
it) and the same problem is reported again through the API (merged into the case the read
model shows open); the worker comes back and the closed case files the report again. Per case:

- ``bound``: a Temporal client sends MAX_REFILED_REPORTS forged ``repeat_report`` signals
  (report ids the intake never gave) before the intake's real 并单 reaches the case;
- ``late``: the report was made nearly 24 h before the refile runs, and the refile's first
  attempt fails after it has filed (its bookkeeping ``UPDATE repeat_reports`` fails once: a
  test trigger on the real database), so the retry runs after the 24 h are past; meanwhile
  one more (forged) 并单 reaches the case while its refile loop runs;
- ``merged``: the report, as it reached the case, is of another case's open problem (its
  address): filed again, it is merged there;
- ``squatted``: before the refile runs, the operator who filed the 并单 files another report
  through the API under the refile's own Idempotency-Key (``jiesu-refile:<case>:<id>``:
  the case number and the report's sequential id are both known to it);
- ``refused``: the report's category no longer exists (the reference data changed: its
  payload names a category the catalogue does not hold), and a forged signal carries the
  real report id of ANOTHER case.

Defects found (strict xfails until fixed; all three pass now): the forged ids take the
whole bound and the real report behind them is dropped unrecorded (``bound``); the retried
refile files the report twice, a new case and a 并单 of itself (``late``: the intake judges
``received_at`` before it looks up the key, and
the fallback files under another key); a client's report under the refile's key makes the
refile an ``idempotency_key_reused`` refusal (``squatted``). Fixed by lean-case-v25
(late-reports-batched-v1: no bound on the intake's own reports), by the intake answering a
keyed retry whose time is now refused with its first filing, and by reserving the system's
key prefix (``jiesu-``: a client's key so is ``422 invalid_idempotency_key``).

Guards that pass: a 并单 reaching the case while its refile loop runs is taken by that loop;
a refused refile (category gone; another case's real report id) is recorded with its reason
and the case ends; a report of another open problem is merged there, once.

Also lean-case-v24, with guards that pass: a 派单 out of the centre's queue whose unit's
deadlines are slow to compute (test_hostile_messages' ``_SLOW``/``_RELEASE``), with a second
派单 and the unit's 签收 in its task and a 补充诉求 and a 撤诉 in later tasks; and a case queued at
the bound under its unit's 督办 ladder that leaves the queue (派单, 撤诉) in the 退单's own task,
before that ladder has stopped; two 退单 at the bound in one task (urban management's, then,
after a 派单 and its 签收, water's).

Every case's history is replayed with today's code at its test's end (``replay_checked``).
The worker-up twin of the refile cases is tests/test_repeat_after_close.py's
``test_worker_up_the_report_after_a_withdrawal_opens_a_new_case``: with the worker up the
intake sees the case closed and files the report once, as a new case.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from helpers import (
    OPERATOR,
    Scenarios,
    case_settled,
    complaint,
    event_kinds,
    eventually,
    handle_of,
    outage_scenarios,
    own_queue,
    replay_checked,
    served,
    timeline_of,
)
from temporalio.client import Client, WorkflowHandle
from test_actions_timed_when_sent import sent
from test_hostile_messages import (
    _RELEASE,
    _SLOW,
    CITIZEN,
    QUICK_TASKS,
    SUPERVISOR,
    URBAN,
    private_worker,
    rid,
    start_of,
    state_of,
    until,
)
from test_v21_orders_attacks import _act, _groups, _supervised

from api.main import create_app
from jiesu.case import lifecycle
from jiesu.case.domain import Actor, CaseState, EventKind, Role, Status
from jiesu.config import Settings
from worker import build_worker
from workflows import ComplaintWorkflow

COMPLAINTS = "/api/v1/complaints"
REPORTER = Actor(role=Role.CITIZEN, name="v24-attacks-reporter")
LATE_MARGIN = timedelta(seconds=15)  # the late report is this much younger than 24 h
CASES = ("bound", "late", "refused", "merged", "squatted")


@dataclass
class Ran:
    handle: WorkflowHandle
    report_id: int  # the intake's real 并单 (repeat_reports.id)
    other_report_id: int | None = None  # ``refused``: another case's real report
    open_case: str | None = None  # ``merged``: the open case of the report's problem


def _forged(report_id: str) -> dict[str, Any]:
    return {
        "report_id": report_id, "actor": rid(REPORTER), "channel": "hotline",
        "description": "The loudspeaker again", "received_at": datetime.now(UTC).isoformat(),
    }  # fmt: skip


async def _status(pool: asyncpg.Pool, case_id: str) -> str | None:
    return await pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id)


async def _refiled_as(pool: asyncpg.Pool, report_id: int) -> str | None:
    return await pool.fetchval("SELECT refiled_as FROM repeat_reports WHERE id = $1", report_id)


async def _refiled_events(pool: asyncpg.Pool, case_id: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT data FROM case_events WHERE case_id = $1 AND kind = 'repeat_refiled' ORDER BY seq",
        case_id,
    )  # fmt: skip
    return [r["data"] for r in rows]


async def _filings(pool: asyncpg.Pool, case_id: str, report_id: int) -> list[str]:
    """Every filing made for the report by the refile (its key ``jiesu-refile:<case>:<id>``,
    or that key ``:now``): the new cases and the 并单 it was filed as."""
    key = f"jiesu-refile:{case_id}:{report_id}"
    rows = await pool.fetch(
        "SELECT 'case ' || case_id AS f FROM intakes WHERE idempotency_key LIKE $1 || '%'"
        " UNION ALL SELECT 'repeat of ' || case_id FROM repeat_reports"
        " WHERE idempotency_key LIKE $1 || '%'",
        key,
    )  # fmt: skip
    return sorted(r["f"] for r in rows)


_FAIL_ONCE = """
CREATE OR REPLACE FUNCTION v24_attacks_refile_bookkeeping_fails() RETURNS trigger AS $$
DECLARE
    past timestamptz := (NEW.payload->>'received_at')::timestamptz + interval '24 hours 2 seconds';
BEGIN
    -- the first attempt, which filed at the report's own time, fails after filing; it waits
    -- until the report is more than 24 h old, so that the activity's retry runs after that
    IF NEW.refiled_as IS NOT NULL AND clock_timestamp() < past THEN
        PERFORM pg_sleep(extract(epoch FROM past - clock_timestamp()));
        RAISE EXCEPTION 'v24 attacks: the refile''s bookkeeping failed once';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
"""


async def _fail_once_after_filing(pool: asyncpg.Pool, report_id: int) -> None:
    """The report made 24 h minus LATE_MARGIN ago; the refile's first attempt fails once it
    has filed (see _FAIL_ONCE)."""
    at = datetime.now(UTC) - timedelta(hours=24) + LATE_MARGIN
    await pool.execute(
        "UPDATE repeat_reports SET payload = jsonb_set(payload, '{received_at}',"
        " to_jsonb($2::text)) WHERE id = $1",
        report_id, at.isoformat(),
    )  # fmt: skip
    await pool.execute(_FAIL_ONCE)
    await pool.execute(
        f"CREATE TRIGGER v24_attacks_fail_once BEFORE UPDATE ON repeat_reports FOR EACH ROW"
        f" WHEN (NEW.id = {int(report_id)}) EXECUTE FUNCTION v24_attacks_refile_bookkeeping_fails()"
    )  # fmt: skip


async def _of_the_problem(pool: asyncpg.Pool, report_id: int, address: str) -> None:
    await pool.execute(
        "UPDATE repeat_reports SET payload = jsonb_set(payload, '{intake,address}',"
        " to_jsonb($2::text)) WHERE id = $1",
        report_id, address,
    )  # fmt: skip


async def _category_gone(pool: asyncpg.Pool, report_id: int) -> None:
    await pool.execute(
        "UPDATE repeat_reports SET payload = jsonb_set(payload, '{intake,category_id}',"
        " '\"v24_attacks_deleted\"') WHERE id = $1",
        report_id,
    )  # fmt: skip


@pytest.fixture(scope="module")
async def _outage(client: Client, pool: asyncpg.Pool, settings: Settings) -> dict[str, Ran]:
    own = settings.model_copy(update={"task_queue": f"v24a-{uuid.uuid4().hex[:8]}"})
    bodies = {name: complaint() for name in CASES}
    open_body = complaint()
    ran: dict[str, Ran] = {}
    open_case: str | None = None
    try:
        async with served(create_app(own, client=client, pool=pool)) as api:
            async with build_worker(client, pool, own):
                for name in CASES:
                    filed = await api.post(COMPLAINTS, json=bodies[name], headers=OPERATOR)
                    assert filed.status_code == 201, filed.text
                    ran[name] = Ran(handle_of(client, filed.json()["case_id"]), 0)
                opened = await api.post(COMPLAINTS, json=open_body, headers=OPERATOR)
                assert opened.status_code == 201, opened.text
                open_case = opened.json()["case_id"]
                for r in ran.values():
                    await eventually(
                        lambda c=r.handle.id: _assigned(pool, c), within=30)  # fmt: skip
            for name, r in ran.items():  # the worker is down
                await r.handle.signal(
                    "withdraw", {"actor": rid(CITIZEN), "reason": "Sorted it myself"}
                )
                if name == "bound":  # forged ids first: they take the whole bound
                    for n in range(lifecycle.MAX_REFILED_REPORTS):
                        await r.handle.signal("repeat_report", _forged(f"forged-{n}"))
                again = await api.post(
                    COMPLAINTS, json={**bodies[name], "channel": "wechat"}, headers=OPERATOR
                )
                assert again.status_code == 200 and again.json()["merged"], again.text
                r.report_id = await pool.fetchval(
                    "SELECT id FROM repeat_reports WHERE case_id = $1", r.handle.id
                )
                if name == "squatted":  # the refile's key, taken by a client's report first
                    key = f"jiesu-refile:{r.handle.id}:{r.report_id}"
                    taken = await api.post(
                        COMPLAINTS, json=complaint(), headers={**OPERATOR, "Idempotency-Key": key}
                    )
                    # refused since the fix: a client's key may not be the system's own
                    assert taken.status_code == 422, taken.text
                    assert taken.json()["error"]["code"] == "invalid_idempotency_key", taken.text
        await _fail_once_after_filing(pool, ran["late"].report_id)
        await _category_gone(pool, ran["refused"].report_id)
        await _of_the_problem(pool, ran["merged"].report_id, open_body["address"])
        ran["merged"].open_case = open_case
        other = ran["late"].report_id  # a real report id, of another case
        await ran["refused"].handle.signal("repeat_report", _forged(str(other)))
        ran["refused"].other_report_id = other
        async with build_worker(client, pool, own):
            # while the late case's refile runs (filed, its bookkeeping held by the trigger):
            # one more 并单 reaches it, to be taken by the same loop before the workflow ends
            late = ran["late"]
            await eventually(lambda: pool.fetchval(
                "SELECT 1 FROM intakes WHERE idempotency_key = $1",
                f"jiesu-refile:{late.handle.id}:{late.report_id}"), within=30)  # fmt: skip
            await late.handle.signal("repeat_report", _forged("during-the-refile"))
            await asyncio.gather(*(
                asyncio.wait_for(r.handle.result(), 120) for r in ran.values()))  # fmt: skip
        yield ran
    finally:
        await pool.execute("DROP TRIGGER IF EXISTS v24_attacks_fail_once ON repeat_reports")
        await pool.execute("DROP FUNCTION IF EXISTS v24_attacks_refile_bookkeeping_fails()")
        for r in ran.values():  # the refiled cases: not left running
            for case_id in await pool.fetch(
                "SELECT case_id FROM intakes WHERE idempotency_key LIKE $1",
                f"jiesu-refile:{r.handle.id}:%",
            ):  # fmt: skip
                await handle_of(client, case_id["case_id"]).terminate("test over")
        if open_case is not None:
            await handle_of(client, open_case).terminate("test over")


async def _assigned(pool: asyncpg.Pool, case_id: str) -> bool:
    return await _status(pool, case_id) == "assigned"


async def test_forged_repeat_ids_do_not_crowd_out_a_real_report(
    _outage: dict[str, Ran], pool: asyncpg.Pool
) -> None:
    r = _outage["bound"]
    events = await _refiled_events(pool, r.handle.id)
    forged = [e for e in events if e["report_id"].startswith("forged-")]
    # lean-case-v25: the made-up ids are recorded for the first MAX_REFILED_REPORTS only, and
    # bound nothing else (v23-v24: a bound on all refiles, spent on them)
    assert len(forged) <= lifecycle.MAX_REFILED_REPORTS, len(forged)
    assert all(e["refiled_as"] is None and e["reason"] for e in forged), forged
    try:
        assert await _refiled_as(pool, r.report_id) is not None, (
            f"the real report {r.report_id} was dropped: {len(forged)} forged ids refiled "
            f"(nothing filed), the real one not recorded at all"
        )
    finally:
        await replay_checked(await r.handle.fetch_history())


async def test_a_retried_refile_files_the_report_once(
    _outage: dict[str, Ran], pool: asyncpg.Pool
) -> None:
    r = _outage["late"]
    filings = await _filings(pool, r.handle.id, r.report_id)
    try:
        first = await pool.fetchval(
            "SELECT case_id FROM intakes WHERE idempotency_key = $1",
            f"jiesu-refile:{r.handle.id}:{r.report_id}",
        )  # fmt: skip
        assert first is not None, ("precondition: the first attempt filed at the report's time",
                                   filings)  # fmt: skip
        assert len(filings) == 1, f"the report was filed {len(filings)} times: {filings}"
    finally:
        await replay_checked(await r.handle.fetch_history())


async def test_a_clients_key_does_not_take_the_refiles(
    _outage: dict[str, Ran], pool: asyncpg.Pool
) -> None:
    r = _outage["squatted"]
    events = await _refiled_events(pool, r.handle.id)
    try:
        assert await _refiled_as(pool, r.report_id) is not None, (
            f"the report was not filed again: {events}"
        )
    finally:
        await replay_checked(await r.handle.fetch_history())


async def test_a_report_reaching_the_case_while_its_refile_loop_runs_is_taken(
    _outage: dict[str, Ran], pool: asyncpg.Pool
) -> None:
    """Guard: a 并单 that reaches the closed case while its refile activity runs is taken by
    the same loop (recorded, here refused: a forged id) before the workflow ends."""
    r = _outage["late"]
    events = await _refiled_events(pool, r.handle.id)
    during = [e for e in events if e["report_id"] == "during-the-refile"]
    assert len(during) == 1 and during[0]["reason"] == "not a report of the intake", events
    assert [e["report_id"] for e in events] == [str(r.report_id), "during-the-refile"], events
    await replay_checked(await r.handle.fetch_history())


async def test_a_refused_refile_is_recorded_and_the_case_ends(
    _outage: dict[str, Ran], pool: asyncpg.Pool
) -> None:
    """Guard: a report whose category is gone is refused by the intake, recorded with the
    reason; another case's real report id sent by a client files nothing; the case ended."""
    r = _outage["refused"]
    events = {e["report_id"]: e for e in await _refiled_events(pool, r.handle.id)}
    mine = events[str(r.report_id)]
    assert mine["refiled_as"] is None and mine["reason"].startswith("unknown_category"), mine
    assert await _refiled_as(pool, r.report_id) is None
    theirs = events[str(r.other_report_id)]
    assert theirs["refiled_as"] is None and theirs["reason"] == "not a report of the intake"
    assert await _filings(pool, r.handle.id, r.other_report_id or 0) == []
    assert await _status(pool, r.handle.id) == "closed"
    await replay_checked(await r.handle.fetch_history())


async def test_a_refiled_report_of_another_open_problem_is_merged_there(
    _outage: dict[str, Ran], pool: asyncpg.Pool
) -> None:
    """Guard: the refile goes through the intake's own path, so a report of another case's
    open problem is a 并单 of that case, recorded ``merged``, once."""
    r = _outage["merged"]
    (event,) = await _refiled_events(pool, r.handle.id)
    assert event["refiled_as"] == r.open_case and event["merged"], event
    assert await _refiled_as(pool, r.report_id) == r.open_case
    assert await _filings(pool, r.handle.id, r.report_id) == [f"repeat of {r.open_case}"]
    await replay_checked(await r.handle.fetch_history())


# --- lean-case-v24: the messages of a 派单's task wait until the unit holds the case ---------


async def test_a_slow_dispatch_keeps_its_tasks_messages_and_the_later_ones_in_order(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    """Guard. A case waiting in the centre's queue (no routing rule); the worker down: a 派单
    to urban management, a second 派单 (to water) and the unit's 签收 in one task; the worker
    back with the unit's deadlines slow to compute (``_SLOW``): a 补充诉求 and a 撤诉 arrive in
    later tasks meanwhile. The unit holds the case first; the second 派单 is refused; the 签收,
    the 补充诉求 and the 撤诉 follow in the order sent; nothing is left waiting."""
    queue = f"v24d-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-V24A-DISPATCH-{uuid.uuid4().hex[:6]}"
    start = start_of(case_id)
    start = start.model_copy(update={
        "facts": start.facts.model_copy(update={"category_id": "stray_animals"})})  # fmt: skip
    async with private_worker(client, pool, settings, queue):
        handle = await client.start_workflow(
            ComplaintWorkflow.run, start, id=case_id, task_queue=queue, task_timeout=QUICK_TASKS
        )
        await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
    second, accept = rid(SUPERVISOR), rid(URBAN)
    await handle.signal("dispatch", _act(SUPERVISOR, department_id="urban-management",
                                         department_name="城管局")())  # fmt: skip
    await handle.signal(
        "dispatch",
        {
            "actor": sent(second, datetime.now(UTC)),
            "department_id": "water",
            "department_name": "县水务局",
        },
    )
    await handle.signal("accept", {"actor": sent(accept, datetime.now(UTC))})
    _SLOW[case_id] = started = asyncio.Event()
    _RELEASE[case_id] = release = asyncio.Event()
    try:
        async with private_worker(client, pool, settings, queue):
            await asyncio.wait_for(started.wait(), 30)  # the unit's deadlines being computed
            supplement, withdraw = rid(CITIZEN), rid(CITIZEN)
            await handle.signal("supplement", {"actor": sent(supplement, datetime.now(UTC)),
                                               "text": "It bit the neighbour's dog"})  # fmt: skip
            await handle.signal("withdraw", {"actor": sent(withdraw, datetime.now(UTC)),
                                             "reason": "Caught it myself"})  # fmt: skip
            release.set()
            await asyncio.wait_for(handle.result(), 60)
            s = await state_of(client, case_id)
            mine: dict[str, Any] = {}  # each action's first event (a 撤诉's, before closed)
            for e in s.events:
                if e.actor.request_id:
                    mine.setdefault(e.actor.request_id, e)
            order = [(e.seq, e.kind.value, e.data.get("code")) for e in s.events]
            assert mine[second["request_id"]].kind is EventKind.REJECTED, order
            unit = s.assignment.department_id if s.assignment else None
            assert unit == "urban-management", order
            seqs = [mine[r["request_id"]].seq for r in (accept, supplement, withdraw)]
            assert [mine[r["request_id"]].kind for r in (accept, supplement, withdraw)] == [
                EventKind.ACCEPTED,
                EventKind.SUPPLEMENTED,
                EventKind.WITHDRAWN,
            ], order
            assert seqs == sorted(seqs), order
            assert s.status is Status.CLOSED, order
            await replay_checked(await handle.fetch_history())
    finally:
        _SLOW.pop(case_id, None)
        _RELEASE.pop(case_id, None)


# --- lean-case-v24: the queue's ladder once the unit's has stopped ---------------------------


async def _under_the_units_ladder(client: Client, queue: str) -> WorkflowHandle:
    """max_reassignments 0; a supervisor's 督办 ladder climbs against urban management."""
    case_id = f"JS-V24A-QLAD-{uuid.uuid4().hex[:6]}"
    await client.start_workflow(
        ComplaintWorkflow.run, start_of(case_id), id=case_id, task_queue=queue
    )
    handle = handle_of(client, case_id)
    await _supervised(client, handle)
    return handle


def _queue_ladders(s: CaseState) -> list[int]:
    return [e.seq for e in s.events if e.kind is EventKind.ESCALATION_STARTED
            and e.data.get("trigger") == "reassignment_limit"]  # fmt: skip


async def _a_case_leaving_the_queue_before_the_units_ladder_stops_gets_no_queue_ladder(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    """Guard. With the worker down, urban management's 退单 at the bound (its 督办 ladder
    climbing) and, in the same task, a 派单 to water for one case and a 撤诉 for another: the
    case leaves the queue before the unit's ladder has stopped. No queue ladder starts (not
    against water, which holds the case; not on the withdrawn case) and the withdrawn case's
    workflow ends (the watcher does not keep it open)."""
    own = own_queue(_groups(settings)["bound"], f"v24q-{uuid.uuid4().hex[:6]}")
    async with build_worker(client, pool, own):
        dispatched, withdrawn = await asyncio.gather(
            _under_the_units_ladder(client, own.task_queue),
            _under_the_units_ladder(client, own.task_queue),
        )
    for handle in (dispatched, withdrawn):  # the worker is down
        await handle.signal("return", _act(URBAN, reason="Not ours: police")())
    await dispatched.signal("dispatch", _act(SUPERVISOR, department_id="water",
                                             department_name="县水务局")())  # fmt: skip
    await withdrawn.signal("withdraw", _act(CITIZEN, reason="Sorted it myself")())
    async with build_worker(client, pool, own):
        await asyncio.wait_for(withdrawn.result(), 30)
        # the unit's ladder stops (the round ended): the watcher takes its turn in that task
        s = await case_settled(dispatched, lambda s: s.status is Status.ASSIGNED and any(
            e.kind is EventKind.ESCALATION_STOPPED for e in s.events))  # fmt: skip
        assert any(e.kind is EventKind.ESCALATION_STOPPED for e in s.events), timeline_of(s)
        assert s.assignment is not None and s.assignment.department_id == "water", timeline_of(s)
        assert not _queue_ladders(s), timeline_of(s)
        kinds = event_kinds(s)
        assert kinds.index("queued") < kinds.index("escalation_stopped"), timeline_of(s)
        w = await withdrawn.query(ComplaintWorkflow.state)
        assert event_kinds(w).index("queued") < event_kinds(w).index("withdrawn"), timeline_of(w)
        assert w.status is Status.CLOSED and not _queue_ladders(w), timeline_of(w)
        await replay_checked(await dispatched.fetch_history())
        await replay_checked(await withdrawn.fetch_history())
        await dispatched.terminate("test over")


async def _two_returns_at_the_bound_in_one_task_leave_the_queue_on_its_ladder(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    """Guard. With the worker down, in one task: urban management's 退单 at the bound (its
    督办 ladder climbing), a 派单 to water, water's 签收 and water's 退单 at the bound. The
    case ends in the centre's queue once more, and once the ladders against the units have
    stopped the queue is on its own ladder (reassignment_limit)."""
    own = own_queue(_groups(settings)["bound"], f"v24r-{uuid.uuid4().hex[:6]}")
    async with build_worker(client, pool, own):
        handle = await _under_the_units_ladder(client, own.task_queue)
    water = Actor(role=Role.DEPARTMENT, name="water clerk", department_id="water")
    await handle.signal("return", _act(URBAN, reason="Not ours: water")())
    await handle.signal("dispatch", _act(SUPERVISOR, department_id="water",
                                         department_name="县水务局")())  # fmt: skip
    await handle.signal("accept", _act(water)())
    await handle.signal("return", _act(water, reason="Not ours either")())
    try:
        async with build_worker(client, pool, own):
            s = await case_settled(handle, lambda s: s.status is Status.DISPATCHING and bool(
                s.escalation and s.escalation.trigger.value == "reassignment_limit"
                and s.escalation.active))  # fmt: skip
            kinds = event_kinds(s)
            assert kinds.count("queued") == 2 and "accepted" in kinds, timeline_of(s)
            assert s.status is Status.DISPATCHING, timeline_of(s)
            e = s.escalation
            assert e is not None and e.active and e.trigger.value == "reassignment_limit", (
                timeline_of(s))  # fmt: skip
            await replay_checked(await handle.fetch_history())
    finally:
        await handle.terminate("test over")


# Both queue-ladder cases run at once (helpers.outage_scenarios), each on a task queue and a
# worker of its own: most of each is waited (the ladder's child starting, the worker stopped and
# started again, the case's one task), ~11 s each one after the other (docs/testing.md, "Suite
# wall time"). Each test asserts on its own case, in its scenario above, unchanged.
outages = outage_scenarios(
    _a_case_leaving_the_queue_before_the_units_ladder_stops_gets_no_queue_ladder,
    _two_returns_at_the_bound_in_one_task_leave_the_queue_on_its_ladder,
)


async def test_a_case_leaving_the_queue_before_the_units_ladder_stops_gets_no_queue_ladder(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard: ``_a_case_leaving_the_queue_before_the_units_ladder_stops_gets_no_queue_ladder``."""
    await outages.of(request)


async def test_two_returns_at_the_bound_in_one_task_leave_the_queue_on_its_ladder(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard: ``_two_returns_at_the_bound_in_one_task_leave_the_queue_on_its_ladder``."""
    await outages.of(request)
