"""Fault harness: whole cases through the HTTP API while the stack's processes are killed.

    python -m bench.faults [--cases 300] [--rate 4] [--open-every 20]
                           [--faults worker,api,postgres,temporal] [--freeze-seconds 30]
                           [--out PATH]

Starts its own embedded stack (jiesu.ops.stack: Temporal dev server on SQLite, embedded
PostgreSQL, worker, API) in a temporary folder, with the stack's supervisor restarting what
dies, and drives ``--cases`` cases arriving at ``--rate`` per second. Every client retries
every request after a timeout, a connection error or a 5xx, with the same Idempotency-Key
(intake and actions), for up to ``STEP_DEADLINE`` seconds. Every ``--open-every``-th case is
left unaccepted; the others go intake → accept → contact → reply → rating (closed).

While the cases arrive, the worker, the API, PostgreSQL and the Temporal server are killed
with SIGKILL in turn (evenly spread over the arrivals); the supervisor starts each again.
A fault named ``<process>-frozen`` (``worker-frozen``, …) stops the process with SIGSTOP for
``--freeze-seconds`` instead, then lets it go on (SIGCONT): a hung process, which the
supervisor does not restart — Temporal stops routing to a worker it has not heard from for
~10 s and refuses the case's queries (fault run 28).
After the load, each open case's clock is moved past its acceptance deadline (Temporal's
per-workflow time skipping), then the harness counts:

- lost: an intake answered 201 whose case has no workflow or no read-model row; an intake
  row without a workflow;
- duplicated: one intake key that became two cases;
- applied twice: an action event (accept, contact, reply, rating) present twice in a case;
- actions lost: an action answered as applied that is not in the case's events;
- read model not converged: a case whose ``cases`` row, event rows do not equal the
  workflow's state within ``CONVERGE_TIMEOUT`` after the load;
- histories that do not replay: every case's histories through the Replayer
  (pydantic_data_converter, jiesu.audit.replay), failures saved next to the results;
- breaches not fired: an open case without its acceptance breach after the skip;
- notifications lost or late: a notice the case's events call for (jiesu.notify.notices) that is
  not sent within ``CONVERGE_TIMEOUT``, or sent more than ``LATE_NOTICE`` after it was
  written.
- retries refused (409): an action retried after a lost answer that the API refused although
  its first attempt was applied (the client is told its action failed);
- cases failed: a client that could not finish its case (gave up after ``STEP_DEADLINE``);
- patches after a local activity: a history with a patch marker recorded after a local
  activity's marker of the same task (jiesu.audit.placement) — it replays as the worker cut
  its tasks this time, and would not under another cut (none since ``lean-case-v3``).

Writes ``--out`` (JSON, default bench/results/faults.json) and a markdown report next to it,
prints the report and exits 1 when any count is not zero. A bench, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import TimeSkipper, TimeSkippingConfig

from bench.case_driver import GRIDS, OPERATOR, ROUTES
from bench.lifecycle import _free_port, machine
from bench.load import open_loop
from bench.phones import mobile
from jiesu import db
from jiesu.audit import placement
from jiesu.audit import replay as audit_replay
from jiesu.case.domain import CaseState, EventKind
from jiesu.client import connect
from jiesu.config import Settings
from jiesu.notify.notices import notices_for
from jiesu.ops import stack
from jiesu.ops.demo_data import department_key
from workflows import ALL_WORKFLOWS
from workflows.complaint import ComplaintWorkflow

RESULTS = Path(__file__).parent / "results" / "faults.json"
FAULTS = ("worker", "api", "postgres", "temporal")
FROZEN = "-frozen"  # a fault "<process>-frozen": SIGSTOP for --freeze-seconds, then SIGCONT
REQUEST_TIMEOUT = 10.0  # seconds before a client gives up on one attempt
STEP_DEADLINE = 180.0  # seconds a client keeps retrying one request
RETRY_DELAY = (0.2, 3.0)  # first and longest pause between attempts
CONVERGE_TIMEOUT = 120.0
LATE_NOTICE = 60.0  # seconds from the outbox row to its delivery
RESTART_TIMEOUT = 120.0
FAST_FORWARD_WAIT = 20.0
ACCEPT_SKIP = timedelta(minutes=31)  # past an urgent case's 30-minute acceptance limit
ACTIONS = ("accept", "contact", "reply", "rating")
ACTION_EVENT = {
    "accept": EventKind.ACCEPTED,
    "contact": EventKind.CONTACTED,
    "reply": EventKind.REPLIED,
    "rating": EventKind.RATED,
}
# What GET /complaints/{id} shows once each action is applied (a 202 is followed until then).
VISIBLE = {
    "accept": lambda c: c.get("accepted_at") is not None,
    "contact": lambda c: c.get("contacted_at") is not None,
    "reply": lambda c: c.get("reply") is not None,
    "rating": lambda c: c.get("rating") is not None,
}
SAMPLES = 10


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=300, help="cases to drive (300)")
    p.add_argument("--rate", type=float, default=4.0, help="arrivals per second (4)")
    p.add_argument("--open-every", type=int, default=20,
                   help="every N-th case is left unaccepted for the breach check (20)")
    p.add_argument("--faults", default=",".join(FAULTS),
                   help=f"processes to kill, in order ({','.join(FAULTS)}; empty: none); "
                   f"<process>{FROZEN} stops one for --freeze-seconds instead")
    p.add_argument("--freeze-seconds", type=float, default=30.0,
                   help="how long a <process>-frozen fault holds it stopped (30)")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results ({RESULTS})")
    p.add_argument("--keep", action="store_true", help="keep the stack's data folder")
    return p.parse_args(argv)  # fmt: skip


# --- clients that retry with the same key -----------------------------------------------------


@dataclass
class Tally:
    """What the clients went through: answers by status, retries by cause."""

    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    by_route: collections.Counter[str] = field(default_factory=collections.Counter)
    retries: collections.Counter[str] = field(default_factory=collections.Counter)
    gave_up: int = 0
    # every 500: the request, and its request id (the API logs the traceback under it)
    server_errors: list[dict[str, Any]] = field(default_factory=list)


def _route(url: str) -> str:
    """``/api/v1/complaints/JS…/accept`` → ``…/{case}/accept``: answers grouped by route."""
    parts = url.split("/")
    return "/".join("{case}" if p.startswith("JS") else p for p in parts)


class RetryingClient:
    def __init__(self, http: httpx.AsyncClient, tally: Tally) -> None:
        self.http, self.tally = http, tally

    async def request(
        self, method: str, url: str, *, key: str | None = None,
        json_body: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
    ) -> httpx.Response:  # fmt: skip
        """The first answer that is neither a 5xx nor a 429; errors and those are retried."""
        headers = dict(headers or {})
        if key:
            headers["Idempotency-Key"] = key
        deadline = time.monotonic() + STEP_DEADLINE
        delay, longest = RETRY_DELAY
        while True:
            cause = await self._attempt(method, url, json_body, headers)
            if isinstance(cause, httpx.Response):
                return cause
            self.tally.retries[cause] += 1
            if time.monotonic() + delay > deadline:
                self.tally.gave_up += 1
                raise TimeoutError(f"{method} {url}: still failing after {STEP_DEADLINE:.0f} s"
                                   f" (last: {cause})")  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)

    async def _attempt(
        self, method: str, url: str, json_body: dict[str, Any] | None, headers: dict[str, str]
    ) -> httpx.Response | str:
        try:
            response = await self.http.request(method, url, json=json_body, headers=headers,
                                               timeout=REQUEST_TIMEOUT)  # fmt: skip
        except httpx.HTTPError as exc:
            return type(exc).__name__
        self.tally.answers[str(response.status_code)] += 1
        self.tally.by_route[f"{method} {_route(url)} {response.status_code}"] += 1
        if response.status_code == 500:
            self.tally.server_errors.append({
                "at": datetime.now(UTC).isoformat(), "method": method, "url": url,
                "request_id": response.headers.get("X-Request-ID"),
            })  # fmt: skip
        if response.status_code >= 500 or response.status_code == 429:
            code = ""
            try:
                code = response.json().get("error", {}).get("code", "")
            except ValueError:
                pass
            return f"{response.status_code} {code}".strip()
        return response


# --- one case ---------------------------------------------------------------------------------


@dataclass
class CaseRecord:
    n: int
    key: str
    left_open: bool
    case_ids: list[str] = field(default_factory=list)  # from every intake answer
    actions: dict[str, str] = field(default_factory=dict)  # action → how it was answered
    error: str | None = None

    @property
    def case_id(self) -> str | None:
        return self.case_ids[0] if self.case_ids else None


class Driver:
    def __init__(self, client: RetryingClient, run: str, open_every: int) -> None:
        self.client, self.run_tag, self.open_every = client, run, open_every
        self.records: list[CaseRecord] = []

    def body(self, n: int) -> tuple[dict[str, Any], str]:
        category, department = ROUTES[n % len(ROUTES)]
        return {
            "title": f"Fault case {self.run_tag}-{n}",
            "description": "Generated by bench/faults.py",
            "category_id": category,
            "grid_id": GRIDS[n % len(GRIDS)],
            "address": f"Fault road {self.run_tag}-{n}",
            "citizen": {"name": "Fault citizen", "phone": mobile(n, self.run_tag, "139", 5)},
        }, department

    async def run_case(self, n: int) -> CaseRecord:
        record = CaseRecord(n, f"faults-{self.run_tag}-{n}", n % self.open_every == 0)
        self.records.append(record)
        try:
            await self._drive(record)
        except Exception as exc:  # a failed case is reported, the load goes on
            record.error = f"{type(exc).__name__}: {exc}"[:300]
        return record

    async def _drive(self, record: CaseRecord) -> None:
        body, department = self.body(record.n)
        answer = await self.client.request("POST", "/api/v1/complaints", key=record.key,
                                           json_body=body, headers=OPERATOR)  # fmt: skip
        if answer.status_code not in (200, 201):
            record.error = f"intake: HTTP {answer.status_code} {answer.text[:200]}"
            return
        created = answer.json()
        record.case_ids.append(str(created["case_id"]))
        case_url = f"/api/v1/complaints/{record.case_id}"
        await self._wait(case_url, lambda c: c.get("status") == "assigned", "routing")
        if record.left_open:
            return
        dept = {"Authorization": f"Bearer {department_key(department).key}"}
        steps: tuple[tuple[str, dict[str, Any], dict[str, str]], ...] = (
            ("accept", {}, dept),
            ("contact", {"note": "called the citizen"}, dept),
            ("reply", {"outcome": "resolved", "text": "cleared and checked"}, dept),
            ("rating", {"token": created["citizen_token"], "rating": "satisfied"}, {}),
        )
        for action, payload, headers in steps:
            await self._act(record, case_url, action, payload, headers)

    async def _act(
        self, record: CaseRecord, case_url: str, action: str, payload: dict[str, Any],
        headers: dict[str, str],
    ) -> None:  # fmt: skip
        answer = await self.client.request(
            "POST", f"{case_url}/{action}", json_body=payload, key=f"{record.key}-{action}",
            headers=headers,
        )  # fmt: skip
        if answer.status_code == 200:
            record.actions[action] = "applied"
            return
        if answer.status_code == 202:
            record.actions[action] = "accepted (202)"
        else:
            record.actions[action] = f"HTTP {answer.status_code} {answer.text[:120]}"
        # whatever the answer, the next step needs this one done (a retry may have been refused
        # because the first attempt was applied after all)
        await self._wait(case_url, VISIBLE[action], action)

    async def _wait(self, url: str, done: Callable[[dict[str, Any]], bool], what: str) -> None:
        deadline = time.monotonic() + STEP_DEADLINE
        delay = 0.1
        while time.monotonic() < deadline:
            answer = await self.client.request("GET", url, headers=OPERATOR)
            if answer.status_code == 200 and done(answer.json()):
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise TimeoutError(f"{url}: {what} not visible within {STEP_DEADLINE:.0f} s")


# --- faults -----------------------------------------------------------------------------------


def _service(s: stack.Stack, name: str) -> stack.Service:
    service = {"worker": s.worker, "api": s.api, "postgres": s.postgres,
               "temporal": s.temporal}[name]  # fmt: skip
    if service is None:
        raise SystemExit(f"--faults {name}: the stack did not start it (external?)")
    return service


async def _until(probe: Callable[[], Awaitable[bool] | bool], within: float) -> float | None:
    """Seconds until ``probe()`` is true, None if it never was within ``within`` seconds."""
    began = time.monotonic()
    while time.monotonic() - began < within:
        value = probe()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return round(time.monotonic() - began, 2)
        await asyncio.sleep(0.1)
    return None


async def inject_faults(
    s: stack.Stack, sup: stack.Supervisor, names: Sequence[str], driver: Driver, total: int,
    http: httpx.AsyncClient, t0: float, freeze: float = 30.0,
) -> list[dict[str, Any]]:  # fmt: skip
    """Kill (or freeze) each process once the matching share of cases has arrived; time its
    return."""
    timeline = []
    for i, name in enumerate(names):
        due = total * (i + 1) / (len(names) + 1)
        await _until(lambda due=due: len(driver.records) >= due, 3600)
        service = _service(s, name.removesuffix(FROZEN))
        pid, before, arrived = service.pid(), sup.restarts(service), len(driver.records)
        assert pid is not None
        at = round(time.monotonic() - t0, 1)
        if name.endswith(FROZEN):
            os.kill(pid, signal.SIGSTOP)
            print(f"  {at:7.1f} s  froze {name} (pid {pid}) after {arrived} arrivals", flush=True)
            await asyncio.sleep(freeze)  # the fault itself: a process hung this long
            os.kill(pid, signal.SIGCONT)
            restarted: float | None = freeze
        else:
            os.kill(pid, signal.SIGKILL)
            print(f"  {at:7.1f} s  killed {name} (pid {pid}) after {arrived} arrivals", flush=True)
            restarted = await _until(lambda s_=service, b=before: sup.restarts(s_) > b,
                                     RESTART_TIMEOUT)  # fmt: skip
        healthy = await _until(lambda: _healthy(http), RESTART_TIMEOUT)
        timeline.append({
            "fault": name, "pid": pid, "at_s": at, "cases_arrived": arrived,
            "restarted_after_s": restarted, "api_healthy_after_s": healthy,
        })  # fmt: skip
    return timeline


async def _healthy(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/healthz", timeout=2)).status_code == 200
    except httpx.HTTPError:
        return False


# --- checks -----------------------------------------------------------------------------------


async def _state(client: Client, case_id: str) -> CaseState | None:
    """The workflow's own state; None when Temporal has no such workflow."""
    handle = client.get_workflow_handle_for(ComplaintWorkflow.run, case_id)
    for attempt in range(20):
        try:
            return await handle.query(ComplaintWorkflow.state)
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return None
            error: Exception = err
        except Exception as exc:  # a failing query (a history that does not replay...)
            error = exc
        await asyncio.sleep(min(0.2 * 2**attempt, 3.0))
    raise RuntimeError(f"{case_id}: state query keeps failing: {error}")


async def _states(client: Client, case_ids: Sequence[str]) -> dict[str, CaseState | str | None]:
    sem = asyncio.Semaphore(16)

    async def one(case_id: str) -> tuple[str, CaseState | str | None]:
        async with sem:
            try:
                return case_id, await _state(client, case_id)
            except RuntimeError as exc:
                return case_id, str(exc)[:300]

    return dict(await asyncio.gather(*(one(c) for c in case_ids)))


async def fire_breaches(client: Client, open_ids: Sequence[str]) -> dict[str, str]:
    """Move each open case's clock past its acceptance deadline. The dev server does not
    always confirm a fast-forward that did happen (the breach check below is what counts):
    unconfirmed ones are listed, not counted."""
    skipper = TimeSkipper(client, config=TimeSkippingConfig(enabled=False,
                                                            disable_propagation=True))  # fmt: skip

    async def skip(case_id: str) -> tuple[str, str | None]:
        handle = client.get_workflow_handle_for(ComplaintWorkflow.run, case_id)
        try:
            async with asyncio.timeout(FAST_FORWARD_WAIT):
                moved = await skipper.fast_forward(handle, ACCEPT_SKIP)
            return case_id, None if moved else "the case ended before its clock moved"
        except Exception as exc:
            return case_id, f"{type(exc).__name__}: {exc}"[:200]

    results = await asyncio.gather(*(skip(c) for c in open_ids))
    return {case_id: why for case_id, why in results if why}


def _breached(state: CaseState) -> bool:
    return any(b.kind.value == "accept" for b in state.breaches)


async def _read_model(pool: asyncpg.Pool, case_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT c.case_id, c.version, c.status, c.breaches,"
        " (SELECT count(*) FROM case_events e WHERE e.case_id = c.case_id) AS events"
        " FROM cases c WHERE c.case_id = ANY($1)",
        list(case_ids),
    )
    return {r["case_id"]: dict(r) for r in rows}


def _converged(state: CaseState, row: dict[str, Any] | None) -> str | None:
    """Why the read-model row differs from the workflow's state (None when it does not)."""
    if row is None:
        return "no cases row"
    last = state.events[-1].seq if state.events else 0
    if row["version"] != last or row["events"] != len(state.events):
        return f"version {row['version']} / {row['events']} events, workflow at {last}"
    if row["status"] != state.status.value:
        return f"status {row['status']}, workflow {state.status.value}"
    if sorted(row["breaches"] or []) != sorted(b.kind.value for b in state.breaches):
        return f"breaches {row['breaches']}, workflow {[b.kind.value for b in state.breaches]}"
    return None


async def _notices(pool: asyncpg.Pool, case_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT key, case_id, status, attempts, extract(epoch FROM sent_at - created_at) AS lag"
        " FROM notifications WHERE case_id = ANY($1)",
        list(case_ids),
    )
    return {r["key"]: dict(r) for r in rows}


@dataclass
class Findings:
    counts: dict[str, int] = field(default_factory=dict)
    details: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, kind: str, detail: Any) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.details.setdefault(kind, [])
        if len(self.details[kind]) < SAMPLES:
            self.details[kind].append(detail)

    def zero(self, *kinds: str) -> None:
        for kind in kinds:
            self.counts.setdefault(kind, 0)


KINDS = ("lost", "duplicated", "applied_twice", "actions_lost", "read_model_not_converged",
         "histories_not_replaying", "breaches_not_fired", "notifications_lost",
         "notifications_late", "retries_refused_409", "cases_failed",
         "patches_after_local_activity")  # fmt: skip


async def check(
    client: Client, pool: asyncpg.Pool, driver: Driver, out_dir: Path
) -> tuple[Findings, dict[str, Any]]:
    f = Findings()
    f.zero(*KINDS)
    records = driver.records
    for r in records:
        if r.error:
            f.add("cases_failed", {"n": r.n, "case_id": r.case_id, "error": r.error})
        if len(set(r.case_ids)) > 1:
            f.add("duplicated", {"key": r.key, "case_ids": sorted(set(r.case_ids))})
    intake_rows = await pool.fetch(
        "SELECT idempotency_key, case_id, payload -> 'intake' ->> 'title' AS title FROM intakes"
        " WHERE payload -> 'intake' ->> 'title' LIKE $1",
        f"Fault case {driver.run_tag}-%",
    )
    by_title: dict[str, list[str]] = collections.defaultdict(list)
    for row in intake_rows:
        by_title[row["title"]].append(row["case_id"])
    for title, ids in by_title.items():
        if len(ids) > 1:
            f.add("duplicated", {"title": title, "case_ids": sorted(ids)})
    case_ids = sorted({row["case_id"] for row in intake_rows} |
                      {c for r in records for c in r.case_ids})  # fmt: skip
    states = await _states(client, case_ids)
    answered = {c for r in records for c in r.case_ids}
    for case_id, state in states.items():
        if state is None:
            kind = "accepted (201) but no workflow" if case_id in answered else "intake row only"
            f.add("lost", {"case_id": case_id, "why": kind})
    live = {c: s for c, s in states.items() if isinstance(s, CaseState)}
    for r in records:
        state = live.get(r.case_id or "")
        if state is None:
            continue
        kinds = collections.Counter(e.kind for e in state.events)
        for action, outcome in r.actions.items():
            seen = kinds[ACTION_EVENT[action]]
            if seen > 1:
                f.add("applied_twice", {"case_id": r.case_id, "action": action, "events": seen})
            if seen == 0 and outcome == "applied":
                f.add("actions_lost", {"case_id": r.case_id, "action": action})
            if seen == 1 and outcome.startswith("HTTP 409"):  # the retry of an applied action
                f.add("retries_refused_409", {"case_id": r.case_id, "action": action,
                                              "answer": outcome})  # fmt: skip
    await _check_breaches(client, driver, live, f)
    converged = await _wait_converged(pool, client, live, f)
    await _check_notices(pool, live, f)
    replay = await _replay(client, pool, case_ids, f, out_dir)
    refused = sum(1 for s in live.values() for e in s.events if e.kind is EventKind.REJECTED)
    extra = {"cases": len(case_ids), "workflows": len(live), "converged_after_s": converged,
             "rejected_events": refused, "replay": replay,
             "query_failures": {c: s for c, s in states.items() if isinstance(s, str)}}  # fmt: skip
    for case_id, message in extra["query_failures"].items():
        f.add("histories_not_replaying" if "ondetermin" in message else "lost",
              {"case_id": case_id, "why": f"state query fails: {message}"})  # fmt: skip
    return f, extra


async def _wait_converged(
    pool: asyncpg.Pool, client: Client, live: dict[str, CaseState], f: Findings
) -> float | None:
    began = time.monotonic()
    pending = dict(live)
    why: dict[str, str] = {}
    while pending and time.monotonic() - began < CONVERGE_TIMEOUT:
        rows = await _read_model(pool, list(pending))
        fresh = await _states(client, list(pending))  # a projection may still be running
        for case_id in list(pending):
            state = fresh.get(case_id)
            if not isinstance(state, CaseState):
                continue
            live[case_id] = state
            reason = _converged(state, rows.get(case_id))
            if reason is None:
                del pending[case_id]
            else:
                why[case_id] = reason
        if pending:
            await asyncio.sleep(1.0)
    for case_id in pending:
        f.add("read_model_not_converged", {"case_id": case_id, "why": why.get(case_id)})
    return None if pending else round(time.monotonic() - began, 1)


async def _check_breaches(
    client: Client, driver: Driver, live: dict[str, CaseState], f: Findings
) -> None:
    """Every open case shows its acceptance breach (waiting for it up to CONVERGE_TIMEOUT)."""
    waiting = [r.case_id for r in driver.records if r.left_open and r.case_id in live]
    began = time.monotonic()
    while waiting and time.monotonic() - began < CONVERGE_TIMEOUT:
        states = await _states(client, waiting)
        live |= {c: s for c, s in states.items() if isinstance(s, CaseState)}
        waiting = [c for c in waiting if not _breached(live[c])]
        if waiting:
            await asyncio.sleep(1.0)
    for case_id in waiting:
        f.add("breaches_not_fired", {"case_id": case_id})


async def _check_notices(pool: asyncpg.Pool, live: dict[str, CaseState], f: Findings) -> None:
    expected = {n.key: n.case_id for s in live.values() for n in notices_for(s, s.events)}
    began = time.monotonic()
    while True:
        rows = await _notices(pool, list(live))
        unsent = [k for k in expected if rows.get(k, {}).get("status") != "sent"]
        if not unsent or time.monotonic() - began > CONVERGE_TIMEOUT:
            break
        await asyncio.sleep(1.0)
    for key in unsent:
        row = rows.get(key)
        seen = None if row is None else {"status": row["status"], "attempts": row["attempts"]}
        f.add("notifications_lost", {"key": key, "row": seen})
    for key, row in rows.items():
        if row["lag"] is not None and float(row["lag"]) > LATE_NOTICE:
            f.add("notifications_late", {"key": key, "seconds": round(float(row["lag"]), 1)})


async def _replay(
    client: Client, pool: asyncpg.Pool, case_ids: Sequence[str], f: Findings, out_dir: Path
) -> dict[str, int]:
    replayer = audit_replay.make_replayer(ALL_WORKFLOWS)
    summary = await audit_replay.replay_cases(
        client, pool, case_ids, replayer=replayer, on_history=lambda h: _patch_placement(h, f)
    )
    for verdict in summary.failures:
        bad = verdict.divergence
        detail: dict[str, Any] = {"case_id": verdict.case_id, "verdict": verdict.verdict,
                                  "message": verdict.message}  # fmt: skip
        if bad is not None:
            detail |= {"workflow_id": bad.workflow_id, "run_id": bad.run_id,
                       "event_id": bad.event_id}  # fmt: skip
            saved = await _save_history(client, bad.workflow_id, bad.run_id, out_dir)
            detail["history"] = str(saved) if saved else None
        f.add("histories_not_replaying", detail)
    return dict(summary.counts)


def _patch_placement(history: WorkflowHistory, f: Findings) -> None:
    """A history that replays as it was cut this time, but would not if the worker had gone
    on from a local activity's result in a new task (jiesu.audit.placement)."""
    patches = placement.patches_after_local_activity(history)
    if patches:
        f.add("patches_after_local_activity",
              {"workflow_id": history.workflow_id, "patches": patches})  # fmt: skip


async def _save_history(client: Client, workflow_id: str, run_id: str, out: Path) -> Path | None:
    try:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    except Exception:
        return None
    path = out / f"{workflow_id}.history.json"
    await asyncio.to_thread(_write, path, history.to_json())
    return path


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --- the run ----------------------------------------------------------------------------------


def start_stack(data: Path, cleanup: ExitStack) -> stack.Stack:
    """The embedded stack on the JIESU_* ports when set (free ports otherwise), with
    per-workflow time skipping allowed (the breach check moves open cases' clocks)."""
    for name in ("JIESU_TEMPORAL_PORT", "JIESU_TEMPORAL_UI_PORT", "JIESU_API_PORT"):
        os.environ.setdefault(name, str(_free_port()))
    os.environ["JIESU_API_HOST"] = "127.0.0.1"
    os.environ["JIESU_DEMO_DATA"] = "1"  # the clients use the demo keys
    s = stack.Stack(Settings(), data, cleanup)
    s.temporal_args = ["--dynamic-config-value", "frontend.WorkflowTimeSkippingEnabled=true"]
    s.start_temporal()
    s.start_postgres()
    s.prepare()
    s.start_app()
    return s


async def run_faults(s: stack.Stack, sup: stack.Supervisor, args: argparse.Namespace,
                     out_dir: Path) -> dict[str, Any]:  # fmt: skip
    settings = s.client_settings()
    client = await connect(settings)
    # no connection floor: while PostgreSQL is down asyncpg would log every failed refill
    pool = await db.create_pool(settings.database_url, min_size=0, max_size=8)
    names = [n for n in args.faults.split(",") if n.strip()]
    tally = Tally()
    run_tag = f"{int(time.time()) % 100000:05d}"
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    results: dict[str, Any] = {"machine": machine(), "args": _args_json(args), "run": run_tag,
                               "started_at": datetime.now(UTC).isoformat()}  # fmt: skip
    try:
        # The health probe has its own connection: queued behind the load's 256 it would time
        # the clients' pool, not the API.
        async with httpx.AsyncClient(base_url=s.api_url, limits=limits) as http, \
                httpx.AsyncClient(base_url=s.api_url) as probe:
            driver = Driver(RetryingClient(http, tally), run_tag, args.open_every)
            counter = iter(range(1, args.cases + 1))
            t0 = time.monotonic()
            print(f"Load: {args.cases} cases at {args.rate}/s; faults: {names}", flush=True)
            faults = asyncio.create_task(
                inject_faults(s, sup, names, driver, args.cases, probe, t0, args.freeze_seconds))
            outcome = await open_loop(lambda: driver.run_case(next(counter)), args.rate,
                                      args.cases, job_timeout=STEP_DEADLINE * 6)  # fmt: skip
            results["timeline"] = await faults
            results["load_s"] = round(time.monotonic() - t0, 1)
        results["clients"] = {
            "answers": dict(tally.answers), "retries": dict(tally.retries),
            "answers_by_route": dict(tally.by_route.most_common()),
            "gave_up": tally.gave_up, "harness_errors": outcome.error_samples,
        }  # fmt: skip
        open_ids = [r.case_id for r in driver.records if r.left_open and r.case_id]
        print(f"Moving {len(open_ids)} open cases past their acceptance deadline...", flush=True)
        results["skip_failures"] = await fire_breaches(client, open_ids)
        print("Checking...", flush=True)
        findings, extra = await check(client, pool, driver, out_dir)
        results |= {"counts": findings.counts, "details": findings.details, **extra}
        results["records"] = [asdict(r) for r in driver.records if r.error or len(r.case_ids) > 1]
        results["server_errors"] = _logged(tally.server_errors, s.data / "api.log")
    finally:
        await pool.close()
    return results


def _logged(errors: list[dict[str, Any]], log: Path, lines: int = 40) -> list[dict[str, Any]]:
    """Each 500 with what the API logged under its request id (the traceback follows the
    line): the stack's folder is deleted after the run unless --keep (fault run 20's 500 on a
    rating could not be explained afterwards)."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        text = []
    out = []
    for error in errors:
        rid = error.get("request_id") or ""
        at = next((i for i, line in enumerate(text) if rid and rid in line), None)
        out.append({**error, "log": text[at : at + lines] if at is not None else []})
    return out


def _args_json(args: argparse.Namespace) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def markdown(r: dict[str, Any]) -> str:
    counts = r["counts"]
    lines = [
        f"## Fault run {r['run']} ({r['started_at'][:19]}Z)",
        "",
        f"{r['args']['cases']} cases at {r['args']['rate']}/s (every {r['args']['open_every']}"
        f"-th left open), load {r.get('load_s')} s; {r['machine']['cpus']} CPUs.",
        "",
        "| fault | killed at | after arrivals | restarted after | API healthy after |",
        "|---|---|---|---|---|",
        *(f"| {t['fault']} | {t['at_s']} s | {t['cases_arrived']} | {t['restarted_after_s']} s"
          f" | {t['api_healthy_after_s']} s |" for t in r.get("timeline", [])),
        "",
        "| finding | count |",
        "|---|---|",
        *(f"| {k.replace('_', ' ')} | {counts.get(k, 0)} |" for k in KINDS),
        "",
        f"Client retries: {r['clients']['retries'] or 'none'}; answers {r['clients']['answers']};"
        f" gave up {r['clients']['gave_up']}. Rejected events in cases: {r['rejected_events']}."
        f" Read model converged after {r['converged_after_s']} s. Replay: {r['replay']}.",
    ]  # fmt: skip
    odd = {k: v for k, v in r["clients"].get("answers_by_route", {}).items()
           if not k.rsplit(" ", 1)[1].startswith("2")}  # fmt: skip
    if odd:
        lines += ["", "Answers other than 2xx, by route: "
                  + ", ".join(f"{k} ×{v}" for k, v in odd.items()) + "."]  # fmt: skip
    for e in r.get("server_errors", []):
        where = " / ".join(line.strip() for line in e["log"][-2:]) or "not found in api.log"
        lines += ["", f"500 on {e['method']} {e['url']} (request {e['request_id']}): {where}"]
    for kind, items in r["details"].items():
        if items:
            lines += ["", f"{kind.replace('_', ' ')} (first {len(items)}):"]
            lines += [f"- `{json.dumps(item, ensure_ascii=False, default=str)}`" for item in items]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data = Path(tempfile.mkdtemp(prefix="jiesu-faults-"))
    out_dir = args.out.parent / f"{args.out.stem}-histories"
    stop = threading.Event()
    try:
        with ExitStack() as cleanup:
            s = start_stack(data, cleanup)
            sup = s.supervisor()
            watcher = threading.Thread(target=sup.run, args=(stop,), daemon=True)
            watcher.start()
            cleanup.callback(watcher.join)
            cleanup.callback(stop.set)
            results = asyncio.run(run_faults(s, sup, args, out_dir))
            print("Stopping the stack...", flush=True)
    except stack.StackError as exc:
        print(f"error: {exc}; logs in {data}", file=sys.stderr)
        return 2
    if not args.keep:
        shutil.rmtree(data, ignore_errors=True)
    report = markdown(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
    args.out.with_suffix(".md").write_text(report + "\n")
    print(report)
    print(f"\nResults: {args.out} and {args.out.with_suffix('.md')}")
    return 1 if any(results["counts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
