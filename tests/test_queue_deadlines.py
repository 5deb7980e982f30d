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

from datetime import datetime, timedelta

import asyncpg
import httpx
from helpers import (
    SUPERVISOR,
    act,
    case_when,
    department,
    eventually,
    exists,
    fast_forward_past,
    handle_of,
    keep_history,
    register,
)
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.console.supervision import _OVERDUE
from api.console.web import templates
from jiesu.case.domain import CENTRE_ID
from jiesu.case.sla import QUEUE_WAIT, late_steps

URBAN = department("urban-management")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _kinds(state: dict) -> list[str]:
    return [e["kind"] for e in state["events"]]


async def _dispatched_past_the_queue(
    api: httpx.AsyncClient, env: WorkflowEnvironment, client: Client, case_id: str
) -> dict:
    """The queued case waits past the accept deadline it had when it was queued, then the
    centre dispatches it to urban management: the case once dispatched."""
    queued = await case_when(api, case_id, lambda s: s["status"] == "dispatching")
    assert queued["assignment"]["department_id"] == CENTRE_ID
    handle = handle_of(client, case_id)
    await fast_forward_past(env, handle, _at(queued["deadlines"]["accept"]))
    await act(api, case_id, "dispatch", SUPERVISOR, department_id="urban-management")
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

    state = await _dispatched_past_the_queue(api, env, client, case_id)
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
    row = dict(await pool.fetchrow(f"{_OVERDUE.split('ORDER BY')[0]} AND case_id = $2",
                                   now, case_id))  # fmt: skip
    row["late_steps"] = late_steps(row, now)
    assert row["late_steps"] == [(QUEUE_WAIT, _at(queued["deadlines"]["accept"]))]
    board = templates.env.from_string(
        '{% from "_case_rows.html" import case_table %}'
        '{{ case_table(rows, {}, "overdue", late=True) }}'
    ).render(rows=[row], prefix="/console")
    steps = board.split('class="late-steps"', 1)[1].split("</td>", 1)[0]  # its data-label too
    assert "待派单超时" in steps and "签收时限" not in steps and "办结时限" not in steps, steps
    await handle.terminate("test finished")
