"""Reading a case's live state and acting on it through signals."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Principal
from api.errors import ApiError, not_found
from api.schemas import ActionResult
from jiesu.domain import Actor, CaseEvent, CaseState, EventKind
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
    if state is None or not principal.can_see(state):
        raise not_found(case_id)  # another department's case does not exist for you
    return state


def refuse(refusal: Refusal) -> ApiError:
    status = 403 if refusal.forbidden else 409
    return ApiError(status, refusal.code, refusal.reason)


async def _signal(
    handle: WorkflowHandle[Any, Any], signal: Callable[..., Any], action: Any, give_up: float
) -> None:
    """Signal; a child the case has just asked for may not exist for a few milliseconds."""
    loop = asyncio.get_running_loop()
    delay = 0.01
    while True:
        try:
            await handle.signal(signal, action)
            return
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND or loop.time() >= give_up:
                raise
        await asyncio.sleep(delay)  # bounded by give_up; the child's start is under way
        delay = min(delay * 2, 0.2)


async def _await_event(
    handle: WorkflowHandle[Any, Any], seen: int, actor: Actor, give_up: float
) -> tuple[CaseState, CaseEvent | None]:
    """Poll the case until it records the event this request's actor caused (or time out)."""
    loop = asyncio.get_running_loop()
    delay = 0.02
    while True:
        current = await handle.query(ComplaintWorkflow.state)
        ours = next((e for e in current.events[seen:] if e.actor == actor), None)
        if ours is not None or loop.time() >= give_up:
            return current, ours
        await asyncio.sleep(delay)  # poll the condition with backoff, bounded by give_up
        delay = min(delay * 2, 0.5)


async def act(
    client: Client,
    state: CaseState,
    signal: Callable[..., Any],
    action: Any,
    check: Callable[[CaseState, Any], Refusal | None],
    target_id: str | None = None,
) -> ActionResult:
    """Check the action against the current state (the workflow checks again), signal it
    (to the case, or to ``target_id``, one of its children), and wait until the case has
    recorded it."""
    refusal = check(state, action)
    if refusal is not None:
        raise refuse(refusal)
    # A request id on the actor lets us find exactly the event this request caused.
    actor = action.actor.model_copy(update={"request_id": uuid.uuid4().hex})
    action = action.model_copy(update={"actor": actor})
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(state.case_id)
    seen = len(state.events)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + APPLY_WAIT_SECONDS
    await _signal(client.get_workflow_handle(target_id or state.case_id), signal, action, give_up)
    current, ours = await _await_event(handle, seen, actor, give_up)
    if ours is None:
        return ActionResult(applied=False, case=current)
    if ours.kind is EventKind.REJECTED:  # the state changed between our check and the signal
        raise ApiError(409, ours.data.get("code", "rejected"), ours.data.get("reason", ""))
    return ActionResult(applied=True, case=current)


# Overdue, for the case list: a recorded breach, or still open past the finish deadline.
# The same rule in SQL (search) and in Python (a row's flag); keep them together.
_OVERDUE_SQL = "(cardinality(breaches) > 0 OR (status <> 'closed' AND finish_deadline < {now}))"


def overdue(row: dict[str, Any], now: datetime) -> bool:
    late = row["finish_deadline"] is not None and row["finish_deadline"] < now
    return bool(row["breaches"]) or (row["status"] != "closed" and late)


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
        late = _OVERDUE_SQL.format(now=arg(datetime.now(UTC)))
        where.append(late if overdue else f"NOT {late}")
    sql = f"SELECT {_SUMMARY_COLUMNS} FROM cases"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY received_at DESC, case_id LIMIT {arg(limit)} OFFSET {arg(offset)}"
    return [dict(r) for r in await pool.fetch(sql, *args)]


async def perform(
    client: Client,
    pool: asyncpg.Pool,
    case_id: str,
    principal: Principal,
    signal: Callable[..., Any],
    make_action: Callable[[CaseState], Any],
    check: Callable[[CaseState, Any], Refusal | None],
    target: Callable[[CaseState], str] | None = None,
) -> ActionResult:
    """The whole of an action endpoint: find the case the caller may see, build the action
    (the actor comes from the API key), check it, signal it, wait for the workflow."""
    state = await visible_state(client, pool, case_id, principal)
    action = make_action(state)
    return await act(client, state, signal, action, check, target(state) if target else None)


async def department_ref(pool: asyncpg.Pool, department_id: str) -> str:
    """The department's name, or a 422 when there is no such department."""
    name = await pool.fetchval("SELECT name FROM departments WHERE id = $1", department_id)
    if name is None:
        raise ApiError(422, "unknown_department", f"no department {department_id!r}")
    return name
