"""审计: case search, a case's timeline decoded from its Temporal history (jiesu.audit), the
raw-history export and the replay check — the same services as /api/v1/complaints/{id}/history."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from api import cases as case_service
from api.console import audit_words, event_words, paging
from api.console.web import PREFIX, error_page, form_of, local_time, page, require_roles
from api.deps import CaseId, Pool, Temporal, is_cross_site
from api.routers.audit import record_history_read, replayer, start_input
from jiesu.audit import histories as audit
from jiesu.audit import replay as audit_replay
from jiesu.audit.timeline import Timeline
from jiesu.case.domain import AUDITOR_ROLES, Line, Status
from jiesu.case.sla import is_late

router = APIRouter()
Auditor = require_roles(*AUDITOR_ROLES)
Filter = Annotated[Line | None, Query(max_length=100)]
SHOWN = paging.SHOWN
"""Cases a page of the search lists, newest first; the page says how many the search finds in
all and links to the previous and next pages (api.console.paging) — before, it listed the
newest 100 and said to narrow the search, with no way to the rest. 下一页 and 上一页 go by the
position of the page's last and first rows (keyset, ``after`` / ``before``), so a deep page
costs what the first does."""
_WORDS = {  # the heading and the replay check's verdict
    "run_status": audit_words.RUN_STATUS, "sources": audit_words.SOURCES,
    "verdicts": audit_words.VERDICTS,
}  # fmt: skip


@router.get("/audit", response_class=HTMLResponse)
async def search(
    request: Request, pool: Pool, session: Auditor, case_id: Filter = None,
    status: Status | None = None, department_id: Filter = None, category_id: Filter = None,
    page_number: paging.PageNumber = 1, after: paging.Cursor = None,
    before: paging.Cursor = None,
) -> Response:  # fmt: skip
    """Cases from the read model, newest first, a page at a time (or the one case number
    asked for, as pasted or typed: blanks around it and lower case letters are the same
    number). A page is ``page`` (by offset: a bookmark, the first page) or the page after
    or before a row's position (``after`` / ``before``: its 下一页 and 上一页); one of them."""
    try:
        position = paging.position(request.query_params, after, before)
    except paging.BadPosition as refused:
        return error_page(request, 422, str(refused))
    wanted = (case_id or "").strip().upper() or None
    filters = {"case_id": wanted, "status": status, "department_id": department_id or None,
               "category_id": category_id or None}  # fmt: skip
    rows, first, total = await paging.read(
        pool, partial(case_service.search, **filters),
        paging.counted(partial(case_service.count, **filters)), page_number, SHOWN, **position,
    )  # fmt: skip
    search = {"case_id": case_id, "status": status.value if status else None,
              "department_id": department_id, "category_id": category_id}  # fmt: skip
    paged = paging.links(f"{PREFIX}/audit", search, request.query_params, rows, first, total,
                         page_number, SHOWN)  # fmt: skip
    now = datetime.now(UTC)
    # the units and categories by name, in the results and in the filters' pickers: the
    # auditor does not know the codes (water, noise_commercial)
    units = await pool.fetch("SELECT id, name FROM departments ORDER BY level, id")
    categories = await pool.fetch("SELECT id, name FROM categories ORDER BY id")
    context = {
        "session": session, "cases": [{**r, "late": is_late(r, now)} for r in rows],
        "paged": paged, "statuses": list(Status), "query": request.query_params,
        "units": units, "unit_names": {u["id"]: u["name"] for u in units},
        "categories": categories,
    }  # fmt: skip
    return page(request, "audit.html", context)


@router.get("/audit/{case_id}", response_class=HTMLResponse)
async def timeline(
    request: Request, case_id: CaseId, pool: Pool, client: Temporal, session: Auditor
) -> Response:
    if is_cross_site(request):  # not what the auditor chose to open: a link, no view
        return page(request, "withheld.html", {"session": session, "case_id": case_id})
    try:
        found = await audit.case_timeline(client, pool, case_id)
    except audit.HistoryNotFound:
        return error_page(request, 404, f"没有工单 {case_id} 的历史记录")
    await record_history_read(pool, session.principal, case_id, start_input(found))
    context = {"session": session, "case_id": case_id, "timeline": found,
               "rows": await _rows(pool, found), "verdict": None, **_WORDS}  # fmt: skip
    return page(request, "timeline.html", context)


async def _rows(pool: Pool, found: Timeline) -> list[audit_words.Row]:
    """The entries in Chinese (api.console.audit_words), departments and staff by name, times
    in the hotline's time; each keeps its recorded English summary for the page to show."""
    units = await pool.fetch("SELECT id, name FROM departments")
    people = await pool.fetch(
        "SELECT login, display_name FROM staff WHERE login = ANY($1)",
        sorted(audit_words.people_of(found)),
    )
    words = event_words.Words(
        {u["id"]: u["name"] for u in units}, local_time,
        {p["login"]: p["display_name"] for p in people},
    )  # fmt: skip
    return list(audit_words.rows(found, words))


@router.get("/audit/{case_id}/history.json")
async def export(
    request: Request, case_id: CaseId, pool: Pool, client: Temporal, session: Auditor
) -> Response:
    """The timeline plus the raw histories of the case and its children, as one file."""
    if is_cross_site(request):
        return page(request, "withheld.html", {"session": session, "case_id": case_id})
    try:
        document = await audit.case_bundle(client, pool, case_id)
    except audit.HistoryNotFound:
        return JSONResponse({"error": f"no history for case {case_id}"}, status_code=404)
    timeline = Timeline.model_validate(document["timeline"])
    await record_history_read(pool, session.principal, case_id, start_input(timeline))
    disposition = f'attachment; filename="{case_id}-bundle.json"'
    return JSONResponse(document, headers={"Content-Disposition": disposition})


@router.post("/audit/{case_id}/replay", response_class=HTMLResponse)
async def replay(
    request: Request, case_id: CaseId, pool: Pool, client: Temporal, session: Auditor
) -> Response:
    """Replay the case and its children against the current workflow code."""
    await form_of(request, session)
    verdict = await audit_replay.replay_case(client, pool, case_id, replayer())
    if verdict.verdict == audit_replay.MISSING:
        return error_page(request, 404, f"没有工单 {case_id} 的历史记录")
    found = await audit.case_timeline(client, pool, case_id)
    await record_history_read(pool, session.principal, case_id, start_input(found))
    context = {"session": session, "case_id": case_id, "timeline": found,
               "rows": await _rows(pool, found), "verdict": verdict, **_WORDS}  # fmt: skip
    return page(request, "timeline.html", context)
