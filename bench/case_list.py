"""The staff case list (``GET /api/v1/complaints``) filter by filter, over N generated cases.

    python -m bench.case_list [--cases 1000000] [--repeat 5] [--upserts 2000] [--dsn ...]
                              [--with-only]

Starts its own embedded PostgreSQL (unless ``--dsn``; a ``--dsn`` database that already holds
N cases is measured as it is), migrates it, loads the demo data and generates N cases over
365 days (bench/generator.py, as ``python -m bench.stats`` does). Then, for each filter a
clerk, a supervisor or a grid worker uses, the exact SQL of ``api.cases.search`` (limit 50
+ 1, as the endpoint asks) at offset 0 and at the deepest page the endpoint serves (the last
page of the filter's rows, at most offset 100,000): best of ``--repeat`` runs, and the plan's
top nodes from EXPLAIN (ANALYZE, BUFFERS). Each figure twice: "without" — inside a
transaction that drops the case-list indexes of migration 0033 (``INDEXES``), rolled back —
and "with" them; and with them, the same deepest page by keyset paging (``after``: the
position of the previous page's last case, as ``next_after`` gives it; its cases checked equal
to the offset page's). ``--with-only`` skips "without" (and the upserts). Last, the
projection's case upsert (jiesu.readmodel.projection), the same two ways: ``--upserts``
existing rows rewritten with a newer version and another status, in one transaction rolled
back, best of ``--repeat``. Prints a markdown table and writes
bench/results/case_list.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from api import cases
from bench import generator
from bench.harness import bench_database, publish
from bench.stats import TZ
from jiesu import db
from jiesu.access.grids import GridScope
from jiesu.ops.bootstrap import prepare_database
from jiesu.readmodel import projection

RESULTS = Path(__file__).parent / "results" / "case_list.json"
INDEXES = ("cases_grid", "cases_department_late")
LIMIT = 50
MAX_OFFSET = 100_000  # the endpoint's limit (api/routers/complaints.py)


class _Undo(Exception):
    pass


class _Recorder:
    """Stands in for the pool: keeps the SQL ``cases.search`` would run."""

    def __init__(self) -> None:
        self.sql = ""
        self.args: tuple[Any, ...] = ()

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self.sql, self.args = sql, args
        return []


async def search_sql(
    limit: int, offset: int, after: tuple[datetime, str] | None = None, **filters: Any
) -> tuple[str, tuple[Any, ...]]:
    recorder = _Recorder()
    await cases.search(recorder, limit=limit, offset=offset, after=after, **filters)  # type: ignore[arg-type]
    return recorder.sql, recorder.args


async def scenarios(conn: asyncpg.Connection) -> list[tuple[str, dict[str, Any]]]:
    """The filters, with values taken from the data: the busiest bureau and village
    committee, one grid, a village's three grids with its committee."""
    bureau = await conn.fetchval(
        "SELECT department_id FROM cases WHERE department_id NOT LIKE 'gx-%'"
        " GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    )
    village = await conn.fetchval(
        "SELECT department_id FROM cases WHERE department_id LIKE 'gx-vil-%'"
        " GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    )
    _, _, t, v = village.split("-")
    grids = [f"G-{generator.village_id(int(t), int(v))}-{g}" for g in (1, 2, 3)]
    end = await conn.fetchval("SELECT max(received_at) FROM cases")
    week = {"received_from": end - timedelta(days=7), "received_to": end}
    return [
        ("no filter (supervisor)", {}),
        ("status=handling", {"status": "handling"}),
        ("status=closed", {"status": "closed"}),
        ("overdue", {"overdue": True}),
        ("category=garbage", {"category_id": "garbage"}),
        ("grid", {"grid_id": grids[0]}),
        ("channel=email", {"channel": "email"}),
        ("urgency=urgent", {"urgency": "urgent"}),
        ("received: last 7 days", week),
        ("bureau (clerk)", {"department_id": bureau}),
        ("bureau + status=handling", {"department_id": bureau, "status": "handling"}),
        ("bureau + status=closed", {"department_id": bureau, "status": "closed"}),
        ("bureau + overdue", {"department_id": bureau, "overdue": True}),
        ("village + overdue", {"department_id": village, "overdue": True}),
        ("grid worker: 1 grid", {"within": GridScope(frozenset(grids[:1]))}),
        ("grid worker: 3 grids + committee",
         {"within": GridScope(frozenset(grids), frozenset({village}))}),
        ("grid worker: 3 grids + committee, overdue",
         {"within": GridScope(frozenset(grids), frozenset({village})), "overdue": True}),
    ]  # fmt: skip


def _plan_summary(plan: dict[str, Any]) -> str:
    """The plan's nodes, outermost first, with the indexes they read."""
    parts = []
    node: dict[str, Any] | None = plan["Plan"]
    while node is not None:
        name = node["Node Type"]
        if "Index Name" in node:
            name += f" {node['Index Name']}"
        parts.append(name)
        children = node.get("Plans") or []
        node = children[0] if len(children) == 1 else None
        if len(children) > 1:
            parts.append("(" + ", ".join(
                c["Node Type"] + (f" {c['Index Name']}" if "Index Name" in c else "")
                + "".join(f" {g.get('Index Name', '')}" for g in c.get("Plans") or [])
                for c in children
            ) + ")")  # fmt: skip
    return " → ".join(parts)


async def _measure_one(
    conn: asyncpg.Connection,
    filters: dict[str, Any],
    offset: int,
    repeat: int,
    after: tuple[datetime, str] | None = None,
) -> dict[str, Any]:
    sql, args = await search_sql(LIMIT + 1, offset, after, **filters)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await conn.fetch(sql, *args)
        times.append(time.perf_counter() - start)
    raw = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]
    buffers = plan["Plan"].get("Shared Hit Blocks", 0) + plan["Plan"].get("Shared Read Blocks", 0)
    return {
        "offset": offset,
        "best_ms": round(min(times) * 1000, 1),
        "plan": _plan_summary(plan),
        "buffers": buffers,
    }


async def _without_indexes(conn: asyncpg.Connection) -> asyncpg.transaction.Transaction:
    """A transaction in which the case-list indexes are dropped: roll it back."""
    tx = conn.transaction()
    await tx.start()
    for index in INDEXES:
        await conn.execute(f"DROP INDEX IF EXISTS {index}")
    return tx


async def _cursor_page(
    conn: asyncpg.Connection, filters: dict[str, Any], offset: int, repeat: int
) -> dict[str, Any]:
    """The page at ``offset`` read by keyset paging: after the previous page's last case."""
    if offset == 0:
        return await _measure_one(conn, filters, 0, repeat)
    sql, args = await search_sql(1, offset - 1, **filters)
    last = await conn.fetchrow(sql, *args)
    position = (last["received_at"], last["case_id"])
    sql, args = await search_sql(LIMIT + 1, offset, **filters)
    by_offset = [r["case_id"] for r in await conn.fetch(sql, *args)]
    sql, args = await search_sql(LIMIT + 1, 0, position, **filters)
    by_cursor = await conn.fetch(sql, *args)
    assert [r["case_id"] for r in by_cursor] == by_offset, (filters, offset)
    return await _measure_one(conn, filters, 0, repeat, after=position)


async def measure_filters(
    conn: asyncpg.Connection, repeat: int, with_only: bool = False
) -> list[dict[str, Any]]:
    out = []
    for name, filters in await scenarios(conn):
        sql, args = await search_sql(10**9, 0, **filters)
        count = await conn.fetchval(f"SELECT count(*) FROM ({sql}) s", *args)
        deep = max(0, min(MAX_OFFSET, count - LIMIT))
        out.append({"filter": name, "filters": filters, "rows": count, "deep_offset": deep})
    if not with_only:
        tx = await _without_indexes(conn)
        try:
            for row in out:
                row["without"] = [
                    await _measure_one(conn, row["filters"], o, repeat)
                    for o in (0, row["deep_offset"])
                ]
        finally:
            await tx.rollback()
    for row in out:
        row["with"] = [
            await _measure_one(conn, row["filters"], o, repeat) for o in (0, row["deep_offset"])
        ]
        row["cursor"] = await _cursor_page(conn, row["filters"], row["deep_offset"], repeat)
        before, after = ([m["best_ms"] for m in row.get(k, [])] for k in ("without", "with"))
        print(f"  {row['filter']}: {row['rows']:,} rows, deep offset {row['deep_offset']:,}:"
              f" {before} → {after} ms; deepest page by cursor {row['cursor']['best_ms']} ms"
              f" ({row['cursor']['buffers']:,} blocks)", flush=True)  # fmt: skip
        del row["filters"]
    return out


_UPSERT_ARGS = """
SELECT case_id, version + 1, CASE status WHEN 'closed' THEN 'handling' ELSE 'closed' END,
    title, category_id, grid_id, channel, urgency, department_id, received_at,
    accept_deadline, contact_deadline, finish_deadline, accepted_at, contacted_at, replied_at,
    closed_at, rating, resolution, breaches, state, repeat_count, return_count,
    extension_count, rehandle_count, escalation_level, department_id, resolved,
    answered_directly, solved_in_grid, rejected_return_count
FROM cases TABLESAMPLE SYSTEM (1) REPEATABLE (7) LIMIT $1
"""


async def measure_upserts(conn: asyncpg.Connection, n: int, repeat: int) -> dict[str, Any]:
    """ms per upsert of the projection's case row (a newer version, another status: no HOT
    update, every index written), best of ``repeat`` rounds of ``n``, each rolled back."""
    rows = [tuple(r) for r in await conn.fetch(_UPSERT_ARGS, n)]
    best = {"without": float("inf"), "with": float("inf")}
    for label in ("without", "with", "without", "with"):  # interleaved
        outer = await _without_indexes(conn) if label == "without" else conn.transaction()
        if label == "with":
            await outer.start()
        try:
            for _ in range(repeat):
                with contextlib.suppress(_Undo):
                    async with conn.transaction():  # a savepoint, rolled back
                        start = time.perf_counter()
                        for args in rows:
                            await conn.execute(projection._UPSERT_CASE, *args)
                        best[label] = min(best[label], (time.perf_counter() - start) / len(rows))
                        raise _Undo
        finally:
            await outer.rollback()
    return {f"{k}_ms": round(v * 1000, 3) for k, v in best.items()} | {"upserts": len(rows)}


async def prepare(dsn: str, n: int) -> dict[str, Any]:
    await prepare_database(dsn, demo=True)
    conn = await asyncpg.connect(dsn)
    try:
        timings: dict[str, Any] = {}
        if await conn.fetchval("SELECT count(*) FROM cases") < n:
            await conn.execute("TRUNCATE cases CASCADE")
            start = time.perf_counter()
            end = datetime.now(ZoneInfo(TZ)).date() - timedelta(days=1)
            plan = generator.Plan(cases=n, end=end, timezone=TZ)
            await generator.fill(dsn, plan, now=datetime.now(UTC))
            timings["generate_and_copy_s"] = round(time.perf_counter() - start, 1)
            await conn.execute("VACUUM ANALYZE cases")
        timings["cases"] = await conn.fetchval("SELECT count(*) FROM cases")
        timings["cases_table_mb"] = round(
            await conn.fetchval("SELECT pg_total_relation_size('cases')") / 2**20
        )
        return timings
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with bench_database(args.dsn, "jiesu_bench") as dsn:
        print(f"Preparing {args.cases:,} cases...", flush=True)
        prepared = await prepare(dsn, args.cases)
        print(f"  {prepared}", flush=True)
        pool = await db.create_pool(dsn, max_size=1)  # its codecs: the state as jsonb
        try:
            async with pool.acquire() as conn:
                print("Filters (best ms at offset 0 and the deepest page, without → with):")
                filters = await measure_filters(conn, args.repeat, args.with_only)
                upserts = None
                if not args.with_only:
                    print("Upserts...", flush=True)
                    upserts = await measure_upserts(conn, args.upserts, args.repeat)
                version = await conn.fetchval("SHOW server_version")
        finally:
            await pool.close()
        return {
            "cases": prepared["cases"], "prepare": prepared, "repeat": args.repeat,
            "postgres": version, "indexes": INDEXES, "filters": filters, "upserts": upserts,
            "measured_at": datetime.now(UTC).isoformat(),
        }  # fmt: skip


def markdown(results: dict[str, Any]) -> str:
    if results["upserts"] is None:  # --with-only: offset against cursor
        return _markdown_cursor(results)
    lines = [
        f"{results['cases']:,} cases, best of {results['repeat']}, ms (PostgreSQL "
        f"{results['postgres']}); without → with {', '.join(results['indexes'])}",
        "",
        "| filter | rows | offset 0: ms (buffers) | deepest page: offset, ms (buffers) |"
        " plan with, deepest page |",
        "|---|--:|--:|--:|---|",
    ]
    for r in results["filters"]:
        (w0, wd), (i0, idp) = r["without"], r["with"]
        lines.append(
            f"| {r['filter']} | {r['rows']:,} | {w0['best_ms']} ({w0['buffers']:,}) → "
            f"{i0['best_ms']} ({i0['buffers']:,}) | {r['deep_offset']:,}: {wd['best_ms']} "
            f"({wd['buffers']:,}) → {idp['best_ms']} ({idp['buffers']:,}) | {idp['plan']} |"
        )
    u = results["upserts"]
    lines += ["", f"Projection upsert ({u['upserts']:,} rows a round): "
              f"{u['without_ms']} ms without → {u['with_ms']} ms with"]  # fmt: skip
    return "\n".join(lines)


def _markdown_cursor(results: dict[str, Any]) -> str:
    lines = [
        f"{results['cases']:,} cases, best of {results['repeat']}, ms (blocks read) (PostgreSQL "
        f"{results['postgres']}); the deepest page by offset and by cursor (after)",
        "",
        "| filter | rows | offset 0 | deepest page: offset | by offset | by cursor |"
        " plan by cursor |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for r in results["filters"]:
        (i0, idp), c = r["with"], r["cursor"]
        lines.append(
            f"| {r['filter']} | {r['rows']:,} | {i0['best_ms']} ({i0['buffers']:,}) | "
            f"{r['deep_offset']:,} | {idp['best_ms']} ({idp['buffers']:,}) | "
            f"{c['best_ms']} ({c['buffers']:,}) | {c['plan']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (best kept)")
    parser.add_argument("--upserts", type=int, default=2000, help="upserts a round")
    parser.add_argument("--dsn", help="use this database instead of an embedded PostgreSQL")
    parser.add_argument(
        "--with-only", action="store_true", help="with the indexes only: offset against cursor"
    )
    args = parser.parse_args()
    results = asyncio.run(run(args))
    publish(RESULTS, results, markdown(results))


if __name__ == "__main__":
    main()
