"""派单目录: the routing catalogue with its effective dates — the rules in force, those
scheduled to come into force, every version; add a rule, retire one, replace one by its
successor, and each rule's history. Through jiesu.admin.routing, like
``/api/v1/admin/routing-rules``; the form's times are the hotline's local time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from api.console.admin.forms import (
    FormErrors,
    invalid,
    local_time,
    optional,
    refused,
    text,
)
from api.console.web import PREFIX, form_of, page, redirect, require_roles
from api.deps import AppSettings, Pool
from jiesu.admin import changes, reference, routing
from jiesu.admin.errors import AdminRefused

router = APIRouter()
Admin = require_roles()  # admins only
RuleId = Annotated[int, Path(ge=1, lt=2**31)]
# The forms' labels (admin_rules.html, admin_rule.html show them; refusals name fields by
# them), by the model's field names.
RULE_LABELS = {"category_id": "诉求分类", "area_id": "区域", "department_id": "承办单位",
               "priority": "优先级", "valid_from": "生效时间", "valid_to": "失效时间"}  # fmt: skip
RETIRE_LABELS = {"at": "失效时间"}
REPLACE_LABELS = {"department_id": "新承办单位", "priority": "优先级", "at": "替换时间"}


async def _names(pool: Pool) -> dict[str, dict[str, str]]:
    """Ids → names, for the pickers and the table."""
    return {
        key: {r["id"]: r["name"] for r in await reference.list_records(pool, table)}
        for key, table in (("categories", reference.CATEGORIES), ("areas", reference.AREAS),
                           ("departments", reference.DEPARTMENTS))
    }  # fmt: skip


async def _rules(pool: Pool, every_version: bool, category_id: str | None) -> dict[str, Any]:
    """In force now and scheduled (valid_from later), or every version ever written."""
    now = datetime.now(UTC)
    if every_version:
        return {"all": await routing.list_rules(pool, every_version=True, category_id=category_id)}
    written = await routing.list_rules(pool, every_version=True, category_id=category_id)
    return {
        "in_force": await routing.list_rules(pool, as_of=now, category_id=category_id),
        "scheduled": [r for r in written if r.valid_from is not None and r.valid_from > now],
    }


async def _page(
    request: Request, pool: Pool, session: object, *, every_version: bool = False,
    category_id: str | None = None, values: dict[str, str] | None = None,
    errors: FormErrors | None = None, done: str | None = None,
) -> HTMLResponse:  # fmt: skip
    context = {"session": session, "names": await _names(pool), "values": values or {},
               "errors": (errors or FormErrors()).messages, "done": done,
               "every_version": every_version, "category_id": category_id or "",
               "labels": RULE_LABELS,
               **await _rules(pool, every_version, category_id)}  # fmt: skip
    return page(request, "admin_rules.html", context, errors.status if errors else 200)


@router.get("/admin/routing-rules", response_class=HTMLResponse)
async def rules(
    request: Request, pool: Pool, session: Admin, every_version: bool = False,
    category_id: str | None = None, done: str | None = None,
) -> Response:  # fmt: skip
    return await _page(request, pool, session, every_version=every_version,
                       category_id=category_id or None, done=done)  # fmt: skip


def _rule_in(form: FormData, tz: ZoneInfo) -> dict[str, Any]:
    return {"category_id": text(form, "category_id"), "area_id": optional(form, "area_id"),
            "department_id": text(form, "department_id"),
            "priority": text(form, "priority") or 0,
            "valid_from": local_time(form, "valid_from", tz),
            "valid_to": local_time(form, "valid_to", tz)}  # fmt: skip


@router.post("/admin/routing-rules", response_class=HTMLResponse)
async def add(request: Request, pool: Pool, session: Admin, settings: AppSettings) -> Response:
    """新增规则: in force from the time typed (default now); a double post adds it once."""
    form = await form_of(request, session)
    try:
        body = routing.RuleIn.model_validate(_rule_in(form, ZoneInfo(settings.timezone)))
        rule, _ = await routing.add_rule(pool, session.principal.actor, body)
    except ValidationError as err:
        errors = invalid(err, RULE_LABELS)
    except AdminRefused as exc:
        errors = refused(exc)
    else:
        return redirect(f"{PREFIX}/admin/routing-rules?done={rule.id}")
    values = {k: str(v) for k, v in form.items()}
    return await _page(request, pool, session, values=values, errors=errors)


async def _rule_page(
    request: Request, pool: Pool, session: object, settings: AppSettings, rule_id: int, *,
    errors: FormErrors | None = None, done: str | None = None,
) -> HTMLResponse:  # fmt: skip
    try:
        rule = await routing.get_rule(pool, rule_id)
    except AdminRefused as exc:
        errors, rule = refused(exc), None
    history = await changes.list_changes(pool, entity=routing.ENTITY, entity_id=str(rule_id))
    now = datetime.now(UTC)
    # A rule may be retired or replaced until it is out of force (a set end may be brought
    # forward).
    changeable = rule is not None and (rule.valid_to is None or rule.valid_to > now)
    context = {"session": session, "rule": rule, "history": history, "names": await _names(pool),
               "errors": (errors or FormErrors()).messages, "done": done,
               "changeable": changeable, "retire_labels": RETIRE_LABELS,
               "replace_labels": REPLACE_LABELS}  # fmt: skip
    return page(request, "admin_rule.html", context, errors.status if errors else 200)


@router.get("/admin/routing-rules/{rule_id}", response_class=HTMLResponse)
async def rule_page(
    request: Request, rule_id: RuleId, pool: Pool, session: Admin, settings: AppSettings,
    done: str | None = None,
) -> Response:  # fmt: skip
    """One rule: its validity, its history (每次变更), retire and replace forms."""
    return await _rule_page(request, pool, session, settings, rule_id, done=done)


@router.post("/admin/routing-rules/{rule_id}/retire", response_class=HTMLResponse)
async def retire(
    request: Request, rule_id: RuleId, pool: Pool, session: Admin, settings: AppSettings
) -> Response:
    """停用: out of force from the time typed (default now)."""
    form = await form_of(request, session)
    tz = ZoneInfo(settings.timezone)
    try:
        body = routing.Retirement.model_validate({"at": local_time(form, "at", tz)})
        await routing.retire_rule(pool, session.principal.actor, rule_id, body)
    except ValidationError as err:
        errors = invalid(err, RETIRE_LABELS, field_of={"at": "retire_at"})
    except AdminRefused as exc:
        errors = refused(exc, field_of={"invalid_validity": "retire_at"})
    else:
        return redirect(f"{PREFIX}/admin/routing-rules/{rule_id}?done=retire")
    return await _rule_page(request, pool, session, settings, rule_id, errors=errors)


@router.post("/admin/routing-rules/{rule_id}/replace", response_class=HTMLResponse)
async def replace(
    request: Request, rule_id: RuleId, pool: Pool, session: Admin, settings: AppSettings
) -> Response:
    """改派: the rule retires and its successor comes into force at the same moment."""
    form = await form_of(request, session)
    tz = ZoneInfo(settings.timezone)
    fields = {"at": local_time(form, "at", tz), "department_id": text(form, "department_id"),
              "priority": optional(form, "priority")}  # fmt: skip
    try:
        body = routing.Replacement.model_validate(fields)
        _, successor = await routing.replace_rule(pool, session.principal.actor, rule_id, body)
    except ValidationError as err:
        errors = invalid(err, REPLACE_LABELS,
                         field_of={"at": "replace_at", "priority": "replace_priority"})
    except AdminRefused as exc:
        errors = refused(exc, field_of={"invalid_validity": "replace_at"})
    else:
        return redirect(f"{PREFIX}/admin/routing-rules/{successor.id}?done=replace")
    return await _rule_page(request, pool, session, settings, rule_id, errors=errors)
