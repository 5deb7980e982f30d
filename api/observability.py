"""The API's own metrics and traces (docs/observability.md).

- **Metrics** (prometheus-client, into the app's own registry): requests by route template,
  method and exact status (``jiesu_api_requests_total``), latency histograms
  (``jiesu_api_request_duration_seconds``). Errors are the 4xx/5xx statuses; a request that
  raised is counted as the 500 it was answered with. Served for Prometheus on
  ``JIESU_API_METRICS_ADDRESS`` (a port of its own: :class:`MetricsListener`).
- **Traces** (OpenTelemetry's FastAPI instrumentation): a server span per request, parent of
  the Temporal client's spans; only when a tracer provider is given (jiesu.telemetry).
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any
from wsgiref.simple_server import WSGIServer

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_fastapi_instrumentator.routing import get_route_name
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jiesu.config import split_address

# Probes and docs are not traffic worth a series each (a probe every few seconds would also
# drown the request rate).
UNMEASURED = re.compile("|".join(["/healthz", "/readyz", "/docs.*", "/redoc.*", "/openapi.json"]))
# Seconds: actions wait up to 5 s for the workflow (then 202), queries time out at 2 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30)
LABELS = ("method", "status", "handler")
UNKNOWN = "none"  # the handler of a path no route matches: not one series per path


class RequestMetrics:
    """Pure ASGI middleware: counts and times every request by route template, method and
    status (``handler`` is the template, e.g. ``/api/v1/complaints/{case_id}/accept``).

    The template is that of the route Starlette matched (``scope["route"]``, set by the
    routing): resolved once per route with prometheus-fastapi-instrumentator's
    ``get_route_name`` (which walks every route of the app, mounts included) and then kept,
    instead of walking the routes again for every request (4.5 % of the API's CPU)."""

    def __init__(self, app: ASGIApp, *, requests: Counter, latency: Histogram) -> None:
        self.app, self.requests, self.latency = app, requests, latency
        # id(route), root_path -> (route, template or None when not measured); the route is
        # kept so that its id is never another's.
        self._templates: dict[tuple[int, str], tuple[object, str | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        as_received = dict(scope)  # routing adds to the scope; the template is resolved on this
        status = 500  # what a request that raised is answered by the outer error handler

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            handler = self._handler(scope, as_received)
            if handler is not None:
                labels = (scope["method"], str(status), handler)
                self.requests.labels(*labels).inc()
                self.latency.labels(*labels).observe(time.perf_counter() - began)

    def _handler(self, scope: Scope, as_received: dict[str, Any]) -> str | None:
        """The request's route template, UNKNOWN for a path no route took, None for one not
        measured (probes, docs)."""
        route = scope.get("route")
        if route is None:  # nothing matched (404, or a redirect to the other trailing slash)
            return None if UNMEASURED.search(scope["path"]) else UNKNOWN
        key = (id(route), scope.get("root_path", ""))
        known = self._templates.get(key)
        if known is None:
            template = get_route_name(HTTPConnection(as_received), should_include_root_path=False)
            template = template or UNKNOWN
            known = (route, None if UNMEASURED.search(template) else template)
            self._templates[key] = known
        return known[1]


def instrument_metrics(app: FastAPI) -> CollectorRegistry:
    """Count and time every request of ``app`` into a registry of its own (several apps in
    one process, as in the tests, do not collide)."""
    registry = CollectorRegistry()
    requests = Counter(
        "jiesu_api_requests_total", "API requests by route template, method and status",
        LABELS, registry=registry,
    )  # fmt: skip
    latency = Histogram(
        "jiesu_api_request_duration_seconds",
        "API request latency by route template, method and status",
        LABELS, buckets=LATENCY_BUCKETS, registry=registry,
    )  # fmt: skip
    app.add_middleware(RequestMetrics, requests=requests, latency=latency)
    return registry


def instrument_tracing(app: FastAPI, provider: TracerProvider) -> None:
    # Imported here: with tracing off the instrumentation is never loaded.
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls="healthz,readyz,docs,redoc,openapi.json"
    )


class MetricsListener:
    """``GET /metrics`` of a registry on a port of its own (prometheus-client's server, in a
    thread); started and stopped with the app."""

    def __init__(self, address: str, registry: CollectorRegistry) -> None:
        self.address, self.registry = address, registry
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        host, port = split_address(self.address)
        self._server, self._thread = start_http_server(port, host, registry=self.registry)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
