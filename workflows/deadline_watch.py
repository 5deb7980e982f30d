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
    from jiesu.case.lifecycle import breach_recorded, deadline_of, deadline_owed

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
) -> None:
    """Watch deadline ``kind`` of assignment round ``round_``; call ``on_breach`` if missed.
    ``ends_at_reassignment``: the watch ends when the case is being reassigned (lean-case-v11,
    :func:`jiesu.case.lifecycle.deadline_owed`); a case before it keeps watching, as it did.
    ``timed``: a step done after the deadline does not meet it (lean-case-v12);
    ``closing_is_late``: nor does a case closed after it with the step undone (lean-case-v13);
    ``breach_ends``: the watch ends when the deadline it waits for is recorded as breached by
    someone else — a late approval that moves it (lean-case-v14,
    :func:`jiesu.case.lifecycle.breached_before_moved`)."""

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
                pass
            else:
                if not (breach_ends and breach_recorded(state, kind, deadline)):
                    continue  # met, ended, or the deadline moved (extension): look again
        if breach_ends and breach_recorded(state, kind, deadline):
            return  # recorded as a late approval moved it: one breach, as with the worker up
        if owed() and deadline_of(state, kind) == deadline:
            on_breach(kind, deadline)
            return
