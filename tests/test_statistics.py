"""Statistics: indicator definitions, the rollup, the API and department evaluation, on small
hand-made data sets where every figure is known (rows inserted straight into ``cases``)."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import AUDITOR, OPERATOR, SUPERVISOR, act, auth, department, eventually, register
from statcases import case_row, insert_cases, local

from bench import generator
from jiesu import db
from jiesu.config import Settings
from jiesu.ops.bootstrap import prepare_database
from jiesu.ops.demo_data import demo_key
from jiesu.stats import catalogue, indicators, people, queries, rollup
from jiesu.stats.evaluation import DEFAULT_RULES
from jiesu.stats.indicators import MEASURES, Filter, GroupBy

ADMIN = auth(demo_key("demo-admin"))
ROOT = Path(__file__).resolve().parent.parent
H = timedelta(hours=1)

# --- the March 2001 data set -----------------------------------------------------------------
MON = date(2001, 3, 5)  # a Monday


def march_2001() -> list[dict[str, Any]]:
    """Seven cases; the expected figures are in EXPECTED."""
    return [
        # 1 urgent, contacted and replied on time, satisfied
        case_row(local(MON), urgency="urgent", accepted=H / 4, contacted=H / 2, replied=5 * H),
        # 2 urgent, contacted late, replied late, unsatisfied
        case_row(local(MON), urgency="urgent", accepted=H / 4, contacted=2 * H, replied=30 * H,
                 rating="unsatisfied", breaches=("contact", "finish"), channel="app"),
        # 3 general, on time, basically satisfied, replied by the street office, extended once;
        #   00:30 local is the previous day in UTC: it must count on Monday
        case_row(local(MON, 0, 30), department_id="twp-chengguan", category_id="old_compound",
                 rating="basically_satisfied", handled_level="township", extension_count=1),
        # 4 general, accepted on time, never replied: overdue, still handling, returned once
        case_row(local(MON), status="handling", replied=None, rating=None,
                 breaches=("finish",), return_count=1, grid_id="G-QH-02-01-1"),
        # 5 general, assigned, not accepted yet, inside its window: nothing decided
        case_row(local(MON), status="assigned", accepted=None, replied=None, rating=None),
        # 6 general, closed without a verdict, village, reported again twice
        case_row(local(MON + timedelta(days=1)), department_id="vil-xingfu",
                 category_id="street_vendor", rating=None, handled_level="village",
                 repeat_count=2),
        # 7 next week: general, village, satisfied
        case_row(local(MON + timedelta(days=7)), department_id="vil-xingfu",
                 category_id="street_vendor", handled_level="village"),
    ]  # fmt: skip


EXPECTED: dict[str, Any] = {
    "received": 7,
    "closed": 5,
    "in_progress": 2,
    "overdue": 2,
    "response_rate": (5, 6),
    "on_time_completion_rate": (4, 6),
    "completion_rate": (5, 7),
    "satisfaction_rate": (3, 4),
    "resolution_rate": (4, 5),
    "grassroots_resolution_rate": (3, 5),
    "repeat_report_rate": (1, 7),
    "extension_rate": (1, 7),
    "return_rate": (1, 7),
    "direct_answer_rate": (0, 7),  # none answered on the call (tests/test_direct_answers.py)
    "grid_solution_rate": (0, 7),  # none solved on patrol (tests/test_grid.py)
    "rejected_return_rate": (0, 7),  # none rejected (tests/test_supervision_orders.py)
}

MARCH = {"from": "2001-03-01", "to": "2001-03-31"}


@pytest.fixture(scope="module")
async def march(pool: asyncpg.Pool, settings: Settings) -> None:
    await insert_cases(pool, march_2001())
    await rollup.ensure_fresh(pool, settings.timezone)  # what the worker's refresher does


def plain(values: dict[str, Any]) -> dict[str, Any]:
    """Indicator values as ints and (numerator, denominator) pairs."""
    out: dict[str, Any] = {}
    for name, v in values.items():
        if name in indicators.INDICATORS_BY_NAME:
            out[name] = (v["numerator"], v["denominator"]) if isinstance(v, dict) else v
    return out


async def get_indicators(
    api: httpx.AsyncClient, headers: dict[str, str] | None = None, **params: Any
) -> dict[str, Any]:
    response = await api.get(
        "/api/v1/stats/indicators", params={**MARCH, **params}, headers=headers or SUPERVISOR
    )
    assert response.status_code == 200, response.text
    return response.json()


# --- definitions -------------------------------------------------------------------------------


def test_docs_match_the_definitions() -> None:
    doc = (ROOT / "docs" / "indicators.md").read_text(encoding="utf-8")
    fix = "run: python -m jiesu.stats.catalogue > docs/indicators.md"
    assert doc == catalogue.document(), fix


def test_rollup_columns_are_the_measures() -> None:
    sql = (ROOT / "jiesu" / "migrations" / "0002_statistics.sql").read_text(encoding="utf-8")
    table = sql.split("CREATE TABLE case_daily_stats")[1].split(");")[0]
    columns = re.findall(r"^\s+(\w+)\s+int NOT NULL DEFAULT 0", table, re.MULTILINE)
    for later in sorted((ROOT / "jiesu" / "migrations").glob("*.sql")):  # added since
        columns += re.findall(
            r"ALTER TABLE case_daily_stats ADD COLUMN (\w+) int NOT NULL DEFAULT 0",
            later.read_text(encoding="utf-8"),
        )
    assert columns == [m.name for m in MEASURES]


def test_every_rate_has_a_numerator_and_a_denominator() -> None:
    values = indicators.evaluate({"received": 4, "closed": 3})
    assert values["completion_rate"] == {"numerator": 3, "denominator": 4, "value": 0.75}
    assert values["satisfaction_rate"] == {"numerator": 0, "denominator": 0, "value": None}
    assert values["in_progress"] == 0  # a measure nobody summed counts nothing


@pytest.mark.parametrize(
    ("filters", "grain"),
    [
        ({}, rollup.GRAIN_TOTAL),
        ({Filter.DEPARTMENT: "water"}, rollup.GRAIN_DEPARTMENT),
        ({Filter.LEVEL: "county"}, rollup.GRAIN_DEPARTMENT),
        ({Filter.CATEGORY: "garbage", Filter.CHANNEL: "app"}, rollup.GRAIN_CLASS),
        ({Filter.GRID: "G-QH-01-01-1"}, rollup.GRAIN_PLACE),
        ({Filter.LEVEL: "village", Filter.CATEGORY: "garbage"}, rollup.GRAIN_LEVEL),
        ({Filter.DEPARTMENT: "water", Filter.URGENCY: "urgent"}, rollup.GRAIN_DEPARTMENT_CLASS),
        ({Filter.DEPARTMENT: "water", Filter.GRID: "G-QH-01-01-1"}, rollup.GRAIN_DETAIL),
    ],
)
def test_the_coarsest_sufficient_grain_is_read(filters: dict, grain: int) -> None:
    assert rollup.choose_grain(filters) == grain


# --- indicators through the API ------------------------------------------------------------------


async def test_every_figure_of_a_hand_made_month(api: httpx.AsyncClient, march: None) -> None:
    body = await get_indicators(api, group_by="month")
    assert plain(body["totals"]) == EXPECTED
    assert [p["period"] for p in body["periods"]] == ["2001-03-01"]
    assert plain(body["periods"][0]) == EXPECTED
    assert body["totals"]["response_rate"]["value"] == round(5 / 6, 6)
    assert body["timezone"] == "Asia/Shanghai" and body["as_of"]


async def test_grouped_by_week_and_day(api: httpx.AsyncClient, march: None) -> None:
    weeks = (await get_indicators(api, group_by="week"))["periods"]
    assert [(p["period"], p["received"]) for p in weeks] == [
        ("2001-02-26", 0), ("2001-03-05", 6), ("2001-03-12", 1), ("2001-03-19", 0),
        ("2001-03-26", 0),
    ]  # fmt: skip
    days = await get_indicators(api, **{"from": "2001-03-04", "to": "2001-03-06"})
    assert [(p["period"], p["received"]) for p in days["periods"]] == [
        ("2001-03-04", 0), ("2001-03-05", 5), ("2001-03-06", 1),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"department_id": "water"}, {"received": 4, "overdue": 2, "response_rate": (2, 3)}),
        ({"level": "village"}, {"received": 2, "grassroots_resolution_rate": (2, 2)}),
        ({"urgency": "urgent"}, {"received": 2, "satisfaction_rate": (1, 2)}),
        ({"channel": "app"}, {"received": 1, "on_time_completion_rate": (0, 1)}),
        ({"grid_id": "G-QH-02-01-1"}, {"received": 1, "return_rate": (1, 1)}),
        ({"category_id": "street_vendor", "level": "village"}, {"received": 2, "closed": 2}),
        ({"department_id": "water", "urgency": "general"}, {"received": 2, "in_progress": 2}),
    ],
)
async def test_filters(
    api: httpx.AsyncClient, march: None, params: dict[str, str], expected: dict[str, Any]
) -> None:
    totals = plain((await get_indicators(api, group_by="month", **params))["totals"])
    assert {k: totals[k] for k in expected} == expected


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {Filter.DEPARTMENT: "water"},
        {Filter.LEVEL: "township"},
        {Filter.CATEGORY: "sewer_blockage", Filter.URGENCY: "urgent"},
        {Filter.GRID: "G-QH-01-01-1", Filter.CHANNEL: "hotline"},
        {Filter.DEPARTMENT: "vil-xingfu", Filter.CATEGORY: "street_vendor"},
    ],
)
@pytest.mark.parametrize("group_by", list(GroupBy))
# whole months (by month: the month rows), and March cut at its 5th (by month: its days)
@pytest.mark.parametrize("start", [date(2001, 2, 1), MON])
async def test_rollup_equals_the_raw_rows(
    pool: asyncpg.Pool,
    settings: Settings,
    march: None,
    filters: dict,
    group_by: GroupBy,
    start: date,
) -> None:
    await rollup.ensure_fresh(pool, settings.timezone)
    query = queries.IndicatorQuery(start, date(2001, 4, 30), group_by, filters)
    summed = await queries.measure_sums(pool, query)
    raw = await queries.measure_sums(pool, query, timezone=settings.timezone)
    assert summed == raw and summed


async def test_a_changed_case_is_counted_at_the_next_refresh(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    day = {"from": "2001-06-01", "to": "2001-06-01", "group_by": "day"}
    row = case_row(local(date(2001, 6, 1)), status="handling", replied=None, rating=None)
    await insert_cases(pool, [row])
    await rollup.ensure_fresh(pool, settings.timezone)
    before = (await get_indicators(api, **day))["totals"]
    assert (before["received"], before["closed"]) == (1, 0)
    await pool.execute(
        "UPDATE cases SET status = 'closed', replied_at = received_at + interval '2 hours',"
        " rating = 'satisfied', resolved = true, handled_level = 'county', version = 2,"
        " updated_at = now() WHERE case_id = $1",
        row["case_id"],
    )
    await rollup.ensure_fresh(pool, settings.timezone)
    after = (await get_indicators(api, **day))["totals"]
    assert (after["closed"], after["satisfaction_rate"]["numerator"]) == (1, 1)


async def test_a_full_rebuild_gives_the_incremental_result(
    pool: asyncpg.Pool, settings: Settings, march: None
) -> None:
    dump = "SELECT * FROM case_daily_stats ORDER BY 1, 2, 3, 4, 5, 6, 7, 8"
    async with pool.acquire() as conn:
        await rollup.refresh(conn, settings.timezone)
        incremental = [tuple(r) for r in await conn.fetch(dump)]
        result = await rollup.refresh(conn, settings.timezone, full=True)
        assert result.full
        assert [tuple(r) for r in await conn.fetch(dump)] == incremental
        assert (await rollup.refresh(conn, settings.timezone)).days >= 0


async def test_csv(api: httpx.AsyncClient, march: None) -> None:
    response = await api.get(
        "/api/v1/stats/indicators", params={**MARCH, "group_by": "month", "format": "csv"},
        headers=SUPERVISOR,
    )  # fmt: skip
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["period"] for r in rows] == ["2001-03-01", "total"]
    total = rows[-1]
    assert (total["received"], total["satisfaction_rate_numerator"]) == ("7", "3")
    assert (total["satisfaction_rate_denominator"], total["satisfaction_rate"]) == ("4", "0.75")
    accepted = await api.get(
        "/api/v1/stats/indicators", params=MARCH, headers={**AUDITOR, "Accept": "text/csv"}
    )
    assert accepted.text.startswith("period,received,")


@pytest.mark.parametrize(
    ("accept", "csv"),
    [
        ("text/csv", True),
        ("text/csv, application/json", True),
        ("application/json;q=0.9, text/csv", True),
        ("text/csv;q=0", False),  # a refusal, which the substring match took for a request
        ("application/json, text/csv;q=0.5", False),
        ("*/*, text/csv;q=0.1", False),
        ("text/csv;q=nan", False),
        ("", False),
    ],
)
async def test_the_accept_header_is_read_by_its_weights(
    api: httpx.AsyncClient, march: None, accept: str, csv: bool
) -> None:
    answer = await api.get("/api/v1/stats/indicators", params=MARCH,
                           headers={**AUDITOR, "Accept": accept})  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv" if csv else "application/json")


async def test_an_absurd_minimum_volume_is_refused(api: httpx.AsyncClient) -> None:
    too_many = await api.get("/api/v1/stats/ranking", params={"min_cases": 10**30},
                             headers=SUPERVISOR)  # fmt: skip
    assert too_many.status_code == 422, too_many.text


async def test_departments_see_their_own_figures_only(
    api: httpx.AsyncClient, march: None
) -> None:
    own = await get_indicators(api, department("water"), group_by="month")
    assert own["filters"] == {"department_id": "water"} and own["totals"]["received"] == 4
    other = await api.get(
        "/api/v1/stats/indicators", params={**MARCH, "department_id": "housing"},
        headers=department("water"),
    )  # fmt: skip
    assert other.status_code == 403 and other.json()["error"]["code"] == "forbidden"
    for path in ("/api/v1/stats/ranking", "/api/v1/reports"):
        response = await api.get(path, headers=department("water"))
        assert response.status_code == 403, path
    operator = await api.get("/api/v1/stats/indicators", headers=OPERATOR)
    assert operator.status_code == 403


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"from": "2001-03-02", "to": "2001-03-01"}, "invalid_period"),
        ({"from": "2000-01-01", "to": "2002-12-31", "group_by": "day"}, "too_many_periods"),
        ({"group_by": "year"}, "invalid_request"),
        ({"level": "province"}, "invalid_request"),
    ],
)
async def test_bad_input_is_a_4xx(api: httpx.AsyncClient, params: dict, code: str) -> None:
    response = await api.get("/api/v1/stats/indicators", params=params, headers=SUPERVISOR)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code


async def test_definitions_endpoint(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/stats/definitions", headers=AUDITOR)
    assert response.status_code == 200
    by_name = {d["name"]: d for d in response.json()}
    assert by_name["satisfaction_rate"]["numerator"] == "satisfied"
    assert by_name["satisfaction_rate"]["denominator"] == "rated"
    assert set(by_name) == set(indicators.INDICATORS_BY_NAME)


# --- department evaluation (考评) --------------------------------------------------------------

YEAR_2002 = {"from": "2002-01-01", "to": "2002-12-31"}


@pytest.fixture(scope="module")
async def evaluation_2002(pool: asyncpg.Pool, settings: Settings) -> None:
    """water: 40 perfect cases (100 points); housing: 35 cases, 7 of them unsatisfied and
    returned once (20 + 20 + 16 − 2 + 32 = 86 points); market: 3 perfect cases (below the
    minimum volume of 30)."""
    day = date(2002, 5, 6)
    rows = [case_row(local(day), department_id="water") for _ in range(40)]
    rows += [case_row(local(day), department_id="housing") for _ in range(28)]
    rows += [
        case_row(local(day), department_id="housing", rating="unsatisfied", return_count=1)
        for _ in range(7)
    ]
    rows += [case_row(local(day), department_id="market") for _ in range(3)]
    await insert_cases(pool, rows)
    await rollup.ensure_fresh(pool, settings.timezone)  # what the worker's refresher does


async def get_ranking(api: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await api.get(
        "/api/v1/stats/ranking", params={**YEAR_2002, **params}, headers=SUPERVISOR
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_ranking_with_minimum_volume(api: httpx.AsyncClient, evaluation_2002: None) -> None:
    body = await get_ranking(api)
    assert body["min_cases"] == DEFAULT_RULES.min_cases == 30
    table = [(e["rank"], e["department_id"], e["received"], e["score"]) for e in body["entries"]]
    assert table == [(1, "water", 40, 100.0), (2, "housing", 35, 86.0), (None, "market", 3, 100.0)]
    assert "最低件数" in body["entries"][2]["unranked_reason"]


async def test_the_breakdown_behind_a_score(
    api: httpx.AsyncClient, evaluation_2002: None
) -> None:
    housing = (await get_ranking(api))["entries"][1]
    stages = {s["stage"]: s for s in housing["stages"]}
    assert {s: stages[s]["points"] for s in stages} == {
        "response": 20.0, "handling": 34.0, "feedback": 32.0
    }  # fmt: skip
    rules = {r["indicator"]: r for s in housing["stages"] for r in s["rules"]}
    assert rules["satisfaction_rate"] == {
        "indicator": "satisfaction_rate", "numerator": 28, "denominator": 35, "value": 0.8,
        "rule_points": 40.0, "points": 32.0,
    }  # fmt: skip
    assert (rules["return_rate"]["numerator"], rules["return_rate"]["points"]) == (7, -2.0)


async def test_minimum_volume_override_and_csv(
    api: httpx.AsyncClient, evaluation_2002: None
) -> None:
    body = await get_ranking(api, min_cases=0)
    ranks = {e["department_id"]: e["rank"] for e in body["entries"]}
    assert ranks == {"water": 1, "market": 1, "housing": 3}  # equal scores share a rank
    response = await api.get(
        "/api/v1/stats/ranking", params={**YEAR_2002, "format": "csv"}, headers=AUDITOR
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["rank"], r["department_id"], r["score"]) for r in rows] == [
        ("1", "water", "100.0"), ("2", "housing", "86.0"), ("", "market", "100.0")
    ]  # fmt: skip
    assert rows[1]["feedback_points"] == "32.0" and rows[1]["satisfaction_rate"] == "0.8"


async def test_scoring_rules_are_configurable(
    api: httpx.AsyncClient, pool: asyncpg.Pool, evaluation_2002: None
) -> None:
    rules = {"rules": [{"stage": "feedback", "indicator": "satisfaction_rate", "points": 10}],
             "min_cases": 2}  # fmt: skip
    forbidden = await api.put("/api/v1/stats/scoring-rules", json=rules, headers=SUPERVISOR)
    assert forbidden.status_code == 403
    bad = {"rules": [{"stage": "feedback", "indicator": "received", "points": 10}]}
    invalid = await api.put("/api/v1/stats/scoring-rules", json=bad, headers=ADMIN)
    assert invalid.status_code == 422
    try:
        saved = await api.put("/api/v1/stats/scoring-rules", json=rules, headers=ADMIN)
        assert saved.status_code == 200, saved.text
        body = await get_ranking(api)
        scores = [(e["rank"], e["department_id"], e["score"]) for e in body["entries"]]
        assert scores == [(1, "water", 10.0), (1, "market", 10.0), (3, "housing", 8.0)]
        current = await api.get("/api/v1/stats/scoring-rules", headers=AUDITOR)
        assert current.json()["min_cases"] == 2
    finally:
        await pool.execute("DELETE FROM evaluation_rules")


# --- the projection fills the statistics columns ---------------------------------------------


async def test_projection_fills_handled_level_and_resolved(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    created = await register(api, category_id="sewer_blockage", grid_id="G-QH-03-02-2")
    case_id = created["case_id"]
    water = department("water")

    async def assigned() -> bool:
        row = await pool.fetchrow("SELECT status FROM cases WHERE case_id = $1", case_id)
        return row is not None and row["status"] == "assigned"

    await eventually(assigned)
    columns = "SELECT handled_level, resolved FROM cases WHERE case_id = $1"
    assert tuple(await pool.fetchrow(columns, case_id)) == (None, None)
    await act(api, case_id, "accept", water)
    await act(api, case_id, "contact", water)
    await act(api, case_id, "reply", water, outcome="resolved", text="Cleared",
              evidence=["https://evidence.test/s.jpg"])  # fmt: skip
    await act(api, case_id, "rating", token=created["citizen_token"], rating="basically_satisfied")
    row = await eventually(lambda: pool.fetchrow(columns + " AND status = 'closed'", case_id))
    assert tuple(row) == ("county", True)


# --- generated data (bench/generator.py) ------------------------------------------------------


async def test_generated_cases_rollup_equals_raw(database_url: str, settings: Settings) -> None:
    """The benchmark's generator, small: every grain of the rollup agrees with the raw rows
    and the figures look like a hotline's (own database, so no other test is disturbed)."""
    main, sep, query = database_url.partition("?")
    dsn = f"{main.rpartition('/')[0]}/jiesu_generated{sep}{query}"
    await prepare_database(dsn, demo=True)
    plan = generator.Plan(cases=4000, end=date(2004, 6, 30), days=60)
    assert await generator.fill(dsn, plan) == 4000
    pool = await db.create_pool(dsn, max_size=2)
    try:
        await rollup.ensure_fresh(pool, settings.timezone)
        for filters in (
            {}, {Filter.LEVEL: "village"}, {Filter.DEPARTMENT: "urban-management"},
            {Filter.CATEGORY: "garbage", Filter.CHANNEL: "hotline"},
            {Filter.GRID: "G-GX-01-01-1"},
            {Filter.DEPARTMENT: "water", Filter.URGENCY: "urgent"},
            {Filter.DEPARTMENT: "urban-management", Filter.CATEGORY: "street_vendor"},
            {Filter.LEVEL: "township", Filter.CHANNEL: "wechat"},
        ):  # fmt: skip
            # by month: June from the month rows, May's last three weeks from the days
            for group_by, start in ((GroupBy.WEEK, date(2004, 5, 1)),
                                    (GroupBy.MONTH, date(2004, 5, 10))):  # fmt: skip
                query_ = queries.IndicatorQuery(start, date(2004, 6, 30), group_by, filters)
                summed = await queries.measure_sums(pool, query_)
                assert summed == await queries.measure_sums(
                    pool, query_, timezone=settings.timezone
                ), (filters, group_by)
        for department in ("urban-management", None):  # people: June by month, May by day
            figures = await people.people(pool, date(2004, 5, 10), plan.end, department)
            assert figures == await people.from_handlings(
                pool, date(2004, 5, 10), plan.end, settings.timezone, department
            )
            assert any(p["handled"] for u in figures for p in u["people"])
        assert any(p["returns"] for u in figures for p in u["people"])  # returners, everyone
        totals = (await queries.indicators(
            pool, queries.IndicatorQuery(plan.end - timedelta(days=59), plan.end)
        ))["totals"]  # fmt: skip
        assert totals["received"] == 4000
        assert totals["received"] == totals["closed"] + totals["in_progress"]
        assert 0.9 < totals["satisfaction_rate"]["value"] < 0.99
        assert 0.9 < totals["response_rate"]["value"] < 1
        assert 0 < totals["overdue"] < 400
    finally:
        await pool.close()
