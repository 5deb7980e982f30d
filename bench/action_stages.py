"""Where one department action's time goes, stage by stage, idle and at a fixed load.

    python -m bench.action_stages [--rate 3.8] [--cases 60] [--idle-rate 0.5] [--idle-cases 20]
                                  [--think 0.5] [--arrivals poisson|even] [--tmp /dev/shm]

Starts the embedded stack (bench/lifecycle.py) with tracing on, its spans sent to a small
OTLP/HTTP receiver in this process, and runs the lifecycle (bench/case_driver.py) open loop:
first ``--idle-cases`` at ``--idle-rate`` cases/s (actions rarely overlap), then ``--cases``
at ``--rate`` (half the sustained maximum of ``make bench``). Every action of those cases is
one trace of the API's (its HTTP request) and, linked to its signal, the workflow's handling
and the projection that follows; all processes run on this machine, so their clocks agree.

Stages of an action, from the spans (docs/performance.md, "Where the time goes"):

- HTTP in → perform: the server span's start to the read-model copy's (ASGI, body, auth:
  the API key's lookup);
- read-model copy: ``action: read-model copy`` (api/cases.py ``perform``);
- copy → signal sent: the check and building the action;
- signal RPC: ``SignalWorkflow:<signal>`` (the server persists the signal);
- signal sent → workflow task started: ``HandleSignal:<signal>``, whose time is the
  workflow's (the task's start as the server recorded it);
- task started → projection starts: ``RunActivity:project_events`` of the case, the first
  after the task started (the worker's activation up to the local activity);
- projection: that span (the transaction that writes the events and NOTIFYs);
- projection done → API looks: the start of the look that finds the event
  (``action: look at the read model``), i.e. the NOTIFY's way to the API and its wake-up;
- answer read: that look;
- answer → HTTP out: the rest of the server span (encoding the case, sending it).

Tracing costs CPU in every process (the spans are batched and exported), so the totals here
are a little above those of ``make bench``; the split is what this is for. Not run by
``make``; not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gzip
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from bench import lifecycle
from bench.case_driver import CaseDriver
from bench.http import Http
from bench.load import ARRIVALS, open_loop, percentile

ACTIONS = ("accept", "contact", "reply", "rating")
DEPARTMENT_ACTIONS = ACTIONS[:3]
STAGES = (
    "HTTP in → perform (ASGI, auth)",
    "read-model copy",
    "copy → signal sent (check)",
    "signal RPC",
    "signal sent → workflow task started",
    "task started → projection starts",
    "projection (local activity)",
    "projection done → API looks (NOTIFY, wake-up)",
    "answer read (read model)",
    "answer → HTTP out",
)


@dataclass
class Span:
    name: str
    trace: bytes
    span: bytes
    parent: bytes
    start: int  # ns since the epoch
    end: int
    attributes: dict[str, Any]
    links: list[bytes]


@dataclass
class Receiver:
    """The spans every process exports (OTLP over HTTP, protobuf)."""

    spans: list[Span] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        got = [
            Span(
                s.name, s.trace_id, s.span_id, s.parent_span_id, s.start_time_unix_nano,
                s.end_time_unix_nano,
                {a.key: _value(a.value) for a in s.attributes},
                [link.span_id for link in s.links],
            )
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ]  # fmt: skip
        with self.lock:
            self.spans.extend(got)

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.take(body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}"


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def stages(spans: list[Span]) -> list[tuple[str, int, dict[str, float]]]:
    """Per traced action: (action, HTTP-in time, stage → ms). Actions answered without the
    read model (the query's fallback) have no projection stages and are left out."""
    by_trace: dict[bytes, list[Span]] = collections.defaultdict(list)
    handled: dict[bytes, Span] = {}  # the signal's span id → the workflow's HandleSignal
    projections: dict[str, list[Span]] = collections.defaultdict(list)
    for s in spans:
        by_trace[s.trace].append(s)
        if s.name.startswith("HandleSignal:"):
            for link in s.links:
                handled[link] = s
        elif s.name == "RunActivity:project_events":
            projections[str(s.attributes.get("temporalWorkflowID"))].append(s)
    for runs in projections.values():
        runs.sort(key=lambda s: s.start)
    out = []
    for trace_spans in by_trace.values():
        server = next((s for s in trace_spans if _action_of(s) and not s.parent), None)
        if server is None:
            continue
        named = {s.name: s for s in trace_spans}
        signal = next((s for s in trace_spans if s.name.startswith("SignalWorkflow:")), None)
        copy = named.get("action: read-model copy")
        found = [
            s for s in trace_spans
            if s.name == "action: look at the read model" and s.attributes.get("jiesu.found")
        ]  # fmt: skip
        if signal is None or signal.span not in handled or not found:
            continue
        task = handled[signal.span]
        case_id = str(signal.attributes.get("temporalWorkflowID"))
        projection = next((p for p in projections[case_id] if p.start >= task.start), None)
        if projection is None:
            continue
        look = found[0]
        perform = copy.start if copy else signal.start
        marks = [server.start, perform, copy.end if copy else perform, signal.start,
                 signal.end, task.start, projection.start, projection.end, look.start,
                 look.end, server.end]  # fmt: skip
        row = {STAGES[0]: marks[1] - marks[0], STAGES[1]: marks[2] - marks[1],
               STAGES[2]: marks[3] - marks[2], STAGES[3]: marks[4] - marks[3],
               STAGES[4]: marks[5] - marks[4], STAGES[5]: marks[6] - marks[5],
               STAGES[6]: marks[7] - marks[6], STAGES[7]: marks[8] - marks[7],
               STAGES[8]: marks[9] - marks[8], STAGES[9]: marks[10] - marks[9],
               "total (HTTP in → out)": marks[10] - marks[0]}  # fmt: skip
        row = {k: v / 1e6 for k, v in row.items()}
        row["notice bytes"] = float(look.attributes.get("jiesu.notice_bytes") or 0)
        out.append((str(_action_of(server)), server.start, row))
    return out


def _action_of(s: Span) -> str | None:
    route = str(s.attributes.get("http.route", ""))
    for action in ACTIONS:
        if route.endswith("/{case_id}/" + action) and s.name.startswith("POST"):
            return action
    return None


def table(rows: list[dict[str, float]]) -> list[str]:
    keys = [*STAGES, "total (HTTP in → out)"]
    sizes = [r["notice bytes"] for r in rows if r["notice bytes"]]
    lines = [f"answered from the projection's notice: {len(sizes)} of {len(rows)}"
             + (f" (notice p50 {percentile(sizes, 50):.0f}, max {max(sizes):.0f} characters)"
                if sizes else ""), ""]  # fmt: skip
    lines += ["| stage (ms) | p50 | p95 | p99 | mean |", "|---|---|---|---|---|"]
    for key in keys:
        values = [r[key] for r in rows]
        p = [percentile(values, q) or 0.0 for q in (50, 95, 99)]
        lines.append(f"| {key} | {p[0]:.1f} | {p[1]:.1f} | {p[2]:.1f} | "
                     f"{statistics.fmean(values):.1f} |")  # fmt: skip
    return lines


async def run_phases(api: str, args: argparse.Namespace) -> list[tuple[str, int, int, str]]:
    """The idle and the loaded phase: (name, start ns, end ns, load average)."""
    phases = []
    async with Http(api) as http:
        driver = CaseDriver(http, think=args.think, seed=args.seed)
        await open_loop(driver.run, 2.0, 4)  # warm-up: first requests, caches
        for name, rate, count in (("idle", args.idle_rate, args.idle_cases),
                                  ("load", args.rate, args.cases)):  # fmt: skip
            before = os.getloadavg()[0]
            began = time.time_ns()
            outcome = await open_loop(driver.run, rate, count, arrivals=args.arrivals,
                                      seed=args.seed)
            ended = time.time_ns()
            load = f"{before:.2f}→{os.getloadavg()[0]:.2f}"
            phases.append((f"{name} ({rate:g} cases/s)", began, ended, load))
            print(name, "cases", len(outcome.results), "errors", outcome.errors, "load", load,
                  flush=True)  # fmt: skip
    return phases


def report(receiver: Receiver, phases: list[tuple[str, int, int, str]]) -> str:
    with receiver.lock:
        rows = stages(list(receiver.spans))
    lines = []
    for name, began, ended, load in phases:
        inside = [(a, r) for a, t, r in rows if began <= t <= ended]
        department = [r for a, r in inside if a in DEPARTMENT_ACTIONS]
        lines += ["", f"### {name}, load average {load}: department actions "
                  f"(accept, contact, reply), n = {len(department)}", ""]  # fmt: skip
        lines += table(department)
        rating = [r for a, r in inside if a == "rating"]
        if rating:
            lines += ["", f"The citizen's rating, n = {len(rating)}:", ""]
            lines += table(rating)
        lines += ["", "By action, p50 / p95 (ms):", "", *by_action(inside)]
    return "\n".join(lines)


def by_action(rows: list[tuple[str, dict[str, float]]]) -> list[str]:
    """Each stage per action: the accept follows the harness's wait for routing, contact and
    reply come as soon as the action before them is answered."""
    lines = ["| stage | " + " | ".join(ACTIONS) + " |", "|---" * (len(ACTIONS) + 1) + "|"]
    for key in [*STAGES, "total (HTTP in → out)"]:
        cells = []
        for action in ACTIONS:
            values = [r[key] for a, r in rows if a == action]
            p50, p95 = percentile(values, 50), percentile(values, 95)
            cells.append(f"{p50:.1f} / {p95:.1f}" if p50 is not None and p95 is not None else "")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=3.8, help="cases/s of the loaded phase")
    p.add_argument("--cases", type=int, default=60)
    p.add_argument("--idle-rate", type=float, default=0.5)
    p.add_argument("--idle-cases", type=int, default=20)
    p.add_argument("--think", type=float, default=0.0,
                   help="seconds before each action on average (± half), a person's pace "
                        "(0: back to back)")
    p.add_argument("--arrivals", choices=ARRIVALS, default="poisson",
                   help="cases arrive at random, as calls do (poisson), or evenly spaced (even)")
    p.add_argument("--seed", type=int, default=1, help="seed of the arrivals and pauses (1)")
    p.add_argument("--tmp", type=Path, default=None,
                   help="folder for the stack's data (/dev/shm: no waits for the disk)")
    args = p.parse_args()
    receiver = Receiver()
    server, endpoint = receiver.serve()
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "500")
    data = Path(tempfile.mkdtemp(prefix="jiesu-stages-", dir=args.tmp))
    try:
        with ExitStack() as cleanup:
            s = lifecycle.start_stack(data, cleanup)
            phases = asyncio.run(run_phases(s.api_url, args))
            time.sleep(3)  # the last batches of spans (OTEL_BSP_SCHEDULE_DELAY)
        print(report(receiver, phases))
    except BaseException:
        print(f"the stack's logs are kept in {data}", file=sys.stderr)  # as bench.lifecycle
        raise
    else:
        shutil.rmtree(data, ignore_errors=True)  # in /dev/shm it holds memory
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
