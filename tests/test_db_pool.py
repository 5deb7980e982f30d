"""The connection pool (jiesu.db.create_pool): a connection goes back to the pool without a
reset round trip, and never with a transaction still open."""

from __future__ import annotations

import pathlib
import re

from jiesu import db


async def test_a_released_connection_costs_no_reset_query(database_url: str) -> None:
    """asyncpg's default reset sends ``... RESET ALL`` on every release: a round trip per
    pooled query that Jiesu does not need (see jiesu.db._keep_session)."""
    pool = await db.create_pool(database_url, max_size=1)
    sent: list[str] = []
    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda record: sent.append(record.query))
            assert await conn.fetchval("SELECT 1") == 1
        async with pool.acquire() as again:
            assert await again.fetchval("SELECT 2") == 2  # the pool's one connection
        assert sent == ["SELECT 1", "SELECT 2"]
    finally:
        await pool.close()


async def test_a_transaction_left_open_is_rolled_back_at_release(database_url: str) -> None:
    pool = await db.create_pool(database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("SET LOCAL statement_timeout = '1234ms'")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SHOW statement_timeout") != "1234ms"
            # and the pool's codecs are still those of jiesu.db (jsonb as Python objects)
            assert await conn.fetchval("SELECT '{\"a\": 1}'::jsonb") == {"a": 1}
    finally:
        await pool.close()


def test_nothing_in_jiesu_sets_session_state() -> None:
    """What a skipped reset would leak: session-level advisory locks, LISTEN, SET (outside a
    transaction). A short list of the statements that leave such state, looked for in the
    code that runs on pooled connections."""
    root = pathlib.Path(__file__).resolve().parent.parent
    pattern = re.compile(
        # LISTEN in capitals only: the statement, not the word in prose ("it will listen on")
        r"pg_advisory_lock\(|pg_try_advisory_lock\(|(?-i:\bLISTEN\b)|add_listener\(|"
        r"\bSET (SESSION|ROLE)|"
        r"\"SET [a-z_]+ ?=|'SET [a-z_]+ ?=|set_config\([^)]*false\)",
        re.IGNORECASE,
    )
    found = []
    for folder in ("api", "activities", "jiesu", "workflows"):
        for path in (root / folder).rglob("*.py"):
            if path.name == "db.py" and path.parent.name == "jiesu":
                continue  # migrate(): its own connection, its lock released in a finally
            if path.name == "changes.py" and path.parent.name == "readmodel":
                continue  # the projection feed LISTENs on its own connection, never pooled
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line) and not line.lstrip().startswith("#"):
                    found.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    assert not found, found
