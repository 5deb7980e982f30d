"""The served API and the worker keep their start-up objects out of full garbage collections
(jiesu/gc_tuning.py): a full collection of everything they hold paused their event loop for
25–330 ms (docs/performance.md)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import asyncpg
import pytest
from temporalio.client import Client

import api.main
from api.main import create_app
from jiesu.config import Settings
from jiesu.gc_tuning import freeze_startup_objects
from tests.helpers import served


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Whatever a test freezes is handed back to the collector afterwards."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_start_up_objects_are_frozen_and_later_ones_are_not(unfrozen: None) -> None:
    assert gc.get_freeze_count() == 0
    frozen = freeze_startup_objects()
    assert frozen > 1000
    later = [[] for _ in range(100)]
    assert gc.get_freeze_count() == frozen  # made since: collected as usual
    assert all(gc.is_tracked(x) for x in later)


async def test_the_served_app_freezes_once_started(
    settings: Settings, client: Client, pool: asyncpg.Pool, unfrozen: None
) -> None:
    async with served(create_app(settings, client=client, pool=pool)):
        assert gc.get_freeze_count() == 0  # the tests' apps do not
    async with served(create_app(settings, client=client, pool=pool, freeze_gc=True)):
        assert gc.get_freeze_count() > 0


def test_the_app_uvicorn_serves_freezes() -> None:
    assert api.main.app.state.freeze_gc is True
