"""Replay verification: do recorded histories still replay with the current workflow code?

A case "replays" when its history and its children's replay without error against the
workflow classes given (by default the ones the worker runs). Otherwise it is
"non-deterministic" (the code now issues different commands than the history recorded: the
message names the event and the mismatch), "failed" (another replay error), "stuck" (it
replays, but its last workflow task failed, so the case is wedged: jiesu.audit.stuck) or
"missing" (no history in Temporal or the archive). A history whose commands replay but whose
projections the code now computes differently (an action applied then, refused now) is
"non-deterministic" too: the replayer's :class:`~jiesu.audit.witness.ProjectionWitness`
compares them (jiesu.audit.witness). Replays share one :class:`Replayer` and
stream through ``workflow_replay_iterator``, so thousands of cases run in one replay worker.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import Any

import asyncpg
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, WorkflowReplayResult
from temporalio.workflow import NondeterminismError

from jiesu.audit.archive import archived_cases
from jiesu.audit.histories import HistoryNotFound, LoadedHistory, load_case_histories
from jiesu.audit.stuck import failing_task
from jiesu.audit.witness import ProjectionWitness
from jiesu.case.domain import CASE_WORKFLOW


class Verdict(StrEnum):
    """Every verdict a replay gives (a new one is a member here: the console's audit page says
    each in Chinese, api/console/audit_words.py VERDICTS, and its test reads this class)."""

    REPLAYS = "replays"
    NON_DETERMINISTIC = "non-deterministic"
    FAILED = "failed"
    MISSING = "missing"
    STUCK = "stuck"  # replays, but its last workflow task failed: the case is wedged


REPLAYS = Verdict.REPLAYS
NON_DETERMINISTIC = Verdict.NON_DETERMINISTIC
FAILED = Verdict.FAILED
MISSING = Verdict.MISSING
STUCK = Verdict.STUCK
CASES_QUERY = f'WorkflowType="{CASE_WORKFLOW}"'

_FAR = datetime.max.replace(tzinfo=UTC)
_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
_TASK_STARTED = EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
_TASK_COMPLETED = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED


@dataclass
class HistoryVerdict:
    workflow_id: str
    run_id: str
    source: str
    verdict: str
    message: str | None = None
    event_id: int | None = None  # where replay diverged, when the message names it


@dataclass
class CaseVerdict:
    case_id: str
    verdict: str
    histories: list[HistoryVerdict] = field(default_factory=list)
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.verdict == REPLAYS

    @property
    def divergence(self) -> HistoryVerdict | None:
        return next((h for h in self.histories if h.verdict != REPLAYS), None)


@dataclass
class ReplaySummary:
    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[CaseVerdict] = field(default_factory=list)

    def add(self, verdict: CaseVerdict) -> None:
        self.total += 1
        said = str(verdict.verdict)  # the code, not the enum member: reports print the dict
        self.counts[said] = self.counts.get(said, 0) + 1
        if not verdict.ok:
            self.failures.append(verdict)

    @property
    def ok(self) -> bool:
        return not self.failures


@cache
def _quiet_runtime() -> Runtime:
    """A runtime that does not log each failing replay task (we report them ourselves)."""
    return Runtime(telemetry=TelemetryConfig(logging=None))


def make_replayer(workflows: Sequence[type]) -> Replayer:
    """A replayer for these workflow classes (the caller's: ``workflows.ALL_WORKFLOWS`` for
    the code the worker runs; this package does not import workflows itself).

    It runs them as the worker does, without the SDK's sandbox (worker.py): the question is
    whether the code the worker runs takes the recorded decisions, and a determinism failure
    is the same either way. It is also 2.3–2.9 times less CPU per history (15–17 ms against
    39–44 ms on the recorded ones: ``python -m bench.replay_cost``), which the doctor pays for
    every open case. The sandbox's checks run on every recorded path in the test suite
    (tests/test_replay.py)."""
    return Replayer(
        workflows=list(workflows),
        data_converter=pydantic_data_converter,
        runtime=_quiet_runtime(),
        workflow_runner=UnsandboxedWorkflowRunner(),
        interceptors=[ProjectionWitness()],
    )


def witness_of(replayer: Replayer) -> ProjectionWitness | None:
    """The replayer's projection witness (``make_replayer`` gives it one)."""
    interceptors = replayer.config().get("interceptors") or ()
    return next((i for i in interceptors if isinstance(i, ProjectionWitness)), None)


@asynccontextmanager
async def _alone(replayer: Replayer) -> AsyncIterator[None]:
    """One replay at a time through a replayer's witness (the API shares one replayer among
    its requests): its notes are per run, and the same case replayed twice at once would mix
    them — each replay then reported a sound case non-deterministic."""
    witness = witness_of(replayer)
    if witness is None:
        yield
        return
    async with witness.busy:
        witness.clear()  # notes a cancelled replay left (a client gone mid-request)
        yield


def _clean(failure: Exception) -> str:
    """The core's own message ("[TMPRL1100] Nondeterminism error: ...") without the wrapping."""
    text = str(failure) or type(failure).__name__
    match = _CORE_MESSAGE.search(text)
    return match.group(1) if match else text


def _history_verdict(
    history: WorkflowHistory, failure: Exception | None, witness: ProjectionWitness | None = None
) -> HistoryVerdict:
    """``witness``: the replayer's, which has just replayed ``history`` (its notes are taken)."""
    source = history.source if isinstance(history, LoadedHistory) else "file"
    disagreement = witness.check(history) if witness is not None else None
    if failure is None and disagreement is not None:
        return HistoryVerdict(
            history.workflow_id, history.run_id, source, NON_DETERMINISTIC,
            f"replays, but computes other events than it recorded: {disagreement.message}",
            disagreement.event_id,
        )  # fmt: skip
    if failure is None:
        stuck = failing_task(history)
        if stuck is not None:
            return HistoryVerdict(history.workflow_id, history.run_id, source, STUCK, stuck)
        return HistoryVerdict(history.workflow_id, history.run_id, source, REPLAYS)
    message = _clean(failure)
    kind = NON_DETERMINISTIC if isinstance(failure, NondeterminismError) else FAILED
    if kind == FAILED and "nondetermin" in str(failure).lower():
        kind = NON_DETERMINISTIC
    return HistoryVerdict(history.workflow_id, history.run_id, source, kind, message)


async def locate_divergence(history: WorkflowHistory, replayer: Replayer) -> int | None:
    """The id of the first history event the current code disagrees with.

    Replays growing prefixes of the history, each ending at a workflow task start (binary
    search): the first failing prefix contains the diverging task's commands, the events right
    after that task's WorkflowTaskCompleted. None when even the first task fails (for example,
    an unknown workflow type).
    """
    events = history.events
    cuts = [i + 1 for i, e in enumerate(events) if e.event_type == _TASK_STARTED]
    cuts.append(len(events))

    async def fails(n: int) -> bool:
        prefix = WorkflowHistory(history.workflow_id, events[:n])
        result = await replayer.replay_workflow(prefix, raise_on_replay_failure=False)
        return result.replay_failure is not None

    low, high = 0, len(cuts) - 1  # invariant: cuts[high] fails
    if await fails(cuts[low]):
        return None
    while high - low > 1:
        middle = (low + high) // 2
        if await fails(cuts[middle]):
            high = middle
        else:
            low = middle
    task_events = events[cuts[low] : cuts[high]]
    completed = next(
        (i for i, e in enumerate(task_events) if e.event_type == _TASK_COMPLETED), None
    )
    if completed is None:
        return task_events[0].event_id if task_events else None
    after = task_events[completed + 1 : completed + 2] or task_events[completed : completed + 1]
    return after[0].event_id


_DEADLOCK = "[TMPRL1101]"  # the SDK's "Potential deadlock detected" (2 s without yielding)


async def _with_location(
    verdict: HistoryVerdict, history: WorkflowHistory, replayer: Replayer
) -> HistoryVerdict:
    """The verdict, settled: a suspected deadlock is replayed once more, a divergence located.

    The SDK's deadlock detector fails an activation that has not yielded within 2 s of wall
    time. On a loaded machine a sound history can take that long; a real deadlock fails
    again."""
    witness = witness_of(replayer)
    if verdict.verdict == FAILED and _DEADLOCK in (verdict.message or ""):
        again = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        verdict = _history_verdict(history, again.replay_failure, witness)
    if verdict.verdict == NON_DETERMINISTIC and verdict.event_id is None:
        verdict.event_id = await locate_divergence(history, replayer)
        if witness is not None:
            witness.take(history.workflow_id, history.run_id)  # the prefixes' notes
    return verdict


def _case_verdict(case_id: str, histories: list[HistoryVerdict]) -> CaseVerdict:
    worst = next((h.verdict for h in histories if h.verdict != REPLAYS), REPLAYS)
    first_bad = next((h for h in histories if h.verdict != REPLAYS), None)
    return CaseVerdict(case_id, worst, histories, first_bad.message if first_bad else None)


async def replay_histories(
    histories: Sequence[WorkflowHistory], replayer: Replayer
) -> list[HistoryVerdict]:
    """Replay histories that are already loaded (a case bundle, files under tests/)."""

    async def stream() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    verdicts: list[HistoryVerdict] = []
    witness = witness_of(replayer)
    async with _alone(replayer):
        async with replayer.workflow_replay_iterator(stream()) as results:
            async for result in results:
                verdicts.append(_history_verdict(result.history, result.replay_failure, witness))
        by_run = {h.run_id: h for h in histories}
        return [await _with_location(v, by_run[v.run_id], replayer) for v in verdicts]


async def replay_case(
    client: Client, pool: asyncpg.Pool, case_id: str, replayer: Replayer
) -> CaseVerdict:
    """Replay one case and its children."""
    lost: list[tuple[str, str]] = []
    try:
        histories = await load_case_histories(client, pool, case_id, lost=lost)
    except HistoryNotFound as err:
        return CaseVerdict(case_id, MISSING, message=str(err))
    verdicts = await replay_histories(histories, replayer)
    return _case_verdict(case_id, verdicts + _lost(lost))


def _lost(children: list[tuple[str, str]]) -> list[HistoryVerdict]:
    """A child the case started whose history is gone (Temporal's retention, before the
    archive kept it): the case cannot be replayed whole — ``missing``, never "replays"."""
    return [
        HistoryVerdict(workflow_id, run_id, "none", MISSING,
                       f"{workflow_id} was started by the case; its history is in neither"
                       " Temporal nor the archive")
        for workflow_id, run_id in children
    ]  # fmt: skip


async def replay_cases(
    client: Client,
    pool: asyncpg.Pool,
    case_ids: Sequence[str],
    *,
    replayer: Replayer,
    on_verdict: Callable[[CaseVerdict], Any] | None = None,
    on_history: Callable[[WorkflowHistory], Any] | None = None,
) -> ReplaySummary:
    """Replay many cases through one replay worker, reporting each verdict as it comes (and
    each history as it is loaded, to ``on_history``)."""
    summary = ReplaySummary()
    # Cases whose histories were handed to the replayer, with how many results are due, the
    # verdicts so far and the children whose histories are lost.
    pending: list[tuple[str, int, list[HistoryVerdict], list[tuple[str, str]]]] = []

    def report(verdict: CaseVerdict) -> None:
        summary.add(verdict)
        if on_verdict is not None:
            on_verdict(verdict)

    async def stream() -> AsyncIterator[WorkflowHistory]:
        for case_id in case_ids:
            lost: list[tuple[str, str]] = []
            try:
                histories = await load_case_histories(client, pool, case_id, lost=lost)
            except HistoryNotFound as err:
                report(CaseVerdict(case_id, MISSING, message=str(err)))
                continue
            pending.append((case_id, len(histories), [], lost))
            for history in histories:
                if on_history is not None:
                    on_history(history)
                yield history

    async def collect(result: WorkflowReplayResult) -> None:
        case_id, due, verdicts, lost = pending[0]
        verdict = _history_verdict(result.history, result.replay_failure, witness_of(replayer))
        verdicts.append(await _with_location(verdict, result.history, replayer))
        if len(verdicts) == due:
            pending.pop(0)
            report(_case_verdict(case_id, verdicts + _lost(lost)))

    async with _alone(replayer), replayer.workflow_replay_iterator(stream()) as results:
        async for result in results:
            await collect(result)
    return summary


def visibility_query(
    query: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> str:
    parts = [CASES_QUERY]
    if since is not None:
        parts.append(f'StartTime >= "{since.isoformat()}"')
    if until is not None:
        parts.append(f'StartTime < "{until.isoformat()}"')
    if query:
        parts.append(f"({query})")
    return " AND ".join(parts)


async def select_cases(
    client: Client,
    pool: asyncpg.Pool,
    *,
    query: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[str]:
    """Case ids matching a visibility query and/or a start-time range, oldest first.

    Cases only the archive still has are included for time ranges (the archive cannot
    evaluate a visibility query, so with ``query`` only Temporal's cases are selected).
    """
    started: dict[str, datetime] = {}
    if query is None:
        started.update(await archived_cases(pool, since, until))
    async for execution in client.list_workflows(visibility_query(query, since, until)):
        started[execution.id] = min(execution.start_time, started.get(execution.id, _FAR))
    return sorted(started, key=lambda case_id: (started[case_id], case_id))
