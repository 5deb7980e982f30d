"""The counts of the console's boards (派单督办) and of 审计查询, over N generated cases.

    python -m bench.boards [--cases 200000] [--records 200000] [--repeat 5] [--dsn ...]
                           [--audit-only]

Starts its own embedded PostgreSQL (unless ``--dsn``), migrates it, loads the demo data and
generates N cases over 365 days (bench/generator.py). The generator writes no closing or
extension events and no accountability records, so this adds them by SQL as a real county
has them: a ``closed`` event for every closed case (the rows of ``case_events_extension`` the
old 延期待审 query read, one per case ever closed), an ``extension_requested`` event for 2 % of
the open cases, 10 % of the assigned cases put back in the centre's queue (the generator
has none there), and ``--records`` accountability records (1 % without persons or decision).
Then, for each board, its count and its list (the exact SQL of api/console/supervision.py and
jiesu.readmodel.oversight), the old 延期待审 list for comparison, and 审计查询's count and
first and last pages: best of ``--repeat`` runs and the plan's nodes from EXPLAIN (ANALYZE,
BUFFERS); each twice, with migration 0043's indexes and without them (dropped in a
transaction rolled back). Prints a markdown table and the plans. Not a pass/fail test.

审计查询's deepest pages are measured both ways: by offset (its paging before keyset) and by
cursor (api.cases.search's ``after`` from the row before the page, and the count of the rows
before it that gives "本页第 a–b 件", ``api.cases.count``'s ``before``). ``--audit-only``: only
审计查询's queries, and no pass without 0043 (at 1,000,000 cases the boards are not the point).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from api.console import supervision
from bench import generator
from bench.harness import bench_database
from jiesu.ops.bootstrap import prepare_database
from jiesu.readmodel import oversight

INDEXES_0043 = ("accountability_records_incomplete", "cases_on_ladder", "cases_category")
# 延期待审 before jiesu.readmodel.boards: every case's latest ending event first
_OLD_EXTENSIONS = """
SELECT c.case_id FROM (
    SELECT DISTINCT ON (case_id) case_id, kind, at, actor, data FROM case_events
    WHERE kind IN ('extension_requested', 'extension_decided', 'reassigned', 'closed')
    ORDER BY case_id, seq DESC
) e JOIN cases c USING (case_id)
WHERE e.kind = 'extension_requested' AND c.status IN ('assigned', 'handling')
  AND ($1::text IS NULL OR c.department_id = $1)
ORDER BY (e.data->>'decision_due')::timestamptz NULLS LAST, e.at, c.case_id LIMIT $2
"""
_EVENTS = """
INSERT INTO case_events (case_id, seq, kind, at, actor, data)
SELECT case_id, 100, 'closed', closed_at, '{}', '{}' FROM cases WHERE status = 'closed';
INSERT INTO case_events (case_id, seq, kind, at, actor, data)
SELECT case_id, 101, 'extension_requested', received_at + interval '1 day', '{}',
       jsonb_build_object('decision_due', received_at + interval '2 days')
FROM cases WHERE status IN ('assigned', 'handling') AND hashtext(case_id) % 50 = 0;
UPDATE cases SET status = 'dispatching', department_id = NULL
WHERE status = 'assigned' AND hashtext(case_id) % 10 = 1;
"""
_RECORDS = """
INSERT INTO accountability_records (case_id, seq, department_id, persons, reason, decision,
                                    recorded_at)
SELECT 'AR' || n, 1, 'water',
       CASE WHEN n % 100 = 0 THEN '{}'::text[] ELSE ARRAY['某人'] END, 'ladder',
       CASE WHEN n % 100 = 0 THEN '' ELSE '通报批评' END,
       now() - n * interval '1 minute'
FROM generate_series(1, $1) n
"""


Query = tuple[str, str, tuple[Any, ...]]
_FILTERS = (("all", "", ()), ("category", " WHERE category_id = $1", ("garbage",)))
# api.cases.search's ``after`` (the list's order, the tie turned), and api.cases.count's
# ``before`` (there: "case_id <" from the page's first row; here "<=" from the row above it,
# which is the same rows and the same reading)
_AFTER = "received_at <= ${x} AND (received_at < ${x} OR case_id > ${y})"
_BEFORE = "received_at >= ${x} AND (received_at > ${x} OR case_id <= ${y})"
_ABOVE = "received_at >= ${x} AND (received_at > ${x} OR case_id < ${y})"


def _boards(now: datetime) -> list[Query]:
    boards = [("待派单队列", supervision.QUEUE, ()), ("超时工单", supervision.OVERDUE, (now,)),
              ("督办中的工单", supervision.LADDER, ()), ("问责待完善", supervision.INCOMPLETE, ()),
              ("延期待审", oversight.EXTENSIONS, (None,))]  # fmt: skip
    out = []
    for name, board, args in boards:
        out.append((f"{name} count", board.count_sql, args))
        out.append((f"{name} list", board.rows_sql, (*args, 200)))
    out.append(("延期待审 list (old)", _OLD_EXTENSIONS, (None, 200)))
    return out


Deep = list[tuple[int, tuple[datetime, str]]]
"""A filter's deep pages: the rows above each, and the position of the row just above it."""


def _audit(deep_pages: list[Deep]) -> list[Query]:
    out: list[Query] = []
    for label, where, args in [
        ("审计查询 count: all", "", ()),
        ("审计查询 count: status", " WHERE status = $1", ("handling",)),
        ("审计查询 count: department", " WHERE department_id = $1", ("water",)),
        ("审计查询 count: category", " WHERE category_id = $1", ("garbage",)),
        ("审计查询 count: case", " WHERE case_id = $1", ("GX-none",)),
    ]:  # api.cases.count's SQL for each filter of the search form
        out.append((label, f"SELECT count(*) FROM cases{where}", args))
    for (label, where, args), deep in zip(_FILTERS, deep_pages, strict=True):
        # its first page and its last by offset (the offset a parameter, as api.cases.search
        # passes it); then by cursor from the row above it, with the count of the rows above
        # the page (api.cases.count's ``before``: the page's "第 a–b 件") — and by cursor the
        # search's true last page, which offset paging (≤ page 10,000) does not reach
        n = len(args) + 1
        page = f"SELECT * FROM cases{where} ORDER BY received_at DESC, case_id LIMIT 50 OFFSET ${n}"
        out.append((f"审计查询 page 1: {label}", page, (*args, 0)))
        last = deep[0][0]
        out.append((f"审计查询 last page: {label} (offset {last:,})", page, (*args, last)))
        joiner = " AND " if where else " WHERE "
        after = where + joiner + _AFTER.format(x=n, y=n + 1)
        by_cursor = f"SELECT * FROM cases{after} ORDER BY received_at DESC, case_id LIMIT 50"
        before = where + joiner + _BEFORE.format(x=n, y=n + 1)
        # 上一页 by cursor: the page above a position, read upwards (api.cases.search's before)
        upwards = where + joiner + _ABOVE.format(x=n, y=n + 1)
        by_cursor_up = f"SELECT * FROM cases{upwards} ORDER BY received_at, case_id DESC LIMIT 50"
        for above, position in dict(deep).items():
            out.append((f"审计查询 by cursor: {label}, the page after row {above:,}", by_cursor,
                        (*args, *position)))  # fmt: skip
            out.append((f"审计查询 by cursor: {label}, the page above row {above:,}",
                        by_cursor_up, (*args, *position)))  # fmt: skip
            out.append((f"审计查询 rows above that page: {label}",
                        f"SELECT count(*) FROM cases{before}", (*args, *position)))  # fmt: skip
    return out


async def _measure(conn: asyncpg.Connection, sql: str, args: tuple[Any, ...],
                   repeat: int) -> tuple[float, list[str]]:  # fmt: skip
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        await conn.fetch(sql, *args)
        best = min(best, time.perf_counter() - start)
    plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
    return best * 1000, [r[0] for r in plan]


def _nodes(plan: list[str]) -> str:
    """The plan's nodes, without their figures."""
    nodes = [p.strip() for p in plan if "->" in p or p == plan[0]]
    return "; ".join(n.split("  (")[0].removeprefix("->  ") for n in nodes)


async def _deep_pages(conn: asyncpg.Connection) -> list[Deep]:
    """Each filter's last page by offset (api.console.paging.LAST_PAGE: 499,950 rows above
    it at most) and its true last page, each with the position of the row above it (the
    cursor its 下一页 follows; the position count of the page is measured from there)."""
    out = []
    for _, where, args in _FILTERS:
        total = await conn.fetchval(f"SELECT count(*) FROM cases{where}", *args)
        deep = []
        for above in (max(min(total - 50, 499_950), 0), max(total - 50, 0)):
            row = await conn.fetchrow(
                f"SELECT received_at, case_id FROM cases{where} ORDER BY received_at DESC, "
                f"case_id LIMIT 1 OFFSET ${len(args) + 1}", *args, max(above - 1, 0),
            )  # fmt: skip
            deep.append((above, (row["received_at"], row["case_id"])))
        out.append(deep)
    return out


async def run(dsn: str, cases: int, records: int, repeat: int, audit_only: bool = False) -> None:
    await prepare_database(dsn, demo=True)
    conn = await asyncpg.connect(dsn)
    try:
        if await conn.fetchval("SELECT count(*) FROM cases") < cases:
            plan = generator.Plan(cases=cases, end=date.today())
            await generator.fill(dsn, plan, now=datetime.now(UTC))
            await conn.execute(_EVENTS)
            await conn.execute(_RECORDS, records)
        for table in ("cases", "case_events", "accountability_records"):
            await conn.execute(f"VACUUM ANALYZE {table}")
        sizes = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM cases) AS cases, "
            "(SELECT count(*) FROM case_events) AS events, "
            "(SELECT count(*) FROM accountability_records) AS records"
        )
        print(f"cases {sizes['cases']}, case_events {sizes['events']}, "
              f"accountability_records {sizes['records']}\n")  # fmt: skip
        queries = _audit(await _deep_pages(conn))
        if not audit_only:
            queries = _boards(datetime.now(UTC)) + queries
        rows = [(label, *await _measure(conn, sql, args, repeat)) for label, sql, args in queries]
        if audit_only:
            print("| query | best ms | plan |\n|---|---|---|")
            for label, ms, plan in rows:
                print(f"| {label} | {ms:.1f} | {_nodes(plan)} |")
            for label, _, plan in rows:
                print(f"\n## {label}\n" + "\n".join(plan))
            return
        tx = conn.transaction()  # again without migration 0043's indexes, rolled back
        await tx.start()
        try:
            await conn.execute(f"DROP INDEX {', '.join(INDEXES_0043)}")
            before = [await _measure(conn, sql, args, repeat) for _, sql, args in queries]
        finally:
            await tx.rollback()
        print("| query | best ms | plan | best ms without 0043 | plan without 0043 |")
        print("|---|---|---|---|---|")
        for (label, ms, plan), (old_ms, old_plan) in zip(rows, before, strict=True):
            print(f"| {label} | {ms:.1f} | {_nodes(plan)} | {old_ms:.1f} | {_nodes(old_plan)} |")
        for label, _, plan in rows:
            print(f"\n## {label}\n" + "\n".join(plan))
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200_000)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dsn")
    parser.add_argument("--audit-only", action="store_true")
    args = parser.parse_args()
    with bench_database(args.dsn, "jiesu_bench") as dsn:
        asyncio.run(run(dsn, args.cases, args.records, args.repeat, args.audit_only))


if __name__ == "__main__":
    main()
