"""Red team of lean-case-v21 (messages-after-decisions-v1): the messages of a task that decided
a reassignment wait (``_deferred``) until the main loop has begun it, then are replayed through
``_receive``. Attacked here: that a waiting message is neither lost nor applied twice — a
client's retry (same request_id) of a waiting 撤诉, a second 撤诉 that must be recorded as
refused, a second reassigning action in the deciding task. Each test sends a 退单 and its
messages while the worker is down (one workflow task), then checks the case against the
worker-up order, and replays the history with today's code (``_ended``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from helpers import (
    Scenarios,
    case_settled,
    ended_and_replayed,
    event_count,
    outage_scenarios,
    own_case,
    own_queue,
    refusals,
    signal_sent,
    started_assigned,
    timeline_of,
    worker_down_across,
)
from temporalio.client import Client, WorkflowHandle
from test_actions_timed_when_sent import sent
from test_actions_timed_when_sent_attacks import CITIZEN, _convened
from test_hostile_messages import SUPERVISOR, URBAN, WATER, rid
from test_v20_attacks import _replied, _returned_in_one_task_with

from jiesu.case.domain import EventKind, Status
from jiesu.config import Settings
from worker import build_worker


async def _a_retried_and_a_second_withdrawal_waiting_for_the_reassignment(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    actor_a = sent(rid(CITIZEN), datetime.now(UTC))

    async def withdraw_twice_and_retry(handle: WorkflowHandle) -> None:
        await handle.signal("withdraw", {"actor": actor_a, "reason": "Sorted it myself"})
        await handle.signal("withdraw", {"actor": actor_a, "reason": "Sorted it myself"})
        b = sent(rid(CITIZEN), datetime.now(UTC))
        await handle.signal("withdraw", {"actor": b, "reason": "Again"})

    s = await _returned_in_one_task_with(
        client, pool, settings, "retrywithdraw", withdraw_twice_and_retry,
        lambda s: s.status is Status.CLOSED and bool(refusals(s)),
    )  # fmt: skip
    assert s.status is Status.CLOSED, timeline_of(s)
    assert event_count(s, EventKind.WITHDRAWN) == 1, timeline_of(s)
    refused = [e for e in s.events if e.kind is EventKind.REJECTED]
    assert [e.data["action"] for e in refused] == ["withdraw"], timeline_of(s)
    kinds = [e.kind for e in s.events]
    assert kinds.index(EventKind.REASSIGNMENT_STARTED) < kinds.index(EventKind.WITHDRAWN)


async def test_a_retried_and_a_second_withdrawal_waiting_for_the_reassignment(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Worker down: 退单, then 撤诉 (request A), the client's retry of it (request A again),
    then a second 撤诉 (request B). Worker up: the 退单 begins its reassignment
    (reassignment_started), 撤诉 A closes the case, its retry is ignored (idempotent), 撤诉 B is
    refused and recorded. One task (v21): A and its retry both wait (the request_id is not yet
    known when they are deferred); replayed, A applies and records its id, the retry must be
    dropped, B refused — exactly one withdrawn, one refusal, nothing lost."""
    await outages.of(request)


async def _a_return_and_a_raise_level_in_one_task(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:

    async def raise_level(handle: WorkflowHandle) -> None:
        actor = sent(rid(URBAN), datetime.now(UTC))
        await handle.signal("raise_level", {"actor": actor, "reason": "Beyond our authority"})

    s = await _returned_in_one_task_with(
        client, pool, settings, "returnraise", raise_level,
        lambda s: bool(refusals(s)) and s.status is not Status.REASSIGNING,
    )  # fmt: skip
    assert set(refusals(s)) == {"raise_level"}, timeline_of(s)
    assert event_count(s, EventKind.REASSIGNMENT_STARTED) == 1, timeline_of(s)
    assert event_count(s, EventKind.LEVEL_RAISE_REQUESTED) == 0, timeline_of(s)


async def test_a_return_and_a_raise_level_in_one_task(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """Worker down: the unit's 退单, then its own 提级办. Worker up: the 退单 begins the
    reassignment; the 提级办 meets a reassigning case — refused (recorded), one reassignment
    only. One task (v21): the 提级办 waits, is replayed after reassignment_started: it must be
    recorded as refused, not lost, and must not start a second reassignment."""
    await outages.of(request)


async def _a_return_and_a_contribution_sent_before_its_due_in_the_dues_task(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:

    async def setup(slack: timedelta) -> tuple[WorkflowHandle, str]:
        handle, queue = await _convened(client, pool, settings, "returncontribute", slack)
        await handle.signal("return", {
            "actor": sent(rid(URBAN), datetime.now(UTC)), "reason": "Not ours: police",
        })  # fmt: skip
        await handle.signal("contribute", {
            "actor": sent(rid(WATER), datetime.now(UTC)), "text": "Pipe map attached",
        })  # fmt: skip
        return handle, queue

    handle, queue = await worker_down_across(setup, b"contribution deadline water")
    async with build_worker(client, pool, own_queue(settings, queue)):
        s = await case_settled(
            handle,
            lambda s: (
                event_count(s, EventKind.REASSIGNMENT_STARTED) == 1
                and (bool(refusals(s)) or event_count(s, EventKind.CONTRIBUTED) == 1)
            ),
        )
        await ended_and_replayed(handle)
    kinds = [e.kind for e in s.events]
    assert EventKind.REASSIGNMENT_STARTED in kinds, timeline_of(s)
    assert EventKind.CONTRIBUTION_OVERDUE not in kinds, timeline_of(s)
    assert set(refusals(s)) == {"contribute"}, timeline_of(s)  # as on a reassigning case


async def test_a_return_and_a_contribution_sent_before_its_due_in_the_dues_task(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """会办: water convened, its contribution due a few seconds away. Worker down across the
    due: the lead unit's 退单 and then water's contribution, both sent before the due; the due's
    timer reaches the worker in the same task. Worker up: the 退单 begins the reassignment
    before the due (status reassigning: the due's watch ends, nothing owed with the unit), and
    the contribution, sent in time, is judged then — no contribution_overdue either way.
    One task (v21): the contribution waits behind the decided reassignment (``_deferred``);
    the due's coroutine runs before the main loop begins the reassignment, finds the case still
    with its unit and water not done — and records contribution_overdue against a co-handler
    that contributed in time (v20 applied the contribution in its handler, first)."""
    await outages.of(request)


async def _an_unsatisfied_rating_and_a_withdrawal_in_the_rating_windows_task(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    holder: dict[str, Settings] = {}

    async def setup(slack: timedelta) -> tuple[WorkflowHandle, str]:
        own = settings.model_copy(update={
            "dispatcher_window_minutes": 0.01,
            "rating_window_hours": (slack.total_seconds() + 2) / 3600,
        })  # fmt: skip
        holder["settings"] = own
        case_id, queue = own_case("ratewindow")
        async with build_worker(client, pool, own_queue(own, queue)):
            handle = await started_assigned(client, case_id, queue)
            await _replied(client, handle)
        await signal_sent(handle, "rate", CITIZEN, rating="unsatisfied", comment="Still loud")
        await signal_sent(handle, "withdraw", CITIZEN, reason="Sorted it myself")
        return handle, queue

    handle, queue = await worker_down_across(setup, b"rating window")
    async with build_worker(client, pool, own_queue(holder["settings"], queue)):
        s = await case_settled(handle, lambda s: s.status is Status.CLOSED or s.round > 1)
        await ended_and_replayed(handle)
    assert refusals(s) == {}, timeline_of(s)
    assert s.status is Status.CLOSED, timeline_of(s)
    kinds = [e.kind for e in s.events]
    rehandled, withdrawn = kinds.index(EventKind.REHANDLE_STARTED), kinds.index(EventKind.WITHDRAWN)
    assert rehandled < withdrawn, timeline_of(s)


async def test_an_unsatisfied_rating_and_a_withdrawal_in_the_rating_windows_task(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """The unit replied; worker down across the rating window's end: the citizen's 不满意
    rating and then a 撤诉, both sent inside the window; the window's timer reaches the worker
    in the same task. Worker up: the rating applies and the main loop starts the 重办
    (rehandle_started, reassigning) in its task; the 撤诉 then closes the case. One task (v21):
    the 撤诉 waits behind the verdict; the rating round must still see the rating (not close
    the case not_rated on the timer) and release the 撤诉 after the 重办 began — withdrawn, no
    refusal, rehandle_started before withdrawn."""
    await outages.of(request)


async def _a_second_assignment_a_rating_a_retry_and_a_withdrawal_in_one_task(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    quick = settings.model_copy(update={"dispatcher_window_minutes": 0.01})
    case_id, queue = own_case("secondrate")
    async with build_worker(client, pool, own_queue(quick, queue)):
        handle = await started_assigned(client, case_id, queue)
        await _replied(client, handle)
    order = {  # the worker is gone
        "actor": sent(rid(SUPERVISOR), datetime.now(UTC)), "reason": "Reply not credible",
        "department_id": "water", "department_name": "县水务局",
    }  # fmt: skip
    await handle.signal("order_second_assignment", order)
    await signal_sent(handle, "rate", CITIZEN, rating="unsatisfied", comment="Still loud")
    await handle.signal("order_second_assignment", order)
    await signal_sent(handle, "withdraw", CITIZEN, reason="Sorted it myself")
    async with build_worker(client, pool, own_queue(quick, queue)):
        s = await case_settled(handle, lambda s: s.status is Status.CLOSED or s.round > 1)
        await ended_and_replayed(handle)
    assert s.status is Status.CLOSED, timeline_of(s)
    assert set(refusals(s)) == {"rate"}, timeline_of(s)
    assert event_count(s, EventKind.SECOND_ASSIGNMENT_ORDERED) == 1, timeline_of(s)
    assert event_count(s, EventKind.REHANDLE_STARTED) == 0, timeline_of(s)
    kinds = [e.kind for e in s.events]
    assert kinds.index(EventKind.REASSIGNMENT_STARTED) < kinds.index(EventKind.WITHDRAWN)


async def test_a_second_assignment_a_rating_a_retry_and_a_withdrawal_in_one_task(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """The unit replied. Worker down: a supervisor's 二次交办 on review of the reply, the
    citizen's 不满意 rating, the supervisor's retry of the same 二次交办 (same request_id), the
    citizen's 撤诉. Worker up: the order begins the reassignment; the rating meets a reassigning
    case, refused; the retry is ignored; the 撤诉 closes the case. One task (v21): all three
    wait behind the order and are replayed in order after reassignment_started — one order, no
    重办, the rating refused, the 撤诉 applied."""
    await outages.of(request)


# each test_x awaits its scenario _x, all run at once (helpers.outage_scenarios)
outages = outage_scenarios(
    _a_retried_and_a_second_withdrawal_waiting_for_the_reassignment,
    _a_return_and_a_raise_level_in_one_task,
    _a_return_and_a_contribution_sent_before_its_due_in_the_dues_task,
    _an_unsatisfied_rating_and_a_withdrawal_in_the_rating_windows_task,
    _a_second_assignment_a_rating_a_retry_and_a_withdrawal_in_one_task,
)
