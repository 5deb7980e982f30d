"""Statistics activities: refresh the daily rollup and take a report snapshot. The work is
done by jiesu.stats.rollup and jiesu.stats.queries; these are the Temporal adapters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from temporalio import activity

from jiesu.config import Settings
from jiesu.stats.queries import missing_periods, produce_report
from jiesu.stats.reports import ReportJob, ReportKind, ReportSummary, report_period
from jiesu.stats.rollup import refresh

# How many periods before its own a scheduled run looks at for ones without a report: a run
# given up after its retries (PostgreSQL away for ~4 minutes), or one that ran after the next
# period had begun and so reported that one (a worker away past midnight). The next scheduled
# run produces them (docs/operations.md, "Background jobs at a power cut").
CATCH_UP: dict[ReportKind, int] = {ReportKind.DAILY: 7, ReportKind.WEEKLY: 4, ReportKind.MONTHLY: 2}

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
        the workflow run: a retry of an attempt that committed is not a second generation. A
        scheduled run also produces the reports missing among the CATCH_UP periods before."""
        start, end = report_period(job, self.settings.timezone)
        info = activity.info()
        produced_by = f"{info.workflow_id}/{info.workflow_run_id}"
        summary = await produce_report(
            self.pool, job.kind, start, end, self.settings.timezone, produced_by=produced_by
        )
        if job.period_start is None:  # a scheduled run: the periods a failed run left out
            for first, last in await missing_periods(self.pool, job.kind, start,
                                                     CATCH_UP[job.kind]):  # fmt: skip
                activity.logger.warning("%s report of %s was missing: produced now",
                                        job.kind.value, first.isoformat())  # fmt: skip
                await produce_report(self.pool, job.kind, first, last, self.settings.timezone,
                                     produced_by=produced_by, refreshed=True)  # fmt: skip
        return summary


def activities(pool: asyncpg.Pool, settings: Settings) -> Sequence[Any]:
    acts = StatisticsActivities(pool, settings)
    return [acts.refresh_statistics, acts.produce_report]
