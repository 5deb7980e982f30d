"""Audit of the statistics' edge cases on hand-made rows (tests/statcases.py): period
boundaries in local time, deadlines met to the second, 基本满意, withdrawn cases (撤诉), and the
agreement of the live indicators, the ranking and the report snapshot for one period."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
from helpers import SUPERVISOR
from statcases import case_row, insert_cases, local

from jiesu.case.domain import ReplyOutcome, Status
from jiesu.config import Settings
from jiesu.stats import indicators, queries, rollup
from jiesu.stats.attribution import handlings
from jiesu.stats.reports import ReportKind

H = timedelta(hours=1)
TZ = ZoneInfo("Asia/Shanghai")
# November 2011: far from every other test's period
FIRST, LAST = date(2011, 11, 1), date(2011, 11, 30)


def pair(value: dict[str, Any]) -> tuple[int, int]:
    return value["numerator"], value["denominator"]


@pytest.fixture(scope="module")
async def november(pool: asyncpg.Pool, settings: Settings) -> None:
    last_second = datetime(2011, 11, 30, 23, 59, 59, tzinfo=TZ)
    rows = [
        # 1 received at 23:59:59 local on the month's last day (15:59:59 UTC): in November;
        #   replied exactly at its finish deadline (48 h): on time; 基本满意: satisfied
        case_row(last_second, department_id="water", replied=48 * H,
                 rating="basically_satisfied"),
        # 2 received at 00:00 local on 1 December (16:00 UTC on 30 November): not in November
        case_row(datetime(2011, 12, 1, 0, 0, tzinfo=TZ), department_id="water"),
        # 3 received at 00:00 local on 1 November (16:00 UTC on 31 October): in November;
        #   accepted exactly at its accept deadline (4 h), replied a second late: breached
        case_row(datetime(2011, 11, 1, 0, 0, tzinfo=TZ), department_id="water", accepted=4 * H,
                 replied=48 * H + timedelta(seconds=1), breaches=("finish",),
                 rating="unsatisfied"),
        # 4 withdrawn (撤诉) by the citizen an hour after it was assigned, before the
        #   department accepted it, inside every window: nothing was due of the department
        {**case_row(local(date(2011, 11, 10)), department_id="water", accepted=None,
                    replied=None, rating=None), "resolution": "withdrawn", "resolved": None},
        # 5 an ordinary case of housing, satisfied
        case_row(local(date(2011, 11, 12)), department_id="housing"),
    ]  # fmt: skip
    await insert_cases(pool, rows)
    # 问责 of water: 23:30 local on 30 November (in the month), 00:10 local on 1 December
    # (16:10 UTC on 30 November: not in it)
    for seq, at in enumerate((datetime(2011, 11, 30, 23, 30, tzinfo=TZ),
                              datetime(2011, 12, 1, 0, 10, tzinfo=TZ)), start=1):  # fmt: skip
        await pool.execute(
            "INSERT INTO accountability_records (case_id, seq, department_id, recorded_at)"
            " VALUES ($1, $2, 'water', $3)", rows[0]["case_id"], seq, at,
        )  # fmt: skip
    await rollup.ensure_fresh(pool, settings.timezone)


async def test_boundaries_deadlines_and_withdrawn_cases(
    api: httpx.AsyncClient, november: None
) -> None:
    response = await api.get(
        "/api/v1/stats/indicators",
        params={"from": str(FIRST), "to": str(LAST), "group_by": "month"},
        headers=SUPERVISOR,
    )
    assert response.status_code == 200, response.text
    totals = response.json()["totals"]
    assert totals["received"] == 4 and totals["closed"] == 4
    assert totals["overdue"] == 1
    # cases 1, 3, 5 accepted within 4 h (3 exactly at it); the withdrawn case 4 was not due
    assert pair(totals["response_rate"]) == (3, 3)
    # case 1 replied exactly at the deadline: on time; case 3 a second late
    assert pair(totals["on_time_completion_rate"]) == (2, 3)
    assert pair(totals["satisfaction_rate"]) == (2, 3)
    # the withdrawn case got no reply: nothing to judge solved or not
    assert pair(totals["resolution_rate"]) == (2, 3)
    assert pair(totals["completion_rate"]) == (4, 4)


async def test_the_department_figures_ranking_and_report_agree(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings, november: None
) -> None:
    period = {"from": str(FIRST), "to": str(LAST)}
    ranking = await api.get(
        "/api/v1/stats/ranking", params={**period, "min_cases": 0}, headers=SUPERVISOR
    )
    assert ranking.status_code == 200, ranking.text
    entries = {e["department_id"]: e for e in ranking.json()["entries"]}
    water = await api.get(
        "/api/v1/stats/indicators", params={**period, "department_id": "water"},
        headers=SUPERVISOR,
    )  # fmt: skip
    totals = water.json()["totals"]
    assert totals["received"] == entries["water"]["received"] == 3
    rules = {r["indicator"]: r for s in entries["water"]["stages"] for r in s["rules"]}
    for name in ("response_rate", "on_time_completion_rate", "resolution_rate",
                 "satisfaction_rate"):  # fmt: skip
        assert pair(rules[name]) == pair(totals[name]), name
    assert pair(totals["response_rate"]) == (2, 2)
    assert pair(totals["resolution_rate"]) == (1, 2)
    # the report snapshot of the month: the same figures
    produced = await api.post(f"/api/v1/reports/{ReportKind.MONTHLY.value}/2011-11-15",
                              headers=SUPERVISOR)  # fmt: skip
    assert produced.status_code in (200, 201), produced.text
    report = (await api.get("/api/v1/reports/monthly/2011-11-15", headers=SUPERVISOR)).json()
    everything = await api.get("/api/v1/stats/indicators", params=period, headers=SUPERVISOR)
    assert report["indicators"]["totals"] == everything.json()["totals"]
    reported = {e["department_id"]: e for e in report["ranking"]}
    assert reported["water"]["score"] == entries["water"]["score"]
    assert reported["water"]["received"] == 3
    assert entries["water"]["accountability_records"] == 1
    assert reported["water"]["accountability_records"] == 1


def test_a_withdrawn_case_is_not_judged_resolved() -> None:
    closed = Status.CLOSED
    assert indicators.case_resolved(closed, None, None, replied=False) is None
    assert indicators.case_resolved(closed, ReplyOutcome.RESOLVED, None) is True


async def test_rollup_equals_raw(pool: asyncpg.Pool, settings: Settings, november: None) -> None:
    for filters in ({}, {indicators.Filter.DEPARTMENT: "water"}):
        query = queries.IndicatorQuery(FIRST, LAST, indicators.GroupBy.DAY, filters)
        assert await queries.measure_sums(pool, query) == await queries.measure_sums(
            pool, query, timezone=settings.timezone
        )


def _event(at: datetime, kind: str, actor: str = "jiesu", **data: Any) -> dict[str, Any]:
    return {"kind": kind, "at": at, "actor": {"name": actor}, "data": data}


def test_a_department_is_not_charged_for_the_time_the_case_waited_in_the_centres_queue() -> None:
    """No rule matched: the case waits in the centre's queue (待派单) on the intake's deadlines;
    the accept deadline passes there (the breach names the centre); a dispatcher then sends it
    to A, which accepts at once. A's response is not late: it had nothing to meet."""
    t0 = datetime(2011, 11, 2, 9, 0, tzinfo=TZ)
    events = [
        _event(t0, "received", "operator"),
        _event(t0, "deadlines_set", accept=(t0 + 4 * H).isoformat(),
               contact=None, finish=(t0 + 48 * H).isoformat()),
        _event(t0, "queued", department_id="centre"),
        _event(t0 + 4 * H, "deadline_breached", deadline_kind="accept", department_id="centre"),
        _event(t0 + 5 * H, "dispatched", "dispatcher", department_id="A"),
        _event(t0 + 5 * H + H / 2, "accepted", "a-clerk"),
        _event(t0 + 20 * H, "replied", "a-officer", outcome="resolved"),
    ]  # fmt: skip
    centre, a = handlings(events)
    assert centre.department_id == "centre" and centre.breaches == ["accept"]
    assert a.department_id == "A" and a.breaches == [] and a.accept_deadline is None
    assert a.finish_deadline == t0 + 48 * H  # the citizen's promise still holds for A


def test_since_lean_case_v8_the_dispatched_department_has_the_deadlines_of_its_dispatch() -> None:
    """A case of lean-case-v8 waits in the queue with no deadline running (no breach against
    the centre) and gets fresh deadlines at dispatch: A is held to those — late with none."""
    t0 = datetime(2011, 11, 2, 9, 0, tzinfo=TZ)
    t1 = t0 + 5 * H  # the dispatch
    events = [
        _event(t0, "received", "operator"),
        _event(t0, "deadlines_set", accept=(t0 + 4 * H).isoformat(),
               contact=None, finish=(t0 + 48 * H).isoformat()),
        _event(t0, "queued", department_id="centre"),
        _event(t1, "deadlines_set", accept=(t1 + 4 * H).isoformat(),
               contact=None, finish=(t1 + 48 * H).isoformat()),
        _event(t1, "dispatched", "dispatcher", department_id="A"),
        _event(t1 + H / 2, "accepted", "a-clerk"),
        _event(t1 + 20 * H, "replied", "a-officer", outcome="resolved"),
    ]  # fmt: skip
    centre, a = handlings(events)
    assert centre.department_id == "centre" and centre.breaches == []
    assert a.breaches == [] and a.accept_deadline == t1 + 4 * H
    assert a.finish_deadline == t1 + 48 * H
