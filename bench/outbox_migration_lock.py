"""How long upgrading a large outbox past migration 0044 holds the projection's writes: each
later migration timed as ``jiesu.db.migrate`` applies it, while another connection writes a
notice every 10 ms and times each write.

    .venv/bin/python -m bench.outbox_migration_lock [--rows 2000000] [--dsn URL]

Starts its own embedded PostgreSQL (bench.harness.bench_database) unless ``--dsn`` names a
database (created if missing; it must not hold Jiesu's tables yet). Migrates it up to 0044,
writes ``--rows`` notices as ``bench.outbox_failed_plan`` does, ``VACUUM ANALYZE``, then
applies the migrations after 0044 one at a time (the runner itself, each in its transaction)
while the writer inserts notices with the projection's statement (``projection._INSERT_NOTICE``,
each its own transaction, as an intake's projection does). Reports each migration's seconds,
and the writes' latency during the upgrade: how many, the longest, how many waited over 50 ms,
and whether the writer was seen waiting for a lock (``pg_stat_activity.wait_event_type =
'Lock'``, polled every 5 ms). Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time

import asyncpg

from bench.harness import bench_database
from bench.outbox_failed_plan import _FILL
from jiesu import db
from jiesu.readmodel import projection

BEFORE = "0044"  # the installation being upgraded has applied up to this one


class Writer:
    """Writes one notice every 10 ms and keeps each write's latency."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.latencies: list[tuple[float, float]] = []  # (started, seconds)
        self.waited_on_lock = 0  # polls that saw the writer waiting for a lock

    async def write(self, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            started = time.monotonic()
            await self.conn.execute(projection._INSERT_NOTICE, f"probe:{n}", "JSPROBE", n, "routed",
                                    "department", "dept-1", "email", "s", "b")  # fmt: skip
            self.latencies.append((started, time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.01)

    async def watch(self, watcher: asyncpg.Connection, stop: asyncio.Event) -> None:
        pid = self.conn.get_server_pid()
        while not stop.is_set():
            if await watcher.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
            ):
                self.waited_on_lock += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.005)


async def upgrade(url: str) -> None:
    conn = await asyncpg.connect(url)
    writer_conn = await asyncpg.connect(url)
    watcher = await asyncpg.connect(url)
    files = db._migration_files
    try:
        later = [version for version, _ in files() if version[:4] > BEFORE]
        writer = Writer(writer_conn)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(writer.write(stop)),
                 asyncio.create_task(writer.watch(watcher, stop))]  # fmt: skip
        await asyncio.sleep(0.2)  # the writer's latency before the upgrade, for comparison
        for version in later:
            db._migration_files = lambda v=version: [f for f in files() if f[0] <= v]  # type: ignore[misc]
            started = time.monotonic()
            applied = await db.migrate(conn)
            print(f"{', '.join(applied) or version + ' (applied before)'}:"
                  f" {time.monotonic() - started:.2f} s")
        upgraded = time.monotonic()
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*tasks)
        during = [s for t, s in writer.latencies if t <= upgraded]
        print(f"writes during the upgrade: {len(during)}, longest {max(during) * 1000:.1f} ms,"
              f" over 50 ms: {sum(s > 0.05 for s in during)};"
              f" the writer seen waiting for a lock in {writer.waited_on_lock} polls")
        checks = await conn.fetch(
            "SELECT conname, convalidated FROM pg_constraint"
            " WHERE conrelid = 'notifications'::regclass AND contype = 'c' ORDER BY 1")
        print("constraints:", ", ".join(f"{r['conname']} validated={r['convalidated']}"
                                        for r in checks))  # fmt: skip
    finally:
        db._migration_files = files
        for c in (conn, writer_conn, watcher):
            await c.close()


async def prepare(url: str, rows: int) -> None:
    await db.ensure_database(url)
    conn = await asyncpg.connect(url)
    files = db._migration_files
    try:
        db._migration_files = lambda: [f for f in files() if f[0][:4] <= BEFORE]  # type: ignore[misc]
        await db.migrate(conn)
        started = time.monotonic()
        await conn.execute(_FILL, rows)
        await conn.execute("VACUUM ANALYZE notifications")
        size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('notifications'))")
        print(f"{rows:,} notices written in {time.monotonic() - started:.1f} s, {size};"
              f" PostgreSQL {await conn.fetchval('SHOW server_version')};"
              f" load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        db._migration_files = files
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="notices (default 2,000,000)")
    parser.add_argument("--dsn", help="a new database to use instead of an embedded server's")
    args = parser.parse_args()
    with bench_database(args.dsn, "outbox_migration_lock") as url:
        asyncio.run(prepare(url, args.rows))
        asyncio.run(upgrade(url))


if __name__ == "__main__":
    main()
