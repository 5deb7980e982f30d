"""``jiesu keys create|list|revoke``: staff API keys, from the machine that runs Jiesu.

This is how the first key of a fresh installation (docker-compose loads no demo keys) is made:
``jiesu keys create --role admin --name ops-admin``. The key is printed once, on the last line
of the output; only its SHA-256 is stored. Works on ``DATABASE_URL`` (migrated by
``jiesu bootstrap``); the same operations are open to admins at ``/api/v1/admin/keys``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from jiesu.access import api_keys
from jiesu.access.api_keys import ApiKey, KeyRefused
from jiesu.case.domain import Role
from jiesu.config import get_settings
from jiesu.db import init_connection
from jiesu.ops.admin_cli import cli_actor
from jiesu.ops.tables import plain_table


async def _with_db(work: Callable[[asyncpg.Connection], Awaitable[int]]) -> int:
    conn = await asyncpg.connect(get_settings().database_url)
    try:
        await init_connection(conn)  # jsonb as the pool reads it: the change log's rows
        return await work(conn)
    finally:
        await conn.close()


def format_table(keys: Sequence[ApiKey]) -> str:
    """The keys as a plain-text table: never a secret, only what identifies each key."""
    header = ("id", "name", "role", "department", "created", "revoked")
    rows = [
        (
            str(k.id), k.name, k.role.value, k.department_id or "-",
            f"{k.created_at:%Y-%m-%d %H:%M:%S%z}",
            f"{k.revoked_at:%Y-%m-%d %H:%M:%S%z}" if k.revoked_at else "-",
        )
        for k in keys
    ]  # fmt: skip
    return plain_table(header, rows)


def cmd_keys_create(args: argparse.Namespace) -> int:
    """Create a staff API key and print it once."""

    async def work(conn: asyncpg.Connection) -> int:
        try:
            info, key = await api_keys.create_key(
                conn, name=args.name, role=Role(args.role), department_id=args.department,
                actor=cli_actor(),
            )
        except KeyRefused as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(
            f"Created API key {info.id} {info.name!r} (role {info.role.value}"
            + (f", department {info.department_id}" if info.department_id else "")
            + "). It is shown only now and cannot be recovered; store it safely:"
        )
        print(key)
        return 0

    return asyncio.run(_with_db(work))


def cmd_keys_list(args: argparse.Namespace) -> int:
    """List the API keys (ids, names, roles; never the keys themselves)."""

    async def work(conn: asyncpg.Connection) -> int:
        print(format_table(await api_keys.list_keys(conn)))
        return 0

    return asyncio.run(_with_db(work))


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    """Revoke an API key by id: it authenticates no more (answered 401)."""

    async def work(conn: asyncpg.Connection) -> int:
        info = await api_keys.revoke_key(conn, args.id, actor=cli_actor())
        if info is None:
            print(f"error: no API key {args.id}", file=sys.stderr)
            return 1
        print(f"Revoked API key {info.id} {info.name!r} at {info.revoked_at:%Y-%m-%d %H:%M:%S%z}.")
        return 0

    return asyncio.run(_with_db(work))


def _key_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a key id (a number)") from None
    if not 1 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text} is not a key id")
    return value


def add_commands(sub: Any) -> None:
    """Add ``keys`` and its subcommands to the ``jiesu`` parser's subparsers."""
    keys = sub.add_parser("keys", help="staff API keys: create, list, revoke",
                          description="Staff API keys (sent as 'Authorization: Bearer <key>'), "
                          "on DATABASE_URL; admins have the same at /api/v1/admin/keys.")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    def add(name: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=func.__doc__, description=func.__doc__)
        p.set_defaults(func=func)
        return p

    p = add("create", cmd_keys_create)
    p.add_argument("--role", required=True, choices=[r.value for r in api_keys.KEY_ROLES],
                   help="what the key may do (department: with --department)")
    p.add_argument("--department", help="the department id (role department only)")
    p.add_argument("--name", required=True, help="who or what holds the key, e.g. ops-admin")
    add("list", cmd_keys_list)
    p = add("revoke", cmd_keys_revoke)
    p.add_argument("id", type=_key_id, help="the key's id (from `jiesu keys list`)")
