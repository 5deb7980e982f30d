"""/api/v1/complaints/{case_id}/attachments: the files that came with a case's report (an
e-mail's attachments, jiesu/channels/mail.py) — its evidence, for the staff who may see the
case (a department only its own cases: 404 otherwise, as for the case itself) and see its
content unmasked (jiesu.access.content.sees_report_files: 403 ``content_masked`` otherwise)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Response

from api import cases
from api.deps import AppSettings, CaseId, Pool, Principal, Staff, Temporal
from api.errors import ERRORS, ApiError
from jiesu.access import content, report_files
from jiesu.case.domain import CaseState

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
    files_seen(principal, state)
    return case_id


def files_seen(principal: Principal, state: CaseState) -> None:
    """403 ``content_masked`` unless the person sees the report's content unmasked."""
    if not content.sees_report_files(cases.viewer_of(principal), state):
        raise ApiError(
            403, "content_masked",
            f"the files of case {state.case_id}'s report are its content, masked to you",
        )  # fmt: skip


CaseWithFiles = Annotated[str, Depends(_with_files)]


class AttachmentInfo(report_files.ReportFile):
    """One file of the report, without its bytes."""


@router.get("", response_model=list[AttachmentInfo], responses=ERRORS,
            summary="The files that came with the case's report (evidence)")
async def list_attachments(case_id: CaseWithFiles, pool: Pool) -> list[AttachmentInfo]:
    return [AttachmentInfo(**f.model_dump()) for f in await report_files.listed(pool, case_id)]


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
    return await file_download(pool, principal, case_id, attachment_id)


async def file_download(
    pool: Pool, principal: Principal, case_id: str, attachment_id: int
) -> Response:
    """The file as a download — never rendered: a mailed file is the sender's, not ours. The
    file is the report's content: its download is a recorded view, as /content's are."""
    found = await report_files.handed_over(
        pool, case_id, attachment_id, cases.viewer_of(principal)
    )
    if found is None:
        raise ApiError(
            404, "attachment_not_found", f"case {case_id} has no attachment {attachment_id}"
        )
    name = quote(found.filename, safe="")
    return Response(
        found.content, media_type="application/octet-stream",
        headers={"Content-Disposition": f"attachment; filename*=utf-8''{name}"},
    )  # fmt: skip
