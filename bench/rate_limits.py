"""What one rate-limit check costs now that it is counted in PostgreSQL (jiesu/rate_limits.py,
migration 0038), next to the in-memory count it replaced.

    PYTHONPATH=. .venv/bin/python -m bench.rate_limits [--checks 2000] [--rows 100000]
                                                      [--dsn postgresql://...]

On an embedded PostgreSQL of its own (or ``--dsn``), with ``--rows`` hits of other keys in
the table (a busy day of codes and failed authentications), one process, one check at a
time, over a pooled connection (as the API's):

- take, within: ``take`` of the per-phone code limit (``1/minute;5/hour;10/day``, three
  bounds) for a new phone each time — checked and counted;
- take, past: the same phone again — the bound is used up, nothing counted (a 429);
- past: ``past`` (check only, as the failed-authentication check before each credential);
- memory: the old ``limits`` MemoryStorage check-and-count, for comparison.

Prints p50 / p99 / mean in milliseconds. docs/security.md quotes a run. Not run by ``make``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from limits import parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from bench.harness import bench_database
from jiesu import db
from jiesu.config import Settings
from jiesu.ops.bootstrap import prepare_database
from jiesu.rate_limits import NamedLimits

SPEC = "1/minute;5/hour;10/day"  # JIESU_OTP_PHONE_LIMITS' default


async def _timed(checks: int, one: Callable[[int], Awaitable[Any]]) -> list[float]:
    took = []
    for n in range(checks):
        began = time.perf_counter()
        await one(n)
        took.append((time.perf_counter() - began) * 1000)
    return took


def _line(what: str, took: list[float]) -> str:
    p50 = statistics.median(took)
    p99 = statistics.quantiles(took, n=100)[98]
    return f"| {what} | {len(took)} | {p50:.3f} | {p99:.3f} | {statistics.fmean(took):.3f} |"


async def run(dsn: str, checks: int, rows: int) -> None:
    await prepare_database(dsn, demo=False)
    pool = await db.create_pool(dsn, max_size=2)
    try:
        await pool.execute(
            "INSERT INTO rate_limit_hits (name, key, at, expires_at)"
            " SELECT 'otp-phone', md5(i::text), now() - (i % 86400) * interval '1 second',"
            " now() + interval '1 day' FROM generate_series(1, $1) AS i",
            rows,
        )
        await pool.execute("ANALYZE rate_limit_hits")
        limits = NamedLimits(pool, Settings(DATABASE_URL=dsn), {"otp-phone": SPEC})
        limits.PRUNE_EVERY = float("inf")  # the prune is its own cost, once a minute
        await limits.prune()
        phones = [uuid.uuid4().hex for _ in range(checks)]
        await _timed(50, lambda n: limits.take([("otp-phone", f"warm-{n}")]))
        within = await _timed(checks, lambda n: limits.take([("otp-phone", phones[n])]))
        past = await _timed(checks, lambda n: limits.take([("otp-phone", phones[0])]))
        check = await _timed(checks, lambda n: limits.past("otp-phone", phones[n]))
        began = time.perf_counter()
        pruned = await pool.execute(
            "DELETE FROM rate_limit_hits WHERE expires_at < clock_timestamp() + interval '1 day'"
        )
        prune_ms = (time.perf_counter() - began) * 1000
    finally:
        await pool.close()
    memory = MovingWindowRateLimiter(MemoryStorage())
    items = parse_many(SPEC)

    async def in_memory(n: int) -> None:
        for item in items:
            if not await memory.test(item, "otp-phone", phones[n]):
                return
        for item in items:
            await memory.hit(item, "otp-phone", phones[n])

    old = await _timed(checks, in_memory)
    print(f"rate_limit_hits: {rows:,} rows of other keys; {SPEC}\n")
    print("| check | n | p50 ms | p99 ms | mean ms |\n|---|---|---|---|---|")
    for what, took in (("take, within (counted)", within), ("take, past (429)", past),
                       ("past (check only)", check), ("memory (before)", old)):  # fmt: skip
        print(_line(what, took))
    print(f"\nprune of every row ({pruned}): {prune_ms:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dsn", default=None)
    args = parser.parse_args()
    with bench_database(args.dsn, "jiesu_bench") as dsn:
        asyncio.run(run(dsn, args.checks, args.rows))


if __name__ == "__main__":
    main()
