"""Consistency check: the read model's event list of a case against its Temporal history."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import handle_of, settled_consistency
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor
from test_audit import closed_case, run_cli
from test_hostile_messages import URBAN, rid, start_of, until

from jiesu.audit.consistency import check_case, compare, select_cases
from jiesu.case.domain import Status
from jiesu.config import Settings
from worker import build_worker
from workflows import ComplaintWorkflow


@pytest.fixture(scope="module")
async def tampered_case(api: httpx.AsyncClient, client: Client) -> str:
    return await closed_case(api, client)


async def test_a_projected_case_is_consistent(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    case_id = await closed_case(api, client, refused=True)
    result = await check_case(client, pool, case_id)
    assert result.ok, result.divergences
    assert result.history_events == result.read_model_events > 5
    assert result.pending == 0 and result.source == "temporal"


async def test_divergences_are_reported(
    client: Client,
    env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    settings: Settings,
    tampered_case: str,
) -> None:
    assert (await check_case(client, pool, tampered_case)).ok
    await pool.execute(
        "UPDATE case_events SET data = $2 WHERE case_id = $1 AND seq = 2",
        tampered_case, {"tampered": True},
    )
    await pool.execute("DELETE FROM case_events WHERE case_id = $1 AND seq = 3", tampered_case)
    await pool.execute(
        "INSERT INTO case_events (case_id, seq, kind, at, actor, data) "
        "SELECT case_id, 99, 'accepted', at, actor, data FROM case_events "
        "WHERE case_id = $1 AND seq = 1",
        tampered_case,
    )

    result = await check_case(client, pool, tampered_case)
    assert not result.ok
    found = [(d.seq, d.problem, d.fields) for d in result.divergences]
    assert found == [(2, "different", ["data"]), (3, "missing", []), (99, "extra", [])]
    different = result.divergences[0]
    assert different.read_model is not None and different.read_model["data"] == {"tampered": True}
    assert different.history is not None and different.history["kind"] == "deadlines_set"

    code, out, _ = await run_cli(env, settings, "consistency", tampered_case)
    assert code == 1
    assert f"{tampered_case}: DIVERGES" in out
    assert "seq 2: different (data)" in out and "seq 3: missing" in out
    assert "seq 99: extra" in out and "summary: 1 cases checked, 1 diverging" in out


async def test_cli_consistency_passes_for_consistent_cases(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment, settings: Settings
) -> None:
    case_id = await closed_case(api, client)
    code, out, _ = await run_cli(env, settings, "consistency", "-v", case_id)
    assert code == 0, out
    assert f"{case_id}: consistent" in out and "summary: 1 cases checked, 0 diverging" in out


async def test_cases_are_selected_by_time(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    case_id = await closed_case(api, client)
    received = await pool.fetchval("SELECT received_at FROM cases WHERE case_id = $1", case_id)
    selected = await select_cases(client, pool, since=received)
    assert case_id in selected
    assert case_id not in await select_cases(client, pool, until=received)


def test_compare_normalises_both_sides() -> None:
    history = {1: {"kind": "received", "at": "2026-11-21T10:00:00+00:00",
                   "actor": {"role": "system", "name": "jiesu", "department_id": None},
                   "data": {"a": [1, 2]}}}
    read_model = {1: {"kind": "received", "at": datetime(2026, 11, 21, 10, tzinfo=UTC),
                      "actor": json.loads(json.dumps(history[1]["actor"])),
                      "data": {"a": [1, 2]}}}
    assert compare(history, read_model) == []
    read_model[1]["at"] = datetime(2026, 11, 21, 10, 0, 1, tzinfo=UTC)
    assert [d.fields for d in compare(history, read_model)] == [["at"]]


class _HeldProjection(Interceptor):
    """Holds each local ``project_events`` after it wrote its rows, before it returns: the
    moment when a lean case's read model is ahead of every history one can read (the
    activity's result is recorded only when the workflow task that ran it completes)."""

    def __init__(self) -> None:
        self.written = asyncio.Event()
        self.release = asyncio.Event()

    def intercept_activity(
        self, next: ActivityInboundInterceptor
    ) -> ActivityInboundInterceptor:
        gate = self

        class Held(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                result = await super().execute_activity(input)
                if activity.info().activity_type == "project_events":
                    gate.written.set()
                    await asyncio.wait_for(gate.release.wait(), timeout=20)
                return result

        return Held(next)


async def test_a_running_case_projected_ahead_of_its_history_is_not_divergent(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    """The CI failure of 3eb7141: a live case's rows written by its local projection, the
    workflow task recording it not yet completed. They are ``ahead``, not ``extra``; once the
    task completes they are compared. A row past them with a gap stays ``extra``, and on a
    closed case every row past the history does."""
    case_id = f"JS-AHEAD-{uuid.uuid4().hex[:8]}"
    held = _HeldProjection()
    held.release.set()  # let the intake's projections through
    own = settings.model_copy(update={"task_queue": f"ahead-{uuid.uuid4().hex[:8]}"})
    async with build_worker(client, pool, own, interceptors=[held]):
        await client.start_workflow(
            ComplaintWorkflow.run, start_of(case_id), id=case_id, task_queue=own.task_queue
        )
        await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
        assert (await settled_consistency(client, pool, case_id)).ok
        held.written.clear()
        held.release.clear()
        await handle_of(client, case_id).signal("accept", {"actor": rid(URBAN)})
        await asyncio.wait_for(held.written.wait(), timeout=30)
        try:
            result = await check_case(client, pool, case_id)
            rows = await pool.fetchval(
                "SELECT count(*) FROM case_events WHERE case_id = $1", case_id
            )
        finally:
            held.release.set()
        assert result.ok, result.divergences
        assert result.ahead >= 1 and result.read_model_events == rows
        settled = await settled_consistency(client, pool, case_id)
        assert settled.ok and settled.history_events == settled.read_model_events == rows
        await _forge_row(pool, case_id, settled.read_model_events + 2)  # a gap before it
        forged = await check_case(client, pool, case_id)
        assert [(d.seq, d.problem) for d in forged.divergences] == [(rows + 2, "extra")]
        await _forge_row(pool, case_id, settled.read_model_events + 1)  # no gap: ahead
        assert (await check_case(client, pool, case_id)).ahead == 2
        await handle_of(client, case_id).terminate("test finished")
    closed = await check_case(client, pool, case_id)
    assert closed.ahead == 0
    assert [(d.seq, d.problem) for d in closed.divergences] == [
        (rows + 1, "extra"), (rows + 2, "extra")
    ]


async def _forge_row(pool: asyncpg.Pool, case_id: str, seq: int) -> None:
    await pool.execute(
        "INSERT INTO case_events (case_id, seq, kind, at, actor, data) "
        "SELECT case_id, $2, kind, at, actor, data FROM case_events "
        "WHERE case_id = $1 AND seq = 1",
        case_id, seq,
    )
