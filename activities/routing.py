"""Routing (按责转办): category × place → the responsible department, by the routing catalogue
(派单目录) as it was in force when the case was reported (jiesu/admin/routing.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import refusing_bad_data
from jiesu.admin.departments import IN_SERVICE
from jiesu.case.domain import CENTRE_ID, RouteRequest, RouteResult

# The grid's chain of areas up to the county, with its depth (grid = deepest). The deepest
# area that has a rule wins; among rules for the same area, the highest priority. A rule to a
# department out of service now is passed over (jiesu/admin/departments.py).
_ROUTE_SQL = f"""
WITH RECURSIVE chain(id, parent_id, depth) AS (
    SELECT id, parent_id, 0 FROM areas WHERE id = $2
    UNION ALL
    SELECT a.id, a.parent_id, c.depth + 1 FROM areas a JOIN chain c ON a.id = c.parent_id
)
SELECT r.id, d.id AS department_id, d.name AS department_name
FROM routing_rules r
JOIN departments d ON d.id = r.department_id
LEFT JOIN chain c ON c.id = r.area_id
WHERE r.category_id = $1
  AND (r.area_id IS NULL OR c.id IS NOT NULL)
  AND NOT (r.department_id = ANY($3::text[]))
  AND r.valid_from <= $4 AND (r.valid_to IS NULL OR r.valid_to > $4)
  AND {IN_SERVICE}
ORDER BY coalesce(c.depth, 1000), r.priority DESC, r.id
LIMIT 1
"""


async def _centre_queue(conn: asyncpg.Connection) -> RouteResult:
    centre = await conn.fetchval("SELECT name FROM departments WHERE id = $1", CENTRE_ID)
    if centre is None:  # retryable: an admin can load the reference data
        raise ApplicationError("reference data has no hotline centre")
    return RouteResult(department_id=CENTRE_ID, department_name=centre, by_rule=False)


# The case's children run as <case>-reassign-<n> / <case>-escalation-<n> (workflows/).
_CHILD_SUFFIX = re.compile(r"-(reassign|escalation)-\d+$")


async def _reported_at(conn: asyncpg.Connection) -> datetime:
    """When the case being routed was reported: its intake's received_at, found by the
    calling workflow's id (the case number, or a child's id built on it). RouteRequest does
    not carry it (adding it is a workflow change); a case without an intake row (none in
    practice) is routed by the rules in force now."""
    case_id = _CHILD_SUFFIX.sub("", activity.info().workflow_id or "")
    at = await conn.fetchval("SELECT received_at FROM intakes WHERE case_id = $1", case_id)
    return at or datetime.now(UTC)


class RoutingActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name="route_case")
    async def route_case(self, request: RouteRequest) -> RouteResult:
        """Pick the department by rule; no rule → the hotline centre's dispatch queue."""
        with refusing_bad_data():
            return await self._route(request)

    async def _route(self, request: RouteRequest) -> RouteResult:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                _ROUTE_SQL,
                request.category_id,
                request.grid_id,
                request.exclude_department_ids,
                await _reported_at(conn),
            )
            if row:
                return RouteResult(
                    department_id=row["department_id"],
                    department_name=row["department_name"],
                    by_rule=True,
                    rule_id=row["id"],
                )
            return await _centre_queue(conn)

    async def centre_queue(self) -> RouteResult:
        """The hotline centre's dispatch queue (where a case no rule takes goes)."""
        async with self.pool.acquire() as conn:
            return await _centre_queue(conn)

    @activity.defn(name="known_department")
    async def known_department(self, department_id: str) -> RouteResult | None:
        """The department a dispatcher chose, by its reference data (its name as recorded
        there); None when there is no such department (a choice from another client) or it
        is out of service (the case records ``unknown_department`` for both: the API refuses
        a retired one as ``department_retired`` before the case hears of it)."""
        row = await self.pool.fetchrow(
            f"SELECT d.id, d.name FROM departments d WHERE d.id = $1 AND {IN_SERVICE}",
            department_id,
        )
        if row is None:
            return None
        return RouteResult(department_id=row["id"], department_name=row["name"], by_rule=False)

    @activity.defn(name="known_departments")
    async def known_departments(self, department_ids: list[str]) -> list[RouteResult]:
        """The units a 会办 (or a 督办 of the form 会办) names, by their reference data, in the
        order named; those that do not exist or are out of service are left out (the case
        refuses the action when any is missing: ``unknown_department``). One look-up for the
        whole list: a 会办 names up to ten."""
        rows = await self.pool.fetch(
            f"SELECT d.id, d.name FROM departments d WHERE d.id = ANY($1::text[]) AND {IN_SERVICE}",
            department_ids,
        )
        names = {row["id"]: row["name"] for row in rows}
        return [
            RouteResult(department_id=d, department_name=names[d], by_rule=False)
            for d in department_ids
            if d in names
        ]

    @activity.defn(name="level_up")
    async def level_up(self, department_id: str | None) -> RouteResult:
        """提级办: the department one level up; without one (or out of service), the
        centre's dispatch queue."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT d.id, d.name FROM departments c JOIN departments d ON d.id = c.parent_id"
                f" WHERE c.id = $1 AND {IN_SERVICE}",
                department_id,
            )
            if row:
                return RouteResult(
                    department_id=row["id"], department_name=row["name"], by_rule=False
                )
            return await _centre_queue(conn)
