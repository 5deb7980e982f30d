"""The harness's HTTP client (bench/http.py): what bench/case_driver.py reads of an answer,
against a real HTTP server on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bench.http import Http


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def echo(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        status = 409 if request.path.endswith("/refused") else 201
        return web.json_response(
            {"method": request.method, "body": body, "auth": request.headers.get("Authorization")},
            status=status,
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def test_posts_json_with_headers_and_reads_status_and_body(server: str) -> None:
    seen: list[tuple[str, str]] = []
    async with Http(server, on_request=lambda method, path: seen.append((method, path))) as http:
        posted = await http.post("/api/v1/x", json={"rating": "satisfied"},
                                 headers={"Authorization": "Bearer k"})  # fmt: skip
        got = await http.get("/api/v1/x/refused")
    assert posted.status_code == 201
    assert posted.json() == {"method": "POST", "body": {"rating": "satisfied"}, "auth": "Bearer k"}
    assert got.status_code == 409 and '"method": "GET"' in got.text
    assert seen == [("POST", "/api/v1/x"), ("GET", "/api/v1/x/refused")]


async def test_refuses_to_send_outside_its_context(server: str) -> None:
    http = Http(server)
    with pytest.raises(RuntimeError, match="async with"):
        await http.get("/")
    async with http:
        assert (await http.get("/")).status_code == 201
    with pytest.raises(RuntimeError, match="async with"):
        await http.get("/")  # closed again
