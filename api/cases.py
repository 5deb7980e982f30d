"""Reading a case's live state and acting on it through signals."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Principal
from api.errors import ApiError, not_found
from api.schemas import ActionResult
from jiesu.domain import CaseEvent, CaseState, EventKind
from jiesu.lifecycle import Refusal
from workflows.complaint import ComplaintWorkflow

# How long an action waits for the workflow to apply its signal before answering 202.
APPLY_WAIT_SECONDS = 5.0


async def live_state(client: Client, case_id: str) -> CaseState | None:
    """The workflow's own view (query), or None when Temporal has no such case."""
    handle = client.get_workflow_handle_for(ComplaintWorkflow.run, case_id)
    try:
        return await handle.query(ComplaintWorkflow.state)
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return None
        raise


async def archived_state(pool: asyncpg.Pool, case_id: str) -> CaseState | None:
    """The read model's copy, for cases whose history Temporal no longer keeps."""
    row = await pool.fetchrow("SELECT state FROM cases WHERE case_id = $1", case_id)
    if row is None:
        return None
    events = await pool.fetch(
        "SELECT seq, kind, at, actor, data FROM case_events WHERE case_id = $1 ORDER BY seq",
        case_id,
    )
    state = CaseState.model_validate(row["state"])
    state.events = [CaseEvent.model_validate(dict(e)) for e in events]
    return state


async def visible_state(
    client: Client, pool: asyncpg.Pool, case_id: str, principal: Principal
) -> CaseState:
    state = await live_state(client, case_id) or await archived_state(pool, case_id)
    if state is None or not principal.can_see(state.department_id):
        raise not_found(case_id)  # another department's case does not exist for you
    return state


def refuse(refusal: Refusal) -> ApiError:
    status = 403 if refusal.forbidden else 409
    return ApiError(status, refusal.code, refusal.reason)


async def act(
    client: Client,
    state: CaseState,
    signal: Callable[..., Any],
    action: Any,
    check: Callable[[CaseState, Any], Refusal | None],
) -> ActionResult:
    """Check the action against the current state (the workflow checks again), signal it,
    and wait until the workflow has recorded it."""
    refusal = check(state, action)
    if refusal is not None:
        raise refuse(refusal)
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(state.case_id)
    seen = len(state.events)
    await handle.signal(signal, action)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + APPLY_WAIT_SECONDS
    delay = 0.02
    while True:
        current = await handle.query(ComplaintWorkflow.state)
        if len(current.events) > seen or loop.time() >= give_up:
            break
        await asyncio.sleep(delay)  # poll the condition with backoff, bounded by give_up
        delay = min(delay * 2, 0.5)
    ours = [e for e in current.events[seen:] if e.actor == action.actor]
    if not ours:
        return ActionResult(applied=False, case=current)
    if ours[0].kind is EventKind.REJECTED:  # the state changed between our check and the signal
        raise ApiError(409, ours[0].data.get("code", "rejected"), ours[0].data.get("reason", ""))
    return ActionResult(applied=True, case=current)


_SUMMARY_COLUMNS = (
    "case_id, status, title, category_id, grid_id, channel, urgency, department_id, "
    "received_at, accept_deadline, contact_deadline, finish_deadline, closed_at, rating, breaches"
)


async def search(
    pool: asyncpg.Pool,
    *,
    limit: int,
    offset: int,
    overdue: bool | None = None,
    received_from: datetime | None = None,
    received_to: datetime | None = None,
    **equal: Any,
) -> list[dict[str, Any]]:
    """Cases from the read model, newest first. ``equal`` maps column → value (None = any)."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    for column, value in equal.items():
        if value is not None:
            where.append(f"{column} = {arg(getattr(value, 'value', value))}")
    if received_from is not None:
        where.append(f"received_at >= {arg(received_from)}")
    if received_to is not None:
        where.append(f"received_at < {arg(received_to)}")
    if overdue is not None:
        now = arg(datetime.now(UTC))
        late = f"(cardinality(breaches) > 0 OR (status <> 'closed' AND finish_deadline < {now}))"
        where.append(late if overdue else f"NOT {late}")
    sql = f"SELECT {_SUMMARY_COLUMNS} FROM cases"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY received_at DESC, case_id LIMIT {arg(limit)} OFFSET {arg(offset)}"
    return [dict(r) for r in await pool.fetch(sql, *args)]
