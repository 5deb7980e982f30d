"""The harness's HTTP client: the clients of the benchmarks' cases (bench/case_driver.py).

The harness runs on the machine it measures, so every millisecond of CPU it spends is taken
from the stack. httpx cost ~1.3 ms of the client's CPU per request one at a time and ~2.1 ms
with 16 requests in flight; aiohttp 0.34 and 0.23 ms (the same small JSON request and answer
against one local server, 3,000 requests, two runs each; docs/performance.md, "The harness's
own HTTP client"). With ~7 requests per case that was ~10 ms of CPU per case charged to the
lifecycle and not to the bare shape, whose harness talks to Temporal through the SDK's core.

:class:`Http` is what :class:`bench.case_driver.CaseDriver` needs and no more: ``get`` and
``post`` with JSON, answered with a :class:`Reply` (status, text, ``json()``), like httpx's
response for the few attributes the driver reads.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

CONNECTIONS = 256  # more than any phase has requests in flight


@dataclass(frozen=True)
class Reply:
    """An answer, read whole: what the driver looks at."""

    status_code: int
    text: str

    def json(self) -> Any:
        return jsonlib.loads(self.text)


class Http:
    """``async with Http(base_url) as http: await http.post("/api/v1/…", json=…)``.

    ``on_request(method, path)`` is called before each request (bench/api_ab.py counts the
    requests per endpoint with it)."""

    def __init__(
        self, base_url: str, timeout: float = 60.0, connections: int = CONNECTIONS,
        on_request: Callable[[str, str], None] | None = None,
    ) -> None:  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._on_request = on_request
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Http:
        connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=0)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return await self.request("GET", path, headers=headers)

    async def post(
        self, path: str, json: Any = None, headers: dict[str, str] | None = None
    ) -> Reply:
        return await self.request("POST", path, json=json, headers=headers)

    async def request(
        self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None
    ) -> Reply:
        if self._session is None:
            raise RuntimeError("Http is used outside its `async with`")
        if self._on_request is not None:
            self._on_request(method, path)
        async with self._session.request(
            method, self.base_url + path, json=json, headers=headers
        ) as response:
            return Reply(response.status, await response.text())
