"""Idempotent actions: a client that retries a POST with the same ``Idempotency-Key`` (after a
timeout, a 5xx or a 202) gets the original answer and the action is applied once; a new key is
a new request. Through the API, on the real servers."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
from helpers import OPERATOR, SUPERVISOR, complaint, department, eventually, handle_of
from temporalio.client import Client
from test_api import URBAN, assigned, error_of, finish, fresh

from jiesu.case.domain import EventKind
from workflows.complaint import ComplaintWorkflow

COMPLAINTS = "/api/v1/complaints"


async def _case(api: httpx.AsyncClient, prefix: str) -> tuple[str, str]:
    created = await api.post(COMPLAINTS, json=complaint(**fresh(prefix)), headers=OPERATOR)
    assert created.status_code == 201, created.text
    body = created.json()
    await assigned(api, body["case_id"])
    return body["case_id"], body["citizen_token"]


async def _post(
    api: httpx.AsyncClient, case_id: str, action: str, headers: dict[str, str],
    key: str | None = None, body: Any = None,
) -> httpx.Response:  # fmt: skip
    headers = {**headers, **({"Idempotency-Key": key} if key else {})}
    return await api.post(f"{COMPLAINTS}/{case_id}/{action}", json=body, headers=headers)


async def _count(client: Client, case_id: str, kind: EventKind) -> int:
    state = await handle_of(client, case_id).query(ComplaintWorkflow.state)
    return sum(1 for e in state.events if e.kind is kind)


async def test_a_supplement_retried_with_its_key_is_applied_once(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id, token = await _case(api, "Idem supplement")
    try:
        key, body = uuid.uuid4().hex, {"token": token, "text": "It starts at 22:00 sharp"}
        first = await _post(api, case_id, "supplement", {}, key, body)
        again = await _post(api, case_id, "supplement", {}, key, body)
        assert first.status_code == again.status_code == 200, (first.text, again.text)
        assert first.json() == again.json()
        assert await _count(client, case_id, EventKind.SUPPLEMENTED) == 1
        # a new key is a new supplement
        other = await _post(api, case_id, "supplement", {}, uuid.uuid4().hex, body)
        assert other.status_code == 200, other.text
        assert await _count(client, case_id, EventKind.SUPPLEMENTED) == 2
    finally:
        await finish(client, case_id)


async def test_an_accept_retried_with_its_key_is_200_not_409(
    api: httpx.AsyncClient, client: Client
) -> None:
    case_id, _ = await _case(api, "Idem accept")
    try:
        key = uuid.uuid4().hex
        first = await _post(api, case_id, "accept", URBAN, key)
        again = await _post(api, case_id, "accept", URBAN, key)
        assert first.status_code == again.status_code == 200, (first.text, again.text)
        assert again.json()["case"]["status"] == "handling"
        assert await _count(client, case_id, EventKind.ACCEPTED) == 1
        # another key (or none) is another request: the case is no longer waiting for it
        error_of(await _post(api, case_id, "accept", URBAN, uuid.uuid4().hex), 409,
                 "wrong_status")  # fmt: skip
        error_of(await _post(api, case_id, "accept", URBAN), 409, "wrong_status")
        # the same key names a different request for another action
        contact = await _post(api, case_id, "contact", URBAN, key, {"note": "called"})
        assert contact.status_code == 200, contact.text
        assert await _count(client, case_id, EventKind.CONTACTED) == 1
    finally:
        await finish(client, case_id)


async def test_a_retry_after_the_case_moved_on_says_applied_not_404(
    api: httpx.AsyncClient, client: Client
) -> None:
    """The department returns a case (退单) with a key; the centre reassigns it elsewhere; the
    department's system retries (its first answer was lost). The case is no longer theirs to
    see, so the original answer (the case) cannot be given — but a 404 told their system the
    case did not exist, as if the return had never been made. Now: 409 case_moved_on, which
    says the action was applied."""
    case_id, _ = await _case(api, "Idem moved on")
    try:
        key, body = uuid.uuid4().hex, {"reason": "Amplified music at night is police work"}
        first = await _post(api, case_id, "return", URBAN, key, body)
        assert first.status_code == 200, first.text
        chosen = await _post(api, case_id, "reassign", SUPERVISOR, None,
                             {"department_id": "police", "note": "police work"})  # fmt: skip
        assert chosen.status_code == 200, chosen.text
        again = await _post(api, case_id, "return", URBAN, key, body)
        error_of(again, 409, "case_moved_on")
        assert "police" not in again.text  # nothing of the case as it is now
        # a request that was never applied is still told the case does not exist for it
        error_of(await _post(api, case_id, "return", URBAN, uuid.uuid4().hex, body), 404,
                 "case_not_found")  # fmt: skip
        assert await _count(client, case_id, EventKind.RETURNED) == 1
    finally:
        await finish(client, case_id)


async def test_concurrent_duplicates_with_one_key_are_applied_once(
    api: httpx.AsyncClient, client: Client
) -> None:
    """Sent at once, the duplicates all pass the API's check; the case applies the first and
    ignores the others (same request id), and every answer is the applied supplement."""
    case_id, token = await _case(api, "Idem concurrent")
    try:
        key, body = uuid.uuid4().hex, {"token": token, "text": "Also on Sundays"}
        responses = await asyncio.gather(
            *(_post(api, case_id, "supplement", {}, key, body) for _ in range(4))
        )
        assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
        assert await _count(client, case_id, EventKind.SUPPLEMENTED) == 1
    finally:
        await finish(client, case_id)


async def _taken_away_after_its_reply(api: httpx.AsyncClient, case_id: str) -> None:
    """The department accepts, contacts and replies; a supervisor takes the case away (二次交办,
    naming no department: the dispatcher's window opens)."""
    for action, body in (("accept", None), ("contact", {"note": "called"}),
                         ("reply", {"outcome": "resolved", "text": "Spoke to the owner"}),
                         ("second-assignment", {"reason": "The reply says nothing"})):
        done = await _post(api, case_id, action, SUPERVISOR if "second" in action else URBAN,
                           body=body)  # fmt: skip
        assert done.status_code == 200, done.text


async def test_a_reassign_choice_retried_with_its_key_is_200_not_409(
    api: httpx.AsyncClient, client: Client
) -> None:
    """改派 is signalled to the case's reassignment child: the API named the child from the
    case before it looked for the first attempt's event, so a retry after the choice was
    applied (the child gone) was 409 no_reassignment instead of the original answer."""
    case_id, _ = await _case(api, "Idem reassign")
    try:
        await _taken_away_after_its_reply(api, case_id)

        async def reassigning() -> bool:
            state = await handle_of(client, case_id).query(ComplaintWorkflow.state)
            return state.reassignment is not None

        await eventually(reassigning, within=30)
        key, choice = uuid.uuid4().hex, {"department_id": "police", "note": "theirs"}
        first = await _post(api, case_id, "reassign", SUPERVISOR, key, choice)
        assert first.status_code == 200, first.text
        again = await _post(api, case_id, "reassign", SUPERVISOR, key, choice)
        assert again.status_code == 200, again.text
        assert again.json()["case"]["assignment"]["department_id"] == "police"
        assert await _count(client, case_id, EventKind.REASSIGNED) == 1
        # another key is another request: nothing is being reassigned any more
        error_of(await _post(api, case_id, "reassign", SUPERVISOR, uuid.uuid4().hex, choice),
                 409, "no_reassignment")  # fmt: skip
    finally:
        await finish(client, case_id)


async def test_a_reassign_choice_retried_in_a_later_reassignment_is_not_applied_again(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    """改派 is signalled to the reassignment child, which does not know the case's request ids.
    A retry checked on the read model's copy (no events: the first attempt's event not seen)
    while a later reassignment waited was signalled to that child, which took it: the case
    went back to the department that had just returned it, the choice applied twice."""
    case_id, _ = await _case(api, "Idem reassign later")
    try:
        await _taken_away_after_its_reply(api, case_id)

        async def waiting(n: int | None) -> bool:  # in the read model: the API's first copy
            state = await pool.fetchval("SELECT state FROM cases WHERE case_id = $1", case_id)
            return (state.get("reassignment") or {}).get("n") == n

        await eventually(lambda: waiting(1), within=30)
        key, choice = uuid.uuid4().hex, {"department_id": "police", "note": "theirs"}
        first = await _post(api, case_id, "reassign", SUPERVISOR, key, choice)
        assert first.status_code in (200, 202), first.text  # 202: applied later, waited for
        await eventually(lambda: waiting(None), within=30)
        returned = await _post(api, case_id, "return", department("police"),
                               body={"reason": "Shop noise is not police work"})  # fmt: skip
        assert returned.status_code in (200, 202), returned.text
        await eventually(lambda: waiting(2), within=30)
        again = await _post(api, case_id, "reassign", SUPERVISOR, key, choice)
        assert again.status_code == 200, again.text
        # the answer comes after any signal it sent: the waiting child was not told to choose
        later = await client.get_workflow_handle(f"{case_id}-reassign-2").fetch_history()
        signaled = "workflow_execution_signaled_event_attributes"
        signals = [e for e in later.events if e.HasField(signaled)]
        assert signals == [], signals
        state = await handle_of(client, case_id).query(ComplaintWorkflow.state)
        assert await _count(client, case_id, EventKind.REASSIGNED) == 1, state.events[-3:]
        assert state.reassignment is not None and state.reassignment.n == 2
    finally:
        await finish(client, case_id)


async def test_without_a_key_every_request_is_new(api: httpx.AsyncClient, client: Client) -> None:
    case_id, token = await _case(api, "No key")
    try:
        body = {"token": token, "text": "Still loud"}
        for _ in range(2):
            response = await _post(api, case_id, "supplement", {}, None, body)
            assert response.status_code == 200, response.text
        assert await _count(client, case_id, EventKind.SUPPLEMENTED) == 2
    finally:
        await finish(client, case_id)


async def test_the_action_request_id_is_the_key_of_its_caller(
    api: httpx.AsyncClient, client: Client
) -> None:
    """The actor's request id is derived from caller, case, action and key — the workflow
    deduplicates on it — and an empty key is refused rather than shared."""
    case_id, _ = await _case(api, "Idem id")
    try:
        key = uuid.uuid4().hex
        assert (await _post(api, case_id, "accept", URBAN, key)).status_code == 200
        state = await handle_of(client, case_id).query(ComplaintWorkflow.state)
        accepted = next(e for e in state.events if e.kind is EventKind.ACCEPTED)
        assert accepted.actor.request_id is not None
        assert accepted.actor.request_id.startswith("idem-")
        assert key not in accepted.actor.request_id
        empty = await api.post(f"{COMPLAINTS}/{case_id}/contact", json={"note": "x"},
                               headers={**URBAN, "Idempotency-Key": ""})  # fmt: skip
        error_of(empty, 422, "invalid_request")
    finally:
        await finish(client, case_id)


async def test_openapi_documents_the_idempotency_key_on_every_action(
    api: httpx.AsyncClient,
) -> None:
    spec = (await api.get("/openapi.json")).json()
    def is_action(operation: dict[str, Any]) -> bool:  # answers the case (ActionResult)
        ok = operation["responses"].get("200", {}).get("content", {}).get("application/json", {})
        return ok.get("schema", {}).get("$ref", "").endswith("/ActionResult")

    actions = [
        (path, operations["post"])
        for path, operations in spec["paths"].items()
        if "post" in operations and is_action(operations["post"])
    ]
    assert len(actions) >= 15
    lacking = [
        path for path, operation in actions
        if "idempotency-key" not in {
            p["name"].lower() for p in operation.get("parameters", []) if p["in"] == "header"
        }
    ]  # fmt: skip
    assert lacking == []
