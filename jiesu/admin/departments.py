"""Departments in and out of service (单位停用 / 恢复启用).

A department merged away or abolished (机构改革) is *retired* from a moment on, not deleted:
cases name it and its past figures need it. From its ``retired_at`` on, routing passes over
its rules (the next rule, or the centre's queue, takes the case), a 提级办 from below goes to
the centre's queue instead, nobody can give it a case (派单, 改派, 二次交办) or make it a
co-handler (会办, 协办), and no account or API key is opened in it (nor an account moved
into it). What it already holds
stays its own: its people can still sign in and finish, until the centre hands the cases over
to the unit that takes over its work (移交, jiesu.admin.handover) — the answer of a
retirement says how many it holds and which rules still name it.

``IN_SERVICE`` is the one definition every reader uses (routing, the API's checks, the
console's choice lists, accounts).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from jiesu.admin import changes
from jiesu.admin.errors import conflict, invalid, not_found
from jiesu.admin.reference import DEPARTMENTS, check_version, get_record
from jiesu.case.domain import CENTRE_ID, Actor, Instant, Status

# A department row ``d`` is in service now (SQL, for every query that offers or checks one).
IN_SERVICE = "(d.retired_at IS NULL OR d.retired_at > now())"

# A retirement is not backdated: the department took cases until now. A client's clock may
# run a little behind the server's.
_BACKDATE_TOLERANCE = timedelta(minutes=5)


class Retirement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: Instant | None = Field(
        default=None,
        description="Out of service from (default now); a later moment schedules it, e.g. the "
        "day a reorganisation takes effect. Not in the past.",
    )


class ServiceChange(BaseModel):
    """The department after the change, and what still points at it."""

    department: dict[str, Any]
    open_cases: int = Field(description="Cases it holds now (not closed): its people finish "
                            "them, or, once it is retired, they are handed over to its "
                            "successor (POST …/hand-over, 移交).")
    rules_in_force: list[int] = Field(description="Routing rules in force or scheduled that "
                                      "name it: routing passes over them once it is retired; "
                                      "replace them.")
    raised_to_by: list[str] = Field(default_factory=list, description="Departments whose "
                                    "提级办 goes to it (their parent): to the centre's queue "
                                    "once it is retired; give them another parent.")


async def _locked(conn: asyncpg.Connection, department_id: str) -> dict[str, Any]:
    row = await conn.fetchrow(f"{DEPARTMENTS.select} WHERE id = $1 FOR NO KEY UPDATE",
                              department_id)
    if row is None:
        raise not_found("department_not_found", f"no department {department_id!r}")
    return dict(row)


async def standing(conn: asyncpg.Pool | asyncpg.Connection, department_id: str) -> ServiceChange:
    """The department as it is, with the cases it holds and the rules that name it."""
    record = await get_record(conn, DEPARTMENTS, department_id)
    open_cases = await conn.fetchval(
        "SELECT count(*) FROM cases WHERE department_id = $1 AND status <> $2",
        department_id, Status.CLOSED.value,
    )  # fmt: skip
    rules = await conn.fetch(
        "SELECT id FROM routing_rules WHERE department_id = $1"
        " AND (valid_to IS NULL OR valid_to > now()) ORDER BY id",
        department_id,
    )
    below = await conn.fetch("SELECT id FROM departments WHERE parent_id = $1 ORDER BY id",
                             department_id)
    return ServiceChange(department=record, open_cases=open_cases,
                         rules_in_force=[r["id"] for r in rules],
                         raised_to_by=[r["id"] for r in below])


async def retire(
    pool: asyncpg.Pool, actor: Actor, department_id: str, body: Retirement,
    *, if_version: str | None = None,
) -> ServiceChange:
    """停用: out of service from ``at`` (default now). A retry answers it as it is: again at
    the same moment, or "now" once it is out of service; another moment is refused (409
    ``department_retired``: reinstate it first)."""
    now = datetime.now(UTC)
    at = body.at or now
    if department_id == CENTRE_ID:
        raise invalid("centre_not_retired", "the hotline centre takes the cases no rule takes: "
                      "it cannot be retired")
    async with pool.acquire() as conn, conn.transaction():
        before = await _locked(conn, department_id)
        check_version(DEPARTMENTS, department_id, before, if_version)
        retired_at = before["retired_at"]
        retried = retired_at is not None and (
            retired_at == body.at if body.at is not None else retired_at <= now
        )  # fmt: skip
        if retired_at is not None and not retried:
            raise conflict("department_retired", f"department {department_id!r} is retired "
                           f"from {retired_at.isoformat()}: reinstate it first")
        if retired_at is None:
            if at < now - _BACKDATE_TOLERANCE:
                raise invalid("retirement_backdated", "a retirement is not backdated: the "
                              "department took cases until now")
            await _set(conn, actor, department_id, before, at, "retire")
        return await standing(conn, department_id)


async def reinstate(
    pool: asyncpg.Pool, actor: Actor, department_id: str, *, if_version: str | None = None
) -> ServiceChange:
    """恢复启用: back in service (a retirement made in error, or a scheduled one called off).
    A department in service answers as it is (a retry)."""
    async with pool.acquire() as conn, conn.transaction():
        before = await _locked(conn, department_id)
        check_version(DEPARTMENTS, department_id, before, if_version)
        if before["retired_at"] is not None:
            await _set(conn, actor, department_id, before, None, "reinstate")
        return await standing(conn, department_id)


async def _set(
    conn: asyncpg.Connection, actor: Actor, department_id: str, before: dict[str, Any],
    retired_at: datetime | None, action: changes.Action,
) -> None:
    row = await conn.fetchrow(
        f"UPDATE departments SET retired_at = $2 WHERE id = $1 RETURNING id, {DEPARTMENTS.shown}",
        department_id, retired_at,
    )  # fmt: skip
    await changes.record(conn, actor, "department", department_id, action, before, dict(row))


async def name_for_work(db: asyncpg.Pool | asyncpg.Connection, department_id: str) -> str:
    """The department's name when it can be given work now (a case, a co-handling, an
    account); else refused as invalid: ``unknown_department`` or ``department_retired``."""
    row = await db.fetchrow(
        f"SELECT d.name, d.retired_at, {IN_SERVICE} AS serving FROM departments d"
        " WHERE d.id = $1",
        department_id,
    )
    if row is None:
        raise invalid("unknown_department", f"no department {department_id!r}")
    if not row["serving"]:
        raise invalid("department_retired", f"department {department_id!r} is out of service "
                      f"since {row['retired_at'].isoformat()}")
    return row["name"]
