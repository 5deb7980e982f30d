"""What migration 0046 (工单查询's phone in the list's order) costs each case filed: the
intake's writes on two copies of ``intakes`` that differ only in 0046, in the same run.

    .venv/bin/python -m bench.intake_write_cost [--intakes 5000] [--rounds 5]
                                                [--prefill 200000] [--dsn ...]

Migrates the database (an embedded one of its own unless ``--dsn``) and makes two copies of
``intakes`` in schemas of their own, each with ``--prefill`` started intakes first (deep
indexes): ``before_0046`` without the generated column ``citizen_phone``, with 0036's index
on the phone's expression; ``with_0046`` as migrated (the column, 0046's index, not 0036's).
The other indexes are the migrated table's, in both. Then, in each round and for each copy
(the order turned round every other round), files ``--intakes`` intakes as
jiesu.intake.filing does — the row inserted ``pending`` with its payload, then set
``started`` once its workflow has started — and reports per copy the milliseconds and the WAL
bytes per intake (``pg_current_wal_lsn``), median (min–max) over the rounds. The cases table
is not touched by 0046 (no column, no index): a case's updates cost what they did. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.harness import bench_database
from bench.write_cost import load_average as _load
from bench.write_cost import spread, summary_lines, wal_position
from jiesu import db

COPIES = ("before_0046", "with_0046")
_0036 = """CREATE INDEX intakes_citizen_phone
    ON {s}.intakes (citizen_phone_digits(payload -> 'intake' -> 'citizen' ->> 'phone'))
    WHERE payload -> 'intake' -> 'citizen' ->> 'phone' IS NOT NULL"""
# jiesu.intake.filing._claim's insert and _complete_intake's update
_INSERT = """INSERT INTO intakes (case_id, idempotency_key, idempotency_owner, request_hash,
 payload, state, token_nonce, token_hash, received_at, phone_key, address_key)
 VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10)"""
_STARTED = "UPDATE intakes SET state = 'started' WHERE case_id = $1"
_DESCRIPTION = "小区东门外的污水井盖破损，晚上路过的老人和孩子容易踩空，两个星期没有人来修。" * 3


def _payload(case_id: str, phone: str, at: datetime) -> str:
    """An intake's payload as filing stores it (CaseStart), of a realistic size."""
    return json.dumps({
        "case_id": case_id, "urgency": "general", "received_at": at.isoformat(),
        "registered_by": {"kind": "operator", "name": "operator"},
        "intake": {"title": "井盖破损", "description": _DESCRIPTION,
                   "category_id": "sewer_blockage", "grid_id": "G-QH-01-01-1",
                   "address": "桂花路12号东门", "channel": "hotline",
                   "citizen": {"name": "张三", "phone": f"+86 {phone}"}},
    }, ensure_ascii=False)  # fmt: skip


def _rows(tag: str, n: int, start: datetime) -> list[tuple[Any, ...]]:
    out = []
    for i in range(n):
        case_id, at = f"JS{tag}-{i:07d}", start + timedelta(seconds=i)
        phone = f"139-{i % 9973:04d}-{i % 7919:04d}"
        out.append((case_id, None, None, "hash", _payload(case_id, phone, at), "nonce", "token",
                    at, f"phone|sewer_blockage|G-QH-01-01-1|+86 {phone}", None))  # fmt: skip
    return out


async def make_copy(conn: asyncpg.Connection, schema: str, prefill: int) -> None:
    await conn.execute(f"CREATE SCHEMA {schema}")
    await conn.execute(f"CREATE TABLE {schema}.intakes (LIKE public.intakes INCLUDING DEFAULTS"
                       " INCLUDING CONSTRAINTS INCLUDING GENERATED)")  # fmt: skip
    indexes = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = 'public' AND tablename = 'intakes'"
    )
    for row in indexes:
        if schema == "before_0046" and row["indexname"] == "intakes_citizen_phone_listed":
            continue
        await conn.execute(row["indexdef"].replace(" ON public.intakes ", f" ON {schema}.intakes "))
    if schema == "before_0046":
        await conn.execute(f"ALTER TABLE {schema}.intakes DROP COLUMN citizen_phone")
        await conn.execute(_0036.format(s=schema))
    await conn.execute(f"SET search_path = {schema}, public")
    await conn.executemany(_INSERT, _rows("P", prefill, datetime(2025, 1, 1, tzinfo=UTC)))
    await conn.execute("UPDATE intakes SET state = 'started'")
    await conn.execute("RESET search_path")
    await conn.execute(f"VACUUM ANALYZE {schema}.intakes")



async def one_round(conn: asyncpg.Connection, schema: str, n: int, tag: str) -> dict[str, float]:
    """File ``n`` intakes: each inserted pending, then set started."""
    await conn.execute(f"SET search_path = {schema}, public")
    rows = _rows(tag, n, datetime(2026, 1, 1, tzinfo=UTC))
    wal_start, t0 = await wal_position(conn), time.perf_counter()
    await conn.executemany(_INSERT, rows)
    inserted = time.perf_counter()
    await conn.executemany(_STARTED, [(r[0],) for r in rows])
    total = time.perf_counter() - t0
    wal = await wal_position(conn) - wal_start
    await conn.execute("RESET search_path")
    return {"insert_ms": (inserted - t0) * 1000, "started_ms": (total - (inserted - t0)) * 1000,
            "total_ms": total * 1000, "wal_bytes_per_intake": float(wal) / n}  # fmt: skip


async def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    await db.ensure_database(url)
    conn = await asyncpg.connect(url)
    try:
        await db.migrate(conn)
        for schema in COPIES:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            await make_copy(conn, schema, args.prefill)
        print(f"PostgreSQL {await conn.fetchval('SHOW server_version')}; 2 copies of"
              f" {args.prefill:,} started intakes; load average at start {_load()}")  # fmt: skip
        rounds: dict[str, list[dict[str, float]]] = {s: [] for s in COPIES}
        for r in range(args.rounds):
            for schema in COPIES if r % 2 == 0 else tuple(reversed(COPIES)):
                m = await one_round(conn, schema, args.intakes, f"R{r}")
                rounds[schema].append(m)
                print(f"round {r + 1} {schema:12} total {m['total_ms']:7.1f} ms (insert"
                      f" {m['insert_ms']:.1f}, started {m['started_ms']:.1f}), WAL"
                      f" {m['wal_bytes_per_intake']:.0f} B/intake  load {_load()}")  # fmt: skip
        sizes = {s: await conn.fetch(
            "SELECT indexrelname, pg_relation_size(indexrelid) AS bytes FROM pg_stat_user_indexes"
            " WHERE schemaname = $1 ORDER BY 1", s) for s in COPIES}  # fmt: skip
        heap = {s: await conn.fetchval(f"SELECT pg_relation_size('{s}.intakes')") for s in COPIES}
        for schema in COPIES:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()
    summary = {s: {k: spread([m[k] for m in ms]) for k in ms[0]} for s, ms in rounds.items()}
    return {"summary": summary, "heap": heap,
            "sizes": {s: {r["indexrelname"]: r["bytes"] for r in rows}
                      for s, rows in sizes.items()}}  # fmt: skip




def report(results: dict[str, Any], n: int) -> str:
    lines = [f"per round of {n:,} intakes, median (min–max):"]
    lines += summary_lines(results["summary"], "intake", 12)
    for schema, sizes in results["sizes"].items():
        lines.append(f"  {schema} table {results['heap'][schema] // 1024} kB, indexes: "
                     + ", ".join(f"{name} {size // 1024} kB" for name, size in sizes.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intakes", type=int, default=5000, help="intakes per round and copy")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prefill", type=int, default=200_000,
                        help="started intakes in each copy before the rounds (default 200,000)")
    parser.add_argument("--dsn")
    args = parser.parse_args()
    with bench_database(args.dsn, "intake_write_cost") as url:
        results = asyncio.run(run(url, args))
    print(report(results, args.intakes))
    print(f"load average at end {_load()}")


if __name__ == "__main__":
    main()
