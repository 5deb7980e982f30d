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
from jiesu.audit.archive import (
    ArchiveCursor,
    ArchiveReport,
    ArchiveRequest,
    Listing,
    archive_closed_cases,
)


def _token_out(token: bytes | None) -> str | None:
    """Visibility page tokens are binary: heartbeat them as base64 text (JSON-safe)."""
    return base64.b64encode(token).decode() if token else None


def _cursor_in(details: Any) -> ArchiveCursor | None:
    """The cursor heartbeated as (token, report, listing). An attempt heartbeated by a worker
    from before the children's listing sent (token, report): it was listing the cases."""
    if not details:
        return None
    token = base64.b64decode(details[0]) if details[0] else None
    listing: Listing = "children" if len(details) > 2 and details[2] == "children" else "cases"
    return ArchiveCursor(listing, token)


class ArchiveActivities:
    def __init__(self, pool: asyncpg.Pool, session_keep: timedelta = sessions.DEFAULT_KEEP) -> None:
        self.pool = pool
        self.session_keep = session_keep  # JIESU_SESSION_KEEP_DAYS

    @activity.defn(name="archive_closed_cases")
    async def archive_closed_cases(self, request: ArchiveRequest) -> ArchiveReport:
        """Pages through closed children, then closed cases; heartbeats the listing and its next
        page token after each page, and a retried attempt resumes from the last one (rows
        already archived are skipped)."""
        resume = _cursor_in(activity.info().heartbeat_details)

        def heartbeat(cursor: ArchiveCursor, report: dict[str, Any]) -> None:
            activity.heartbeat(_token_out(cursor.token), report, cursor.listing)

        report = await archive_closed_cases(
            activity.client(), self.pool, request, resume=resume, heartbeat=heartbeat
        )
        if report.open_children:  # stuck children: the report alone is read by nobody
            activity.logger.warning(
                "archive: %d children still open long after their case closed (stored as they"
                " stand, completed once they close): %s",
                len(report.open_children), ", ".join(report.open_children[:20]),
            )
        if report.lost_children:  # deleted by Temporal before any run archived them
            activity.logger.error(
                "archive: %d children of cases archived now were gone from Temporal and never"
                " archived (was the archive stopped for a retention period?): %s",
                len(report.lost_children), ", ".join(report.lost_children[:20]),
            )
        done = ArchiveCursor("cases", None)  # a retry lists the cases again (rows are skipped)
        # The hourly job is the worker's retention chore: no daemon of its own for sessions.
        report.sessions_purged = await sessions.purge_ended(
            self.pool, self.session_keep, progress=lambda _: heartbeat(done, report.model_dump())
        )
        # and actions' Idempotency-Keys past their keeping (jiesu.access.action_keys)
        report.action_keys_purged = await action_keys.purge(
            self.pool, progress=lambda _: heartbeat(done, report.model_dump())
        )
        return report
