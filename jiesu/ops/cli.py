"""The ``jiesu`` command line.

Each subcommand is a function ``cmd_<name>(args) -> int`` registered in ``_build_parser``;
add a new one by writing the function and one ``add_parser`` block. Tests call ``run(argv)``;
``main()`` (the console script) ends the process with ``os._exit``, see ``hard_exit``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from temporalio.client import Client

from jiesu import db
from jiesu.client import connect_to
from jiesu.config import Settings, get_settings
from jiesu.exiting import hard_exit

if TYPE_CHECKING:
    from jiesu.ops.demo_data import DemoKey

TEMPORAL_WAIT_SECONDS = 60.0
_RETRY_INTERVAL = 0.5
_ATTEMPT_TIMEOUT = 10.0
_QUIET_SECONDS = 2.0  # a server that is just starting is not worth a message


class TemporalUnavailable(RuntimeError):
    """Temporal did not accept connections in time."""


async def connect_temporal(
    address: str,
    namespace: str,
    *,
    wait_seconds: float = TEMPORAL_WAIT_SECONDS,
    check: Callable[[], None] | None = None,
) -> Client:
    """Connect to Temporal, retrying until ``wait_seconds`` have passed.

    ``check`` is called before every attempt; it may raise to give up early (for example when
    the server process it waits for has exited).
    """
    started = time.monotonic()
    deadline = started + wait_seconds
    announced = False
    while True:
        if check is not None:
            check()
        try:
            return await asyncio.wait_for(
                connect_to(address, namespace), _ATTEMPT_TIMEOUT
            )
        except Exception as exc:  # connection refused, DNS not ready, bridge errors...
            last_error = exc
        if time.monotonic() + _RETRY_INTERVAL > deadline:
            raise TemporalUnavailable(
                f"Temporal at {address} (namespace {namespace!r}) did not accept connections "
                f"within {wait_seconds:.0f} s; last error: {last_error}"
            ) from last_error
        if not announced and time.monotonic() - started > _QUIET_SECONDS:
            print(f"Waiting for Temporal at {address} (up to {wait_seconds:.0f} s)...", flush=True)
            announced = True
        await asyncio.sleep(_RETRY_INTERVAL)


def format_keys(keys: Sequence[DemoKey]) -> str:
    """The demo API keys as a plain-text table."""
    header = ("name", "role", "department", "API key")
    from jiesu.ops.tables import plain_table

    rows = [(k.name, str(k.role), k.department_id or "-", k.key) for k in keys]
    return plain_table(header, rows)


# --- subcommands -------------------------------------------------------------------------


async def _bootstrap(demo: bool) -> int:
    from jiesu.ops.bootstrap import prepare_database, prepare_temporal

    settings = get_settings()
    keys = await prepare_database(settings.database_url, demo=demo)
    print("Database ready (migrated" + (", demo data loaded)." if demo else ")."))
    client = await connect_temporal(settings.temporal_address, settings.temporal_namespace)
    added = await prepare_temporal(client)
    done = f"registered search attributes {', '.join(added)}" if added else "search attributes OK"
    print(f"Temporal {settings.temporal_address} ({settings.temporal_namespace}): {done}; "
          "schedules OK.")
    if keys:
        print("\nDemo API keys:\n" + format_keys(keys))
    return 0


def wants_demo(args: argparse.Namespace, settings: Settings) -> bool:
    """``--demo`` / ``--no-demo`` if given, else ``JIESU_DEMO_DATA`` (off by default)."""
    return settings.demo_data if args.demo is None else bool(args.demo)


def cmd_bootstrap(args: argparse.Namespace) -> int:
    """Create/migrate the database, register the search attributes and the schedules (hourly
    archive, reports); demo data only if asked."""
    # Temporal or PostgreSQL out of reach: ``main`` says which and what to set (exit 2), as
    # for every subcommand.
    return asyncio.run(_bootstrap(demo=wants_demo(args, get_settings())))


# --- wiring --------------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jiesu", description="Jiesu hotline administration.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("bootstrap", help=cmd_bootstrap.__doc__, description=cmd_bootstrap.__doc__)
    p.add_argument(
        "--demo",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="load the demo county and its PUBLIC demo API keys (default: JIESU_DEMO_DATA, "
        "off); never in production",
    )
    p.set_defaults(func=cmd_bootstrap)

    from jiesu.ops.audit_cli import add_commands as add_audit_commands

    add_audit_commands(sub)  # timeline, export, replay, consistency, archive

    from jiesu.ops.keys_cli import add_commands as add_key_commands

    add_key_commands(sub)  # keys create, list, revoke

    from jiesu.ops.users_cli import add_commands as add_user_commands

    add_user_commands(sub)  # users create, list, disable, enable, set-password

    from jiesu.ops.doctor_cli import add_commands as add_doctor_commands

    add_doctor_commands(sub)  # doctor, repair

    from jiesu.ops.admin_cli import add_commands as add_admin_commands

    add_admin_commands(sub)  # admin: reference data, rules, calendar, policy, templates

    from jiesu.ops.readmodel_cli import add_commands as add_readmodel_commands

    add_readmodel_commands(sub)  # backfill-handlings
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; return its exit code (for tests)."""
    args = _build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def unreachable(err: BaseException) -> str | None:
    """One line for a server the command could not reach, None for any other failure.

    The usual first mistake is a command run beside ``make run`` without the DATABASE_URL and
    TEMPORAL_ADDRESS its banner prints: that deserves a sentence and a hint, not a traceback
    (exit code 2, "could not run")."""
    settings = get_settings()
    files = [f.filename.replace("\\", "/") for f in traceback.extract_tb(err.__traceback__)]
    if isinstance(err, OSError) and any(f.endswith("asyncpg/connect_utils.py") for f in files):
        where = _without_password(settings.database_url)
        return f"cannot reach PostgreSQL at {where} ({err}); set DATABASE_URL"
    if isinstance(err, TemporalUnavailable) or str(err).startswith("Failed client connect"):
        return f"cannot reach Temporal at {settings.temporal_address} ({err}); set TEMPORAL_ADDRESS"
    return None


# The parameters of a DSN that are secrets (asyncpg reads both from the query string too).
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


def _without_password(dsn: str) -> str:
    parts = urlsplit(dsn)
    netloc, query = parts.netloc, parts.query
    if parts.password:  # none, or empty (the embedded default's): nothing to hide
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    if query:
        query = "&".join(_masked_parameter(p) for p in query.split("&"))
    if (netloc, query) == (parts.netloc, parts.query):
        return dsn
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _masked_parameter(parameter: str) -> str:
    name, sep, _value = parameter.partition("=")
    return f"{name}=***" if sep and unquote_plus(name).lower() in _SECRET_PARAMETERS else parameter


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``jiesu`` console script. Never returns; call :func:`run` from Python code."""
    try:
        code = run(argv)
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:  # `jiesu ... | head`: the reader has gone, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141  # as a command killed by SIGPIPE
    except (db.MigrationBlocked, db.MigrationNotOneTransaction) as err:
        print(f"error: {err}", file=sys.stderr)  # says what to do; a traceback adds nothing
        code = 1
    except Exception as err:
        message = unreachable(err)
        if message is not None:
            print(f"error: {message} (`make run` prints both)", file=sys.stderr)
            code = 2
        elif isinstance(err, OSError) and err.filename is not None:
            # a file named on the command line that cannot be read or written
            print(f"error: {err.strerror or err}: {err.filename}", file=sys.stderr)
            code = 2
        else:
            traceback.print_exc()
            code = 1
    hard_exit(code)


if __name__ == "__main__":
    main()
