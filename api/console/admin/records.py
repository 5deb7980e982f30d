"""基础数据: departments (承办单位), areas and grids (区域网格) and categories (诉求分类) — the
list, a form to add or replace one record (the API's ``PUT``) and its deletion, each through
jiesu.admin.reference like ``/api/v1/admin/{departments,areas,categories}``."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from api.console import form_words
from api.console.admin.forms import (
    GENERAL,
    FormErrors,
    invalid,
    local_time,
    optional,
    refused,
    text,
)
from api.console.web import PREFIX, form_of, page, redirect, require_roles
from api.console.web import local_time as shown_time
from api.deps import AppSettings, Pool, Temporal
from jiesu.admin import departments, handover, reference
from jiesu.admin.errors import AdminRefused
from jiesu.case import glossary
from jiesu.case.domain import Urgency

router = APIRouter()
Admin = require_roles()  # admins only
_ID: TypeAdapter[str] = TypeAdapter(reference.Id)
ID_RULE = "1–64 个字母、数字或 _ . -，以字母或数字开头"  # reference.ID_PATTERN in words

# The Chinese words of the service's levels and kinds (tests check that none is missing).
LEVELS = {"city": "市级", "centre": "市民热线中心", "county": "县级", "township": "乡镇（街道）",
           "village": "村（社区）"}  # fmt: skip
AREA_KINDS = {"city": "市", "county": "县", "township": "乡镇（街道）", "community": "社区（村）",
               "grid": "网格"}  # fmt: skip


@dataclass(frozen=True)
class Field:
    """One input of a record's form: ``kind`` is text, textarea, json or select."""

    name: str
    label: str
    kind: str = "text"
    required: bool = False
    choices: str | None = None  # the key of the choices in the page's context
    hint: str = ""


@dataclass(frozen=True)
class Kind:
    """One kind of record: its table (jiesu.admin.reference) and its form."""

    path: str
    title: str
    table: reference.Table
    fields: tuple[Field, ...]

    @property
    def labels(self) -> dict[str, str]:
        """Field name → the label the form shows (the refusals name the field by it)."""
        return {f.name: f.label for f in self.fields}


KINDS = {k.path: k for k in (
    Kind("departments", "承办单位", reference.DEPARTMENTS, (
        Field("name", "名称", required=True),
        Field("level", "层级", "select", True, "levels"),
        Field("parent_id", "上级单位（提级办）", "select", choices="departments"),
        Field("area_id", "所在区域", "select", choices="areas"),
    )),
    Kind("areas", "区域网格", reference.AREAS, (
        Field("name", "名称", required=True),
        Field("kind", "类型", "select", True, "area_kinds"),
        Field("parent_id", "上级区域", "select", choices="areas"),
        Field("boundary", "网格边界（GeoJSON）", "json",
              hint='GeoJSON Polygon 或 MultiPolygon，WGS 84 经纬度，例如 {"type": "Polygon", '
                   '"coordinates": [[[116.1, 39.9], [116.2, 39.9], [116.2, 40.0], '
                   '[116.1, 39.9]]]}'),
    )),
    Kind("categories", "诉求分类", reference.CATEGORIES, (
        Field("name", "名称", required=True),
        Field("default_urgency", "默认紧急程度", "select", True, "urgencies"),
        Field("description", "说明", "textarea"),
    )),
)}  # fmt: skip


def _kind(path: str) -> Kind:
    if path not in KINDS:
        raise HTTPException(404)
    return KINDS[path]


# The selects of a fixed list: (code, the name shown), in the order shown.
FIXED_CHOICES: dict[str, list[tuple[str, str]]] = {
    "levels": list(LEVELS.items()),
    "area_kinds": [(k, AREA_KINDS[k]) for k in reference.PARENT_KIND],
    "urgencies": [(u.value, glossary.term(Urgency, u)) for u in Urgency],
}


def fixed_names(kind: Kind) -> dict[str, dict[str, str]]:
    """The form's selects of a fixed list by field name, code → the name the select shows (a
    refused value is said by these names)."""
    return {f.name: dict(FIXED_CHOICES[f.choices]) for f in kind.fields
            if f.choices in FIXED_CHOICES}  # fmt: skip


async def _choices(pool: Pool) -> dict[str, list[tuple[str, str]]]:
    departments = await reference.list_records(pool, reference.DEPARTMENTS)
    areas = await reference.list_records(pool, reference.AREAS)
    return {
        **FIXED_CHOICES,
        "departments": [(d["id"], f"{d['name']} ({d['id']})" + ("（已停用）" if d["retired_at"]
                         else "")) for d in departments],
        "areas": [(a["id"], f"{a['name']} ({a['id']})") for a in areas],
    }


async def _in_service(pool: Pool) -> list[dict[str, Any]]:
    """The units a retired department's cases can be handed to (移交): in service, not the
    centre."""
    rows = await pool.fetch(
        f"SELECT d.id, d.name FROM departments d WHERE {departments.IN_SERVICE}"
        " AND d.level <> 'centre' ORDER BY d.id"
    )
    return [dict(r) for r in rows]


def _shown(record: dict[str, Any]) -> dict[str, str]:
    """A record's values as a form shows them (GeoJSON as indented text)."""
    out = {}
    for name, value in record.items():
        if name == "boundary" and value is not None:
            value = json.dumps(value if isinstance(value, dict) else json.loads(value),
                               ensure_ascii=False)  # fmt: skip
        out[name] = "" if value is None else str(value)
    return out


async def _page(
    request: Request, pool: Pool, session: object, kind: Kind, *, values: dict[str, str],
    errors: FormErrors | None = None, done: str | None = None, service: str | None = None,
) -> HTMLResponse:  # fmt: skip
    """``service``: what a department's retirement or reinstatement left pointing at it."""
    records = await reference.list_records(pool, kind.table)
    context = {"session": session, "kind": kind, "kinds": KINDS, "records": records,
               "values": values, "errors": (errors or FormErrors()).messages, "done": done,
               "choices": await _choices(pool), "shown": _shown, "now": datetime.now(UTC),
               "service": service,  # 移交's successors, on the departments page only
               "successors": await _in_service(pool) if kind.path == "departments" else [],
               }  # fmt: skip
    return page(request, "admin_records.html", context, errors.status if errors else 200)


@router.get("/admin/{path}", response_class=HTMLResponse)
async def records(
    request: Request, path: str, pool: Pool, session: Admin, edit: str | None = None,
    done: str | None = None, retired: str | None = None, reinstated: str | None = None,
    handed: str | None = None,
) -> Response:  # fmt: skip
    """The list; ``edit``: the form filled with that record, to change it; ``retired`` /
    ``reinstated``: the department just changed, and what still points at it; ``handed``:
    what a handover (移交) of a retired department's cases did."""
    kind = _kind(path)
    values: dict[str, str] = {}
    if handed and path == "departments":
        return await _page(request, pool, session, kind, values={}, service=handed[:500])
    changed = retired or reinstated
    if changed and path == "departments":
        try:
            service = _left_pointing(await departments.standing(pool, changed),
                                     "停用" if retired else "恢复启用")
        except AdminRefused as exc:
            return await _page(request, pool, session, kind, values={}, errors=refused(exc))
        return await _page(request, pool, session, kind, values={}, service=service)
    if edit:
        try:
            values = _shown(await reference.get_record(pool, kind.table, edit))
        except AdminRefused as exc:
            return await _page(request, pool, session, kind, values={}, errors=refused(exc))
    return await _page(request, pool, session, kind, values=values, done=done)


def _body(kind: Kind, form: FormData) -> tuple[dict[str, Any], FormErrors]:
    """The form as the service's input model's fields: empty optional fields are none."""
    body: dict[str, Any] = {}
    errors = FormErrors()
    for f in kind.fields:
        if f.kind == "json":
            raw = optional(form, f.name)
            try:
                body[f.name] = None if raw is None else json.loads(raw)
            except json.JSONDecodeError as exc:
                errors.add(f.name, f"不是有效的 JSON — {exc}")
        elif f.required or f.kind == "textarea":
            body[f.name] = text(form, f.name)
        else:
            body[f.name] = optional(form, f.name)
    return body, errors


@router.post("/admin/{path}", response_class=HTMLResponse)
async def save(request: Request, path: str, pool: Pool, session: Admin) -> Response:
    """新增或修改: create or replace the record of the id typed (the API's PUT)."""
    kind = _kind(path)
    form = await form_of(request, session)
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    record_id = text(form, "id")
    # opened with 修改 and saved under the same id: change only the version it was opened on
    version = optional(form, "version") if text(form, "edit_id") == record_id else None
    body, errors = _body(kind, form)
    try:
        _ID.validate_python(record_id)
    except ValidationError as err:
        errors.add("id", f"编号无效 — {form_words.problem(err.errors()[0])}：{ID_RULE}")
    if not errors:
        try:
            model = kind.table.model.model_validate(body)
            await reference.put_record(pool, session.principal.actor, kind.table, record_id,
                                       model, if_version=version)  # fmt: skip
            return redirect(f"{PREFIX}/admin/{path}?done={record_id}")
        except ValidationError as err:
            errors = invalid(err, kind.labels, choices=fixed_names(kind))
        except AdminRefused as exc:
            errors = refused(exc)
    return await _page(request, pool, session, kind, values=values, errors=errors)


@router.post("/admin/{path}/{record_id}/delete", response_class=HTMLResponse)
async def delete(
    request: Request, path: str, record_id: str, pool: Pool, session: Admin
) -> Response:
    """删除: refused (409) while a case or another record names it."""
    kind = _kind(path)
    await form_of(request, session)
    try:
        await reference.delete_record(pool, session.principal.actor, kind.table, record_id)
    except AdminRefused as exc:
        errors = refused(exc)
        errors.messages = {GENERAL: errors.messages.popitem()[1]}
        return await _page(request, pool, session, kind, values={}, errors=errors)
    return redirect(f"{PREFIX}/admin/{path}?done={record_id}")


# --- 停用 / 恢复启用 (departments only) ------------------------------------------------------


def _left_pointing(change: departments.ServiceChange, what: str) -> str:
    """What the admin must still see to: the cases the department holds, the rules naming it."""
    d = change.department
    retired_at = d["retired_at"]
    scheduled = retired_at is not None and retired_at > datetime.now(UTC)
    if scheduled:
        what = f"安排于 {shown_time(retired_at)} 停用"
    words = [f"已{what}：{d['name']}（{d['id']}）"]
    if change.open_cases:
        how = ("可“移交在办工单”给承接其职能的单位，或由它办结"
               if retired_at is not None and not scheduled else "仍由该单位办结")
        words.append(f"仍有 {change.open_cases} 件在办工单（{how}）")
    if change.rules_in_force:
        rules = "、".join(f"#{r}" for r in change.rules_in_force)
        tail = "停用后派单跳过这些规则，请在派单目录中替换" if retired_at else "派单照常使用"
        words.append(f"派单目录中仍有规则 {rules} 指向它（{tail}）")
    if change.raised_to_by and retired_at:
        below = "、".join(change.raised_to_by)
        words.append(f"它是 {below} 的上级单位：停用后这些单位提级办将转入热线中心待派单，"
                     "请为其改设上级单位")
    return "；".join(words)


async def _service_change(
    request: Request, pool: Pool, session: Admin, record_id: str, what: str,
    change: Awaitable[departments.ServiceChange],
) -> Response:  # fmt: skip
    """Applied: back to the list, which says what still points at the department (a reload
    does not send the change again)."""
    kind = KINDS["departments"]
    try:
        await change
    except ValidationError as err:
        return await _page(request, pool, session, kind, values={},
                           errors=invalid(err, {"at": "停用时间"}))
    except AdminRefused as exc:
        return await _page(request, pool, session, kind, values={}, errors=_general(exc))
    return redirect(f"{PREFIX}/admin/departments?{what}={quote(record_id)}")


def _general(exc: AdminRefused) -> FormErrors:
    """A department's service change refused: said over the whole list, not beside a field."""
    errors = refused(exc)
    errors.messages = {GENERAL: errors.messages.popitem()[1]}
    return errors


@router.post("/admin/departments/{record_id}/retire", response_class=HTMLResponse)
async def retire(
    request: Request, record_id: str, pool: Pool, session: Admin, settings: AppSettings
) -> Response:
    """停用: from the moment typed (the hotline's local time), or now."""
    form = await form_of(request, session)

    async def work() -> departments.ServiceChange:
        at = local_time(form, "at", ZoneInfo(settings.timezone))
        body = departments.Retirement.model_validate({"at": at})
        return await departments.retire(pool, session.principal.actor, record_id, body)

    return await _service_change(request, pool, session, record_id, "retired", work())


@router.post("/admin/departments/{record_id}/reinstate", response_class=HTMLResponse)
async def reinstate(request: Request, record_id: str, pool: Pool, session: Admin) -> Response:
    """恢复启用 (a scheduled retirement is called off the same way)."""
    await form_of(request, session)
    change = departments.reinstate(pool, session.principal.actor, record_id)
    return await _service_change(request, pool, session, record_id, "reinstated", change)


# --- 移交 (a retired department's open cases to its successor) ------------------------------


def _handed_words(sent: handover.HandoverSent, to_name: str) -> str:
    words = [f"已向 {len(sent.sent)} 件在办工单发出移交：交由{to_name}承办（各工单随即转交，"
             "办理经过记“移交”）"]
    if sent.remaining:
        words.append(f"还有 {sent.remaining} 件，请再次移交")
    if sent.left:
        words.append(f"{len(sent.left)} 件暂不移交（已答复待评价、正在改派，或该单位仅为协办单位"
                     "且尚未提交协办意见：请在工单上免除协办）")
    return "；".join(words)


@router.post("/admin/departments/{record_id}/hand-over", response_class=HTMLResponse)
async def hand_over(
    request: Request, record_id: str, pool: Pool, session: Admin, client: Temporal
) -> Response:
    """移交在办工单: each case the retired department holds, to the unit chosen."""
    form = await form_of(request, session)
    kind = KINDS["departments"]
    try:
        body = handover.Handover(department_id=text(form, "department_id"),
                                 reason=text(form, "reason"), limit=handover.MAX_LIMIT)
        sent = await handover.hand_over(pool, client, session.principal.actor, record_id, body)
    except ValidationError as err:
        return await _page(request, pool, session, kind, values={},
                           errors=invalid(err, {"department_id": "承接单位", "reason": "移交原因"}))
    except AdminRefused as exc:
        return await _page(request, pool, session, kind, values={}, errors=_general(exc))
    words = _handed_words(sent, sent.to_department_name)
    return redirect(f"{PREFIX}/admin/departments?handed={quote(words)}")
