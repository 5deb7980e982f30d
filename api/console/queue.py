"""待派单: what the console shows of a case waiting in the hotline centre's dispatch queue.

Since epoch ``lean-case-v8`` (``deadlines-from-dispatch-v1``, docs/supervision.md) no deadline
runs in the queue: the deadlines recorded at receipt only tell the supervisors' boards when the
centre's dispatch is late (待派单超时), and the unit's deadlines start when it is dispatched.
Such a case shows 待派单, since when it waits, and 派单后起算 — not its receipt deadlines
counting down. A case before ``lean-case-v8`` kept its deadlines running in the queue (its
timers charge the centre) and shows them as before.

The case's epoch is read from ``CaseState.reconvenes_released``: the workflow sets it from the
same epoch, and a case has every patch of its epoch or none (workflows/patches.py, EPOCHS).
The state has no field of this rule's own; a read-model row projected before that field is
read as a case before the epoch (its countdowns shown, as before)."""

from __future__ import annotations

from datetime import datetime

from jiesu.case.domain import CaseState, EventKind, Status

# the events that put a case in the queue (the last one is when it started waiting)
_INTO_THE_QUEUE = frozenset({
    EventKind.QUEUED, EventKind.ROUTING_FAILED, EventKind.REASSIGNMENT_FAILED,
})  # fmt: skip


def deadlines_wait_for_dispatch(state: CaseState) -> bool:
    """In the centre's queue, and of an epoch whose queue runs no deadline."""
    return state.status is Status.DISPATCHING and state.reconvenes_released


def queued_since(state: CaseState) -> datetime:
    """When the case last went into the queue (at receipt, or when a reassignment ended
    there); its receipt when no event says so (a read-model row without its events)."""
    into = [e.at for e in state.events if e.kind in _INTO_THE_QUEUE]
    return max(into, default=state.received_at)


def from_dispatch_sql(table: str = "cases") -> str:
    """A ``cases`` row's column ``from_dispatch``: the row's case is of an epoch whose queue
    runs no deadline (its projected state's ``reconvenes_released``; see the module)."""
    return f"coalesce(({table}.state->>'reconvenes_released')::boolean, false) AS from_dispatch"
