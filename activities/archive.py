"""The archiving activity: closed cases' histories into ``history_archive`` (idempotent), and,
in the same hourly run, ended staff sessions into the sign-in log (jiesu.access.sessions) and
actions' Idempotency-Keys past their keeping out (jiesu.access.action_keys)."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import asyncpg
from temporalio import activity

from jiesu.access import action_keys, sessions
from jiesu.audit.archive import ArchiveReport, ArchiveRequest, archive_closed_cases


def _token_out(token: bytes | None) -> str | None:
    """Visibility page tokens are binary: heartbeat them as base64 text (JSON-safe)."""
    return base64.b64encode(token).decode() if token else None


def _token_in(details: Any) -> bytes | None:
    return base64.b64decode(details[0]) if details and details[0] else None


class ArchiveActivities:
    def __init__(self, pool: asyncpg.Pool, session_keep: timedelta = sessions.DEFAULT_KEEP) -> None:
        self.pool = pool
        self.session_keep = session_keep  # JIESU_SESSION_KEEP_DAYS

    @activity.defn(name="archive_closed_cases")
    async def archive_closed_cases(self, request: ArchiveRequest) -> ArchiveReport:
        """Pages through closed cases; heartbeats the next page token after each page, and a
        retried attempt resumes from the last one (rows already archived are skipped)."""
        resume = _token_in(activity.info().heartbeat_details)

        def heartbeat(token: bytes | None, report: dict[str, Any]) -> None:
            activity.heartbeat(_token_out(token), report)

        report = await archive_closed_cases(
            activity.client(), self.pool, request, resume_token=resume, heartbeat=heartbeat
        )
        if report.open_children:  # stuck children: the report alone is read by nobody
            activity.logger.warning(
                "archive: %d children still open long after their case closed (stored as they"
                " stand, completed once they close): %s",
                len(report.open_children), ", ".join(report.open_children[:20]),
            )
        # The hourly job is the worker's retention chore: no daemon of its own for sessions.
        # A retry after this point archives from the first page again (rows are skipped).
        report.sessions_purged = await sessions.purge_ended(
            self.pool, self.session_keep, progress=lambda _: heartbeat(None, report.model_dump())
        )
        # and actions' Idempotency-Keys past their keeping (jiesu.access.action_keys)
        report.action_keys_purged = await action_keys.purge(
            self.pool, progress=lambda _: heartbeat(None, report.model_dump())
        )
        return report
