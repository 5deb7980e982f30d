"""Statistics benchmark: every statistics endpoint over a read model of N generated cases.

    python -m bench.stats [--cases 1000000] [--repeat 40] [--changes 20] [--dsn postgresql://...]
        [--no-rebuild]

Starts its own embedded PostgreSQL (unless ``--dsn``), migrates it, loads the demo reference
data, generates N cases over the last 365 days (bench/generator.py, COPY), rebuilds the rollup,
then measures each endpoint through the real FastAPI app (in-process ASGI, so HTTP parsing,
auth, validation and JSON/CSV encoding are included) and, as the baseline in the same run,
the same figures computed directly from the raw ``cases`` rows. Each endpoint twice: as
clients see it (equal requests between two refreshes share the answer kept under the rollup's
``as_of``, jiesu.stats.answers) and "computed", the kept answers forgotten before every
request (what the first request after each refresh pays). Then every endpoint again
while cases keep changing (``--changes`` per second) and the background refresher
(jiesu.stats.refresher) keeps the rollup current, as the worker does: no request refreshes.
Prints a markdown table and writes bench/results/stats.json. Not a pass/fail test: the target
(issue 13) is p95 ≤ 100 ms for every endpoint while cases change, on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from temporalio.client import Client

from api.deps import SESSION_COOKIE
from api.main import create_app
from bench import generator
from bench.harness import bench_database, publish
from jiesu import db
from jiesu.config import Settings
from jiesu.ops.bootstrap import prepare_database
from jiesu.ops.demo_data import demo_key
from jiesu.stats import people, queries, rollup
from jiesu.stats.indicators import Filter, GroupBy
from jiesu.stats.refresher import RollupRefresher
from jiesu.stats.reports import ReportKind, previous_period

RESULTS = Path(__file__).parent / "results" / "stats.json"
SUPERVISOR = {"Authorization": f"Bearer {demo_key('demo-supervisor').key}"}
TZ = "Asia/Shanghai"
REFRESH_INTERVAL = 5.0  # the worker's default (JIESU_STATS_REFRESH_SECONDS)
LIVE_SECONDS = 60.0  # the phase under change lasts at least this long (a dozen refreshes)


@dataclass
class Scenario:
    name: str
    path: str
    params: dict[str, str]
    baseline: queries.IndicatorQuery | str | None = None  # or "ranking", "people"
    result: dict[str, Any] = field(default_factory=dict)


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50_ms": round(percentile(samples, 0.50) * 1000, 1),
        "p95_ms": round(percentile(samples, 0.95) * 1000, 1),
        "max_ms": round(max(samples) * 1000, 1),
    }


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        await fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return samples


def scenarios(end: date) -> list[Scenario]:
    year = end - timedelta(days=364)
    month = end - timedelta(days=29)
    quarter = end - timedelta(days=89)
    last_month, _ = previous_period(ReportKind.MONTHLY, datetime.now(UTC), TZ)

    def q(start: date, group_by: GroupBy, **filters: str) -> queries.IndicatorQuery:
        return queries.IndicatorQuery(start, end, group_by, {Filter(k): v for k, v in
                                                                 filters.items()})

    def ind(name: str, start: date, group_by: GroupBy, **filters: str) -> Scenario:
        params = {"from": str(start), "to": str(end), "group_by": group_by.value, **filters}
        return Scenario(name, "/api/v1/stats/indicators", params, q(start, group_by, **filters))

    village = "gx-vil-03-07"
    return [
        ind("indicators: year by month, no filter", year, GroupBy.MONTH),
        ind("indicators: 30 days by day, no filter", month, GroupBy.DAY),
        ind("indicators: year by week, largest bureau", year, GroupBy.WEEK,
            department_id="urban-management"),
        ind("indicators: year by month, one village", year, GroupBy.MONTH, department_id=village),
        ind("indicators: year by month, level=township", year, GroupBy.MONTH, level="township"),
        ind("indicators: year by month, category+channel", year, GroupBy.MONTH,
            category_id="garbage", channel="wechat"),
        ind("indicators: year by month, urgency+level", year, GroupBy.MONTH, urgency="urgent",
            level="county"),
        ind("indicators: 90 days by day, one grid", quarter, GroupBy.DAY,
            grid_id="G-GX-01-01-1"),
        ind("indicators: year by month, bureau+category", year, GroupBy.MONTH,
            department_id="urban-management", category_id="street_vendor"),
        Scenario("indicators CSV: year by month", "/api/v1/stats/indicators",
                 {"from": str(year), "to": str(end), "group_by": "month", "format": "csv"}),
        Scenario("ranking: year, all departments", "/api/v1/stats/ranking",
                 {"from": str(year), "to": str(end)}, "ranking"),
        Scenario("ranking: 30 days, villages", "/api/v1/stats/ranking",
                 {"from": str(month), "to": str(end), "level": "village"}),
        Scenario("ranking CSV: year", "/api/v1/stats/ranking",
                 {"from": str(year), "to": str(end), "format": "csv"}),
        Scenario("report JSON: last month", f"/api/v1/reports/monthly/{last_month}", {}),
        Scenario("report CSV: last month", f"/api/v1/reports/monthly/{last_month}",
                 {"format": "csv"}),
        Scenario("reports list", "/api/v1/reports", {}),
        Scenario("people: year, all departments", "/api/v1/stats/people",
                 {"from": str(year), "to": str(end)}, "people"),
        Scenario("people: 30 days, largest bureau", "/api/v1/stats/people",
                 {"from": str(month), "to": str(end), "department_id": "urban-management"},
                 "people"),
        Scenario("console figures: 30 days (charts)", "/console/figures", {}),
        Scenario("definitions", "/api/v1/stats/definitions", {}),
        Scenario("scoring rules", "/api/v1/stats/scoring-rules", {}),
    ]  # fmt: skip


_RAW_RANKING = """
SELECT c.department_id, {sums}
FROM cases c JOIN departments d ON d.id = c.department_id
WHERE c.received_at >= ($1::date::timestamp AT TIME ZONE '{tz}')
    AND c.received_at < (($2::date + 1)::timestamp AT TIME ZONE '{tz}') AND d.level <> 'centre'
GROUP BY c.department_id
"""


async def baseline(pool: asyncpg.Pool, s: Scenario, repeat: int) -> list[float] | None:
    if isinstance(s.baseline, queries.IndicatorQuery):
        sql, args = queries.baseline_sql(s.baseline, TZ)
    elif s.baseline == "ranking":
        sql = _RAW_RANKING.format(sums=rollup.measure_select(), tz=TZ)
        args = [date.fromisoformat(s.params["from"]), date.fromisoformat(s.params["to"])]
    elif s.baseline == "people":  # from the handlings and events themselves
        start, end = (date.fromisoformat(s.params[k]) for k in ("from", "to"))
        department = s.params.get("department_id")
        return await timed(lambda: people.from_handlings(pool, start, end, TZ, department),
                           repeat, warmup=1)  # fmt: skip
    else:
        return None
    return await timed(lambda: pool.fetch(sql, *args), repeat, warmup=1)


async def touch(pool: asyncpg.Pool, n: int, end: date) -> None:
    """A live system: ``n`` recent cases change (their projection is rewritten)."""
    await pool.execute(
        "UPDATE cases SET updated_at = now() WHERE case_id IN (SELECT case_id FROM cases"
        " WHERE received_at >= $1 ORDER BY random() LIMIT $2)",
        datetime.combine(end - timedelta(days=2), datetime.min.time(), ZoneInfo(TZ)),
        n,
    )


async def prepare(dsn: str, cases: int, end: date, rebuild: bool = True) -> dict[str, float]:
    timings: dict[str, float] = {}
    await prepare_database(dsn, demo=True)
    pool = await db.create_pool(dsn, max_size=2)
    try:
        existing = await pool.fetchval("SELECT count(*) FROM cases")
        if existing < cases:
            await pool.execute("TRUNCATE cases CASCADE")  # and its handlings
            start = time.perf_counter()
            plan = generator.Plan(cases=cases, end=end, timezone=TZ)
            await generator.fill(dsn, plan, now=datetime.now(UTC))
            timings["generate_and_copy_s"] = round(time.perf_counter() - start, 1)
        async with pool.acquire() as conn:
            start = time.perf_counter()
            # a full rebuild, or (--no-rebuild, on a --dsn database measured before) what
            # changed since the last refresh: a full rebuild only when it was never built
            result = await rollup.refresh(conn, TZ, full=rebuild)
            name = "rollup_full_rebuild_s" if result.full else "rollup_refresh_s"
            timings[name] = round(time.perf_counter() - start, 1)
            await conn.execute("VACUUM ANALYZE case_daily_stats")
            await conn.execute("VACUUM ANALYZE cases")
            start = time.perf_counter()
            period = previous_period(ReportKind.MONTHLY, datetime.now(UTC), TZ)
            await queries.produce_report(pool, ReportKind.MONTHLY, *period, TZ)
            timings["monthly_report_snapshot_s"] = round(time.perf_counter() - start, 2)
        timings["rollup_rows"] = await pool.fetchval("SELECT count(*) FROM case_daily_stats")
        timings["cases_table_mb"] = round(
            await pool.fetchval("SELECT pg_total_relation_size('cases')") / 2**20)
        timings["rollup_table_mb"] = round(
            await pool.fetchval("SELECT pg_total_relation_size('case_daily_stats')") / 2**20)
    finally:
        await pool.close()
    return timings


async def measure(
    dsn: str, end: date, repeat: int, baseline_repeat: int, changes_per_s: float
) -> dict[str, Any]:
    pool = await db.create_pool(dsn, max_size=6)
    settings = Settings(DATABASE_URL=dsn, JIESU_TIMEZONE=TZ)
    app = create_app(settings, client=cast(Client, object()), pool=pool)  # no Temporal needed
    results: dict[str, Any] = {"scenarios": []}
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as http,
        ):
            await _sign_in(http)  # the console's figures page wants a staff session
            print("  quiet: nothing changes", flush=True)
            load_before = os.getloadavg()[0]
            for s in scenarios(end):
                s.result = await _measure(http, s, repeat)
                base = await baseline(pool, s, baseline_repeat)
                if base:
                    s.result["baseline_raw_sql"] = summary(base)
                results["scenarios"].append(s.result)
                print(f"  {s.name}: {s.result}", flush=True)
            results["load_average"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
            results["ranking_sql"] = await ranking_grains(pool, end, repeat)
            print(f"  ranking SQL alone: {results['ranking_sql']}", flush=True)
            results["live"] = await measure_live(http, pool, end, repeat, changes_per_s)
    finally:
        await pool.close()
    return results


_DAY_GRAIN_RANKING = """
SELECT s.department_id, d.name, d.level, {sums}
FROM case_daily_stats s JOIN departments d ON d.id = s.department_id
WHERE s.grain = 1 AND s.day >= $1 AND s.day <= $2 AND d.level <> 'centre'
    AND ($3::text IS NULL OR d.level = $3)
GROUP BY s.department_id, d.name, d.level
"""


async def ranking_grains(pool: asyncpg.Pool, end: date, repeat: int) -> dict[str, Any]:
    """The year-long ranking's SQL alone, in the same run: summing the day grain (before
    migration 0012) against the month grain for the whole months (jiesu.stats.queries)."""
    start = end - timedelta(days=364)
    sums = ", ".join(f"sum(s.{m})::bigint AS {m}" for m in rollup.MEASURE_NAMES)
    day_sql = _DAY_GRAIN_RANKING.format(sums=sums)
    month_sql, month_args = queries.ranking_sql(start, end, None)
    day = await timed(lambda: pool.fetch(day_sql, start, end, None), repeat)
    month = await timed(lambda: pool.fetch(month_sql, *month_args), repeat)
    return {"day_grain": summary(day), "month_grain": summary(month)}


async def _sign_in(http: httpx.AsyncClient) -> None:
    login = "supervisor"
    signed = await http.post(
        "/console/login", data={"login": login, "password": f"{login}-demo-pass"}
    )
    assert signed.status_code == 303, signed.text[:300]
    http.cookies.set(SESSION_COOKIE, signed.cookies[SESSION_COOKIE])


def _caller(
    http: httpx.AsyncClient, s: Scenario, *, computed: bool = False
) -> Callable[[], Awaitable[None]]:
    """One request of the scenario; ``computed``: with the kept answers forgotten first, so
    that the answer is computed (what the first request after each refresh pays)."""
    app = cast(httpx.ASGITransport, http._transport).app  # type: ignore[attr-defined]
    answers = app.state.stat_answers

    async def call() -> None:
        if computed:
            answers.clear()
        response = await http.get(s.path, params=s.params, headers=SUPERVISOR)
        assert response.status_code == 200, (s.name, response.text[:300])

    return call


async def _samples(http: httpx.AsyncClient, s: Scenario, repeat: int) -> dict[str, list[float]]:
    """As clients see it (equal requests between two refreshes share a kept answer), and with
    every answer computed."""
    return {
        "api": await timed(_caller(http, s), repeat),
        "computed": await timed(_caller(http, s, computed=True), repeat),
    }


async def _measure(http: httpx.AsyncClient, s: Scenario, repeat: int) -> dict[str, Any]:
    return {"name": s.name, **{k: summary(v) for k, v in (await _samples(http, s, repeat)).items()}}


async def measure_live(
    http: httpx.AsyncClient, pool: asyncpg.Pool, end: date, repeat: int, changes_per_s: float
) -> dict[str, Any]:
    """Every scenario again while cases keep changing (``changes_per_s`` recent cases rewritten
    per second) and the background refresher (jiesu.stats.refresher, as in the worker) keeps
    the rollup current every REFRESH_INTERVAL s on its own connection. No request refreshes."""
    stop = asyncio.Event()
    refreshes: list[float] = []
    lags: list[float] = []
    refresher = RollupRefresher(pool, TZ, REFRESH_INTERVAL)

    async def change() -> None:
        while not stop.is_set():
            await touch(pool, max(1, round(changes_per_s / 10)), end)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)

    async def refresh() -> None:
        while not stop.is_set():
            began = time.perf_counter()
            if await refresher.run_once() is not None:
                refreshes.append(time.perf_counter() - began)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REFRESH_INTERVAL)

    params = {"from": str(end - timedelta(days=364)), "to": str(end), "group_by": "month"}

    async def lag() -> None:  # how far behind the answers are
        response = await http.get("/api/v1/stats/indicators", params=params, headers=SUPERVISOR)
        as_of = datetime.fromisoformat(response.json()["as_of"])
        lags.append((datetime.now(UTC) - as_of).total_seconds())

    print(f"  live: {changes_per_s:g} cases changed per second, background refresher every "
          f"{REFRESH_INTERVAL:g} s", flush=True)  # fmt: skip
    load_before = os.getloadavg()[0]
    background = [asyncio.create_task(change()), asyncio.create_task(refresh())]
    out: dict[str, Any] = {"changes_per_s": changes_per_s, "refresh_interval_s": REFRESH_INTERVAL,
                           "scenarios": []}  # fmt: skip
    # Rounds over every scenario until LIVE_SECONDS have passed: on a quiet machine one round
    # is over before the refresher's second turn, and the figures would not be "under change".
    began = time.perf_counter()
    samples: dict[str, dict[str, list[float]]] = {}
    try:
        while not samples or time.perf_counter() - began < LIVE_SECONDS:
            for s in scenarios(end):
                for kind, values in (await _samples(http, s, repeat)).items():
                    samples.setdefault(s.name, {}).setdefault(kind, []).extend(values)
                await lag()
        for name, kinds in samples.items():
            result = {"name": name, **{k: summary(v) for k, v in kinds.items()}}
            out["scenarios"].append(result)
            print(f"  live {name}: {result['api']}", flush=True)
    finally:
        stop.set()
        await asyncio.gather(*background)
    out["load_average"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    out["seconds"] = round(time.perf_counter() - began, 1)
    out["refresh"] = summary(refreshes) if refreshes else None
    out["as_of_lag_s"] = {"p50": round(percentile(lags, 0.5), 1),
                          "max": round(max(lags), 1)} if lags else None  # fmt: skip
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Statistics benchmark: {results['cases']:,} cases, {results['cpus']} CPUs, "
        f"PostgreSQL {results['postgres']}; load average (1 min) at the start and end of the "
        f"phase: {results.get('load_average')}",
        "",
        "| scenario | API p50 ms | API p95 ms | computed p50 ms | computed p95 ms |"
        " raw-SQL baseline p50 ms | baseline p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in results["scenarios"]:
        base = s.get("baseline_raw_sql")
        b50, b95 = (base["p50_ms"], base["p95_ms"]) if base else ("—", "—")
        c = s.get("computed") or {}
        lines.append(f"| {s['name']} | {s['api']['p50_ms']} | {s['api']['p95_ms']} | "
                     f"{c.get('p50_ms', '—')} | {c.get('p95_ms', '—')} | {b50} | {b95} |")
    rs = results.get("ranking_sql") or {}
    if rs:
        lines += ["", "Year-long ranking, its SQL alone (same run): day grain p50 "
                  f"{rs['day_grain']['p50_ms']} ms / p95 {rs['day_grain']['p95_ms']} ms; "
                  f"month grain p50 {rs['month_grain']['p50_ms']} ms / p95 "
                  f"{rs['month_grain']['p95_ms']} ms."]
    live = results["live"]
    lines += ["", f"While {live['changes_per_s']:g} cases change per second and the background "
              f"refresher runs every {live['refresh_interval_s']:g} s (no request refreshes; "
              f"{live.get('seconds')} s; load average {live.get('load_average')}):", "",
              "| scenario | API p50 ms | API p95 ms | max ms | computed p50 ms | computed p95 ms"
              " | computed max ms |", "|---|---:|---:|---:|---:|---:|---:|"]
    for s in live["scenarios"]:
        a, c = s["api"], s.get("computed") or {}
        lines.append(f"| {s['name']} | {a['p50_ms']} | {a['p95_ms']} | {a['max_ms']} | "
                     f"{c.get('p50_ms', '—')} | {c.get('p95_ms', '—')} | {c.get('max_ms', '—')} |")
    r, lag = live.get("refresh") or {}, live.get("as_of_lag_s") or {}
    lines += ["", f"Background refreshes: {r.get('n')} (p50 {r.get('p50_ms')} ms, p95 "
              f"{r.get('p95_ms')} ms, max {r.get('max_ms')} ms); answers behind by "
              f"(now − as_of) p50 {lag.get('p50')} s, max {lag.get('max')} s."]
    lines += ["", "Preparation: " + ", ".join(f"{k} = {v}" for k, v in results["prepare"].items())]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    end = datetime.now(ZoneInfo(TZ)).date() - timedelta(days=1)
    with bench_database(args.dsn, "jiesu_bench") as dsn:
        print(f"Preparing {args.cases:,} cases...", flush=True)
        prepared = await prepare(dsn, args.cases, end, rebuild=not args.no_rebuild)
        print(f"  {prepared}", flush=True)
        print("Measuring...", flush=True)
        results = await measure(dsn, end, args.repeat, args.baseline_repeat, args.changes)
        conn = await asyncpg.connect(dsn)
        try:
            settings = {
                name: await conn.fetchval(f"SHOW {name}")
                for name in ("server_version", "shared_buffers", "work_mem", "jit",
                             "max_parallel_workers_per_gather")
            }  # fmt: skip
        finally:
            await conn.close()
        return {
            "cases": args.cases, "cpus": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(), "postgres": settings.pop("server_version"),
            "postgres_settings": settings, "prepare": prepared, "repeat": args.repeat,
            "baseline_repeat": args.baseline_repeat, "measured_at": datetime.now(UTC).isoformat(),
            **results,
        }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=40, help="API requests per scenario")
    parser.add_argument("--baseline-repeat", type=int, default=5)
    parser.add_argument("--changes", type=float, default=20.0,
                        help="cases changed per second in the live phase (20)")
    parser.add_argument("--dsn", help="use this database instead of an embedded PostgreSQL")
    parser.add_argument("--no-rebuild", action="store_true",
                        help="reuse the rollup of a --dsn database instead of rebuilding it")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    publish(RESULTS, results, markdown(results))


if __name__ == "__main__":
    main()
