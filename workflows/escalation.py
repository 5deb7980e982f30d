"""EscalationWorkflow: the supervision ladder (督办阶梯) of one case.

A child of the case, id ``<case>-escalation-<n>``. It climbs remind (提醒) → urge (催办) →
supervise (督办) → joint handling (会办) → accountability referral (问责), one step per
interval, telling the case at every step (the case records it, notifies and shows the level).
The case signals ``stop`` when the department acts or the case closes.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from jiesu.domain import (
        EscalationLevel,
        EscalationOutcome,
        EscalationRequest,
        EscalationStep,
    )


@workflow.defn(name="EscalationWorkflow")
class EscalationWorkflow:
    def __init__(self) -> None:
        self._stopped = False

    @workflow.run
    async def run(self, request: EscalationRequest) -> EscalationOutcome:
        case = workflow.get_external_workflow_handle(request.case_id)
        level = request.start_level
        while True:
            await case.signal("escalation_step", EscalationStep(n=request.n, level=level))
            if level is EscalationLevel.ACCOUNTABILITY:
                return EscalationOutcome(final_level=level, stopped=False)
            try:
                await workflow.wait_condition(
                    lambda: self._stopped,
                    timeout=timedelta(hours=request.step_hours),
                    timeout_summary=f"next step after {level.name.lower()}",
                )
            except TimeoutError:
                level = EscalationLevel(level + 1)
                continue
            return EscalationOutcome(final_level=level, stopped=True)

    @workflow.signal
    def stop(self) -> None:
        """The department acted or the case closed: the ladder ends."""
        self._stopped = True
