"""The plan of `jiesu doctor`'s ``notification_failed`` query (``checks._FAILED``) on a large
outbox, with and without the partial index of migration 0044.

    .venv/bin/python -m bench.outbox_failed_plan [ROWS]     # default 2,000,000

Starts its own embedded PostgreSQL, migrates it, writes ROWS notices (all ``sent`` but one in
2,000 ``failed``, one in 10,000 ``pending``, one in 4,000 ``skipped``; one every 15 s back in
time) and prints ``EXPLAIN (ANALYZE, BUFFERS)`` of the query with the doctor's default
``--limit`` (500), warm (the second of two runs), then again after ``DROP INDEX
notifications_failed``. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg

from bench.harness import bench_database
from jiesu import db
from jiesu.health import checks

_FILL = """
INSERT INTO notifications (key, case_id, event_seq, event_kind, recipient_kind, recipient_id,
    channel, subject, body, created_at, status, attempts, sent_at)
SELECT 'k' || g, 'JS' || (g / 8), g % 8, 'routed',
       CASE WHEN g % 3 = 0 THEN 'citizen' ELSE 'department' END, 'dept-' || (g % 40),
       'email', 'subject', 'body text of a notice', now() - make_interval(secs => g * 15),
       CASE WHEN g % 2000 = 7 THEN 'failed' WHEN g % 10000 = 11 THEN 'pending'
            WHEN g % 4000 = 3 THEN 'skipped' ELSE 'sent' END,
       1, now()
FROM generate_series(1, $1::int) g
"""


async def measure(url: str, rows: int) -> None:
    await db.ensure_database(url)
    conn = await asyncpg.connect(url)
    try:
        await db.migrate(conn)
        started = time.monotonic()
        await conn.execute(_FILL, rows)
        await conn.execute("ANALYZE notifications")
        counts = await conn.fetch("SELECT status, count(*) FROM notifications GROUP BY 1")
        size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('notifications'))")
        print(f"{rows:,} notices written in {time.monotonic() - started:.1f} s, {size}:",
              ", ".join(f"{r['count']:,} {r['status']}" for r in counts))
        for label in ("with notifications_failed (migration 0044)", "without it"):
            plan: list[asyncpg.Record] = []
            for _ in range(2):  # the second, warm run is printed
                plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + checks._FAILED, 500)
            print(f"--- {label}")
            print("\n".join(r[0] for r in plan))
            await conn.execute("DROP INDEX IF EXISTS notifications_failed")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=2_000_000,
                        help="notices to write (default 2,000,000)")  # fmt: skip
    rows = parser.parse_args().rows
    with bench_database(None, "outbox_failed_plan") as url:  # its folder deleted after
        asyncio.run(measure(url, rows))


if __name__ == "__main__":
    main()
