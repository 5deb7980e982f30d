"""Dependencies: the database pool, the Temporal client and API-key authentication."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from api.auth_limit import Attempt
from api.errors import ApiError, not_found
from jiesu.access.security import hash_api_key
from jiesu.case.domain import (
    ADMIN_ROLES,
    AUDITOR_ROLES,
    CENTRE_ROLES,
    DEPARTMENT_ROLES,
    DISPATCHER_ROLES,
    OPERATOR_ROLES,
    OVERSEER_ROLES,
    STAFF_ROLES,
    STATS_VIEWER_ROLES,
    Actor,
    CaseState,
    Role,
)
from jiesu.config import Settings


def get_pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


def get_client(request: Request) -> Client:
    return request.app.state.temporal


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]
Temporal = Annotated[Client, Depends(get_client)]
AppSettings = Annotated[Settings, Depends(get_settings)]

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`")


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    name: str
    role: Role
    department_id: str | None

    @property
    def actor(self) -> Actor:
        return Actor(role=self.role, name=self.name, department_id=self.department_id)

    def can_see(self, state: CaseState) -> bool:
        """Department staff see only the cases they lead or co-handle (主办 / 协办)."""
        return self.role is not Role.DEPARTMENT or state.involves(self.department_id)


async def authenticate(
    attempt: Attempt,
    pool: Pool,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller of every staff endpoint, before anything else is looked at (so a case
    number is never probed without a valid key): 429 if this client has failed too often,
    401 without a key or with an unknown or revoked one (one answer: no hint which)."""
    if credentials is None:
        raise ApiError(401, "unauthenticated", "send an API key: Authorization: Bearer <key>")
    row = await pool.fetchrow(
        "SELECT name, role, department_id FROM api_keys"
        " WHERE key_hash = $1 AND revoked_at IS NULL",
        hash_api_key(credentials.credentials),
    )
    if row is None:
        await attempt.failed()
        raise ApiError(401, "invalid_api_key", "this API key is not known or was revoked")
    return Principal(name=row["name"], role=Role(row["role"]), department_id=row["department_id"])


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
Supervisor = Annotated[Principal, Depends(require(DISPATCHER_ROLES))]
CentreStaff = Annotated[Principal, Depends(require(CENTRE_ROLES))]
Auditor = Annotated[Principal, Depends(require(AUDITOR_ROLES))]
Overseer = Annotated[Principal, Depends(require(OVERSEER_ROLES))]
Viewer = Annotated[Principal, Depends(require(STATS_VIEWER_ROLES))]
Admin = Annotated[Principal, Depends(require(ADMIN_ROLES))]

_CASE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,100}")


def _case_id(case_id: Annotated[str, Path(examples=["JS20261121-000042"])]) -> str:
    """A case number in a path. Anything that cannot be one is simply not found (404), and
    never reaches Temporal or PostgreSQL."""
    if not _CASE_ID.fullmatch(case_id):
        raise not_found(case_id[:100])
    return case_id


CaseId = Annotated[str, Depends(_case_id)]
