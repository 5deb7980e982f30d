"""The inaction signal (不作为信号): a new case of a problem whose earlier cases were replied
to and closed.

DESIGN.md §1's illegal wall: citizens report it again and again, every reply is on time and
every case closes, and the wall stays. Repeat reports (并单, jiesu/intake/merge.py) only see
*open* cases, so each report opens a fresh case that looks fine on its own. Here a new case is
linked to the earlier cases of the same problem that were replied to and closed within
``JIESU_INACTION_WINDOW_DAYS``: same category and grid, same citizen (phone) or same place
(normalised address), and a similar description (jiesu/intake/similarity.py). The case records
the link; from ``JIESU_INACTION_REPORTS_BEFORE_SUPERVISION`` reports (default 3, the new one
included) its unit goes under supervision with the trigger "repeated although replied".
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from jiesu.case.domain import ComplaintIntake, RepeatHistory, Resolution, Status, sql_status
from jiesu.config import Settings
from jiesu.intake import similarity

# Closed, replied (not withdrawn) cases of the category and grid received in the window.
_CANDIDATES = f"""
SELECT c.case_id, i.payload #>> '{{intake,description}}' AS description,
       i.payload #>> '{{intake,address}}' AS address,
       coalesce(i.payload #>> '{{intake,citizen,phone}}', i.payload #>> '{{intake,citizen,email}}')
           AS contact
FROM cases c JOIN intakes i USING (case_id)
WHERE c.category_id = $1 AND c.grid_id = $2 AND c.status = {sql_status(Status.CLOSED)}
  AND c.replied_at IS NOT NULL AND c.resolution IS DISTINCT FROM '{Resolution.WITHDRAWN.value}'
  AND c.received_at > $3 AND c.received_at <= $4
ORDER BY c.received_at
LIMIT 100
"""


def _report(intake: ComplaintIntake) -> similarity.Report:
    contact = intake.citizen.phone or intake.citizen.email
    return similarity.Report(intake.description, intake.address, contact)


def _earlier(row: asyncpg.Record) -> similarity.Report:
    """A candidate as the judge reads it: three fields of its stored intake, not the whole
    intake decoded and validated (up to 100 candidates per new report)."""
    return similarity.Report(row["description"], row["address"], row["contact"])


async def earlier_cases(
    conn: asyncpg.Connection, settings: Settings, intake: ComplaintIntake, received_at: datetime
) -> RepeatHistory | None:
    """The same problem's replied and closed cases in the window, oldest first (None: none)."""
    since = received_at - timedelta(days=settings.inaction_window_days)
    rows = await conn.fetch(_CANDIDATES, intake.category_id, intake.grid_id, since, received_at)
    new = _report(intake)
    found = [r["case_id"] for r in rows if similarity.judge(new, _earlier(r))]
    if not found:
        return None
    return RepeatHistory(
        case_ids=found,
        window_days=settings.inaction_window_days,
        reports_before_supervision=settings.inaction_reports_before_supervision,
    )
