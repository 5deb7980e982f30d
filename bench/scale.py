"""Scale benchmark: many open cases on the embedded stack (issue 13, part 5).

    python -m bench.scale [--scale 100000] [--storm N] [--workers 1,2,4] [--out PATH]

Not part of ``make test``; at full scale it runs for hours on 2 cores. ``--scale`` sets the
number of open cases; the checkpoints are 10 %, 50 % and 100 % of it (10,000 / 50,000 /
100,000 at full scale) and the storm is a tenth of it unless ``--storm`` says otherwise.

Phases, on one stack (Temporal dev server on SQLite, embedded PostgreSQL, API, workers of
bench/scale_worker.py — the real worker plus a storm switch for deadlines):

1. **Fill**: open cases (general urgency, each with its own citizen and address, so none is
   merged) filed through the intake service in this process (``jiesu.intake.filing.register``,
   the function the API's POST /complaints calls: same claim, same transaction, same workflow
   start; it skips only HTTP and authentication, which cost the API ~30 ms of CPU per case and
   would compete with the workflows for the 2 cores). ``--concurrency`` filings at a time.
   Worker RSS (and the Temporal server's) is sampled against the open-case count.
2. **Checkpoints** (10 %, 50 %, 100 %): once the backlog of new cases is routed, intake
   latency (POST /complaints over HTTP) and action latency (accept over HTTP, answered with
   the new state) for ``--sample`` requests each at 2/s.
3. **Workers**: lifecycle throughput (bench/case_driver.py, closed loop, ``--lifecycle``
   seconds) with 1, 2 and 4 worker processes against the one server; the notices delivered
   (the log sender's file, one JSON line per delivery) are checked at the end for a key
   delivered twice, and the outbox for notices sent more than once.
4. **Timer storm** (``--storm-workers`` workers): ``--storm`` more cases whose accept deadline
   is one instant T (the storm switch of bench/scale_worker.py: a bench-only
   ``compute_deadlines``; T is set from the fill rate so that every storm case is filed
   before it). Nobody accepts them; at T every accept
   timer fires. Reported: the recorded breach event's time (``deadline_breached.at``, the
   workflow task that handled the timer) minus its deadline, p50/p99/max, and how many fired.

Writes ``--out`` (JSON, default bench/results/scale.json) and a markdown report next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from temporalio.client import Client

from bench import lifecycle
from bench.case_driver import GRIDS, OPERATOR, ROUTES, CaseDriver
from bench.load import closed_loop, open_loop, percentile, summary_ms
from bench.procstats import machine_busy_cpu
from bench.report import _fmt, _ms, _table
from bench.scale_worker import STORM_FILE_ENV
from jiesu import db
from jiesu.case.domain import Actor, Citizen, ComplaintIntake, Role, Urgency
from jiesu.client import connect
from jiesu.config import Settings
from jiesu.intake import filing
from jiesu.ops import stack
from jiesu.ops.demo_data import department_key

RESULTS = Path(__file__).parent / "results" / "scale.json"
ACTOR = Actor(role=Role.OPERATOR, name="scale bench")
RSS_EVERY = 0.05  # sample memory every 5 % of the scale
BACKLOG_TIMEOUT = 1800.0
_serial = itertools.count(1)
_extra = {"intakes": 0}  # cases filed over HTTP at the checkpoints
_tag = f"{int(time.time()) % 100000:05d}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=int, default=100_000, help="open cases (100000)")
    p.add_argument("--storm", type=int, default=0,
                   help="deadlines due at the same instant (default: scale / 10)")
    p.add_argument("--workers", default="1,2,4", help="worker processes to compare (1,2,4)")
    p.add_argument("--storm-workers", type=int, default=1,
                   help="worker processes during the timer storm (1)")
    p.add_argument("--concurrency", type=int, default=32, help="filings at a time (32)")
    p.add_argument("--sample", type=int, default=40,
                   help="intakes and accepts timed at each checkpoint (40)")
    p.add_argument("--lifecycle", type=float, default=30.0,
                   help="measured seconds per worker count (30)")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results ({RESULTS})")
    args = p.parse_args(argv)
    args.storm = args.storm or max(1, args.scale // 10)
    args.worker_counts = [int(x) for x in args.workers.split(",") if x.strip()]
    return args  # fmt: skip


# --- workers ----------------------------------------------------------------------------------


class Workers:
    """The bench's worker processes (bench/scale_worker.py), started and stopped by count."""

    def __init__(self, s: stack.Stack, data: Path) -> None:
        self.s, self.data = s, data
        self.children: list[stack.Child] = []

    def scale_to(self, n: int) -> None:
        while len(self.children) > n:
            stack.stop_children([self.children.pop()])
        while len(self.children) < n:
            i = len(self.children) + 1
            cmd = [sys.executable, "-m", "bench.scale_worker"]
            log = self.data / f"scale-worker-{i}.log"
            self.children.append(stack.spawn(f"worker {i}", cmd, log, self.s.env, append=True))

    def rss_mib(self) -> list[float]:
        out = []
        for child in self.children:
            try:
                out.append(round(psutil.Process(child.proc.pid).memory_info().rss / 2**20, 1))
            except psutil.Error:
                out.append(0.0)
        return out

    def stop(self) -> None:
        self.scale_to(0)


def _rss_mib(pid: int | None) -> float | None:
    try:
        return round(psutil.Process(pid).memory_info().rss / 2**20, 1) if pid else None
    except psutil.Error:
        return None


# --- filing -----------------------------------------------------------------------------------


def _intake(n: int) -> ComplaintIntake:
    category, _ = ROUTES[n % len(ROUTES)]
    return ComplaintIntake(
        title=f"Scale case {n}", description="Generated by bench/scale.py",
        category_id=category, grid_id=GRIDS[n % len(GRIDS)], urgency=Urgency.GENERAL,
        address=f"Scale road {_tag}-{n}",
        citizen=Citizen(name="Scale citizen", phone=f"15{_tag}{n:07d}"[:20]),
    )  # fmt: skip


class Filer:
    def __init__(self, pool: asyncpg.Pool, client: Client, settings: Settings) -> None:
        self.pool, self.client, self.settings = pool, client, settings
        self.filed = 0
        self.errors: collections.Counter[str] = collections.Counter()

    async def file_one(self) -> str:
        n = next(_serial)
        for attempt in range(5):  # a client retries with the same key, as the API's would
            try:
                done = await filing.register(self.pool, self.client, self.settings,
                                             _intake(n), ACTOR, f"scale-{_tag}-{n}")  # fmt: skip
                self.filed += 1
                return done.case_id
            except Exception as exc:
                self.errors[type(exc).__name__] += 1
                await asyncio.sleep(0.5 * 2**attempt)
        raise RuntimeError(f"case {n} not filed after 5 attempts")

    async def file(self, count: int, concurrency: int, on_progress: Any = None) -> list[str]:
        ids: list[str] = []
        left = itertools.count()

        async def one_filer() -> None:
            while next(left) < count:
                ids.append(await self.file_one())
                if on_progress is not None:
                    on_progress()

        await asyncio.gather(*(one_filer() for _ in range(concurrency)))
        return ids


async def open_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM cases WHERE status <> 'closed'"))


async def wait_routed(pool: asyncpg.Pool, expected: int) -> float:
    """Until the read model holds every case filed so far and none waits to be routed (the
    fill's backlog); seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < BACKLOG_TIMEOUT:
        row = await pool.fetchrow(
            "SELECT count(*) AS cases, count(*) FILTER (WHERE department_id IS NULL"
            " AND status <> 'closed') AS unrouted FROM cases"
        )
        if row["cases"] >= expected and not row["unrouted"]:
            break
        await asyncio.sleep(1.0)
    return round(time.monotonic() - began, 1)


# --- checkpoints ------------------------------------------------------------------------------


async def checkpoint(
    http: httpx.AsyncClient, pool: asyncpg.Pool, workers: Workers, s: stack.Stack,
    filed: int, args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    backlog = await wait_routed(pool, filed + _extra["intakes"])
    driver = CaseDriver(http)

    async def intake() -> float:
        began = time.monotonic()
        body = {"title": "Checkpoint case", "description": "bench/scale.py checkpoint",
                "category_id": ROUTES[0][0], "grid_id": GRIDS[0], "urgency": "general",
                "address": f"Checkpoint road {_tag}-{next(_serial)}",
                "citizen": {"name": "Checkpoint", "phone": f"16{_tag}{next(_serial):07d}"[:20]}}
        response = await http.post("/api/v1/complaints", json=body, headers=OPERATOR)
        _extra["intakes"] += 1
        if response.status_code != 201:
            raise RuntimeError(f"intake: HTTP {response.status_code} {response.text[:200]}")
        return time.monotonic() - began  # fmt: skip

    rows = await pool.fetch(
        "SELECT case_id, department_id FROM cases WHERE status = 'assigned'"
        " AND department_id = ANY($1) ORDER BY random() LIMIT $2",
        sorted({d for _, d in ROUTES}), args.sample,
    )
    queue = list(rows)

    async def accept() -> float:
        row = queue.pop()
        headers = {"Authorization": f"Bearer {department_key(row['department_id']).key}"}
        began = time.monotonic()
        response = await http.post(f"/api/v1/complaints/{row['case_id']}/accept", json={},
                                   headers=headers)  # fmt: skip
        if response.status_code not in (200, 202):
            raise RuntimeError(f"accept: HTTP {response.status_code} {response.text[:200]}")
        if not response.json().get("applied"):
            await driver._wait_applied(row["case_id"], "accept")
        return time.monotonic() - began

    load = os.getloadavg()[0]
    intakes = await open_loop(intake, 2.0, args.sample)
    accepts = await open_loop(accept, 2.0, len(queue))
    return {
        "filed": filed, "open_cases": await open_count(pool), "backlog_wait_s": backlog,
        "worker_rss_mib": workers.rss_mib(),
        "temporal_rss_mib": _rss_mib(s.temporal.pid() if s.temporal else None),
        "intake_ms": summary_ms(intakes.results), "intake_errors": intakes.errors,
        "accept_ms": summary_ms(accepts.results), "accept_errors": accepts.errors,
        "error_samples": intakes.error_samples + accepts.error_samples,
        "loadavg": [round(load, 2), round(os.getloadavg()[0], 2)],
    }  # fmt: skip


# --- the timer storm --------------------------------------------------------------------------

_BREACH_LAGS = """
SELECT extract(epoch FROM e.at - (e.data->>'deadline')::timestamptz) AS lag
FROM case_events e
WHERE e.case_id = ANY($1) AND e.kind = 'deadline_breached' AND e.data->>'deadline_kind' = 'accept'
    AND (e.data->>'deadline')::timestamptz = $2
"""


async def storm(
    filer: Filer, pool: asyncpg.Pool, storm_file: Path, fill_rate: float,
    args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    filing_time = args.storm / max(fill_rate, 0.1)
    due = datetime.now(UTC) + timedelta(seconds=filing_time * 2 + 120)
    _write(storm_file, due.isoformat())
    print(f"  storm: {args.storm} cases, every accept deadline at {due:%H:%M:%S} UTC "
          f"(filing estimated at {filing_time:.0f} s)", flush=True)  # fmt: skip
    began = time.monotonic()
    try:
        ids = await filer.file(args.storm, args.concurrency)
        # Filing returns once the workflow is started; its deadlines are computed after.
        while datetime.now(UTC) < due:
            if not await pool.fetchval(_DEADLINES_PENDING, ids):
                break
            await asyncio.sleep(1.0)
    finally:
        _remove(storm_file)
    filed_s = time.monotonic() - began
    setup = await pool.fetchrow(_STORM_SETUP, ids, due)
    await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
    machine_before, load_before = machine_busy_cpu(), os.getloadavg()[0]
    t0 = time.monotonic()
    lags: list[float] = []
    give_up = t0 + max(600.0, args.storm / 5)
    while time.monotonic() < give_up:
        lags = [float(r["lag"]) for r in await pool.fetch(_BREACH_LAGS, ids, due)]
        if len(lags) >= setup["at_due"]:
            break
        await asyncio.sleep(1.0)
    wall = time.monotonic() - t0
    return {
        "cases": len(ids), "due_at": due.isoformat(), "filing_s": round(filed_s, 1),
        "with_storm_deadline": setup["at_due"], "deadline_set_after_due": setup["set_late"],
        "fired": len(lags),
        "lag_s": {"p50": _round(percentile(lags, 50)), "p99": _round(percentile(lags, 99)),
                  "max": _round(max(lags) if lags else None)},
        "all_fired_after_s": round(wall, 1) if len(lags) >= setup["at_due"] else None,
        "loadavg_at_deadline": round(load_before, 2),
        "machine_cores_busy": round((machine_busy_cpu() - machine_before) / max(wall, 1e-9), 2),
    }  # fmt: skip


_DEADLINES_PENDING = """
SELECT count(*) FROM unnest($1::text[]) AS i(case_id)
LEFT JOIN cases c USING (case_id) WHERE c.accept_deadline IS NULL
"""
_STORM_SETUP = """
SELECT count(*) FILTER (WHERE c.accept_deadline = $2) AS at_due,
    (SELECT count(*) FROM case_events e WHERE e.case_id = ANY($1) AND e.kind = 'deadlines_set'
        AND e.at > $2) AS set_late
FROM cases c WHERE c.case_id = ANY($1)
"""


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _delivered_keys(log: Path) -> collections.Counter[str]:
    """Keys of the notices the log sender delivered, one JSON line per delivery."""
    keys: collections.Counter[str] = collections.Counter()
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            if line.strip():
                keys[json.loads(line).get("key", "")] += 1
    return keys


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# --- worker counts and duplicate notices ------------------------------------------------------


async def worker_counts(
    http: httpx.AsyncClient, workers: Workers, args: argparse.Namespace
) -> list[dict[str, Any]]:
    driver = CaseDriver(http)
    rows = []
    for n in args.worker_counts:
        workers.scale_to(n)
        await closed_loop(driver.run, 8, 10.0)  # the new workers have polled and warmed up
        load = os.getloadavg()[0]
        began = time.monotonic()
        outcome = await closed_loop(driver.run, 16, args.lifecycle)
        # Completed cases over the time until the last one finished (a lifecycle under load
        # can outlast a short window; the clients stop starting new ones at its end).
        elapsed = (max(outcome.finished_at) if outcome.finished_at else time.monotonic()) - began
        rows.append({"workers": n, "cases_per_s": round(len(outcome.results) / elapsed, 2),
                     "errors": outcome.errors, "error_samples": outcome.error_samples,
                     "worker_rss_mib": workers.rss_mib(),
                     "loadavg": [round(load, 2), round(os.getloadavg()[0], 2)]})  # fmt: skip
        print(f"  {n} worker(s): {rows[-1]['cases_per_s']} cases/s", flush=True)
    return rows


async def duplicate_notices(pool: asyncpg.Pool, log: Path) -> dict[str, Any]:
    keys = _delivered_keys(log)
    twice = {k: n for k, n in keys.items() if n > 1}
    outbox = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'sent') AS sent,"
        " count(*) FILTER (WHERE status = 'sent' AND attempts > 1) AS sent_after_retry,"
        " count(*) FILTER (WHERE status <> 'sent') AS not_sent FROM notifications"
    )
    return {"delivered": sum(keys.values()), "distinct": len(keys), "delivered_twice": len(twice),
            "examples": list(twice)[:5], **dict(outbox)}  # fmt: skip


# --- the run ----------------------------------------------------------------------------------


async def run_bench(s: stack.Stack, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(TEMPORAL_ADDRESS=s.env["TEMPORAL_ADDRESS"],
                        TEMPORAL_NAMESPACE=s.env["TEMPORAL_NAMESPACE"],
                        DATABASE_URL=s.env["DATABASE_URL"])  # fmt: skip
    client = await connect(settings)
    pool = await db.create_pool(settings.database_url, max_size=max(8, args.concurrency))
    workers = Workers(s, data)
    workers.scale_to(1)
    filer = Filer(pool, client, settings)
    results: dict[str, Any] = {"machine": lifecycle.machine(), "args": _args_json(args),
                               "started_at": datetime.now(UTC).isoformat(), "checkpoints": [],
                               "rss": []}  # fmt: skip
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    try:
        async with httpx.AsyncClient(base_url=s.api_url, timeout=60, limits=limits) as http:
            marks = sorted({max(1, args.scale * p // 100) for p in (10, 50, 100)})
            began, filed = time.monotonic(), 0
            every = max(1, int(args.scale * RSS_EVERY))

            def progress() -> None:
                if filer.filed % every == 0:
                    results["rss"].append({"filed": filer.filed,
                                           "s": round(time.monotonic() - began, 1),
                                           "worker_rss_mib": workers.rss_mib(),
                                           "temporal_rss_mib": _rss_mib(s.temporal.pid()
                                                                        if s.temporal else None),
                                           "loadavg": round(os.getloadavg()[0], 2)})  # fmt: skip
                    print(f"  filed {filer.filed}, worker RSS {workers.rss_mib()} MiB", flush=True)

            fill_s = 0.0
            for mark in marks:
                t = time.monotonic()
                await filer.file(mark - filed, args.concurrency, progress)
                fill_s += time.monotonic() - t
                filed = mark
                print(f"Checkpoint at {filed} filed...", flush=True)
                results["checkpoints"].append(await checkpoint(http, pool, workers, s, filed, args))
                print(f"  {results['checkpoints'][-1]}", flush=True)
                _save(results, args.out)  # a long run stopped later keeps what it measured
            # Filing only starts workflows; the backlog each checkpoint waited for is the rest
            # of the work (routing, deadlines, projection): the rate the system sustains.
            backlog_s = sum(c["backlog_wait_s"] for c in results["checkpoints"])
            results["fill"] = {"cases": filed, "seconds": round(fill_s, 1),
                               "per_s": round(filed / fill_s, 2) if fill_s else None,
                               "processed_per_s": round(filed / (fill_s + backlog_s), 2),
                               "errors": dict(filer.errors)}  # fmt: skip
            print("Worker processes...", flush=True)
            results["workers"] = await worker_counts(http, workers, args)
            _save(results, args.out)
            workers.scale_to(args.storm_workers)
            print(f"Timer storm ({args.storm_workers} worker(s))...", flush=True)
            storm_file = Path(s.env[STORM_FILE_ENV])
            rate = results["fill"]["processed_per_s"] or 1
            results["storm"] = await storm(filer, pool, storm_file, rate, args)
            print(f"  {results['storm']}", flush=True)
        results["notices"] = await duplicate_notices(pool, Path(s.env["JIESU_NOTIFY_LOG"]))
        results["open_cases_at_end"] = await open_count(pool)
    finally:
        workers.stop()
        await pool.close()
    results["finished_at"] = datetime.now(UTC).isoformat()
    return results


def _save(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".partial.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))


def _args_json(args: argparse.Namespace) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def markdown(r: dict[str, Any]) -> str:
    m, a = r.get("machine", {}), r.get("args", {})
    fill = r.get("fill", {})
    lines = [f"Machine: {m.get('cpus')} CPUs ({m.get('cpu_model')}), {m.get('memory')} RAM; run "
             f"{r.get('started_at', '')[:19]}Z → {r.get('finished_at', '')[:19]}Z; scale "
             f"{a.get('scale')}, storm {a.get('storm')}.", "",
             f"Fill: {fill.get('cases')} cases in {fill.get('seconds')} s "
             f"({fill.get('per_s')}/s filed through the intake service; "
             f"{fill.get('processed_per_s')}/s routed, planned and projected); errors retried: "
             f"{fill.get('errors')}.", "", "### Checkpoints", ""]  # fmt: skip
    rows = []
    for c in r.get("checkpoints", []):
        rows.append([str(c["filed"]), str(c["open_cases"]), "/".join(map(str, c["worker_rss_mib"])),
                     _fmt(c["temporal_rss_mib"]), *_ms(c["intake_ms"])[:3],
                     *_ms(c["accept_ms"])[:3], f"{c['loadavg'][0]}→{c['loadavg'][1]}"])  # fmt: skip
    lines += _table(["filed", "open", "worker RSS MiB", "Temporal RSS MiB", "intake p50",
                     "intake p95", "intake p99", "accept p50", "accept p95", "accept p99",
                     "load avg"], rows)  # fmt: skip
    lines += ["", "### Worker memory against open cases", ""]
    lines += _table(["filed", "s", "worker RSS MiB", "Temporal RSS MiB", "load avg"],
                    [[str(x["filed"]), _fmt(x["s"]), "/".join(map(str, x["worker_rss_mib"])),
                      _fmt(x["temporal_rss_mib"]), _fmt(x["loadavg"])]
                     for x in r.get("rss", [])])  # fmt: skip
    st = r.get("storm", {})
    lag = st.get("lag_s", {})
    lines += ["", "### Timer storm", "",
              f"{st.get('cases')} cases filed in {_fmt(st.get('filing_s'))} s, "
              f"{st.get('with_storm_deadline')} with the accept deadline {st.get('due_at')} "
              f"({st.get('deadline_set_after_due')} set after it); fired "
              f"{st.get('fired')}; breach recorded minus deadline: p50 {_fmt(lag.get('p50'))} s, "
              f"p99 {_fmt(lag.get('p99'))} s, max {_fmt(lag.get('max'))} s; all fired after "
              f"{_fmt(st.get('all_fired_after_s'))} s; load average at the deadline "
              f"{_fmt(st.get('loadavg_at_deadline'))}, cores busy (whole machine) "
              f"{_fmt(st.get('machine_cores_busy'))}.", "", "### Worker processes", ""]  # fmt: skip
    lines += _table(
        ["workers", "cases/s", "errors", "worker RSS MiB", "load avg"],
        [[str(w["workers"]), _fmt(w["cases_per_s"]), str(w["errors"]),
          "/".join(map(str, w["worker_rss_mib"])), f"{w['loadavg'][0]}→{w['loadavg'][1]}"]
         for w in r.get("workers", [])],
    )  # fmt: skip
    n = r.get("notices", {})
    lines += ["", f"Notices: {n.get('delivered')} deliveries of {n.get('distinct')} keys, "
              f"**{n.get('delivered_twice')} delivered twice**; outbox: {n.get('sent')} sent "
              f"({n.get('sent_after_retry')} after a retry), {n.get('not_sent')} not sent."]
    return "\n".join(lines)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM too stops the stack cleanly (it is a long run)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    data = Path(tempfile.mkdtemp(prefix="jiesu-scale-"))
    os.environ[STORM_FILE_ENV] = str(data / "storm-deadline")
    try:
        with ExitStack() as cleanup:
            s = lifecycle.start_stack(data, cleanup)
            assert s.worker is not None
            s.worker.stop()  # the bench's workers (bench/scale_worker.py) take its place
            results = asyncio.run(run_bench(s, data, args))
            print("Stopping the stack...", flush=True)
    except stack.StackError as exc:
        print(f"error: {exc}; logs in {data}", file=sys.stderr)
        return 1
    shutil.rmtree(data, ignore_errors=True)
    text = markdown(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)
    print(f"\nResults: {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
