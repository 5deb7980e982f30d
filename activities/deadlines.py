"""Deadlines (时限): computed in an activity so the result is recorded in the history and a
replay never depends on today's calendar data."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import asyncpg
from temporalio import activity

from jiesu.case.calendar import WorkingCalendar
from jiesu.case.domain import DeadlineRequest, Deadlines
from jiesu.case.sla import SLA_POLICY, Limit
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
        rule = SLA_POLICY[request.urgency]
        calendar = await self._calendar(request.received_at)

        def due(limit: Limit) -> datetime:
            if limit.working_time:
                return calendar.add_working_time(request.received_at, limit.duration)
            return request.received_at + limit.duration

        return Deadlines(
            accept=due(rule.accept),
            contact=due(rule.contact) if rule.contact else None,
            finish=due(rule.finish),
            rating_window_hours=self.settings.rating_window_hours,
            return_window_hours=self.settings.return_window_hours,
            dispatcher_window_minutes=self.settings.dispatcher_window_minutes,
            max_reassignments=self.settings.max_reassignments,
            max_unsatisfied_rounds=self.settings.max_unsatisfied_rounds,
            escalation_step_hours=self.settings.escalation_step_hours,
            repeats_before_supervision=self.settings.repeats_before_supervision,
            max_extension_days=self.settings.max_extension_days,
            return_needs_approval=self.settings.return_needs_approval,
            max_extensions=self.settings.max_extensions,
            extension_decision_hours=self.settings.extension_decision_hours,
        )
