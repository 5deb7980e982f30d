"""Readiness (就绪): can this installation take a call now? Three checks, each bounded in time:

- ``postgresql`` — the pool answers ``SELECT 1``;
- ``temporal`` — the frontend answers ``GetSystemInfo``;
- ``worker`` — some worker has polled the case task queue lately (Temporal's
  ``DescribeTaskQueue`` lists the pollers it has seen, with the time of their last poll).

Each RPC is asked once more, at once, when it fails (:func:`asked_again`): Temporal's frontend
closes every connection after ``frontend.keepAliveMaxConnectionAge`` (5 minutes), and a call
caught in that switch fails with ``operation was canceled`` although the server is fine
(``python -m bench.connection_age``; CI once answered 503 for it). Not the SDK's ``retry=True``:
against a server that is down it retries until the check's time is up and says only
"TimeoutError", where two quick asks say "connection refused" at once.

Liveness (the process answers at all) needs none of these: ``/healthz`` is not this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import asyncpg
from pydantic import BaseModel
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import RPCError

T = TypeVar("T")
POSTGRESQL = "postgresql"
TEMPORAL = "temporal"
WORKER = "worker"
CHECK_TIMEOUT = timedelta(seconds=2)
# A worker long-polls for up to a minute; one not seen for longer than this has gone away
# (the server itself forgets pollers after about five minutes).
POLLER_FRESHNESS = timedelta(minutes=2)


class Check(BaseModel):
    check: str
    ok: bool
    message: str


class Readiness(BaseModel):
    ready: bool
    checks: list[Check]


async def _postgresql(pool: asyncpg.Pool) -> str:
    await pool.fetchval("SELECT 1", timeout=CHECK_TIMEOUT.total_seconds())
    return "answers"


async def asked_again(ask: Callable[[], Awaitable[T]]) -> T:
    """``ask()``, and once more if it fails with an RPC error (see the module's docstring)."""
    try:
        return await ask()
    except RPCError:
        return await ask()


async def _temporal(client: Client) -> str:
    await asked_again(
        lambda: client.workflow_service.get_system_info(
            GetSystemInfoRequest(), retry=False, timeout=CHECK_TIMEOUT
        )
    )
    return "answers"


async def _worker(client: Client, task_queue: str) -> str:
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    described = await asked_again(
        lambda: client.workflow_service.describe_task_queue(
            request, retry=False, timeout=CHECK_TIMEOUT
        )
    )
    since = datetime.now(UTC) - POLLER_FRESHNESS
    fresh = [p for p in described.pollers if p.last_access_time.ToDatetime(UTC) >= since]
    if not fresh:
        raise LookupError(f"no worker has polled task queue {task_queue} lately")
    return f"{len(fresh)} poller(s) on {task_queue}"


async def _run(name: str, probe: Awaitable[str]) -> Check:
    try:
        # The RPC timeouts bound each call; this bounds a connection attempt too.
        message = await asyncio.wait_for(probe, CHECK_TIMEOUT.total_seconds() + 1)
    except Exception as exc:  # any failure is "not ready", said with its reason
        reason = (str(exc).strip() or type(exc).__name__).splitlines()[0][:200]
        return Check(check=name, ok=False, message=reason)
    return Check(check=name, ok=True, message=message)


async def readiness(client: Client, pool: asyncpg.Pool, task_queue: str) -> Readiness:
    """The three checks, run at once."""
    checks = await asyncio.gather(
        _run(POSTGRESQL, _postgresql(pool)),
        _run(TEMPORAL, _temporal(client)),
        _run(WORKER, _worker(client, task_queue)),
    )
    return Readiness(ready=all(c.ok for c in checks), checks=list(checks))
