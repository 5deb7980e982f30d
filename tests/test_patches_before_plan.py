"""A case linked to earlier replied cases (不作为信号) decides its patches before its planning
local activity, so that its history replays however the worker split the workflow tasks around
that activity's result.

Fault run 14 (docs/operations.md): a loaded worker completed JS20261123-000195's first task
with the ``plan_case`` marker and went on from its result in a new task, recording
``inaction-signal-v1`` there. A replay goes on from a local activity's result in the task of its
marker, where ``workflow.patched`` looks for the patch (Temporal looks ahead one task) and does
not find it: TMPRL1100 "patch marker encountered … but there is no corresponding change
command". The case's worker could no longer run it (JS20261123-000221 stuck before ``accept``)
and its history did not replay."""

from __future__ import annotations

import json
import uuid

import pytest
from helpers import keep_history, replay_checked
from history_surgery import after_local_activity
from temporalio.client import WorkflowHistory
from test_hostile_messages import CITIZEN, rid, start_of, until

from jiesu.case.domain import EventKind, RepeatHistory, Status
from workflows import ComplaintWorkflow


def _plan_marker(history: str) -> int:
    for e in json.loads(history)["events"]:
        attrs = e.get("markerRecordedEventAttributes")
        if attrs and attrs.get("markerName") == "core_local_activity":
            return int(e["eventId"])  # the first local activity: plan_case
    raise AssertionError("no local activity marker")


@pytest.mark.parametrize("earlier", [1, 2], ids=["linked", "supervised"])
async def test_a_linked_case_replays_with_its_plan_result_in_a_task_of_its_own(
    client, settings, earlier: int
) -> None:
    case_id = f"JS-PLANSPLIT-{uuid.uuid4().hex[:8]}"
    start = start_of(case_id).model_copy(update={"history": RepeatHistory(
        case_ids=[f"JS-EARLIER-{i}" for i in range(earlier)], window_days=90,
        reports_before_supervision=3)})  # fmt: skip
    h = await client.start_workflow(ComplaintWorkflow.run, start, id=case_id,
                                    task_queue=settings.task_queue)  # fmt: skip
    try:
        s = await until(client, case_id, lambda s: s.status is Status.ASSIGNED and any(
            e.kind is EventKind.LINKED_TO_HISTORY for e in s.events))  # fmt: skip
        assert (s.escalation is not None) == (earlier == 2)
        recorded = (await h.fetch_history()).to_json()
    finally:
        await h.terminate("test over")
    await keep_history(h, f"linked_patches_before_plan_{earlier}_earlier")
    await replay_checked(WorkflowHistory.from_json(case_id, recorded))
    split = after_local_activity(recorded, _plan_marker(recorded))
    await replay_checked(WorkflowHistory.from_json(case_id, split))


async def test_a_case_withdrawn_in_its_first_task_replays_with_its_plan_result_in_a_task_of_its_own(
    client, settings
) -> None:
    """撤诉 with the start: the case asked ``closed-while-planning-v1`` after its plan, and a
    fresh-clone CI run (loaded 2-core machine) recorded it in a task of its own; the next query
    replayed the case and failed with TMPRL1100 (test_hostile_messages). Since
    ``closed-before-plan-v1`` the patch is asked before the plan."""
    case_id = f"JS-PLANSPLIT-{uuid.uuid4().hex[:8]}"
    h = await client.start_workflow(
        ComplaintWorkflow.run, start_of(case_id), id=case_id, task_queue=settings.task_queue,
        start_signal="withdraw", start_signal_args=[{"actor": rid(CITIZEN)}],
    )  # fmt: skip
    try:
        await until(client, case_id, lambda s: s.deadlines is not None)
        assert (await h.result()).status is Status.CLOSED
        recorded = (await h.fetch_history()).to_json()
    finally:
        if (await h.describe()).status.name == "RUNNING":
            await h.terminate("test over")
    await keep_history(h, "closed_before_plan")
    split = after_local_activity(recorded, _plan_marker(recorded))
    await replay_checked(WorkflowHistory.from_json(case_id, split))
