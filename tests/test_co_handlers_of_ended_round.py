"""Co-handlers (协办, 会办) of a round that ended (round-releases-co-handlers-v1, epoch
``lean-case-v6``).

会办 convenes co-handlers around the lead department (主办) of a round: its reply waits for
their contributions. When the case moved to another department (退单 → 改派, 提级办, 二次交办,
the reassignment bound's queue), the co-handlers of the ended round still owed: the new lead
could not reply (``co_handlers_pending``) until the centre waived each one, their contribution
timers had stopped with the round (no ``contribution_overdue`` ever), and a co-handler that
became the new lead waited on its own contribution. Now, when a new round starts, every
co-handler still owing is released (``co_handler_waived`` by the system, ``reason``
``round_ended``, or ``new_lead`` for the new lead itself): it stays convened, no longer owes.
"""

from __future__ import annotations

import httpx
from helpers import (
    SUPERVISOR,
    act,
    case_when,
    department,
    handle_of,
    keep_history,
    register,
)
from temporalio.client import Client

URBAN = department("urban-management")
POLICE = department("police")


async def test_the_new_lead_replies_without_the_ended_rounds_co_handlers(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = (await register(api))["case_id"]  # → urban management
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    await act(api, case_id, "co-handlers", SUPERVISOR, department_ids=["police", "market"])
    await act(api, case_id, "accept", URBAN)
    # urban management returns it; the centre's dispatcher gives it to police, a co-handler
    await act(api, case_id, "return", URBAN, reason="Amplified music at night is police work")
    await case_when(api, case_id, lambda s: s["status"] == "reassigning")
    await act(api, case_id, "reassign", SUPERVISOR, department_id="police")
    state = await case_when(
        api, case_id, lambda s: s["status"] == "assigned" and s["round"] == 2
    )
    assert state["assignment"]["department_id"] == "police"
    await act(api, case_id, "accept", POLICE)
    await act(api, case_id, "contact", POLICE)
    replied = await act(api, case_id, "reply", POLICE, outcome="resolved", text="Permit revoked")
    assert replied["case"]["status"] == "replied", replied
    state = replied["case"]
    owing = [c["department_id"] for c in state["co_handlers"] if not c["waived"]
             and c["contributed_at"] is None]  # fmt: skip
    assert owing == [], state["co_handlers"]
    assert [c["department_id"] for c in state["co_handlers"]] == ["police", "market"]
    released = [e["data"] for e in state["events"] if e["kind"] == "co_handler_waived"]
    assert released == [{"department_id": "police", "reason": "new_lead"},
                        {"department_id": "market", "reason": "round_ended"}], released
    handle = handle_of(client, case_id)
    await handle.terminate("test finished")
    await keep_history(handle, "co_handlers_released_at_new_round")
