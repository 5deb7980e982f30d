"""Reference data (基础数据): departments, areas (county → township → community → grid) and
complaint categories. ``put`` creates or replaces a record (a retry changes nothing more),
``delete`` removes one that nothing refers to; each change is logged with before and after.

Each record answers with its ``version``, a digest of what it holds (no column: any change
of any field gives another). A change or deletion may name the version it was made on
(``if_version``): made on another, it is refused (409 ``version_conflict``) instead of
silently undoing what another admin changed meanwhile (a lost update).

A grid may carry its boundary (GeoJSON Polygon/MultiPolygon, WGS 84), which Open311 uses to
place a reported point (:mod:`jiesu.geo`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, field_validator

from jiesu import geo
from jiesu.admin import changes
from jiesu.admin.errors import conflict, invalid, not_found
from jiesu.case.domain import Actor, Line, Text, Urgency

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
Id = Annotated[str, Field(pattern=ID_PATTERN, examples=["water"])]
Name = Annotated[Line, Field(min_length=1, max_length=200)]

AreaKind = Literal["city", "county", "township", "community", "grid"]
# An area's parent is exactly one level up (no cycles, no grid under a county).
PARENT_KIND: dict[str, str | None] = {
    "city": None, "county": None, "township": "county", "community": "township",
    "grid": "community",
}  # fmt: skip


class DepartmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    level: Literal["city", "centre", "county", "township", "village"]
    parent_id: Id | None = Field(
        default=None, description="Where a case goes when it is raised a level (提级办)."
    )
    area_id: Id | None = None


class AreaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    kind: AreaKind
    parent_id: Id | None = None
    boundary: dict[str, Any] | None = Field(
        default=None,
        description="GeoJSON Polygon or MultiPolygon in WGS 84 (longitude, latitude); grids.",
    )

    @field_validator("boundary")
    @classmethod
    def _valid_shape(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            geo.check_boundary(value)  # ValueError → 422
        return value


class CategoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    default_urgency: Urgency
    description: Annotated[Text, Field(max_length=2000)] = ""


@dataclass(frozen=True)
class Table:
    """How one kind of record is stored: its table, entity name and columns (id first)."""

    entity: str
    table: str
    columns: tuple[str, ...]
    model: type[BaseModel]
    # Shown with the record but not written by ``put`` (a department's retirement has its own
    # action, jiesu/admin/departments.py: replacing a record's fields must not reinstate it).
    read_only: tuple[str, ...] = ()

    @property
    def shown(self) -> str:
        return ", ".join((*self.columns, *self.read_only))

    @property
    def select(self) -> str:
        return f"SELECT id, {self.shown} FROM {self.table}"


# Cases refer to records by id without a foreign key (the read model outlives reference
# data): a record a case names is kept, so the case's history still reads. A department that
# held a case and passed it on is named by the case's handlings only (fair attribution): its
# past figures, and its level in them, need it too.
_USED_BY_CASES = {
    "department": "SELECT 1 FROM cases WHERE department_id = $1"
                  " UNION ALL SELECT 1 FROM case_handlings WHERE department_id = $1 LIMIT 1",
    "area": "SELECT 1 FROM cases WHERE grid_id = $1 LIMIT 1",
    "category": "SELECT 1 FROM cases WHERE category_id = $1 LIMIT 1",
}

# A report is accepted (its intake row committed) before its case is in the read model — the
# process may die in between, or Temporal be away, and the repair starts the case later
# (jiesu.intake.filing.settle_pending). What such a report names is in use too. (Intake reads
# the category and the grid FOR KEY SHARE: a deletion waits for its commit, then sees it.)
_USED_BY_INTAKES = {
    "area": ["intake", "grid_id"],
    "category": ["intake", "category_id"],
}
# The reports without a case row are found by their ids alone (indexes only), and only their
# payloads read: the plain anti-join read every intake's payload, the whole table (1.3 GB at
# 1,000,000 reports: bench/unprojected_check.py).
UNPROJECTED_INTAKE = (
    "WITH unprojected AS MATERIALIZED (SELECT i.case_id FROM intakes i"
    " WHERE NOT EXISTS (SELECT 1 FROM cases c WHERE c.case_id = i.case_id))"
    " SELECT 1 FROM intakes i JOIN unprojected u USING (case_id)"
    " WHERE i.payload #>> $2 = $1 LIMIT 1"
)

DEPARTMENTS = Table("department", "departments", ("name", "level", "parent_id", "area_id"),
                    DepartmentIn, read_only=("retired_at",))
AREAS = Table("area", "areas", ("name", "kind", "parent_id", "boundary"), AreaIn)
CATEGORIES = Table("category", "categories", ("name", "default_urgency", "description"),
                   CategoryIn)
TABLES = {t.entity: t for t in (DEPARTMENTS, AREAS, CATEGORIES)}

Db = asyncpg.Pool | asyncpg.Connection


def _record(row: asyncpg.Record | None) -> dict[str, Any] | None:
    return None if row is None else dict(row)


def version_of(record: dict[str, Any]) -> str:
    """The record's version: a digest of its fields (a boundary compared as JSON, whichever
    way the connection decodes ``jsonb``)."""
    fields = {k: (json.loads(v) if k == "boundary" and isinstance(v, str) else v)
              for k, v in record.items() if k != "version"}  # fmt: skip
    text = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _versioned(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "version": version_of(record)}


def check_version(table: Table, record_id: str, before: dict[str, Any] | None,
                   if_version: str | None) -> None:  # fmt: skip
    if if_version is None:
        return
    if before is None:
        raise not_found(f"{table.entity}_not_found", f"no {table.entity} {record_id!r}")
    if version_of(before) != if_version:
        raise conflict("version_conflict", f"{table.entity} {record_id!r} was changed since "
                       f"version {if_version} (now {version_of(before)})")


async def list_records(db: Db, table: Table) -> list[dict[str, Any]]:
    return [_versioned(dict(r)) for r in await db.fetch(f"{table.select} ORDER BY id")]


async def get_record(db: Db, table: Table, record_id: str) -> dict[str, Any]:
    row = await db.fetchrow(f"{table.select} WHERE id = $1", record_id)
    if row is None:
        raise not_found(f"{table.entity}_not_found", f"no {table.entity} {record_id!r}")
    return _versioned(dict(row))


async def _check_area(conn: asyncpg.Connection, body: AreaIn) -> None:
    if body.boundary is not None and body.kind != "grid":
        raise invalid("invalid_boundary", "only grids carry a boundary")
    want = PARENT_KIND[body.kind]
    if want is None:
        if body.parent_id is not None:
            raise invalid("invalid_parent", "a county has no parent area")
        return
    parent = await conn.fetchval("SELECT kind FROM areas WHERE id = $1", body.parent_id)
    if parent != want:
        raise invalid("invalid_parent", f"a {body.kind}'s parent must be an existing {want}")


async def put_record(
    pool: asyncpg.Pool, actor: Actor, table: Table, record_id: str, body: BaseModel,
    *, if_version: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Create or replace; returns the record (with its new version) and whether anything
    changed. ``if_version``: replace only that version of an existing record."""
    values = body.model_dump(mode="json")
    params = [values[c] for c in table.columns]
    if "boundary" in table.columns:  # jsonb by text: the same with and without the codec
        i = table.columns.index("boundary")
        params[i] = None if params[i] is None else json.dumps(params[i])
    casts = [f"${i + 2}::text::jsonb" if c == "boundary" else f"${i + 2}"
             for i, c in enumerate(table.columns)]
    async with pool.acquire() as conn, conn.transaction():
        # NO KEY: a change of a record's fields neither waits for the reports naming it nor
        # makes them wait (intake reads it FOR KEY SHARE, against a deletion only)
        before = _record(await conn.fetchrow(
            f"{table.select} WHERE id = $1 FOR NO KEY UPDATE", record_id
        ))  # fmt: skip
        check_version(table, record_id, before, if_version)
        if isinstance(body, AreaIn):
            await _check_area(conn, body)
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in table.columns)
        try:
            row = await conn.fetchrow(
                f"INSERT INTO {table.table} (id, {', '.join(table.columns)})"
                f" VALUES ($1, {', '.join(casts)}) ON CONFLICT (id) DO UPDATE SET {sets}"
                f" RETURNING id, {table.shown}",
                record_id, *params,
            )
        except asyncpg.ForeignKeyViolationError as exc:
            raise invalid("unknown_reference", f"{table.entity} refers to a missing record: "
                          f"{exc.detail or exc}") from exc
        except asyncpg.CheckViolationError as exc:
            raise invalid("invalid_record", str(exc)) from exc
        after = dict(row)
        if before == after:
            return _versioned(after), False
        await changes.record(conn, actor, table.entity, record_id,
                             "create" if before is None else "update", before, after)
    return _versioned(after), True


async def delete_record(
    pool: asyncpg.Pool, actor: Actor, table: Table, record_id: str,
    *, if_version: str | None = None,
) -> None:
    """Delete a record nothing refers to (cases keep their ids: a used record is kept);
    ``if_version``: only that version of it."""
    async with pool.acquire() as conn, conn.transaction():
        before = _record(await conn.fetchrow(f"{table.select} WHERE id = $1 FOR UPDATE",
                                             record_id))
        if before is None:
            raise not_found(f"{table.entity}_not_found", f"no {table.entity} {record_id!r}")
        check_version(table, record_id, before, if_version)
        path = _USED_BY_INTAKES.get(table.entity)
        if await conn.fetchval(_USED_BY_CASES[table.entity], record_id) or (
            path is not None and await conn.fetchval(UNPROJECTED_INTAKE, record_id, path)
        ):
            raise conflict(f"{table.entity}_in_use", f"{table.entity} {record_id!r} is named "
                           "by cases")
        try:
            async with conn.transaction():  # a savepoint: the refusal leaves the outer intact
                await conn.execute(f"DELETE FROM {table.table} WHERE id = $1", record_id)
        except asyncpg.ForeignKeyViolationError as exc:
            raise conflict(f"{table.entity}_in_use", f"{table.entity} {record_id!r} is still "
                           f"referred to: {exc.detail or exc}") from exc
        await changes.record(conn, actor, table.entity, record_id, "delete", before, None)
