"""The public report form (我要反映): one static page over the self-service endpoints
(api/routers/self_service.py), shipped with the package."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def html() -> str:
    return (resources.files("jiesu.channels") / "report_form.html").read_text(encoding="utf-8")
