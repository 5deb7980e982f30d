"""ArchiveWorkflow: copy closed cases' and closed children's histories into PostgreSQL before
Temporal drops them.

Started every hour by the Temporal Schedule that ``jiesu.audit.archive.ensure_archive_schedule``
registers (overlapping runs are skipped). All the work is in one heartbeating activity that
pages through visibility and resumes from its last page after a retry.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from jiesu.audit.archive import ArchiveReport, ArchiveRequest


@workflow.defn(name="ArchiveWorkflow")
class ArchiveWorkflow:
    @workflow.run
    async def run(self, request: ArchiveRequest | None = None) -> ArchiveReport:
        return await workflow.execute_activity(
            "archive_closed_cases",
            request or ArchiveRequest(),
            result_type=ArchiveReport,
            start_to_close_timeout=timedelta(hours=2),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5), maximum_attempts=10),
        )
