"""登录 / 退出: a person's session (jiesu.access.sessions), and the home screen of each role."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from api.auth_limit import LoginAttempt
from api.console import staff
from api.console.web import PREFIX, Session, form_of, page, redirect
from api.deps import AppSettings, Pool, SameOrigin
from jiesu.case.domain import Role

router = APIRouter()

HOME: dict[Role, str] = {
    Role.OPERATOR: "/intake",
    Role.DEPARTMENT: "/inbox",
    Role.SUPERVISOR: "/supervision",
    Role.AUDITOR: "/audit",
    Role.ADMIN: "/supervision",
    Role.GRID_WORKER: "/inbox",  # the cases routed to their grids' units
}

_REFUSED = {
    "login_failed": "用户名或密码不正确",
    "account_disabled": "该账号已停用，请联系管理员",
}


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    return page(request, "login.html", {"login": "", "error": None})


@router.post("/login", response_class=HTMLResponse, dependencies=[SameOrigin])  # login CSRF
async def login(
    request: Request,
    pool: Pool,
    settings: AppSettings,
    attempt: LoginAttempt,
    login: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    response = redirect(PREFIX + "/")
    try:
        await staff.sign_in(pool, settings, attempt, login.strip(), password, response)
    except staff.LoginRefused as refused:
        context = {"login": login, "error": _REFUSED.get(refused.code, "无法登录")}
        return page(request, "login.html", context, status_code=401)
    return response


@router.post("/logout")
async def logout(
    request: Request, session: Session, pool: Pool, settings: AppSettings
) -> Response:
    await form_of(request, session)  # the CSRF check: no logging out from another site
    response = redirect(PREFIX + "/login")
    await staff.sign_out(pool, settings, session.token, response)
    return response


@router.get("/")
async def home(session: Session) -> Response:
    return redirect(PREFIX + HOME.get(session.principal.role, "/inbox"))
