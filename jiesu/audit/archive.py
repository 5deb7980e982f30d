"""The history archive: closed cases' Temporal histories kept in PostgreSQL beyond retention.

Temporal deletes a closed workflow's history when the namespace's retention period ends. A
Temporal Schedule (:func:`ensure_archive_schedule`) runs ``ArchiveWorkflow`` every hour; its
activity (:func:`archive_closed_cases`) lists closed cases through visibility, page by page,
and stores each case's history and its children's, gzip-compressed, in ``history_archive``.
Rows are keyed by (workflow_id, run_id) and written with ON CONFLICT DO NOTHING, and rows
already there are skipped before their history is even fetched: running it twice, or
retrying it half-way, never duplicates anything.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from pydantic import BaseModel, Field
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowHistory,
)
from temporalio.service import RPCError, RPCStatusCode

from jiesu.audit.timeline import child_workflow_ids
from jiesu.case.domain import CASE_WORKFLOW
from jiesu.config import Settings

ARCHIVE_SCHEDULE_ID = "jiesu-history-archive"
ARCHIVE_WORKFLOW_ID = "jiesu-history-archive"
ARCHIVE_WORKFLOW = "ArchiveWorkflow"
ARCHIVE_EVERY = timedelta(hours=1)
CLOSED_CASES = f'WorkflowType="{CASE_WORKFLOW}" AND ExecutionStatus!="Running"'


class ArchiveRequest(BaseModel):
    page_size: int = Field(default=200, ge=1, le=1000)
    query: str | None = Field(
        default=None, description="Extra visibility filter, ANDed with the closed-cases query"
    )


class ArchiveReport(BaseModel):
    listed: int = 0  # closed case runs seen in visibility
    archived: int = 0  # case runs stored now
    already_archived: int = 0
    children: int = 0  # child histories stored now
    missing: list[str] = Field(default_factory=list)  # listed, but Temporal had no history
    pages: int = 0
    # the same hourly job's other chore (activities/archive.py): ended staff sessions moved
    # into the sign-in log (jiesu.access.sessions.purge_ended)
    sessions_purged: int = 0
    action_keys_purged: int = 0  # and actions' Idempotency-Keys past their keeping


# --- storage -------------------------------------------------------------------------------------

_INSERT = """
INSERT INTO history_archive (workflow_id, run_id, case_id, workflow_type, status, started_at,
                             closed_at, event_count, json_bytes, history_gz)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (workflow_id, run_id) DO NOTHING
"""


_CLOSED = frozenset(
    {"completed", "failed", "terminated", "canceled", "timed_out", "continued_as_new"}
)


def _close_status(history: WorkflowHistory) -> tuple[str, datetime | None]:
    """How the run ended, and when; ("running", None) for an open run."""
    last = history.events[-1]
    attr = last.WhichOneof("attributes") or ""
    name = attr.removeprefix("workflow_execution_").removesuffix("_event_attributes")
    if name in _CLOSED:
        return name, last.event_time.ToDatetime(tzinfo=UTC)
    return "running", None


async def store_history(pool: asyncpg.Pool, history: WorkflowHistory, case_id: str) -> bool:
    """Store one history; False when this run was archived before."""
    text = history.to_json()
    started = history.events[0]
    status, closed_at = _close_status(history)
    workflow_type = started.workflow_execution_started_event_attributes.workflow_type.name
    result = await pool.execute(
        _INSERT,
        history.workflow_id,
        history.run_id,
        case_id,
        workflow_type,
        status,
        started.event_time.ToDatetime(tzinfo=UTC),
        closed_at,
        len(history.events),
        len(text.encode()),
        gzip.compress(text.encode(), compresslevel=6),
    )
    return result.endswith(" 1")


async def read_archived(pool: asyncpg.Pool, workflow_id: str) -> WorkflowHistory | None:
    """The latest archived run of a workflow, or None."""
    row = await pool.fetchrow(
        "SELECT history_gz FROM history_archive WHERE workflow_id = $1 "
        "ORDER BY started_at DESC, archived_at DESC LIMIT 1",
        workflow_id,
    )
    if row is None:
        return None
    return WorkflowHistory.from_json(workflow_id, gzip.decompress(row["history_gz"]).decode())


async def archived_runs(pool: asyncpg.Pool, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    if not keys:
        return set()
    rows = await pool.fetch(
        "SELECT workflow_id, run_id FROM history_archive "
        "WHERE (workflow_id, run_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(r["workflow_id"], r["run_id"]) for r in rows}


async def archived_cases(
    pool: asyncpg.Pool, since: datetime | None = None, until: datetime | None = None
) -> dict[str, datetime]:
    """Cases (parents) in the archive started in [since, until), with their start times."""
    rows = await pool.fetch(
        "SELECT case_id, min(started_at) AS started_at FROM history_archive "
        "WHERE workflow_id = case_id AND ($1::timestamptz IS NULL OR started_at >= $1) "
        "AND ($2::timestamptz IS NULL OR started_at < $2) GROUP BY case_id",
        since,
        until,
    )
    return {r["case_id"]: r["started_at"] for r in rows}


# --- archiving ------------------------------------------------------------------------------


async def _fetch(client: Client, workflow_id: str, run_id: str | None) -> WorkflowHistory | None:
    try:
        return await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return None
        raise


async def archive_case(
    client: Client, pool: asyncpg.Pool, execution: WorkflowExecution, report: ArchiveReport
) -> None:
    """Archive a closed case: its children's closed histories first, then its own (so that the
    parent's row means "complete")."""
    history = await _fetch(client, execution.id, execution.run_id)
    if history is None:
        report.missing.append(execution.id)
        return
    for child_id in child_workflow_ids(history):
        child = await _fetch(client, child_id, None)
        if child is not None and _close_status(child)[0] != "running":
            report.children += await store_history(pool, child, execution.id)
    if await store_history(pool, history, execution.id):
        report.archived += 1
    else:
        report.already_archived += 1


async def archive_closed_cases(
    client: Client,
    pool: asyncpg.Pool,
    request: ArchiveRequest | None = None,
    *,
    resume_token: bytes | None = None,
    heartbeat: Callable[..., Any] | None = None,
) -> ArchiveReport:
    """Copy every closed case that is not archived yet; ``heartbeat(page_token, report)`` is
    called after each page, and ``resume_token`` continues from such a token."""
    request = request or ArchiveRequest()
    query = CLOSED_CASES + (f" AND ({request.query})" if request.query else "")
    pages = client.list_workflows(
        query, page_size=request.page_size, next_page_token=resume_token
    )
    report = ArchiveReport()
    while True:
        await pages.fetch_next_page()
        page = [e for e in pages.current_page or [] if e.status != WorkflowExecutionStatus.RUNNING]
        report.pages += 1
        report.listed += len(page)
        done = await archived_runs(pool, [(e.id, e.run_id) for e in page])
        for execution in page:
            if (execution.id, execution.run_id) in done:
                report.already_archived += 1
            else:
                await archive_case(client, pool, execution, report)
        if heartbeat is not None:
            heartbeat(pages.next_page_token, report.model_dump())
        if pages.next_page_token is None:
            return report


# --- the schedule ------------------------------------------------------------------------------


def archive_schedule(settings: Settings, every: timedelta = ARCHIVE_EVERY) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ARCHIVE_WORKFLOW, id=ARCHIVE_WORKFLOW_ID, task_queue=settings.task_queue
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_archive_schedule(
    client: Client, settings: Settings, every: timedelta = ARCHIVE_EVERY
) -> str:
    """Create the archive schedule, or bring an existing one up to date: "created"/"updated"."""
    schedule = archive_schedule(settings, every)
    try:
        await client.create_schedule(ARCHIVE_SCHEDULE_ID, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        pass

    def _update(_: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(schedule=schedule)

    await client.get_schedule_handle(ARCHIVE_SCHEDULE_ID).update(_update)
    return "updated"
