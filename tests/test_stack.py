"""`make run` (jiesu/ops/stack.py): a child that dies is started again, the others keep serving;
both embedded stores run with settings that keep acknowledged writes.

The end-to-end test starts the real stack (`python -m jiesu.ops.stack`) in a temporary folder on
free ports, kills its processes with SIGKILL and waits for the supervisor to replace them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import shutil
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import psutil
import pytest
from asyncpg.transaction import Transaction
from helpers import OPERATOR, complaint, eventually
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from jiesu.config import Settings
from jiesu.ops import stack, temporal_settings
from jiesu.ops.bootstrap import prepare_database
from jiesu.ops.stack import Service, Supervisor
from jiesu.stats import rollup
from jiesu.stats.reports import ReportKind, ReportRequest
from workflows.reports import ReportWorkflow

STARTUP = 120.0  # seconds; the stack starts in ~10 s alone, other suites share the machine


# --- the supervisor's policy, with a hand-moved clock -------------------------------------


class FakeService(Service):
    def __init__(self, name: str) -> None:
        self.name, self.log = name, Path(f"{name}.log")
        self.running = True
        self.starts = 0
        self.fail_next_start = False

    def start(self, restart: bool = False) -> None:
        if self.fail_next_start:
            self.fail_next_start = False
            raise OSError("port in use")
        self.starts += 1
        self.running = True

    def stop(self) -> None:
        self.running = False

    def pid(self) -> int | None:
        return 1000 + self.starts

    def exit_reason(self) -> str | None:
        return None if self.running else "was killed by signal 9"


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def test_supervisor_restarts_only_the_dead_one_with_growing_pauses() -> None:
    worker, api = FakeService("worker"), FakeService("API")
    clock, lines = Clock(), []
    sup = Supervisor([worker, api], say=lines.append, clock=clock)

    worker.running = False
    sup.poll()
    assert worker.starts == 0 and "worker was killed by signal 9" in lines[-1]
    clock.now += stack.RESTART_DELAY
    sup.poll()
    assert worker.running and worker.starts == 1 and api.starts == 0
    assert sup.restarts(worker) == 1 and "worker started again" in lines[-1]

    worker.running = False  # dies again at once: the pause doubles
    sup.poll()
    clock.now += stack.RESTART_DELAY
    sup.poll()
    assert not worker.running
    clock.now += stack.RESTART_DELAY
    sup.poll()
    assert worker.running and worker.starts == 2

    clock.now += stack.STABLE_AFTER  # ran long enough: back to the first pause
    worker.running = False
    sup.poll()
    clock.now += stack.RESTART_DELAY
    sup.poll()
    assert worker.running and worker.starts == 3


def test_supervisor_keeps_trying_when_a_start_fails() -> None:
    api = FakeService("API")
    clock, lines = Clock(), []
    sup = Supervisor([api], say=lines.append, clock=clock)
    api.running, api.fail_next_start = False, True
    sup.poll()
    clock.now += stack.RESTART_DELAY
    sup.poll()
    assert not api.running and "did not start (OSError: port in use)" in lines[-1]
    clock.now += stack.RESTART_DELAY_MAX
    sup.poll()
    assert api.running and sup.restarts(api) == 1


def test_dev_server_sqlite_is_durable_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JIESU_TEMPORAL_SQLITE_PRAGMAS", raising=False)
    cmd = stack.temporal_command(Path("/data"), 1, 2, "default")
    pragmas = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--sqlite-pragma"]
    assert pragmas == ["journal_mode=WAL", "synchronous=FULL"]


def test_dev_server_reads_its_queues_promptly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(temporal_settings.ENV, raising=False)
    assert _dynamic_config(stack.temporal_command(Path("/data"), 1, 2, "default")) == {
        "system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute": "2",
        "history.transferProcessorMaxPollRPS": "200",
        "history.timerProcessorMaxPollRPS": "200",
        "history.visibilityProcessorMaxPollRPS": "200",
    }


def test_dynamic_config_from_the_environment_replaces_by_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(temporal_settings.ENV, " history.transferProcessorMaxPollRPS=20 ,x.y=1,")
    config = _dynamic_config(stack.temporal_command(Path("/data"), 1, 2, "default"))
    assert config["history.transferProcessorMaxPollRPS"] == "20"
    assert config["x.y"] == "1"
    assert config["history.timerProcessorMaxPollRPS"] == "200"


@pytest.mark.parametrize("bad", ["history.x", "=1", "history.x="])
def test_dynamic_config_refuses_what_is_not_key_value(bad: str) -> None:
    with pytest.raises(ValueError, match="not key=value"):
        temporal_settings.dynamic_config({temporal_settings.ENV: bad})


def _dynamic_config(cmd: list[str]) -> dict[str, str]:
    values = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--dynamic-config-value"]
    return dict(value.split("=", 1) for value in values)


# --- the worker's stop -------------------------------------------------------------------


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(scope="module")
async def own_database(database_url: str) -> str:
    """A database of its own on the session's server: the worker's outbox and refresher must
    not claim the session's notices or hold its rollup lock."""
    url = urlsplit(database_url)._replace(path="/jiesu_worker_stop")
    await prepare_database(urlunsplit(url), demo=False)
    return urlunsplit(url)


WORKER_STARTED = "statistics refresher started"  # the worker's last start-up line


def _variables(env: WorkflowEnvironment, settings: Settings, database: str) -> dict[str, str]:
    """A process's environment for the session's Temporal, a database and a task queue of its
    own."""
    config = env.client.service_client.config
    return dict(
        os.environ,
        TEMPORAL_ADDRESS=config.target_host,
        TEMPORAL_NAMESPACE=env.client.namespace,
        DATABASE_URL=database,
        JIESU_TASK_QUEUE=f"{settings.task_queue}-stop-test",
        JIESU_WORKER_METRICS_ADDRESS="",
        PYTHONUNBUFFERED="1",
    )


def _start_worker(
    env: WorkflowEnvironment, settings: Settings, database: str, log: Path,
    command: list[str] | None = None,
) -> subprocess.Popen[bytes]:
    """``python -m worker`` (or ``command``) on a task queue and a database of its own, started
    the way a background job of a script (``make bench &``) starts it: with SIGINT ignored."""
    command = command or [sys.executable, "-m", "worker"]
    return _spawn(command, _variables(env, settings, database), log, _ignore_sigint)


def _spawn(
    command: list[str], variables: dict[str, str], log: Path,
    preexec: Any = None,
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, env=variables, stdout=out,
                                stderr=subprocess.STDOUT, preexec_fn=preexec)  # fmt: skip


def _torn_down_when(torn_down: Path, module: str, *argv: str) -> list[str]:
    """``python -m <module> <argv>`` with an ``atexit`` hook that creates ``torn_down``: only
    the interpreter's teardown runs it."""
    script = (f"import atexit, runpy, sys; atexit.register(open, {str(torn_down)!r}, 'w'); "
              f"sys.argv = [{module!r}, *{list(argv)!r}]; "
              f"runpy.run_module({module!r}, run_name='__main__')")  # fmt: skip
    return [sys.executable, "-c", script]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_the_worker_stops_cleanly_and_promptly(
    env: WorkflowEnvironment, settings: Settings, own_database: str, tmp_path: Path,
    signum: signal.Signals,
) -> None:  # fmt: skip
    """The stack stops its worker with SIGINT, docker with SIGTERM: either one lets the
    in-flight work finish, stops the outbox and the refresher and exits 0 well within the
    stack's patience (STOP_TIMEOUT), even when SIGINT was inherited as ignored."""
    log = tmp_path / "worker.log"
    proc = _start_worker(env, settings, own_database, log)
    started = functools.partial(_logged, log, WORKER_STARTED)
    code, text = await _stopped_once(proc, log, started, signum)
    assert code == 0, text
    # (the refresher may be cancelled mid-refresh: that rolls back, the next worker redoes it)
    assert "worker stopped" in text and "outbox dispatcher stopped" in text, text


async def test_a_stopped_worker_skips_the_interpreters_teardown(
    env: WorkflowEnvironment, settings: Settings, own_database: str, tmp_path: Path
) -> None:
    """Once stopped, the worker ends with ``os._exit`` (jiesu.exiting.hard_exit): in the
    interpreter's teardown the SDK's Rust threads can abort it (temporalio/sdk-python#300), and
    a clean stop exited -6 in a loaded fresh-clone suite. An ``atexit`` hook runs only in that
    teardown, so here it must not run — and the exit code is still 0."""
    torn_down = tmp_path / "torn-down"
    log = tmp_path / "worker.log"
    proc = _start_worker(env, settings, own_database, log, _torn_down_when(torn_down, "worker"))
    started = functools.partial(_logged, log, WORKER_STARTED)
    code, text = await _stopped_once(proc, log, started, signal.SIGTERM)
    assert code == 0, text
    assert "worker stopped" in text, text
    assert not torn_down.exists(), "the interpreter's teardown ran"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_a_stopped_api_skips_the_interpreters_teardown(
    env: WorkflowEnvironment, settings: Settings, own_database: str, tmp_path: Path,
    signum: signal.Signals,
) -> None:  # fmt: skip
    """``python -m api`` (api/__main__.py: uvicorn's command line, then hard_exit), the way the
    stack, the Dockerfile and docker-compose start the API, ends as the worker does."""
    torn_down, log = tmp_path / "torn-down", tmp_path / "api.log"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = _torn_down_when(torn_down, "api", "--host", "127.0.0.1", "--port", str(port))
    proc = _spawn(command, _variables(env, settings, own_database), log)

    async def healthy() -> bool:
        async with httpx.AsyncClient() as http:
            with contextlib.suppress(httpx.TransportError):
                return (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
        return False

    code, text = await _stopped_once(proc, log, healthy, signum)
    assert code == 0, text
    assert "Application shutdown complete" in text, text
    assert not torn_down.exists(), "the interpreter's teardown ran"


async def _stopped_once(
    proc: subprocess.Popen[bytes], log: Path, started: Callable[[], Awaitable[bool]],
    signum: signal.Signals,
) -> tuple[int, str]:
    """Wait (60 s) until ``started()``, stop ``proc`` with ``signum`` and give it the stack's
    patience (STOP_TIMEOUT) to exit; its exit code and its log. Killed if still running."""
    try:
        assert await eventually(started, within=60)
        proc.send_signal(signum)
        code = await asyncio.to_thread(proc.wait, stack.STOP_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, await asyncio.to_thread(log.read_text, errors="replace")


async def _logged(log: Path, text: str) -> bool:
    return text in await asyncio.to_thread(log.read_text, errors="replace")


# An activity in flight at the stop: ``refresh_statistics`` (the report workflow's first step,
# a real activity) waits on the rollup's advisory lock while the test holds it, in PostgreSQL.

STOP_REPORT = ReportRequest(kind=ReportKind.DAILY, period_start=date(2026, 1, 1))


@asynccontextmanager
async def _rollup_lock_held(database: str) -> AsyncIterator[Transaction]:
    """The rollup's advisory lock, taken in a transaction of the test's own; ending the
    transaction lets a waiting refresh go on."""
    conn = await asyncpg.connect(database)
    try:
        held = conn.transaction()
        await held.start()
        await conn.execute("SELECT pg_advisory_xact_lock($1)", rollup._REFRESH_LOCK)
        yield held
    finally:
        await conn.close()


async def _waiting_for_the_rollup(database: str) -> int:
    """How many sessions wait for the rollup's lock: a refresh in flight, held up."""
    conn = await asyncpg.connect(database)
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM pg_locks"
            " WHERE locktype = 'advisory' AND objid = $1 AND NOT granted",
            rollup._REFRESH_LOCK,
        ))  # fmt: skip
    finally:
        await conn.close()


async def _report_in_flight(
    env: WorkflowEnvironment, settings: Settings, database: str
) -> WorkflowHandle[Any, Any]:
    """A report workflow on the stop test's queue whose refresh has reached the held lock."""
    handle = await env.client.start_workflow(
        ReportWorkflow.run, STOP_REPORT, id=f"stop-report-{uuid.uuid4().hex[:8]}",
        task_queue=f"{settings.task_queue}-stop-test",
    )  # fmt: skip
    await eventually(lambda: _waiting_for_the_rollup(database), within=60)
    return handle


async def _activity_events(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The activity events of ``handle``'s history, as ``<event>:<activity type or attempt>``."""
    events = []
    async for event in handle.fetch_history_events():
        name = EventType.Name(event.event_type)
        if event.HasField("activity_task_scheduled_event_attributes"):
            events.append(f"{name}:{event.activity_task_scheduled_event_attributes.activity_type.name}")
        elif event.HasField("activity_task_started_event_attributes"):
            events.append(f"{name}:{event.activity_task_started_event_attributes.attempt}")
        elif "ACTIVITY" in name:
            events.append(name)
    return events


async def _last_refresh(database: str) -> object:
    """The rollup's bookkeeping row: what a committed refresh changes."""
    conn = await asyncpg.connect(database)
    try:
        return await conn.fetchrow("SELECT * FROM case_stats_refresh")
    finally:
        await conn.close()


async def test_the_activity_in_flight_at_the_stop_finishes_and_is_recorded(
    env: WorkflowEnvironment, settings: Settings, own_database: str, tmp_path: Path
) -> None:
    """SIGTERM while an activity runs: the worker polls no more, lets the activity finish
    within its grace (GRACEFUL_SHUTDOWN), reports its result to Temporal and exits 0."""
    log = tmp_path / "worker.log"
    proc = _start_worker(env, settings, own_database, log)
    handle: WorkflowHandle[Any, Any] | None = None
    try:
        async with _rollup_lock_held(own_database) as held:
            await eventually(lambda: _logged(log, "polling task queue"), within=60)
            handle = await _report_in_flight(env, settings, own_database)
            proc.send_signal(signal.SIGTERM)
            # the stop has begun while the refresh still waits: only then let it go on
            await eventually(lambda: _logged(log, "Beginning worker shutdown"), within=30)
            await held.rollback()
            code = await asyncio.to_thread(proc.wait, stack.STOP_TIMEOUT)
        events = await _activity_events(handle)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if handle is not None:  # its next step waits for a worker of this queue: none comes
            with contextlib.suppress(RPCError):
                await handle.terminate("the test is over")
    text = log.read_text(errors="replace")
    assert code == 0, text
    assert "worker stopped" in text and "did not complete in time" not in text, text
    # the first attempt's result is in the history: nothing is left for another worker
    assert events == [
        "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:refresh_statistics",
        "EVENT_TYPE_ACTIVITY_TASK_STARTED:1",
        "EVENT_TYPE_ACTIVITY_TASK_COMPLETED",
    ], events


async def test_an_activity_beyond_the_grace_is_run_again_by_the_next_worker(
    env: WorkflowEnvironment, settings: Settings, own_database: str, tmp_path: Path
) -> None:
    """SIGTERM while an activity is held up longer than the grace: the worker cancels it
    (its query is cancelled in PostgreSQL, its transaction rolls back), reports it failed with
    ``WorkerShutdown`` and exits 0; Temporal retries it at once (1 s), the next worker runs it
    and the workflow goes on: every step applied once."""
    first_log, next_log = tmp_path / "first.log", tmp_path / "next.log"
    first = _start_worker(env, settings, own_database, first_log)
    following: subprocess.Popen[bytes] | None = None
    try:
        async with _rollup_lock_held(own_database) as held:
            await eventually(lambda: _logged(first_log, "polling task queue"), within=60)
            before = await _last_refresh(own_database)
            handle = await _report_in_flight(env, settings, own_database)
            first.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(first.wait, stack.STOP_TIMEOUT)
            # the cancelled attempt neither waits on in PostgreSQL nor changed anything
            assert await _waiting_for_the_rollup(own_database) == 0
            assert await _last_refresh(own_database) == before
            (pending,) = (await handle.describe()).raw_description.pending_activities
            following = _start_worker(env, settings, own_database, next_log)
            await held.rollback()
            summary = await asyncio.wait_for(handle.result(), 120)
        events = await _activity_events(handle)
    finally:
        for proc in (first, following):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.to_thread(proc.wait, stack.STOP_TIMEOUT)
    text = first_log.read_text(errors="replace")
    assert code == 0 and "worker stopped" in text, text
    assert pending.activity_type.name == "refresh_statistics" and pending.attempt == 2
    assert pending.last_failure.application_failure_info.type == "WorkerShutdown"
    assert events == [  # the refresh by its second attempt, then the report, each once
        "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:refresh_statistics",
        "EVENT_TYPE_ACTIVITY_TASK_STARTED:2",
        "EVENT_TYPE_ACTIVITY_TASK_COMPLETED",
        "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:produce_report",
        "EVENT_TYPE_ACTIVITY_TASK_STARTED:1",
        "EVENT_TYPE_ACTIVITY_TASK_COMPLETED",
    ], events
    assert summary.generation == 1  # the period's report was produced once


def test_children_do_not_inherit_an_ignored_sigint(tmp_path: Path) -> None:
    """A stack started as a background job (SIGINT ignored) still stops its children with
    SIGINT: they start with its default action."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
        child = stack.spawn("probe", [sys.executable, "-c", probe], tmp_path / "out")
        assert child.proc.wait(30) == 0
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (tmp_path / "out").read_text().strip() == "False"


# --- the real stack -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningStack:
    proc: subprocess.Popen[str]
    data: Path
    url: str
    output: list[str]
    mail_port: int

    def child(self, marker: str) -> int | None:
        """The pid of the stack's live child whose command line contains ``marker``."""
        for child in psutil.Process(self.proc.pid).children():
            try:
                if child.status() != psutil.STATUS_ZOMBIE and marker in " ".join(child.cmdline()):
                    return child.pid
            except psutil.NoSuchProcess:
                continue
        return None

    def printed(self, text: str) -> bool:
        return any(text in line for line in self.output)

    def database_url(self) -> str:
        line = next(x for x in self.output if x.strip().startswith("PostgreSQL "))
        return line.split(None, 1)[1].strip()


def _start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jiesu.ops.stack"], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _read_lines(proc: subprocess.Popen[str], into: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        into.append(line)


@pytest.fixture(scope="module")
async def running_stack() -> AsyncIterator[RunningStack]:
    data = Path(tempfile.mkdtemp(prefix="jiesu-test-stack-"))
    api_port, mail_port = _free_port(), _free_port()
    env = dict(
        os.environ,
        JIESU_DATA_DIR=str(data),
        JIESU_TEMPORAL_PORT=str(_free_port()),
        JIESU_TEMPORAL_UI_PORT=str(_free_port()),
        JIESU_API_PORT=str(api_port),
        JIESU_API_HOST="127.0.0.1",
        JIESU_MAIL_PORT=str(mail_port),
        JIESU_API_METRICS_ADDRESS=f"127.0.0.1:{_free_port()}",
        JIESU_WORKER_METRICS_ADDRESS=f"127.0.0.1:{_free_port()}",
        JIESU_DEMO_DATA="1",  # the demo keys, as with `make run`
    )
    for name in ("TEMPORAL_ADDRESS", "DATABASE_URL", "JIESU_TEMPORAL_SQLITE_PRAGMAS"):
        env.pop(name, None)
    proc = _start(env)
    output: list[str] = []
    threading.Thread(target=_read_lines, args=(proc, output), daemon=True).start()
    running = RunningStack(proc, data, f"http://127.0.0.1:{api_port}", output, mail_port)
    try:
        await eventually(lambda: _healthy(running), within=STARTUP, interval=0.5)
        # Supervising begins after the banner: until then (the API answers before the mail
        # listener starts) a process that dies stops the whole stack, as a failed start does.
        await eventually(lambda: _said(running, "Ctrl-C to stop."), within=STARTUP)
        yield running
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print("".join(output))
        shutil.rmtree(data, ignore_errors=True)


async def _healthy(s: RunningStack) -> bool:
    assert s.proc.poll() is None, "".join(s.output)
    try:
        async with httpx.AsyncClient(base_url=s.url, timeout=5) as http:
            return (await http.get("/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


async def _lists_cases(s: RunningStack) -> bool:
    """The API answers a request that needs PostgreSQL."""
    try:
        async with httpx.AsyncClient(base_url=s.url, timeout=5) as http:
            response = await http.get("/api/v1/complaints", headers=OPERATOR)
            return response.status_code == 200
    except httpx.HTTPError:
        return False


async def _replaced(s: RunningStack, marker: str, old: int) -> bool:
    pid = s.child(marker)
    return pid is not None and pid != old


async def test_a_killed_worker_and_api_are_started_again(running_stack: RunningStack) -> None:
    s = running_stack
    worker, api = s.child("-m worker"), s.child("-m api")
    assert worker and api
    os.kill(worker, signal.SIGKILL)
    os.kill(api, signal.SIGKILL)

    async def both_back() -> bool:
        return await _replaced(s, "-m worker", worker) and await _replaced(s, "-m api", api)

    await eventually(both_back, within=30)
    await eventually(lambda: _healthy(s), within=30, interval=0.2)
    assert s.proc.poll() is None
    # the supervisor's console line may come a moment after the process it reports on
    await eventually(lambda: _said(s, "worker was killed by signal 9", "API started again"))


def _mail(port: int) -> tuple[int, bytes]:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "citizen@citizen.test", "12345@jiesu.localhost", "路灯"
    msg["Message-ID"] = make_msgid(domain="citizen.test")
    msg.set_content("幸福路的路灯坏了")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail("citizen@citizen.test")
        smtp.rcpt("12345@jiesu.localhost")
        return smtp.data(msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))


async def test_the_mail_listener_takes_a_complaint(running_stack: RunningStack) -> None:
    s = running_stack
    assert s.child("jiesu.channels.mail_listener")
    assert await eventually(lambda: _said(s, "Mail (SMTP)"))
    code, answer = await asyncio.to_thread(_mail, s.mail_port)
    assert code == 250 and answer.startswith(b"2.0.0 OK: case JS"), answer


async def test_a_killed_postgres_is_started_again(running_stack: RunningStack) -> None:
    s = running_stack
    postmaster = int((s.data / "pg" / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    await eventually(lambda: _restarted_postgres(s, postmaster), within=60, interval=0.2)
    await eventually(lambda: _lists_cases(s), within=30, interval=0.2)
    await eventually(lambda: _said(s, "PostgreSQL started again"))


async def test_a_killed_temporal_server_is_started_again(running_stack: RunningStack) -> None:
    s = running_stack
    server = s.child("server start-dev")
    assert server
    os.kill(server, signal.SIGKILL)
    await eventually(lambda: _replaced(s, "server start-dev", server), within=30)
    # the API and the worker reconnect by themselves: a new case is registered and routed
    headers = {**OPERATOR, "Idempotency-Key": f"stack-test-{server}"}
    body = complaint()
    case_id = await eventually(lambda: _register(s, body, headers), within=60, interval=0.5)
    assert await eventually(lambda: _routed(s, case_id), within=60, interval=0.2)
    await eventually(lambda: _said(s, "Temporal dev server started again"))


async def _register(s: RunningStack, body: dict[str, Any], headers: dict[str, str]) -> str | None:
    try:
        async with httpx.AsyncClient(base_url=s.url, timeout=10) as http:
            response = await http.post("/api/v1/complaints", json=body, headers=headers)
    except httpx.HTTPError:
        return None
    # 201, or 200 for a retry (same key) whose earlier attempt met the outage (503) and is
    # completed by this one
    return str(response.json()["case_id"]) if response.status_code in (200, 201) else None


async def _routed(s: RunningStack, case_id: str) -> bool:
    async with httpx.AsyncClient(base_url=s.url, timeout=10) as http:
        response = await http.get(f"/api/v1/complaints/{case_id}", headers=OPERATOR)
    return response.status_code == 200 and response.json()["status"] == "assigned"


async def _said(s: RunningStack, *texts: str) -> bool:
    return all(s.printed(text) for text in texts)


async def _restarted_postgres(s: RunningStack, old: int) -> bool:
    try:
        pid = int((s.data / "pg" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return pid != old and psutil.pid_exists(pid)


async def test_embedded_stores_keep_acknowledged_writes(running_stack: RunningStack) -> None:
    s = running_stack
    with closing(sqlite3.connect(f"file:{s.data / 'temporal.db'}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn = await asyncpg.connect(s.database_url())
    try:
        for setting in stack.POSTGRES_DURABILITY:
            assert await conn.fetchval(f"SHOW {setting}") == "on", setting
    finally:
        await conn.close()


async def test_it_says_where_metrics_are_and_serves_them(running_stack: RunningStack) -> None:
    """The banner's Metrics line names both endpoints; each answers a scrape with its own
    metrics, and /readyz is 200 once the worker polls (docs/observability.md)."""
    s = running_stack
    await eventually(lambda: _said(s, "Metrics"), within=30)
    line = next(x for x in s.output if x.strip().startswith("Metrics"))
    urls = re.findall(r"(http://\S+/metrics) \((API|worker)\)", line)
    assert [what for _, what in urls] == ["API", "worker"], line
    api_metrics, worker_metrics = (url for url, _ in urls)

    async def ready() -> bool:
        async with httpx.AsyncClient(base_url=s.url, timeout=5) as http:
            return (await http.get("/readyz")).status_code == 200

    await eventually(ready, within=60, interval=0.5)
    await _lists_cases(s)

    async def scraped(url: str, name: str) -> bool:
        async with httpx.AsyncClient(timeout=5) as http:
            try:
                response = await http.get(url)
            except httpx.HTTPError:
                return False
        return response.status_code == 200 and name in response.text

    await eventually(lambda: scraped(api_metrics, "jiesu_api_requests_total{"), within=30)
    await eventually(lambda: scraped(worker_metrics, "temporal_"), within=30)
    await eventually(lambda: scraped(worker_metrics, "jiesu_open_cases{"), within=60)
