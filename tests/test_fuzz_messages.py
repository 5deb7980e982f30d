"""Property-based fuzz of what any Temporal client can send a case (the house rule: "every
message a workflow receives may come from any Temporal client with any payload; no input may
wedge a case, no retry may apply an action twice").

Each example starts a real case on the session's Temporal and worker, sends it a sequence of
messages — signals with known and unknown names, well-formed actions mutated into wrong types,
nulls, huge or control-laden strings, deep nesting, extra fields, NaN and huge numbers,
timestamps far past, far future or naive, request ids used twice, another department's id,
payloads in other encodings (binary/null, binary/plain, protobuf, unknown), the children's
messages sent to the case and the case's to its children — plus queries with wrong arguments
and an update (the case has no update handler). Then:

- no workflow task of the case (or of its children) failed (the history has no
  ``WorkflowTaskFailed``);
- the case is driven to its normal close by well-formed actions, each sent twice with one
  request id (a retry), and every request id is applied (or refused) once;
- the history replays (tests/helpers.py ``replay_checked``, as tests/test_replay.py does).

``JIESU_MESSAGE_FUZZ_EXAMPLES`` (default 40, about 40 s, to keep `make test` near 10
minutes; the API's fuzz has JIESU_FUZZ_EXAMPLES) sets the number of examples; the seed is
fixed (``derandomize``), so a run explores the same examples every time.
``--hypothesis-show-statistics`` shows what the examples reached.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import eventually, replay_checked
from hypothesis import HealthCheck, Phase, event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import RawValue
from temporalio.service import RPCError

from jiesu.case.domain import (
    CASE_STATE_PAGE_QUERY,
    CASE_STATE_QUERY,
    Actor,
    CaseFacts,
    CaseSignal,
    CaseStart,
    CaseState,
    EventKind,
    Role,
    Status,
    Urgency,
)
from jiesu.config import Settings
from workflows import ComplaintWorkflow

EXAMPLES = int(os.environ.get("JIESU_MESSAGE_FUZZ_EXAMPLES", "40"))
MESSAGES = 12  # at most, per example
UNHANDLED_COMMAND = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND
REQUEST_IDS = [f"fuzz-{i}" for i in range(4)]  # a small pool: ids are used twice, on purpose

CITIZEN = {"role": "citizen", "name": "citizen"}
URBAN = {"role": "department", "name": "urban clerk", "department_id": "urban-management"}
WATER = {"role": "department", "name": "water clerk", "department_id": "water"}
SUPERVISOR = {"role": "supervisor", "name": "supervisor"}
ACTORS = [CITIZEN, URBAN, WATER, SUPERVISOR, {"role": "admin", "name": "admin"},
          {"role": "system", "name": "jiesu"}, {"role": "operator", "name": "op"}]
SOON = "2099-01-01T00:00:00+00:00"

# A well-formed payload of each message (the fuzz mutates them).
TEMPLATES: dict[str, dict[str, Any]] = {
    "accept": {"actor": URBAN},
    "contact": {"actor": URBAN, "note": "called"},
    "reply": {"actor": URBAN, "outcome": "resolved", "text": "Turned down"},
    "dispatch": {"actor": SUPERVISOR, "department_id": "water", "department_name": "县水务局"},
    "rate": {"actor": CITIZEN, "rating": "satisfied", "comment": "ok"},
    "callback": {"actor": SUPERVISOR, "rating": "unsatisfied", "note": "phoned"},
    "return": {"actor": URBAN, "reason": "Not ours"},
    "decide_return": {"actor": SUPERVISOR, "upheld": False, "note": "It is yours"},
    "order_second_assignment": {"actor": SUPERVISOR, "reason": "Too slow",
                                "department_id": "market"},
    "hand_over": {"actor": SUPERVISOR, "department_id": "water", "reason": "Reorganised",
                  "from_department_id": "urban-management"},
    "raise_level": {"actor": URBAN, "reason": "Beyond our powers"},
    "request_extension": {"actor": URBAN, "reasons": "Parts", "measures": "Ordered",
                          "promised_finish": "2026-12-31T00:00:00+00:00"},
    "decide_extension": {"actor": SUPERVISOR, "approved": True},
    "add_co_handlers": {"actor": SUPERVISOR, "departments": [{"id": "water", "name": "水务"}],
                        "due": SOON},
    "contribute": {"actor": WATER, "text": "Pipe checked"},
    "waive_co_handler": {"actor": SUPERVISOR, "department_id": "water"},
    "supervise": {"actor": SUPERVISOR, "note": "hurry", "form": "remind"},
    "repeat_report": {"report_id": "r-1", "actor": CITIZEN, "channel": "hotline",
                      "description": "again", "received_at": "2026-11-23T00:00:00+00:00"},
    "supplement": {"actor": CITIZEN, "text": "The shop is No. 12"},
    "withdraw": {"actor": CITIZEN, "reason": "sorted"},
    "escalation_step": {"n": 1, "level": 2},
    # the children's messages (sent to the case, and to the children)
    "choose": {"actor": SUPERVISOR, "department_id": "water", "department_name": "水务"},
    "stop": {},
}
assert set(TEMPLATES) >= {s.value for s in CaseSignal}

JSON_LEAF = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from([
        "", "\x00", "\ud800", "x" * 300_000, "1e309", "NaN", "-1",
        "2026-11-23T00:00:00",  # naive
        "0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59+00:00", "1969-12-31T23:59:59Z",
        "2026-13-45T99:99:99+00:00", "946684800", SOON,
    ]),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)


DEEP = "<deep>"  # where a mutation nests objects deeper than json.dumps recurses


def _deep(n: int) -> bytes:
    return b'{"actor": ' * n + b'"bottom"' + b"}" * n


def raw(data: bytes, encoding: bytes = b"json/plain", **meta: bytes) -> RawValue:
    return RawValue(Payload(metadata={"encoding": encoding, **meta}, data=data))


def as_json(value: Any, deep: int = 0) -> RawValue:
    """JSON as a careless client writes it: NaN and Infinity literals, escaped surrogates;
    ``deep``: the value's DEEP string is that many objects nested."""
    data = json.dumps(value, allow_nan=True).encode()
    return raw(data.replace(json.dumps(DEEP).encode(), _deep(deep)) if deep else data)


ODD_PAYLOADS = st.sampled_from([
    raw(b"", b"binary/null"),  # what a client sends for None
    raw(b"hello", b"binary/plain"),  # ... and for bytes
    raw(b"{}", b"json/protobuf", messageType=b"google.protobuf.Empty"),
    raw(b"", b"binary/protobuf", messageType=b"google.protobuf.Empty"),
    raw(b"\x00\xff", b"x/unknown"),
    raw(b"null"), raw(b"{not json"), raw(b"[]"), raw(b'"accept"'),
    raw(_deep(5000)),  # nesting deeper than any parser's
])


@st.composite
def mutated(draw: st.DrawFn, name: str) -> RawValue:
    """A payload built from ``name``'s template, changed the way a careless client would."""
    value: dict[str, Any] = json.loads(json.dumps(TEMPLATES.get(name) or TEMPLATES["accept"]))
    if "actor" in value:
        actor = dict(draw(st.sampled_from([value["actor"]] * 3 + ACTORS)))
        if draw(st.booleans()):
            actor["request_id"] = draw(st.sampled_from(REQUEST_IDS))
        value["actor"] = actor
    deep = 0
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        how = draw(st.sampled_from(["drop", "junk", "extra", "deep", "actor", "dept", "none"]))
        keys = sorted(value)
        if how == "drop" and keys:
            value.pop(draw(st.sampled_from(keys)))
        elif how == "junk" and keys:
            value[draw(st.sampled_from(keys))] = draw(JSON)
        elif how == "extra":
            value[draw(st.text(min_size=1, max_size=8))] = draw(JSON)
        elif how == "deep" and keys:
            value[draw(st.sampled_from(keys))] = DEEP
            deep = draw(st.integers(50, 3000))
        elif how == "actor" and isinstance(value.get("actor"), dict):
            value["actor"][draw(st.sampled_from(["role", "name", "department_id", "request_id",
                                                 "person", "extra"]))] = draw(JSON)
        elif how == "dept":  # the right action with another department's id
            value["actor"] = dict(WATER, request_id=draw(st.sampled_from(REQUEST_IDS)))
        elif how == "none":
            return as_json(None)
    return as_json(value, deep)


DEPARTMENTS = ["urban-management", "water", "market", "police", "centre", "no-such-dept"]
MOMENTS = ["2000-01-01T00:00:00+00:00", "2026-11-23T00:00:00+00:00", "2026-12-31T00:00:00+08:00",
           "2027-03-01T00:00:00+00:00", SOON, "2100-12-31T23:59:59+00:00"]


@st.composite
def well_formed(draw: st.DrawFn) -> tuple[str, str, list[RawValue]]:
    """A message that decodes: a real action with its fields varied (another department, a
    deadline past or far ahead, another form), from the right actor or another, often with a
    request id used before — the lifecycle's rules, not the decoder, must take it."""
    name = draw(st.sampled_from(sorted(TEMPLATES)))
    value: dict[str, Any] = json.loads(json.dumps(TEMPLATES[name]))
    if "actor" in value:
        actor = dict(draw(st.sampled_from([value["actor"]] * 4 + ACTORS)))
        if draw(st.booleans()):
            actor["request_id"] = draw(st.sampled_from(REQUEST_IDS))
        value["actor"] = actor
    for key in ("department_id",):
        if key in value and draw(st.booleans()):
            value[key] = draw(st.sampled_from(DEPARTMENTS))
    for key in ("due", "promised_finish", "received_at"):
        if key in value and draw(st.booleans()):
            value[key] = draw(st.sampled_from(MOMENTS))
    if name == "add_co_handlers" and draw(st.booleans()):
        ids = draw(st.lists(st.sampled_from(DEPARTMENTS), min_size=1, max_size=3))
        value["departments"] = [{"id": d, "name": d} for d in ids]
    if name == "supervise":
        form = draw(st.sampled_from(["remind", "urge", "supervise", "joint_handling",
                                     "accountability"]))
        value["form"] = form
        if form == "joint_handling":
            ids = draw(st.lists(st.sampled_from(DEPARTMENTS), min_size=1, max_size=2))
            value["department_ids"] = ids
            value["departments"] = [{"id": d, "name": d} for d in ids]
        if form == "accountability":
            value.update(note="Late again", persons=["clerk"], decision="A warning")
        if draw(st.booleans()):
            value["due"] = draw(st.sampled_from(MOMENTS))
    if name in ("rate", "callback"):
        value["rating"] = draw(st.sampled_from(["satisfied", "basically_satisfied",
                                                "unsatisfied"]))
    if name in ("decide_return", "decide_extension"):
        key = "upheld" if name == "decide_return" else "approved"
        value[key] = draw(st.booleans())
    if name == "escalation_step":
        value = {"n": draw(st.integers(-1, 3)), "level": draw(st.integers(1, 5))}
    if name == "repeat_report":
        value["report_id"] = draw(st.sampled_from(["r-1", "r-2", "r-3", "r-4"]))
    target = draw(st.sampled_from(["case"] * 8 + ["reassign", "escalation", "retry"]))
    return target, name, [as_json(value)]


ADVANCE = ("advance", "", [])
"""One well-formed step of the case's normal path, so that the messages after it meet the case
in its later states (handling, replied, reassigning, ...)."""


@st.composite
def message(draw: st.DrawFn) -> tuple[str, str, list[RawValue]]:
    """(target: case | reassign | escalation | retry | advance, signal name, payloads);
    ``retry``: the message before, sent again."""
    name = draw(st.one_of(
        st.sampled_from(sorted(TEMPLATES)),
        st.sampled_from(sorted(TEMPLATES)),
        st.sampled_from(sorted(TEMPLATES)),
        st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20),
        st.sampled_from(["ACCEPT", "accept ", "_message", "__stack_trace", "__temporal_x",
                         "x" * 1000]),
    ))
    target = draw(st.sampled_from(["case"] * 6 + ["reassign", "escalation", "retry"]))
    count = draw(st.sampled_from([1, 1, 1, 1, 1, 1, 0, 2]))
    payloads = [
        draw(st.one_of(mutated(name), ODD_PAYLOADS, mutated(name), ODD_PAYLOADS,
                       JSON.map(as_json)))
        for _ in range(count)
    ]
    return target, name, payloads


def start_of(case_id: str) -> CaseStart:
    facts = CaseFacts(title="Loudspeaker", category_id="noise_commercial",
                      grid_id="G-QH-01-01-1", address=f"幸福路{case_id}")
    return CaseStart(case_id=case_id, facts=facts, urgency=Urgency.GENERAL,
                     received_at=datetime.now(UTC),
                     registered_by=Actor(role=Role.OPERATOR, name="fuzz"))


async def _state(h: WorkflowHandle[Any, Any]) -> CaseState:
    return await h.query(ComplaintWorkflow.state)


async def _failed_tasks(h: WorkflowHandle[Any, Any]) -> list[str]:
    """The workflow's failed tasks, but the server's UnhandledCommand: a signal arrived while
    the task completed the workflow, and the worker runs the task again with it (normal).
    Failed activities and local activities (a projection the read model refused) too."""
    history = await h.fetch_history()
    failed = [
        e.workflow_task_failed_event_attributes
        for e in history.events
        if e.HasField("workflow_task_failed_event_attributes")
    ]
    activities = [
        e.activity_task_failed_event_attributes.failure.message
        for e in history.events
        if e.HasField("activity_task_failed_event_attributes")
    ]
    local = [
        e.marker_recorded_event_attributes.failure.message
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
        and e.marker_recorded_event_attributes.HasField("failure")
    ]
    return [f.failure.message for f in failed if f.cause != UNHANDLED_COMMAND] + activities + local


async def _send(client: Client, case_id: str, target: str, name: str, args: list[RawValue]
                ) -> str | None:
    """Send to the case or to one of its children; the id of the workflow it went to."""
    workflow_id = case_id
    if target != "case":
        s = await _state(client.get_workflow_handle(case_id))
        if target == "reassign" and s.reassignment is not None:
            workflow_id = s.reassignment.child_id
        elif target == "escalation" and s.escalation is not None:
            workflow_id = f"{case_id}-escalation-{s.escalation.n}"
    try:
        await client.get_workflow_handle(workflow_id).signal(name, args=args)
    except RPCError:  # refused by the server (a reserved name, a child that ended): not ours
        return None
    return workflow_id


async def _wrong_questions(h: WorkflowHandle[Any, Any]) -> None:
    """Queries with wrong arguments, an unknown query and an update: each may fail, alone."""
    asks = [(CASE_STATE_PAGE_QUERY, ["x"]), (CASE_STATE_PAGE_QUERY, []),
            (CASE_STATE_PAGE_QUERY, [None]), (CASE_STATE_PAGE_QUERY, [2**70]),
            (CASE_STATE_QUERY, [1, 2]), ("no_such_query", [])]
    for name, args in asks:
        with contextlib.suppress(Exception):  # the query's own failure is the point
            await h.query(name, args=args)
    with contextlib.suppress(Exception):  # the case has no update handler: refused
        await h.execute_update("no_such_update", args=[{"x": 1}])


def _driver_action(s: CaseState) -> tuple[str, str, dict[str, Any]] | None:
    """The next well-formed action of the case's normal path: (target, signal, payload)."""
    dept = {"role": "department", "name": "clerk", "department_id": s.department_id}
    if s.status is Status.DISPATCHING:
        return "case", "dispatch", {"actor": SUPERVISOR, "department_id": "urban-management",
                                    "department_name": "城管局"}
    if s.status is Status.REASSIGNING and s.reassignment is not None:
        return "reassign", "choose", {"actor": SUPERVISOR, "department_id": "urban-management",
                                      "department_name": "城管局"}
    if s.status is Status.ASSIGNED:
        return "case", "accept", {"actor": dept}
    if s.status is Status.HANDLING:
        if s.pending_return is not None:
            return "case", "decide_return", {"actor": SUPERVISOR, "upheld": False,
                                             "note": "It is yours"}
        waiting = [c.department_id for c in s.co_handlers if not c.done]
        if waiting:
            return "case", "waive_co_handler", {"actor": SUPERVISOR,
                                                "department_id": waiting[0]}
        if s.contacted_at is None:
            return "case", "contact", {"actor": dept}
        return "case", "reply", {"actor": dept, "outcome": "resolved", "text": "Done"}
    if s.status is Status.REPLIED and s.rating is None:
        return "case", "rate", {"actor": CITIZEN, "rating": "satisfied"}
    return None  # registered, reassigning by rule, or rated: the case moves by itself


async def _advance(client: Client, case_id: str) -> str | None:
    """One well-formed step, sent twice with one request id (a client's retry); waits until
    the case moved. The request id, or None when the case moves by itself (or has closed)."""
    h = client.get_workflow_handle(case_id)
    if (await h.describe()).status is not WorkflowExecutionStatus.RUNNING:
        return None
    s = await _state(h)
    step = _driver_action(s)
    request_id = None
    if step is not None:
        target, name, payload = step
        request_id = f"drive-{uuid.uuid4().hex[:8]}"
        payload = dict(payload, actor=dict(payload["actor"], request_id=request_id))
        for _ in range(2):
            await _send(client, case_id, target, name, [as_json(payload)])

    async def moved() -> bool:
        now = await _state(h)
        return len(now.events) != len(s.events) or now.status is Status.CLOSED

    await eventually(moved, within=30)
    return request_id


async def _drive_to_close(client: Client, case_id: str) -> tuple[CaseState, list[str]]:
    """Well-formed actions until the case closes; each sent twice with one request id."""
    h = client.get_workflow_handle(case_id)
    sent: list[str] = []
    for _ in range(40):
        s = await _state(h)
        if s.status is Status.CLOSED:
            return s, sent
        request_id = await _advance(client, case_id)
        if request_id is not None:
            sent.append(request_id)
    raise AssertionError(f"{case_id} did not close: {(await _state(h)).status}")


def _applied_once(s: CaseState) -> None:
    """Every request id's action was applied (or refused) once: no event kind twice under
    one id, and a refusal never next to what the action did."""
    by_id: dict[str, Counter[EventKind]] = {}
    for e in s.events:
        if e.actor.request_id is not None:
            by_id.setdefault(e.actor.request_id, Counter())[e.kind] += 1
    for request_id, kinds in by_id.items():
        twice = [k for k, n in kinds.items() if n > 1]
        assert not twice, f"{s.case_id}: request {request_id} applied twice: {kinds}"
        if EventKind.REJECTED in kinds:
            assert len(kinds) == 1, f"{s.case_id}: request {request_id} both: {kinds}"


@pytest.mark.timeout(600)
@hypothesis_settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    # no shrinking: each example costs seconds (a failure prints its example as drawn)
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@example(  # a client's None, bytes and protobuf message, each once wedged a case
    messages=[("case", "accept", [raw(b"", b"binary/null")]),
              ("case", "escalation_step", [raw(b"x", b"binary/plain")]),
              ("case", "supplement", [raw(b"{}", b"json/protobuf",
                                          messageType=b"google.protobuf.Empty")])],
    with_start_signal=False,
)
@given(messages=st.lists(st.one_of(message(), well_formed(), well_formed(), st.just(ADVANCE)),
                         min_size=1, max_size=MESSAGES),
       with_start_signal=st.booleans())
async def test_no_message_wedges_a_case(
    client: Client,
    settings: Settings,
    messages: list[tuple[str, str, list[RawValue]]],
    with_start_signal: bool,
) -> None:
    case_id = f"JS-FUZZ-{uuid.uuid4().hex[:10]}"
    first = messages[0]
    with_start: dict[str, Any] = {}
    if first[0] == "case" and first[1] and with_start_signal:
        # signal-with-start: the message is in the case's first workflow task, before its plan
        # (a department's action waits for the plan: actions-wait-for-plan-v1)
        with_start = {"start_signal": first[1], "start_signal_args": first[2]}
        messages = messages[1:]
    try:
        h = await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                        task_queue=settings.task_queue, **with_start)
    except RPCError:  # a signal name the server refuses
        h = await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                        task_queue=settings.task_queue)
    try:
        await eventually(lambda: _planned(h), within=30)
        failed = await _failed_tasks(h)
        assert not failed, f"{case_id}: a task failed in the first task: {failed[:1]}"
        touched = {case_id}
        before: tuple[str, str, list[RawValue]] = ADVANCE
        for target, name, payloads in messages:
            if target == "advance":
                await _advance(client, case_id)
                continue
            if target == "retry":
                target, name, payloads = before
                if target == "advance":
                    continue
            before = (target, name, payloads)
            sent_to = await _send(client, case_id, target, name, payloads)
            if sent_to is not None:
                touched.add(sent_to)
        await _wrong_questions(h)
        await _heard(client, case_id)
        for workflow_id in sorted(touched):
            failed = await _failed_tasks(client.get_workflow_handle(workflow_id))
            assert not failed, f"{workflow_id}: a task failed: {failed[:1]}"
        final, driven = await _drive_to_close(client, case_id)
        for workflow_id in sorted(touched):
            failed = await _failed_tasks(client.get_workflow_handle(workflow_id))
            assert not failed, f"{workflow_id}: a task failed: {failed[:1]}"
        assert final.status is Status.CLOSED
        for e in final.events:
            if e.kind is EventKind.REJECTED:
                event(f"rejected {e.data.get('code')}")
            elif e.actor.request_id and e.actor.request_id.startswith("fuzz-"):
                event(f"applied {e.kind.value}")
        event(f"closed {final.resolution}")
        _applied_once(final)
        for request_id in driven:
            assert any(e.actor.request_id == request_id for e in final.events), request_id
        outcome = await h.result()
        assert outcome.status is Status.CLOSED
        await replay_checked(await h.fetch_history())
    finally:
        if (await h.describe()).status is WorkflowExecutionStatus.RUNNING:
            await h.terminate("fuzz example over")


async def _heard(client: Client, case_id: str) -> None:
    """Wait until the case has handled every message sent before a marker (a supplement with
    its own request id, applied or refused), or a workflow task of it failed."""
    h = client.get_workflow_handle(case_id)
    if (await h.describe()).status is not WorkflowExecutionStatus.RUNNING:
        return
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    await h.signal("supplement", {"actor": dict(CITIZEN, request_id=marker), "text": "marker"})

    async def marked() -> bool:
        if await _failed_tasks(h):
            return True
        if (await h.describe()).status is not WorkflowExecutionStatus.RUNNING:
            return True
        return any(e.actor.request_id == marker for e in (await _state(h)).events)

    await eventually(marked, within=30)


async def _planned(h: WorkflowHandle[Any, Any]) -> bool:
    """Planned (or closed), or a workflow task failed (a query would wait on it)."""
    if await _failed_tasks(h):
        return True
    try:
        state = await h.query(ComplaintWorkflow.state, rpc_timeout=timedelta(seconds=2))
    except RPCError:
        return False
    return state.status is not Status.REGISTERED
