"""工单查询: the case lookup of the hotline centre. A citizen calls back about their case (催问
进度): the operator finds it by its number, as pasted or typed, or by the phone number the
caller gives — the case's own citizen or a later reporter of it (并单) — and opens its page.

Who may look is who sees every case (WHOLE_COUNTY_VIEWER_ROLES, ``Principal.can_see``) and
sees a citizen's phone unmasked (jiesu.access.content FULL_VIEW_ROLES): a department's clerk
has the cases they handle in their inbox, and a phone search would tell them which cases an
anonymous citizen (对承办单位匿名) reported. A search by phone confirms whose the number is
in each case it lists: a view of the citizen's phone, recorded for the auditors as the case
page records its views (jiesu.access.content.record_view)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api import cases as case_service
from api.console import paging
from api.console.queue import from_dispatch_sql
from api.console.web import PREFIX, page, require_roles, templates
from api.deps import Pool, is_cross_site
from jiesu.access import content as content_service
from jiesu.access.content import FULL_VIEW_ROLES, ContentField
from jiesu.case.domain import WHOLE_COUNTY_VIEWER_ROLES, Line
from jiesu.case.sla import is_late

router = APIRouter()
LOOKUP_ROLES = WHOLE_COUNTY_VIEWER_ROLES & FULL_VIEW_ROLES
Looker = require_roles(*LOOKUP_ROLES)
# the header's 工单查询 link: for whoever the page lets in, from this one set
templates.env.globals["lookup_roles"] = frozenset(r.value for r in LOOKUP_ROLES)
Typed = Annotated[Line | None, Query(max_length=100)]
SHOWN = paging.SHOWN
"""Cases a page of a search lists, newest first; the page says how many there are in all and
links to the next and previous pages (api.console.paging)."""
PHONE_DIGITS = (5, 20)
"""A phone number has this many digits, as intake takes it (jiesu.case.domain.Phone)."""

_COLUMNS = """c.case_id, c.status, c.title, c.urgency, c.department_id, c.received_at,
       c.accept_deadline, c.contact_deadline, c.finish_deadline, c.accepted_at,
       c.contacted_at, c.breaches, c.escalation_level, c.closed_at, """ + from_dispatch_sql("c")
# The case of this number ($1) — as the read model has it (a moment after 受理).
_BY_NUMBER = f"SELECT {_COLUMNS} FROM cases c WHERE c.case_id = $1 LIMIT $2 OFFSET $3"
_COUNT_BY_NUMBER = "SELECT count(*) FROM cases c WHERE c.case_id = $1"
# The cases whose intake, or one of whose repeat reports (并单), gave this phone number ($1),
# and of this case number ($2) if one is given — by the normal form of migration 0036 (its
# digits, no +86 before a mobile) on both sides, so "138 1234 5678" finds "+86 138-1234-5678"
# through the indexes intakes_citizen_phone and repeat_reports_citizen_phone. The cases are
# joined from what the indexes found (their primary key), never scanned in their own order.
_FOUND = """
WITH found AS (
    SELECT case_id FROM intakes WHERE state = 'started'
      AND payload -> 'intake' -> 'citizen' ->> 'phone' IS NOT NULL
      AND citizen_phone_digits(payload -> 'intake' -> 'citizen' ->> 'phone')
          = citizen_phone_digits($1)
    UNION
    SELECT case_id FROM repeat_reports WHERE state = 'started'
      AND payload -> 'intake' -> 'citizen' ->> 'phone' IS NOT NULL
      AND citizen_phone_digits(payload -> 'intake' -> 'citizen' ->> 'phone')
          = citizen_phone_digits($1)
)
"""
_BY_PHONE = _FOUND + f"""
SELECT {_COLUMNS}
FROM found JOIN cases c USING (case_id)
WHERE $2::text IS NULL OR c.case_id = $2
ORDER BY c.received_at DESC, c.case_id
LIMIT $3 OFFSET $4
"""
# how many cases the search finds in all (the page says so: before, "only the newest 50")
_COUNT_BY_PHONE = _FOUND + """
SELECT count(*) FROM found JOIN cases c USING (case_id) WHERE $2::text IS NULL OR c.case_id = $2
"""
# The cases among $2 whose own intake gave the phone $1 (the others it reported later: 并单).
_OWN = """
SELECT case_id FROM intakes WHERE case_id = ANY($2::text[])
  AND payload -> 'intake' -> 'citizen' ->> 'phone' IS NOT NULL
  AND citizen_phone_digits(payload -> 'intake' -> 'citizen' ->> 'phone')
      = citizen_phone_digits($1)
"""


def case_number(typed: str | None) -> str | None:
    """A case number as pasted or typed: blanks around it and lower case are the same number
    (as the auditor's search takes it)."""
    return (typed or "").strip().upper() or None


def phone_problem(typed: str | None) -> str | None:
    """What is wrong with a phone number to look up, in the form's words; None: nothing. Only
    a whole number finds cases (the index holds whole numbers; a tail of four digits would
    read every row and list strangers' cases)."""
    if not typed or not typed.strip():
        return None
    if re.search(r"[^0-9+\-\s()]", typed):
        return "联系电话：只能包含数字（可带 +、空格、短横线）"
    digits = len(re.sub(r"\D", "", typed))
    if not PHONE_DIGITS[0] <= digits <= PHONE_DIGITS[1]:
        return f"联系电话：请输入完整号码（{PHONE_DIGITS[0]}–{PHONE_DIGITS[1]} 位数字）"
    return None


async def find(
    pool: Pool, case_id: str | None, phone: str | None, page_number: int = 1
) -> tuple[list[dict[str, Any]], int]:
    """Page ``page_number`` (SHOWN cases, newest first) of the cases of this number and/or
    this phone, and how many there are in all."""
    offset = paging.offset(page_number, SHOWN)
    if phone:
        found = await pool.fetch(_BY_PHONE, phone, case_id, SHOWN, offset)
        total = await pool.fetchval(_COUNT_BY_PHONE, phone, case_id)
    else:
        found = await pool.fetch(_BY_NUMBER, case_id, SHOWN, offset)
        total = await pool.fetchval(_COUNT_BY_NUMBER, case_id)
    rows = [dict(r) for r in found]
    if phone:
        own = {r["case_id"] for r in await pool.fetch(_OWN, phone, [r["case_id"] for r in rows])}
        for row in rows:
            row["merged"] = row["case_id"] not in own
    else:
        for row in rows:
            row["merged"] = False
    return rows, total


@router.get("/lookup", response_class=HTMLResponse)
async def lookup(
    request: Request, pool: Pool, session: Looker, case_id: Typed = None, phone: Typed = None,
    page_number: paging.PageNumber = 1,
) -> Response:
    """The form, and with a case number or a phone number the cases found, a page at a
    time."""
    wanted, number = case_number(case_id), (phone or "").strip() or None
    context: dict[str, Any] = {
        "session": session, "query": request.query_params, "cases": [], "searched": False,
        "paged": None, "error": phone_problem(number), "withheld": False,
        "units": dict(await pool.fetch("SELECT id, name FROM departments")),
    }  # fmt: skip
    if context["error"]:
        return page(request, "lookup.html", context, 422)
    if number and is_cross_site(request):
        # another site's link with a phone in it would record a view in this person's name
        # (as a case page opened from another site shows nothing): searched from our page only
        return page(request, "lookup.html", {**context, "withheld": True})
    if wanted is None and number is None:
        return page(request, "lookup.html", context)
    shown, total = await find(pool, wanted, number, page_number)
    if number and shown:  # each case listed is a view of its citizen's (or reporter's) phone
        viewer = case_service.viewer_of(session.principal)
        for row in shown:
            await content_service.record_view(
                pool, row["case_id"], viewer, (ContentField.CITIZEN_PHONE,)
            )
    now = datetime.now(UTC)
    context.update(
        searched=True,
        paged=paging.paged(f"{PREFIX}/lookup", {"case_id": case_id, "phone": phone},
                           page_number, total, SHOWN),
        cases=[{**r, "late": is_late(r, now)} for r in shown],
    )  # fmt: skip
    return page(request, "lookup.html", context)
