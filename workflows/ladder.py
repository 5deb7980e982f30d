"""The supervision ladder (督办阶梯) as the case drives it: start the escalation child, watch
for the department doing what it was supervised for, stop the child, record the outcome.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from jiesu.case.domain import (
        SYSTEM_ACTOR,
        Actor,
        DeadlineKind,
        Deadlines,
        Escalation,
        EscalationOutcome,
        EscalationRequest,
        EscalationTrigger,
        EventKind,
        Role,
        Status,
    )
    from jiesu.case.lifecycle import deadline_met
    from workflows.case_record import CaseRecord
    from workflows.escalation import EscalationWorkflow

BREACH_TRIGGERS = {
    DeadlineKind.ACCEPT: EscalationTrigger.ACCEPT_BREACHED,
    DeadlineKind.CONTACT: EscalationTrigger.CONTACT_BREACHED,
    DeadlineKind.FINISH: EscalationTrigger.FINISH_BREACHED,
}
_BREACHED_KIND = {trigger: kind for kind, trigger in BREACH_TRIGGERS.items()}


class Ladder:
    def __init__(self, case: CaseRecord) -> None:
        self._case = case
        self._task: asyncio.Task[None] | None = None
        self._stop = False

    def escalate(self, trigger: EscalationTrigger, actor: Actor = SYSTEM_ACTOR) -> None:
        """Start the ladder, unless one is already climbing for this case."""
        state = self._case.state
        current = state.escalation
        if current is not None and current.active:
            return
        n = current.n + 1 if current else 1
        child_id = f"{state.case_id}-escalation-{n}"
        state.escalation = Escalation(
            n=n, trigger=trigger, child_id=child_id, started_at=workflow.now()
        )
        self._case.record(
            EventKind.ESCALATION_STARTED, actor, n=n, trigger=trigger.value, child_id=child_id
        )
        self._stop = False
        self._task = asyncio.create_task(self._climb(n, trigger, child_id))

    async def end(self) -> None:
        """The case closes: stop a climbing ladder and wait for its outcome."""
        if self._task is not None:
            self._stop = True
            await self._task

    async def _climb(self, n: int, trigger: EscalationTrigger, child_id: str) -> None:
        s = self._case.state
        # a ladder may start before the first deadlines are set (a supervisor or the third
        # report in the case's first task): then the policy defaults apply
        policy = s.deadlines or Deadlines.model_construct()
        start_seq = len(s.events)
        round_ = s.round
        handle = await workflow.start_child_workflow(
            EscalationWorkflow.run,
            EscalationRequest(
                case_id=s.case_id,
                n=n,
                trigger=trigger,
                department_id=s.department_id,
                step_hours=policy.escalation_step_hours,
            ),
            id=child_id,
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
        )
        done = asyncio.create_task(_outcome(handle))
        await workflow.wait_condition(
            lambda: done.done() or self._stop or self._acted(trigger, round_, start_seq)
        )
        if not done.done():
            await handle.signal(EscalationWorkflow.stop)
        outcome = await done
        assert s.escalation is not None
        s.escalation.active = False
        self._case.record(
            EventKind.ESCALATION_STOPPED,
            SYSTEM_ACTOR,
            n=n,
            final_level=int(outcome.final_level),
            stopped=outcome.stopped,
        )

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


async def _outcome(handle: Any) -> EscalationOutcome:
    return await handle
