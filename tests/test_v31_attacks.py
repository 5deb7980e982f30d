"""Red team of lean-case-v31..v33 and the department retirement (2026-11-25).

- the ladder's signed steps (``ladder-steps-signed-v1``): a step sent in the workflow task that
  starts a ladder (a supervisor's 督办 order and the step reaching a case whose worker was down,
  or busy), bare on a case's first ladder and signed with the previous ladder's token on the
  next; a step with the ladder's own token that skips a level, a bare one, a duplicate; the
  token read from the ladder's start input climbing it one step at a time; a step after the
  case closed;
- 单位停用 (jiesu/admin/departments.py): a retired unit named by a 派单 and a 会办 sent to the
  case directly (any Temporal client, past the API's ``name_for_work``); a scheduled
  retirement's moment as routing meets it; a retirement and a reinstatement racing with
  If-Match; 提级办 from a unit whose parent is retired, end to end;
- 改派 after an upheld 退单 (``returned_by_this_unit``): a unit that returned the case in an
  earlier round may still be chosen, the one whose return was just upheld may not;
- 督办中的工单 (``cases.ladder_active``): a ladder whose child another client terminated.

Defects found (2026-11-25, each a strict xfail failing with AssertionError under
``--runxfail``): a step reaching the case in the workflow task that starts a ladder was judged
before ``Ladder._climb`` had set the ladder's ``start_level`` and token — a bare 问责 on a
case's first ladder, or one signed with the previous ladder's token on the next, was recorded
with an accountability referral against the unit (fixed the same day, lean-case-v34: the
ladder's word and start level are set in the task that starts it; the two tests pass); a 派单,
a 会办 and a 督办 of the form 会办 signalled to the case directly name a retired (or made-up)
unit and the case takes it, looked up nowhere (fixed 2026-11-25, lean-case-v37
``units-looked-up-v1``: the case looks the units up itself; the three tests pass). Left open
as accepted (docs/supervision.md): the token read from the ladder's input signs a climb to 问责
one step at a time.

Guards: steps with the ladder's token that skip a level, repeat it or name another ladder are
refused stale_step, a bare one unsigned_step; a step after the case closed; a scheduled
retirement takes effect at its moment (routing, the case's look-up, the API); If-Match keeps a
reinstatement from undoing a retirement it did not see; 提级办 under a retired parent goes to the
centre's queue; 改派 after two upheld 退单; a terminated ladder leaves 督办中的工单.

Each signal scenario runs at once with the others (``outages``, helpers.Scenarios), on a task
queue of its own; each case's history is replayed with today's code at its scenario's end.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import (
    SUPERVISOR,
    Scenarios,
    act,
    attack_case_id,
    auth,
    case_when,
    department,
    department_clerk,
    event_kinds,
    eventually,
    handle_of,
    ladder_of,
    outage_scenarios,
    refusals,
    register,
    replay_checked,
    setup_checked,
    signal_sent,
    signed_in,
    started_assigned,
    token_in,
    until,
    until_past,
)
from helpers import case_settled as _settled
from helpers import own_queue as _own
from helpers import timeline_of as _timeline
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from activities.routing import RoutingActivities
from jiesu.case.domain import (
    CENTRE_ID,
    Actor,
    CaseState,
    EscalationLevel,
    EventKind,
    Role,
    Status,
)
from jiesu.config import Settings
from jiesu.ops.demo_data import demo_key
from worker import build_worker

URBAN = department_clerk("urban-management")
DISPATCHER = Actor(role=Role.SUPERVISOR, name="v31 supervisor")
URBAN_KEY = department("urban-management")
ADMIN = auth(demo_key("demo-admin"))
A = "/api/v1/admin"


def _case_id(name: str) -> str:
    return attack_case_id("V31A", name)


def _referrals(s: CaseState) -> list[dict[str, Any]]:
    return [e.data for e in s.events if e.kind is EventKind.ACCOUNTABILITY_RECORDED]


def _levels(s: CaseState, n: int) -> list[int]:
    """The levels the case recorded for its ladder ``n``."""
    return [e.data["level"] for e in s.events
            if e.kind is EventKind.ESCALATED and e.data["n"] == n]  # fmt: skip


def _step_answered(s: CaseState, n: int) -> bool:
    """The case took or refused a step of ladder ``n`` beyond its first."""
    return "escalation_step" in refusals(s) or any(level > 1 for level in _levels(s, n))


# --- 1. a step in the workflow task that starts the ladder ------------------------------------


async def _a_bare_step_in_the_task_that_starts_the_ladder(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    """A case assigned to urban management; its worker stops. A supervisor's 督办 (form remind,
    through the case's signal as the API sends it) and, a moment after, another Temporal
    client's bare ``escalation_step`` of ladder 1 at 问责 reach the case; the worker comes
    back and takes both in one workflow task (with the worker up, the same when both arrive
    while the case's task is in flight). Steps of 2 h: the ladder itself stays at 提醒."""
    own = _own(settings, f"v31b-{uuid.uuid4().hex[:8]}")
    case_id = _case_id("bare")
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue)
    await signal_sent(handle, "supervise", DISPATCHER, form="remind", note="Please")
    await handle.signal("escalation_step", {"n": 1, "level": int(EscalationLevel.ACCOUNTABILITY)})
    async with build_worker(client, pool, own):
        await until(client, case_id, lambda s: s.escalation is not None)
        s = await _settled(handle, lambda s: "escalation_step" in refusals(s)
                           or 5 in _levels(s, 1), within=15)  # fmt: skip
        await replay_checked(await handle.fetch_history())
        await handle.terminate("test over")
    return s


async def test_a_bare_step_in_the_task_that_starts_the_ladder(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    s = await outages.of(request)
    e = s.escalation
    assert e is not None and e.n == 1, _timeline(s)
    assert e.level is EscalationLevel.REMIND and not _referrals(s), (
        f"a bare forged step put the unit at {e.level.name.lower()} (referrals "
        f"{_referrals(s)}, levels recorded {_levels(s, 1)}) with its 提醒: {_timeline(s)}")
    # refused (lean-case-v34: the ladder's word and start level from the task that starts it)
    assert refusals(s).get("escalation_step") in ("unsigned_step", "stale_step"), refusals(s)


async def _an_old_ladders_step_in_the_task_that_starts_the_next(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    """A supervisor's 督办 against urban management: ladder 1 (its token read from its input,
    as any client can). Urban management accepts and returns the case; the rule gives it to
    the next unit (a dispatcher window of 0.6 s), ladder 1 ends with the round. The worker
    stops; a second 督办 (ladder 2) and a step of ladder 2 at 问责 signed with ladder 1's
    token reach the case; the worker comes back and takes both in one task."""
    own = _own(settings.model_copy(update={"dispatcher_window_minutes": 0.01}),
               f"v31o-{uuid.uuid4().hex[:8]}")  # fmt: skip
    case_id = _case_id("oldstep")
    async with build_worker(client, pool, own):
        handle = await started_assigned(client, case_id, own.task_queue)
        await signal_sent(handle, "supervise", DISPATCHER, form="remind", note="Now")
        await until(client, case_id, lambda s: bool(s.escalation and s.escalation.active))
        old = await token_in(await ladder_of(client, case_id, 1))
        assert old is not None
        await signal_sent(handle, "accept", URBAN)
        await until(client, case_id, lambda s: s.status is Status.HANDLING)
        await signal_sent(handle, "return", URBAN, reason="Not ours: police")
        await until(client, case_id, lambda s: s.round > 1 and s.status is Status.ASSIGNED
                    and s.escalation is not None and not s.escalation.active)  # fmt: skip
    await signal_sent(handle, "supervise", DISPATCHER, form="remind", note="Again")
    await handle.signal("escalation_step", {"n": 2, "level": int(EscalationLevel.ACCOUNTABILITY),
                                            "token": old})  # fmt: skip
    async with build_worker(client, pool, own):
        await until(client, case_id, lambda s: s.escalation is not None and s.escalation.n == 2)
        s = await _settled(handle, lambda s: "escalation_step" in refusals(s)
                           or 5 in _levels(s, 2), within=15)  # fmt: skip
        await replay_checked(await handle.fetch_history())
        await handle.terminate("test over")
    return s


async def test_an_old_ladders_step_in_the_task_that_starts_the_next(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    s = await outages.of(request)
    e = s.escalation
    assert e is not None and e.n == 2, _timeline(s)
    assert e.level is EscalationLevel.REMIND and not _referrals(s), (
        f"ladder 1's token put ladder 2 at {e.level.name.lower()} (referrals {_referrals(s)}, "
        f"levels {_levels(s, 2)}): {_timeline(s)}")
    # refused (lean-case-v34: the ladder's word and start level from the task that starts it)
    assert refusals(s).get("escalation_step") in ("unsigned_step", "stale_step"), refusals(s)


# --- 1b. steps with the ladder's own token ----------------------------------------------------


async def _a_supervised_case(
    client: Client, own: Settings, case_id: str
) -> tuple[WorkflowHandle[Any, Any], str]:
    """A case assigned to urban management under a supervisor's 提醒 (steps of 2 h: the ladder
    stays there), and ladder 1's token as any client reads it in the ladder's input."""
    handle = await started_assigned(client, case_id, own.task_queue)
    await signal_sent(handle, "supervise", DISPATCHER, form="remind", note="Please")
    await until(client, case_id, lambda s: bool(s.escalation and s.escalation.active))
    token = await token_in(await ladder_of(client, case_id, 1))
    assert token is not None
    return handle, token


def _step(level: EscalationLevel, token: str | None, n: int = 1) -> dict[str, Any]:
    return {"n": n, "level": int(level), "token": token}


async def _steps_that_skip_or_come_bare(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    """Under the 提醒: a step to 督办 with the ladder's token (it skips 催办), a bare step to
    催办, a step to 提醒 again with the token, a step of ladder 2 with the token."""
    own = _own(settings, f"v31k-{uuid.uuid4().hex[:8]}")
    case_id = _case_id("skip")
    async with build_worker(client, pool, own):
        handle, token = await _a_supervised_case(client, own, case_id)
        for step in (_step(EscalationLevel.SUPERVISE, token), _step(EscalationLevel.URGE, None),
                     _step(EscalationLevel.REMIND, token),
                     _step(EscalationLevel.URGE, token, n=2)):  # fmt: skip
            await handle.signal("escalation_step", step)
        s = await _settled(handle, lambda s: sum(
            e.kind is EventKind.REJECTED for e in s.events) >= 4, within=15)  # fmt: skip
        await replay_checked(await handle.fetch_history())
        await handle.terminate("test over")
    return s


async def test_steps_that_skip_or_come_bare(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard: a step with the ladder's own token that skips a level, a duplicate of the level
    reached and one of another ladder are refused stale_step; a bare one unsigned_step; the
    ladder stays at 提醒, nothing recorded against the unit."""
    s = await outages.of(request)
    codes = [e.data["code"] for e in s.events
             if e.kind is EventKind.REJECTED and e.data["action"] == "escalation_step"]
    assert codes == ["stale_step", "unsigned_step", "stale_step", "stale_step"], codes
    e = s.escalation
    assert e is not None and e.level is EscalationLevel.REMIND and e.active, _timeline(s)
    assert _levels(s, 1) == [1] and not _referrals(s), _timeline(s)


async def _steps_signed_with_the_token_read_from_the_ladder(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> CaseState:
    """Under the 提醒: steps to 催办, 督办, 会办 and 问责 in turn, each with the token read from
    the ladder's input."""
    own = _own(settings, f"v31t-{uuid.uuid4().hex[:8]}")
    case_id = _case_id("signed")
    async with build_worker(client, pool, own):
        handle, token = await _a_supervised_case(client, own, case_id)
        for level in (EscalationLevel.URGE, EscalationLevel.SUPERVISE,
                      EscalationLevel.JOINT_HANDLING, EscalationLevel.ACCOUNTABILITY):
            await handle.signal("escalation_step", _step(level, token))
        s = await _settled(handle, lambda s: len(_levels(s, 1)) + sum(
            e.kind is EventKind.REJECTED for e in s.events) >= 5, within=15)  # fmt: skip
        await replay_checked(await handle.fetch_history())
        await handle.terminate("test over")
    return s


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "accepted limit (docs/supervision.md, docs/auditing.md lean-case-v31: the word stops blind "
    "or mistaken clients only; Temporal's access control is the boundary; left open): the "
    "token is in the ladder's start input, so a client that reads it climbs a supervisor's "
    "提醒 to 问责 one signed step at a time in a moment, with an accountability referral"))
async def test_steps_signed_with_the_token_read_from_the_ladder(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    s = await outages.of(request)
    e = s.escalation
    assert e is not None and e.level is EscalationLevel.REMIND and not _referrals(s), (
        f"steps signed with the ladder's token took it to {e and e.level.name.lower()} "
        f"(levels {_levels(s, 1)}, referrals {len(_referrals(s))}): {_timeline(s)}")


async def _a_step_after_the_case_closed(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> tuple[CaseState, bool]:
    """Under the 提醒 the citizen withdraws the case (撤诉): the ladder stops, the case closes.
    A step to 催办 with ladder 1's token after that (refused by Temporal once the workflow
    has ended: also whether it was)."""
    own = _own(settings, f"v31c-{uuid.uuid4().hex[:8]}")
    case_id = _case_id("closed")
    citizen = Actor(role=Role.CITIZEN, name="Wang Fang")
    async with build_worker(client, pool, own):
        handle, token = await _a_supervised_case(client, own, case_id)
        await signal_sent(handle, "withdraw", citizen, reason="Solved by myself")
        await until(client, case_id, lambda s: s.status is Status.CLOSED
                    and s.escalation is not None and not s.escalation.active)  # fmt: skip
        refused_by_temporal = False
        try:
            await handle.signal("escalation_step", _step(EscalationLevel.URGE, token))
        except RPCError:
            refused_by_temporal = True
        s = await _settled(handle, lambda s: "escalation_step" in refusals(s), within=5)
        await replay_checked(await handle.fetch_history())
        if (await handle.describe()).status.name == "RUNNING":
            await handle.terminate("test over")
    return s, refused_by_temporal


async def test_a_step_after_the_case_closed(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Guard: a signed step that reaches a closed case is refused (by Temporal, the workflow
    having ended, or by the case, stale_step) and records no level."""
    s, refused_by_temporal = await outages.of(request)
    assert s.status is Status.CLOSED, _timeline(s)
    assert _levels(s, 1) == [1] and not _referrals(s), _timeline(s)
    assert refused_by_temporal or refusals(s).get("escalation_step") == "stale_step", (
        refused_by_temporal, refusals(s))


# --- 2. 单位停用 ------------------------------------------------------------------------------


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _put(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.put(f"{A}/{path}", json=body, headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _unit(api: httpx.AsyncClient, **fields: Any) -> str:
    unit = _uid("v31u")
    await _put(api, f"departments/{unit}", {"name": f"撤并局{unit}", "level": "county", **fields})
    return unit


async def _retired(api: httpx.AsyncClient, unit: str, **body: Any) -> dict[str, Any]:
    r = await api.post(f"{A}/departments/{unit}/retire", json=body, headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _category(api: httpx.AsyncClient, unit: str | None = None) -> str:
    """A category of its own, with a rule to ``unit`` (none: no rule, the centre's queue)."""
    category = _uid("v31cat")
    await _put(api, f"categories/{category}", {"name": "测试类别", "default_urgency": "general"})
    if unit is not None:
        rule = await api.post(f"{A}/routing-rules", headers=ADMIN, json={
            "category_id": category, "area_id": "QH", "department_id": unit,
            "valid_from": (datetime.now(UTC) - timedelta(days=1)).isoformat()})  # fmt: skip
        assert rule.status_code == 201, rule.text
    return category


async def _routed(api: httpx.AsyncClient, category: str) -> dict[str, Any]:
    case_id = (await register(api, category_id=category))["case_id"]
    return await case_when(api, case_id, lambda s: s["status"] in ("assigned", "dispatching"))


def _unit_of(state: dict[str, Any]) -> str | None:
    return state["assignment"]["department_id"] if state.get("assignment") else None


async def test_a_dispatch_to_a_retired_unit_sent_to_the_case(
    api: httpx.AsyncClient, client: Client
) -> None:
    """A case in the centre's queue (its category has no rule); a unit is retired; a
    dispatcher's 派单 naming it reaches the case straight from Temporal."""
    unit = await _unit(api)
    await _retired(api, unit)
    case_id = (await _routed(api, await _category(api)))["case_id"]
    refused = await act(api, case_id, "dispatch", SUPERVISOR, expect=422, department_id=unit)
    assert refused["error"]["code"] == "department_retired", refused
    handle = handle_of(client, case_id)
    await signal_sent(handle, "dispatch", DISPATCHER, department_id=unit,
                      department_name="撤并局（伪）")  # fmt: skip
    s = await _settled(handle, lambda s: s.status is not Status.DISPATCHING
                       or "dispatch" in refusals(s), within=15)  # fmt: skip
    await handle.terminate("test finished")
    assert s.status is Status.DISPATCHING and s.department_id != unit, (
        f"the case was dispatched to the retired {unit} ({s.assignment}): {_timeline(s)}")


async def test_a_retired_co_handler_sent_to_the_case(
    api: httpx.AsyncClient, client: Client
) -> None:
    """A case urban management holds; a unit is retired; a 会办 naming it (and one naming a
    unit that does not exist) reaches the case straight from Temporal."""
    unit = await _unit(api)
    await _retired(api, unit)
    case_id = (await register(api))["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    refused = await act(api, case_id, "co-handlers", SUPERVISOR, expect=422,
                        department_ids=[unit], note="会办")  # fmt: skip
    assert refused["error"]["code"] == "department_retired", refused
    handle = handle_of(client, case_id)
    for ref in ({"id": unit, "name": "撤并局"}, {"id": "no-such-unit", "name": "假的单位"}):
        await signal_sent(handle, "add_co_handlers", DISPATCHER, note="会办", departments=[ref])
    s = await _settled(handle, lambda s: len(s.co_handlers) + sum(
        e.kind is EventKind.REJECTED for e in s.events) >= 2, within=15)  # fmt: skip
    await handle.terminate("test finished")
    named = [c.department_id for c in s.co_handlers]
    assert not named, f"co-handlers taken: {named} (events {event_kinds(s)})"


async def test_a_retired_co_handler_by_a_joint_handling_order_sent_to_the_case(
    api: httpx.AsyncClient, client: Client
) -> None:
    """A case urban management holds; a unit is retired; a supervisor's 督办 of the form 会办
    naming it reaches the case straight from Temporal."""
    unit = await _unit(api)
    await _retired(api, unit)
    case_id = (await register(api))["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    handle = handle_of(client, case_id)
    due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    await signal_sent(handle, "supervise", DISPATCHER, form="joint_handling", note="会办",
                      department_ids=[unit], departments=[{"id": unit, "name": "撤并局"}],
                      contribution_due=due)  # fmt: skip
    s = await _settled(handle, lambda s: s.escalation is not None
                       or "supervise" in refusals(s), within=15)  # fmt: skip
    await handle.terminate("test finished")
    named = [c.department_id for c in s.co_handlers]
    assert not named, f"co-handlers taken: {named} (events {event_kinds(s)})"


async def test_a_scheduled_retirement_takes_effect_at_its_moment(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """Guard: a retirement scheduled 3 s ahead: until then the rule routes to the unit, the
    case's look-up finds it; from its moment on routing passes over it (the centre's queue),
    the look-up refuses it, and the API refuses a 派单 to it."""
    unit = await _unit(api)
    category = await _category(api, unit)
    at = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0) + timedelta(seconds=1)
    scheduled = await _retired(api, unit, at=at.isoformat())
    assert scheduled["department"]["retired_at"] is not None
    before = await _routed(api, category)
    routing = RoutingActivities(pool)
    in_service = await routing.known_department(unit)
    assert datetime.now(UTC) < at, "the setup overran the scheduled moment"
    assert _unit_of(before) == unit, before
    assert in_service is not None
    await until_past(at)
    after = await _routed(api, category)
    assert after["status"] == "dispatching", after
    assert await routing.known_department(unit) is None
    refused = await act(api, after["case_id"], "dispatch", SUPERVISOR, expect=422,
                        department_id=unit)  # fmt: skip
    assert refused["error"]["code"] == "department_retired", refused
    # the same moment again: a retry, answered as it is
    again = await _retired(api, unit, at=at.isoformat())
    assert again["department"]["retired_at"] == scheduled["department"]["retired_at"]


async def test_a_retirement_and_a_reinstatement_racing_with_if_match(
    api: httpx.AsyncClient,
) -> None:
    """Guard: two admins read the unit (one version); one retires it with If-Match: the other's
    reinstatement with the version read is refused 409 version_conflict and changes nothing;
    a retry of the retirement with the old version is refused too (the record moved on)."""
    unit = await _unit(api)
    read = await api.get(f"{A}/departments/{unit}", headers=ADMIN)
    version = read.json()["version"]
    first = await api.post(f"{A}/departments/{unit}/retire", json={}, headers={
        **ADMIN, "If-Match": f'"{version}"'})  # fmt: skip
    assert first.status_code == 200, first.text
    second = await api.post(f"{A}/departments/{unit}/reinstate", headers={
        **ADMIN, "If-Match": f'"{version}"'})  # fmt: skip
    assert (second.status_code, second.json()["error"]["code"]) == (409, "version_conflict")
    now = await api.get(f"{A}/departments/{unit}", headers=ADMIN)
    assert now.json()["retired_at"] == first.json()["department"]["retired_at"], now.json()
    log = await api.get(f"{A}/changes", headers=ADMIN,
                        params={"entity": "department", "entity_id": unit})
    assert [c["action"] for c in log.json()] == ["retire", "create"], log.json()


async def test_a_raise_from_a_unit_whose_parent_is_retired(
    api: httpx.AsyncClient, client: Client
) -> None:
    """Guard: a unit's parent is retired; the unit (its clerk, through the case's signal)
    raises a case it holds (提级办): the case goes to the centre's queue, not to the parent."""
    parent = await _unit(api)
    child = await _unit(api, level="township", parent_id=parent)
    category = await _category(api, child)
    state = await _routed(api, category)
    assert _unit_of(state) == child, state
    await _retired(api, parent)
    handle = handle_of(client, state["case_id"])
    await signal_sent(handle, "raise_level", department_clerk(child), reason="超出本所职权")
    s = await _settled(handle, lambda s: s.round > 1 and s.status in (
        Status.ASSIGNED, Status.DISPATCHING), within=20)  # fmt: skip
    await handle.terminate("test finished")
    assert s.status is Status.DISPATCHING and s.department_id in (None, CENTRE_ID), _timeline(s)
    assert not any(e.data.get("department_id") == parent for e in s.events
                   if e.kind in (EventKind.REASSIGNED, EventKind.DISPATCHED)), _timeline(s)


# --- 3. 改派 after an upheld 退单 --------------------------------------------------------------


async def test_a_choice_of_the_unit_that_returned_the_case_earlier(
    api: httpx.AsyncClient, client: Client
) -> None:
    """Guard: urban management returns the case, a dispatcher gives it to police; police
    returns it: police (whose return was just upheld) is refused 409 returned_by_this_unit,
    urban management (an earlier return) may be chosen again."""
    police = department("police")
    case_id = (await register(api))["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    await act(api, case_id, "accept", URBAN_KEY)
    await act(api, case_id, "return", URBAN_KEY, reason="商铺噪声属公安管辖，请改派")
    await case_when(api, case_id, lambda s: s["status"] == "reassigning")
    await act(api, case_id, "reassign", SUPERVISOR, department_id="police")
    await case_when(api, case_id, lambda s: s["status"] == "assigned"
                    and _unit_of(s) == "police")  # fmt: skip
    await act(api, case_id, "accept", police)
    await act(api, case_id, "return", police, reason="属城管职责，请改派回城管")
    await case_when(api, case_id, lambda s: s["status"] == "reassigning")
    again = await act(api, case_id, "reassign", SUPERVISOR, expect=409, department_id="police")
    assert again["error"]["code"] == "returned_by_this_unit", again
    await act(api, case_id, "reassign", SUPERVISOR, department_id="urban-management")
    s = await case_when(api, case_id, lambda s: s["status"] == "assigned")
    await handle_of(client, case_id).terminate("test finished")
    assert _unit_of(s) == "urban-management", s


# --- 4. 督办中的工单: cases.ladder_active ---------------------------------------------------


async def _on_the_ladder_board(api: httpx.AsyncClient, case_id: str) -> bool:
    supervisor = await signed_in(api, "supervisor")
    try:
        page = (await supervisor.get("/console/supervision")).text
    finally:
        await supervisor.aclose()
    start = page.index("<h2>督办中的工单")
    return case_id in page[start: page.index("</section>", start)]


async def test_a_ladder_ended_by_another_client_leaves_the_board(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    """Guard: a supervisor's 催办 puts the case on 督办中的工单 (ladder_active); another Temporal
    client terminates the ladder's child: the case records the ladder stopped where it stood,
    its row's ladder_active is false and the board no longer lists it (the gauge reads the
    same column)."""
    case_id = (await register(api))["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    await act(api, case_id, "supervision", SUPERVISOR, form="urge", note="请尽快处理")
    await case_when(api, case_id, lambda s: s["escalation"] and s["escalation"]["active"])
    active = "SELECT ladder_active FROM cases WHERE case_id = $1"
    assert await eventually(lambda: pool.fetchval(active, case_id), within=15)
    assert await _on_the_ladder_board(api, case_id)
    await (await ladder_of(client, case_id, 1)).terminate("another client")
    s = await case_when(api, case_id, lambda s: "escalation_stopped" in [
        e["kind"] for e in s["events"]])  # fmt: skip
    stopped = await eventually(lambda: _false(pool.fetchval(active, case_id)), within=15)
    on_board = await _on_the_ladder_board(api, case_id)
    await handle_of(client, case_id).terminate("test finished")
    assert stopped and not s["escalation"]["active"], s["escalation"]
    assert not on_board, f"{case_id} still on 督办中的工单 after its ladder ended"


async def _false(value: Any) -> bool:
    return (await value) is False


# each test_x awaits its scenario _x, all run at once (helpers.outage_scenarios)
outages = outage_scenarios(*map(setup_checked, [
    _a_bare_step_in_the_task_that_starts_the_ladder,
    _an_old_ladders_step_in_the_task_that_starts_the_next,
    _steps_that_skip_or_come_bare,
    _steps_signed_with_the_token_read_from_the_ladder,
    _a_step_after_the_case_closed,
]), at_once=5)
