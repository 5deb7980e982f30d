"""The tests' own client helpers behave like a real client: a 503 case_not_ready right after
filing (the case's first moments on a loaded machine) is retried, not taken as the answer."""

from __future__ import annotations

import httpx
from helpers import OPERATOR, act, case

NOT_READY = {"error": {"code": "case_not_ready", "message": "registered, not readable yet"}}


def _api(not_ready_times: int) -> tuple[httpx.AsyncClient, list[str]]:
    """A stand-in API that says case_not_ready ``not_ready_times`` times, then answers."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if len(seen) <= not_ready_times:
            return httpx.Response(503, json=NOT_READY, headers={"Retry-After": "5"})
        return httpx.Response(200, json={"case_id": "JS1", "status": "assigned"})

    transport = httpx.MockTransport(answer)
    return httpx.AsyncClient(transport=transport, base_url="http://jiesu.test"), seen


async def test_case_waits_through_case_not_ready() -> None:
    api, seen = _api(not_ready_times=3)
    async with api:
        assert (await case(api, "JS1", OPERATOR))["status"] == "assigned"
    assert seen == ["GET /api/v1/complaints/JS1"] * 4


async def test_an_action_is_sent_again_after_case_not_ready() -> None:
    api, seen = _api(not_ready_times=2)
    async with api:
        assert (await act(api, "JS1", "accept", OPERATOR))["status"] == "assigned"
    assert seen == ["POST /api/v1/complaints/JS1/accept"] * 3


async def test_an_expected_case_not_ready_is_the_answer() -> None:
    api, seen = _api(not_ready_times=1)
    async with api:
        body = await act(api, "JS1", "accept", OPERATOR, expect=503)
    assert body["error"]["code"] == "case_not_ready" and len(seen) == 1
