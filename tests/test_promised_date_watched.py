"""A 延期 approved after the finish deadline's breach holds the unit to its promised date
(lean-case-v19, ``promise-watched-v1``).

The finish deadline's watch ends at its breach (one breach per watch, lean-case-v16). When
the centre approves the extension only after that breach, the deadline moves to the promised
date, but no watch was left to follow it: a unit that then missed its own promise was never
recorded late again, with the worker up or down, in every epoch before v19. Real time, the
worker up throughout: the finish deadline a few seconds ahead, the promised date a few
seconds after it (time skipping does not move a case's clock while the breach's ladder waits).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from helpers import (
    Scenarios,
    keep_history,
    outage_scenarios,
    own_case,
    own_queue,
    started_assigned,
    state_of,
    until_past,
    urgent_start,
)
from temporalio.client import Client, WorkflowHandle
from test_actions_timed_when_sent import sent
from test_actions_timed_when_sent_attacks import URGENT_FINISH
from test_hostile_messages import SUPERVISOR, URBAN, rid, until

from jiesu.case.domain import CaseState, DeadlineKind, EventKind, Status
from jiesu.config import Settings
from worker import build_worker
from workflows import patches as patches_module

FINISH_IN = timedelta(seconds=4)  # the finish deadline, from the case's start
PROMISE_AFTER = timedelta(seconds=4)  # the promised date, after the approval


def _finish_breaches(s: CaseState) -> list[datetime]:
    return [b.deadline for b in s.breaches if b.kind is DeadlineKind.FINISH]


async def _approved_after_the_breach(
    client: Client, handle: WorkflowHandle, finish: datetime
) -> datetime:
    """签收, 联系, 延期 asked in time for a date ``PROMISE_AFTER`` past the deadline; the
    deadline passes and is recorded (the centre still silent); the centre approves after it."""
    for step in ("accept", "contact"):
        await handle.signal(step, {"actor": sent(rid(URBAN), datetime.now(UTC))})
    await until(client, handle.id, lambda s: s.contacted_at is not None)
    promised = finish + PROMISE_AFTER
    ask = {"actor": sent(rid(URBAN), datetime.now(UTC)), "reasons": "Main pipe must be replaced",
           "measures": "Water tanker on site", "promised_finish": promised.isoformat()}  # fmt: skip
    await handle.signal("request_extension", ask)
    await until(client, handle.id, lambda s: s.extension is not None)
    await until(client, handle.id, lambda s: bool(_finish_breaches(s)), within=30)
    decision = {"actor": sent(rid(SUPERVISOR), datetime.now(UTC)), "approved": True}
    await handle.signal("decide_extension", decision)
    s = await until(client, handle.id, lambda s: s.extension_count == 1)
    assert s.deadlines is not None and s.deadlines.finish == promised
    assert datetime.now(UTC) < promised - timedelta(seconds=1), "the setup took too long"
    return promised


async def _finish_timers(handle: WorkflowHandle) -> int:
    history = await handle.fetch_history()
    return sum(
        1 for e in history.events
        if e.HasField("timer_started_event_attributes")
        and b"finish deadline" in e.user_metadata.summary.data
    )  # fmt: skip


async def _past_the_promise(
    client: Client, pool: asyncpg.Pool, settings: Settings, name: str, *, reply: bool
) -> tuple[CaseState, datetime, datetime, int]:
    """The case once its promised date has passed: its state, its two dates, and how many
    finish-deadline timers its history started."""
    case_id, queue = own_case(name)
    start = urgent_start(case_id, URGENT_FINISH, FINISH_IN)
    async with build_worker(client, pool, own_queue(settings, queue)):
        handle = await started_assigned(client, case_id, queue, start)
        s = await state_of(client, case_id)
        assert s.deadlines is not None
        finish = s.deadlines.finish
        promised = await _approved_after_the_breach(client, handle, finish)
        if reply:
            answer = {"actor": sent(rid(URBAN), datetime.now(UTC)), "outcome": "resolved",
                      "text": "The pipe is replaced"}  # fmt: skip
            await handle.signal("reply", answer)
            await until(client, case_id, lambda s: s.status is Status.REPLIED)
        await until_past(promised + timedelta(seconds=1))
        timers = await _finish_timers(handle)
        if timers == 2 and not reply:  # the promise's watch: its breach, once its timer fired
            s = await until(client, case_id, lambda s: len(_finish_breaches(s)) == 2, within=30)
        else:
            s = await until(client, case_id, lambda s: True)
        await handle.terminate("test finished")
        await keep_history(handle, name)
    return s, finish, promised, timers


async def _a_promise_missed_after_a_late_approval_is_a_second_breach(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    s, finish, promised, timers = await _past_the_promise(
        client, pool, settings, "promise_missed_after_a_late_approval", reply=False
    )
    assert _finish_breaches(s) == [finish, promised], s.breaches
    assert timers == 2
    assert [e.kind for e in s.events].count(EventKind.DEADLINE_BREACHED) == len(s.breaches)


async def test_a_promise_missed_after_a_late_approval_is_a_second_breach(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """The unit asked in time, the centre approved after the finish deadline's breach, and
    the unit did not reply by its own promised date: a second 办结 超时, of that date."""
    await outages.of(request)


async def _a_promise_kept_after_a_late_approval_is_no_second_breach(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    s, finish, _, timers = await _past_the_promise(
        client, pool, settings, "promise_kept_after_a_late_approval", reply=True
    )
    assert s.status is Status.REPLIED
    assert _finish_breaches(s) == [finish], s.breaches
    assert timers == 2  # watched, and met


async def test_a_promise_kept_after_a_late_approval_is_no_second_breach(
    outages: Scenarios, request: pytest.FixtureRequest
) -> None:
    """The same, the unit replying before its promised date: the watch ends at the reply."""
    await outages.of(request)


async def test_a_case_before_v19_does_not_watch_the_promise(
    client: Client, pool: asyncpg.Pool, settings: Settings, monkeypatch: pytest.MonkeyPatch,
    outages: Scenarios,
) -> None:
    """A case of lean-case-v18 runs (and replays) as it did: nothing watches the promise."""
    await outages.settled()  # the epochs are those of every worker of this process
    v18 = next(n for n, (e, _) in enumerate(patches_module.EPOCHS) if e == "lean-case-v18")
    monkeypatch.setattr(patches_module, "EPOCHS", patches_module.EPOCHS[: v18 + 1])
    s, finish, _, timers = await _past_the_promise(
        client, pool, settings, "promise_unwatched_before_v19", reply=False
    )
    assert timers == 1
    assert _finish_breaches(s) == [finish], s.breaches


# each test_x awaits its scenario _x, all run at once (helpers.outage_scenarios)
outages = outage_scenarios(
    _a_promise_missed_after_a_late_approval_is_a_second_breach,
    _a_promise_kept_after_a_late_approval_is_no_second_breach,
)
