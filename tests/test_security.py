"""Security basics (issue 9, point 8): no demo keys outside the embedded trial, API keys that
can be created, listed and revoked, a limit on failed authentications, security headers, docs
without a CDN, and case numbers that cannot be probed without a key."""

from __future__ import annotations

import uuid

import asyncpg

from jiesu.bootstrap import prepare_database


def _sibling_database(database_url: str, name: str) -> str:
    main, sep, query = database_url.partition("?")
    return f"{main.rpartition('/')[0]}/{name}{sep}{query}"


async def test_bootstrap_without_demo_loads_no_keys_and_no_demo_county(database_url: str) -> None:
    """What docker-compose's bootstrap does (JIESU_DEMO_DATA=0, see tests/test_compose.py):
    a migrated database with not one API key, so the public demo keys open nothing."""
    dsn = _sibling_database(database_url, f"jiesu_nodemo_{uuid.uuid4().hex[:8]}")
    assert await prepare_database(dsn, demo=False) == []
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM api_keys") == 0
        assert await conn.fetchval("SELECT count(*) FROM departments") == 0
    finally:
        await conn.close()
