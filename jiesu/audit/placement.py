"""Patches recorded after a local activity: the histories a replay may not follow.

Temporal looks for a patch's marker in the workflow task where the code asks for it. A worker
may complete a task with a local activity's marker and go on from its result in a new task; a
patch asked there is recorded in that task, while a replay goes on in the marker's task and
fails (TMPRL1100). A patch marker recorded *after* a local activity's marker of the same task is
a patch the code asked right after that activity: the history replays as it was cut this time,
not however the worker cuts the next one. Since ``lean-case-v3`` a case records none
(workflows/patches.py); ``tests/test_patch_placement.py`` and ``bench/faults.py`` look.
"""

from __future__ import annotations

import json

from temporalio.client import WorkflowHistory

from jiesu.audit.timeline import LOCAL_ACTIVITY_MARKER, PATCH_MARKER


def patch_id(payload_data: bytes) -> str:
    """The patch's id from its marker's ``patch-data`` payload (JSON)."""
    try:
        return str(json.loads(payload_data).get("id"))
    except (ValueError, AttributeError):
        return "?"


def patches_after_local_activity(history: WorkflowHistory) -> list[str]:
    """The ids of the patches recorded in a workflow task after a local activity's marker of
    that task, in history order."""
    found: list[str] = []
    tasks_with_activity: set[int] = set()
    for event in history.events:
        if not event.HasField("marker_recorded_event_attributes"):
            continue
        marker = event.marker_recorded_event_attributes
        task = marker.workflow_task_completed_event_id
        if marker.marker_name == LOCAL_ACTIVITY_MARKER:
            tasks_with_activity.add(task)
        elif marker.marker_name == PATCH_MARKER and task in tasks_with_activity:
            payloads = marker.details["patch-data"].payloads
            found.append(patch_id(payloads[0].data) if payloads else "?")
    return found
