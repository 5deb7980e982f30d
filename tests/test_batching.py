"""The workflow issues the same commands however Temporal batches the same events.

tests/histories/evidence/ holds three histories that stopped replaying after the dev server was
killed under load (TMPRL1100). Each replays once its one workflow task holding [activity
result, signal] is split in two: the live worker had processed them in two activations (its
cached case ran ahead of the restarted server), and the old workflow's commands depended on
that. The hardened workflow (PATCH_HARDENED) settles before projecting; a history it writes
replays with the same events merged into fewer tasks. A lean case (lean-case-v1) projects with a
local activity inside the signal's own task: it has no activity result for Temporal to deliver
with a later signal, so there is no such place to merge at all.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import asyncpg
import httpx
import pytest
from helpers import HISTORIES, eventually, handle_of, register, sandboxed_replayer
from history_surgery import SIGNALED, merge_points, merged, split
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory

from jiesu.case.domain import (
    AcceptAction,
    Actor,
    ContactAction,
    EventKind,
    RatingAction,
    ReplyAction,
    Role,
)
from workflows import ComplaintWorkflow

EVIDENCE = sorted((HISTORIES / "evidence").glob("*.json"))
# A lean case's history from a loaded run (2026-11-24): an empty task right before a signal
EMPTY_TASK = HISTORIES / "batching" / "empty_task_before_a_signal.json"
URBAN = Actor(role=Role.DEPARTMENT, name="urban clerk", department_id="urban-management")


async def _replay_failure(text: str, name: str = "case") -> str | None:
    history = WorkflowHistory.from_json(name, text)
    replayer = sandboxed_replayer()
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    return None if result.replay_failure is None else str(result.replay_failure)


def _signal_after_pending_task(text: str) -> int:
    """The signal that arrived while a workflow task was scheduled (the merged delivery)."""
    events = json.loads(text)["events"]
    return next(
        int(b["eventId"])
        for a, b in itertools.pairwise(events)
        if a["eventType"] == "EVENT_TYPE_WORKFLOW_TASK_SCHEDULED" and b["eventType"] == SIGNALED
    )


def test_the_evidence_is_here() -> None:
    assert len(EVIDENCE) == 3


@pytest.mark.parametrize("path", EVIDENCE, ids=lambda p: p.stem)
async def test_evidence_fails_merged_and_replays_split(path: Path) -> None:
    text = path.read_text(encoding="utf-8")  # noqa: ASYNC240 (a small fixture)
    failure = await _replay_failure(text)
    assert failure is not None and "TMPRL1100" in failure
    assert await _replay_failure(split(text, _signal_after_pending_task(text))) is None


_TASK_EVENTS = (
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
)


async def _idle(pool: asyncpg.Pool, client: Client, case_id: str) -> bool:
    """The projector is idle (the read model has every event) and no workflow task is pending
    (the history ends with a completed one): a signal now gets a workflow task of its own."""
    handle = handle_of(client, case_id)
    state = await handle.query(ComplaintWorkflow.state)
    version = await pool.fetchval("SELECT version FROM cases WHERE case_id = $1", case_id)
    if version != len(state.events):
        return False
    tasks = [
        e.event_type
        for e in (await handle.fetch_history()).events
        if e.event_type in _TASK_EVENTS
    ]  # the commands a task issued come after its completed event
    return tasks[-1] == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED


async def _recorded(client: Client, case_id: str, kind: EventKind) -> bool:
    state = await handle_of(client, case_id).query(ComplaintWorkflow.state)
    return any(e.kind is kind for e in state.events)


async def test_new_histories_have_no_result_to_merge_with_a_signal(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    created = await register(api, urgency="urgent")
    case_id = created["case_id"]
    handle = handle_of(client, case_id)
    citizen = Actor(role=Role.CITIZEN, name="Wang Fang")
    actions = [
        (ComplaintWorkflow.accept, AcceptAction(actor=URBAN), EventKind.ACCEPTED),
        (ComplaintWorkflow.contact, ContactAction(actor=URBAN, note="Called"), EventKind.CONTACTED),
        (ComplaintWorkflow.reply, ReplyAction(actor=URBAN, outcome="resolved", text="Done"),
         EventKind.REPLIED),
        (ComplaintWorkflow.rate, RatingAction(actor=citizen, rating="satisfied"), EventKind.CLOSED),
    ]
    for signal, action, effect in actions:
        # each signal after the projector went idle: the shape a merged delivery changes
        await eventually(lambda: _idle(pool, client, case_id), within=60)
        await handle.signal(signal, action)
        await eventually(lambda e=effect: _recorded(client, case_id, e), within=60)
    text = (await handle.fetch_history()).to_json()
    assert await _replay_failure(text) is None
    # No activity result for a signal to join: the projections (and the planning) are local
    # activities, whose results are markers written by the task that ran them.
    results = _activity_events(text)
    assert results == [], f"a lean case ran activities (events {results})"
    # The SDK may still complete an empty task right after a marker's task (it asked for one
    # in the same completion), and a signal sent while it ran, or after it, follows it: a merge
    # point a loaded full run met once (event 24). It must replay merged, as a hardened case's.
    for point in merge_points(text):
        failure = await _replay_failure(merged(text, point))
        assert failure is None, f"merged at event {point}: {failure}"


def _activity_events(text: str) -> list[int]:
    """Ids of the history's (regular) activity events: none in a lean case."""
    events = json.loads(text)["events"]
    return [int(e["eventId"]) for e in events if e["eventType"].startswith("EVENT_TYPE_ACTIVITY_")]


async def test_an_empty_task_before_a_signal_replays_merged() -> None:
    """The live test's flow under load (its file run beside tests/test_console.py with two busy
    loops, load ~9; 1 case of 40): the SDK completed the contact's task (the timer cancelled,
    the projection's marker) and asked for a new task in the same completion (25), which
    completed empty (27); the test saw the case idle and sent the reply (28). Merged into the
    reply's task, the history replays."""
    text = EMPTY_TASK.read_text(encoding="utf-8")
    assert merge_points(text) == [27]
    assert _activity_events(text) == []
    assert await _replay_failure(text) is None
    assert await _replay_failure(merged(text, 27)) is None


async def test_hardened_histories_replay_however_batched() -> None:
    """A hardened case's recorded history (before lean-case-v1) replays with each idle task and
    the signal after it merged into one (what the live test above asserted of such cases)."""
    text = (HISTORIES / "v4-urgent_happy_path.json").read_text(encoding="utf-8")
    points = merge_points(text)
    assert len(points) >= 4, "each signal should follow an idle, completed task"
    for point in points:
        failure = await _replay_failure(merged(text, point))
        assert failure is None, f"merged at event {point}: {failure}"
