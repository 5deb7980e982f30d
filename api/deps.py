"""Dependencies: the database pool, the Temporal client and authentication.

Every staff endpoint takes its caller from :func:`authenticate` (through ``require`` and the
role-group types below), which accepts either credential:

- ``Authorization: Bearer <API key>`` — systems and scripts. No CSRF token: a browser never
  attaches this header by itself.
- the ``jiesu_session`` cookie of a person logged in with ``POST /api/v1/session`` (or the
  console's own login form, calling :func:`jiesu.access.sessions.login`). Every unsafe method
  (POST, PUT, PATCH, DELETE) must then carry the session's CSRF token, in the ``X-CSRF-Token``
  header or a ``csrf_token`` form field, else ``403 csrf_failed``.

How the console uses it: its pages depend on ``Staff`` / ``Department`` / ... like any
endpoint (or on ``authenticate`` directly) and get a :class:`Principal`; ``principal.session``
is the person's :class:`~jiesu.access.sessions.Session`, whose ``csrf_token`` the page puts in
every form (``<input type="hidden" name="csrf_token">``) or htmx header (``X-CSRF-Token``).
``principal.actor`` is what an action records: for a person, ``name`` and ``person`` are their
login. A login form handler takes the ``LoginAttempt`` dependency, calls
``check_login(attempt, pool, login)`` (the same 429 as wrong API keys; the first of each
window is recorded), then ``sessions.login(pool, login, password,
SessionPolicy.from_settings(settings), client=attempt.client)`` (which records its refusals),
counts every refusal with ``await attempt.failed()`` and sets the cookie with
:func:`set_session_cookie`; logout calls ``sessions.logout`` and :func:`clear_session_cookie`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

import asyncpg
from fastapi import Depends, Path, Request, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from api.auth_limit import Attempt, AuthAttempt
from api.errors import ApiError, not_found
from jiesu.access import sessions
from jiesu.access.grids import GridScope, grid_scope
from jiesu.access.security import hash_api_key
from jiesu.access.sessions import Session
from jiesu.case.domain import (
    ADMIN_ROLES,
    AUDITOR_ROLES,
    CENTRE_ROLES,
    DEPARTMENT_ROLES,
    DISPATCHER_ROLES,
    GRID_ROLES,
    HANDLER_ROLES,
    OPERATOR_ROLES,
    OVERSEER_ROLES,
    STAFF_ROLES,
    STATS_VIEWER_ROLES,
    WHOLE_COUNTY_VIEWER_ROLES,
    Actor,
    CaseState,
    Role,
)
from jiesu.config import Settings
from jiesu.notify.links import base_url
from jiesu.readmodel.changes import ProjectionFeed
from jiesu.stats.answers import Answers

# Dependencies are ``async def`` even when they do not await: FastAPI runs a plain ``def``
# dependency in its thread pool, a hand-off to a thread and back for every request and every
# such dependency (docs/performance.md, "Where the time goes").


async def get_pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


async def get_client(request: Request) -> Client:
    return request.app.state.temporal


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_stat_answers(request: Request) -> Answers:
    return request.app.state.stat_answers


async def get_feed(request: Request) -> ProjectionFeed | None:
    """The read model's change feed (api/cases.py ``act``); None when the app has none."""
    return getattr(request.app.state, "projection_feed", None)


@dataclass(frozen=True)
class Services:
    """The app's connections and settings as one dependency (api/actions.py): FastAPI solves
    each dependency of a request anew, about as much CPU as a whole small endpoint, so the
    busiest endpoints take one instead of four (docs/performance.md, "The API's CPU")."""

    pool: asyncpg.Pool
    client: Client
    settings: Settings
    feed: ProjectionFeed | None


async def get_services(request: Request) -> Services:
    state = request.app.state
    return Services(state.pool, state.temporal, state.settings, await get_feed(request))


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]
Feed = Annotated[ProjectionFeed | None, Depends(get_feed)]
Temporal = Annotated[Client, Depends(get_client)]
AppSettings = Annotated[Settings, Depends(get_settings)]
StatAnswers = Annotated[Answers, Depends(get_stat_answers)]
AppServices = Annotated[Services, Depends(get_services)]

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`")

SESSION_COOKIE = "jiesu_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

_session_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="A person's session (`POST /api/v1/session`); unsafe methods also need the "
    "session's CSRF token in `X-CSRF-Token`",
)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: an API key's holder, or a person in a session."""

    name: str
    role: Role
    department_id: str | None
    session: Session | None = None  # set for a person logged in with the session cookie
    scope: GridScope | None = None  # a grid worker's grids and their units (jiesu.access.grids)

    @property
    def person(self) -> str | None:
        """The person's login (None for an API key)."""
        return None if self.session is None else self.session.person

    @property
    def actor(self) -> Actor:
        return Actor(
            role=self.role, name=self.name, department_id=self.department_id, person=self.person
        )

    def actor_on(self, state: CaseState, *, co_handling: bool = False) -> Actor:
        """The actor of an action on ``state``: a grid worker acts for the unit of their grid
        that holds the case — for a co-handler's action (``co_handling``: a contribution), the
        unit of theirs that co-handles it (GridScope.unit_for) — with their own name and
        person recorded; everyone else as :attr:`actor`."""
        if self.role is not Role.GRID_WORKER:
            return self.actor
        scope = self.scope
        unit = scope.unit_for(state, co_handling=co_handling) if scope is not None else None
        return self.actor.model_copy(update={"department_id": unit})

    @property
    def handles(self) -> frozenset[str]:
        """The departments whose cases this caller handles: a clerk's own, a grid worker's
        grid units."""
        if self.role is Role.GRID_WORKER:
            return self.scope.units if self.scope is not None else frozenset()
        return frozenset({self.department_id}) if self.department_id else frozenset()

    def can_see(self, state: CaseState) -> bool:
        """The centre's staff and auditors see every case; department staff only the cases
        they lead or co-handle (主办 / 协办); grid workers only those of their grids and their
        grids' units; any other role (a citizen, the system) none this way."""
        if self.role is Role.GRID_WORKER:
            return self.scope is not None and self.scope.sees(state)
        if self.role is Role.DEPARTMENT:
            return state.involves(self.department_id)
        return self.role in WHOLE_COUNTY_VIEWER_ROLES


def session_principal(session: Session, scope: GridScope | None = None) -> Principal:
    return Principal(
        name=session.person, role=session.role, department_id=session.department_id,
        session=session, scope=scope,
    )  # fmt: skip


async def scope_of(pool: asyncpg.Pool, role: Role, name: str) -> GridScope | None:
    """A grid worker's grids and units (read per request: a binding changed by an admin
    counts at once); None for every other role."""
    return await grid_scope(pool, name) if role is Role.GRID_WORKER else None


async def _presented_csrf(request: Request) -> str | None:
    token = request.headers.get(CSRF_HEADER)
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if token is None and content_type in _FORM_TYPES:
        value = (await request.form()).get(CSRF_FIELD)  # parsed once; the endpoint reuses it
        token = value if isinstance(value, str) else None
    return token


def is_cross_site(request: Request) -> bool:
    """The browser says another site's page (or a sibling site's) made this request (Fetch
    Metadata). A cookie goes with a top-level navigation from anywhere (SameSite=Lax): such a
    request must not act, nor be recorded as what the person chose to look at."""
    return request.headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site")


async def check_csrf(request: Request, session: Session) -> None:
    """403 ``csrf_failed`` unless a request of an unsafe method carries its session's CSRF
    token: a cookie is sent by the browser whoever made the page, the token only by ours."""
    if request.method in SAFE_METHODS:
        return
    if not sessions.csrf_matches(session, await _presented_csrf(request)):
        raise ApiError(
            403, "csrf_failed",
            f"send this session's CSRF token in the {CSRF_HEADER} header"
            f" (or the {CSRF_FIELD} form field)",
        )  # fmt: skip


async def authenticate(
    request: Request,
    attempt: Attempt,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_session_cookie)],
) -> Principal:
    """The caller of every staff endpoint, before anything else is looked at (so a case
    number is never probed without a credential): 429 if this client has failed too often,
    401 without a credential or with an unknown or revoked key (one answer: no hint which) or
    an ended session, 403 ``csrf_failed`` for a session's unsafe request without its token.
    A Bearer key wins over a cookie."""
    pool: asyncpg.Pool = request.app.state.pool  # not a dependency: one fewer to solve
    if credentials is not None:
        return await _key_principal(attempt, pool, credentials.credentials)
    if cookie is not None:
        # e.g. a link to …/content: a recorded view in their name. Refused before the session
        # is looked up, which marks it used: another site does not keep it from going idle.
        if is_cross_site(request):
            raise ApiError(
                403, "cross_site", "a session's request is accepted from the console only"
            )
        # An ended session is not counted as a failed authentication: it is how every
        # session ends (the page still sends the cookie), and its 256-bit token is not guessed.
        session = await sessions.session_for(pool, cookie)
        if session is None:
            raise ApiError(401, "session_ended", "this session has ended; log in again")
        await check_csrf(request, session)
        return session_principal(session, await scope_of(pool, session.role, session.person))
    raise ApiError(
        401, "unauthenticated",
        "send an API key (Authorization: Bearer <key>) or log in (POST /api/v1/session)",
    )  # fmt: skip


KEY_HOLDER_SQL = (
    "SELECT name, role, department_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
)


async def _key_principal(attempt: AuthAttempt, pool: asyncpg.Pool, key: str) -> Principal:
    row = await pool.fetchrow(KEY_HOLDER_SQL, hash_api_key(key))
    if row is None:
        await attempt.failed()
        raise ApiError(401, "invalid_api_key", "this API key is not known or was revoked")
    role = Role(row["role"])
    return Principal(
        name=row["name"], role=role, department_id=row["department_id"],
        scope=await scope_of(pool, role, row["name"]),
    )  # fmt: skip


def cookie_secure(settings: Settings) -> bool:
    """The session cookie is ``Secure`` (sent over HTTPS only) unless the console is reached
    over plain http on this machine (JIESU_PUBLIC_URL, e.g. the embedded ``make run``)."""
    url = urlsplit(base_url(settings))
    if url.scheme != "http":
        return True
    host = url.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def _netloc(url: str) -> str:
    return urlsplit(url).netloc.lower()


async def same_origin(request: Request) -> None:
    """403 ``cross_site`` when the browser says another site's page made this request — for
    the one form no CSRF token can protect, the login form (no session yet): else another
    site could sign the browser in as the attacker's account (login CSRF), the victim's
    session cookie replaced and their work recorded as the attacker's.

    The browser's word is ``Sec-Fetch-Site`` (Fetch Metadata: every current browser sends
    it): only ``same-origin`` (and ``none``, typed by the user) pass. ``Origin`` alone cannot
    say it: under our ``Referrer-Policy: no-referrer`` Chromium sends ``Origin: null`` with
    the console's own forms. A browser without Fetch Metadata is judged by its ``Origin``,
    which must name the console's host (JIESU_PUBLIC_URL) or the one the request was sent to
    (the scheme is not compared: behind a TLS proxy the API may see http); ``null`` is
    refused — any page gets it by sending ``Referrer-Policy: no-referrer`` itself — and the
    login page posts with its origin (its ``<meta name="referrer" content="same-origin">``).
    A request without either header (a script, curl) passes."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site.lower() in ("same-origin", "none"):
            return
    else:
        origin = request.headers.get("origin")
        if origin is None:
            return
        own = {_netloc(base_url(request.app.state.settings)), request.headers.get("host", "")}
        if _netloc(origin) and _netloc(origin) in {h.lower() for h in own}:
            return
    raise ApiError(403, "cross_site", "a sign-in is accepted from the console's own page only")


SameOrigin = Depends(same_origin)


def set_session_cookie(
    response: Response, token: str, session: Session, settings: Settings
) -> None:
    """The session cookie: HttpOnly (no script reads it), SameSite=Lax (not sent with other
    sites' POSTs), Secure unless on loopback http; it expires with the session at the latest."""
    response.set_cookie(
        SESSION_COOKIE, token, expires=session.expires_at, path="/", httponly=True,
        samesite="lax", secure=cookie_secure(settings),
    )  # fmt: skip


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=cookie_secure(settings)
    )


def require(roles: frozenset[Role]) -> Callable[..., Principal]:
    """A dependency that admits only the given roles (admin is always admitted)."""
    allowed = roles | {Role.ADMIN}

    async def _check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise ApiError(403, "forbidden", f"this needs one of the roles: {names}")
        return principal

    return _check


# The callers of staff endpoints, one per role group of jiesu.case.domain (defined there once).
Operator = Annotated[Principal, Depends(require(OPERATOR_ROLES))]
Staff = Annotated[Principal, Depends(require(STAFF_ROLES))]
Department = Annotated[Principal, Depends(require(DEPARTMENT_ROLES))]
Handler = Annotated[Principal, Depends(require(HANDLER_ROLES))]  # a clerk or a grid worker
Supervisor = Annotated[Principal, Depends(require(DISPATCHER_ROLES))]
CentreStaff = Annotated[Principal, Depends(require(CENTRE_ROLES))]
Auditor = Annotated[Principal, Depends(require(AUDITOR_ROLES))]
Overseer = Annotated[Principal, Depends(require(OVERSEER_ROLES))]
Viewer = Annotated[Principal, Depends(require(STATS_VIEWER_ROLES))]
Admin = Annotated[Principal, Depends(require(ADMIN_ROLES))]
GridWorker = Annotated[Principal, Depends(require(GRID_ROLES))]

_CASE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,100}")


async def _case_id(case_id: Annotated[str, Path(examples=["JS20261121-000042"])]) -> str:
    """A case number in a path. Anything that cannot be one is simply not found (404), and
    never reaches Temporal or PostgreSQL."""
    if not _CASE_ID.fullmatch(case_id):
        raise not_found(case_id[:100])
    return case_id


CaseId = Annotated[str, Depends(_case_id)]
