"""A worker started before Temporal can be reached (a cluster restarting, docker-compose's
worker up before the server answers) waits for it (``JIESU_TEMPORAL_CONNECT_SECONDS``, 60 s by
default), then polls; one that never reaches it ends in one line naming the address and what
to set, exit 1, its database pool closed — before, the SDK's traceback, at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from helpers import eventually
from temporalio.testing import WorkflowEnvironment
from test_schema_check import _free_port, _run_until_it_ends, _spawn

from jiesu.config import Settings


def _variables(settings: Settings, temporal: str, wait: float) -> dict[str, str]:
    return dict(
        os.environ,
        TEMPORAL_ADDRESS=temporal,
        DATABASE_URL=settings.database_url,
        JIESU_TASK_QUEUE=f"{settings.task_queue}-start-{uuid.uuid4().hex[:6]}",
        JIESU_TEMPORAL_CONNECT_SECONDS=str(wait),
        JIESU_WORKER_METRICS_ADDRESS="",
        PYTHONUNBUFFERED="1",
    )


async def test_a_worker_that_never_reaches_temporal_says_so_in_one_line(
    settings: Settings, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    code, text = await _run_until_it_ends(
        [sys.executable, "-m", "worker"], _variables(settings, address, 2), tmp_path / "w.log"
    )
    assert code == 1, text
    [line] = [line for line in text.splitlines() if "cannot reach Temporal" in line]
    assert f"at {address} for 2 s" in line and "TEMPORAL_ADDRESS" in line, line
    assert "Traceback" not in text and "polling task queue" not in text, text


@contextlib.asynccontextmanager
async def _forwarder(port: int, target: str) -> AsyncIterator[None]:
    """Temporal's frontend reachable at ``port`` from now on (a TCP relay to ``target``)."""
    host, target_port = target.rsplit(":", 1)

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(target_port))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


def _said(log: Path, words: str) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return words in await asyncio.to_thread(log.read_text, errors="replace")

    return probe


async def test_a_worker_started_before_temporal_waits_for_it_then_polls(
    env: WorkflowEnvironment, settings: Settings, tmp_path: Path
) -> None:
    port = _free_port()
    log = tmp_path / "w.log"
    proc = _spawn(
        [sys.executable, "-m", "worker"], _variables(settings, f"127.0.0.1:{port}", 60), log
    )
    try:
        # it has tried and is waiting (before, it had ended with a traceback by now)
        await eventually(_said(log, "not reachable yet"), within=60)
        assert proc.poll() is None, log.read_text(errors="replace")
        async with _forwarder(port, env.client.service_client.config.target_host):
            await eventually(_said(log, "polling task queue"), within=60)
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 30)
    assert "Traceback" not in log.read_text(errors="replace")
