"""The history archive: a Temporal Schedule copies closed cases into PostgreSQL, idempotently;
timeline, export and replay keep working when Temporal has lost the history."""

from __future__ import annotations

import gzip
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import AUDITOR, eventually, handle_of
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, ScheduleActionStartWorkflow, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from test_audit import closed_case, run_cli

from jiesu.audit import histories as audit
from jiesu.audit import replay as audit_replay
from jiesu.audit.archive import (
    ARCHIVE_SCHEDULE_ID,
    CLOSED_CASES,
    ArchiveReport,
    ArchiveRequest,
    archive_closed_cases,
    ensure_archive_schedule,
)
from jiesu.config import Settings


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
    beats: list[tuple[bytes | None, dict[str, Any]]] = []

    report = await archive_closed_cases(
        client, pool, ArchiveRequest(page_size=2, query=query),
        heartbeat=lambda token, progress: beats.append((token, progress)),
    )
    assert (report.pages, report.listed, report.archived) == (2, 3, 3)
    assert [b[1]["listed"] for b in beats] == [2, 3] and beats[0][0] and beats[1][0] is None
    for case_id in cases:
        assert len(await archived_rows(pool, case_id)) == 1

    # A retried activity resumes after its last heartbeat: only the last page is listed again.
    resumed = await archive_closed_cases(
        client, pool, ArchiveRequest(page_size=2, query=query), resume_token=beats[0][0]
    )
    assert (resumed.listed, resumed.archived, resumed.already_archived) == (1, 0, 1)


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
