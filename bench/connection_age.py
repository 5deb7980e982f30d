"""Why every raw Temporal RPC of ours asks the SDK to retry: the frontend's connection switch.

    python -m bench.connection_age [--age 1s] [--seconds 45] [--callers 8] [--rounds 2]

Temporal's frontend closes each client connection after ``frontend.keepAliveMaxConnectionAge``
(5 minutes by default) and the client opens a new one. A call that meets the switch can fail
with ``CANCELLED: operation was canceled`` (now and then ``INTERNAL: h2 protocol error``) while
the server is perfectly well. The SDK's own client calls (start, signal, query) retry such
failures; a raw ``client.workflow_service.…`` call does so only when asked (``retry=True``).
``/readyz`` once answered 503 in CI for this (``not ready: temporal``, ``operation was
canceled``).

This starts one dev server whose connections live ``--age`` (so that a minute holds many
switches instead of one every 5 minutes), and in alternating rounds calls ``GetSystemInfo``
(the readiness check's call) from ``--callers`` concurrent loops for ``--seconds``, three ways:
once (``retry=False``, as the readiness check did), asked once more at once on a failure (the
readiness check's ``asked_again`` now), and with the SDK's ``retry=True`` (the doctor's and the
bootstrap's calls). It prints per round the calls answered and the failures by status. The
frontend's rate limits are raised out of the way (a failure is then the switch's); a
``RESOURCE_EXHAUSTED`` left is counted apart. A measurement, not a test
(tests/test_temporal_calls.py checks that every raw call is asked again).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import tempfile
import time
from collections.abc import Awaitable, Sequence
from datetime import timedelta
from pathlib import Path

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from bench.lifecycle import _free_port
from bench.sqlite_pragmas import _connect
from jiesu.health.readiness import asked_again
from jiesu.ops import stack

CALL_TIMEOUT = timedelta(seconds=2)  # the readiness check's (jiesu/health/readiness.py)


RATE_LIMITS = ("frontend.rps", "frontend.namespaceRPS", "frontend.globalNamespaceRPS")
WAYS = ("once", "asked again", "retry=True")


async def _ask(client: Client, way: str) -> None:
    def call() -> Awaitable[object]:
        return client.workflow_service.get_system_info(
            GetSystemInfoRequest(), retry=way == "retry=True", timeout=CALL_TIMEOUT
        )

    await (asked_again(call) if way == "asked again" else call())


async def _round(client: Client, way: str, seconds: float, callers: int) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    end = time.monotonic() + seconds

    async def caller() -> None:
        while time.monotonic() < end:
            try:
                await _ask(client, way)
                counts["answered"] += 1
            except RPCError as failed:
                key = "rate limited" if failed.status == RPCStatusCode.RESOURCE_EXHAUSTED else (
                    f"{failed.status.name}: {failed.message}")  # fmt: skip
                counts[key] += 1
            await asyncio.sleep(0.001)

    await asyncio.gather(*(caller() for _ in range(callers)))
    return dict(counts)


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def _table(rows: list[tuple[int, str, dict[str, int], str]]) -> str:
    lines = ["| round | asked | answered | failed at the switch | rate limited | load |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for round_, way, counts, load in rows:
        failed = {k: v for k, v in counts.items() if k not in ("answered", "rate limited")}
        said = ", ".join(f"{v} × {k}" for k, v in sorted(failed.items())) or "0"
        lines.append(f"| {round_} | {way} | {counts.get('answered', 0)} |"
                     f" {said} | {counts.get('rate limited', 0)} | {load} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.connection_age", description=__doc__)
    p.add_argument("--age", default="1s", help="frontend.keepAliveMaxConnectionAge")
    p.add_argument("--seconds", type=float, default=45.0, help="per round and setting")
    p.add_argument("--callers", type=int, default=8, help="concurrent callers")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="jiesu-connection-age-"))
    port, ui_port = _free_port(), _free_port()
    cmd = [stack.temporal_binary(), "server", "start-dev", "--db-filename",
           str(folder / "temporal.db"), "--ip", "127.0.0.1", "--port", str(port),
           "--ui-port", str(ui_port), "--headless", "--log-level", "error",
           "--dynamic-config-value",
           f'frontend.keepAliveMaxConnectionAge="{args.age}"']  # fmt: skip
    for limit in RATE_LIMITS:  # so that a failure is the switch's, not the rate limit's
        cmd += ["--dynamic-config-value", f"{limit}=1000000"]
    child = stack.spawn("dev server", cmd, folder / "temporal.log")
    rows = []
    try:

        async def go() -> None:
            client = await _connect(f"127.0.0.1:{port}", child)
            for round_ in range(1, args.rounds + 1):
                for way in WAYS:
                    counts = await _round(client, way, args.seconds, args.callers)
                    rows.append((round_, way, counts, _load()))
                    print(f"round {round_} {way}: {counts}", flush=True)

        asyncio.run(go())
    finally:
        stack.stop_children([child])
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\nconnections live {args.age}; {args.callers} callers, {args.seconds:g} s a round\n")
    print(_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
