"""The daily rollup (``case_daily_stats``) and its refresh.

The rollup holds, per local day of receipt and at seven grains (see
jiesu/migrations/0002_statistics.sql, 0014_fair_attribution.sql and 0019_rollup_grains.sql),
the sum of every measure in jiesu.stats.indicators.MEASURES, and per calendar month at the
grains read without an index (MONTHLY_GRAINS); the grains with a department
count handlings (fair attribution, jiesu.stats.attribution), the others cases. It is
refreshed incrementally: the days of the cases changed since the previous refresh are
recomputed as a whole. A change is found by the transaction that wrote it, not by a time
(migration 0028): every write of a case row records its transaction's id
(``cases.changed_xid``), each refresh keeps the snapshot it read the changes with, and the next
one takes the rows whose writer that snapshot did not see — however late that writer committed
(a projection that waited on a row lock, a slow disk). No request pays for a refresh: the
worker's background refresher (jiesu.stats.refresher) keeps the rollup current every few
seconds, and the API answers from the rollup as it stands, with the time it is current as of
(``as_of``). The report workflow refreshes before it takes a snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from jiesu.stats import people_rollup
from jiesu.stats.indicators import MEASURES, Filter
from jiesu.stats.people_rollup import MONTH

_REFRESH_LOCK = 0x4A535453  # "JSTS"


def _unseen(snapshot: str) -> str:
    """The cases (or ``case_stats_changes`` rows) written by transactions that ``snapshot``
    (the previous refresh's) did not see: committed since, or still running then. Those of
    transactions older than its oldest running one are all visible to it; the index on
    changed_xid finds the others. A transaction that commits late keeps its id: it is found
    whenever it commits, however long after it began (no time margin to outlast)."""
    return (f"changed_xid >= pg_snapshot_xmin({snapshot})"
            f" AND NOT pg_visible_in_snapshot(changed_xid, {snapshot})")  # fmt: skip


# The days to recompute and the snapshot they were read with, in one statement: under READ
# COMMITTED each statement has its own snapshot, and the one kept must be the one that read.
# Besides the cases written, the changes no case write shows (migration 0030,
# case_stats_changes): a deleted case's day, the departments whose level changed (their days
# are read by _DEPARTMENT_DAYS, only when there is one) and a TRUNCATE of cases (a rebuild).
_CHANGED_DAYS = f"""
WITH changes AS (SELECT * FROM case_stats_changes WHERE {_unseen("$2")})
SELECT pg_current_snapshot() AS snapshot,
    coalesce((SELECT array_agg(DISTINCT (received_at AT TIME ZONE $1)::date) FROM (
        SELECT received_at FROM cases WHERE {_unseen("$2")}
        UNION ALL
        SELECT received_at FROM changes WHERE received_at IS NOT NULL) c), '{{}}') AS days,
    coalesce((SELECT array_agg(DISTINCT department_id) FROM changes
              WHERE department_id IS NOT NULL), '{{}}') AS departments,
    EXISTS (SELECT 1 FROM changes WHERE department_id IS NULL AND received_at IS NULL)
        AS truncated
"""
# The days of the cases a department held (its handlings) or holds (a case projected before
# handlings existed has none): $2 the departments. Read in a statement after _CHANGED_DAYS:
# its snapshot sees every change that one saw (a change seen by neither is the next
# refresh's), and the departments' levels the recomputation reads are as new.
_DEPARTMENT_DAYS = """
SELECT coalesce(array_agg(DISTINCT (received_at AT TIME ZONE $1)::date), '{}') FROM (
    SELECT c.received_at FROM case_handlings h JOIN cases c ON c.case_id = h.case_id
    WHERE h.department_id = ANY($2)
    UNION ALL
    SELECT received_at FROM cases WHERE department_id = ANY($2)) c
"""
# The rows a refresh has seen: older than its snapshot's oldest running transaction.
_PRUNE_CHANGES = "DELETE FROM case_stats_changes WHERE changed_xid < pg_snapshot_xmin($1)"


def _restored(snapshot: str) -> str:
    """``snapshot`` is newer than any now: the database was restored from a logical dump
    (pg_dump) into another cluster, whose transaction ids start lower again. Its ids mean
    nothing here: new changes would pass for seen. Rebuild (which re-stamps, _RESTAMP)."""
    return f"pg_snapshot_xmax({snapshot}) > pg_snapshot_xmax(pg_current_snapshot())"


_STATE = f"""
SELECT timezone, seen_snapshot, {_restored("seen_snapshot")} AS restored FROM case_stats_refresh
"""
# Rows stamped by the transactions of another cluster (see _restored), later than any here,
# would pass for unseen at every refresh: stamped by the rebuild instead (their days are then
# recomputed once more, by the next refresh). Normally there is none: one index probe.
_RESTAMP = [
    f"UPDATE {table} SET changed_xid = pg_current_xact_id()"
    " WHERE changed_xid > pg_current_xact_id()"
    for table in ("cases", "case_stats_changes")
]

MEASURE_NAMES: tuple[str, ...] = tuple(m.name for m in MEASURES)
_DIMENSIONS = ("department_id", "level", "category_id", "grid_id", "channel", "urgency")
_DEPARTMENT_DIMENSIONS = frozenset({"department_id", "level"})

# Grains of case_daily_stats. Those with a department dimension count handlings (the case as
# each department that held it saw it, jiesu.stats.attribution: fair attribution); the others
# count cases, once each.
GRAIN_TOTAL, GRAIN_DEPARTMENT, GRAIN_CLASS, GRAIN_DETAIL = 0, 1, 2, 3
GRAIN_PLACE, GRAIN_LEVEL = 5, 6
# Department × class without the grid (migration 0019): a department's figures for a category,
# channel or urgency read ~100 rows a day instead of the detail grain's ~500 (one per grid).
GRAIN_DEPARTMENT_CLASS = 7
_CASE_GRAINS: dict[int, tuple[str, ...]] = {
    GRAIN_TOTAL: (),
    GRAIN_CLASS: ("category_id", "channel", "urgency"),
    GRAIN_PLACE: ("category_id", "grid_id", "channel", "urgency"),
}
_HANDLING_GRAINS: dict[int, tuple[str, ...]] = {
    GRAIN_DEPARTMENT: ("department_id", "level"),
    GRAIN_LEVEL: ("level", "category_id", "channel", "urgency"),
    GRAIN_DEPARTMENT_CLASS: ("department_id", "level", "category_id", "channel", "urgency"),
    GRAIN_DETAIL: _DIMENSIONS,
}

# Calendar-month rows (``day`` = the month's first day) of the day grains read without an
# index on their filter (migrations 0012, 0019): grain g's months are grain g + MONTH, summed
# from its days by every refresh. A query by month, and the ranking, read the whole months of
# their period from them and the days of the partial months at its ends from the day grain:
# a year is ~12 rows per key instead of ~365. The grid grains are not kept by month: a grid's
# rows are found by index, and one per grid and month would be nearly as many as by day.
MONTHLY_GRAINS = (GRAIN_TOTAL, GRAIN_DEPARTMENT, GRAIN_CLASS, GRAIN_LEVEL)
GRAIN_DEPARTMENT_MONTH = GRAIN_DEPARTMENT + MONTH


def whole_months(start: date, end: date) -> tuple[date, date]:
    """[first, stop): the calendar months lying wholly inside [start, end]; first == stop when
    there is none."""
    first = start if start.day == 1 else _next_month(start)
    stop = end.replace(day=1)
    if _next_month(end) == end + timedelta(days=1):  # end is a month's last day
        stop = _next_month(end)
    return (first, stop) if first < stop else (start, start)


def _next_month(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


def covering_rows(
    table: str, grain: int, start: date, end: date, arg: Callable[[Any], str], *, months: bool
) -> str:
    """The rows of a day ``grain`` of ``table`` that cover the days [start, end]: with
    ``months``, the whole calendar months from its month grain (grain + MONTH) and only the
    other days from the day rows. ``arg`` adds a query argument and returns its placeholder."""
    day_rows = f"grain = {grain} AND day >= {arg(start)} AND day <= {arg(end)}"
    if not months:
        return f"SELECT * FROM {table} WHERE {day_rows}"
    first, stop = (arg(d) for d in whole_months(start, end))
    return f"""
    SELECT * FROM {table} WHERE grain = {grain + MONTH} AND day >= {first} AND day < {stop}
    UNION ALL
    SELECT * FROM {table} WHERE {day_rows} AND NOT (day >= {first} AND day < {stop})"""


def _grouping_mask(grouped: tuple[str, ...], dims: tuple[str, ...]) -> int:
    """The GROUPING(*grouped) bitmask of a grain (a bit is 1 when rolled up)."""
    return sum(1 << (len(grouped) - 1 - i) for i, d in enumerate(grouped) if d not in dims)


def attributed(filters: Mapping[Filter, str]) -> bool:
    """A query about departments (a department or level filter) counts handlings."""
    return bool({f.value for f in filters} & _DEPARTMENT_DIMENSIONS)


def choose_grain(filters: Mapping[Filter, str]) -> int:
    """The coarsest grain that still has every filtered dimension."""
    wanted = {f.value for f in filters}
    grains = _HANDLING_GRAINS if attributed(filters) else _CASE_GRAINS
    return next(grain for grain, dims in grains.items() if wanted <= set(dims))


def measure_select(prefix: str = "") -> str:
    """`count(*) FILTER (WHERE <measure>) AS <name>` for every measure, over cases `c`."""
    return ",\n    ".join(
        f"count(*) FILTER (WHERE {m.sql}) AS {prefix}{m.name}" for m in MEASURES
    )


_HANDLING_COLUMNS = (
    "department_id", "accept_deadline", "contact_deadline", "finish_deadline", "accepted_at",
    "contacted_at", "replied_at", "rating", "resolved", "handled_level", "breaches",
    "repeat_count", "return_count", "extension_count", "rejected_return_count",
)  # fmt: skip
"""The columns a handling replaces in its case's row."""


def handling_rows(where: str = "") -> str:
    """The rows department figures count, as ``cases`` rows: one per handling (its columns
    over its case's), and the case itself for a case projected before handlings existed.
    ``where`` is a join that restricts the cases (alias ``c``)."""
    case_columns = ", ".join(
        f"h.{col}" if col in _HANDLING_COLUMNS else f"c.{col}" for col in _CASE_COLUMNS
    )
    return f"""
    SELECT {case_columns} FROM cases c JOIN case_handlings h ON h.case_id = c.case_id {where}
    UNION ALL
    SELECT {", ".join(f"c.{col}" for col in _CASE_COLUMNS)} FROM cases c {where}
        WHERE NOT EXISTS (SELECT 1 FROM case_handlings h WHERE h.case_id = c.case_id)"""


_CASE_COLUMNS = (
    "case_id", "status", "category_id", "grid_id", "channel", "urgency", "received_at",
    "answered_directly", "solved_in_grid", *_HANDLING_COLUMNS,
)  # fmt: skip


def _rollup_insert(source: str, grains: dict[int, tuple[str, ...]]) -> str:
    grouped = tuple(d for d in _DIMENSIONS if any(d in dims for dims in grains.values()))
    grain_case = " ".join(
        f"WHEN {_grouping_mask(grouped, dims)} THEN {grain}" for grain, dims in grains.items()
    )
    sets = ", ".join("(" + ", ".join(("day", *dims)) + ")" for dims in grains.values())
    columns = ", ".join(d if d in grouped else f"NULL AS {d}" for d in _DIMENSIONS)
    return f"""
INSERT INTO case_daily_stats (grain, day, {", ".join(_DIMENSIONS)}, {", ".join(MEASURE_NAMES)})
SELECT CASE GROUPING({", ".join(grouped)}) {grain_case} END,
    day, {columns},
    {measure_select()}
FROM (
    SELECT c.*, (c.received_at AT TIME ZONE $1)::date AS day, d.level
    FROM ({source}) c LEFT JOIN departments d ON d.id = c.department_id
) c
GROUP BY GROUPING SETS ({sets})
ORDER BY 1, 2  -- a grain's rows of a day together on disk: a year's read touches fewer pages
"""


def _rebuild(where: str = "") -> list[str]:
    cases = f"SELECT {', '.join(f'c.{col}' for col in _CASE_COLUMNS)} FROM cases c {where}"
    return [
        _rollup_insert(cases, _CASE_GRAINS),
        _rollup_insert(handling_rows(where), _HANDLING_GRAINS),
    ]


# $2: the days to recompute; each day's cases are found through cases_received. [$3, $4): from
# the first day's start to the last day's end, as plain values: the planner sees how few cases
# that is (a refresh recomputes a few recent days) and looks their handlings up by case instead
# of scanning them all (5 s instead of ~0.1 s at 1,000,000 cases).
_DAYS = (
    "JOIN unnest($2::date[]) AS dd(d) ON c.received_at >= (dd.d::timestamp AT TIME ZONE $1)"
    " AND c.received_at < ((dd.d + 1)::timestamp AT TIME ZONE $1)"
    " AND c.received_at >= $3 AND c.received_at < $4"
)
_REBUILD = [*_rebuild(), people_rollup.days_insert("")]
_REBUILD_DAYS = [*_rebuild(_DAYS), people_rollup.days_insert(_DAYS)]


def _months_insert(where: str) -> str:
    sums = ", ".join(f"sum(s.{m})" for m in MEASURE_NAMES)
    return f"""
INSERT INTO case_daily_stats (grain, day, {", ".join(_DIMENSIONS)}, {", ".join(MEASURE_NAMES)})
SELECT s.grain + {MONTH}, date_trunc('month', s.day)::date,
    {", ".join(f"s.{d}" for d in _DIMENSIONS)}, {sums}
FROM case_daily_stats s {where} AND s.grain IN ({", ".join(map(str, MONTHLY_GRAINS))})
GROUP BY 1, 2, {", ".join(str(3 + i) for i in range(len(_DIMENSIONS)))}
ORDER BY 1, 2
"""


_MONTH_ROWS = f"grain >= {MONTH}"
_MONTHS_ALL = _months_insert("WHERE true")
# $1: the months (their first days) to recompute.
_MONTHS_SOME = _months_insert(
    "JOIN unnest($1::date[]) AS m(first) ON s.day >= m.first"
    " AND s.day < (m.first + interval '1 month')::date WHERE true"
)


_PEOPLE_MONTHS_ALL = people_rollup.months_insert("WHERE true")
_PEOPLE_MONTHS_SOME = people_rollup.months_insert(
    "JOIN unnest($1::date[]) AS m(first) ON s.day >= m.first"
    " AND s.day < (m.first + interval '1 month')::date WHERE true"
)
_PEOPLE_MONTH_ROWS = f"grain = {people_rollup.MONTH_GRAIN}"


async def _refresh_months(conn: asyncpg.Connection, days: list[date] | None) -> None:
    """Recompute the month rows of the months of ``days`` (all months when None)."""
    if days is None:
        await conn.execute(f"DELETE FROM case_daily_stats WHERE {_MONTH_ROWS}")
        await conn.execute(f"DELETE FROM case_people_stats WHERE {_PEOPLE_MONTH_ROWS}")
        await conn.execute(_MONTHS_ALL)
        await conn.execute(_PEOPLE_MONTHS_ALL)
        return
    months = sorted({d.replace(day=1) for d in days})
    for table, rows in (("case_daily_stats", _MONTH_ROWS),
                        ("case_people_stats", _PEOPLE_MONTH_ROWS)):  # fmt: skip
        await conn.execute(f"DELETE FROM {table} WHERE {rows} AND day = ANY($1)", months)
    await conn.execute(_MONTHS_SOME, months)
    await conn.execute(_PEOPLE_MONTHS_SOME, months)


@dataclass(frozen=True)
class RefreshResult:
    full: bool
    days: int  # days recomputed (all of them on a full rebuild)


async def refresh(conn: asyncpg.Connection, timezone: str, *, full: bool = False) -> RefreshResult:
    """Bring case_daily_stats up to date (incrementally unless ``full`` or the time zone
    changed). Serialised by an advisory lock (waits for a refresh under way); idempotent."""
    result = await _refresh(conn, timezone, full=full, wait=True)
    assert result is not None  # waiting for the lock always gets it
    return result


async def try_refresh(conn: asyncpg.Connection, timezone: str) -> RefreshResult | None:
    """``refresh``, unless another connection (another process) is refreshing right now: then
    None at once — single flight: a second refresher would only redo the same work."""
    return await _refresh(conn, timezone, full=False, wait=False)


async def _refresh(
    conn: asyncpg.Connection, timezone: str, *, full: bool, wait: bool
) -> RefreshResult | None:
    # One transaction: a process that dies mid-refresh leaves the previous rollup in place
    # and its transaction-level lock is released with its connection.
    async with conn.transaction():
        if wait:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _REFRESH_LOCK)
        elif not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _REFRESH_LOCK):
            return None
        state = await conn.fetchrow(_STATE)
        started: datetime = await conn.fetchval("SELECT now()")
        changed, days = None, []
        if not (full or state is None or state["timezone"] != timezone or state["restored"]):
            # plans for these values, not a generic plan that cannot know how few they are
            # (the changed cases by their snapshot, and their days)
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            changed = await conn.fetchrow(_CHANGED_DAYS, timezone, state["seen_snapshot"])
            days = changed["days"]
            if changed["departments"]:  # their level changed: every day they have a case of
                more = await conn.fetchval(_DEPARTMENT_DAYS, timezone, changed["departments"])
                days = sorted({*days, *more})
        if (changed is None or changed["truncated"]  # a TRUNCATE of cases: every day changed
                # a department's days can be most of them, and day by day they cost more
                # than a rebuild (docs/statistics.md)
                or (changed["departments"] and len(days) > await _day_count(conn) // 2)):
            for sql in _RESTAMP:
                await conn.execute(sql)
            # taken before the rebuild reads the cases (each statement a later snapshot): what
            # it saw, the rebuild saw; the rest is recomputed by the next refresh
            snapshot = await conn.fetchval("SELECT pg_current_snapshot()")
            await conn.execute("DELETE FROM case_daily_stats")
            await conn.execute("DELETE FROM case_people_stats")
            for sql in _REBUILD:
                await conn.execute(sql, timezone)
            await _refresh_months(conn, None)
            result = RefreshResult(full=True, days=await _day_count(conn))
        else:
            snapshot = changed["snapshot"]
            if days:
                for table in ("case_daily_stats", "case_people_stats"):
                    await conn.execute(
                        f"DELETE FROM {table} WHERE day = ANY($1) AND grain < {MONTH}", days
                    )
                for run in _runs(days):  # a day changed long ago is a run of its own
                    for sql in _REBUILD_DAYS:
                        await conn.execute(sql, timezone, run, *_span(run, timezone))
                await _refresh_months(conn, days)
            result = RefreshResult(full=False, days=len(days))
        await conn.execute(_PRUNE_CHANGES, snapshot)
        await conn.execute(
            """
            INSERT INTO case_stats_refresh (id, timezone, refreshed_at, seen_snapshot)
            VALUES (true, $1, $2, $3)
            ON CONFLICT (id) DO UPDATE SET timezone = excluded.timezone,
                refreshed_at = excluded.refreshed_at, seen_snapshot = excluded.seen_snapshot
            """,
            timezone,
            started,
            snapshot,
        )
        return result


def _runs(days: list[date]) -> list[list[date]]:
    """The days in runs of consecutive days."""
    runs: list[list[date]] = []
    for day in sorted(days):
        if runs and runs[-1][-1] + timedelta(days=1) == day:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def _span(days: list[date], timezone: str) -> tuple[datetime, datetime]:
    """[start of the first day, end of the last day) in ``timezone``."""
    zone = ZoneInfo(timezone)
    first, last = min(days), max(days)
    return (datetime.combine(first, time(), zone),
            datetime.combine(last + timedelta(days=1), time(), zone))  # fmt: skip


async def _day_count(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM case_daily_stats WHERE grain = 0")


# Ordered and limited, not EXISTS (which drops both): the planner cannot know the snapshot's
# oldest transaction when it plans, and for a mere EXISTS it would bet on a sequential scan of
# every case stopping early (0.13 s at 1,000,000 cases, every turn, when nothing changed);
# "the newest first" only the index on changed_xid gives without reading everything.
_NEEDS_REFRESH = f"""
SELECT r.timezone IS DISTINCT FROM $1 OR {_restored("r.seen_snapshot")}
    OR (SELECT changed_xid FROM cases WHERE {_unseen("r.seen_snapshot")}
        ORDER BY changed_xid DESC LIMIT 1) IS NOT NULL
    OR EXISTS (SELECT 1 FROM case_stats_changes WHERE {_unseen("r.seen_snapshot")})
FROM (SELECT NULL) AS one LEFT JOIN case_stats_refresh r ON true
"""


async def needs_refresh(conn: asyncpg.Connection, timezone: str) -> bool:
    """A case changed that the last refresh did not see (however late it committed), or
    none was made for this time zone (or this cluster)."""
    return bool(await conn.fetchval(_NEEDS_REFRESH, timezone))


# _NEEDS_REFRESH for the cases received on the local days [$2, $3] (any change no case write
# shows, case_stats_changes, still counts: it may move any day), in the caller's snapshot.
_PERIOD_UNCOUNTED = f"""
SELECT r.timezone IS DISTINCT FROM $1 OR {_restored("r.seen_snapshot")}
    OR (SELECT changed_xid FROM cases WHERE {_unseen("r.seen_snapshot")}
            AND received_at >= ($2::date::timestamp AT TIME ZONE $1)
            AND received_at < (($3::date + 1)::timestamp AT TIME ZONE $1)
        ORDER BY changed_xid DESC LIMIT 1) IS NOT NULL
    OR EXISTS (SELECT 1 FROM case_stats_changes WHERE {_unseen("r.seen_snapshot")})
FROM (SELECT NULL) AS one LEFT JOIN case_stats_refresh r ON true
"""


async def period_counted(conn: asyncpg.Connection, timezone: str, first: date, last: date) -> bool:
    """Has the rollup counted every case received on the local days [first, last] as the
    connection's snapshot holds it? A reader of the rollup and of the cases side by side (a
    report: its 超时量 and its list of overdue cases) reads one state only then."""
    return not await conn.fetchval(_PERIOD_UNCOUNTED, timezone, first, last)


async def ensure_fresh(pool: asyncpg.Pool, timezone: str) -> datetime:
    """Refresh now when needed, waiting for it; return the time the figures are current as of.
    For callers that must see every change (tests, benchmarks) — never on a request."""
    async with pool.acquire() as conn:
        if await needs_refresh(conn, timezone):
            await refresh(conn, timezone)
        return await conn.fetchval("SELECT refreshed_at FROM case_stats_refresh")


async def as_of(pool: asyncpg.Pool, timezone: str) -> datetime | None:
    """The time the rollup is current as of, read only (what a request may do); None while it
    has not been built yet for this time zone (the refresher builds it at the worker's start)."""
    return await pool.fetchval(
        "SELECT refreshed_at FROM case_stats_refresh WHERE timezone = $1", timezone
    )
