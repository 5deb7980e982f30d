"""Fair attribution (按轮次归责): what each department that held a case did with it.

A case can pass through several departments: routed to A, returned (退单) or raised (提级办) to
B, rehandled (重办) by B again. The case row of the read model describes the case *now*;
charging its breaches, returns, extensions and ratings to its current department would blame B
for A's breach. A **handling** (承办记录) is the case as one department saw it, over all the
rounds it held the case: the deadlines and steps of its rounds, the breaches recorded while it
held the case, its returns, its approved extensions, the repeat reports that came in meanwhile
and the verdict on its reply. Department figures (jiesu.stats.rollup) count handlings, so each
fact is charged to the department that held the case in that round.

Handlings are derived from the case's event list (the auditors' record), so they need nothing
the workflow does not already record, and they can be recomputed at any time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jiesu.case.domain import (
    CENTRE_ID,
    DeadlineKind,
    EventKind,
    Rating,
    ReplyOutcome,
    Status,
)
from jiesu.stats.indicators import case_resolved

_ASSIGNING = frozenset({
    EventKind.ROUTED, EventKind.DISPATCHED, EventKind.REASSIGNED, EventKind.QUEUED,
})  # fmt: skip
_RATING = frozenset({EventKind.RATED, EventKind.CALLBACK})
_SETTLED_AT_INTAKE = frozenset({EventKind.ANSWERED_DIRECTLY, EventKind.SOLVED_ON_THE_SPOT})


@dataclass
class Handling:
    """One department's part in one case (its rounds merged). Column names are those of the
    ``cases`` row, so the measures of jiesu.stats.indicators apply to it unchanged."""

    department_id: str
    first_round: int
    last_round: int
    assigned_at: datetime
    released_at: datetime | None = None  # when the case left it; None while it holds it
    accept_deadline: datetime | None = None  # of its first round: its response
    contact_deadline: datetime | None = None
    finish_deadline: datetime | None = None  # in force in its last round
    accepted_at: datetime | None = None
    contacted_at: datetime | None = None
    replied_at: datetime | None = None
    reply_outcome: ReplyOutcome | None = None
    rating: Rating | None = None
    breaches: list[str] = field(default_factory=list)
    return_count: int = 0
    rejected_return_count: int = 0  # its returns the centre rejected (退单驳回)
    extension_count: int = 0
    repeat_count: int = 0
    replied_by: str | None = None  # the person (actor name) of its last reply
    accepted_by: str | None = None

    def resolved(self, status: Status) -> bool | None:
        """已解决, for a department that replied: see jiesu.stats.indicators.case_resolved."""
        if self.replied_at is None:
            return None
        return case_resolved(status, self.reply_outcome, self.rating)


@dataclass
class _Walk:
    """The state of the walk through the events."""

    handlings: dict[str, Handling] = field(default_factory=dict)
    holder: Handling | None = None
    round: int = 0
    deadlines: dict[str, datetime | None] = field(default_factory=dict)  # the latest set
    breached: set[str] = field(default_factory=set)  # kinds of those breached already


def _when(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def _kind(event: Mapping[str, Any]) -> EventKind | None:
    try:
        return EventKind(event["kind"])
    except ValueError:
        return None


def handlings(events: Iterable[Mapping[str, Any]]) -> list[Handling]:
    """The handlings of a case, from its events in order (``kind``, ``at``, ``actor``,
    ``data`` as stored in ``case_events``), first holder first."""
    walk = _Walk()
    for event in events:
        kind = _kind(event)
        if kind is not None:
            _apply(walk, kind, event)
    return list(walk.handlings.values())


def _apply(walk: _Walk, kind: EventKind, event: Mapping[str, Any]) -> None:
    data: Mapping[str, Any] = event.get("data") or {}
    at = _when(event["at"])
    assert at is not None
    if kind is EventKind.DEADLINES_SET:
        # recorded before the assignment they belong to (the next holder's, on a new round)
        walk.deadlines = {k.value: _when(data.get(k.value)) for k in DeadlineKind}
        walk.breached = set()
    elif kind in _ASSIGNING and data.get("department_id"):
        _assign(walk, str(data["department_id"]), at)
    elif kind in _SETTLED_AT_INTAKE:  # 即时办结 by the centre, 就地解决 by the grid
        _assign(walk, str(data.get("department_id") or CENTRE_ID), at)
        h = walk.holder
        assert h is not None
        h.accepted_at = h.contacted_at = h.replied_at = at
        h.reply_outcome = ReplyOutcome.RESOLVED
        h.accepted_by = h.replied_by = (event.get("actor") or {}).get("name")
    elif walk.holder is not None:
        _holder_event(walk, walk.holder, kind, event, data)


def _assign(walk: _Walk, department_id: str, at: datetime) -> None:
    walk.round += 1
    if walk.holder is not None and walk.holder.department_id != department_id:
        walk.holder.released_at = at
    handling = walk.handlings.get(department_id)
    if handling is None:
        handling = Handling(department_id, walk.round, walk.round, at)
        # A response deadline already breached before the department got the case (it waited
        # in the centre's queue and was dispatched by hand on the intake's deadlines) is not
        # its to meet: the breach was charged to the holder of then (the centre).
        for kind in ("accept", "contact"):
            deadline = None if kind in walk.breached else walk.deadlines.get(kind)
            setattr(handling, f"{kind}_deadline", deadline)
        walk.handlings[department_id] = handling
    else:  # back again (rehandled by the same department, or returned to it)
        handling.released_at = None
        handling.replied_at = handling.reply_outcome = handling.rating = None
    handling.last_round = walk.round
    handling.finish_deadline = walk.deadlines.get("finish")
    walk.holder = handling


def _holder_event(
    walk: _Walk, h: Handling, kind: EventKind, event: Mapping[str, Any], data: Mapping[str, Any]
) -> None:
    at = _when(event["at"])
    actor: Mapping[str, Any] = event.get("actor") or {}
    if kind is EventKind.ACCEPTED and h.accepted_at is None:
        h.accepted_at, h.accepted_by = at, actor.get("name")
    elif kind is EventKind.CONTACTED and h.contacted_at is None:
        h.contacted_at = at
    elif kind is EventKind.REPLIED:
        h.replied_at, h.replied_by = at, actor.get("name")
        h.reply_outcome = ReplyOutcome(data["outcome"]) if data.get("outcome") else None
        h.rating = None
    elif kind in _RATING and data.get("rating"):
        h.rating = Rating(data["rating"])
    elif kind is EventKind.DEADLINE_BREACHED:
        # the breach names the department that held the case (recorded since the start)
        charged = walk.handlings.get(str(data.get("department_id") or h.department_id), h)
        charged.breaches.append(str(data.get("deadline_kind")))
        walk.breached.add(str(data.get("deadline_kind")))
    elif kind is EventKind.RETURNED:
        h.return_count += 1
    elif kind is EventKind.RETURN_REJECTED:
        # charged to the unit that returned it (the round's holder, named by the event)
        charged = walk.handlings.get(str(data.get("department_id") or h.department_id), h)
        charged.rejected_return_count += 1
    elif kind is EventKind.EXTENSION_DECIDED and data.get("approved"):
        h.extension_count += 1
        h.finish_deadline = _when(data.get("new_deadline")) or h.finish_deadline
    elif kind is EventKind.REPEAT_REPORTED:
        h.repeat_count += 1
