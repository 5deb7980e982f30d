"""How the API is served: uvicorn's defaults ("auto") must pick its fast event loop and HTTP
parser, which the project installs (pyproject.toml). Without them uvicorn silently falls back
to asyncio + h11, and the API spends ~13 % more CPU per case (docs/performance.md). And no
request waits for a hand-off to FastAPI's thread pool: every dependency and endpoint is
``async def``."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from typing import Any

import asyncpg
import jieba
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from temporalio.client import Client
from uvicorn.config import Config

from api.main import create_app
from jiesu.config import Settings


def _config() -> Config:
    config = Config("api.main:app")  # the defaults `python -m api` (stack, Dockerfile) uses
    config.load()
    return config


def test_http_parser_is_httptools() -> None:
    protocol = _config().http_protocol_class
    assert protocol.__name__ == "HttpToolsProtocol", f"uvicorn falls back to {protocol.__name__}"


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop does not run on Windows")
def test_event_loop_is_uvloop() -> None:
    import uvloop

    factory = _config().get_loop_factory()
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def _routes(app: Any) -> Iterator[APIRoute]:
    for route in app.routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # an included router (FastAPI's wrapper)
            yield from _routes(route.original_router)
        elif hasattr(getattr(route, "app", None), "routes"):  # mounted sub-applications
            yield from _routes(route.app)


def _sync_dependencies(dependant: Dependant) -> Iterator[str]:
    for sub in dependant.dependencies:
        call = sub.call
        fn = call if inspect.isroutine(call) else getattr(call, "__call__", call)  # noqa: B004
        if not inspect.iscoroutinefunction(fn):
            yield getattr(call, "__qualname__", repr(call))
        yield from _sync_dependencies(sub)


def test_no_dependency_or_endpoint_runs_in_the_thread_pool() -> None:
    """FastAPI runs a plain ``def`` dependency or endpoint in its thread pool: a thread hand-off
    per call that costs CPU and latency for nothing when the function does not block."""
    app = create_app()
    routes = list(_routes(app))
    assert len(routes) > 50
    sync = {f"{r.path}: {name}" for r in routes for name in _sync_dependencies(r.dependant)}
    sync |= {f"{r.path}: endpoint" for r in routes if not inspect.iscoroutinefunction(r.endpoint)}
    assert not sync, sorted(sync)


def _solved(dependant: Dependant) -> int:
    """How many dependencies FastAPI solves for a request (sub-dependencies included)."""
    return sum(1 + _solved(sub) for sub in dependant.dependencies)


# The requests of every case (docs/performance.md, "The API's CPU per case"): FastAPI's work
# per dependency is about that of a small endpoint, so these take the app's connections and
# settings as one (api.deps.Services) and authenticate reads the pool from the app.
BUSIEST = {
    ("POST", "/complaints/{case_id}/accept"): 7,
    ("POST", "/complaints/{case_id}/reply"): 7,
    ("POST", "/complaints"): 6,
    ("GET", "/complaints/{case_id}"): 7,
}


def test_the_busiest_endpoints_solve_few_dependencies() -> None:
    app = create_app()
    solved = {
        (method, r.path): _solved(r.dependant)
        for r in _routes(app) for method in r.methods or () if (method, r.path) in BUSIEST
    }  # fmt: skip
    assert solved.keys() == BUSIEST.keys()
    assert {k: v for k, v in solved.items() if v > BUSIEST[k]} == {}


async def test_the_word_dictionary_is_loaded_before_the_api_serves(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    """jieba loads its dictionary on first use; inside a request that load would hold the
    event loop (and every other request) for a second or more."""
    jieba.dt.initialized = False  # as in a fresh API process
    app = create_app(settings, client=client, pool=pool)
    async with app.router.lifespan_context(app):
        assert jieba.dt.initialized
