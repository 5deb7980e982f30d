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
import contextlib
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

from bench import ceiling, lifecycle
from bench.case_driver import GRIDS, OPERATOR, ROUTES, CaseDriver
from bench.load import closed_loop, open_loop, percentile, summary_ms
from bench.phones import mobile
from bench.procstats import machine_busy_cpu
from bench.report import _fmt, _ms, _table
from bench.scale_worker import STORM_FILE_ENV
from jiesu import db
from jiesu.case.domain import Actor, Citizen, ComplaintIntake, Role, Urgency
from jiesu.case.sla import late_sql
from jiesu.client import connect
from jiesu.config import Settings
from jiesu.intake import filing
from jiesu.ops import stack
from jiesu.ops.demo_data import department_key

RESULTS = Path(__file__).parent / "results" / "scale.json"
ACTOR = Actor(role=Role.OPERATOR, name="scale bench")
RSS_EVERY = 0.01  # sample memory (and save the progress) every 1 % of the scale
PROGRESS = "scale-progress.json"  # in the stack's folder: what a resumed run starts from
BACKLOG_TIMEOUT = 1800.0
_serial = itertools.count(1)
_extra = {"intakes": 0}  # cases filed over HTTP at the checkpoints
_tag = f"{int(time.time()) % 100000:05d}"


def _until(text: str) -> float | None:
    """Epoch seconds of the next UTC ``HH:MM`` (today, or tomorrow if it has passed)."""
    if not text:
        return None
    hour, minute = (int(x) for x in text.split(":"))
    now = datetime.now(UTC)
    at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return (at if at > now else at + timedelta(days=1)).timestamp()


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
    p.add_argument("--backlog", type=int, default=200,
                   help="cases filed but not yet routed, at most (200; 0: no limit)")
    p.add_argument("--until", default="",
                   help="UTC HH:MM: stop filing then (a last checkpoint at the count reached) "
                        "and go on with the other phases")
    p.add_argument("--phases", default="fill,workers,bare,storm",
                   help="what to run, in this order (fill,workers,bare,storm; bare: the bare "
                        "timer storm, storm: the cases')")
    p.add_argument("--data", type=Path, default=None,
                   help="the stack's folder, kept; one that holds a run is resumed: its cases "
                        "count, its checkpoints and samples are kept (default: a new temp folder)")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results ({RESULTS})")
    args = p.parse_args(argv)
    args.phase_list = [x.strip() for x in args.phases.split(",") if x.strip()]
    args.until_epoch = _until(args.until)
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
            # one Prometheus endpoint per address: the first worker keeps the stack's, the
            # others run without (they died on "address already in use" before)
            env = self.s.env if i == 1 else {**self.s.env, "JIESU_WORKER_METRICS_ADDRESS": ""}
            self.children.append(stack.spawn(f"worker {i}", cmd, log, env, append=True))

    def alive(self) -> int:
        return sum(1 for child in self.children if child.proc.poll() is None)

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


# --- filing ---------------------------------------------------------------------------------


def _intake(n: int, tag: str) -> ComplaintIntake:
    category, _ = ROUTES[n % len(ROUTES)]
    return ComplaintIntake(
        title=f"Scale case {n}", description="Generated by bench/scale.py",
        category_id=category, grid_id=GRIDS[n % len(GRIDS)], urgency=Urgency.GENERAL,
        address=f"Scale road {tag}-{n}",
        citizen=Citizen(name="Scale citizen", phone=mobile(n, tag, "15", 7)),
    )  # fmt: skip


class Filer:
    """Files cases through the intake service, at most ``backlog`` of them filed but not yet
    routed (planned and projected): the fill runs at the rate the stack processes new cases,
    instead of piling up workflow tasks that every later measurement would wait behind."""

    def __init__(self, pool: asyncpg.Pool, client: Client, settings: Settings, tag: str,
                 first_serial: int = 1, backlog: int = 0) -> None:  # fmt: skip
        self.pool, self.client, self.settings, self.tag = pool, client, settings, tag
        self.serial = itertools.count(first_serial)
        self.last_serial = first_serial - 1
        self.backlog = backlog  # 0: no limit
        self.filed = 0
        self.routed = 0  # of the cases filed by this filer
        self.pending: set[str] = set()  # filed, not yet routed
        self.errors: collections.Counter[str] = collections.Counter()
        self.changed = asyncio.Condition()  # notified when cases have been routed

    async def file_one(self) -> str:
        n = self.last_serial = next(self.serial)
        for attempt in range(5):  # a client retries with the same key, as the API's would
            try:
                done = await filing.register(self.pool, self.client, self.settings,
                                             _intake(n, self.tag), ACTOR,
                                             f"scale-{self.tag}-{n}")  # fmt: skip
                self.filed += 1
                self.pending.add(done.case_id)
                return done.case_id
            except Exception as exc:
                self.errors[type(exc).__name__] += 1
                await asyncio.sleep(0.5 * 2**attempt)
        raise RuntimeError(f"case {n} not filed after 5 attempts")

    async def _room(self) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: not self.backlog or
                                        len(self.pending) < self.backlog)  # fmt: skip

    async def drained(self) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: not self.pending)

    async def watch_routed(self, stop: asyncio.Event) -> None:
        """Counts the filed cases the read model shows routed (an index lookup per pending
        case, not a scan of 100,000 rows)."""
        while not stop.is_set():
            if self.pending:
                batch = list(self.pending)
                done = await self.pool.fetch(
                    "SELECT case_id FROM cases WHERE case_id = ANY($1)"
                    " AND department_id IS NOT NULL", batch)  # fmt: skip
                for row in done:
                    self.pending.discard(row["case_id"])
                self.routed += len(done)
                async with self.changed:
                    self.changed.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    async def file(self, count: int, concurrency: int, on_progress: Any = None,
                   until: float | None = None) -> list[str]:  # fmt: skip
        """File ``count`` cases (fewer if the wall clock passes ``until``, epoch seconds)."""
        ids: list[str] = []
        left = itertools.count()

        async def one_filer() -> None:
            while True:
                await self._room()
                if until is not None and time.time() >= until:
                    return
                if next(left) >= count:
                    return
                ids.append(await self.file_one())
                if on_progress is not None:
                    on_progress()

        stop = asyncio.Event()
        watcher = asyncio.create_task(self.watch_routed(stop))
        try:
            await asyncio.gather(*(one_filer() for _ in range(concurrency)))
        finally:
            stop.set()
            await watcher
        return ids


async def drain(filer: Filer) -> float:
    """Until every case filed so far is routed (the fill's backlog); seconds waited."""
    began = time.monotonic()
    stop = asyncio.Event()
    watcher = asyncio.create_task(filer.watch_routed(stop))
    try:
        await asyncio.wait_for(filer.drained(), BACKLOG_TIMEOUT)
    except TimeoutError:
        print(f"  {len(filer.pending)} cases still not routed", flush=True)
    stop.set()
    await watcher
    return round(time.monotonic() - began, 1)


async def open_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM cases WHERE status <> 'closed'"))


async def case_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM cases"))


# --- checkpoints ------------------------------------------------------------------------------


async def checkpoint(
    http: httpx.AsyncClient, pool: asyncpg.Pool, workers: Workers, s: stack.Stack,
    filer: Filer, filed: int, args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    backlog = await drain(filer)
    driver = CaseDriver(http)

    async def intake() -> float:
        began = time.monotonic()
        body = {"title": "Checkpoint case", "description": "bench/scale.py checkpoint",
                "category_id": ROUTES[0][0], "grid_id": GRIDS[0], "urgency": "general",
                "address": f"Checkpoint road {_tag}-{next(_serial)}",
                "citizen": {"name": "Checkpoint", "phone": mobile(next(_serial), _tag, "16", 7)}}
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
    due = datetime.now(UTC) + timedelta(seconds=filing_time * 1.5 + 90)
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
    overdue_list = []
    for after in (1.0, 5.0):  # what a supervisor's overdue list shows just after the deadline
        await asyncio.sleep(max(0.0, t0 + after - time.monotonic()))
        overdue_list.append({"after_s": after, **dict(await pool.fetchrow(_LISTED, ids, due))})
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
        "fired": len(lags), "lag_s": _lag_summary(lags),
        "all_fired_after_s": round(wall, 1) if len(lags) >= setup["at_due"] else None,
        "overdue_list": overdue_list,
        "loadavg_at_deadline": round(load_before, 2),
        "machine_cores_busy": round((machine_busy_cpu() - machine_before) / max(wall, 1e-9), 2),
    }  # fmt: skip


def _lag_summary(lags: Sequence[float]) -> dict[str, float | None]:
    return {f"p{p}": _round(percentile(lags, p)) for p in (50, 90, 99)} | {
        "max": _round(max(lags) if lags else None),
        "within_5s": round(sum(1 for x in lags if x <= 5.0) / len(lags), 4) if lags else None,
    }


# A supervisor's overdue list (jiesu.case.sla.late_sql, as the console's 超时 board and the
# case list's ``overdue`` filter use it) against the breaches the workflows have recorded.
_LISTED = f"""
SELECT count(*) FILTER (WHERE {late_sql("now()")}) AS listed_overdue,
    count(*) FILTER (WHERE 'accept' = ANY(breaches)) AS breach_projected,
    count(*) FILTER (WHERE accept_deadline = $2) AS due,
    (SELECT count(*) FROM case_events e WHERE e.case_id = ANY($1)
        AND e.kind = 'deadline_breached') AS breach_events
FROM cases WHERE case_id = ANY($1)
"""


# --- the bare ceiling of a storm: a timer and nothing else ------------------------------------


async def bare_storm(s: stack.Stack, data: Path, client: Client, n: int,
                     concurrency: int) -> dict[str, Any]:  # fmt: skip
    """``n`` bare workflows (bench/ceiling.py's BenchTimerWorkflow: one timer, then return the
    time its task ran) due at one instant, on the same server, with their own worker process:
    what the dev server itself can fire. All are started first, then armed with the instant."""
    cmd = [sys.executable, "-m", "bench.ceiling", "--address", s.env["TEMPORAL_ADDRESS"],
           "--namespace", s.env["TEMPORAL_NAMESPACE"], "--task-queue", ceiling.STORM_QUEUE]
    worker = stack.spawn("bare storm worker", cmd, data / "bare-storm-worker.log", s.env)
    try:
        began = time.monotonic()
        ids = await _gather_bounded([lambda: ceiling.start_timer(client) for _ in range(n)],
                                    concurrency)  # fmt: skip
        started_s = time.monotonic() - began
        # Arming (a signal each) costs about what starting did: the instant leaves room for it.
        due = datetime.now(UTC) + timedelta(seconds=started_s * 1.5 + 30)
        print(f"  bare storm: {n} timers started in {started_s:.0f} s, due at {due:%H:%M:%S}"
              " UTC", flush=True)  # fmt: skip
        await _gather_bounded([lambda i=i: ceiling.arm_timer(client, i, due) for i in ids],
                              concurrency)  # fmt: skip
        armed_in_time = datetime.now(UTC) < due
        await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
        machine_before, load_before, t0 = machine_busy_cpu(), os.getloadavg()[0], time.monotonic()
        fired = await _gather_bounded(
            [lambda i=i: client.get_workflow_handle(i).result() for i in ids], 100)
        wall = time.monotonic() - t0
    finally:
        stack.stop_children([worker])
    lags = [(datetime.fromisoformat(f) - due).total_seconds() for f in fired]
    return {"timers": n, "due_at": due.isoformat(), "starting_s": round(started_s, 1),
            "all_armed_before_due": armed_in_time, "fired": len(lags),
            "lag_s": _lag_summary(lags), "all_fired_after_s": round(wall, 1),
            "loadavg_at_deadline": round(load_before, 2),
            "machine_cores_busy": round((machine_busy_cpu() - machine_before) / max(wall, 1e-9),
                                        2)}  # fmt: skip


async def _gather_bounded(jobs: Sequence[Any], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(job: Any) -> Any:
        async with gate:
            return await job()

    return list(await asyncio.gather(*(one(j) for j in jobs)))


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
        if workers.alive() < n:  # a dead worker would make this row a smaller count's
            raise RuntimeError(f"only {workers.alive()} of {n} workers running: see "
                               f"{workers.data}/scale-worker-*.log")  # fmt: skip
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


class Fill:
    """The fill phase: files cases up to each checkpoint (10 %, 50 %, 100 % of the scale, or
    fewer by ``--until``), samples memory and the rate every 1 %, and saves its progress in
    the stack's folder so that a run stopped half-way resumes from the cases it has."""

    def __init__(self, s: stack.Stack, http: httpx.AsyncClient, pool: asyncpg.Pool,
                 workers: Workers, filer: Filer, results: dict[str, Any],
                 args: argparse.Namespace, progress_path: Path) -> None:  # fmt: skip
        self.s, self.http, self.pool, self.workers, self.filer = s, http, pool, workers, filer
        self.results, self.args, self.progress_path = results, args, progress_path
        self.base = 0
        self.began = self.last_t = time.monotonic()
        self.last_routed = self.last_cases = 0
        self.every = max(100, int(args.scale * RSS_EVERY))

    @property
    def cases(self) -> int:
        return self.base + self.filer.filed

    def sample(self) -> None:
        if self.cases % self.every:
            return
        now = time.monotonic()
        took = max(now - self.last_t, 1e-3)
        recent = (self.filer.routed - self.last_routed) / took
        filed = (self.cases - self.last_cases) / took
        self.last_t, self.last_routed, self.last_cases = now, self.filer.routed, self.cases
        temporal = self.s.temporal.pid() if self.s.temporal else None
        postgres = self.s.postgres.pid() if self.s.postgres else None
        row = {"cases": self.cases, "at": datetime.now(UTC).isoformat()[:19],
               "s": round(now - self.began, 1), "routed_per_s": round(recent, 2),
               "filed_per_s": round(filed, 2),
               "worker_rss_mib": self.workers.rss_mib(), "temporal_rss_mib": _rss_mib(temporal),
               "postgres_rss_mib": _rss_mib(postgres), "loadavg": round(os.getloadavg()[0], 2)}
        self.results["rss"].append(row)
        print(f"  {row}", flush=True)
        _save(self.results, self.args.out, self.progress_path)

    async def run(self) -> None:
        self.base = self.last_cases = await case_count(self.pool)
        marks = sorted({max(1, self.args.scale * p // 100) for p in (10, 50, 100)})
        done = {c["mark"] for c in self.results["checkpoints"]}
        fill_s, routed_before = 0.0, self.filer.routed
        print(f"Fill: {self.base} cases already there, to {self.args.scale}...", flush=True)
        for mark in marks:
            if mark in done or mark <= self.cases:  # a resumed run has these already
                continue
            t = time.monotonic()
            await self.filer.file(mark - self.cases, self.args.concurrency, self.sample,
                                  self.args.until_epoch)  # fmt: skip
            fill_s += time.monotonic() - t
            stopped = self.cases < mark  # --until
            print(f"Checkpoint at {self.cases} cases...", flush=True)
            point = await checkpoint(self.http, self.pool, self.workers, self.s, self.filer,
                                     self.cases, self.args)  # fmt: skip
            self.results["checkpoints"].append({"mark": None if stopped else mark, **point})
            print(f"  {point}", flush=True)
            _save(self.results, self.args.out, self.progress_path)
            if stopped:
                break
        routed = self.filer.routed - routed_before
        self.results.setdefault("fill_runs", []).append({
            "from": self.base, "to": self.cases, "seconds": round(fill_s, 1),
            "routed_per_s": round(routed / fill_s, 2) if fill_s else None,
            "backlog": self.args.backlog, "concurrency": self.args.concurrency,
            "errors": dict(self.filer.errors)})  # fmt: skip


def _fill_rate(results: dict[str, Any]) -> float:
    """Cases routed per second lately (the storm's filing time is estimated from it)."""
    rates = [r["routed_per_s"] for r in results.get("rss", [])[-5:] if r.get("routed_per_s")]
    return sum(rates) / len(rates) if rates else 5.0


def _load_results(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    if path.exists():
        results: dict[str, Any] = json.loads(path.read_text())
        print(f"Resuming the run in {path.parent}", flush=True)
    else:
        results = {"machine": lifecycle.machine(), "args": _args_json(args),
                   "started_at": datetime.now(UTC).isoformat(), "checkpoints": [], "rss": []}
    results.setdefault("runs", []).append({"started_at": datetime.now(UTC).isoformat()[:19],
                                           "args": _args_json(args)})  # fmt: skip
    return results


async def run_bench(s: stack.Stack, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    settings = s.client_settings()
    client = await connect(settings)
    pool = await db.create_pool(settings.database_url, max_size=max(8, args.concurrency + 4))
    workers = Workers(s, data)
    workers.scale_to(1)
    filer = Filer(pool, client, settings, _tag, backlog=args.backlog)
    progress_path = data / PROGRESS
    results = _load_results(progress_path, args)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    try:
        async with httpx.AsyncClient(base_url=s.api_url, timeout=60, limits=limits) as http:
            if "fill" in args.phase_list:
                await Fill(s, http, pool, workers, filer, results, args, progress_path).run()
            if "workers" in args.phase_list:
                print("Worker processes...", flush=True)
                results["workers"] = await worker_counts(http, workers, args)
                _save(results, args.out, progress_path)
            workers.scale_to(args.storm_workers)
            if "bare" in args.phase_list:
                print("Bare timer storm (the ceiling)...", flush=True)
                results["bare_storm"] = await bare_storm(s, data, client, args.storm,
                                                         args.concurrency)  # fmt: skip
                print(f"  {results['bare_storm']}", flush=True)
                _save(results, args.out, progress_path)
            if "storm" in args.phase_list:
                print(f"Timer storm ({args.storm_workers} worker(s))...", flush=True)
                storm_file = Path(s.env[STORM_FILE_ENV])
                results["storm"] = await storm(filer, pool, storm_file, _fill_rate(results),
                                               args)  # fmt: skip
                results["storm"]["open_cases"] = await open_count(pool)
                print(f"  {results['storm']}", flush=True)
        results["notices"] = await duplicate_notices(pool, Path(s.env["JIESU_NOTIFY_LOG"]))
        results["open_cases_at_end"] = await open_count(pool)
    finally:
        workers.stop()
        results["finished_at"] = datetime.now(UTC).isoformat()
        _save(results, args.out, progress_path)
        await pool.close()
    return results


def _save(results: dict[str, Any], out: Path, progress: Path) -> None:
    text = json.dumps(results, indent=2, ensure_ascii=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".partial.json").write_text(text)
    progress.write_text(text)


def _args_json(args: argparse.Namespace) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def markdown(r: dict[str, Any]) -> str:
    m, a = r.get("machine", {}), r.get("args", {})
    lines = [f"Machine: {m.get('cpus')} CPUs ({m.get('cpu_model')}), {m.get('memory')} RAM; run "
             f"{r.get('started_at', '')[:19]}Z → {r.get('finished_at', '')[:19]}Z; scale "
             f"{a.get('scale')}, storm {a.get('storm')}.", ""]  # fmt: skip
    for f in r.get("fill_runs", []):
        lines.append(f"Fill {f['from']} → {f['to']} cases in {f['seconds']} s: "
                     f"{f['routed_per_s']}/s filed and routed (planned, projected), at most "
                     f"{f['backlog']} unrouted; errors retried: {f['errors']}.")  # fmt: skip
    lines += ["", "#### Checkpoints", ""]
    rows = []
    for c in r.get("checkpoints", []):
        rows.append([str(c["filed"]), str(c["open_cases"]), "/".join(map(str, c["worker_rss_mib"])),
                     _fmt(c["temporal_rss_mib"]), *_ms(c["intake_ms"])[:3],
                     *_ms(c["accept_ms"])[:3], f"{c['loadavg'][0]}→{c['loadavg'][1]}"])  # fmt: skip
    lines += _table(["cases", "open", "worker RSS MiB", "Temporal RSS MiB", "intake p50",
                     "intake p95", "intake p99", "accept p50", "accept p95", "accept p99",
                     "load avg"], rows)  # fmt: skip
    lines += ["", "#### Memory and rate against open cases", ""]
    lines += _table(["cases", "UTC", "filed/s", "routed/s", "worker RSS MiB", "Temporal RSS MiB",
                     "PostgreSQL RSS MiB", "load avg"],
                    [[str(x["cases"]), x["at"][11:16], _fmt(x.get("filed_per_s")),
                      _fmt(x["routed_per_s"]),
                      "/".join(map(str, x["worker_rss_mib"])), _fmt(x["temporal_rss_mib"]),
                      _fmt(x["postgres_rss_mib"]), _fmt(x["loadavg"])]
                     for x in r.get("rss", [])])  # fmt: skip
    lines += ["", "#### Timer storm", "", *_storm_lines(r), "", "#### Worker processes", ""]
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


def _lags(lag: dict[str, Any]) -> str:
    return (f"p50 {_fmt(lag.get('p50'))} s, p90 {_fmt(lag.get('p90'))} s, p99 "
            f"{_fmt(lag.get('p99'))} s, max {_fmt(lag.get('max'))} s, within 5 s: "
            f"{_fmt(lag.get('within_5s'))}")  # fmt: skip


def _storm_lines(r: dict[str, Any]) -> list[str]:
    b, st = r.get("bare_storm", {}), r.get("storm", {})
    lines = [f"- Bare (a timer and nothing else, same server): {b.get('timers')} timers due at "
             f"{b.get('due_at', '')[11:19]} (started in {_fmt(b.get('starting_s'))} s, all armed "
             f"before it: {b.get('all_armed_before_due')}), fired {b.get('fired')}; fired minus "
             f"due: "
             f"{_lags(b.get('lag_s', {}))}; all fired after {_fmt(b.get('all_fired_after_s'))} "
             f"s; load average at the deadline {_fmt(b.get('loadavg_at_deadline'))}, cores busy "
             f"{_fmt(b.get('machine_cores_busy'))}.",
             f"- Cases: {st.get('cases')} filed in {_fmt(st.get('filing_s'))} s beside "
             f"{st.get('open_cases')} open, {st.get('with_storm_deadline')} with the accept "
             f"deadline {st.get('due_at', '')[11:19]} ({st.get('deadline_set_after_due')} set "
             f"after it); fired {st.get('fired')}; breach recorded minus deadline: "
             f"{_lags(st.get('lag_s', {}))}; all fired after {_fmt(st.get('all_fired_after_s'))}"
             f" s; load average at the deadline {_fmt(st.get('loadavg_at_deadline'))}, cores "
             f"busy {_fmt(st.get('machine_cores_busy'))}."]  # fmt: skip
    for o in st.get("overdue_list", []):
        lines.append(f"- {o['after_s']:.0f} s after the deadline: the overdue list shows "
                     f"{o['listed_overdue']} of the {o['due']} cases due; breach events "
                     f"recorded {o['breach_events']}, projected {o['breach_projected']}.")
    return lines


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM too stops the stack cleanly (it is a long run)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    keep = args.data is not None
    data = args.data.resolve() if keep else Path(tempfile.mkdtemp(prefix="jiesu-scale-"))
    data.mkdir(parents=True, exist_ok=True)
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
    if not keep:
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
