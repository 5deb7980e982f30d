"""The history archive: closed cases' Temporal histories kept in PostgreSQL beyond retention.

Temporal deletes a closed workflow's history when the namespace's retention period ends,
counted from that workflow's OWN close. A Temporal Schedule (:func:`ensure_archive_schedule`)
runs ``ArchiveWorkflow`` every hour; its activity (:func:`archive_closed_cases`) lists, page by
page through visibility, first the closed child workflows (reassignments, escalation ladders)
and then the closed cases, and stores each history, gzip-compressed, in ``history_archive``.
Children are stored as they close, with their case's id, not when their case closes: a
reassignment closes minutes after it started and a ladder may stop months before its case
(extensions, rehandle rounds), so by the case's close Temporal may have deleted them.
Rows are keyed by (workflow_id, run_id), and runs already there are skipped before their
history is even fetched: running it twice, or retrying it half-way, never duplicates anything.

A case's row means "complete": its children are stored first (by the children's listing, or
by the case's own pass for those not stored yet), and a case closed while a child is still
open (the server closes the child after the case, by its parent close policy) is deferred to
a later run. A child open for longer than the patience would put the case itself at risk of
Temporal's retention: the case is then stored with that child's history as it stands (status
"running"), reported on every run until it closes, and completed then. That is the one change
a row ever sees: its own history, grown.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

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

from jiesu.audit.timeline import child_runs
from jiesu.case.domain import CASE_WORKFLOW
from jiesu.config import Settings

ARCHIVE_SCHEDULE_ID = "jiesu-history-archive"
ARCHIVE_WORKFLOW_ID = "jiesu-history-archive"
ARCHIVE_WORKFLOW = "ArchiveWorkflow"
ARCHIVE_EVERY = timedelta(hours=1)
CLOSED_CASES = f'WorkflowType="{CASE_WORKFLOW}" AND ExecutionStatus!="Running"'
# Every child in the namespace is a case's (reassignments, ladders): listed by having a parent
# rather than by type, so that a child type added later is archived without a change here.
CLOSED_CHILDREN = 'ParentWorkflowId IS NOT NULL AND ExecutionStatus!="Running"'
# Well below any retention (a day at least), well above the seconds a parent close policy
# takes and a worker's restart: past it a child is stuck, and the case must not wait longer.
OPEN_CHILD_PATIENCE_HOURS = 6.0


class ArchiveRequest(BaseModel):
    page_size: int = Field(default=200, ge=1, le=1000)
    query: str | None = Field(
        default=None,
        description="Extra visibility filter, ANDed with the closed-cases query and with the"
        ' closed-children query (e.g. WorkflowId="…" OR ParentWorkflowId="…")',
    )
    open_child_patience_hours: float = Field(
        default=OPEN_CHILD_PATIENCE_HOURS,
        ge=0,
        description="How long after a case closed it waits for a child still open; then it is"
        " stored with the child as it stands, and the child's row completed when it closes",
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
    deferred: list[str] = Field(default_factory=list)  # not stored: a child still open; next run
    # children stored while open (past the patience) and still open: stuck, they need a look
    open_children: list[str] = Field(default_factory=list)
    completed: int = 0  # such children's rows completed now that they closed
    # the closed children's own listing (children archived as they close, before their case)
    children_listed: int = 0  # closed child runs seen in visibility
    children_pages: int = 0
    # started by a case archived (or deferred) now, yet in neither Temporal nor the archive:
    # lost, as no run archived it within a whole retention period after it closed
    lost_children: list[str] = Field(default_factory=list)


Listing = Literal["children", "cases"]


@dataclass(frozen=True)
class ArchiveCursor:
    """Where a run stands: the listing it pages through and the token of its next page. The
    children are listed first; a children cursor without a token means they are all done."""

    listing: Listing
    token: bytes | None


# --- storage -------------------------------------------------------------------------------------

_INSERT = """
INSERT INTO history_archive (workflow_id, run_id, case_id, workflow_type, status, started_at,
                             closed_at, event_count, json_bytes, history_gz)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (workflow_id, run_id) DO UPDATE SET
    status = EXCLUDED.status, closed_at = EXCLUDED.closed_at, archived_at = now(),
    event_count = EXCLUDED.event_count, json_bytes = EXCLUDED.json_bytes,
    history_gz = EXCLUDED.history_gz
-- only a row stored while its run was open, and only by more of the same (append-only) history
WHERE history_archive.status = 'running' AND EXCLUDED.event_count > history_archive.event_count
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
    """Store one history; False when this run was archived before (and, if it was archived
    while open, this is no more of it)."""
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


async def read_archived(
    pool: asyncpg.Pool, workflow_id: str, run_id: str | None = None
) -> WorkflowHistory | None:
    """An archived run of a workflow — the latest without ``run_id`` —, or None."""
    row = await pool.fetchrow(
        "SELECT history_gz FROM history_archive WHERE workflow_id = $1 "
        "AND ($2::text IS NULL OR run_id = $2) "
        "ORDER BY started_at DESC, archived_at DESC LIMIT 1",
        workflow_id, run_id,
    )  # fmt: skip
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


def _started_by(child: WorkflowHistory, parent: WorkflowHistory) -> bool:
    """Is this run of a child id the parent's own (not a reset case's other run's)?"""
    started = child.events[0].workflow_execution_started_event_attributes
    return started.parent_workflow_execution.run_id == parent.run_id


def _case_of(child: WorkflowHistory) -> str:
    """The case a child belongs to: its root (a child's child would still be the case's),
    else its parent, as its own history records them."""
    started = child.events[0].workflow_execution_started_event_attributes
    root = started.root_workflow_execution.workflow_id  # older servers do not record it
    return root or started.parent_workflow_execution.workflow_id


async def archive_child(
    client: Client, pool: asyncpg.Pool, execution: WorkflowExecution, report: ArchiveReport
) -> None:
    """Store a closed child on its own, with its case's id, whether or not the case has closed:
    retention counts from the child's close, which may be months before its case's."""
    history = await _fetch(client, execution.id, execution.run_id)
    if history is None:  # deleted between the listing and now: its retention just ended
        report.missing.append(execution.id)
        return
    report.children += await store_history(pool, history, _case_of(history))


async def _unarchived_children(
    client: Client, pool: asyncpg.Pool, case: WorkflowHistory, report: ArchiveReport
) -> list[WorkflowHistory]:
    """The case's own children not in the archive yet, fetched from Temporal. Those archived
    as they closed are not fetched again; a started child Temporal no longer has is lost."""
    runs = child_runs(case)
    archived = await archived_runs(pool, [(c, r) for c, r in runs if r is not None])
    children: list[WorkflowHistory] = []
    for child_id, run_id in runs:
        if (child_id, run_id) in archived:
            continue
        child = await _fetch(client, child_id, run_id)
        if child is None:
            if run_id is not None:  # it did start: gone with retention before any run saw it
                report.lost_children.append(child_id)
            continue  # else it never started: the case's history says so
        if _started_by(child, case):  # not a reset case's other run's child
            children.append(child)
    return children


async def archive_case(
    client: Client,
    pool: asyncpg.Pool,
    execution: WorkflowExecution,
    report: ArchiveReport,
    patience: timedelta = timedelta(hours=OPEN_CHILD_PATIENCE_HOURS),
) -> None:
    """Archive a closed case: its children's histories first, then its own (so that the
    parent's row means "complete"). A child still open defers the case to a later run — the
    case is skipped for good once stored — until ``patience`` after the case closed."""
    history = await _fetch(client, execution.id, execution.run_id)
    if history is None:
        report.missing.append(execution.id)
        return
    still_open: list[WorkflowHistory] = []
    for child in await _unarchived_children(client, pool, history, report):
        if _close_status(child)[0] == "running":
            still_open.append(child)
        else:
            report.children += await store_history(pool, child, execution.id)
    closed_at = _close_status(history)[1] or datetime.now(UTC)  # listed closed: it has one
    if still_open and datetime.now(UTC) - closed_at < patience:
        report.deferred.append(execution.id)
        return
    for child in still_open:  # stuck: stored as it stands, completed by complete_open_children
        report.children += await store_history(pool, child, execution.id)
        report.open_children.append(child.workflow_id)
    if await store_history(pool, history, execution.id):
        report.archived += 1
    else:
        report.already_archived += 1


async def complete_open_children(
    client: Client, pool: asyncpg.Pool, report: ArchiveReport
) -> None:
    """Rows stored while their run was open: replaced by the closed history once it closed;
    still open, reported again. Driven by the archive, not by visibility: the case may be
    gone from Temporal by then. A run Temporal no longer has keeps the row it has."""
    rows = await pool.fetch(
        "SELECT workflow_id, run_id, case_id FROM history_archive WHERE status = 'running'"
    )
    for row in rows:
        history = await _fetch(client, row["workflow_id"], row["run_id"])
        if history is None:
            continue
        if _close_status(history)[0] == "running":
            report.open_children.append(row["workflow_id"])
        else:
            report.completed += await store_history(pool, history, row["case_id"])


async def _closed_pages(
    client: Client, query: str, page_size: int, token: bytes | None
) -> AsyncIterator[tuple[list[WorkflowExecution], bytes | None]]:
    """Pages of closed runs, each with the token of the page after it (None after the last)."""
    pages = client.list_workflows(query, page_size=page_size, next_page_token=token)
    while True:
        await pages.fetch_next_page()
        page = [e for e in pages.current_page or [] if e.status != WorkflowExecutionStatus.RUNNING]
        yield page, pages.next_page_token
        if pages.next_page_token is None:
            return


def _filtered(query: str, request: ArchiveRequest) -> str:
    return query + (f" AND ({request.query})" if request.query else "")


Heartbeat = Callable[[ArchiveCursor, dict[str, Any]], Any]


async def _archive_children(
    client: Client,
    pool: asyncpg.Pool,
    request: ArchiveRequest,
    report: ArchiveReport,
    token: bytes | None,
    heartbeat: Heartbeat | None,
) -> None:
    """The closed children's listing: each child not archived yet is stored now."""
    query = _filtered(CLOSED_CHILDREN, request)
    async for page, next_token in _closed_pages(client, query, request.page_size, token):
        report.children_pages += 1
        report.children_listed += len(page)
        done = await archived_runs(pool, [(e.id, e.run_id) for e in page])
        for execution in page:
            if (execution.id, execution.run_id) not in done:
                await archive_child(client, pool, execution, report)
        if heartbeat is not None:
            heartbeat(ArchiveCursor("children", next_token), report.model_dump())


async def _archive_cases(
    client: Client,
    pool: asyncpg.Pool,
    request: ArchiveRequest,
    report: ArchiveReport,
    token: bytes | None,
    heartbeat: Heartbeat | None,
) -> None:
    """The closed cases' listing: each case not archived yet is stored (children first)."""
    query = _filtered(CLOSED_CASES, request)
    patience = timedelta(hours=request.open_child_patience_hours)
    async for page, next_token in _closed_pages(client, query, request.page_size, token):
        report.pages += 1
        report.listed += len(page)
        done = await archived_runs(pool, [(e.id, e.run_id) for e in page])
        for execution in page:
            if (execution.id, execution.run_id) in done:
                report.already_archived += 1
            else:
                await archive_case(client, pool, execution, report, patience)
        if heartbeat is not None:
            heartbeat(ArchiveCursor("cases", next_token), report.model_dump())


async def archive_closed_cases(
    client: Client,
    pool: asyncpg.Pool,
    request: ArchiveRequest | None = None,
    *,
    resume: ArchiveCursor | None = None,
    heartbeat: Heartbeat | None = None,
) -> ArchiveReport:
    """Copy every closed child and every closed case that is not archived yet;
    ``heartbeat(cursor, report)`` is called after each page, and ``resume`` continues from
    such a cursor.

    The children's listing comes first: the cases' pass then finds most children archived
    and fetches none of them again."""
    request = request or ArchiveRequest()
    report = ArchiveReport()
    await complete_open_children(client, pool, report)
    if resume is None or (resume.listing == "children" and resume.token is not None):
        await _archive_children(
            client, pool, request, report, resume.token if resume else None, heartbeat
        )
    cases_token = resume.token if resume is not None and resume.listing == "cases" else None
    await _archive_cases(client, pool, request, report, cases_token, heartbeat)
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
