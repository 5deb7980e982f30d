"""/api/v1/complaints/{case_id}/attachments: the files that came with a case's report (an
e-mail's attachments, jiesu/channels/mail.py) — its evidence, for the staff who may see the
case (a department only its own cases: 404 otherwise, as for the case itself) and see its
content unmasked (jiesu.access.content.sees_report_files: 403 ``content_masked`` otherwise)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel

from api import cases
from api.deps import AppSettings, CaseId, Pool, Staff, Temporal
from api.errors import ERRORS, ApiError
from jiesu.access import content

router = APIRouter(prefix="/complaints/{case_id}/attachments", tags=["complaints"])


async def _with_files(
    case_id: CaseId, principal: Staff, pool: Pool, client: Temporal, settings: AppSettings
) -> str:
    """The case whose report's files the caller may have: 404 for a case they may not see,
    403 ``content_masked`` for one whose content is masked to them (before any file is
    looked up: the answer says nothing of which files exist)."""
    state = await cases.visible_state(
        client, pool, case_id, principal, settings.query_timeout_seconds
    )
    if not content.sees_report_files(cases.viewer_of(principal), state):
        raise ApiError(
            403, "content_masked",
            f"the files of case {case_id}'s report are its content, masked to you",
        )  # fmt: skip
    return case_id


CaseWithFiles = Annotated[str, Depends(_with_files)]


def _name(filename: str, attachment_id: int) -> str:
    """The name listed and offered: the sender's, unable to disguise the file
    (content.file_name: no bidirectional override, no directory, one line)."""
    return content.file_name(filename, f"attachment-{attachment_id}")


class AttachmentInfo(BaseModel):
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    source: str
    created_at: datetime


@router.get("", response_model=list[AttachmentInfo], responses=ERRORS,
            summary="The files that came with the case's report (evidence)")
async def list_attachments(case_id: CaseWithFiles, pool: Pool) -> list[AttachmentInfo]:
    rows = await pool.fetch(
        "SELECT id, filename, content_type, size, sha256, source, created_at FROM attachments"
        " WHERE case_id = $1 ORDER BY id",
        case_id,
    )
    # the name as it may be shown (rows stored before content.file_name carry it as mailed)
    return [AttachmentInfo(**(dict(r) | {"filename": _name(r["filename"], r["id"])}))
            for r in rows]  # fmt: skip


@router.get(
    "/{attachment_id}",
    responses={**ERRORS, 200: {"content": {"application/octet-stream": {}},
                               "description": "The file"}},
    response_class=Response,
    summary="One file of the case's report, as it came",
)  # fmt: skip
async def get_attachment(
    case_id: CaseWithFiles, attachment_id: Annotated[int, Path(ge=1, le=2**62)], pool: Pool,
    principal: Staff,
) -> Response:  # fmt: skip
    row = await pool.fetchrow(
        "SELECT id, filename, content FROM attachments WHERE case_id = $1 AND id = $2",
        case_id, attachment_id,
    )  # fmt: skip
    if row is None:
        raise ApiError(
            404, "attachment_not_found", f"case {case_id} has no attachment {attachment_id}"
        )
    # the file is the report's content: its download is a recorded view, as /content's are
    await content.record_file_view(pool, case_id, cases.viewer_of(principal))
    # Served as a download, never rendered: a mailed file is the sender's, not ours.
    name = quote(_name(row["filename"], row["id"]), safe="")
    return Response(
        row["content"], media_type="application/octet-stream",
        headers={"Content-Disposition": f"attachment; filename*=utf-8''{name}"},
    )  # fmt: skip
