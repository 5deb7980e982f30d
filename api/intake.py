"""Intake over HTTP: the filing service (:mod:`jiesu.intake.filing`) answers in domain terms;
this turns its errors into HTTP errors and its result into :class:`IntakeResponse`."""

from __future__ import annotations

import asyncpg
from temporalio.client import Client

from api.deps import Principal
from api.errors import ApiError, temporal_unavailable
from api.schemas import IntakeResponse
from jiesu.case.domain import ComplaintIntake
from jiesu.config import Settings
from jiesu.intake import filing
from jiesu.intake.errors import (
    IdempotencyConflict,
    IntakeContended,
    IntakeError,
    IntakeRefused,
    TemporalUnavailable,
)


def http_error(err: IntakeError) -> ApiError:
    if isinstance(err, TemporalUnavailable):
        return temporal_unavailable()  # 503 + Retry-After
    if isinstance(err, IntakeContended):  # a 503 like the others: with its Retry-After
        return ApiError(503, err.code, err.message, headers={"Retry-After": "1"})
    if isinstance(err, IntakeRefused | IdempotencyConflict):
        return ApiError(422, err.code, err.message)
    raise TypeError(f"no HTTP answer for {type(err).__name__}") from err


async def register(
    pool: asyncpg.Pool,
    client: Client,
    settings: Settings,
    intake: ComplaintIntake,
    principal: Principal,
    idempotency_key: str | None,
) -> IntakeResponse:
    try:
        filed = await filing.register(
            pool, client, settings, intake, principal.actor, idempotency_key
        )
    except IntakeError as err:
        raise http_error(err) from err
    return IntakeResponse(
        case_id=filed.case_id,
        status_url=f"/api/v1/complaints/{filed.case_id}",
        citizen_token=filed.citizen_token,
        urgency=filed.urgency,
        received_at=filed.received_at,
        merged=filed.merged,
        replayed=filed.replayed,
    )
