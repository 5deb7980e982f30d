"""/api/v1/self-service: the citizen files a report without an API key (web form, app,
WeChat H5, QR code — 自助提交). The phone is proven by a one-time code sent through the SMS
gateway (jiesu/channels/otp.py); the report is filed by the one intake service
(jiesu/intake/filing.py); the answer is the case number and the citizen's follow-up link.
Enterprises (企业专席) file under enterprise categories with their unified social credit code.

Limits per phone, per client address and on all codes together (api/rate_limits.py,
JIESU_OTP_* / JIESU_REPORT_*),
``429 rate_limited`` with Retry-After past them."""

from __future__ import annotations

from typing import Annotated, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from api.auth_limit import Attempt, client_key
from api.deps import AppSettings, Pool, Temporal
from api.errors import ERRORS, ApiError
from api.intake import http_error
from api.rate_limits import RateLimits
from api.routers.channels import Gateway
from jiesu.case.domain import Actor, Channel, Citizen, ComplaintIntake, Phone, Role, Urgency
from jiesu.channels import otp, report_form
from jiesu.channels.sms import phone_forms
from jiesu.config import Settings
from jiesu.intake import filing
from jiesu.intake.errors import IntakeError, IntakeRefused
from jiesu.notify.links import follow_up_link

router = APIRouter(prefix="/self-service", tags=["self-service (自助提交)"])
form_router = APIRouter()
FORM_PATH = "/report"
"""The public form over these endpoints (a QR code may add ``?channel=wechat`` or ``app``)."""

SELF_SERVICE_ACTOR = Actor(role=Role.CITIZEN, name="citizen by self-service")
"""Who registers a self-service report: the citizen (no operator)."""

CHANNELS: dict[str, Channel] = {"web": Channel.WEB, "app": Channel.APP, "wechat": Channel.WECHAT}

_INTAKE = ComplaintIntake.model_fields
_CITIZEN = Citizen.model_fields


def limits_from_settings(settings: Settings, pool: asyncpg.Pool) -> RateLimits:
    return RateLimits(pool, settings, {
        "otp-phone": settings.otp_phone_limits, "otp-address": settings.otp_address_limits,
        "otp-total": settings.otp_total_limits,
        "report-phone": settings.report_phone_limits,
        "report-address": settings.report_address_limits,
    })  # fmt: skip


async def _limits(request: Request) -> RateLimits:
    return request.app.state.self_service_limits


Limits = Annotated[RateLimits, Depends(_limits)]


class CodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: Phone


class CodeSent(BaseModel):
    expires_in: int = Field(description="Seconds the code is valid")


class SelfServiceReport(BaseModel):
    """A citizen's own report. ``credit_code`` (统一社会信用代码) makes it an enterprise's
    (企业专席): then the category must be an enterprise category, and only then."""

    model_config = ConfigDict(extra="forbid")

    phone: Phone
    code: str = Field(pattern=r"^\s*[0-9]{6}\s*$", description="The code texted to the phone")
    name: Annotated[str, _CITIZEN["name"]]
    credit_code: Annotated[str | None, _CITIZEN["credit_code"]] = None
    title: Annotated[str, _INTAKE["title"]]
    description: Annotated[str, _INTAKE["description"]]
    category_id: Annotated[str, _INTAKE["category_id"]]
    grid_id: Annotated[str, _INTAKE["grid_id"]]
    address: Annotated[str, _INTAKE["address"]] = ""
    channel: Literal["web", "app", "wechat"] = "web"

    def intake(self) -> ComplaintIntake:
        enterprise = self.credit_code is not None
        return ComplaintIntake(
            title=self.title, description=self.description, category_id=self.category_id,
            grid_id=self.grid_id, address=self.address,
            channel=Channel.ENTERPRISE_PORT if enterprise else CHANNELS[self.channel],
            citizen=Citizen(name=self.name, phone=self.phone, credit_code=self.credit_code),
        )  # fmt: skip


class SelfServiceFiled(BaseModel):
    case_id: str
    follow_up_url: str | None = Field(
        description="The citizen's page for this report (办件查询): keep it, it is the key to "
        "the case. None only for a retry after the token secret was rotated."
    )
    urgency: Urgency
    merged: bool = Field(description="Linked to the open case of the same problem (并单)")


class CategoryInfo(BaseModel):
    id: str
    name: str
    enterprise: bool


# Public: no API key, no role, no case of the caller's — only invalid input (and the app's
# common answers: 429 rate_limited past a limit, 503...).
_PUBLIC = {422: ERRORS[422]}


class GridInfo(BaseModel):
    id: str
    name: str


@router.get("/categories", response_model=list[CategoryInfo], responses=_PUBLIC,
            summary="The categories a citizen or (enterprise=true) an enterprise files under")
async def categories(
    pool: Pool, enterprise: Annotated[bool | None, Query()] = None
) -> list[CategoryInfo]:  # fmt: skip
    rows = await pool.fetch(
        "SELECT id, name, enterprise FROM categories"
        " WHERE $1::boolean IS NULL OR enterprise = $1 ORDER BY id",
        enterprise,
    )
    return [CategoryInfo(**dict(r)) for r in rows]


@router.get("/grids", response_model=list[GridInfo],
            summary="The grids (网格) a report can be placed in")
async def grids(pool: Pool) -> list[GridInfo]:  # fmt: skip
    rows = await pool.fetch("SELECT id, name FROM areas WHERE kind = 'grid' ORDER BY id")
    return [GridInfo(**dict(r)) for r in rows]


@router.post("/codes", status_code=status.HTTP_202_ACCEPTED, response_model=CodeSent,
             responses=_PUBLIC, summary="Text a one-time code to the phone (验证码)")
async def send_code(
    body: CodeRequest, request: Request, pool: Pool, settings: AppSettings, gateway: Gateway,
    limits: Limits,
) -> CodeSent:  # fmt: skip
    await limits.hit("otp-address", client_key(request), "codes from this address")
    await limits.hit("otp-phone", phone_forms(body.phone)[0], "codes for this phone")
    await limits.hit("otp-total", "all", "codes texted; call 12345")
    issued = await otp.issue(pool, settings, gateway, body.phone)
    return CodeSent(expires_in=issued.expires_in)


@router.post(
    "/reports",
    status_code=status.HTTP_201_CREATED,
    response_model=SelfServiceFiled,
    responses={
        **_PUBLIC,
        401: {**ERRORS[401], "description": "The code is wrong (wrong_code), expired "
              "(code_expired), used up by wrong tries (code_locked) or never sent (no_code)"},
        200: {"model": SelfServiceFiled,
              "description": "No new case: a retry with the same code, or a repeat report "
              "linked to the open case of the same problem (并单)"},
    },
    summary="File a report with the code texted to the phone (自助提交)",
)
async def file_report(
    body: SelfServiceReport, request: Request, response: Response, attempt: Attempt,
    pool: Pool, client: Temporal, settings: AppSettings, limits: Limits,
) -> SelfServiceFiled:  # fmt: skip
    """``401`` when the code is wrong, expired, used up by wrong tries or never sent (a wrong
    code counts as a failed authentication); ``422`` for a bad credit code or a category of the
    wrong kind. Nothing is filed then."""
    await limits.hit("report-address", client_key(request), "reports from this address")
    # A phone's reports are counted once its code is right: anyone may send a phone number
    # with a wrong code, and each such try used to spend that phone's reports of the day.
    phone = phone_forms(body.phone)[0]
    await limits.check("report-phone", phone, "reports from this phone")
    await _check_category(pool, body)
    intake = body.intake()
    try:
        filing.check_credit_code(intake)  # before the code is spent
    except IntakeError as err:
        raise http_error(err) from err
    verified = await otp.verify(pool, settings, body.phone, body.code)
    if isinstance(verified, otp.Refusal):
        if verified is otp.Refusal.WRONG:
            await attempt.failed()
        raise ApiError(401, verified.value, otp.REFUSALS[verified])
    await limits.hit("report-phone", phone, "reports from this phone")
    try:
        filed = await filing.register(
            pool, client, settings, intake, SELF_SERVICE_ACTOR, verified.idempotency_key
        )
    except IntakeRefused as err:  # nothing was filed: the citizen corrects it, same code
        await otp.release(pool, verified)
        raise http_error(err) from err
    except IntakeError as err:
        raise http_error(err) from err
    if filed.replayed or filed.merged:
        response.status_code = status.HTTP_200_OK
    link = follow_up_link(settings, filed.citizen_token) if filed.citizen_token else None
    return SelfServiceFiled(
        case_id=filed.case_id, follow_up_url=link, urgency=filed.urgency, merged=filed.merged
    )


async def _check_category(pool: Pool, body: SelfServiceReport) -> None:
    """企业专席: enterprise categories for enterprises (with a credit code), the others for
    citizens. An unknown category is left to the intake (422 unknown_category)."""
    enterprise = await pool.fetchval(
        "SELECT enterprise FROM categories WHERE id = $1", body.category_id
    )
    if enterprise is None or enterprise == (body.credit_code is not None):
        return
    if enterprise:
        raise ApiError(422, "enterprise_category",
                       f"{body.category_id!r} is for enterprises (企业专席): send the "
                       "enterprise's unified social credit code (credit_code)")  # fmt: skip
    raise ApiError(422, "not_an_enterprise_category",
                   f"{body.category_id!r} is not an enterprise category: an enterprise files "
                   "under GET /api/v1/self-service/categories?enterprise=true")  # fmt: skip


@form_router.get(FORM_PATH, response_class=HTMLResponse, include_in_schema=False)
async def form() -> HTMLResponse:
    """我要反映: the citizen's form (web, app, WeChat H5, QR code) over the endpoints above."""
    return HTMLResponse(report_form.html())
