"""How an action's answer learns the outcome (api/cases.py ``act``): from the read model when
the case's projection commits (PostgreSQL NOTIFY, jiesu/readmodel/changes.py), without a query
to the workflow; by asking the workflow when the read model cannot tell (the feed is down)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
from helpers import (
    OPERATOR,
    act,
    department,
    eventually,
    not_ready,
    register,
    served,
)
from temporalio.client import Client, Interceptor, OutboundInterceptor, QueryWorkflowInput

from api import cases
from api.main import create_app
from jiesu.config import Settings
from jiesu.readmodel.changes import Change, ProjectionFeed, notify_payload


class _Queries(Interceptor):
    """Counts the workflow queries a client sends."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Counting(next, self.sent)


class _Counting(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, sent: list[str]) -> None:
        super().__init__(next)
        self.sent = sent

    async def query_workflow(self, input: QueryWorkflowInput) -> Any:
        self.sent.append(input.query)
        return await super().query_workflow(input)


def _counting(client: Client, queries: _Queries) -> Client:
    return Client(client.service_client, namespace=client.namespace,
                  data_converter=client.data_converter, interceptors=[queries])  # fmt: skip


async def _routed(api: Any, case_id: str) -> dict[str, Any] | None:
    response = await api.get(f"/api/v1/complaints/{case_id}", headers=OPERATOR)
    if not_ready(response):  # registered, not readable yet
        return None
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state if state["status"] == "assigned" else None


async def test_an_action_is_answered_from_the_read_model_without_a_query(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    queries = _Queries()
    async with served(create_app(settings, client=_counting(client, queries), pool=pool)) as api:
        case_id = (await register(api))["case_id"]
        routed = await eventually(lambda: _routed(api, case_id))
        dept = department(routed["assignment"]["department_id"])
        queries.sent.clear()
        answer = await act(api, case_id, "accept", dept)
        assert answer["applied"] is True
        assert answer["case"]["status"] == "handling"
        accepted = [e for e in answer["case"]["events"] if e["kind"] == "accepted"]
        assert len(accepted) == 1 and accepted[0]["actor"]["role"] == "department"
        assert queries.sent == []
        key = {"Idempotency-Key": "contact-once"}
        first = await act(api, case_id, "contact", {**dept, **key}, note="called")
        assert queries.sent == []
        # a retry with the same key gets the same answer (the copy would refuse a second
        # contact, so the workflow is asked first: api/cases.py perform)
        again = await act(api, case_id, "contact", {**dept, **key}, note="called")
        contacted = [e for e in first["case"]["events"] if e["kind"] == "contacted"]
        assert len(contacted) == 1
        assert contacted == [e for e in again["case"]["events"] if e["kind"] == "contacted"]


async def test_the_citizens_rating_is_answered_from_the_read_model_without_a_query(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """The citizen's actions take the department's way (api/routers/citizen.py ``act_as``):
    the read model's copy before the signal, the read model after it; a retry with the same
    key gets the first answer and rates once."""
    queries = _Queries()
    async with served(create_app(settings, client=_counting(client, queries), pool=pool)) as api:
        created = await register(api)
        case_id, token = created["case_id"], created["citizen_token"]
        routed = await eventually(lambda: _routed(api, case_id))
        dept = department(routed["assignment"]["department_id"])
        await act(api, case_id, "accept", dept)
        await act(api, case_id, "contact", dept, note="called")
        await act(api, case_id, "reply", dept, outcome="resolved", text="fixed")
        queries.sent.clear()
        key = {"Idempotency-Key": "rate-once"}
        rated = await act(api, case_id, "rating", key, token=token, rating="satisfied")
        assert rated["applied"] is True and rated["case"]["rating"] == "satisfied"
        assert queries.sent == []
        again = await act(api, case_id, "rating", key, token=token, rating="satisfied")
        kinds = [e["kind"] for e in again["case"]["events"]]
        assert kinds.count("rated") == 1
        assert again["case"]["rating"] == "satisfied"
        # without the key, a second rating of the closed case is refused and changes nothing
        await act(api, case_id, "rating", {}, 409, token=token, rating="unsatisfied")
        state = await pool.fetchrow("SELECT rating, version FROM cases WHERE case_id = $1",
                                    case_id)  # fmt: skip
        assert state is not None and state["rating"] == "satisfied"


async def test_a_projections_notice_carries_the_case_as_the_read_model_has_it(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """The API answers from the notice, without reading the case back: what the notice says
    is what the read model holds once that projection has committed."""
    feed = ProjectionFeed(settings.database_url)
    await feed.start()
    try:
        async with served(create_app(settings, client=client, pool=pool)) as api:
            case_id = (await register(api))["case_id"]
            routed = await eventually(lambda: _routed(api, case_id))
            with feed.watch(case_id) as changed:
                await act(api, case_id, "accept", department(routed["assignment"]["department_id"]))
                told = await eventually(lambda: _told(changed))
        rid = next(e["actor"]["request_id"] for e in json.loads(told)["events"]
                   if e["kind"] == "accepted")  # fmt: skip
        from_notice = cases._from_notice(told, rid)
        from_read_model = await cases._projected(pool, case_id, rid)
        assert from_notice is not None and from_notice == from_read_model
        assert from_notice[0].status == "handling"
    finally:
        await feed.close()


async def test_a_case_too_long_for_a_notice_is_read_from_the_read_model(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    queries = _Queries()
    feed = ProjectionFeed(settings.database_url)
    await feed.start()
    try:
        app = create_app(settings, client=_counting(client, queries), pool=pool)
        async with served(app) as api:
            created = await register(api)
            case_id, token = created["case_id"], created["citizen_token"]
            routed = await eventually(lambda: _routed(api, case_id))
            for n in range(3):  # three times 2,000 characters of 3 bytes: over 8,000 bytes
                await act(api, case_id, "supplement", token=token, text=f"{n}补充" * 1000)
            queries.sent.clear()
            with feed.watch(case_id) as changed:
                answer = await act(
                    api, case_id, "accept", department(routed["assignment"]["department_id"])
                )
                await asyncio.wait_for(changed.wait(), 10)  # told before the answer
                assert changed.take() is None  # the notice named the case only
        assert answer["applied"] is True and answer["case"]["status"] == "handling"
        assert queries.sent == []  # answered from the read model all the same
    finally:
        await feed.close()


def test_a_notice_is_the_case_id_alone_when_the_case_does_not_fit() -> None:
    small = notify_payload("JS1", {"status": "handling"}, [])
    assert small.startswith("JS1\n") and json.loads(small[4:])["state"]["status"] == "handling"
    big = notify_payload("JS1", {"title": "长" * 2700}, [])  # 8,100 bytes of UTF-8
    assert big == "JS1"


async def _told(changed: Change) -> str | None:
    return changed.take()


async def test_without_the_feed_the_workflow_is_asked(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    queries = _Queries()
    app = create_app(settings, client=_counting(client, queries), pool=pool)
    async with served(app) as api:
        case_id = (await register(api))["case_id"]
        routed = await eventually(lambda: _routed(api, case_id))
        await app.state.projection_feed.close()  # its connection lost, say
        queries.sent.clear()
        answer = await act(
            api, case_id, "accept", department(routed["assignment"]["department_id"])
        )
        assert answer["applied"] is True and answer["case"]["status"] == "handling"
        assert len(queries.sent) == 1


async def test_a_feed_that_cannot_connect_is_down_not_an_error() -> None:
    """The API starts without it (actions then ask the workflow), and asks again later."""
    feed = ProjectionFeed("postgresql://postgres@127.0.0.1:1/jiesu")  # nothing listens there
    await feed.start()
    try:
        assert feed.live is False
    finally:
        await feed.close()
