"""Refused sign-ins (登录失败记录): every staff login that opened no session, for auditors.

:func:`jiesu.access.sessions.login` records its refusals (``login_failed``,
``account_disabled``) through :func:`record` once its transaction has rolled back; the API's
login endpoints record the first refusal by the failed-authentication limit in each window
(``rate_limited``). The login is kept as typed, an unknown one too (that is what shows a
guesser); the password never, nor anything derived from it. The table
``staff_sign_in_failures`` (migration 0024) is append-only.

Recording is evidence, not a gate: when it fails the refusal still answers as refused (401,
403, 429), and the failure is logged.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

import asyncpg
from pydantic import BaseModel

log = logging.getLogger(__name__)

Reason = Literal["login_failed", "account_disabled", "rate_limited"]
RATE_LIMITED: Reason = "rate_limited"
MAX_LOGIN = 200  # the console's form takes up to 200 characters; the column keeps as many
MAX_CLIENT = 100
MAX_FAILURES = 1000


class SignInFailure(BaseModel):
    """One refused sign-in (登录失败)."""

    at: datetime
    login: str  # as typed: it may be no one's login
    reason: Reason
    client: str  # the peer address the API saw (a proxy's, unless it is trusted)
    known: bool  # whether the login is a person's


async def record(pool: asyncpg.Pool, login: str, reason: Reason, client: str | None) -> None:
    """Record one refusal, in a statement of its own (outside the refused transaction). Never
    raises: a database that cannot take the row must not turn a refusal into a 500."""
    try:
        await pool.execute(
            "INSERT INTO staff_sign_in_failures (login, reason, client, staff_id)"
            " VALUES ($1, $2, $3, (SELECT id FROM staff WHERE login = $1))",
            login.replace("\x00", "")[:MAX_LOGIN], reason, (client or "unknown")[:MAX_CLIENT],
        )  # fmt: skip
    except Exception:  # any failure at all (database down, pool closed...): log, go on
        log.exception("could not record a refused sign-in (%s) from %s", reason, client)


async def failures(
    db: asyncpg.Pool | asyncpg.Connection, *, login: str | None = None, limit: int = 100
) -> list[SignInFailure]:
    """Refused sign-ins, newest first, of every login or of one (as typed)."""
    rows = await db.fetch(
        "SELECT at, login, reason, client, staff_id IS NOT NULL AS known"
        " FROM staff_sign_in_failures WHERE ($1::text IS NULL OR login = $1)"
        " ORDER BY at DESC, id DESC LIMIT $2",
        login, min(limit, MAX_FAILURES),
    )  # fmt: skip
    return [SignInFailure.model_validate(dict(r)) for r in rows]
