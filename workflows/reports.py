"""The report workflow (定期报告) and the Temporal Schedules that run it.

Each schedule starts :class:`ReportWorkflow` for its kind; the workflow refreshes the
statistics rollup and stores the snapshot of the last complete period (a re-run replaces the
period's snapshot). :func:`ensure_report_schedules` creates or updates the schedules and is
safe to call at every start.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

from temporalio import workflow
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import RetryPolicy, WorkflowIDConflictPolicy

with workflow.unsafe.imports_passed_through():
    from jiesu.config import Settings
    from jiesu.stats.reports import ReportJob, ReportKind, ReportRequest, ReportSummary

REPORT_CRON: dict[ReportKind, str] = {
    ReportKind.DAILY: "30 0 * * *",  # 00:30 every day: yesterday
    ReportKind.WEEKLY: "0 1 * * 1",  # Monday 01:00: last week
    ReportKind.MONTHLY: "0 2 1 * *",  # the 1st, 02:00: last month
}


def schedule_id(kind: ReportKind) -> str:
    return f"jiesu-report-{kind.value}"


@workflow.defn(name="ReportWorkflow")
class ReportWorkflow:
    @workflow.run
    async def run(self, request: ReportRequest) -> ReportSummary:
        retry = RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=10)
        await workflow.execute_activity(
            "refresh_statistics",
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=retry,
            result_type=int,
        )
        job = ReportJob(kind=request.kind, period_start=request.period_start, as_of=workflow.now())
        return await workflow.execute_activity(
            "produce_report",
            job,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=retry,
            result_type=ReportSummary,
        )


def manual_report_id(kind: ReportKind, period_start: date) -> str:
    return f"report-{kind.value}-{period_start.isoformat()}-manual"


async def run_manual_report(
    client: Client, kind: ReportKind, period_start: date, task_queue: str,
    wait: float | None = None,
) -> ReportSummary:
    """Produce a period's report now. A request made while another one for the same period is
    running attaches to that run and gets its result (one run, never a workflow-id clash); a
    request after it finished starts a new run (the re-run replaces the snapshot). TimeoutError
    after ``wait`` seconds without the result (no worker polling): the run goes on."""
    handle = await client.start_workflow(
        ReportWorkflow.run,
        ReportRequest(kind=kind, period_start=period_start),
        id=manual_report_id(kind, period_start),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return await asyncio.wait_for(handle.result(), wait)


def report_schedule(kind: ReportKind, settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ReportWorkflow.run,
            ReportRequest(kind=kind),
            id=f"report-{kind.value}",
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(cron_expressions=[REPORT_CRON[kind]], time_zone_name=settings.timezone),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(days=1)),
    )


async def ensure_report_schedules(client: Client, settings: Settings) -> list[str]:
    """Create the daily, weekly and monthly report schedules, or bring existing ones to the
    current definition (task queue, time zone, times). Returns the schedule ids."""
    ids = []
    for kind in ReportKind:
        schedule = report_schedule(kind, settings)
        try:
            await client.create_schedule(schedule_id(kind), schedule)
        except ScheduleAlreadyRunningError:
            handle = client.get_schedule_handle(schedule_id(kind))

            def _replace(_: ScheduleUpdateInput, s: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=s)

            await handle.update(_replace)
        ids.append(schedule_id(kind))
    return ids
