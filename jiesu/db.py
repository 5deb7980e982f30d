"""PostgreSQL access: connection pools and schema migrations.

Migrations are plain SQL files in ``jiesu/migrations`` applied in name order, each once, in
its own transaction, under an advisory lock so that several processes starting together
do not race.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources

import asyncpg

_MIGRATION_LOCK = 0x4A494553  # "JIES"


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A connection going back to the pool keeps its session as it is.

    asyncpg's default reset runs ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release: one more round trip for every pooled query, in the API and
    the worker alike. Jiesu leaves nothing in a session to reset — its advisory locks are
    transaction-level (``pg_advisory_xact_lock``), it never LISTENs, SETs or keeps a cursor
    open — and a transaction still open at release is rolled back by asyncpg before this is
    called. tests/test_db_pool.py looks for statements that would leave session state."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=init_connection, reset=_keep_session
    )


def _migration_files() -> list[tuple[str, str]]:
    folder = resources.files("jiesu") / "migrations"
    files = sorted(f for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations; return the names applied now."""
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for version, sql in _migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied.append(version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)


async def in_batches(
    pool: asyncpg.Pool,
    sql: str,
    *args: object,
    batch: int,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Run ``sql`` (which takes ``*args`` and then ``batch`` as its last parameter, and
    touches at most that many rows) until it touches fewer; ``progress(rows so far)`` after
    each run. Returns the rows touched: retention chores in short transactions."""
    done = 0
    while True:
        touched = int((await pool.execute(sql, *args, batch)).split()[-1])
        done += touched
        if progress is not None:
            progress(done)
        if touched < batch:
            return done


async def ensure_database(dsn: str) -> None:
    """Create the database named in ``dsn`` if it does not exist yet."""
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        main, sep, query = dsn.partition("?")
        base, _, name = main.rpartition("/")
        admin = await asyncpg.connect(f"{base}/postgres{sep}{query}")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
    else:
        await conn.close()
