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
from helpers import handle_of, keep_history, worker_down_across
from temporalio.client import Client, WorkflowHandle
from test_hostile_messages import URBAN, kinds, rid, start_of, until

from jiesu.case.domain import DeadlineKind, EventKind, Status, Urgency
from jiesu.config import Settings
from worker import build_worker
from workflows import ComplaintWorkflow


async def test_a_return_after_the_deadline_in_the_timers_task_keeps_the_breach(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    async def accepted(slack: timedelta) -> tuple[WorkflowHandle, str]:
        """An urgent case accepted, its contact deadline (1 h from receipt) ``slack`` away."""
        queue = f"late-return-{uuid.uuid4().hex[:8]}"
        case_id = f"JS-LATERETURN-{uuid.uuid4().hex[:8]}"
        received = datetime.now(UTC) - timedelta(hours=1) + slack
        start = start_of(case_id).model_copy(
            update={"urgency": Urgency.URGENT, "received_at": received}
        )
        handle = handle_of(client, case_id)
        async with build_worker(client, pool, settings.model_copy(update={"task_queue": queue})):
            await client.start_workflow(ComplaintWorkflow.run, start, id=case_id, task_queue=queue)
            await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
            await handle.signal("accept", {"actor": rid(URBAN)})
            await until(client, case_id, lambda s: s.status is Status.HANDLING)
        return handle, queue

    # the worker is gone; the contact deadline passes, then the unit returns the case
    handle, queue = await worker_down_across(accepted, b"contact deadline")
    await handle.signal("return", {"actor": rid(URBAN), "reason": "Not ours: police work"})
    async with build_worker(client, pool, settings.model_copy(update={"task_queue": queue})):
        s = await until(client, handle.id, lambda s: s.status is not Status.HANDLING, within=60)
        assert kinds(s, EventKind.REASSIGNMENT_STARTED), [e.kind for e in s.events]
        assert DeadlineKind.CONTACT in [b.kind for b in s.breaches], s.breaches
        await handle.terminate("test finished")
        await keep_history(handle, "late_return_in_the_timers_task")
