"""How the API is served: uvicorn's defaults ("auto") must pick its fast event loop and HTTP
parser, which the project installs (pyproject.toml). Without them uvicorn silently falls back
to asyncio + h11, and the API spends ~13 % more CPU per case (docs/performance.md)."""

from __future__ import annotations

import sys

import pytest
from uvicorn.config import Config


def _config() -> Config:
    config = Config("api.main:app")  # the defaults `uvicorn api.main:app` (stack, Dockerfile) uses
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
