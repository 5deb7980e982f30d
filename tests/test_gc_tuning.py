"""The served API and the worker keep their start-up objects out of full garbage collections
(jiesu/gc_tuning.py): a full collection of everything they hold paused their event loop for
25–330 ms (docs/performance.md)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import asyncpg
import pytest
from helpers import OPERATOR, served
from temporalio.client import Client

import api.main
from api.main import create_app
from jiesu.config import Settings
from jiesu.gc_tuning import freeze_startup_objects


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Whatever a test freezes is handed back to the collector afterwards."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_start_up_objects_are_frozen_and_later_ones_are_not(unfrozen: None) -> None:
    early = [[]]  # a container made before the freeze
    assert freeze_startup_objects() > 1000
    later = [[]]
    walked = {id(o) for o in gc.get_objects()}  # what a full collection walks
    assert id(early) not in walked
    assert id(later) in walked


async def test_the_served_app_freezes_once_started(
    settings: Settings, client: Client, pool: asyncpg.Pool, unfrozen: None
) -> None:
    async with served(create_app(settings, client=client, pool=pool)):
        assert gc.get_freeze_count() == 0  # the tests' apps do not
    async with served(create_app(settings, client=client, pool=pool, freeze_gc=True)):
        assert gc.get_freeze_count() > 0


async def test_the_routes_are_built_before_the_freeze(
    settings: Settings, client: Client, pool: asyncpg.Pool, unfrozen: None
) -> None:
    """FastAPI builds an included router's routes at the first request that reaches them:
    the served app builds them at start-up, so they are frozen and not walked by every full
    collection afterwards (tens of thousands of objects otherwise)."""
    async with served(create_app(settings, client=client, pool=pool, freeze_gc=True)) as api:
        gc.collect()
        before = len(gc.get_objects())
        response = await api.get("/api/v1/complaints", headers=OPERATOR)
        assert response.status_code == 200
        gc.collect()
        assert len(gc.get_objects()) - before < 5000


def test_the_app_uvicorn_serves_freezes() -> None:
    assert api.main.app.state.freeze_gc is True
