"""Migrations on an outbox in use (jiesu.db.migrate applies each file in its own transaction):
what an upgrade holds the outbox's writes for, and the schema it leaves."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from helpers import database_migrated_up_to, eventually

from jiesu import db
from jiesu.config import get_settings
from jiesu.ops import cli
from jiesu.readmodel import projection

_SET_ASIDE_CHECKS = ("notifications_status_check", "notifications_set_aside_recorded")


@pytest.fixture
async def upgraded_from_0044(database_url: str) -> AsyncIterator[str]:
    """A database of its own on the session's server, migrated up to 0044, with 5,000 sent
    notices in its outbox; dropped after the test."""
    name = f"jiesu_upgrade_{uuid.uuid4().hex[:8]}"
    async with database_migrated_up_to(database_url, name, "0044") as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "INSERT INTO notifications (key, case_id, event_seq, event_kind, recipient_kind,"
                " recipient_id, channel, subject, body, status) SELECT 'old:' || g, 'JSOLD' || g,"
                " 1, 'routed', 'department', 'water', 'email', 's', 'b', 'sent'"
                " FROM generate_series(1, 5000) g")
        finally:
            await conn.close()
        yield dsn


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


# How long the test's writer waits for its lock before giving up: far more than a migration
# waits now, and the test cannot hang on the old code, where the writer waited as long as the
# reader held its transaction.
_WRITER_PATIENCE = 15.0


async def _writes_a_notice(writer: asyncpg.Connection, key: str) -> float:
    """Write a notice as an intake's projection does; return the seconds it took."""
    started = time.monotonic()
    await writer.execute(projection._INSERT_NOTICE, key, "JSNEW", 1, "routed", "department",
                         "water", "email", "s", "b")  # fmt: skip
    return time.monotonic() - started


async def _waiting_for(watcher: asyncpg.Connection, table: str) -> bool:
    """Whether some session waits for a lock on ``table``."""
    waiting = await watcher.fetchval(
        "SELECT count(*) FROM pg_locks WHERE relation = $1::regclass AND NOT granted", table)
    return bool(waiting)


async def _applied(conn: asyncpg.Connection) -> set[str]:
    return {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}


async def test_a_migration_waiting_behind_a_long_reader_does_not_stop_the_writers(
    upgraded_from_0044: str,
) -> None:
    """An auditor's long export holds a read of the outbox open while an upgrade starts:
    0045's ALTER TABLE asks for the outbox's ACCESS EXCLUSIVE lock, waits behind the reader,
    and every writer of the outbox (each intake's notice, the dispatcher) queued behind the
    waiting ALTER for as long as the reader ran. Now the migration waits at most
    MIGRATION_LOCK_TIMEOUT for a lock, gives way (its transaction rolled back, nothing of it
    applied), the writers go on, and it is tried again after a pause: once the reader ends,
    it applies."""
    reader = await asyncpg.connect(upgraded_from_0044)
    conn = await asyncpg.connect(upgraded_from_0044)
    writer = await asyncpg.connect(upgraded_from_0044)
    watcher = await asyncpg.connect(upgraded_from_0044)
    upgrade = None
    try:
        await writer.execute(f"SET lock_timeout = '{_WRITER_PATIENCE}s'")
        export = reader.transaction()
        await export.start()
        await reader.fetchval("SELECT count(*) FROM notifications")
        upgrade = asyncio.create_task(db.migrate(conn))
        await eventually(lambda: _waiting_for(watcher, "notifications"))
        try:
            waited = await _writes_a_notice(writer, "new:during-upgrade")
        except asyncpg.LockNotAvailableError:
            pytest.fail(f"the writer waited {_WRITER_PATIENCE} s behind the migration and gave up")
        assert waited < db.MIGRATION_LOCK_TIMEOUT + 1.0, waited
        assert not upgrade.done()
        assert not any(v.startswith("0045") for v in await _applied(watcher))  # nothing of it
        await export.commit()
        applied = await asyncio.wait_for(upgrade, timeout=60)
        assert [v[:4] for v in applied][:3] == ["0045", "0046", "0047"]  # and any later
        assert {v[:4] for v in await _applied(watcher)} >= {"0045", "0046", "0047"}
    finally:
        if upgrade is not None and not upgrade.done():
            upgrade.cancel()
        for c in (reader, writer, watcher, conn):
            await c.close()


async def test_a_migration_blocked_in_every_try_names_the_lock_and_who_holds_it(
    upgraded_from_0044: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """A reader that does not end: each try of 0045 gives way after the lock timeout, logged
    with the lock it waited for and the session holding it (pg_locks, pg_stat_activity, read
    by the observer connection bootstrap gives migrate); after the last try migrate stops with
    MigrationBlocked saying the same and what to do. Nothing of 0045 was applied, no later
    migration ran; once the reader ends, the next run applies them all."""
    reader = await asyncpg.connect(upgraded_from_0044,
                                   server_settings={"application_name": "auditor export"})
    conn = await asyncpg.connect(upgraded_from_0044)
    observer = await asyncpg.connect(upgraded_from_0044)
    try:
        export = reader.transaction()
        await export.start()
        await reader.fetchval("SELECT count(*) FROM notifications")
        patience = db.LockPatience(timeout=0.3, tries=3, first_pause=0.1)
        with caplog.at_level(logging.WARNING, logger="jiesu.db"):
            with pytest.raises(db.MigrationBlocked) as blocked:
                await db.migrate(conn, observer=observer, patience=patience)
        lock = "AccessExclusiveLock on table notifications"
        holder = f"{lock}, held by pid {reader.get_server_pid()}"
        message = str(blocked.value)
        assert message.startswith("migration 0045_notifications_set_aside not applied"), message
        assert holder in message and "auditor export" in message, message
        assert "jiesu bootstrap" in message, message
        tries = [r.getMessage() for r in caplog.records if "gave way" in r.getMessage()]
        assert len(tries) == 3, tries
        assert all(holder in t and "0045_notifications_set_aside" in t for t in tries), tries
        assert max(await _applied(observer)) < "0045"
        assert not await observer.fetchval(  # 0045's first statement adds it
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_name = 'notifications' AND column_name = 'set_aside_reason'")
        await export.commit()
        applied = await db.migrate(conn, observer=observer)
        assert [v[:4] for v in applied][:3] == ["0045", "0046", "0047"]  # and any later
    finally:
        for c in (reader, observer, conn):
            await c.close()


def test_every_migration_is_one_transaction() -> None:
    """migrate runs each file in a transaction of its own and tries it again when it gives
    way on a lock: safe only if nothing in the file commits by itself. No file ends or opens
    a transaction (the check migrate makes before it applies anything), and none uses a
    statement PostgreSQL refuses in a transaction (CONCURRENTLY, VACUUM): 0033 and 0041 say
    why their indexes are built without CONCURRENTLY."""
    for version, sql in db._migration_files():
        db._refuse_transaction_control(version, sql)
        code = db._NOT_STATEMENTS.sub(" ", sql).upper()
        assert "CONCURRENTLY" not in code and "VACUUM" not in code, version


async def test_a_migration_that_is_not_one_transaction_is_refused_and_not_tried_again(
    upgraded_from_0044: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """A file that commits by itself is refused before any pending migration runs (a retry
    would run its committed part twice); a statement PostgreSQL refuses in a transaction
    (CREATE INDEX CONCURRENTLY) fails at once, named, rolled back, not tried again."""
    conn = await asyncpg.connect(upgraded_from_0044)
    files = db._migration_files()
    try:
        monkeypatch.setattr(db, "_migration_files", lambda: [*files, (
            "0999_commits", "CREATE TABLE m_first (x int);\nCOMMIT;\nCREATE TABLE m_then (x int);"
        )])  # fmt: skip
        with pytest.raises(db.MigrationNotOneTransaction, match=r"0999_commits.*'COMMIT'"):
            await db.migrate(conn)
        assert max(await _applied(conn)) < "0045"  # refused before 0045 ran
        assert await conn.fetchval("SELECT to_regclass('m_first')") is None

        monkeypatch.setattr(db, "_migration_files", lambda: [*files, (
            "0999_concurrently", "CREATE INDEX CONCURRENTLY m_index ON notifications (key);"
        )])  # fmt: skip
        with caplog.at_level(logging.WARNING, logger="jiesu.db"):
            with pytest.raises(asyncpg.ActiveSQLTransactionError) as refused:
                await db.migrate(conn)
        assert "in migration 0999_concurrently (rolled back; not tried again)" in (
            refused.value.__notes__)
        assert not [r for r in caplog.records if "gave way" in r.getMessage()]
        assert {v[:4] for v in await _applied(conn)} >= {"0045", "0046", "0047"}
        assert "0999_concurrently" not in await _applied(conn)
        assert await conn.fetchval("SELECT to_regclass('m_index')") is None
    finally:
        await conn.close()


async def test_bootstrap_blocked_by_a_reader_says_who_and_what_to_do_in_one_line(
    upgraded_from_0044: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`jiesu bootstrap` (docker-compose's bootstrap service, `make run`) whose migration gave
    way in every try: a warning per try naming the lock and its holder (bootstrap gives migrate
    its observer connection), then one error line saying what to do, exit 1, no traceback,
    and Temporal never contacted."""
    reader = await asyncpg.connect(upgraded_from_0044,
                                   server_settings={"application_name": "auditor export"})
    codes: list[int] = []
    try:
        export = reader.transaction()
        await export.start()
        await reader.fetchval("SELECT count(*) FROM notifications")
        monkeypatch.setitem(db.migrate.__kwdefaults__, "patience",  # 30 s by default
                            db.LockPatience(timeout=0.3, tries=2, first_pause=0.1))  # fmt: skip
        monkeypatch.setattr(cli, "hard_exit", codes.append)
        monkeypatch.setenv("DATABASE_URL", upgraded_from_0044)
        monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
        get_settings.cache_clear()
        try:
            with caplog.at_level(logging.WARNING, logger="jiesu.db"):
                await asyncio.to_thread(cli.main, ["bootstrap", "--no-demo"])
        finally:
            monkeypatch.undo()
            get_settings.cache_clear()
    finally:
        await reader.close()
    err = capsys.readouterr().err
    assert codes == [1], (codes, err)
    assert "Traceback" not in err, err
    [last] = err.strip().splitlines()
    holder = f"AccessExclusiveLock on table notifications, held by pid {reader.get_server_pid()}"
    tries = [r.getMessage() for r in caplog.records if "gave way" in r.getMessage()]
    assert len(tries) == 2 and all(holder in t for t in tries), tries
    assert last.startswith("error: migration 0045_notifications_set_aside not applied"), last
    assert holder in last and "run `jiesu bootstrap` again" in last, last
