"""A wedged case (its workflow task failing for ever) is reported, not shown as fine, by the
timeline, the replay check and the consistency check (issue 9: "nothing notices a stuck case").
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from helpers import eventually
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from jiesu.audit import consistency as audit_consistency
from jiesu.audit import histories as audit
from jiesu.audit import replay as audit_replay
from jiesu.config import Settings
from workflows import ALL_WORKFLOWS


@pytest.fixture
async def wedged(client: Client, settings: Settings) -> AsyncIterator[WorkflowHandle]:
    """A case whose input its workflow cannot decode: every workflow task fails."""
    handle = await client.start_workflow(
        "ComplaintWorkflow", {"bogus": 1}, id=f"JS-WEDGED-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
    )

    async def task_failed() -> bool:
        history = await handle.fetch_history()
        return any(
            e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in history.events
        )

    await eventually(task_failed)
    yield handle
    await handle.terminate("test over")


async def test_timeline_says_stuck(wedged: WorkflowHandle, client: Client,
                                   pool: asyncpg.Pool) -> None:
    timeline = await audit.case_timeline(client, pool, wedged.id)
    assert timeline.stuck and "Failed decoding arguments" in timeline.stuck
    assert "workflow_task_failed" in [e.kind for e in timeline.entries]


async def test_replay_says_stuck(wedged: WorkflowHandle, client: Client,
                                 pool: asyncpg.Pool) -> None:
    replayer = audit_replay.make_replayer(ALL_WORKFLOWS)
    verdict = await audit_replay.replay_case(client, pool, wedged.id, replayer)
    assert verdict.verdict == audit_replay.STUCK and not verdict.ok


async def test_consistency_says_stuck(wedged: WorkflowHandle, client: Client,
                                      pool: asyncpg.Pool) -> None:
    result = await audit_consistency.check_case(client, pool, wedged.id)
    assert not result.ok and result.error and result.error.startswith("stuck")
