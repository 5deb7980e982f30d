"""Is a case wedged? Its history ends in a failing workflow task.

A workflow task that fails (a bug, a payload the code cannot handle) is retried by Temporal
for ever; the history keeps the first failure and the case makes no progress, answers no
query, and fires no deadline until someone fixes the code or resets it (docs/operations.md).
Such a history still *replays* — the failed task recorded no commands — so replay checks and
timelines must look for it explicitly.
"""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

_TASK_OUTCOMES = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
}
_CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
}


def task_failure(event: HistoryEvent) -> str:
    """The failure message of a WorkflowTaskFailed event, first line only."""
    failure = event.workflow_task_failed_event_attributes.failure
    return (failure.message or "workflow task failed").splitlines()[0]


def closed(history: WorkflowHistory) -> bool:
    """Has this run ended (completed, failed, terminated, ... or continued as new)?"""
    return any(event.event_type in _CLOSED for event in history.events)


def failing_task(history: WorkflowHistory) -> str | None:
    """The failure that wedges this open case, or None when its last workflow task passed."""
    last = None
    for event in history.events:
        if event.event_type in _CLOSED:
            return None
        if event.event_type in _TASK_OUTCOMES:
            last = event
    if last is None or last.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
        return None
    return task_failure(last)
