"""Staff accounts (工作人员账号): people, not shared department keys.

A person has a login, a display name, a role (:class:`jiesu.case.domain.Role`), a department
for department staff, and an active flag. Passwords are hashed with argon2id (``argon2-cffi``,
OWASP's parameters); a stored hash made with older parameters is replaced at the next
successful login (:func:`jiesu.access.sessions.login`). Every change to an account is recorded in
``staff_changes`` — who, when, the account before and after — and never with a hash.

One implementation for ``jiesu users`` (jiesu/ops/users_cli.py), the admin API
(``/api/v1/admin/users``) and the demo data. Disabling a person, changing their role or
department, or setting their password ends their open sessions in the same transaction.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict

from jiesu.access import api_keys
from jiesu.admin import departments
from jiesu.admin.errors import AdminRefused
from jiesu.case.domain import STAFF_ROLES, Role

LOGIN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
_LOGIN = re.compile(LOGIN_PATTERN)
MIN_PASSWORD = 10
MAX_PASSWORD = 256  # argon2 takes any length; this bounds the work an anonymous login costs
MAX_DISPLAY_NAME = 100
STAFF_ROLE_VALUES: tuple[Role, ...] = tuple(r for r in Role if r in STAFF_ROLES)

# argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane), not argon2-cffi's
# default RFC 9106 profile (64 MiB, 3 passes, 4 lanes): on the 2-core reference machine under
# load that took 1.4 s per login against 0.18 s (docs/security.md, "Staff accounts"), and
# every unknown-login attempt costs one verification too. Hashes made with other parameters
# are replaced at the next login (needs_rehash).
PASSWORD_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_hasher = PASSWORD_HASHER
# Verified when the login is unknown, so that an unknown login costs as long as a wrong
# password: the answer's timing does not tell which logins exist.
_DUMMY_HASH = _hasher.hash("not a password of anyone")

_EDITABLE = ("display_name", "role", "department_id", "active")
_COLUMNS = "id, login, display_name, role, department_id, active, created_at, updated_at"

Db = asyncpg.Connection | asyncpg.Pool


class AccountRefused(ValueError):
    """The change cannot be made as asked; ``code`` says why (for the API's error body)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Person(BaseModel):
    """What is known about a person: everything but the password hash (also the API's answer)."""

    model_config = ConfigDict(frozen=True)

    id: int
    login: str
    display_name: str
    role: Role
    department_id: str | None
    active: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record | dict[str, Any]) -> Person:
        return cls.model_validate({k: row[k] for k in cls.model_fields})

    def record(self) -> dict[str, Any]:
        """The account as recorded in ``staff_changes`` (no timestamps: the change has one)."""
        return self.model_dump(mode="json", exclude={"created_at", "updated_at"})


# --- passwords ------------------------------------------------------------------------------


def check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountRefused(
            "invalid_password", f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        )
    if "\x00" in password:
        raise AccountRefused("invalid_password", "a password has no NUL character")


def hash_password(password: str) -> str:
    check_password(password)
    return _hasher.hash(password)


def password_matches(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` is the one ``stored_hash`` was made from. ``None`` (no such
    person) costs one verification too, and is never a match."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def rehash(password: str) -> str:
    """A hash of today's parameters for a password that has just been verified (no length
    rule: a password set under an older rule must still log in)."""
    return _hasher.hash(password)


def needs_rehash(stored_hash: str) -> bool:
    """The hash was made with other parameters than today's: replace it at the next login."""
    return _hasher.check_needs_rehash(stored_hash)


# --- accounts -------------------------------------------------------------------------------


def is_login(login: str) -> bool:
    """Whether ``login`` can be a login at all (every account's is checked when made)."""
    return _LOGIN.fullmatch(login) is not None


def _check(login: str, display_name: str, role: Role, department_id: str | None) -> None:
    if not is_login(login):
        raise AccountRefused(
            "invalid_login", "a login is 1-64 letters, digits and . _ @ - (not first)"
        )
    if not 1 <= len(display_name) <= MAX_DISPLAY_NAME or not display_name.isprintable():
        raise AccountRefused(
            "invalid_display_name", f"a display name is 1-{MAX_DISPLAY_NAME} printable characters"
        )
    if role not in STAFF_ROLES:
        raise AccountRefused("invalid_role", f"no person can have the role {role.value}")
    if (role is Role.DEPARTMENT) != (department_id is not None):
        raise AccountRefused(
            "invalid_department", "department staff need a department; no one else has one"
        )


async def _record(
    conn: asyncpg.Connection, person: Person, change: str, by: str, before: Person | None
) -> None:
    await conn.execute(
        "INSERT INTO staff_changes (staff_id, change, changed_by, before, after)"
        " VALUES ($1, $2, $3, $4::text::jsonb, $5::text::jsonb)",  # text: with or without a codec
        person.id, change, by,
        None if before is None else json.dumps(before.record()),
        json.dumps(person.record()),
    )  # fmt: skip


async def create_person(
    db: Db,
    *,
    login: str,
    display_name: str,
    role: Role,
    password: str,
    department_id: str | None = None,
    by: str,
) -> Person:
    """Create an active account; ``by`` is who did it (recorded with the change)."""
    _check(login, display_name, role, department_id)
    password_hash = hash_password(password)
    async with _transaction(db) as conn:
        await _serving(conn, department_id)
        try:
            row = await conn.fetchrow(
                "INSERT INTO staff (login, display_name, role, department_id, password_hash)"
                f" VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}",
                login, display_name, role.value, department_id, password_hash,
            )  # fmt: skip
        except asyncpg.UniqueViolationError as exc:
            raise AccountRefused("login_taken", f"the login {login!r} is taken") from exc
        except asyncpg.ForeignKeyViolationError as exc:
            raise AccountRefused("unknown_department", f"no department {department_id!r}") from exc
        assert row is not None
        person = Person.from_row(row)
        await _record(conn, person, "created", by, None)
        return person


async def _serving(conn: asyncpg.Connection, department_id: str | None) -> None:
    """An account is opened in (or moved into) a department in service only: a retired one
    takes no new people (its people keep their accounts to finish its cases)."""
    if department_id is None:
        return
    try:
        await departments.name_for_work(conn, department_id)
    except AdminRefused as exc:
        raise AccountRefused(exc.code, exc.message) from exc


async def get_person(db: Db, login: str) -> Person | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM staff WHERE login = $1", login)
    return None if row is None else Person.from_row(row)


async def list_people(db: Db) -> list[Person]:
    return [Person.from_row(r) for r in await db.fetch(f"SELECT {_COLUMNS} FROM staff ORDER BY id")]


async def update_person(
    db: Db,
    login: str,
    *,
    by: str,
    display_name: str | None = None,
    role: Role | None = None,
    department_id: str | None = None,
    active: bool | None = None,
    keep_an_admin: bool = False,
) -> Person | None:
    """Change an account's fields (those given); None if there is no such login. Giving a
    role gives the department with it (None for every role but department). A change that
    changes nothing records nothing. Disabling ends the person's sessions. ``keep_an_admin``
    (the admin API): AccountRefused ``last_admin`` rather than disable or demote the last
    admin credential (no other active admin account, no unrevoked admin key)."""
    async with _transaction(db) as conn:
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM staff WHERE login = $1 FOR UPDATE", login
        )
        if row is None:
            return None
        before = Person.from_row(row)
        after_role = role or before.role
        after_department = department_id if role is not None else before.department_id
        after_name = display_name if display_name is not None else before.display_name
        after_active = before.active if active is None else active
        _check(login, after_name, after_role, after_department)
        if (after_name, after_role, after_department, after_active) == (
            before.display_name, before.role, before.department_id, before.active
        ):
            return before
        if after_department != before.department_id:
            await _serving(conn, after_department)
        stays_admin = after_active and after_role is Role.ADMIN
        if (keep_an_admin and before.active and before.role is Role.ADMIN and not stays_admin
                and not await api_keys.admins_besides(conn, person_id=before.id)):  # fmt: skip
            raise AccountRefused("last_admin", str(api_keys.last_admin(f"{login!r}")))
        try:
            row = await conn.fetchrow(
                "UPDATE staff SET display_name = $2, role = $3, department_id = $4, active = $5,"
                f" updated_at = now() WHERE id = $1 RETURNING {_COLUMNS}",
                before.id, after_name, after_role.value, after_department, after_active,
            )  # fmt: skip
        except asyncpg.ForeignKeyViolationError as exc:
            raise AccountRefused(
                "unknown_department", f"no department {after_department!r}"
            ) from exc
        assert row is not None
        after = Person.from_row(row)
        changed = {f for f in _EDITABLE if getattr(before, f) != getattr(after, f)}
        change = ("enabled" if after.active else "disabled") if changed == {"active"} else "updated"
        if not after.active or (after.role, after.department_id) != (
            before.role, before.department_id
        ):
            # A disabled person works no more; a moved one starts again with the new rights.
            await end_sessions(conn, after.id, "disabled" if not after.active else "updated")
        await _record(conn, after, change, by, before)
        return after


async def set_password(db: Db, login: str, password: str, *, by: str) -> Person | None:
    """Set a person's password (recorded, without any hash); ends their sessions. None if
    there is no such login."""
    password_hash = hash_password(password)
    async with _transaction(db) as conn:
        row = await conn.fetchrow(
            f"UPDATE staff SET password_hash = $2, updated_at = now() WHERE login = $1"
            f" RETURNING {_COLUMNS}",
            login, password_hash,
        )  # fmt: skip
        if row is None:
            return None
        person = Person.from_row(row)
        await end_sessions(conn, person.id, "password_set")
        await _record(conn, person, "password_set", by, person)
        return person


async def changes_of(db: Db, login: str) -> list[dict[str, Any]]:
    """The recorded changes of an account, oldest first."""
    rows = await db.fetch(
        "SELECT c.change, c.changed_by, c.changed_at, c.before::text, c.after::text"
        " FROM staff_changes c"
        " JOIN staff s ON s.id = c.staff_id WHERE s.login = $1 ORDER BY c.id",
        login,
    )
    return [
        {
            "change": r["change"],
            "changed_by": r["changed_by"],
            "changed_at": r["changed_at"],
            "before": None if r["before"] is None else json.loads(r["before"]),
            "after": None if r["after"] is None else json.loads(r["after"]),
        }
        for r in rows
    ]


async def end_sessions(conn: asyncpg.Connection, staff_id: int, why: str) -> int:
    """End every open session of a person; the number ended."""
    result = await conn.execute(
        "UPDATE staff_sessions SET ended_at = now(), ended_why = $2"
        " WHERE staff_id = $1 AND ended_at IS NULL",
        staff_id, why,
    )  # fmt: skip
    return int(result.split()[-1])


@asynccontextmanager
async def _transaction(db: Db) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on a connection of its own (from a pool) or on the given connection."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            yield conn
    else:
        async with db.transaction():
            yield db
