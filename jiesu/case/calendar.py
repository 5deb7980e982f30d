"""Working-day arithmetic (工作日计算).

A working day is a whole calendar day that the official schedule marks as working: weekdays
that are not public holidays, plus the weekend days swapped into working days (调休). The
`holidays` package's China calendar knows both; admins can override single days in
PostgreSQL (``calendar_overrides``) when the State Council publishes a schedule the package
does not have yet.

"N working days" means N × 24 hours counted only on working days. So a general case received
on Friday at 15:00 is due on Tuesday at 15:00, and one received on a Saturday is due at the
end of Tuesday.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays


@lru_cache(maxsize=16)
def _china(year: int) -> holidays.HolidayBase:
    return holidays.China(years=year)


class WorkingCalendar:
    def __init__(self, tz: str, overrides: Mapping[date, bool] | None = None) -> None:
        self.tz = ZoneInfo(tz)
        self.overrides = dict(overrides or {})

    def is_working_day(self, day: date) -> bool:
        if day in self.overrides:
            return self.overrides[day]
        return _china(day.year).is_working_day(day)

    def add_working_time(self, start: datetime, duration: timedelta) -> datetime:
        """Return the moment when ``duration`` of working-day time has elapsed after start."""
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        local = start.astimezone(self.tz)
        remaining = duration
        day = local.date()
        cursor = local
        for _ in range(3660):  # ten years of days: a hard stop for a broken calendar
            day_end = datetime.combine(day + timedelta(days=1), time(0), self.tz)
            if self.is_working_day(day):
                available = day_end - cursor
                if remaining <= available:
                    return (cursor + remaining).astimezone(start.tzinfo)
                remaining -= available
            day += timedelta(days=1)
            cursor = day_end
        raise ValueError("no working days found within ten years")
