"""Consistency check: the read model's event list of a case against its Temporal history."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from test_audit import closed_case, run_cli

from jiesu.audit.consistency import check_case, compare, select_cases
from jiesu.config import Settings


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
