"""``/healthz`` (alive: asks nothing of anybody) and ``/readyz`` (PostgreSQL and Temporal answer,
a worker polls the case task queue), each failure named. Real servers throughout: "down" is a
real client or pool pointed at a port nobody listens on, "no worker" is a task queue nobody
polls."""

from __future__ import annotations

import socket
import uuid

import asyncpg
import httpx
from helpers import served
from temporalio.client import Client

from api.main import create_app
from jiesu.client import connect_to
from jiesu.config import Settings


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def failed_checks(response: httpx.Response) -> list[str]:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    error = response.json()["error"]
    assert error["code"] == "not_ready"
    return sorted(d["check"] for d in error["details"])


async def test_ready_when_everything_answers(api: httpx.AsyncClient) -> None:
    answer = await api.get("/readyz")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ready"] is True
    assert {c["check"]: c["ok"] for c in body["checks"]} == {
        "postgresql": True, "temporal": True, "worker": True,
    }  # fmt: skip
    assert (await api.get("/healthz")).json() == {"status": "ok"}


async def test_not_ready_without_a_worker_on_the_task_queue(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    lonely = settings.model_copy(update={"task_queue": f"nobody-{uuid.uuid4().hex[:8]}"})
    async with served(create_app(lonely, client=client, pool=pool)) as http:
        assert failed_checks(await http.get("/readyz")) == ["worker"]
        assert (await http.get("/healthz")).status_code == 200


async def test_not_ready_without_postgresql(settings: Settings, client: Client) -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/jiesu"
    down = await asyncpg.create_pool(url, min_size=0, max_size=1)
    try:
        async with served(create_app(settings, client=client, pool=down)) as http:
            assert failed_checks(await http.get("/readyz")) == ["postgresql"]
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await down.close()


async def test_not_ready_without_temporal(settings: Settings, pool: asyncpg.Pool) -> None:
    down = await connect_to(f"127.0.0.1:{closed_port()}", "default", lazy=True)
    async with served(create_app(settings, client=down, pool=pool)) as http:
        assert failed_checks(await http.get("/readyz")) == ["temporal", "worker"]
        assert (await http.get("/healthz")).status_code == 200
