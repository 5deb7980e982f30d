"""人员管理: the admin's page for staff accounts (the console face of ``jiesu users`` and
``/api/v1/admin/users``; the same service, jiesu.access.staff, records every change)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData

from api.console.web import PREFIX, form_of, page, redirect, require_roles
from api.deps import Pool
from api.routers.users import by as changed_by
from jiesu.access import staff as accounts
from jiesu.admin.departments import IN_SERVICE
from jiesu.case.domain import Role

router = APIRouter()
Admin = require_roles()  # admins only
NEW_PERSON = "new-person"  # the 新增人员 form's name on the page (web.typed)

# The 新增人员 form's labels (people.html shows them; a refusal names its field by them).
LABELS = {"login": "登录名", "display_name": "姓名", "role": "角色", "department_id": "单位",
          "password": "初始密码"}  # fmt: skip

# The account service's refusals (jiesu.access.staff AccountRefused codes) as the admin reads
# them, by the field each is about; the service's English stays the API's.
_REFUSALS = {
    "invalid_login": ("login", "须为 1–64 个字母、数字或 . _ @ -（不能以符号开头）"),
    "invalid_display_name": ("display_name", f"须为 1–{accounts.MAX_DISPLAY_NAME} 个可显示的字"),
    "invalid_password":
        ("password", f"须为 {accounts.MIN_PASSWORD}–{accounts.MAX_PASSWORD} 个字符"),
    "invalid_role": ("role", "不能新增此角色的人员"),
    "invalid_department": ("department_id", "承办单位人员须选择单位，其他角色不选单位"),
    "login_taken": ("login", "已被占用，请换一个"),
    "unknown_department": ("department_id", "所选单位不存在，请重新选择"),
    "department_retired": ("department_id", "所选单位已停用，不能再开设或调入账号"),
}  # fmt: skip


def _refusal(err: ValueError) -> str:
    """Why an account was refused, in Chinese, by the field's label: 输入有误 — 姓名：须为...
    (a role not in the list: ValueError, no code; an unknown code: the service's words)."""
    code = getattr(err, "code", "invalid_role")
    if code not in _REFUSALS:
        return str(err)
    name, words = _REFUSALS[code]
    return f"输入有误 — {LABELS[name]}：{words}"


async def _people_page(
    request: Request, pool: Pool, session: object, *, error: str | None = None,
    status_code: int = 200, failed: str | None = None, posted: FormData | None = None,
) -> HTMLResponse:  # fmt: skip
    """``failed``: the form refused, shown again with what was ``posted`` and why."""
    units = await pool.fetch(f"SELECT id, name, {IN_SERVICE} AS serving FROM departments d"
                             " ORDER BY id")
    context = {"session": session, "people": await accounts.list_people(pool),
               "roles": list(Role), "error": error,
               # the form offers units in service only (a retired one takes no new people)
               "departments": [u for u in units if u["serving"]],
               # a person's unit by its name (its code if it is gone; 已停用 if retired: its
               # people finish its cases, then their accounts can be disabled)
               "unit_names": {d["id"]: d["name"] + ("" if d["serving"] else "（已停用）")
                              for d in units},
               "failed": failed, "posted": posted, "new_person": NEW_PERSON,
               "labels": LABELS}  # fmt: skip
    return page(request, "people.html", context, status_code)


@router.get("/people", response_class=HTMLResponse)
async def people(request: Request, pool: Pool, session: Admin) -> Response:
    return await _people_page(request, pool, session)


@router.post("/people", response_class=HTMLResponse)
async def create(request: Request, pool: Pool, session: Admin) -> Response:
    form = await form_of(request, session)
    try:
        await accounts.create_person(
            pool,
            login=str(form.get("login") or ""),
            display_name=str(form.get("display_name") or ""),
            role=Role(str(form.get("role") or "")),
            password=str(form.get("password") or ""),
            department_id=str(form.get("department_id") or "") or None,
            by=changed_by(session.principal),
        )
    except ValueError as err:  # AccountRefused, or a role that is none
        return await _people_page(request, pool, session, error=_refusal(err), status_code=422,
                                  failed=NEW_PERSON, posted=form)  # fmt: skip
    return redirect(PREFIX + "/people")


@router.post("/people/{login}/active", response_class=HTMLResponse)
async def set_active(request: Request, login: str, pool: Pool, session: Admin) -> Response:
    """启用 / 停用: a disabled person's sessions end at once."""
    form = await form_of(request, session)
    active = form.get("active") == "1"
    try:
        person = await accounts.update_person(
            pool, login, by=changed_by(session.principal), active=active, keep_an_admin=True
        )
    except accounts.AccountRefused as err:
        if err.code == "last_admin":  # docs/security.md, "The last admin credential stays"
            return await _people_page(
                request, pool, session, status_code=409,
                error="不能停用 — 这是最后一个管理员账号（也没有有效的管理员密钥），"
                      "停用后无人能管理系统",
            )  # fmt: skip
        return await _people_page(request, pool, session, error=_refusal(err), status_code=422)
    if person is None:
        return await _people_page(request, pool, session, error="没有此人员", status_code=404)
    return redirect(PREFIX + "/people")
