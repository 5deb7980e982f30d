"""Every message a case receives, from any Temporal client, is applied or recorded as a
rejection — never a failed workflow task (issue 9, point 1), and a retried action is applied
once (point 5, the workflow's half)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from google.protobuf.empty_pb2 import Empty
from helpers import eventually, handle_of, register
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import RawValue
from temporalio.service import RPCError

from jiesu.case.domain import (
    AcceptAction,
    Actor,
    CaseSignal,
    CaseStart,
    CaseState,
    ComplaintIntake,
    EventKind,
    Role,
    Status,
    SupervisionAction,
    SupplementAction,
    Urgency,
)
from jiesu.config import Settings
from workflows import ComplaintWorkflow, ReassignmentWorkflow

URBAN = Actor(role=Role.DEPARTMENT, name="urban clerk", department_id="urban-management")
CITIZEN = Actor(role=Role.CITIZEN, name="Wang Fang")

# (signal name, the payloads a careless or hostile client sends)
MALFORMED: list[tuple[str, list[Any]]] = [
    ("accept", []),  # no input: a typed handler wedged the case on this
    ("accept", [{"actor": URBAN.model_dump()}, {"actor": URBAN.model_dump()}]),  # two inputs
    ("accept", [{"bogus": 1}]),
    ("accept", ["x"]),
    ("accept", [{"actor": {"role": "mayor", "name": "someone"}}]),  # unknown role
    ("reply", [{"actor": URBAN.model_dump(), "outcome": "resolved"}]),  # text missing
    ("accept", [RawValue(Payload(metadata={"encoding": b"x/unknown"}, data=b"\x00\xff"))]),
    # data the read model cannot store: a NUL in free text, an extension to year 9999
    ("supplement", [{"actor": CITIZEN.model_dump(), "text": "NUL \u0000 here"}]),
    ("request_extension", [{
        "actor": URBAN.model_dump(), "reasons": "Parts on order", "measures": "Ordered",
        "promised_finish": "9999-12-31T00:00:00+00:00",
    }]),
]


async def _state(client: Client, case_id: str) -> CaseState:
    return await handle_of(client, case_id).query(ComplaintWorkflow.state)


async def _assigned_case(api: httpx.AsyncClient, client: Client) -> str:
    case_id = (await register(api))["case_id"]

    async def assigned() -> bool:
        return (await _state(client, case_id)).status is Status.ASSIGNED

    await eventually(assigned)
    return case_id


def _rejections(state: CaseState, code: str) -> list[dict[str, Any]]:
    return [e.data for e in state.events if e.kind is EventKind.REJECTED and e.data["code"] == code]


async def test_malformed_messages_are_recorded_and_the_case_goes_on(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = await _assigned_case(api, client)
    handle = handle_of(client, case_id)
    for name, payloads in MALFORMED:
        await handle.signal(name, args=payloads)
    await handle.signal("frobnicate", "hello")
    await handle.signal(ComplaintWorkflow.accept, AcceptAction(actor=URBAN))

    async def accepted() -> CaseState | None:
        state = await _state(client, case_id)
        return state if state.status is Status.HANDLING else None

    state = await eventually(accepted)
    invalid = _rejections(state, "invalid_payload")
    assert len(invalid) == len(MALFORMED), invalid
    assert {r["action"] for r in invalid} == {
        "accept", "reply", "supplement", "request_extension"
    }
    assert all("\x00" not in r["payload"] for r in invalid)  # printable, storable
    assert [r["action"] for r in _rejections(state, "unknown_signal")] == ["frobnicate"]
    # the auditor's read model has them too: the projection did not choke on any of them
    rows = await eventually(lambda: _projected_rejections(api, case_id, len(MALFORMED) + 1))
    assert rows


async def _projected_rejections(api: httpx.AsyncClient, case_id: str, n: int) -> bool:
    from helpers import AUDITOR

    response = await api.get(f"/api/v1/complaints/{case_id}/history", headers=AUDITOR)
    if response.status_code != 200:
        return False
    return response.text.count("invalid_payload") + response.text.count("unknown_signal") >= n


async def test_a_retried_action_is_applied_once(api: httpx.AsyncClient, client: Client) -> None:
    case_id = await _assigned_case(api, client)
    handle = handle_of(client, case_id)
    retried = SupplementAction(
        actor=CITIZEN.model_copy(update={"request_id": "idem-test-1"}), text="The shop is No. 12"
    )
    for _ in range(3):  # a client retrying after timeouts
        await handle.signal(CaseSignal.SUPPLEMENT, retried)
    other = SupplementAction(
        actor=CITIZEN.model_copy(update={"request_id": "idem-test-2"}), text="Also on Sundays"
    )
    await handle.signal(CaseSignal.SUPPLEMENT, other)

    async def both_seen() -> list[str] | None:
        state = await _state(client, case_id)
        texts = [e.data["text"] for e in state.events if e.kind is EventKind.SUPPLEMENTED]
        return texts if "Also on Sundays" in texts else None

    assert await eventually(both_seen) == ["The shop is No. 12", "Also on Sundays"]


async def test_a_retried_refusal_is_recorded_once(api: httpx.AsyncClient, client: Client) -> None:
    case_id = await _assigned_case(api, client)
    handle = handle_of(client, case_id)
    stranger = Actor(role=Role.DEPARTMENT, name="x", department_id="water", request_id="idem-r")
    for _ in range(2):
        await handle.signal(ComplaintWorkflow.accept, AcceptAction(actor=stranger))
    await handle.signal(ComplaintWorkflow.accept, AcceptAction(actor=URBAN))

    async def accepted() -> CaseState | None:
        state = await _state(client, case_id)
        return state if state.status is Status.HANDLING else None

    state = await eventually(accepted)
    refused = [e for e in state.events if e.kind is EventKind.REJECTED]
    assert len(refused) == 1, refused


@pytest.mark.parametrize("payloads", [[], [{"bogus": 1}], ["x", "y"]])
async def test_children_ignore_malformed_messages(
    api: httpx.AsyncClient, client: Client, payloads: list[Any]
) -> None:
    """The reassignment child's ``choose`` must not wedge on junk either: the case still gets
    its automatic reassignment after a department returns it."""
    case_id = await _assigned_case(api, client)
    handle = handle_of(client, case_id)
    await handle.signal(
        ComplaintWorkflow.return_case,
        {"actor": URBAN.model_dump(), "reason": "Not ours: private property"},
    )

    async def child_id() -> str | None:
        pending = (await _state(client, case_id)).reassignment
        return pending.child_id if pending else None

    child = client.get_workflow_handle(await eventually(child_id))

    async def child_started() -> bool:
        try:
            await child.describe()
        except RPCError:
            return False
        return True

    await eventually(child_started)
    await child.signal("choose", args=payloads)
    await child.signal("nonsense")
    dispatcher = Actor(role=Role.SUPERVISOR, name="dispatcher")
    choice = {"actor": dispatcher.model_dump(), "department_id": "water",
              "department_name": "县水务局"}
    await child.signal(ReassignmentWorkflow.choose, choice)

    async def reassigned() -> bool:
        state = await _state(client, case_id)
        return state.department_id == "water" and state.status is Status.ASSIGNED

    await eventually(reassigned)
    history = await child.fetch_history()
    failed = [e for e in history.events if e.HasField("workflow_task_failed_event_attributes")]
    assert not failed


async def test_supervision_in_the_first_task_starts_the_ladder(
    client: Client, settings: Settings
) -> None:
    """A message in the case's very first workflow task (signal-with-start, as a repeat report
    of a case whose intake is still pending) arrives before routing and deadlines: the ladder
    it starts must not fail on the missing deadlines."""
    case_id = f"JS-FIRST-TASK-{uuid.uuid4().hex[:8]}"
    intake = ComplaintIntake(
        title="Junk yard smell", description="A recycling yard burns plastic at night",
        category_id="odour_pollution", grid_id="G-QH-02-01-1",
        citizen={"name": "Li Lei", "phone": "13900002222"},
    )
    start = CaseStart(
        case_id=case_id, intake=intake, urgency=Urgency.GENERAL, received_at=datetime.now(UTC),
        registered_by=Actor(role=Role.OPERATOR, name="test"),
    )
    supervisor = Actor(role=Role.SUPERVISOR, name="supervisor")
    handle = await client.start_workflow(
        ComplaintWorkflow.run, start, id=case_id, task_queue=settings.task_queue,
        start_signal=CaseSignal.SUPERVISE,
        start_signal_args=[SupervisionAction(actor=supervisor, note="at once")],
    )
    ladder = client.get_workflow_handle(f"{case_id}-escalation-1")

    async def ladder_running() -> bool:
        try:
            return (await ladder.describe()).status is WorkflowExecutionStatus.RUNNING
        except RPCError:
            return False

    try:
        await eventually(ladder_running)
    finally:
        await handle.terminate("test over")


# What a Temporal client sends for a None, for bytes and for a protobuf message: payloads in
# the encodings binary/null, binary/plain and json/protobuf, which the payload converter
# decodes whatever type it is asked for (None, the bytes, the message) instead of failing.
NOT_JSON: dict[str, Any] = {"null": None, "bytes": b"accept", "protobuf": Empty()}


@pytest.mark.parametrize("sent", list(NOT_JSON))
@pytest.mark.parametrize("signal", ["accept", "escalation_step"])
async def test_a_payload_that_is_not_json_is_refused(
    api: httpx.AsyncClient, client: Client, signal: str, sent: str
) -> None:
    """``handle.signal("accept", None)``: the workflow got None (or bytes, or an Empty) where it
    expected an action, its rule read ``payload.actor`` and every retry of the workflow task
    failed (AttributeError): the case was wedged. The message is recorded as
    ``invalid_payload`` now, and the case goes on."""
    case_id = await _assigned_case(api, client)
    handle = handle_of(client, case_id)
    await handle.signal(signal, NOT_JSON[sent])
    await handle.signal(ComplaintWorkflow.accept, AcceptAction(actor=URBAN))

    async def accepted_or_failed() -> bool:
        history = await handle.fetch_history()
        if any(e.HasField("workflow_task_failed_event_attributes") for e in history.events):
            return True
        try:  # a query waits on a failing workflow task until its RPC times out
            state = await handle.query(ComplaintWorkflow.state, rpc_timeout=timedelta(seconds=2))
        except RPCError:
            return False
        return state.status is Status.HANDLING

    await eventually(accepted_or_failed, within=30)
    history = await handle.fetch_history()
    failed = [e.workflow_task_failed_event_attributes.failure.message
              for e in history.events if e.HasField("workflow_task_failed_event_attributes")]
    assert not failed, failed
    invalid = _rejections(await _state(client, case_id), "invalid_payload")
    assert [r["action"] for r in invalid] == [signal], invalid
    await handle.terminate("test over")
