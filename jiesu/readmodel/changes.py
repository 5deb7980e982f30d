"""Who is told when a case's projection commits: PostgreSQL ``LISTEN`` / ``NOTIFY``.

The read-model writer (jiesu.readmodel.projection) sends ``NOTIFY case_projected, '<case id>'``
in the transaction that writes a case's new events, so the notice arrives exactly when they are
readable. The API (api/cases.py, ``act``) waits on it for the event an action caused instead of
asking the workflow: a projection runs inside the workflow task that applied the signal, so
the event is in the read model before that task has even completed.

A :class:`ProjectionFeed` holds one dedicated connection (not a pooled one: a pooled connection
keeps no session state, jiesu.db) listening on the channel, and wakes the waiters of the case
named in each notice. When that connection is lost, :attr:`ProjectionFeed.live` is False until
it is back, and callers use another way meanwhile (the API asks the workflow).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import asyncpg

CHANNEL = "case_projected"
NOTIFY_SQL = f"SELECT pg_notify('{CHANNEL}', $1)"
RECONNECT_SECONDS = 2.0  # at most one reconnection attempt this often

log = logging.getLogger(__name__)


class ProjectionFeed:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._next_attempt = 0.0
        self._connecting: asyncio.Task[None] | None = None

    @property
    def live(self) -> bool:
        """Listening now: a projection that commits from here on will be told."""
        if self._conn is not None and not self._conn.is_closed():
            return True
        self._reconnect_later()
        return False

    async def start(self) -> None:
        """Connect and listen; on failure the feed stays down and retries when asked."""
        loop = asyncio.get_running_loop()
        self._next_attempt = loop.time() + RECONNECT_SECONDS
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(self._dsn)
            await conn.add_listener(CHANNEL, self._notified)
        except Exception as err:  # down for now, whatever the cause: asked again later
            log.warning("projection feed: cannot listen (%s); actions ask the workflow", err)
            if conn is not None:
                conn.terminate()
            return
        self._conn = conn

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=5)
            self._conn = None

    def _reconnect_later(self) -> None:
        """One reconnection attempt under way at a time, at most every RECONNECT_SECONDS."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if (self._connecting is not None and not self._connecting.done()) or (
            loop.time() < self._next_attempt
        ):
            return
        self._connecting = loop.create_task(self.start())

    def _notified(self, _conn: object, _pid: int, _channel: str, case_id: str) -> None:
        for changed in self._waiters.get(case_id, ()):
            changed.set()

    @contextlib.contextmanager
    def watch(self, case_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever a projection of ``case_id`` commits while the block runs
        (clear it before each look at the read model, so that no notice is missed)."""
        changed = asyncio.Event()
        self._waiters.setdefault(case_id, set()).add(changed)
        try:
            yield changed
        finally:
            waiting = self._waiters.get(case_id)
            if waiting is not None:
                waiting.discard(changed)
                if not waiting:
                    del self._waiters[case_id]
