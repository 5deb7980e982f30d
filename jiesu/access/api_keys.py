"""Staff API keys: create (the key is shown once), list (never a secret), revoke.

One implementation for the ``jiesu keys`` commands and the admin endpoints
(``/api/v1/admin/keys``). Only the key's SHA-256 is stored (see :mod:`jiesu.access.security` for why
that is enough); a revoked key stays listed, so that who had access and until when is kept,
but no longer authenticates (``api.deps.authenticate``).
"""

from __future__ import annotations

import re
from datetime import datetime

import asyncpg
from pydantic import BaseModel, ConfigDict

from jiesu.access.security import hash_api_key, new_api_key
from jiesu.admin import changes, departments
from jiesu.admin.errors import AdminRefused
from jiesu.case.domain import Actor, Role

# Roles a key can carry: the citizen acts with a per-case token, the system is the workflow.
KEY_ROLES: tuple[Role, ...] = tuple(r for r in Role if r not in (Role.CITIZEN, Role.SYSTEM))
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$"
_NAME = re.compile(NAME_PATTERN)

_COLUMNS = "id, name, role, department_id, created_at, revoked_at"

Db = asyncpg.Connection | asyncpg.Pool


class KeyRefused(ValueError):
    """The key cannot be created as asked; ``code`` says why (for the API's error body)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def _serving(conn: asyncpg.Connection, department_id: str) -> None:
    try:
        await departments.name_for_work(conn, department_id)
    except AdminRefused as exc:
        raise KeyRefused(exc.code, exc.message) from exc


class ApiKey(BaseModel):
    """What is known about a key: everything but the key itself (also the API's answer)."""

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    role: Role
    department_id: str | None
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ApiKey:
        return cls.model_validate(dict(row))


def _check(name: str, role: Role, department_id: str | None) -> None:
    if not _NAME.fullmatch(name):
        raise KeyRefused(
            "invalid_key_name", "a key name is 1-100 letters, digits and . _ @ - (not first)"
        )
    if role not in KEY_ROLES:
        raise KeyRefused("invalid_role", f"no API key can have the role {role.value}")
    if (role is Role.DEPARTMENT) != (department_id is not None):
        raise KeyRefused(
            "invalid_department", "a department key needs a department; no other key has one"
        )


ENTITY = "api_key"  # in the administrative change log (GET /api/v1/admin/changes)


def _logged(info: ApiKey) -> dict[str, object]:
    return info.model_dump(mode="json")


async def create_key(
    db: Db, *, name: str, role: Role, department_id: str | None = None,
    actor: Actor | None = None,
) -> tuple[ApiKey, str]:  # fmt: skip
    """Store a new key; return it with its plaintext, which exists nowhere else afterwards.
    By ``actor``: recorded in the administrative change log (never the key or its hash)."""
    _check(name, role, department_id)
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as pooled:
            return await create_key(pooled, name=name, role=role, department_id=department_id,
                                    actor=actor)  # fmt: skip
    key = new_api_key()
    try:
        async with db.transaction():
            if department_id is not None:  # a retired unit (停用) takes no new credentials
                await _serving(db, department_id)
            row = await db.fetchrow(
                "INSERT INTO api_keys (key_hash, name, role, department_id)"
                f" VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",
                hash_api_key(key), name, role.value, department_id,
            )  # fmt: skip
            assert row is not None
            info = ApiKey.from_row(row)
            if actor is not None:
                await changes.record(db, actor, ENTITY, str(info.id), "create", None,
                                     _logged(info))  # fmt: skip
    except asyncpg.UniqueViolationError as exc:
        raise KeyRefused("key_name_taken", f"an API key named {name!r} exists") from exc
    except asyncpg.ForeignKeyViolationError as exc:
        raise KeyRefused("unknown_department", f"no department {department_id!r}") from exc
    return info, key


async def list_keys(db: Db) -> list[ApiKey]:
    rows = await db.fetch(f"SELECT {_COLUMNS} FROM api_keys ORDER BY id")
    return [ApiKey.from_row(r) for r in rows]


async def admins_besides(
    conn: asyncpg.Connection, *, person_id: int | None = None, key_id: int | None = None
) -> int:
    """How many admin credentials there are besides a person's account and a key: active
    admin accounts and unrevoked admin keys. Takes the transaction's lock of the admins first,
    so that two admins taking away each other's rights at once cannot both pass."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('jiesu:admins'))")
    return int(await conn.fetchval(
        "SELECT (SELECT count(*) FROM staff WHERE role = 'admin' AND active"
        "        AND id IS DISTINCT FROM $1)"
        "     + (SELECT count(*) FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL"
        "        AND id IS DISTINCT FROM $2)",
        person_id, key_id,
    ))  # fmt: skip


def last_admin(what: str) -> KeyRefused:
    return KeyRefused(
        "last_admin",
        f"{what} is the last admin credential: nobody could administer Jiesu over HTTP"
        " (create another admin key or account first; on the machine, jiesu keys / jiesu users"
        " still can)",
    )


async def revoke_key(
    db: Db, key_id: int, *, keep_an_admin: bool = False, actor: Actor | None = None
) -> ApiKey | None:
    """Revoke a key (idempotent: a revoked key keeps its first revocation time); None if
    there is no such key. ``keep_an_admin`` (the admin API): KeyRefused ``last_admin`` rather
    than revoke the last admin credential (the CLI, on the machine, may: a stolen key must
    be revocable, and the machine can create another)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as pooled:
            return await revoke_key(pooled, key_id, keep_an_admin=keep_an_admin, actor=actor)
    conn = db
    async with conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1 FOR UPDATE", key_id
        )
        if row is None:
            return None
        if (keep_an_admin and row["role"] == Role.ADMIN.value and row["revoked_at"] is None
                and not await admins_besides(conn, key_id=key_id)):  # fmt: skip
            raise last_admin(f"API key {row['name']!r}")
        if row["revoked_at"] is not None:  # a retry: revoked already, nothing changes
            return ApiKey.from_row(row)
        before = ApiKey.from_row(row)
        row = await conn.fetchrow(
            f"UPDATE api_keys SET revoked_at = now() WHERE id = $1 RETURNING {_COLUMNS}", key_id
        )
        assert row is not None
        after = ApiKey.from_row(row)
        if actor is not None:  # put out of force: the change log's "retire"
            await changes.record(conn, actor, ENTITY, str(key_id), "retire", _logged(before),
                                 _logged(after))  # fmt: skip
    return after
