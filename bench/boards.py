"""The counts of the console's boards (派单督办) and of 审计查询, over N generated cases.

    python -m bench.boards [--cases 200000] [--records 200000] [--repeat 5] [--dsn ...]
                           [--audit-only | --lookup-only [--callers 1000,100000]]

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

工单查询 (``--lookup-only``): the generated cases get an intake each, ``--callers`` of them
a caller's phone with that many cases (the rest one number each, the demo's form "+86 138-…"
stored, the digits looked up), and each caller's first page and deepest page (page 10,000 at
most) are measured as the page read them before (offset; rows and 共 N 件 two statements,
api/console/lookup.py until 2026-11-24, on the schema before migration 0046: its index
dropped and 0036's expression index made again, in a transaction rolled back) and as it
reads them now (api.console.lookup's page_sql and counts_sql, in one snapshot: the page after
the position of the row above it, then the count of the rows above it with 共 N 件 in one
statement; 上一页 from there). The whole page as each reads it is timed too (now:
api.console.paging.read with the page's own search).

审计查询's deepest pages are measured both ways: by offset (its paging before keyset) and by
cursor (api.cases.search's ``after`` from the row before the page, and the count of the rows
before it that gives "本页第 a–b 件", ``api.cases.count``'s ``before``). ``--audit-only``: only
审计查询's queries, and no pass without 0043 (at 1,000,000 cases the boards are not the point).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from functools import partial
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


# 工单查询 by phone before 2026-11-24 (api/console/lookup.py): a page by offset, and its
# 共 N 件 in a second statement
_OLD_FOUND = """
WITH found AS (
    SELECT case_id FROM intakes WHERE state = 'started'
      AND payload -> 'intake' -> 'citizen' ->> 'phone' IS NOT NULL
      AND citizen_phone_digits(payload -> 'intake' -> 'citizen' ->> 'phone')
          = citizen_phone_digits($1)
    UNION
    SELECT case_id FROM repeat_reports WHERE state = 'started'
      AND payload -> 'intake' -> 'citizen' ->> 'phone' IS NOT NULL
      AND citizen_phone_digits(payload -> 'intake' -> 'citizen' ->> 'phone')
          = citizen_phone_digits($1)
)
"""
_OLD_BY_PHONE = _OLD_FOUND + """
SELECT c.case_id, c.status, c.title, c.urgency, c.department_id, c.received_at,
       c.accept_deadline, c.contact_deadline, c.finish_deadline, c.accepted_at,
       c.contacted_at, c.breaches, c.escalation_level, c.closed_at,
       coalesce((c.state->>'reconvenes_released')::boolean, false) AS from_dispatch
FROM found JOIN cases c USING (case_id)
WHERE $2::text IS NULL OR c.case_id = $2
ORDER BY c.received_at DESC, c.case_id
LIMIT $3 OFFSET $4
"""
_OLD_COUNT_BY_PHONE = _OLD_FOUND + """
SELECT count(*) FROM found JOIN cases c USING (case_id) WHERE $2::text IS NULL OR c.case_id = $2
"""
# an intake for each generated case: the callers' phones first (by a hash of the case number,
# so each caller's cases spread over the year), one number each for the rest
_INTAKES = """
INSERT INTO intakes (case_id, request_hash, payload, token_hash, received_at, phone_key)
SELECT case_id, 'bench', jsonb_build_object('intake', jsonb_build_object('citizen',
       jsonb_build_object('phone', '+86 ' || phone))), 'bench', received_at, 'bench'
FROM (SELECT case_id, received_at, CASE
          WHEN n <= $1 THEN '138-0000-' || lpad('1', 4, '0')
          WHEN n <= $1 + $2 THEN '138-0000-' || lpad('2', 4, '0')
          ELSE '139-' || lpad((n / 10000)::text, 4, '0') || '-' || lpad((n % 10000)::text, 4, '0')
      END AS phone
      FROM (SELECT case_id, received_at, row_number() OVER (ORDER BY hashtext(case_id)) AS n
            FROM cases) numbered) phoned
ON CONFLICT (case_id) DO NOTHING
"""
CALLERS = ("13800000001", "13800000002")
# The schema the old statements read (before migration 0046): 0036's index on the phone's
# expression, not 0046's in the list's order; set up in a transaction rolled back.
_BEFORE_0046 = """
DROP INDEX intakes_citizen_phone_listed;
CREATE INDEX intakes_citizen_phone
    ON intakes (citizen_phone_digits(payload -> 'intake' -> 'citizen' ->> 'phone'))
    WHERE payload -> 'intake' -> 'citizen' ->> 'phone' IS NOT NULL;
ANALYZE intakes;
"""


def _blocks(plan: list[str]) -> int:
    """Shared buffers hit + read of the plan's top node (the statement's all)."""
    for line in plan:
        if "Buffers:" in line:
            return sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", line.split("temp")[0]))
    return 0


async def _old_page(conn: asyncpg.Connection, phone: str, offset: int) -> None:
    """A page of 工单查询 by phone as find() read it before: two statements."""
    await conn.fetch(_OLD_BY_PHONE, phone, None, 50, offset)
    await conn.fetchval(_OLD_COUNT_BY_PHONE, phone, None)


def _with_args(statement: tuple[str, list[Any]]) -> list[Any]:
    """A statement and its arguments (lookup.page_sql's, counts_sql's) as fetch takes them."""
    sql, args = statement
    return [sql, *args]


async def _best(read: Callable[[], Awaitable[Any]], repeat: int) -> float:
    """The best of ``repeat`` runs of ``read``, in ms."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        await read()
        best = min(best, time.perf_counter() - start)
    return best * 1000


async def _lookup(conn: asyncpg.Connection, dsn: str, callers: list[int], repeat: int) -> None:
    """工单查询 by phone, before and now, for each caller's first and deepest page."""
    from api.console import lookup, paging

    if await conn.fetchval("SELECT count(*) FROM intakes WHERE request_hash = 'bench'") == 0:
        await conn.execute(_INTAKES, *callers)
    await conn.execute("VACUUM ANALYZE intakes")
    out: list[tuple[str, float, int, list[str]]] = []

    async def measure(label: str, sql: str, args: tuple[Any, ...] | list[Any]) -> None:
        ms, plan = await _measure(conn, sql, tuple(args), repeat)
        out.append((label, ms, _blocks(plan), plan))

    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    pages: list[tuple[str, float]] = []
    try:
        for phone, many in zip(CALLERS, callers, strict=True):
            _, total = await conn.fetchrow(*_with_args(lookup.counts_sql(None, phone)))
            deep = max(min(total - 50, paging.offset(paging.LAST_PAGE)), 0)
            above = await conn.fetchrow(
                *_with_args(lookup.page_sql(None, phone, limit=1, offset=max(deep - 1, 0)))
            )
            at = (above["received_at"], above["case_id"])
            who = f"{many:,} cases ({total:,} found)"
            tx = conn.transaction()  # the old statements on the schema before 0046
            await tx.start()
            try:
                await conn.execute(_BEFORE_0046)
                await measure(f"before: page 1, {who}", _OLD_BY_PHONE, (phone, None, 50, 0))
                await measure(f"before: page at offset {deep:,}", _OLD_BY_PHONE,
                              (phone, None, 50, deep))  # fmt: skip
                await measure("before: 共 N 件", _OLD_COUNT_BY_PHONE, (phone, None))
                for label, offset in (("page 1", 0), (f"deepest page (offset {deep:,})", deep)):
                    pages.append((f"{who}: {label} before",
                                  await _best(partial(_old_page, conn, phone, offset), repeat)))
            finally:
                await tx.rollback()
            await measure("now: page 1 (offset 0)", *lookup.page_sql(None, phone, limit=50))
            await measure(f"now: 下一页 after row {deep:,}",
                          *lookup.page_sql(None, phone, limit=50, after=at))  # fmt: skip
            await measure(f"now: 上一页 above row {deep + 1:,}",
                          *lookup.page_sql(None, phone, limit=50, before=at))  # fmt: skip
            await measure("now: the rows above that page (第 a 件) and 共 N 件",
                          *lookup.counts_sql(None, phone, before=at))  # fmt: skip
            await measure("now: 共 N 件 (page 1)", *lookup.counts_sql(None, phone))
            search = lookup._Search(None, phone)
            for label, read in (
                (f"{who}: page 1 now", partial(paging.read, pool, search.rows, search.counts, 1)),
                (f"{who}: deepest page now (after row {deep:,})",
                 partial(paging.read, pool, search.rows, search.counts, 1, after=at)),
            ):  # fmt: skip
                pages.append((label, await _best(read, repeat)))
    finally:
        await pool.close()
    print("| query | best ms | blocks | plan |\n|---|--:|--:|---|")
    for label, ms, blocks, plan in out:
        print(f"| {label} | {ms:.1f} | {blocks:,} | {_nodes(plan)} |")
    print("\n| the whole page's statements (without the views it records) | best ms |\n|---|--:|")
    for label, ms in pages:
        print(f"| {label} | {ms:.1f} |")
    for label, _, _, plan in out:
        print(f"\n## {label}\n" + "\n".join(plan))


async def run(
    dsn: str, cases: int, records: int, repeat: int, audit_only: bool = False,
    lookup_callers: list[int] | None = None,
) -> None:  # fmt: skip
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
        if lookup_callers is not None:
            await _lookup(conn, dsn, lookup_callers, repeat)
            return
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
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--audit-only", action="store_true", help="审计查询's queries only")
    only.add_argument("--lookup-only", action="store_true",
                      help="工单查询 by phone only, before and now")  # fmt: skip
    parser.add_argument("--callers", type=_callers, default=[1_000, 100_000],
                        help="--lookup-only: the cases of each of two callers' phones, "
                             "comma-separated (default 1000,100000)")  # fmt: skip
    args = parser.parse_args()
    with bench_database(args.dsn, "jiesu_bench") as dsn:
        asyncio.run(run(dsn, args.cases, args.records, args.repeat, args.audit_only,
                        args.callers if args.lookup_only else None))  # fmt: skip


def _callers(text: str) -> list[int]:
    """Two numbers of cases, "1000,100000"."""
    try:
        many = [int(n) for n in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("two whole numbers, comma-separated") from None
    if len(many) != len(CALLERS) or min(many) < 1:
        raise argparse.ArgumentTypeError("two whole numbers of at least 1, comma-separated")
    return many


if __name__ == "__main__":
    main()
