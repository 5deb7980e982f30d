"""The archiving activity: closed cases' histories into ``history_archive`` (idempotent)."""

from __future__ import annotations

from typing import Any

import asyncpg
from temporalio import activity

from jiesu.audit_archive import ArchiveReport, ArchiveRequest, archive_closed_cases


class ArchiveActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name="archive_closed_cases")
    async def archive_closed_cases(self, request: ArchiveRequest) -> ArchiveReport:
        """Pages through closed cases; heartbeats the next page token after each page, and a
        retried attempt resumes from the last one (rows already archived are skipped)."""
        details = activity.info().heartbeat_details
        resume: bytes | None = details[0] if details else None

        def heartbeat(token: bytes | None, report: dict[str, Any]) -> None:
            activity.heartbeat(token, report)

        return await archive_closed_cases(
            activity.client(), self.pool, request, resume_token=resume, heartbeat=heartbeat
        )
