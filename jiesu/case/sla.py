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


# "Late" (逾期), the case list's ``overdue`` flag and filter and the supervisors' overdue board:
# any deadline breach recorded, or a step of the current round whose deadline has passed undone
# (签收 not accepted, 联系 not contacted — as jiesu.case.lifecycle.overdue_steps judges the
# case), or still open past the finish deadline. Read from the deadlines and the clock, not
# only from the recorded breach: a breach is recorded when its timer's workflow task runs,
# which under a storm of deadlines can be seconds or minutes after the deadline, and the
# board must show the case from the deadline on. Not the 超时量 statistic
# (jiesu.stats.indicators.OVERDUE), which counts recorded *finish* breaches only. The same
# rule in SQL (the list's filter) and in Python (a listed row's flag): keep them together.

# Each deadline's column on a ``cases`` row and the column that meets it (办结 has none: a
# late reply is still late); _STEPS are the steps a department owes in a round.
_DUE: dict[DeadlineKind, tuple[str, str | None]] = {
    DeadlineKind.ACCEPT: ("accept_deadline", "accepted_at"),
    DeadlineKind.CONTACT: ("contact_deadline", "contacted_at"),
    DeadlineKind.FINISH: ("finish_deadline", None),
}
_STEPS = tuple((due, met) for due, met in _DUE.values() if met is not None)
# No unit's clock runs against a closed case, nor one being reassigned (改派中: its unit can
# no longer act, and the next round has deadlines of its own — the case's own rule since
# lean-case-v11, jiesu.case.lifecycle.deadline_owed); a breach recorded still counts.
_CLOCK_STOPPED = (Status.CLOSED, Status.REASSIGNING)


def late_sql(now: str) -> str:
    """The rule over a ``cases`` row; ``now`` is the SQL placeholder of the current time.
    Never NULL (a row without deadlines is not late), so ``NOT`` of it is the on-time rows."""
    stopped = sql_status(*_CLOCK_STOPPED)
    steps = " OR ".join(f"({due} < {now} AND {met} IS NULL)" for due, met in _STEPS)
    return (
        f"(cardinality(breaches) > 0 OR (status NOT IN ({stopped}) AND coalesce("
        f"{steps} OR finish_deadline < {now}, false)))"
    )


def is_late(row: dict[str, Any], now: datetime) -> bool:
    """The rule over a ``cases`` row as fetched (breaches, status, the deadlines and
    accepted_at / contacted_at)."""
    if row["breaches"]:
        return True
    if row["status"] in _CLOCK_STOPPED:
        return False
    steps = [(row["finish_deadline"], None)] + [(row[due], row[met]) for due, met in _STEPS]
    return any(due is not None and due < now and met is None for due, met in steps)


# 超时环节 of a case waiting in the centre's dispatch queue (待派单) past a deadline recorded at
# receipt (or of the round that ended there): it is late being dispatched, the centre's wait,
# not a unit's 签收/联系/办结 — since lean-case-v8 no timer runs in the queue and the unit
# dispatched to gets deadlines of its own (docs/supervision.md).
QUEUE_WAIT = "queue"
LateStep = tuple[DeadlineKind | str, datetime | None]


def late_steps(row: dict[str, Any], now: datetime) -> list[LateStep]:
    """What a late row (:func:`is_late`) is late with, for the overdue board: each recorded
    breach, and each step past its deadline whose breach is not recorded yet, with the
    deadline of the current round (None when the row no longer has it). A queued row's
    passed deadlines are one step, :data:`QUEUE_WAIT`, from the first of them."""
    kinds = {DeadlineKind(b) for b in row["breaches"] if b in DeadlineKind.__members__.values()}
    passed = []
    if row["status"] not in _CLOCK_STOPPED:
        for kind, (due, met) in _DUE.items():
            at = row.get(due)
            if at is not None and at < now and (met is None or row.get(met) is None):
                passed.append((kind, at))
    steps: list[LateStep]
    if row["status"] == Status.DISPATCHING and passed:
        steps = [(kind, row.get(_DUE[kind][0])) for kind in DeadlineKind if kind in kinds]
        return [*steps, (QUEUE_WAIT, min(at for _, at in passed))]
    kinds |= {kind for kind, _ in passed}
    return [(kind, row.get(_DUE[kind][0])) for kind in DeadlineKind if kind in kinds]


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
