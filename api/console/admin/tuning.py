"""时限参数 and 通知模板: the run-time policy values (SLA limits, lifecycle windows) with their
defaults, and the notification templates — through jiesu.admin.policy and
jiesu.admin.templates, like ``/api/v1/admin/policy`` and ``/notification-templates``."""

from __future__ import annotations

import math
from typing import get_args

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from api.console.admin.forms import FormErrors, invalid, refused, text
from api.console.web import PREFIX, form_of, page, redirect, require_roles
from api.deps import AppSettings, Pool
from jiesu.admin import policy, templates
from jiesu.admin.errors import AdminRefused
from jiesu.case import glossary
from jiesu.case.domain import EventKind
from jiesu.notify.notices import RecipientKind
from jiesu.notify.templates import FIELDS

router = APIRouter()
Admin = require_roles()  # admins only

_UNITS = {"hours": "小时", "working hours": "工作小时", "minutes": "分钟", "count": "次",
          "days": "天"}  # fmt: skip
_EVENTS = frozenset(e.value for e in EventKind)
_RECIPIENTS = {"department": "承办单位", "citizen": "诉求人", "supervisor": "督办人员"}
# The template form's labels (admin_templates.html shows them; refusals name fields by them).
TEMPLATE_LABELS = {"event_kind": "事件", "recipient_kind": "接收方", "subject": "标题",
                   "body": "正文"}  # fmt: skip


async def _policy_page(
    request: Request, pool: Pool, session: object, settings: AppSettings, *,
    errors: FormErrors | None = None, failed: str | None = None, done: str | None = None,
) -> HTMLResponse:  # fmt: skip
    context = {"session": session, "values": await policy.list_values(pool, settings),
               "units": _UNITS, "errors": (errors or FormErrors()).messages, "failed": failed,
               "done": done}  # fmt: skip
    return page(request, "admin_policy.html", context, errors.status if errors else 200)


@router.get("/admin/policy", response_class=HTMLResponse)
async def values(
    request: Request, pool: Pool, session: Admin, settings: AppSettings, done: str | None = None
) -> Response:
    return await _policy_page(request, pool, session, settings, done=done)


async def _set(
    request: Request, name: str, pool: Pool, session: Admin, settings: AppSettings, *,
    reset: bool,
) -> Response:  # fmt: skip
    form = await form_of(request, session)
    value: float | None = None
    if not reset:
        try:
            value = float(text(form, "value"))
        except ValueError:
            value = math.nan
        if not math.isfinite(value):  # as the API's allow_inf_nan=False
            errors = FormErrors().add("value", "请输入数字 — a finite number")
            return await _policy_page(request, pool, session, settings, errors=errors,
                                      failed=name)  # fmt: skip
    try:
        await policy.set_value(pool, session.principal.actor, settings, name, value)
    except AdminRefused as exc:
        return await _policy_page(request, pool, session, settings, errors=refused(exc),
                                  failed=name)  # fmt: skip
    return redirect(f"{PREFIX}/admin/policy?done={name}")


@router.post("/admin/policy/{name}", response_class=HTMLResponse)
async def set_value(
    request: Request, name: str, pool: Pool, session: Admin, settings: AppSettings
) -> Response:
    """For deadlines computed from now on; a running round keeps what it recorded."""
    return await _set(request, name, pool, session, settings, reset=False)


@router.post("/admin/policy/{name}/reset", response_class=HTMLResponse)
async def reset(
    request: Request, name: str, pool: Pool, session: Admin, settings: AppSettings
) -> Response:
    """恢复默认: back to the environment's value."""
    return await _set(request, name, pool, session, settings, reset=True)


# --- notification templates ------------------------------------------------------------------


async def _templates_page(
    request: Request, pool: Pool, session: object, *, values: dict[str, str] | None = None,
    errors: FormErrors | None = None, done: str | None = None,
) -> HTMLResponse:  # fmt: skip
    context = {"session": session, "templates": await templates.list_templates(pool),
               "event_kinds": [(e.value, glossary.term(EventKind, e)) for e in EventKind],
               "recipients": [(r, _RECIPIENTS[r]) for r in get_args(RecipientKind)],
               "fields": sorted(FIELDS), "values": values or {},
               "errors": (errors or FormErrors()).messages, "done": done,
               "labels": TEMPLATE_LABELS}  # fmt: skip
    return page(request, "admin_templates.html", context, errors.status if errors else 200)


@router.get("/admin/notification-templates", response_class=HTMLResponse)
async def template_list(
    request: Request, pool: Pool, session: Admin, edit: str | None = None,
    done: str | None = None,
) -> Response:  # fmt: skip
    """``edit``: event/recipient — the form filled with that template."""
    values = {}
    for t in await templates.list_templates(pool):
        if f"{t.event_kind.value}/{t.recipient_kind}" == edit:
            values = {"event_kind": t.event_kind.value, "recipient_kind": t.recipient_kind,
                      "subject": t.subject, "body": t.body}  # fmt: skip
    return await _templates_page(request, pool, session, values=values, done=done)


def _target(event_kind: str, recipient_kind: str) -> tuple[EventKind, RecipientKind]:
    if event_kind not in _EVENTS or recipient_kind not in get_args(RecipientKind):
        raise HTTPException(404)
    return EventKind(event_kind), recipient_kind  # type: ignore[return-value]


@router.post("/admin/notification-templates", response_class=HTMLResponse)
async def put_template(request: Request, pool: Pool, session: Admin) -> Response:
    form = await form_of(request, session)
    values = {k: text(form, k) for k in ("event_kind", "recipient_kind", "subject", "body")}
    errors = FormErrors()
    if values["event_kind"] not in _EVENTS:
        errors.add("event_kind", "没有此事件类型 — unknown event kind")
    if values["recipient_kind"] not in get_args(RecipientKind):
        errors.add("recipient_kind", "没有此接收方 — unknown recipient kind")
    if not errors:
        event, recipient = _target(values["event_kind"], values["recipient_kind"])
        try:
            body = templates.TemplateIn(subject=values["subject"], body=str(form.get("body") or ""))
            await templates.put_template(pool, session.principal.actor, event, recipient, body)
        except ValidationError as err:
            errors = invalid(err, TEMPLATE_LABELS)
        else:
            return redirect(f"{PREFIX}/admin/notification-templates?done={event.value}/{recipient}")
    return await _templates_page(request, pool, session, values=values, errors=errors)


@router.post("/admin/notification-templates/{event_kind}/{recipient_kind}/delete",
             response_class=HTMLResponse)
async def delete_template(
    request: Request, event_kind: str, recipient_kind: str, pool: Pool, session: Admin
) -> Response:
    """恢复内置措辞: back to the built-in wording."""
    await form_of(request, session)
    event, recipient = _target(event_kind, recipient_kind)
    try:
        await templates.delete_template(pool, session.principal.actor, event, recipient)
    except AdminRefused as exc:
        return await _templates_page(request, pool, session, errors=refused(exc))
    return redirect(f"{PREFIX}/admin/notification-templates?done={event.value}/{recipient}")
