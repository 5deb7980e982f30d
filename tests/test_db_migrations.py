"""Migrations on an outbox in use (jiesu.db.migrate applies each file in its own transaction):
what an upgrade holds the outbox's writes for, and the schema it leaves."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from jiesu import db
from jiesu.readmodel import projection

_SET_ASIDE_CHECKS = ("notifications_status_check", "notifications_set_aside_recorded")


def _sibling_database(database_url: str, name: str) -> str:
    main, sep, query = database_url.partition("?")
    return f"{main.rpartition('/')[0]}/{name}{sep}{query}"


@pytest.fixture
async def upgraded_from_0044(database_url: str) -> AsyncIterator[str]:
    """A database of its own on the session's server, migrated up to 0044, with 5,000 sent
    notices in its outbox; dropped after the test."""
    name = f"jiesu_upgrade_{uuid.uuid4().hex[:8]}"
    dsn = _sibling_database(database_url, name)
    await db.ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY,"
                           " applied_at timestamptz NOT NULL DEFAULT now())")  # fmt: skip
        for version, sql in db._migration_files():
            if version[:4] <= "0044":
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations VALUES ($1)", version)
        await conn.execute(
            "INSERT INTO notifications (key, case_id, event_seq, event_kind, recipient_kind,"
            " recipient_id, channel, subject, body, status) SELECT 'old:' || g, 'JSOLD' || g,"
            " 1, 'routed', 'department', 'water', 'email', 's', 'b', 'sent'"
            " FROM generate_series(1, 5000) g")
    finally:
        await conn.close()
    yield dsn
    admin = await asyncpg.connect(_sibling_database(database_url, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _validated(conn: asyncpg.Connection) -> set[tuple[str, int]]:
    """The set-aside checks validated now, each with its oid (0045 drops and re-adds one)."""
    return {(r["conname"], r["oid"]) for r in await conn.fetch(
        "SELECT conname, oid FROM pg_constraint WHERE conrelid = 'notifications'::regclass"
        " AND conname = ANY($1::text[]) AND convalidated", list(_SET_ASIDE_CHECKS))}  # fmt: skip


async def test_the_set_aside_checks_are_validated_without_holding_the_outbox(
    upgraded_from_0044: str,
) -> None:
    """Migration 0045 re-added the outbox's status check and added the set-aside one, each
    checking every notice under the ACCESS EXCLUSIVE lock of its ALTER TABLE: every intake's
    notice and the dispatcher waited for it (a write 602 and 673 ms at 2,000,000 notices,
    bench/outbox_migration_lock.py). Now 0045 adds them NOT VALID (enforced on every write
    from then on, no notice read) and 0047 validates them in a transaction of its own, under
    SHARE UPDATE EXCLUSIVE, which lets the outbox be written meanwhile. Each migration after
    0044 is run here as jiesu.db.migrate runs it (its own transaction) and, before it commits,
    a notice is written from another connection: the migration that validates the checks
    must not make it wait."""
    conn = await asyncpg.connect(upgraded_from_0044)
    writer = await asyncpg.connect(upgraded_from_0044)
    try:
        await writer.execute("SET lock_timeout = '1s'")  # waits: refused, not hung
        validated_by, blocked = {}, set()
        for version, sql in db._migration_files():
            if version[:4] <= "0044":
                continue
            before = await _validated(conn)
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations VALUES ($1)", version)
                now = await _validated(conn)
                try:
                    await writer.execute(projection._INSERT_NOTICE, f"new:{version}", "JSNEW",
                                         1, "routed", "department", "water", "email", "s", "b")
                except asyncpg.LockNotAvailableError:
                    blocked.add(version)
            validated_by |= {name: version for name, _ in now - before}
        assert set(validated_by) == set(_SET_ASIDE_CHECKS)
        assert not blocked & set(validated_by.values()), (validated_by, blocked)
    finally:
        await writer.close()
        await conn.close()


async def test_the_outbox_schema_is_the_same_however_it_was_reached(
    database_url: str, upgraded_from_0044: str,
) -> None:
    """The session's database was migrated from nothing; the other was upgraded from 0044
    with notices in it, by the runner itself: the same columns and the same checks, every one
    validated (pg_constraint.convalidated), as an installation that applied 0045 before it
    was split has them."""
    conn = await asyncpg.connect(upgraded_from_0044)
    try:
        await db.migrate(conn)
        upgraded = await _outbox_schema(conn)
    finally:
        await conn.close()
    fresh_conn = await asyncpg.connect(database_url)
    try:
        fresh = await _outbox_schema(fresh_conn)
    finally:
        await fresh_conn.close()
    assert upgraded == fresh
    checks = {name: validated for name, _, validated in upgraded["checks"]}
    assert all(checks[name] for name in _SET_ASIDE_CHECKS), checks


async def _outbox_schema(conn: asyncpg.Connection) -> dict[str, list[tuple[object, ...]]]:
    columns = await conn.fetch(
        "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = 'notifications' ORDER BY column_name")
    checks = await conn.fetch(
        "SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint"
        " WHERE conrelid = 'public.notifications'::regclass ORDER BY conname")
    indexes = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes"
                               " WHERE schemaname = 'public' AND tablename = 'notifications'"
                               " ORDER BY indexname")  # fmt: skip
    return {"columns": [tuple(r) for r in columns], "checks": [tuple(r) for r in checks],
            "indexes": [tuple(r) for r in indexes]}  # fmt: skip
