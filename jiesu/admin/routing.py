"""The routing catalogue (派单目录): category × area → department rules with effective dates.

A rule is in force from ``valid_from`` (inclusive) until ``valid_to`` (exclusive; none =
open-ended). A rule is never edited in place: to change one, it is *replaced* — retired at a
moment and a new rule in force from that same moment, in one transaction — so the catalogue
in force at any past moment can be reconstructed, and routing uses the rules in force when
the case was reported (activities/routing.py). Every add and retirement is logged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, model_validator

from jiesu.admin import changes
from jiesu.admin.errors import conflict, invalid, not_found
from jiesu.admin.reference import Id
from jiesu.case.domain import Actor, Instant

ENTITY = "routing_rule"
Priority = Annotated[int, Field(ge=-1000, le=1000)]


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category_id: Id
    area_id: Id | None = Field(default=None, description="None: anywhere in the county.")
    department_id: Id
    priority: Priority = 0
    valid_from: Instant | None = Field(default=None, description="Default: now.")
    valid_to: Instant | None = Field(default=None, description="Default: open-ended.")

    @model_validator(mode="after")
    def _ordered(self) -> RuleIn:
        if self.valid_from and self.valid_to and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        return self


class Rule(BaseModel):
    id: int
    category_id: str
    area_id: str | None
    department_id: str
    priority: int
    valid_from: datetime | None = Field(description="None: since always.")
    valid_to: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Rule:
        return cls.model_validate(dict(row))


class Retirement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: Instant | None = Field(default=None, description="Out of force from; default now.")


class Replacement(BaseModel):
    """The rule's successor, in force from ``at`` (default now) when the old one retires."""

    model_config = ConfigDict(extra="forbid")

    at: Instant | None = None
    department_id: Id
    priority: Priority | None = Field(default=None, description="Default: the old rule's.")


# valid_from '-infinity' (rules older than the catalogue's dates) is answered as None.
_SELECT = (
    "SELECT id, category_id, area_id, department_id, priority,"
    " CASE WHEN valid_from = '-infinity' THEN NULL ELSE valid_from END AS valid_from,"
    " valid_to FROM routing_rules"
)


def _dump(rule: Rule) -> dict[str, Any]:
    return rule.model_dump(mode="json")


async def list_rules(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    as_of: datetime | None = None,
    every_version: bool = False,
    category_id: str | None = None,
) -> list[Rule]:
    """The rules in force at ``as_of`` (default now), or every rule ever written."""
    rows = await db.fetch(
        f"{_SELECT} WHERE ($1::text IS NULL OR category_id = $1) AND ($2 OR ("
        " valid_from <= $3 AND (valid_to IS NULL OR valid_to > $3)))"
        " ORDER BY category_id, area_id NULLS FIRST, priority DESC, id",
        category_id, every_version, as_of or datetime.now(UTC),
    )  # fmt: skip
    return [Rule.from_row(r) for r in rows]


async def _fetch(conn: asyncpg.Connection, rule_id: int, lock: bool = False) -> Rule:
    row = await conn.fetchrow(f"{_SELECT} WHERE id = $1{' FOR UPDATE' if lock else ''}", rule_id)
    if row is None:
        raise not_found("rule_not_found", f"no routing rule {rule_id}")
    return Rule.from_row(row)


async def get_rule(db: asyncpg.Pool | asyncpg.Connection, rule_id: int) -> Rule:
    """One rule, whether in force, scheduled or retired."""
    row = await db.fetchrow(f"{_SELECT} WHERE id = $1", rule_id)
    if row is None:
        raise not_found("rule_not_found", f"no routing rule {rule_id}")
    return Rule.from_row(row)


async def _insert(conn: asyncpg.Connection, actor: Actor, body: RuleIn, start: datetime) -> Rule:
    try:
        row = await conn.fetchrow(
            "INSERT INTO routing_rules"
            " (category_id, area_id, department_id, priority, valid_from, valid_to)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            body.category_id, body.area_id, body.department_id, body.priority, start,
            body.valid_to,
        )  # fmt: skip
    except asyncpg.ForeignKeyViolationError as exc:
        raise invalid("unknown_reference", f"the rule refers to a missing record: "
                      f"{exc.detail or exc}") from exc
    rule = await _fetch(conn, row["id"])
    await changes.record(conn, actor, ENTITY, str(rule.id), "create", None, _dump(rule))
    return rule


async def add_rule(pool: asyncpg.Pool, actor: Actor, body: RuleIn) -> tuple[Rule, bool]:
    """Add a rule; a retry (the same rule, open-ended and in force from the same moment, or
    from any moment when none was given) returns the existing one (False: nothing added)."""
    start = body.valid_from or datetime.now(UTC)
    if body.valid_to is not None and body.valid_to <= start:
        raise invalid("invalid_validity", "valid_to must be after valid_from (default now)")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE routing_rules IN SHARE ROW EXCLUSIVE MODE")
        same = await conn.fetchrow(
            f"{_SELECT} WHERE category_id = $1 AND area_id IS NOT DISTINCT FROM $2"
            " AND department_id = $3 AND priority = $4 AND valid_to IS NOT DISTINCT FROM $5"
            " AND ($6::timestamptz IS NULL OR valid_from = $6) AND valid_from <= $7",
            body.category_id, body.area_id, body.department_id, body.priority, body.valid_to,
            body.valid_from, start,
        )  # fmt: skip
        if same is not None and (body.valid_from is not None or same["valid_to"] is None):
            return Rule.from_row(same), False
        return await _insert(conn, actor, body, start), True


async def _retire(conn: asyncpg.Connection, actor: Actor, rule: Rule, at: datetime) -> Rule:
    if rule.valid_to is not None and rule.valid_to <= at:
        raise conflict("rule_retired", f"routing rule {rule.id} is out of force since "
                       f"{rule.valid_to.isoformat()}")
    if rule.valid_from is not None and at <= rule.valid_from:
        raise invalid("invalid_validity", f"routing rule {rule.id} comes into force at "
                      f"{rule.valid_from.isoformat()}: retire it after that")
    await conn.execute("UPDATE routing_rules SET valid_to = $2 WHERE id = $1", rule.id, at)
    after = await _fetch(conn, rule.id)
    await changes.record(conn, actor, ENTITY, str(rule.id), "retire", _dump(rule), _dump(after))
    return after


async def retire_rule(pool: asyncpg.Pool, actor: Actor, rule_id: int, body: Retirement) -> Rule:
    """Put a rule out of force from ``at``. Retiring it again at the same moment (a retry)
    answers the rule as it is."""
    async with pool.acquire() as conn, conn.transaction():
        rule = await _fetch(conn, rule_id, lock=True)
        if body.at is not None and rule.valid_to == body.at:
            return rule
        return await _retire(conn, actor, rule, body.at or datetime.now(UTC))


async def replace_rule(
    pool: asyncpg.Pool, actor: Actor, rule_id: int, body: Replacement
) -> tuple[Rule, Rule]:
    """Retire the rule at ``at`` and put its successor in force from the same moment."""
    at = body.at or datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        old = await _fetch(conn, rule_id, lock=True)
        if old.valid_to is not None and old.valid_to != at:
            raise conflict("rule_retired", f"routing rule {rule_id} is already retired")
        successor = RuleIn(
            category_id=old.category_id, area_id=old.area_id, department_id=body.department_id,
            priority=old.priority if body.priority is None else body.priority,
        )  # fmt: skip
        if old.valid_to == at:  # a retry: the successor was written with it
            row = await conn.fetchrow(
                f"{_SELECT} WHERE category_id = $1 AND area_id IS NOT DISTINCT FROM $2"
                " AND department_id = $3 AND valid_from = $4 ORDER BY id LIMIT 1",
                old.category_id, old.area_id, body.department_id, at,
            )  # fmt: skip
            if row is not None:
                return old, Rule.from_row(row)
        retired = old if old.valid_to == at else await _retire(conn, actor, old, at)
        return retired, await _insert(conn, actor, successor, at)
