"""Prepare an environment: database, schema, demo reference data, search attributes.

Used by ``make run`` (embedded stack), by docker-compose's one-shot ``bootstrap`` service and by
the test session. Every step is idempotent.

The demo county comes with PUBLIC API keys (``jiesu-demo-admin``...), so it is loaded only when
the caller says so (``demo=True``): ``make run`` does (``JIESU_DEMO_DATA=1``), docker-compose and
a plain ``jiesu bootstrap`` do not.
"""

from __future__ import annotations

from temporalio.client import Client

from jiesu import db
from jiesu.audit.archive import ensure_archive_schedule
from jiesu.case import search_attributes
from jiesu.config import Settings, get_settings
from jiesu.ops.demo_data import DemoKey, load_demo_data
from workflows.reports import ensure_report_schedules


async def prepare_database(dsn: str, *, demo: bool) -> list[DemoKey]:
    """Create the database if needed, migrate it and, if ``demo``, load the demo county and
    its demo API keys (returned; empty without demo)."""
    await db.ensure_database(dsn)
    # Two connections: the second watches the first's lock waits, so that a migration held
    # up by another transaction names it (jiesu.db.migrate).
    pool = await db.create_pool(dsn, max_size=2)
    try:
        async with pool.acquire() as conn, pool.acquire() as observer:
            await db.migrate(conn, observer=observer)
            return await load_demo_data(conn) if demo else []
    finally:
        await pool.close()


async def prepare_temporal(client: Client, settings: Settings | None = None) -> list[str]:
    added = await search_attributes.register(client)
    await ensure_archive_schedule(client, settings or get_settings())
    await ensure_report_schedules(client, settings or get_settings())
    return added
