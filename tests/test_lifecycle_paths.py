"""Everything that goes wrong in a real hotline (DESIGN.md §1): returns, reassignment,
rehandling, the supervision ladder, raising a level, joint handling, extensions, repeat
reports, supplements, withdrawals and callbacks — through the API, on the real servers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from helpers import (
    OPERATOR,
    SUPERVISOR,
    act,
    case,
    child_of,
    closed_state,
    complaint,
    department,
    eventually,
    fast_forward,
    handle_of,
    keep_history,
    ladder_of,
    register,
)
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from jiesu.case import search_attributes as sa

URBAN = department("urban-management")
POLICE = department("police")


async def _status(api: httpx.AsyncClient, case_id: str, status: str) -> dict[str, Any] | None:
    state = await case(api, case_id, OPERATOR)
    return state if state["status"] == status else None


async def _assigned(api: httpx.AsyncClient, case_id: str) -> dict[str, Any]:
    return await eventually(lambda: _status(api, case_id, "assigned"))


def _kinds(state: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in state["events"]]


async def _handle_to_reply(api: httpx.AsyncClient, case_id: str, dept: dict[str, str]) -> None:
    await act(api, case_id, "accept", dept)
    await act(api, case_id, "contact", dept)
    await act(api, case_id, "reply", dept, outcome="resolved", text="Handled on site")


async def test_return_is_reassigned_automatically_without_the_returning_department(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    created = await register(api)  # noise_commercial in 幸福社区 → urban management
    case_id = created["case_id"]
    first = await _assigned(api, case_id)
    assert first["assignment"]["department_id"] == "urban-management"

    await act(api, case_id, "return", URBAN, reason="Amplified music at night is police work")
    state = await eventually(lambda: _status(api, case_id, "reassigning"))
    assert state["reassignment"]["child_id"] == f"{case_id}-reassign-1"

    # nobody at the centre chooses within the window: the routing rules decide
    child = await child_of(client, f"{case_id}-reassign-1")  # recorded before it starts
    assert not await env.fast_forward(child, timedelta(minutes=31))  # it completes first
    state = await _assigned(api, case_id)
    assert state["assignment"]["department_id"] == "police"  # next rule, without the returner
    assert state["round"] == 2 and state["reassignments"] == 1
    assert state["returned_by"] == ["urban-management"]
    assert _kinds(state).count("deadlines_set") == 2  # fresh deadlines for the new round
    assert _kinds(state)[-4:] == ["returned", "reassignment_started", "deadlines_set", "reassigned"]
    await act(api, case_id, "accept", URBAN, expect=404)  # no longer theirs: invisible
    await act(api, case_id, "accept", POLICE)

    row = await eventually(
        lambda: pool.fetchrow(
            "SELECT department_id, return_count FROM cases WHERE case_id = $1 "
            "AND department_id = 'police'",
            case_id,
        )
    )
    assert row["return_count"] == 1
    handle = handle_of(client, case_id)
    await handle.terminate("test finished")
    await keep_history(handle, "return_reassigned_automatically")


async def test_dispatcher_chooses_within_the_window(api: httpx.AsyncClient, client: Client) -> None:
    case_id = (await register(api))["case_id"]
    await _assigned(api, case_id)
    await act(api, case_id, "return", URBAN, reason="Not ours")
    await eventually(lambda: _status(api, case_id, "reassigning"))
    await act(api, case_id, "reassign", URBAN, expect=403, department_id="police")
    chosen = await act(
        api,
        case_id,
        "reassign",
        SUPERVISOR,
        department_id="market",
        note="The shop's licence is market regulation's",
    )
    assert chosen["case"]["assignment"]["department_id"] == "market"
    reassigned = chosen["case"]["events"][-1]
    assert reassigned["kind"] == "reassigned" and reassigned["actor"]["role"] == "supervisor"
    handle = handle_of(client, case_id)
    await handle.terminate("test finished")
    await keep_history(handle, "return_dispatcher_chooses")


async def test_reassignment_bound_sends_the_case_to_supervision(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = (await register(api))["case_id"]
    await _assigned(api, case_id)
    for target in ("police", "market", "urban-management"):  # max_reassignments = 3
        current = (await case(api, case_id, OPERATOR))["assignment"]["department_id"]
        await act(api, case_id, "return", department(current), reason="Not ours")
        await eventually(lambda: _status(api, case_id, "reassigning"))
        await act(api, case_id, "reassign", SUPERVISOR, department_id=target)
    await act(api, case_id, "return", URBAN, reason="Still not ours")
    state = await eventually(lambda: _status(api, case_id, "dispatching"))
    assert state["reassignments"] == 3
    assert state["escalation"]["trigger"] == "reassignment_limit"
    state = await eventually(lambda: _level_at_least(api, case_id, 1))
    dispatched = await act(api, case_id, "dispatch", SUPERVISOR, department_id="ecology")
    assert dispatched["case"]["status"] == "assigned"
    assert dispatched["case"]["assignment"]["department_id"] == "ecology"
    kinds = _kinds(dispatched["case"])  # a fresh round (the ladder may stop right after it)
    last = len(kinds) - 1 - kinds[::-1].index("reassigned")
    assert kinds[last - 1 : last + 1] == ["deadlines_set", "reassigned"]
    state = await eventually(lambda: _ladder_stopped(api, case_id))
    handle = handle_of(client, case_id)
    await handle.terminate("test finished")
    await keep_history(handle, "reassignment_bound")


async def test_unsatisfied_rating_rehandles_then_supervises_then_closes(
    api: httpx.AsyncClient, client: Client
) -> None:
    created = await register(api)
    case_id, token = created["case_id"], created["citizen_token"]
    await _assigned(api, case_id)
    for round_ in (1, 2, 3):
        await _handle_to_reply(api, case_id, URBAN)
        await act(api, case_id, "rating", token=token, rating="unsatisfied")
        if round_ == 3:
            break
        await eventually(lambda: _status(api, case_id, "reassigning"))
        # the centre sends it back to the same department (重办)
        await act(api, case_id, "reassign", SUPERVISOR, department_id="urban-management")
        state = await _assigned(api, case_id)
        assert state["round"] == round_ + 1 and state["rating"] is None
    handle = handle_of(client, case_id)
    result = await closed_state(handle)
    assert result.status.value == "closed" and result.rating.value == "unsatisfied"
    assert result.unsatisfied_rounds == 2
    assert result.escalation is not None and result.escalation.trigger.value == "dissatisfaction"
    # the ladder supervised the rehandling round until its reply, not until it was assigned
    kinds = _kinds(await case(api, case_id, OPERATOR))
    last_reply = len(kinds) - 1 - kinds[::-1].index("replied")
    assert kinds.index("escalation_stopped") > last_reply > kinds.index("escalation_started")
    await keep_history(handle, "rehandle_until_closed")


async def test_breached_acceptance_climbs_the_ladder_until_the_department_acts(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment
) -> None:
    # registered 40 minutes late: the urgent 30-minute acceptance deadline has already passed.
    # (Moving the case's own clock instead would start the ladder during the case's skip,
    # and the dev server does not finish a parent's skip while a child it started waits.)
    received = (datetime.now(UTC) - timedelta(minutes=40)).isoformat()
    created = await register(api, category_id="water_outage", received_at=received)
    case_id = created["case_id"]
    water = department("water")
    handle = handle_of(client, case_id)
    state = await eventually(lambda: _level_at_least(api, case_id, 1))
    assert state["escalation"]["trigger"] == "accept_breached"
    ladder = await ladder_of(client, case_id)
    await fast_forward(env, ladder, timedelta(hours=2, minutes=1))  # remind → urge
    state = await eventually(lambda: _level_at_least(api, case_id, 2))
    steps = [e["data"]["level_name"] for e in state["events"] if e["kind"] == "escalated"]
    assert steps == ["remind", "urge"]

    async def level_attribute() -> bool:
        attrs = (await handle.describe()).typed_search_attributes
        return attrs.get(sa.CASE_ESCALATION_LEVEL) == 2

    await eventually(level_attribute)
    await act(api, case_id, "accept", water)  # the department acts: the ladder stops
    state = await eventually(lambda: _ladder_stopped(api, case_id))
    stopped = next(e for e in state["events"] if e["kind"] == "escalation_stopped")
    assert stopped["data"] == {"n": 1, "final_level": 2, "stopped": True}
    assert (await ladder.describe()).status.name == "COMPLETED"
    # the case recorded the first step (remind) itself when the breach started the ladder
    # (ladder-first-step-in-case-v1): the child signalled only the second, the cheaper breach
    signalled = EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED
    assert await _signals(ladder, signalled) == 1
    assert await _signals(handle, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
                          "escalation_step") == 1  # fmt: skip
    await handle.terminate("test finished")
    await keep_history(handle, "ladder_after_accept_breach")


async def _signals(handle: WorkflowHandle[Any, Any], kind: EventType.ValueType,
                   name: str | None = None) -> int:  # fmt: skip
    """Events of ``kind`` in the history (signals received: only those named ``name``)."""
    history = await handle.fetch_history()
    return sum(
        1 for e in history.events
        if e.event_type == kind and (
            name is None or e.workflow_execution_signaled_event_attributes.signal_name == name)
    )  # fmt: skip


async def test_ladder_reaches_accountability(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment
) -> None:
    case_id = (await register(api))["case_id"]
    await _assigned(api, case_id)
    await act(api, case_id, "supervision", SUPERVISOR, note="Third complaint this month")
    await eventually(lambda: _level_at_least(api, case_id, 1))
    ladder = await ladder_of(client, case_id)
    assert not await env.fast_forward(ladder, timedelta(hours=9))  # 4 steps of 2 h, then done
    state = await eventually(lambda: _level_at_least(api, case_id, 5))
    steps = [e["data"]["level_name"] for e in state["events"] if e["kind"] == "escalated"]
    assert steps == ["remind", "urge", "supervise", "joint_handling", "accountability"]
    state = await eventually(lambda: _ladder_stopped(api, case_id))
    assert state["escalation"]["trigger"] == "supervisor"
    handle = handle_of(client, case_id)
    await handle.terminate("test finished")
    await keep_history(handle, "ladder_to_accountability")


async def test_raise_level_goes_to_the_department_above(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = (await register(api, category_id="street_vendor"))["case_id"]  # → 幸福社区
    state = await _assigned(api, case_id)
    assert state["assignment"]["department_id"] == "vil-xingfu"
    await act(
        api,
        case_id,
        "raise-level",
        department("vil-xingfu"),
        reason="Vendors block a county road: beyond the community's authority",
    )
    state = await _assigned(api, case_id)
    assert state["assignment"]["department_id"] == "twp-chengguan"
    assert "level_raise_requested" in _kinds(state)
    handle = handle_of(client, case_id)
    await handle.terminate("test finished")
    await keep_history(handle, "raise_level")


async def test_joint_handling_needs_every_co_handler(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = (await register(api))["case_id"]
    await _assigned(api, case_id)
    await act(api, case_id, "co-handlers", SUPERVISOR, department_ids=["police", "market"])
    await act(api, case_id, "accept", URBAN)
    await act(api, case_id, "contact", URBAN)
    refused = await act(api, case_id, "reply", URBAN, expect=409, outcome="resolved", text="Done")
    assert refused["error"]["code"] == "co_handlers_pending"
    assert (await case(api, case_id, POLICE))["case_id"] == case_id  # co-handlers see it
    await act(api, case_id, "contribution", POLICE, text="Patrol checked the noise at 23:00")
    await act(api, case_id, "contribution", POLICE, expect=409, text="Again")
    await act(api, case_id, "co-handlers/market/waive", SUPERVISOR)
    replied = await act(api, case_id, "reply", URBAN, outcome="resolved", text="Done jointly")
    assert replied["case"]["status"] == "replied"
    handle = handle_of(client, case_id)
    await handle.terminate("test finished")
    await keep_history(handle, "joint_handling")


async def test_extension_moves_the_running_deadline(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    case_id = (await register(api, category_id="water_outage"))["case_id"]  # urgent: 24 h
    water = department("water")
    await _assigned(api, case_id)
    await act(api, case_id, "accept", water)
    await act(api, case_id, "contact", water)
    state = await case(api, case_id, water)
    finish = datetime.fromisoformat(state["deadlines"]["finish"])
    promised = (finish + timedelta(days=2)).isoformat()
    await act(
        api,
        case_id,
        "extension",
        water,
        reasons="Main pipe must be replaced",
        measures="Water tanker on site",
        promised_finish=promised,
    )
    await act(
        api,
        case_id,
        "extension",
        water,
        expect=409,
        reasons="again",
        measures="none",
        promised_finish=promised,
    )
    decided = await act(api, case_id, "extension/decision", SUPERVISOR, approved=True)
    assert datetime.fromisoformat(decided["case"]["deadlines"]["finish"]) == finish + timedelta(
        days=2
    )
    assert decided["case"]["extension_count"] == 1

    handle = handle_of(client, case_id)
    await fast_forward(env, handle, timedelta(hours=25))  # past the old deadline
    state = await case(api, case_id, water)
    assert not any(b["kind"] == "finish" for b in state["breaches"])
    notices = await eventually(
        lambda: pool.fetch(
            "SELECT recipient_kind FROM notifications WHERE case_id = $1 "
            "AND event_kind = 'extension_decided'",
            case_id,
        )
    )
    assert {n["recipient_kind"] for n in notices} >= {"citizen", "department"}
    await handle.terminate("test finished")
    await keep_history(handle, "extension_approved")


async def test_repeat_reports_are_merged_and_the_third_means_supervision(
    api: httpx.AsyncClient, client: Client
) -> None:
    body = complaint()
    first = await api.post("/api/v1/complaints", json=body, headers=OPERATOR)
    case_id = first.json()["case_id"]
    await _assigned(api, case_id)
    # no wait for the read model: the merge decision does not read it (jiesu/intake/merge.py)
    again = await api.post(
        "/api/v1/complaints",
        json={**body, "channel": "wechat"},
        headers={**OPERATOR, "Idempotency-Key": f"rep-{case_id}"},
    )
    assert again.status_code == 200, again.text
    assert again.json()["merged"] and again.json()["case_id"] == case_id
    retry = await api.post(
        "/api/v1/complaints",
        json={**body, "channel": "wechat"},
        headers={**OPERATOR, "Idempotency-Key": f"rep-{case_id}"},
    )
    assert retry.json()["case_id"] == case_id and retry.json()["replayed"]
    neighbour = complaint(address=body["address"])  # another citizen, same address
    third = await api.post("/api/v1/complaints", json=neighbour, headers=OPERATOR)
    assert third.json()["case_id"] == case_id
    # every report has a token of its own, never the case's own citizen's
    tokens = {r.json()["citizen_token"] for r in (first, again, third)}
    assert len(tokens) == 3 and None not in tokens
    state = await eventually(lambda: _level_at_least(api, case_id, 1))
    assert state["repeat_count"] == 2
    assert state["escalation"]["trigger"] == "repeat_reports"
    handle = handle_of(client, case_id)
    await handle.terminate("test finished")
    await keep_history(handle, "repeat_reports")


async def test_citizen_supplements_and_withdraws(api: httpx.AsyncClient, client: Client) -> None:
    created = await register(api)
    case_id, token = created["case_id"], created["citizen_token"]
    await _assigned(api, case_id)
    await act(api, case_id, "supplement", token=token, text="It starts at 22:00 sharp")
    await act(api, case_id, "supplement", token="wrong-token", expect=404, text="More details")
    withdrawn = await act(api, case_id, "withdraw", token=token, reason="The shop moved away")
    assert withdrawn["case"]["status"] == "closed"
    assert withdrawn["case"]["resolution"] == "withdrawn"
    handle = handle_of(client, case_id)
    await handle.result()
    await keep_history(handle, "supplement_and_withdraw")


async def test_centre_callback_records_the_phone_verdict(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = (await register(api))["case_id"]
    await _assigned(api, case_id)
    await act(api, case_id, "callback", OPERATOR, expect=409, rating="satisfied")  # not replied
    await _handle_to_reply(api, case_id, URBAN)
    await act(api, case_id, "callback", URBAN, expect=403, rating="satisfied")
    await act(
        api,
        case_id,
        "callback",
        OPERATOR,
        rating="basically_satisfied",
        note="Phoned 21 Nov, quiet since Tuesday",
    )
    handle = handle_of(client, case_id)
    result = await closed_state(handle)
    assert result.rating.value == "basically_satisfied"
    await keep_history(handle, "callback")


async def _level_at_least(api: httpx.AsyncClient, case_id: str, level: int):
    state = await case(api, case_id, OPERATOR)
    return state if state["escalation_level"] >= level else None


async def _ladder_stopped(api: httpx.AsyncClient, case_id: str):
    state = await case(api, case_id, OPERATOR)
    return state if state["escalation"] and not state["escalation"]["active"] else None


async def _deadline_watches_ended(handle: WorkflowHandle[Any, Any]) -> set[str] | None:
    """The deadline timers (by summary, "contact deadline") the case cancelled after the
    ``return`` signal, if any."""
    summaries: dict[int, str] = {}
    ended: set[str] = set()
    returned = False
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            returned |= event.workflow_execution_signaled_event_attributes.signal_name == "return"
        elif event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            summaries[event.event_id] = json.loads(event.user_metadata.summary.data or b'""')
        elif returned and event.event_type == EventType.EVENT_TYPE_TIMER_CANCELED:
            started = event.timer_canceled_event_attributes.started_event_id
            if summaries.get(started, "").endswith(" deadline"):
                ended.add(summaries[started])
    return ended or None


async def test_the_returning_units_deadlines_end_while_the_centre_reassigns(
    api: httpx.AsyncClient, client: Client
) -> None:
    """The unit accepted an urgent case and returned it (退单); the centre takes up to its
    30-minute window to reassign. The unit's contact and finish deadlines kept running through
    that window, and one passing there was recorded as the unit's breach and put it on the
    supervision ladder, though it could no longer act on the case. Since lean-case-v11 the
    round's deadline watches end when the case is being reassigned (改派中); the next round's
    run from the reassignment. (A dev-server case does not skip time while its child waits, so
    the watches ending — their timers cancelled — is what is checked.)"""
    case_id = (await register(api, urgency="urgent"))["case_id"]
    await _assigned(api, case_id)
    await act(api, case_id, "accept", URBAN)
    await act(api, case_id, "return", URBAN, reason="Amplified music at night is police work")
    await eventually(lambda: _status(api, case_id, "reassigning"))
    handle = handle_of(client, case_id)
    ended = await eventually(lambda: _deadline_watches_ended(handle), within=30)
    assert ended == {"contact deadline", "finish deadline"}  # accept was met: no watch left
    await handle.terminate("test finished")
    await keep_history(handle, "deadlines_end_at_reassignment")
