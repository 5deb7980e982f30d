"""A deadline watch: one durable timer per deadline, following the deadline when it moves.

In the style of samples-python's updatable timer: wait until the deadline is met or moved,
with the time left as the timeout; a moved deadline (an approved extension) restarts the wait,
a timeout on an unmet, unmoved deadline is a breach (超时).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from jiesu.case.domain import CaseState, DeadlineKind
    from jiesu.case.lifecycle import (
        breach_recorded,
        breach_recorded_since,
        deadline_of,
        deadline_owed,
    )

OnBreach = Callable[[DeadlineKind, datetime], None]


async def lapsed(decided: Callable[[], bool], due: datetime, summary: str) -> bool:
    """Wait until ``decided()`` or ``due`` (one durable timer named ``summary``); True when
    the time ran out first (逾期未审: a decision the centre did not take in time)."""
    try:
        await workflow.wait_condition(
            decided, timeout=due - workflow.now(), timeout_summary=summary
        )
    except TimeoutError:
        return True
    return False


async def watch_deadline(
    state: CaseState, kind: DeadlineKind, round_: int, on_breach: OnBreach,
    *, ends_at_reassignment: bool = False, timed: bool = False, closing_is_late: bool = False,
    breach_ends: bool = False,
    any_breach_ends: bool = False,
    settles: bool = False,
    first: Callable[[], bool] | None = None,
) -> None:
    """Watch deadline ``kind`` of assignment round ``round_``; call ``on_breach`` if missed.
    ``ends_at_reassignment``: the watch ends when the case is being reassigned (lean-case-v11,
    :func:`jiesu.case.lifecycle.deadline_owed`); a case before it keeps watching, as it did.
    ``timed``: a step done after the deadline does not meet it (lean-case-v12);
    ``closing_is_late``: nor does a case closed after it with the step undone (lean-case-v13);
    ``breach_ends``: the watch ends when the deadline it waits for is recorded as breached by
    someone else — a late approval that moves it (lean-case-v14,
    :func:`jiesu.case.lifecycle.breached_before`); ``any_breach_ends``: or at a deadline
    it moved to since (lean-case-v16, :func:`jiesu.case.lifecycle.breach_recorded_since`);
    ``settles``: when the time runs out, the watch lets the rest of the workflow task run
    before it judges (lean-case-v16, WATCH_SETTLES_FIRST). A timer that fires in the same task
    (the worker down across both) may have begun something the case's main loop carries out
    — a 退单 upheld by the centre's lapse (逾期视为同意) before this deadline starts its
    reassignment there — and a watch that judged at once found the unit still holding the
    case and recorded its breach. The main loop waits since an earlier task, and the SDK
    checks the waits in the order they were registered, so it wakes before the watch.
    ``first``: what must be done before the watch judges, beside the task's other work (since
    lean-case-v39, an action the case is looking its units up for:
    CaseWorkflow._looked_up_first)."""

    def recorded(deadline: datetime) -> bool:
        if any_breach_ends:
            return breach_recorded_since(state, kind, deadline)
        return breach_ends and breach_recorded(state, kind, deadline)

    def owed() -> bool:
        return deadline_owed(
            state, kind, round_, workflow.now(),
            ends_at_reassignment=ends_at_reassignment, timed=timed,
            closing_is_late=closing_is_late,
        )  # fmt: skip

    while owed():
        deadline = deadline_of(state, kind)
        assert deadline is not None
        remaining = deadline - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(
                    lambda d=deadline: not owed() or deadline_of(state, kind) != d,
                    timeout=remaining,
                    timeout_summary=f"{kind.value} deadline",
                )
            except TimeoutError:
                if settles:  # the task's other work first (and ``first``)
                    await workflow.wait_condition(first or (lambda: True))
            else:
                if not recorded(deadline):
                    continue  # met, ended, or the deadline moved (extension): look again
        if recorded(deadline):
            return  # recorded as a late approval moved it: one breach, as with the worker up
        if owed() and deadline_of(state, kind) == deadline:
            on_breach(kind, deadline)
            return
