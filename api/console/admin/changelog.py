"""变更记录: the change log of every administrative change — who, when, what, the record
before and after — filterable by kind of record and by record, newest first, paged;
jiesu.admin.changes like ``GET /api/v1/admin/changes``. Also the section's front page."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.console.web import PREFIX, page, redirect, require_roles, templates
from api.deps import Pool
from jiesu.admin import calendar, changes, policy, reference, routing
from jiesu.admin import templates as notice_templates
from jiesu.case.domain import Actor, Line

router = APIRouter()
Admin = require_roles()  # admins only
PAGE = 50

ENTITIES = {
    reference.DEPARTMENTS.entity: "承办单位", reference.AREAS.entity: "区域网格",
    reference.CATEGORIES.entity: "诉求分类", routing.ENTITY: "派单规则", calendar.ENTITY: "节假日",
    policy.ENTITY: "时限参数", notice_templates.ENTITY: "通知模板",
}  # fmt: skip
ACTIONS = {"create": "新增", "update": "修改", "delete": "删除", "retire": "停用",
           "reinstate": "恢复启用"}


def actor_label(actor: Actor) -> str:
    """Who, as the staff accounts' log writes it: ``person:<login>`` for a person in a
    session, ``key:<name>`` for an API key, the CLI's ``cli:<login>`` as it is."""
    if actor.person:
        return f"person:{actor.person}"
    return actor.name if ":" in actor.name else f"key:{actor.name}"


_MOMENT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


def _shown(value: Any) -> str:
    """A logged value as the page shows it: a moment in the hotline's time, as typed."""
    if value is None:
        return "—"
    if isinstance(value, str) and _MOMENT.match(value):
        return str(templates.env.filters["local"](value))
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 160 else text[:160] + "…"


def change_fields(change: changes.Change) -> list[tuple[str, str, str]]:
    """(field, before, after): every field of a record created or deleted, and only the
    fields that changed in an update (a year's calendar has hundreds of days)."""
    before, after = change.before or {}, change.after or {}
    keys = sorted(set(before) | set(after))
    if change.before is not None and change.after is not None:
        keys = [k for k in keys if before.get(k) != after.get(k)]
    return [(k, _shown(before.get(k)), _shown(after.get(k))) for k in keys]


templates.env.filters["actor_label"] = actor_label
templates.env.globals.update(change_fields=change_fields, entity_zh=ENTITIES, action_zh=ACTIONS)


@router.get("/admin", response_class=HTMLResponse)
async def section(session: Admin) -> Response:
    return redirect(f"{PREFIX}/admin/changes")


@router.get("/admin/changes", response_class=HTMLResponse)
async def change_log(
    request: Request, pool: Pool, session: Admin,
    entity: Annotated[Line | None, Query(max_length=64)] = None,
    entity_id: Annotated[Line | None, Query(max_length=200)] = None,
    before_id: Annotated[int | None, Query(ge=1, lt=2**63)] = None,
) -> Response:  # fmt: skip
    rows = await changes.list_changes(pool, entity=entity or None,
                                      entity_id=entity_id or None, before_id=before_id,
                                      limit=PAGE)  # fmt: skip
    context = {"session": session, "rows": rows, "entity": entity or "",
               "entity_id": entity_id or "", "entities": ENTITIES,
               "next_id": rows[-1].id if len(rows) == PAGE else None}  # fmt: skip
    return page(request, "admin_changes.html", context)
