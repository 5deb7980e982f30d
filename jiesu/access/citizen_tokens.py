"""Citizen tokens (诉求人令牌): one per report, never stored, recomputable for a retry.

Every report — the case's own intake or a repeat report linked to it (并单) — gets its own
token. A token is ``HMAC-SHA256(server secret, nonce)`` (24 bytes, 32 URL-safe characters),
where the nonce is 128 random bits kept with the report. The database keeps the nonce and
``sha256(token)``, never the token:

- a token is checked by its sha256 alone. 192 bits from a keyed PRF need no salt and no slow
  hash: nobody can guess one, so the hash cannot be inverted by trying candidates;
- a retried intake (same Idempotency-Key) recomputes the very same token from the nonce and
  the secret, so "a retried intake answers identically" holds without the token at rest;
- the secret lives outside the database (``JIESU_TOKEN_SECRET``): a copy of the database
  alone (a dump, a replica, a read-only account) yields neither tokens nor a way to make them.

Without ``JIESU_TOKEN_SECRET`` the secret is one generated into the database at migration
(``server_secrets``): tokens are still absent from the report tables, but whoever reads the
whole database can recompute them. Set the variable in production. Rotating it keeps every
token already handed out valid (checks use the stored hash); only a retry of an intake made
before the rotation can no longer recompute its token and answers without one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import asyncpg

from jiesu.access.security import hash_api_key
from jiesu.config import Settings

_PURPOSE = b"jiesu citizen token v1\x00"


def new_nonce() -> str:
    return secrets.token_hex(16)


def derive(secret: bytes, nonce: str) -> str:
    mac = hmac.new(secret, _PURPOSE + nonce.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:24]).decode("ascii")


def digest(token: str) -> str:
    """What is stored and compared: the sha256 hex digest (the same as for API keys)."""
    return hash_api_key(token)


async def server_secret(conn: asyncpg.Connection | asyncpg.Pool, settings: Settings) -> bytes:
    configured = settings.token_secret.get_secret_value()
    if configured:
        return configured.encode("utf-8")
    stored = await conn.fetchval("SELECT value FROM server_secrets WHERE name = 'citizen_token'")
    return str(stored).encode("utf-8")


def issue(secret: bytes) -> tuple[str, str]:
    """A new report's (nonce, token hash)."""
    nonce = new_nonce()
    return nonce, digest(derive(secret, nonce))


def recompute(secret: bytes, nonce: str | None, token_hash: str) -> str | None:
    """The token handed out for a report, or None when it cannot be recomputed (a report
    from before tokens were derived, or the secret has been rotated since)."""
    if nonce is None:
        return None
    token = derive(secret, nonce)
    return token if hmac.compare_digest(digest(token), token_hash) else None
