"""Deadlines (时限): computed in an activity so the result is recorded in the history and a
replay never depends on today's calendar data or policy values. The policy in force (the
environment's defaults overridden by run-time values, jiesu/admin/policy.py) is recorded in
the result: the lifecycle windows and the SLA limits used."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import asyncpg
from temporalio import activity

from jiesu.admin import policy
from jiesu.case.calendar import WorkingCalendar
from jiesu.case.domain import DeadlineRequest, Deadlines
from jiesu.case.sla import Limit
from jiesu.config import Settings

# Overrides are loaded for this window around the start; no limit spans more than this.
_OVERRIDE_WINDOW = timedelta(days=120)


class DeadlineActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings

    async def _calendar(self, start: datetime) -> WorkingCalendar:
        first = (start - timedelta(days=1)).date()
        last = (start + _OVERRIDE_WINDOW).date()
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT day, is_working FROM calendar_overrides WHERE day BETWEEN $1 AND $2",
                first,
                last,
            )
        overrides: dict[date, bool] = {r["day"]: r["is_working"] for r in rows}
        return WorkingCalendar(self.settings.timezone, overrides)

    @activity.defn(name="compute_deadlines")
    async def compute_deadlines(self, request: DeadlineRequest) -> Deadlines:
        in_force = await policy.effective(self.pool, self.settings)
        rule = in_force.rule(request.urgency)
        calendar = await self._calendar(request.received_at)

        def due(limit: Limit) -> datetime:
            if limit.working_time:
                return calendar.add_working_time(request.received_at, limit.duration)
            return request.received_at + limit.duration

        return Deadlines(
            accept=due(rule.accept),
            contact=due(rule.contact) if rule.contact else None,
            finish=due(rule.finish),
            sla_hours=in_force.sla_hours(request.urgency),
            # Issue 14's switch stays with the environment: a bool, not a number to tune.
            return_needs_approval=self.settings.return_needs_approval,
            **in_force.lifecycle(),
        )
