"""``jiesu users create|list|disable|enable|set-password``: staff accounts, from the machine
that runs Jiesu (like ``jiesu keys``; the same operations are open to admins at
``/api/v1/admin/users``).

A password is never an argument (it would stay in the shell history and be visible to every
user in ``ps``): it is read from standard input (the first line) when that is not a terminal,
e.g. ``printf '%s\\n' "$PW" | jiesu users set-password wang``, else prompted for twice. Each
change is recorded as made by ``cli:<the OS user>``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from jiesu.access import staff
from jiesu.access.staff import AccountRefused, Person
from jiesu.case.domain import Role
from jiesu.config import get_settings
from jiesu.ops.tables import plain_table


class PasswordNotGiven(Exception):
    pass


def read_password() -> str:
    """The new password: stdin's first line when piped, else typed twice at a prompt."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:
            raise PasswordNotGiven("no password on standard input")
        return line.rstrip("\r\n")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != first:
        raise PasswordNotGiven("the two passwords differ")
    return first


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in this container
        return "cli"


async def _with_db(work: Callable[[asyncpg.Connection], Awaitable[int]]) -> int:
    conn = await asyncpg.connect(get_settings().database_url)
    try:
        return await work(conn)
    finally:
        await conn.close()


def _run(work: Callable[[asyncpg.Connection], Awaitable[int]]) -> int:
    try:
        return asyncio.run(_with_db(work))
    except AccountRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def format_table(people: Sequence[Person]) -> str:
    """The accounts as a plain-text table (never a password hash)."""
    header = ("login", "name", "role", "department", "active", "created", "updated")
    rows = [
        (
            p.login, p.display_name, p.role.value, p.department_id or "-",
            "yes" if p.active else "no",
            f"{p.created_at:%Y-%m-%d %H:%M:%S%z}", f"{p.updated_at:%Y-%m-%d %H:%M:%S%z}",
        )
        for p in people
    ]  # fmt: skip
    return plain_table(header, rows)


def _describe(p: Person) -> str:
    where = f", department {p.department_id}" if p.department_id else ""
    return f"{p.login!r} ({p.display_name}, role {p.role.value}{where})"


def cmd_users_create(args: argparse.Namespace) -> int:
    """Create a person's account; the password is read from stdin or prompted for."""
    try:
        password = read_password()
    except PasswordNotGiven as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def work(conn: asyncpg.Connection) -> int:
        person = await staff.create_person(
            conn, login=args.login, display_name=args.name, role=Role(args.role),
            department_id=args.department, password=password, by=_who(),
        )  # fmt: skip
        print(f"Created {_describe(person)}.")
        return 0

    return _run(work)


def cmd_users_list(args: argparse.Namespace) -> int:
    """List the accounts (never a password)."""

    async def work(conn: asyncpg.Connection) -> int:
        print(format_table(await staff.list_people(conn)))
        return 0

    return _run(work)


def _set_active(active: bool) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        async def work(conn: asyncpg.Connection) -> int:
            person = await staff.update_person(conn, args.login, active=active, by=_who())
            if person is None:
                print(f"error: no person {args.login!r}", file=sys.stderr)
                return 2  # refused, nothing changed: as `jiesu admin` (docs/administration.md)
            state = "enabled" if active else "disabled (their sessions have ended)"
            print(f"{_describe(person)} is {state}.")
            return 0

        return _run(work)

    command.__doc__ = (
        "Enable a disabled account." if active
        else "Disable an account: its person can log in no more; open sessions end at once."
    )  # fmt: skip
    return command


def cmd_users_set_password(args: argparse.Namespace) -> int:
    """Set a person's password (stdin or prompt); their open sessions end."""
    try:
        password = read_password()
    except PasswordNotGiven as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def work(conn: asyncpg.Connection) -> int:
        person = await staff.set_password(conn, args.login, password, by=_who())
        if person is None:
            print(f"error: no person {args.login!r}", file=sys.stderr)
            return 2
        print(f"Password of {_describe(person)} set; their sessions have ended.")
        return 0

    return _run(work)


def add_commands(sub: Any) -> None:
    """Add ``users`` and its subcommands to the ``jiesu`` parser's subparsers."""
    users = sub.add_parser(
        "users", help="staff accounts: create, list, disable, enable, set-password",
        description="Staff accounts for the console and POST /api/v1/session, on DATABASE_URL; "
        "a password is read from stdin or a prompt, never an argument.",
    )
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")

    def add(name: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=func.__doc__, description=func.__doc__)
        p.set_defaults(func=func)
        return p

    p = add("create", cmd_users_create)
    p.add_argument("--login", required=True, help="what the person logs in with, e.g. wang.fang")
    p.add_argument("--name", required=True, help="the name shown on screens, e.g. 王芳")
    p.add_argument("--role", required=True, choices=[r.value for r in staff.STAFF_ROLE_VALUES],
                   help="what the person may do (department: with --department)")
    p.add_argument("--department", help="the department id (role department only)")
    add("list", cmd_users_list)
    for name, func in (
        ("disable", _set_active(False)),
        ("enable", _set_active(True)),
        ("set-password", cmd_users_set_password),
    ):
        add(name, func).add_argument("login", help="the person's login")
