"""承办: a department's inbox (its cases by the nearest deadline, with live countdowns and
breach marks) and the case page every staff member shares: content, contact, the timeline in
plain words, and the actions the lifecycle allows now."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from api import actions as api_actions
from api import cases as case_service
from api.console import case_words, event_words, notice_words, staff
from api.console.actions import BY_NAME, allowed_actions, done_words, not_yet
from api.console.files import files_of
from api.console.queue import deadlines_wait_for_dispatch, queued_since
from api.console.web import (
    PREFIX,
    Session,
    choice_names,
    error_page,
    field_label,
    form_of,
    local_time,
    page,
    redirect,
    require_roles,
    validation_message,
)
from api.deps import AppSettings, CaseId, Pool, Principal, Temporal, is_cross_site
from api.errors import ApiError, not_found
from jiesu.access import content as content_service
from jiesu.admin.departments import IN_SERVICE
from jiesu.case import glossary, lifecycle
from jiesu.case.domain import (
    HANDLER_ROLES,
    CaseState,
    EventKind,
    Role,
    Status,
    SupervisionForm,
)
from jiesu.case.sla import is_late, next_deadline
from jiesu.notify.outbox import NOTICE_CITIZEN

router = APIRouter()
HandlingStaff = require_roles(*HANDLER_ROLES)

# The open cases held (主办) or co-handled (协办) by any of the units $1: a clerk's department,
# or a grid worker's grid units.
_INBOX = """
SELECT case_id, status, title, category_id, grid_id, urgency, department_id, received_at,
       accept_deadline, contact_deadline, finish_deadline, accepted_at, contacted_at, breaches,
       escalation_level, rehandle_count, NOT (department_id = ANY($1::text[])) AS co_handled,
       (SELECT c FROM jsonb_array_elements(state -> 'co_handlers') c
        WHERE c ->> 'department_id' = ANY($1::text[])
          AND NOT coalesce((c ->> 'waived')::boolean, false) LIMIT 1) AS co_handling
FROM cases
WHERE status <> $2 AND (department_id = ANY($1::text[])
      OR EXISTS (SELECT 1 FROM jsonb_array_elements(state -> 'co_handlers') c
                 WHERE c ->> 'department_id' = ANY($1::text[])
                   AND NOT coalesce((c ->> 'waived')::boolean, false)))
"""
# (a co-handler the centre released, 免除协办, has no more work on the case: not listed —
# jiesu.access.content masks its content too)


def co_handler_choices(state: CaseState, departments: list[Any]) -> list[Any]:
    """The units the 会办 pickers offer: the forms' departments (not the centre) the case can
    still convene as co-handlers, by the lifecycle's own rule (not its lead, not a co-handler
    already) — the others would be refused once sent."""
    allowed = set(lifecycle.co_handler_choices(state, [d["id"] for d in departments]))
    return [d for d in departments if d["id"] in allowed]


def _far_future() -> datetime:
    return datetime.max.replace(tzinfo=UTC)


CONTRIBUTION_DUE = "协办意见期限"


def _owed_by_co_handler(row: dict[str, Any], now: datetime) -> None:
    """A co-handled row (协办) says what the co-handling unit owes, not the lead's steps: its
    contribution and the deadline the centre set for it (会办), or that it was given — before,
    the co-handler's inbox showed the lead's 签收时限 and sorted and marked late by it, a
    deadline the co-handler can neither meet nor miss."""
    co = row["co_handling"] or {}
    due = datetime.fromisoformat(co["due"]) if co.get("due") else None
    given = bool(co.get("contributed_at"))
    row["next"] = None if given or due is None else (CONTRIBUTION_DUE, due)
    row["said"] = "已提交协办意见" if given else ("待提交协办意见" if due is None else "")
    row["late"] = not given and due is not None and due < now


@router.get("/inbox", response_class=HTMLResponse)
async def inbox(request: Request, pool: Pool, session: HandlingStaff) -> Response:
    """The department's (a grid worker's: their grid units') open cases, the nearest
    deadline first."""
    units = sorted(session.principal.handles)
    rows = [dict(r) for r in await pool.fetch(_INBOX, units, Status.CLOSED.value)]
    now = datetime.now(UTC)
    for row in rows:
        if row["co_handled"]:
            _owed_by_co_handler(row, now)
            continue
        row["next"] = next_deadline(row)
        if row["next"]:
            row["next"] = (glossary.DEADLINE[row["next"][0]], row["next"][1])
        row["said"] = "已答复，待诉求人评价" if row["status"] == Status.REPLIED else ""
        row["late"] = is_late(row, now)
    rows.sort(key=lambda r: (r["next"][1] if r["next"] else _far_future(), r["case_id"]))
    names = dict(await pool.fetch("SELECT id, name FROM categories"))
    return page(request, "inbox.html", {"session": session, "cases": rows, "categories": names})


async def case_content(
    pool: Pool, state: CaseState, principal: Principal, *, withheld: bool = False
) -> content_service.CaseContent | None:
    """What the citizen reported, as this person may see it: masked where the content
    service masks it (jiesu.access.content), and every unmasked view recorded for the
    auditors — the same answer as ``GET /api/v1/cases/{id}/content``. ``withheld``: the page
    was opened from another site's page, which may have sent the person here on purpose to
    put a view of this citizen's data in their name: all masked, nothing recorded, and the
    page offers to show it (a click on our own page)."""
    viewer = case_service.viewer_of(principal)
    return await content_service.view_content(pool, state, viewer, withheld=withheld)


async def people_names(pool: Pool, state: CaseState) -> dict[str, str]:
    """The display names of the staff who acted on the case (by login)."""
    logins = sorted({e.actor.person for e in state.events if e.actor.person})
    rows = await pool.fetch("SELECT login, display_name FROM staff WHERE login = ANY($1)", logins)
    return {r["login"]: r["display_name"] for r in rows}


def timeline(
    state: CaseState, names: dict[str, str], people: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """办理经过 in Chinese (api.console.event_words), the moments in the hotline's time; the
    auditor's timeline keeps its English (jiesu.audit.timeline)."""
    words = event_words.Words(names, local_time, people)
    return [
        {"at": e.at, "kind": e.kind, "who": event_words.who(e.actor, words, e.kind),
         "summary": said}
        for e, said in event_words.timeline(state.events, words)
    ]


def rehandling(state: CaseState) -> dict[str, Any] | None:
    """重办: the case came back after the citizen was not satisfied with the reply — which
    重办 this is, the citizen's words, and the reply they were not satisfied with (its 办结答复
    card goes with the round). None when the case is not in a 重办 round (no unsatisfied
    rating, or the round's own reply given)."""
    if not state.unsatisfied_rounds or state.reply is not None or state.status is Status.CLOSED:
        return None
    started = [e for e in state.events if e.kind is EventKind.REHANDLE_STARTED]
    if not started:
        return None
    last = started[-1]
    replies = [e for e in state.events if e.kind is EventKind.REPLIED and e.seq < last.seq]
    return {
        "n": last.data.get("unsatisfied_rounds") or state.unsatisfied_rounds,
        "reason": last.data.get("reason") or "",
        "reply": replies[-1].data.get("text") if replies else None,
        "reply_at": replies[-1].at if replies else None,
    }


def extension_window(state: CaseState, now: datetime) -> tuple[datetime, datetime] | None:
    """The promised dates the lifecycle accepts now (check_extension): after the current
    finish deadline, at most the policy's days from now. Shown by the extension form (and as
    its picker's bounds), so the clerk need not learn them from a refusal."""
    if state.deadlines is None:
        return None
    return state.deadlines.finish, now + timedelta(days=state.deadlines.max_extension_days)


def unsaved_text(
    failed: str | None, posted: FormData | None, offered: list[Any]
) -> list[tuple[str, str]]:
    """What was typed in a refused form the page no longer offers (a reply sent from a stale
    page after the case was replied to): (label, text) for each filled field, shown next to
    the refusal so the person can copy it — before, it was lost with the form."""
    if not failed or posted is None or any(a.name == failed for a in offered):
        return []
    labels = BY_NAME[failed].labels if failed in BY_NAME else {}
    typed = []
    for name, value in posted.multi_items():
        text = str(value).strip()
        if name in _NOT_TYPED or name.endswith(("_id", "_ids")) or not text:
            continue  # the page's own fields, and choices of a select (codes)
        text = (choice_names(name) or {}).get(text, text)  # a select's choice by its name
        typed.append((field_label(name, labels) or name, text))
    return typed


_NOT_TYPED = frozenset({"csrf_token", "key", "approved", "upheld"})


_SMS_TAIL = re.compile(r"[0-9]{4}")  # ASCII only: \d and str.isdigit() take any script's


def sms_tail(said: str | None) -> str | None:
    """The last four digits of the number the intake SMS goes to, from the case page's URL
    (``?sms=``, written by the console's intake: api/console/intake.py sms_to), to tell the
    operator; None when it is anything but four ASCII digits (a link may carry any text —
    １２３４ full-width is no phone's tail)."""
    return said if said is not None and _SMS_TAIL.fullmatch(said) else None


# 告知诉求人: what became of each notice to the case's citizen(s), in words an operator acts on
# (api/console/notice_words.py). Whether a skipped notice's citizen left a phone is read as the
# outbox and the doctor read the citizen (NOTICE_CITIZEN; citizen_not_told lists only those).
_CITIZEN_NOTICES = f"""
SELECT n.event_kind, n.status, n.channel,
       n.status = 'skipped' AND {NOTICE_CITIZEN} ->> 'phone' IS NULL AS no_contact
FROM notifications n
WHERE n.case_id = $1 AND n.recipient_kind = 'citizen'
ORDER BY n.event_seq, n.id
"""


async def citizen_notices(pool: Pool, case_id: str) -> list[tuple[str, str, bool]]:
    """(what, what became of it, whether to call back) for each notice of the case to a
    citizen, oldest first: an SMS the outbox skipped (a landline with no e-mail,
    jiesu.notify.outbox) or gave up on is said, so the operator knows to call back; one
    skipped because the citizen left no contact at all is said as such, with no call to make
    (before, it was said as a landline's, 请电话告知诉求人, with no number to call)."""
    rows = await pool.fetch(_CITIZEN_NOTICES, case_id)
    return [
        (notice_words.NOTICE_LABELS.get(r["event_kind"], "通知"),
         _said(r["status"], r["channel"], no_contact=r["no_contact"]),
         r["status"] in ("skipped", "failed") and not r["no_contact"])
        for r in rows
    ]


def _said(status: str, channel: str, *, no_contact: bool = False) -> str:
    """What became of a notice; a sent one by what it went as (the outbox records the channel
    it was sent by: an e-mail to a citizen whose phone takes no SMS), so the operator can
    tell the caller where to look."""
    if status == "sent":
        return "已发送" + notice_words.SENT_AS.get(channel, "")
    if no_contact:
        return notice_words.NO_CONTACT
    return notice_words.NOTICE_SAID.get(status, status)


async def _case_page(
    request: Request, session: staff.StaffSession, pool: Pool, client: Temporal,
    settings: AppSettings, case_id: str, *, error: str | None = None, status_code: int = 200,
    failed: str | None = None, posted: FormData | None = None, refused: ApiError | None = None,
) -> Response:  # fmt: skip
    """``failed``: the action whose form was refused, shown again with what was ``posted``;
    ``refused``: the API's refusal of it, said with the status the case is in now."""
    principal = session.principal
    withheld = is_cross_site(request)
    found = await case_service.sourced_state(
        client, pool, case_id, principal, settings.query_timeout_seconds
    )
    # withheld: the content the events carry (补充诉求, 并单, evidence) is hidden too
    viewer = case_service.viewer_of(principal)
    state = content_service.masked_case(viewer, found.state, withheld=withheld)
    # every unit by name for 办理经过 (the centre's and retired ones included); for the forms,
    # all but the centre and those out of service (停用: the API would refuse them)
    units = await pool.fetch(f"SELECT id, name, level, {IN_SERVICE} AS serving"
                             " FROM departments d ORDER BY level, id")
    departments = [u for u in units if u["level"] != "centre" and u["serving"]]
    retired = {u["id"] for u in units if not u["serving"]}
    choices = co_handler_choices(found.state, departments)  # 会办's pickers
    if refused is not None and failed in BY_NAME:
        error = glossary.refusal_of(
            refused.code, refused.message, BY_NAME[failed].label, found.state.status
        )
    context = {
        "session": session, "state": state, "source": found.source,
        "content": await case_content(pool, state, principal, withheld=withheld),
        "files": await files_of(pool, principal, found.state, withheld=withheld),  # 附件
        "withheld": withheld, "timeline": timeline(
            state, {u["id"]: u["name"] for u in units}, await people_names(pool, state)),
        "actions": [a for a in allowed_actions(state, principal, retired)
                    if a.name != "co-handlers" or choices],  # 会办 with no unit left: not offered
        "not_yet": not_yet(state, principal),  # a form withheld until…, and why
        "departments": departments, "co_handler_choices": choices,
        # a unit out of service (停用) still holding the case: said beside its name
        "retired_units": retired,
        "pending_co_handlers": [c for c in state.co_handlers if not c.done],
        "late": state.breaches or (state.status is not Status.CLOSED and state.deadlines
                                   and state.deadlines.finish < datetime.now(UTC)),
        "categories": dict(await pool.fetch("SELECT id, name FROM categories")),
        # the grid by its name (the code after it, as the intake's picker shows it)
        "grids": dict(await pool.fetch("SELECT id, name FROM areas WHERE kind = 'grid'")),
        "supervision_forms": list(SupervisionForm),
        "error": error, "query": request.query_params,
        "sms_tail": sms_tail(request.query_params.get("sms")),
        "citizen_notices": await citizen_notices(pool, case_id),
        "failed": failed, "posted": posted,  # web.typed: the refused form again
        "unsaved": unsaved_text(failed, posted, allowed_actions(state, principal, retired)),
        "extension_window": extension_window(state, datetime.now(UTC)),
        "rehandling": rehandling(state),
        # 督办: what ends the ladder and when it climbs next (the clerk's line under the ladder)
        "ladder_next": case_words.ladder_next(state, local_time),
        "done": done_words(request.query_params.get("done")),
        # 待派单 since lean-case-v8: no deadline runs; the unit's start at dispatch
        "queued_since": queued_since(state) if deadlines_wait_for_dispatch(state) else None,
        "auditor": principal.role in (Role.AUDITOR, Role.ADMIN),
    }  # fmt: skip
    return page(request, "case.html", context, status_code)


@router.get("/cases/{case_id}", response_class=HTMLResponse)
async def case_page(
    request: Request, case_id: CaseId, session: Session, pool: Pool, client: Temporal,
    settings: AppSettings,
) -> Response:  # fmt: skip
    """The case as this person may see it: another department's case is 404, as in the API."""
    return await _case_page(request, session, pool, client, settings, case_id)


@router.get("/cases/{case_id}/actions/{name}")
async def action_opened(case_id: CaseId, name: str) -> Response:
    """A refused form's page has the action's address: reloaded from the address bar, or
    opened again, it is the case page (before: 405 "Method Not Allowed", in English)."""
    return redirect(f"{PREFIX}/cases/{case_id}")


async def _accepted_by(
    client: Temporal, pool: Pool, settings: AppSettings, case_id: str,
    session: staff.StaffSession,
) -> bool:  # fmt: skip
    """Was a refused 签收 refused because this person's unit has already accepted the case
    in this round (a second tab, a page left open)? Then nothing is wrong and the page says
    so calmly — before, a red 不能签收：该工单现在的状态是“办理中” as if it had failed."""
    principal = session.principal
    found = await case_service.sourced_state(
        client, pool, case_id, principal, settings.query_timeout_seconds
    )
    state = found.state
    return state.accepted_at is not None and state.department_id in principal.handles


@router.post("/cases/{case_id}/actions/{name}", response_class=HTMLResponse)
async def act(
    request: Request, case_id: CaseId, name: str, session: Session, pool: Pool,
    client: Temporal, settings: AppSettings,
) -> Response:  # fmt: skip
    form = await form_of(request, session)
    action = BY_NAME.get(name)
    if action is None:
        raise not_found(case_id)
    try:
        body = action.body(form, ZoneInfo(settings.timezone))
        fields = body.model_dump() if body is not None else {}
        path_values = {}
        if action.path_field:
            path_values = {action.path_field: str(form.get(action.path_field) or "")}
        result = await api_actions.run(
            action.spec, case_id=case_id, fields={**fields, **path_values},
            path_values=path_values, credential=session.principal, pool=pool, client=client,
            settings=settings, idempotency_key=str(form.get("key") or "") or None,
        )  # fmt: skip
    except ValidationError as err:
        return await _case_page(request, session, pool, client, settings, case_id,
                                error=validation_message(err, action.labels), status_code=422,
                                failed=name, posted=form)  # fmt: skip
    except ApiError as err:
        if err.status == 404:
            return error_page(request, 404, glossary.refusal(err.code, err.message))
        if name == "accept" and await _accepted_by(client, pool, settings, case_id, session):
            return redirect(f"{PREFIX}/cases/{case_id}?already=accept")
        return await _case_page(request, session, pool, client, settings, case_id,
                                status_code=err.status, failed=name, posted=form,
                                refused=err)  # fmt: skip
    outcome = "done" if result.applied else "pending"
    return redirect(f"{PREFIX}/cases/{case_id}?{outcome}={name}")
