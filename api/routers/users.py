"""/api/v1/admin/users: staff accounts for admins (the same operations as ``jiesu users``).

Every change is recorded (who, when, the account before and after; never a password or its
hash): ``GET /api/v1/admin/users/{login}/changes``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Admin, Pool, Principal
from api.errors import ERRORS, QUERY_ERRORS, ApiError
from jiesu.access import staff
from jiesu.access.staff import AccountRefused, Person
from jiesu.case.domain import Line, Role

router = APIRouter(prefix="/admin/users", tags=["admin"])

_Login = Annotated[str, Field(pattern=staff.LOGIN_PATTERN, examples=["wang.fang"])]
_DisplayName = Annotated[Line, Field(min_length=1, max_length=staff.MAX_DISPLAY_NAME)]
_Password = Annotated[
    Line, Field(min_length=staff.MIN_PASSWORD, max_length=staff.MAX_PASSWORD)
]
_Department = Annotated[Line | None, Field(min_length=1, max_length=64)]


class PersonRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    login: _Login
    display_name: _DisplayName
    role: Role
    department_id: _Department = None
    password: _Password


class PersonChange(BaseModel):
    """The fields to change (the others stay). A new role comes with its department_id
    (none for every role but department)."""

    model_config = ConfigDict(extra="forbid")

    display_name: _DisplayName | None = None
    role: Role | None = None
    department_id: _Department = None
    active: bool | None = Field(default=None, description="false: disable (sessions end)")


class PasswordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: _Password


class AccountChange(BaseModel):
    change: str = Field(examples=["created", "updated", "disabled", "enabled", "password_set"])
    changed_by: str = Field(description="person:<login>, key:<name>, cli:<OS user> or demo-data")
    changed_at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None


_STATUS = {"login_taken": 409, "last_admin": 409}
_NOT_FOUND = ERRORS[404] | {"description": "No such person"}


def _refused(exc: AccountRefused) -> ApiError:
    return ApiError(_STATUS.get(exc.code, 422), exc.code, str(exc))


def by(principal: Principal) -> str:
    """Who made a change, as recorded."""
    return f"person:{principal.person}" if principal.person else f"key:{principal.name}"


async def _login(login: Annotated[str, Path(max_length=64)]) -> str:
    """An unknown login, well-formed or not, is simply not found — one that cannot be a login
    (a control character, say) without asking PostgreSQL, which cannot hold a NUL."""
    if not staff.is_login(login):
        raise ApiError(404, "person_not_found", f"no person {login[:64]!r}")
    return login


LoginPath = Annotated[str, Depends(_login)]


def _found(person: Person | None, login: str) -> Person:
    if person is None:
        raise ApiError(404, "person_not_found", f"no person {login[:64]!r}")
    return person


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Person,
    responses={**QUERY_ERRORS, 409: _NOT_FOUND | {"description": "The login is taken"}},
    summary="Create a person's account",
)
async def create_person(body: PersonRequest, principal: Admin, pool: Pool) -> Person:
    try:
        return await staff.create_person(
            pool, login=body.login, display_name=body.display_name, role=body.role,
            department_id=body.department_id, password=body.password, by=by(principal),
        )  # fmt: skip
    except AccountRefused as exc:
        raise _refused(exc) from exc


@router.get("", response_model=list[Person], responses=QUERY_ERRORS, summary="List the accounts")
async def list_people(principal: Admin, pool: Pool) -> list[Person]:
    return await staff.list_people(pool)


@router.get(
    "/{login}", response_model=Person, responses={**ERRORS, 404: _NOT_FOUND},
    summary="One account",
)  # fmt: skip
async def get_person(login: LoginPath, principal: Admin, pool: Pool) -> Person:
    return _found(await staff.get_person(pool, login), login)


@router.patch(
    "/{login}",
    response_model=Person,
    responses={**ERRORS, 404: _NOT_FOUND,
               409: _NOT_FOUND | {"description": "The last admin credential (last_admin)"}},
    summary="Change an account: name, role and department, or active (false disables it and "
    "ends its sessions)",
)
async def change_person(
    login: LoginPath, body: PersonChange, principal: Admin, pool: Pool
) -> Person:
    if body.department_id is not None and body.role is None:
        raise ApiError(422, "invalid_department", "give the role with its department")
    try:
        person = await staff.update_person(
            pool, login, by=by(principal), display_name=body.display_name, role=body.role,
            department_id=body.department_id, active=body.active, keep_an_admin=True,
        )  # fmt: skip
    except AccountRefused as exc:
        raise _refused(exc) from exc
    return _found(person, login)


@router.post(
    "/{login}/password",
    response_model=Person,
    responses={**ERRORS, 404: _NOT_FOUND},
    summary="Set a person's password (their sessions end)",
)
async def set_password(
    login: LoginPath, body: PasswordRequest, principal: Admin, pool: Pool
) -> Person:
    try:
        person = await staff.set_password(pool, login, body.password, by=by(principal))
    except AccountRefused as exc:
        raise _refused(exc) from exc
    return _found(person, login)


@router.get(
    "/{login}/changes",
    response_model=list[AccountChange],
    responses={**ERRORS, 404: _NOT_FOUND},
    summary="The recorded changes of an account, oldest first",
)
async def account_changes(login: LoginPath, principal: Admin, pool: Pool) -> list[AccountChange]:
    _found(await staff.get_person(pool, login), login)
    return [AccountChange.model_validate(c) for c in await staff.changes_of(pool, login)]
