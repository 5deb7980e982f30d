"""The SLA policy (时限规则): the one source of truth for every time limit.

Jinxiang rules: urgent — contact the citizen within 1 hour, finish and reply within 24 hours;
general — finish within 2 working days. The acceptance (签收) limits are ours: a department
must take the case well before it has to act on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from jiesu.case.domain import Urgency


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
