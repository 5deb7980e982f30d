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
from collections.abc import Callable
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
# The cases whose intake, or one of whose repeat reports (并单), gave this phone, by the
# normal form of migration 0036 (its digits, no +86 before a mobile) on both sides, so
# "138 1234 5678" finds "+86 138-1234-5678". Two arms, each read from its index and joined to
# its cases by their key, never scanned in the cases' own order:
#
# - the phone's own cases: its intakes in the list's order (migration 0046's
#   intakes_citizen_phone_listed on intakes.citizen_phone, received_at DESC, case_id — an
#   intake's received_at is its case's, both written from the one report's), so a page reads
#   its own rows from a position and stops, and a count reads the index's entries only;
# - the cases it reported later (并单): repeat_reports_citizen_phone (0036) finds them, and
#   their cases give their place in the list (a phone's repeat reports are read whole).
_OWN_ARM = """
SELECT {select} FROM intakes i JOIN cases c USING (case_id)
WHERE i.state = 'started' AND i.citizen_phone = citizen_phone_digits({phone}){where}"""
_REPORTED_ARM = """
SELECT {select} FROM repeat_reports r JOIN cases c USING (case_id)
WHERE r.state = 'started' AND r.payload -> 'intake' -> 'citizen' ->> 'phone' IS NOT NULL
  AND citizen_phone_digits(r.payload -> 'intake' -> 'citizen' ->> 'phone')
      = citizen_phone_digits({phone}){where}"""
# A reported case that is also the phone's own is counted once, in the own arm.
_NOT_OWN = """ AND NOT EXISTS (SELECT FROM intakes i WHERE i.case_id = c.case_id
  AND i.state = 'started' AND i.citizen_phone = citizen_phone_digits({phone}))"""
# The cases among $2 whose own intake gave the phone $1 (the others it reported later: 并单).
_OWN = """
SELECT case_id FROM intakes WHERE case_id = ANY($2::text[])
  AND citizen_phone = citizen_phone_digits($1)
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


def _arms(
    args: _Args, case_id: str | None, phone: str, where: Callable[[str], str], select: str
) -> tuple[str, str]:
    """The own and the reported arm of a phone's cases (and number), ``select`` of each
    (``{t}``: its table's alias), ``where(alias)`` added to each (a position's range)."""
    at = args.add(phone)
    number = args.add(case_id) if case_id is not None else None

    def arm(sql: str, t: str) -> str:
        extra = (f" AND {t}case_id = {number}" if number else "") + where(t)
        return sql.format(select=select.format(t=t), phone=at, where=extra)

    return arm(_OWN_ARM, "i."), arm(_REPORTED_ARM, "c.") + _NOT_OWN.format(phone=at)


def _position(args: _Args, after: Position | None, before: Position | None) -> Callable[[str], str]:
    """The range of the rows after / before a position (none: all), for a table's alias."""
    if after is not None:
        x, y = args.add(after[0]), args.add(after[1])
        return lambda t: " AND " + case_service.after_sql(x, y, t)
    if before is not None:
        x, y = args.add(before[0]), args.add(before[1])
        return lambda t: " AND " + case_service.above_sql(x, y, t)
    return lambda t: ""


def page_sql(
    case_id: str | None, phone: str | None, *, limit: int, offset: int = 0,
    after: Position | None = None, before: Position | None = None,
) -> tuple[str, list[Any]]:  # fmt: skip
    """A page of the cases of this number and/or this phone: ``limit`` from ``offset``, or
    after / just before a position (read upwards from it), in the case list's order. By
    phone: each arm (:func:`_arms`) reads its first ``limit + offset`` from the position in
    that order and stops (the own arm from its index, in order), the page is the first
    ``limit`` of both after ``offset``."""
    args = _Args()
    order = "received_at, case_id DESC" if before is not None else "received_at DESC, case_id"
    within = _position(args, after, before)
    if phone is None:
        where = f"c.case_id = {args.add(case_id)}" + within("c.")
        cut = f"LIMIT {args.add(limit)} OFFSET {args.add(offset)}"
        return (
            f"SELECT {_COLUMNS} FROM cases c WHERE {where} ORDER BY {_by('c.', order)} {cut}",
            args,
        )
    own, reported = _arms(args, case_id, phone, within, "{t}case_id")
    first = args.add(limit + offset)
    cut = f"LIMIT {args.add(limit)} OFFSET {args.add(offset)}"
    arms = (f"({own}\nORDER BY {_by('i.', order)} LIMIT {first})\nUNION\n"
            f"({reported}\nORDER BY {_by('c.', order)} LIMIT {first})")  # fmt: skip
    return (f"SELECT {_COLUMNS} FROM ({arms}) page JOIN cases c USING (case_id) "
            f"ORDER BY {_by('c.', order)} {cut}", args)  # fmt: skip


def _by(alias: str, order: str) -> str:
    """``order`` ("received_at DESC, case_id") of the table ``alias`` ("c.")."""
    return ", ".join(alias + part.strip() for part in order.split(","))


def counts_sql(
    case_id: str | None, phone: str | None, before: Position | None = None
) -> tuple[str, list[Any]]:
    """How many cases of this number and/or this phone are above ``before`` (0 without it)
    and how many in all (共 N 件): one statement. By phone, the own arm's cases are counted
    from its index (index-only: its intakes' rows are not read; each is looked up in
    cases_pkey, as a case not in the read model yet is not listed), the reported arm's
    without those."""
    args = _Args()
    if phone is None:
        table = f" FROM cases c WHERE c.case_id = {args.add(case_id)}"
    else:
        own, reported = _arms(args, case_id, phone, lambda t: "",
                              "{t}case_id, {t}received_at")  # fmt: skip
        # a case the phone reported twice (two repeat reports) is one case
        table = f" FROM ({own}\nUNION ALL\nSELECT DISTINCT * FROM ({reported}) r) c"
    above = "0"
    if before is not None:
        where = case_service.above_sql(args.add(before[0]), args.add(before[1]), "c.")
        above = f"count(*) FILTER (WHERE {where})"
    return f"SELECT {above}, count(*){table}", args


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
