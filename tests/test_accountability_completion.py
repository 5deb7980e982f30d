"""问责 completed by the centre (issue 14 part 2): the supervision ladder's last step creates an
accountability record without persons; a supervisor completes it (persons, decision) through
the API or the console, each change in the change log, and the record is listed in the unit's
evaluation."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
from helpers import (
    OPERATOR,
    SUPERVISOR,
    act,
    auth,
    case,
    department,
    eventually,
    fast_forward_past,
    handle_of,
    ladder_of,
    register,
)
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from jiesu.config import Settings
from jiesu.ops.demo_data import demo_key
from jiesu.stats import rollup

ADMIN = auth(demo_key("demo-admin"))
URBAN = department("urban-management")


async def _ladder_record(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment
) -> dict[str, Any]:
    """A case whose ladder climbs to accountability by itself: its record, as listed."""
    case_id = (await register(api))["case_id"]

    async def assigned() -> bool:
        return (await case(api, case_id, OPERATOR))["status"] == "assigned"

    await eventually(assigned)
    await act(api, case_id, "supervision", SUPERVISOR, note="Nobody answers the citizen")

    async def laddered() -> bool:
        return (await case(api, case_id, OPERATOR))["escalation_level"] >= 1

    await eventually(laddered)
    ladder = await ladder_of(client, case_id)
    await env.fast_forward(ladder, timedelta(hours=9))  # 4 steps of 2 h: to accountability

    async def listed() -> list[dict[str, Any]]:
        response = await api.get("/api/v1/accountability",
                                 params={"department_id": "urban-management"},
                                 headers=SUPERVISOR)  # fmt: skip
        return [r for r in response.json() if r["case_id"] == case_id]

    [record] = await eventually(listed, within=30)
    assert record["persons"] == [] and not record["ordered"]  # the ladder's own: to complete
    return record


async def _changes(api: httpx.AsyncClient, entity_id: str) -> list[dict[str, Any]]:
    response = await api.get(
        "/api/v1/admin/changes",
        headers=ADMIN,
        params={"entity": "accountability_record", "entity_id": entity_id},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_centre_completes_a_ladder_record_listed_in_the_units_evaluation(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment, pool: asyncpg.Pool,
    settings: Settings,
) -> None:  # fmt: skip
    record = await _ladder_record(api, client, env)
    path = f"/api/v1/accountability/{record['case_id']}/{record['seq']}"
    body = {"persons": ["王某（执法中队长）"], "decision": "通报批评，扣减年度考评分"}
    assert (await api.put(path, json=body, headers=URBAN)).status_code == 403
    assert (await api.put(path + "0", json=body, headers=SUPERVISOR)).status_code == 404
    empty = await api.put(path, json={**body, "persons": []}, headers=SUPERVISOR)
    assert empty.status_code == 422

    done = await api.put(path, json=body, headers=SUPERVISOR)
    assert done.status_code == 200, done.text
    assert done.json()["persons"] == body["persons"] and done.json()["decision"] == body["decision"]
    again = await api.put(path, json=body, headers=SUPERVISOR)  # a retry: nothing new
    assert again.status_code == 200
    entity_id = f"{record['case_id']}/{record['seq']}"
    [change] = await _changes(api, entity_id)
    assert change["before"] == {"persons": [], "decision": record["decision"]}
    assert change["after"] == body and change["actor"]["name"] == "demo-supervisor"

    await rollup.ensure_fresh(pool, settings.timezone)  # what the worker's refresher does
    ranking = await api.get("/api/v1/stats/ranking", headers=SUPERVISOR)
    assert ranking.status_code == 200, ranking.text
    entry = next(e for e in ranking.json()["entries"] if e["department_id"] == "urban-management")
    listed = [a for a in entry["accountability"] if a["case_id"] == record["case_id"]]
    assert [(a["persons"], a["decision"]) for a in listed] == [(body["persons"], body["decision"])]
    assert entry["accountability_records"] == len(entry["accountability"])


async def test_the_supervision_screen_lists_records_to_complete_and_saves_the_form(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment
) -> None:
    record = await _ladder_record(api, client, env)
    action = f"/console/accountability/{record['case_id']}/{record['seq']}"
    browser = httpx.AsyncClient(transport=api._transport, base_url=api.base_url)
    try:
        signed = await browser.post(
            "/console/login", data={"login": "supervisor", "password": "supervisor-demo-pass"}
        )
        browser.cookies.set("jiesu_session", signed.cookies["jiesu_session"])
        screen = await browser.get("/console/supervision")
        assert screen.status_code == 200 and action in screen.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', screen.text)
        assert token is not None
        saved = await browser.post(
            action, data={"csrf_token": token[1], "persons": "李某\n赵某\n", "decision": "诫勉谈话"}
        )
        assert saved.status_code == 303, saved.text
        assert action not in (await browser.get("/console/supervision")).text  # complete now
    finally:
        await browser.aclose()
    [change] = await _changes(api, f"{record['case_id']}/{record['seq']}")
    assert change["after"] == {"persons": ["李某", "赵某"], "decision": "诫勉谈话"}
    assert change["actor"]["person"] == "supervisor"


async def test_a_ladder_started_by_a_breach_reads_its_reason_in_chinese(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment
) -> None:
    """A case nobody accepted: the breach starts the ladder, which climbs to 问责 by itself.
    Its record's reason is the workflow's English ("the supervision ladder reached
    accountability (accept_breached)"), which 问责待完善 showed as it was; it reads in Chinese."""
    case_id = (await register(api))["case_id"]

    async def accept_deadline() -> str | None:
        state = await case(api, case_id, OPERATOR)
        return state["status"] == "assigned" and (state.get("deadlines") or {}).get("accept")

    due = datetime.fromisoformat(await eventually(accept_deadline))
    await fast_forward_past(env, handle_of(client, case_id), due)
    ladder = await ladder_of(client, case_id)
    await env.fast_forward(ladder, timedelta(hours=9))  # 4 steps of 2 h: to accountability

    async def listed() -> list[dict[str, Any]]:
        response = await api.get("/api/v1/accountability", headers=SUPERVISOR,
                                 params={"department_id": "urban-management"})  # fmt: skip
        return [r for r in response.json() if r["case_id"] == case_id]

    [record] = await eventually(listed, within=30)
    assert "reached accountability (accept_breached)" in record["reason"]  # recorded as it was
    browser = httpx.AsyncClient(transport=api._transport, base_url=api.base_url)
    try:
        signed = await browser.post(
            "/console/login", data={"login": "supervisor", "password": "supervisor-demo-pass"}
        )
        browser.cookies.set("jiesu_session", signed.cookies["jiesu_session"])
        screen = (await browser.get("/console/supervision")).text
    finally:
        await browser.aclose()
    row = screen[screen.index(f"/console/accountability/{case_id}/") - 400 :]
    assert "督办阶梯升至问责（超时未签收）" in row[:1200], row[:1200]
    assert "reached accountability" not in screen
