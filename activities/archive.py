"""The archiving activity: closed cases' histories into ``history_archive`` (idempotent)."""

from __future__ import annotations

import base64
from typing import Any

import asyncpg
from temporalio import activity

from jiesu.audit.archive import ArchiveReport, ArchiveRequest, archive_closed_cases


def _token_out(token: bytes | None) -> str | None:
    """Visibility page tokens are binary: heartbeat them as base64 text (JSON-safe)."""
    return base64.b64encode(token).decode() if token else None


def _token_in(details: Any) -> bytes | None:
    return base64.b64decode(details[0]) if details and details[0] else None


class ArchiveActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name="archive_closed_cases")
    async def archive_closed_cases(self, request: ArchiveRequest) -> ArchiveReport:
        """Pages through closed cases; heartbeats the next page token after each page, and a
        retried attempt resumes from the last one (rows already archived are skipped)."""
        resume = _token_in(activity.info().heartbeat_details)

        def heartbeat(token: bytes | None, report: dict[str, Any]) -> None:
            activity.heartbeat(_token_out(token), report)

        return await archive_closed_cases(
            activity.client(), self.pool, request, resume_token=resume, heartbeat=heartbeat
        )
