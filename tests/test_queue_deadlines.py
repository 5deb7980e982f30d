"""A case waiting in the hotline centre's dispatch queue (待派单) is not late against the centre,
and the unit it is dispatched to gets its full time (deadlines-from-dispatch-v1, epoch
``lean-case-v8``).

Before, a case the routing rules could not place kept the deadlines set at receipt while it
waited: their timers ran against the centre, a breach was recorded against the centre and
started the supervision ladder against the centre itself (the centre supervising itself), and
the unit the centre finally dispatched it to got a round whose accept deadline had already
passed. The same for a reassignment that ended in the queue (its new round's deadlines ran
against the centre). Now no deadline timer runs in the queue — the waiting case is on the
supervisors' dispatch-queue board, and on the overdue board once the deadlines recorded at
receipt pass — and a dispatch out of the queue sets the unit's deadlines from the dispatch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
from helpers import (
    SUPERVISOR,
    act,
    case_applied,
    case_when,
    department,
    eventually,
    exists,
    fast_forward,
    fast_forward_past,
    handle_of,
    keep_history,
    ladder_of,
    register,
    signed_in,
    steps_told,
    withdrawn_to_its_close,
)
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.console.queue import deadlines_wait_for_dispatch, queued_since
from api.console.supervision import OVERDUE
from api.console.web import templates
from jiesu.case.domain import CENTRE_ID, CaseState, Channel, Status, Urgency
from jiesu.case.sla import QUEUE_WAIT, late_steps

URBAN = department("urban-management")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _kinds(state: dict) -> list[str]:
    return [e["kind"] for e in state["events"]]


async def _dispatched_past_the_queue(
    api: httpx.AsyncClient, env: WorkflowEnvironment, client: Client, case_id: str,
    unit: str = "urban-management",
) -> dict:
    """The queued case waits past the accept deadline it had when it was queued, then the
    centre dispatches it to ``unit``: the case once dispatched."""
    queued = await case_when(api, case_id, lambda s: s["status"] == "dispatching")
    assert queued["assignment"]["department_id"] == CENTRE_ID
    handle = handle_of(client, case_id)
    await fast_forward_past(env, handle, _at(queued["deadlines"]["accept"]))
    await act(api, case_id, "dispatch", SUPERVISOR, department_id=unit)
    return await case_when(api, case_id, lambda s: s["status"] == "assigned")


def _assert_fresh_round(state: dict) -> None:
    """Nothing was charged against the centre, and the unit's deadlines run from dispatch."""
    assert state["breaches"] == [], state["breaches"]
    assert "escalation_started" not in _kinds(state), _kinds(state)
    dispatched = next(e for e in reversed(state["events"]) if e["kind"] == "dispatched")
    at = _at(dispatched["at"])
    deadlines = state["deadlines"]
    assert _at(deadlines["accept"]) > at and _at(deadlines["finish"]) > at, (deadlines, at)


async def test_an_unrouted_case_waits_in_the_queue_without_deadlines_against_the_centre(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment
) -> None:
    created = await register(api, category_id="stray_animals", title="Stray dogs at the school")
    case_id = created["case_id"]
    state = await _dispatched_past_the_queue(api, env, client, case_id)
    _assert_fresh_round(state)
    assert state["assignment"]["department_id"] == "urban-management"

    # the unit's own deadline runs, and a breach of it is the unit's
    handle = handle_of(client, case_id)
    await fast_forward_past(env, handle, _at(state["deadlines"]["accept"]))
    late = await case_when(api, case_id, lambda s: s["breaches"])
    assert [b["kind"] for b in late["breaches"]] == ["accept"]
    breached = next(e for e in late["events"] if e["kind"] == "deadline_breached")
    assert breached["data"]["department_id"] == "urban-management"
    await act(api, case_id, "accept", URBAN)
    await handle.terminate("test finished")
    await keep_history(handle, "queue_waits_without_deadlines")


async def test_a_reassignment_ended_in_the_queue_runs_no_deadlines_against_the_centre(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment
) -> None:
    created = await register(api)  # → urban management
    case_id = created["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    await act(api, case_id, "accept", URBAN)
    await act(api, case_id, "return", URBAN, reason="Amplified music at night is police work")
    child = client.get_workflow_handle(f"{case_id}-reassign-1")
    await eventually(lambda: exists(child), within=30)
    await child.terminate("an operator ended the reassignment")  # → the centre's queue

    # to another unit: not back to urban management, whose return sent it there (v37)
    state = await _dispatched_past_the_queue(api, env, client, case_id, unit="police")
    _assert_fresh_round(state)
    handle = handle_of(client, case_id)
    await handle.terminate("test finished")
    await keep_history(handle, "queue_after_reassignment_without_deadlines")


async def test_the_overdue_board_says_a_queued_case_waits_for_its_dispatch(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    """超时工单 for a case left in the queue past the deadlines recorded at receipt: its 超时环节
    is 待派单超时 (the centre's dispatch is late), not 签收时限 — no unit owes a 签收 yet.
    Before, the board said 签收时限 and 办结时限 against the centre. (The board's row as the
    page reads it and renders it: the page itself lists the 200 first of a shared database.)"""
    created = await register(api, category_id="stray_animals", title="Stray dogs by the river")
    case_id = created["case_id"]
    queued = await case_when(api, case_id, lambda s: s["status"] == "dispatching")
    handle = handle_of(client, case_id)
    await fast_forward_past(env, handle, _at(queued["deadlines"]["accept"]))
    now = _at(queued["deadlines"]["accept"]) + timedelta(minutes=1)
    row = dict(await pool.fetchrow(  # the board's own columns and rule, this case only
        f"SELECT {OVERDUE.columns} {OVERDUE.source} AND case_id = $2", now, case_id))
    row["late_steps"] = late_steps(row, now)
    assert row["late_steps"] == [(QUEUE_WAIT, _at(queued["deadlines"]["accept"]))]
    board = templates.env.from_string(
        '{% from "_case_rows.html" import case_table %}'
        '{{ case_table(rows, {}, "overdue", late=True) }}'
    ).render(rows=[row], prefix="/console")
    steps = board.split('class="late-steps"', 1)[1].split("</td>", 1)[0]  # its data-label too
    assert "待派单超时" in steps and "签收时限" not in steps and "办结时限" not in steps, steps
    await handle.terminate("test finished")


def _section(page: str, heading: str) -> str:
    part = page.split(f"<h2>{heading}</h2>", 1)[1]
    return part.split("</section>", 1)[0]


async def test_a_queued_case_shows_it_waits_for_dispatch_not_countdowns(
    api: httpx.AsyncClient, client: Client
) -> None:
    """A case in the centre's queue (待派单) showed on its page 签收时限 and 办结时限 counting
    down, and on 待派单队列 and 工单查询 its 办结时限 counting down, although since lean-case-v8
    no deadline runs in the queue. Now its page says it waits for dispatch since when, and that
    the unit's deadlines start at dispatch; the board and the look-up say 派单后起算."""
    created = await register(api, category_id="stray_animals", title="Stray dogs at the market")
    case_id = created["case_id"]
    queued = await case_when(api, case_id, lambda s: s["status"] == "dispatching")
    assert queued["reconvenes_released"], "a case of lean-case-v8 or later"
    supervisor = await signed_in(api, "supervisor")
    try:
        page = (await supervisor.get(f"/console/cases/{case_id}")).text
        held = _section(page, "承办与时限")
        assert "data-deadline" not in held and "签收时限" not in held, held
        assert "待派单" in held and "派单后起算" in held, held
        assert 'id="queued-since"' in held, held

        async def listed() -> str | None:
            board = (await supervisor.get("/console/supervision")).text
            return board if f">{case_id}</a>" in board.split('id="queue"', 1)[-1] else None

        board = await eventually(listed, within=20)
        row = board.split(f">{case_id}</a>", 1)[1].split("</tr>", 1)[0]
        assert "data-deadline" not in row and "派单后起算" in row, row
        found = (await supervisor.get(f"/console/lookup?case_id={case_id}")).text
        row = found.split(f">{case_id}</a>", 1)[1].split("</tr>", 1)[0]
        assert "data-deadline" not in row and "派单后起算" in row, row
    finally:
        await supervisor.aclose()
    await handle_of(client, case_id).terminate("test finished")


def test_a_queued_case_before_lean_case_v8_keeps_its_countdowns() -> None:
    """A case before lean-case-v8 ran its receipt deadlines in the queue (their timers charge
    the centre): its page and the board still count them down. The case's epoch is read from
    ``reconvenes_released`` (set from the same epoch; the state has no field of this rule)."""
    received = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    state = CaseState(
        case_id="JS20261124-999999", status=Status.DISPATCHING, title="t", category_id="c",
        grid_id="g", address="", channel=Channel.HOTLINE, urgency=Urgency.GENERAL,
        received_at=received,
    )  # fmt: skip
    assert not deadlines_wait_for_dispatch(state)
    newer = state.model_copy(update={"reconvenes_released": True})
    assert deadlines_wait_for_dispatch(newer) and queued_since(newer) == received
    assigned = newer.model_copy(update={"status": Status.ASSIGNED})
    assert not deadlines_wait_for_dispatch(assigned)
    finish = received + timedelta(days=2)
    row = {"case_id": state.case_id, "title": "t", "status": "dispatching", "urgency": "general",
           "department_id": CENTRE_ID, "received_at": received, "finish_deadline": finish,
           "breaches": [], "escalation_level": 0}  # fmt: skip
    board = templates.env.from_string(
        '{% from "_case_rows.html" import case_table %}{{ case_table(rows, {}, "queue") }}'
    )
    old = board.render(rows=[{**row, "from_dispatch": False}], prefix="/console")
    assert "data-deadline" in old and "派单后起算" not in old
    new = board.render(rows=[{**row, "from_dispatch": True}], prefix="/console")
    assert "data-deadline" not in new and "派单后起算" in new


# --- the supervision ladder of a queued case (queued-ladder-ceiling-v1, epoch lean-case-v9) ----


def _ladder_steps(state: dict) -> list[tuple[int, str]]:
    return [(e["data"]["level"], e["data"]["department_id"])
            for e in state["events"] if e["kind"] == "escalated"]  # fmt: skip


async def test_supervision_of_a_queued_case_holds_at_supervise_and_never_reaches_the_centre(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment
) -> None:
    """督办 while the case waits in the queue presses the centre's dispatch desk, and no
    further: the ladder holds at 督办 however long the queue waits — no 会办, no 问责 against
    the centre itself (before, it climbed a step every interval to 问责 and recorded an
    accountability referral against the centre). The dispatch ends it; the unit gets its own
    deadlines and none of the ladder's steps."""
    created = await register(api, category_id="stray_animals", title="Stray dogs")
    case_id, token = created["case_id"], created["citizen_token"]
    await case_when(api, case_id, lambda s: s["status"] == "dispatching")
    await act(api, case_id, "supervision", SUPERVISOR, form="supervise", note="请尽快派单")
    await case_when(api, case_id, lambda s: s["escalation_level"] == 3)
    ladder = await ladder_of(client, case_id)
    # three step intervals (2 h each by default): 会办 then 问责 before; the ladder then ended
    await env.fast_forward(ladder, timedelta(hours=6, minutes=1))
    state = await case_when(api, case_id, lambda s: s["status"] == "dispatching")
    assert "accountability_recorded" not in _kinds(state), _kinds(state)
    assert _ladder_steps(state) == [(3, CENTRE_ID)], _ladder_steps(state)
    assert state["escalation"]["active"] and state["escalation_level"] == 3, state["escalation"]

    await act(api, case_id, "dispatch", SUPERVISOR, department_id="urban-management")
    state = await case_when(api, case_id, lambda s: s["status"] == "assigned" and (
        not s["escalation"]["active"]))  # fmt: skip
    stopped = next(e for e in state["events"] if e["kind"] == "escalation_stopped")
    assert stopped["data"]["final_level"] == 3 and stopped["data"]["stopped"], stopped
    assert _ladder_steps(state) == [(3, CENTRE_ID)] and state["breaches"] == []
    handle = await withdrawn_to_its_close(api, client, case_id, token)
    await keep_history(handle, "queued_ladder_held_at_supervise")


async def test_an_accountability_order_on_a_queued_case_is_refused(
    api: httpx.AsyncClient, client: Client
) -> None:
    """问责 names a unit that failed its duty; a queued case has none but the centre, and the
    centre does not refer itself for accountability: 409 ``centre_not_supervised``, nothing
    recorded (before, the order recorded an accountability against the
    centre at once). 督办 is still taken."""
    case_id = (await register(api, category_id="stray_animals", title="Stray dogs"))["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "dispatching")
    body = {"form": "accountability", "note": "派单迟缓", "persons": ["张三"],
            "decision": "通报批评"}  # fmt: skip
    refused = await act(api, case_id, "supervision", SUPERVISOR, expect=409, **body)
    assert refused["error"]["code"] == "centre_not_supervised", refused
    await act(api, case_id, "supervision", SUPERVISOR, form="supervise", note="请尽快派单")
    state = await case_when(api, case_id, lambda s: s["escalation_level"] == 3)
    assert "accountability_recorded" not in _kinds(state), _kinds(state)
    assert state["escalation"]["form"] == "supervise", state["escalation"]
    await handle_of(client, case_id).terminate("test over")


async def test_repeat_reports_of_a_queued_case_press_the_dispatch_desk_up_to_supervise(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment
) -> None:
    """The inaction signal of repeat reports (并单, from the policy's number) on a queued case
    starts its ladder at 提醒; it climbs 催办, 督办 and holds there — before, 会办 and 问责
    against the centre followed, two intervals later."""
    case_id = (await register(api, category_id="stray_animals", title="Stray dogs"))["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "dispatching")
    handle = handle_of(client, case_id)
    for n in range(2):  # repeats_before_supervision: 2
        await handle.signal("repeat_report", {
            "report_id": f"R-{n}-{case_id}", "channel": "hotline", "description": "还有流浪狗",
            "actor": {"role": "operator", "name": "demo-operator"},
            "received_at": (await env.get_current_time(handle)).isoformat(),
        })  # fmt: skip
    await case_when(api, case_id, lambda s: s["escalation_level"] == 1)
    ladder = await ladder_of(client, case_id)
    # Five intervals of the ladder's clock. Each link is checked on its own: the skip reached
    # its target (a ladder holding at 督办 never ends by itself), the ladder told the case 催办
    # and 督办 (delivered: a workflow with a pending task or signal is not skipped, so the
    # target is reached only after both), then the case applies them in real time.
    await fast_forward(env, ladder, timedelta(hours=10, minutes=1))
    assert await steps_told(ladder) == [2, 3], await steps_told(ladder)
    state = await case_applied(api, client, case_id, lambda s: s["escalation_level"] >= 3)
    assert state["escalation"]["trigger"] == "repeat_reports", state["escalation"]
    assert "accountability_recorded" not in _kinds(state), _kinds(state)
    assert _ladder_steps(state) == [(1, CENTRE_ID), (2, CENTRE_ID), (3, CENTRE_ID)], state
    assert state["escalation"]["active"], state["escalation"]
    await handle.terminate("test over")
