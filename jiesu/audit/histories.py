"""Auditing a case: its history (from Temporal, or from the archive once Temporal dropped it),
the timeline decoded from it, and exports.

Every read of a history goes through :func:`load_history`, so timelines, exports, replay
verification and the consistency check all work the same for live and archived cases.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from jiesu.audit.archive import read_archived
from jiesu.audit.timeline import Timeline, child_runs, decode_history

BUNDLE_FORMAT = "jiesu-case-bundle/1"
MAX_CHILD_DEPTH = 4  # children of children...; a guard against a malformed history


@dataclass(frozen=True)
class LoadedHistory(WorkflowHistory):
    """A workflow history and where it came from: "temporal" or "archive"."""

    source: str = "temporal"


class HistoryNotFound(LookupError):
    """Neither Temporal nor the archive has a history for this workflow id."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"no history for {workflow_id} in Temporal or in the archive")
        self.workflow_id = workflow_id


async def load_history(
    client: Client, pool: asyncpg.Pool, workflow_id: str, run_id: str | None = None
) -> LoadedHistory:
    """A run's history — the latest run's without ``run_id`` —: from Temporal while it has
    it, else from the archive."""
    try:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        if history.events:
            return LoadedHistory(workflow_id, history.events, "temporal")
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:
            raise
    archived = await read_archived(pool, workflow_id, run_id)
    if archived is None:
        raise HistoryNotFound(workflow_id)
    return LoadedHistory(workflow_id, archived.events, "archive")


async def load_case_histories(
    client: Client,
    pool: asyncpg.Pool,
    case_id: str,
    *,
    lost: list[tuple[str, str]] | None = None,
) -> list[LoadedHistory]:
    """The case's history followed by its children's (depth first, in start order).

    A child is the run its parent started (by run id: a reset case's runs reuse their
    children's ids). A child the parent records as started whose history neither Temporal nor
    the archive has is appended to ``lost`` as (workflow id, run id): the case is incomplete
    and an auditor must be told. One that never started has no history: its parent says so."""
    histories: list[LoadedHistory] = []

    async def visit(workflow_id: str, run_id: str | None, depth: int) -> None:
        history = await load_history(client, pool, workflow_id, run_id)
        histories.append(history)
        if depth < MAX_CHILD_DEPTH:
            for child_id, child_run in child_runs(history):
                try:
                    await visit(child_id, child_run, depth + 1)
                except HistoryNotFound:
                    if child_run is not None and lost is not None:
                        lost.append((child_id, child_run))

    await visit(case_id, None, 0)
    return histories


def _timeline_tree(histories: dict[str, LoadedHistory], workflow_id: str, depth: int) -> Timeline:
    history = histories[workflow_id]
    timeline = decode_history(history, history.source)
    if depth >= MAX_CHILD_DEPTH:
        return timeline
    for entry in timeline.entries:
        child_id = entry.details.get("workflow_id")
        if entry.kind == "child_started" and child_id in histories:
            entry.child = _timeline_tree(histories, child_id, depth + 1)
    return timeline


def timeline_of(histories: list[LoadedHistory]) -> Timeline:
    """The first history's timeline with its children's timelines inline."""
    by_id = {h.workflow_id: h for h in histories}
    return _timeline_tree(by_id, histories[0].workflow_id, 0)


async def case_timeline(client: Client, pool: asyncpg.Pool, case_id: str) -> Timeline:
    return timeline_of(await load_case_histories(client, pool, case_id))


async def raw_history(client: Client, pool: asyncpg.Pool, workflow_id: str) -> dict[str, Any]:
    """Temporal's standard history JSON (``temporal workflow show --output json``)."""
    return (await load_history(client, pool, workflow_id)).to_json_dict()


async def case_bundle(client: Client, pool: asyncpg.Pool, case_id: str) -> dict[str, Any]:
    """One JSON document: the timeline plus the raw histories of the case and its children.

    Replay a history from it with
    ``WorkflowHistory.from_json(workflow_id, bundle["histories"][workflow_id]["history"])``.
    """
    lost: list[tuple[str, str]] = []
    histories = await load_case_histories(client, pool, case_id, lost=lost)
    return {
        "format": BUNDLE_FORMAT,
        "case_id": case_id,
        "exported_at": datetime.now(UTC).isoformat(),
        "timeline": timeline_of(histories).model_dump(mode="json"),
        "histories": {
            h.workflow_id: {"run_id": h.run_id, "source": h.source, "history": h.to_json_dict()}
            for h in histories
        },
        # children the case started whose history is in neither Temporal nor the archive
        "lost_children": [{"workflow_id": w, "run_id": r} for w, r in lost],
    }


def dumps(document: Any) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2)
