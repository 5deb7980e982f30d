"""The console without a browser: its vendored files, its words, its guards (sign-in, CSRF,
headers), the actions it offers, and the intake SMS with the citizen's link.
The screens themselves are driven in chromium by tests/test_console_browser.py."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

import asyncpg
import helpers
import httpx
import pytest
from helpers import SUPERVISOR as SUPERVISOR_KEY
from helpers import act, complaint, department, eventually, register, signed_in
from pydantic import BaseModel, ValidationError
from temporalio.client import Client
from temporalio.service import RPCError
from test_api import URBAN, assigned
from test_sms import deliver, sms

from api.console import event_words, web
from api.console.actions import CITIZEN_ACTIONS, STAFF_ACTIONS, allowed_actions
from api.console.citizen import RedactLinks
from api.console.web import STATIC, local_time, validation_message
from api.deps import Principal
from api.routers.self_service import SELF_SERVICE_ACTOR
from jiesu import bidi, db
from jiesu.access import citizen_tokens
from jiesu.case import glossary, lifecycle
from jiesu.case.domain import (
    CASE_CITIZEN_NAME,
    SYSTEM_ACTOR,
    Actor,
    Assignment,
    CaseState,
    CoHandler,
    ComplaintIntake,
    EventKind,
    ReplyInput,
    Role,
    Status,
    repeat_reporter_name,
)
from jiesu.channels.mail import MAIL_ACTOR
from jiesu.channels.sms import SMS_ACTOR
from jiesu.config import Settings
from jiesu.intake import filing
from jiesu.intake.follow_up import LINK, FollowUpLinks
from jiesu.notify.links import follow_up_link
from jiesu.notify.outbox import OutboundNotice, OutboxDispatcher

VENDOR = STATIC / "vendor"
TEMPLATES = STATIC.parent / "templates"


def test_vendored_files_are_the_recorded_npm_releases() -> None:
    lines = [ln for ln in (VENDOR / "VENDOR").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]  # fmt: skip
    assert len(lines) == 2
    for line in lines:
        name, package, licence, sha256 = line.split("\t")
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == sha256, name
        assert package.split("@")[0] in ("htmx.org", "echarts") and licence


def test_no_page_loads_anything_from_another_host() -> None:
    """The console works on an intranet: no CDN, no web font, no external script."""
    for path in [*TEMPLATES.glob("*.html"), *STATIC.glob("*.css"), *STATIC.glob("*.js")]:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), path
        assert "@import" not in text and "url(http" not in text, path


def test_every_refusal_of_the_lifecycle_reads_in_chinese() -> None:
    """Each code a lifecycle rule refuses with has its words at the console (glossary.REFUSAL):
    a rule added without them shows the person the API's English reason."""
    source = (Path(__file__).resolve().parent.parent / "jiesu/case/lifecycle.py").read_text()
    codes = set(re.findall(r'Refusal\(\s*"([a-z_]+)"', source))
    assert codes and codes <= set(glossary.REFUSAL), sorted(codes - set(glossary.REFUSAL))


def test_every_refusal_of_an_action_s_path_reads_in_chinese() -> None:
    """The same for the API's own answers on an action's way to the case (api/cases.py: the
    case closed meanwhile, not ready; the action specs' helpers), which the console's case
    page shows: 409 case_closed read "case JS… is closed" in English there."""
    root = Path(__file__).resolve().parent.parent
    source = "".join((root / name).read_text() for name in (
        "api/cases.py", "api/routers/supervision.py", "api/routers/handling.py",
        "api/routers/citizen.py"))  # fmt: skip
    codes = set(re.findall(r'ApiError\(\s*[45]\d\d,\s*"([a-z_]+)"', source))
    assert {"case_closed", "case_changed", "case_not_ready", "no_reassignment"} <= codes
    assert codes <= set(glossary.REFUSAL), sorted(codes - set(glossary.REFUSAL))


def _enum_fields(model: type[BaseModel]) -> dict[str, type]:
    """The fields of a form's model that take one of the case's vocabulary (an enum)."""
    found = {}
    for name, info in model.model_fields.items():
        for t in (info.annotation, *get_args(info.annotation)):
            if isinstance(t, type) and issubclass(t, enum.Enum):
                found[name] = t
    return found


def test_a_refused_choice_of_a_case_form_is_said_by_the_names_its_select_shows() -> None:
    """Each select of the case pages' forms (the actions' bodies, intake) shows the glossary's
    terms and is listed in web.FIELD_TERMS, so a value no select offers (a stale or forged
    form) is refused by those terms: 已解决、已解释说明, not resolved、explained."""
    bodies = {a.spec.body for a in (*STAFF_ACTIONS, *CITIZEN_ACTIONS) if a.spec.body}
    for model in (*bodies, ComplaintIntake):
        for name, vocabulary in _enum_fields(model).items():
            assert web.FIELD_TERMS.get(name) is vocabulary, (model.__name__, name)
    with pytest.raises(ValidationError) as refused:
        ReplyInput.model_validate({"outcome": "done", "text": "已处理"})
    assert validation_message(refused.value) == (
        "输入有误 — 办理结果：须为以下之一：已解决、已解释说明")
    with pytest.raises(ValidationError) as refused:
        ComplaintIntake.model_validate({"channel": "pigeon", "title": "井盖松动",
                                        "description": "井盖松动了", "category_id": "x",
                                        "grid_id": "y", "citizen": {"name": "张三"}})
    said = validation_message(refused.value)
    assert said.startswith("输入有误 — 受理渠道：须为以下之一：12345热线、APP、微信"), said
    assert "hotline" not in said, said


def test_every_refusal_of_intake_reads_in_chinese() -> None:
    """The same for the filing service's refusals (jiesu/intake: filing, knowledge base), which
    the console's intake form and the citizen's own report form show."""
    intake = Path(__file__).resolve().parent.parent / "jiesu/intake"
    source = "".join((intake / name).read_text() for name in ("filing.py", "knowledge.py"))
    codes = set(re.findall(r'IntakeRefused\(\s*"([a-z_]+)"', source))
    assert {"blank_title", "unknown_grid", "answer_not_valid"} <= codes
    assert codes <= set(glossary.REFUSAL), sorted(codes - set(glossary.REFUSAL))


AT = "2026-03-02T01:30:00+00:00"  # 09:30 in Beijing
# What each kind's event carries as the workflow records it (workflows/complaint.py,
# case_record.py, ladder.py), the system's own English sentences included.
RECORDED: dict[EventKind, dict] = {
    EventKind.RECEIVED: {"title": "井盖缺失", "category_id": "sewer_blockage", "grid_id": "G-1",
                         "channel": "hotline", "urgency": "urgent", "received_at": AT},
    EventKind.ROUTED: {"department_id": "water", "department_name": "水务局", "rule_id": 7,
                       "note": ""},
    EventKind.QUEUED: {"department_id": "centre", "reason": "reassignment limit reached"},
    EventKind.DISPATCHED: {"department_id": "water", "department_name": "水务局",
                           "rule_id": None, "note": "请尽快处理"},
    EventKind.DEADLINES_SET: {"accept": AT, "contact": AT, "finish": AT,
                              "rating_window_hours": 72.0, "return_window_hours": 24.0},
    EventKind.ACCEPTED: {},
    EventKind.CONTACTED: {"note": "已电话联系"},
    EventKind.REPLIED: {"outcome": "explained", "text": "已疏通", "evidence": []},
    EventKind.RATED: {"rating": "basically_satisfied", "comment": ""},
    EventKind.CALLBACK: {"rating": "satisfied", "comment": "given on the call"},
    EventKind.DEADLINE_BREACHED: {"deadline_kind": "accept", "deadline": AT,
                                  "department_id": "water"},
    EventKind.REJECTED: {"action": "reply", "code": "evidence_required",
                         "reason": "an explained reply needs evidence"},
    EventKind.CLOSED: {"resolution": "not_rated"},
    EventKind.RETURNED: {"reason": "不属本单位职责", "department_id": "water",
                         "awaiting_approval": True},
    EventKind.RETURN_UPHELD: {"department_id": "water",
                              "note": "upheld: no decision by the deadline (逾期未审视为同意)"},
    EventKind.RETURN_REJECTED: {"department_id": "water", "reason": "属于本单位职责",
                                "return_reason": "不属本单位职责"},
    EventKind.RETURN_DECISION_OVERDUE: {"decision_due": AT, "department_id": "water"},
    EventKind.SECOND_ASSIGNMENT_ORDERED: {"reason": "超时未办", "department_id": "water",
                                          "to_department_id": "housing", "overdue": ["accept"],
                                          "on_review": False},
    EventKind.LEVEL_RAISE_REQUESTED: {"reason": "需市级协调", "department_id": "water"},
    EventKind.HANDED_OVER: {"reason": "机构改革", "department_id": "water",
                            "to_department_id": "housing"},
    EventKind.REASSIGNMENT_STARTED: {"n": 1, "reason": "second_assignment",
                                     "child_id": "JS1-reassignment-1"},
    EventKind.REASSIGNED: {"from_department_id": "water", "department_id": "housing",
                           "department_name": "住建局", "round": 2, "by_rule": False,
                           "note": ""},
    EventKind.REASSIGNMENT_FAILED: {"n": 1, "child_id": "JS1-reassign-1",
                                    "reason": "Child Workflow execution terminated"},
    EventKind.REHANDLE_STARTED: {"unsatisfied_rounds": 1, "reason": "没修好"},
    EventKind.ESCALATION_STARTED: {"n": 1, "trigger": "supervisor", "child_id": "JS1-escalation-1",
                                   "form": "supervise", "opinion": "请两日内办结", "due": AT,
                                   "department_id": "water"},
    EventKind.ESCALATED: {"n": 1, "level": 2, "level_name": "urge", "department_id": "water",
                          "trigger": "accept_breached"},
    EventKind.ESCALATION_STOPPED: {"n": 1, "final_level": 3, "stopped": True},
    EventKind.ACCOUNTABILITY_RECORDED: {
        "n": 1, "department_id": "water", "persons": [], "decision": "", "ordered": False,
        "reason": "the supervision ladder reached accountability (finish_breached)"},
    EventKind.CO_HANDLERS_ADDED: {"department_ids": ["housing", "police"], "note": "", "due": AT},
    EventKind.CONTRIBUTED: {"text": "已巡查"},
    EventKind.CONTRIBUTION_OVERDUE: {"department_id": "police", "due": AT},
    EventKind.CO_HANDLER_WAIVED: {"department_id": "police"},
    EventKind.EXTENSION_REQUESTED: {"reasons": "管网改造", "measures": "临时排水",
                                    "promised_finish": AT, "decision_due": None},
    EventKind.EXTENSION_DECIDED: {
        "approved": True, "new_deadline": AT,
        "note": "approved: no decision by the deadline (逾期未审视为同意)"},
    EventKind.EXTENSION_DECISION_OVERDUE: {"decision_due": AT, "department_id": "water"},
    EventKind.REPEAT_REFILED: {"report_id": "5", "channel": "wechat", "refiled_as": "JS-2",
                               "merged": False, "reason": ""},
    EventKind.REPEAT_REPORTED: {"report_id": 5, "channel": "wechat", "description": "又冒水了",
                                "repeat_count": 2},
    EventKind.SUPPLEMENTED: {"text": "晚上更严重"},
    EventKind.WITHDRAWN: {"reason": ""},
    EventKind.PROJECTION_FAILED: {"version": 3, "reason": "CheckViolationError: value too long"},
    EventKind.ROUTING_FAILED: {"reason": "ApplicationError: grid unknown"},
    EventKind.HISTORY_LARGE: {"history_bytes": 11 * 1024 * 1024, "history_events": 10_300},
    EventKind.LINKED_TO_HISTORY: {"case_ids": ["JS20260301-000001"], "reports": 3,
                                  "window_days": 30, "reports_before_supervision": 2},
    EventKind.ANSWERED_DIRECTLY: {"answer_id": 7, "version": 2, "question": "社保怎么交",
                                  "text": "请到社保中心办理", "source": "人社局",
                                  "valid_until": None},
    EventKind.SOLVED_ON_THE_SPOT: {"department_id": "G-1", "text": "已清理", "evidence": []},
}  # fmt: skip
NAMES = {"water": "水务局", "housing": "住建局", "police": "公安局"}
ENGLISH = re.compile(r"[A-Za-z]{3,}")  # a word of English (ids such as JS…, G-1 are shorter)


@pytest.mark.parametrize("kind", list(EventKind))
def test_every_event_of_a_case_reads_in_chinese_at_the_console(kind: EventKind) -> None:
    """办理经过 on the case page and the citizen's page: each kind of event in Chinese, with
    the units' names and the hotline's time (the auditor's timeline keeps its English)."""
    words = event_words.Words(NAMES, lambda v: local_time(v) if v else "")
    said = event_words.summary(kind, RECORDED[kind], words)
    assert re.search(r"[\u4e00-\u9fff]", said), said
    assert not ENGLISH.search(said.replace("MiB", "")), said
    assert "water" not in said and "UTC" not in said, said
    if "T01:30" in str(RECORDED[kind]) and kind is not EventKind.RECEIVED:
        assert "09:30" in said, said


def test_who_acted_reads_in_chinese() -> None:
    words = event_words.Words(NAMES, local_time)
    assert event_words.who(SYSTEM_ACTOR, words) == "系统"
    assert event_words.who(Actor(role=Role.CITIZEN, name=CASE_CITIZEN_NAME), words) == "诉求人"
    repeat = Actor(role=Role.CITIZEN, name=repeat_reporter_name(3))
    assert event_words.who(repeat, words) == "并单诉求人"
    # a report a channel filed is its citizen's own (受理), or a repeat's (并单)
    assert event_words.who(SMS_ACTOR, words, EventKind.RECEIVED) == "诉求人（短信）"
    assert event_words.who(MAIL_ACTOR, words) == "诉求人（电子邮件）"
    assert event_words.who(SELF_SERVICE_ACTOR, words, EventKind.REPEAT_REPORTED) == (
        "并单诉求人（自助提交）")
    # an API key's action (no person): its role and unit, through the interface — not the
    # key's English name (the auditor's 审计记录 keeps it)
    key = Actor(role=Role.DEPARTMENT, name="demo-dept-water", department_id="water")
    assert event_words.who(key, words) == "承办单位（接口 · 水务局）"
    operator = Actor(role=Role.OPERATOR, name="demo-operator")
    assert event_words.who(operator, words) == "话务员（接口）"
    clerk = Actor(role=Role.DEPARTMENT, name="water-clerk", department_id="water")
    person = clerk.model_copy(update={"person": "water-clerk"})
    assert event_words.who(person, words) == "water-clerk（承办单位 · 水务局）"  # no display name
    named = event_words.Words(NAMES, local_time, {"water-clerk": "王芳"})
    assert event_words.who(person, named) == "王芳（承办单位 · 水务局）"


@pytest.mark.parametrize("enum", list(glossary.TERMS))
def test_every_member_of_the_vocabulary_has_its_chinese_term(enum: type) -> None:
    assert set(glossary.TERMS[enum]) == set(enum), enum.__name__
    assert all(glossary.TERMS[enum].values())


def test_the_token_of_a_follow_up_link_never_reaches_the_access_log() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/my/SECRET-token_1?x=1", "1.1", 200),
                               None)  # fmt: skip
    RedactLinks().filter(record)
    assert "SECRET" not in record.getMessage() and "/my/…" in record.getMessage()


async def test_pages_need_a_session_and_forms_a_csrf_token(api: httpx.AsyncClient) -> None:
    answer = await api.get("/console/inbox")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
    login = await api.get("/console/login")
    assert "script-src 'self'" in login.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in login.headers["content-security-policy"]
    async with httpx.AsyncClient(transport=api._transport, base_url=api.base_url) as browser:
        signed = await browser.post(
            "/console/login", data={"login": "water-clerk", "password": "water-clerk-demo-pass"}
        )
        assert signed.status_code == 303
        browser.cookies.set("jiesu_session", signed.cookies["jiesu_session"])
        assert (await browser.get("/console/inbox")).status_code == 200
        assert (await browser.get("/console/intake")).status_code == 403  # not an operator
        refused = await browser.post("/console/logout")  # no CSRF token
        assert refused.status_code == 403
        assert (await browser.get("/console/inbox")).status_code == 200  # still signed in
    wrong = await api.post("/console/login", data={"login": "operator", "password": "x"})
    assert wrong.status_code == 401 and "jiesu_session" not in wrong.cookies


async def test_a_sign_in_posted_from_another_site_opens_no_session(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """Login CSRF: the login form has no session, so no CSRF token, and another site's page
    can post it with an account of the attacker's: the browser would be signed in as them
    (its own session's cookie replaced) and what its user then does recorded as theirs. A
    browser says where a form comes from (Sec-Fetch-Site; Origin for one without it): from
    another site, a sibling site or an opaque page the sign-in is refused (403 cross_site)
    before the password is looked at, and no session is opened. From the console's own page
    (as Chromium posts it: Origin null under our no-referrer policy, tests/
    test_console_browser.py) or without either header (not a browser) it signs in."""
    sessions = "SELECT count(*) FROM staff_sessions s JOIN staff p ON p.id = s.staff_id" \
        " WHERE p.login = 'operator'"  # fmt: skip
    before = await pool.fetchval(sessions)
    form = {"login": "operator", "password": "operator-demo-pass"}
    # a browser of its own: the shared ``api`` client would keep the session cookie, and every
    # later test's request without a key would be signed in as the operator
    async with httpx.AsyncClient(transport=api._transport, base_url=api.base_url) as browser:
        for headers in (
            {"Origin": "http://attacker.example", "Sec-Fetch-Site": "cross-site"},
            {"Origin": "null", "Sec-Fetch-Site": "cross-site"},  # a sandboxed frame
            {"Origin": "http://intranet.jiesu.test", "Sec-Fetch-Site": "same-site"},
            {"Origin": "http://attacker.example"},  # a browser without Fetch Metadata
        ):
            refused = await browser.post("/console/login", data=form, headers=headers)
            assert refused.status_code == 403, (headers, refused.status_code)
            assert "jiesu_session" not in refused.cookies
        assert await pool.fetchval(sessions) == before
        for headers in (
            {"Origin": "null", "Sec-Fetch-Site": "same-origin"},  # the console's own login page
            {"Origin": "http://jiesu.test"},  # the same, in a browser without Fetch Metadata
            {},  # a script
        ):
            browser.cookies.clear()
            signed = await browser.post("/console/login", data=form, headers=headers)
            assert signed.status_code == 303 and "jiesu_session" in signed.cookies, headers
    assert await pool.fetchval(sessions) == before + 3



async def test_an_opaque_page_cannot_sign_in_a_browser_without_fetch_metadata(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """A browser without Fetch Metadata (no Sec-Fetch-Site) is judged by Origin. Another
    site's page gets ``Origin: null`` on its form just by sending ``Referrer-Policy:
    no-referrer`` itself (or from a sandboxed frame), so ``null`` cannot pass for the
    console's own: the login page posts its form with its origin (``<meta name="referrer"
    content="same-origin">``: the Fetch standard's Origin for a same-origin POST under that
    policy), and ``null`` is refused (403 cross_site, no session)."""
    sessions = "SELECT count(*) FROM staff_sessions s JOIN staff p ON p.id = s.staff_id" \
        " WHERE p.login = 'operator'"  # fmt: skip
    before = await pool.fetchval(sessions)
    form = {"login": "operator", "password": "operator-demo-pass"}
    async with httpx.AsyncClient(transport=api._transport, base_url=api.base_url) as browser:
        login_page = await browser.get("/console/login")
        assert '<meta name="referrer" content="same-origin">' in login_page.text
        refused = await browser.post("/console/login", data=form, headers={"Origin": "null"})
        assert refused.status_code == 403, refused.status_code
        assert "jiesu_session" not in refused.cookies
        assert await pool.fetchval(sessions) == before


async def test_a_page_opened_from_another_site_records_no_view_of_the_content(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """A session's cookie goes with a link followed from any site (SameSite=Lax): another
    site could send a clerk's browser to a case's page, or to the API's content, and put a
    view of that citizen's data in the clerk's name in the auditors' record. Opened from
    another site, the console's case page shows the content masked, records nothing and
    offers to show it (a click on our own page); the API refuses a session's request from
    another site (403 cross_site). From our own pages, as before."""
    phone = "13912340000"
    case_id = (await register(api, citizen={"name": "王芳", "phone": phone}))["case_id"]
    views = "SELECT count(*) FROM content_views WHERE case_id = $1"
    operator = await signed_in(api, "operator")
    page_url, api_url = f"/console/cases/{case_id}", f"/api/v1/cases/{case_id}/content"
    try:
        away = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}

        async def opened(headers: dict[str, str]) -> httpx.Response | None:
            page = await operator.get(page_url, headers=headers)
            return page if page.status_code == 200 else None  # 503 while the case starts

        page = await eventually(lambda: opened(away), within=20)
        assert phone not in page.text and 'id="withheld"' in page.text
        assert f'href="{page_url}"' in page.text
        refused = await operator.get(api_url, headers=away)
        assert refused.status_code == 403 and "cross_site" in refused.text
        assert await pool.fetchval(views, case_id) == 0

        own = await opened({"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate"})
        assert own is not None and phone in own.text and 'id="withheld"' not in own.text
        assert (await operator.get(api_url, headers={"Sec-Fetch-Site": "same-origin"})).json()[
            "citizen_phone"
        ] == phone
        assert await pool.fetchval(views, case_id) == 2
    finally:
        await operator.aclose()



async def test_an_audit_page_opened_from_another_site_shows_no_history_and_records_no_view(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The auditor's timeline shows what the case's history carries (jiesu.access.content's
    HISTORY_CONTENT): opening it is a recorded view. Another site could send an
    auditor's browser there (SameSite=Lax) and put that view in their name: opened from another
    site, the timeline and its export are not shown, nothing is recorded, and a link on our own
    page opens it. From our own pages: shown and recorded. Before, the page was shown from
    anywhere and no read of a history was recorded at all."""
    title = "审计楼下的噪音"
    case_id = (await register(api, title=title))["case_id"]
    views = "SELECT fields FROM content_views WHERE case_id = $1 ORDER BY id"
    auditor = await signed_in(api, "auditor")
    page_url = f"/console/audit/{case_id}"
    try:
        away = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
        for url in (page_url, f"{page_url}/history.json"):
            page = await auditor.get(url, headers=away)
            assert page.status_code == 200 and 'id="withheld"' in page.text
            assert title not in page.text and f'href="{url}"' in page.text
        assert await pool.fetch(views, case_id) == []

        own = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate"}
        shown = await eventually(lambda: _history_shown(auditor, page_url, own), within=20)
        assert title in shown.text and 'id="withheld"' not in shown.text
        assert [r["fields"] for r in await pool.fetch(views, case_id)] == [
            ["description", "address", "evidence"]
        ]
    finally:
        await auditor.aclose()


async def _history_shown(
    browser: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> httpx.Response | None:
    page = await browser.get(url, headers=headers)
    return page if page.status_code == 200 and "审计记录" in page.text else None


async def test_a_page_opened_from_another_site_shows_no_content_in_its_timeline(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The content travels in the case's events too (the citizen's supplement, 补充诉求; a
    repeat report's description): a page opened from another site that says the content is
    hidden hides it there as well, as it is hidden from whoever sees the content masked
    (jiesu.access.content.masked_case); and records no view. From our own page, shown."""
    created = await register(api)
    case_id, secret = created["case_id"], "我住3单元502，手机13912340001"
    supplement = await eventually(lambda: _supplemented(api, case_id, created, secret),
                                  within=20)  # fmt: skip
    assert supplement.status_code == 200, supplement.text
    operator = await signed_in(api, "operator")
    page_url = f"/console/cases/{case_id}"
    try:
        away = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
        page = await operator.get(page_url, headers=away)
        assert page.status_code == 200 and 'id="withheld"' in page.text
        assert secret not in page.text
        assert await pool.fetchval(
            "SELECT count(*) FROM content_views WHERE case_id = $1", case_id
        ) == 0
        own = await operator.get(page_url, headers={"Sec-Fetch-Site": "same-origin"})
        assert own.status_code == 200 and secret in own.text
    finally:
        await operator.aclose()


async def _supplemented(
    api: httpx.AsyncClient, case_id: str, created: dict, text: str
) -> httpx.Response | None:
    """The citizen's supplement, once the case can take it (None while it starts)."""
    answer = await api.post(f"/api/v1/complaints/{case_id}/supplement",
                            json={"token": created["citizen_token"], "text": text})  # fmt: skip
    return None if answer.status_code == 503 else answer


async def test_the_case_page_offers_what_the_lifecycle_allows_now(
    api: httpx.AsyncClient,
) -> None:
    created = await register(api, category_id="sewer_blockage", grid_id="G-QH-03-02-2")
    state = await eventually(lambda: _assigned(api, created["case_id"]))
    assigned = CaseState.model_validate(state)
    water = Principal("w", Role.DEPARTMENT, "water")
    names = [a.name for a in allowed_actions(assigned, water)]
    assert names == ["accept", "return", "extension", "raise-level"]
    housing = Principal("h", Role.DEPARTMENT, "housing")
    assert allowed_actions(assigned, housing) == []
    supervisor = Principal("s", Role.SUPERVISOR, None)
    assert [a.name for a in allowed_actions(assigned, supervisor)] == [
        "co-handlers", "supervision"
    ]


def test_who_sees_a_case_is_decided_by_role_and_nothing_else_sees_it() -> None:
    """Principal.can_see: the centre's staff and auditors every case, a department the cases
    it handles — and any other role none (it allowed every role but the two scoped ones, so a
    citizen's Principal, as the console's citizen page builds one, saw every case)."""
    case = CaseState.model_construct(co_handlers=[], assignment=Assignment(
        department_id="water", department_name="水务局", assigned_at=datetime.now(UTC),
        by_rule=True))  # fmt: skip
    seen = {role: Principal("p", role, "water" if role is Role.DEPARTMENT else None).can_see(case)
            for role in Role if role is not Role.GRID_WORKER}  # fmt: skip
    assert seen == {Role.OPERATOR: True, Role.SUPERVISOR: True, Role.AUDITOR: True,
                    Role.ADMIN: True, Role.DEPARTMENT: True, Role.CITIZEN: False,
                    Role.SYSTEM: False}  # fmt: skip
    assert not Principal("p", Role.DEPARTMENT, "housing").can_see(case)


def test_the_co_handler_choices_are_what_the_lifecycle_would_convene() -> None:
    """会办's pickers (lifecycle.co_handler_choices): not the lead, not a co-handler owing or
    having contributed — a released one (waived) again, since lean-case-v8 — and nothing once
    the case has its MAX_CO_HANDLERS."""
    police = CoHandler(department_id="police", department_name="县公安局", waived=True)
    housing = CoHandler(department_id="housing", department_name="县住建局",
                        contributed_at=datetime.now().astimezone())  # fmt: skip
    lead = Assignment(department_id="water", department_name="县水务局",
                      assigned_at=datetime.now().astimezone(), by_rule=True)  # fmt: skip
    state = CaseState.model_construct(assignment=lead, co_handlers=[police, housing],
                                      reconvenes_released=True)  # fmt: skip
    units = ["water", "police", "housing", "market"]
    assert lifecycle.co_handler_choices(state, units) == ["police", "market"]
    # a case before lean-case-v8 refuses a released one (already_involved): not offered
    before_v8 = state.model_copy(update={"reconvenes_released": False})
    assert lifecycle.co_handler_choices(before_v8, units) == ["market"]
    full = [CoHandler(department_id=f"d{n}", department_name="…")
            for n in range(lifecycle.MAX_CO_HANDLERS)]  # fmt: skip
    assert lifecycle.co_handler_choices(state.model_copy(update={"co_handlers": full}), units) == []


async def test_the_case_page_masks_as_the_content_service_does_and_records_views(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """A citizen anonymous to the department: the water bureau's clerk sees the case without
    the name and phone; the centre's supervisor sees them; each unmasked view is recorded."""
    phone = "13912345678"
    created = await register(
        api, category_id="sewer_blockage", grid_id="G-QH-03-02-2",
        citizen={"name": "李秀英", "phone": phone, "anonymous_to_department": True},
    )  # fmt: skip
    case_id = created["case_id"]
    await eventually(lambda: _assigned(api, case_id))
    clerk = await signed_in(api, "water-clerk")
    page = (await clerk.get(f"/console/cases/{case_id}")).text
    await clerk.aclose()
    assert "139****5678" in page and "李秀英" not in page, page
    assert phone not in page
    supervisor = await signed_in(api, "supervisor")
    page = (await supervisor.get(f"/console/cases/{case_id}")).text
    await supervisor.aclose()
    assert phone in page and "李秀英" in page
    views = {
        r["viewer"]: set(r["fields"])
        for r in await pool.fetch(
            "SELECT viewer, fields FROM content_views WHERE case_id = $1", case_id
        )
    }
    assert "citizen_phone" not in views["water-clerk"] and "description" in views["water-clerk"]
    assert "citizen_phone" in views["supervisor"]


async def _assigned(api: httpx.AsyncClient, case_id: str) -> dict | None:
    response = await api.get(f"/api/v1/complaints/{case_id}", headers=department("water"))
    if response.status_code == 200 and response.json()["status"] == "assigned":
        return response.json()
    return None


class Phone:
    def __init__(self) -> None:
        self.messages: list[OutboundNotice] = []

    async def send(self, notice: OutboundNotice) -> None:
        self.messages.append(notice)


async def test_intake_sends_the_citizen_the_link_without_storing_the_token(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    first = complaint()
    created = await register(api, **first)
    case_id, token = created["case_id"], created["citizen_token"]
    repeat = await api.post(  # the same citizen, problem and place: a repeat report (并单)
        "/api/v1/complaints", json={**first, "title": "Still loud"},
        headers={"Authorization": "Bearer jiesu-demo-operator"},
    )  # fmt: skip
    assert repeat.status_code == 200 and repeat.json()["merged"], repeat.text
    repeat_token = repeat.json()["citizen_token"]

    stored = await pool.fetch(
        "SELECT body FROM notifications WHERE case_id = $1 AND key LIKE '%follow-up'", case_id
    )
    assert len(stored) == 2 and all(LINK in r["body"] for r in stored)
    everything = await pool.fetchval(
        "SELECT string_agg(body || subject, ' ') FROM notifications WHERE case_id = $1", case_id
    )
    assert token not in everything and repeat_token not in everything

    phone = Phone()
    dispatcher = OutboxDispatcher(pool, phone, batch=500, render=FollowUpLinks(pool, settings))

    async def both_sent() -> list[OutboundNotice]:
        await dispatcher.run_once()
        mine = [n for n in phone.messages if n.case_id == case_id and "/my/" in n.body]
        return mine if len(mine) == 2 else []

    sent = await eventually(both_sent)
    own = next(n for n in sent if n.recipient_id == case_id)
    assert follow_up_link(settings, token) in own.body and case_id in own.body
    assert own.address == first["citizen"]["phone"] and own.channel == "sms"
    other = next(n for n in sent if n.recipient_id != case_id)
    assert follow_up_link(settings, repeat_token) in other.body
    assert citizen_tokens.digest(repeat_token) != citizen_tokens.digest(token)

    page = await api.get(f"/my/{token}")
    assert page.status_code == 200 and case_id in page.text
    # 派单：县城市管理局, not 派单 ：… (a blank before the full-width colon, from the template)

    async def routed() -> httpx.Response | None:
        shown = await api.get(f"/my/{token}")
        return shown if "派单</strong>" in shown.text else None

    assert re.search(r"派单</strong>：", (await eventually(routed, within=20)).text)
    assert (await api.get("/my/not-a-token-of-anyone")).status_code == 404


def test_static_folder_is_packaged() -> None:
    assert (STATIC / "console.js").exists() and Path(TEMPLATES / "base.html").exists()


async def test_the_people_page_names_a_persons_unit(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """人员管理's 单位 column showed the unit's code (water) where the admin reads and picks
    units by name everywhere else (the new person's form lists 县水务局); now its name, and a
    person of no unit (an operator) —."""
    admin = await signed_in(api, "admin")
    listed = await admin.get("/console/people")
    await admin.aclose()
    assert listed.status_code == 200

    def unit_of(login: str) -> str:
        found = re.search(rf'<td data-label="登录名">{login}</td>.*?<td data-label="单位">'
                          r"([^<]*)</td>", listed.text, re.S)  # fmt: skip
        assert found is not None, login
        return found[1]

    name = await pool.fetchval("SELECT name FROM departments WHERE id = 'water'")
    assert unit_of("water-clerk") == name, (unit_of("water-clerk"), name)
    assert unit_of("operator") == "—"


async def test_the_admin_manages_people_on_the_people_page(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """人员管理: only an admin; a form without the CSRF token changes nothing; a person created
    and disabled there is recorded like any account change."""
    supervisor = await signed_in(api, "supervisor")
    assert (await supervisor.get("/console/people")).status_code == 403
    await supervisor.aclose()
    admin = await signed_in(api, "admin")
    listed = await admin.get("/console/people")
    assert listed.status_code == 200 and "water-clerk" in listed.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', listed.text)
    assert token is not None
    person = {"login": "page-clerk", "display_name": "赵磊", "role": "department",
              "department_id": "water", "password": "page-clerk-long-password"}  # fmt: skip
    refused = await admin.post("/console/people", data=person)
    assert refused.status_code == 403
    assert await pool.fetchval("SELECT count(*) FROM staff WHERE login = 'page-clerk'") == 0
    made = await admin.post("/console/people", data={**person, "csrf_token": token[1]})
    assert made.status_code == 303, made.text
    off = await admin.post(
        "/console/people/page-clerk/active", data={"active": "0", "csrf_token": token[1]}
    )
    assert off.status_code == 303
    await admin.aclose()
    assert await pool.fetchval("SELECT active FROM staff WHERE login = 'page-clerk'") is False
    changes = await pool.fetch(
        "SELECT c.change, c.changed_by FROM staff_changes c JOIN staff s ON s.id = c.staff_id"
        " WHERE s.login = 'page-clerk' ORDER BY c.id"
    )
    assert [(r["change"], r["changed_by"]) for r in changes] == [
        ("created", "person:admin"), ("disabled", "person:admin")
    ]


async def test_the_co_handlers_form_sets_the_contribution_deadline(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    """会办 on the case page: the departments and their contribution deadline (local time)."""
    case_id = (await register(api, category_id="sewer_blockage"))["case_id"]
    await eventually(lambda: _assigned(api, case_id))
    supervisor = await signed_in(api, "supervisor")
    try:
        page = await supervisor.get(f"/console/cases/{case_id}")
        assert 'name="due"' in page.text.split("/actions/co-handlers", 1)[1].split("</form>")[0]
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        due = (datetime.now(ZoneInfo(settings.timezone)) + timedelta(days=2)).replace(
            second=0, microsecond=0, tzinfo=None
        )
        done = await supervisor.post(
            f"/console/cases/{case_id}/actions/co-handlers",
            data={"csrf_token": token[1], "department_ids": "housing", "note": "会同处理",
                  "due": due.isoformat(timespec="minutes")},
        )  # fmt: skip
        assert done.status_code == 303, done.text
    finally:
        await supervisor.aclose()

    async def joined() -> dict | None:
        state = (await api.get(f"/api/v1/complaints/{case_id}", headers=SUPERVISOR_KEY)).json()
        return state if state["co_handlers"] else None

    [co] = (await eventually(joined))["co_handlers"]
    assert co["department_id"] == "housing"
    assert datetime.fromisoformat(co["due"]) == due.replace(tzinfo=ZoneInfo(settings.timezone))


@pytest.mark.parametrize(
    ("phone", "told"),
    [("13812345678", "5678"), ("+86 138-1234-5678", "5678"), ("0086 13812345678", "5678"),
     ("010-12345678", "none"), ("0531 8888 6666", "none"), ("12345", "none")],
)
def test_a_landline_is_not_told_to_wait_for_the_link_by_sms(phone: str, told: str) -> None:
    """A caller who left a landline (010-12345678): the case page told the operator that the
    link goes by SMS to 尾号 5678 — to a line that receives no SMS, so the caller waited for
    a link that never came, and was not told to ask by the case number instead. Only a
    mobile number (jiesu.channels.sms.is_mobile) is one the link is said to go to."""
    from api.console.intake import sms_to

    intake = ComplaintIntake.model_validate(complaint(citizen={"name": "张三", "phone": phone}))
    assert sms_to(intake) == told


async def test_the_case_page_says_the_citizen_got_no_sms_on_a_landline(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """A caller who left a landline (no e-mail): the outbox writes their SMS ``skipped`` (not
    a mobile number), but the case page said nothing of the citizen's notices once the
    受理 note was gone (it is in the redirect's URL only), so nobody knew to call back. Now
    the page lists what the citizen was sent: "未发送短信：不是手机号码" for such a notice."""
    landline = f"010-{uuid.uuid4().int % 10**8:08d}"
    created = await register(api, citizen={"name": "钱七", "phone": landline})
    case_id = created["case_id"]
    await eventually(lambda: pool.fetchval(
        "SELECT 1 FROM notifications WHERE case_id = $1 AND status = 'skipped'", case_id
    ))
    cell = f"139{uuid.uuid4().int % 10**8:08d}"
    mobile = await register(api, citizen={"name": "赵六", "phone": cell})
    await eventually(lambda: pool.fetchval(
        "SELECT 1 FROM notifications WHERE case_id = $1 AND recipient_kind = 'citizen'",
        mobile["case_id"],
    ))
    operator = await signed_in(api, "operator")
    try:
        page = await operator.get(f"/console/cases/{case_id}")
        told = re.search(r'<dd id="citizen-notices">(.*?)</dd>', page.text, re.S)
        assert told and "受理通知" in told[1], page.text
        assert "未发送短信：不是手机号码" in told[1] and "请电话告知诉求人" in told[1], told[1]
        other = await operator.get(f"/console/cases/{mobile['case_id']}")
        told = re.search(r'<dd id="citizen-notices">(.*?)</dd>', other.text, re.S)
        assert told and "未发送" not in told[1], other.text
    finally:
        await operator.aclose()


async def test_the_case_page_does_not_tell_to_phone_a_citizen_who_left_no_contact(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """An app's report without contact (contact is optional for channel app alone): the
    reply's notice is skipped, and the case page said of it what it says of a landline —
    未发送短信：不是手机号码（座机或短号），请电话告知诉求人, in bold — though there is no number
    to call and nothing could be sent. Now it says the citizen left no contact and follows
    the case by its number, not in bold (no call to make); a landline's words are unchanged."""
    from api.console import notice_words
    from jiesu.notify.outbox import OutboxDispatcher

    class Nowhere:
        async def send(self, notice: object) -> None:
            """Takes everything (the department's notices): only the skip matters here."""

    created = await register(api, channel="app", citizen={"name": "匿名"})
    case_id = created["case_id"]
    urban = department("urban-management")
    await eventually(lambda: pool.fetchval(
        "SELECT 1 FROM notifications WHERE case_id = $1 AND recipient_kind = 'department'",
        case_id))  # fmt: skip
    await act(api, case_id, "accept", urban)
    await act(api, case_id, "contact", urban)
    await act(api, case_id, "reply", urban, outcome="resolved", text="已处理")
    dispatcher = OutboxDispatcher(pool, Nowhere(), batch=500)

    async def skipped() -> bool:
        await dispatcher.run_once()
        return await pool.fetchval(
            "SELECT 1 FROM notifications WHERE case_id = $1 AND recipient_kind = 'citizen'"
            " AND status = 'skipped'", case_id)  # fmt: skip

    await eventually(skipped, within=30)
    operator = await signed_in(api, "operator")
    try:
        page = await operator.get(f"/console/cases/{case_id}")
        told = re.search(r'<dd id="citizen-notices">(.*?)</dd>', page.text, re.S)
        assert told and "答复通知" in told[1], page.text
        assert notice_words.NO_CONTACT in told[1], told[1]
        assert "请电话告知诉求人" not in told[1] and "座机" not in told[1], told[1]
        assert "<strong>" not in told[1], told[1]
    finally:
        await operator.aclose()


async def test_the_operator_is_told_where_the_citizens_link_goes_never_shown_it(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    """受理 at the console: the case page tells the operator that the follow-up link goes by
    SMS to the number typed in (its last four digits), so they can tell the caller — and
    neither the page nor anything the operator's browser received holds the link or its
    token (the token rates the case: docs/intake.md "Who receives the token"). Before, the
    page only said an SMS was sent, whether or not the citizen left a number."""
    operator = await signed_in(api, "operator")
    try:
        form = await operator.get("/console/intake")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf, form.text
        body = complaint()
        fields = {"csrf_token": csrf[1], "title": body["title"],
                  "description": body["description"], "category_id": body["category_id"],
                  "grid_id": body["grid_id"], "address": body["address"], "channel": "hotline",
                  "citizen_name": body["citizen"]["name"],
                  "citizen_phone": body["citizen"]["phone"]}  # fmt: skip
        filed = await operator.post("/console/intake", data=fields)
        assert filed.status_code == 303, filed.text
        page = await operator.get(filed.headers["location"])
        assert page.status_code == 200
        note = re.search(r"<p[^>]*data-link-note[^>]*>(.*?)</p>", page.text, re.S)
        assert note and f"尾号 {body['citizen']['phone'][-4:]}" in note[1], page.text
        case_id = re.search(r"/console/cases/(JS[0-9-]+)", filed.headers["location"])[1]
        token = await helpers.texted_token(pool, settings, case_id, body["citizen"]["phone"])
        for seen in (filed, page):
            assert token not in seen.text and "/my/" not in seen.text
            assert token not in str(seen.headers)
    finally:
        await operator.aclose()


async def test_a_landline_caller_with_an_email_gets_their_link_by_email_from_the_console(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    """受理 at the console of a caller on a landline: the form had no e-mail field, so their
    follow-up link (and the reply) could never reach them — the intake SMS was ``skipped``.
    Now the form takes an optional 电子邮箱, validated as the API's citizen e-mail (a bad one
    is a Chinese 422 that keeps what was typed and files nothing); the case page says the link
    goes by e-mail, and the outbox e-mails it there."""
    operator = await signed_in(api, "operator")
    try:
        form = await operator.get("/console/intake")
        assert 'name="citizen_email"' in form.text, form.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf, form.text
        body = complaint()
        landline = f"010-{uuid.uuid4().int % 10**8:08d}"
        mail = f"caller-{uuid.uuid4().hex[:8]}@example.cn"
        title = f"{body['title']} {uuid.uuid4().hex[:12]}"  # this test's own, to count by
        fields = {"csrf_token": csrf[1], "title": title,
                  "description": body["description"], "category_id": body["category_id"],
                  "grid_id": body["grid_id"], "address": body["address"], "channel": "hotline",
                  "citizen_name": "钱七", "citizen_phone": landline}  # fmt: skip

        typo = "caller at example.cn"
        refused = await operator.post("/console/intake", data={**fields, "citizen_email": typo})
        assert refused.status_code == 422, refused.text
        assert "电子邮箱：格式不正确" in refused.text, refused.text
        assert f'value="{typo}"' in refused.text and f'value="{landline}"' in refused.text
        assert re.search(r'name="citizen_email"[^>]*autofocus', refused.text), refused.text
        assert await _filed_with_title(pool, title) == 0

        filed = await operator.post("/console/intake", data={**fields, "citizen_email": mail})
        assert filed.status_code == 303, filed.text
        assert await _filed_with_title(pool, title) == 1  # what the count above looked for
        page = await operator.get(filed.headers["location"])
        note = re.search(r"<p[^>]*data-link-note[^>]*>(.*?)</p>", page.text, re.S)
        assert note and "电子邮件" in note[1] and "未留手机号" not in note[1], page.text
        assert mail not in filed.headers["location"]  # an address is not put in a URL
        case_id = re.search(r"/console/cases/(JS[0-9-]+)", filed.headers["location"])[1]
    finally:
        await operator.aclose()

    stored = await pool.fetchval(  # what the outbox reads (outbox._CITIZEN), as the API stores
        "SELECT payload -> 'intake' -> 'citizen' ->> 'email' FROM intakes WHERE case_id = $1",
        case_id,
    )
    assert stored == mail
    phone = Phone()
    dispatcher = OutboxDispatcher(pool, phone, batch=500, render=FollowUpLinks(pool, settings))

    async def linked() -> list[OutboundNotice]:
        await dispatcher.run_once()
        return [n for n in phone.messages if n.case_id == case_id and "/my/" in n.body]

    [notice] = await eventually(linked)
    assert (notice.channel, notice.address) == ("email", mail)
    status = await pool.fetchval(
        "SELECT status FROM notifications WHERE case_id = $1 AND recipient_kind = 'citizen'"
        " AND event_kind = 'received'", case_id,
    )  # fmt: skip
    assert status == "sent"


async def test_bidirectional_controls_in_a_citizens_text_are_shown_not_obeyed(
    api: httpx.AsyncClient,
) -> None:
    """A citizen's title, description and address may hold bidi controls (the domain refuses
    only Cc/Cs): a U+202E made "退款0001元" read 退款1000元 on the case page and the audit
    timeline. Now every page prints each control as its escape (jiesu.bidi, the audit CLI's
    rule), and the user's texts are isolated (<bdi>). Before, the pages held them raw."""
    rlo, pdf, rli, pdi = "\u202e", "\u202c", "\u2067", "\u2069"
    title = f"退款{rlo}0001{pdf}元未到账"
    created = await register(
        api, title=title, description=f"客服电话{rlo}01234567{pdf}，请回电{rli}abc",
        address=f"幸福路{rli}12{pdi}号",
    )  # fmt: skip
    case_id = created["case_id"]
    await helpers.act(api, case_id, "supplement", token=created["citizen_token"],
                      text=f"金额{rlo}005{pdf}元")  # fmt: skip
    supervisor = await signed_in(api, "supervisor")
    auditor = await signed_in(api, "auditor")
    try:
        own = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate"}

        async def case_page() -> httpx.Response | None:
            page = await supervisor.get(f"/console/cases/{case_id}")
            return page if page.status_code == 200 and "金额" in page.text else None

        pages = {
            "case": await eventually(case_page, within=20),
            "timeline": await eventually(
                lambda: _history_shown(auditor, f"/console/audit/{case_id}", own), within=20
            ),
        }
        for name, page in pages.items():
            shown = page.text
            assert not any(c in shown for c in bidi.BIDI_CONTROLS), name
            assert "退款\\u202e0001\\u202c元未到账" in shown, name
        case_text = pages["case"].text
        assert "<bdi>退款\\u202e0001\\u202c元未到账</bdi>" in case_text
        assert "<bdi>幸福路\\u206712\\u2069号</bdi>" in case_text
        assert "金额\\u202e005\\u202c元" in case_text  # the supplement, in the steps
    finally:
        await supervisor.aclose()
        await auditor.aclose()


def test_the_console_and_the_audit_cli_show_bidi_controls_alike() -> None:
    """One rule (jiesu.bidi): the terminal and the page print the same escape."""
    from jiesu.ops.audit_cli import terminal_safe

    text = "电话\u202e4321\u202c \u2066x\u2069\u200f\u061c"
    assert web.shown(text) == terminal_safe(text) == bidi.visible(text)
    assert not any(c in web.shown(text) for c in bidi.BIDI_CONTROLS)
    assert str(web.isolated("a<b")) == "<bdi>a&lt;b</bdi>"


async def test_the_case_page_and_the_audit_search_name_grids_and_units(
    api: httpx.AsyncClient,
) -> None:
    """Found walking the console as its people: the case page showed the grid as its code
    (G-QH-01-01-1), the auditor's search the unit as its code (water) and asked for a unit's
    and a category's code in free text. Now the grid by its name (code after it), the units
    by name, and both filters pick from the names."""
    case_id = (await register(api, category_id="water_outage", address=""))["case_id"]
    operator, auditor = await signed_in(api, "operator"), await signed_in(api, "auditor")
    try:
        async def case_page() -> httpx.Response | None:
            page = await operator.get(f"/console/cases/{case_id}")
            return page if page.status_code == 200 else None

        page = await eventually(case_page, within=20)
        assert "城关街道幸福社区第1网格" in page.text and "/ G-QH-01-01-1<" not in page.text
        assert "<dt>地址</dt><dd><bdi>—</bdi></dd>" in page.text  # not given: said, no blank

        async def found() -> httpx.Response | None:
            page = await auditor.get("/console/audit", params={"case_id": case_id})
            return page if case_id in page.text else None

        listed = await eventually(found, within=20)
        row = listed.text[listed.text.index(f">{case_id}</a>"):]
        row = row[: row.index("</tr>")]
        assert "县水务局" in row and "<td>water</td>" not in row, row
        assert '<select name="department_id">' in listed.text
        assert '<option value="water" >县水务局' in listed.text
        assert '<select name="category_id">' in listed.text
        picked = await auditor.get(
            "/console/audit", params={"department_id": "water", "category_id": "water_outage"}
        )
        assert case_id in picked.text and '<option value="water" selected>' in picked.text
    finally:
        await operator.aclose()
        await auditor.aclose()


async def test_a_forms_address_opened_again_leads_back_to_its_page(
    api: httpx.AsyncClient,
) -> None:
    """A refused form's page has the form's address (…/actions/reply, /my/<token>/supplement):
    reloaded from the address bar it answered 405 with Starlette's English "Method Not
    Allowed". Now it leads back to the case's (the citizen's) page, and any other form's
    address opened says so in Chinese."""
    operator = await signed_in(api, "operator")
    try:
        opened = await operator.get("/console/cases/JS20260101-000001/actions/reply")
        assert opened.status_code == 303
        assert opened.headers["location"] == "/console/cases/JS20260101-000001"
        mine = await api.get("/my/some-token/supplement")
        assert mine.status_code == 303 and mine.headers["location"] == "/my/some-token"
        other = await operator.get("/console/intake/similar")
        assert other.status_code == 405 and "Method Not Allowed" not in other.text
        assert "此地址用于提交表单" in other.text
    finally:
        await operator.aclose()


async def test_an_intake_without_a_phone_says_the_phone_is_needed(
    api: httpx.AsyncClient,
) -> None:
    """The operator left the phone (and the e-mail) out: the form said 联系电话：格式不正确
    (a blank checked as a number). Now that a phone or an e-mail is needed, the cursor in the
    phone, what was typed kept."""
    operator = await signed_in(api, "operator")
    try:
        form = {"csrf_token": await helpers.csrf_of(operator, "/console/intake"),
                "title": "井盖松动", "description": "幸福路井盖松动", "category_id": "road_damage",
                "grid_id": "G-QH-01-01-1", "address": "幸福路1号", "channel": "hotline",
                "citizen_name": "张三", "citizen_phone": "  "}  # fmt: skip
        refused = await operator.post("/console/intake", data=form)
        assert refused.status_code == 422
        assert "联系电话或电子邮箱：至少填写一项" in refused.text, refused.text
        assert "格式不正确" not in refused.text
        assert re.search(r'name="citizen_phone" autofocus aria-invalid="true"', refused.text)
        assert 'value="井盖松动"' in refused.text
    finally:
        await operator.aclose()


async def test_the_intake_hint_says_an_app_report_needs_no_contact(
    api: httpx.AsyncClient,
) -> None:
    """The form's 受理渠道 offers every channel, APP among them, and an APP report is filed
    with neither phone nor e-mail (ComplaintIntake: contact is optional there alone), yet the
    hint said 联系电话、电子邮箱至少填写一项 whatever the channel. Now the hint says which channel
    needs none, and what follows; the same form on 热线 is still refused."""
    operator = await signed_in(api, "operator")
    try:
        page = await operator.get("/console/intake")
        assert '<option value="app"' in page.text  # the form offers the channel
        hint = re.search(r'<p class="hint" id="contact-hint">(.*?)</p>', page.text, re.S)
        assert hint and "至少填写一项" in hint[1], page.text
        assert "受理渠道为 APP 的可都不填" in hint[1], hint[1]
        form = {"csrf_token": await helpers.csrf_of(operator, "/console/intake"),
                "title": "井盖松动", "description": "幸福路井盖松动", "category_id": "road_damage",
                "grid_id": "G-QH-01-01-1", "address": f"幸福路{uuid.uuid4().hex[:6]}号",
                "channel": "app", "citizen_name": "匿名"}  # fmt: skip
        filed = await operator.post("/console/intake", data=form)
        assert filed.status_code == 303, filed.text
        assert "sms=none" in filed.headers["location"]
        refused = await operator.post("/console/intake", data=form | {
            "channel": "hotline", "csrf_token": await helpers.csrf_of(operator, "/console/intake")})
        assert refused.status_code == 422 and "至少填写一项" in refused.text
    finally:
        await operator.aclose()


async def test_a_caller_who_leaves_only_an_email_is_registered_from_the_console(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """A caller with no phone to give, only an e-mail address (the API takes such a citizen):
    the console's form demanded 联系电话 in the browser, and a form sent without it filed a
    case whose citizen never got a link — it was queued only to a phone. Now the phone is not
    required when an e-mail is given: the case is filed, the case page says the link goes by
    e-mail, and the intake notice with the link is queued for that address; neither phone nor
    e-mail is refused in Chinese, nothing filed."""
    operator = await signed_in(api, "operator")
    try:
        form = await operator.get("/console/intake")
        phone_input = re.search(r'<input name="citizen_phone"[^>]*>', form.text)
        assert phone_input and " required" not in phone_input[0], phone_input
        body = complaint()
        mail = f"nophone-{uuid.uuid4().hex[:8]}@example.cn"
        title = f"{body['title']} {uuid.uuid4().hex[:12]}"  # this test's own, to count by
        fields = {"csrf_token": await helpers.csrf_of(operator, "/console/intake"),
                  "title": title, "description": body["description"],
                  "category_id": body["category_id"], "grid_id": body["grid_id"],
                  "address": body["address"], "channel": "hotline",
                  "citizen_name": "孙八", "citizen_phone": ""}  # fmt: skip
        neither = await operator.post("/console/intake", data={**fields, "citizen_email": " "})
        assert neither.status_code == 422, neither.text
        assert "联系电话或电子邮箱：至少填写一项" in neither.text, neither.text
        assert await _filed_with_title(pool, title) == 0

        filed = await operator.post("/console/intake", data={**fields, "citizen_email": mail})
        assert filed.status_code == 303, filed.text
        assert await _filed_with_title(pool, title) == 1  # what the count above looked for
        page = await operator.get(filed.headers["location"])
        note = re.search(r"<p[^>]*data-link-note[^>]*>(.*?)</p>", page.text, re.S)
        assert note and "电子邮件" in note[1], page.text
        case_id = re.search(r"/console/cases/(JS[0-9-]+)", filed.headers["location"])[1]
    finally:
        await operator.aclose()
    queued = await eventually(lambda: pool.fetch(
        "SELECT channel, status FROM notifications WHERE case_id = $1"
        " AND recipient_kind = 'citizen' AND event_kind = 'received'", case_id))
    assert [tuple(r) for r in queued] == [("email", "pending")]


@pytest.mark.parametrize("typed", ["wang,li@163.com", "wang@163.com;li.cn"])
async def test_an_e_mail_that_is_several_addresses_is_refused_at_the_console(
    api: httpx.AsyncClient, pool: asyncpg.Pool, typed: str
) -> None:
    """受理 at the console of a caller whose 电子邮箱 was typed as several addresses — a comma
    for a full stop, "wang,li@163.com", or two joined by a semicolon: the form filed it, and
    the outbox sends to none of them (test_outbox), so the caller was never told by e-mail.
    Now a Chinese 422 on that field that keeps what was typed, and nothing filed."""
    operator = await signed_in(api, "operator")
    try:
        body = complaint()
        title = f"{body['title']} {uuid.uuid4().hex[:12]}"  # this test's own, to count by
        fields = {"csrf_token": await helpers.csrf_of(operator, "/console/intake"),
                  "title": title, "description": body["description"],
                  "category_id": body["category_id"], "grid_id": body["grid_id"],
                  "address": body["address"], "channel": "hotline",
                  "citizen_name": "周九", "citizen_phone": "010-62345678",
                  "citizen_email": typed}  # fmt: skip
        refused = await operator.post("/console/intake", data=fields)
        assert refused.status_code == 422, refused.text
        assert "电子邮箱：只能填写一个邮箱地址" in refused.text, refused.text
        assert f'value="{typed}"' in refused.text
        assert re.search(r'name="citizen_email"[^>]*autofocus', refused.text), refused.text
        assert await _filed_with_title(pool, title) == 0
    finally:
        await operator.aclose()


async def test_a_refused_form_no_longer_offered_keeps_what_was_typed(
    api: httpx.AsyncClient,
) -> None:
    """A reply sent from a page gone stale (the case replied to meanwhile, or not yet
    accepted) is refused and its form is no longer offered: the page said why, and the text
    typed was lost with the form. Now it is shown next to the refusal, marked 未保存."""
    case_id = (await register(api, category_id="water_outage"))["case_id"]
    clerk = await signed_in(api, "water-clerk")
    try:
        async def case_page() -> httpx.Response | None:
            page = await clerk.get(f"/console/cases/{case_id}")
            return page if page.status_code == 200 else None

        page = await eventually(case_page, within=20)
        assert 'data-action="reply"' not in page.text  # not accepted yet: no reply offered
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        text = "管道已修好，供水恢复，照片见链接"
        refused = await clerk.post(
            f"/console/cases/{case_id}/actions/reply",
            data={"csrf_token": token[1], "outcome": "resolved", "text": text,
                  "evidence": "https://example.org/p.jpg"},
        )  # fmt: skip
        assert refused.status_code == 409, refused.status_code
        unsaved = refused.text[refused.text.index('id="unsaved"'):]
        unsaved = unsaved[: unsaved.index("</div>")]
        assert text in unsaved and "已解决" in unsaved and "https://example.org/p.jpg" in unsaved
        assert "csrf" not in unsaved and "resolved" not in unsaved
    finally:
        await clerk.aclose()


async def test_the_inbox_says_a_replied_case_waits_for_the_citizen(
    api: httpx.AsyncClient,
) -> None:
    """A replied case stays in the unit's inbox until the citizen rates it; its 最近时限 and
    剩余时间 were blank, as if a deadline were missing. Now: 已答复，待诉求人评价."""
    case_id = (await register(api, category_id="water_outage"))["case_id"]
    water = department("water")
    await act(api, case_id, "accept", water)
    await act(api, case_id, "contact", water, note="已电话联系")
    await act(api, case_id, "reply", water, outcome="resolved", text="已恢复供水")
    clerk = await signed_in(api, "water-clerk")
    try:
        async def replied_row() -> str | None:
            page = await clerk.get("/console/inbox")
            start = page.text.find(f'data-case="{case_id}"')
            row = page.text[start: page.text.find("</tr>", start)] if start >= 0 else ""
            return row if "status-replied" in row else None

        row = await eventually(replied_row, within=20)
        assert "已答复，待诉求人评价" in row, row
    finally:
        await clerk.aclose()


async def test_every_page_names_its_icon(api: httpx.AsyncClient) -> None:
    """Every page load asked for /favicon.ico, a 404 in the browser's console (and in the
    access log) on each page of the staff and the citizens. Now the pages name the console's
    own icon, served like its other static files."""
    page = await api.get("/console/login")
    icon = re.search(r'<link rel="icon" href="([^"]+)"', page.text)
    assert icon, page.text[:400]
    served = await api.get(icon[1])
    assert served.status_code == 200 and served.headers["content-type"].startswith("image/svg")


async def test_the_audit_search_takes_a_case_number_as_pasted_and_says_when_it_cut(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A case number pasted with a blank around it, or typed in lower case, found nothing
    (没有符合条件的工单); and the list stopped at 100 cases without a word. Now the number is
    the same number, and a cut list says so."""
    from api.console import audit as audit_page

    case_id = (await register(api))["case_id"]
    auditor = await signed_in(api, "auditor")
    try:
        async def found() -> httpx.Response | None:
            page = await auditor.get("/console/audit", params={"case_id": f" {case_id.lower()} "})
            return page if f">{case_id}</a>" in page.text else None

        await eventually(found, within=20)
        monkeypatch.setattr(audit_page, "SHOWN", 1)
        cut = await auditor.get("/console/audit")
        assert 'id="next-page"' in cut.text and "本页第 1–1 件" in cut.text  # says it pages
        assert cut.text.count('<a href="/console/audit/JS') == 1
    finally:
        await auditor.aclose()


async def test_the_audit_search_pages_through_every_case_it_finds_and_says_how_many(
    api: httpx.AsyncClient, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """审计查询 listed the newest cases of a search and said to narrow it, with no total and
    no way to the rest: an auditor could not reach an older case of a unit or a category.
    Now it says how many cases the search finds and pages through them as 工单查询 does,
    newest first, each page a link that keeps the filters; page 0 or beyond 10,000: 422.
    (Hand-made closed cases of a category of this test's own, received in 1993: no other
    test's case is in the search, and none is pushed down a newest-first list.)"""
    from statcases import case_row, insert_cases

    from api.console import audit as audit_page

    category = f"audit-paging-{os.getpid()}"
    received = datetime(1993, 5, 1, 10, tzinfo=UTC)
    rows = [{**case_row(received + timedelta(days=n), category_id=category),
             "case_id": f"AP{os.getpid() % 100000:05d}-{n}"} for n in range(3)]  # fmt: skip
    await insert_cases(pool, rows)
    monkeypatch.setattr(audit_page, "SHOWN", 2)
    auditor = await signed_in(api, "auditor")
    try:
        search = {"category_id": category, "status": "closed"}
        first = await auditor.get("/console/audit", params=search)
        listed = re.findall(r'<a href="/console/audit/([^"]+)">', first.text)
        assert listed == [rows[2]["case_id"], rows[1]["case_id"]], listed  # newest first
        assert "共 3 件" in first.text and "本页第 1–2 件" in first.text, first.text
        more = re.search(r'<a id="next-page" href="([^"]+)"', first.text)
        assert more is not None, first.text
        second = await auditor.get(more[1].replace("&amp;", "&"))
        assert second.status_code == 200 and "共 3 件" in second.text
        assert re.findall(r'<a href="/console/audit/([^"]+)">', second.text) == [rows[0]["case_id"]]
        assert 'id="next-page"' not in second.text and 'id="previous-page"' in second.text
        past = await auditor.get("/console/audit", params={**search, "page": "9"})
        assert past.status_code == 200 and "共 3 件" in past.text and "这一页没有工单" in past.text
        for bad in ("0", "-1", "x", "10001"):
            refused = await auditor.get("/console/audit", params={**search, "page": bad})
            assert refused.status_code == 422, (bad, refused.status_code)
    finally:
        await auditor.aclose()
        made = [r["case_id"] for r in rows]
        await pool.execute("DELETE FROM cases WHERE case_id = ANY($1)", made)


def _listed(page: httpx.Response) -> list[str]:
    return re.findall(r'<a href="/console/audit/([^"]+)">', page.text)


def _pager_link(page: httpx.Response, which: str) -> str | None:
    found = re.search(rf'<a id="{which}-page" href="([^"]+)"', page.text)
    return found[1].replace("&amp;", "&") if found else None


async def test_the_audit_search_pages_by_position_through_ties_keeping_its_filters(
    api: httpx.AsyncClient, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """审计查询 paged by offset: a deep page read every row above it (200 ms for the last page
    at 200,000 cases, docs/performance.md). Now 下一页 is the page after the last row listed
    and 上一页 the page before the first (keyset, as the case list API's ``after``): followed
    to the end and back, the pages list every case of the search once, in the list's order
    (received_at newest first, then case number — five cases received in the same
    microsecond included), each page says its true 第 a–b 件 of 共 N 件, and every link keeps
    the filters (a case of the category in another status is never listed). A cursor that is
    not one, or two of page/after/before: 422."""
    from statcases import case_row, insert_cases

    from api.console import audit as audit_page

    category = f"audit-keyset-{os.getpid()}"
    tie = datetime(1992, 3, 1, 10, tzinfo=UTC)
    stamps = [tie + timedelta(days=1), *[tie] * 5, tie - timedelta(days=1)]
    prefix = f"AK{os.getpid() % 100000:05d}"
    rows = [{**case_row(at, category_id=category), "case_id": f"{prefix}-{n}"}
            for n, at in enumerate(stamps)]  # fmt: skip
    other = {**case_row(tie, category_id=category, status="handling"), "case_id": f"{prefix}-h"}
    await insert_cases(pool, [*rows, other])
    order = [r["case_id"] for r in sorted(rows, key=lambda r: (-r["received_at"].timestamp(),
                                                                 r["case_id"]))]  # fmt: skip
    monkeypatch.setattr(audit_page, "SHOWN", 2)
    auditor = await signed_in(api, "auditor")
    try:
        search = {"category_id": category, "status": "closed"}
        page = await auditor.get("/console/audit", params=search)
        pages, seen = [page], []
        while True:
            listed = _listed(page)
            a = len(seen) + 1
            assert "共 7 件" in page.text and f"本页第 {a}–{a + len(listed) - 1} 件" in page.text
            seen += listed
            following = _pager_link(page, "next")
            if following is None:
                break
            assert f"category_id={category}" in following and "status=closed" in following
            assert "after=" in following and "page=" not in following
            page = await auditor.get(following)
            assert page.status_code == 200, page.text
            pages.append(page)
        assert seen == order, (seen, order)  # none skipped, none twice, ties by case number
        assert len(pages) == 4
        for earlier in reversed(pages[:-1]):  # and back, page by page
            back = _pager_link(page, "previous")
            assert back is not None and "before=" in back and f"category_id={category}" in back
            page = await auditor.get(back)
            assert _listed(page) == _listed(earlier)
        assert _pager_link(page, "previous") is None and "本页第 1–2 件" in page.text
        cursor = re.search(r"after=([^&\"]+)", _pager_link(pages[0], "next") or "")[1]
        for bad in ({"after": "not-a-cursor"}, {"before": "MTox"},
                    {"after": cursor, "page": "2"}, {"after": cursor, "before": cursor}):
            refused = await auditor.get("/console/audit", params={**search, **bad})
            assert refused.status_code == 422, (bad, refused.status_code)
    finally:
        await auditor.aclose()
        await pool.execute("DELETE FROM cases WHERE case_id LIKE $1", f"{prefix}-%")


async def test_the_audit_search_counts_what_it_lists_in_one_snapshot(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The page's rows and its 共 N 件 were two statements: a case filed (or closed) between
    them was counted and not listed, or listed and not counted. Now both are read in one
    read-only snapshot, as the boards are. A writer files and withdraws a case of this
    test's category without pause while the auditor searches it (fewer cases than a page):
    every page's count is the number of rows it lists."""
    from statcases import case_row, insert_cases

    category = f"audit-snapshot-{os.getpid()}"
    prefix = f"AS{os.getpid() % 100000:05d}"
    base = datetime(1991, 6, 1, 10, tzinfo=UTC)
    await insert_cases(pool, [{**case_row(base, category_id=category), "case_id": f"{prefix}-0"}])
    flicker = {**case_row(base + timedelta(hours=1), category_id=category),
               "case_id": f"{prefix}-1"}  # fmt: skip

    async def flicker_once() -> None:
        await insert_cases(pool, [flicker])
        await pool.execute("DELETE FROM cases WHERE case_id = $1", flicker["case_id"])

    auditor = await signed_in(api, "auditor")
    try:
        disagreed = await _counts_unlike_rows_while_writing(
            auditor, "/console/audit", {"category_id": category}, _listed, flicker_once
        )
        assert not disagreed, disagreed
    finally:
        await auditor.aclose()
        await pool.execute("DELETE FROM cases WHERE case_id LIKE $1", f"{prefix}-%")


async def _counts_unlike_rows_while_writing(
    reader: httpx.AsyncClient, url: str, params: dict[str, str],
    listed: Callable[[httpx.Response], list[Any]], write_once: Callable[[], Awaitable[None]],
) -> list[tuple[str | None, int]]:
    """Read ``url`` 150 times while ``write_once`` runs again and again beside it: each page
    whose 共 N 件 is not the number of rows it lists (its words, its rows)."""
    done = asyncio.Event()

    async def writer() -> None:
        while not done.is_set():
            await write_once()

    writing = asyncio.create_task(writer())
    try:
        disagreed = []
        for _ in range(150):
            page = await reader.get(url, params=params)
            total = re.search(r"共 (\d+) 件", page.text)
            shown = len(listed(page))
            if (int(total[1]) if total else 0) != shown:
                disagreed.append((total and total[0], shown))
        return disagreed
    finally:
        done.set()
        await writing


async def test_a_citizens_pages_lead_nowhere_into_the_staff_console(
    api: httpx.AsyncClient,
) -> None:
    """The citizen's pages (/my/…) had the staff header: 接诉即办 12345 工单系统 linking to
    /console/, and an error (a mistyped link) offered 返回首页 — both the staff login page.
    Now a citizen's page names the hotline, links nowhere into the console, and an error says
    to call 12345. The staff's pages keep their home link."""
    lost = await api.get("/my/not-a-token-of-anyone")
    assert lost.status_code == 404
    assert 'href="/console/"' not in lost.text and "返回首页" not in lost.text
    assert "12345 热线" in lost.text and "请拨打 12345" in lost.text
    staff = await api.get("/console/login")
    assert 'class="brand" href="/console/"' in staff.text


async def test_the_extension_form_says_which_promised_dates_it_takes(
    api: httpx.AsyncClient,
) -> None:
    """The clerk learned the bounds of the promised date only from a refusal (须晚于现办结时限，
    且不超过延期上限天数 — which days?). Now the form says them (after the finish deadline,
    at the latest now + the policy's days) and its picker has them as min and max."""
    case_id = (await register(api, category_id="water_outage"))["case_id"]
    clerk = await signed_in(api, "water-clerk")
    try:
        async def offered() -> httpx.Response | None:
            page = await clerk.get(f"/console/cases/{case_id}")
            return page if 'data-action="extension"' in page.text else None

        page = await eventually(offered, within=20)
        finish = (await act_state(api, case_id))["deadlines"]["finish"]
        local = local_time(datetime.fromisoformat(finish))
        hint = re.search(r'id="extension-window">([^<]+)<', page.text)
        assert hint and f"须晚于现办结时限 {local}" in hint[1] and "最晚" in hint[1], page.text
        assert re.search(r'name="promised_finish"[^>]* min="[^"]+" max="[^"]+"', page.text)
    finally:
        await clerk.aclose()


async def act_state(api: httpx.AsyncClient, case_id: str) -> dict[str, object]:
    response = await api.get(f"/api/v1/complaints/{case_id}", headers=SUPERVISOR_KEY)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_the_operator_finds_a_callers_cases_by_number_or_phone(
    api: httpx.AsyncClient, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A citizen calls back about their case (催问进度): the operator's console had only 受理登记,
    no way to find the case by its number or by the caller's phone. Now 工单查询 finds it by
    the number as pasted, or by the phone as the caller says it (the number stored as typed
    at intake, +86 and hyphens and all), a later reporter's (并单) phone too; each case listed
    by phone is a recorded view of that phone; a department's clerk has no such page."""
    from api.console import lookup as lookup_page

    serial = f"{os.getpid() % 10000:04d}"
    stored, said = f"+86 137-{serial}-0001", f"137 {serial} 0001"
    address = f"松林路{serial}号查询楼"
    case_id = (await register(api, address=address,
                              citizen={"name": "赵六", "phone": stored}))["case_id"]
    later = f"136{serial}0002"  # another caller, the same shop's noise at the same address
    repeat = await api.post(
        "/api/v1/complaints", headers={"Authorization": "Bearer jiesu-demo-operator"},
        json=complaint(address=address, citizen={"name": "孙七", "phone": later}),
    )  # fmt: skip
    assert repeat.status_code == 200 and repeat.json()["case_id"] == case_id, repeat.text
    operator = await signed_in(api, "operator")
    try:
        home = (await operator.get("/console/intake")).text
        assert 'href="/console/lookup">工单查询</a>' in home

        async def found(**params: str) -> httpx.Response | None:
            page = await operator.get("/console/lookup", params=params)
            return page if f'data-case="{case_id}"' in page.text else None

        by_number = await eventually(lambda: found(case_id=f" {case_id.lower()} "), within=20)
        assert f'href="/console/cases/{case_id}"' in by_number.text
        by_phone = await found(phone=said)
        assert by_phone is not None, "the phone as said finds the number as stored"
        row = by_phone.text[by_phone.text.index(f'data-case="{case_id}"'):]
        row = row[: row.index("</tr>")]
        assert "并单" not in row and "status-" in row
        merged = await found(phone=later)
        assert merged is not None and "并单" in merged.text
        views = await pool.fetch(
            "SELECT fields FROM content_views WHERE case_id = $1 AND viewer = 'operator'",
            case_id,
        )
        assert any(r["fields"] == ["citizen_phone"] for r in views), views

        wrong = await operator.get("/console/lookup", params={"phone": "1234"})
        assert wrong.status_code == 422 and "请输入完整号码" in wrong.text
        nothing = await operator.get("/console/lookup", params={"phone": f"135{serial}9999"})
        assert nothing.status_code == 200 and "没有找到工单" in nothing.text

        await register(api, category_id="water_outage",  # a second problem: a case of its own
                       citizen={"name": "赵六", "phone": stored})
        monkeypatch.setattr(lookup_page, "SHOWN", 1)

        async def cut() -> httpx.Response | None:
            page = await operator.get("/console/lookup", params={"phone": said})
            return page if 'id="next-page"' in page.text else None

        page = await eventually(cut, within=20)
        assert page.text.count('<tr data-case="') == 1 and "共 2 件，本页第 1–1 件" in page.text
    finally:
        await operator.aclose()
    clerk = await signed_in(api, "water-clerk")
    try:
        refused = await clerk.get("/console/lookup", params={"phone": said})
        assert refused.status_code == 403
        assert 'href="/console/lookup"' not in (await clerk.get("/console/inbox")).text
    finally:
        await clerk.aclose()


async def test_the_phone_lookup_reads_the_phone_indexes_not_every_intake(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """工单查询 by phone over a million intakes must not read them all: the number is
    compared in its normal form (citizen_phone_digits, migration 0036) on both sides, which
    the indexes on intakes (0046's, of the stored column) and repeat reports hold; the cases
    are looked up by their key for the rows found, never walked in received order (the 并单
    arm as a walk of cases_received, checking each case against the phone's repeat reports,
    reads every case from the position down to the phone's). Planned on this test's copies of
    the tables (_lookup_tables: 20,000 other callers' cases; the phone's 60 and 5 it reported
    again), not the shared ones whose statistics other tests set."""
    from statcases import case_row

    from api.console import lookup as lookup_page

    phone, at = "+86 138-0000-0000", (datetime(2026, 1, 1, tzinfo=UTC), "JS20260101-000001")
    own = [{**case_row(at[0] + timedelta(hours=n - 30)), "case_id": f"LP-{n:02d}"}
           for n in range(60)]  # fmt: skip
    statements = [  # a page by offset, after and before a position (下一页, 上一页), and the
        lookup_page.page_sql(None, phone, limit=50),  # page's total (共 N 件) with its place
        lookup_page.page_sql(None, phone, limit=50, after=at),  # (第 a 件: the rows above it)
        lookup_page.page_sql(None, phone, limit=50, before=at),
        lookup_page.counts_sql(None, phone),
        lookup_page.counts_sql(None, phone, before=at),
    ]
    async with _lookup_tables(database_url, phone, own, reported=5) as conn:
        plans = ["\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))
                 for sql, args in statements]  # fmt: skip
    for read in plans:
        assert "intakes_citizen_phone_listed" in read, read  # migration 0046's
        assert "repeat_reports_citizen_phone" in read, read
        # the cases by their key, for the rows found: never read in an order of their own
        # (cases_received, cases_category, …) from a position, each checked against the phone
        scans = re.findall(r"Scan using (\w+) on cases \w+[^\n]*\n\s+Index Cond: \((\w+)", read)
        assert scans and set(scans) == {("cases_pkey", "case_id")}, read
        assert len(scans) == len(re.findall(r" on cases ", read)), read
    same = await pool.fetchval(
        "SELECT citizen_phone_digits('+86 138-1234-5678') = citizen_phone_digits('138 1234 5678')"
    )
    assert same


async def test_a_phone_written_with_0086_is_the_same_number_to_the_lookup(
    pool: asyncpg.Pool,
) -> None:
    """China's international prefix is written 0086 as often as +86, and intake stores the
    number as typed: "0086 138 1234 5678" kept its 0086 in the lookup's normal form
    (citizen_phone_digits dropped a leading 86 only), so the caller saying "138 1234 5678"
    did not find their case, nor "0086 …" typed by the operator a case stored as "138…". Now
    the normal form is the SMS channel's (jiesu.channels.sms.phone_forms: 86 or 0086 before a
    mobile number), migration 0037."""
    from jiesu.channels.sms import phone_forms

    for said in ("0086 138 1234 5678", "+0086 138-1234-5678", "+86 138 1234 5678",
                 "8613812345678", "138-1234-5678"):  # fmt: skip
        normal = await pool.fetchval("SELECT citizen_phone_digits($1)", said)
        assert normal == phone_forms(said)[0] == "13812345678", (said, normal)
    # no mobile number after it: the digits as they are (a landline's or a short number's)
    assert await pool.fetchval("SELECT citizen_phone_digits('0086 12345')") == "008612345"


async def test_a_landline_with_the_country_code_is_the_number_a_caller_says(
    pool: asyncpg.Pool,
) -> None:
    """A landline stored as written with China's country code (+86 10 8765 4321: the area
    code without its 0) was not the 010 8765 4321 a caller says, nor the reverse: the lookup's
    normal form dropped 86 before a mobile number only. Now a landline after 86/0086 (an area
    code 10, 2x or 3-9xx and its 7-8 digits) is written with its 0 again, in the database
    (citizen_phone_digits, migration 0040) as in the SMS channel's rule (phone_forms)."""
    from jiesu.notify.sms import phone_forms

    for said, normal in (("+86 10 8765 4321", "01087654321"), ("0086-10-87654321", "01087654321"),
                         ("010 8765 4321", "01087654321"), ("86 531 8888 6666", "053188886666"),
                         ("+86 (0)10 8765 4321", "01087654321"),
                         ("+86 755 1234567", "07551234567"), ("+86 138 1234 5678", "13812345678"),
                         ("0086 12345", "008612345"), ("86 12345678", "8612345678")):  # fmt: skip
        stored = await pool.fetchval("SELECT citizen_phone_digits($1)", said)
        assert stored == phone_forms(said)[0] == normal, (said, stored, phone_forms(said)[0])


async def test_the_sms_tail_on_the_case_page_is_four_ascii_digits(
    api: httpx.AsyncClient,
) -> None:
    """The case page after 受理 says the link goes to 尾号 <sms> from its URL's ?sms=; any
    four characters str.isdigit() takes passed (１２３４ full-width, ٣٤٥٦ Arabic-Indic, ²³¹⁴
    superscripts), so a link could make the page tell the operator a tail no phone has. Now
    only four ASCII digits (what the intake writes there) are said; anything else no tail."""
    case_id = (await register(api))["case_id"]
    operator = await signed_in(api, "operator")
    try:
        for tail, said in (("5678", True), ("１２３４", False), ("٣٤٥٦", False),
                           ("²³¹⁴", False), ("12a4", False)):  # fmt: skip
            page = await operator.get(f"/console/cases/{case_id}", params={"filed": 1, "sms": tail})
            assert page.status_code == 200
            note = re.search(r"<p[^>]*data-link-note[^>]*>(.*?)</p>", page.text, re.S)
            assert note is not None, tail
            assert ("尾号" in note[1]) is said and (tail in note[1]) is said, (tail, note[1])
    finally:
        await operator.aclose()


async def test_a_second_reply_says_the_case_was_replied_to(api: httpx.AsyncClient) -> None:
    """A clerk replying again from a second tab was told only 工单当前的状态不能办理此操作 —
    not that the case had been replied to; and the 未保存 box labelled the reply's text 内容.
    Now the refusal names the action and the status the case is in now (已答复), and the box
    says 答复内容, as the form does."""
    case_id = (await register(api, category_id="water_outage"))["case_id"]
    water = department("water")
    await act(api, case_id, "accept", water)
    await act(api, case_id, "contact", water, note="已电话联系")
    clerk = await signed_in(api, "water-clerk")
    try:
        async def offered() -> httpx.Response | None:
            page = await clerk.get(f"/console/cases/{case_id}")
            return page if 'data-action="reply"' in page.text else None

        page = await eventually(offered, within=20)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        reply = {"csrf_token": token[1], "outcome": "resolved", "text": "供水已恢复，第一次答复"}
        first = await clerk.post(f"/console/cases/{case_id}/actions/reply",
                                 data={**reply, "key": "tab-1"})  # fmt: skip
        assert first.status_code == 303, first.text
        again = await clerk.post(f"/console/cases/{case_id}/actions/reply",
                                 data={**reply, "text": "第二个页签的答复", "key": "tab-2"})
        assert again.status_code == 409, again.status_code
        refusal = re.search(r'<p class="error" role="alert">(.*?)</p>', again.text, re.S)
        assert refusal, again.text
        assert "不能办结答复：该工单现在的状态是“已答复”" in refusal[1], refusal[1]
        # (the 办理经过 below may list the workflow's own refusal of the second reply in its
        # words: the API signals it when its read-model copy did not show the first reply yet)
        assert "工单当前的状态不能办理此操作" not in refusal[1], refusal[1]
        unsaved = again.text[again.text.index('id="unsaved"'):]
        unsaved = unsaved[: unsaved.index("</div>")]
        assert "<dt>答复内容</dt>" in unsaved and "第二个页签的答复" in unsaved, unsaved
    finally:
        await clerk.aclose()


def test_a_refused_reply_names_its_text_as_its_form_does() -> None:
    """A reply too short was refused with 内容：…; its form calls the field 答复内容."""
    from api.console.actions import BY_NAME

    with pytest.raises(ValidationError) as refused:
        ReplyInput.model_validate({"outcome": "resolved", "text": ""})
    said = validation_message(refused.value, BY_NAME["reply"].labels)
    assert said.startswith("输入有误 — 答复内容："), said


async def test_a_phone_lookup_from_another_sites_link_is_not_run(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """A link on another site to /console/lookup?phone=… would put views of a citizen's
    phone in the operator's name (as a case page opened from another site would): it shows
    the form filled in, searches nothing and records nothing, until the operator sends it."""
    phone = f"135{os.getpid() % 10000:04d}0003"
    case_id = (await register(api, citizen={"name": "周八", "phone": phone}))["case_id"]
    operator = await signed_in(api, "operator")
    try:
        linked = await operator.get("/console/lookup", params={"phone": phone},
                                    headers={"Sec-Fetch-Site": "cross-site"})  # fmt: skip
        assert linked.status_code == 200 and 'id="withheld"' in linked.text
        assert f'data-case="{case_id}"' not in linked.text and f'value="{phone}"' in linked.text
        views = await pool.fetchval(
            "SELECT count(*) FROM content_views WHERE case_id = $1 AND viewer = 'operator'",
            case_id,
        )
        assert views == 0

        async def found() -> httpx.Response | None:
            page = await operator.get("/console/lookup", params={"phone": phone},
                                      headers={"Sec-Fetch-Site": "same-origin"})  # fmt: skip
            return page if f'data-case="{case_id}"' in page.text else None

        await eventually(found, within=20)
    finally:
        await operator.aclose()


def test_every_citizen_refusal_for_the_cases_state_reads_in_plain_words() -> None:
    """Each form of the citizen's page, refused in each status the case may be in: its own
    words, none of the staff's (待派单, 签收, 工单) and no code."""
    from api.console.citizen import _SIGNALS

    assert set(_SIGNALS) == {a.name for a in CITIZEN_ACTIONS}
    for signal in _SIGNALS.values():
        for now in Status:
            said = glossary.citizen_refusal_of("wrong_status", "english", signal, now)
            assert said.startswith(("不能", "现在还不能")), said
            assert not re.search(r"[A-Za-z_]{3,}|待派单|待签收|签收|改派|工单", said), said


async def test_a_citizens_refused_action_says_why_in_plain_words(
    api: httpx.AsyncClient,
) -> None:
    """The citizen's page answered a rating sent before the reply, a withdrawal after it and a
    supplement after the close with the staff's general 工单当前的状态不能办理此操作 — not why.
    Now each says, in words a citizen reads, what the case is doing and what they can do:
    评价 after the unit's reply, 撤诉 only before it, 补充 by calling 12345 once closed. No
    code, no staff term (待签收, 派单, 办结答复), no English."""
    created = await register(api, category_id="water_outage")
    case_id, token = created["case_id"], created["citizen_token"]
    await eventually(lambda: _assigned(api, case_id), within=20)

    async def refused(action: str, fields: dict[str, str]) -> str:
        answer = await api.post(f"/my/{token}/{action}", data=fields)
        assert answer.status_code == 409, (action, answer.status_code, answer.text[:300])
        said = re.search(r'class="error" role="alert">([^<]+)<', answer.text)
        assert said, answer.text
        words = said[1]
        assert "工单当前的状态" not in words and not re.search(r"[A-Za-z_]{3,}", words), words
        for staff_term in ("待签收", "待派单", "办结答复", "签收", "工单"):
            assert staff_term not in words, (staff_term, words)
        return words

    early = await refused("rating", {"rating": "satisfied", "key": "rate-early"})
    assert early.startswith("现在还不能评价") and "答复后" in early, early
    water = department("water")
    await act(api, case_id, "accept", water)
    await act(api, case_id, "contact", water, note="已电话联系")
    await act(api, case_id, "reply", water, outcome="resolved", text="供水已恢复")
    late = await refused("withdraw", {"reason": "已经好了", "key": "withdraw-late"})
    assert late.startswith("不能撤诉") and "已经答复" in late and "评价" in late, late
    rated = await api.post(f"/my/{token}/rating", data={"rating": "satisfied", "key": "rate"})
    assert rated.status_code == 303, rated.text
    closed = await refused("supplement", {"text": "又停水了", "key": "supplement-closed"})
    assert "已经办结" in closed and "12345" in closed, closed
    again = await refused("rating", {"rating": "satisfied", "key": "rate-again"})
    assert "已经办结" in again, again


async def test_the_lookup_pages_through_every_case_of_a_phone_and_says_how_many(
    api: httpx.AsyncClient, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """工单查询 listed the newest 50 cases of a phone and said there were more, with no total
    and no way to the rest: a caller asking about an older case was told to give its number.
    Now it says how many cases the number has and pages through them, newest first, each page
    a link that keeps the search; each case shown by phone is a recorded view of the phone."""
    from api.console import lookup as lookup_page

    serial = f"{os.getpid() % 10000:04d}"
    phone = f"134{serial}0003"
    made = []  # oldest first: three problems of one caller, each a case of its own
    for n, category in enumerate(("sewer_blockage", "water_outage", "garbage")):
        made.append((await register(api, category_id=category, address=f"桂花路{serial}号{n}栋",
                                    citizen={"name": "周八", "phone": phone}))["case_id"])
    await eventually(lambda: pool.fetchval(  # all three in the read model
        "SELECT count(*) = 3 FROM cases WHERE case_id = ANY($1)", made), within=20)  # fmt: skip
    same_time = await pool.fetchval(  # what 0046's index orders by is the case's received_at
        "SELECT count(*) FROM intakes i JOIN cases c USING (case_id)"
        " WHERE i.case_id = ANY($1) AND i.received_at = c.received_at", made)  # fmt: skip
    assert same_time == 3, same_time
    monkeypatch.setattr(lookup_page, "SHOWN", 2)
    operator = await signed_in(api, "operator")
    try:
        first = await operator.get("/console/lookup", params={"phone": phone})
        assert first.status_code == 200 and first.text.count('<tr data-case="') == 2
        assert "共 3 件" in first.text, first.text
        newest = re.findall(r'<tr data-case="([^"]+)"', first.text)
        assert newest == made[:0:-1], newest  # the two newest, newest first
        more = re.search(r'<a id="next-page" href="([^"]+)"', first.text)
        assert more is not None, first.text
        second = await operator.get(more[1].replace("&amp;", "&"))
        assert second.status_code == 200 and "共 3 件" in second.text
        assert re.findall(r'<tr data-case="([^"]+)"', second.text) == [made[0]]
        assert 'id="next-page"' not in second.text and 'id="previous-page"' in second.text
        views = await pool.fetchval(
            "SELECT count(*) FROM content_views WHERE case_id = $1 AND viewer = 'operator'",
            made[0],
        )
        assert views >= 1  # shown on the second page: a view of the phone
        past = await operator.get("/console/lookup", params={"phone": phone, "page": "9"})
        assert past.status_code == 200 and "共 3 件" in past.text and "没有" in past.text
        for bad in ("0", "-1", "x", "100000000000"):
            refused = await operator.get("/console/lookup", params={"phone": phone, "page": bad})
            assert refused.status_code == 422, (bad, refused.status_code)
    finally:
        await operator.aclose()


async def _filed_with_title(pool: asyncpg.Pool, title: str) -> int:
    """Intakes filed with ``title`` (a test's own): counting every case instead counted the
    cases other tests filed meanwhile (15 == 14 under xdist)."""
    return await pool.fetchval(
        "SELECT count(*) FROM intakes WHERE payload -> 'intake' ->> 'title' = $1", title
    )


async def _replied_by_urban(api: httpx.AsyncClient, pool: asyncpg.Pool, case_id: str) -> None:
    """The noise case replied by its unit, the read model showing it (the SMS rating's
    prompt is answered only then: jiesu.channels.sms.decide)."""
    await assigned(api, case_id)
    await act(api, case_id, "accept", URBAN)
    await act(api, case_id, "contact", URBAN, note="已电话联系")
    await act(api, case_id, "reply", URBAN, outcome="resolved", text="已调低音量",
              evidence=["https://evidence.test/a.jpg"])  # fmt: skip
    status = "SELECT status FROM cases WHERE case_id = $1"
    await eventually(lambda: _is(pool.fetchval(status, case_id), "replied"))


async def _is(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


def _steps(page: str) -> list[tuple[str, str]]:
    """办理经过 on a case page: (event kind, who acted), in order."""
    return re.findall(r'<li class="ev-([a-z_]+)">.*?<span class="actor">([^<]*)</span>', page,
                      re.S)  # fmt: skip


@pytest.mark.parametrize(
    ("actor", "channel", "contact", "by"),
    [
        pytest.param(SMS_ACTOR, "sms", "phone", "短信", id="sms"),
        pytest.param(MAIL_ACTOR, "email", "email", "电子邮件", id="e-mail"),
        pytest.param(SELF_SERVICE_ACTOR, "wechat", "phone", "自助提交", id="self-service"),
    ],
)
async def test_a_citizen_who_reported_through_a_channel_is_the_citizen_in_the_timeline(
    api: httpx.AsyncClient, pool: asyncpg.Pool, client: Client, settings: Settings,
    actor: Actor, channel: str, contact: str, by: str,
) -> None:  # fmt: skip
    """A report by SMS, by e-mail or by self-service (APP, WeChat, the web form) is registered
    by its channel's citizen (``citizen by SMS``…), not an operator: 办理经过 said its 受理 —
    and a repeat report of the same problem through that channel — by 并单诉求人, the word of
    a repeat report's citizen, whatever it was. Now the channel's citizen (诉求人（短信）, a
    repeat report's 并单诉求人（短信）); what the citizens do with their links (补充, 撤诉)
    or by SMS (the rating answering its prompt) is 诉求人's and 并单诉求人's as before. The
    auditor's 审计记录 names each as recorded (citizen by SMS…), as 诉求人."""

    def reachable(n: int) -> dict[str, str]:
        tag = f"{uuid.uuid4().int % 10**8:08d}"
        return {"phone": f"13{n}{tag}"} if contact == "phone" else {"email": f"c{tag}@{n}.cn"}

    body = complaint(channel=channel, citizen={"name": "赵六", **reachable(6)})
    again = complaint(channel=channel, address=body["address"],
                      citizen={"name": "钱七", **reachable(7)})  # fmt: skip
    # as each channel files (api/routers/channels.py, jiesu.channels.mail, self_service.py)
    filed, repeat = [
        await filing.register(pool, client, settings, ComplaintIntake.model_validate(b),
                              actor, None)
        for b in (body, again)
    ]  # fmt: skip
    case_id = filed.case_id
    try:
        assert repeat.merged and repeat.case_id == case_id
        await act(api, case_id, "supplement", token=filed.citizen_token, text="晚上十点以后更吵")
        await act(api, case_id, "supplement", token=repeat.citizen_token, text="周末也吵")
        if channel == "sms":  # the SMS channel's own: the rating answered to its prompt by SMS
            await _replied_by_urban(api, pool, case_id)
            rated = await deliver(api, sms(body["citizen"]["phone"], "1"))
            assert rated.json()["outcome"] == "rating", rated.text
            last = ("rated", "诉求人")
        else:
            await act(api, case_id, "withdraw", token=filed.citizen_token, reason="已自行解决")
            last = ("withdrawn", "诉求人")
        operator = await signed_in(api, "operator")
        try:

            async def shown() -> list[tuple[str, str]] | None:
                page = await operator.get(f"/console/cases/{case_id}")
                steps = _steps(page.text)
                return steps if last in steps else None

            steps = await eventually(shown, within=30)
        finally:
            await operator.aclose()
        citizens = [s for s in steps if s[0] in
                    ("received", "repeat_reported", "supplemented", last[0])]  # fmt: skip
        assert citizens == [
            ("received", f"诉求人（{by}）"), ("repeat_reported", f"并单诉求人（{by}）"),
            ("supplemented", "诉求人"), ("supplemented", "并单诉求人"), last,
        ], steps

        auditor = await signed_in(api, "auditor")
        try:
            audit = (await auditor.get(f"/console/audit/{case_id}")).text
        finally:
            await auditor.aclose()
        named = re.findall(r'<span class="who">(?:<bdi>)?([^<]*)(?:</bdi>)?</span>'
                           r'<span class="role">（([^）]*)）</span>', audit)  # fmt: skip
        for recorded in (actor.name, CASE_CITIZEN_NAME, repeat_reporter_name(repeat.report_id)):
            assert (recorded, "诉求人") in named, named
    finally:
        with contextlib.suppress(RPCError):  # withdrawn: closed already, unless it failed
            await helpers.handle_of(client, case_id).terminate("test finished")


async def _a_callers_case(pool: asyncpg.Pool, row: dict[str, object], phone: str) -> None:
    """A hand-made case (statcases.case_row) and the intake that gave ``phone``: what 工单查询
    finds by phone, without a workflow."""
    from statcases import insert_cases

    await insert_cases(pool, [row])
    await pool.execute(
        "INSERT INTO intakes (case_id, request_hash, payload, token_hash, received_at, phone_key)"
        " VALUES ($1, 'test', jsonb_build_object('intake', jsonb_build_object('citizen',"
        " jsonb_build_object('phone', $2::text))), 'test', $3, 'test')",
        row["case_id"], phone, row["received_at"],
    )  # fmt: skip


async def _forget_callers_cases(pool: asyncpg.Pool, prefix: str) -> None:
    await pool.execute("DELETE FROM intakes WHERE case_id LIKE $1", f"{prefix}-%")
    await pool.execute("DELETE FROM cases WHERE case_id LIKE $1", f"{prefix}-%")


def _looked_up(page: httpx.Response) -> list[str]:
    return re.findall(r'<tr data-case="([^"]+)"', page.text)


async def test_the_lookup_pages_by_position_through_ties_keeping_its_search(
    api: httpx.AsyncClient, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """工单查询 paged by offset: a case the caller filed while the operator read page 1 pushed
    every case down one place, and 下一页 (page=2) listed page 1's last case again. Now 下一页
    is the page after the last row listed and 上一页 the page before the first (keyset, as
    审计查询's, api.console.paging): followed to the end and back, the pages list every case
    of the phone once, in the list's order (received_at newest first, then case number — five
    cases received in the same microsecond included), each page says its true 第 a–b 件 of
    共 N 件, and every link keeps the phone (another caller's cases at the same times are never
    listed). A cursor that is not one, or two of page/after/before: 422."""
    from statcases import case_row

    from api.console import lookup as lookup_page

    serial = f"{os.getpid() % 10000:04d}"
    phone, other = f"133{serial}0005", f"133{serial}0006"
    prefix = f"LK{os.getpid() % 100000:05d}"
    tie = datetime(1992, 3, 1, 10, tzinfo=UTC)
    stamps = [tie + timedelta(days=1), *[tie] * 5, tie - timedelta(days=1)]
    rows = [{**case_row(at), "case_id": f"{prefix}-{n}"} for n, at in enumerate(stamps)]
    for row in rows:
        await _a_callers_case(pool, row, phone)
    await _a_callers_case(pool, {**case_row(tie), "case_id": f"{prefix}-x"}, other)
    later = {**case_row(tie + timedelta(days=2)), "case_id": f"{prefix}-later"}

    def in_order(of: list[dict[str, object]]) -> list[str]:
        return [str(r["case_id"]) for r in sorted(
            of, key=lambda r: (-r["received_at"].timestamp(), r["case_id"]))]  # type: ignore[attr-defined]  # fmt: skip

    monkeypatch.setattr(lookup_page, "SHOWN", 2)
    operator = await signed_in(api, "operator")
    try:
        page = await operator.get("/console/lookup", params={"phone": phone})
        pages, seen, links = [page], [], []
        while True:
            listed = _looked_up(page)
            now_listed = in_order(rows if page is pages[0] else [*rows, later])
            a = now_listed.index(listed[0]) + 1 if listed else 0
            assert f"共 {len(now_listed)} 件" in page.text, page.text
            assert f"本页第 {a}–{a + len(listed) - 1} 件" in page.text, (a, listed, page.text)
            seen += listed
            following = _pager_link(page, "next")
            if following is None:
                break
            if page is pages[0]:  # the caller files another case while page 1 is read
                await _a_callers_case(pool, later, phone)
            links.append(following)
            page = await operator.get(following)
            assert page.status_code == 200, page.text
            pages.append(page)
        assert seen == in_order(rows), (seen, in_order(rows))  # none twice, none skipped
        assert len(pages) == 4
        for link in links:
            assert f"phone={phone}" in link and "after=" in link and "page=" not in link, link
        for earlier in reversed(pages[:-1]):  # and back, page by page
            back = _pager_link(page, "previous")
            assert back is not None and "before=" in back and f"phone={phone}" in back, back
            page = await operator.get(back)
            assert _looked_up(page) == _looked_up(earlier)
        back = _pager_link(page, "previous")  # the case filed meanwhile: above the first page
        assert back is not None, page.text
        top = await operator.get(back)
        assert _looked_up(top) == [later["case_id"]] and "本页第 1–1 件" in top.text, top.text
        assert _pager_link(top, "previous") is None
        cursor = re.search(r"after=([^&\"]+)", links[0])[1]  # type: ignore[index]
        for bad in ({"after": "not-a-cursor"}, {"before": "MTox"},
                    {"after": cursor, "page": "2"}, {"after": cursor, "before": cursor}):
            refused = await operator.get("/console/lookup", params={"phone": phone, **bad})
            assert refused.status_code == 422, (bad, refused.status_code)
        by_both = await operator.get("/console/lookup",  # the number and the phone: one case
                                     params={"phone": phone, "case_id": rows[3]["case_id"]})
        assert _looked_up(by_both) == [rows[3]["case_id"]] and "共 1 件" in by_both.text
    finally:
        await operator.aclose()
        await _forget_callers_cases(pool, prefix)


async def test_the_lookup_counts_what_it_lists_in_one_snapshot(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """工单查询 read the page's cases and its 共 N 件 in two statements: a case the caller filed
    (or one withdrawn from the intakes) between them was counted and not listed, or listed and
    not counted. Now both are read in one read-only snapshot, as 审计查询's are. A writer files
    and removes a case of this test's phone without pause while the operator looks the phone
    up (fewer cases than a page): every page's count is the number of cases it lists."""
    from statcases import case_row

    phone = f"132{os.getpid() % 10000:04d}0007"
    prefix = f"LS{os.getpid() % 100000:05d}"
    base = datetime(1991, 6, 1, 10, tzinfo=UTC)
    await _a_callers_case(pool, {**case_row(base), "case_id": f"{prefix}-0"}, phone)
    flicker = {**case_row(base + timedelta(hours=1)), "case_id": f"{prefix}-1"}

    async def flicker_once() -> None:
        await _a_callers_case(pool, flicker, phone)
        await pool.execute("DELETE FROM intakes WHERE case_id = $1", flicker["case_id"])
        await pool.execute("DELETE FROM cases WHERE case_id = $1", flicker["case_id"])

    operator = await signed_in(api, "operator")
    try:
        disagreed = await _counts_unlike_rows_while_writing(
            operator, "/console/lookup", {"phone": phone}, _looked_up, flicker_once
        )
        assert not disagreed, disagreed
    finally:
        await operator.aclose()
        await _forget_callers_cases(pool, prefix)


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan, depth first."""
    return [plan, *(n for child in plan.get("Plans", []) for n in _plan_nodes(child))]


# The tables 工单查询 by phone reads (api.console.lookup's page_sql and counts_sql). Its plan
# tests planned them on the test session's shared tables, whose statistics are whatever other
# tests left: in a fresh clone's full run (2 processes) the 并单 arm was planned as a walk of
# cases_received and 下一页 read 50 cases, where alone the file passed.
_LOOKUP_TABLES = ("cases", "intakes", "repeat_reports")
_OTHER_CASES = 20_000
"""Other callers' cases in the copies, one phone each, and a tenth of them reported again
(并单) by yet other phones: a county's tables in use, where the planner reads an index for a
phone's few rows (at 20 rows a scan of the whole table is cheaper)."""


@contextlib.asynccontextmanager
async def _lookup_tables(
    database_url: str, phone: str, own: list[dict[str, Any]], reported: int
) -> AsyncIterator[asyncpg.Connection]:
    """A connection on which cases, intakes and repeat_reports are this test's own copies
    (temporary: pg_temp is searched first, so they hide the shared tables from the statements
    planned; each index made again under its own name), vacuumed and analyzed as a table in
    use is: ``_OTHER_CASES`` other callers' cases spread around ``own`` (``phone``'s cases,
    hand-made by statcases.case_row), ``phone`` reporting ``reported`` of them again (并单).
    A connection of its own, caching no statement: a pooled one may hold a statement prepared
    by another test, whose plan reads the shared table (a new table that hides it does not
    invalidate the plan) — the copies filled that way had none of ``own``."""
    conn = await asyncpg.connect(database_url, statement_cache_size=0)
    try:
        await db.init_connection(conn)
        await _copy_lookup_tables(conn)
        await _fill_lookup_tables(conn, phone, own, reported)
        for table in _LOOKUP_TABLES:
            await conn.execute(f"VACUUM ANALYZE pg_temp.{table}")
        yield conn
    finally:
        await conn.close()  # the copies with it


async def _copy_lookup_tables(conn: asyncpg.Connection) -> None:
    """Empty copies of the lookup's tables with the shared tables' columns (the generated
    intakes.citizen_phone too) and indexes, of the same names (another schema's)."""
    for table in _LOOKUP_TABLES:
        await conn.execute(f"CREATE TEMP TABLE {table}"
                           f" (LIKE public.{table} INCLUDING ALL EXCLUDING INDEXES)")  # fmt: skip
        for (indexdef,) in await conn.fetch(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1",
            table,
        ):
            copied = indexdef.replace(f" ON public.{table} ", f" ON pg_temp.{table} ")
            assert copied != indexdef, indexdef
            await conn.execute(copied)
        copy = await conn.fetchval("SELECT $1::regclass = $2::regclass", table, f"pg_temp.{table}")
        assert copy, f"{table} is not this test's copy"


async def _fill_lookup_tables(
    conn: asyncpg.Connection, phone: str, own: list[dict[str, Any]], reported: int
) -> None:
    """The copies' rows: ``own`` with an intake of ``phone`` each, ``_OTHER_CASES`` others
    received every 10 minutes from 30 days before the first of ``own``, each with an intake of
    its own phone (139…), a tenth of them with a repeat report of another (137…), and
    ``reported`` of them, spread over the others from the first, with a repeat report of
    ``phone``."""
    from statcases import case_row

    columns = list(own[0])
    values = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    await conn.executemany(f"INSERT INTO pg_temp.cases ({', '.join(columns)}) VALUES ({values})",
                           [tuple(row[c] for c in columns) for row in own])  # fmt: skip
    first = min(row["received_at"] for row in own) - timedelta(days=30)
    template = {**case_row(first), "case_id": "LOOKUP-TEMPLATE"}
    await conn.execute(f"INSERT INTO pg_temp.cases ({', '.join(columns)}) VALUES ({values})",
                       *(template[c] for c in columns))  # fmt: skip
    changed = {"case_id": "'LC' || g", "received_at": "received_at + g * interval '10 minutes'"}
    copied = ", ".join(changed.get(c, c) for c in columns)
    await conn.execute(f"INSERT INTO pg_temp.cases ({', '.join(columns)}) SELECT {copied}"
                       " FROM pg_temp.cases,"
                       f" generate_series(1, {_OTHER_CASES}) g"
                       " WHERE case_id = 'LOOKUP-TEMPLATE'")  # fmt: skip
    await conn.execute("DELETE FROM pg_temp.cases WHERE case_id = 'LOOKUP-TEMPLATE'")
    await conn.execute(
        "INSERT INTO pg_temp.intakes (case_id, request_hash, payload, token_hash, received_at,"
        " phone_key) SELECT case_id, 'test', jsonb_build_object('intake', jsonb_build_object("
        " 'citizen', jsonb_build_object('phone', CASE WHEN case_id LIKE 'LC%' THEN '139' ||"
        " lpad(substr(case_id, 3), 8, '0') ELSE $1 END))), 'test', received_at, 'test'"
        " FROM pg_temp.cases",
        phone,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO pg_temp.repeat_reports (id, case_id, request_hash, payload)"
        " SELECT g, 'LC' || (g * 10), 'test', jsonb_build_object('intake', jsonb_build_object("
        " 'citizen', jsonb_build_object('phone', '137' || lpad(g::text, 8, '0'))))"
        f" FROM generate_series(1, {_OTHER_CASES // 10}) g"
    )  # fmt: skip
    if not reported:
        return
    await conn.execute(
        "INSERT INTO pg_temp.repeat_reports (id, case_id, request_hash, payload)"
        f" SELECT {_OTHER_CASES} + g, 'LC' || ((g - 1) * ($2::int / $3) + 5), 'test',"
        " jsonb_build_object('intake', jsonb_build_object('citizen', jsonb_build_object("
        " 'phone', $1::text))) FROM generate_series(1, $3) g",
        phone, _OTHER_CASES, reported,
    )  # fmt: skip


async def test_a_phone_lookup_page_reads_a_page_of_the_phones_cases_not_all_of_them(
    database_url: str,
) -> None:
    """工单查询 by phone read every case of the phone for any page: its intakes came from the
    phone's index in no order, each was joined to its case to sort them all by received_at,
    and 50 were kept (a phone with 100,000 cases: 402,506 blocks and 0.8 s a page,
    docs/performance.md). Now the phone's own intakes are read from migration 0046's index in
    the list's order: page 1, 下一页 after a position and 上一页 before it each read their own
    rows from the index and stop (60 cases of a phone, pages of 10: no scan of the intakes
    returns more than 11 rows, the position's own row filtered; the cases are looked up for
    those only, and for the 3 cases the phone reported again, 并单). 共 N 件 with the rows
    above a page (第 a 件) counts the index's entries: an index-only scan, not the intakes'
    rows (an index on the expression of 0036 can never be read index-only). Measured on this
    test's copies of the tables (_lookup_tables: 20,000 other callers' cases, vacuumed and
    analyzed), not the shared ones whose statistics other tests set."""
    from statcases import case_row

    from api.console import lookup as lookup_page

    phone = "131 0000 0008"
    base = datetime(1990, 1, 1, tzinfo=UTC)
    rows = [{**case_row(base + timedelta(hours=n)), "case_id": f"LR-{n:02d}"}
            for n in range(60)]  # fmt: skip
    at = (rows[30]["received_at"], rows[30]["case_id"])
    pages = {
        "page 1": lookup_page.page_sql(None, phone, limit=10),
        "下一页": lookup_page.page_sql(None, phone, limit=10, after=at),
        "上一页": lookup_page.page_sql(None, phone, limit=10, before=at),
    }
    async with _lookup_tables(database_url, phone, rows, reported=3) as conn:
        for label, (sql, args) in pages.items():
            plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
            nodes = _plan_nodes(json.loads(plan)[0]["Plan"])
            read = {table: sum(n["Actual Rows"] * n["Actual Loops"] for n in nodes
                               if n.get("Relation Name") == table)
                    for table in ("intakes", "cases")}  # fmt: skip
            listed = len(await conn.fetch(sql, *args))
            assert listed == 10 and read["intakes"] <= 11 and read["cases"] <= 30, (
                label, read, plan)  # fmt: skip
        for sql, args in (lookup_page.counts_sql(None, phone),
                          lookup_page.counts_sql(None, phone, before=at)):  # fmt: skip
            plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
            scans = [(n["Node Type"], n.get("Index Name"))
                     for n in _plan_nodes(json.loads(plan)[0]["Plan"])
                     if n.get("Relation Name") == "intakes"]  # fmt: skip
            # the phone's own: index-only; the anti-join of the reported arm by key
            assert ("Index Only Scan", "intakes_citizen_phone_listed") in scans, scans
            assert all(s[0] == "Index Only Scan" or s[1] == "intakes_pkey" for s in scans), (
                scans)  # fmt: skip
        sql, args = lookup_page.counts_sql(None, phone, before=at)
        total = await conn.fetchrow(sql, *args)
    # rows 59…31 above row 30, and 2 of the 3 the phone reported again (other callers' cases
    # received every 10 minutes from 30 days before row 0: LC5, LC6671 and LC13337)
    assert tuple(total) == (31, 63), tuple(total)


async def _with_a_file(pool: asyncpg.Pool, case_id: str, data: bytes) -> int:
    """A file of the case's report, as the mail intake stores one (jiesu/channels/mail.py)."""
    return int(await pool.fetchval(
        "INSERT INTO attachments (case_id, source, filename, content_type, size, sha256, content)"
        " VALUES ($1, 'email:test-' || $1, '井盖照片.jpg', 'image/jpeg', $2, 'x', $3)"
        " RETURNING id", case_id, len(data), data))  # fmt: skip


async def test_the_case_page_offers_the_report_s_files_to_whoever_sees_its_content(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """附件: the files that came with a report (a mail's photos) were listed and downloaded
    through the API only; the case page said nothing of them. Now it lists them, by name and
    size, for whoever sees the report's content, and each download is a recorded view — by the
    API's rule (api/routers/attachments.py): another unit's case 404, a co-handler the centre
    released 403 and no list; opened from another site, no list and no download (the case page
    instead, its content withheld), nothing recorded."""
    case_id = (await register(api))["case_id"]  # → urban management
    assert (await assigned(api, case_id))["assignment"]["department_id"] == "urban-management"
    data = b"\xff\xd8 a photo of the manhole"
    file_id = await _with_a_file(pool, case_id, data)
    page_url = f"/console/cases/{case_id}"
    file_url = f"{page_url}/files/{file_id}"
    views = "SELECT count(*) FROM content_views WHERE case_id = $1 AND 'attachment' = ANY(fields)"
    own = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate"}
    away = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    urban, water = await signed_in(api, "urban-clerk"), await signed_in(api, "water-clerk")
    try:
        page = await urban.get(page_url, headers=own)
        assert page.status_code == 200 and 'id="report-files"' in page.text, page.text[:500]
        assert "井盖照片.jpg" in page.text and f'href="{file_url}"' in page.text
        got = await urban.get(file_url, headers=own)
        assert got.status_code == 200 and got.content == data
        assert got.headers["content-disposition"].startswith("attachment;")
        assert got.headers["content-type"] == "application/octet-stream"
        assert await pool.fetchval(views, case_id) == 1

        # from another site: no list, no file, nothing recorded
        page = await urban.get(page_url, headers=away)
        assert 'id="report-files"' not in page.text and "井盖照片" not in page.text
        moved = await urban.get(file_url, headers=away)
        assert moved.status_code in (303, 307) and moved.headers["location"] == page_url
        assert await pool.fetchval(views, case_id) == 1

        # another unit: no such case; a no-such-file: 404
        assert (await water.get(file_url, headers=own)).status_code == 404
        assert (await urban.get(f"{page_url}/files/{file_id + 10**9}", headers=own)
                ).status_code == 404  # fmt: skip

        # a co-handler sees the files while it owes its part; released (免除协办), no more
        await act(api, case_id, "co-handlers", SUPERVISOR_KEY, department_ids=["water"])
        page = await water.get(page_url, headers=own)
        assert "井盖照片.jpg" in page.text
        assert (await water.get(file_url, headers=own)).content == data
        assert await pool.fetchval(views, case_id) == 2
        await act(api, case_id, "co-handlers/water/waive", SUPERVISOR_KEY)
        page = await water.get(page_url, headers=own)
        assert page.status_code == 200 and "井盖照片" not in page.text
        refused = await water.get(file_url, headers=own)
        assert refused.status_code == 403, refused.text[:300]
        assert await pool.fetchval(views, case_id) == 2  # the refused one recorded nothing
    finally:
        await urban.aclose()
        await water.aclose()
