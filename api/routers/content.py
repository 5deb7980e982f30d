"""The case's content (诉求内容: description, address, evidence, the citizen's name and phone)
as the caller may see it, and the auditors' list of who saw it unmasked.

- ``GET /api/v1/cases/{case_id}/content``: staff; another department's case is 404, as
  everywhere. Masking and the recorded views: :mod:`jiesu.access.content`.
- ``GET /api/v1/audit/content-views``: auditors (and admins).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.cases import viewer_of, visible_state
from api.deps import AppSettings, Auditor, CaseId, Pool, Staff, Temporal
from api.errors import ERRORS, QUERY_ERRORS, not_found
from jiesu.access import content
from jiesu.access.content import CaseContent, ContentView
from jiesu.case.domain import Line

router = APIRouter(tags=["content"])


@router.get(
    "/cases/{case_id}/content",
    response_model=CaseContent,
    responses=ERRORS,
    summary="The case's content: description, address, evidence and the citizen's contact, "
    "masked unless you handle the case, work at the centre or audit (each view is recorded)",
)
async def case_content(
    case_id: CaseId, principal: Staff, client: Temporal, pool: Pool, settings: AppSettings
) -> CaseContent:
    state = await visible_state(client, pool, case_id, principal, settings.query_timeout_seconds)
    shown = await content.view_content(pool, state, viewer_of(principal))
    if shown is None:
        raise not_found(case_id)
    return shown


@router.get(
    "/audit/content-views",
    response_model=list[ContentView],
    responses=QUERY_ERRORS,
    summary="审计 Who saw which case's unmasked content, when, and which fields (newest first)",
)
async def content_views(
    principal: Auditor,
    pool: Pool,
    case_id: Annotated[Line | None, Query(max_length=100)] = None,
    viewer: Annotated[Line | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=content.MAX_VIEWS)] = 100,
) -> list[ContentView]:
    return await content.content_views(pool, case_id=case_id, viewer=viewer, limit=limit)
