"""Rate limits of the public (keyless) endpoints: per phone, per client address and in all.

Limits are written in the ``limits`` library's notation (``"1/minute;5/hour"``) in the
settings (JIESU_OTP_*_LIMITS, JIESU_REPORT_*_LIMITS). Like the failed-authentication limit
(api/auth_limit.py), the counts live in the API process's memory (jiesu.rate_limits): exact
for one API process, N times the limit with N replicas, forgotten at a restart.
"""

from __future__ import annotations

from api.errors import ApiError
from jiesu.rate_limits import NamedLimits


class RateLimits(NamedLimits):
    """Named limits; ``hit`` counts one request against each and refuses past any (429)."""

    async def hit(self, name: str, key: str, what: str) -> None:
        """Count one request of ``key`` under the limits ``name``; 429 with Retry-After if any
        is used up (then nothing is counted, so waiting is enough)."""
        await self.check(name, key, what)
        await self.count(name, key)

    async def check(self, name: str, key: str, what: str) -> None:
        """Refuse (429, Retry-After) if any limit ``name`` of ``key`` is used up; count
        nothing: for a limit counted only once the request has proved its right to it."""
        past = await self.past(name, key)
        if past is not None:
            raise ApiError(
                429, "rate_limited",
                f"too many {what}; retry in {past.retry_after} s ({past.item})",
                headers={"Retry-After": str(past.retry_after)},
            )  # fmt: skip
