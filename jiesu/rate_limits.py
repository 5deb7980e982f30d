"""Named bounds in the ``limits`` library's notation (``"1/minute;5/hour"``), counted in
PostgreSQL (table ``rate_limit_hits``, function ``rate_limit_hit``, migration 0038) as moving
windows: every API replica and mail listener on the database sees the same count, and a
restart keeps it. The API's keyless endpoints (api/rate_limits.py), the failed-authentication
limit (api/auth_limit.py) and the mail listener (jiesu/channels/mail.py) count with them.

- A check and its count are one step (:meth:`NamedLimits.take`, one round trip) under a lock
  of each (name, key): two requests at once never both pass the last slot.
- Keys are stored as ``HMAC(server secret, name|key)``: no phone, client address or sender.
- Each hit row expires after the longest window of its limit; :meth:`NamedLimits.prune`
  deletes expired rows, run by each process at most every ``PRUNE_EVERY`` seconds when it
  counts, so the table holds about the hits of one longest window.
- Without PostgreSQL a check raises the driver's error: the API answers it ``503
  database_unavailable`` (Retry-After), as every request that needs the database, and the
  mail listener ``451 4.3.0`` — the limits fail closed: no code is texted, no credential
  looked at and no mail filed unbounded.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from limits import RateLimitItem, parse_many

from jiesu.access import citizen_tokens
from jiesu.config import Settings

_HIT = "SELECT bound, retry_after FROM rate_limit_hit($1, $2, $3, $4, $5)"


@dataclass(frozen=True)
class Past:
    """A bound used up, and the seconds until it lets one more through."""

    item: RateLimitItem
    retry_after: int


class NamedLimits:
    """Each name its bounds; an empty spec bounds nothing (and costs no query)."""

    PRUNE_EVERY = 60.0  # seconds, per process

    def __init__(self, pool: asyncpg.Pool, settings: Settings, limits: dict[str, str]) -> None:
        self._pool, self._settings = pool, settings
        self._items: dict[str, list[RateLimitItem]] = {
            name: parse_many(spec) if spec.strip() else [] for name, spec in limits.items()
        }
        self._secret: bytes | None = None
        self._pruned_at = -math.inf

    async def past(self, name: str, key: str) -> Past | None:
        """The first bound of ``name`` that ``key`` has used up, or None; counts nothing."""
        found = await self._hit([(name, key)], "test")
        return found[1] if found else None

    async def count(self, name: str, key: str) -> None:
        """Count one against every bound of ``name`` for ``key``, used up or not."""
        await self._hit([(name, key)], "count")

    async def take(self, keys: Sequence[tuple[str, str]]) -> tuple[str, Past] | None:
        """Count one against every bound of each (name, key), unless one is used up: then
        count nothing and return it (its name and the bound). One atomic step."""
        return await self._hit(keys, "take")

    async def prune(self) -> int:
        """Delete the hits that count in no window any more; how many."""
        self._pruned_at = time.monotonic()
        status = await self._pool.execute(
            "DELETE FROM rate_limit_hits WHERE expires_at < clock_timestamp()"
        )
        return int(status.rsplit(" ", 1)[1])

    async def _hit(self, keys: Sequence[tuple[str, str]], mode: str) -> tuple[str, Past] | None:
        bounds = [(name, key, item) for name, key in keys for item in self._items[name]]
        if not bounds:
            return None
        secret = await self._key_secret()
        row = await self._pool.fetchrow(
            _HIT,
            [name for name, _, _ in bounds],
            [_stored_key(secret, name, key) for name, key, _ in bounds],
            [item.amount for _, _, item in bounds],
            [float(item.get_expiry()) for _, _, item in bounds],
            mode,
        )
        if mode != "test" and time.monotonic() - self._pruned_at > self.PRUNE_EVERY:
            await self.prune()
        if row is None:
            return None
        name, _, item = bounds[row["bound"] - 1]
        return name, Past(item, max(1, math.ceil(row["retry_after"])))

    async def _key_secret(self) -> bytes:
        if self._secret is None:
            self._secret = await citizen_tokens.server_secret(self._pool, self._settings)
        return self._secret


def _stored_key(secret: bytes, name: str, key: str) -> str:
    """What is stored for ``key``: keyed, so the table gives no phone or address away."""
    return hmac.new(secret, f"rate-limit|{name}|{key}".encode(), hashlib.sha256).hexdigest()
