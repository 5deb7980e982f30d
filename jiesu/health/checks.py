"""The doctor (巡检): finds what keeps cases from living their life, before a citizen does.

One examination looks at the database's schema, the open workflows (at most ``limit`` of them,
newest first), the read model and the notifications outbox, and reports eleven kinds of finding:

- ``schema_pending`` — a migration this code ships that the database has not applied
  (``jiesu bootstrap`` of this version not run yet): the worker and the API of this version
  refuse to start on it (jiesu.db.check_schema). Migrations the database has and this code
  does not know (a newer version's) are not a finding: they are reported in ``schema_state``
  (an older process keeps working beside them).
- ``workflow_task_failing`` — a workflow whose task fails on every retry: it applies no
  signal, fires no deadline and answers no query until its code or its history is repaired.
  Found by Temporal's visibility (``TemporalReportedProblems``, set by the server after
  ``system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute`` consecutive problems;
  off unless configured) *and* by describing the open workflows (a pending workflow task on
  its second attempt or later), so it works on servers without that feature too.
- ``activity_retrying`` — an activity retrying for longer than ``activity_after`` (PostgreSQL
  away, a bug in an activity): the case waits for it.
- ``read_model_behind`` — an open case whose row in ``cases`` is older than the workflow's own
  state (its ``version`` is the seq of the last event projected) by events older than
  ``read_model_lag``: lists, statistics and notices of that case are stale.
- ``read_model_diverged`` — an open case whose read model is not its workflow's: the last
  event it projected is not the workflow's event of that number (the workflow was reset to an
  earlier point and recorded other events since, or the row was written by hand).
- ``notification_overdue`` — an outbox notice still ``pending`` or ``sending`` more than
  ``notification_overdue_after`` after it was written (no dispatcher running, a gateway
  refusing it).
- ``notification_failed`` — an outbox notice the dispatcher gave up on (``failed``: its
  attempts used up, or its last attempt's dispatcher died): to a department, the
  supervisors or a citizen alike, it is never sent unless someone resends it (``jiesu repair
  notices``). Listed until then, newest first, whatever the case's status now: a case that
  closed while its notice was retried would otherwise drop it from ``notification_overdue``
  to nothing. One that must never be sent (a wrong mailbox, the unit phoned instead) is set
  aside (``jiesu repair notices --set-aside --reason``: status ``set_aside``, who, when and
  why kept, migration 0045) and is no longer listed.
- ``citizen_not_told`` — a notice to the citizen of a case still open that was never sent
  (``skipped``: their phone takes no SMS — a landline, a short number — and they left no
  e-mail, jiesu.notify.outbox): nobody told them, so someone phones them. Listed until the
  case closes.
- ``intake_pending`` — a report (an intake or a repeat) still ``pending`` more than
  ``intake_pending_after`` after it was filed: its request never told Temporal for sure (a
  crash between intake's two transactions, a key never retried); ``jiesu repair intakes``
  settles it (docs/intake.md).
- ``history_not_replaying`` — a case history that the current workflow code does not replay
  (:mod:`jiesu.audit.replay`): its next workflow task on a worker will fail.
- ``history_large`` — an open workflow whose history passed Temporal's warning limits (10 MiB
  or 10,240 events, the server's defaults): at 50 MiB or 51,200 events the server terminates
  it, and a case does not continue-as-new. Hundreds of long repeat reports take a case there
  (docs/security.md); its state query is refused well before (``CaseTooLarge``), and
  :func:`case_state` then reads it in parts (``state_page``). Visibility keeps no history size
  for a running workflow, so the ``limit`` open workflows examined are judged by Temporal's
  figures, and every other open case by the ``history_large`` event it recorded itself at
  10, 20, 30 and 40 MiB (or 10,240 … 40,960 events; history-watch-v1), in the read model.

Read-only: the repairs (``jiesu repair``) are in jiesu.ops.doctor. Each check runs on its own;
one that cannot run (Temporal or PostgreSQL away) is reported as an error instead of a finding.
docs/operations.md is the runbook for each kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, computed_field
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    DescribeWorkflowExecutionResponse,
    GetWorkflowExecutionHistoryReverseRequest,
)
from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from jiesu import db
from jiesu.audit import replay as audit_replay
from jiesu.case.domain import (
    CASE_STATE_PAGE_QUERY,
    CASE_STATE_QUERY,
    CASE_WORKFLOW,
    HISTORY_LIMIT_BYTES,
    HISTORY_LIMIT_EVENTS,
    HISTORY_WARN_BYTES,
    HISTORY_WARN_EVENTS,
    CaseEvent,
    CaseState,
    EventKind,
    StatePage,
    Status,
    sql_status,
)
from jiesu.notify.outbox import NOTICE_CITIZEN

SCHEMA_PENDING = "schema_pending"
TASK_FAILING = "workflow_task_failing"
ACTIVITY_RETRYING = "activity_retrying"
READ_MODEL_BEHIND = "read_model_behind"
READ_MODEL_DIVERGED = "read_model_diverged"
NOTIFICATION_OVERDUE = "notification_overdue"
NOTIFICATION_FAILED = "notification_failed"
NOT_REPLAYING = "history_not_replaying"
INTAKE_PENDING = "intake_pending"
CITIZEN_NOT_TOLD = "citizen_not_told"
HISTORY_LARGE = "history_large"
KINDS = (
    SCHEMA_PENDING, TASK_FAILING, ACTIVITY_RETRYING, READ_MODEL_BEHIND, READ_MODEL_DIVERGED,
    NOTIFICATION_OVERDUE, NOTIFICATION_FAILED, CITIZEN_NOT_TOLD, INTAKE_PENDING, NOT_REPLAYING,
    HISTORY_LARGE,
)  # fmt: skip

CASE_TYPE = CASE_WORKFLOW
_ENDS_AT = (
    f" (Temporal ends a workflow at {HISTORY_LIMIT_EVENTS:,} events or "
    f"{HISTORY_LIMIT_BYTES // 1024 // 1024} MiB)"
)
# The server sets TemporalReportedProblems only when told to (jiesu/ops/temporal_settings.py).
REPORTED_PROBLEMS_QUERY = (
    'ExecutionStatus="Running" AND TemporalReportedProblems IN '
    '("category=WorkflowTaskFailed", "category=WorkflowTaskTimedOut")'
)
_OPEN_QUERY = 'ExecutionStatus="Running"'
_CONCURRENCY = 8  # describe / query calls in flight at once
_QUERY_TIMEOUT = timedelta(seconds=5)
_TASK_FAILED = EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
_ACTIVITY_SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED

T = TypeVar("T")


MAX_LIMIT = 100_000
MAX_THRESHOLD = timedelta(days=30)  # thresholds beyond a month would hide everything anyway


class DoctorOptions(BaseModel):
    """What to examine and when something counts as a problem (durations in JSON: seconds,
    as the CLI and the API take them)."""

    model_config = ConfigDict(ser_json_timedelta="float")

    limit: int = Field(default=500, ge=1, le=MAX_LIMIT,
                       description="open workflows examined at most (newest first); also "
                       "the most notices and reports listed per kind")
    activity_after: timedelta = Field(default=timedelta(minutes=5), ge=timedelta(0),
                                      le=MAX_THRESHOLD,
                                      description="an activity retrying longer than this")
    read_model_lag: timedelta = Field(default=timedelta(minutes=1), ge=timedelta(0),
                                      le=MAX_THRESHOLD,
                                      description="unprojected events older than this")
    notification_overdue_after: timedelta = Field(
        default=timedelta(minutes=10), ge=timedelta(0), le=MAX_THRESHOLD,
        description="a notice unsent this long after it was due",
    )
    intake_pending_after: timedelta = Field(
        default=timedelta(hours=1), ge=timedelta(0), le=MAX_THRESHOLD,
        description="a report still pending this long after it was filed",
    )
    replay: bool = Field(default=True, description="replay the open cases' histories")
    replay_since: datetime | None = Field(
        default=None, description="also replay cases (closed ones too) started since then"
    )


class Finding(BaseModel):
    kind: str
    subject: str = Field(description="workflow id, case number or notice key")
    summary: str
    details: dict[str, Any] = Field(default_factory=dict)


class CheckError(BaseModel):
    check: str
    message: str


class SchemaReport(BaseModel):
    """schema_migrations against the migration files of the code that examined it."""

    applied: int = Field(description="migrations the database has")
    latest: str | None = Field(description="the last of them by name")
    pending: list[str] = Field(description="this code's migrations the database lacks: run "
                               "`jiesu bootstrap`; the worker and the API refuse to start")
    unknown: list[str] = Field(description="migrations the database has that this code does "
                               "not know: a newer version's bootstrap ran")


class DoctorReport(BaseModel):
    checked_at: datetime
    options: DoctorOptions
    schema_state: SchemaReport | None = Field(default=None,
                                              description="None when it could not be read")
    open_workflows: int = Field(default=0, description="open workflows examined")
    truncated: bool = Field(default=False, description="more open workflows than the limit")
    replayed: int = 0
    findings: list[Finding] = Field(default_factory=list)
    errors: list[CheckError] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counts(self) -> dict[str, int]:
        """Findings per kind, every kind listed (0 when none)."""
        counts = dict.fromkeys(KINDS, 0)
        for finding in self.findings:
            counts[finding.kind] = counts.get(finding.kind, 0) + 1
        return counts

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return not self.findings and not self.errors

    def add(self, kind: str, subject: str, summary: str, **details: Any) -> None:
        self.findings.append(Finding(kind=kind, subject=subject, summary=summary,
                                     details=details))


@dataclass
class OpenWorkflow:
    workflow_id: str
    run_id: str
    workflow_type: str
    description: DescribeWorkflowExecutionResponse | None = None


# --- the examination -------------------------------------------------------------------------


async def examine(
    client: Client,
    pool: asyncpg.Pool,
    options: DoctorOptions | None = None,
    *,
    workflows: Sequence[type],
) -> DoctorReport:
    """Run every check; ``workflows`` are the classes histories are replayed with (the
    worker's, ``workflows.ALL_WORKFLOWS``: this package may not import them)."""
    options = options or DoctorOptions()
    report = DoctorReport(checked_at=datetime.now(UTC), options=options)
    async with _check(report, SCHEMA_PENDING):
        await _schema(pool, report)
    open_workflows: list[OpenWorkflow] = []
    async with _check(report, "open workflows"):
        open_workflows = await _open_workflows(client, options.limit, report)
    failing: set[str] = set()
    async with _check(report, TASK_FAILING):
        failing = await _failing_tasks(client, open_workflows, report)
    async with _check(report, ACTIVITY_RETRYING):
        await _retrying_activities(client, open_workflows, options.activity_after, report)
    async with _check(report, HISTORY_LARGE):
        _large_histories(open_workflows, report)
        await _recorded_large(pool, report)
    cases = [w.workflow_id for w in open_workflows
             if w.workflow_type == CASE_TYPE and w.workflow_id not in failing]
    async with _check(report, READ_MODEL_BEHIND):
        await _read_models_behind(client, pool, cases, options.read_model_lag, report)
        closed = await _closed_with_a_ladder_left(client, pool, options.read_model_lag,
                                                  options.limit)
        # A case whose close the read model has and visibility not yet (or whose workflow
        # still stops its ladder) is in both lists: judged once, with the open cases.
        listed = {w.workflow_id for w in open_workflows}
        closed = [case_id for case_id in closed if case_id not in listed]
        await _read_models_behind(client, pool, closed, options.read_model_lag, report)
    async with _check(report, NOTIFICATION_OVERDUE):
        await _overdue_notifications(pool, options.notification_overdue_after, report)
    async with _check(report, NOTIFICATION_FAILED):
        await _failed_notifications(pool, report)
    async with _check(report, CITIZEN_NOT_TOLD):
        await _citizens_not_told(pool, report)
    async with _check(report, INTAKE_PENDING):
        await _pending_intakes(pool, options.intake_pending_after, report)
    if options.replay:
        async with _check(report, NOT_REPLAYING):
            await _histories_not_replaying(client, pool, cases, options, workflows, report)
    return report


@asynccontextmanager
async def _check(report: DoctorReport, name: str) -> AsyncIterator[None]:
    """Run one check; if it cannot run, say so in the report and go on with the next."""
    try:
        yield
    except Exception as error:  # Temporal or PostgreSQL away, a permission missing...
        report.errors.append(CheckError(check=name, message=f"{type(error).__name__}: {error}"))


async def _bounded(items: Sequence[T], work: Callable[[T], Awaitable[Any]]) -> list[Any]:
    """``work`` on every item, at most _CONCURRENCY at a time, results in order."""
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def one(item: T) -> Any:
        async with gate:
            return await work(item)

    return list(await asyncio.gather(*(one(item) for item in items)))


async def _schema(pool: asyncpg.Pool, report: DoctorReport) -> None:
    state = await db.schema_state(pool)
    report.schema_state = SchemaReport(
        applied=len(state.applied), latest=state.applied[-1] if state.applied else None,
        pending=list(state.pending), unknown=list(state.unknown),
    )  # fmt: skip
    for version in state.pending:
        report.add(SCHEMA_PENDING, version, f"migration {version} is not applied: the worker "
                   "and the API of this version will not start — run `jiesu bootstrap`")


async def _open_workflows(client: Client, limit: int, report: DoctorReport) -> list[OpenWorkflow]:
    found = [
        OpenWorkflow(e.id, e.run_id, e.workflow_type)
        async for e in client.list_workflows(_OPEN_QUERY, limit=limit + 1)
    ]
    report.truncated = len(found) > limit
    found = found[:limit]

    async def describe(workflow: OpenWorkflow) -> None:
        handle = client.get_workflow_handle(workflow.workflow_id, run_id=workflow.run_id)
        try:
            workflow.description = (await handle.describe()).raw_description
        except RPCError as error:
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise  # (NOT_FOUND: it closed and was deleted since it was listed)

    await _bounded(found, describe)
    report.open_workflows = len(found)
    return [w for w in found if w.description is not None]


def _large_histories(open_workflows: list[OpenWorkflow], report: DoctorReport) -> None:
    for w in open_workflows:
        assert w.description is not None
        info = w.description.workflow_execution_info
        size, length = info.history_size_bytes, info.history_length
        if size >= HISTORY_WARN_BYTES or length >= HISTORY_WARN_EVENTS:
            report.add(
                HISTORY_LARGE, w.workflow_id,
                f"{w.workflow_type} {w.workflow_id}: history of {length:,} events, "
                f"{size / 1024 / 1024:.1f} MiB{_ENDS_AT}",
                workflow_type=w.workflow_type, run_id=w.run_id, history_length=length,
                history_size_bytes=size,
            )  # fmt: skip


async def _recorded_large(pool: asyncpg.Pool, report: DoctorReport) -> None:
    """Every open case that recorded ``history_large`` (history-watch-v1), beyond the ``limit``
    workflows described: visibility keeps no history size for a running workflow, the case
    itself does. Its latest mark; a case described above is listed once, with Temporal's figures."""
    listed = {f.subject for f in report.findings if f.kind == HISTORY_LARGE}
    rows = await pool.fetch(  # the kind spelled out: the partial index of migration 0031
        "SELECT DISTINCT ON (e.case_id) e.case_id, e.at, e.data FROM case_events e"
        " JOIN cases c ON c.case_id = e.case_id"
        f" WHERE e.kind = '{EventKind.HISTORY_LARGE.value}'"
        f" AND c.status <> {sql_status(Status.CLOSED)} ORDER BY e.case_id, e.seq DESC"
    )
    for row in rows:
        if row["case_id"] in listed:
            continue
        data = row["data"]
        size, length = int(data.get("history_bytes") or 0), int(data.get("history_events") or 0)
        report.add(
            HISTORY_LARGE, row["case_id"],
            f"{CASE_TYPE} {row['case_id']}: history of {length:,} events, "
            f"{size / 1024 / 1024:.1f} MiB when the case recorded it at {row['at']:%Y-%m-%d %H:%M} "
            f"UTC{_ENDS_AT}",
            workflow_type=CASE_TYPE, history_length=length, history_size_bytes=size,
            recorded_at=row["at"].isoformat(),
        )  # fmt: skip


# --- workflow tasks ------------------------------------------------------------------------


async def _failing_tasks(
    client: Client, open_workflows: list[OpenWorkflow], report: DoctorReport
) -> set[str]:
    """Workflows whose task fails again and again; returns their ids."""
    suspects: dict[str, tuple[str, str, int | None]] = {}  # id → run id, type, attempt
    for w in open_workflows:
        assert w.description is not None
        if w.description.HasField("pending_workflow_task"):
            attempt = w.description.pending_workflow_task.attempt
            if attempt >= 2:  # the first attempt failed (or timed out) already
                suspects[w.workflow_id] = (w.run_id, w.workflow_type, attempt)
    try:
        async for e in client.list_workflows(REPORTED_PROBLEMS_QUERY, limit=report.options.limit):
            suspects.setdefault(e.id, (e.run_id, e.workflow_type, None))
    except RPCError as error:  # a server without TemporalReportedProblems: describe suffices
        if error.status is not RPCStatusCode.INVALID_ARGUMENT:
            raise

    async def diagnose(item: tuple[str, tuple[str, str, int | None]]) -> None:
        workflow_id, (run_id, workflow_type, attempt) = item
        failure = await _last_task_failure(client, workflow_id, run_id)
        report.add(
            TASK_FAILING, workflow_id,
            f"{workflow_type} {workflow_id}: workflow task failing"
            + (f" (attempt {attempt})" if attempt else "")
            + (f": {_one_line(failure['message'])}" if failure.get("message") else ""),
            workflow_type=workflow_type, run_id=run_id, attempt=attempt, **failure,
        )  # fmt: skip

    await _bounded(sorted(suspects.items()), diagnose)
    return set(suspects)


async def _last_task_failure(client: Client, workflow_id: str, run_id: str) -> dict[str, Any]:
    """The failure recorded by the newest WorkflowTaskFailed event (the server records only the
    first of a run of failed attempts), read from the end of the history."""
    response = await client.workflow_service.get_workflow_execution_history_reverse(
        GetWorkflowExecutionHistoryReverseRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
            maximum_page_size=200,
        ),
        retry=True,
    )
    for event in response.history.events:
        if event.event_type == _TASK_FAILED:
            attributes = event.workflow_task_failed_event_attributes
            return {
                "message": attributes.failure.message,
                "cause": _enum_name(attributes, "cause"),
                "failed_event_id": event.event_id,
                "failed_at": event.event_time.ToDatetime(UTC).isoformat(),
            }
    return {}


def _enum_name(message: Any, field: str) -> str:
    descriptor = message.DESCRIPTOR.fields_by_name[field].enum_type
    return str(descriptor.values_by_number[getattr(message, field)].name)


# --- activities ----------------------------------------------------------------------------


async def _retrying_activities(
    client: Client, open_workflows: list[OpenWorkflow], after: timedelta, report: DoctorReport
) -> None:
    retrying = [
        (w, a)
        for w in open_workflows
        for a in (w.description.pending_activities if w.description else [])
        if a.attempt >= 2
    ]
    by_workflow: dict[str, list[tuple[OpenWorkflow, PendingActivityInfo]]] = {}
    for w, a in retrying:
        by_workflow.setdefault(w.workflow_id, []).append((w, a))
    now = datetime.now(UTC)

    async def inspect(pairs: list[tuple[OpenWorkflow, PendingActivityInfo]]) -> None:
        workflow = pairs[0][0]
        scheduled = await _activity_scheduled_times(client, workflow)
        for _, activity in pairs:
            first = scheduled.get(activity.activity_id)
            since = now - first if first else None
            if since is not None and since < after:
                continue
            next_attempt = activity.next_attempt_schedule_time
            report.add(
                ACTIVITY_RETRYING, workflow.workflow_id,
                f"{workflow.workflow_type} {workflow.workflow_id}: activity "
                f"{activity.activity_type.name} on attempt {activity.attempt}"
                + (f" for {_duration(since)}" if since is not None else "")
                + f": {_one_line(activity.last_failure.message) or 'no failure recorded yet'}",
                workflow_type=workflow.workflow_type, run_id=workflow.run_id,
                activity_id=activity.activity_id, activity_type=activity.activity_type.name,
                attempt=activity.attempt, last_failure=activity.last_failure.message or None,
                retrying_since=first.isoformat() if first else None,
                next_attempt_at=next_attempt.ToDatetime(UTC).isoformat()
                if next_attempt.seconds else None,
            )  # fmt: skip

    await _bounded(list(by_workflow.values()), inspect)


async def _activity_scheduled_times(client: Client, workflow: OpenWorkflow) -> dict[str, datetime]:
    """When each activity of the run was first scheduled (its ActivityTaskScheduled event):
    a pending activity's own scheduled time is its *current* attempt's."""
    handle = client.get_workflow_handle(workflow.workflow_id, run_id=workflow.run_id)
    times: dict[str, datetime] = {}
    async for event in handle.fetch_history_events():
        if event.event_type == _ACTIVITY_SCHEDULED:
            activity_id = event.activity_task_scheduled_event_attributes.activity_id
            times[activity_id] = event.event_time.ToDatetime(UTC)
    return times


def _one_line(text: str | None) -> str:
    """A message on one line (PostgreSQL's carry a DETAIL line), for the summaries."""
    return " ".join((text or "").split())


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


# --- the read model -------------------------------------------------------------------------


async def case_state(client: Client, case_id: str) -> CaseState:
    """The case's state as its workflow knows it: the ``state`` query, or for a case too large
    for one answer (which that query refuses, ``CaseTooLarge``) its parts (``state_page``),
    joined. Raises the ``state`` query's error when the parts cannot be had either (a worker
    without that query, a case that does not answer)."""
    handle = client.get_workflow_handle(case_id)
    try:
        return await handle.query(
            CASE_STATE_QUERY, result_type=CaseState, rpc_timeout=_QUERY_TIMEOUT
        )
    except WorkflowQueryFailedError as refused:
        try:
            return await _state_in_parts(handle)
        except WorkflowQueryFailedError:
            raise refused from None


async def _state_in_parts(handle: WorkflowHandle[Any, Any]) -> CaseState:
    events: list[CaseEvent] = []
    while True:
        after = events[-1].seq if events else 0
        page = await handle.query(
            CASE_STATE_PAGE_QUERY, after, result_type=StatePage, rpc_timeout=_QUERY_TIMEOUT
        )
        events += page.state.events
        if page.complete:
            return page.state.model_copy(update={"events": events})


_READ_MODEL_ROWS = """
SELECT c.case_id, c.version, c.updated_at, e.kind AS last_kind, e.at AS last_at
FROM cases c LEFT JOIN case_events e ON e.case_id = c.case_id AND e.seq = c.version
WHERE c.case_id = ANY($1::text[])
"""


# Closed cases whose read model shows a ladder that never stopped (indexes of migration 0032).
# A ladder always stops before its case's workflow ends; the stop of one whose child ended after
# the close was not projected before project-after-close-v1. Most recently changed first. Only
# cases closed within Temporal's retention ($3; NULL: not known): an older one's workflow is
# gone, its state cannot be asked, and each doctor run would ask it in vain.
_CLOSED_WITH_A_LADDER_LEFT = f"""
SELECT s.case_id FROM case_events s JOIN cases c ON c.case_id = s.case_id
WHERE s.kind = '{EventKind.ESCALATION_STARTED.value}' AND c.status = {sql_status(Status.CLOSED)}
  AND c.updated_at < now() - $1::interval
  AND ($3::interval IS NULL OR c.updated_at > now() - $3::interval)
  AND NOT EXISTS (
    SELECT 1 FROM case_events t
    WHERE t.case_id = s.case_id AND t.kind = '{EventKind.ESCALATION_STOPPED.value}'
      AND t.data -> 'n' = s.data -> 'n')
GROUP BY s.case_id ORDER BY max(c.updated_at) DESC LIMIT $2
"""


async def _closed_with_a_ladder_left(
    client: Client, pool: asyncpg.Pool, lag: timedelta, limit: int
) -> list[str]:
    """Closed cases whose read model may be behind: the open cases' check cannot see them
    (visibility lists open workflows), and their workflow's state (a query, which replays the
    closed workflow) tells what is missing — while Temporal keeps the workflow."""
    rows = await pool.fetch(_CLOSED_WITH_A_LADDER_LEFT, lag, limit, await retention(client))
    return [r["case_id"] for r in rows]


async def retention(client: Client) -> timedelta | None:
    """How long Temporal keeps a closed workflow (the namespace's retention); None when the
    server does not say (or does not let us ask: the check then asks every case it finds)."""
    try:
        described = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=client.namespace), retry=True
        )
    except RPCError as refused:
        if refused.status != RPCStatusCode.PERMISSION_DENIED:
            raise
        return None
    ttl = described.config.workflow_execution_retention_ttl
    return ttl.ToTimedelta() if ttl.seconds or ttl.nanos else None


async def _read_models_behind(
    client: Client, pool: asyncpg.Pool, case_ids: list[str], lag: timedelta,
    report: DoctorReport,
) -> None:
    async def state(case_id: str) -> CaseState | Exception:
        try:
            return await case_state(client, case_id)
        except Exception as error:  # closed meanwhile, or a history that does not replay
            return error

    states = dict(zip(case_ids, await _bounded(case_ids, state), strict=True))
    rows = {r["case_id"]: r for r in await pool.fetch(_READ_MODEL_ROWS, case_ids)}
    for case_id, known in states.items():
        if isinstance(known, Exception) or not known.events:
            continue  # the workflow could not say: the replay check tells why
        row = rows.get(case_id)
        if row is not None and row["version"] > 0 and _diverged(case_id, known, row, report):
            continue
        _behind(case_id, known, row, lag, report)


def _diverged(
    case_id: str, known: CaseState, row: asyncpg.Record, report: DoctorReport
) -> bool:
    """The read model's last projected event is not the workflow's event of that number."""
    version = row["version"]
    ours = next((e for e in known.events if e.seq == version), None)
    if ours is not None and (row["last_kind"], row["last_at"]) == (ours.kind.value, ours.at):
        return False
    theirs = (f"{row['last_kind']} at {row['last_at'].isoformat()}" if row["last_kind"]
              else "missing")
    workflow = f"{ours.kind.value} at {ours.at.isoformat()}" if ours else "none"
    report.add(
        READ_MODEL_DIVERGED, case_id,
        f"case {case_id}: read model's event #{version} is {theirs}, the workflow's is "
        f"{workflow} (workflow at {known.events[-1].seq})",
        read_model_version=version, workflow_seq=known.events[-1].seq,
        read_model_event=row["last_kind"], workflow_event=ours.kind.value if ours else None,
    )  # fmt: skip
    return True


def _behind(
    case_id: str, known: CaseState, row: asyncpg.Record | None, lag: timedelta,
    report: DoctorReport,
) -> None:
    version = row["version"] if row else 0
    unprojected = [e for e in known.events if e.seq > version]
    if not unprojected or datetime.now(UTC) - unprojected[0].at < lag:
        return
    oldest = unprojected[0]
    report.add(
        READ_MODEL_BEHIND, case_id,
        f"case {case_id}: read model at event {version or 'none (no row)'}, workflow at "
        f"{known.events[-1].seq}; oldest unprojected: #{oldest.seq} {oldest.kind.value} "
        f"at {oldest.at.isoformat()}",
        read_model_version=version if row else None,
        workflow_seq=known.events[-1].seq,
        behind_by=len(unprojected),
        oldest_unprojected_at=oldest.at.isoformat(),
        read_model_updated_at=row["updated_at"].isoformat() if row else None,
    )


# --- notifications --------------------------------------------------------------------------

_OVERDUE = """
SELECT key, case_id, recipient_kind, recipient_id, channel, status, attempts, created_at,
       not_before, lease_until, last_error, now() - created_at AS late
FROM notifications
WHERE status IN ('pending', 'sending') AND created_at < now() - $1::interval
ORDER BY created_at
LIMIT $2
"""

async def _overdue_notifications(
    pool: asyncpg.Pool, after: timedelta, report: DoctorReport
) -> None:
    for row in await pool.fetch(_OVERDUE, after, report.options.limit):
        late = row["late"]
        report.add(
            NOTIFICATION_OVERDUE, row["key"],
            f"notice {row['key']} ({row['channel']} to {row['recipient_kind']} "
            f"{row['recipient_id']}): {row['status']} for {_duration(late)} after "
            f"{row['attempts']} attempts" + (f"; last error: {_one_line(row['last_error'])}"
                                             if row["last_error"] else ""),
            case_id=row["case_id"], status=row["status"], attempts=row["attempts"],
            created_at=row["created_at"].isoformat(),
            not_before=row["not_before"].isoformat(),
            lease_until=row["lease_until"].isoformat() if row["lease_until"] else None,
            last_error=row["last_error"],
        )  # fmt: skip


# The notices the dispatcher gave up on (status 'failed': max_attempts used up, or the lease of
# the last attempt expired, jiesu.notify.outbox _EXPIRE): nothing sends them again until
# `jiesu repair notices`. Newest first: they stay until resent or set aside (status set_aside,
# jiesu.ops.doctor.set_aside_notices: not listed), so a long list's newest are the ones an
# operator has not seen yet. Read through the partial index of migration 0044.
_FAILED = """
SELECT key, case_id, recipient_kind, recipient_id, channel, attempts, created_at, last_error
FROM notifications
WHERE status = 'failed'
ORDER BY created_at DESC
LIMIT $1
"""


async def _failed_notifications(pool: asyncpg.Pool, report: DoctorReport) -> None:
    for row in await pool.fetch(_FAILED, report.options.limit):
        report.add(
            NOTIFICATION_FAILED, row["key"],
            f"notice {row['key']} ({row['channel']} to {row['recipient_kind']} "
            f"{row['recipient_id']}): given up after {row['attempts']} attempts"
            + (f"; last error: {_one_line(row['last_error'])}" if row["last_error"] else "")
            + " — resend it with jiesu repair notices, or set it aside (--set-aside --reason)",
            case_id=row["case_id"], recipient_kind=row["recipient_kind"],
            recipient_id=row["recipient_id"], channel=row["channel"],
            attempts=row["attempts"], created_at=row["created_at"].isoformat(),
            last_error=row["last_error"],
        )  # fmt: skip


# A citizen's notice the outbox did not send because it could not (status 'skipped': no phone
# that takes an SMS, no e-mail; migration 0039), of a case not closed in the read model: the
# citizen was never told, and only a phone call reaches them. The case page says the same to
# whoever opens it (告知诉求人); this lists them all. A citizen who left no phone at all (an
# app's report without contact, followed by its case number only) cannot be phoned: not listed.
# Oldest first, as the others.
_NOT_TOLD = f"""
SELECT n.key, n.case_id, n.event_kind, n.recipient_id, n.created_at, n.last_error
FROM notifications n JOIN cases c ON c.case_id = n.case_id
WHERE n.status = 'skipped' AND n.recipient_kind = 'citizen'
  AND c.status <> {sql_status(Status.CLOSED)}
  AND {NOTICE_CITIZEN} ->> 'phone' IS NOT NULL
ORDER BY n.created_at
LIMIT $1
"""


async def _citizens_not_told(pool: asyncpg.Pool, report: DoctorReport) -> None:
    for row in await pool.fetch(_NOT_TOLD, report.options.limit):
        report.add(
            CITIZEN_NOT_TOLD, row["key"],
            f"case {row['case_id']}: its citizen ({row['recipient_id']}) was not told of "
            f"{row['event_kind']}: {_one_line(row['last_error'])} — phone them",
            case_id=row["case_id"], event_kind=row["event_kind"],
            recipient_id=row["recipient_id"], created_at=row["created_at"].isoformat(),
            last_error=row["last_error"],
        )  # fmt: skip


# --- intake ----------------------------------------------------------------------------------

# The intakes and repeat reports nobody completed (docs/intake.md, "Rows nobody completes").
_PENDING_REPORTS = """
SELECT case_id AS subject, case_id, created_at, now() - created_at AS late
FROM intakes WHERE state = 'pending' AND created_at < now() - $1::interval
UNION ALL
SELECT case_id || '/repeat-' || id, case_id, created_at, now() - created_at
FROM repeat_reports WHERE state = 'pending' AND created_at < now() - $1::interval
ORDER BY created_at
LIMIT $2
"""


async def _pending_intakes(pool: asyncpg.Pool, after: timedelta, report: DoctorReport) -> None:
    for row in await pool.fetch(_PENDING_REPORTS, after, report.options.limit):
        report.add(
            INTAKE_PENDING, row["subject"],
            f"report {row['subject']}: pending for {_duration(row['late'])}",
            case_id=row["case_id"], created_at=row["created_at"].isoformat(),
        )  # fmt: skip


# --- replay ------------------------------------------------------------------------------


async def _histories_not_replaying(
    client: Client,
    pool: asyncpg.Pool,
    open_cases: list[str],
    options: DoctorOptions,
    workflows: Sequence[type],
    report: DoctorReport,
) -> None:
    cases = dict.fromkeys(open_cases)
    if options.replay_since is not None:
        for case_id in await audit_replay.select_cases(client, pool, since=options.replay_since):
            cases.setdefault(case_id)
    summary = await audit_replay.replay_cases(
        client, pool, list(cases), replayer=audit_replay.make_replayer(workflows)
    )
    report.replayed = summary.total
    for verdict in summary.failures:
        bad = verdict.divergence
        where = ""
        if bad is not None:
            where = f" in {bad.workflow_id}" if bad.workflow_id != verdict.case_id else ""
            where += f" at event {bad.event_id}" if bad.event_id is not None else ""
        report.add(
            NOT_REPLAYING, verdict.case_id,
            f"case {verdict.case_id}: {verdict.verdict}{where}: {_one_line(verdict.message)}",
            verdict=verdict.verdict, message=verdict.message,
            workflow_id=bad.workflow_id if bad else None,
            event_id=bad.event_id if bad else None,
        )


# --- presenting ---------------------------------------------------------------------------


def format_report(report: DoctorReport) -> str:
    """The report for a person: one line per finding, grouped by kind, then the totals."""
    lines: list[str] = []
    for kind in KINDS:
        found = [f for f in report.findings if f.kind == kind]
        if found:
            lines.append(f"{kind} ({len(found)}):")
            lines += [f"  {f.summary}" for f in found]
    for error in report.errors:
        lines.append(f"check failed: {error.check}: {error.message}")
    scope = f"{report.open_workflows} open workflows"
    if report.truncated:
        scope += f" (the newest {report.options.limit}; raise --limit to see more)"
    counts = ", ".join(f"{n} {kind}" for kind, n in report.counts.items())
    verdict = "OK" if report.ok else "PROBLEMS FOUND"
    schema = "" if report.schema_state is None else _schema_said(report.schema_state) + "; "
    lines.append(f"{verdict}: {schema}{scope}, {report.replayed} histories replayed; {counts}")
    return "\n".join(lines)


def _schema_said(schema: SchemaReport) -> str:
    """The schema's state, for the verdict line."""
    if schema.pending:
        count = len(schema.pending)
        said = (f"schema behind this code, {count} migration{'s' * (count > 1)} pending"
                f" ({', '.join(schema.pending)}): run `jiesu bootstrap`")
    else:
        said = f"schema up to date ({schema.applied} migrations, the last {schema.latest})"
    if schema.unknown:
        said += (f"; {len(schema.unknown)} newer than this code ({', '.join(schema.unknown)}):"
                 " a newer version's bootstrap ran, this jiesu is the older")
    return said


def exit_code(report: DoctorReport) -> int:
    """0 when all is well, 1 when something was found, 2 when a check could not run."""
    if report.findings:
        return 1
    return 2 if report.errors else 0
