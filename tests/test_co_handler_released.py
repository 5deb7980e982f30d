"""A co-handler the centre released (免除协办, waive) — or a new round released — that still
sends its contribution is refused ``co_handler_released`` (co-handler-released-v1, epoch
``lean-case-v8``), by the API (409) and by the case itself, whoever sends it.

Before, the refusal was ``already_done`` worded "has already contributed": false — it never
contributed; it was released and owes nothing.
"""

from __future__ import annotations

import httpx
from helpers import (
    SUPERVISOR,
    act,
    case_when,
    department,
    eventually,
    handle_of,
    register,
)
from temporalio.client import Client

from jiesu.case.domain import Actor, ContributionAction, EventKind, Role
from workflows.complaint import ComplaintWorkflow

MARKET = department("market")


async def test_a_released_co_handler_that_contributes_is_told_it_was_released(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = (await register(api))["case_id"]  # → urban management
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    await act(api, case_id, "co-handlers", SUPERVISOR, department_ids=["market"])
    await act(api, case_id, "co-handlers/market/waive", SUPERVISOR)

    answer = await api.post(f"/api/v1/complaints/{case_id}/contribution",
                            json={"text": "Our inspectors visited"}, headers=MARKET)  # fmt: skip
    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["code"] == "co_handler_released", error
    assert "contributed" not in error["message"], error

    # signalled past the API (any Temporal client), the case refuses it the same way
    handle = handle_of(client, case_id)
    state = await handle.query(ComplaintWorkflow.state)
    market = next(c for c in state.co_handlers if c.department_id == "market")
    actor = Actor(role=Role.DEPARTMENT, name="market clerk", department_id="market")
    await handle.signal("contribute", ContributionAction(actor=actor, text="Visited"))

    async def refused() -> list[str] | None:
        state = await handle.query(ComplaintWorkflow.state)
        codes = [e.data["code"] for e in state.events if e.kind is EventKind.REJECTED]
        return codes or None

    assert await eventually(refused, within=30) == ["co_handler_released"]
    state = await handle.query(ComplaintWorkflow.state)
    assert next(c for c in state.co_handlers if c.department_id == "market") == market
    await handle.terminate("test finished")
