"""ComplaintWorkflow: one durable workflow per case (工单), workflow id = case number.

The case's Temporal history is its authoritative event log. The workflow routes the case,
sets its deadlines, keeps a durable timer per deadline, applies (or records the refusal of)
every human action arriving as a signal, waits for the citizen's rating and closes. Returns,
rehandling and raising a level go through the reassignment child; breaches, repeat reports,
repeated dissatisfaction and supervisors start the escalation child (the supervision ladder).
Every state change is projected into PostgreSQL by an idempotent activity.

Changing this file: cases already running replay their histories against the new code, so a
change in the commands a path issues must be guarded with ``workflow.patched`` (see the
patch ids below) and recorded under tests/histories/.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, SearchAttributeUpdate
from temporalio.exceptions import ActivityError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from jiesu import lifecycle
    from jiesu import search_attributes as sa
    from jiesu.domain import (
        CENTRE_ID,
        CENTRE_NAME,
        SYSTEM_ACTOR,
        UNKNOWN_SENDER,
        AcceptAction,
        Actor,
        Assignment,
        Breach,
        CallbackAction,
        CaseEvent,
        CaseProjection,
        CaseSignal,
        CaseStart,
        CaseState,
        CoHandler,
        CoHandlersAction,
        ContactAction,
        ContributionAction,
        DeadlineKind,
        DeadlineRequest,
        Deadlines,
        DispatchAction,
        Escalation,
        EscalationOutcome,
        EscalationRequest,
        EscalationStep,
        EscalationTrigger,
        EventKind,
        Extension,
        ExtensionAction,
        ExtensionDecisionAction,
        PendingReassignment,
        RaiseLevelAction,
        Rating,
        RatingAction,
        ReassignmentRequest,
        ReassignmentResult,
        ReassignReason,
        RepeatReport,
        Reply,
        ReplyAction,
        Resolution,
        ReturnAction,
        Role,
        RouteRequest,
        RouteResult,
        Status,
        SupervisionAction,
        SupplementAction,
        WaiveAction,
        WithdrawAction,
    )
    from workflows import messages
    from workflows.activity_options import run_activity
    from workflows.escalation import EscalationWorkflow
    from workflows.reassignment import ReassignmentWorkflow

# workflow.patched ids: each guards a change in the commands that older cases did not issue.
PATCH_ESCALATION = "escalation-ladder-v1"  # breaches start the supervision ladder
PATCH_REHANDLE = "rehandle-v1"  # an unsatisfied rating sends the case back (重办)
PATCH_FRESH_ROUND = "fresh-round-after-queue-v1"  # dispatch after the bound sets new deadlines
# Hardened message handling (issue 9): undecodable messages are recorded as rejections, and the
# projector settles before it issues commands, so that the commands of a workflow task do not
# depend on how Temporal batched its events into activations (see _settle).
PATCH_HARDENED = "hardened-messages-v1"

# The third report of the same open problem (the original plus two repeats) → supervision.
REPEATS_BEFORE_SUPERVISION = 2

_BREACH_TRIGGERS = {
    DeadlineKind.ACCEPT: EscalationTrigger.ACCEPT_BREACHED,
    DeadlineKind.CONTACT: EscalationTrigger.CONTACT_BREACHED,
    DeadlineKind.FINISH: EscalationTrigger.FINISH_BREACHED,
}


@workflow.defn(name="ComplaintWorkflow")
class ComplaintWorkflow:
    # The signal names, for clients: ``handle.signal(ComplaintWorkflow.accept, action)``.
    accept = CaseSignal.ACCEPT
    contact = CaseSignal.CONTACT
    reply = CaseSignal.REPLY
    dispatch = CaseSignal.DISPATCH
    rate = CaseSignal.RATE
    callback = CaseSignal.CALLBACK
    return_case = CaseSignal.RETURN
    raise_level = CaseSignal.RAISE_LEVEL
    request_extension = CaseSignal.REQUEST_EXTENSION
    decide_extension = CaseSignal.DECIDE_EXTENSION
    add_co_handlers = CaseSignal.ADD_CO_HANDLERS
    contribute = CaseSignal.CONTRIBUTE
    waive_co_handler = CaseSignal.WAIVE_CO_HANDLER
    supervise = CaseSignal.SUPERVISE
    repeat_report = CaseSignal.REPEAT_REPORT
    supplement = CaseSignal.SUPPLEMENT
    withdraw = CaseSignal.WITHDRAW
    escalation_step = CaseSignal.ESCALATION_STEP

    @workflow.init
    def __init__(self, start: CaseStart) -> None:
        intake = start.intake
        self._start = start
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
        self._watchers: list[asyncio.Task[None]] = []
        self._reassign_next: tuple[ReassignReason, Actor] | None = None
        self._ladder: asyncio.Task[None] | None = None
        self._ladder_stop = False
        self._repeat_ids: set[str] = set()
        self._queued_after_bound = False
        self._dispatched: ReassignmentResult | None = None
        self._request_ids: set[str] = set()  # actions already applied or refused (idempotency)
        self._projection_failing = False
        # Decided once, in the first workflow task: cases started before the patch keep the
        # old behaviour for their whole life, so their histories replay.
        self._hardened = workflow.patched(PATCH_HARDENED)
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
            self._route(start),
            run_activity(
                "compute_deadlines",
                DeadlineRequest(received_at=start.received_at, urgency=start.urgency),
                Deadlines,
            ),
        )
        self._set_deadlines(deadlines)
        self._assign(route, SYSTEM_ACTOR)
        self._start_watchers()

        while self._state.status is not Status.CLOSED:
            await workflow.wait_condition(
                lambda: (
                    self._state.status in (Status.REPLIED, Status.CLOSED)
                    or self._reassign_next is not None
                    or self._dispatched is not None
                )
            )
            if self._reassign_next is not None:
                await self._reassign(*self._reassign_next)
            elif self._dispatched is not None:
                dispatched, self._dispatched = self._dispatched, None
                await self._new_round(dispatched)
            elif self._state.status is Status.REPLIED:
                await self._rating_round()

        await self._end_ladder()
        await asyncio.gather(*self._watchers)
        await projector
        return self._state.model_copy(update={"events": []})

    async def _route(self, start: CaseStart) -> RouteResult:
        """派单 by the routing rules; a case whose data routing refuses goes to the centre."""
        request = RouteRequest(category_id=start.intake.category_id, grid_id=start.intake.grid_id)
        try:
            return await run_activity("route_case", request, RouteResult)
        except ActivityError as err:
            self._record(EventKind.ROUTING_FAILED, SYSTEM_ACTOR, reason=_failure_text(err))
            return RouteResult(department_id=CENTRE_ID, department_name=CENTRE_NAME, by_rule=False)

    async def _rating_round(self) -> None:
        """评价: wait for the verdict; unsatisfied → rehandle (重办) or, at last, close."""
        assert self._state.reply is not None and self._state.deadlines is not None
        window_end = self._state.reply.at + timedelta(
            hours=self._state.deadlines.rating_window_hours
        )
        remaining = window_end - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(
                    lambda: (
                        self._state.rating is not None or self._state.status is not Status.REPLIED
                    ),
                    timeout=remaining,
                    timeout_summary="rating window",
                )
            except TimeoutError:
                pass
        if self._state.status is not Status.REPLIED:
            return
        if self._state.rating is Rating.UNSATISFIED and self._rehandle_allowed():
            self._rehandle()
            return
        resolution = Resolution.RATED if self._state.rating else Resolution.NOT_RATED
        self._close(resolution)

    def _rehandle_allowed(self) -> bool:
        assert self._state.deadlines is not None
        limit = self._state.deadlines.max_unsatisfied_rounds
        return self._state.unsatisfied_rounds < limit and workflow.patched(PATCH_REHANDLE)

    def _rehandle(self) -> None:
        """重办: back through the reassignment child, with new deadlines and a new rating."""
        assert self._state.deadlines is not None
        self._state.unsatisfied_rounds += 1
        rounds = self._state.unsatisfied_rounds
        self._record(
            EventKind.REHANDLE_STARTED,
            SYSTEM_ACTOR,
            unsatisfied_rounds=rounds,
            reason=self._state.rating_comment,
        )
        if rounds >= self._state.deadlines.max_unsatisfied_rounds:
            self._escalate(EscalationTrigger.DISSATISFACTION)
        self._reassign_next = (ReassignReason.REHANDLE, SYSTEM_ACTOR)

    def _close(self, resolution: Resolution, actor: Actor = SYSTEM_ACTOR) -> None:
        self._state.status = Status.CLOSED
        self._state.resolution = resolution
        self._state.closed_at = workflow.now()
        self._record(EventKind.CLOSED, actor, resolution=resolution.value)

    # --- deadlines ----------------------------------------------------------------------

    def _start_watchers(self) -> None:
        round_ = self._state.round
        self._watchers.extend(
            asyncio.create_task(self._watch(kind, round_))
            for kind in DeadlineKind
            if self._deadline(kind) is not None
        )

    async def _watch(self, kind: DeadlineKind, round_: int) -> None:
        """A durable timer per deadline; a missed one is recorded as a breach (超时)."""
        while not self._deadline_met(kind, round_):
            deadline = self._deadline(kind)
            assert deadline is not None
            remaining = deadline - workflow.now()
            if remaining > timedelta(0):
                try:
                    await workflow.wait_condition(
                        lambda d=deadline: (
                            self._deadline_met(kind, round_) or self._deadline(kind) != d
                        ),
                        timeout=remaining,
                        timeout_summary=f"{kind.value} deadline",
                    )
                    continue  # met, or the deadline moved (extension): look again
                except TimeoutError:
                    pass
            if not self._deadline_met(kind, round_) and self._deadline(kind) == deadline:
                self._breach(kind, deadline)
                return

    def _deadline(self, kind: DeadlineKind) -> datetime | None:
        d = self._state.deadlines
        return getattr(d, kind.value) if d else None

    def _deadline_met(self, kind: DeadlineKind, round_: int) -> bool:
        s = self._state
        if s.status is Status.CLOSED or s.round != round_:
            return True  # closed, or a reassignment started a new round with new timers
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
        if workflow.patched(PATCH_ESCALATION):
            self._escalate(_BREACH_TRIGGERS[kind])

    # --- reassignment (退单 / 重办 / 提级办) ---------------------------------------------

    async def _reassign(self, reason: ReassignReason, actor: Actor) -> None:
        self._reassign_next = None
        s = self._state
        assert s.deadlines is not None
        if reason is ReassignReason.RETURN and s.reassignments >= s.deadlines.max_reassignments:
            self._to_centre_queue(actor)
            self._escalate(EscalationTrigger.REASSIGNMENT_LIMIT)
            return
        s.reassignments += 1
        n = s.reassignments
        child_id = f"{s.case_id}-reassign-{n}"
        s.status = Status.REASSIGNING
        s.reassignment = PendingReassignment(
            n=n, reason=reason, child_id=child_id, started_at=workflow.now()
        )
        self._record(
            EventKind.REASSIGNMENT_STARTED, actor, n=n, reason=reason.value, child_id=child_id
        )
        result: ReassignmentResult = await workflow.execute_child_workflow(
            ReassignmentWorkflow.run,
            ReassignmentRequest(
                case_id=s.case_id,
                n=n,
                reason=reason,
                category_id=s.category_id,
                grid_id=s.grid_id,
                from_department_id=s.department_id,
                exclude_department_ids=list(s.returned_by),
                dispatcher_window_minutes=s.deadlines.dispatcher_window_minutes,
            ),
            id=child_id,
        )
        s.reassignment = None
        if s.status is Status.CLOSED:  # withdrawn while the child was choosing
            return
        await self._new_round(result)

    async def _new_round(self, result: ReassignmentResult) -> None:
        """改派 / 二次交办: a new department (or the same), fresh deadlines, a new rating."""
        s = self._state
        deadlines = await run_activity(
            "compute_deadlines",
            DeadlineRequest(received_at=workflow.now(), urgency=s.urgency),
            Deadlines,
        )
        s.round += 1
        s.accepted_at = s.contacted_at = None
        s.reply = None
        s.rating = None
        s.rating_comment = ""
        s.extension = None
        self._set_deadlines(deadlines)
        actor = result.chosen_by or SYSTEM_ACTOR
        self._record(
            EventKind.REASSIGNED,
            actor,
            department_id=result.route.department_id,
            department_name=result.route.department_name,
            round=s.round,
            by_rule=result.route.by_rule,
            note=result.note,
        )
        self._assign(result.route, actor, quiet=True)
        self._start_watchers()

    def _to_centre_queue(self, actor: Actor) -> None:
        """Past the reassignment bound: the centre dispatches by hand, under supervision."""
        s = self._state
        assert s.assignment is not None
        s.status = Status.DISPATCHING
        s.round += 1  # the department's timers stop; the case waits for a dispatcher
        s.accepted_at = s.contacted_at = None
        self._record(
            EventKind.QUEUED, actor, department_id=CENTRE_ID, reason="reassignment limit reached"
        )
        s.assignment = Assignment(
            department_id=CENTRE_ID,
            department_name=CENTRE_NAME,
            assigned_at=workflow.now(),
            by_rule=False,
        )
        self._queued_after_bound = True

    # --- supervision ladder (督办) ---------------------------------------------------------

    def _escalate(self, trigger: EscalationTrigger, actor: Actor = SYSTEM_ACTOR) -> None:
        """Start the ladder, unless one is already climbing for this case."""
        current = self._state.escalation
        if current is not None and current.active:
            return
        n = current.n + 1 if current else 1
        child_id = f"{self._state.case_id}-escalation-{n}"
        self._state.escalation = Escalation(
            n=n, trigger=trigger, child_id=child_id, started_at=workflow.now()
        )
        self._record(
            EventKind.ESCALATION_STARTED, actor, n=n, trigger=trigger.value, child_id=child_id
        )
        self._ladder_stop = False
        self._ladder = asyncio.create_task(self._climb(n, trigger, child_id))

    async def _climb(self, n: int, trigger: EscalationTrigger, child_id: str) -> None:
        s = self._state
        assert s.deadlines is not None
        start_seq = len(s.events)
        round_ = s.round
        handle = await workflow.start_child_workflow(
            EscalationWorkflow.run,
            EscalationRequest(
                case_id=s.case_id,
                n=n,
                trigger=trigger,
                department_id=s.department_id,
                step_hours=s.deadlines.escalation_step_hours,
            ),
            id=child_id,
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
        )
        done = asyncio.create_task(self._ladder_result(handle))
        await workflow.wait_condition(
            lambda: (
                done.done()
                or self._ladder_stop
                or self._department_acted(trigger, round_, start_seq)
            )
        )
        if not done.done():
            await handle.signal(EscalationWorkflow.stop)
        outcome = await done
        assert s.escalation is not None
        s.escalation.active = False
        self._record(
            EventKind.ESCALATION_STOPPED,
            SYSTEM_ACTOR,
            n=n,
            final_level=int(outcome.final_level),
            stopped=outcome.stopped,
        )

    @staticmethod
    async def _ladder_result(handle: Any) -> EscalationOutcome:
        return await handle

    def _department_acted(self, trigger: EscalationTrigger, round_: int, start_seq: int) -> bool:
        """The ladder stops when the department does what it was late with, or acts at all."""
        s = self._state
        if s.status is Status.CLOSED:
            return True
        if trigger in _BREACH_TRIGGERS.values():
            kind = next(k for k, t in _BREACH_TRIGGERS.items() if t is trigger)
            return self._deadline_met(kind, round_)
        return any(
            (e.actor.role is Role.DEPARTMENT and e.kind is not EventKind.REJECTED)
            or e.kind in (EventKind.DISPATCHED, EventKind.REASSIGNED)
            for e in s.events[start_seq:]
        )

    async def _end_ladder(self) -> None:
        if self._ladder is not None:
            self._ladder_stop = True
            await self._ladder

    # --- messages: every signal, from any client, lands here ------------------------------

    @workflow.signal(dynamic=True)
    def _message(self, name: str, args: Sequence[RawValue]) -> None:
        """Decode, de-duplicate and apply a message; record one that does not fit.

        One dynamic handler instead of a typed handler per signal: a typed handler wedges the
        case on a wrong number of payloads and drops an undecodable one without a trace."""
        handler = _HANDLERS.get(name)
        if handler is None:
            return self._misfit(messages.unknown(name, args), name)
        model, apply = handler
        payload = messages.decode(name, args, model)
        if isinstance(payload, messages.Misfit):
            return self._misfit(payload, name)
        actor = getattr(payload, "actor", None)
        request_id = actor.request_id if isinstance(actor, Actor) else None
        if request_id is not None and request_id in self._request_ids:
            return None  # a client's retry of an action already applied or refused
        apply(self, payload)
        if request_id is not None:
            self._request_ids.add(request_id)
        return None

    def _misfit(self, misfit: messages.Misfit, name: str | None = None) -> None:
        if not self._hardened:
            workflow.logger.warning("dropped message %s: %s", name, misfit.reason)
            return  # cases started before the patch dropped these without a trace
        self._record(
            EventKind.REJECTED,
            UNKNOWN_SENDER,
            action=messages.printable(name, 64) if name else None,
            code=misfit.code,
            reason=misfit.reason,
            payload=misfit.excerpt,
        )

    def _on_escalation_step(self, step: EscalationStep) -> None:
        """From the escalation child: the ladder reached a step (提醒/催办/督办/会办/问责)."""
        self._state.escalation_level = step.level
        self._record(
            EventKind.ESCALATED,
            SYSTEM_ACTOR,
            n=step.n,
            level=int(step.level),
            level_name=step.level.name.lower(),
            department_id=self._state.department_id,
            trigger=self._state.escalation.trigger.value if self._state.escalation else None,
        )

    # --- signals: human actions ---------------------------------------------------------

    def _on_accept(self, action: AcceptAction) -> None:
        """签收."""
        if self._allowed("accept", action, lifecycle.check_accept(self._state, action)):
            self._state.status = Status.HANDLING
            self._state.accepted_at = workflow.now()
            self._record(EventKind.ACCEPTED, action.actor)

    def _on_contact(self, action: ContactAction) -> None:
        """联系诉求人."""
        if self._allowed("contact", action, lifecycle.check_contact(self._state, action)):
            self._state.contacted_at = workflow.now()
            self._record(EventKind.CONTACTED, action.actor, note=action.note)

    def _on_reply(self, action: ReplyAction) -> None:
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

    def _on_dispatch(self, action: DispatchAction) -> None:
        """人工派单: a dispatcher assigns a case from the centre's queue."""
        if self._allowed("dispatch", action, lifecycle.check_dispatch(self._state, action)):
            route = RouteResult(
                department_id=action.department_id,
                department_name=action.department_name,
                by_rule=False,
            )
            if self._queued_after_bound and workflow.patched(PATCH_FRESH_ROUND):
                # out of the queue after the bound: a new round with fresh deadlines
                self._queued_after_bound = False
                self._dispatched = ReassignmentResult(
                    route=route, chosen_by=action.actor, note=action.note
                )
                return
            if self._queued_after_bound:  # cases queued before PATCH_FRESH_ROUND
                self._queued_after_bound = False
                self._state.round += 1
                self._assign(route, action.actor, note=action.note)
                self._start_watchers()
                return
            self._assign(route, action.actor, note=action.note)

    def _on_rate(self, action: RatingAction) -> None:
        """评价."""
        if self._allowed("rate", action, lifecycle.check_rating(self._state, action)):
            self._rated(action.actor, action.rating, action.comment, EventKind.RATED)

    def _on_callback(self, action: CallbackAction) -> None:
        """回访: the centre records the verdict of a citizen who did not rate online."""
        if self._allowed("callback", action, lifecycle.check_callback(self._state, action)):
            self._rated(action.actor, action.rating, action.note, EventKind.CALLBACK)

    def _rated(self, actor: Actor, rating: Rating, comment: str, kind: EventKind) -> None:
        self._state.rating = rating
        self._state.rating_comment = comment
        self._record(kind, actor, rating=rating.value, comment=comment)

    def _on_return(self, action: ReturnAction) -> None:
        """退单: "not ours" — the reassignment child picks the next department."""
        refusal = lifecycle.check_return(self._state, action, workflow.now())
        if self._allowed("return", action, refusal):
            assert action.actor.department_id or self._state.department_id
            self._state.returned_by.append(self._state.department_id or "")
            self._record(
                EventKind.RETURNED,
                action.actor,
                reason=action.reason,
                department_id=self._state.department_id,
            )
            self._reassign_next = (ReassignReason.RETURN, action.actor)

    def _on_raise_level(self, action: RaiseLevelAction) -> None:
        """提级办: beyond this department's authority → the level above."""
        if self._allowed("raise_level", action, lifecycle.check_raise_level(self._state, action)):
            self._record(
                EventKind.LEVEL_RAISE_REQUESTED,
                action.actor,
                reason=action.reason,
                department_id=self._state.department_id,
            )
            self._reassign_next = (ReassignReason.RAISE_LEVEL, action.actor)

    def _on_request_extension(self, action: ExtensionAction) -> None:
        """延期申请."""
        refusal = lifecycle.check_extension(self._state, action, workflow.now())
        if self._allowed("request_extension", action, refusal):
            self._state.extension = Extension(
                reasons=action.reasons,
                measures=action.measures,
                promised_finish=action.promised_finish,
                requested_at=workflow.now(),
                requested_by=action.actor,
            )
            self._record(
                EventKind.EXTENSION_REQUESTED,
                action.actor,
                reasons=action.reasons,
                measures=action.measures,
                promised_finish=action.promised_finish.isoformat(),
            )

    def _on_decide_extension(self, action: ExtensionDecisionAction) -> None:
        """延期审批: approval moves the finish deadline; the running timer follows it."""
        refusal = lifecycle.check_extension_decision(self._state, action)
        if not self._allowed("decide_extension", action, refusal):
            return
        s = self._state
        assert s.extension is not None and s.deadlines is not None
        s.extension.approved = action.approved
        new_deadline = None
        if action.approved:
            s.extension_count += 1
            s.deadlines = s.deadlines.model_copy(update={"finish": s.extension.promised_finish})
            new_deadline = s.deadlines.finish.isoformat()
        self._record(
            EventKind.EXTENSION_DECIDED,
            action.actor,
            approved=action.approved,
            new_deadline=new_deadline,
            note=action.note,
        )

    def _on_add_co_handlers(self, action: CoHandlersAction) -> None:
        """会办: 协办 departments join the lead (主办)."""
        if self._allowed(
            "add_co_handlers", action, lifecycle.check_co_handlers(self._state, action)
        ):
            self._state.co_handlers.extend(
                CoHandler(department_id=d.id, department_name=d.name) for d in action.departments
            )
            self._record(
                EventKind.CO_HANDLERS_ADDED,
                action.actor,
                department_ids=[d.id for d in action.departments],
                note=action.note,
            )

    def _on_contribute(self, action: ContributionAction) -> None:
        """A co-handler's contribution (协办意见)."""
        if self._allowed("contribute", action, lifecycle.check_contribution(self._state, action)):
            co = next(
                c for c in self._state.co_handlers if c.department_id == action.actor.department_id
            )
            co.contributed_at = workflow.now()
            co.contribution = action.text
            self._record(EventKind.CONTRIBUTED, action.actor, text=action.text)

    def _on_waive_co_handler(self, action: WaiveAction) -> None:
        if self._allowed("waive_co_handler", action, lifecycle.check_waive(self._state, action)):
            co = next(c for c in self._state.co_handlers if c.department_id == action.department_id)
            co.waived = True
            self._record(
                EventKind.CO_HANDLER_WAIVED, action.actor, department_id=action.department_id
            )

    def _on_supervise(self, action: SupervisionAction) -> None:
        """A supervisor puts the case on the ladder (督办)."""
        if self._allowed("supervise", action, lifecycle.check_supervision(self._state, action)):
            self._escalate(EscalationTrigger.SUPERVISOR, action.actor)

    def _on_repeat_report(self, report: RepeatReport) -> None:
        """并单: another report of this open problem; the third one means supervision."""
        if report.report_id in self._repeat_ids or self._state.status is Status.CLOSED:
            return
        self._repeat_ids.add(report.report_id)
        self._state.repeat_count += 1
        self._record(
            EventKind.REPEAT_REPORTED,
            report.actor,
            report_id=report.report_id,
            channel=report.channel.value,
            description=report.description,
            repeat_count=self._state.repeat_count,
        )
        if self._state.repeat_count >= REPEATS_BEFORE_SUPERVISION:
            self._escalate(EscalationTrigger.REPEAT_REPORTS)

    def _on_supplement(self, action: SupplementAction) -> None:
        """补充诉求."""
        if self._allowed("supplement", action, lifecycle.check_supplement(self._state, action)):
            self._record(EventKind.SUPPLEMENTED, action.actor, text=action.text)

    def _on_withdraw(self, action: WithdrawAction) -> None:
        """撤诉: the citizen withdraws before the reply; the case closes."""
        if self._allowed("withdraw", action, lifecycle.check_withdraw(self._state, action)):
            self._record(EventKind.WITHDRAWN, action.actor, reason=action.reason)
            self._close(Resolution.WITHDRAWN, action.actor)

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

    def _assign(
        self, route: RouteResult, actor: Actor, note: str = "", quiet: bool = False
    ) -> None:
        self._state.assignment = Assignment(
            department_id=route.department_id,
            department_name=route.department_name,
            assigned_at=workflow.now(),
            by_rule=route.by_rule,
        )
        if route.department_id == CENTRE_ID and not route.by_rule and actor.role is Role.SYSTEM:
            self._state.status = Status.DISPATCHING
            self._record(EventKind.QUEUED, actor, department_id=route.department_id)
            return
        self._state.status = Status.ASSIGNED
        if quiet:
            return  # the caller recorded the assignment in its own words
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
            **{
                k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in deadlines.model_dump().items()
            },
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
        if s.escalation_level:
            values[sa.CASE_ESCALATION_LEVEL.name] = int(s.escalation_level)
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

    async def _project(self, new: list[CaseEvent], version: int) -> None:
        """One projection; a read model that refuses the case's data (a non-retryable
        failure) is recorded once and the case goes on — `jiesu doctor` lists the lag."""
        projection = CaseProjection(
            state=self._state.model_copy(update={"events": []}), new_events=new, version=version
        )
        try:
            await run_activity("project_case", projection, None)
            self._projection_failing = False
        except ActivityError as err:
            if not self._projection_failing:
                self._projection_failing = True
                self._record(
                    EventKind.PROJECTION_FAILED,
                    SYSTEM_ACTOR,
                    version=version,
                    reason=_failure_text(err),
                )

    async def _project_until_closed(self) -> None:
        """Project new events in batches: one activity per burst of changes, not per event."""
        while True:
            await workflow.wait_condition(lambda: self._projected_seq < len(self._state.events))
            if self._hardened:
                await _settle()
            self._upsert_search_attributes()
            new = self._state.events[self._projected_seq :]
            version = new[-1].seq
            await self._project(new, version)
            self._projected_seq = version
            closed = self._state.status is Status.CLOSED
            if closed and self._projected_seq == len(self._state.events):
                return


async def _settle() -> None:
    """Wait until every other coroutine woken by the same change has issued its commands.

    Temporal may deliver an activity result and a signal in one activation or in two (a
    worker whose cached case ran ahead of a restarted server does the latter). In one
    activation the SDK applies signals first, so the deadline watchers, the ladder and the run
    loop react before the projector has its activity result back; in two, they all wake
    together. The projector must therefore come last in both, or the same history yields
    commands in another order on replay (TMPRL1100). The SDK checks conditions only when
    nothing else is ready, so an always-true condition resumes us after the others; twice,
    for a coroutine that needed a second pass."""
    for _ in range(2):
        await workflow.wait_condition(lambda: True)


def _failure_text(err: BaseException) -> str:
    cause = err.cause if isinstance(err, ActivityError) and err.cause else err
    return messages.printable(str(cause) or type(cause).__name__, 500)


# Each signal: the payload model it must decode to, and the handler that applies it.
_HANDLERS: dict[str, tuple[type, Callable[[ComplaintWorkflow, Any], None]]] = {
    CaseSignal.ACCEPT: (AcceptAction, ComplaintWorkflow._on_accept),
    CaseSignal.CONTACT: (ContactAction, ComplaintWorkflow._on_contact),
    CaseSignal.REPLY: (ReplyAction, ComplaintWorkflow._on_reply),
    CaseSignal.DISPATCH: (DispatchAction, ComplaintWorkflow._on_dispatch),
    CaseSignal.RATE: (RatingAction, ComplaintWorkflow._on_rate),
    CaseSignal.CALLBACK: (CallbackAction, ComplaintWorkflow._on_callback),
    CaseSignal.RETURN: (ReturnAction, ComplaintWorkflow._on_return),
    CaseSignal.RAISE_LEVEL: (RaiseLevelAction, ComplaintWorkflow._on_raise_level),
    CaseSignal.REQUEST_EXTENSION: (ExtensionAction, ComplaintWorkflow._on_request_extension),
    CaseSignal.DECIDE_EXTENSION: (
        ExtensionDecisionAction,
        ComplaintWorkflow._on_decide_extension,
    ),
    CaseSignal.ADD_CO_HANDLERS: (CoHandlersAction, ComplaintWorkflow._on_add_co_handlers),
    CaseSignal.CONTRIBUTE: (ContributionAction, ComplaintWorkflow._on_contribute),
    CaseSignal.WAIVE_CO_HANDLER: (WaiveAction, ComplaintWorkflow._on_waive_co_handler),
    CaseSignal.SUPERVISE: (SupervisionAction, ComplaintWorkflow._on_supervise),
    CaseSignal.REPEAT_REPORT: (RepeatReport, ComplaintWorkflow._on_repeat_report),
    CaseSignal.SUPPLEMENT: (SupplementAction, ComplaintWorkflow._on_supplement),
    CaseSignal.WITHDRAW: (WithdrawAction, ComplaintWorkflow._on_withdraw),
    CaseSignal.ESCALATION_STEP: (EscalationStep, ComplaintWorkflow._on_escalation_step),
}
