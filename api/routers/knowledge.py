"""/api/v1/knowledge: the centre's knowledge base of answers (知识库) for direct answers
(即时办结, jiesu/intake/knowledge.py).

Operators, supervisors and admins search and read it during calls; supervisors and admins
(the centre's staff who own it) add, change and withdraw answers. An operator answers a
consultation by registering the case with ``direct_answer: {"answer_id": …}``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Header, Path, Query, Response, status

from api.deps import AppSettings, CentreStaff, Pool, Supervisor
from api.errors import ERRORS, QUERY_ERRORS, ApiError
from jiesu.case.domain import Line
from jiesu.config import Settings
from jiesu.intake import knowledge
from jiesu.intake.knowledge import Answer, AnswerInput, AnswerRefused

router = APIRouter(prefix="/knowledge", tags=["knowledge base"])

AnswerId = Annotated[int, Path(ge=1, lt=2**63)]
_ERRORS = {**ERRORS, 404: ERRORS[404] | {"description": "No such answer"}}


def _today(settings: Settings) -> date:
    return datetime.now(UTC).astimezone(ZoneInfo(settings.timezone)).date()


def _not_found(answer_id: int) -> ApiError:
    return ApiError(404, "answer_not_found", f"no knowledge-base answer {answer_id}")


def _refused(err: AnswerRefused) -> ApiError:
    return ApiError(422, err.code, str(err))


@router.get("", response_model=list[Answer], responses=QUERY_ERRORS, summary="Search the answers")
async def search_answers(
    principal: CentreStaff,
    pool: Pool,
    settings: AppSettings,
    q: Annotated[Line, Query(max_length=200, description="Words of the question")] = "",
    category_id: Annotated[Line | None, Query(max_length=64)] = None,
    include_invalid: Annotated[
        bool, Query(description="Also withdrawn answers and those not valid today")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[Answer]:
    return await knowledge.search(
        pool, _today(settings), query=q, category_id=category_id,
        include_invalid=include_invalid, limit=limit,
    )  # fmt: skip


@router.get("/{answer_id}", response_model=Answer, responses=_ERRORS, summary="One answer")
async def get_answer(
    answer_id: AnswerId, principal: CentreStaff, pool: Pool, settings: AppSettings
) -> Answer:
    found = await knowledge.get(pool, answer_id, _today(settings))
    if found is None:
        raise _not_found(answer_id)
    return found


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Answer,
    responses={
        **QUERY_ERRORS, 200: {"model": Answer, "description": "The same answer exists (a retry)"}
    },
    summary="Add an answer (centre supervisors)",
)
async def create_answer(
    body: AnswerInput, principal: Supervisor, pool: Pool, settings: AppSettings,
    response: Response,
) -> Answer:  # fmt: skip
    try:
        answer, added = await knowledge.create(pool, body, principal.name, _today(settings))
    except AnswerRefused as err:
        raise _refused(err) from err
    if not added:
        response.status_code = status.HTTP_200_OK
    return answer


def _version(if_match: str | None) -> int | None:
    """``If-Match: 3`` or ``"3"`` (the answer's ``version``): change only that version."""
    if if_match is None:
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not (text.isascii() and text.isdigit() and 0 < len(text) <= 9):
        raise ApiError(422, "invalid_request", "If-Match is the answer's version, e.g. \"3\"")
    return int(text)


@router.put(
    "/{answer_id}", response_model=Answer,
    responses={**_ERRORS, 409: ERRORS[404] | {"description": "Changed since If-Match's version"}},
    summary="Change an answer (If-Match: its version, to change only that one)",
)  # fmt: skip
async def update_answer(
    answer_id: AnswerId,
    body: AnswerInput,
    principal: Supervisor,
    pool: Pool,
    settings: AppSettings,
    if_match: Annotated[str | None, Header(max_length=20)] = None,
) -> Answer:
    try:
        changed = await knowledge.update(pool, answer_id, body, principal.name, _today(settings),
                                         if_version=_version(if_match))  # fmt: skip
    except AnswerRefused as err:
        raise _refused(err) from err
    except knowledge.VersionConflict as err:
        raise ApiError(409, "version_conflict", f"{err}: read it again and make the change"
                       " on it") from err  # fmt: skip
    if changed is None:
        raise _not_found(answer_id)
    return changed


@router.post(
    "/{answer_id}/withdraw",
    response_model=Answer,
    responses=_ERRORS,
    summary="Withdraw an answer (停用): no longer offered, kept for the cases that cite it",
)
async def withdraw_answer(
    answer_id: AnswerId, principal: Supervisor, pool: Pool, settings: AppSettings
) -> Answer:
    withdrawn = await knowledge.withdraw(pool, answer_id, principal.name, _today(settings))
    if withdrawn is None:
        raise _not_found(answer_id)
    return withdrawn
