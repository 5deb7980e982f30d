"""The worker and the API check the database's schema when they start (jiesu.db.check_schema):
a database behind their code (its new migrations not applied: the new version started before
its `jiesu bootstrap`) is refused in one line naming the migrations pending; a database ahead
of their code (a newer version's bootstrap ran, this code is the older) is served, with a
warning naming the migrations this code does not know. docs/operations.md, Upgrading."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from helpers import (
    database_migrated_up_to,
    drop_database,
    eventually,
    served,
    sibling_database,
)
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from jiesu import db
from jiesu.config import Settings
from jiesu.health import checks
from jiesu.ops.bootstrap import prepare_database

LAST_APPLIED = "0045"  # the database `behind` stops here: 0046 and 0047 are pending
PENDING = [v for v, _ in db._migration_files() if v[:4] > LAST_APPLIED]
NEWER = "9999_from_a_newer_version"  # what `ahead` has that no code of this version knows
EXIT_WITHIN = 60.0  # seconds for a refusing process to end (an interpreter's start included)


@pytest.fixture(scope="module")
async def behind(database_url: str) -> AsyncIterator[str]:
    """A database of its own migrated up to 0045, as an older version's bootstrap left it."""
    name = f"jiesu_behind_{uuid.uuid4().hex[:8]}"
    async with database_migrated_up_to(database_url, name, LAST_APPLIED) as dsn:
        yield dsn


@pytest.fixture(scope="module")
async def ahead(database_url: str) -> AsyncIterator[str]:
    """A database of its own migrated by this version, and then by a newer one (one more row
    in schema_migrations: what a newer version's bootstrap adds)."""
    name = f"jiesu_ahead_{uuid.uuid4().hex[:8]}"
    dsn = sibling_database(database_url, name)
    await prepare_database(dsn, demo=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO schema_migrations VALUES ($1)", NEWER)
    finally:
        await conn.close()
    yield dsn
    await drop_database(database_url, name)


def _variables(env: WorkflowEnvironment, settings: Settings, database: str) -> dict[str, str]:
    """The session's Temporal (the old code got as far as polling it), ``database``, a task
    queue of the test's own."""
    return dict(
        os.environ,
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        TEMPORAL_NAMESPACE=env.client.namespace,
        DATABASE_URL=database,
        JIESU_TASK_QUEUE=f"{settings.task_queue}-schema-{uuid.uuid4().hex[:6]}",
        JIESU_WORKER_METRICS_ADDRESS="",
        JIESU_API_METRICS_ADDRESS="",
        PYTHONUNBUFFERED="1",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(command: list[str], variables: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, env=variables, stdout=out, stderr=subprocess.STDOUT)


async def _run_until_it_ends(command: list[str], variables: dict[str, str],
                             log: Path) -> tuple[int | None, str]:  # fmt: skip
    """Run ``command`` until it ends by itself (EXIT_WITHIN): its exit code (None: it was still
    running, then killed) and what it printed."""
    proc = _spawn(command, variables, log)
    try:
        code: int | None = await asyncio.to_thread(proc.wait, EXIT_WITHIN)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, await asyncio.to_thread(log.read_text, errors="replace")


def _said_once(text: str) -> str:
    """The one line that names the pending migrations and says what to do."""
    [line] = [line for line in text.splitlines() if "pending" in line]
    assert ", ".join(PENDING) in line and "`jiesu bootstrap`" in line, line
    return line


async def test_the_worker_refuses_a_database_behind_its_code(
    env: WorkflowEnvironment, settings: Settings, behind: str, tmp_path: Path
) -> None:
    """`python -m worker` on a database whose last migrations are not applied: before, it
    polled its task queue and failed later, in the middle of a projection (a column missing, a
    local activity retried forever). Now it ends at once, exit 1, one line naming the pending
    migrations and `jiesu bootstrap`, no traceback, its task queue never polled."""
    code, text = await _run_until_it_ends(
        [sys.executable, "-m", "worker"], _variables(env, settings, behind), tmp_path / "w.log"
    )
    assert code == 1, text
    _said_once(text)
    assert "Traceback" not in text and "polling task queue" not in text, text


async def test_the_api_refuses_a_database_behind_its_code(
    env: WorkflowEnvironment, settings: Settings, behind: str, tmp_path: Path
) -> None:
    """`python -m api` (the stack, the Dockerfile, docker-compose) on a database behind its
    code: before, it served (and answered 500 on a page reading a missing column). Now its
    start-up fails: uvicorn's exit code 3, the refusal in one line instead of a traceback."""
    port = _free_port()
    code, text = await _run_until_it_ends(
        [sys.executable, "-m", "api", "--host", "127.0.0.1", "--port", str(port)],
        _variables(env, settings, behind), tmp_path / "api.log",
    )  # fmt: skip
    assert code == 3, text
    _said_once(text)
    assert "Traceback" not in text and "Application startup complete" not in text, text


async def test_the_mail_listener_refuses_a_database_behind_its_code(
    env: WorkflowEnvironment, settings: Settings, behind: str, tmp_path: Path
) -> None:
    """`python -m jiesu.channels.mail_listener` files mails as cases: the same refusal."""
    variables = _variables(env, settings, behind)
    variables.update(JIESU_MAIL_HOST="127.0.0.1", JIESU_MAIL_PORT=str(_free_port()))
    code, text = await _run_until_it_ends(
        [sys.executable, "-m", "jiesu.channels.mail_listener"], variables, tmp_path / "m.log"
    )
    assert code == 1, text
    assert "the mail listener will not start" in _said_once(text), text
    assert "Traceback" not in text and "SMTP listener on" not in text, text


async def test_the_api_app_refuses_to_start_on_a_database_behind_its_code(
    client: Client, settings: Settings, behind: str
) -> None:
    """The app's lifespan itself (whatever serves it: `uvicorn api.main:app` too) refuses,
    with the pool it is given as with its own."""
    pool = await db.create_pool(behind, max_size=2)
    try:
        with pytest.raises(db.SchemaNotReady) as refused:
            async with served(create_app(settings, client=client, pool=pool)):
                pass
    finally:
        await pool.close()
    assert refused.value.pending == tuple(PENDING)
    _said_once(str(refused.value))


async def test_a_database_never_bootstrapped_is_refused_too(
    database_url: str,
) -> None:
    """No schema_migrations at all (a new database, bootstrap never run): every migration is
    pending."""
    name = f"jiesu_empty_{uuid.uuid4().hex[:8]}"
    dsn = sibling_database(database_url, name)
    await db.ensure_database(dsn)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            state = await db.schema_state(conn)
            every = len(db.migration_versions())
            with pytest.raises(db.SchemaNotReady, match=f"lacks all {every} migrations"):
                await db.check_schema(conn, "worker")
        finally:
            await conn.close()
    finally:
        await drop_database(database_url, name)
    assert state.pending == tuple(v for v, _ in db._migration_files()) and not state.applied


async def test_the_api_starts_on_a_database_ahead_of_its_code_and_says_so(
    client: Client, settings: Settings, ahead: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An older API during a rolling upgrade, the newer version's bootstrap already run:
    migrations only add (docs/operations.md), so it serves, warning which migrations it does
    not know."""
    pool = await db.create_pool(ahead, max_size=2)
    try:
        with caplog.at_level(logging.WARNING, logger="jiesu.db"):
            async with served(create_app(settings, client=client, pool=pool)) as http:
                assert (await http.get("/healthz")).status_code == 200
    finally:
        await pool.close()
    [warning] = [r.getMessage() for r in caplog.records if NEWER in r.getMessage()]
    assert "newer" in warning and "API" in warning, warning


async def test_the_worker_starts_on_a_database_ahead_of_its_code_and_says_so(
    env: WorkflowEnvironment, settings: Settings, ahead: str, tmp_path: Path
) -> None:
    """An older worker left running, or started, beside a newer schema keeps working: it
    polls its task queue, after one warning naming the migrations it does not know."""
    log = tmp_path / "w.log"
    proc = _spawn([sys.executable, "-m", "worker"], _variables(env, settings, ahead), log)

    async def started_or_ended() -> bool:
        text = await asyncio.to_thread(log.read_text, errors="replace")
        return "polling task queue" in text or proc.poll() is not None

    try:
        await eventually(started_or_ended, within=EXIT_WITHIN)
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 30)
    text = log.read_text(errors="replace")
    assert "polling task queue" in text, text
    [warning] = [line for line in text.splitlines() if NEWER in line]
    assert "WARNING" in warning and "newer" in warning, warning


async def test_the_doctor_reports_the_schema(
    client: Client, pool: asyncpg.Pool, behind: str
) -> None:
    """`jiesu doctor` (and GET /api/v1/admin/doctor): the session's database is up to date, no
    finding; a database behind the code has one ``schema_pending`` finding per migration."""
    current = await checks.examine(client, pool, checks.DoctorOptions(replay=False,
                                                                      limit=1), workflows=[])
    assert current.schema_state is not None and current.schema_state.pending == []
    assert current.counts[checks.SCHEMA_PENDING] == 0
    assert ": schema up to date (" in checks.format_report(current)  # in the verdict line
    old = await db.create_pool(behind, max_size=2)
    try:
        report = await checks.examine(client, old, checks.DoctorOptions(replay=False, limit=1),
                                      workflows=[])  # fmt: skip
    finally:
        await old.close()
    found = [f.subject for f in report.findings if f.kind == checks.SCHEMA_PENDING]
    assert found == PENDING and report.schema_state is not None
    assert report.schema_state.pending == PENDING
    assert checks.exit_code(report) == 1
    said = checks.format_report(report)
    assert f"schema behind this code, {len(PENDING)} migrations pending" in said, said
