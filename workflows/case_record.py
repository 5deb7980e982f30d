"""The case's state and its event list: what every part of the case workflow changes.

Handlers, deadline watches, the ladder and the projector all hold the same
:class:`CaseRecord`: they change ``state`` and ``record`` an event for every change; the
projector carries the events to the read model, and the history carries them for auditors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from jiesu.case.domain import (
        CENTRE_ID,
        CENTRE_NAME,
        CENTRE_NAME_BEFORE_V9,
        SYSTEM_ACTOR,
        UNKNOWN_SENDER,
        Actor,
        Assignment,
        Breach,
        CaseEvent,
        CaseStart,
        CaseState,
        DeadlineKind,
        Deadlines,
        EventKind,
        Resolution,
        Role,
        RouteResult,
        Status,
    )
    from jiesu.case.lifecycle import (
        ACTIONS_TIMED_WHEN_SENT,
        MAX_RECORDED_REJECTIONS,
        REJECTIONS_BOUNDED,
        Refusal,
        rejections_recorded,
    )
    from workflows.messages import Misfit, printable
    from workflows.patches import Patches


# Since this one (epoch lean-case-v9) the case records the centre's name as every other
# department's, in Chinese only (CENTRE_NAME, the name of its row in the reference data): in
# its assignment when it goes to the dispatch queue without the routing activity's answer, and
# in the department_name of a reassignment that ends there. Before, the workflows wrote
# "12345热线中心 (Hotline Centre)" (CENTRE_NAME_BEFORE_V9); such a case keeps writing it, as
# its history recorded it (tests/test_centre_name.py).
PATCH_CENTRE_NAME = "centre-name-chinese-v1"


class CaseRecord:
    def __init__(self, state: CaseState) -> None:
        self.state = state
        self.patched = Patches()  # every part of the case asks its patches here
        self._acting_at: datetime | None = None  # the time of the action being applied

    def clock(self) -> datetime:
        """The case's time now: the time of the action being applied (:meth:`acting`), or the
        workflow's clock."""
        return self._acting_at or workflow.now()

    def time_of(self, actor: Actor) -> datetime:
        """When ``actor``'s action happened, as the case records it. Since lean-case-v12
        (ACTIONS_TIMED_WHEN_SENT) the time its request was sent (``Actor.sent_at``, the API's
        clock), bounded below by the case's last recorded event (its events stay in order, a
        step stays after the breach the case has recorded) and above by the workflow's clock;
        before, and for an action with no time (the system's, a child's), the time the worker
        applied it — the same while the worker keeps up, an outage's length apart when not."""
        now = workflow.now()
        sent = actor.sent_at
        if sent is None or not self.patched(ACTIONS_TIMED_WHEN_SENT):
            return now
        events = self.state.events
        floor = events[-1].at if events else self.state.received_at
        return min(now, max(sent, floor))

    @contextmanager
    def acting(self, at: datetime | None) -> Iterator[None]:
        """Record what happens inside at ``at`` (an action's time, :meth:`time_of`); nested
        (a lapse taken before a later action, lean-case-v18), the outer time is back after."""
        outer, self._acting_at = self._acting_at, at
        try:
            yield
        finally:
            self._acting_at = outer

    def centre_name(self) -> str:
        """The hotline centre's name as this case records it (PATCH_CENTRE_NAME)."""
        return CENTRE_NAME if self.patched(PATCH_CENTRE_NAME) else CENTRE_NAME_BEFORE_V9

    @classmethod
    def opened(cls, start: CaseStart) -> CaseRecord:
        """受理: the case as registered, before routing."""
        facts = start.case_facts
        return cls(CaseState(
            case_id=start.case_id,
            status=Status.REGISTERED,
            title=facts.title,
            category_id=facts.category_id,
            grid_id=facts.grid_id,
            address=facts.address,
            channel=facts.channel,
            urgency=start.urgency,
            received_at=start.received_at,
        ))

    def record_received(self, start: CaseStart) -> None:
        facts = start.case_facts
        self.record(
            EventKind.RECEIVED,
            start.registered_by,
            title=facts.title,
            category_id=facts.category_id,
            grid_id=facts.grid_id,
            channel=facts.channel.value,
            urgency=start.urgency.value,
            received_at=start.received_at.isoformat(),
        )

    def record(self, kind: EventKind, actor: Actor, **data: Any) -> None:
        """An event at the case's :meth:`clock`; the actor without its request's ``sent_at``
        (the event's time is what the case made of it)."""
        events = self.state.events
        if actor.sent_at is not None:
            actor = actor.model_copy(update={"sent_at": None})
        events.append(
            CaseEvent(seq=len(events) + 1, kind=kind, at=self.clock(), actor=actor, data=data)
        )

    # --- changes many handlers share ------------------------------------------------------

    def allowed(self, name: str, action: Any, refusal: Refusal | None) -> bool:
        """Apply a valid action; record a refused one with its reason, for the auditors."""
        if refusal is None:
            return True
        actor = getattr(action, "actor", None) or UNKNOWN_SENDER  # a ladder step has none
        self.refused(name, actor, refusal)
        return False

    def refused(self, name: str, actor: Actor, refusal: Refusal) -> None:
        """Record ``actor``'s action ``name`` refused, with its reason, for the auditors."""
        self._rejected(actor, action=name, code=refusal.code, reason=refusal.reason)

    def misfit(self, misfit: Misfit, name: str) -> None:
        """A message that did not decode: recorded as a rejection from an unknown sender."""
        self._rejected(
            UNKNOWN_SENDER,
            action=printable(name, 64),
            code=misfit.code,
            reason=misfit.reason,
            payload=misfit.excerpt,
        )

    def _rejected(self, actor: Actor, **data: Any) -> None:
        """A ``rejected`` event, while the case records refusals: at most
        MAX_RECORDED_REJECTIONS (since REJECTIONS_BOUNDED; the patch is asked only there)."""
        recorded = rejections_recorded(self.state)
        if recorded >= MAX_RECORDED_REJECTIONS - 1 and self.patched(REJECTIONS_BOUNDED):
            if recorded >= MAX_RECORDED_REJECTIONS:
                workflow.logger.warning(
                    "case %s: refusal not recorded (%s)", self.state.case_id, data.get("code")
                )
                return
            data["reason"] = (
                f"{data.get('reason', '')} (the case records at most {MAX_RECORDED_REJECTIONS}"
                " refusals: this is the last one; later ones leave no event)"
            )
        self.record(EventKind.REJECTED, actor, **data)

    def assign(self, route: RouteResult, actor: Actor, note: str = "", quiet: bool = False) -> None:
        """派单: to the routed or dispatched department; unrouted → the centre's queue."""
        s = self.state
        s.assignment = Assignment(
            department_id=route.department_id,
            department_name=route.department_name,
            assigned_at=self.clock(),
            by_rule=route.by_rule,
        )
        if route.department_id == CENTRE_ID and not route.by_rule and actor.role is Role.SYSTEM:
            s.status = Status.DISPATCHING
            self.record(EventKind.QUEUED, actor, department_id=route.department_id)
            return
        s.status = Status.ASSIGNED
        if quiet:
            return  # the caller recorded the assignment in its own words
        self.record(
            EventKind.ROUTED if route.by_rule else EventKind.DISPATCHED,
            actor,
            department_id=route.department_id,
            department_name=route.department_name,
            rule_id=route.rule_id,
            note=note,
        )

    def set_deadlines(self, deadlines: Deadlines) -> None:
        self.state.deadlines = deadlines
        self.record(
            EventKind.DEADLINES_SET,
            SYSTEM_ACTOR,
            **{
                k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in deadlines.model_dump().items()
            },
        )

    def close(self, resolution: Resolution, actor: Actor = SYSTEM_ACTOR) -> None:
        self.state.status = Status.CLOSED
        self.state.resolution = resolution
        self.state.closed_at = self.clock()
        self.record(EventKind.CLOSED, actor, resolution=resolution.value)

    def breach(self, kind: DeadlineKind, deadline: datetime) -> None:
        """超时: the deadline passed with the department's step not done."""
        self.state.breaches.append(Breach(kind=kind, deadline=deadline, at=self.clock()))
        self.record(
            EventKind.DEADLINE_BREACHED,
            SYSTEM_ACTOR,
            deadline_kind=kind.value,
            deadline=deadline.isoformat(),
            department_id=self.state.department_id,
        )

    def start_round(self) -> None:
        """A new assignment round: the department's steps and the verdict start again."""
        s = self.state
        s.round += 1
        s.accepted_at = s.contacted_at = None
        s.reply = None
        s.rating = None
        s.rating_comment = ""
        s.extension = None
        s.pending_return = None

    def queue_at_centre(self, actor: Actor) -> None:
        """Past the reassignment bound: the centre dispatches by hand, under supervision."""
        s = self.state
        assert s.assignment is not None
        s.status = Status.DISPATCHING
        s.round += 1  # the department's timers stop; the case waits for a dispatcher
        s.accepted_at = s.contacted_at = None
        self.record(
            EventKind.QUEUED, actor, department_id=CENTRE_ID, reason="reassignment limit reached"
        )
        s.assignment = Assignment(
            department_id=CENTRE_ID,
            department_name=self.centre_name(),
            assigned_at=self.clock(),
            by_rule=False,
        )
