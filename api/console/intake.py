"""受理: the operator's intake form, with category and grid pickers and the cases of the same
problem shown before saving (并单 suggestions, jiesu.intake.merge's problem keys)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from api import intake as intake_api
from api.console import form_words, staff
from api.console.web import (
    PREFIX,
    form_of,
    invalid_field,
    page,
    redirect,
    require_roles,
    validation_message,
)
from api.deps import AppSettings, Pool, Temporal
from api.errors import ApiError
from jiesu.case import glossary
from jiesu.case.domain import INPUT, OPERATOR_ROLES, Channel, ComplaintIntake, Urgency
from jiesu.intake import merge
from jiesu.notify.sms import is_mobile, phone_forms

router = APIRouter()
Operator = require_roles(*OPERATOR_ROLES)

FIELDS = ("title", "description", "category_id", "grid_id", "address", "channel", "urgency",
          "citizen_name", "citizen_phone", "citizen_email", "citizen_anonymous")  # fmt: skip


async def _pickers(pool: Pool) -> dict[str, Any]:
    categories = await pool.fetch("SELECT id, name, default_urgency FROM categories ORDER BY id")
    grids = await pool.fetch(
        "SELECT g.id, g.name, c.name AS community FROM areas g"
        " LEFT JOIN areas c ON c.id = g.parent_id WHERE g.kind = 'grid' ORDER BY g.id"
    )
    return {"categories": categories, "grids": grids, "channels": list(Channel),
            "urgencies": list(Urgency),
            "contact_hint": form_words.contact_hint()}  # every channel: APP needs no contact


def _intake(form: FormData) -> ComplaintIntake:
    """The typed fields without the blanks around them: a title of spaces is no title."""

    def typed(name: str) -> str:
        return str(form.get(name) or "").strip()

    # as new input (domain.INPUT): one e-mail address, as the API's body (api/intake.py)
    return ComplaintIntake.model_validate({
        "title": typed("title"), "description": typed("description"),
        "category_id": typed("category_id"), "grid_id": typed("grid_id"),
        "address": typed("address"), "channel": form.get("channel") or Channel.HOTLINE,
        "urgency": form.get("urgency") or None,
        # a blank phone is no phone: with no e-mail either, the reachability rule says a phone
        # or an e-mail is needed (not 格式不正确); an e-mail alone is enough, as in the API
        # the e-mail is the API's citizen e-mail (domain.Email): where the notices go when
        # the phone takes no SMS (jiesu/notify/outbox.py route); blank is none
        "citizen": {"name": typed("citizen_name"), "phone": typed("citizen_phone") or None,
                    "email": typed("citizen_email") or None,
                    "anonymous_to_department": form.get("citizen_anonymous") == "on"},
    }, context=INPUT)  # fmt: skip


async def _form_page(
    request: Request, pool: Pool, session: staff.StaffSession, values: dict[str, Any],
    error: str | None, status_code: int = 200, focus: str | None = None,
) -> Response:  # fmt: skip
    """``focus``: the field the cursor is put in (the first wrong one; else the title)."""
    context = {"session": session, "values": values, "error": error,
               "focus": focus or "title", **await _pickers(pool)}  # fmt: skip
    return page(request, "intake.html", context, status_code)


@router.get("/intake", response_class=HTMLResponse)
async def intake_form(request: Request, pool: Pool, session: Operator) -> Response:
    return await _form_page(request, pool, session, {"channel": "hotline"}, None)


@router.post("/intake/similar", response_class=HTMLResponse)
async def similar(
    request: Request, pool: Pool, settings: AppSettings, session: Operator
) -> Response:
    """The cases of the same problem (htmx: refreshed as the form is filled in)."""
    form = await form_of(request, session)
    given = [str(form.get(n) or "").strip() for n in
             ("category_id", "grid_id", "citizen_phone", "address")]  # fmt: skip
    keys = merge.keys_of(*given)
    since = datetime.now(UTC) - timedelta(days=settings.repeat_window_days)
    # half-typed input is looked up as typed; a NUL (which PostgreSQL cannot hold) matches nothing
    searchable = form.get("category_id") and not any("\x00" in value for value in given)
    found = await merge.same_problem(pool, keys, since) if searchable else []
    return page(request, "_similar.html", {"similar": found})


@router.post("/intake", response_class=HTMLResponse)
async def file_intake(
    request: Request, pool: Pool, client: Temporal, settings: AppSettings,
    session: Operator,
) -> Response:  # fmt: skip
    form = await form_of(request, session)
    values = {n: str(form.get(n) or "") for n in FIELDS}
    try:
        intake = _intake(form)
        filed = await intake_api.register(
            pool, client, settings, intake, session.principal, str(form.get("key") or "") or None
        )
    except ValidationError as err:
        # the one model-wide rule (no field of its own) is the citizen's contact
        return await _form_page(request, pool, session, values, validation_message(err), 422,
                                invalid_field(err) or "citizen_phone")
    except ApiError as err:
        message = glossary.refusal(err.code, err.message)
        return await _form_page(request, pool, session, values, message, err.status)
    flag = "merged" if filed.merged else "filed"
    return redirect(f"{PREFIX}/cases/{filed.case_id}?{flag}=1&sms={sms_to(intake)}")


def sms_to(intake: ComplaintIntake) -> str:
    """What the case page tells the operator of the citizen's link: the last four digits of
    the mobile number the intake SMS goes to; ``email`` when the phone takes no SMS (none, a
    landline or short number) but an e-mail was given — the outbox sends it there (route);
    else ``none`` (the caller is told to ask by the case number instead). The address itself
    stays out of the URL. The operator never sees the link or its token (api/intake.py
    hands_token_to) — they tell the caller where it will arrive."""
    phone = intake.citizen.phone or ""
    if is_mobile(phone):
        return phone_forms(phone)[0][-4:]
    return "email" if intake.citizen.email else "none"
