"""Lifecycle benchmark: whole cases through the HTTP API against the embedded stack, compared
with bare workflows on the same Temporal server, interleaved so that noise hits both sides.

    python -m bench.lifecycle [--rounds 4] [--duration 15] [--concurrency 16] [--out PATH]

Starts its own stack in a temporary folder on free loopback ports (Temporal dev server
persisting to SQLite, embedded PostgreSQL, bootstrap, ``python -m worker``, the API under
uvicorn) — or uses ``TEMPORAL_ADDRESS`` / ``DATABASE_URL`` when set — and stops it at the end.

1. Rounds: ``--rounds`` times, in this order, each for ``--warmup`` + ``--duration`` seconds
   and all at the same ``--concurrency`` (closed loop): a no-op workflow (A), a bare workflow
   of the case's shape (B, bench/ceiling.py, worker in its own process), the Jiesu case
   lifecycle through HTTP (C). A B C A B C … on the same server: the database grows a little
   during a round, and each round's three phases see almost the same state. Per round: the
   ratio lifecycle ÷ bare shape, the machine's load average and the CPU of processes not ours.
   The ratio reported is the median of the per-round ratios, with its min–max.
2. Fixed rate: half the sustained maximum (the median lifecycle rate of the rounds, or
   ``--rate``), arrivals at random (a Poisson process at that rate, ``--arrivals``; open
   loop) for ``--fixed-duration`` seconds; every other case acts at a person's pace
   (``--think`` on average before each action), the others back to back; every action's HTTP
   answer is timed (p50/p95/p99), and the read model until it shows it.
3. History: events and bytes per standard urgent case (intake → accept → contact → reply →
   rating → closed) from ``fetch_history()``, and the same for the bare workflows.

Writes ``--out`` (JSON, default bench/results/lifecycle.json) and a markdown report next to it
(same name, .md), and prints the report. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench import ceiling, cpu_speed, disk, report
from bench.case_driver import CaseDriver, CaseTimings
from bench.http import Http
from bench.load import ARRIVALS, Outcome, closed_loop, open_loop, summary_ms
from bench.procstats import ProcessMonitor
from jiesu import db
from jiesu.client import connect
from jiesu.config import Settings
from jiesu.gc_tuning import freeze_startup_objects
from jiesu.ops import stack, temporal_settings

RESULTS = Path(__file__).parent / "results" / "lifecycle.json"
HISTORY_SAMPLES = 5
DRAIN_TIMEOUT = 60.0


def _levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.lifecycle", description=__doc__)
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds (4; at least 3)")
    p.add_argument("--duration", type=float, default=15.0,
                   help="measured seconds per phase of a round (15)")
    p.add_argument("--warmup", type=float, default=3.0,
                   help="seconds at the start of each phase that are not measured (3)")
    p.add_argument("--concurrency", type=int, default=16,
                   help="concurrent clients, the same for all three workloads (16)")
    p.add_argument("--rate", type=float, default=0.0,
                   help="fixed-rate phase, cases/s (default: half the sustained maximum)")
    # 60 s: ~400 answers per pace at this machine's half maximum, enough for a p99's 95 %
    # interval to have an upper end (bench/load.py percentile_ranks: ~370 at least).
    p.add_argument("--fixed-duration", type=float, default=60.0,
                   help="seconds of arrivals in the fixed-rate phase (60)")
    p.add_argument("--think", type=float, default=0.5,
                   help="fixed-rate phase: every other case waits this long before each action "
                        "(a person's pace; the others act back to back) (0.5)")
    p.add_argument("--think-spread", type=float, default=0.5,
                   help="the pause is drawn uniformly from think × (1 ± this) (0.5: 0.25–0.75 s), "
                        "so that paced cases do not act in step")
    p.add_argument("--arrivals", choices=ARRIVALS, default="poisson",
                   help="fixed-rate phase: cases arrive at random, as calls do (poisson), or "
                        "evenly spaced (even: the earlier harness) (poisson)")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the arrivals and pauses: the same schedule run after run (1)")
    p.add_argument("--log-actions", type=Path, default=None,
                   help="fixed-rate phase: one JSON line per action (start, ms, the machine's "
                        "I/O stall during it, action, pace) "
                        "in this file, to see when slow actions ran (docs/performance.md)")
    p.add_argument("--disk-probe", type=float, default=20.0,
                   help="seconds of the disk's own fdatasync latency, measured in the stack's "
                        "data folder before the fixed-rate phase: the baseline of its "
                        "latencies (bench/disk.py; 20, 0 skips)")
    p.add_argument("--cpu-probe", type=float, default=10.0,
                   help="seconds of a fixed Python loop timed every 0.25 s after the disk's "
                        "probe: how steady the CPU is, the other baseline (bench/cpu_speed.py; "
                        "10, 0 skips)")
    p.add_argument("--tmp", type=Path, default=None,
                   help="folder to create the stack's data folder in (the system's temporary "
                        "folder); /dev/shm keeps it in memory: no waits for the disk and no "
                        "durability, to measure the software without the disk")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results ({RESULTS})")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    return args  # fmt: skip


# --- the stack --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_stack(data: Path, cleanup: ExitStack) -> stack.Stack:
    """The embedded stack (jiesu.ops.stack) on free ports, data under ``data``."""
    os.environ.setdefault("JIESU_TEMPORAL_PORT", str(_free_port()))
    os.environ.setdefault("JIESU_TEMPORAL_UI_PORT", str(_free_port()))
    os.environ.setdefault("JIESU_API_PORT", str(_free_port()))
    os.environ["JIESU_API_HOST"] = "127.0.0.1"
    os.environ["JIESU_DEMO_DATA"] = "1"  # the clients use the demo keys
    s = stack.Stack(Settings(), data, cleanup)
    s.start_temporal()
    s.start_postgres()
    s.prepare()
    s.start_app()
    # The harness's own full collections (up to ~100 ms with its start-up objects) would be
    # counted as the stack's latency: frozen like the API's and the worker's.
    freeze_startup_objects()
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

KINDS = ("noop", "shape", "lifecycle")  # A, B, C of every round


def _timed(job: Callable[[], Awaitable[str]]) -> Callable[[], Awaitable[tuple[str, float]]]:
    async def run() -> tuple[str, float]:
        began = time.monotonic()
        ident = await job()
        return ident, time.monotonic() - began

    return run


def _in_window(outcome: Outcome[Any], start: float, end: float) -> list[Any]:
    return [r for r, t in zip(outcome.results, outcome.finished_at, strict=True)
            if start <= t < end]  # fmt: skip


def _describe_bare(done: list[tuple[str, float]]) -> dict[str, Any]:
    return {"latency_ms": summary_ms([s for _, s in done]),
            "sample_ids": [i for i, _ in done[:HISTORY_SAMPLES]]}  # fmt: skip


def _describe_cases(done: list[CaseTimings]) -> dict[str, Any]:
    return {
        "intake_ms": summary_ms([c.intake for c in done]),
        "lifecycle_ms": summary_ms([c.total for c in done]),
        "sample_ids": [c.case_id for c in done[:HISTORY_SAMPLES]],
    }


@dataclass
class Workloads:
    """The three jobs of a round, each one unit of work for one closed-loop client."""

    noop: Callable[[], Awaitable[tuple[str, float]]]
    shape: Callable[[], Awaitable[tuple[str, float]]]
    lifecycle: Callable[[], Awaitable[CaseTimings]]

    async def measure(self, kind: str, args: argparse.Namespace) -> dict[str, Any]:
        """One phase: ``--concurrency`` clients for warm-up + duration; the rate in the window."""
        job: Callable[[], Awaitable[Any]] = getattr(self, kind)
        began = time.monotonic()
        outcome = await closed_loop(job, args.concurrency, args.warmup + args.duration)
        window = (began + args.warmup, began + args.warmup + args.duration)
        done = _in_window(outcome, *window)
        describe = _describe_cases if kind == "lifecycle" else _describe_bare
        return {"per_s": round(outcome.rate(*window), 3), "completed": len(done),
                "errors": outcome.errors, "error_samples": outcome.error_samples,
                **describe(done)}  # fmt: skip


async def run_rounds(
    work: Workloads, args: argparse.Namespace, mon: ProcessMonitor
) -> list[dict[str, Any]]:
    """A B C, A B C, …: each kind once per round, at the same concurrency, on the same server."""
    rounds = []
    for n in range(1, args.rounds + 1):
        row: dict[str, Any] = {"round": n}
        for kind in KINDS:
            name = f"round{n}_{kind}"
            with mon.phase(name):
                row[kind] = await work.measure(kind, args)
            row[kind]["cpu"] = mon.report(name)
            row[kind]["load"] = row[kind]["cpu"]["load"]
            print(f"  round {n} {kind}: {row[kind]['per_s']}/s, errors {row[kind]['errors']},"
                  f" load {row[kind]['load']}", flush=True)  # fmt: skip
        rounds.append(row)
    return rounds


async def warm_up(work: Workloads) -> None:
    """Every path once (worker caches, task queues, connection pools) before anything counts."""
    print("  warming up...", flush=True)
    for kind in KINDS:
        await closed_loop(getattr(work, kind), 4, 3.0)


async def run_fixed(
    http: Http, pool: asyncpg.Pool, rate: float, args: argparse.Namespace,
    mon: ProcessMonitor,
) -> dict[str, Any]:  # fmt: skip
    count = max(1, round(rate * args.fixed_duration))
    log = args.log_actions.open("w") if args.log_actions else None
    back_to_back = CaseDriver(http, read_model=pool, log=log)
    paced = CaseDriver(http, read_model=pool, think=args.think, log=log,
                       think_spread=args.think_spread, seed=args.seed)
    turn = itertools.count()

    async def alternate() -> tuple[bool, CaseTimings]:
        is_paced = next(turn) % 2 == 1
        return is_paced, await (paced if is_paced else back_to_back).run()

    print(f"  fixed rate: {count} cases at {rate:.2f}/s...", flush=True)
    began, stall = time.monotonic(), disk.io_full_us()
    try:
        with mon.phase("fixed"):
            outcome = await open_loop(alternate, rate, count, job_timeout=DRAIN_TIMEOUT,
                                      arrivals=args.arrivals, seed=args.seed)
    finally:
        if log is not None:
            log.close()
    stalled = disk.stall_ms(stall, disk.io_full_us())
    elapsed = (max(outcome.finished_at) if outcome.finished_at else time.monotonic()) - began
    cases: list[CaseTimings] = [c for is_paced, c in outcome.results if not is_paced]
    paced_cases = [c for is_paced, c in outcome.results if is_paced]
    return {
        "rate": round(rate, 2),
        "cases": count,
        "completed": len(outcome.results),
        "errors": outcome.errors,
        "error_samples": outcome.error_samples,
        "achieved_per_s": round(len(outcome.results) / elapsed, 2) if elapsed > 0 else None,
        "intake_ms": summary_ms([c.intake for c in [*cases, *paced_cases]]),
        "routed_ms": summary_ms([c.routed for c in [*cases, *paced_cases]]),
        "api_ms": {a: summary_ms([c.api[a] for c in cases if a in c.api]) for a in ACTIONS},
        "department_actions_ms": summary_ms(
            [c.api[a] for c in cases for a in DEPARTMENT_ACTIONS if a in c.api]
        ),
        "rate_given": bool(args.rate),  # --rate: not half the maximum, the targets do not apply
        "think_s": args.think,
        "think_spread": args.think_spread,
        "arrivals": args.arrivals,
        "seed": args.seed,
        "paced_cases": len(paced_cases),
        "paced_department_actions_ms": summary_ms(
            [c.api[a] for c in paced_cases for a in DEPARTMENT_ACTIONS if a in c.api]
        ),
        "paced_rating_ms": summary_ms([c.api["rating"] for c in paced_cases if "rating" in c.api]),
        "paced_lifecycle_ms": summary_ms([c.total for c in paced_cases]),  # with the pauses
        "read_model_ms": {
            a: summary_ms([c.read_model[a] for c in cases if a in c.read_model]) for a in ACTIONS
        },
        **_disk_share(cases, paced_cases, stalled, elapsed),
        "lifecycle_ms": summary_ms([c.total for c in cases]),
        "answered_202": sum(len(c.late) for c in [*cases, *paced_cases]),
        "sample_ids": [c.case_id for c in cases[:HISTORY_SAMPLES]],
        "cpu": mon.report("fixed"),
    }


ACTIONS = ("accept", "contact", "reply", "rating")
DEPARTMENT_ACTIONS = ("accept", "contact", "reply")  # the rating is the citizen's
STALLED_MS = 20.0  # an action during which the machine waited this long on I/O was stalled


def _disk_share(
    cases: Sequence[CaseTimings], paced: Sequence[CaseTimings], stalled: float | None,
    elapsed: float,
) -> dict[str, Any]:  # fmt: skip
    """The disk's part in the department actions' answers: the same answers less the time the
    whole machine waited on I/O during each (PSI, bench/disk.py) — what the software takes
    when the disk does not stall — and how many actions a stall touched."""

    def less_stall(group: Sequence[CaseTimings]) -> list[float]:
        return [max(0.0, c.api[a] - c.io_stall[a] / 1000)
                for c in group for a in DEPARTMENT_ACTIONS if a in c.api and a in c.io_stall]

    stalls = [c.io_stall[a] for c in [*cases, *paced] for a in DEPARTMENT_ACTIONS
              if a in c.io_stall]  # fmt: skip
    if not stalls:  # no PSI on this machine
        return {}
    return {
        "department_actions_less_io_stall_ms": summary_ms(less_stall(cases)),
        "paced_department_actions_less_io_stall_ms": summary_ms(less_stall(paced)),
        "io_stalled_actions": sum(s >= STALLED_MS for s in stalls),
        "io_stalled_threshold_ms": STALLED_MS,
        # 0.0 is a measurement (no stall, e.g. --tmp /dev/shm), not a missing one
        "io_full_share": (
            round(stalled / 1000 / elapsed, 4) if stalled is not None and elapsed > 0 else None
        ),
    }


async def history_size(client: Client, ids: Sequence[str]) -> dict[str, Any]:
    """Events and bytes per closed workflow (median of the samples), and the event types of
    the first. Bytes: the events as stored (protobuf) and as exported (JSON, the form of
    tests/histories/*.json)."""
    counts: list[int] = []
    proto: list[int] = []
    as_json: list[int] = []
    types: collections.Counter[str] = collections.Counter()
    for ident in ids:
        history = await client.get_workflow_handle(ident).fetch_history()
        counts.append(len(history.events))
        proto.append(sum(e.ByteSize() for e in history.events))
        as_json.append(len(history.to_json().encode()))
        if not types:
            types.update(EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
                         for e in history.events)  # fmt: skip
    return {"samples": sorted(counts), "median": _median(counts),
            "proto_bytes": _median(proto), "json_bytes": _median(as_json),
            "types": dict(types.most_common())}  # fmt: skip


def _median(values: Sequence[float]) -> Any:
    return statistics.median_low(values) if values else None


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


def temporal_server() -> dict[str, Any]:
    """How the dev server was started: its SQLite pragmas and dynamic config (figures depend
    on both; JIESU_TEMPORAL_SQLITE_PRAGMAS / JIESU_TEMPORAL_DYNAMIC_CONFIG change them)."""
    return {"sqlite_pragmas": stack.sqlite_pragmas(),
            "dynamic_config": temporal_settings.dynamic_config()}  # fmt: skip


async def run_bench(s: stack.Stack, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    settings = s.client_settings()
    client = await connect(settings)
    pool = await db.create_pool(settings.database_url, max_size=8)
    mon = ProcessMonitor(await _pids(s, pool))
    child = _start_ceiling_worker(s, data)
    mon.pids["ceiling_worker"] = child.proc.pid
    mon.start()
    results: dict[str, Any] = {"machine": machine(), "args": _args_json(args),
                               "temporal": temporal_server(),
                               "started_at": datetime.now(UTC).isoformat()}  # fmt: skip
    try:
        async with Http(s.api_url) as http:
            for _ in range(3):  # the ceiling worker is up and its task queue exists
                await asyncio.wait_for(ceiling.run_noop(client), 30)
            work = Workloads(noop=_timed(lambda: ceiling.run_noop(client)),
                             shape=_timed(lambda: ceiling.run_shape(client)),
                             lifecycle=CaseDriver(http).run)  # fmt: skip
            await warm_up(work)
            print(f"Rounds: no-op, same shape, lifecycle × {args.rounds}...", flush=True)
            results["rounds"] = await run_rounds(work, args, mon)
            results["summary"] = report.summarise(results["rounds"])
            rate = args.rate or max(0.5, (results["summary"]["lifecycle_per_s"] or 1.0) / 2)
            if args.disk_probe > 0:
                print(f"The disk alone: {args.disk_probe:.0f} s of fdatasync...", flush=True)
                results["disk"] = await asyncio.to_thread(disk.probe, data, args.disk_probe)
            if args.cpu_probe > 0:
                print(f"The CPU alone: {args.cpu_probe:.0f} s of a fixed loop...", flush=True)
                results["cpu_speed"] = await asyncio.to_thread(cpu_speed.probe, args.cpu_probe)
            chosen = "--rate" if args.rate else "half the sustained maximum"
            print(f"Lifecycle: fixed rate ({chosen})...", flush=True)
            results["fixed"] = await run_fixed(http, pool, rate, args, mon)
        results["history"] = await _histories(client, results)
    finally:
        stack.stop_children([child])
        await mon.stop()
        await pool.close()
    results["targets"] = report.targets(results)
    return results


async def _histories(client: Client, results: dict[str, Any]) -> dict[str, Any]:
    out = {"case": await history_size(client, results["fixed"]["sample_ids"])}
    last = results["rounds"][-1]
    for kind in ("noop", "shape"):
        out[kind] = await history_size(client, last[kind].get("sample_ids", []))
    return out


def _args_json(args: argparse.Namespace) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data = Path(tempfile.mkdtemp(prefix="jiesu-bench-", dir=args.tmp))
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
