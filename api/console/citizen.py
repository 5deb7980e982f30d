"""办件查询: the citizen's own page, ``/my/<token>`` — the link sent by SMS at intake
(jiesu.notify.links.follow_up_link). The token in the link is the credential (no account, no
cookie): status, the timeline in plain words, the department's reply, and the citizen's
actions (评价, 补充诉求, 撤诉) through the API's own citizen action specs. What the page shows
is the case as that reporter receives it (jiesu.access.citizen_view.citizen_case, as the API's
answers to their actions): a repeat reporter (并单) is not shown the case's citizen's rating.

A wrong token is the same 404 as no case, and counts as a failed authentication
(api/auth_limit.py), exactly as for the API. The token never reaches a log: uvicorn's access
lines show ``/my/…`` (:class:`RedactLinks`). Forms need no CSRF token: the credential is in
the URL, which another site cannot know.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from api import actions as api_actions
from api import cases as case_service
from api.auth_limit import Attempt
from api.console.actions import CITIZEN_ACTIONS, CITIZEN_BY_NAME
from api.console.web import error_page, page, redirect, validation_message
from api.deps import AppSettings, Pool, Principal, Temporal
from api.errors import ApiError
from jiesu.access import citizen_tokens
from jiesu.access.citizen_view import Reporter, citizen_case
from jiesu.case import glossary
from jiesu.case.domain import CaseSignal, Role
from jiesu.notify.links import FOLLOW_UP_PATH

router = APIRouter()

# each form of the citizen's page (CITIZEN_ACTIONS) and the action it sends the case
_SIGNALS = {
    "rating": CaseSignal.RATE, "supplement": CaseSignal.SUPPLEMENT, "withdraw": CaseSignal.WITHDRAW,
}  # fmt: skip

_TOKEN_IN_PATH = re.compile(re.escape(FOLLOW_UP_PATH) + r"[^/\s?\"]+")


class RedactLinks(logging.Filter):
    """Hide the token of a follow-up link in a log record (uvicorn's access log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_PATH.sub(FOLLOW_UP_PATH + "…", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


def redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactLinks) for f in access.filters):
        access.addFilter(RedactLinks())


_REPORT = """
SELECT case_id, NULL::bigint AS report_id FROM intakes WHERE token_hash = $1 AND state = 'started'
UNION ALL SELECT case_id, id FROM repeat_reports WHERE token_hash = $1 AND state = 'started'
LIMIT 1
"""


async def _report(pool: Pool, attempt: Any, token: str) -> Any:
    row = await pool.fetchrow(_REPORT, citizen_tokens.digest(token)) if len(token) < 200 else None
    if row is None:
        await attempt.failed()
        raise ApiError(404, "not_found", "没有找到这件诉求：请核对短信中的链接")
    return row


async def _page(
    request: Request, token: str, pool: Pool, client: Temporal, settings: AppSettings,
    attempt: Any, *, error: str | None = None, status_code: int = 200,
    failed: str | None = None, posted: FormData | None = None, refused: ApiError | None = None,
) -> Response:  # fmt: skip
    """``failed``: the action whose form was refused, shown again with what was ``posted``
    and why next to it — even when it is no longer offered (a supplement past the limit: the
    citizen keeps the text, to tell it on the phone); ``refused``: the API's refusal of it,
    said in the citizen's words with where the case is now."""
    report = await _report(pool, attempt, token)
    case_id = report["case_id"]
    try:
        state = await case_service.live_state(client, case_id, settings.query_timeout_seconds)
    except case_service.Unanswered:
        state = None
    state = state or await case_service.archived_state(pool, case_id)
    if state is None:
        raise case_service.not_ready(case_id)
    if refused is not None and failed in _SIGNALS:
        error = glossary.citizen_refusal_of(
            refused.code, refused.message, _SIGNALS[failed], state.status
        )
    reporter = Reporter(report_id=report["report_id"])
    citizen = Principal(name="citizen", role=Role.CITIZEN, department_id=None)
    actions = [
        a for a in CITIZEN_ACTIONS
        if (reporter.own or a.name == "supplement")
        and (a.allowed(state, citizen) or a.name == failed)
    ]  # fmt: skip
    context = {
        "case": citizen_case(state, reporter), "token": token, "actions": actions,
        "error": error, "query": request.query_params,
        "failed": failed, "posted": posted,  # web.typed: the refused form again
    }  # fmt: skip
    return page(request, "citizen.html", context, status_code)


@router.get("/{token}", response_class=HTMLResponse)
async def my_case(
    request: Request, token: str, pool: Pool, client: Temporal, settings: AppSettings,
    attempt: Attempt,
) -> Response:  # fmt: skip
    return await _page(request, token, pool, client, settings, attempt)


@router.get("/{token}/{name}")
async def action_opened(token: str, name: str) -> Response:
    """A refused form's address opened again (a reload from the address bar): the citizen's
    page, not 405 "Method Not Allowed" in English. Nothing is looked up: the page checks the
    token."""
    return redirect(f"{FOLLOW_UP_PATH}{token}")


@router.post("/{token}/{name}", response_class=HTMLResponse)
async def act(
    request: Request, token: str, name: str, pool: Pool, client: Temporal,
    settings: AppSettings, attempt: Attempt,
) -> Response:  # fmt: skip
    report = await _report(pool, attempt, token)
    action = CITIZEN_BY_NAME.get(name)
    if action is None:
        return error_page(request, 404, "没有这个操作")
    form = await request.form()
    try:
        body = action.spec.body.model_validate(  # type: ignore[union-attr]
            {**action.parse(form, ZoneInfo(settings.timezone)), "token": token}
        )
        result = await api_actions.run(
            action.spec, case_id=report["case_id"], fields=body.model_dump(), path_values={},
            credential=attempt, pool=pool, client=client, settings=settings,
            idempotency_key=str(form.get("key") or "") or None,
        )  # fmt: skip
    except ValidationError as err:
        return await _page(request, token, pool, client, settings, attempt,
                           error=validation_message(err, action.labels), status_code=422,
                           failed=name, posted=form)  # fmt: skip
    except ApiError as err:
        return await _page(request, token, pool, client, settings, attempt,
                           error=glossary.refusal(err.code, err.message), refused=err,
                           status_code=err.status, failed=name, posted=form)  # fmt: skip
    outcome = "done" if result.applied else "pending"
    return redirect(f"{FOLLOW_UP_PATH}{token}?{outcome}={name}")
