"""Reading a case's live state and acting on it through signals.

Reading: the workflow's query answers, within a short RPC timeout; when it cannot (its worker
is down, Temporal is unreachable, the workflow task is failing) the read model answers instead,
marked as such. Acting: an ``Idempotency-Key`` makes the action's request id deterministic, so
a retry finds the event its first attempt caused and gets the same answer, never a second
application.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
from opentelemetry import trace
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Principal
from api.errors import RETRY_AFTER_SECONDS, ApiError, not_found
from api.schemas import ActionResult
from jiesu.access import action_keys
from jiesu.access.content import Viewer, carried_fields, masked_case, record_view
from jiesu.access.grids import GridScope
from jiesu.admin import departments
from jiesu.admin.errors import AdminRefused
from jiesu.case.domain import WHOLE_COUNTY_VIEWER_ROLES, CaseEvent, CaseState, EventKind
from jiesu.case.lifecycle import Refusal
from jiesu.case.sla import late_sql
from jiesu.client import QUERY_UNANSWERED, is_temporal_down
from jiesu.config import Settings
from jiesu.readmodel.changes import Change, ProjectionFeed
from workflows.complaint import ComplaintWorkflow

# How long an action waits for the workflow to apply its signal before answering 202.
APPLY_WAIT_SECONDS = 5.0
# Of that, how long it waits for the read model to show the event (then it asks the workflow).
READ_MODEL_WAIT_SECONDS = 2.0
DEFAULT_QUERY_TIMEOUT_SECONDS: float = Settings.model_fields["query_timeout_seconds"].default

Source = Literal["workflow", "read_model"]

# Spans of an action's stages (bench/action_stages.py reads them); without a tracer provider
# (tracing off, the default) these are OpenTelemetry's no-op spans.
_tracer = trace.get_tracer(__name__)


class Unanswered(Exception):
    """The workflow did not answer its query in time (or its task is failing)."""


async def _query(handle: WorkflowHandle[Any, Any], rpc_seconds: float) -> CaseState:
    rpc_timeout = timedelta(seconds=rpc_seconds)
    try:
        return await handle.query(ComplaintWorkflow.state, rpc_timeout=rpc_timeout)
    except WorkflowQueryFailedError as err:
        raise Unanswered(str(err)) from err
    except RPCError as err:
        if err.status in QUERY_UNANSWERED:  # our timeout, the server's, or no worker polling
            raise Unanswered(str(err)) from err
        raise


async def live_state(
    client: Client, case_id: str, rpc_seconds: float = DEFAULT_QUERY_TIMEOUT_SECONDS
) -> CaseState | None:
    """The workflow's own view (query), or None when Temporal has no such case. Raises
    :class:`Unanswered` when the workflow cannot answer within ``rpc_seconds``."""
    handle = client.get_workflow_handle_for(ComplaintWorkflow.run, case_id)
    try:
        return await _query(handle, rpc_seconds)
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return None
        raise


async def archived_state(pool: asyncpg.Pool, case_id: str) -> CaseState | None:
    """The read model's copy, for cases whose history Temporal no longer keeps."""
    state = await read_model_copy(pool, case_id)
    if state is None:
        return None
    events = await pool.fetch(
        "SELECT seq, kind, at, actor, data FROM case_events WHERE case_id = $1 ORDER BY seq",
        case_id,
    )
    state.events = [CaseEvent.model_validate(dict(e)) for e in events]
    return state


@dataclass(frozen=True)
class Sourced:
    state: CaseState
    source: Source
    stale: bool = False
    """The read model stood in for a workflow that exists but did not answer: the copy may be
    behind, so it must not be the judge of an action (the workflow is)."""


# Staff who may see every case (Principal.can_see): told "not ready", not "no such case".
_SEE_ALL = WHOLE_COUNTY_VIEWER_ROLES


async def _not_ready(pool: asyncpg.Pool, case_id: str, principal: Principal) -> ApiError:
    """A registered case whose workflow cannot answer yet and whose read-model row is not
    written: 503 for callers who could see any case, so a client told 201 is not then told
    404. Departments and citizens get the 404 (whose case it is needs the state, and a 503
    would tell a stranger that the number exists)."""
    if principal.role in _SEE_ALL:
        known = await pool.fetchval("SELECT 1 FROM intakes WHERE case_id = $1", case_id)
        if known:
            return not_ready(case_id)
    return not_found(case_id)


def not_ready(case_id: str) -> ApiError:
    return ApiError(
        503, "case_not_ready",
        f"case {case_id} is registered but cannot be read yet; retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )  # fmt: skip


async def sourced_state(
    client: Client, pool: asyncpg.Pool, case_id: str, principal: Principal,
    rpc_seconds: float = DEFAULT_QUERY_TIMEOUT_SECONDS,
) -> Sourced:  # fmt: skip
    """The case as the caller may see it, and where the answer came from: the workflow, or
    the read model when the workflow is gone (archived), silent (worker down, task failing) or
    out of reach (Temporal down)."""
    silent = False
    try:
        state = await live_state(client, case_id, rpc_seconds)
    except Exception as err:
        if not isinstance(err, Unanswered) and not is_temporal_down(err):
            raise
        state, silent = None, True
    source: Source = "workflow"
    if state is None:
        state, source = await archived_state(pool, case_id), "read_model"
    if state is None and silent:
        raise await _not_ready(pool, case_id, principal)
    if state is None or not principal.can_see(state):
        raise not_found(case_id)  # another department's case does not exist for you
    # the content its events carry (并单, 补充诉求, evidence), masked where the content is
    return Sourced(masked_case(viewer_of(principal), state), source, stale=silent)


def viewer_of(principal: Principal) -> Viewer:
    """The caller, as the content's masking rules know them (jiesu.access.content)."""
    return Viewer(
        name=principal.name, role=principal.role, department_id=principal.department_id,
        person=principal.person is not None, handles=principal.handles,
    )  # fmt: skip


async def visible_state(
    client: Client, pool: asyncpg.Pool, case_id: str, principal: Principal,
    rpc_seconds: float = DEFAULT_QUERY_TIMEOUT_SECONDS,
) -> CaseState:  # fmt: skip
    return (await sourced_state(client, pool, case_id, principal, rpc_seconds)).state


async def shown_to(pool: asyncpg.Pool, principal: Principal, result: ActionResult) -> ActionResult:
    """An action's answer as the staff caller receives it: the case masked as ``GET
    /complaints/{id}`` masks it, and the content its events carry (补充诉求, 并单, evidence)
    shown unmasked recorded as a view of it, before it is answered — the same rule as the GET.
    The console's forms discard the answer (they show the case page, which records its own
    view), so only the API's endpoints call this."""
    viewer = viewer_of(principal)
    carried = carried_fields(viewer, result.case)
    if carried:
        await record_view(pool, result.case.case_id, viewer, carried)
    return result.model_copy(update={"case": masked_case(viewer, result.case)})


def refuse(refusal: Refusal) -> ApiError:
    status = 403 if refusal.forbidden else 409
    return ApiError(status, refusal.code, refusal.reason)


_REPEATABLE = "idem-"  # the prefix of a request id derived from an Idempotency-Key


def request_id(principal: Principal, case_id: str, action: str, key: str | None) -> str:
    """The request id the action's actor carries. With an Idempotency-Key it is derived from
    who asks what of which case under that key, so a retry carries the same id (and one
    caller's key never matches another's); without one it is random."""
    if key is None:
        return uuid.uuid4().hex
    identity = [principal.role.value, principal.name, principal.department_id, case_id, action]
    if principal.person is not None:  # a person and a key that share a name are not one caller
        identity.append(f"person:{principal.person}")
    digest = hashlib.sha256(json.dumps([*identity, key], ensure_ascii=False).encode())
    return _REPEATABLE + digest.hexdigest()[:32]


def may_be_recorded(rid: str) -> bool:
    """Whether an event of request ``rid`` may exist before this request signals: only when
    its id comes from an Idempotency-Key (a retry); a random id is this request's alone."""
    return rid.startswith(_REPEATABLE)


def _outcome(state: CaseState, event: CaseEvent) -> ActionResult:
    """The answer for the event a request caused: the case, or the workflow's refusal."""
    if event.kind is EventKind.REJECTED:  # the state changed between our check and the signal
        raise ApiError(409, event.data.get("code", "rejected"), event.data.get("reason", ""))
    return ActionResult(applied=True, case=state)


def _caused_by(state: CaseState, rid: str, since: int = 0) -> CaseEvent | None:
    return next((e for e in state.events[since:] if e.actor.request_id == rid), None)


class Ended(Exception):
    """The workflow an action was signalled to has ended (the case closed, a child done)."""


async def _signal(
    handle: WorkflowHandle[Any, Any], signal: Callable[..., Any], action: Any, give_up: float
) -> None:
    """Signal; a child the case has just asked for may not exist for a few milliseconds.
    Raises :class:`Ended` when the workflow has ended: Temporal answers NOT_FOUND ("workflow
    execution already completed") for a closed one too, which no wait will change."""
    loop = asyncio.get_running_loop()
    delay = 0.01
    while True:
        try:
            await handle.signal(signal, action)
            return
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
            if await _ended(handle) or loop.time() >= give_up:
                raise Ended(handle.id) from err
        await asyncio.sleep(delay)  # bounded by give_up; the child's start is under way
        delay = min(delay * 2, 0.2)


async def _ended(handle: WorkflowHandle[Any, Any]) -> bool:
    """Whether the workflow exists and is no longer running (False: not started yet)."""
    try:
        return (await handle.describe()).status is not WorkflowExecutionStatus.RUNNING
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return False
        raise


def _ended_answer(case_id: str, target_id: str | None) -> ApiError:
    """The answer for an action whose workflow ended after the copy it was checked on."""
    if target_id is None:
        return ApiError(409, "case_closed", f"case {case_id} is closed")
    return ApiError(
        409, "case_changed",
        f"what this action answers (workflow {target_id}) has ended; read case {case_id} again",
    )  # fmt: skip


async def _await_event(
    handle: WorkflowHandle[Any, Any], state: CaseState, rid: str, give_up: float
) -> tuple[CaseState, CaseEvent | None]:
    """Poll the case until it records the event this request caused (or time out)."""
    loop = asyncio.get_running_loop()
    delay = 0.02
    seen = len(state.events)
    while True:
        try:
            state = await _query(handle, max(0.1, min(2.0, give_up - loop.time())))
        except Unanswered:
            return state, None  # the workflow will apply it when it runs again: 202
        ours = _caused_by(state, rid, seen)
        if ours is not None or loop.time() >= give_up:
            return state, ours
        await asyncio.sleep(delay)  # poll the condition with backoff, bounded by give_up
        delay = min(delay * 2, 0.5)


_EVENTS = "SELECT seq, kind, at, actor, data FROM case_events WHERE case_id = $1 ORDER BY seq"
_RECORDED = (
    "SELECT EXISTS (SELECT 1 FROM case_events WHERE case_id = $1"
    " AND actor->>'request_id' = $2)"
)


async def _projected(
    pool: asyncpg.Pool, case_id: str, rid: str
) -> tuple[CaseState, CaseEvent] | None:
    """The case as projected and the event request ``rid`` caused, once the read model has
    it (None before). The events are read first: a miss costs one query."""
    rows = await pool.fetch(_EVENTS, case_id)
    if not any((r["actor"] or {}).get("request_id") == rid for r in rows):
        return None
    state = await read_model_copy(pool, case_id)
    if state is None:
        return None
    state.events = [CaseEvent.model_validate(dict(r)) for r in rows]
    ours = _caused_by(state, rid)
    return None if ours is None else (state, ours)


def _from_notice(snapshot: str, rid: str) -> tuple[CaseState, CaseEvent] | None:
    """The case as a projection's notice carried it (jiesu.readmodel.changes) and the event
    request ``rid`` caused, when that projection wrote it (None before)."""
    written = json.loads(snapshot)
    if not any((e["actor"] or {}).get("request_id") == rid for e in written["events"]):
        return None
    state = CaseState.model_validate({**written["state"], "events": written["events"]})
    ours = _caused_by(state, rid)
    return None if ours is None else (state, ours)


async def _first_look(
    pool: asyncpg.Pool, case_id: str, rid: str
) -> tuple[CaseState, CaseEvent] | None:
    """The look before any notice: a retry of an action already applied (the workflow ignores
    its signal) causes no projection to be told of, so its event is looked for in the read
    model — one indexed existence check, the case read only when it is there. A request with
    a random id cannot have been recorded before its own signal: nothing to look for."""
    if not await _recorded(pool, case_id, rid):
        return None
    return await _projected(pool, case_id, rid)


async def _recorded(pool: asyncpg.Pool, case_id: str, rid: str) -> bool:
    """Has the case recorded request ``rid``? A random id cannot have been (no query)."""
    return may_be_recorded(rid) and bool(await pool.fetchval(_RECORDED, case_id, rid))


async def _await_projection(
    pool: asyncpg.Pool, case_id: str, rid: str, changed: Change, give_up: float
) -> tuple[CaseState, CaseEvent] | None:
    """Look at the case each time a projection of it commits — in the notice when it carries
    the case, in the read model otherwise — until it shows the event this request caused;
    None at ``give_up``. The first look, unless a notice came already, is :func:`_first_look`."""
    loop = asyncio.get_running_loop()
    first = True
    while True:
        snapshot = changed.take()  # before the look: a projection committing meanwhile tells again
        with _tracer.start_as_current_span("action: look at the read model") as span:
            if snapshot is not None:
                found = _from_notice(snapshot, rid)
            elif first:
                found = await _first_look(pool, case_id, rid)
            else:
                found = await _projected(pool, case_id, rid)
            first = False
            span.set_attribute("jiesu.found", found is not None)
            span.set_attribute("jiesu.notice_bytes", len(snapshot) if snapshot else 0)
        remaining = give_up - loop.time()
        if found is not None or remaining <= 0:
            return found
        try:
            await asyncio.wait_for(changed.wait(), remaining)
        except TimeoutError:
            return None


async def _claim_key(pool: asyncpg.Pool, rid: str, action: Any) -> None:
    """A key's retry carries the body of its first attempt: another body is refused (422)
    rather than answered with what the first one did (jiesu.access.action_keys)."""
    if not await action_keys.claim(pool, rid, action_keys.body_digest(action)):
        raise ApiError(
            422, "idempotency_key_reused",
            "this Idempotency-Key was used for this action on this case with a different body",
        )  # fmt: skip


async def act(
    client: Client,
    state: CaseState,
    signal: Callable[..., Any],
    action: Any,
    check: Callable[[CaseState, Any], Refusal | None],
    target_id: str | None = None,
    request_id: str | None = None,
    *,
    stale: bool = False,
    pool: asyncpg.Pool | None = None,
    feed: ProjectionFeed | None = None,
    sent_at: datetime | None = None,
) -> ActionResult:
    """Answer a retry from the event its first attempt caused; otherwise check the action
    against the current state (the workflow checks again), signal it (to the case, or to
    ``target_id``, one of its children), and wait until the case has recorded it.

    How the answer learns the outcome: with a live ``feed`` (and ``pool``), from the read
    model, looked at when the case's projection commits — inside the workflow task that
    applied the signal, so before that task completes, and without a query to the workflow.
    The event there is the one the workflow recorded (applied, or refused with its reason),
    and the workflow decides the same on any retry of that task, as its history holds the
    signal. When the read model does not show it within READ_MODEL_WAIT_SECONDS (projection
    failing, feed lost), and for actions signalled to a child, the workflow is asked.

    On a ``stale`` copy (the read model, the workflow silent) only a refusal of who the
    caller is stands (403); a 409 from a copy that may be behind would refuse what the
    workflow accepts, so the action is signalled and the workflow judges it (202 when it
    cannot answer in time; 503 when the signal cannot be sent).

    ``sent_at``: when the request came in (api/actions.py ``Call.arrived``), the time the
    action carries (``Actor.sent_at``); now when not given."""
    rid = request_id or uuid.uuid4().hex
    if pool is not None and may_be_recorded(rid):
        await _claim_key(pool, rid, action)
    earlier = _caused_by(state, rid)
    if earlier is not None:  # a retry: same answer, no second signal
        return _outcome(state, earlier)
    refusal = check(state, action)
    if refusal is not None and (refusal.forbidden or not stale):
        raise refuse(refusal)
    # The request id on the actor lets us (and the workflow) find the event this request caused;
    # its time is when the request came in, should the worker apply it late (lean-case-v12):
    # taken by the caller before its reads, which wait the query's timeout for a silent worker
    sent = sent_at or datetime.now(UTC)
    actor = action.actor.model_copy(update={"request_id": rid, "sent_at": sent})
    action = action.model_copy(update={"actor": actor})
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(state.case_id)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + APPLY_WAIT_SECONDS
    target = client.get_workflow_handle(target_id or state.case_id)
    try:
        if pool is not None and feed is not None and target_id is None and feed.live:
            with feed.watch(state.case_id) as changed:
                await _signal(target, signal, action, give_up)
                wait_until = min(give_up, loop.time() + READ_MODEL_WAIT_SECONDS)
                found = await _await_projection(pool, state.case_id, rid, changed, wait_until)
            if found is not None:
                return _outcome(*found)
        else:
            await _signal(target, signal, action, give_up)
    except Ended as ended:
        raise _ended_answer(state.case_id, target_id) from ended
    current, ours = await _await_event(handle, state, rid, give_up)
    if ours is None:
        # A case past MAX_RECORDED_REJECTIONS refuses without an event: when the case as it
        # answered now (not the copy we started from) refuses the action, so did the workflow.
        refusal = check(current, action) if current is not state else None
        if refusal is not None:
            raise refuse(refusal)
        return ActionResult(applied=False, case=current)
    return _outcome(current, ours)


_SUMMARY_COLUMNS = (
    "case_id, status, title, category_id, grid_id, channel, urgency, department_id, "
    "received_at, accept_deadline, contact_deadline, finish_deadline, closed_at, rating, breaches, "
    "accepted_at, contacted_at"  # with the deadlines: jiesu.case.sla.is_late
)


# --- Keyset paging of the case list (GET /api/v1/complaints?after=…) ---------------------
#
# A cursor is the position of the last case of a page in the list's order (received_at DESC,
# case_id ASC): its received_at in microseconds since the epoch (PostgreSQL's own precision,
# so the position is exact) and its case number, as base64url (no padding) of
# "1:<microseconds>:<case_id>". It is not signed: it is a position, not a permission. The next
# page is still the caller's filters and scope (a department's own cases, a grid worker's
# grids) read from that position on, so a forged or borrowed cursor can only skip cases the
# caller could list anyway, or show nothing; and a position is no secret (any page shows
# received_at and case_id). It is checked strictly all the same: anything but a cursor this
# code would write is refused (422 invalid_cursor), never sent to PostgreSQL.

_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,200}")
_CURSOR_CASE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,100}")  # api.deps' case number in a path
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(received_at: datetime, case_id: str) -> str:
    micros = (received_at - _EPOCH) // timedelta(microseconds=1)
    raw = f"1:{micros}:{case_id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position a cursor of ``encode_cursor`` holds; ValueError for anything else
    (another encoding of the same position included)."""
    if not _CURSOR.fullmatch(cursor):
        raise ValueError("not base64url")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("not base64url of text") from exc
    version, _, rest = raw.partition(":")
    micros, _, case_id = rest.partition(":")
    if version != "1" or not re.fullmatch(r"-?[0-9]{1,18}", micros):
        raise ValueError("not a version 1 cursor")
    if not _CURSOR_CASE_ID.fullmatch(case_id):
        raise ValueError("not a case number")
    try:
        received_at = _EPOCH + timedelta(microseconds=int(micros))
    except OverflowError as exc:
        raise ValueError("out of range") from exc
    if encode_cursor(received_at, case_id) != cursor:
        raise ValueError("not the canonical form")
    return received_at, case_id


Position = tuple[datetime, str]
"""A row's place in the list's order: its (received_at, case_id), what a cursor holds."""
LIST_ORDER = "received_at DESC, case_id"
"""The case list's order (and every index it reads): newest first, then by case number."""


def after_sql(x: str, y: str, alias: str = "") -> str:
    """The rows after position ($x, $y) in the list's order. The row comparison
    (received_at, case_id) < (x, y) would order ties by case_id DESC; the list has
    received_at DESC, case_id ASC. So: the row comparison written out with the tie turned, and
    received_at <= x on its own, which the indexes take as their range's start (the tie's rows
    at x are filtered). ``alias``: the table's, with its dot ("c.")."""
    at, case = f"{alias}received_at", f"{alias}case_id"
    return f"{at} <= {x} AND ({at} < {x} OR {case} > {y})"


def above_sql(x: str, y: str, alias: str = "") -> str:
    """The rows before position ($x, $y) in the list's order (:func:`after_sql`, turned): a
    previous page read upwards from there, or the count of the rows above a page."""
    at, case = f"{alias}received_at", f"{alias}case_id"
    return f"{at} >= {x} AND ({at} > {x} OR {case} < {y})"


def position_of(row: Any) -> Position:
    """The position of a row of the list (a mapping with received_at and case_id)."""
    return row["received_at"], row["case_id"]


def _equal(equal: dict[str, Any], arg: Callable[[Any], str]) -> list[str]:
    """``column = value`` of each filter given (None = any); ``arg`` adds a value, gives its $n."""
    return [f"{column} = {arg(getattr(value, 'value', value))}"
            for column, value in equal.items() if value is not None]  # fmt: skip


Reader = asyncpg.Pool | asyncpg.Connection
"""Where a search reads: the pool, or one connection — a read-only repeatable-read
transaction's, so that a page, its count and its position are of one snapshot."""


async def count(
    pool: Reader, *, before: Position | None = None, **equal: Any
) -> int:
    """How many cases :func:`search` finds, all pages, with the same ``equal`` filters;
    ``before``: only those before this (received_at, case_id) in the list's order — the
    number of the rows above a page whose first row is there (its "第 a 件" is that + 1)."""
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where = _equal(equal, arg)
    if before is not None:  # as search's ``after``, turned: received_at >= x starts the range
        where.append(above_sql(arg(before[0]), arg(before[1])))
    sql = "SELECT count(*) FROM cases"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return await pool.fetchval(sql, *args)


async def search(
    pool: Reader,
    *,
    limit: int,
    offset: int = 0,
    after: Position | None = None,
    before: Position | None = None,
    overdue: bool | None = None,
    received_from: datetime | None = None,
    received_to: datetime | None = None,
    within: GridScope | None = None,
    **equal: Any,
) -> list[dict[str, Any]]:
    """Cases from the read model, newest first. ``equal`` maps column → value (None = any);
    ``within``: only a grid worker's cases (in their grids, or held by their grids' units);
    ``after``: only the cases after this (received_at, case_id) in the list's order;
    ``before``: the ``limit`` cases just before it (a previous page by keyset: read in the
    reverse order from there, then turned back), still newest first."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where.extend(_equal(equal, arg))
    if received_from is not None:
        where.append(f"received_at >= {arg(received_from)}")
    if received_to is not None:
        where.append(f"received_at < {arg(received_to)}")
    if overdue is not None:
        late = late_sql(arg(datetime.now(UTC)))
        where.append(late if overdue else f"NOT {late}")
    if after is not None:
        where.append(after_sql(arg(after[0]), arg(after[1])))
    order = f"ORDER BY {LIST_ORDER}"
    if before is not None:  # the same, turned: read upwards from the position
        where.append(above_sql(arg(before[0]), arg(before[1])))
        order = "ORDER BY received_at, case_id DESC"
    if within is None:
        sql = f"SELECT {_SUMMARY_COLUMNS} FROM cases"
        if where:
            sql += " WHERE " + " AND ".join(where)
    else:
        # A grid worker's cases: in their grids, or held by their grids' units. Written as
        # "grid_id = ANY(…) OR department_id = ANY(…)" the planner walked cases_received from
        # the newest case until it had a page (8,000–21,000 blocks at 1,000,000 cases,
        # docs/performance.md). Here: each grid's and each unit's own newest cases, read from
        # its index (cases_grid; cases_department or, overdue, cases_department_late) and
        # cut at the page's end, then merged. A unit's case in one of the grids is counted
        # once, with the grid: dropped from the unit's arm after its cut (each case of the page
        # is within the cut of its grid's arm), not inside it, where the unit's index would be
        # read past all its cases in the grids (a committee's are mostly in its own grids).
        grids, cap = arg(sorted(within.grids)), arg(limit + offset)
        units = arg(sorted(within.units))
        common = "".join(f" AND {w}" for w in where)

        def arm(array: str, alias: str, column: str) -> str:
            return (
                f"SELECT a.* FROM unnest({array}::text[]) {alias}(id) CROSS JOIN LATERAL "
                f"(SELECT {_SUMMARY_COLUMNS} FROM cases WHERE {column} = {alias}.id{common} "
                f"{order} LIMIT {cap}) a"
            )

        sql = (
            f"SELECT {_SUMMARY_COLUMNS} FROM ({arm(grids, 'g', 'grid_id')} UNION ALL "
            f"{arm(units, 'u', 'department_id')} WHERE a.grid_id <> ALL({grids}::text[])) c"
        )
    sql += f" {order} LIMIT {arg(limit)} OFFSET {arg(offset)}"
    rows = [dict(r) for r in await pool.fetch(sql, *args)]
    return rows[::-1] if before is not None else rows


async def perform(
    client: Client,
    pool: asyncpg.Pool,
    case_id: str,
    principal: Principal,
    signal: Callable[..., Any],
    make_action: Callable[[CaseState], Any],
    check: Callable[[CaseState, Any], Refusal | None],
    target: Callable[[CaseState], str] | None = None,
    *,
    action_name: str,
    idempotency_key: str | None = None,
    rpc_seconds: float = DEFAULT_QUERY_TIMEOUT_SECONDS,
    feed: ProjectionFeed | None = None,
    sent_at: datetime | None = None,
) -> ActionResult:
    """The whole of an action endpoint: find the case the caller may see, build the action
    (the actor comes from the API key), check it, signal it, wait for the workflow.

    Fast path: the read model's copy of the case (one indexed row) stands in for the query
    before the signal when it lets this caller see the case and allows the action; the
    workflow judges the action anyway and its answer (one query after the signal) is what the
    caller gets. Anything else — no copy yet, another department's case on the copy, an
    action the copy would refuse, a retry — asks the workflow first, as the copy may be
    behind."""
    rid = request_id(principal, case_id, action_name, idempotency_key)
    # An action for one of the case's children (改派's choice) with an Idempotency-Key may be
    # a retry: only the case's events tell, and the copy has none. The child does not know the
    # case's request ids, so a retry signalled to a later child was applied again there.
    # And whether 改派 takes a choice at all (a 二次交办 to a named department does not) is in
    # the events too: a child's action — a dispatcher's, rare — is judged on the case's state.
    copy = None if target else await read_model_copy(pool, case_id)
    if copy is not None and principal.can_see(copy):
        action = make_action(copy)
        if check(copy, action) is None:
            return await act(
                client, copy, signal, action, check, target(copy) if target else None, rid,
                stale=True, pool=pool, feed=feed, sent_at=sent_at,
            )  # fmt: skip
    try:
        found = await sourced_state(client, pool, case_id, principal, rpc_seconds)
    except ApiError as err:
        if err.status == 404 and (moved_on := await _moved_on(pool, case_id, rid)):
            raise moved_on from err
        raise
    state = found.state
    action = make_action(state)
    # A retry whose first attempt the case recorded is answered from that event (act): the
    # child it was signalled to may be gone, and asking the case for it would refuse the retry.
    retry = _caused_by(state, rid) is not None
    return await act(
        client, state, signal, action, check, target(state) if target and not retry else None,
        rid, stale=found.stale, pool=pool, feed=feed, sent_at=sent_at,
    )  # fmt: skip


async def _moved_on(pool: asyncpg.Pool, case_id: str, rid: str) -> ApiError | None:
    """A keyed retry of an action its first attempt applied, on a case the caller may no
    longer see (passed to another department since): not 404, which would say the action was
    never made — 409 ``case_moved_on``, and nothing of the case as it is now."""
    if not await _recorded(pool, case_id, rid):
        return None
    return ApiError(409, "case_moved_on", "this action was applied at its first attempt; the "
                    "case has since passed out of your hands")


async def read_model_copy(pool: asyncpg.Pool, case_id: str) -> CaseState | None:
    """The case as last projected, without its events (see :func:`perform`)."""
    with _tracer.start_as_current_span("action: read-model copy"):
        row = await pool.fetchval("SELECT state FROM cases WHERE case_id = $1", case_id)
        return CaseState.model_validate(row) if row is not None else None


async def department_ref(pool: asyncpg.Pool, department_id: str) -> str:
    """The name of a department that can be given work now; a 422 when there is no such
    department (``unknown_department``) or it is out of service (``department_retired``)."""
    try:
        return await departments.name_for_work(pool, department_id)
    except AdminRefused as exc:
        raise ApiError(422, exc.code, exc.message) from exc
