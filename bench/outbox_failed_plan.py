"""The plans and timings of every query that reads the outbox by its status, on a large outbox,
with today's partial indexes and with each candidate set after folding them.

    .venv/bin/python -m bench.outbox_failed_plan [ROWS] [--repeat 9] [--plans]

The queries (``QUERIES``, ``marks``): the worker's gauges (``domain_metrics._OUTBOX``,
``_OLDEST_UNSENT``), `jiesu doctor`'s ``notification_overdue``, ``notification_failed`` and
``citizen_not_told`` (``checks._OVERDUE``, ``_FAILED``, ``_NOT_TOLD``, with the doctor's
default ``--limit`` 500 and ``--notification-overdue-after``), and the dispatcher's own
``_EXPIRE``, ``_CLAIM`` and ``_SENT`` (in a transaction rolled back: they write; ``_SENT`` also
as the generic plan a prepared statement settles on). The index sets (``SETS``): today's
(migrations 0004, 0041, 0042, 0044), without 0044's ``notifications_failed``, without 0041's
``notifications_citizens_not_told``, without both, and folded: without both, 0042's
``notifications_unsent`` on ``(status, created_at)`` instead of ``(status)``.

Starts its own embedded PostgreSQL (bench.harness.bench_database), migrates it, writes ROWS
notices (all ``sent`` but one in 2,000 ``failed``, one in 10,000 ``pending``, one in 4,002
``skipped``, a citizen's as every skipped notice is; one every 15 s back in time; a third to
citizens), a case row for every case (one in ten open) and its intake, the citizen with a
landline (what ``citizen_not_told`` lists). For each set: the seconds each of its indexes took
to build, each query's plan (the indexes it reads) and ``EXPLAIN (ANALYZE, BUFFERS)``'s
execution time, ``--repeat`` warm runs after two warm-up runs: median (min–max), and the
buffers of the last run. ``--plans`` prints the whole plans. Before the twenty-first session
it measured ``_FAILED`` alone. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from bench.harness import bench_database
from jiesu import db
from jiesu.health import checks, domain_metrics
from jiesu.notify import outbox

_FILL = """
INSERT INTO notifications (key, case_id, event_seq, event_kind, recipient_kind, recipient_id,
    channel, subject, body, created_at, status, attempts, sent_at)
SELECT 'k' || g, 'JS' || (g / 8), g % 8, 'routed',
       CASE WHEN g % 3 = 0 THEN 'citizen' ELSE 'department' END,
       CASE WHEN g % 3 = 0 THEN 'JS' || (g / 8) ELSE 'dept-' || (g % 40) END,
       'email', 'subject', 'body text of a notice', now() - make_interval(secs => g * 15),
       CASE WHEN g % 2000 = 7 THEN 'failed' WHEN g % 10000 = 11 THEN 'pending'
            WHEN g % 4002 = 3 THEN 'skipped' ELSE 'sent' END,
       1, now()
FROM generate_series(1, $1::int) g
"""

# One case row per case of the outbox, one in ten open: citizen_not_told joins the case.
_CASES = """
INSERT INTO cases (case_id, version, status, title, category_id, grid_id, channel, urgency,
    received_at, state)
SELECT DISTINCT ON (case_id) case_id, 1,
       CASE WHEN substring(case_id FROM 3)::bigint % 10 = 0 THEN 'assigned' ELSE 'closed' END,
       't', 'c', 'g', 'phone', 'normal', created_at, '{}'::jsonb
FROM notifications ORDER BY case_id
"""

# Every case has its intake; its citizen left a landline (so a skipped notice's is listed).
_INTAKES = """
INSERT INTO intakes (case_id, request_hash, payload, token_hash, received_at, phone_key)
SELECT case_id, 'h', '{"intake": {"citizen": {"phone": "010-12345678"}}}'::jsonb, 'h',
       received_at, 'p'
FROM cases
"""

LIMIT = checks.DoctorOptions().limit
OVERDUE_AFTER = checks.DoctorOptions().notification_overdue_after


@dataclass(frozen=True)
class Query:
    name: str
    sql: str
    args: tuple[Any, ...] = ()
    writes: bool = False  # run in a transaction rolled back
    generic: bool = False  # planned as a statement asyncpg has prepared and run 5 times is


QUERIES = (
    Query("gauges _OUTBOX", domain_metrics._OUTBOX),
    Query("gauges _OLDEST_UNSENT", domain_metrics._OLDEST_UNSENT),
    Query("doctor notification_overdue", checks._OVERDUE, (OVERDUE_AFTER, LIMIT)),
    Query("doctor notification_failed", checks._FAILED, (LIMIT,)),
    Query("doctor citizen_not_told", checks._NOT_TOLD, (LIMIT,)),
    Query("outbox _EXPIRE", outbox._EXPIRE, (10,), writes=True),
    Query("outbox _CLAIM", outbox._CLAIM, (50, timedelta(seconds=30), 10), writes=True),
)


def marks(notice_id: int) -> tuple[Query, ...]:
    """The dispatcher's mark of one notice (by id, of a pending notice here: the plan is what
    counts), planned for its values and as the generic plan a prepared statement settles on."""
    return (
        Query("outbox _SENT", outbox._SENT, (notice_id, 1, "email"), writes=True),
        Query("outbox _SENT (generic plan)", outbox._SENT, (notice_id, 1, "email"),
              writes=True, generic=True),
    )  # fmt: skip

TODAY_UNSENT = "CREATE INDEX notifications_unsent ON notifications (status) WHERE status <> 'sent'"
FOLDED_UNSENT = ("CREATE INDEX notifications_unsent ON notifications (status, created_at)"
                 " WHERE status <> 'sent'")  # fmt: skip
FAILED = "CREATE INDEX notifications_failed ON notifications (created_at) WHERE status = 'failed'"
NOT_TOLD = ("CREATE INDEX notifications_citizens_not_told ON notifications (created_at)"
            " WHERE status = 'skipped' AND recipient_kind = 'citizen'")  # fmt: skip

# Each set: the outbox's partial indexes besides 0004's (notifications_due, _case, the keys).
SETS: dict[str, tuple[str, ...]] = {
    "today (0041 + 0042 + 0044)": (TODAY_UNSENT, FAILED, NOT_TOLD),
    "without 0044's notifications_failed": (TODAY_UNSENT, NOT_TOLD),
    "without 0041's notifications_citizens_not_told": (TODAY_UNSENT, FAILED),
    "without both": (TODAY_UNSENT,),
    "folded: unsent (status, created_at), without both": (FOLDED_UNSENT,),
}
_VARIABLE = ("notifications_unsent", "notifications_failed", "notifications_citizens_not_told")


async def use_set(conn: asyncpg.Connection, creates: tuple[str, ...]) -> list[float]:
    """Leave exactly the set's variable indexes on the outbox; returns the seconds each
    CREATE INDEX took (what a migration's would hold the outbox's writes for)."""
    for name in _VARIABLE:
        await conn.execute(f"DROP INDEX IF EXISTS {name}")
    built = []
    for create in creates:
        started = time.monotonic()
        await conn.execute(create)
        built.append(time.monotonic() - started)
    # VACUUM too: the write queries' rolled-back rows of the set before cleared pages from the
    # visibility map, which the index-only scans would then have to read.
    await conn.execute("VACUUM ANALYZE notifications")
    return built


async def explain(conn: asyncpg.Connection, query: Query) -> list[str]:
    sql = "EXPLAIN (ANALYZE, BUFFERS) " + query.sql
    tx = conn.transaction()
    await tx.start()
    try:
        if query.generic:
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        return [r[0] for r in await conn.fetch(sql, *query.args)]
    finally:
        await (tx.rollback() if query.writes else tx.commit())


def indexes_read(plan: list[str]) -> list[str]:
    found = re.findall(r"(Seq Scan on \w+|(?:Index|Index Only|Bitmap Index) Scan(?: Backward)?"
                       r" (?:using|on) \w+)", "\n".join(plan))  # fmt: skip
    return list(dict.fromkeys(found))


def _ms(plan: list[str]) -> float:
    return float(next(m.group(1) for line in plan
                      if (m := re.search(r"Execution Time: ([0-9.]+) ms", line))))  # fmt: skip


def _buffers(plan: list[str]) -> str:
    return next((line.strip() for line in plan if "Buffers:" in line), "")


async def measure_set(conn: asyncpg.Connection, repeat: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    pending = await conn.fetchval("SELECT min(id) FROM notifications WHERE status = 'pending'")
    for query in (*QUERIES, *marks(pending)):
        for _ in range(2):  # warm-up
            await explain(conn, query)
        runs = [await explain(conn, query) for _ in range(repeat)]
        times = [_ms(plan) for plan in runs]
        out[query.name] = {"median_ms": statistics.median(times), "min_ms": min(times),
                           "max_ms": max(times), "reads": indexes_read(runs[-1]),
                           "buffers": _buffers(runs[-1]), "plan": runs[-1]}  # fmt: skip
    return out


async def measure(url: str, rows: int, repeat: int, plans: bool) -> None:
    await db.ensure_database(url)
    conn = await asyncpg.connect(url)
    try:
        await db.migrate(conn)
        started = time.monotonic()
        await conn.execute(_FILL, rows)
        await conn.execute(_CASES)
        await conn.execute(_INTAKES)
        await conn.execute("VACUUM ANALYZE notifications, cases, intakes")
        counts = await conn.fetch("SELECT status, count(*) FROM notifications GROUP BY 1")
        size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('notifications'))")
        print(f"{rows:,} notices written in {time.monotonic() - started:.1f} s, {size}:",
              ", ".join(f"{r['count']:,} {r['status']}" for r in counts))
        print(f"PostgreSQL {await conn.fetchval('SHOW server_version')}; load average at start "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {repeat} warm runs each")
        for label, creates in SETS.items():
            built = await use_set(conn, creates)
            sizes = await conn.fetch(
                "SELECT indexrelname, pg_relation_size(indexrelid) AS bytes"
                " FROM pg_stat_user_indexes WHERE relname = 'notifications' ORDER BY 1")
            print(f"\n--- {label}: " + ", ".join(f"{r['indexrelname']} {r['bytes'] // 1024} kB"
                                              for r in sizes)
                  + "; built in " + ", ".join(f"{b:.2f}" for b in built) + " s")  # fmt: skip
            for name, m in (await measure_set(conn, repeat)).items():
                print(f"{name:30} {m['median_ms']:8.3f} ms ({m['min_ms']:.3f}–{m['max_ms']:.3f})"
                      f"  {'; '.join(m['reads'])}  [{m['buffers']}]")
                if plans:
                    print("\n".join("      " + line for line in m["plan"]))
        print(f"\nload average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=2_000_000,
                        help="notices to write (default 2,000,000)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=9, help="warm runs per query (default 9)")
    parser.add_argument("--plans", action="store_true", help="print every whole plan")
    args = parser.parse_args()
    with bench_database(None, "outbox_failed_plan") as url:  # its folder deleted after
        asyncio.run(measure(url, args.rows, args.repeat, args.plans))


if __name__ == "__main__":
    main()
