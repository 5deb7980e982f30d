"""What a worker issues when it applies a local activity's result and a timer's firing in one
activation — the activation a loaded worker runs when it completed the task with the
activity's marker and applies the result in the next task, which the firing reached too
(tests/test_replay_groupings.py).

No worker can be made to group them so on demand, so the SDK is made to: a recorded history
is replayed up to the marker's task, and the activation that resolves the activity gets the
timer's ``fire_timer`` job as well (first or last: the two job orders Core may send). The
commands the workflow answers it with are the ones such a worker records; ``joint_history``
writes them into the history as that worker would have. This reaches into the SDK's
workflow instance (``_WorkflowInstanceImpl.activate``): a new SDK may need it adjusted.

    PYTHONPATH=. .venv/bin/python tests/joint_activation.py   # rebuilds CONVENED below
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from pathlib import Path
from typing import Any

import temporalio.worker._workflow_instance as instance
from history_surgery import _attrs, _renumber
from temporalio.bridge.proto.workflow_activation import WorkflowActivation, WorkflowActivationJob
from temporalio.bridge.proto.workflow_commands import WorkflowCommand
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from workflows import ALL_WORKFLOWS

HISTORIES = Path(__file__).parent / "histories"
# co_handler_convened_again as lean-case-v38 recorded it (test_co_handler_released, 2026-11-25):
# the 会办's look-up (marker 16, task 15), its projection 17; timer 1 is the accept deadline
CONVENED_RECORDED = HISTORIES / "batching" / "convened_again_v38.json"
CONVENED = HISTORIES / "batching" / "convene_looked_up_as_the_accept_timer_fired.json"
LADDER = HISTORIES / "dissatisfaction_ladder_held_in_the_queue.json"  # its escalation-1 start


async def joint_commands(
    events: list[dict[str, Any]], activation: int, timer: int, *, fire_first: bool
) -> list[WorkflowCommand]:
    """Replay ``events`` (up to the activity's marker); the ``activation``-th activation (the
    one resolving the activity) gets timer ``timer``'s firing too. Its commands."""
    count, got = 0, []
    original = instance._WorkflowInstanceImpl.activate

    def activate(self: Any, act: WorkflowActivation) -> Any:
        nonlocal count
        count += 1
        if count == activation:
            fire = WorkflowActivationJob()
            fire.fire_timer.seq = timer
            jobs = list(act.jobs)
            del act.jobs[:]
            act.jobs.extend([fire, *jobs] if fire_first else [*jobs, fire])
        completion = original(self, act)
        if count == activation:
            got.extend(completion.successful.commands)
        return completion

    instance._WorkflowInstanceImpl.activate = activate  # type: ignore[method-assign]
    try:
        replayer = Replayer(  # the workers' data converter, as helpers.sandboxed_replayer's
            workflows=list(ALL_WORKFLOWS), workflow_runner=UnsandboxedWorkflowRunner(),
            data_converter=pydantic_data_converter,
        )
        history = WorkflowHistory.from_json("joint", json.dumps({"events": events}))
        await replayer.replay_workflow(history, raise_on_replay_failure=False)
    finally:
        instance._WorkflowInstanceImpl.activate = original  # type: ignore[method-assign]
    assert got, f"no activation {activation}"
    return got


def kinds(commands: list[WorkflowCommand]) -> list[str]:
    """The commands as ``variant:detail`` (a child's id, a timer's seq, an activity's type)."""
    out = []
    for command in commands:
        variant = command.WhichOneof("variant")
        body = getattr(command, variant)
        detail = getattr(body, "workflow_id", "") or getattr(body, "activity_type", "")
        out.append(f"{variant}:{detail or getattr(body, 'seq', '')}")
    return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _payload(p: Any) -> dict[str, Any]:
    return {"metadata": {k: _b64(v) for k, v in p.metadata.items()}, "data": _b64(p.data)}


def _projection_marker(event: dict[str, Any]) -> bool:
    if event["eventType"] != "EVENT_TYPE_MARKER_RECORDED":
        return False
    data = _attrs(event)["details"].get("data")
    return data is not None and b'"project_events"' in base64.b64decode(data["payloads"][0]["data"])


def joint_history(
    events: list[dict[str, Any]], completed: int, marker: int, timer: int,
    commands: list[WorkflowCommand],
) -> str:  # fmt: skip
    """The history up to ``marker`` (a command of task ``completed``), then timer ``timer``'s
    firing, a new task, and ``commands`` as its events: a child's start, an upsert, a local
    projection's marker (its result: the events it was given)."""
    by_id = {int(e["eventId"]): e for e in events}
    index = next(i for i, e in enumerate(events) if int(e["eventId"]) == marker)
    started = next(
        e for e in events if e["eventType"] == "EVENT_TYPE_TIMER_STARTED"
        and _attrs(e)["timerId"] == str(timer)
    )  # fmt: skip
    child = json.loads(LADDER.read_text(encoding="utf-8"))["events"][73]
    assert child["eventType"] == "EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED"
    upsert = next(e for e in events if e["eventType"].endswith("UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"))
    projection = next(e for e in events if _projection_marker(e))
    top = 10_000
    at = by_id[marker]["eventTime"]
    fired = {"eventId": str(top), "eventTime": at, "eventType": "EVENT_TYPE_TIMER_FIRED",
             "timerFiredEventAttributes": {"timerId": str(timer),
                                           "startedEventId": started["eventId"]}}  # fmt: skip
    task = _attrs(by_id[completed])
    ids = (int(task["scheduledEventId"]), int(task["startedEventId"]), completed)
    scheduled, began, done = (copy.deepcopy(by_id[i]) for i in ids)
    for n, e in enumerate((scheduled, began, done), start=top + 1):
        e["eventId"] = str(n)
    _attrs(began)["scheduledEventId"] = str(top + 1)
    _attrs(done).update(scheduledEventId=str(top + 1), startedEventId=str(top + 2))
    out = [*copy.deepcopy(events[: index + 1]), fired, scheduled, began, done]
    for n, command in enumerate(commands, start=top + 4):
        variant = command.WhichOneof("variant")
        body = getattr(command, variant)
        if variant == "start_child_workflow_execution":
            e = copy.deepcopy(child)
            _attrs(e).update(workflowId=body.workflow_id,
                             workflowType={"name": body.workflow_type},
                             input={"payloads": [_payload(p) for p in body.input]})  # fmt: skip
        elif variant == "upsert_workflow_search_attributes":
            e = copy.deepcopy(upsert)
            fields = body.search_attributes.indexed_fields
            _attrs(e)["searchAttributes"] = {
                "indexedFields": {k: _payload(p) for k, p in fields.items()}
            }
        elif variant == "schedule_local_activity":
            assert body.activity_type == "project_events", body.activity_type
            e = copy.deepcopy(projection)
            details = _attrs(e)["details"]
            data = json.loads(base64.b64decode(details["data"]["payloads"][0]["data"]))
            data.update(seq=body.seq, activity_id=body.activity_id)
            details["data"]["payloads"][0]["data"] = _b64(json.dumps(data).encode())
            given = json.loads(body.arguments[0].data)
            receipt = {"version": given["version"], "events": given["new_events"]}
            details["result"]["payloads"][0]["data"] = _b64(json.dumps(receipt).encode())
        else:
            raise AssertionError(f"no event written for {variant}")
        e["eventId"] = str(n)
        _attrs(e)["workflowTaskCompletedEventId"] = str(top + 3)
        out.append(e)
    return json.dumps({"events": _renumber(out)})


def convened_events() -> list[dict[str, Any]]:
    """The recorded 会办 case up to its look-up's marker (16)."""
    events = json.loads(CONVENED_RECORDED.read_text(encoding="utf-8"))["events"]
    return [e for e in events if int(e["eventId"]) <= 16]


async def _rebuild() -> None:
    events = convened_events()
    commands = await joint_commands(events, activation=5, timer=1, fire_first=True)
    CONVENED.write_text(joint_history(events, 15, 16, 1, commands), encoding="utf-8")
    print(kinds(commands))


if __name__ == "__main__":
    asyncio.run(_rebuild())
