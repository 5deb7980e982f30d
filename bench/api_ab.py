"""A/B of the API process: the lifecycle (bench/case_driver.py) against several API processes
on one stack, interleaved, with the CPU per completed case of every process.

    python -m bench.api_ab --variant "main:CWD=/tmp/main-checkout" --variant "new:" \
        [--rounds 3] [--duration 20] [--concurrency 16] [--fixed RATE] [--spy PY_SPY]

Starts the embedded stack like bench/lifecycle.py (its worker, Temporal server and PostgreSQL
are shared by all variants), then one ``uvicorn api.main:app`` per ``--variant NAME:OPTIONS``
on ports from ``--port``. OPTIONS: uvicorn options (``--loop asyncio --http h11``),
environment settings ``KEY=VALUE``, and ``CWD=DIR`` to serve the API from another checkout
(``git worktree add DIR COMMIT``) with this one's virtualenv. Each round runs every variant
once (closed loop, ``--concurrency`` clients, ``--duration`` s); per variant and round: cases/s
and CPU ms per completed case of the worker, the Temporal server, PostgreSQL, the harness and
that variant's API process (bench/procstats.py), and the cores other processes kept busy. The
medians of the rounds and the HTTP requests per case follow. ``--fixed RATE``: then each
variant at RATE cases/s (open loop, 20 s of arrivals), department actions p50/p95/p99.
Odd rounds run the variants in the opposite order (the server's state grows with every phase).
``--spy``: sample the API and the worker with py-spy (its path) in the last round at
``--spy-rate`` Hz, folded stacks in ``--spy-prefix``-*.txt (/tmp/api_ab-spy-*.txt). Not a
pass/fail test; not run by ``make``."""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench import lifecycle
from bench.case_driver import CaseDriver
from bench.http import Http
from bench.load import closed_loop, open_loop, summary_ms
from bench.procstats import ProcessMonitor
from jiesu import db
from jiesu.client import connect
from jiesu.ops import stack

_ID = re.compile(r"/complaints/[^/]+")


def variants(specs: list[str]) -> list[tuple[str, list[str]]]:
    out = []
    for spec in specs:
        name, _, opts = spec.partition(":")
        out.append((name, opts.split()))
    return out


async def main_async(s: stack.Stack, data: Path, args: argparse.Namespace) -> None:
    settings = s.client_settings()
    client = await connect(settings)
    pool = await db.create_pool(settings.database_url, max_size=8)
    pids = await lifecycle._pids(s, pool)
    apis: dict[str, str] = {}
    children = []
    port = args.port
    for name, opts in variants(args.variant):
        env = dict(s.env, JIESU_API_METRICS_ADDRESS="", JIESU_WORKER_METRICS_ADDRESS="")
        env.update(dict(o.split("=", 1) for o in opts if "=" in o and not o.startswith("--")))
        cli = [o for o in opts if o.startswith("--") or "=" not in o]
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "api.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *cli,
        ]
        cwd = env.pop("CWD", None)
        if cwd:
            env["PYTHONPATH"] = cwd
            cmd = ["sh", "-c", f"cd {cwd} && exec " + " ".join(cmd)]
        child = stack.spawn(f"api-{name}", cmd, data / f"api-{name}.log", env)
        children.append(child)
        pids[f"api-{name}"] = child.proc.pid
        apis[name] = f"http://127.0.0.1:{port}"
        port += 1
    for url in apis.values():
        stack.wait_for_http(f"{url}/healthz", [], 60)
    mon = ProcessMonitor(pids)
    mon.start()
    counts: dict[str, collections.Counter[str]] = {n: collections.Counter() for n in apis}
    https = {}
    for name, url in apis.items():

        def hook(method: str, path: str, name: str = name) -> None:
            counts[name][f"{method} {_ID.sub('/complaints/X', path)}"] += 1

        https[name] = await Http(url, on_request=hook).__aenter__()
    per: dict[str, list[dict[str, float]]] = collections.defaultdict(list)
    try:
        for name in apis:
            await closed_loop(CaseDriver(https[name]).run, 4, 3.0)
        for c in counts.values():
            c.clear()
        done_total = collections.Counter()
        for r in range(args.rounds):
            # Every other round in the opposite order: the server's state grows with every
            # phase, so a fixed order would charge the later variant for it every round.
            order = list(apis) if r % 2 == 0 else list(reversed(apis))
            for name in order:
                job = CaseDriver(https[name]).run
                began = time.monotonic()
                phase = f"{r}-{name}"
                spies = []
                if args.spy and r == args.rounds - 1:
                    for proc in (f"api-{name}", "worker"):
                        spies.append(await asyncio.create_subprocess_exec(
                            args.spy, "record", "--nonblocking", "-r", str(args.spy_rate),
                            "-d", str(int(args.duration)), "-f", "raw",
                            "-o", f"{args.spy_prefix}-{proc}.txt", "-p", str(pids[proc]),
                            stdout=asyncio.subprocess.DEVNULL,
                            stderr=asyncio.subprocess.DEVNULL))  # fmt: skip
                with mon.phase(phase):
                    outcome = await closed_loop(job, args.concurrency, args.duration)
                for spy in spies:
                    await spy.wait()
                done = len(outcome.results)
                done_total[name] += done
                rep = mon.report(phase)
                row = {"per_s": done / (time.monotonic() - began), "errors": outcome.errors}
                for proc in ("worker", "temporal", "postgres", "harness", f"api-{name}"):
                    row[proc.split("-")[0]] = 1000 * rep[proc]["cpu_s"] / max(done, 1)
                row["other"] = rep["load"]["other_cores"]
                per[name].append(row)
                if outcome.errors:
                    print("  errors:", outcome.error_samples[:2], flush=True)
                print(phase, {k: round(v, 1) for k, v in row.items()}, flush=True)
        for name in apis:
            rows = per[name]
            med = {k: round(statistics.median(r[k] for r in rows), 1) for k in rows[0]}
            print("MEDIAN", name, med)
            print(
                "  requests per case",
                {k: round(v / done_total[name], 2) for k, v in counts[name].most_common()},
            )
        if args.fixed:
            for name in apis:
                driver = CaseDriver(https[name])
                outcome = await open_loop(driver.run, args.fixed, int(args.fixed * 20))
                cases = outcome.results
                acts = [
                    c.api[a] for c in cases for a in ("accept", "contact", "reply") if a in c.api
                ]
                print(
                    "FIXED",
                    name,
                    "actions",
                    summary_ms(acts),
                    "intake",
                    summary_ms([c.intake for c in cases]),
                    "errors",
                    outcome.errors,
                )
        if args.history:
            ids = []
            driver = CaseDriver(https[next(iter(apis))])
            res = await closed_loop(driver.run, 1, 3.0)
            ids = [c.case_id for c in res.results[:2]]
            out = await closed_loop(driver.run, args.concurrency, 8.0)
            ids_load = [c.case_id for c in out.results[:5]]
            print("HIST alone", await lifecycle.history_size(client, ids))
            print("HIST load", await lifecycle.history_size(client, ids_load))
    finally:
        for h in https.values():
            await h.aclose()
        stack.stop_children(children)
        await mon.stop()
        await pool.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--variant", action="append", default=[])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--port", type=int, default=22220, help="first port of the variants")
    p.add_argument("--fixed", type=float, default=0.0)
    p.add_argument("--history", action="store_true")
    p.add_argument("--spy", default="", help="path of py-spy: profile the last round")
    p.add_argument("--spy-rate", type=int, default=50, help="py-spy's samples per second")
    p.add_argument("--spy-prefix", default="/tmp/api_ab-spy", help="of py-spy's output files")
    args = p.parse_args()
    if not args.variant:
        args.variant = ["base:"]
    data = Path(tempfile.mkdtemp(prefix="jiesu-api-ab-"))
    with ExitStack() as cleanup:
        s = lifecycle.start_stack(data, cleanup)
        print("stack up; data", data, "worker", s.worker.pid(), flush=True)
        asyncio.run(main_async(s, data, args))


if __name__ == "__main__":
    main()
