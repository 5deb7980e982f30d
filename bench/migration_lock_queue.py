"""How long an upgrade holds the outbox's writers when a long transaction reads the outbox:
a reader (an auditor's export) holds a read of ``notifications`` open for ``--hold`` seconds
while ``jiesu.db.migrate`` applies the migrations after 0044 (0045's ALTER TABLE asks for the
outbox's ACCESS EXCLUSIVE lock), and a writer writes a notice every 100 ms and times each.

    .venv/bin/python -m bench.migration_lock_queue [--hold 10] [--lock-timeout 3] [--dsn URL]

Starts its own embedded PostgreSQL (bench.harness.bench_database) unless ``--dsn`` names a
database (created if missing; it must not hold Jiesu's tables yet). ``--lock-timeout 0``
waits for locks without a bound (PostgreSQL's ``lock_timeout = 0``): the runner as it was
before it gave way. Prints each write that waited over 50 ms, the longest, when the
migrations were applied, and the runner's warnings (one per try that gave way). Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import time

import asyncpg

from bench.harness import bench_database
from jiesu import db
from jiesu.readmodel import projection

BEFORE = "0044"  # the installation being upgraded has applied up to this one


async def prepare(url: str) -> None:
    await db.ensure_database(url)
    conn = await asyncpg.connect(url)
    files = db._migration_files
    try:
        db._migration_files = lambda: [f for f in files() if f[0][:4] <= BEFORE]  # type: ignore[misc]
        await db.migrate(conn)
    finally:
        db._migration_files = files
        await conn.close()


async def write_notices(conn: asyncpg.Connection, stop: asyncio.Event, t0: float,
                        latencies: list[tuple[float, float]]) -> None:  # fmt: skip
    n = 0
    while not stop.is_set():
        n += 1
        started = time.monotonic()
        await conn.execute(projection._INSERT_NOTICE, f"probe:{n}", "JSPROBE", n, "routed",
                           "department", "dept-1", "email", "s", "b")  # fmt: skip
        latencies.append((started - t0, time.monotonic() - started))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


async def upgrade(url: str, hold: float, lock_timeout: float) -> None:
    reader, conn, observer, writer = [await asyncpg.connect(url) for _ in range(4)]
    try:
        export = reader.transaction()
        await export.start()
        await reader.fetchval("SELECT count(*) FROM notifications")
        t0 = time.monotonic()
        latencies: list[tuple[float, float]] = []
        stop = asyncio.Event()
        writing = asyncio.create_task(write_notices(writer, stop, t0, latencies))

        async def end_export() -> None:
            await asyncio.sleep(hold)
            await export.commit()
            print(f"{time.monotonic() - t0:5.2f} s  the reader ends its transaction")

        ending = asyncio.create_task(end_export())
        patience = db.LockPatience(timeout=lock_timeout)
        applied = await db.migrate(conn, observer=observer, patience=patience)
        print(f"{time.monotonic() - t0:5.2f} s  applied {', '.join(applied)}")
        await ending
        await asyncio.sleep(0.3)
        stop.set()
        await writing
        for at, took in latencies:
            if took > 0.05:
                print(f"{at:5.2f} s  a notice written, waited {took:.2f} s")
        slow = sum(s > 0.05 for _, s in latencies)
        print(f"writes: {len(latencies)}, longest {max(s for _, s in latencies):.2f} s,"
              f" over 50 ms: {slow}; lock_timeout {lock_timeout:g} s,"
              f" reader held {hold:g} s; PostgreSQL {await conn.fetchval('SHOW server_version')};"
              f" load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        for c in (reader, conn, observer, writer):
            await c.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hold", type=float, default=10.0, help="seconds the reader holds")
    parser.add_argument("--lock-timeout", type=float, default=db.MIGRATION_LOCK_TIMEOUT,
                        help="seconds a migration waits for a lock; 0: no bound (as before)")
    parser.add_argument("--dsn", help="a new database to use instead of an embedded server's")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    with bench_database(args.dsn, "migration_lock_queue") as url:
        asyncio.run(prepare(url))
        asyncio.run(upgrade(url, args.hold, args.lock_timeout))


if __name__ == "__main__":
    main()
