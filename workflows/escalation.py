"""EscalationWorkflow: the supervision ladder (督办阶梯) of one case.

A child of the case, id ``<case>-escalation-<n>``. It climbs remind (提醒) → urge (催办) →
supervise (督办) → joint handling (会办) → accountability referral (问责), from the step a
supervisor chose (or the first), one step per interval (the first lasting until the unit's
deadline, when the supervisor set one) up to its ceiling, if the case gave it one (a case
waiting in the centre's dispatch queue: 督办), telling the case at every step (the case records
it, notifies and shows the level). The case signals ``stop`` when the department did what it
was supervised for, or the case closes.
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
    )
    from workflows import messages


@workflow.defn(name="EscalationWorkflow")
class EscalationWorkflow:
    stop = "stop"  # the signal name, for clients (the case)

    def __init__(self) -> None:
        self._stopped = False

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
                await case.signal("escalation_step", EscalationStep(n=request.n, level=level))
            tell = True
            if level is EscalationLevel.ACCOUNTABILITY:
                return EscalationOutcome(final_level=level, stopped=False)
            if request.ceiling is not None and level >= request.ceiling:
                # the top this ladder may reach: it holds there until the case stops it (a
                # ladder started without a ceiling never comes here: it replays as it ran)
                await workflow.wait_condition(lambda: self._stopped)
                return EscalationOutcome(final_level=level, stopped=True)
            try:
                await workflow.wait_condition(
                    lambda: self._stopped,
                    timeout=max(first, timedelta(seconds=1)),
                    timeout_summary=f"next step after {level.name.lower()}",
                )
            except TimeoutError:
                level = EscalationLevel(level + 1)
                first = step
                continue
            return EscalationOutcome(final_level=level, stopped=True)

    @workflow.signal(dynamic=True)
    def _message(self, name: str, args: Sequence[RawValue]) -> None:
        """``stop``: the department acted or the case closed, the ladder ends. Anything else
        (or ``stop`` with a payload) is logged and ignored: it must never wedge the ladder."""
        if name == self.stop and not isinstance(messages.decode(name, args, None), messages.Misfit):
            self._stopped = True
            return
        workflow.logger.warning("ladder ignored message %s", messages.printable(name, 64))
