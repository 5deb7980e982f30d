"""Intake over HTTP: the filing service (:mod:`jiesu.intake.filing`) answers in domain terms;
this turns its errors into HTTP errors and its result into :class:`IntakeResponse`."""

from __future__ import annotations

import asyncpg
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from temporalio.client import Client

from api.deps import Principal
from api.errors import ApiError, temporal_unavailable
from api.schemas import IntakeResponse
from jiesu.case.domain import INPUT, OPERATOR_ROLES, Channel, ComplaintIntake
from jiesu.config import Settings
from jiesu.intake import filing
from jiesu.intake.errors import (
    IdempotencyConflict,
    IntakeContended,
    IntakeError,
    IntakeRefused,
    TemporalUnavailable,
)


def check_as_input(body: BaseModel) -> None:
    """A report's request body checked again as new input (``jiesu.case.domain.INPUT``):
    FastAPI validates the body without a context, which is how stored intakes and workflow
    histories are read too, so the rules for new input alone — one e-mail address, not
    "wang,li@163.com" — are checked here. Refused as FastAPI refuses a body: 422
    ``invalid_request``, each problem under ``body.``, before anything is filed."""
    try:
        type(body).model_validate(body.model_dump(mode="json"), context=INPUT)
    except ValidationError as err:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in err.errors()]
        ) from err


def http_error(err: IntakeError) -> ApiError:
    if isinstance(err, TemporalUnavailable):
        return temporal_unavailable()  # 503 + Retry-After
    if isinstance(err, IntakeContended):  # a 503 like the others: with its Retry-After
        return ApiError(503, err.code, err.message, headers={"Retry-After": "1"})
    if isinstance(err, IntakeRefused | IdempotencyConflict):
        return ApiError(422, err.code, err.message)
    raise TypeError(f"no HTTP answer for {type(err).__name__}") from err


def hands_token_to(principal: Principal, intake: ComplaintIntake) -> bool:
    """Whether the intake's answer carries the citizen's token (docs/intake.md, "Who receives
    the token"). Only a channel system acting for the citizen — an API key of the operator
    (or admin) role (the app, WeChat, a partner's form) — must hand it on. A staff person in a
    session (the hotline operator at the console) and a grid worker's patrol report (the
    reporter is the worker) never get it: the token rates the case, and staff who are not the
    citizen must not be able to rate for them. The citizen gets the link in the intake notice
    (the outbox, jiesu.intake.follow_up): by SMS to a mobile number, else by e-mail when they
    left an address (a landline or short number, or no phone; a report they mailed in
    themselves gets it in the mail listener's automatic reply); a citizen who left neither
    (an app's report without contact) gets none and follows the case by its number. The
    answer depends on the caller only, and a retry is the same caller's (the
    Idempotency-Key is its owner's, filing.key_owner), so a retry answers identically."""
    return (
        principal.person is None
        and principal.role in OPERATOR_ROLES
        and intake.channel is not Channel.GRID
    )


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
        citizen_token=filed.citizen_token if hands_token_to(principal, intake) else None,
        urgency=filed.urgency,
        received_at=filed.received_at,
        merged=filed.merged,
        replayed=filed.replayed,
    )
