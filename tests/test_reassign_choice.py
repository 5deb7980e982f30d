"""改派 after a 退单 taken (upheld, or taken without approval as in this session): the
dispatcher does not send the case back to the unit whose return was taken — it said the case is
not its own and the centre agreed; sent back, it would return it again, each return spending
one of the case's reassignments (the red team of 2026-11-24 measured a second return listing
the unit twice in ``returned_by``)."""

from __future__ import annotations

import httpx
from helpers import (
    OPERATOR,
    SUPERVISOR,
    act,
    case,
    case_when,
    department,
    handle_of,
    refusals,
    register,
    until,
)
from temporalio.client import Client

from jiesu.case.domain import CENTRE_ID, Actor, Role, Status
from workflows.reassignment import ReassignmentWorkflow

URBAN = department("urban-management")


async def test_the_unit_whose_return_was_upheld_is_not_chosen_again(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = (await register(api))["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    await act(api, case_id, "return", URBAN, reason="Not ours: the police's")  # taken at once
    await case_when(api, case_id, lambda s: s["status"] == "reassigning")
    refused = await act(api, case_id, "reassign", SUPERVISOR, expect=409,
                        department_id="urban-management")  # fmt: skip
    assert refused["error"]["code"] == "returned_by_this_unit", refused
    assert (await case(api, case_id, OPERATOR))["status"] == "reassigning"  # unchanged
    await act(api, case_id, "reassign", SUPERVISOR, department_id="police")
    await case_when(api, case_id, lambda s: s["assignment"]["department_id"] == "police")
    await handle_of(client, case_id).terminate("test finished")


async def test_the_case_refuses_the_returning_unit_chosen_by_another_client(
    api: httpx.AsyncClient, client: Client
) -> None:
    """The same choice sent straight to the reassignment child by any Temporal client, past the
    API (lean-case-v33): the case refuses it and the centre's queue decides. Before, the child
    took it and the case went back to the unit that had just returned it."""
    case_id = (await register(api))["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    await act(api, case_id, "return", URBAN, reason="Not ours: the police's")
    state = await until(client, case_id, lambda s: s.reassignment is not None)
    assert state.reassignment is not None
    dispatcher = Actor(role=Role.SUPERVISOR, name="another client")
    await client.get_workflow_handle(state.reassignment.child_id).signal(
        ReassignmentWorkflow.choose,
        {"actor": dispatcher.model_dump(mode="json"), "department_id": "urban-management",
         "department_name": "县城市管理局"},
    )  # fmt: skip
    state = await until(client, case_id, lambda s: s.status is Status.DISPATCHING)
    assert refusals(state).get("choose") == "returned_by_this_unit"
    assert state.department_id == CENTRE_ID
    await handle_of(client, case_id).terminate("test finished")
