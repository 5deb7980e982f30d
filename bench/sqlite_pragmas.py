"""What the dev server's SQLite durability costs: acknowledged writes per second with the
dev server's own defaults, ``make run``'s pragmas (jiesu.ops.stack.TEMPORAL_SQLITE_PRAGMAS) and,
for reference, WAL without an fsync per commit.

    python -m bench.sqlite_pragmas [--writes 300] [--rounds 2]

For each setting, in alternating rounds, starts a Temporal dev server on a fresh SQLite file
(free loopback port, temporary folder) and times ``--writes`` sequential workflow starts and
as many signals (no worker: each call is one acknowledged write to the store). Prints a
markdown table; a measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from temporalio.client import Client

from bench.lifecycle import _free_port
from bench.load import summary_ms
from jiesu.ops import stack

SETTINGS: dict[str, list[str]] = {
    "dev-server default (DELETE + FULL)": [],
    "make run (WAL + FULL)": list(stack.TEMPORAL_SQLITE_PRAGMAS),
    # for reference only: loses the last commits when the machine (not the process) stops
    "WAL + NORMAL (not durable)": ["journal_mode=WAL", "synchronous=NORMAL"],
}


async def _connect(address: str, child: stack.Child) -> Client:
    deadline = time.monotonic() + stack.STARTUP_TIMEOUT
    while True:
        if child.proc.poll() is not None:
            raise RuntimeError(f"dev server exited: {stack.tail(child.log)}")
        try:
            return await Client.connect(address)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _measure(client: Client, writes: int, tag: str) -> dict[str, object]:
    starts, signals = [], []
    for i in range(writes):
        began = time.monotonic()
        handle = await client.start_workflow("Nothing", id=f"{tag}-{i}", task_queue="nothing")
        starts.append(time.monotonic() - began)
        began = time.monotonic()
        await handle.signal("poke")
        signals.append(time.monotonic() - began)
    total = sum(starts) + sum(signals)
    return {"writes_per_s": round(2 * writes / total, 1), "start_ms": summary_ms(starts),
            "signal_ms": summary_ms(signals)}  # fmt: skip


def run_one(pragmas: list[str], writes: int, tag: str) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix="jiesu-pragmas-"))
    port, ui_port = _free_port(), _free_port()
    cmd = [stack.temporal_binary(), "server", "start-dev", "--db-filename",
           str(folder / "temporal.db"), "--ip", "127.0.0.1", "--port", str(port),
           "--ui-port", str(ui_port), "--headless", "--log-level", "error"]  # fmt: skip
    for pragma in pragmas:
        cmd += ["--sqlite-pragma", pragma]
    child = stack.spawn("dev server", cmd, folder / "temporal.log")
    try:

        async def go() -> dict[str, object]:
            client = await _connect(f"127.0.0.1:{port}", child)
            await _measure(client, 10, f"{tag}-warm")
            return await _measure(client, writes, tag)

        return asyncio.run(go())
    finally:
        stack.stop_children([child])
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sqlite_pragmas", description=__doc__)
    p.add_argument("--writes", type=int, default=300, help="starts (and signals) per run")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    rows = []
    for round_ in range(1, args.rounds + 1):
        for name, pragmas in SETTINGS.items():
            result = run_one(pragmas, args.writes, f"r{round_}")
            load = Path("/proc/loadavg").read_text().split()[0]
            rows.append((round_, name, result, load))
    print("| round | setting | acknowledged writes/s | start p50 / p95 ms | signal p50 / p95 ms"
          " | load average |\n|---|---|---|---|---|---|")  # fmt: skip
    for round_, name, r, load in rows:
        s, g = r["start_ms"], r["signal_ms"]
        print(f"| {round_} | {name} | {r['writes_per_s']} | {s['p50']} / {s['p95']} |"  # type: ignore[index]
              f" {g['p50']} / {g['p95']} | {load} |")  # type: ignore[index]  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
