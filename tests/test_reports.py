"""Periodic reports (定期报告): the report workflow, its snapshots (a re-run replaces, never
duplicates), the API (JSON and CSV) and the Temporal Schedules that produce them."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import (
    AUDITOR,
    SUPERVISOR,
    act,
    case_when,
    department,
    eventually,
    fast_forward_past,
    handle_of,
    register,
    served,
)
from statcases import TZ, case_row, insert_cases, local
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from api.routers.stats import _csv_text
from jiesu.config import Settings
from jiesu.stats import rollup
from jiesu.stats.queries import OVERDUE_LIST_LIMIT, produce_report
from jiesu.stats.reports import (
    ReportJob,
    ReportKind,
    ReportRequest,
    period_containing,
    previous_period,
)
from workflows.reports import (
    REPORT_CRON,
    ReportWorkflow,
    ensure_report_schedules,
    manual_report_id,
    schedule_id,
)

APRIL = date(2003, 4, 1)
GARBAGE_GRID = "G-QH-02-01-1"


@pytest.fixture(scope="module")
async def april_2003(pool: asyncpg.Pool) -> str:
    """Six cases received in April 2003 (one overdue) and one on 1 May; returns the id of
    the overdue case."""
    garbage = {"department_id": "vil-dongguan", "category_id": "garbage",
               "grid_id": GARBAGE_GRID, "handled_level": "village"}  # fmt: skip
    overdue = case_row(local(date(2003, 4, 2)), status="handling", replied=None, rating=None,
                       breaches=("finish",), **garbage)  # fmt: skip
    rows = [
        overdue,
        case_row(local(date(2003, 4, 2), 9), **garbage),
        case_row(local(date(2003, 4, 2), 11), **garbage),
        *(case_row(local(date(2003, 4, 3)), urgency="urgent", contacted=timedelta(minutes=20),
                   grid_id="G-QH-03-02-2") for _ in range(2)),
        case_row(local(date(2003, 4, 30), 23, 30), department_id="vil-xingfu",
                 category_id="street_vendor", grid_id="G-QH-01-01-1", handled_level="village"),
        case_row(local(date(2003, 5, 1), 0, 30), **garbage),
    ]  # fmt: skip
    await insert_cases(pool, rows)
    return overdue["case_id"]


async def run_report(client: Client, settings: Settings, kind: ReportKind, day: date) -> Any:
    return await client.execute_workflow(
        ReportWorkflow.run,
        ReportRequest(kind=kind, period_start=day),
        id=f"test-report-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
    )


async def get_report(api: httpx.AsyncClient, path: str, **params: str) -> httpx.Response:
    response = await api.get(f"/api/v1/reports/{path}", params=params, headers=AUDITOR)
    assert response.status_code == 200, response.text
    return response


async def test_monthly_report_content(
    api: httpx.AsyncClient, client: Client, settings: Settings, april_2003: str
) -> None:
    summary = await run_report(client, settings, ReportKind.MONTHLY, date(2003, 4, 17))
    assert (summary.period_start, summary.period_end) == (APRIL, date(2003, 4, 30))
    report = (await get_report(api, "monthly/2003-04-01")).json()
    assert (report["kind"], report["period_start"], report["period_end"]) == (
        "monthly", "2003-04-01", "2003-04-30"
    )  # fmt: skip
    totals = report["indicators"]["totals"]
    assert (totals["received"], totals["closed"], totals["overdue"]) == (6, 5, 1)
    assert len(report["indicators"]["periods"]) == 30
    assert [(c["category_id"], c["received"], c["overdue"]) for c in report["top_categories"]] == [
        ("garbage", 3, 1), ("sewer_blockage", 2, 0), ("street_vendor", 1, 0)
    ]  # fmt: skip
    assert [(p["grid_id"], p["received"]) for p in report["top_places"]] == [
        (GARBAGE_GRID, 3), ("G-QH-03-02-2", 2), ("G-QH-01-01-1", 1)
    ]  # fmt: skip
    assert report["overdue_cases"]["count"] == 1
    assert [c["case_id"] for c in report["overdue_cases"]["listed"]] == [april_2003]
    ranking = [(e["department_id"], e["received"], e["rank"]) for e in report["ranking"]]
    assert ranking == [("vil-dongguan", 3, None), ("water", 2, None), ("vil-xingfu", 1, None)]


async def test_a_rerun_replaces_the_snapshot(
    api: httpx.AsyncClient, pool: asyncpg.Pool, client: Client, settings: Settings,
    april_2003: str,
) -> None:  # fmt: skip
    first = await run_report(client, settings, ReportKind.WEEKLY, date(2003, 4, 2))
    assert (first.period_start, first.period_end) == (date(2003, 3, 31), date(2003, 4, 6))
    # read (and kept, jiesu.stats.answers) before the re-run: the re-run's row is what follows
    assert (await get_report(api, "weekly/2003-04-02")).json()["generation"] == first.generation
    await insert_cases(pool, [case_row(local(date(2003, 3, 31)), category_id="heating")])
    second = await run_report(client, settings, ReportKind.WEEKLY, date(2003, 4, 6))
    assert second.generation == first.generation + 1
    assert second.generated_at > first.generated_at
    count = await pool.fetchval(
        "SELECT count(*) FROM report_snapshots WHERE kind = 'weekly' AND period_start = $1",
        date(2003, 3, 31),
    )
    assert count == 1
    report = (await get_report(api, "weekly/2003-04-02")).json()  # any day of the week
    assert report["indicators"]["totals"]["received"] == 6  # 5 of April + 31 March
    assert report["generation"] == second.generation


async def test_produce_a_report_through_the_api(
    api: httpx.AsyncClient, april_2003: str
) -> None:
    forbidden = await api.post("/api/v1/reports/daily/2003-04-02", headers=AUDITOR)
    assert forbidden.status_code == 403
    response = await api.post("/api/v1/reports/daily/2003-04-02", headers=SUPERVISOR)
    assert response.status_code == 200, response.text
    assert response.json()["period_end"] == "2003-04-02"
    report = (await get_report(api, "daily/2003-04-02")).json()
    assert report["indicators"]["totals"]["received"] == 3
    assert report["top_places"][0]["grid_id"] == GARBAGE_GRID
    listed = await api.get("/api/v1/reports", params={"kind": "daily", "limit": 500},
                           headers=SUPERVISOR)  # fmt: skip
    # its own report, wherever the daily reports of other tests of the process put it
    # (the first of the list was another test's once it had reported a later day)
    mine = [r for r in listed.json() if r["period_start"] == "2003-04-02"]
    assert [(r["kind"], r["url"]) for r in mine] == [("daily", "/api/v1/reports/daily/2003-04-02")]
    starts = [r["period_start"] for r in listed.json()]
    assert starts == sorted(starts, reverse=True)  # newest first


async def test_report_as_csv(
    api: httpx.AsyncClient, client: Client, settings: Settings, april_2003: str
) -> None:
    await run_report(client, settings, ReportKind.MONTHLY, APRIL)
    response = await get_report(api, "monthly/2003-04-01", format="csv")
    assert response.headers["content-type"].startswith("text/csv")
    sections = _sections(response.text)
    assert list(sections) == [
        "summary", "indicators", "top_categories", "top_places", "overdue_cases", "ranking"
    ]  # fmt: skip
    assert sections["top_categories"][1][:3] == ["garbage", sections["top_categories"][1][1], "3"]
    assert sections["indicators"][-1][:2] == ["total", "6"]
    assert sections["overdue_cases"][1][0] == april_2003


def test_a_csv_cell_is_never_read_as_a_formula() -> None:
    """A citizen's title in a report's overdue list ("=HYPERLINK(…)") reached the CSV as it
    was, and a spreadsheet ran it. Text that starts like a formula starts with ' now; numbers,
    negative ones too, stay numbers."""
    text = _csv_text([["=HYPERLINK(\"http://x\",\"看这里\")", "+1", "-1", "@SUM(A1)", "\t=1",
                       -3, 2.5, None, "井盖 -松动"]])  # fmt: skip
    assert next(csv.reader(io.StringIO(text))) == [
        "'=HYPERLINK(\"http://x\",\"看这里\")", "'+1", "'-1", "'@SUM(A1)", "'\t=1",
        "-3", "2.5", "", "井盖 -松动",
    ]  # fmt: skip


def _sections(text: str) -> dict[str, list[list[str]]]:
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    for row in csv.reader(io.StringIO(text)):
        if row[:1] == ["# section"]:
            current = sections.setdefault(row[1], [])
        elif row:
            current.append(row)
    return sections


async def test_missing_and_invalid_reports(api: httpx.AsyncClient) -> None:
    missing = await api.get("/api/v1/reports/weekly/2001-01-01", headers=AUDITOR)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "report_not_found"
    invalid = await api.get("/api/v1/reports/yearly/1999-01-01", headers=AUDITOR)
    assert invalid.status_code == 422


def test_periods() -> None:
    assert period_containing(ReportKind.MONTHLY, date(2024, 2, 10)) == (
        date(2024, 2, 1), date(2024, 2, 29)
    )  # fmt: skip
    as_of = datetime(2024, 3, 4, 17, 0, tzinfo=UTC)  # Tuesday 01:00 in Shanghai
    assert previous_period(ReportKind.DAILY, as_of, "Asia/Shanghai") == (
        date(2024, 3, 4), date(2024, 3, 4)
    )  # fmt: skip
    assert previous_period(ReportKind.WEEKLY, as_of, "Asia/Shanghai") == (
        date(2024, 2, 26), date(2024, 3, 3)
    )  # fmt: skip
    assert previous_period(ReportKind.MONTHLY, as_of, "Asia/Shanghai") == (
        date(2024, 2, 1), date(2024, 2, 29)
    )  # fmt: skip


async def test_schedules_produce_the_reports(
    client: Client, settings: Settings, pool: asyncpg.Pool
) -> None:
    ids = await ensure_report_schedules(client, settings)
    assert await ensure_report_schedules(client, settings) == ids  # idempotent
    try:
        for kind in ReportKind:
            described = await client.get_schedule_handle(schedule_id(kind)).describe()
            minute, hour = (int(v) for v in REPORT_CRON[kind].split()[:2])
            calendar = described.schedule.spec.calendars[0]  # the server parses the cron
            assert (calendar.minute[0].start, calendar.hour[0].start) == (minute, hour)
            assert described.schedule.spec.time_zone_name == settings.timezone
            assert described.schedule.action.task_queue == settings.task_queue  # type: ignore[union-attr]
        start, _ = previous_period(ReportKind.DAILY, datetime.now(UTC), settings.timezone)
        before = await pool.fetchval("SELECT now()")
        await client.get_schedule_handle(schedule_id(ReportKind.DAILY)).trigger()
        await eventually(
            lambda: pool.fetchval(
                "SELECT generated_at > $2 FROM report_snapshots"
                " WHERE kind = 'daily' AND period_start = $1",
                start,
                before,
            ),
            within=30,
        )
    finally:
        for kind in ReportKind:
            await client.get_schedule_handle(schedule_id(kind)).delete()


async def test_a_retried_attempt_after_its_commit_is_not_a_second_generation(
    monkeypatch: pytest.MonkeyPatch, pool: asyncpg.Pool, client: Client, settings: Settings,
    april_2003: str,
) -> None:  # fmt: skip
    """The worker stores the snapshot and dies before Temporal hears of it: Temporal retries
    ``produce_report``, which stores it again. One run is one generation, however many
    attempts it took (before: generation 2, as if someone had re-run the period)."""
    import activities.statistics as statistics_activities

    real = statistics_activities.produce_report
    attempts: list[int] = []

    async def commit_then_die(*args: Any, **kwargs: Any) -> Any:
        summary = await real(*args, **kwargs)  # committed
        if not activity.info().workflow_id.startswith("test-report-"):
            # another report run of the session (a scheduled one, whose daily 09:00 Shanghai
            # run met this test at 01:12 UTC in an xdist run, 2026-11-24): not this test's
            return summary
        attempts.append(summary.generation)
        if len(attempts) == 1:  # the completion never reaches Temporal
            raise RuntimeError("power cut between the commit and the activity's completion")
        return summary

    monkeypatch.setattr(statistics_activities, "produce_report", commit_then_die)
    day = date(2003, 4, 7)  # a daily period no other test produces
    summary = await run_report(client, settings, ReportKind.DAILY, day)
    assert len(attempts) == 2  # the snapshot was stored by both attempts
    assert summary.generation == 1
    row = await pool.fetchrow(
        "SELECT count(*) OVER () AS rows, generation FROM report_snapshots"
        " WHERE kind = 'daily' AND period_start = $1", day,
    )  # fmt: skip
    assert (row["rows"], row["generation"]) == (1, 1)
    # a new run of the period is a new generation, as before
    monkeypatch.setattr(statistics_activities, "produce_report", real)
    assert (await run_report(client, settings, ReportKind.DAILY, day)).generation == 2


async def test_a_scheduled_run_produces_the_reports_a_failed_run_left_out(
    pool: asyncpg.Pool, settings: Settings, april_2003: str
) -> None:
    """A scheduled run given up after its retries (PostgreSQL away ~4 minutes), or one that
    ran past midnight and so reported the next day, left a period without a report for good:
    the next run reported only its own. It also produces the ones missing among the periods
    before it, from the kind's first report on."""
    from temporalio.testing import ActivityEnvironment

    from activities.statistics import StatisticsActivities
    from jiesu.stats.queries import produce_report

    async def days() -> set[date]:
        rows = await pool.fetch("SELECT period_start FROM report_snapshots WHERE kind = 'daily'"
                                " AND period_start BETWEEN $1 AND $2", date(2003, 4, 12),
                                date(2003, 4, 20))  # fmt: skip
        return {r["period_start"] for r in rows}

    first = date(2003, 4, 12)  # the reports made before: the 12th, and the 14th
    for day in (first, date(2003, 4, 14)):
        await produce_report(pool, ReportKind.DAILY, day, day, settings.timezone)
    # the schedule fires on the 18th at 00:30 for the 17th; the 13th, 15th and 16th are missing
    as_of = datetime(2003, 4, 18, 0, 30, tzinfo=TZ)
    job = ReportJob(kind=ReportKind.DAILY, as_of=as_of)
    summary = await ActivityEnvironment().run(
        StatisticsActivities(pool, settings).produce_report, job
    )
    assert summary.period_start == date(2003, 4, 17)
    assert await days() == {first + timedelta(days=n) for n in range(6)}  # 12th-17th
    # a run given its period (by hand) reports that period only
    await ActivityEnvironment().run(StatisticsActivities(pool, settings).produce_report,
                                    ReportJob(kind=ReportKind.DAILY, as_of=as_of,
                                              period_start=date(2003, 4, 19)))  # fmt: skip
    assert date(2003, 4, 18) not in await days()


@pytest.mark.parametrize(
    ("path", "stored_start", "reason"),
    [
        # a typo for 2026: a report of a month that has not begun, empty, on top of the list
        # ("newest first") until 2062
        ("monthly/2062-11-15", date(2062, 11, 1), "has not begun"),
        # the week of Saturday 1 January 2000 begins on 27 December 1999: listed with the url
        # /api/v1/reports/weekly/1999-12-27, which answered 422 (a day before the years)
        ("weekly/2000-01-01", date(1999, 12, 27), "before the supported years"),
    ],
)
async def test_a_report_of_a_period_not_begun_or_outside_the_years_is_refused(
    api: httpx.AsyncClient, pool: asyncpg.Pool, path: str, stored_start: date, reason: str
) -> None:
    response = await api.post(f"/api/v1/reports/{path}", headers=SUPERVISOR)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_period"
    assert reason in response.json()["error"]["message"]
    stored = await pool.fetchval(
        "SELECT count(*) FROM report_snapshots WHERE period_start = $1", stored_start
    )
    assert stored == 0


async def test_a_report_reads_one_state_of_the_figures(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """A report is read in several statements (indicators, overdue list, top categories and
    places, ranking). Each read the rollup as it stood at that statement, so a refresh that
    committed in between (the worker's refresher, every 5 s) went into the ranking and not
    into the totals: a published 月报 whose ranking did not add up to its own totals. Here the
    top-places statement is held on a lock while a case is added and the rollup refreshed."""
    day = date(2012, 3, 5)
    await insert_cases(pool, [case_row(local(day), department_id="water")])
    await rollup.ensure_fresh(pool, settings.timezone)
    async with pool.acquire() as holder:
        locked = holder.transaction()
        await locked.start()
        await holder.execute("LOCK TABLE areas IN ACCESS EXCLUSIVE MODE")
        try:
            producing = asyncio.create_task(produce_report(
                pool, ReportKind.MONTHLY, date(2012, 3, 1), date(2012, 3, 31), settings.timezone
            ))  # fmt: skip
            await eventually(lambda: pool.fetchval(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " WHERE c.relname = 'areas' AND NOT l.granted"
            ))  # fmt: skip
            await insert_cases(pool, [case_row(local(day + timedelta(days=1)),
                                               department_id="water", breaches=("finish",))])
            await rollup.ensure_fresh(pool, settings.timezone)
        finally:
            await locked.rollback()
    await asyncio.wait_for(producing, timeout=30)
    content = await pool.fetchval(
        "SELECT content FROM report_snapshots WHERE kind = 'monthly' AND period_start = $1",
        date(2012, 3, 1),
    )
    totals = content["indicators"]["totals"]
    assert sum(e["received"] for e in content["ranking"]) == totals["received"] == 1
    assert len(content["overdue_cases"]["listed"]) == content["overdue_cases"]["count"] == 0


async def test_a_report_no_worker_produces_is_a_503_not_a_hang(
    settings: Settings, pool: asyncpg.Pool, client: Client
) -> None:
    """POST /reports waited for the report's workflow without a bound: with Temporal up and
    no worker polling (the workers down, or one deploying) the request hung until the client
    gave up. Now it waits JIESU_REPORT_WAIT_SECONDS and answers 503 report_pending; the run
    goes on and stores the snapshot when a worker takes it."""
    idle = settings.model_copy(update={
        "task_queue": f"jiesu-no-worker-{uuid.uuid4().hex[:8]}", "report_wait_seconds": 0.5,
    })  # fmt: skip
    day = date(2003, 6, 9)
    try:
        async with served(create_app(idle, client=client, pool=pool)) as http:
            response = await asyncio.wait_for(
                http.post(f"/api/v1/reports/daily/{day}", headers=SUPERVISOR), timeout=20
            )
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "report_pending"
        assert int(response.headers["Retry-After"]) > 0
    finally:
        await client.get_workflow_handle(manual_report_id(ReportKind.DAILY, day)).terminate()


async def test_a_reports_overdue_count_and_its_list_agree_when_a_breach_follows_the_refresh(
    api: httpx.AsyncClient, client: Client, env: WorkflowEnvironment, pool: asyncpg.Pool,
    settings: Settings,
) -> None:  # fmt: skip
    """A report's 超时量 (overdue_cases.count, the rollup) and its list of overdue cases (read
    from the cases) are one figure. A real case breached its finish deadline after the rollup
    was last refreshed and before the report was read (a scheduled run's catch-up reports use
    the refresh of the report before them; any report, a breach committed between its refresh
    and its read): the list had the case and the count had not — 1 listed under a count of
    0. Now the report is read from a snapshot the rollup has counted."""
    case_id = (await register(api))["case_id"]
    assigned = await case_when(api, case_id, lambda s: s["status"] == "assigned")
    await act(api, case_id, "accept", department(assigned["assignment"]["department_id"]))
    finish = await eventually(lambda: pool.fetchval(
        "SELECT finish_deadline FROM cases WHERE case_id = $1 AND accepted_at IS NOT NULL",
        case_id))  # fmt: skip
    received = await pool.fetchval("SELECT received_at FROM cases WHERE case_id = $1", case_id)
    day = received.astimezone(TZ).date()
    await rollup.ensure_fresh(pool, settings.timezone)  # counted: received, not overdue
    await fast_forward_past(env, handle_of(client, case_id), finish)
    await eventually(lambda: pool.fetchval(
        "SELECT 'finish' = ANY(breaches) FROM cases WHERE case_id = $1", case_id),
        within=30)  # fmt: skip
    await produce_report(pool, ReportKind.DAILY, day, day, settings.timezone, refreshed=True)
    content = await pool.fetchval(
        "SELECT content FROM report_snapshots WHERE kind = 'daily' AND period_start = $1", day
    )
    overdue = content["overdue_cases"]
    assert case_id in [c["case_id"] for c in overdue["listed"]]
    assert len(overdue["listed"]) < OVERDUE_LIST_LIMIT  # the day's cases: all listed
    assert overdue["count"] == len(overdue["listed"]), overdue["count"]
    assert content["indicators"]["totals"]["overdue"] == overdue["count"]


async def test_a_reports_csv_says_how_many_overdue_cases_its_list_leaves_out(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    """A report lists at most 100 overdue cases. Its JSON says the count beside the list; its
    CSV had the 100 rows alone under the indicators' 超时量 of 101, nothing saying the list was
    cut. The section's heading row now says the count and how many are listed."""
    day = date(2004, 2, 9)
    rows = [case_row(local(day), status="handling", replied=None, rating=None,
                     breaches=("finish",)) for _ in range(OVERDUE_LIST_LIMIT + 1)]  # fmt: skip
    await insert_cases(pool, rows)
    try:
        await produce_report(pool, ReportKind.DAILY, day, day, settings.timezone)
        text = (await get_report(api, f"daily/{day}", format="csv")).text
    finally:  # 101 open cases late since 2004: the first rows of 超时工单 for every later test
        await pool.execute("DELETE FROM cases WHERE case_id = ANY($1)",
                           [r["case_id"] for r in rows])  # fmt: skip
    heading = next(r for r in csv.reader(io.StringIO(text))
                   if r[:2] == ["# section", "overdue_cases"])  # fmt: skip
    assert heading[2:] == ["count", str(OVERDUE_LIST_LIMIT + 1), "listed", str(OVERDUE_LIST_LIMIT)]
    assert len(_sections(text)["overdue_cases"]) == OVERDUE_LIST_LIMIT + 1  # columns + rows
