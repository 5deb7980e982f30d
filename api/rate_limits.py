"""Rate limits of the public (keyless) endpoints: per phone, per client address and in all.

Limits are written in the ``limits`` library's notation (``"1/minute;5/hour"``) in the
settings (JIESU_OTP_*_LIMITS, JIESU_REPORT_*_LIMITS). Like the failed-authentication limit
(api/auth_limit.py), they are counted in PostgreSQL (jiesu.rate_limits): every API replica
sees the same counts and a restart keeps them; without the database a request that would be
counted is answered 503 database_unavailable, not let through.
"""

from __future__ import annotations

from api.errors import ApiError
from jiesu.rate_limits import NamedLimits, Past


class RateLimits(NamedLimits):
    """Named limits; ``hit`` counts one request against each and refuses past any (429)."""

    async def hit(self, name: str, key: str, what: str) -> None:
        """Count one request of ``key`` under the limits ``name``; 429 with Retry-After if any
        is used up (then nothing is counted, so waiting is enough). The check and the count
        are one step: requests at once do not both pass the last slot."""
        if found := await self.take([(name, key)]):
            raise _refused(found[1], what)

    async def check(self, name: str, key: str, what: str) -> None:
        """Refuse (429, Retry-After) if any limit ``name`` of ``key`` is used up; count
        nothing: for a limit counted only once the request has proved its right to it."""
        if past := await self.past(name, key):
            raise _refused(past, what)


def _refused(past: Past, what: str) -> ApiError:
    return ApiError(
        429, "rate_limited", f"too many {what}; retry in {past.retry_after} s ({past.item})",
        headers={"Retry-After": str(past.retry_after)},
    )  # fmt: skip
