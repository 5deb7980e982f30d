"""The history archive: a Temporal Schedule copies closed cases into PostgreSQL, idempotently, and
closed children as they close (before their case; retention would take them first);
timeline, export and replay keep working when Temporal has lost the history; a case closed
before its child waits for the child, and a child stuck open is archived all the same."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import (
    AUDITOR,
    OPERATOR,
    SUPERVISOR,
    case,
    child_of,
    eventually,
    handle_of,
    ladder_of,
    register,
    served,
)
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowHistory,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from test_audit import closed_case, run_cli

from api.main import create_app
from jiesu.audit import histories as audit
from jiesu.audit import replay as audit_replay
from jiesu.audit.archive import (
    ARCHIVE_SCHEDULE_ID,
    CLOSED_CASES,
    ArchiveCursor,
    ArchiveReport,
    ArchiveRequest,
    archive_closed_cases,
    ensure_archive_schedule,
)
from jiesu.case.domain import Actor, ReturnAction, Role
from jiesu.config import Settings
from worker import build_worker
from workflows import ALL_WORKFLOWS
from workflows.complaint import ComplaintWorkflow

URBAN_ACTOR = Actor(
    role=Role.DEPARTMENT, name="demo-dept-urban-management", department_id="urban-management"
)


async def visible_as_closed(client: Client, *case_ids: str) -> None:
    """Visibility lags about a second behind: wait until the cases are listed as closed."""
    ids = " OR ".join(f'WorkflowId="{c}"' for c in case_ids)

    async def listed() -> bool:
        return (await client.count_workflows(f"{CLOSED_CASES} AND ({ids})")).count == len(
            case_ids
        )

    await eventually(listed, within=20)


# The dev server deletes a closed execution only once its close tasks are acknowledged, which
# takes up to ~60 s with default settings (instant with the dynamic config value
# history.transferProcessorEnsureCloseBeforeDelete=false on the test server).
DELETE_TIMEOUT = 120.0


async def forget_in_temporal(client: Client, case_id: str) -> None:
    """What retention does: Temporal deletes the closed history."""
    await client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=case_id)
        )
    )

    async def gone() -> bool:
        try:
            await handle_of(client, case_id).describe()
        except RPCError as err:
            return err.status is RPCStatusCode.NOT_FOUND
        return False

    await eventually(gone, within=DELETE_TIMEOUT, interval=0.5)


async def archived_rows(pool: asyncpg.Pool, case_id: str) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT * FROM history_archive WHERE case_id = $1", case_id)
    return [dict(r) for r in rows]


@pytest.fixture(scope="module")
async def archived_case(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool, settings: Settings
) -> str:
    """A closed case archived by the schedule (triggered now rather than in an hour)."""
    case_id = await closed_case(api, client, refused=True)
    await visible_as_closed(client, case_id)
    first = await ensure_archive_schedule(client, settings)
    assert await ensure_archive_schedule(client, settings) == "updated"  # idempotent
    assert first in ("created", "updated")
    schedule = client.get_schedule_handle(ARCHIVE_SCHEDULE_ID)
    try:
        action = (await schedule.describe()).schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "ArchiveWorkflow" and action.task_queue == settings.task_queue
        await schedule.trigger()
        await eventually(lambda: archived_rows(pool, case_id), within=30)
    finally:
        await schedule.delete()
    return case_id


async def test_archive_holds_the_exact_history(
    client: Client, pool: asyncpg.Pool, archived_case: str
) -> None:
    [row] = await archived_rows(pool, archived_case)
    original = await handle_of(client, archived_case).fetch_history()
    assert row["workflow_id"] == archived_case and row["run_id"] == original.run_id
    assert row["workflow_type"] == "ComplaintWorkflow" and row["status"] == "completed"
    assert row["event_count"] == len(original.events) and row["closed_at"] is not None
    text = gzip.decompress(row["history_gz"]).decode()
    assert len(row["history_gz"]) < row["json_bytes"] == len(text.encode())
    stored = WorkflowHistory.from_json(archived_case, text)
    assert stored.to_json_dict() == original.to_json_dict()


async def test_archiving_again_changes_nothing(
    client: Client, pool: asyncpg.Pool, archived_case: str
) -> None:
    before = await archived_rows(pool, archived_case)
    report = await archive_closed_cases(
        client, pool, ArchiveRequest(query=f'WorkflowId="{archived_case}"')
    )
    assert (report.listed, report.archived, report.already_archived) == (1, 0, 1)
    assert await archived_rows(pool, archived_case) == before


async def test_archiving_pages_and_resumes(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    cases = [await closed_case(api, client) for _ in range(3)]
    await visible_as_closed(client, *cases)
    query = " OR ".join(f'WorkflowId="{c}"' for c in cases)
    beats: list[tuple[ArchiveCursor, dict[str, Any]]] = []

    report = await archive_closed_cases(
        client, pool, ArchiveRequest(page_size=2, query=query),
        heartbeat=lambda cursor, progress: beats.append((cursor, progress)),
    )
    assert (report.pages, report.listed, report.archived) == (2, 3, 3)
    # the children's listing first (none of theirs match), then the cases' two pages
    assert [b[0].listing for b in beats] == ["children", "cases", "cases"]
    assert beats[0][0].token is None  # the children's listing done
    assert [b[1]["listed"] for b in beats[1:]] == [2, 3]
    assert beats[1][0].token and beats[2][0].token is None
    for case_id in cases:
        assert len(await archived_rows(pool, case_id)) == 1

    # A retried activity resumes after its last heartbeat: only the last page is listed again.
    resumed = await archive_closed_cases(
        client, pool, ArchiveRequest(page_size=2, query=query), resume=beats[1][0]
    )
    assert (resumed.listed, resumed.archived, resumed.already_archived) == (1, 0, 1)
    assert resumed.children_pages == 0  # the children's listing was done before


async def test_the_archive_workflow_pages_with_heartbeats(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    cases = [await closed_case(api, client) for _ in range(2)]
    await visible_as_closed(client, *cases)
    query = " OR ".join(f'WorkflowId="{c}"' for c in cases)
    report = await client.execute_workflow(
        "ArchiveWorkflow",
        ArchiveRequest(page_size=1, query=query),
        id=f"archive-test-{cases[0]}",
        task_queue=settings.task_queue,
        result_type=ArchiveReport,
    )
    assert report.pages >= 2 and (report.listed, report.archived) == (2, 2)
    for case_id in cases:
        assert len(await archived_rows(pool, case_id)) == 1


async def test_a_case_temporal_has_lost_is_still_shown_and_replayed(
    api: httpx.AsyncClient,
    client: Client,
    env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    settings: Settings,
    archived_case: str,
) -> None:
    live_timeline = await audit.case_timeline(client, pool, archived_case)
    live_raw = await audit.raw_history(client, pool, archived_case)
    started = live_timeline.entries[0].at

    await forget_in_temporal(client, archived_case)

    history = await audit.load_history(client, pool, archived_case)
    assert history.source == "archive" and history.to_json_dict() == live_raw

    response = await api.get(f"/api/v1/complaints/{archived_case}/history", headers=AUDITOR)
    assert response.status_code == 200
    shown = response.json()
    assert shown["source"] == "archive"
    assert shown["entries"] == live_timeline.model_dump(mode="json")["entries"]
    raw = await api.get(f"/api/v1/complaints/{archived_case}/history/raw", headers=AUDITOR)
    assert raw.json() == live_raw

    replayed = await api.post(f"/api/v1/complaints/{archived_case}/replay", headers=AUDITOR)
    assert replayed.json()["ok"] is True
    assert replayed.json()["histories"][0]["source"] == "archive"

    # Time-range selection finds it in the archive although visibility no longer lists it.
    selected = await audit_replay.select_cases(
        client, pool, since=started - timedelta(minutes=1), until=started + timedelta(minutes=1)
    )
    assert archived_case in selected

    code, out, err = await run_cli(env, settings, "replay", archived_case)
    assert code == 0, out + err
    assert f"{archived_case}: replays [history from archive]" in out
    code, out, _ = await run_cli(env, settings, "timeline", archived_case)
    assert code == 0 and "history events from archive" in out
    assert "accept — rejected (not_assigned)" in out


# --- a child still open when its case closed -------------------------------------------------


@asynccontextmanager
async def case_with_open_child(
    client: Client, pool: asyncpg.Pool, settings: Settings, name: str
) -> AsyncIterator[tuple[str, WorkflowHandle[Any, Any]]]:
    """A case closed while its ladder (督办, an escalation child) is climbing, and the child
    still open after it: yields (case id, the child's handle); on leaving, a worker is back
    and the child has closed.

    The ladder's parent close policy is REQUEST_CANCEL: when the case closes, the server asks
    the child to cancel, and the child closes only once a worker runs its next task. Here no
    worker polls the case's queue at that moment (a deploy, a crashed worker: the case has a
    queue of its own, so that the session's worker cannot take it), and an operator ends the
    case (Temporal's terminate). The same window, seconds long, follows every case ended
    while a child runs; a child whose task keeps failing keeps it open for as long."""
    own = settings.model_copy(update={"task_queue": f"{settings.task_queue}-{name}"})
    async with served(create_app(own, client=client, pool=pool)) as api:
        async with build_worker(client, pool, own):
            case_id = (await register(api))["case_id"]
            await eventually(
                lambda: _case_is(api, case_id, lambda s: s["status"] == "assigned"), within=30
            )
            due = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
            ordered = await api.post(
                f"/api/v1/complaints/{case_id}/supervision",
                json={"form": "urge", "due": due}, headers=SUPERVISOR,
            )  # 202 on a loaded machine: applied, just not within the API's wait
            assert ordered.status_code in (200, 202), ordered.text
            child = await ladder_of(client, case_id)
            await eventually(
                lambda: _case_is(api, case_id, lambda s: s["escalation_level"] == 2), within=30
            )
        # the worker is gone; the case is ended
        await handle_of(client, case_id).terminate("ended by an operator")
        # the server has asked the child to cancel (the parent close policy), and it is open
        asked = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
        await eventually(lambda: _has_event(child, asked), within=30)
        assert (await child.describe()).status == WorkflowExecutionStatus.RUNNING
        await visible_as_closed(client, case_id)
        try:
            yield case_id, child
        finally:
            async with build_worker(client, pool, own):  # the worker is back: the child cancels
                await eventually(lambda: _closed(child), within=60)


async def _case_is(api: httpx.AsyncClient, case_id: str, test: Any) -> bool:
    return bool(test(await case(api, case_id, OPERATOR)))


async def _has_event(handle: WorkflowHandle[Any, Any], kind: EventType.ValueType) -> bool:
    return any(e.event_type == kind for e in (await handle.fetch_history()).events)


async def _closed(handle: WorkflowHandle[Any, Any]) -> bool:
    return (await handle.describe()).status != WorkflowExecutionStatus.RUNNING


async def test_a_child_still_open_when_its_case_closed_is_archived_too(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    """The case is listed as closed while its ladder has not closed yet: archiving then must
    not store the case without the ladder — a later run skips an archived case, and the
    ladder's history would be gone with Temporal's retention."""
    async with case_with_open_child(client, pool, settings, "open-child") as (case_id, child):
        only = ArchiveRequest(query=f'WorkflowId="{case_id}"')
        while_open = await archive_closed_cases(client, pool, only)
    after = await archive_closed_cases(client, pool, only)  # the next hourly run

    rows = {r["workflow_id"]: r for r in await archived_rows(pool, case_id)}
    assert set(rows) == {case_id, child.id}, "the ladder's history was never archived"
    final = await child.fetch_history()
    assert rows[child.id]["status"] == "canceled" and rows[child.id]["run_id"] == final.run_id
    text = gzip.decompress(rows[child.id]["history_gz"]).decode()
    stored = WorkflowHistory.from_json(child.id, text)
    assert stored.to_json_dict() == final.to_json_dict()
    assert rows[case_id]["status"] == "terminated"
    # the first run waited for the child: nothing of the case stored, the case deferred
    assert (while_open.listed, while_open.archived, while_open.children) == (1, 0, 0)
    assert while_open.deferred == [case_id]
    assert (after.archived, after.children, after.deferred) == (1, 1, [])

    # years later, with Temporal's copies gone, the auditor still has both
    await forget_in_temporal(client, child.id)
    await forget_in_temporal(client, case_id)
    loaded = await audit.load_case_histories(client, pool, case_id)
    assert [(h.workflow_id, h.source) for h in loaded] == [
        (case_id, "archive"), (child.id, "archive")
    ]


async def test_a_child_open_past_the_patience_is_stored_as_it_stands_and_completed(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    """A child that stays open (a worker down for hours, a task that keeps failing) must not
    keep its case out of the archive until Temporal's retention takes the case too: past the
    patience the case is stored with the child as it stands; the child is reported on every
    run while it stays open, and its row completed once it closed — no other row changes."""
    async with case_with_open_child(client, pool, settings, "stuck-child") as (case_id, child):
        only = ArchiveRequest(query=f'WorkflowId="{case_id}"')
        impatient = only.model_copy(update={"open_child_patience_hours": 0})
        stored = await archive_closed_cases(client, pool, impatient)
        assert (stored.archived, stored.children, stored.deferred) == (1, 1, [])
        assert child.id in stored.open_children
        rows = {r["workflow_id"]: r for r in await archived_rows(pool, case_id)}
        assert rows[child.id]["status"] == "running" and rows[child.id]["closed_at"] is None
        snapshot = rows[child.id]["event_count"]

        again = await archive_closed_cases(client, pool, only)  # the next hourly run
        assert (again.archived, again.already_archived, again.completed) == (0, 1, 0)
        assert child.id in again.open_children  # reported until it closes

    completing = await archive_closed_cases(client, pool, only)
    assert completing.completed >= 1 and child.id not in completing.open_children
    after = {r["workflow_id"]: r for r in await archived_rows(pool, case_id)}
    final = await child.fetch_history()
    assert after[child.id]["status"] == "canceled" and after[child.id]["closed_at"] is not None
    assert after[child.id]["event_count"] == len(final.events) > snapshot
    text = gzip.decompress(after[child.id]["history_gz"]).decode()
    assert WorkflowHistory.from_json(child.id, text).to_json_dict() == final.to_json_dict()
    assert after[case_id] == rows[case_id]  # the case's row never changes

    settled = await archive_closed_cases(client, pool, only)  # a closed row is final
    assert (settled.completed, settled.already_archived) == (0, 1)
    assert {r["workflow_id"]: r for r in await archived_rows(pool, case_id)} == after


# --- a child closed long before its case -------------------------------------------------------


async def reassigned_while_open(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment
) -> tuple[str, WorkflowHandle[Any, Any]]:
    """A case its department returned (退单): the reassignment child has chosen another
    department and closed, and the case goes on (assigned). Yields (case id, child handle)."""
    case_id = (await register(api))["case_id"]
    await eventually(
        lambda: _case_is(api, case_id, lambda s: s["status"] == "assigned"), within=30
    )
    await handle_of(client, case_id).signal(
        ComplaintWorkflow.return_case,
        ReturnAction(actor=URBAN_ACTOR, reason="Amplified music at night is police work"),
    )
    child = await child_of(client, f"{case_id}-reassign-1")
    await env.fast_forward(child, timedelta(minutes=31))  # nobody chooses: the rules decide
    await child.result()
    await eventually(
        lambda: _case_is(api, case_id, lambda s: s["status"] == "assigned"), within=30
    )
    return case_id, child


async def test_a_child_closed_long_before_its_case_is_archived_before_retention_takes_it(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    """Retention counts from each workflow's own close: a reassignment child closes minutes
    after it started, while its case may stay open for months (extensions, rehandling). The
    hourly run must archive the child while Temporal still has it — waiting for the case to
    close lost it for good, and the case's history in the archive was incomplete."""
    case_id, child = await reassigned_while_open(api, client, env)
    only = ArchiveRequest(query=f'WorkflowId="{case_id}" OR ParentWorkflowId="{case_id}"')
    closed_child = f'ParentWorkflowId="{case_id}" AND ExecutionStatus!="Running"'

    async def child_listed() -> bool:
        return (await client.count_workflows(closed_child)).count == 1

    await eventually(child_listed, within=20)
    original = await child.fetch_history()

    while_open = await archive_closed_cases(client, pool, only)  # hourly, the case still open
    again = await archive_closed_cases(client, pool, only)  # the next hour: nothing twice
    assert (while_open.listed, while_open.archived) == (0, 0)
    assert (while_open.children, again.children) == (1, 0)

    await forget_in_temporal(client, child.id)  # the child's retention ends; the case goes on
    await handle_of(client, case_id).terminate("ended by an operator, months later")
    await visible_as_closed(client, case_id)
    closing = await archive_closed_cases(client, pool, only)
    assert (closing.archived, closing.children, closing.missing) == (1, 0, [])

    rows = {r["workflow_id"]: r for r in await archived_rows(pool, case_id)}
    assert set(rows) == {case_id, child.id}, "the child's history was lost with retention"
    assert rows[child.id]["run_id"] == original.run_id
    assert rows[child.id]["status"] == "completed"
    assert rows[case_id]["status"] == "terminated"
    text = gzip.decompress(rows[child.id]["history_gz"]).decode()
    assert WorkflowHistory.from_json(child.id, text).to_json_dict() == original.to_json_dict()

    # years later: the auditor replays the whole case from the archive
    await forget_in_temporal(client, case_id)
    loaded = await audit.load_case_histories(client, pool, case_id)
    assert [(h.workflow_id, h.source) for h in loaded] == [
        (case_id, "archive"), (child.id, "archive")
    ]
    assert loaded[1].to_json_dict() == original.to_json_dict()


async def test_a_child_temporal_deleted_before_any_run_is_reported_lost(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    """Had no run archived the child within its retention (the archive stopped that long),
    its history is gone: the case is archived all the same, and the loss is said aloud."""
    case_id, child = await reassigned_while_open(api, client, env)
    await forget_in_temporal(client, child.id)
    await handle_of(client, case_id).terminate("ended by an operator")
    await visible_as_closed(client, case_id)
    report = await archive_closed_cases(
        client, pool, ArchiveRequest(query=f'WorkflowId="{case_id}"')
    )
    assert (report.archived, report.children, report.lost_children) == (1, 0, [child.id])
    assert [r["workflow_id"] for r in await archived_rows(pool, case_id)] == [case_id]
    # and an auditor is told: the case does not replay whole, its export names the loss
    replayer = audit_replay.make_replayer(ALL_WORKFLOWS)
    verdict = await audit_replay.replay_case(client, pool, case_id, replayer)
    assert verdict.verdict == audit_replay.MISSING, verdict
    assert child.id in (verdict.message or ""), verdict
    bundle = await audit.case_bundle(client, pool, case_id)
    assert [c["workflow_id"] for c in bundle["lost_children"]] == [child.id]
