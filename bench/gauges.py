"""The worker's domain gauges (jiesu/health/domain_metrics.py) over N generated cases.

    python -m bench.gauges [--cases 1000000] [--notices-per-case 3] [--repeat 9] [--dsn ...]

Every 15 s (JIESU_DOMAIN_METRICS_INTERVAL_SECONDS) the worker counts the open cases by status,
their breaches and ladder steps, and the notices not sent, in one read-only transaction
(``domain_metrics.measure``). This starts its own embedded PostgreSQL (unless ``--dsn``),
generates N cases as ``python -m bench.stats`` does (bench/generator.py), writes
``--notices-per-case`` notices for each (0.2 % failed, 0.3 % skipped, the rest sent), then
times ``measure`` itself, each of its queries, and their plans, twice in the same run:
"without" — in a transaction that drops the indexes of migration 0042 (``INDEXES``), rolled
back — and "with" them. Best and median of ``--repeat``. Prints a markdown table and writes
bench/results/gauges.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from bench.harness import bench_database, publish
from bench.stats import TZ, prepare
from jiesu.health import domain_metrics

INDEXES = ("cases_open_gauges", "notifications_unsent")
QUERIES = {
    "open cases": domain_metrics._CASES,
    "breaches": domain_metrics._BREACHED,
    "ladder steps": domain_metrics._SUPERVISED,
    "outbox": domain_metrics._OUTBOX,
    "oldest unsent": domain_metrics._OLDEST_UNSENT,
}
_NOTICES = """
INSERT INTO notifications (key, case_id, event_seq, event_kind, recipient_kind, recipient_id,
                           channel, subject, body, status, created_at, sent_at)
SELECT c.case_id || ':' || g || ':citizen:bench', c.case_id, g, 'accepted', 'citizen',
       c.case_id, 'sms', '工单进度', repeat('您的诉求已受理。', 8),
       CASE WHEN r < 0.002 THEN 'failed' WHEN r < 0.005 THEN 'skipped' ELSE 'sent' END,
       c.received_at, c.received_at
FROM cases c, generate_series(1, $1) g, LATERAL (SELECT random() AS r) p
"""


async def ensure_notices(conn: asyncpg.Connection, per_case: int) -> int:
    """The generated cases' notices, written once (a kept ``--dsn`` database keeps them)."""
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM notifications)"):
        await conn.execute(_NOTICES, per_case)
        await conn.execute("ANALYZE notifications")
    return int(await conn.fetchval("SELECT count(*) FROM notifications"))


@contextlib.asynccontextmanager
async def without_indexes(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """The database as before migration 0042, for the block: its indexes dropped, rolled back."""
    tr = conn.transaction()
    await tr.start()
    try:
        for name in INDEXES:
            await conn.execute(f"DROP INDEX {name}")
        yield
    finally:
        await tr.rollback()


async def _ms(make: Any, repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await make()
        times.append((time.perf_counter() - start) * 1000)
    return {"best_ms": round(min(times), 1), "p50_ms": round(statistics.median(times), 1),
            "max_ms": round(max(times), 1)}  # fmt: skip


async def _plan(conn: asyncpg.Connection, sql: str) -> str:
    rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
    scans = [r[0].strip().lstrip("-> ") for r in rows if "Scan" in r[0]]
    return "; ".join(s.split("  (")[0] for s in scans)


async def measure_all(conn: asyncpg.Connection, repeat: int) -> dict[str, Any]:
    """``measure``'s queries together, then each alone with its plan's scans."""

    async def whole() -> None:
        # measure()'s queries one after another on this connection (which may be in the
        # block's transaction: measure()'s own read-only one would nest)
        for sql in QUERIES.values():
            await conn.fetch(sql)

    result: dict[str, Any] = {"measure": await _ms(whole, repeat)}
    for name, sql in QUERIES.items():
        result[name] = await _ms(lambda s=sql: conn.fetch(s), repeat) | {
            "plan": await _plan(conn, sql)
        }
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    end = datetime.now(ZoneInfo(TZ)).date() - timedelta(days=1)
    with bench_database(args.dsn, "jiesu_bench") as dsn:
        print(f"Preparing {args.cases:,} cases...", flush=True)
        prepared = await prepare(dsn, args.cases, end, rebuild=False)
        conn = await asyncpg.connect(dsn)
        try:
            start = time.perf_counter()
            notices = await ensure_notices(conn, args.notices_per_case)
            prepared["notices"] = notices
            prepared["notices_s"] = round(time.perf_counter() - start, 1)
            prepared["open_cases"] = await conn.fetchval(
                "SELECT count(*) FROM cases WHERE status <> 'closed'"
            )
            print(f"  {prepared}", flush=True)
            await conn.execute("VACUUM ANALYZE cases")  # as autovacuum leaves a table in use
            await conn.execute("VACUUM ANALYZE notifications")
            print("Measuring without the indexes of migration 0042...", flush=True)
            async with without_indexes(conn):
                without = await measure_all(conn, args.repeat)
            print("Measuring with them...", flush=True)
            with_ = await measure_all(conn, args.repeat)
        finally:
            await conn.close()
    return {"cases": args.cases, "prepare": prepared, "repeat": args.repeat,
            "measured_at": datetime.now(UTC).isoformat(), "without": without, "with": with_}


def report(results: dict[str, Any]) -> str:
    lines = [f"Domain gauges over {results['cases']:,} cases "
             f"({results['prepare']['open_cases']:,} open) and "
             f"{results['prepare']['notices']:,} notices; best / median / max of "
             f"{results['repeat']} (ms)", "",
             "| query | without 0042 | with 0042 | plan with 0042 |",
             "|---|---|---|---|"]  # fmt: skip
    for name in ("measure", *QUERIES):
        w, n = results["without"][name], results["with"][name]
        cell = "{best_ms} / {p50_ms} / {max_ms}".format
        lines.append(f"| {name} | {cell(**w)} | {cell(**n)} | {n.get('plan', '')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--notices-per-case", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--dsn", help="use this database instead of an embedded PostgreSQL")
    parser.add_argument("--out", type=Path, default=Path("bench/results/gauges.json"))
    args = parser.parse_args()
    results = asyncio.run(run(args))
    publish(args.out, results, report(results))


if __name__ == "__main__":
    main()
