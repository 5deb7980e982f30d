"""人员管理: the admin's page for staff accounts (the console face of ``jiesu users`` and
``/api/v1/admin/users``; the same service, jiesu.access.staff, records every change)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api.console.web import PREFIX, form_of, page, redirect, require_roles
from api.deps import Pool
from api.routers.users import by as changed_by
from jiesu.access import staff as accounts
from jiesu.case.domain import Role

router = APIRouter()
Admin = require_roles()  # admins only


async def _people_page(
    request: Request, pool: Pool, session: object, *, error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    departments = await pool.fetch("SELECT id, name FROM departments ORDER BY id")
    context = {"session": session, "people": await accounts.list_people(pool),
               "roles": list(Role), "departments": departments, "error": error}  # fmt: skip
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
    except (accounts.AccountRefused, ValueError) as err:
        return await _people_page(request, pool, session, error=str(err), status_code=422)
    return redirect(PREFIX + "/people")


@router.post("/people/{login}/active", response_class=HTMLResponse)
async def set_active(request: Request, login: str, pool: Pool, session: Admin) -> Response:
    """启用 / 停用: a disabled person's sessions end at once."""
    form = await form_of(request, session)
    active = form.get("active") == "1"
    try:
        person = await accounts.update_person(
            pool, login, by=changed_by(session.principal), active=active
        )
    except accounts.AccountRefused as err:
        return await _people_page(request, pool, session, error=str(err), status_code=422)
    if person is None:
        return await _people_page(request, pool, session, error="没有此人员", status_code=404)
    return redirect(PREFIX + "/people")
