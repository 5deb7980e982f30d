"""Child workflows (reassignment, escalation) in the auditor's view: inline in the timeline,
in the bundle, replayed and archived with their case; and every recorded history with child
events decodes them."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import httpx
import pytest
from helpers import HISTORIES, OPERATOR, case, child_of, eventually, handle_of, register
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from jiesu.audit import histories as audit
from jiesu.audit.archive import ArchiveRequest, archive_closed_cases
from jiesu.audit.replay import REPLAYS, make_replayer, replay_case
from jiesu.audit.timeline import child_workflow_ids, decode_history
from jiesu.case.domain import Actor, Role
from workflows import ALL_WORKFLOWS
from workflows.complaint import ComplaintWorkflow

WITH_CHILDREN = [
    p for p in sorted(HISTORIES.glob("*.json"))
    if "startChildWorkflowExecutionInitiatedEventAttributes" in p.read_text(encoding="utf-8")
]
URBAN_ACTOR = Actor(
    role=Role.DEPARTMENT, name="demo-dept-urban-management", department_id="urban-management"
)


@pytest.mark.parametrize("path", WITH_CHILDREN, ids=lambda p: p.stem)
def test_recorded_child_events_are_decoded(path) -> None:
    check_child_events(WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8")))


def check_child_events(history: WorkflowHistory) -> None:
    timeline = decode_history(history)
    children = child_workflow_ids(history)
    assert children and all(c.startswith(f"{_case_of(history)}-") for c in children)
    initiated = [e for e in timeline.entries if e.kind == "child_initiated"]
    assert [e.details["workflow_id"] for e in initiated] == children
    assert all(e.details["workflow_type"] for e in initiated)
    started = {e.details["workflow_id"] for e in timeline.entries if e.kind == "child_started"}
    assert started <= set(children)
    for marker in (e for e in timeline.entries if e.kind == "marker"):
        assert marker.summary.startswith("code version: patch "), marker.summary


def _case_of(history: WorkflowHistory) -> str:
    """The case number, from the start input (recorded files are named by path, not case)."""
    return decode_history(history).entries[0].details["input"][0]["case_id"]


@pytest.fixture(scope="module")
async def reassigned_case(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment
) -> str:
    """A case its department returned (退单), reassigned by a child workflow, then ended."""
    if not hasattr(ComplaintWorkflow, "return_case"):
        pytest.skip("the workflow has no child workflows yet (issue 3)")
    from jiesu.case.domain import ReturnAction

    case_id = (await register(api))["case_id"]
    await eventually(lambda: _status_is(api, case_id, "assigned"))
    handle = handle_of(client, case_id)
    await handle.signal(
        ComplaintWorkflow.return_case,
        ReturnAction(actor=URBAN_ACTOR, reason="Amplified music at night is police work"),
    )
    child = await child_of(client, f"{case_id}-reassign-1")
    await env.fast_forward(child, timedelta(minutes=31))  # nobody chooses: the rules decide
    await child.result()
    await eventually(lambda: _status_is(api, case_id, "assigned"))
    await handle.terminate("audit test finished")
    return case_id


async def _status_is(api: httpx.AsyncClient, case_id: str, status: str) -> bool:
    return (await case(api, case_id, OPERATOR))["status"] == status


async def test_child_timeline_is_inline(
    client: Client, pool: asyncpg.Pool, reassigned_case: str
) -> None:
    child_id = f"{reassigned_case}-reassign-1"
    timeline = await audit.case_timeline(client, pool, reassigned_case)
    kinds = {e.kind: e for e in timeline.entries}
    assert kinds["child_initiated"].details["workflow_id"] == child_id
    assert kinds["child_completed"].details["workflow_id"] == child_id
    started = kinds["child_started"]
    assert started.child is not None and started.child.workflow_id == child_id
    assert started.child.workflow_type == "ReassignmentWorkflow"
    assert started.child.status == "completed" and started.child.entries[0].kind == "started"
    signal = next(e for e in timeline.entries if e.kind == "signal")
    assert signal.details["signal"] == "return" and signal.details["outcome"] == "applied"
    check_child_events(await handle_of(client, reassigned_case).fetch_history())


async def test_bundle_replay_and_archive_include_children(
    client: Client, pool: asyncpg.Pool, reassigned_case: str
) -> None:
    child_id = f"{reassigned_case}-reassign-1"
    bundle = await audit.case_bundle(client, pool, reassigned_case)
    assert set(bundle["histories"]) == {reassigned_case, child_id}

    verdict = await replay_case(client, pool, reassigned_case, make_replayer(ALL_WORKFLOWS))
    assert verdict.verdict == REPLAYS, verdict.message
    assert [h.workflow_id for h in verdict.histories] == [reassigned_case, child_id]

    query = f'WorkflowId="{reassigned_case}"'

    async def listed_closed() -> bool:
        found = await client.count_workflows(
            f'WorkflowType="ComplaintWorkflow" AND ExecutionStatus!="Running" AND {query}'
        )
        return found.count == 1

    await eventually(listed_closed, within=20)
    report = await archive_closed_cases(client, pool, ArchiveRequest(query=query))
    assert (report.archived, report.children) == (1, 1)
    rows = await pool.fetch(
        "SELECT workflow_id, workflow_type FROM history_archive WHERE case_id = $1 "
        "ORDER BY workflow_id", reassigned_case,
    )
    assert [tuple(r) for r in rows] == [
        (reassigned_case, "ComplaintWorkflow"), (child_id, "ReassignmentWorkflow")
    ]
