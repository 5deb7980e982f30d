"""Who is at the console: a staff member's session (cookie ``jiesu_session``) and its CSRF
token. The console's only link to the accounts service; every screen takes a
:class:`StaffSession` from :func:`current` (or is sent to the login page).

PROVISIONAL until the staff accounts land (issue 11 parts 1–2): a person signs in with the
name and the secret of an API key, and the session lives in this process only.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

import asyncpg

from api.deps import Principal
from jiesu.access.security import hash_api_key
from jiesu.case.domain import Role

COOKIE = "jiesu_session"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class StaffSession:
    token: str
    principal: Principal
    csrf: str

    def csrf_ok(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent, self.csrf)


_sessions: dict[str, StaffSession] = {}


async def sign_in(pool: asyncpg.Pool, login: str, password: str) -> StaffSession | None:
    row = await pool.fetchrow(
        "SELECT name, role, department_id FROM api_keys"
        " WHERE name = $1 AND key_hash = $2 AND revoked_at IS NULL",
        login,
        hash_api_key(password),
    )
    if row is None:
        return None
    principal = Principal(row["name"], Role(row["role"]), row["department_id"])
    session = StaffSession(secrets.token_urlsafe(32), principal, secrets.token_urlsafe(32))
    _sessions[session.token] = session
    return session


async def resolve(pool: asyncpg.Pool, token: str | None) -> StaffSession | None:
    return _sessions.get(token) if token else None


async def sign_out(pool: asyncpg.Pool, token: str | None) -> None:
    if token:
        _sessions.pop(token, None)
