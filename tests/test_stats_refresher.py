"""Statistics under change: no request pays for a rollup refresh (issue 13, part 6).

The API answers from the daily rollup as it stands, with its ``as_of``; the worker's
background refresher (jiesu.stats.refresher) brings it up to date, one process at a time.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg
import httpx
from helpers import SUPERVISOR, auth, eventually
from statcases import case_row, insert_cases, local

from activities.projection import ProjectionActivities
from jiesu.case.domain import (
    SYSTEM_ACTOR,
    Actor,
    CaseEvent,
    CaseProjection,
    CaseState,
    Channel,
    EventKind,
    Rating,
    Reply,
    ReplyOutcome,
    Role,
    Status,
    Urgency,
)
from jiesu.config import Settings
from jiesu.ops.demo_data import demo_key
from jiesu.readmodel import accountability
from jiesu.readmodel.backfill import rebuild_handlings
from jiesu.stats import queries, rollup
from jiesu.stats.answers import Answers
from jiesu.stats.indicators import Filter
from jiesu.stats.refresher import RollupRefresher

DAY = date(2003, 7, 1)
ONE_DAY = {"from": str(DAY), "to": str(DAY), "group_by": "day"}
STATE = "SELECT refreshed_at, seen_snapshot FROM case_stats_refresh"
ADMIN = auth(demo_key("demo-admin"))


async def _indicators(api: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await api.get(
        "/api/v1/stats/indicators", params={**ONE_DAY, **params}, headers=SUPERVISOR
    )
    assert response.status_code == 200, response.text
    return response.json()


async def _ranking(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get("/api/v1/stats/ranking", params=ONE_DAY, headers=SUPERVISOR)
    assert response.status_code == 200, response.text
    return response.json()


def _as_of(body: dict[str, Any]) -> datetime | None:
    return datetime.fromisoformat(body["as_of"]) if body["as_of"] else None


async def _new_case(pool: asyncpg.Pool) -> None:
    await insert_cases(pool, [case_row(local(DAY), department_id="water")])


async def test_a_request_never_refreshes_the_rollup(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    await _new_case(pool)
    as_of = await rollup.ensure_fresh(pool, settings.timezone)
    counted = (await _indicators(api))["totals"]["received"]
    state = tuple(await pool.fetchrow(STATE))
    await _new_case(pool)  # a change the rollup has not seen yet
    body = await _indicators(api)
    ranking = await _ranking(api)
    # Answered from the rollup as it stands, and says so: the new case is not counted yet.
    assert body["totals"]["received"] == counted
    assert _as_of(body) == _as_of(ranking) == as_of
    assert tuple(await pool.fetchrow(STATE)) == state  # no refresh was made by the requests


async def test_no_statistics_endpoint_refreshes(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    """Every statistics answer (API and console, JSON and CSV) reads the rollups as they
    stand, with a change waiting: none of them refreshes, none waits for a rebuild."""
    await _new_case(pool)
    await rollup.ensure_fresh(pool, settings.timezone)
    await _new_case(pool)  # a change the rollups have not seen yet
    state = tuple(await pool.fetchrow(STATE))
    browser = httpx.AsyncClient(transport=api._transport, base_url=api.base_url)
    signed = await browser.post(
        "/console/login", data={"login": "supervisor", "password": "supervisor-demo-pass"}
    )
    assert signed.status_code == 303, signed.text
    browser.cookies.set("jiesu_session", signed.cookies["jiesu_session"])
    for path, params in [
        ("/api/v1/stats/indicators", ONE_DAY),
        ("/api/v1/stats/indicators", {**ONE_DAY, "group_by": "month", "level": "county"}),
        ("/api/v1/stats/indicators", {**ONE_DAY, "format": "csv"}),
        ("/api/v1/stats/ranking", ONE_DAY),
        ("/api/v1/stats/ranking", {**ONE_DAY, "format": "csv"}),
        ("/api/v1/stats/people", ONE_DAY),
        ("/api/v1/reports", {}),
    ]:
        response = await api.get(path, params=params, headers=SUPERVISOR)
        assert response.status_code == 200, (path, response.text)
    assert (await browser.get("/console/figures")).status_code == 200
    await browser.aclose()
    assert tuple(await pool.fetchrow(STATE)) == state  # no refresh was made by the requests


async def test_the_background_refresher_counts_the_change(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    await rollup.ensure_fresh(pool, settings.timezone)
    before = await _indicators(api)
    await _new_case(pool)
    stop = asyncio.Event()
    task = asyncio.create_task(RollupRefresher(pool, settings.timezone, interval=0.05).run(stop))
    try:

        async def counted() -> dict[str, Any] | None:
            body = await _indicators(api)
            return body if body["totals"]["received"] > before["totals"]["received"] else None

        after = await eventually(counted, within=30)  # a refresh under a loaded machine
    finally:
        stop.set()
        # it stops after the refresh in hand, which on a loaded machine can take seconds
        await asyncio.wait_for(task, 60)
    assert _as_of(after) > _as_of(before)  # type: ignore[operator]


async def test_one_refresh_at_a_time_across_processes(
    pool: asyncpg.Pool, database_url: str, settings: Settings
) -> None:
    """A refresher that finds another one refreshing skips its turn at once (single flight)."""
    await rollup.ensure_fresh(pool, settings.timezone)
    await _new_case(pool)
    refresher = RollupRefresher(pool, settings.timezone)
    other = await asyncpg.connect(database_url)  # stands for another worker process
    try:
        async with other.transaction():
            assert await other.fetchval(
                "SELECT pg_try_advisory_xact_lock($1)", rollup._REFRESH_LOCK
            )
            state = tuple(await pool.fetchrow(STATE))
            # skips instead of waiting for the lock (which is held until after this line)
            assert await asyncio.wait_for(refresher.run_once(), 30) is None
            assert tuple(await pool.fetchrow(STATE)) == state
    finally:
        await other.close()
    result = await refresher.run_once()
    assert result is not None and not result.full


async def test_a_refresh_that_dies_leaves_the_previous_rollup(
    pool: asyncpg.Pool, database_url: str, settings: Settings
) -> None:
    """The refresh is one transaction: a refresher whose process dies mid-refresh changes
    nothing, and its lock goes with it."""
    await rollup.ensure_fresh(pool, settings.timezone)
    rows = "SELECT count(*), sum(received) FROM case_daily_stats"
    before = (tuple(await pool.fetchrow(rows)), tuple(await pool.fetchrow(STATE)))
    await _new_case(pool)
    dying = await asyncpg.connect(database_url)
    blocker = await asyncpg.connect(database_url)
    try:
        async with blocker.transaction():  # holds the refresh in its middle, lock taken
            await blocker.execute("LOCK TABLE case_daily_stats IN SHARE MODE")
            refresh = asyncio.create_task(rollup.refresh(dying, settings.timezone, full=True))
            await eventually(lambda: _refresh_running(pool), within=30)
            # The refresher's backend goes away, as with kill -9 of its process.
            await pool.execute("SELECT pg_terminate_backend($1)", dying.get_server_pid())
            await asyncio.gather(refresh, return_exceptions=True)
        assert (tuple(await pool.fetchrow(rows)), tuple(await pool.fetchrow(STATE))) == before
        refresher = RollupRefresher(pool, settings.timezone)
        # nobody holds the lock: a full refresh, seconds on a loaded machine
        assert await eventually(refresher.run_once, within=30) is not None
    finally:
        await blocker.close()
        dying.terminate()


async def _refresh_running(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND granted",
        rollup._REFRESH_LOCK,
    ))  # fmt: skip


async def test_before_the_first_build_requests_answer_with_no_as_of(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    await pool.execute("DELETE FROM case_stats_refresh")
    try:
        body = await _indicators(api)
        assert body["as_of"] is None and (await _ranking(api))["as_of"] is None
        assert await pool.fetchval("SELECT count(*) FROM case_stats_refresh") == 0
        result = await RollupRefresher(pool, settings.timezone).run_once()
        assert result is not None and result.full  # the background builds it
        assert (await _indicators(api))["as_of"] is not None
    finally:
        await rollup.ensure_fresh(pool, settings.timezone)


# --- the month grain the ranking reads --------------------------------------------------------


async def test_ranking_reads_whole_months_and_the_days_around_them(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """A ranking from Jan 10 to Apr 1 reads February and March from the month grain and the
    days of January and April from the day grain; a change is counted at the next refresh."""
    days = [date(2005, 1, 9), date(2005, 1, 10), date(2005, 2, 1), date(2005, 2, 28),
            date(2005, 3, 31), date(2005, 4, 1), date(2005, 4, 2)]  # fmt: skip
    await insert_cases(pool, [case_row(local(d), department_id="market") for d in days])
    await rollup.ensure_fresh(pool, settings.timezone)
    start, end = date(2005, 1, 10), date(2005, 4, 1)
    assert rollup.whole_months(start, end) == (date(2005, 2, 1), date(2005, 4, 1))

    async def market() -> int:
        ranked = await queries.ranking(pool, start, end, min_cases=0)
        return next(e["received"] for e in ranked["entries"] if e["department_id"] == "market")

    assert await market() == 5  # not Jan 9, not Apr 2
    months = await pool.fetch(
        "SELECT day, received FROM case_daily_stats WHERE grain = $1 AND department_id = 'market'"
        " AND day BETWEEN '2005-01-01' AND '2005-04-01' ORDER BY day",
        rollup.GRAIN_DEPARTMENT_MONTH,
    )
    assert [(r["day"], r["received"]) for r in months] == [
        (date(2005, 1, 1), 2), (date(2005, 2, 1), 2), (date(2005, 3, 1), 1), (date(2005, 4, 1), 2),
    ]  # fmt: skip
    await insert_cases(pool, [case_row(local(date(2005, 2, 14)), department_id="market")])
    await rollup.ensure_fresh(pool, settings.timezone)
    assert await market() == 6


# --- answers kept until the figures move (jiesu.stats.answers) --------------------------------


async def test_a_kept_answer_lasts_until_what_it_is_made_of_changes(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    """Equal requests between two refreshes are answered once; a refresh, a new
    accountability record, new scoring rules or a renamed department make the next request
    compute afresh (each would otherwise show in an answer that claims to be current)."""
    day = date(2007, 3, 6)
    one_day = {"from": str(day), "to": str(day), "min_cases": "0"}
    answers: Answers = api._transport.app.state.stat_answers  # type: ignore[attr-defined]

    async def market() -> dict[str, Any]:
        response = await api.get("/api/v1/stats/ranking", params=one_day, headers=SUPERVISOR)
        assert response.status_code == 200, response.text
        return next(e for e in response.json()["entries"] if e["department_id"] == "market")

    await insert_cases(pool, [case_row(local(day), department_id="market")])
    await rollup.ensure_fresh(pool, settings.timezone)
    assert (await market())["received"] == 1
    hits = answers.hits
    assert (await market())["received"] == 1 and answers.hits == hits + 1  # kept
    await insert_cases(pool, [case_row(local(day), department_id="market")])
    assert (await market())["received"] == 1  # not refreshed yet: the kept answer is right
    await rollup.ensure_fresh(pool, settings.timezone)
    assert (await market())["received"] == 2
    await pool.execute(
        "INSERT INTO accountability_records (case_id, seq, department_id, recorded_at)"
        " VALUES ('kept-answer', 1, 'market', $1)",
        local(day, 12),
    )
    assert (await market())["accountability_records"] == 1
    name = await pool.fetchval("SELECT name FROM departments WHERE id = 'market'")
    try:
        await pool.execute("UPDATE departments SET name = 'renamed' WHERE id = 'market'")
        assert (await market())["department_name"] == "renamed"
    finally:
        await pool.execute("UPDATE departments SET name = $1 WHERE id = 'market'", name)
    before = (await market())["score"]
    rules = (await api.get("/api/v1/stats/scoring-rules", headers=SUPERVISOR)).json()
    try:
        changed = {**rules, "accountability_points": rules["accountability_points"] - 1}
        saved = await api.put("/api/v1/stats/scoring-rules", json=changed, headers=ADMIN)
        assert saved.status_code == 200, saved.text
        assert (await market())["score"] == before - 1  # one record, one point more off
    finally:
        await api.put("/api/v1/stats/scoring-rules", json=rules, headers=ADMIN)


async def test_nothing_is_kept_before_the_first_build(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    answers: Answers = api._transport.app.state.stat_answers  # type: ignore[attr-defined]
    await pool.execute("DELETE FROM case_stats_refresh")
    try:
        kept = len(answers._kept)
        assert (await _indicators(api))["as_of"] is None
        assert len(answers._kept) == kept
    finally:
        await rollup.ensure_fresh(pool, settings.timezone)


# --- a projection that commits long after it began --------------------------------------------

LATE_DAY = date(2008, 5, 12)
_DAY_FIGURES = "SELECT received, closed FROM case_daily_stats WHERE grain = 0 AND day = $1"


def _late_projection(case_id: str, status: Status, kinds: list[EventKind]) -> CaseProjection:
    received = datetime.combine(LATE_DAY, time(9), UTC)
    state = CaseState(
        case_id=case_id, status=status, title="Late commit", category_id="noise_commercial",
        grid_id="G-QH-01-01-1", address="幸福路12号", channel=Channel.HOTLINE,
        urgency=Urgency.GENERAL, received_at=received,
        closed_at=received + timedelta(days=2) if status is Status.CLOSED else None,
    )  # fmt: skip
    events = [
        CaseEvent(seq=seq, kind=kind, at=received + timedelta(hours=seq), actor=SYSTEM_ACTOR)
        for seq, kind in enumerate(kinds, 1)
    ]
    return CaseProjection(state=state, new_events=events, version=len(events))


async def test_a_projection_that_commits_late_is_counted(
    pool: asyncpg.Pool, database_url: str, settings: Settings
) -> None:
    """A case received weeks ago is closed now, and its projection's transaction commits long
    after it began: it waited a minute on the case's row lock (held here by another
    transaction, as a backfill batch or a slow writer would), while the refresher ran. Its
    change must still be counted by a later refresh: the day's figures must not stay wrong
    until some other case of that day changes.

    The wait is not slept: the refresh that runs while the projection waits is dated a
    minute after the projection began (its bookkeeping, ``refreshed_at``), which is what
    the refresher would have recorded had the lock been held that long."""
    case_id = f"LATE-{uuid.uuid4().hex[:8]}"
    projector = ProjectionActivities(pool)
    opened = [EventKind.RECEIVED, EventKind.DEADLINES_SET]
    await projector.project_events(_late_projection(case_id, Status.HANDLING, opened))
    await rollup.ensure_fresh(pool, settings.timezone)
    assert tuple(await pool.fetchrow(_DAY_FIGURES, LATE_DAY)) == (1, 0)

    holder = await asyncpg.connect(database_url)
    refresher = await asyncpg.connect(database_url)
    closing: asyncio.Task[Any] | None = None
    try:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM cases WHERE case_id = $1 FOR UPDATE", case_id)
            closing = asyncio.create_task(projector.project_events(_late_projection(
                case_id, Status.CLOSED, [*opened, EventKind.CLOSED])))  # fmt: skip
            began = await eventually(lambda: _waiting_on(pool, holder), within=30)
            await rollup.refresh(refresher, settings.timezone)  # while the projection waits
            await refresher.execute(
                "UPDATE case_stats_refresh SET refreshed_at = $1", began + timedelta(minutes=1)
            )
        await asyncio.wait_for(closing, 30)  # the row lock is released: it commits now
        closed = await pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id)
        assert closed == "closed"  # the read model has it: only the rollup could miss it
        await rollup.ensure_fresh(pool, settings.timezone)
        assert tuple(await pool.fetchrow(_DAY_FIGURES, LATE_DAY)) == (1, 1)
    finally:
        if closing is not None and not closing.done():
            closing.cancel()
        await holder.close()
        await refresher.close()


async def _waiting_on(pool: asyncpg.Pool, holder: asyncpg.Connection) -> datetime | None:
    """The start of the transaction that waits for a lock ``holder`` holds, once it waits."""
    return await pool.fetchval(
        "SELECT xact_start FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
        holder.get_server_pid(),
    )


async def test_a_database_restored_into_another_cluster_is_rebuilt(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """A logical dump (pg_dump) restored into another cluster keeps the old cluster's
    transaction ids in ``changed_xid`` and ``seen_snapshot``, higher than the new cluster's:
    the kept snapshot would pass the new changes for seen, and the rows the old cluster
    stamped would pass for unseen at every refresh. The next refresh rebuilds instead and
    stamps those rows anew, after which refreshes are incremental again."""
    day = date(2008, 6, 3)
    changed, kept = (case_row(local(day), status="handling", replied=None, rating=None)
                     for _ in range(2))  # fmt: skip
    await insert_cases(pool, [changed, kept])
    await rollup.ensure_fresh(pool, settings.timezone)
    future = await pool.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())") + 1_000_000
    async with pool.acquire() as conn, conn.transaction():
        # as pg_restore loads its data: the tables' triggers are not there yet
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "UPDATE cases SET changed_xid = $1 WHERE case_id = ANY($2)",
            future, [changed["case_id"], kept["case_id"]],
        )  # fmt: skip
        await conn.execute(
            "UPDATE case_stats_refresh SET seen_snapshot = $1::text::pg_snapshot",
            f"{future}:{future}:",
        )
    # a change made in the new cluster, by a transaction older than the restored snapshot
    await pool.execute(
        "UPDATE cases SET status = 'closed' WHERE case_id = $1", changed["case_id"]
    )
    unseen = (f"SELECT {rollup._unseen('(SELECT seen_snapshot FROM case_stats_refresh)')}"
              " FROM cases WHERE case_id = $1")  # fmt: skip
    async with pool.acquire() as conn:
        assert await rollup.needs_refresh(conn, settings.timezone)
        assert (await rollup.refresh(conn, settings.timezone)).full
        assert tuple(await conn.fetchrow(_DAY_FIGURES, day)) == (2, 1)
        assert not (await rollup.refresh(conn, settings.timezone)).full
        # stamped anew by the rebuild: no longer taken for a change at every refresh
        assert await conn.fetchval(unseen, kept["case_id"]) is False


# --- what changes a day's figures besides a write of its cases ----------------------------------

LEVEL_DAY = date(2009, 4, 7)


async def _level_sums(
    pool: asyncpg.Pool, level: str, timezone: str, measure: str = "received"
) -> tuple[int, int]:
    """(rollup, straight from the cases) ``measure`` of the handlings received on LEVEL_DAY
    by departments of ``level``."""
    query = queries.IndicatorQuery(LEVEL_DAY, LEVEL_DAY, filters={Filter.LEVEL: level})
    rolled = await queries.measure_sums(pool, query)
    raw = await queries.measure_sums(pool, query, timezone=timezone)
    return (sum(p[measure] for p in rolled.values()),
            sum(p[measure] for p in raw.values()))  # fmt: skip


async def test_a_department_that_changes_level_is_counted_at_its_new_level(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    """A township becomes a county-level unit (the admin API): figures by level count its
    handlings at its level today — as the ranking groups it, and as the raw cases give — on
    every day, also those the refreshes since have not touched. Its handling of a case now
    held by another department counts too (the case row names the other one). The level a
    case was handled at (handled_level, 基层 figures) is kept: the town's reply of before
    still counts as a grassroots reply, now under the county level."""
    town = f"h10-town-{uuid.uuid4().hex[:6]}"
    body = {"name": "升格街道", "level": "township"}
    put = await api.put(f"/api/v1/admin/departments/{town}", json=body, headers=ADMIN)
    assert put.status_code == 200, put.text
    own = case_row(local(LEVEL_DAY), department_id=town, handled_level="township")
    passed_on = case_row(local(LEVEL_DAY), department_id="water")
    # days of other departments: the town's one day is not most of the rollup's (they would
    # be rebuilt instead of recomputed, however this file is run)
    others = [case_row(local(LEVEL_DAY - timedelta(days=d)), department_id="water")
              for d in range(1, 4)]  # fmt: skip
    await insert_cases(pool, [own, passed_on, *others])
    await pool.execute(  # the town held the second case first, then it went to water
        "INSERT INTO case_handlings (case_id, department_id, first_round, last_round,"
        " assigned_at, released_at) VALUES ($1, $2, 1, 1, $3, $3), ($1, 'water', 2, 2, $3, NULL)",
        passed_on["case_id"], town, passed_on["received_at"],
    )  # fmt: skip
    await rollup.ensure_fresh(pool, settings.timezone)
    township = await _level_sums(pool, "township", settings.timezone)
    county = await _level_sums(pool, "county", settings.timezone)
    grassroots = await _level_sums(pool, "county", settings.timezone, "grassroots")

    put = await api.put(f"/api/v1/admin/departments/{town}", json={**body, "level": "county"},
                        headers=ADMIN)  # fmt: skip
    assert put.status_code == 200, put.text
    async with pool.acquire() as conn:
        assert await rollup.needs_refresh(conn, settings.timezone)
        assert not (await rollup.refresh(conn, settings.timezone)).full
    assert await _level_sums(pool, "township", settings.timezone) == (
        township[0] - 2, township[1] - 2)  # fmt: skip
    assert await _level_sums(pool, "county", settings.timezone) == (county[0] + 2, county[1] + 2)
    assert await _level_sums(pool, "county", settings.timezone, "grassroots") == (
        grassroots[0] + 1, grassroots[1] + 1)  # fmt: skip
    ranked = await queries.ranking(pool, LEVEL_DAY, LEVEL_DAY, level="county", min_cases=0)
    assert next(e["received"] for e in ranked["entries"] if e["department_id"] == town) == 2
    async with pool.acquire() as conn:  # seen: refreshes are quiet again
        assert not await rollup.needs_refresh(conn, settings.timezone)


async def test_a_deleted_case_is_no_longer_counted(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """Jiesu never deletes a case, but a hand-written DELETE (test data cleaned up, a case
    filed twice by mistake) must not leave its day counting it until a full rebuild."""
    day = date(2009, 5, 19)
    gone, kept = (case_row(local(day)) for _ in range(2))
    await insert_cases(pool, [gone, kept])
    await rollup.ensure_fresh(pool, settings.timezone)
    assert tuple(await pool.fetchrow(_DAY_FIGURES, day)) == (2, 2)
    await pool.execute("DELETE FROM cases WHERE case_id = $1", gone["case_id"])
    async with pool.acquire() as conn:
        assert await rollup.needs_refresh(conn, settings.timezone)
        assert not (await rollup.refresh(conn, settings.timezone)).full
        assert tuple(await conn.fetchrow(_DAY_FIGURES, day)) == (1, 1)
        assert not await rollup.needs_refresh(conn, settings.timezone)


async def test_a_truncate_of_the_cases_rebuilds_the_rollup(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """TRUNCATE fires no row trigger: it marks every day changed (migration 0030), and the
    next refresh rebuilds. Done in a transaction rolled back at the end (the session's other
    tests keep their cases): the refresh inside it sees the truncation, as it would after a
    commit."""
    await insert_cases(pool, [case_row(local(date(2009, 6, 2)))])
    await rollup.ensure_fresh(pool, settings.timezone)
    async with pool.acquire() as conn:
        undo = conn.transaction()
        await undo.start()
        try:
            await conn.execute("TRUNCATE cases CASCADE")
            assert await rollup.needs_refresh(conn, settings.timezone)
            assert (await rollup.refresh(conn, settings.timezone)).full
            assert await conn.fetchval("SELECT count(*) FROM case_daily_stats") == 0
        finally:
            await undo.rollback()


async def test_a_rebuild_asked_for_by_hand_keeps_the_answers_coming(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    """What docs/operations.md says to run after a change made with the triggers off: the
    mark a TRUNCATE leaves. The next refresh rebuilds; requests meanwhile keep their as_of."""
    await rollup.ensure_fresh(pool, settings.timezone)
    as_of = _as_of(await _indicators(api))
    await pool.execute("INSERT INTO case_stats_changes DEFAULT VALUES")
    assert _as_of(await _indicators(api)) == as_of is not None
    async with pool.acquire() as conn:
        assert await rollup.needs_refresh(conn, settings.timezone)
        assert (await rollup.refresh(conn, settings.timezone)).full
        assert not await rollup.needs_refresh(conn, settings.timezone)


async def test_a_level_change_that_commits_late_is_counted(
    pool: asyncpg.Pool, database_url: str, settings: Settings
) -> None:
    """A level change whose transaction is still open while a refresh runs is not in that
    refresh's snapshot: the refresh after its commit recomputes the department's days, however
    late it commits (the same rule as a case's write, migration 0028)."""
    town = f"h10-late-{uuid.uuid4().hex[:6]}"
    await pool.execute(
        "INSERT INTO departments (id, name, level) VALUES ($1, '迟改街道', 'township')", town
    )
    await insert_cases(pool, [case_row(local(LEVEL_DAY), department_id=town)])
    await rollup.ensure_fresh(pool, settings.timezone)
    county = await _level_sums(pool, "county", settings.timezone)
    late = await asyncpg.connect(database_url)
    try:
        async with late.transaction():
            await late.execute("UPDATE departments SET level = 'county' WHERE id = $1", town)
            async with pool.acquire() as conn:  # runs while the change is not committed
                await rollup.refresh(conn, settings.timezone)
        async with pool.acquire() as conn:
            assert await rollup.needs_refresh(conn, settings.timezone)
            await rollup.refresh(conn, settings.timezone)
        assert await _level_sums(pool, "county", settings.timezone) == (
            county[0] + 1, county[1] + 1)  # fmt: skip
    finally:
        await late.close()


def _replied_projection(case_id: str, town: str, rated: bool) -> CaseProjection:
    """A case of LEVEL_DAY routed to ``town`` and replied by it; ``rated``: then rated."""
    received = datetime.combine(LEVEL_DAY, time(9), UTC)
    staff = Actor(role=Role.DEPARTMENT, name="town-staff", department_id=town)
    replied = received + timedelta(hours=5)
    kinds: list[tuple[EventKind, Actor, dict[str, Any]]] = [
        (EventKind.RECEIVED, SYSTEM_ACTOR, {}),
        (EventKind.ROUTED, SYSTEM_ACTOR, {"department_id": town}),
        (EventKind.ACCEPTED, staff, {}),
        (EventKind.REPLIED, staff, {"outcome": "resolved"}),
    ]
    if rated:
        kinds.append((EventKind.RATED, SYSTEM_ACTOR, {"rating": "satisfied"}))
    events = [
        CaseEvent(seq=seq, kind=kind, at=replied if kind is EventKind.REPLIED
                  else received + timedelta(hours=seq), actor=actor, data=data)
        for seq, (kind, actor, data) in enumerate(kinds, 1)
    ]  # fmt: skip
    state = CaseState(
        case_id=case_id, status=Status.CLOSED if rated else Status.REPLIED, title="Level kept",
        category_id="garbage", grid_id="G-QH-01-01-1", address="幸福路12号",
        channel=Channel.HOTLINE, urgency=Urgency.GENERAL, received_at=received,
        department_id=town, rating=Rating.SATISFIED if rated else None,
        reply=Reply(outcome=ReplyOutcome.RESOLVED, text="Done", evidence=[], at=replied,
                    by=staff),
        closed_at=received + timedelta(days=1) if rated else None,
    )  # fmt: skip
    return CaseProjection(state=state, new_events=events, version=len(events))


async def test_the_level_a_case_was_handled_at_stays_after_a_level_change(
    pool: asyncpg.Pool
) -> None:
    """handled_level (基层 figures) is where the case was handled: the level of the department
    that replied, when it replied. The citizen's rating, projected after the town became
    county-level, and a rebuild of every case's handlings (jiesu backfill-handlings --all) keep
    it — they used to read the level anew."""
    town = f"h10-kept-{uuid.uuid4().hex[:6]}"
    case_id = f"KEPT-{uuid.uuid4().hex[:8]}"
    await pool.execute(
        "INSERT INTO departments (id, name, level) VALUES ($1, '守级街道', 'township')", town
    )
    levels = ("SELECT c.handled_level, h.handled_level FROM cases c"
              " JOIN case_handlings h ON h.case_id = c.case_id WHERE c.case_id = $1")  # fmt: skip
    projector = ProjectionActivities(pool)
    await projector.project_events(_replied_projection(case_id, town, rated=False))
    assert tuple(await pool.fetchrow(levels, case_id)) == ("township", "township")
    await pool.execute("UPDATE departments SET level = 'county' WHERE id = $1", town)
    await projector.project_events(_replied_projection(case_id, town, rated=True))
    assert await pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id) == "closed"
    assert tuple(await pool.fetchrow(levels, case_id)) == ("township", "township")
    await rebuild_handlings(pool, every=True)
    assert tuple(await pool.fetchrow(levels, case_id)) == ("township", "township")


async def test_a_completion_that_commits_late_is_not_hidden_by_a_kept_answer(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    """The kept answers' stamp had the accountability records as count / max(recorded_at) /
    max(completed_at). A completion is stamped now(), its transaction's start: one that began
    first and committed last (it waited on the record's lock while another record was
    completed) left the stamp as it was, and the ranking kept showing the record without its
    persons and decision until the next refresh (on a quiet day, until a case changed)."""
    day = date(2007, 5, 8)
    params = {"from": str(day), "to": str(day), "min_cases": "0"}
    case_id = f"late-completion-{uuid.uuid4().hex[:8]}"
    by = Actor(role=Role.SUPERVISOR, name="demo-supervisor")

    async def records() -> dict[int, list[str]]:
        response = await api.get("/api/v1/stats/ranking", params=params, headers=SUPERVISOR)
        assert response.status_code == 200, response.text
        market = next(e for e in response.json()["entries"] if e["department_id"] == "market")
        return {r["seq"]: r["persons"] for r in market["accountability"]}

    await insert_cases(pool, [case_row(local(day), department_id="market")])
    await rollup.ensure_fresh(pool, settings.timezone)
    await pool.executemany(
        "INSERT INTO accountability_records (case_id, seq, department_id, recorded_at)"
        " VALUES ($1, $2, 'market', $3)",
        [(case_id, seq, local(day, 12)) for seq in (1, 2)],
    )
    assert await records() == {1: [], 2: []}
    holder = await pool.acquire()
    try:
        locked = holder.transaction()
        await locked.start()
        await holder.execute(
            "SELECT 1 FROM accountability_records WHERE case_id = $1 AND seq = 2 FOR UPDATE",
            case_id,
        )
        first = asyncio.create_task(accountability.complete(pool, case_id, 2, ["li"], "诫勉", by))
        await eventually(lambda: _waiting_on(pool, holder))  # began, waits for the record
        await accountability.complete(pool, case_id, 1, ["wang"], "通报批评", by)
        assert await records() == {1: ["wang"], 2: []}  # kept under this stamp
        await locked.rollback()
    finally:
        await pool.release(holder)
    assert await asyncio.wait_for(first, timeout=30)
    assert await records() == {1: ["wang"], 2: ["li"]}
