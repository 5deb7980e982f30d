"""What the API's metrics cost, with tracing off (the default): the same app with and without
its Prometheus middleware, measured on (1) a request that touches neither Temporal nor
PostgreSQL and (2) an action's round trip (accept: query, signal, the workflow applies it,
the answer). Interleaved, so that the machine's load drifts over both alike.

A measurement, not a check: skipped unless asked for (docs/observability.md)::

    JIESU_OVERHEAD=1 make test PYTEST_ARGS="-s tests/test_observability_overhead.py"
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from helpers import OPERATOR, complaint, department, eventually, handle_of, served
from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware
from temporalio.client import Client

from api.main import create_app
from jiesu.config import Settings

pytestmark = pytest.mark.skipif(
    not os.environ.get("JIESU_OVERHEAD"), reason="a measurement: JIESU_OVERHEAD=1 to run it"
)
COMPLAINTS = "/api/v1/complaints"
ROUNDS = int(os.environ.get("JIESU_OVERHEAD_ROUNDS", "40"))
CHEAP_REQUESTS = 2000


def without_metrics(app: FastAPI) -> FastAPI:
    app.user_middleware = [
        m for m in app.user_middleware if m.cls is not PrometheusInstrumentatorMiddleware
    ]
    return app


async def timed(call: Callable[[], Awaitable[httpx.Response]], expect: int) -> float:
    started = time.perf_counter()
    response = await call()
    elapsed = time.perf_counter() - started
    assert response.status_code == expect, response.text
    return elapsed


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return (f"{name}: n={len(samples)} median {statistics.median(samples) * 1e3:.3f} ms, "
            f"mean {statistics.fmean(samples) * 1e3:.3f} ms, p90 {p90 * 1e3:.3f} ms")  # fmt: skip


async def test_metrics_overhead(settings: Settings, client: Client, pool: asyncpg.Pool) -> None:
    apps = {
        "metrics on ": create_app(settings, client=client, pool=pool),
        "metrics off": without_metrics(create_app(settings, client=client, pool=pool)),
    }
    cheap: dict[str, list[float]] = {name: [] for name in apps}
    accept: dict[str, list[float]] = {name: [] for name in apps}
    opened: list[str] = []
    async with served(apps["metrics on "]) as on, served(apps["metrics off"]) as off:
        https = {"metrics on ": on, "metrics off": off}
        unknown = f"{COMPLAINTS}/JS19990101-000001"  # no key: 401 before any database
        for _ in range(CHEAP_REQUESTS):
            for name, http in https.items():
                cheap[name].append(await timed(lambda h=http: h.get(unknown), 401))
        for _ in range(ROUNDS):
            for name, http in https.items():
                created = await http.post(COMPLAINTS, json=complaint(), headers=OPERATOR)
                case_id = created.json()["case_id"]
                opened.append(case_id)
                unit = await eventually(lambda h=http, c=case_id: _assigned(h, c), within=30)
                act = _accept(http, case_id, department(unit))
                accept[name].append(await timed(act, 200))
    for case_id in opened:
        await handle_of(client, case_id).terminate("measured")
    for name in apps:
        print(summary(f"401 without Temporal/PostgreSQL, {name}", cheap[name]))
    for name in apps:
        print(summary(f"accept round trip, {name}", accept[name]))
    for label, data in (("401", cheap), ("accept", accept)):
        delta = statistics.median(data["metrics on "]) - statistics.median(data["metrics off"])
        print(f"{label}: median difference {delta * 1e6:+.0f} µs")


async def _assigned(http: httpx.AsyncClient, case_id: str) -> str | None:
    body = (await http.get(f"{COMPLAINTS}/{case_id}", headers=OPERATOR)).json()
    return body["assignment"]["department_id"] if body.get("status") == "assigned" else None


def _accept(
    http: httpx.AsyncClient, case_id: str, headers: dict[str, str]
) -> Callable[[], Awaitable[httpx.Response]]:
    return lambda: http.post(f"{COMPLAINTS}/{case_id}/accept", headers=headers)
