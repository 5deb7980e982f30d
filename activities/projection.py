"""The projection activities: the workflow's new events into the read model
(jiesu.readmodel.projection does the writing; bad data is refused, not retried).

``project_case`` is the activity of cases started before ``lean-case-v1`` (its input, in the
history, carries the events); ``project_events`` is the local activity of newer cases (its
result carries them)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from temporalio import activity

from activities.errors import refusing_bad_data
from jiesu.case.domain import CaseProjection, ProjectionReceipt
from jiesu.health.domain_metrics import record_read_model_lag
from jiesu.readmodel.projection import write_case


class ProjectionActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name="project_case")
    async def project_case(self, projection: CaseProjection) -> None:
        with refusing_bad_data():
            await write_case(self.pool, projection)
        _record_lag(projection)

    @activity.defn(name="project_events")
    async def project_events(self, projection: CaseProjection) -> ProjectionReceipt:
        """The same write, run as a local activity by cases started since ``lean-case-v1``:
        it returns the events it wrote, which is what the history keeps of it (a local
        activity's input is not recorded, its result is)."""
        with refusing_bad_data():
            await write_case(self.pool, projection, overwrite=True)
        _record_lag(projection)
        return ProjectionReceipt(version=projection.version, events=projection.new_events)


def _record_lag(projection: CaseProjection) -> None:
    """The read model's lag (docs/observability.md); not when called outside an activity."""
    if projection.new_events and activity.in_activity():
        oldest = min(e.at for e in projection.new_events)
        record_read_model_lag(activity.metric_meter(), oldest, datetime.now(UTC))
