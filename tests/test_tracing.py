"""OpenTelemetry tracing from the HTTP request through the workflow to its activities, with the
SDK's own TracingInterceptor and FastAPI's instrumentation; nothing installed when no OTLP
endpoint is configured; and the interceptor changes nothing for replay. Real Temporal and
PostgreSQL; the span exporter is an in-memory one (the outside world)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from helpers import (
    OPERATOR,
    complaint,
    current_histories,
    department,
    eventually,
    handle_of,
    sandboxed_replayer,
    served,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from temporalio.client import Client, WorkflowHistory

from api.main import create_app
from jiesu import telemetry
from jiesu.config import Settings
from worker import build_worker

COMPLAINTS = "/api/v1/complaints"


def ancestors(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[str]:
    """The names of the spans above ``span``, nearest first."""
    by_id = {s.context.span_id: s for s in spans}
    names = []
    parent = span.parent
    while parent is not None and parent.span_id in by_id:
        above = by_id[parent.span_id]
        names.append(above.name)
        parent = above.parent
    return names


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_a_trace_links_the_request_to_the_workflow_and_its_activities(
    settings: Settings, client: Client, pool: asyncpg.Pool
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # The API's and the worker's client, as jiesu.telemetry makes them with tracing on.
    interceptors = telemetry.temporal_interceptors(provider)
    traced = Client(**{**client.config(), "interceptors": interceptors})
    queue = settings.model_copy(update={"task_queue": f"traced-{uuid.uuid4().hex[:8]}"})
    case_id = ""
    try:
        async with (
            build_worker(traced, pool, queue),
            served(create_app(queue, client=traced, pool=pool, tracer_provider=provider)) as api,
        ):
            created = await api.post(COMPLAINTS, json=complaint(), headers=OPERATOR)
            assert created.status_code == 201, created.text
            case_id = created.json()["case_id"]
            routed = await eventually(lambda: _department(api, case_id), within=30)
            accepted = await api.post(f"{COMPLAINTS}/{case_id}/accept", headers=department(routed))
            assert accepted.status_code == 200, accepted.text
            await eventually(lambda: _projected(pool, case_id, "handling"), within=30)
            history = await handle_of(traced, case_id).fetch_history()
    finally:
        if case_id:
            await handle_of(client, case_id).terminate("test finished")
    spans = exporter.get_finished_spans()
    names = sorted({s.name for s in spans})

    # intake: POST → start the workflow → its activities (planning/routing, projection; local
    # or not, each a StartActivity span in the workflow and a RunActivity span in the worker)
    (post,) = [s for s in spans if s.kind is SpanKind.SERVER and s.name == f"POST {COMPLAINTS}"]
    ran = [s for s in spans
           if s.name.startswith("RunActivity:") and s.context.trace_id == post.context.trace_id]
    assert len({s.name for s in ran}) >= 2, names
    for activity_span in ran:
        started = activity_span.name.replace("RunActivity:", "StartActivity:")
        chain = ancestors(activity_span, spans)
        assert chain == [started, "StartWorkflow:ComplaintWorkflow", post.name], chain
    # the workflow's own run (the interceptor's workflow spans are instants beside its
    # commands, children of the start)
    (run,) = [s for s in named(spans, "RunWorkflow:ComplaintWorkflow")
              if s.context.trace_id == post.context.trace_id]  # fmt: skip
    assert ancestors(run, spans) == ["StartWorkflow:ComplaintWorkflow", post.name]

    # an action: POST …/accept → signal (same trace); the workflow's handling of it belongs to
    # the workflow's trace and links to the signal (the SDK's interceptor: a signal joins a
    # running workflow, it does not start a new one)
    (accept,) = [s for s in spans if s.kind is SpanKind.SERVER and s.name.endswith("/accept")]
    (signal,) = named(spans, "SignalWorkflow:accept")
    assert ancestors(signal, spans) == [accept.name]
    (handled,) = named(spans, "HandleSignal:accept")
    assert [link.context.span_id for link in handled.links] == [signal.context.span_id]
    assert handled.context.trace_id == post.context.trace_id

    # a history recorded with tracing on replays without the interceptor, and the other way
    plain = sandboxed_replayer()
    assert (await plain.replay_workflow(history, raise_on_replay_failure=False)).replay_failure \
        is None  # fmt: skip


async def _department(api: httpx.AsyncClient, case_id: str) -> str | None:
    response = await api.get(f"{COMPLAINTS}/{case_id}", headers=OPERATOR)
    body = response.json()
    return body["assignment"]["department_id"] if body.get("status") == "assigned" else None


async def _projected(pool: asyncpg.Pool, case_id: str, status: str) -> bool:
    return await pool.fetchval("SELECT status FROM cases WHERE case_id = $1", case_id) == status


# Today's paths: the interceptor does not depend on the code version that recorded a history,
# and test_replay.py replays every older one (~0.1 s each) without it.
RECORDED = current_histories()


@pytest.fixture(scope="module")
async def replayed_with_tracing(request: pytest.FixtureRequest) -> dict[Path, str | None]:
    """The selected recorded histories replayed by one sandboxed replay worker with the tracing
    interceptor (``workflow_replay_iterator``, as ``helpers.replays_checked``: a replayer per
    history cost ~4x the CPU): each history's failure, None where it replays. Each test
    asserts its own history's outcome."""
    paths = [item.callspec.params["path"] for item in request.session.items
             if item.module is request.module and hasattr(item, "callspec")]  # fmt: skip
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    replayer = sandboxed_replayer(interceptors=telemetry.temporal_interceptors(provider))
    by_id = {path.stem: path for path in paths}

    async def stream() -> AsyncIterator[WorkflowHistory]:
        for path in paths:
            yield WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))

    outcome: dict[Path, str | None] = {}
    async with replayer.workflow_replay_iterator(stream()) as results:
        async for result in results:
            failure = result.replay_failure
            outcome[by_id[result.history.workflow_id]] = None if failure is None else str(failure)
    return outcome


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
async def test_recorded_histories_replay_with_the_tracing_interceptor(
    path: Path, replayed_with_tracing: dict[Path, str | None]
) -> None:
    """A worker with tracing on replays the cases recorded without it (the interceptor adds
    headers and spans only, never commands)."""
    failure = replayed_with_tracing[path]
    assert failure is None, f"{path.name}: {failure}"


def test_tracing_is_off_without_an_otlp_endpoint() -> None:
    assert not telemetry.tracing_configured({})
    assert not telemetry.tracing_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": " "})
    assert telemetry.tracing_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318"})
    assert telemetry.tracing_configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://o:4318"})
    assert telemetry.temporal_interceptors(None) == []


def test_an_app_without_tracing_has_no_tracing_middleware(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    for name in telemetry.OTLP_ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    plain = create_app(settings)
    traced = create_app(settings, tracer_provider=TracerProvider())
    assert "OpenTelemetryMiddleware" not in _middleware(plain)
    assert "OpenTelemetryMiddleware" in _middleware(traced)


def _middleware(app: FastAPI) -> list[str]:
    """The classes of the app's middleware stack, outermost first."""
    names, layer = [], app.build_middleware_stack()
    while layer is not None and len(names) < 50:
        names.append(type(layer).__name__)
        layer = getattr(layer, "app", None)
    return names


def test_the_otlp_provider_names_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    provider = telemetry.otlp_tracer_provider("jiesu-api")
    try:
        assert provider.resource.attributes["service.name"] == "jiesu-api"
    finally:
        provider.shutdown()
