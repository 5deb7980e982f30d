"""Who is at the console: a person's session (jiesu.access.sessions: the ``jiesu_session``
cookie, server-side in PostgreSQL, with its CSRF token). The console's only link to the
accounts service; every screen takes a :class:`StaffSession` (or is sent to the login page).
The cookie is set and cleared as the API's ``/api/v1/session`` does (api.deps)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from fastapi import Response

from api.auth_limit import AuthAttempt, check_login
from api.deps import (
    CSRF_FIELD,
    SESSION_COOKIE,
    Principal,
    clear_session_cookie,
    scope_of,
    session_principal,
    set_session_cookie,
)
from jiesu.access import sessions
from jiesu.access.grids import GridScope
from jiesu.access.sessions import LoginRefused, Session, SessionPolicy
from jiesu.config import Settings

COOKIE = SESSION_COOKIE
__all__ = ["COOKIE", "CSRF_FIELD", "LoginRefused", "StaffSession", "resolve", "sign_in",
           "sign_out"]  # fmt: skip


@dataclass(frozen=True)
class StaffSession:
    token: str
    session: Session
    scope: GridScope | None = None  # a grid worker's grids and units
    department_name: str | None = None  # the person's department, as the header names it

    @property
    def principal(self) -> Principal:
        """The person as the API's services know callers (their actions record them)."""
        return session_principal(self.session, self.scope)

    @property
    def csrf(self) -> str:
        return self.session.csrf_token

    @property
    def display_name(self) -> str:
        return self.session.display_name

    def csrf_ok(self, sent: str | None) -> bool:
        return sessions.csrf_matches(self.session, sent)


async def sign_in(
    pool: asyncpg.Pool, settings: Settings, attempt: AuthAttempt, login: str, password: str,
    response: Response,
) -> StaffSession:  # fmt: skip
    """Open a session and set its cookie on ``response``; raises :class:`LoginRefused`. A
    refusal is recorded (登录失败记录) and counts as a failed authentication (429 after too
    many, as for wrong API keys), as the API's ``/api/v1/session`` does."""
    await check_login(attempt, pool, login)
    try:
        token, session = await sessions.login(
            pool, login, password, SessionPolicy.from_settings(settings), client=attempt.client
        )
    except LoginRefused:
        await attempt.failed()  # each refusal writes a row: none may come unbounded
        raise
    set_session_cookie(response, token, session, settings)
    return StaffSession(token, session)


async def resolve(pool: asyncpg.Pool, token: str | None) -> StaffSession | None:
    session = await sessions.session_for(pool, token) if token else None
    if session is None:
        return None
    scope = await scope_of(pool, session.role, session.person)
    name = None
    if session.department_id:
        name = await pool.fetchval(
            "SELECT name FROM departments WHERE id = $1", session.department_id
        )
    return StaffSession(token or "", session, scope, name or session.department_id)


async def sign_out(
    pool: asyncpg.Pool, settings: Settings, token: str, response: Response
) -> None:
    await sessions.logout(pool, token)
    clear_session_cookie(response, settings)
