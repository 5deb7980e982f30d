"""Statistics activities: refresh the daily rollup and take a report snapshot. The work is
done by jiesu.stats.rollup and jiesu.stats.queries; these are the Temporal adapters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from temporalio import activity

from jiesu.config import Settings
from jiesu.stats.queries import produce_report
from jiesu.stats.reports import ReportJob, ReportSummary, report_period
from jiesu.stats.rollup import refresh

# --- Temporal activities ---------------------------------------------------------------------


class StatisticsActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings

    @activity.defn(name="refresh_statistics")
    async def refresh_statistics(self) -> int:
        """Bring the daily rollup up to date; returns the number of days recomputed."""
        async with self.pool.acquire() as conn:
            return (await refresh(conn, self.settings.timezone)).days

    @activity.defn(name="produce_report")
    async def produce_report(self, job: ReportJob) -> ReportSummary:
        """Compute the period's report and store it as its snapshot (replacing any). Keyed by
        the workflow run: a retry of an attempt that committed is not a second generation."""
        start, end = report_period(job, self.settings.timezone)
        info = activity.info()
        return await produce_report(
            self.pool, job.kind, start, end, self.settings.timezone,
            produced_by=f"{info.workflow_id}/{info.workflow_run_id}",
        )  # fmt: skip


def activities(pool: asyncpg.Pool, settings: Settings) -> Sequence[Any]:
    acts = StatisticsActivities(pool, settings)
    return [acts.refresh_statistics, acts.produce_report]
