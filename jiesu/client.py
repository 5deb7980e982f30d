"""The Temporal client, always with the pydantic data converter (or payloads won't round-trip)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from jiesu.config import Settings
from jiesu.exiting import CannotStart

log = logging.getLogger(__name__)


async def connect_to(
    address: str,
    namespace: str,
    *,
    lazy: bool = False,
    interceptors: Sequence[Interceptor] = (),
    runtime: Runtime | None = None,
) -> Client:
    """``lazy``: connect on first use (a server that is down then fails that call, not this).
    ``interceptors`` (tracing) and ``runtime`` (metrics): jiesu.telemetry."""
    return await Client.connect(
        address, namespace=namespace, data_converter=pydantic_data_converter, lazy=lazy,
        interceptors=interceptors, runtime=runtime,
    )  # fmt: skip


async def connect(
    settings: Settings,
    *,
    lazy: bool = False,
    interceptors: Sequence[Interceptor] = (),
    runtime: Runtime | None = None,
) -> Client:
    return await connect_to(
        settings.temporal_address, settings.temporal_namespace, lazy=lazy,
        interceptors=interceptors, runtime=runtime,
    )  # fmt: skip


async def connect_patiently(
    settings: Settings,
    *,
    interceptors: Sequence[Interceptor] = (),
    runtime: Runtime | None = None,
) -> Client:
    """:func:`connect`, waiting up to ``temporal_connect_seconds`` for a Temporal that cannot
    be reached yet (started after the worker, restarting), saying so once a few seconds;
    then :class:`CannotStart` with the address and what to set — one line, not the SDK's
    traceback. Any other failure (a namespace that does not exist) is raised at once."""
    deadline = time.monotonic() + settings.temporal_connect_seconds
    pause, said = 0.5, 0.0
    while True:
        try:
            return await connect(settings, interceptors=interceptors, runtime=runtime)
        except RuntimeError as err:
            if not is_temporal_down(err):
                raise
            if time.monotonic() >= deadline:
                raise CannotStart(
                    f"cannot reach Temporal at {settings.temporal_address} for "
                    f"{settings.temporal_connect_seconds:g} s: start it, or set TEMPORAL_ADDRESS "
                    f"(JIESU_TEMPORAL_CONNECT_SECONDS: how long to wait) — {_first_line(err)}"
                ) from err
            if time.monotonic() - said >= 10:
                log.warning("Temporal at %s not reachable yet; waiting up to %g s",
                            settings.temporal_address, settings.temporal_connect_seconds)
                said = time.monotonic()
            await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0)))
            pause = min(pause * 2, 5.0)


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0][:200] if str(err) else type(err).__name__


# RPC statuses that mean "Temporal did not answer", not "Temporal said no".
TEMPORAL_DOWN = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED})

# RPC statuses of a query that mean "the workflow did not answer now", not "no such workflow"
# or "the query failed": CANCELLED (the client's rpc_timeout), DEADLINE_EXCEEDED (the server's
# own deadline), FAILED_PRECONDITION "no poller seen for task queue recently, worker may be
# down" — the server's answer, a second before the deadline, once no worker has polled the
# case's task queue for a while (matching's QueryPollerUnavailableWindow; measured: a worker
# stopped 5 s before the query gave the timeout, 15 s and later this). Fault run 28's 500.
QUERY_UNANSWERED = frozenset({
    RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.FAILED_PRECONDITION,
})  # fmt: skip


def is_temporal_down(exc: BaseException) -> bool:
    """Whether ``exc`` says Temporal could not be reached (not that it refused something)."""
    if isinstance(exc, RPCError):
        return exc.status in TEMPORAL_DOWN
    # A lazily connected client that cannot reach the server raises this on first use.
    return isinstance(exc, RuntimeError) and str(exc).startswith("Failed client connect")
