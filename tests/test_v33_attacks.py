"""Red team of 2026-11-25 on 移交 (handover, lean-case-v32) and the v33 rule (the unit whose
退单 was upheld is not chosen again): any Temporal client, retries, and interleavings.

Findings were strict xfails asserting the correct behaviour; guards that hold are plain tests.
The request id a unit's handover gave each case (``hand-over:{unit}:{retired_at µs}:{case}``)
was the same for every call of that retirement: a case keeps every request id it applied *or
refused*, so once one such message was refused (or squatted by a forger), every later handover
of that case by the admin was taken for a retry and dropped without a word — while the API
answered ``sent``. The hand-over CLI stopped after its first batch when the read model lagged.
Both fixed the same day (jiesu/admin/handover.py: request ids per call, batches by cursor);
their three tests pass. v33's refusal of the returning unit as the child's choice sent the
decision to the centre's queue, whose dispatch took that same unit (a strict xfail until
lean-case-v37, ``queue-not-to-returner-v1``: the API and the case refuse it now).
"""

from __future__ import annotations

import asyncio
import io
from contextlib import redirect_stderr
from datetime import UTC, datetime
from typing import Any
from unittest.mock import patch

import asyncpg
import httpx
from helpers import (
    SUPERVISOR,
    act,
    case_when,
    department,
    department_clerk,
    event_count,
    eventually,
    handle_of,
    ladders_started,
    refusals,
    register,
    rid,
    signal_sent,
    signed_in,
    timeline_of,
    until,
)
from temporalio.client import Client
from test_department_retirement import ADMIN, A, _routed_to, _uid, _unit_with_a_rule
from test_handover import REASON, _held_by, _refused, _retire, _successor

from jiesu.access import api_keys
from jiesu.admin.handover import Handover
from jiesu.case.domain import CENTRE_ID, Actor, CaseSignal, CaseState, EventKind, Role, Status
from jiesu.config import Settings
from jiesu.ops import admin_cli

ADMIN_ACTOR = Actor(role=Role.ADMIN, name="demo-admin")


def _guessed(unit: str, retired_at: datetime, case_id: str) -> str:
    """The request id the first version gave a unit's handover of a case — the unit, the
    moment it was retired, the case: readable by any client, so squattable, and the same on
    every call (since the fix each call has its own, jiesu.admin.handover.call_id)."""
    return f"hand-over:{unit}:{int(retired_at.timestamp() * 1e6)}:{case_id}"


async def _retired_at(pool: asyncpg.Pool, unit: str) -> datetime:
    at: datetime = await pool.fetchval("SELECT retired_at FROM departments WHERE id = $1", unit)
    return at


def _as_the_api_sends(actor: Actor, rid_: str, unit: str, to: str) -> dict[str, Any]:
    """A unit's handover message for one case, built as jiesu.admin.handover builds it."""
    stamped = actor.model_copy(update={"request_id": rid_, "sent_at": datetime.now(UTC)})
    return {"actor": stamped.model_dump(mode="json"), "from_department_id": unit,
            "department_id": to, "department_name": f"新设局{to}", "reason": REASON}  # fmt: skip


async def _retired_units_case(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> tuple[str, str, datetime]:
    """A case held by a unit of its own, then the unit retired: (case, unit, retired_at)."""
    unit, category, _ = await _unit_with_a_rule(api)
    case_id, _ = await _routed_to(api, category)
    await eventually(lambda: _held_by(pool, case_id, unit), within=30)
    await _retire(api, unit)
    return case_id, unit, await _retired_at(pool, unit)


async def _unit_hand_over(api: httpx.AsyncClient, unit: str, to: str) -> dict[str, Any]:
    r = await api.post(f"{A}/departments/{unit}/hand-over", headers=ADMIN,
                       json={"department_id": to, "reason": REASON})  # fmt: skip
    assert r.status_code == 200, r.text
    return r.json()


async def _taken(client: Client, case_id: str, unit: str) -> bool:
    """Did the case take the handover just sent? A probe sent after it (signals are applied in
    order): the retired unit's own 提级办, which a case taking a handover refuses
    (reassignment_pending, or not the unit's any more) and a case that dropped it applies."""
    await handle_of(client, case_id).signal(CaseSignal.RAISE_LEVEL.value, {
        "actor": rid(department_clerk(unit)) | {"sent_at": datetime.now(UTC).isoformat()},
        "reason": "探针：超出本单位职权"})  # fmt: skip

    state = await until(client, case_id, lambda s: "raise_level" in refusals(s) or any(
        e.kind is EventKind.LEVEL_RAISE_REQUESTED for e in s.events), within=20)
    return "raise_level" in refusals(state)


# --- findings ---------------------------------------------------------------------------------


async def test_a_forged_handover_with_the_units_request_id_does_not_block_the_real_one(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    case_id, unit, retired_at = await _retired_units_case(api, pool)
    successor = await _successor(api)
    squatter = Actor(role=Role.CITIZEN, name="forger")  # refused: not a dispatcher
    await handle_of(client, case_id).signal(CaseSignal.HAND_OVER.value, _as_the_api_sends(
        squatter, _guessed(unit, retired_at, case_id), unit, successor))
    await until(client, case_id, lambda s: _refused(s) == ["forbidden"])
    assert (await _unit_hand_over(api, unit, successor))["sent"] == [case_id]
    assert await _taken(client, case_id, unit), "the admin's handover was dropped as a retry"
    await until(client, case_id, lambda s: s.department_id == successor, within=20)
    await handle_of(client, case_id).terminate("test finished")


async def test_a_handover_refused_can_be_sent_again_to_another_successor(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    case_id, unit, retired_at = await _retired_units_case(api, pool)
    first, second = await _successor(api), await _successor(api)
    # the API checked ``first`` in service and built this message; ``first`` was retired
    # before the case looked it up (the race, made deterministic)
    message = _as_the_api_sends(ADMIN_ACTOR, _guessed(unit, retired_at, case_id), unit, first)
    await _retire(api, first)
    await handle_of(client, case_id).signal(CaseSignal.HAND_OVER.value, message)
    await until(client, case_id, lambda s: _refused(s) == ["unknown_department"])
    assert (await _unit_hand_over(api, unit, second))["sent"] == [case_id]  # the API: sent
    assert await _taken(client, case_id, unit), "the admin's second handover was dropped"
    await until(client, case_id, lambda s: s.department_id == second, within=20)
    await handle_of(client, case_id).terminate("test finished")


async def test_the_cli_hands_over_every_batch_not_only_the_first(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    """The CLI's loop (jiesu.ops.admin_cli._hand_over_all) with batches of one case (a unit of
    201+ cases with the CLI's 200 is the same): two cases, both should be sent."""
    unit, category, _ = await _unit_with_a_rule(api)
    cases = [(await _routed_to(api, category))[0] for _ in range(2)]
    for case_id in cases:
        await eventually(lambda c=case_id: _held_by(pool, c, unit), within=30)
    await _retire(api, unit)
    successor = await _successor(api)

    async def connected(_: Settings) -> Client:
        return client

    body = Handover(department_id=successor, reason=REASON, limit=1)
    async with pool.acquire() as conn:
        # the read model a moment behind the cases, for certain: their rows locked for 3 s (a
        # CLI that waits for it gets it then; reads are not blocked)
        lag = conn.transaction()
        await lag.start()
        await conn.execute("SELECT 1 FROM cases WHERE case_id = ANY($1::text[]) FOR UPDATE",
                           cases)  # fmt: skip

        async def caught_up() -> None:
            await asyncio.sleep(3)
            await lag.rollback()

        catching_up = asyncio.create_task(caught_up())
        with patch.object(admin_cli, "connect", connected), patch.object(
            admin_cli, "get_settings", lambda: settings
        ), redirect_stderr(io.StringIO()):  # fmt: skip
            done = await admin_cli._hand_over_all(pool, ADMIN_ACTOR, unit, body)
        await catching_up
    assert sorted(done["sent"]) == sorted(cases), done
    for case_id in cases:
        await until(client, case_id, lambda s: s.department_id == successor)


# --- guards -----------------------------------------------------------------------------------


async def test_a_reinstatement_between_the_check_and_the_lookup_then_a_new_retirement(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    """The unit reinstated after the API checked it retired, before the case looked it up: the
    case refuses (holder_in_service) and keeps the unit. Retired again, its handover carries a
    new request id (the new retirement's moment): the admin's handover goes through."""
    case_id, unit, retired_at = await _retired_units_case(api, pool)
    successor = await _successor(api)
    message = _as_the_api_sends(ADMIN_ACTOR, _guessed(unit, retired_at, case_id), unit,
                                successor)  # fmt: skip
    r = await api.post(f"{A}/departments/{unit}/reinstate", headers=ADMIN)
    assert r.status_code == 200, r.text
    await handle_of(client, case_id).signal(CaseSignal.HAND_OVER.value, message)
    await until(client, case_id, lambda s: _refused(s) == ["holder_in_service"])
    await _retire(api, unit)
    assert await _retired_at(pool, unit) != retired_at
    assert (await _unit_hand_over(api, unit, successor))["sent"] == [case_id]
    state = await until(client, case_id, lambda s: s.department_id == successor)
    assert event_count(state, EventKind.HANDED_OVER) == 1
    await handle_of(client, case_id).terminate("test finished")


async def test_two_handovers_at_once_to_different_successors_apply_one(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    """Two admins (or the API and another client) hand the case over to two successors in the
    same moment: the first is taken, the second refused; one handover, one round."""
    case_id, unit, _ = await _retired_units_case(api, pool)
    first, second = await _successor(api), await _successor(api)
    handle = handle_of(client, case_id)
    await asyncio.gather(*(handle.signal(CaseSignal.HAND_OVER.value, _as_the_api_sends(
        ADMIN_ACTOR, f"rid-{to}", unit, to)) for to in (first, second)))
    state = await until(client, case_id, lambda s: s.status is Status.ASSIGNED
                        and s.department_id in (first, second))  # fmt: skip
    assert event_count(state, EventKind.HANDED_OVER) == 1
    assert event_count(state, EventKind.REASSIGNMENT_STARTED) == 1
    # the second meets the first taken (reassignment_pending) or carried out (wrong_status)
    assert _refused(state) in (["reassignment_pending"], ["wrong_status"]), _refused(state)
    await handle.terminate("test finished")


async def test_a_reply_or_withdrawal_racing_the_handover_wins_or_loses_whole(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    """The retired unit's reply and the citizen's 撤诉 sent in the moment after the handover
    (the case looks the units up meanwhile): either the handover is refused and the action
    stands, or the handover is carried out and the reply refused — a withdrawal closes the
    case either way, and no round starts for the successor of a closed case."""
    unit, category, _ = await _unit_with_a_rule(api)
    _, key = await api_keys.create_key(pool, name=_uid("unit"), role=Role.DEPARTMENT,
                                       department_id=unit)  # fmt: skip
    own = {"Authorization": f"Bearer {key}"}
    replied, _ = await _routed_to(api, category)
    withdrawn, _ = await _routed_to(api, category)
    await act(api, replied, "accept", own)
    await act(api, replied, "contact", own, note="已电话联系诉求人")
    for case_id in (replied, withdrawn):
        await eventually(lambda c=case_id: _held_by(pool, c, unit), within=30)
    await _retire(api, unit)
    retired_at = await _retired_at(pool, unit)
    successor = await _successor(api)
    now = datetime.now(UTC).isoformat()
    h, w = handle_of(client, replied), handle_of(client, withdrawn)
    await h.signal(CaseSignal.HAND_OVER.value, _as_the_api_sends(
        ADMIN_ACTOR, _guessed(unit, retired_at, replied), unit, successor))
    await h.signal(CaseSignal.REPLY.value, {
        "actor": rid(department_clerk(unit)) | {"sent_at": now},
        "outcome": "resolved", "text": "已处理完毕"})  # fmt: skip
    await w.signal(CaseSignal.HAND_OVER.value, _as_the_api_sends(
        ADMIN_ACTOR, _guessed(unit, retired_at, withdrawn), unit, successor))
    citizen = Actor(role=Role.CITIZEN, name="诉求人")
    await w.signal(CaseSignal.WITHDRAW.value, {"actor": rid(citizen) | {"sent_at": now},
                                               "reason": "问题已自行解决"})  # fmt: skip

    def settled(s: CaseState) -> bool:
        return s.status is not Status.REASSIGNING and ("reply" in refusals(s) or any(
            e.kind is EventKind.REPLIED for e in s.events))  # fmt: skip

    state = await until(client, replied, lambda s: settled(s) and (
        s.status is Status.REPLIED or s.department_id == successor))  # fmt: skip
    handed = event_count(state, EventKind.HANDED_OVER) == 1
    if handed:  # carried out first: the reply is the old unit's, refused
        assert state.status is Status.ASSIGNED and "reply" in refusals(state), timeline_of(state)
    else:
        assert _refused(state) == ["wrong_status"] and state.department_id == unit, (
            timeline_of(state))
    state = await until(client, withdrawn, lambda s: s.status is Status.CLOSED)
    assert event_count(state, EventKind.REASSIGNED) == 0, timeline_of(state)
    assert state.department_id == unit, timeline_of(state)
    await h.terminate("test finished")


async def test_a_second_assignment_racing_the_handover_is_refused(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    """二次交办 sent in the moment after a 移交 was taken (while the case looks the units up):
    refused reassignment_pending; the case goes to the successor once, one reassignment."""
    case_id, unit, retired_at = await _retired_units_case(api, pool)
    successor, other = await _successor(api), await _successor(api)
    h = handle_of(client, case_id)
    await h.signal(CaseSignal.HAND_OVER.value, _as_the_api_sends(
        ADMIN_ACTOR, _guessed(unit, retired_at, case_id), unit, successor))
    boss = Actor(role=Role.SUPERVISOR, name="督办员")
    await h.signal(CaseSignal.ORDER_SECOND_ASSIGNMENT.value, {
        "actor": rid(boss) | {"sent_at": datetime.now(UTC).isoformat()},
        "reason": "逾期未办", "department_id": other, "department_name": "x"})
    state = await until(client, case_id, lambda s: s.department_id == successor
                        and s.status is Status.ASSIGNED)  # fmt: skip
    # judged after the handover was taken: its own rule (not_overdue) or the pending one
    assert "order_second_assignment" in refusals(state), timeline_of(state)
    assert state.reassignments == 1 and event_count(state, EventKind.HANDED_OVER) == 1
    await h.terminate("test finished")


async def test_a_handover_stops_the_ladder_climbing_against_the_retired_unit(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    """督办 against the retired unit, then 移交: the ladder stops at the successor's round and
    no ladder presses the successor for the retired unit's lateness."""
    case_id, unit, _ = await _retired_units_case(api, pool)
    successor = await _successor(api)
    await act(api, case_id, "supervision", SUPERVISOR, form="supervise", note="请尽快办理")
    await until(client, case_id, lambda s: s.escalation is not None and s.escalation.active)
    await _unit_hand_over(api, unit, successor)
    state = await until(client, case_id, lambda s: s.department_id == successor
                        and s.escalation is not None and not s.escalation.active)  # fmt: skip
    assert len(ladders_started(state)) == 1, ladders_started(state)
    assert EventKind.DEADLINE_BREACHED not in [e.kind for e in state.events]
    await handle_of(client, case_id).terminate("test finished")


async def test_the_console_form_refuses_no_csrf_a_retired_successor_and_a_blank_reason(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    case_id, unit, _ = await _retired_units_case(api, pool)
    gone = await _successor(api)
    await _retire(api, gone)
    successor = await _successor(api)
    admin = await signed_in(api, "admin")
    url = f"/console/admin/departments/{unit}/hand-over"
    try:
        page = await admin.get("/console/admin/departments")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        forged = await admin.post(url, data={"department_id": successor, "reason": REASON})
        assert forged.status_code in (400, 403), forged.status_code
        for to, reason in ((gone, REASON), (CENTRE_ID, REASON), (successor, "　 ")):
            r = await admin.post(url, data={"csrf_token": token, "department_id": to,
                                            "reason": reason})  # fmt: skip
            assert r.status_code != 303, (to, reason)
    finally:
        await admin.aclose()
    state = await until(client, case_id, lambda s: s.department_id == unit)
    assert EventKind.HANDED_OVER not in [e.kind for e in state.events] and not _refused(state)
    await handle_of(client, case_id).terminate("test finished")


async def test_v33_a_second_assignment_may_go_back_to_the_returner_by_api_and_case_alike(
    api: httpx.AsyncClient, client: Client
) -> None:
    """v33 judges only a reassignment whose reason is the 退单 just upheld. 二次交办 without a
    named unit (taken from the unit the case went to after the return): a choice of the unit
    that returned it is taken by the API and the case alike (routing passes it over, a
    dispatcher may still choose it) — they never disagree. (Police replied; the supervisor's
    review of the poor reply takes it away.)"""
    case_id = (await register(api))["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    await act(api, case_id, "return", department("urban-management"), reason="非本单位职责")
    await case_when(api, case_id, lambda s: s["status"] == "reassigning")
    await act(api, case_id, "reassign", SUPERVISOR, department_id="police")
    await case_when(api, case_id, lambda s: s["status"] == "assigned"
                    and s["assignment"]["department_id"] == "police")  # fmt: skip
    police = department("police")
    await act(api, case_id, "accept", police)
    await act(api, case_id, "contact", police, note="已电话联系诉求人")
    await act(api, case_id, "reply", police, outcome="resolved", text="已处理")
    await case_when(api, case_id, lambda s: s["status"] == "replied")
    await act(api, case_id, "second-assignment", SUPERVISOR, reason="答复敷衍，改由他单位办理")
    await case_when(api, case_id, lambda s: s["status"] == "reassigning")
    await act(api, case_id, "reassign", SUPERVISOR, department_id="urban-management")
    state = await until(client, case_id, lambda s: s.status is Status.ASSIGNED
                        and s.department_id == "urban-management")  # fmt: skip
    assert "choose" not in refusals(state)
    await handle_of(client, case_id).terminate("test finished")


async def test_v33_the_queue_does_not_send_the_case_back_to_the_unit_that_returned_it(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = (await register(api))["case_id"]
    try:
        await case_when(api, case_id, lambda s: s["status"] == "assigned")
        await act(api, case_id, "return", department("urban-management"), reason="非本单位职责")
        state = await until(client, case_id, lambda s: s.reassignment is not None)
        assert state.reassignment is not None
        forger = Actor(role=Role.SUPERVISOR, name="another client")
        await client.get_workflow_handle(state.reassignment.child_id).signal("choose", {
            "actor": forger.model_dump(mode="json"), "department_id": "urban-management",
            "department_name": "县城市管理局"})  # fmt: skip
        state = await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
        assert refusals(state).get("choose") == "returned_by_this_unit"
        # the centre's queue decides: the same unit, by the API
        refused = await act(api, case_id, "dispatch", SUPERVISOR, expect=409,
                            department_id="urban-management")  # fmt: skip
        assert refused["error"]["code"] == "returned_by_this_unit", refused
        # … and straight to the case from another client: the case refuses it too (v37)
        handle = handle_of(client, case_id)
        await signal_sent(handle, "dispatch", forger, department_id="urban-management",
                          department_name="县城市管理局")  # fmt: skip
        state = await until(client, case_id, lambda s: "dispatch" in refusals(s))
        assert refusals(state)["dispatch"] == "returned_by_this_unit"
        assert state.status is Status.DISPATCHING, state.status
        # another unit takes it, under the departments' own name
        await act(api, case_id, "dispatch", SUPERVISOR, department_id="police")
        state = await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        assert state.department_id == "police", state.assignment
    finally:
        await handle_of(client, case_id).terminate("test finished")
