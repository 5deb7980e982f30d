"""The supervision ladder (督办阶梯) as the case drives it: start the escalation child, watch
for the department doing what it was supervised for, stop the child, record the outcome.

A supervisor's order (督办单) starts the ladder at the step of its form, with an opinion and a
deadline for the unit (the case convenes 会办's co-handlers); 问责 carries the accountability
record (unit, persons, reason, decision) that the ladder's accountability step records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ApplicationError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from jiesu.case.domain import (
        SYSTEM_ACTOR,
        Actor,
        DeadlineKind,
        Deadlines,
        Escalation,
        EscalationLevel,
        EscalationOutcome,
        EscalationRequest,
        EscalationStep,
        EscalationTrigger,
        EventKind,
        LadderOrder,
        Role,
        Status,
        SupervisionAction,
        SupervisionForm,
    )
    from jiesu.case.lifecycle import (
        LADDER_ORDERS_SIGNED,
        LADDER_OUTCOME_JUDGED,
        LADDER_SIGNED_FROM_ITS_START,
        LADDER_STEPS_SIGNED,
        NO_LADDER_AFTER_CLOSE,
        REHANDLE_LADDER_HELD_IN_QUEUE,
        deadline_met,
    )
    from workflows.case_record import CaseRecord
    from workflows.escalation import EscalationWorkflow

BREACH_TRIGGERS = {
    DeadlineKind.ACCEPT: EscalationTrigger.ACCEPT_BREACHED,
    DeadlineKind.CONTACT: EscalationTrigger.CONTACT_BREACHED,
    DeadlineKind.FINISH: EscalationTrigger.FINISH_BREACHED,
}
_BREACHED_KIND = {trigger: kind for kind, trigger in BREACH_TRIGGERS.items()}

# Since this patch the ladder stops when the unit does what it was supervised for (its reply,
# unless a deadline breach started it), not on any action of the department.
PATCH_PURPOSE = "ladder-stops-on-purpose-v1"
# Since this one a ladder started by dissatisfaction supervises the rehandling round (重办) until
# its reply; before, it stopped when that round was assigned.
PATCH_REHANDLE_WATCH = "ladder-watches-rehandling-v1"
# Since this one the case records the ladder's first step itself, in the workflow task that
# starts the ladder, instead of waiting for the child to signal it back: a deadline breach
# costs two workflow tasks and a projection fewer (the child's signal, and the case's task
# that handled it) — the path every case takes in a storm of deadlines (docs/performance.md).
PATCH_FIRST_STEP = "ladder-first-step-in-case-v1"
# Since this one (epoch lean-case-v5) a ladder whose child has ended by the time the case stops
# it — its last step (问责) done, its stop signal refused "ExternalWorkflowExecutionNotFound" —
# or ended otherwise (terminated, failed) is recorded stopped at the level it reached. Before,
# the failure ended the ladder's task: the case kept a ladder ``active`` for ever (no ladder of
# its own breaches, every order refused already_supervised) and its workflow failed at the
# close, which re-raised it (tests/test_ladder_child_ended.py).
PATCH_CHILD_ENDED = "ladder-child-ended-v1"
# Since this one (epoch lean-case-v9) a ladder started while the case waits in the centre's
# dispatch queue (待派单) climbs to 督办 at most and holds there until the case is dispatched
# (its duty done) or closes: the unit it presses is the centre's own dispatch desk, and the
# centre does not convene a 会办 around itself or refer itself for 问责. Before, the ladder
# climbed a step every interval the queue waited and recorded 会办, then 问责 with an
# accountability referral, against the centre (tests/test_queue_deadlines.py).
PATCH_QUEUED_CEILING = "queued-ladder-ceiling-v1"
# Since this one (epoch lean-case-v10) a ladder already climbing when the case enters the
# centre's dispatch queue — one of dissatisfaction, which supervises the rehandling round (重办)
# until its reply, when that round ends in the queue; one a 督办 order or repeat reports started
# before the case's planning routed it there — holds at 督办 (or the step it reached) while the
# case waits there: the case signals the child ``hold``, and ``release`` once a unit has the case
# again, when the ladder climbs on against that unit. Before, only a ladder started in the queue
# had a ceiling: these climbed every interval to 会办 and 问责 against the centre itself
# (tests/test_queue_ladder_hold.py).
PATCH_QUEUE_HOLDS = "queue-holds-ladder-v1"
# Since this one (epoch lean-case-v10) a ladder whose child cannot start because another client
# started a workflow under its id (``<case>-escalation-<n>``, before the case did) is recorded
# stopped where it stood (``escalation_stopped``, reason child_id_taken). Before, the start's
# failure ended the ladder's task unseen: the case kept the ladder active (every order refused
# already_supervised, no ladder of its own breaches) and its workflow failed at the close,
# which re-raised it (tests/test_queue_ladder_hold.py).
PATCH_CHILD_ID_TAKEN = "ladder-child-id-taken-v1"


class Ladder:
    def __init__(
        self, case: CaseRecord, on_step: Callable[[EscalationStep], None] | None = None
    ) -> None:
        """``on_step``: the case's handler of a ladder step (the child's ``escalation_step``)."""
        self._case = case
        self._on_step = on_step
        self._task: asyncio.Task[None] | None = None
        self._stop = False
        self._watch_rehandling = False
        self._stop_sent = False  # the case itself told the child to stop
        self._token: str | None = None  # the current ladder's word (lean-case-v30)
        self._signs_steps = False  # the current ladder signs its steps with it (lean-case-v31)
        self._owed: Callable[[], bool] | None = None  # while a server's answer is awaited
        self._duty: Callable[[], bool] | None = None  # has the climbing ladder done its duty?

    def decide_patches(self, trigger: EscalationTrigger) -> None:
        """Ask now for the patches ``escalate`` and ``_climb`` will ask for a ladder started by
        ``trigger`` with no order (its first step: remind), in the same order."""
        if self._case.patched(PATCH_PURPOSE) and trigger is EscalationTrigger.DISSATISFACTION:
            self._case.patched(PATCH_REHANDLE_WATCH)
        if self._on_step is not None:
            self._case.patched(PATCH_FIRST_STEP)

    def escalate(
        self,
        trigger: EscalationTrigger,
        actor: Actor = SYSTEM_ACTOR,
        order: SupervisionAction | None = None,
        held_in_queue: bool = False,
    ) -> None:
        """Start the ladder, unless one is already climbing for this case. ``held_in_queue``:
        started while the case waits in the centre's queue, it is held at 督办 there (``hold``)
        and climbs again once a unit has the case — as a ladder that was climbing when the
        case entered the queue — instead of taking the queue's ceiling for good (the
        dissatisfaction ladder of the last 重办, started after another ladder stopped:
        REHANDLE_LADDER_HELD_IN_QUEUE)."""
        state = self._case.state
        current = state.escalation
        if current is not None and current.active:
            return
        n = current.n + 1 if current else 1
        child_id = f"{state.case_id}-escalation-{n}"
        state.escalation = Escalation(
            n=n, trigger=trigger, child_id=child_id, started_at=self._case.clock()
        )
        if order is None:
            self._case.record(
                EventKind.ESCALATION_STARTED, actor, n=n, trigger=trigger.value, child_id=child_id
            )
        else:
            self._ordered(state.escalation, order)
        self._stop = False
        self._duty = None  # the new ladder's, once its task runs (_climb)
        self._sign_from_the_start(state.escalation)
        uncapped = held_in_queue and self._case.patched(REHANDLE_LADDER_HELD_IN_QUEUE)
        purposeful = self._case.patched(PATCH_PURPOSE)
        self._watch_rehandling = (
            purposeful
            and trigger is EscalationTrigger.DISSATISFACTION
            and self._case.patched(PATCH_REHANDLE_WATCH)
        )
        self._task = asyncio.create_task(
            self._climb(n, trigger, child_id, purposeful, uncapped)
        )

    def _sign_from_the_start(self, escalation: Escalation) -> None:
        """The new ladder's word and first step, in the workflow task that starts it
        (lean-case-v34, LADDER_SIGNED_FROM_ITS_START). Before, :meth:`_climb` set them when its
        task first ran — after the signals of that same task were applied: a bare step, or the
        ended ladder's signed one, arriving with the order that started the ladder was judged
        by the old word and no start level, and took a 提醒 to 问责 with a referral (the red
        team of 2026-11-25, tests/test_v31_attacks.py)."""
        if not self._case.patched(LADDER_SIGNED_FROM_ITS_START):
            return
        escalation.start_level = _start_level(escalation)
        self._token = str(workflow.uuid4())
        self._signs_steps = True

    def _ordered(self, escalation: Escalation, order: SupervisionAction) -> None:
        """A supervisor's order: its form, opinion and deadline; 会办's co-handlers."""
        s = self._case.state
        escalation.department_id = s.department_id
        escalation.form = order.form
        escalation.opinion = order.note
        escalation.due = order.due
        escalation.persons = list(order.persons)
        escalation.decision = order.decision
        self._case.record(
            EventKind.ESCALATION_STARTED,
            order.actor,
            n=escalation.n,
            trigger=escalation.trigger.value,
            child_id=escalation.child_id,
            form=order.form.value,
            opinion=order.note,
            due=order.due.isoformat() if order.due else None,
            department_id=s.department_id,
        )

    def reached(self, level: EscalationLevel) -> None:
        """A ladder step arrived. 问责: the accountability record (from the order, or, when
        the ladder climbed there by itself, a referral whose persons and decision are open)."""
        s = self._case.state
        if level is not EscalationLevel.ACCOUNTABILITY or s.escalation is None:
            return
        e = s.escalation
        self._case.record(
            EventKind.ACCOUNTABILITY_RECORDED,
            SYSTEM_ACTOR,
            n=e.n,
            department_id=e.department_id or s.department_id,
            persons=e.persons,
            reason=e.opinion or f"the supervision ladder reached accountability ({e.trigger})",
            decision=e.decision,
            ordered=e.form is SupervisionForm.ACCOUNTABILITY,
        )

    async def end(self) -> None:
        """The case closes: stop a climbing ladder and wait for its outcome."""
        if self._task is not None:
            self._stop = True
            await self._task

    async def _climb(
        self,
        n: int,
        trigger: EscalationTrigger,
        child_id: str,
        purposeful: bool,
        uncapped: bool = False,
    ) -> None:
        """Run the n-th ladder to its end. ``uncapped``: started in the queue, yet held there
        rather than given the queue's ceiling for good (see :meth:`escalate`)."""
        s = self._case.state
        if self._closed_first(n):
            return
        # a ladder may start before the first deadlines are set (a supervisor or the third
        # report in the case's first task): then the policy defaults apply
        policy = s.deadlines or Deadlines.model_construct()
        start_seq = len(s.events)
        round_ = s.round
        escalation = s.escalation
        assert escalation is not None
        start_level = _start_level(escalation)
        first_step_taken = (
            self._on_step is not None
            and start_level is not EscalationLevel.ACCOUNTABILITY  # the child ends there at once
            and self._case.patched(PATCH_FIRST_STEP)
        )
        signs_steps = self._case.patched(LADDER_STEPS_SIGNED)
        if signs_steps:  # it climbs one step at a time from there (check_escalation_step)
            escalation.start_level = start_level
        if first_step_taken:
            assert self._on_step is not None
            self._on_step(EscalationStep(n=n, level=start_level))
        ceiling = None if uncapped else self._ceiling()
        self._stop_sent = False
        if not self._case.patched(LADDER_SIGNED_FROM_ITS_START):  # else set by escalate
            signed = self._case.patched(LADDER_ORDERS_SIGNED)
            self._token = str(workflow.uuid4()) if signed else None
            self._signs_steps = signs_steps and self._token is not None
        acted = self._did_its_duty if purposeful else self._acted

        def duty() -> bool:  # has this ladder done its duty (see duty_done)?
            return acted(trigger, round_, start_seq)

        self._duty = duty
        holds = ceiling is None and self._case.patched(PATCH_QUEUE_HOLDS)

        def owed_once_started() -> bool:  # stop, or hold (see _hold_in_the_queue), once it starts
            return self._stop or duty() or (holds and self._queued())

        try:
            with self._awaiting(owed_once_started):
                handle = await workflow.start_child_workflow(
                    EscalationWorkflow.run,
                    EscalationRequest(
                        case_id=s.case_id,
                        n=n,
                        trigger=trigger,
                        department_id=s.department_id,
                        step_hours=policy.escalation_step_hours,
                        start_level=start_level,
                        first_step_due=escalation.due,
                        first_step_taken=first_step_taken,
                        ceiling=ceiling,
                        obeys_hold=holds,
                        token=self._token,
                        signs_steps=self._signs_steps,
                    ),
                    id=child_id,
                    parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                )
        except WorkflowAlreadyStartedError:  # another client holds the child's id
            if not self._case.patched(PATCH_CHILD_ID_TAKEN):
                raise  # as such a case ran before the patch: its workflow failed at the close
            self._not_started(n, child_id, escalation.level)
            return
        done = asyncio.create_task(_outcome(handle))

        def over() -> bool:
            return done.done() or self._stop or duty()

        await self._hold_in_the_queue(handle, over, ceiling)
        await workflow.wait_condition(over)
        if not done.done():
            try:
                await self._order(handle, EscalationWorkflow.stop)
                self._stop_sent = True
            except ApplicationError:  # the child ended meanwhile (its outcome is on its way)
                if not self._case.patched(PATCH_CHILD_ENDED):
                    raise  # as such a case ran before the patch
        try:
            outcome = await done
        except ChildWorkflowError:  # the child did not end by itself: terminated, failed
            if not self._case.patched(PATCH_CHILD_ENDED):
                raise
            assert escalation is not None
            outcome = EscalationOutcome(final_level=escalation.level, stopped=False)
        assert s.escalation is not None
        s.escalation.active = False
        self._duty = None
        self._case.record(
            EventKind.ESCALATION_STOPPED, SYSTEM_ACTOR, n=n, **self._stopped_record(outcome)
        )

    def _stopped_record(self, outcome: EscalationOutcome) -> dict[str, Any]:
        """What the case records of its ladder's end. Since LADDER_OUTCOME_JUDGED
        (lean-case-v28) the case's own account, not the child's word: the level the case took
        (a child released or held by another Temporal client climbed to steps the case
        refused, and was recorded stopped at 问责), and ``stopped`` only when the case told it
        to stop — a ``stop`` from another client is recorded as such (``reason``), the
        supervision having ended without the unit doing its duty (tests/test_v27_attacks.py)."""
        s = self._case.state
        assert s.escalation is not None
        if not self._case.patched(LADDER_OUTCOME_JUDGED):
            return {"final_level": int(outcome.final_level), "stopped": outcome.stopped}
        record: dict[str, Any] = {
            "final_level": int(min(outcome.final_level, s.escalation.level)),
            "stopped": outcome.stopped and self._stop_sent,
        }
        if outcome.stopped and not self._stop_sent:
            record["reason"] = "stopped_by_another_client"
        elif outcome.final_level > s.escalation.level:
            record["reason"] = "climbed_past_the_case"
        return record

    def _not_started(self, n: int, child_id: str, level: EscalationLevel) -> None:
        """The ladder's child could not start: another client had started a workflow under its
        id (PATCH_CHILD_ID_TAKEN). Recorded stopped where it stood, so that the case goes on —
        a new order or breach starts the next ladder, and the case closes."""
        assert self._case.state.escalation is not None
        self._case.state.escalation.active = False
        self._case.record(
            EventKind.ESCALATION_STOPPED,
            SYSTEM_ACTOR,
            n=n,
            final_level=int(level),
            stopped=False,
            reason="child_id_taken",
            child_id=child_id,
        )

    async def _hold_in_the_queue(
        self, handle: Any, over: Callable[[], bool], ceiling: EscalationLevel | None
    ) -> None:
        """Until the ladder is ``over``: tell the child to hold (at 督办 at most) whenever the
        case enters the centre's dispatch queue, and to climb again when it leaves it
        (PATCH_QUEUE_HOLDS). A ladder started in the queue has its ceiling for good (the
        dispatch ends it); a case from before the patch asks nothing here and replays as it
        ran."""
        if ceiling is not None or not self._case.patched(PATCH_QUEUE_HOLDS):
            return
        held = False
        while True:
            await workflow.wait_condition(lambda was=held: over() or self._queued() != was)
            if over():
                return
            held = not held
            try:
                with self._awaiting(lambda sent=held: over() or self._queued() != sent):
                    await self._order(
                        handle, EscalationWorkflow.hold if held else EscalationWorkflow.release
                    )
            except ApplicationError:  # the child ended meanwhile (its outcome is on its way)
                return

    def _closed_first(self, n: int) -> bool:
        """The case closed in the workflow task that started the ladder, before the ladder's
        own task ran (a 督办 and a 撤诉 reaching the case together, the worker down): since
        lean-case-v40 (NO_LADDER_AFTER_CLOSE) it ends there, recorded stopped at the level it
        had, with no first step and no child. Before, its first step was recorded after
        ``closed`` against the unit and a ladder child started for a closed case (red team of
        2026-11-25, tests/test_v37_attacks.py)."""
        s = self._case.state
        if s.status is not Status.CLOSED or not self._case.patched(NO_LADDER_AFTER_CLOSE):
            return False
        assert s.escalation is not None
        s.escalation.active = False
        self._case.record(
            EventKind.ESCALATION_STOPPED, SYSTEM_ACTOR, n=n,
            final_level=int(s.escalation.level), stopped=True, reason="case_closed_first",
        )  # fmt: skip
        return True

    def duty_done(self) -> bool:
        """Has the climbing ladder done its duty — the unit acted, the case left the queue —
        and is it being stopped? A step it sends meanwhile is stale since lean-case-v40
        (STEPS_END_WITH_THE_DUTY, CaseWorkflow._check): the queue's ladder's step behind a
        派单 in its task was recorded as 催办 against the unit just given the case (red team of
        2026-11-25, tests/test_v37_attacks.py)."""
        return self._duty is not None and self._duty()

    def owes_an_order(self) -> bool:
        """Is the ladder waiting for the server's answer to a command (its child's start, its
        last ``hold`` or ``release``) with another command to issue once it comes — ``stop``,
        or the ``hold`` or ``release`` the case's state now calls for?

        Since lean-case-v38 (LADDER_ORDERS_BEFORE_PROJECTION) the projector waits until it has
        none (workflows/projector.py). A change of the case made by a local activity's result
        (a dispatch out of the centre's queue: its deadlines) wakes the projector at once, and
        the ladder when the answer has come too. A loaded worker may record the activity's
        marker in one workflow task and apply its result in the next, with the answer (the
        ladder's ``hold`` delivered): the ladder then issued its ``release`` before the
        projector's search-attribute upsert; a replay applies the result in the marker's task,
        before the answer, and the upsert came first: TMPRL1100,
        "UpsertWorkflowSearchAttributesMachine does not handle ...
        SignalExternalWorkflowExecutionInitiated" (test_v27_attacks::
        test_a_rehandle_into_the_queue_after_another_ladder under load;
        tests/test_ladder_orders_before_projection.py). Waiting, the projector comes after the
        ladder's command in both."""
        return self._owed is not None and self._owed()

    @contextmanager
    def _awaiting(self, owed: Callable[[], bool]) -> Iterator[None]:
        """While the server's answer to a command is awaited: ``owed`` says whether the case's
        state calls for a command the ladder issues once the answer comes (owes_an_order)."""
        self._owed = owed
        try:
            yield
        finally:
            self._owed = None

    def signed(self, step: EscalationStep) -> bool:
        """Does ``step`` carry the word of the ladder climbing now? Asked of a ladder that signs
        its steps (lean-case-v31); any other takes them bare, as before."""
        return not self._signs_steps or step.token == self._token

    async def _order(self, handle: Any, name: str) -> None:
        """``stop``, ``hold`` or ``release`` to the ladder: with the case's word since
        lean-case-v30 (LADDER_ORDERS_SIGNED; the child takes them from no one else), bare
        before."""
        if self._token is None:
            await handle.signal(name)
        else:
            await handle.signal(name, LadderOrder(token=self._token))

    def _queued(self) -> bool:
        return self._case.state.status is Status.DISPATCHING

    def _ceiling(self) -> EscalationLevel | None:
        """督办 for a ladder of a case waiting in the centre's queue (PATCH_QUEUED_CEILING)."""
        queued = self._case.state.status is Status.DISPATCHING
        if queued and self._case.patched(PATCH_QUEUED_CEILING):
            return EscalationLevel.SUPERVISE
        return None

    def _acted(self, trigger: EscalationTrigger, round_: int, start_seq: int) -> bool:
        """The ladder stops when the department does what it was late with, or acts at all."""
        s = self._case.state
        if s.status is Status.CLOSED:
            return True
        if trigger in _BREACHED_KIND:
            return deadline_met(s, _BREACHED_KIND[trigger], round_)
        return any(
            (e.actor.role is Role.DEPARTMENT and e.kind is not EventKind.REJECTED)
            or e.kind in (EventKind.DISPATCHED, EventKind.REASSIGNED)
            for e in s.events[start_seq:]
        )


    def _did_its_duty(self, trigger: EscalationTrigger, round_: int, start_seq: int) -> bool:
        """The unit did what it was supervised for: the late step, for a breach of the accept
        or contact deadline; its reply, for everything else (a finish breach, dissatisfaction,
        repeat reports, a supervisor's order). A case taken from the unit (a new round) or
        dispatched out of the centre's queue ends the unit's supervision too — except after
        dissatisfaction, whose ladder supervises the rehandling round (重办) until its reply."""
        s = self._case.state
        since = s.events[start_seq:]
        if s.status is Status.CLOSED:
            return True
        if self._watch_rehandling:
            return any(e.kind is EventKind.REPLIED for e in since)
        if s.round != round_:
            return True
        if trigger in _BREACHED_KIND and trigger is not EscalationTrigger.FINISH_BREACHED:
            return deadline_met(s, _BREACHED_KIND[trigger], round_)
        return any(
            e.kind in (EventKind.REPLIED, EventKind.DISPATCHED, EventKind.REASSIGNED)
            for e in since
        )


async def _outcome(handle: Any) -> EscalationOutcome:
    return await handle


def _start_level(escalation: Escalation) -> EscalationLevel:
    """The step a ladder starts at: its order's form, else 提醒."""
    return escalation.form.level if escalation.form else EscalationLevel.REMIND
