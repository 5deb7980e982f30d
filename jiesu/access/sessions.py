"""Staff sessions (登录会话): server-side, in PostgreSQL, for people working in a browser.

:func:`login` checks a person's password and opens a session: a random token for the cookie
(only its SHA-256 is stored, as for API keys) and a CSRF token for the pages' forms. A session
ends when it has been unused for its idle timeout, at its absolute expiry, at logout, and when
its person is disabled or their password or role changes (:mod:`jiesu.access.staff`).

These are plain functions: the API's ``/api/v1/session`` (api/routers/session.py) and the
console's own form handlers call the same ones; ``api.deps.authenticate`` reads the cookie.

A session's row stays after it ends, for ``JIESU_SESSION_KEEP_DAYS`` past its absolute expiry;
then :func:`purge_ended` moves it into the sign-in log (登录记录, ``staff_sign_ins``, migration
0023): the evidence (who, signed in when, last seen, ended when and why) is kept for good, the
row's secrets (the token's hash, the CSRF token) go.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from pydantic import BaseModel, ConfigDict

from jiesu.access import sign_in_failures, staff
from jiesu.access.security import hash_api_key
from jiesu.access.sign_in_failures import Reason
from jiesu.case.domain import Role
from jiesu.config import Settings
from jiesu.db import in_batches

DEFAULT_IDLE = timedelta(minutes=30)
DEFAULT_MAX_AGE = timedelta(hours=12)
DEFAULT_KEEP = timedelta(days=30)
PURGE_BATCH = 500  # sessions moved per statement: short locks, a heartbeat between batches


@dataclass(frozen=True)
class SessionPolicy:
    """How long a session lives: ``idle`` without use, ``max_age`` at most (a working day)."""

    idle: timedelta = DEFAULT_IDLE
    max_age: timedelta = DEFAULT_MAX_AGE

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionPolicy:
        """JIESU_SESSION_IDLE_MINUTES and JIESU_SESSION_MAX_HOURS."""
        return cls(
            idle=timedelta(minutes=settings.session_idle_minutes),
            max_age=timedelta(hours=settings.session_max_hours),
        )


class LoginRefused(Exception):
    """The login did not open a session. ``code``: ``login_failed`` (unknown login or wrong
    password: one answer, so logins cannot be probed) or ``account_disabled`` (said only to
    whoever knows the password)."""

    def __init__(self, code: Reason, message: str) -> None:
        super().__init__(message)
        self.code: Reason = code


class Session(BaseModel):
    """An open session and its person."""

    model_config = ConfigDict(frozen=True)

    person: str  # the person's login
    display_name: str
    role: Role
    department_id: str | None
    csrf_token: str
    created_at: datetime
    expires_at: datetime  # the absolute expiry; an idle session ends sooner


_SESSION = """
s.csrf_token, s.created_at, s.expires_at,
p.login AS person, p.display_name, p.role, p.department_id
"""


def _session(row: asyncpg.Record) -> Session:
    return Session.model_validate({k: row[k] for k in Session.model_fields})


async def login(
    pool: asyncpg.Pool, login: str, password: str, policy: SessionPolicy = SessionPolicy(),
    *, client: str | None = None,
) -> tuple[str, Session]:  # fmt: skip
    """Open a session for the person with this login and password: (the cookie's token,
    the session). Raises :class:`LoginRefused`, once the refusal is recorded with ``client``
    (the caller's address) in the refused sign-ins (登录失败记录). Replaces a password hash
    made with outdated argon2 parameters."""
    try:
        return await _open(pool, login, password, policy)
    except LoginRefused as refused:
        # Here, after the refused transaction rolled back: anything written in it is lost.
        await sign_in_failures.record(pool, login, refused.code, client)
        raise


async def _open(
    pool: asyncpg.Pool, login: str, password: str, policy: SessionPolicy
) -> tuple[str, Session]:
    if "\x00" in login:  # no one's login (PostgreSQL text cannot hold it): not a 500
        raise LoginRefused("login_failed", "the login or the password is wrong")
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT id, password_hash, active FROM staff WHERE login = $1 FOR UPDATE", login
        )
        if not staff.password_matches(row["password_hash"] if row else None, password):
            raise LoginRefused("login_failed", "the login or the password is wrong")
        assert row is not None
        if not row["active"]:
            raise LoginRefused("account_disabled", "this account is disabled")
        if staff.needs_rehash(row["password_hash"]):
            await conn.execute(
                "UPDATE staff SET password_hash = $2 WHERE id = $1",
                row["id"], staff.rehash(password),
            )  # fmt: skip
        token = secrets.token_urlsafe(32)
        created = await conn.fetchrow(
            "WITH s AS (INSERT INTO staff_sessions"
            " (token_hash, staff_id, csrf_token, idle_timeout, expires_at)"
            " VALUES ($1, $2, $3, $4, now() + $5::interval) RETURNING *)"
            f" SELECT {_SESSION} FROM s JOIN staff p ON p.id = s.staff_id",
            hash_api_key(token), row["id"], secrets.token_urlsafe(32),
            policy.idle, policy.max_age,
        )  # fmt: skip
        assert created is not None
        return token, _session(created)


async def session_for(pool: asyncpg.Pool | asyncpg.Connection, token: str) -> Session | None:
    """The open session of a cookie's token, marked as used now; None if there is none (an
    unknown token, logged out, idle or past its expiry, or its person disabled)."""
    row = await pool.fetchrow(
        "UPDATE staff_sessions s SET last_seen_at = now() FROM staff p"
        " WHERE s.token_hash = $1 AND p.id = s.staff_id AND p.active AND s.ended_at IS NULL"
        " AND s.expires_at > now() AND s.last_seen_at + s.idle_timeout > now()"
        f" RETURNING {_SESSION}",
        hash_api_key(token),
    )
    return None if row is None else _session(row)


async def logout(pool: asyncpg.Pool | asyncpg.Connection, token: str) -> bool:
    """End the session of this token; whether there was an open one."""
    result = await pool.execute(
        "UPDATE staff_sessions SET ended_at = now(), ended_why = 'logout'"
        " WHERE token_hash = $1 AND ended_at IS NULL",
        hash_api_key(token),
    )
    return result != "UPDATE 0"


def csrf_matches(session: Session, presented: str | None) -> bool:
    """Whether a request carries its session's CSRF token (compared in constant time)."""
    return presented is not None and hmac.compare_digest(
        session.csrf_token.encode(), presented.encode()
    )


# One statement: the batch's sessions are locked, copied into the log with their end (as
# staff_session_ends says it) and deleted, or none is. Every session has ended by its absolute
# expiry, so ``expires_at`` alone (indexed) finds the ones ended at least ``keep`` ago.
_PURGE = """
WITH batch AS (
    SELECT token_hash FROM staff_sessions WHERE expires_at < now() - $1::interval
    ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED
), kept AS (
    INSERT INTO staff_sign_ins (staff_id, signed_in_at, last_seen_at, ended_at, ended_why)
    SELECT e.staff_id, e.created_at, e.last_seen_at, e.ended_at, e.ended_why
    FROM staff_session_ends e JOIN batch USING (token_hash)
)
DELETE FROM staff_sessions WHERE token_hash IN (SELECT token_hash FROM batch)
"""


async def purge_ended(
    pool: asyncpg.Pool,
    keep: timedelta = DEFAULT_KEEP,
    *,
    batch: int = PURGE_BATCH,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Move the sessions that expired more than ``keep`` ago into the sign-in log, ``batch``
    at a time until none is left; ``progress(moved so far)`` after each batch. Returns the
    number moved. Safe to run in several processes at once (SKIP LOCKED) and to cut short."""
    return await in_batches(pool, _PURGE, keep, batch=batch, progress=progress)


MAX_SIGN_INS = 1000


class SignIn(BaseModel):
    """One staff sign-in (登录记录), from the sign-in log or a session not yet moved there."""

    login: str
    signed_in_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None  # None: the session is still open
    ended_why: str | None  # logout, disabled, password_set, ...; idle, expired


async def sign_ins(
    db: asyncpg.Pool | asyncpg.Connection, *, login: str | None = None, limit: int = 100
) -> list[SignIn]:
    """Sign-ins, newest first, of everyone or of one login (the view ``sign_ins``)."""
    rows = await db.fetch(
        "SELECT login, signed_in_at, last_seen_at, ended_at, ended_why FROM sign_ins"
        " WHERE ($1::text IS NULL OR login = $1) ORDER BY signed_in_at DESC LIMIT $2",
        login, min(limit, MAX_SIGN_INS),
    )  # fmt: skip
    return [SignIn.model_validate(dict(r)) for r in rows]
