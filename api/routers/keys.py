"""/api/v1/admin/keys: staff API keys for admins (the same operations as ``jiesu keys``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Admin, Pool
from api.errors import ERRORS, QUERY_ERRORS, ApiError
from jiesu.access import api_keys
from jiesu.access.api_keys import KeyRefused
from jiesu.case.domain import Line, Role

router = APIRouter(prefix="/admin/keys", tags=["admin"])




class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=api_keys.NAME_PATTERN, examples=["ops-admin"])]
    role: Role
    department_id: Annotated[Line | None, Field(min_length=1, max_length=64)] = None


class KeyInfo(api_keys.ApiKey):
    """A key without its secret."""


class CreatedKey(KeyInfo):
    key: str = Field(description="The API key itself: shown only in this answer, never again")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedKey,
    responses={**QUERY_ERRORS, 409: ERRORS[404] | {"description": "The name is taken"}},
    summary="Create a staff API key (shown once)",
)
async def create_key(body: KeyRequest, principal: Admin, pool: Pool) -> CreatedKey:
    try:
        info, key = await api_keys.create_key(
            pool, name=body.name, role=body.role, department_id=body.department_id,
            actor=principal.actor,
        )
    except KeyRefused as exc:
        raise ApiError(409 if exc.code == "key_name_taken" else 422, exc.code, str(exc)) from exc
    return CreatedKey(**info.model_dump(), key=key)


@router.get("", response_model=list[KeyInfo], responses=QUERY_ERRORS, summary="List the API keys")
async def list_keys(principal: Admin, pool: Pool) -> list[KeyInfo]:
    return [KeyInfo(**k.model_dump()) for k in await api_keys.list_keys(pool)]


@router.post(
    "/{key_id}/revoke",
    response_model=KeyInfo,
    responses={**ERRORS, 409: ERRORS[404] | {"description": "The last admin credential"}},
    summary="Revoke an API key: it authenticates no more",
)
async def revoke_key(
    key_id: Annotated[int, Path(ge=1, lt=2**63)], principal: Admin, pool: Pool
) -> KeyInfo:
    try:
        info = await api_keys.revoke_key(pool, key_id, keep_an_admin=True,
                                         actor=principal.actor)
    except KeyRefused as exc:  # the last admin credential
        raise ApiError(409, exc.code, str(exc)) from exc
    if info is None:
        raise ApiError(404, "key_not_found", f"no API key {key_id}")
    return KeyInfo(**info.model_dump())
