"""The centre's reasons and names must say something: a second assignment's reason, a
rejected return's reason, a 问责 order's reason, decision and persons, and a completed
accountability record's persons and decision. Spaces and invisible characters (zero-width
spaces, direction marks) passed their lengths and their ``strip()`` checks, and were recorded
as the reason the case was taken away, the return rejected or the person held accountable.
Now each is ``422 blank_text`` (counted as intake counts a title, ``visible_length``) and the
case and the record are unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import (
    OPERATOR,
    SUPERVISOR,
    act,
    case,
    case_when,
    department,
    eventually,
    handle_of,
    register,
)
from temporalio.client import Client

from jiesu.config import Settings

URBAN = department("urban-management")
INVISIBLE = "\u200b\u200b\u200e"  # two zero-width spaces and a left-to-right mark
BLANKS = ("  ", "\u3000\u3000", INVISIBLE)


def _blank(body: dict[str, Any]) -> None:
    assert body["error"]["code"] in ("blank_text", "invalid_request"), body


@pytest.fixture
def approval(settings: Settings) -> Iterator[Settings]:
    saved = settings.return_needs_approval
    settings.return_needs_approval = True
    yield settings
    settings.return_needs_approval = saved


async def test_a_blank_reason_takes_no_case_away_and_rejects_no_return(
    api: httpx.AsyncClient, client: Client, approval: Settings
) -> None:
    case_id = (await register(api))["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    approval.return_needs_approval = False  # recorded into the case already
    await act(api, case_id, "return", URBAN, reason="Amplified music is police work")
    await case_when(api, case_id, lambda s: s["pending_return"] is not None)
    for blank in BLANKS:
        _blank(await act(api, case_id, "return/decision", SUPERVISOR, expect=422,
                         upheld=False, note=blank))  # fmt: skip
    await act(api, case_id, "accept", URBAN)
    await act(api, case_id, "contact", URBAN)
    state = await case(api, case_id, OPERATOR)
    assert state["pending_return"] is not None and state["rejected_returns"] == 0, state
    await act(api, case_id, "return/decision", SUPERVISOR, upheld=False, note="Ours: rule 3")
    await act(api, case_id, "reply", URBAN, outcome="resolved", text="Talked to the owner")
    for blank in BLANKS:
        _blank(await act(api, case_id, "second-assignment", SUPERVISOR, expect=422,
                         reason=blank))  # fmt: skip
    state = await case(api, case_id, OPERATOR)
    assert state["status"] == "replied", state["status"]
    assert "second_assignment_ordered" not in [e["kind"] for e in state["events"]]
    await handle_of(client, case_id).terminate("test finished")


async def test_accountability_needs_visible_persons_reason_and_decision(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id = (await register(api))["case_id"]
    await case_when(api, case_id, lambda s: s["status"] == "assigned")
    good = {"form": "accountability", "note": "Ignored three reminders",
            "persons": ["王某"], "decision": "通报批评"}  # fmt: skip
    for blank in BLANKS:
        for field, value in (("note", blank), ("decision", blank), ("persons", [blank]),
                             ("persons", ["王某", blank])):  # fmt: skip
            _blank(await act(api, case_id, "supervision", SUPERVISOR, expect=422,
                             **{**good, field: value}))  # fmt: skip
    state = await case(api, case_id, OPERATOR)
    assert state["escalation"] is None, state["escalation"]
    await act(api, case_id, "supervision", SUPERVISOR, **good)

    async def record() -> dict[str, Any] | None:
        response = await api.get("/api/v1/accountability", headers=SUPERVISOR)
        assert response.status_code == 200, response.text
        return next((r for r in response.json() if r["case_id"] == case_id), None)

    recorded = await eventually(record, within=30)
    url = f"/api/v1/accountability/{case_id}/{recorded['seq']}"
    for blank in BLANKS:
        for body in ({"persons": [blank], "decision": "通报批评"},
                     {"persons": ["李某"], "decision": blank}):  # fmt: skip
            answer = await api.put(url, json=body, headers=SUPERVISOR)
            assert answer.status_code == 422, answer.text
    assert (await record()) == recorded
    await handle_of(client, case_id).terminate("test finished")
