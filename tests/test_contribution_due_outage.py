"""A co-handler's contribution due (会办's 协办意见期限) across a worker outage.

With the worker up, the due's timer records ``contribution_overdue`` at the due when the
co-handler has neither contributed nor been waived, and whatever comes after (a waiver, the
citizen's 撤诉) records nothing more. With the worker down across the due, an action sent
after it and the due's timer reach the worker in one workflow task, and the SDK applies the
action first: before ``lean-case-v15`` (``contribution-due-judged-v1``) the waived co-handler
or the closed case then met the due, and the overdue was never recorded. The late contribution
itself was fixed in ``lean-case-v13``
(``test_actions_timed_when_sent_attacks::test_a_contribution_sent_after_its_due_is_overdue``).
Each test waits a few seconds of real time: the worker is stopped across the due
(helpers.worker_down_across)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest
from helpers import (
    Scenarios,
    closed_state,
    keep_history,
    outage_scenarios,
    own_queue,
    worker_down_across,
)
from temporalio.client import Client
from test_actions_timed_when_sent import sent
from test_actions_timed_when_sent_attacks import CITIZEN, _convened
from test_hostile_messages import SUPERVISOR, kinds, rid, until

from jiesu.case.domain import EventKind
from jiesu.config import Settings
from worker import build_worker

OVERDUE = EventKind.CONTRIBUTION_OVERDUE


async def _a_waiver_sent_after_the_contribution_due_keeps_the_overdue(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    handle, queue = await worker_down_across(
        lambda slack: _convened(client, pool, settings, "latewaiver", slack),
        b"contribution deadline water",
    )
    waiver = {"actor": sent(rid(SUPERVISOR), datetime.now(UTC)), "department_id": "water"}
    await handle.signal("waive_co_handler", waiver)
    async with build_worker(client, pool, own_queue(settings, queue)):
        s = await until(client, handle.id, lambda s: s.co_handlers[0].done, within=60)
        await handle.terminate("test finished")
        await keep_history(handle, "waiver_after_the_contribution_due_in_its_task")
    assert s.co_handlers[0].waived and s.co_handlers[0].contributed_at is None
    order = [e.kind for e in s.events if e.kind in (OVERDUE, EventKind.CO_HANDLER_WAIVED)]
    assert order == [OVERDUE, EventKind.CO_HANDLER_WAIVED]  # the due came first
    assert kinds(s, OVERDUE)[0]["department_id"] == "water"


async def test_a_waiver_sent_after_the_contribution_due_keeps_the_overdue(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    await outages.of(request)


async def _a_withdrawal_sent_after_the_contribution_due_keeps_the_overdue(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    handle, queue = await worker_down_across(
        lambda slack: _convened(client, pool, settings, "latewithdrawco", slack),
        b"contribution deadline water",
    )
    withdraw = {"actor": sent(rid(CITIZEN), datetime.now(UTC)), "reason": "Sorted it myself"}
    await handle.signal("withdraw", withdraw)
    async with build_worker(client, pool, own_queue(settings, queue)):
        s = await closed_state(handle)
    await keep_history(handle, "withdrawal_after_the_contribution_due_in_its_task")
    co = s.co_handlers[0]
    assert s.closed_at is not None and co.due is not None and s.closed_at > co.due
    assert len(kinds(s, OVERDUE)) == 1, [e.kind for e in s.events]


async def test_a_withdrawal_sent_after_the_contribution_due_keeps_the_overdue(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    await outages.of(request)


# each test_x awaits its scenario _x, all run at once (helpers.outage_scenarios)
outages = outage_scenarios(
    _a_waiver_sent_after_the_contribution_due_keeps_the_overdue,
    _a_withdrawal_sent_after_the_contribution_due_keeps_the_overdue,
)
