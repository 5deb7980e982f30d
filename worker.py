"""Worker entry point: runs the case workflows and their activities, and next to them the
notifications outbox dispatcher (jiesu.notify.outbox) and the statistics rollup refresher
(jiesu.stats.refresher).

    python -m worker        (environment: TEMPORAL_ADDRESS, DATABASE_URL, ...; --help)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.worker import Interceptor, UnsandboxedWorkflowRunner, Worker

from activities.archive import ArchiveActivities
from activities.deadlines import DeadlineActivities
from activities.planning import PlanningActivities
from activities.projection import ProjectionActivities
from activities.refile import RefileActivities
from activities.routing import RoutingActivities
from activities.statistics import activities as statistics_activities
from jiesu import db
from jiesu.client import connect_patiently
from jiesu.config import Settings, get_settings
from jiesu.exiting import run_then_exit
from jiesu.gc_tuning import freeze_startup_objects
from jiesu.health import domain_metrics
from jiesu.intake.follow_up import FollowUpLinks
from jiesu.notify import sms
from jiesu.notify.outbox import OutboxDispatcher, sender_from_env
from jiesu.stats.refresher import RollupRefresher
from jiesu.telemetry import start_tracing, temporal_interceptors, temporal_runtime
from workflows import ALL_WORKFLOWS
from workflows.archive import ArchiveWorkflow
from workflows.reports import ReportWorkflow

GRACEFUL_SHUTDOWN = timedelta(seconds=5)
"""How long in-flight activities may run on after a stop is asked for, before they are
cancelled (Temporal retries them elsewhere); well within the stack's STOP_TIMEOUT (10 s)."""
OUTBOX_PATIENCE = 5.0  # seconds for the outbox's current batch; unsent claims are re-sent later


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGINT (Ctrl-C, the stack's stop) and SIGTERM (docker, systemd) both ask for a graceful
    stop, whatever this process inherited: a background job of a script (``make bench &``) starts
    with SIGINT ignored, and SIGTERM's default would end the process with nothing finished."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


async def run_until_stopped(worker: Worker, stop: asyncio.Event) -> None:
    """Run ``worker`` until ``stop`` is set, then shut it down: no new tasks are polled, the
    in-flight ones finish (activities within GRACEFUL_SHUTDOWN). A fatal worker error is
    raised (and sets ``stop``, so the background tasks end too)."""
    running = asyncio.create_task(worker.run())
    asked = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, asked}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        asked.cancel()
        stop.set()  # the outbox and the refresher wind down while the worker does
    if not running.done():
        await worker.shutdown()
    await running


def _refiling(refile: RefileActivities) -> list[Callable[..., Any]]:
    return [refile.refile_report, refile.refile_reports]  # v23's one by one, v25's batched


def activities(pool: asyncpg.Pool, settings: Settings) -> list[Callable[..., Any]]:
    routing = RoutingActivities(pool)
    deadlines = DeadlineActivities(pool, settings)
    projection = ProjectionActivities(pool)
    return [
        routing.route_case,
        routing.level_up,
        routing.known_department,
        routing.known_departments,
        deadlines.compute_deadlines,
        projection.project_case,
        projection.project_events,
        PlanningActivities(routing, deadlines).plan_case,
        *_refiling(RefileActivities(pool, settings)),
        ArchiveActivities(pool, timedelta(days=settings.session_keep_days)).archive_closed_cases,
        *statistics_activities(pool, settings),
    ]


def build_worker(
    client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    interceptors: Sequence[Interceptor] = (),  # the client's own are applied besides
) -> Worker:
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[*ALL_WORKFLOWS, ArchiveWorkflow, ReportWorkflow],
        activities=activities(pool, settings),
        # Without the sandbox: replaying the standard case takes about a third of the CPU
        # (docs/performance.md). What the sandbox would catch at run time — a workflow calling
        # the clock, random or I/O — the test suite catches instead: every recorded path is
        # replayed in the sandbox on every run (tests/test_replay.py, helpers.keep_history).
        workflow_runner=UnsandboxedWorkflowRunner(),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        interceptors=interceptors,
    )


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    settings = get_settings()
    pool = await db.create_pool(settings.database_url)
    try:  # before anything polls: a projection would fail on a column not there yet
        await db.check_schema(pool, "worker")
    except db.SchemaNotReady:
        await pool.close()
        raise  # one line, exit 1 (jiesu.exiting)
    tracing = start_tracing("jiesu-worker")  # None unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    runtime = temporal_runtime(
        settings.worker_metrics_address, domain_metrics.HISTOGRAM_BUCKETS
    )  # the worker's Prometheus endpoint (jiesu.telemetry)
    try:  # waits for a Temporal started after it (or restarting), then one line, exit 1
        client = await connect_patiently(
            settings, interceptors=temporal_interceptors(tracing), runtime=runtime
        )
    except BaseException:
        if tracing is not None:
            tracing.shutdown()
        await pool.close()
        raise
    stop = asyncio.Event()
    # the intake SMS's link is filled in as it is sent (the citizen's token is never stored)
    sender = sender_from_env(sms=sms.gateway_from_settings(settings, pool))
    dispatcher = OutboxDispatcher(pool, sender, render=FollowUpLinks(pool, settings))
    outbox = asyncio.create_task(dispatcher.run(stop))
    refresher = RollupRefresher(pool, settings.timezone, settings.stats_refresh_seconds)
    stats = asyncio.create_task(refresher.run(stop))
    if runtime is not None:
        logging.info("metrics on http://%s/metrics", settings.worker_metrics_address)
        interval = settings.domain_metrics_interval_seconds
        gauges = asyncio.create_task(
            domain_metrics.sample(pool, runtime.metric_meter, stop, interval)
        )
    try:
        worker = build_worker(client, pool, settings)
        freeze_startup_objects()  # full collections walk only what is made from here on
        logging.info("polling task queue %s on %s", settings.task_queue, settings.temporal_address)
        stop_on_signals(stop)
        await run_until_stopped(worker, stop)
        logging.info("worker stopped")
    finally:
        stop.set()
        try:  # let the current batch finish; unsent claims are re-sent after their lease
            await asyncio.wait_for(outbox, timeout=OUTBOX_PATIENCE)
        except TimeoutError:
            pass
        stats.cancel()  # a refresh cut short rolls back; the next worker's refresher redoes it
        with contextlib.suppress(asyncio.CancelledError):
            await stats
        if runtime is not None:
            await gauges
        if tracing is not None:
            tracing.shutdown()  # sends the spans still batched
        await pool.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """No options (the stack and docker-compose pass none): ``--help`` says how the worker is
    configured, anything else is a usage error (exit 2), not a worker started with it ignored."""
    parser = argparse.ArgumentParser(
        prog="python -m worker",
        description="The Jiesu worker: the case workflows and their activities, the "
        "notifications outbox dispatcher and the statistics refresher. No options; it is "
        "configured by the environment (jiesu/config.py, README's Configuration): "
        "TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, JIESU_TASK_QUEUE, DATABASE_URL, "
        "JIESU_WORKER_METRICS_ADDRESS, JIESU_NOTIFY_SENDER, JIESU_SMS_GATEWAY, ...",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    parse_args()
    run_then_exit(main, "worker")  # without the interpreter's teardown (jiesu.exiting)
