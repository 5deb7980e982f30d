"""The projection activity: the workflow's new events into the read model
(jiesu.readmodel.projection does the writing; bad data is refused, not retried)."""

from __future__ import annotations

import asyncpg
from temporalio import activity

from activities.errors import refusing_bad_data
from jiesu.case.domain import CaseProjection
from jiesu.readmodel.projection import write_case


class ProjectionActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name="project_case")
    async def project_case(self, projection: CaseProjection) -> None:
        with refusing_bad_data():
            await write_case(self.pool, projection)
