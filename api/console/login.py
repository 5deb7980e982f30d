"""登录 / 退出: the staff member's session, and the home screen of each role."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from api.console import staff
from api.console.web import PREFIX, Session, form_of, page, redirect
from api.deps import Pool
from jiesu.case.domain import Role

router = APIRouter()

HOME: dict[Role, str] = {
    Role.OPERATOR: "/intake",
    Role.DEPARTMENT: "/inbox",
    Role.SUPERVISOR: "/supervision",
    Role.AUDITOR: "/audit",
    Role.ADMIN: "/supervision",
}


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    return page(request, "login.html", {"login": "", "error": None})


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    pool: Pool,
    login: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    session = await staff.sign_in(pool, login.strip(), password)
    if session is None:
        context = {"login": login, "error": "用户名或密码不正确"}
        return page(request, "login.html", context, status_code=401)
    response = redirect(PREFIX + "/")
    response.set_cookie(
        staff.COOKIE, session.token, httponly=True, samesite="strict", path="/",
        secure=request.url.scheme == "https",
    )  # fmt: skip
    return response


@router.post("/logout")
async def logout(request: Request, session: Session, pool: Pool) -> Response:
    await form_of(request, session)  # the CSRF check: no logging out from another site
    await staff.sign_out(pool, session.token)
    response = redirect(PREFIX + "/login")
    response.delete_cookie(staff.COOKIE, path="/")
    return response


@router.get("/")
async def home(session: Session) -> Response:
    return redirect(PREFIX + HOME.get(session.principal.role, "/inbox"))
