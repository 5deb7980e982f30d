"""Re-batching a recorded history: the same events, delivered in more or fewer workflow tasks.

A worker whose cached case ran ahead of a restarted server processes an activity result and a
signal in two activations, while the history it then writes groups them into one workflow
task (see tests/histories/evidence/README.md). These helpers build both shapes from one
history, so a test can show that the workflow issues the same commands either way.

Histories are the JSON of ``WorkflowHistory.to_json()``: event ids are strings, and every
reference to another event is a field whose name ends in ``EventId``.
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

STARTED = "EVENT_TYPE_WORKFLOW_TASK_STARTED"
COMPLETED = "EVENT_TYPE_WORKFLOW_TASK_COMPLETED"
SCHEDULED = "EVENT_TYPE_WORKFLOW_TASK_SCHEDULED"
SIGNALED = "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"


def _renumber(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give events consecutive ids again and move every reference along with them."""
    mapping = {str(e["eventId"]): str(i) for i, e in enumerate(events, start=1)}

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (mapping.get(str(v), v) if k.endswith("EventId") else fix(v))
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return [{**fix(e), "eventId": mapping[str(e["eventId"])]} for e in events]


def _attrs(event: dict[str, Any]) -> dict[str, Any]:
    return next(v for k, v in event.items() if k.endswith("EventAttributes"))


def merge_points(history: str) -> list[int]:
    """Ids of the workflow tasks that completed with no command and were followed at once by
    a signal: the places where a merged delivery would have looked different."""
    events = json.loads(history)["events"]
    return [
        int(e["eventId"])
        for e, after in itertools.pairwise(events)
        if e["eventType"] == COMPLETED and after["eventType"] == SIGNALED
    ]


def merged(history: str, completed_id: int) -> str:
    """The history as if the task that completed at ``completed_id`` and the next one (with
    the signal) had been one task: drop the first task's started/completed events and the
    second one's scheduled event."""
    events = json.loads(history)["events"]
    by_id = {int(e["eventId"]): e for e in events}
    started_id = int(_attrs(by_id[completed_id])["startedEventId"])
    scheduled_id = int(_attrs(by_id[completed_id])["scheduledEventId"])
    signal = by_id[completed_id + 1]
    assert signal["eventType"] == SIGNALED
    second_scheduled = by_id[completed_id + 2]
    assert second_scheduled["eventType"] == SCHEDULED
    drop = {started_id, completed_id, int(second_scheduled["eventId"])}
    kept = []
    for e in events:
        if int(e["eventId"]) in drop:
            continue
        if e["eventType"] in (STARTED, COMPLETED) and _attrs(e)["scheduledEventId"] == str(
            second_scheduled["eventId"]
        ):
            e = copy.deepcopy(e)
            _attrs(e)["scheduledEventId"] = str(scheduled_id)
        kept.append(e)
    return json.dumps({"events": _renumber(kept)})


def split(history: str, signal_id: int) -> str:
    """The history as if the pending task before signal ``signal_id`` had completed (with no
    command) before the signal arrived, the signal then getting a task of its own."""
    events = json.loads(history)["events"]
    index = next(i for i, e in enumerate(events) if int(e["eventId"]) == signal_id)
    pending = events[index - 1]
    assert pending["eventType"] == SCHEDULED, "the signal must follow a scheduled task"
    started = next(e for e in events[index:] if e["eventType"] == STARTED)
    completed = next(e for e in events[index:] if e["eventType"] == COMPLETED)
    # fresh ids, above every existing one, renumbered into place below
    top = max(int(e["eventId"]) for e in events)
    new_started = copy.deepcopy(started) | {"eventId": str(top + 1)}
    new_completed = copy.deepcopy(completed) | {"eventId": str(top + 2)}
    _attrs(new_completed).update(
        scheduledEventId=str(pending["eventId"]), startedEventId=str(top + 1)
    )
    new_scheduled = copy.deepcopy(pending) | {"eventId": str(top + 3)}
    moved = {id(started): copy.deepcopy(started), id(completed): copy.deepcopy(completed)}
    for e in moved.values():  # the signal's own task is the new scheduled one
        _attrs(e)["scheduledEventId"] = str(top + 3)
    out = []
    for e in events:
        if id(e) in moved:
            out.append(moved[id(e)])
            continue
        out.append(e)
        if int(e["eventId"]) == signal_id:
            out.append(new_scheduled)
        elif e is pending:
            out.extend([new_started, new_completed])
    return json.dumps({"events": _renumber(out)})


MARKER = "EVENT_TYPE_MARKER_RECORDED"


def after_local_activity(history: str, marker_id: int) -> str:
    """The history as if the worker had completed its workflow task right after recording the
    local activity marker ``marker_id`` and asked for a new task, in which the workflow went on
    from the activity's result (fault run 11: JS20261123-000195, a worker under load). The
    commands after the marker move to that new task."""
    events = json.loads(history)["events"]
    index = next(i for i, e in enumerate(events) if int(e["eventId"]) == marker_id)
    assert events[index]["eventType"] == MARKER
    completed_id = str(_attrs(events[index])["workflowTaskCompletedEventId"])
    top = max(int(e["eventId"]) for e in events)
    scheduled = {"eventId": str(top + 1), "eventTime": events[index]["eventTime"],
                 "eventType": SCHEDULED, "workflowTaskScheduledEventAttributes": {
                     "taskQueue": {"name": "x", "kind": "TASK_QUEUE_KIND_NORMAL"},
                     "startToCloseTimeout": "10s", "attempt": 1}}  # fmt: skip
    started = {"eventId": str(top + 2), "eventTime": events[index]["eventTime"],
               "eventType": STARTED, "workflowTaskStartedEventAttributes": {
                   "scheduledEventId": str(top + 1), "identity": "surgery"}}  # fmt: skip
    completed = {"eventId": str(top + 3), "eventTime": events[index]["eventTime"],
                 "eventType": COMPLETED, "workflowTaskCompletedEventAttributes": {
                     "scheduledEventId": str(top + 1), "startedEventId": str(top + 2),
                     "identity": "surgery"}}  # fmt: skip
    out = [*events[: index + 1], scheduled, started, completed]
    moving = True
    for e in events[index + 1 :]:
        if e["eventType"] in (SCHEDULED, STARTED, COMPLETED) or "workflowTaskCompletedEventId" \
                not in _attrs(e):  # fmt: skip
            moving = False
        if moving and str(_attrs(e)["workflowTaskCompletedEventId"]) == completed_id:
            e = copy.deepcopy(e)
            _attrs(e)["workflowTaskCompletedEventId"] = str(top + 3)
        out.append(e)
    return json.dumps({"events": _renumber(out)})


def answered_late(history: str, answer_id: int, completed_id: int, later: list[int]) -> str:
    """The history as if the server's answer ``answer_id`` to a command (the
    ExternalWorkflowExecutionSignaled of a ladder's ``hold``) had come while the workflow task
    that completed at ``completed_id`` ran: that task keeps its commands but the events
    ``later``; the answer follows them, then a new task, which issues ``later`` in that order.
    The task the answer woke (completed with no command) goes. A loaded worker writes this when
    it completes a task with a local activity's marker and applies the activity's result in
    the next task, with the answer (``later``: what it issued then; tests/
    test_ladder_orders_before_projection.py)."""
    events = json.loads(history)["events"]
    index = next(i for i, e in enumerate(events) if int(e["eventId"]) == answer_id)
    woke = events[index + 1 : index + 4]
    assert [e["eventType"] for e in woke] == [SCHEDULED, STARTED, COMPLETED], "not alone"
    assert not any(
        str(_attrs(e).get("workflowTaskCompletedEventId")) == str(woke[2]["eventId"])
        for e in events
    ), "the task the answer woke issued commands"
    by_id = {str(e["eventId"]): e for e in events}
    assert all(
        str(_attrs(by_id[str(i)]).get("workflowTaskCompletedEventId")) == str(completed_id)
        for i in later
    ), "every moved event must be a command of the task"
    return answer_moved(history, answer_id, completed_id, later)


def answer_moved(history: str, answer_id: int, completed_id: int, later: list[int]) -> str:
    """``answered_late`` for any server answer (a child's start, a timer's firing, a signal's
    delivery): the answer ``answer_id`` moved after the commands the task that completed at
    ``completed_id`` keeps, then a new task, which issues ``later`` in that order (commands of
    that task, or of the task the answer woke). The task the answer woke goes when it was its
    own (scheduled right after it); an answer that came within another task's window just
    leaves it. A loaded worker writes this when it completes a task with a local activity's
    marker and applies the activity's result in the next task, with the answer
    (tests/test_replay_groupings.py)."""
    events = json.loads(history)["events"]
    index = next(i for i, e in enumerate(events) if int(e["eventId"]) == answer_id)
    answer, woke = events[index], events[index + 1 : index + 4]
    own = [e["eventType"] for e in woke] == [SCHEDULED, STARTED, COMPLETED]
    gone = {str(answer["eventId"])}
    if own:
        gone |= {str(e["eventId"]) for e in woke}
        scheduled, started, completed = (copy.deepcopy(e) for e in woke)
    else:  # a new task of its own, stamped with the answer's time
        top = max(int(e["eventId"]) for e in events)
        at = answer["eventTime"]
        scheduled = {"eventId": str(top + 1), "eventTime": at, "eventType": SCHEDULED,
                     "workflowTaskScheduledEventAttributes": {
                         "taskQueue": {"name": "x", "kind": "TASK_QUEUE_KIND_NORMAL"},
                         "startToCloseTimeout": "10s", "attempt": 1}}  # fmt: skip
        started = {"eventId": str(top + 2), "eventTime": at, "eventType": STARTED,
                   "workflowTaskStartedEventAttributes": {
                       "scheduledEventId": str(top + 1), "identity": "surgery"}}  # fmt: skip
        completed = {"eventId": str(top + 3), "eventTime": at, "eventType": COMPLETED,
                     "workflowTaskCompletedEventAttributes": {
                         "scheduledEventId": str(top + 1), "startedEventId": str(top + 2),
                         "identity": "surgery"}}  # fmt: skip
    woke_id = str(woke[2]["eventId"]) if own else None
    by_id = {str(e["eventId"]): e for e in events}
    for i in later:
        task = str(_attrs(by_id[str(i)]).get("workflowTaskCompletedEventId"))
        assert task in (str(completed_id), woke_id), f"{i} is no command of the two tasks"
    if own:  # the woken task's commands must all be reissued
        issued = {
            str(e["eventId"])
            for e in events
            if str(_attrs(e).get("workflowTaskCompletedEventId")) == woke_id
        }
        assert issued <= {str(i) for i in later}, "a command of the woken task is not reissued"
    reissued = []
    for i in later:
        e = copy.deepcopy(by_id[str(i)])
        _attrs(e)["workflowTaskCompletedEventId"] = str(completed["eventId"])
        reissued.append(e)
    gone |= {str(i) for i in later}
    kept = [e for e in events if str(e["eventId"]) not in gone]
    last = max(
        (i for i, e in enumerate(kept)
         if str(e["eventId"]) == str(completed_id)
         or str(_attrs(e).get("workflowTaskCompletedEventId")) == str(completed_id)),
    )  # fmt: skip
    out = [*kept[: last + 1], answer, scheduled, started, completed, *reissued, *kept[last + 1 :]]
    return json.dumps({"events": _renumber(out)})
