"""lean-case-v11 (deadlines-end-at-reassignment-v1) after a power cut: a deadline that passed
while the unit still held the case is its breach, even when its return reaches the worker in
the same workflow task as the deadline's timer.

The worker is down (a deploy, a crash, a backlog); the unit's contact deadline passes — the
server records the timer as fired — and the unit returns the case (退单) afterwards. When a
worker is back, both are in one task, and the SDK applies the signal before the timer: the
return puts the case in 改派中, and the watch ended there without the breach, though the unit
was late before it let go (a case of lean-case-v10 records it)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from helpers import eventually, handle_of, keep_history, timer_fired
from temporalio.client import Client
from test_hostile_messages import URBAN, kinds, rid, start_of, until

from jiesu.case.domain import DeadlineKind, EventKind, Status, Urgency
from jiesu.config import Settings
from worker import build_worker
from workflows import ComplaintWorkflow

CONTACT_DUE_IN = timedelta(seconds=25)  # real time: the worker is stopped across it


async def test_a_return_after_the_deadline_in_the_timers_task_keeps_the_breach(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    own = settings.model_copy(update={"task_queue": f"late-return-{uuid.uuid4().hex[:8]}"})
    case_id = f"JS-LATERETURN-{uuid.uuid4().hex[:8]}"
    # urgent: contact within 1 h of receipt; received so that it falls due in CONTACT_DUE_IN
    received = datetime.now(UTC) - timedelta(hours=1) + CONTACT_DUE_IN
    start = start_of(case_id).model_copy(
        update={"urgency": Urgency.URGENT, "received_at": received}
    )
    handle = handle_of(client, case_id)
    async with build_worker(client, pool, own):
        await client.start_workflow(
            ComplaintWorkflow.run, start, id=case_id, task_queue=own.task_queue
        )
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        await handle.signal("accept", {"actor": rid(URBAN)})
        await until(client, case_id, lambda s: s.status is Status.HANDLING)
    # the worker is gone; the contact deadline passes, then the unit returns the case
    await eventually(lambda: timer_fired(handle, b"contact deadline"), within=90)
    await handle.signal("return", {"actor": rid(URBAN), "reason": "Not ours: police work"})
    async with build_worker(client, pool, own):
        s = await until(client, case_id, lambda s: s.status is not Status.HANDLING, within=60)
        assert kinds(s, EventKind.REASSIGNMENT_STARTED), [e.kind for e in s.events]
        assert DeadlineKind.CONTACT in [b.kind for b in s.breaches], s.breaches
        await handle.terminate("test finished")
        await keep_history(handle, "late_return_in_the_timers_task")
