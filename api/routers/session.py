"""/api/v1/session: a person logs in (the ``jiesu_session`` cookie), sees and ends their
session. The console's own forms call the same :mod:`jiesu.access.sessions` functions.

``GET /api/v1/audit/sign-ins`` (``audit_router``): every sign-in, for auditors and admins;
``GET /api/v1/audit/sign-in-failures``: every refused one (登录失败记录)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.auth_limit import LoginAttempt, check_login
from api.deps import (
    SESSION_COOKIE,
    AppSettings,
    Auditor,
    Pool,
    Staff,
    check_csrf,
    clear_session_cookie,
    set_session_cookie,
)
from api.errors import QUERY_ERRORS, ApiError, ErrorResponse
from jiesu.access import sessions, sign_in_failures
from jiesu.access.sessions import LoginRefused, Session, SessionPolicy, SignIn
from jiesu.access.sign_in_failures import SignInFailure
from jiesu.case.domain import Line, Role

router = APIRouter(prefix="/session", tags=["session"])
audit_router = APIRouter(tags=["audit"])


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    login: Annotated[Line, Field(min_length=1, max_length=64, examples=["demo-operator"])]
    password: Annotated[Line, Field(min_length=1, max_length=256)]


class SessionInfo(BaseModel):
    """The person of the session and the CSRF token every unsafe request of it must carry."""

    person: str = Field(description="The person's login")
    display_name: str
    role: Role
    department_id: str | None
    csrf_token: str = Field(description="Send it as X-CSRF-Token (or the csrf_token form field)")
    expires_at: datetime = Field(description="The session's absolute end (it ends sooner idle)")

    @classmethod
    def of(cls, session: Session) -> SessionInfo:
        return cls.model_validate(session.model_dump())


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


@router.post(
    "",
    response_model=SessionInfo,
    responses={
        401: _error("The login or the password is wrong (login_failed)"),
        403: _error(
            "The account is disabled (account_disabled), or the sign-in came from another "
            "site's page (cross_site)"
        ),
        422: _error("Invalid input"),
        429: _error("Too many refused logins from this client (too_many_failed_authentications)"),
    },
    summary="Log in: sets the jiesu_session cookie and answers the session's CSRF token",
)
async def log_in(
    body: LoginRequest, response: Response, attempt: LoginAttempt, pool: Pool,
    settings: AppSettings,
) -> SessionInfo:  # fmt: skip
    await check_login(attempt, pool, body.login)
    try:
        token, session = await sessions.login(
            pool, body.login, body.password, SessionPolicy.from_settings(settings),
            client=attempt.client,
        )  # fmt: skip
    except LoginRefused as exc:
        # Every refusal counts in the limit of wrong API keys (429 after too many): each one
        # writes a refused sign-in, so none may come unbounded.
        await attempt.failed()
        if exc.code == "login_failed":
            raise ApiError(401, exc.code, str(exc)) from exc
        raise ApiError(403, exc.code, str(exc)) from exc
    set_session_cookie(response, token, session, settings)
    return SessionInfo.of(session)


async def _person(principal: Staff) -> Session:
    if principal.session is None:
        raise ApiError(401, "no_session", "an API key has no session: log in as a person")
    return principal.session


@router.get(
    "",
    response_model=SessionInfo,
    responses={
        401: _error(
            "Not logged in (unauthenticated), the session has ended (session_ended), or an "
            "API key, which has no session (no_session)"
        ),
        403: _error("A session cookie sent from another site's page (cross_site)"),
    },
    summary="The current session: who is logged in, and the CSRF token",
)
async def current(session: Annotated[Session, Depends(_person)]) -> SessionInfo:
    return SessionInfo.of(session)


@router.delete(
    "",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={403: _error("The session's CSRF token is missing or wrong (csrf_failed)")},
    summary="Log out: ends the session and clears the cookie (an ended session: nothing to do)",
)
async def log_out(request: Request, pool: Pool, settings: AppSettings) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    session = None if token is None else await sessions.session_for(pool, token)
    if token is not None and session is not None:
        await check_csrf(request, session)  # else any site could log a person out
        await sessions.logout(pool, token)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookie(response, settings)
    return response


@audit_router.get(
    "/audit/sign-ins",
    response_model=list[SignIn],
    responses=QUERY_ERRORS,
    summary="审计 Staff sign-ins: who worked in a session, from when to when, and how it "
    "ended (newest first; ended_at null: still open)",
)
async def sign_ins(
    principal: Auditor,
    pool: Pool,
    login: Annotated[Line | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=sessions.MAX_SIGN_INS)] = 100,
) -> list[SignIn]:
    return await sessions.sign_ins(pool, login=login, limit=limit)


@audit_router.get(
    "/audit/sign-in-failures",
    response_model=list[SignInFailure],
    responses=QUERY_ERRORS,
    summary="审计 登录失败记录 Refused staff sign-ins: when, the login as typed (known: whether "
    "it is a person's), why (login_failed, account_disabled, rate_limited: the first per "
    "window) and from which client (newest first)",
)
async def sign_in_failures_(
    principal: Auditor,
    pool: Pool,
    login: Annotated[Line | None, Query(max_length=sign_in_failures.MAX_LOGIN)] = None,
    limit: Annotated[int, Query(ge=1, le=sign_in_failures.MAX_FAILURES)] = 100,
) -> list[SignInFailure]:
    return await sign_in_failures.failures(pool, login=login, limit=limit)
