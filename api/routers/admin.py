"""Operations: the doctor's report as JSON (``GET /api/v1/admin/doctor``) and as Prometheus
gauges (``GET /metrics``). Admins only: the report names cases and recipients.

``/metrics`` answers from a report at most ``METRICS_MAX_AGE`` old, so that a scrape every
15 s does not replay every open case's history each time; one examination runs at a time.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from api.deps import Admin, Pool, Temporal
from api.errors import ErrorResponse
from jiesu.health import checks as doctor
from workflows import ALL_WORKFLOWS

router = APIRouter(tags=["admin"])

METRICS_MAX_AGE = 60.0  # seconds

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No or unknown API key"},
    403: {"model": ErrorResponse, "description": "Admins only"},
    422: {"model": ErrorResponse, "description": "Invalid input"},
}
_DEFAULTS = doctor.DoctorOptions()
_ACTIVITY_AFTER = _DEFAULTS.activity_after.total_seconds()
_READ_MODEL_LAG = _DEFAULTS.read_model_lag.total_seconds()
_OVERDUE_AFTER = _DEFAULTS.notification_overdue_after.total_seconds()
_PENDING_AFTER = _DEFAULTS.intake_pending_after.total_seconds()
Seconds = Annotated[
    float, Query(ge=0, le=doctor.MAX_THRESHOLD.total_seconds(), description="seconds")
]


@router.get(
    "/api/v1/admin/doctor",
    response_model=doctor.DoctorReport,
    responses=_ERRORS,
    summary="Examine the system: migrations not applied, wedged cases, retrying activities, "
    "stale read models, overdue and given-up notices, citizens nobody could tell, reports "
    "left pending, large histories, histories that do not replay",
    description="The report of `jiesu doctor --json`. Its `counts` name every kind of finding, "
    "0 included: " + ", ".join(f"`{kind}`" for kind in doctor.KINDS) + ". What each means and "
    "how to repair it: docs/operations.md (the doctor's findings table and runbook).",
)
async def doctor_report(
    _: Admin,
    client: Temporal,
    pool: Pool,
    limit: Annotated[int, Query(ge=1, le=doctor.MAX_LIMIT)] = _DEFAULTS.limit,
    activity_after: Seconds = _ACTIVITY_AFTER,
    read_model_lag: Seconds = _READ_MODEL_LAG,
    notification_overdue_after: Seconds = _OVERDUE_AFTER,
    intake_pending_after: Seconds = _PENDING_AFTER,
    replay: bool = True,
) -> doctor.DoctorReport:
    options = doctor.DoctorOptions(
        limit=limit,
        activity_after=timedelta(seconds=activity_after),
        read_model_lag=timedelta(seconds=read_model_lag),
        notification_overdue_after=timedelta(seconds=notification_overdue_after),
        intake_pending_after=timedelta(seconds=intake_pending_after),
        replay=replay,
    )
    return await doctor.examine(client, pool, options, workflows=ALL_WORKFLOWS)


class _LatestReport:
    """The newest examination for /metrics, redone when older than ``max_age``."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self.report: doctor.DoctorReport | None = None
        self.taken = 0.0
        self.lock = asyncio.Lock()

    async def get(self, request: Request) -> doctor.DoctorReport:
        async with self.lock:  # concurrent scrapes wait for one examination
            if self.report is None or time.monotonic() - self.taken > self.max_age:
                state = request.app.state
                self.report = await doctor.examine(
                    state.temporal, state.pool, workflows=ALL_WORKFLOWS
                )
                self.taken = time.monotonic()
            return self.report


def _latest(request: Request) -> _LatestReport:
    state = request.app.state
    if not hasattr(state, "doctor_latest"):
        state.doctor_latest = _LatestReport(METRICS_MAX_AGE)
    latest: _LatestReport = state.doctor_latest
    return latest


def render_metrics(report: doctor.DoctorReport) -> bytes:
    """The report as Prometheus text exposition."""
    registry = CollectorRegistry()
    problems = Gauge("jiesu_doctor_problems", "Problems the doctor found, by kind", ["kind"],
                     registry=registry)
    for kind, count in report.counts.items():
        problems.labels(kind=kind).set(count)
    errors = Gauge("jiesu_doctor_check_errors", "Doctor checks that could not run", ["check"],
                   registry=registry)
    for error in report.errors:
        errors.labels(check=error.check).inc()
    Gauge("jiesu_doctor_open_workflows", "Open workflows the doctor examined",
          registry=registry).set(report.open_workflows)
    Gauge("jiesu_doctor_last_run_timestamp_seconds", "When the reported examination ran",
          registry=registry).set(report.checked_at.timestamp())
    return generate_latest(registry)


@router.get(
    "/metrics",
    responses={**_ERRORS, 200: {"content": {CONTENT_TYPE_LATEST: {}},
                                "description": "Prometheus text format"}},
    response_class=Response,
    summary="The doctor's findings as Prometheus gauges (jiesu_doctor_problems{kind=...})",
)
async def metrics(_: Admin, request: Request) -> Response:
    report = await _latest(request).get(request)
    return Response(render_metrics(report), media_type=CONTENT_TYPE_LATEST)
