"""A/B of bare workflow shapes (bench/ceiling.py) on one Temporal server, interleaved: what a
difference in the workflow's commands costs the server, without Jiesu around it.

    python -m bench.shape_ab --shapes lean,lean-sa [--rounds 3] [--duration 15]

Starts the embedded stack like bench/lifecycle.py and the ceiling worker in its own process;
each round runs every shape once (closed loop, ``--concurrency`` clients, driven like
bench/lifecycle.py drives shape ``lean``), and reports per shape and round: workflows/s, CPU ms
per completed workflow of the Temporal server, the ceiling worker and the harness
(bench/procstats.py), and the cores other processes kept busy; then the medians. Not a
pass/fail test; not run by ``make``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import ceiling, lifecycle
from bench.load import closed_loop
from bench.procstats import ProcessMonitor
from jiesu import db
from jiesu.client import connect
from jiesu.ops import stack


async def _round(
    client: Any, mon: ProcessMonitor, shape: str, name: str, args: argparse.Namespace
) -> dict[str, float]:
    with mon.phase(name):
        out = await closed_loop(
            lambda: ceiling.run_shape(client, shape=shape), args.concurrency, args.duration
        )
    rep, done = mon.report(name), max(len(out.results), 1)
    return {
        "per_s": len(out.results) / rep["wall_s"],
        "temporal_ms": 1000 * rep["temporal"]["cpu_s"] / done,
        "worker_ms": 1000 * rep["ceiling_worker"]["cpu_s"] / done,
        "harness_ms": 1000 * rep["harness"]["cpu_s"] / done,
        "other_cores": rep["load"]["other_cores"],
        "errors": out.errors,
    }


async def run(s: stack.Stack, data: Path, args: argparse.Namespace) -> None:
    settings = s.client_settings()
    client = await connect(settings)
    pool = await db.create_pool(settings.database_url, max_size=2)
    pids = await lifecycle._pids(s, pool)
    child = lifecycle._start_ceiling_worker(s, data)
    pids["ceiling_worker"] = child.proc.pid
    mon = ProcessMonitor(pids)
    mon.start()
    shapes = args.shapes.split(",")
    rows: dict[str, list[dict[str, float]]] = {shape: [] for shape in shapes}
    try:
        for _ in range(3):  # the ceiling worker is up and its task queue exists
            await asyncio.wait_for(ceiling.run_noop(client), 30)
        for shape in shapes:  # warm-up
            await closed_loop(lambda shape=shape: ceiling.run_shape(client, shape=shape), 4, 3)
        for n in range(1, args.rounds + 1):
            for shape in shapes:
                row = await _round(client, mon, shape, f"{n}-{shape}", args)
                rows[shape].append(row)
                print(f"round {n} {shape}", {k: round(v, 1) for k, v in row.items()}, flush=True)
        for shape in shapes:
            median = {k: round(statistics.median(r[k] for r in rows[shape]), 1)
                      for k in rows[shape][0]}  # fmt: skip
            print(f"median {shape}", median, flush=True)
    finally:
        stack.stop_children([child])
        await mon.stop()
        await pool.close()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.shape_ab", description=__doc__)
    p.add_argument("--shapes", default="lean,lean-sa", help="shapes of ShapeWorkflow, A,B,…")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=15.0, help="seconds per shape and round")
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args()
    data = Path(tempfile.mkdtemp(prefix="jiesu-shape-ab-"))
    with ExitStack() as cleanup:
        s = lifecycle.start_stack(data, cleanup)
        asyncio.run(run(s, data, args))


if __name__ == "__main__":
    main()
