"""Periodic reports (定期报告): daily summary (日报), weekly evaluation (周报) and monthly
analysis (月报). Pure definitions shared by the report workflow, its activities and the API."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from jiesu.case.domain import MIN_YEAR


class ReportKind(StrEnum):
    DAILY = "daily"  # 日报: one day
    WEEKLY = "weekly"  # 周报: Monday to Sunday
    MONTHLY = "monthly"  # 月报: a calendar month


class ReportRequest(BaseModel):
    """The report workflow's input. Without ``period_start`` the report is for the last
    complete period before the workflow started (what the schedules use)."""

    kind: ReportKind
    period_start: date | None = None


class ReportJob(BaseModel):
    kind: ReportKind
    period_start: date | None = None
    as_of: datetime


class ReportSummary(BaseModel):
    kind: ReportKind
    period_start: date
    period_end: date  # last day included
    generated_at: datetime
    generation: int  # 1 for the first snapshot of the period, +1 for each re-run


def period_containing(kind: ReportKind, day: date) -> tuple[date, date]:
    """The [first, last] day of the ``kind`` period that contains ``day``."""
    if kind is ReportKind.WEEKLY:
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=6)
    if kind is ReportKind.MONTHLY:
        start = day.replace(day=1)
        following = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
        return start, following - timedelta(days=1)
    return day, day


def unreportable(kind: ReportKind, day: date, today: date) -> str | None:
    """Why the ``kind`` period containing ``day`` can have no report (None: it can): it has
    not begun by ``today`` (a typo for this year would publish an empty report that heads the
    list, newest first, for decades), or it begins before the supported years (its url, named
    by its first day, could not be read)."""
    start, end = period_containing(kind, day)
    if start > today:
        return f"the {kind.value} period {start}..{end} has not begun (today is {today})"
    if start.year < MIN_YEAR:
        return (f"the {kind.value} period {start}..{end} begins before the supported years"
                f" ({MIN_YEAR} on)")
    return None


def previous_period(kind: ReportKind, as_of: datetime, timezone: str) -> tuple[date, date]:
    """The last complete period before ``as_of`` (in local time)."""
    today = as_of.astimezone(ZoneInfo(timezone)).date()
    current_start, _ = period_containing(kind, today)
    return period_containing(kind, current_start - timedelta(days=1))


def report_period(job: ReportJob, timezone: str) -> tuple[date, date]:
    if job.period_start is not None:
        return period_containing(job.kind, job.period_start)
    return previous_period(job.kind, job.as_of, timezone)
