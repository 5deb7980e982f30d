"""ComplaintWorkflow: one durable workflow per case (工单), workflow id = case number.

The case's Temporal history is its authoritative event log. The workflow routes the case,
sets its deadlines, keeps a durable timer per deadline, applies (or records the refusal of)
every human action arriving as a signal, waits for the citizen's rating and closes. Every
state change is projected into PostgreSQL by an idempotent activity.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from jiesu import lifecycle
    from jiesu import search_attributes as sa
    from jiesu.domain import (
        SYSTEM_ACTOR,
        AcceptAction,
        Actor,
        Assignment,
        Breach,
        CaseEvent,
        CaseProjection,
        CaseStart,
        CaseState,
        ContactAction,
        DeadlineKind,
        DeadlineRequest,
        Deadlines,
        DispatchAction,
        EventKind,
        RatingAction,
        Reply,
        ReplyAction,
        Resolution,
        Role,
        RouteRequest,
        RouteResult,
        Status,
    )

ActionT = TypeVar("ActionT")

ACTIVITY_TIMEOUT = timedelta(seconds=30)
# Database outages must not lose a case: retry for as long as it takes, backing off to 1 min.
ACTIVITY_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))


@workflow.defn(name="ComplaintWorkflow")
class ComplaintWorkflow:
    @workflow.init
    def __init__(self, start: CaseStart) -> None:
        intake = start.intake
        self._state = CaseState(
            case_id=start.case_id,
            status=Status.REGISTERED,
            title=intake.title,
            category_id=intake.category_id,
            grid_id=intake.grid_id,
            address=intake.address,
            channel=intake.channel,
            urgency=start.urgency,
            received_at=start.received_at,
        )
        self._projected_seq = 0
        self._search_attributes: dict[str, Any] = {}
        self._record(
            EventKind.RECEIVED,
            start.registered_by,
            title=intake.title,
            category_id=intake.category_id,
            grid_id=intake.grid_id,
            channel=intake.channel.value,
            urgency=start.urgency.value,
            received_at=start.received_at.isoformat(),
        )

    # --- the case's life ----------------------------------------------------------------

    @workflow.run
    async def run(self, start: CaseStart) -> CaseState:
        projector = asyncio.create_task(self._project_until_closed())
        route, deadlines = await asyncio.gather(
            self._activity(
                "route_case",
                RouteRequest(category_id=start.intake.category_id, grid_id=start.intake.grid_id),
                RouteResult,
            ),
            self._activity(
                "compute_deadlines",
                DeadlineRequest(received_at=start.received_at, urgency=start.urgency),
                Deadlines,
            ),
        )
        self._set_deadlines(deadlines)
        self._assign(route, SYSTEM_ACTOR)
        watchers = [
            asyncio.create_task(self._watch(kind))
            for kind in DeadlineKind
            if self._deadline(kind) is not None
        ]

        await workflow.wait_condition(lambda: self._state.status is Status.REPLIED)
        await self._await_rating(deadlines.rating_window_hours)
        await asyncio.gather(*watchers)
        await projector
        return self._state.model_copy(update={"events": []})

    async def _await_rating(self, window_hours: float) -> None:
        """评价: wait for the citizen's verdict; no verdict in the window → not rated."""
        assert self._state.reply is not None
        window_end = self._state.reply.at + timedelta(hours=window_hours)
        remaining = window_end - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(
                    lambda: self._state.rating is not None,
                    timeout=remaining,
                    timeout_summary="rating window",
                )
            except TimeoutError:
                pass
        resolution = Resolution.RATED if self._state.rating else Resolution.NOT_RATED
        self._state.status = Status.CLOSED
        self._state.resolution = resolution
        self._state.closed_at = workflow.now()
        self._record(EventKind.CLOSED, SYSTEM_ACTOR, resolution=resolution.value)

    async def _watch(self, kind: DeadlineKind) -> None:
        """A durable timer per deadline; a missed one is recorded as a breach (超时)."""
        while not self._deadline_met(kind):
            deadline = self._deadline(kind)
            assert deadline is not None
            remaining = deadline - workflow.now()
            if remaining > timedelta(0):
                try:
                    await workflow.wait_condition(
                        lambda d=deadline: self._deadline_met(kind) or self._deadline(kind) != d,
                        timeout=remaining,
                        timeout_summary=f"{kind.value} deadline",
                    )
                    continue  # met, or the deadline moved: look again
                except TimeoutError:
                    pass
            if not self._deadline_met(kind) and self._deadline(kind) == deadline:
                self._breach(kind, deadline)
                return

    # --- signals: human actions ---------------------------------------------------------

    @workflow.signal
    def accept(self, action: AcceptAction) -> None:
        """签收."""
        if self._allowed("accept", action, lifecycle.check_accept(self._state, action)):
            self._state.status = Status.HANDLING
            self._state.accepted_at = workflow.now()
            self._record(EventKind.ACCEPTED, action.actor)

    @workflow.signal
    def contact(self, action: ContactAction) -> None:
        """联系诉求人."""
        if self._allowed("contact", action, lifecycle.check_contact(self._state, action)):
            self._state.contacted_at = workflow.now()
            self._record(EventKind.CONTACTED, action.actor, note=action.note)

    @workflow.signal
    def reply(self, action: ReplyAction) -> None:
        """办结答复."""
        if self._allowed("reply", action, lifecycle.check_reply(self._state, action)):
            evidence = [str(url) for url in action.evidence]
            self._state.reply = Reply(
                outcome=action.outcome,
                text=action.text,
                evidence=evidence,
                at=workflow.now(),
                by=action.actor,
            )
            self._state.status = Status.REPLIED
            self._record(
                EventKind.REPLIED,
                action.actor,
                outcome=action.outcome.value,
                text=action.text,
                evidence=evidence,
            )

    @workflow.signal
    def dispatch(self, action: DispatchAction) -> None:
        """人工派单: a dispatcher assigns a case from the centre's queue."""
        if self._allowed("dispatch", action, lifecycle.check_dispatch(self._state, action)):
            route = RouteResult(
                department_id=action.department_id,
                department_name=action.department_name,
                by_rule=False,
            )
            self._assign(route, action.actor, note=action.note)

    @workflow.signal
    def rate(self, action: RatingAction) -> None:
        """评价."""
        if self._allowed("rate", action, lifecycle.check_rating(self._state, action)):
            self._state.rating = action.rating
            self._state.rating_comment = action.comment
            self._record(
                EventKind.RATED, action.actor, rating=action.rating.value, comment=action.comment
            )

    @workflow.query
    def state(self) -> CaseState:
        return self._state

    # --- state changes --------------------------------------------------------------------

    def _allowed(self, name: str, action: Any, refusal: lifecycle.Refusal | None) -> bool:
        """Apply a valid action; record a refused one with its reason, for the auditors."""
        if refusal is None:
            return True
        self._record(
            EventKind.REJECTED,
            action.actor,
            action=name,
            code=refusal.code,
            reason=refusal.reason,
        )
        return False

    def _assign(self, route: RouteResult, actor: Actor, note: str = "") -> None:
        now = workflow.now()
        self._state.assignment = Assignment(
            department_id=route.department_id,
            department_name=route.department_name,
            assigned_at=now,
            by_rule=route.by_rule,
        )
        if actor.role is Role.SYSTEM and not route.by_rule:
            self._state.status = Status.DISPATCHING
            self._record(EventKind.QUEUED, actor, department_id=route.department_id)
            return
        self._state.status = Status.ASSIGNED
        kind = EventKind.ROUTED if route.by_rule else EventKind.DISPATCHED
        self._record(
            kind,
            actor,
            department_id=route.department_id,
            department_name=route.department_name,
            rule_id=route.rule_id,
            note=note,
        )

    def _set_deadlines(self, deadlines: Deadlines) -> None:
        self._state.deadlines = deadlines
        self._record(
            EventKind.DEADLINES_SET,
            SYSTEM_ACTOR,
            **{k: (v.isoformat() if isinstance(v, datetime) else v)
               for k, v in deadlines.model_dump().items()},
        )

    def _deadline(self, kind: DeadlineKind) -> datetime | None:
        d = self._state.deadlines
        return getattr(d, kind.value) if d else None

    def _deadline_met(self, kind: DeadlineKind) -> bool:
        s = self._state
        if s.status is Status.CLOSED:
            return True
        done: dict[DeadlineKind, Callable[[], bool]] = {
            DeadlineKind.ACCEPT: lambda: s.accepted_at is not None,
            DeadlineKind.CONTACT: lambda: s.contacted_at is not None,
            DeadlineKind.FINISH: lambda: s.reply is not None,
        }
        return done[kind]()

    def _breach(self, kind: DeadlineKind, deadline: datetime) -> None:
        self._state.breaches.append(Breach(kind=kind, deadline=deadline, at=workflow.now()))
        self._record(
            EventKind.DEADLINE_BREACHED,
            SYSTEM_ACTOR,
            deadline_kind=kind.value,
            deadline=deadline.isoformat(),
            department_id=self._state.department_id,
        )

    def _record(self, kind: EventKind, actor: Actor, **data: Any) -> None:
        events = self._state.events
        events.append(
            CaseEvent(seq=len(events) + 1, kind=kind, at=workflow.now(), actor=actor, data=data)
        )

    # --- projections ------------------------------------------------------------------------

    def _current_search_attributes(self) -> dict[str, Any]:
        s, d = self._state, self._state.deadlines
        values: dict[str, Any] = {
            sa.CASE_STATUS.name: s.status.value,
            sa.CASE_DEPARTMENT.name: s.department_id,
            sa.CASE_URGENCY.name: s.urgency.value,
            sa.CASE_BREACHES.name: [b.kind.value for b in s.breaches],
        }
        if d:
            values[sa.CASE_ACCEPT_DEADLINE.name] = d.accept
            values[sa.CASE_CONTACT_DEADLINE.name] = d.contact
            values[sa.CASE_FINISH_DEADLINE.name] = d.finish
        return values

    def _upsert_search_attributes(self) -> None:
        keys = {k.name: k for k in sa.ALL}
        updates: list[SearchAttributeUpdate[Any]] = []
        for name, value in self._current_search_attributes().items():
            if self._search_attributes.get(name) != value:
                key = keys[name]
                updates.append(key.value_set(value) if value is not None else key.value_unset())
                self._search_attributes[name] = value
        if updates:
            workflow.upsert_search_attributes(updates)

    async def _project_until_closed(self) -> None:
        """Project new events in batches: one activity per burst of changes, not per event."""
        while True:
            await workflow.wait_condition(lambda: self._projected_seq < len(self._state.events))
            self._upsert_search_attributes()
            new = self._state.events[self._projected_seq :]
            version = new[-1].seq
            await self._activity(
                "project_case",
                CaseProjection(
                    state=self._state.model_copy(update={"events": []}),
                    new_events=new,
                    version=version,
                ),
                None,
            )
            self._projected_seq = version
            closed = self._state.status is Status.CLOSED
            if closed and self._projected_seq == len(self._state.events):
                return

    async def _activity(self, name: str, arg: Any, result_type: type[ActionT] | None) -> Any:
        return await workflow.execute_activity(
            name,
            arg,
            result_type=result_type,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
        )
