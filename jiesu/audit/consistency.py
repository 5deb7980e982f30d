"""Consistency check: does the read model's event list of a case match its history?

The history carries the workflow's own event list (the input of each ``project_case``
activity, see :mod:`jiesu.audit.timeline`). Every event whose projection activity
*completed* must be in ``case_events`` with the same kind, time, actor and data. Reported per
case: ``missing`` (in the history, not in the read model), ``extra`` (in the read model, not
in the history) and ``different`` (same seq, other content). Events whose projection is still
scheduled or running are ``pending``, not divergent.

The history is read first, then the read model. A lean case's projection is a local
activity: its rows are written *before* the workflow task that records its result completes.
So while a case runs, the read model may be a batch ahead of any history one can read; those
rows (the seqs right after the history's last recorded one) are counted ``ahead``, not
``extra``. Read the other way round, the history could also be ahead of the read model read
before it, and every event projected in between would be ``missing``. A closed case has no
such window: its history is final, and any row past it is ``extra``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Container, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from temporalio.client import Client

from jiesu.audit.histories import HistoryNotFound, load_history
from jiesu.audit.replay import visibility_query
from jiesu.audit.stuck import closed, failing_task
from jiesu.audit.timeline import recorded_batches

_FIELDS = ("kind", "at", "actor", "data")


@dataclass
class Divergence:
    seq: int
    problem: str  # missing, extra, different
    fields: list[str] = field(default_factory=list)
    history: dict[str, Any] | None = None
    read_model: dict[str, Any] | None = None


@dataclass
class CaseConsistency:
    case_id: str
    source: str  # where the history came from; "none" when there is none
    history_events: int = 0
    read_model_events: int = 0
    pending: int = 0
    ahead: int = 0  # read-model events of a running case past its history (see the docstring)
    divergences: list[Divergence] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.divergences and self.error is None


def _normal(event: dict[str, Any]) -> dict[str, Any]:
    """An event in one comparable form, whichever side it came from."""
    at = event.get("at")
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return {
        "kind": str(event.get("kind")),
        "at": at,
        "actor": json.loads(json.dumps(event.get("actor"), default=str)),
        "data": json.loads(json.dumps(event.get("data") or {}, default=str)),
    }


def _jsonable(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "at": event["at"].isoformat() if event.get("at") else None}


def compare(
    history: dict[int, dict[str, Any]], read_model: dict[int, dict[str, Any]]
) -> list[Divergence]:
    """Both sides as {seq: event}; the divergences, in seq order."""
    found: list[Divergence] = []
    for seq in sorted(history.keys() | read_model.keys()):
        ours, theirs = history.get(seq), read_model.get(seq)
        if theirs is None:
            found.append(Divergence(seq, "missing", history=_jsonable(_normal(ours or {}))))
        elif ours is None:
            found.append(Divergence(seq, "extra", read_model=_jsonable(_normal(theirs))))
        else:
            a, b = _normal(ours), _normal(theirs)
            fields = [f for f in _FIELDS if a[f] != b[f]]
            if fields:
                found.append(Divergence(seq, "different", fields, _jsonable(a), _jsonable(b)))
    return found


async def _read_model_events(pool: asyncpg.Pool, case_id: str) -> dict[int, dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT seq, kind, at, actor, data FROM case_events WHERE case_id = $1", case_id
    )
    return {r["seq"]: dict(r) for r in rows}


async def check_case(client: Client, pool: asyncpg.Pool, case_id: str) -> CaseConsistency:
    try:
        history = await load_history(client, pool, case_id)
    except HistoryNotFound as err:
        read_model = await _read_model_events(pool, case_id)
        return CaseConsistency(case_id, "none", 0, len(read_model), error=str(err))
    read_model = await _read_model_events(pool, case_id)  # after the history: see the docstring
    recorded: dict[int, dict[str, Any]] = {}
    projected: set[int] = set()
    for batch in recorded_batches(history):
        for event in batch.events:
            seq = int(event["seq"])
            recorded.setdefault(seq, event)
            if batch.completed:
                projected.add(seq)
    # An event whose projection has not completed in the history yet is "pending"; if the
    # read model already has it (the activity ran, its completion is not recorded yet), it is
    # compared all the same.
    expected = {s: e for s, e in recorded.items() if s in projected or s in read_model}
    ahead = set() if closed(history) else projected_ahead(recorded.keys(), read_model.keys())
    result = CaseConsistency(case_id, history.source, len(expected), len(read_model))
    result.pending = len(recorded.keys() - expected.keys())
    result.ahead = len(ahead)
    result.divergences = compare(
        expected, {s: e for s, e in read_model.items() if s not in ahead}
    )
    stuck = failing_task(history)
    if stuck is not None:  # consistent so far, but it will not move: not fine
        result.error = f"stuck: the last workflow task failed: {stuck}"
    return result


def projected_ahead(recorded: Iterable[int], read_model: Container[int]) -> set[int]:
    """The read model's seqs that follow the history's last recorded one without a gap: a
    batch projected by a workflow task whose completion the history does not hold yet. A row
    further on (a gap before it) is no projection's and stays ``extra``."""
    ahead: set[int] = set()
    seq = max(recorded, default=0) + 1
    while seq in read_model:
        ahead.add(seq)
        seq += 1
    return ahead


async def select_cases(
    client: Client,
    pool: asyncpg.Pool,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[str]:
    """Cases received in [since, until): the read model's, plus any Temporal has that the read
    model lacks entirely."""
    rows = await pool.fetch(
        "SELECT case_id FROM cases WHERE ($1::timestamptz IS NULL OR received_at >= $1) "
        "AND ($2::timestamptz IS NULL OR received_at < $2) ORDER BY received_at, case_id",
        since,
        until,
    )
    ids = {r["case_id"]: None for r in rows}
    async for execution in client.list_workflows(visibility_query(None, since, until)):
        ids.setdefault(execution.id, None)
    return list(ids)


async def check_cases(
    client: Client, pool: asyncpg.Pool, case_ids: Sequence[str]
) -> AsyncIterator[CaseConsistency]:
    for case_id in case_ids:
        yield await check_case(client, pool, case_id)
