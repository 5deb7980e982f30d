"""Named bounds in the ``limits`` library's notation (``"1/minute;5/hour"``), counted in this
process's memory (moving windows): exact for one process, N times the bound with N replicas,
forgotten at a restart. The API's keyless endpoints (api/rate_limits.py) and the mail listener
(jiesu/channels/mail.py) count with them."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter


@dataclass(frozen=True)
class Past:
    """A bound used up, and the seconds until it lets one more through."""

    item: RateLimitItem
    retry_after: int


class NamedLimits:
    """Each name its bounds; an empty spec bounds nothing."""

    def __init__(self, limits: dict[str, str]) -> None:
        self._items: dict[str, list[RateLimitItem]] = {
            name: parse_many(spec) if spec.strip() else [] for name, spec in limits.items()
        }
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def past(self, name: str, key: str) -> Past | None:
        """The first bound of ``name`` that ``key`` has used up, or None; counts nothing."""
        for item in self._items[name]:
            if not await self._limiter.test(item, name, key):
                stats = await self._limiter.get_window_stats(item, name, key)
                return Past(item, max(1, math.ceil(stats.reset_time - time.time())))
        return None

    async def count(self, name: str, key: str) -> None:
        """Count one against every bound of ``name`` for ``key``."""
        for item in self._items[name]:
            await self._limiter.hit(item, name, key)
