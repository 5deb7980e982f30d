"""The counts of the console's boards (派单督办) and of 审计查询, over N generated cases.

    python -m bench.boards [--cases 200000] [--records 200000] [--repeat 5] [--dsn ...]

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


def _queries(now: datetime, last_pages: tuple[int, int]) -> list[tuple[str, str, tuple[Any, ...]]]:
    boards = [("待派单队列", supervision.QUEUE, ()), ("超时工单", supervision.OVERDUE, (now,)),
              ("督办中的工单", supervision.LADDER, ()), ("问责待完善", supervision.INCOMPLETE, ()),
              ("延期待审", oversight.EXTENSIONS, (None,))]  # fmt: skip
    out = []
    for name, board, args in boards:
        out.append((f"{name} count", board.count_sql, args))
        out.append((f"{name} list", board.rows_sql, (*args, 200)))
    out.append(("延期待审 list (old)", _OLD_EXTENSIONS, (None, 200)))
    for label, where, args in [
        ("审计查询 count: all", "", ()),
        ("审计查询 count: status", " WHERE status = $1", ("handling",)),
        ("审计查询 count: department", " WHERE department_id = $1", ("water",)),
        ("审计查询 count: category", " WHERE category_id = $1", ("garbage",)),
        ("审计查询 count: case", " WHERE case_id = $1", ("GX-none",)),
    ]:  # api.cases.count's SQL for each filter of the search form
        out.append((label, f"SELECT count(*) FROM cases{where}", args))
    for label, where, args, last in [("all", "", (), last_pages[0]),
                                     ("category", " WHERE category_id = $1", ("garbage",),
                                      last_pages[1])]:  # fmt: skip
        # its first page and its last (api.console.paging.LAST_PAGE: offset 499,950 at most),
        # the offset a parameter, as api.cases.search passes it
        n = len(args) + 1
        page = f"SELECT * FROM cases{where} ORDER BY received_at DESC, case_id LIMIT 50 OFFSET ${n}"
        out.append((f"审计查询 page 1: {label}", page, (*args, 0)))
        out.append((f"审计查询 last page: {label} (offset {last:,})", page, (*args, last)))
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


async def run(dsn: str, cases: int, records: int, repeat: int) -> None:
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
        last = [
            max(min(await conn.fetchval(f"SELECT count(*) FROM cases{where}", *args) - 50,
                    499_950), 0)
            for where, args in (("", ()), (" WHERE category_id = $1", ("garbage",)))
        ]  # fmt: skip
        queries = _queries(datetime.now(UTC), (last[0], last[1]))
        rows = [(label, *await _measure(conn, sql, args, repeat)) for label, sql, args in queries]
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
    args = parser.parse_args()
    with bench_database(args.dsn, "jiesu_bench") as dsn:
        asyncio.run(run(dsn, args.cases, args.records, args.repeat))


if __name__ == "__main__":
    main()
