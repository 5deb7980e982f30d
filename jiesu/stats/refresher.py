"""The background refresher of the daily rollup (统计汇总后台刷新): keeps ``case_daily_stats``
current so that no statistics request ever pays for a refresh or a rebuild.

It runs in every worker process (worker.py), next to the outbox dispatcher. Every
``JIESU_STATS_REFRESH_SECONDS`` it checks, with one cheap query, whether a case changed that
the last refresh did not see, and if so refreshes incrementally (jiesu.stats.rollup). On a
database that has never been rolled up (or whose time zone changed) that first refresh is the
full rebuild — here, in the background, while requests keep answering from what is there
with ``as_of``.

- **Single flight across processes**: the refresh takes a transaction-level advisory lock with
  ``pg_try_advisory_xact_lock``; a refresher that finds it taken skips this turn instead of
  queueing the same work behind it.
- **Crash-safe**: a refresh is one transaction; a process that dies in the middle leaves the
  previous rollup and bookkeeping untouched, and its lock goes with its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg

from jiesu.stats.rollup import RefreshResult, needs_refresh, try_refresh

log = logging.getLogger(__name__)


class RollupRefresher:
    def __init__(self, pool: asyncpg.Pool, timezone: str, interval: float = 5.0) -> None:
        self.pool = pool
        self.timezone = timezone
        self.interval = interval

    async def run_once(self) -> RefreshResult | None:
        """Refresh when something changed and nobody else is refreshing; None otherwise."""
        async with self.pool.acquire() as conn:
            if not await needs_refresh(conn, self.timezone):
                return None
            began = time.monotonic()
            result = await try_refresh(conn, self.timezone)
        if result is not None and (result.full or time.monotonic() - began > 1.0):
            log.info("statistics rollup refreshed (%s, %d days) in %.1f s",
                     "full rebuild" if result.full else "incremental", result.days,
                     time.monotonic() - began)  # fmt: skip
        return result

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh every ``interval`` seconds until ``stop`` is set; errors are logged and the
        next turn tries again (the database may be away)."""
        log.info("statistics refresher started (every %.1f s)", self.interval)
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("statistics refresher: refresh failed, retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
        log.info("statistics refresher stopped")
