"""附件: the files that came with a case's report (an e-mail's attachments), downloaded from the
case page by the staff who may see its content — the API's rule and reading
(api/routers/attachments.py, jiesu.access.report_files): another unit's case is 404, a case
whose content is masked to the person 403, and each download a recorded view."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from api import cases as case_service
from api.console.web import PREFIX, Session, redirect
from api.deps import AppSettings, CaseId, Pool, Principal, Temporal, is_cross_site
from api.routers.attachments import file_download, files_seen
from jiesu.access import content, report_files
from jiesu.case.domain import CaseState

router = APIRouter()

AttachmentId = Annotated[int, Path(ge=1, le=2**62)]


async def files_of(
    pool: Pool, principal: Principal, state: CaseState, *, withheld: bool
) -> list[report_files.ReportFile] | None:
    """The case page's 附件: the files listed for a person who sees the report's content;
    None for one it is masked to, or when the page was opened from another site (it says
    nothing then of which files exist)."""
    if withheld or not content.sees_report_files(case_service.viewer_of(principal), state):
        return None
    return await report_files.listed(pool, state.case_id)


@router.get("/cases/{case_id}/files/{attachment_id}")
async def report_file(
    request: Request, case_id: CaseId, attachment_id: AttachmentId, session: Session,
    pool: Pool, client: Temporal, settings: AppSettings,
) -> Response:  # fmt: skip
    """One file, as a download. Opened from another site's page (which may have sent the
    person here to put a view of the citizen's file in their name): the case page instead,
    its content withheld, where a click of our own downloads it."""
    if is_cross_site(request):
        return redirect(f"{PREFIX}/cases/{case_id}")
    principal = session.principal
    state = await case_service.visible_state(
        client, pool, case_id, principal, settings.query_timeout_seconds
    )
    files_seen(principal, state)
    return await file_download(pool, principal, case_id, attachment_id)
