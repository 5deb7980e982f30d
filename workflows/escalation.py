"""EscalationWorkflow: the supervision ladder (督办阶梯) of one case.

A child of the case, id ``<case>-escalation-<n>``. It climbs remind (提醒) → urge (催办) →
supervise (督办) → joint handling (会办) → accountability referral (问责), from the step a
supervisor chose (or the first), one step per interval (the first lasting until the unit's
deadline, when the supervisor set one) up to its ceiling, if the case gave it one (a case
waiting in the centre's dispatch queue: 督办), telling the case at every step (the case records
it, notifies and shows the level). The case signals ``stop`` when the department did what it
was supervised for, or the case closes; ``hold`` when the case enters the centre's dispatch queue
with the ladder climbing (it climbs to 督办 at most there) and ``release`` when a unit has the
case again (since lean-case-v10).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from jiesu.case.domain import (
        EscalationLevel,
        EscalationOutcome,
        EscalationRequest,
        EscalationStep,
        LadderOrder,
    )
    from workflows import messages


@workflow.defn(name="EscalationWorkflow")
class EscalationWorkflow:
    stop = "stop"  # the signal names, for clients (the case)
    hold = "hold"  # climb no higher than 督办 (the case waits in the centre's dispatch queue)
    release = "release"  # climb again (a unit has the case once more)

    @workflow.init
    def __init__(self, request: EscalationRequest) -> None:
        self._stopped = False
        self._held = False
        # the case's word (lean-case-v30), known before any signal is handled: a ``hold`` the
        # case sends as the ladder starts may be handled before ``run`` begins
        self._token = request.token  # None: orders taken bare, as before

    @workflow.run
    async def run(self, request: EscalationRequest) -> EscalationOutcome:
        case = workflow.get_external_workflow_handle(request.case_id)
        level = request.start_level
        step = timedelta(hours=request.step_hours)
        # a supervisor's deadline for the unit: the first step lasts until it
        first = request.first_step_due - workflow.now() if request.first_step_due else step
        tell = not request.first_step_taken  # the case recorded the first step itself
        while True:
            if tell:
                await case.signal("escalation_step", self._step(request, level))
            tell = True
            if level is EscalationLevel.ACCOUNTABILITY:
                return EscalationOutcome(final_level=level, stopped=False)
            if self._holds_at(request, level):
                # the top this ladder may reach now: it holds there until the case stops it or,
                # for a hold the case asked (``hold``), releases it (a ladder never held replays
                # as it ran: the condition is the same until a hold arrives)
                await workflow.wait_condition(
                    lambda at=level: self._stopped or not self._holds_at(request, at)
                )
                if self._stopped:
                    return EscalationOutcome(final_level=level, stopped=True)
                tell, first = False, step  # released: the next step a whole interval on
                continue
            try:
                await workflow.wait_condition(
                    lambda at=level: self._stopped or self._holds_at(request, at),
                    timeout=max(first, timedelta(seconds=1)),
                    timeout_summary=f"next step after {level.name.lower()}",
                )
            except TimeoutError:
                level = EscalationLevel(level + 1)
                first = step
                continue
            if self._stopped:
                return EscalationOutcome(final_level=level, stopped=True)
            tell = False  # held at the level it reached: hold there (above)

    def _step(self, request: EscalationRequest, level: EscalationLevel) -> EscalationStep:
        """The step told to the case: with the case's word since lean-case-v31 (the case takes
        no step without it: another client's 问责 right after a 提醒 was recorded)."""
        if request.signs_steps:
            return EscalationStep(n=request.n, level=level, token=request.token)
        return EscalationStep(n=request.n, level=level)

    def _holds_at(self, request: EscalationRequest, level: EscalationLevel) -> bool:
        """Does the ladder stop climbing at ``level``? At the ceiling the case gave it when it
        started it (for good), or at 督办 or above while the case asks it to hold (its case
        entered the centre's dispatch queue: queue-holds-ladder-v1, workflows/ladder.py) — a
        ladder its case started with ``obeys_hold``: an older one ignores ``hold``, as it did."""
        ceiling = request.ceiling
        if ceiling is None and self._held and request.obeys_hold:
            ceiling = EscalationLevel.SUPERVISE
        return ceiling is not None and level >= ceiling

    @workflow.signal(dynamic=True)
    def _message(self, name: str, args: Sequence[RawValue]) -> None:
        """``stop``: the department acted or the case closed, the ladder ends. ``hold`` and
        ``release``: the case entered or left the centre's dispatch queue (they never lift the
        ceiling the ladder started with). Anything else (or one of them with a payload) is
        logged and ignored: it must never wedge the ladder."""
        known = name in (self.stop, self.hold, self.release)
        if known and self._from_the_case(name, args):
            if name == self.stop:
                self._stopped = True
            else:
                self._held = name == self.hold
            return
        workflow.logger.warning("ladder ignored message %s", messages.printable(name, 64))

    def _from_the_case(self, name: str, args: Sequence[RawValue]) -> bool:
        """A ladder started by a lean-case-v30 case takes its orders with the case's word only
        (another Temporal client's bare ``stop`` ended a supervisor's 督办, a ``hold`` capped
        it at 督办 for good: tests/test_v27_attacks.py); an older one takes them bare."""
        if self._token is None:
            return not isinstance(messages.decode(name, args, None), messages.Misfit)
        order = messages.decode(name, args, LadderOrder)
        return isinstance(order, LadderOrder) and order.token == self._token
