"""/api/v1/channels: what comes in by itself. The SMS gateway's inbound webhook: a citizen's
SMS becomes a case (channel ``sms``) or, answering a rating prompt, a rating of the case that
waits for that phone's rating (jiesu/channels/sms.py decides; the rating takes the citizen's
own path, api/routers/citizen.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel

from api.actions import Call
from api.auth_limit import Attempt
from api.deps import AppSettings, Pool, Temporal
from api.errors import ACTION_ERRORS, ApiError
from api.intake import http_error
from api.routers import citizen
from jiesu.access.citizen_view import CASE_CITIZEN
from jiesu.channels import sms as sms_channel
from jiesu.intake import filing
from jiesu.intake.errors import IntakeError
from jiesu.notify.sms import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BadSignature,
    InboundSms,
    InvalidInbound,
    SmsGateway,
)

router = APIRouter(prefix="/channels", tags=["channels (受理渠道)"])

RATING = next(spec for spec in citizen.ACTIONS if spec.endpoint_name == "rate")


async def get_gateway(request: Request) -> SmsGateway:
    return request.app.state.sms_gateway


Gateway = Annotated[SmsGateway, Depends(get_gateway)]


class SmsInboundResult(BaseModel):
    message_id: str
    outcome: Literal["case", "rating"]
    case_id: str
    applied: bool  # False: accepted, the case applies it when its worker runs again (rating)
    merged: bool = False  # linked to the open case of the same problem (并单)


@router.post(
    "/sms/inbound",
    response_model=SmsInboundResult,
    responses=ACTION_ERRORS,  # 409: the rating cannot be applied now
    summary="上行短信 The SMS gateway delivers a citizen's text message (signed webhook)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": InboundSms.model_json_schema()}},
        }
    },
)
async def sms_inbound(
    request: Request,
    attempt: Attempt,
    pool: Pool,
    client: Temporal,
    settings: AppSettings,
    gateway: Gateway,
    timestamp: Annotated[
        str | None, Header(alias=TIMESTAMP_HEADER, description="Unix seconds, signed")
    ] = None,
    signature: Annotated[
        str | None,
        Header(alias=SIGNATURE_HEADER, description='"sha256=" + hex HMAC-SHA256 of "<ts>.<body>"'),
    ] = None,
) -> SmsInboundResult:
    """A signed request (``401`` otherwise, counted as a failed authentication; nothing
    changes). The same message id delivered again is applied once and answered the same."""
    try:
        sms = gateway.inbound(request.headers, await request.body())
    except BadSignature as err:
        await attempt.failed()
        raise ApiError(401, "bad_signature", str(err)) from err
    except InvalidInbound as err:
        raise ApiError(422, "invalid_sms", str(err)) from err
    decision = await sms_channel.decide(pool, sms)
    key = sms_channel.idempotency_key(sms)
    if decision.kind == "rating" and decision.case_id and decision.rating:
        call = Call(
            case_id=decision.case_id, name="rating",
            fields={"rating": decision.rating, "comment": ""}, credential=None, pool=pool,
            client=client, settings=settings, idempotency_key=key,
        )  # fmt: skip
        result = await citizen.act_as(CASE_CITIZEN, RATING, call)
        return SmsInboundResult(
            message_id=sms.message_id, outcome="rating", case_id=decision.case_id,
            applied=result.applied,
        )  # fmt: skip
    try:
        filed = await filing.register(
            pool, client, settings, sms_channel.intake(sms, settings), sms_channel.SMS_ACTOR, key
        )
    except IntakeError as err:
        raise http_error(err) from err
    return SmsInboundResult(
        message_id=sms.message_id, outcome="case", case_id=filed.case_id, applied=True,
        merged=filed.merged,
    )  # fmt: skip
