"""The SLA policy (时限规则): the one source of truth for every time limit.

Jinxiang rules: urgent — contact the citizen within 1 hour, finish and reply within 24 hours;
general — finish within 2 working days. The acceptance (签收) limits are ours: a department
must take the case well before it has to act on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jiesu.case.domain import DeadlineKind, Status, Urgency, sql_status


@dataclass(frozen=True)
class Limit:
    """A limit is either calendar time or working time (working days × 24 h)."""

    duration: timedelta
    working_time: bool = False


@dataclass(frozen=True)
class SlaRule:
    accept: Limit
    finish: Limit
    contact: Limit | None = None


SLA_POLICY: dict[Urgency, SlaRule] = {
    Urgency.URGENT: SlaRule(
        accept=Limit(timedelta(minutes=30)),
        contact=Limit(timedelta(hours=1)),
        finish=Limit(timedelta(hours=24)),
    ),
    Urgency.GENERAL: SlaRule(
        accept=Limit(timedelta(hours=4), working_time=True),
        finish=Limit(timedelta(days=2), working_time=True),
    ),
}


# "Late" (逾期), the case list's ``overdue`` flag and filter: any deadline breach recorded, or
# still open past the finish deadline. Not the 超时量 statistic (jiesu.stats.indicators.OVERDUE),
# which counts recorded *finish* breaches only. The same rule in SQL (the list's filter) and in
# Python (a listed row's flag): keep them together.


def late_sql(now: str) -> str:
    """The rule over a ``cases`` row; ``now`` is the SQL placeholder of the current time."""
    closed = sql_status(Status.CLOSED)
    return f"(cardinality(breaches) > 0 OR (status <> {closed} AND finish_deadline < {now}))"


def is_late(row: dict[str, Any], now: datetime) -> bool:
    """The rule over a ``cases`` row as fetched (breaches, status, finish_deadline)."""
    past_finish = row["finish_deadline"] is not None and row["finish_deadline"] < now
    return bool(row["breaches"]) or (row["status"] != Status.CLOSED and past_finish)


def next_deadline(row: dict[str, Any]) -> tuple[DeadlineKind, datetime] | None:
    """The deadline of what the department owes next on a ``cases`` row (the inbox's order):
    签收 while assigned; then 联系诉求人 (urgent cases) until contacted; then 办结 until
    replied. None once replied or closed, or while no department has it."""
    status = row["status"]
    if status == Status.ASSIGNED and row["accept_deadline"] is not None:
        return DeadlineKind.ACCEPT, row["accept_deadline"]
    if status != Status.HANDLING:
        return None
    if row["contact_deadline"] is not None and row["contacted_at"] is None:
        return DeadlineKind.CONTACT, row["contact_deadline"]
    if row["finish_deadline"] is not None:
        return DeadlineKind.FINISH, row["finish_deadline"]
    return None
