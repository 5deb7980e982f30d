"""A reassignment child (改派) that ends without a choice (reassignment-child-ended-v1, epoch
``lean-case-v6``).

An operator may terminate the case's reassignment child in Temporal, or it may fail or be
cancelled. Its failure reached the case, which awaited the child's choice, and failed the
case's workflow: the case stood ``reassigning`` for ever, with nobody to hold it. Now the case
records ``reassignment_failed`` and, as the child does when its routing refuses the case, puts
it in the centre's dispatch queue (待派单) in a new round; a dispatcher assigns it from there.
"""

from __future__ import annotations

from typing import Any

import httpx
from helpers import (
    SUPERVISOR,
    act,
    case_when,
    department,
    eventually,
    exists,
    handle_of,
    keep_history,
    register,
    withdrawn_to_its_close,
)
from temporalio.client import Client, WorkflowExecutionStatus

from jiesu.case.domain import CENTRE_ID

URBAN = department("urban-management")
POLICE = department("police")


async def _state(api: httpx.AsyncClient, client: Client, case_id: str, test: Any) -> dict:
    handle = handle_of(client, case_id)

    async def not_failed() -> None:
        described = await handle.describe()
        assert described.status is not WorkflowExecutionStatus.FAILED, "the case failed"

    return await case_when(api, case_id, test, first=not_failed)


async def test_a_terminated_reassignment_child_sends_the_case_to_the_centre_queue(
    api: httpx.AsyncClient, client: Client
) -> None:
    created = await register(api)  # → urban management
    case_id, token = created["case_id"], created["citizen_token"]
    await _state(api, client, case_id, lambda s: s["status"] == "assigned")
    await act(api, case_id, "return", URBAN, reason="Amplified music at night is police work")
    await _state(api, client, case_id, lambda s: s["status"] == "reassigning")
    child = client.get_workflow_handle(f"{case_id}-reassign-1")
    await eventually(lambda: exists(child), within=30)
    await child.terminate("an operator ended the reassignment")

    state = await _state(api, client, case_id, lambda s: s["status"] == "dispatching")
    assert state["reassignment"] is None and state["round"] == 2
    assert state["assignment"]["department_id"] == CENTRE_ID
    kinds = [e["kind"] for e in state["events"]]
    assert kinds[-4:] == ["reassignment_failed", "deadlines_set", "reassigned", "queued"], kinds
    failed = next(e for e in state["events"] if e["kind"] == "reassignment_failed")
    assert failed["data"]["n"] == 1 and failed["data"]["child_id"] == f"{case_id}-reassign-1"

    # the centre dispatches it, and the case goes on to its end
    await act(api, case_id, "dispatch", SUPERVISOR, department_id="police")
    await _state(api, client, case_id, lambda s: s["status"] == "assigned")
    await act(api, case_id, "accept", POLICE)
    handle = await withdrawn_to_its_close(api, client, case_id, token)
    await keep_history(handle, "reassignment_child_terminated")
