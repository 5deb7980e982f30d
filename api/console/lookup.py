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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api import cases as case_service
from api.cases import Position
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
# The cases whose intake, or one of whose repeat reports (并单), gave this phone ({phone}), by
# the normal form of migration 0036 (its digits, no +86 before a mobile) on both sides, so
# "138 1234 5678" finds "+86 138-1234-5678" through the indexes intakes_citizen_phone and
# repeat_reports_citizen_phone. The cases are joined from what the indexes found (their
# primary key), never scanned in their own order.
_FOUND = """
WITH found AS (
    SELECT case_id FROM intakes WHERE state = 'started'
      AND payload -> 'intake' -> 'citizen' ->> 'phone' IS NOT NULL
      AND citizen_phone_digits(payload -> 'intake' -> 'citizen' ->> 'phone')
          = citizen_phone_digits({phone})
    UNION
    SELECT case_id FROM repeat_reports WHERE state = 'started'
      AND payload -> 'intake' -> 'citizen' ->> 'phone' IS NOT NULL
      AND citizen_phone_digits(payload -> 'intake' -> 'citizen' ->> 'phone')
          = citizen_phone_digits({phone})
)
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


class _Args(list[Any]):
    """A statement's arguments: ``add`` one, get its ``$n``."""

    def add(self, value: Any) -> str:
        self.append(value)
        return f"${len(self)}"


def _listed(args: _Args, case_id: str | None, phone: str, columns: str) -> str:
    """The ``listed`` cases of this phone (and number): found by the phone's indexes and
    joined to their cases by key first — MATERIALIZED: a position's range on received_at would
    otherwise let the planner read cases_received from it and filter by phone — with no more
    of each case than ``columns``."""
    found = _FOUND.format(phone=args.add(phone))
    number = f" WHERE c.case_id = {args.add(case_id)}" if case_id is not None else ""
    return (f"{found}, listed AS MATERIALIZED (SELECT {columns} FROM found JOIN cases c "
            f"USING (case_id){number})")  # fmt: skip


def page_sql(
    case_id: str | None, phone: str | None, *, limit: int, offset: int = 0,
    after: Position | None = None, before: Position | None = None,
) -> tuple[str, list[Any]]:  # fmt: skip
    """A page of the cases of this number and/or this phone: ``limit`` from ``offset``, or
    after / just before a position (read upwards from it), in the case list's order — of a
    phone's cases, their positions read first, then the page's cases by their key."""
    args = _Args()
    order = ("c.received_at, c.case_id DESC" if before is not None
             else "c.received_at DESC, c.case_id")  # fmt: skip
    if phone is None:
        head, table = f"SELECT {_COLUMNS} FROM cases c WHERE c.case_id = {args.add(case_id)}", "c."
    else:
        head, table = _listed(args, case_id, phone, "c.case_id, c.received_at"), "l."
        head += ", page AS (SELECT l.case_id FROM listed l WHERE true"
    if after is not None:
        head += " AND " + case_service.after_sql(args.add(after[0]), args.add(after[1]), table)
    if before is not None:
        head += " AND " + case_service.above_sql(args.add(before[0]), args.add(before[1]), table)
    cut = f"LIMIT {args.add(limit)} OFFSET {args.add(offset)}"
    if phone is None:
        return f"{head} ORDER BY {order} {cut}", args
    return (f"{head} ORDER BY {order.replace('c.', 'l.')} {cut}) "
            f"SELECT {_COLUMNS} FROM page JOIN cases c USING (case_id) ORDER BY {order}",
            args)  # fmt: skip


def counts_sql(
    case_id: str | None, phone: str | None, before: Position | None = None
) -> tuple[str, list[Any]]:
    """How many cases of this number and/or this phone are above ``before`` (0 without it)
    and how many in all (共 N 件): one statement, so that a phone's cases are read once for
    both."""
    args = _Args()
    if phone is None:
        head, table = "", f" FROM cases c WHERE c.case_id = {args.add(case_id)}"
    else:  # 共 N 件 alone reads the cases' key only (an index-only scan), as it did
        columns = "c.case_id" + (", c.received_at" if before is not None else "")
        head, table = _listed(args, case_id, phone, columns), " FROM listed c"
    above = "0"
    if before is not None:
        where = case_service.above_sql(args.add(before[0]), args.add(before[1]), "c.")
        above = f"count(*) FILTER (WHERE {where})"
    return f"{head} SELECT {above}, count(*){table}", args


@dataclass(frozen=True)
class _Search:
    """The cases of a number and/or a phone, as api.console.paging reads a search."""

    case_id: str | None
    phone: str | None

    async def rows(
        self, conn: asyncpg.Connection, *, limit: int, offset: int = 0,
        after: Position | None = None, before: Position | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """The page's cases, newest first, each with ``merged``: the phone is a later
        reporter's (并单), not its own intake's."""
        statement, args = page_sql(self.case_id, self.phone, limit=limit, offset=offset,
                                   after=after, before=before)  # fmt: skip
        rows = [dict(r) for r in await conn.fetch(statement, *args)]
        if before is not None:
            rows.reverse()
        own: set[str] = set()
        if self.phone is not None:
            found = await conn.fetch(_OWN, self.phone, [r["case_id"] for r in rows])
            own = {r["case_id"] for r in found}
        for row in rows:
            row["merged"] = self.phone is not None and row["case_id"] not in own
        return rows

    async def counts(
        self, conn: asyncpg.Connection, before: Position | None = None
    ) -> tuple[int, int]:
        statement, args = counts_sql(self.case_id, self.phone, before)
        above, total = await conn.fetchrow(statement, *args)
        return int(above), int(total)


@router.get("/lookup", response_class=HTMLResponse)
async def lookup(
    request: Request, pool: Pool, session: Looker, case_id: Typed = None, phone: Typed = None,
    page_number: paging.PageNumber = 1, after: paging.Cursor = None,
    before: paging.Cursor = None,
) -> Response:  # fmt: skip
    """The form, and with a case number or a phone number the cases found, a page at a
    time: ``page`` (by offset: a bookmark, the first page) or the page after or before a
    row's position (``after`` / ``before``: its 下一页 and 上一页, api.console.paging), one of
    them; the page, its 第 a–b 件 and its 共 N 件 read in one snapshot."""
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
    try:
        position = paging.position(request.query_params, after, before)
    except paging.BadPosition as refused:
        return page(request, "lookup.html", {**context, "error": str(refused)}, 422)
    search = _Search(wanted, number)
    shown, first, total = await paging.read(pool, search.rows, search.counts, page_number, SHOWN,
                                            **position)  # fmt: skip
    if number and shown:  # each case listed is a view of its citizen's (or reporter's) phone
        viewer = case_service.viewer_of(session.principal)
        for row in shown:
            await content_service.record_view(
                pool, row["case_id"], viewer, (ContentField.CITIZEN_PHONE,)
            )
    now = datetime.now(UTC)
    context.update(
        searched=True,
        paged=paging.links(f"{PREFIX}/lookup", {"case_id": case_id, "phone": phone},
                           request.query_params, shown, first, total, page_number, SHOWN),
        cases=[{**r, "late": is_late(r, now)} for r in shown],
    )  # fmt: skip
    return page(request, "lookup.html", context)
