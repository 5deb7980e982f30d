"""Who is told when a case's projection commits: PostgreSQL ``LISTEN`` / ``NOTIFY``.

The read-model writer (jiesu.readmodel.projection) sends ``NOTIFY case_projected`` in the
transaction that writes a case's new events, so the notice arrives exactly when they are
readable. The API (api/cases.py, ``act``) waits on it for the event an action caused instead of
asking the workflow: a projection runs inside the workflow task that applied the signal, so
the event is in the read model before that task has even completed.

The notice is the case id and, after a newline, the case as that transaction left it (its
row's ``state`` and every event, JSON: :func:`notify_payload`), so that the API answers without
reading it back; when that would not fit in a notice (PostgreSQL takes less than 8,000 bytes)
the case id alone, and whoever waits reads the read model. An API older than the worker takes
a long notice for another case's and falls back to the workflow's query: update the API first.

A :class:`ProjectionFeed` holds one dedicated connection (not a pooled one: a pooled connection
keeps no session state, jiesu.db) listening on the channel, and wakes the waiters of the case
named in each notice. When that connection is lost, :attr:`ProjectionFeed.live` is False until
it is back, and callers use another way meanwhile (the API asks the workflow).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import asyncpg

CHANNEL = "case_projected"
NOTIFY_SQL = f"SELECT pg_notify('{CHANNEL}', $1)"
RECONNECT_SECONDS = 2.0  # at most one reconnection attempt this often
NOTICE_LIMIT = 8000  # bytes: PostgreSQL refuses a NOTIFY payload this long or longer

log = logging.getLogger(__name__)


def notify_payload(case_id: str, state: dict[str, Any], events: list[dict[str, Any]]) -> str:
    """The payload that tells of a case's projection: ``case_id``, and the case as projected
    (``state`` without events, as in ``cases.state``, and every event of ``case_events``)
    when it fits; the case id alone otherwise."""
    snapshot = json.dumps({"state": state, "events": events}, ensure_ascii=False, default=str)
    text = f"{case_id}\n{snapshot}"
    return text if len(text.encode()) < NOTICE_LIMIT else case_id


class Change:
    """What a watcher of one case is told: :meth:`wait` returns once a projection of the case
    has committed since the last :meth:`take`; ``take`` gives the case as the latest of them
    left it (the notice's JSON), or None when no notice carried it."""

    def __init__(self) -> None:
        self._committed = asyncio.Event()
        self._snapshot: str | None = None

    def tell(self, snapshot: str | None) -> None:
        self._snapshot = snapshot
        self._committed.set()

    def take(self) -> str | None:
        snapshot, self._snapshot = self._snapshot, None
        self._committed.clear()
        return snapshot

    async def wait(self) -> None:
        await self._committed.wait()


class ProjectionFeed:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._waiters: dict[str, set[Change]] = {}
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

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        case_id, newline, snapshot = payload.partition("\n")  # parsed by the waiter, if any
        for changed in self._waiters.get(case_id, ()):
            changed.tell(snapshot if newline else None)

    @contextlib.contextmanager
    def watch(self, case_id: str) -> Iterator[Change]:
        """Told whenever a projection of ``case_id`` commits while the block runs (take
        what it was told before each look at the read model, so that no notice is missed)."""
        changed = Change()
        self._waiters.setdefault(case_id, set()).add(changed)
        try:
            yield changed
        finally:
            waiting = self._waiters.get(case_id)
            if waiting is not None:
                waiting.discard(changed)
                if not waiting:
                    del self._waiters[case_id]
