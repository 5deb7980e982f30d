"""A ladder's ``release`` and the projection of the dispatch that calls for it come in one order
however a loaded worker groups a local activity's result with the server's answers
(ladder-orders-before-projection-v1, epoch ``lean-case-v38``).

``test_v27_attacks::test_a_rehandle_into_the_queue_after_another_ladder`` failed twice under
load, its case not replaying: "[TMPRL1100] Nondeterminism error:
UpsertWorkflowSearchAttributesMachine does not handle HistoryEvent(id: 110,
SignalExternalWorkflowExecutionInitiated)". The dissatisfaction ladder, started in the centre's
queue, had sent its ``hold``; the dispatch came before the server's answer to it (its
ExternalWorkflowExecutionSignaled). The dispatch's deadlines are a local activity; its result
makes the case assigned, which wakes the projector (search attributes, projection) at once and
the ladder (``release``) only once the ``hold`` is answered. A loaded worker may complete the
task with the activity's marker and apply its result in the next task, together with the
answer: ladder and projector woke together, ``release`` first. A replay applies the result in
the marker's task, before the answer: the projector's upsert came first.

Both groupings are built here from one recorded history (``history_surgery.answered_late``:
the ``hold``'s answer moved after the dispatch's task), each with the commands a worker of its
code issues in it. Since v38 the projector waits while the ladder owes a command it can only
issue after an answer (Ladder.owes_an_order): one command order, both replay. A v36 case
(``v43-``, its history as recorded then) issues two orders, and the second grouping fails.
"""

from __future__ import annotations

import json

import pytest
from helpers import HISTORIES, replay_checked
from history_surgery import answered_late
from temporalio.client import WorkflowHistory

NAME = "dissatisfaction_ladder_held_in_the_queue"  # recorded by lean-case-v38 (and v37)
BEFORE = f"v43-{NAME}"  # by lean-case-v36
# test_v27_attacks' rehandle into the queue after another ladder, a v36 case of a loaded run
# (2026-11-25, two busy loops beside it): the worker completed the dispatch's task with its
# deadlines' marker alone (completed 103, marker 104) and applied the result in the next task
# (completed 107: the timers 108-109, release 110, the upsert 111). The hold (95) was answered
# (96) before the dispatch (100) there; in the failing runs it was not.
LOADED = HISTORIES / "batching" / "dispatch_result_in_the_next_task.json"

RELEASE, UPSERT = "release", "EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"
INITIATED = "EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED"
SIGNALED = "EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED"
TIMER, MARKER = "EVENT_TYPE_TIMER_STARTED", "EVENT_TYPE_MARKER_RECORDED"


def _attrs(event: dict) -> dict:
    return next(v for k, v in event.items() if k.endswith("EventAttributes"))


def _dispatch_task(text: str) -> tuple[int, int, list[dict]]:
    """The answer to the ``hold`` before the ``release``, the task that issued the ``release``
    (the dispatch's: its deadlines' marker first) and that task's commands."""
    events = json.loads(text)["events"]
    orders = [e for e in events if e["eventType"] == INITIATED]
    release = next(e for e in orders if _attrs(e)["signalName"] == RELEASE)
    hold = [e for e in orders if int(e["eventId"]) < int(release["eventId"])][-1]
    assert _attrs(hold)["signalName"] == "hold", hold
    answer = next(e for e in events if e["eventType"] == SIGNALED
                  and str(_attrs(e)["initiatedEventId"]) == str(hold["eventId"]))  # fmt: skip
    task = str(_attrs(release)["workflowTaskCompletedEventId"])
    commands = [e for e in events if str(_attrs(e).get("workflowTaskCompletedEventId")) == task]
    kinds = [e["eventType"] if e is not release else RELEASE for e in commands]
    # as recorded (since lean-case-v37 the dispatch's look-up of its unit, a marker, first)
    assert kinds[-6:] == [MARKER, TIMER, TIMER, RELEASE, UPSERT, MARKER], kinds
    assert kinds[:-6] in ([], [MARKER]), kinds
    return int(answer["eventId"]), int(task), commands


def _ids(events: list[dict]) -> list[int]:
    return [int(e["eventId"]) for e in events]


def _groupings(name: str, since_v38: bool) -> dict[str, str]:
    """The recorded history regrouped: the ``hold``'s answer after the dispatch's task, and the
    dispatch's deadlines applied in that task (``in_its_task``) or in the next one, with the
    answer (``with_the_answer``) — each with the commands a worker of the case's code issues."""
    text = (HISTORIES / f"{name}.json").read_text(encoding="utf-8")
    answer, task, commands = _dispatch_task(text)
    *_, first, second, release, upsert, projection = commands
    # the result in its task: the timers at once; the release once answered (then, since v38,
    # the projection after it; before, the projection at once)
    later = [release, upsert, projection] if since_v38 else [release]
    return {
        "in_its_task": answered_late(text, answer, task, _ids(later)),
        # the result with the answer: ladder and projector woken together, release first
        "with_the_answer": answered_late(
            text, answer, task, _ids([first, second, release, upsert, projection])
        ),
    }


@pytest.mark.parametrize("grouping", ["in_its_task", "with_the_answer"])
async def test_since_v38_the_release_comes_first_however_the_tasks_group(grouping: str) -> None:
    text = _groupings(NAME, since_v38=True)[grouping]
    await replay_checked(WorkflowHistory.from_json(f"{NAME}@{grouping}", text))


async def test_before_v38_the_grouping_decided_the_order() -> None:
    """A v36 case: the result in its task replays (the upsert first), the result with the answer
    does not (the release first, as the worker under load recorded it)."""
    groupings = _groupings(BEFORE, since_v38=False)
    first = groupings["in_its_task"]
    await replay_checked(WorkflowHistory.from_json(f"{BEFORE}@in_its_task", first))
    with pytest.raises(AssertionError) as failed:
        second = groupings["with_the_answer"]
        await replay_checked(WorkflowHistory.from_json(f"{BEFORE}@with_the_answer", second))
    assert "UpsertWorkflowSearchAttributesMachine does not handle" in str(failed.value)
    assert "SignalExternalWorkflowExecutionInitiated" in str(failed.value)


async def test_the_load_failure_is_the_hold_answered_between_the_two_tasks() -> None:
    """The loaded run's history replays as recorded; with the hold's answer come between the
    marker's task and the next one, it fails with the error of the failing runs, to the
    event."""
    text = LOADED.read_text(encoding="utf-8")
    await replay_checked(WorkflowHistory.from_json("loaded", text))
    late = answered_late(text, answer_id=96, completed_id=103, later=[])
    with pytest.raises(AssertionError) as failed:
        await replay_checked(WorkflowHistory.from_json("loaded@answered_late", late))
    assert (
        "UpsertWorkflowSearchAttributesMachine does not handle HistoryEvent(id: 110, "
        "SignalExternalWorkflowExecutionInitiated)"
    ) in str(failed.value)
