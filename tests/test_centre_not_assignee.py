"""派单, 改派 and 二次交办 never give a case to the hotline centre itself.

A dispatcher naming ``centre`` (the API took it as any department of the reference data)
left the case ``assigned`` to the centre: out of the dispatch queue, with no clerk to accept
it, its deadlines running and breached against the centre. The API refuses it now with
``422 centre_not_assignee`` and the case is as it was; the right department still can be named.
"""

from __future__ import annotations

from typing import Any

import httpx
from helpers import OPERATOR, SUPERVISOR, act, case, case_when, department, handle_of, register
from temporalio.client import Client

from jiesu.case.domain import CENTRE_ID

URBAN = department("urban-management")


def _status(status: str) -> Any:
    return lambda s: s["status"] == status


async def _refused(api: httpx.AsyncClient, case_id: str, action: str, **body: Any) -> None:
    refused = await act(api, case_id, action, SUPERVISOR, expect=422, **body)
    assert refused["error"]["code"] == "centre_not_assignee", refused


async def _replied(api: httpx.AsyncClient) -> str:
    case_id = (await register(api))["case_id"]
    await case_when(api, case_id, _status("assigned"))
    await act(api, case_id, "accept", URBAN)
    await act(api, case_id, "contact", URBAN)
    await act(api, case_id, "reply", URBAN, outcome="resolved", text="Talked to the owner")
    return case_id


async def test_dispatch_to_the_centre_is_refused_and_the_case_stays_queued(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = (await register(api, category_id="stray_animals"))["case_id"]  # no rule: queued
    await case_when(api, case_id, _status("dispatching"))
    await _refused(api, case_id, "dispatch", department_id=CENTRE_ID, note="ours")
    state = await case(api, case_id, OPERATOR)
    assert state["status"] == "dispatching", state["status"]
    assert "dispatched" not in [e["kind"] for e in state["events"]]
    await act(api, case_id, "dispatch", SUPERVISOR, department_id="urban-management")
    await case_when(api, case_id, lambda s: s["assignment"]["department_id"] == "urban-management")
    await handle_of(client, case_id).terminate("test finished")


async def test_second_assignment_to_the_centre_is_refused(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = await _replied(api)
    await _refused(api, case_id, "second-assignment", department_id=CENTRE_ID,
                   reason="The reply does not say the noise stopped")  # fmt: skip
    state = await case(api, case_id, OPERATOR)
    assert state["status"] == "replied", state["status"]
    assert "second_assignment_ordered" not in [e["kind"] for e in state["events"]]
    await handle_of(client, case_id).terminate("test finished")


async def test_choosing_the_centre_in_a_reassignment_is_refused(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = await _replied(api)
    await act(api, case_id, "second-assignment", SUPERVISOR,
              reason="The reply does not say the noise stopped")  # fmt: skip
    await case_when(api, case_id, _status("reassigning"))
    await _refused(api, case_id, "reassign", department_id=CENTRE_ID)
    assert (await case(api, case_id, OPERATOR))["status"] == "reassigning"
    await act(api, case_id, "reassign", SUPERVISOR, department_id="police")
    await case_when(api, case_id, lambda s: s["assignment"]["department_id"] == "police")
    await handle_of(client, case_id).terminate("test finished")
