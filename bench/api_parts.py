"""CPU of single parts of the API's work, in one process (``time.process_time``), where
bench/api_ab.py's CPU per case is too noisy to show a cut of a few hundred microseconds.

    python -m bench.api_parts stack      # ~1 min: the embedded stack, three finished cases
    python -m bench.api_parts request    # no stack: one action request up to Temporal

``stack``: on the embedded stack (bench/lifecycle.py), after three cases through the HTTP API,
the API key's lookup (one ``fetchrow``), the look at the read model before any notice (every
event read, as it was for every action; the existence check for a request with an
Idempotency-Key; nothing for one without), and the route template resolved by walking every
route (prometheus-fastapi-instrumentator's ``get_route_name``, as the metrics middleware did
for every request). ``request``: ``POST /api/v1/complaints/{id}/accept`` through the whole app
(middlewares, routing, every dependency including the key check, the read-model copy) with
stand-ins for the pool and the Temporal client, stopped at the first call to Temporal; run it
in two checkouts (``PYTHONPATH=<worktree>``) to compare them. Medians of rounds, microseconds
per call. Not a pass/fail test; not run by ``make``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from prometheus_fastapi_instrumentator.routing import get_route_name
from starlette.requests import HTTPConnection

from api import cases
from api.deps import KEY_HOLDER_SQL
from api.main import create_app
from bench import lifecycle
from bench.case_driver import CaseDriver
from bench.http import Http
from jiesu import db
from jiesu.access.security import hash_api_key
from jiesu.config import Settings
from jiesu.ops.demo_data import demo_key, department_key


async def timed(label: str, call: Callable[[], Awaitable[Any]], n: int, rounds: int = 7) -> None:
    per = []
    for _ in range(rounds):
        began = time.process_time()
        for _ in range(n):
            await call()
        per.append((time.process_time() - began) / n * 1e6)
    print(f"{label}: {statistics.median(per):.1f} us  (rounds {[round(p) for p in per]})")


async def on_stack(settings: Settings) -> None:
    url = f"http://127.0.0.1:{os.environ['JIESU_API_PORT']}"
    async with Http(url) as http:
        done = [await CaseDriver(http).run() for _ in range(3)]
    case_id = done[-1].case_id
    pool = await db.create_pool(settings.database_url, max_size=2)
    try:
        hashed = hash_api_key(demo_key("demo-operator").key)
        await timed("API key lookup (fetchrow)",
                    lambda: pool.fetchrow(KEY_HOLDER_SQL, hashed), 2000)  # fmt: skip
        fresh, keyed = "0" * 32, "idem-" + "0" * 32
        await timed("look before any notice: every event read (before)",
                    lambda: cases._projected(pool, case_id, fresh), 500)  # fmt: skip
        await timed("look before any notice: Idempotency-Key, existence check",
                    lambda: cases._first_look(pool, case_id, keyed), 500)  # fmt: skip
        await timed("look before any notice: no Idempotency-Key",
                    lambda: cases._first_look(pool, case_id, fresh), 500)  # fmt: skip
        app = create_app(settings)
        path = f"/api/v1/complaints/{case_id}/accept"
        scope = {"type": "http", "method": "POST", "path": path, "root_path": "", "app": app,
                 "query_string": b"", "headers": []}  # fmt: skip

        async def walk() -> None:
            get_route_name(HTTPConnection(dict(scope)), should_include_root_path=False)

        await timed("route template by walking every route (before)", walk, 500)
    finally:
        await pool.close()


class _Stop(Exception):
    """Where the measured request ends: its first call to Temporal."""


class _Pool:
    async def fetchrow(self, *_: Any) -> dict[str, Any]:
        return {"name": "bench-water", "role": "department", "department_id": "water"}

    async def fetchval(self, *_: Any) -> None:
        return None  # no read-model copy: the workflow is asked


class _Temporal:
    def get_workflow_handle_for(self, *_: Any, **__: Any) -> Any:
        raise _Stop()


async def one_request() -> None:
    logging.disable(logging.CRITICAL)  # the 500 it ends with is logged otherwise
    app = create_app(Settings())
    app.state.pool, app.state.temporal, app.state.settings = _Pool(), _Temporal(), Settings()
    key = department_key("water").key.encode()
    path = "/api/v1/complaints/JS20261121-000042/accept"
    headers = [(b"authorization", b"Bearer " + key), (b"content-type", b"application/json"),
               (b"content-length", b"2")]  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(_: Any) -> None:
        pass

    async def call() -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
                 "root_path": "", "query_string": b"", "headers": headers,
                 "server": ("bench", 80), "client": ("127.0.0.1", 1)}  # fmt: skip
        await app(scope, receive, send)

    for _ in range(300):
        await call()
    await timed("action request up to Temporal", call, 1000, rounds=9)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api_parts", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("what", nargs="?", choices=("stack", "request"), default="stack")
    what = parser.parse_args().what
    if what == "request":
        asyncio.run(one_request())
        return
    data = Path(tempfile.mkdtemp(prefix="jiesu-api-parts-"))
    with ExitStack() as cleanup:
        s = lifecycle.start_stack(data, cleanup)
        asyncio.run(on_stack(s.client_settings()))


if __name__ == "__main__":
    main()
