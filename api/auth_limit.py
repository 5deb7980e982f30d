"""A limit on failed authentications per client: the answer to online guessing of API keys
and citizen tokens.

A *failure* is a credential that was presented and is wrong: an unknown or revoked API key,
a citizen token that does not open the case. After ``JIESU_AUTH_FAILURE_LIMIT`` failures
within ``JIESU_AUTH_FAILURE_WINDOW_SECONDS`` (a moving window), every request of that client
that needs a credential is answered ``429 too_many_failed_authentications`` with
``Retry-After``, *before* its credential is looked at: otherwise a right guess would still
stand out from the wrong ones. Requests without any credential are not failures (401, and
nothing to guess).

The client is the peer address uvicorn reports, counted by :func:`address_key`: an IPv4
address, or an IPv6 address's /64 network — one subscriber's (a home line, a phone on a mobile
network, a cloud server each get a /64), who can take any of its 2**64 addresses, so counting
each address alone bounded nothing. Behind a reverse proxy that is the proxy's
address, unless uvicorn is told to trust its ``X-Forwarded-For`` (``FORWARDED_ALLOW_IPS`` or
``--forwarded-allow-ips``): do that, or one guesser locks out every user behind the proxy.

The counts are kept in PostgreSQL (jiesu.rate_limits, moving windows): every API replica
sees the same failures and a restart keeps them, so neither more replicas nor getting the API
restarted gives a guesser more guesses. Without the database the check raises, and the
request is answered 503 database_unavailable before its credential is looked at.

Staff logins take :data:`LoginAttempt` and call :func:`check_login` themselves, with the login
as typed: the first 429 of each client in each window is recorded in the refused sign-ins
(登录失败记录, jiesu.access.sign_in_failures), the rest are not (one row per window).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from api.errors import ApiError
from jiesu.access import sign_in_failures
from jiesu.access.clients import address_key
from jiesu.config import Settings
from jiesu.rate_limits import NamedLimits

_NAMESPACE = "auth-failures"
_RECORDED = "auth-refusals-recorded"


class AuthFailureLimiter:
    """Counts failed authentications per client; refuses a client that has too many."""

    def __init__(
        self, pool: asyncpg.Pool, settings: Settings, failures: int, window_seconds: int
    ) -> None:
        window = f"{window_seconds} second"
        self._limits = NamedLimits(pool, settings, {
            _NAMESPACE: f"{failures} per {window}", _RECORDED: f"1 per {window}",
        })  # fmt: skip

    @classmethod
    def from_settings(cls, settings: Settings, pool: asyncpg.Pool) -> AuthFailureLimiter:
        return cls(
            pool, settings, settings.auth_failure_limit, settings.auth_failure_window_seconds
        )

    async def check(self, client: str) -> None:
        """Raise 429 (with Retry-After) if ``client`` has used up its failures."""
        past = await self._limits.past(_NAMESPACE, address_key(client))
        if past is None:
            return
        raise ApiError(
            429,
            "too_many_failed_authentications",
            f"too many failed authentications from this client; retry in {past.retry_after} s",
            headers={"Retry-After": str(past.retry_after)},
        )

    async def failed(self, client: str) -> None:
        await self._limits.count(_NAMESPACE, address_key(client))

    async def first_refusal(self, client: str) -> bool:
        """Whether this is ``client``'s first refusal (429) within a window: the one to record."""
        return await self._limits.take([(_RECORDED, address_key(client))]) is None


@dataclass(frozen=True)
class AuthAttempt:
    """One request's attempt to authenticate, on behalf of its client."""

    limiter: AuthFailureLimiter
    client: str

    async def failed(self) -> None:
        """Count this attempt's credential as wrong."""
        await self.limiter.failed(self.client)


def client_of(request: Request) -> str:
    """The client's address, as recorded (a session, a refused sign-in)."""
    return request.client.host if request.client else "unknown"


def client_key(request: Request) -> str:
    """The key of the request's client for a per-client limit (:func:`address_key`)."""
    return address_key(client_of(request))


async def _attempt(request: Request) -> AuthAttempt:
    attempt = AuthAttempt(request.app.state.auth_limiter, client_of(request))
    await attempt.limiter.check(attempt.client)  # a refused client gets no further
    return attempt


Attempt = Annotated[AuthAttempt, Depends(_attempt)]
"""A dependency for every endpoint that checks a credential: refuses a blocked client (429)
and lets the endpoint report a wrong credential with ``await attempt.failed()``."""


async def _login_attempt(request: Request) -> AuthAttempt:
    return AuthAttempt(request.app.state.auth_limiter, client_of(request))


LoginAttempt = Annotated[AuthAttempt, Depends(_login_attempt)]
""":data:`Attempt` for the staff logins, which check the limit with :func:`check_login`."""


async def check_login(attempt: AuthAttempt, pool: asyncpg.Pool, login: str) -> None:
    """Refuse a blocked client (429) as :data:`Attempt` does; record the refusal if it is the
    client's first in the window, so a flood of guesses costs one row per window, not one per
    request."""
    try:
        await attempt.limiter.check(attempt.client)
    except ApiError:
        if await attempt.limiter.first_refusal(attempt.client):
            await sign_in_failures.record(
                pool, login, sign_in_failures.RATE_LIMITED, attempt.client
            )
        raise
