"""lean-case-v17: a round ended (a 退单 at the reassignment bound, a return before a co-handler's
due) and a deadline or due around it, whatever the order in which the worker applies them.

Found by a review of v14–v16 (its scratch tests, adapted). The principle, as in
tests/test_moved_deadline_attacks.py: a case records the same breaches and overdues as with the
worker up and every action applied when sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from helpers import (
    Scenarios,
    keep_history,
    nothing,
    outage_scenarios,
    own_case,
    own_queue,
    started_assigned,
    until_past,
)
from temporalio.client import Client
from test_actions_timed_when_sent import URGENT_ACCEPT, _across_an_outage, sent
from test_hostile_messages import SUPERVISOR, URBAN, kinds, rid, until

from jiesu.case.domain import DeadlineKind, EventKind, Status
from jiesu.config import Settings
from worker import build_worker
from workflows import patches as patches_module


async def _late_return_at_the_bound(
    client: Client, pool: asyncpg.Pool, settings: Settings, name: str, keep: bool = False
) -> list[DeadlineKind]:
    """An urgent case whose accept deadline passes with the worker down; the unit then returns
    it (sent after the deadline) with no reassignment left (max_reassignments 0): the case goes
    to the centre's queue. With the worker up the deadline's timer records 签收 超时 first."""
    bound = settings.model_copy(update={"max_reassignments": 0})
    handle, queue = await _across_an_outage(
        client, pool, bound, name, URGENT_ACCEPT, nothing, nothing, b"accept deadline"
    )
    ret = {"actor": sent(rid(URBAN), datetime.now(UTC)), "reason": "Not ours: police"}
    await handle.signal("return", ret)
    async with build_worker(client, pool, own_queue(bound, queue)):
        s = await until(client, handle.id, lambda s: s.status is Status.DISPATCHING, within=60)
        await handle.terminate("test finished")
        if keep:
            await keep_history(handle, "late_return_at_the_bound_in_the_timers_task")
    return [b.kind for b in s.breaches]


async def _a_late_return_at_the_bound_applied_with_the_accept_timer_keeps_the_breach(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    breaches = await _late_return_at_the_bound(client, pool, settings, "latereturnbound", True)
    assert breaches.count(DeadlineKind.ACCEPT) == 1, breaches


async def test_a_late_return_at_the_bound_applied_with_the_accept_timer_keeps_the_breach(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """In one task (the worker down) the main loop queued the case — a new round, which meets
    every deadline of the old — before the watch judged: no breach, before lean-case-v17."""
    await outages.of(request)


async def test_a_v16_case_keeps_its_rule_for_a_late_return_at_the_bound(
    client: Client, pool: asyncpg.Pool, settings: Settings, monkeypatch: pytest.MonkeyPatch,
    outages: Scenarios,
) -> None:
    """A case of lean-case-v16 keeps what it did (its replay must): no breach recorded."""
    await outages.settled()  # the epochs are those of every worker of this process
    v16 = next(n for n, (e, _) in enumerate(patches_module.EPOCHS) if e == "lean-case-v16")
    monkeypatch.setattr(patches_module, "EPOCHS", patches_module.EPOCHS[: v16 + 1])
    breaches = await _late_return_at_the_bound(client, pool, settings, "latereturnboundv16")
    assert DeadlineKind.ACCEPT not in breaches, breaches


async def _a_waiver_after_the_due_of_a_case_returned_before_it_records_no_overdue(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    case_id, queue = own_case("waivereassign")
    async with build_worker(client, pool, own_queue(settings, queue)):
        handle = await started_assigned(client, case_id, queue)
        due = datetime.now(UTC) + timedelta(seconds=3)
        water = [{"id": "water", "name": "Water"}]
        convene = {"actor": sent(rid(SUPERVISOR), datetime.now(UTC)),
                   "departments": water, "due": due.isoformat()}  # fmt: skip
        await handle.signal("add_co_handlers", convene)
        await until(client, case_id, lambda s: s.co_handlers)
        ret = {"actor": sent(rid(URBAN), datetime.now(UTC)), "reason": "Not ours: police"}
        await handle.signal("return", ret)
        await until(client, case_id, lambda s: s.status is Status.REASSIGNING)
        await until_past(due + timedelta(seconds=1))
        s = await until(client, case_id, lambda s: s.status is Status.REASSIGNING)
        assert not kinds(s, EventKind.CONTRIBUTION_OVERDUE)  # the timer's rule: nothing owed
        waiver = {"actor": sent(rid(SUPERVISOR), datetime.now(UTC)), "department_id": "water"}
        await handle.signal("waive_co_handler", waiver)
        s = await until(client, case_id, lambda s: s.co_handlers[0].done, within=30)
        await handle.terminate("test finished")
    assert not kinds(s, EventKind.CONTRIBUTION_OVERDUE), [e.kind.value for e in s.events]


async def test_a_waiver_after_the_due_of_a_case_returned_before_it_records_no_overdue(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Worker up throughout. 会办 with a due 3 s on; the lead unit returns the case (退单) before
    the due: REASSIGNING (the dispatcher's window), the contribution watch ends there and the
    due's timer records nothing. A supervisor's 免除协办 after the due, the case still
    reassigning: lean-case-v15's late waiver recorded ``contribution_overdue``, which the due's
    own rule does not (nor the round's release)."""
    await outages.of(request)


# each test_x awaits its scenario _x, all run at once (helpers.outage_scenarios)
outages = outage_scenarios(
    _a_late_return_at_the_bound_applied_with_the_accept_timer_keeps_the_breach,
    _a_waiver_after_the_due_of_a_case_returned_before_it_records_no_overdue,
)
