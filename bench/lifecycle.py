"""Lifecycle benchmark: whole cases through the HTTP API against the embedded stack, compared
with bare workflows on the same Temporal server in the same run.

    python -m bench.lifecycle [--duration 15] [--rate R] [--cases N] [--out PATH]

Starts its own stack in a temporary folder on free loopback ports (Temporal dev server
persisting to SQLite, embedded PostgreSQL, bootstrap, ``python -m worker``, the API under
uvicorn) — or uses ``TEMPORAL_ADDRESS`` / ``DATABASE_URL`` when set — and stops it at the end.

Phases, in this order:
1. ceiling: a no-op workflow and a bare workflow of the lifecycle's shape (bench/ceiling.py),
   each driven by N concurrent starters through a Temporal client, worker in its own process;
2. maximum: cases driven by N concurrent clients (closed loop) at each ``--concurrency``
   level; the best level's cases/s is the sustained maximum;
3. fixed rate: ``--rate`` cases/s (default: half the maximum) arriving on schedule (open
   loop), each also timed until the read model shows every action;
4. history events per case, from a few closed cases' Temporal histories.

Writes ``--out`` (JSON, default bench/results/lifecycle.json) and a markdown table next to it
(same name, .md), and prints the table. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench import ceiling, report
from bench.case_driver import CaseDriver, CaseTimings
from bench.load import Outcome, closed_loop, open_loop, summary_ms
from bench.procstats import ProcessMonitor
from jiesu import db
from jiesu.client import connect
from jiesu.config import Settings
from jiesu.ops import stack

RESULTS = Path(__file__).parent / "results" / "lifecycle.json"
HISTORY_SAMPLES = 5
DRAIN_TIMEOUT = 60.0


def _levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.lifecycle", description=__doc__)
    p.add_argument(
        "--duration",
        type=float,
        default=15.0,
        help="measured seconds per load level and for the fixed rate (15)",
    )
    p.add_argument(
        "--warmup", type=float, default=3.0, help="seconds at each level before measuring (3)"
    )
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="fixed-rate phase, cases/s (default: half the measured maximum)",
    )
    p.add_argument(
        "--cases",
        type=int,
        default=0,
        help="cases in the fixed-rate phase (default: rate × duration)",
    )
    p.add_argument(
        "--concurrency",
        type=_levels,
        default=_levels("8,16,32"),
        help="concurrent clients per level, for cases and same-shape workflows",
    )
    p.add_argument(
        "--noop-concurrency",
        type=_levels,
        default=_levels("16,64"),
        help="concurrent starters per level for the no-op workflow",
    )
    p.add_argument("--no-ceiling", action="store_true", help="skip the bare workflows")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results ({RESULTS})")
    return p.parse_args(argv)  # fmt: skip


# --- the stack --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_stack(data: Path, cleanup: ExitStack) -> stack.Stack:
    """The embedded stack (jiesu.ops.stack) on free ports, data under ``data``."""
    os.environ.setdefault("JIESU_TEMPORAL_PORT", str(_free_port()))
    os.environ.setdefault("JIESU_TEMPORAL_UI_PORT", str(_free_port()))
    os.environ["JIESU_API_PORT"] = str(_free_port())
    os.environ["JIESU_API_HOST"] = "127.0.0.1"
    os.environ["JIESU_DEMO_DATA"] = "1"  # the clients use the demo keys
    s = stack.Stack(Settings(), data, cleanup)
    s.start_temporal()
    s.start_postgres()
    s.prepare()
    s.start_app()
    return s


def _postmaster_pid(data_directory: str) -> int | None:
    try:
        return int((Path(data_directory) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


async def _pids(s: stack.Stack, pool: asyncpg.Pool) -> dict[str, int]:
    pids = {c.name: c.proc.pid for c in s.children}
    named = {"worker": pids.get("worker"), "api": pids.get("API"),
             "temporal": pids.get("Temporal dev server")}  # fmt: skip
    datadir = await pool.fetchval("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
    named["postgres"] = _postmaster_pid(datadir) if datadir else None
    named["harness"] = os.getpid()
    return {k: v for k, v in named.items() if v is not None}


def _start_ceiling_worker(s: stack.Stack, data: Path) -> stack.Child:
    cmd = [
        sys.executable,
        "-m",
        "bench.ceiling",
        "--address",
        s.env["TEMPORAL_ADDRESS"],
        "--namespace",
        s.env["TEMPORAL_NAMESPACE"],
        "--task-queue",
        ceiling.TASK_QUEUE,
    ]
    return stack.spawn("ceiling worker", cmd, data / "ceiling-worker.log", s.env)  # fmt: skip


# --- phases -----------------------------------------------------------------------------------


def _timed(job: Callable[[], Awaitable[str]]) -> Callable[[], Awaitable[tuple[str, float]]]:
    async def run() -> tuple[str, float]:
        began = time.monotonic()
        ident = await job()
        return ident, time.monotonic() - began

    return run


async def ramp(
    name: str,
    job: Callable[[], Awaitable[Any]],
    levels: Sequence[int],
    args: argparse.Namespace,
    describe: Callable[[Outcome[Any], float, float], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Closed loop at each concurrency level; ``describe`` summarises one level."""
    rows = []
    for level in levels:
        began = time.monotonic()
        outcome = await closed_loop(job, level, args.warmup + args.duration)
        window = (began + args.warmup, began + args.warmup + args.duration)
        row = {"concurrency": level, "per_s": round(outcome.rate(*window), 2),
               "errors": outcome.errors, "error_samples": outcome.error_samples,
               **describe(outcome, *window)}  # fmt: skip
        print(f"  {name} ×{level}: {row['per_s']}/s, errors {outcome.errors}", flush=True)
        rows.append(row)
    return rows


def _in_window(outcome: Outcome[Any], start: float, end: float) -> list[Any]:
    return [r for r, t in zip(outcome.results, outcome.finished_at, strict=True)
            if start <= t < end]  # fmt: skip


def _describe_bare(outcome: Outcome[tuple[str, float]], start: float, end: float) -> dict:
    done = _in_window(outcome, start, end)
    return {"latency_ms": summary_ms([s for _, s in done]), "sample_ids": [i for i, _ in done[:3]]}


def _describe_cases(outcome: Outcome[CaseTimings], start: float, end: float) -> dict:
    done = _in_window(outcome, start, end)
    return {
        "intake_ms": summary_ms([c.intake for c in done]),
        "lifecycle_ms": summary_ms([c.total for c in done]),
        "sample_ids": [c.case_id for c in done[:HISTORY_SAMPLES]],
    }


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return max(rows, key=lambda r: r["per_s"]) if rows else {}


async def run_ceilings(
    client: Client, s: stack.Stack, data: Path, args: argparse.Namespace, mon: ProcessMonitor
) -> dict[str, Any]:
    child = _start_ceiling_worker(s, data)
    try:
        for _ in range(3):  # the worker is up and the task queue exists
            await asyncio.wait_for(ceiling.run_noop(client), 30)
        noop = _timed(lambda: ceiling.run_noop(client))
        shape = _timed(lambda: ceiling.run_shape(client))
        mon.pids["ceiling_worker"] = child.proc.pid
        with mon.phase("ceiling_noop"):
            noop_rows = await ramp("no-op", noop, args.noop_concurrency, args, _describe_bare)
        with mon.phase("ceiling_shape"):
            shape_rows = await ramp("same-shape", shape, args.concurrency, args, _describe_bare)
        local = _timed(lambda: ceiling.run_shape(client, local=True))
        level = [_best(shape_rows)["concurrency"]]
        with mon.phase("ceiling_shape_local"):
            local_rows = await ramp("same-shape, local projections", local, level, args,
                                    _describe_bare)  # fmt: skip
    finally:
        stack.stop_children([child])
        mon.pids.pop("ceiling_worker", None)
    return {
        "noop": {"levels": noop_rows, "best": _best(noop_rows),
                 "cpu": mon.report("ceiling_noop")},
        "shape": {"levels": shape_rows, "best": _best(shape_rows),
                  "cpu": mon.report("ceiling_shape")},
        "shape_local": {"levels": local_rows, "best": _best(local_rows),
                        "cpu": mon.report("ceiling_shape_local")},
    }  # fmt: skip


async def run_maximum(
    http: httpx.AsyncClient, args: argparse.Namespace, mon: ProcessMonitor
) -> dict[str, Any]:
    driver = CaseDriver(http)
    print("  warming up the lifecycle...", flush=True)
    await closed_loop(driver.run, 4, 3.0)
    with mon.phase("maximum"):
        rows = await ramp("cases", driver.run, args.concurrency, args, _describe_cases)
    return {"levels": rows, "best": _best(rows), "cpu": mon.report("maximum")}


async def run_fixed(
    http: httpx.AsyncClient, pool: asyncpg.Pool, rate: float, args: argparse.Namespace,
    mon: ProcessMonitor,
) -> dict[str, Any]:  # fmt: skip
    count = args.cases or max(1, round(rate * args.duration))
    driver = CaseDriver(http, read_model=pool)
    print(f"  fixed rate: {count} cases at {rate:.2f}/s...", flush=True)
    began = time.monotonic()
    with mon.phase("fixed"):
        outcome = await open_loop(driver.run, rate, count, job_timeout=DRAIN_TIMEOUT)
    elapsed = (max(outcome.finished_at) if outcome.finished_at else time.monotonic()) - began
    cases: list[CaseTimings] = outcome.results
    actions = ("accept", "contact", "reply", "rating")
    return {
        "rate": round(rate, 2),
        "cases": count,
        "completed": len(cases),
        "errors": outcome.errors,
        "error_samples": outcome.error_samples,
        "achieved_per_s": round(len(cases) / elapsed, 2) if elapsed > 0 else None,
        "intake_ms": summary_ms([c.intake for c in cases]),
        "routed_ms": summary_ms([c.routed for c in cases]),
        "api_ms": {a: summary_ms([c.api[a] for c in cases if a in c.api]) for a in actions},
        "read_model_ms": {
            a: summary_ms([c.read_model[a] for c in cases if a in c.read_model]) for a in actions
        },
        "lifecycle_ms": summary_ms([c.total for c in cases]),
        "sample_ids": [c.case_id for c in cases[:HISTORY_SAMPLES]],
        "cpu": mon.report("fixed"),
    }


async def history_events(client: Client, ids: Sequence[str]) -> dict[str, Any]:
    """Events per closed workflow (median of the samples) and the event types of the first."""
    counts: list[int] = []
    types: collections.Counter[str] = collections.Counter()
    for ident in ids:
        history = await client.get_workflow_handle(ident).fetch_history()
        counts.append(len(history.events))
        if not types:
            types.update(EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
                         for e in history.events)  # fmt: skip
    counts.sort()
    return {"samples": counts, "median": counts[len(counts) // 2] if counts else None,
            "types": dict(types.most_common())}  # fmt: skip


# --- the run ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout
        total = mem.splitlines()[1].split()[1]
    except (OSError, IndexError):
        total = "?"
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory": total,
            "python": platform.python_version(), "platform": platform.platform()}  # fmt: skip


async def run_bench(s: stack.Stack, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(TEMPORAL_ADDRESS=s.env["TEMPORAL_ADDRESS"],
                        TEMPORAL_NAMESPACE=s.env["TEMPORAL_NAMESPACE"],
                        DATABASE_URL=s.env["DATABASE_URL"])  # fmt: skip
    client = await connect(settings)
    pool = await db.create_pool(settings.database_url, max_size=8)
    mon = ProcessMonitor(await _pids(s, pool))
    mon.start()
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    results: dict[str, Any] = {"machine": machine(), "args": _args_json(args),
                               "started_at": datetime.now(UTC).isoformat()}  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=s.api_url, timeout=60, limits=limits) as http:
            if not args.no_ceiling:
                print("Ceiling: bare workflows on the same server...", flush=True)
                results["ceiling"] = await run_ceilings(client, s, data, args, mon)
            print("Lifecycle: maximum throughput...", flush=True)
            results["maximum"] = await run_maximum(http, args, mon)
            rate = args.rate or max(0.5, results["maximum"]["best"].get("per_s", 1.0) / 2)
            print("Lifecycle: fixed rate...", flush=True)
            results["fixed"] = await run_fixed(http, pool, rate, args, mon)
        results["history"] = await _histories(client, results)
    finally:
        await mon.stop()
        await pool.close()
    results["ratios"] = report.ratios(results)
    return results


async def _histories(client: Client, results: dict[str, Any]) -> dict[str, Any]:
    out = {"case": await history_events(client, results["fixed"]["sample_ids"])}
    if "ceiling" in results:
        for kind in ("noop", "shape", "shape_local"):
            ids = results["ceiling"][kind]["best"].get("sample_ids", [])
            out[kind] = await history_events(client, ids)
    return out


def _args_json(args: argparse.Namespace) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data = Path(tempfile.mkdtemp(prefix="jiesu-bench-"))
    try:
        with ExitStack() as cleanup:
            s = start_stack(data, cleanup)
            results = asyncio.run(run_bench(s, data, args))
            print("Stopping the stack...", flush=True)
    except stack.StackError as exc:
        print(f"error: {exc}; logs in {data}", file=sys.stderr)
        return 1
    shutil.rmtree(data, ignore_errors=True)
    table = report.markdown(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"\nResults: {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
