"""Grid work (网格): a grid worker's patrol reports (主动发现) and problems solved on the spot
(就地解决), api/routers/grid.py."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
from helpers import (
    OPERATOR,
    SUPERVISOR,
    act,
    auth,
    complaint,
    department,
    eventually,
    handle_of,
    keep_history,
    local_day,
)
from temporalio.client import Client

from jiesu.config import Settings
from jiesu.ops.demo_data import demo_key
from jiesu.stats import rollup

GRID_WORKER = auth(demo_key("demo-grid-worker"))
REPORTS = "/api/v1/grid/reports"


def _patrol(**overrides: Any) -> dict[str, Any]:
    body = {
        "title": "楼道堆放杂物",
        "description": "幸福社区3栋楼道堆放纸箱，堵塞通道",
        "category_id": "property_management",
        "grid_id": "G-QH-01-01-1",
        "address": "幸福社区3栋",
        "reporter": {"name": "网格员 张敏", "phone": "13700000001"},
    }
    return body | overrides


async def _state(api: httpx.AsyncClient, case_id: str) -> dict[str, Any] | None:
    """The case, or None while it is "not ready" (503: its workflow's first moments, under
    load, and no read-model row yet)."""
    response = await api.get(f"/api/v1/complaints/{case_id}", headers=OPERATOR)
    return response.json() if response.status_code == 200 else None


SPOT = {"text": "与住户沟通后当场清走纸箱，通道已畅通",
        "evidence": ["https://evidence.test/before.jpg", "https://evidence.test/after.jpg"]}


async def test_a_problem_solved_on_the_spot_is_closed_at_once_and_counted(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    response = await api.post(REPORTS, json=_patrol(solved_on_the_spot=SPOT), headers=GRID_WORKER)
    assert response.status_code == 201, response.text
    case_id = response.json()["case_id"]

    async def closed() -> dict[str, Any] | None:
        state = await _state(api, case_id)
        return state if state and state["status"] == "closed" else None

    state = await eventually(closed)
    assert state["channel"] == "grid" and state["resolution"] == "solved_in_grid"
    assert state["assignment"]["department_id"] == "G-QH-01-01-1"  # the grid held it
    assert state["reply"]["evidence"] == SPOT["evidence"]
    assert [e["kind"] for e in state["events"]][-2:] == ["solved_on_the_spot", "closed"]
    assert state["events"][-2]["actor"]["role"] == "grid_worker"

    async def projected() -> asyncpg.Record | None:
        return await pool.fetchrow(
            "SELECT solved_in_grid, resolved FROM cases WHERE case_id = $1 AND status = 'closed'",
            case_id,
        )

    assert tuple(await eventually(projected)) == (True, True)
    day = local_day(state["received_at"], settings.timezone)
    await rollup.ensure_fresh(pool, settings.timezone)  # what the worker's refresher does
    figures = await api.get(
        "/api/v1/stats/indicators", params={"from": day, "to": day, "channel": "grid"},
        headers=SUPERVISOR,
    )  # fmt: skip
    rate = figures.json()["totals"]["grid_solution_rate"]
    assert rate["numerator"] >= 1 and rate["denominator"] >= rate["numerator"]
    await keep_history(handle_of(client, case_id), "grid_solved_on_the_spot")


async def test_a_patrol_report_not_solved_is_routed(api: httpx.AsyncClient) -> None:
    response = await api.post(REPORTS, json=_patrol(grid_id="G-QH-01-02-1",
                                                    address=f"滨河社区{id(api)}号"),
                              headers=GRID_WORKER)  # fmt: skip
    assert response.status_code == 403  # 滨河社区 is not the demo worker's grid
    response = await api.post(REPORTS, json=_patrol(address="幸福社区5栋 " + str(id(api))),
                              headers=GRID_WORKER)  # fmt: skip
    assert response.status_code == 201, response.text
    case_id = response.json()["case_id"]

    async def assigned() -> dict[str, Any] | None:
        state = await _state(api, case_id)
        return state if state and state["status"] == "assigned" else None

    state = await eventually(assigned)
    assert state["channel"] == "grid"
    assert state["assignment"]["department_id"] == "housing"  # the county-wide rule


async def test_only_grid_workers_solve_on_the_spot(api: httpx.AsyncClient) -> None:
    as_operator = await api.post(REPORTS, json=_patrol(solved_on_the_spot=SPOT), headers=OPERATOR)
    assert as_operator.status_code == 403
    sneaked = await api.post(
        "/api/v1/complaints", json=complaint(channel="grid", solved_on_the_spot=SPOT),
        headers=OPERATOR,
    )  # fmt: skip
    assert sneaked.status_code == 422
    assert sneaked.json()["error"]["code"] == "grid_workers_only"
    no_evidence = _patrol(solved_on_the_spot={"text": "清走了", "evidence": []})
    assert (await api.post(REPORTS, json=no_evidence, headers=GRID_WORKER)).status_code == 422


async def test_raising_a_level_climbs_village_township_county_city(
    api: httpx.AsyncClient, client: Client
) -> None:
    """提级办: each raise goes to the department above (jiesu/ops/demo_data.py parents), up
    to the city above the county, instead of the centre's queue."""
    response = await api.post(
        "/api/v1/complaints", json=complaint(category_id="street_vendor"), headers=OPERATOR
    )  # 幸福社区 → its committee
    case_id = response.json()["case_id"]
    climbed = []
    for holder in ("vil-xingfu", "twp-chengguan", "county-gov", "city-gov"):
        async def held(dept: str = holder) -> dict[str, Any] | None:
            state = await _state(api, case_id)
            return state if state and state["status"] == "assigned" and (
                state["assignment"]["department_id"] == dept) else None

        state = await eventually(held)
        climbed.append(state["assignment"]["department_id"])
        if holder != "city-gov":
            await act(api, case_id, "raise-level", department(holder),
                      reason="Beyond our authority: a matter for the level above")  # fmt: skip
    assert climbed == ["vil-xingfu", "twp-chengguan", "county-gov", "city-gov"]
    handle = handle_of(client, case_id)
    await handle.terminate("test finished")
    await keep_history(handle, "raise_level_to_the_city")


async def test_a_reporter_e_mail_that_is_several_addresses_is_refused(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The patrol report's reporter is the intake's citizen: an e-mail address that is several
    ("wang,li@163.com", a comma typed for a full stop) was filed, and the outbox sends to none
    of them. Now 422 on ``body.reporter.email``, as the complaints API, and nothing filed."""
    address = f"幸福社区7栋 {id(api)}"
    body = _patrol(address=address,
                   reporter={"name": "网格员 张敏", "email": "zhang,min@163.com"})  # fmt: skip
    filed = "SELECT count(*) FROM intakes WHERE payload -> 'intake' ->> 'address' = $1"
    response = await api.post(REPORTS, json=body, headers=GRID_WORKER)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request", error
    assert [d["field"] for d in error["details"]] == ["body.reporter.email"], error
    assert "one e-mail address" in error["message"], error
    assert await pool.fetchval(filed, address) == 0
