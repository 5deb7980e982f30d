"""Domain metrics (业务指标) for Prometheus: what the read model and the outbox say now, sampled
from PostgreSQL every few seconds by the worker and published through the Temporal SDK's
metric meter (so they share the worker's metrics endpoint, jiesu.telemetry):

- ``jiesu_open_cases{status}`` — open cases by status (every open status, 0 included);
- ``jiesu_open_cases_breached{deadline}`` — open cases with a recorded breach of that deadline;
- ``jiesu_open_cases_supervised{step}`` — open cases whose ladder climbs now, by its step;
- ``jiesu_outbox_notices{status}`` — notices waiting (``pending``), being sent (``sending``)
  and given up (``failed``); ``jiesu_outbox_oldest_unsent_age_seconds`` — seconds since the oldest
  unsent notice was written (0 when none): the dispatcher's backlog.

The read model's lag is measured where it happens, by the projection activity
(:func:`record_read_model_lag`). The statuses, deadline kinds and ladder steps are
jiesu.case's; the doctor (jiesu.health.checks) names the cases behind a bad number.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

import asyncpg
from pydantic import BaseModel
from temporalio.common import MetricMeter

from jiesu.case.domain import OPEN_STATUSES, DeadlineKind, EscalationLevel, Status, sql_status

log = logging.getLogger("jiesu.metrics")

# Every status but sent (jiesu/migrations/0004_outbox.sql, 0039): skipped is a citizen's SMS
# to a number that takes none, with no e-mail beside it — nobody was told, so it is counted.
OUTBOX_STATUSES = ("pending", "sending", "failed", "skipped")
LADDER_STEPS = [level for level in EscalationLevel if level is not EscalationLevel.NONE]
_OPEN = f"status <> {sql_status(Status.CLOSED)}"
_CASES = f"""
SELECT status, count(*)::int AS n FROM cases WHERE {_OPEN} GROUP BY status
"""
_BREACHED = f"""
SELECT b AS deadline, count(*)::int AS n FROM cases, unnest(breaches) AS b
WHERE {_OPEN} GROUP BY b
"""
_SUPERVISED = f"""
SELECT escalation_level AS level, count(*)::int AS n FROM cases
WHERE {_OPEN} AND ladder_active GROUP BY escalation_level
"""
# The statuses as literals, not a parameter: the planner then knows the rows are unsent and
# reads the partial index notifications_unsent (migration 0042) instead of every notice.
_OUTBOX = f"""
SELECT status, count(*)::int AS n FROM notifications
WHERE status IN ({", ".join(f"'{s}'" for s in OUTBOX_STATUSES)}) GROUP BY status
"""
_OLDEST_UNSENT = """
SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
FROM notifications WHERE status IN ('pending', 'sending')
"""


class DomainMeasures(BaseModel):
    open_cases: dict[str, int]
    breached: dict[str, int]
    supervised: dict[str, int]
    outbox: dict[str, int]
    oldest_unsent_seconds: float


def _counts(rows: Sequence[asyncpg.Record], key: str, names: Sequence[str]) -> dict[str, int]:
    """Every name listed, 0 when no row: a series that vanished would read as 'no data'."""
    found = {str(r[key]): r["n"] for r in rows}
    return {name: found.get(name, 0) for name in names}


async def measure(pool: asyncpg.Pool) -> DomainMeasures:
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        cases = await conn.fetch(_CASES)
        breached = await conn.fetch(_BREACHED)
        supervised = await conn.fetch(_SUPERVISED)
        outbox = await conn.fetch(_OUTBOX)
        oldest = await conn.fetchval(_OLDEST_UNSENT)
    levels = {str(level.value): level.name.lower() for level in LADDER_STEPS}
    return DomainMeasures(
        open_cases=_counts(cases, "status", sorted(s.value for s in OPEN_STATUSES)),
        breached=_counts(breached, "deadline", [k.value for k in DeadlineKind]),
        supervised={levels[k]: n for k, n in _counts(supervised, "level", list(levels)).items()},
        outbox=_counts(outbox, "status", OUTBOX_STATUSES),
        oldest_unsent_seconds=float(oldest or 0),
    )


class DomainGauges:
    """The measures as gauges of a Temporal metric meter."""

    def __init__(self, meter: MetricMeter) -> None:
        self.open_cases = meter.create_gauge("jiesu_open_cases", "Open cases by status")
        self.breached = meter.create_gauge(
            "jiesu_open_cases_breached", "Open cases with a recorded breach, by deadline"
        )
        self.supervised = meter.create_gauge(
            "jiesu_open_cases_supervised", "Open cases on a step of the supervision ladder"
        )
        self.outbox = meter.create_gauge("jiesu_outbox_notices", "Outbox notices by status")
        self.oldest_unsent = meter.create_gauge_float(
            "jiesu_outbox_oldest_unsent_age_seconds", "Seconds since the oldest unsent notice"
        )

    def publish(self, m: DomainMeasures) -> None:
        for status, n in m.open_cases.items():
            self.open_cases.set(n, {"status": status})
        for deadline, n in m.breached.items():
            self.breached.set(n, {"deadline": deadline})
        for step, n in m.supervised.items():
            self.supervised.set(n, {"step": step})
        for status, n in m.outbox.items():
            self.outbox.set(n, {"status": status})
        self.oldest_unsent.set(m.oldest_unsent_seconds)


async def sample(
    pool: asyncpg.Pool, meter: MetricMeter, stop: asyncio.Event, interval: float
) -> None:
    """Measure and publish every ``interval`` seconds until ``stop``; a failed measurement
    (PostgreSQL away) is logged and the gauges keep their last values."""
    gauges = DomainGauges(meter)
    while not stop.is_set():
        try:
            gauges.publish(await measure(pool))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("domain metrics not measured: %r", exc)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass


# Units are in the names: the SDK's exporter would append an abbreviation ("_s").
_LAG_METRIC = "jiesu_read_model_lag_seconds"


def record_read_model_lag(meter: MetricMeter, oldest_event_at: datetime, now: datetime) -> None:
    """How long the oldest event of a projection waited to reach the read model (seconds;
    never negative: a test's skipped workflow clock can be ahead of the wall clock)."""
    lag = max((now - oldest_event_at).total_seconds(), 0.0)
    meter.create_histogram_float(
        _LAG_METRIC, "Seconds from a case event to its projection into the read model"
    ).record(lag)


READ_MODEL_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
HISTOGRAM_BUCKETS = {_LAG_METRIC: READ_MODEL_LAG_BUCKETS}
