"""A department's action that reaches a case before its plan (in the history) waits for the
plan instead of being refused ``not_assigned``.

Fault run 15 (docs/operations.md), JS20261123-000235: the worker planned the case and projected
it (the read model said: assigned to power-supply), then was killed before its workflow task
completed. The department, reading the read model while the workflow could not answer, accepted
(202: signalled); the next worker replayed the start and the accept ahead of a plan not yet in
the history, and refused the accept — the department was never told."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from helpers import keep_history
from temporalio import activity
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from test_hostile_messages import QUICK_TASKS, URBAN, kinds, rid, start_of, until

from jiesu.case.domain import CasePlan, EventKind, PlanRequest, Status
from worker import activities as house_activities
from workflows import ALL_WORKFLOWS, ComplaintWorkflow


async def test_an_accept_ahead_of_the_plan_waits_for_it(client, pool, settings) -> None:
    queue = f"after-plan-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-AFTERPLAN-{uuid.uuid4().hex[:8]}"
    acts = house_activities(pool, settings.model_copy(update={"task_queue": queue}))
    real_plan = next(a for a in acts if getattr(a, "__name__", "") == "plan_case")
    planning = asyncio.Event()

    @activity.defn(name="plan_case")
    async def plan_case(request: PlanRequest) -> CasePlan:
        planning.set()
        # The worker dies while planning: the plan never returns on it. (Blocking for good
        # would hold the worker's shutdown until the local activity's 30 s timeout; a plan
        # that fails once the shutdown began is not recorded either: the history has the
        # same events as one recorded with the block.)
        await activity.wait_for_worker_shutdown()
        raise RuntimeError("the worker died while planning")

    first = [a for a in acts if a is not real_plan] + [plan_case]
    dying = Worker(client, task_queue=queue, workflows=ALL_WORKFLOWS, activities=first,
                   workflow_runner=UnsandboxedWorkflowRunner(), max_cached_workflows=0)  # fmt: skip
    run = asyncio.create_task(dying.run())
    # A 2 s task timeout hands the case to the next worker soon after the first one dies.
    h = await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                    task_queue=queue, task_timeout=QUICK_TASKS)  # fmt: skip
    try:
        await asyncio.wait_for(planning.wait(), timeout=20)
        await h.signal("accept", {"actor": rid(URBAN)})  # the department saw "assigned"
        await dying.shutdown()
        await asyncio.gather(run, return_exceptions=True)
        async with Worker(client, task_queue=queue, workflows=ALL_WORKFLOWS, activities=acts,
                          workflow_runner=UnsandboxedWorkflowRunner()):  # fmt: skip
            s = await until(client, case_id, lambda s: s.status is Status.HANDLING
                            or kinds(s, EventKind.REJECTED), within=40)  # fmt: skip
            assert not kinds(s, EventKind.REJECTED), kinds(s, EventKind.REJECTED)
            assert s.status is Status.HANDLING and s.department_id == URBAN.department_id
            await h.terminate("test over")
            await keep_history(h, "accept_ahead_of_the_plan")
    finally:
        run.cancel()
        with contextlib.suppress(Exception):
            await h.terminate("test over")
