"""Fixtures of the browser tests (tests/test_console_browser.py; a plugin of tests/conftest.py).

The console in a real browser: the app served over HTTP by uvicorn (in the session's event
loop, on the session's Temporal and PostgreSQL) and one headless Debian chromium for the whole
session, driven by Playwright (pinned in pyproject.toml; ``playwright install`` downloads
nothing here: the system's browser is used).

The browser tests FAIL when chromium is missing (``make test`` installs it, see
scripts/browser-deps); ``JIESU_SKIP_BROWSER_TESTS=1`` skips them on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
import uvicorn
from helpers import eventually
from playwright.async_api import Browser, BrowserContext, StorageState, async_playwright
from temporalio.client import Client

from api.main import create_app
from jiesu import db
from jiesu.config import Settings
from jiesu.ops.bootstrap import prepare_database

CHROMIUM = os.environ.get("JIESU_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(client: Client, pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[str]:
    """The API process's app (console included) on a real port, its address."""
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings, client=client, pool=pool),
        host="127.0.0.1", port=port, log_level="warning", lifespan="on",
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: asyncio.sleep(0, server.started), within=30)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="session")
async def console_url(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> AsyncIterator[str]:
    """The API process's app (console included) on a real port."""
    async with serving(client, pool, settings) as url:
        yield url


@pytest.fixture
async def fresh_console_url(client: Client, settings: Settings) -> AsyncIterator[str]:
    """The console of a new installation: a database of its own on the session's server,
    migrated, with the demo county and its people (as `make run` leaves it) and no case yet."""
    main, sep, query = settings.database_url.partition("?")
    dsn = f"{main.rpartition('/')[0]}/jiesu_fresh_{uuid.uuid4().hex[:8]}{sep}{query}"
    await prepare_database(dsn, demo=True)
    pool = await db.create_pool(dsn, max_size=4)
    try:
        async with serving(client, pool, settings.model_copy(update={"database_url": dsn})) as url:
            yield url
    finally:
        await pool.close()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if os.environ.get("JIESU_SKIP_BROWSER_TESTS") == "1":
        pytest.skip("JIESU_SKIP_BROWSER_TESTS=1: the browser tests are skipped on purpose")
    if not shutil.which(CHROMIUM):
        pytest.fail(
            f"no chromium at {CHROMIUM}: `make test` installs it (scripts/browser-deps); "
            "set JIESU_SKIP_BROWSER_TESTS=1 to skip the browser tests on purpose"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        await launched.close()


@pytest.fixture
async def browsers(browser: Browser) -> AsyncIterator[Callable[..., Awaitable[BrowserContext]]]:
    """Fresh browser profiles (own cookies: one per person at the console), in the hotline's
    locale and time zone; ``storage_state``: the cookies a profile starts with (none unless
    given)."""
    opened: list[BrowserContext] = []

    async def open_profile(storage_state: StorageState | None = None) -> BrowserContext:
        ctx = await browser.new_context(
            locale="zh-CN", timezone_id="Asia/Shanghai", viewport={"width": 1366, "height": 900},
            storage_state=storage_state,
        )  # fmt: skip
        ctx.set_default_timeout(20_000)
        opened.append(ctx)
        return ctx

    yield open_profile
    for ctx in opened:
        await ctx.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the screens are saved: docs/screenshots with JIESU_SCREENSHOTS=1 (to refresh the
    docs' images), else a throwaway folder (the tests still take them)."""
    if os.environ.get("JIESU_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS
    return tmp_path
