"""The API's own metrics and traces (docs/observability.md).

- **Metrics** (prometheus-fastapi-instrumentator, into the app's own registry): requests by
  route template, method and exact status (``jiesu_api_requests_total``), latency histograms
  (``jiesu_api_request_duration_seconds``). Errors are the 4xx/5xx
  statuses; a request that raised is counted as the 500 it was answered with. Served for
  Prometheus on ``JIESU_API_METRICS_ADDRESS`` (a port of its own: :class:`MetricsListener`).
- **Traces** (OpenTelemetry's FastAPI instrumentation): a server span per request, parent of
  the Temporal client's spans; only when a tracer provider is given (jiesu.telemetry).
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_fastapi_instrumentator import Instrumentator, metrics

from jiesu.config import split_address

# Probes and docs are not traffic worth a series each (a probe every few seconds would also
# drown the request rate).
UNMEASURED = ["/healthz", "/readyz", "/docs.*", "/redoc.*", "/openapi.json"]
# Seconds: actions wait up to 5 s for the workflow (then 202), queries time out at 2 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30)


def instrument_metrics(app: FastAPI) -> CollectorRegistry:
    """Count and time every request of ``app`` into a registry of its own (several apps in
    one process, as in the tests, do not collide)."""
    registry = CollectorRegistry()
    labels = {"should_include_handler": True, "should_include_method": True}
    Instrumentator(
        should_group_status_codes=False,  # 404 and 409 mean different things here
        should_ignore_untemplated=False,
        should_group_untemplated=True,  # unknown paths are handler "none", not one series each
        # Not its in-progress gauge: 8.1.0 registers that one in the global registry whatever
        # registry it is given, so a second app in one process fails.
        should_instrument_requests_inprogress=False,
        excluded_handlers=UNMEASURED,
        registry=registry,
    ).add(
        metrics.requests(
            metric_name="jiesu_api_requests_total",
            metric_doc="API requests by route template, method and status",
            should_include_status=True, registry=registry, **labels,
        ),
        metrics.latency(
            metric_name="jiesu_api_request_duration_seconds",
            metric_doc="API request latency by route template, method and status",
            should_include_status=True, buckets=LATENCY_BUCKETS, registry=registry, **labels,
        ),
    ).instrument(app)  # fmt: skip
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
