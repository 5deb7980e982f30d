"""``/docs`` (Swagger UI) and ``/redoc`` served from assets installed with the package.

FastAPI's own pages load their JavaScript and CSS from a CDN: a blank page on an intranet
without Internet access, and third-party code in the browser of whoever reads the docs.
``fastapi-offline`` (pinned in pyproject.toml) ships the Swagger UI and ReDoc bundles and
mounts them under :data:`STATIC_PREFIX`; nothing on those pages comes from another host.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

STATIC_PREFIX = "/docs-assets"


def offline_app(**kwargs: Any) -> FastAPI:
    """A FastAPI app whose /docs and /redoc use only the packaged assets."""
    # validatorUrl null: Swagger UI would otherwise send the spec to validator.swagger.io.
    parameters = {"validatorUrl": None, **kwargs.pop("swagger_ui_parameters", {})}
    return FastAPIOffline(static_url=STATIC_PREFIX, swagger_ui_parameters=parameters, **kwargs)
