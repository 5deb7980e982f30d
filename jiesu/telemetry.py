"""Telemetry of the processes (docs/observability.md): OpenTelemetry traces and the Temporal
SDK's own Prometheus endpoint.

- **Traces** are exported over OTLP (HTTP/protobuf) only when ``OTEL_EXPORTER_OTLP_ENDPOINT``
  (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set — the standard variables, read by the
  exporter itself together with ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES`` and
  ``OTEL_EXPORTER_OTLP_HEADERS``. Unset, nothing is installed at all: no tracer provider, no
  interceptor, no middleware, so tracing off costs nothing.
- The Temporal client carries the SDK's ``TracingInterceptor`` when tracing is on: the span of
  an HTTP request is the parent of the workflow's start or signal, the workflow's spans and its
  activities' (the trace context travels in Temporal headers, which replay ignores).
- **SDK metrics**: :func:`temporal_runtime` gives a runtime whose Prometheus endpoint (served by
  the SDK's core on ``address``) carries the SDK's worker metrics and the gauges and histograms
  made with its ``metric_meter`` (jiesu.health.gauges).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def tracing_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether an OTLP endpoint is configured (the one switch for tracing)."""
    return any(environ.get(name, "").strip() for name in OTLP_ENDPOINT_VARIABLES)


def otlp_tracer_provider(service: str) -> TracerProvider:
    """A provider that batches spans to the configured OTLP endpoint (read from the
    environment by the exporter). ``OTEL_SERVICE_NAME`` wins over ``service``."""
    # Imported here: the exporter (and its HTTP stack) is loaded only when tracing is on.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def start_tracing(service: str) -> TracerProvider | None:
    """The process's tracer provider when tracing is configured (made global, so libraries
    find it), else None and nothing installed."""
    if not tracing_configured():
        return None
    provider = otlp_tracer_provider(service)
    trace.set_tracer_provider(provider)
    return provider


def temporal_interceptors(provider: TracerProvider | None) -> list[TracingInterceptor]:
    """The Temporal client's interceptors: the SDK's tracing one when tracing is on (a worker
    made with that client uses it too), none otherwise."""
    if provider is None:
        return []
    return [TracingInterceptor(provider.get_tracer("jiesu.temporal"))]


def temporal_runtime(
    metrics_address: str, buckets: Mapping[str, Sequence[float]] | None = None
) -> Runtime | None:
    """A runtime serving the SDK's metrics for Prometheus on ``metrics_address`` (host:port),
    durations in seconds, ``buckets`` for our own histograms; None (the SDK's default
    runtime, no endpoint) when the address is empty."""
    if not metrics_address:
        return None
    prometheus = PrometheusConfig(
        bind_address=metrics_address, counters_total_suffix=True, unit_suffix=True,
        durations_as_seconds=True, histogram_bucket_overrides=buckets,
    )  # fmt: skip
    return Runtime(telemetry=TelemetryConfig(metrics=prometheus))
