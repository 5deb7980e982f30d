"""Rate limits of the public (keyless) endpoints: per phone and per client address.

Limits are written in the ``limits`` library's notation (``"1/minute;5/hour"``) in the
settings (JIESU_OTP_*_LIMITS, JIESU_REPORT_*_LIMITS). Like the failed-authentication limit
(api/auth_limit.py), the counts live in the API process's memory: exact for one API process,
N times the limit with N replicas, forgotten at a restart.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from api.errors import ApiError


class RateLimits:
    """Named limits; ``hit`` counts one request against each and refuses past any (429)."""

    def __init__(self, limits: dict[str, str]) -> None:
        self._items: dict[str, list[RateLimitItem]] = {
            name: parse_many(spec) for name, spec in limits.items()
        }
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def hit(self, name: str, key: str, what: str) -> None:
        """Count one request of ``key`` under the limits ``name``; 429 with Retry-After if any
        is used up (then nothing is counted, so waiting is enough)."""
        await self.check(name, key, what)
        for item in self._items[name]:
            await self._limiter.hit(item, name, key)

    async def check(self, name: str, key: str, what: str) -> None:
        """Refuse (429, Retry-After) if any limit ``name`` of ``key`` is used up; count
        nothing: for a limit counted only once the request has proved its right to it."""
        for item in self._items[name]:
            if not await self._limiter.test(item, name, key):
                stats = await self._limiter.get_window_stats(item, name, key)
                retry_after = max(1, math.ceil(stats.reset_time - time.time()))
                raise ApiError(
                    429, "rate_limited",
                    f"too many {what}; retry in {retry_after} s ({item})",
                    headers={"Retry-After": str(retry_after)},
                )  # fmt: skip
