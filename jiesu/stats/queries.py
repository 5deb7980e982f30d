"""Statistics queries (统计分析): indicator tables, the department ranking (考评排名) and the
periodic report snapshots (定期报告), all read from the daily rollup (jiesu.stats.rollup).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from jiesu.stats.evaluation import DEFAULT_RULES, ScoringRules, rank, score
from jiesu.stats.indicators import OVERDUE, Filter, GroupBy, evaluate
from jiesu.stats.reports import ReportKind, ReportSummary, period_containing
from jiesu.stats.rollup import (
    GRAIN_CLASS,
    GRAIN_DEPARTMENT,
    GRAIN_PLACE,
    MEASURE_NAMES,
    MONTHLY_GRAINS,
    attributed,
    choose_grain,
    covering_rows,
    handling_rows,
    measure_select,
    period_counted,
    refresh,
)

# --- indicator queries ----------------------------------------------------------------------

_BUCKETS = {
    GroupBy.DAY: "{day}",
    GroupBy.WEEK: "date_trunc('week', {day})::date",
    GroupBy.MONTH: "date_trunc('month', {day})::date",
}


def period_starts(start: date, end: date, group_by: GroupBy) -> list[date]:
    """The first day of every period that meets [start, end]."""
    first = bucket_of(start, group_by)
    out: list[date] = []
    current = first
    while current <= end:
        out.append(current)
        current = _next_bucket(current, group_by)
    return out


def bucket_of(day: date, group_by: GroupBy) -> date:
    if group_by is GroupBy.WEEK:
        return day - timedelta(days=day.weekday())
    if group_by is GroupBy.MONTH:
        return day.replace(day=1)
    return day


def _next_bucket(day: date, group_by: GroupBy) -> date:
    if group_by is GroupBy.WEEK:
        return day + timedelta(days=7)
    if group_by is GroupBy.MONTH:
        return (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return day + timedelta(days=1)


@dataclass(frozen=True)
class IndicatorQuery:
    start: date  # first local day included
    end: date  # last local day included
    group_by: GroupBy = GroupBy.DAY
    filters: Mapping[Filter, str] | None = None

    @property
    def equal(self) -> Mapping[Filter, str]:
        return self.filters or {}


class Args:
    """The arguments of a query being built: ``arg(value)`` adds one, returns its $n."""

    def __init__(self, *initial: Any) -> None:
        self.values: list[Any] = list(initial)

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def grain_rows(grain: int, start: date, end: date, arg: Args, by_month: bool = True) -> str:
    """The rows of ``grain`` that cover the days [start, end] (by month when it has months)."""
    months = by_month and grain in MONTHLY_GRAINS
    return covering_rows("case_daily_stats", grain, start, end, arg, months=months)


def rollup_sql(query: IndicatorQuery) -> tuple[str, list[Any]]:
    """Per-period measure sums from case_daily_stats, at the grain the filters need; by month,
    whole months are read from the month grain (a month row's day is its first day)."""
    grain = choose_grain(query.equal)
    arg = Args()
    rows = grain_rows(grain, query.start, query.end, arg, query.group_by is GroupBy.MONTH)
    where = [f"{f.value} = {arg(v)}" for f, v in query.equal.items()] or ["true"]
    bucket = _BUCKETS[query.group_by].format(day="day")
    sums = ", ".join(f"sum({m})::bigint AS {m}" for m in MEASURE_NAMES)
    sql = (
        f"SELECT {bucket} AS period, {sums} FROM ({rows}) s"
        f" WHERE {' AND '.join(where)} GROUP BY period ORDER BY period"
    )
    return sql, arg.values


def baseline_sql(query: IndicatorQuery, timezone: str) -> tuple[str, list[Any]]:
    """The same figures computed straight from the raw ``cases`` rows (the benchmark's
    baseline and the tests' cross-check); department figures from the handlings."""
    arg = Args(timezone)
    day = "(c.received_at AT TIME ZONE $1)::date"
    where = [
        f"c.received_at >= ({arg(query.start)}::date::timestamp AT TIME ZONE $1)",
        f"c.received_at < (({arg(query.end)}::date + 1)::timestamp AT TIME ZONE $1)",
    ]
    for f, v in query.equal.items():
        column = "d.level" if f is Filter.LEVEL else f"c.{f.value}"
        where.append(f"{column} = {arg(v)}")
    bucket = _BUCKETS[query.group_by].format(day=day)
    source = f"({handling_rows()})" if attributed(query.equal) else "cases"
    sql = (
        f"SELECT {bucket} AS period, {measure_select()}"
        f" FROM {source} c LEFT JOIN departments d ON d.id = c.department_id"
        f" WHERE {' AND '.join(where)} GROUP BY period ORDER BY period"
    )
    return sql, arg.values


async def measure_sums(
    conn: asyncpg.Connection | asyncpg.Pool, query: IndicatorQuery, *, timezone: str | None = None
) -> dict[date, dict[str, int]]:
    """Measure sums per period start (rollup; raw ``cases`` when ``timezone`` is given)."""
    sql, args = baseline_sql(query, timezone) if timezone else rollup_sql(query)
    rows = await conn.fetch(sql, *args)
    return {r["period"]: {m: int(r[m]) for m in MEASURE_NAMES} for r in rows}


def indicator_table(query: IndicatorQuery, sums: dict[date, dict[str, int]]) -> dict[str, Any]:
    """Totals and every period (empty periods included) as indicator values."""
    zero = dict.fromkeys(MEASURE_NAMES, 0)
    periods = []
    totals = dict(zero)
    for start in period_starts(query.start, query.end, query.group_by):
        period = sums.get(start, zero)
        for m in MEASURE_NAMES:
            totals[m] += period[m]
        periods.append({"period": start, **evaluate(period)})
    return {"totals": evaluate(totals), "periods": periods}


async def indicators(
    pool: asyncpg.Connection | asyncpg.Pool, query: IndicatorQuery
) -> dict[str, Any]:
    return indicator_table(query, await measure_sums(pool, query))


# --- department evaluation (考评) -----------------------------------------------------------


async def load_rules(conn: asyncpg.Connection | asyncpg.Pool) -> ScoringRules:
    stored = await conn.fetchval("SELECT rules FROM evaluation_rules WHERE id = 'default'")
    return ScoringRules.model_validate(stored) if stored else DEFAULT_RULES


async def save_rules(pool: asyncpg.Pool, rules: ScoringRules, by: str) -> None:
    await pool.execute(
        """
        INSERT INTO evaluation_rules (id, rules, updated_at, updated_by)
        VALUES ('default', $1, now(), $2)
        ON CONFLICT (id) DO UPDATE SET rules = excluded.rules, updated_at = now(),
            updated_by = excluded.updated_by
        """,
        rules.model_dump(mode="json"),
        by,
    )


# The departments' sums over a period (its whole months from the month grain, jiesu.stats.rollup),
# less the centre; {level}: one level or all.
_RANKING = """
SELECT s.department_id, d.name, d.level, {sums}
FROM ({rows}) s JOIN departments d ON d.id = s.department_id
WHERE d.level <> 'centre' AND ({level}::text IS NULL OR d.level = {level})
GROUP BY s.department_id, d.name, d.level
"""


def ranking_sql(start: date, end: date, level: str | None) -> tuple[str, list[Any]]:
    arg = Args()
    rows = grain_rows(GRAIN_DEPARTMENT, start, end, arg)
    sums = ", ".join(f"sum(s.{m})::bigint AS {m}" for m in MEASURE_NAMES)
    return _RANKING.format(sums=sums, rows=rows, level=arg(level)), arg.values


# 问责 records of the departments, dated (local days) in [$1, $2]
_ACCOUNTABILITY = """
SELECT department_id, case_id, seq, persons, reason, decision, ordered, recorded_at
FROM accountability_records
WHERE recorded_at >= ($1::date::timestamp AT TIME ZONE $3)
  AND recorded_at < (($2::date + 1)::timestamp AT TIME ZONE $3)
  AND department_id IS NOT NULL
ORDER BY recorded_at, case_id, seq
"""


async def _accountability(
    conn: asyncpg.Connection | asyncpg.Pool, start: date, end: date, timezone: str
) -> dict[str, list[dict[str, Any]]]:
    """Each department's 问责 records of the period: listed in its evaluation and counted."""
    records: dict[str, list[dict[str, Any]]] = {}
    for r in await conn.fetch(_ACCOUNTABILITY, start, end, timezone):
        item = dict(r)
        records.setdefault(item.pop("department_id"), []).append(item)
    return records


async def ranking(
    conn: asyncpg.Connection | asyncpg.Pool,
    start: date,
    end: date,
    *,
    level: str | None = None,
    rules: ScoringRules | None = None,
    min_cases: int | None = None,
    timezone: str = "UTC",
) -> dict[str, Any]:
    """考评排名: every department (not the centre) with cases received in [start, end], less
    its accountability records of the period."""
    rules = rules or await load_rules(conn)
    minimum = rules.min_cases if min_cases is None else min_cases
    sql, args = ranking_sql(start, end, level)
    rows = await conn.fetch(sql, *args)
    accountable = await _accountability(conn, start, end, timezone)
    entries = []
    for r in rows:
        values = evaluate({m: r[m] for m in MEASURE_NAMES})
        records = accountable.get(r["department_id"], [])
        entries.append({
            "department_id": r["department_id"],
            "department_name": r["name"],
            "level": r["level"],
            "received": values["received"],
            "accountability_records": len(records),
            "accountability": records,
            **score(rules, values, len(records)),
        })  # fmt: skip
    return {"rules": rules.model_dump(mode="json"), "min_cases": minimum,
            "entries": rank(entries, minimum)}


# --- reports (定期报告) ------------------------------------------------------------------------

TOP_N = 10
OVERDUE_LIST_LIMIT = 100
REPORT_READ_ATTEMPTS = 5
"""Snapshots a report tries before giving up for now (its activity is retried): each after a
refresh, a snapshot holding a case of the period written since is not read (produce_report)."""


# The most frequent categories (grain 2) or places (grain 3) of the period, with their names.
_TOP = """
SELECT s.{key}, coalesce(n.name, s.{key}) AS name,
    sum(s.received)::bigint AS received, sum(s.overdue)::bigint AS overdue
FROM case_daily_stats s LEFT JOIN {names} n ON n.id = s.{key}
WHERE s.grain = {grain} AND s.day BETWEEN $1 AND $2
GROUP BY s.{key}, n.name ORDER BY received DESC, s.{key} LIMIT $3
"""
_TOP_CATEGORIES = _TOP.format(key="category_id", names="categories", grain=GRAIN_CLASS)
_TOP_PLACES = _TOP.format(key="grid_id", names="areas", grain=GRAIN_PLACE)


async def _top(conn: asyncpg.Connection, sql: str, start: date, end: date) -> list[dict]:
    return [dict(r) for r in await conn.fetch(sql, start, end, TOP_N)]


async def _overdue_cases(
    conn: asyncpg.Connection, start: date, end: date, timezone: str
) -> list[dict]:
    # 超时量's own condition (the count beside this list is the rollup's sum of it)
    rows = await conn.fetch(
        f"""
        SELECT c.case_id, c.title, c.status, c.department_id, d.name AS department_name,
            c.category_id, c.grid_id, c.received_at, c.finish_deadline, c.replied_at
        FROM cases c LEFT JOIN departments d ON d.id = c.department_id
        WHERE c.received_at >= ($1::date::timestamp AT TIME ZONE $3)
            AND c.received_at < (($2::date + 1)::timestamp AT TIME ZONE $3)
            AND {OVERDUE.sql}
        ORDER BY c.finish_deadline, c.case_id LIMIT $4
        """,
        start, end, timezone, OVERDUE_LIST_LIMIT,
    )  # fmt: skip
    return [dict(r) for r in rows]


async def build_report(
    conn: asyncpg.Connection, kind: ReportKind, start: date, end: date, timezone: str
) -> dict[str, Any]:
    group_by = GroupBy.DAY
    table = indicator_table(
        IndicatorQuery(start, end, group_by), await measure_sums(conn, IndicatorQuery(start, end))
    )
    overdue = await _overdue_cases(conn, start, end, timezone)
    return {
        "kind": kind.value,
        "period_start": start,
        "period_end": end,
        "timezone": timezone,
        "indicators": table,
        "top_categories": await _top(conn, _TOP_CATEGORIES, start, end),
        "top_places": await _top(conn, _TOP_PLACES, start, end),
        "overdue_cases": {"count": table["totals"]["overdue"], "listed": overdue},
        "ranking": (await ranking(conn, start, end, timezone=timezone))["entries"],
    }


async def store_report(
    conn: asyncpg.Connection, kind: ReportKind, start: date, end: date, content: dict[str, Any],
    produced_by: str | None = None,
) -> ReportSummary:
    """Insert, or replace the period's snapshot (never a second row for a period). A new run
    is a new generation; the same run again (``produced_by``: a retried activity whose first
    attempt committed) replaces the content and keeps the generation."""
    row = await conn.fetchrow(
        """
        INSERT INTO report_snapshots (kind, period_start, period_end, generated_at, content,
                                      produced_by)
        VALUES ($1, $2, $3, now(), $4, $5)
        ON CONFLICT (kind, period_start) DO UPDATE SET period_end = excluded.period_end,
            generated_at = excluded.generated_at, content = excluded.content,
            generation = report_snapshots.generation
                + CASE WHEN excluded.produced_by = report_snapshots.produced_by THEN 0 ELSE 1 END,
            produced_by = excluded.produced_by
        RETURNING generated_at, generation
        """,
        kind.value, start, end, _jsonable(content), produced_by,
    )  # fmt: skip
    return ReportSummary(
        kind=kind, period_start=start, period_end=end,
        generated_at=row["generated_at"], generation=row["generation"],
    )  # fmt: skip


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


async def produce_report(
    pool: asyncpg.Pool, kind: ReportKind, start: date, end: date, timezone: str,
    produced_by: str | None = None, *, refreshed: bool = False,
) -> ReportSummary:
    """Build and store the period's report, the rollup brought up to date first (unless
    ``refreshed``: done a moment ago, by the report before it). The report is read in one
    snapshot: a refresh committing while it is read is in none of its sections, not in some.
    And in a snapshot whose cases of the period the rollup has counted: the report reads both
    (its 超时量 from the rollup, its overdue cases from the cases), and a case written between
    the refresh and the read (a breach) was listed under a count without it. Such a snapshot
    is left, the rollup refreshed and the report read again."""
    async with pool.acquire() as conn:
        for attempt in range(REPORT_READ_ATTEMPTS):
            if attempt or not refreshed:
                await refresh(conn, timezone)
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                if await period_counted(conn, timezone, start, end):
                    content = await build_report(conn, kind, start, end, timezone)
                    break
        else:  # the period's cases change faster than the rollup is refreshed: retried later
            raise RuntimeError(f"the cases of {start}..{end} kept changing while the"
                               f" {kind.value} report was read ({REPORT_READ_ATTEMPTS} tries)")
        return await store_report(conn, kind, start, end, content, produced_by)


async def missing_periods(
    pool: asyncpg.Pool, kind: ReportKind, before: date, count: int
) -> list[tuple[date, date]]:
    """The periods of ``kind`` among the ``count`` before the one that starts on ``before``
    that have no snapshot, oldest first — from the kind's first snapshot on: an installation
    is not back-filled to before its first report."""
    periods: list[tuple[date, date]] = []
    start = before
    for _ in range(count):
        start, end = period_containing(kind, start - timedelta(days=1))
        periods.append((start, end))
    row = await pool.fetchrow(
        "SELECT min(period_start) AS first,"
        " array_agg(period_start) FILTER (WHERE period_start >= $2) AS have"
        " FROM report_snapshots WHERE kind = $1",
        kind.value, periods[-1][0],
    )  # fmt: skip
    first, have = row["first"], set(row["have"] or ())
    if first is None:
        return []
    return [p for p in reversed(periods) if p[0] >= first and p[0] not in have]
