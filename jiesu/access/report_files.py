"""The files that came with a case's report (an e-mail's attachments, jiesu/channels/mail.py) as
the staff have them: listed and handed over by the API (api/routers/attachments.py) and by the
console's case page (api/console/files.py). One place for the reading, the names shown and the
recorded view; who may have them is :func:`jiesu.access.content.sees_report_files`."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from jiesu.access import content
from jiesu.access.content import Db, Viewer


class ReportFile(BaseModel):
    """One file of the report, without its bytes."""

    id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    source: str
    created_at: datetime


class HandedOver(BaseModel):
    """One file's name, as offered for download, and its bytes."""

    filename: str
    content: bytes


def shown_name(filename: str, attachment_id: int) -> str:
    """The name listed and offered: the sender's, unable to disguise the file
    (content.file_name: no bidirectional override, no directory, one line)."""
    return content.file_name(filename, f"attachment-{attachment_id}")


async def listed(db: Db, case_id: str) -> list[ReportFile]:
    """The report's files, oldest first, by the names they may be shown under (rows stored
    before content.file_name carry the name as mailed)."""
    rows = await db.fetch(
        "SELECT id, filename, content_type, size, sha256, source, created_at FROM attachments"
        " WHERE case_id = $1 ORDER BY id",
        case_id,
    )
    return [ReportFile(**(dict(r) | {"filename": shown_name(r["filename"], r["id"])}))
            for r in rows]  # fmt: skip


async def handed_over(
    db: Db, case_id: str, attachment_id: int, viewer: Viewer
) -> HandedOver | None:
    """One file, its download recorded as a view of the report's content (as the fields the
    content service shows are) before it is handed over; None: the case has no such file."""
    row = await db.fetchrow(
        "SELECT id, filename, content FROM attachments WHERE case_id = $1 AND id = $2",
        case_id, attachment_id,
    )  # fmt: skip
    if row is None:
        return None
    await content.record_file_view(db, case_id, viewer)
    return HandedOver(filename=shown_name(row["filename"], row["id"]), content=row["content"])
