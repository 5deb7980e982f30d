"""The ceiling Jiesu's lifecycle is compared with: bare workflows on the same Temporal server.

- ``BenchNoopWorkflow``: returns at once (start → complete).
- ``BenchShapeWorkflow``: the shape of a standard (urgent) Jiesu case with no logic in it —
  3 activities at the start (2 in parallel, like route_case + compute_deadlines, and a
  projection next to them), one projection after "routing", 3 deadline timers started then,
  then the signals accept / contact / reply / rate, each followed by one (projection)
  activity, a rating-window timer between reply and rate; every timer is cancelled by the
  signal that meets it. 8 activities, 4 signals, 4 timers started and cancelled — the same as
  ComplaintWorkflow's urgent happy path, minus its search-attribute upserts and its payloads.
  That was the case before ``lean-case-v1``: shape ``"v4"``.
  Shape ``"lean"`` (the default) is the case since ``lean-case-v1``: one local activity at the
  start (plan_case: routing + deadlines), the 3 deadline timers, one local projection, then
  each signal followed by one local projection, and the rating-window timer — 6 local
  activities, 4 signals, 4 timers. The ratio is only honest against the shape the case has.

The worker runs in its own process, like Jiesu's worker:

    python -m bench.ceiling --address 127.0.0.1:7233 --task-queue bench-ceiling

The driver (:func:`run_noop`, :func:`run_shape`) lives in the harness process.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from jiesu.case import search_attributes as sa

TASK_QUEUE = "bench-ceiling"
STORM_QUEUE = "bench-storm"  # the bare timer storm's (bench/scale.py)
SIGNALS = ("accept", "contact", "reply", "rate")
DEADLINE_TIMERS = ("accept", "contact", "reply")  # met by these signals
LONG = timedelta(days=1)
ACTIVITY_TIMEOUT = timedelta(seconds=30)
STEP_TIMEOUT = 30.0  # seconds the driver waits for one step


@activity.defn(name="bench_noop")
async def noop_activity(step: str) -> str:
    return step


@workflow.defn(name="BenchNoopWorkflow")
class NoopWorkflow:
    @workflow.run
    async def run(self) -> None:
        return None


@workflow.defn(name="BenchTimerWorkflow")
class TimerWorkflow:
    """A timer and nothing else: the floor under a case's deadline (bench/scale.py's storm).
    Started without its instant, it waits to be armed (``arm``): the instant of a storm is
    chosen once every workflow is started, so that none starts after it."""

    def __init__(self) -> None:
        self._due = ""

    @workflow.run
    async def run(self, due: str = "") -> str:
        """Sleep until ``due`` (ISO instant, or the one ``arm`` gives); the time of the task
        that saw the timer fire."""
        if not due:
            await workflow.wait_condition(lambda: bool(self._due))
            due = self._due
        left = datetime.fromisoformat(due) - workflow.now()
        if left > timedelta(0):
            await workflow.sleep(left)
        return workflow.now().isoformat()

    @workflow.signal
    def arm(self, due: str) -> None:
        self._due = due


@workflow.defn(name="BenchShapeWorkflow")
class ShapeWorkflow:
    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._local = False

    @workflow.run
    async def run(self, shape: str = "lean") -> int:
        """``shape``: "lean" (local planning and projections), "lean-sa" (the same, plus the
        case's search-attribute upserts since lean-case-v2: the plan's 5 attributes, then the
        status at close) or "v4" (regular activities)."""
        self._local = shape in ("lean", "lean-sa")
        upsert = shape == "lean-sa"
        if self._local:
            await self._project()  # plan_case
        else:
            await asyncio.gather(self._activity("route"), self._activity("deadlines"),
                                 self._project())  # fmt: skip
        watchers = [asyncio.create_task(self._watch(name)) for name in DEADLINE_TIMERS]
        self._seen.add("routed")
        if upsert:
            _upsert_plan()
        await self._project()
        for name in SIGNALS:
            if name == "rate":
                watchers.append(asyncio.create_task(self._watch("rate")))
            await workflow.wait_condition(lambda n=name: n in self._seen)  # type: ignore[misc]
            if upsert and name == "rate":  # the rating closes the case
                workflow.upsert_search_attributes([sa.CASE_STATUS.value_set("closed")])
            await self._project()
        await asyncio.gather(*watchers)
        return len(self._seen)

    async def _activity(self, step: str) -> str:
        return await workflow.execute_activity(
            noop_activity, step, start_to_close_timeout=ACTIVITY_TIMEOUT
        )

    async def _project(self) -> str:
        if not self._local:
            return await self._activity("project")
        return await workflow.execute_local_activity(
            noop_activity, "project", start_to_close_timeout=ACTIVITY_TIMEOUT
        )

    async def _watch(self, name: str) -> None:
        try:
            await workflow.wait_condition(lambda: name in self._seen, timeout=LONG)
        except TimeoutError:
            pass

    @workflow.query
    def progress(self) -> list[str]:
        return sorted(self._seen)

    @workflow.signal
    def accept(self) -> None:
        self._seen.add("accept")

    @workflow.signal
    def contact(self) -> None:
        self._seen.add("contact")

    @workflow.signal
    def reply(self) -> None:
        self._seen.add("reply")

    @workflow.signal
    def rate(self) -> None:
        self._seen.add("rate")


def _upsert_plan() -> None:
    """The attributes a case sets once planned (workflows/projector.py; the others were set
    when it started)."""
    due = workflow.now() + LONG
    workflow.upsert_search_attributes([
        sa.CASE_STATUS.value_set("assigned"), sa.CASE_DEPARTMENT.value_set("water"),
        sa.CASE_ACCEPT_DEADLINE.value_set(due), sa.CASE_CONTACT_DEADLINE.value_set(due),
        sa.CASE_FINISH_DEADLINE.value_set(due),
    ])  # fmt: skip


# --- driver (harness side) ----------------------------------------------------------------


def _workflow_id(kind: str) -> str:
    return f"bench-{kind}-{uuid.uuid4().hex[:12]}"


async def run_noop(client: Client, task_queue: str = TASK_QUEUE) -> str:
    """One no-op workflow, start to result; returns its id."""
    workflow_id = _workflow_id("noop")
    await client.execute_workflow(NoopWorkflow.run, id=workflow_id, task_queue=task_queue)
    return workflow_id


async def start_timer(client: Client, task_queue: str = STORM_QUEUE) -> str:
    """Start a :class:`TimerWorkflow`, to be armed; its id."""
    workflow_id = _workflow_id("timer")
    await client.start_workflow(TimerWorkflow.run, id=workflow_id, task_queue=task_queue)
    return workflow_id


async def arm_timer(client: Client, workflow_id: str, due: datetime) -> None:
    await client.get_workflow_handle(workflow_id).signal(TimerWorkflow.arm, due.isoformat())


async def _wait_for(handle: WorkflowHandle[Any, Any], step: str, give_up: float) -> None:
    """Poll the query like the API does after a signal (api/cases.py: 20 ms doubling to 0.5 s)."""
    loop = asyncio.get_running_loop()
    delay = 0.02
    while step not in await handle.query(ShapeWorkflow.progress):
        if loop.time() >= give_up:
            raise TimeoutError(f"{handle.id}: {step} not seen")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


async def run_shape(client: Client, task_queue: str = TASK_QUEUE, shape: str = "lean") -> str:
    """One same-shape workflow driven the way the API drives a case: start, wait until it is
    "routed", then each signal followed by queries until the workflow shows it; the result.
    ``shape``: see ShapeWorkflow.run."""
    workflow_id = _workflow_id(f"shape-{shape}")
    start_attributes = TypedSearchAttributes([
        SearchAttributePair(sa.CASE_STATUS, "registered"),
        SearchAttributePair(sa.CASE_URGENCY, "urgent"),
        SearchAttributePair(sa.CASE_CATEGORY, "sewer_blockage"),
        SearchAttributePair(sa.CASE_CHANNEL, "hotline"),
    ]) if shape == "lean-sa" else None  # the case's attributes at intake  # fmt: skip
    handle = await client.start_workflow(
        ShapeWorkflow.run, shape, id=workflow_id, task_queue=task_queue,
        search_attributes=start_attributes,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    await _wait_for(handle, "routed", loop.time() + STEP_TIMEOUT)
    for name in SIGNALS:
        await handle.signal(name)
        await _wait_for(handle, name, loop.time() + STEP_TIMEOUT)
    await handle.result()
    return workflow_id


# --- worker process -----------------------------------------------------------------------


async def serve(address: str, namespace: str, task_queue: str) -> None:
    client = await Client.connect(address, namespace=namespace)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[NoopWorkflow, ShapeWorkflow, TimerWorkflow],
        activities=[noop_activity],
        workflow_runner=UnsandboxedWorkflowRunner(),  # as Jiesu's worker (worker.py)
    )
    await worker.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--address", default="127.0.0.1:7233")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--task-queue", default=TASK_QUEUE)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.address, args.namespace, args.task_queue))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
