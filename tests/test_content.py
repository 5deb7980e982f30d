"""The case's content reaches who needs it (issue 11, part 1): the department handling the case,
its co-handlers, the centre and auditors see the description, address, evidence and the
citizen's contact; a citizen may stay anonymous to the department; every view of unmasked
content is recorded for auditors; personal data is never logged."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import asyncpg
import httpx
import pytest
from google.protobuf.message import Message as ProtoMessage
from helpers import (
    AUDITOR,
    OPERATOR,
    SUPERVISOR,
    act,
    auth,
    complaint,
    department,
    eventually,
    register,
    signed_in,
)
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from test_api import ADMIN, COMPLAINTS, POLICE, URBAN, error_of, finish, fresh
from test_sessions import browser, log_in, new_person  # noqa: F401 (browser is a fixture)

from jiesu.access.content import (
    CONTENT,
    HISTORY_CONTENT,
    ContentField,
    history_fields,
    mask_address,
    mask_email,
    mask_name,
    mask_phone,
    redact_identifiers,
)
from jiesu.case.domain import Role
from jiesu.ops.demo_data import demo_key

VIEWS = "/api/v1/audit/content-views"
EVIDENCE = "https://files.example.gov.cn/QH/photo-1.jpg"


def content_url(case_id: str) -> str:
    return f"/api/v1/cases/{case_id}/content"


def a_phone() -> str:
    return "138" + "".join(random.choices("0123456789", k=8))


def report(prefix: str, *, anonymous: bool = False) -> dict[str, Any]:
    citizen = {"name": "王芳芳", "phone": a_phone(), "anonymous_to_department": anonymous}
    return fresh(prefix, citizen=citizen, description=f"{prefix}: loud music every night")


async def routed(api: httpx.AsyncClient, **body: Any) -> str:
    """Register a report (noise_commercial → urban-management) and wait until it is routed."""
    case_id = str((await register(api, **body))["case_id"])

    async def assigned() -> bool:
        state = await api.get(f"{COMPLAINTS}/{case_id}", headers=OPERATOR)
        assignment = state.json().get("assignment") if state.status_code == 200 else None
        return bool(assignment) and assignment["department_id"] == "urban-management"

    await eventually(assigned, within=30)
    return case_id


async def views_of(api: httpx.AsyncClient, case_id: str) -> list[dict[str, Any]]:
    response = await api.get(VIEWS, params={"case_id": case_id}, headers=AUDITOR)
    assert response.status_code == 200, response.text
    return list(reversed(response.json()))  # oldest first


def test_masks() -> None:
    assert mask_name("张三丰") == "张**" and mask_name("张三") == "张*" and mask_name("张") == "张*"
    assert mask_phone("13812341234") == "138****1234"
    assert mask_phone("+86 138-1234-1234") == "861******1234"
    assert mask_phone("12345") == "***45"
    assert mask_address("松林路8号") == "松林***" and mask_address("") == ""
    assert mask_email("wang.fang@example.com") == "w***@example.com"


async def test_the_handling_department_the_centre_and_auditors_see_the_content(
    api: httpx.AsyncClient, client: Client
) -> None:
    body = report("Content")
    case_id, citizen = await routed(api, **body), body["citizen"]
    try:
        for who in (OPERATOR, SUPERVISOR, AUDITOR, ADMIN, URBAN):
            response = await api.get(content_url(case_id), headers=who)
            assert response.status_code == 200, response.text
            shown = response.json()
            assert shown["description"] == body["description"]
            assert shown["address"] == body["address"]
            assert (shown["citizen_name"], shown["citizen_phone"]) == (
                citizen["name"], citizen["phone"]
            )  # fmt: skip
            assert shown["masked"] == [] and shown["anonymous_to_department"] is False
        # Another department: the case does not exist for it, its content neither.
        error_of(await api.get(content_url(case_id), headers=POLICE), 404, "case_not_found")
        error_of(await api.get(content_url("JS20990101-999999"), headers=OPERATOR), 404,
                 "case_not_found")  # fmt: skip
        error_of(await api.get(content_url(case_id)), 401, "unauthenticated")

        # The reply's evidence is part of the content.
        await act(api, case_id, "accept", URBAN)
        await act(api, case_id, "contact", URBAN, note="called")
        await act(api, case_id, "reply", URBAN, outcome="resolved", text="Music stopped",
                  evidence=[EVIDENCE])  # fmt: skip
        shown = (await api.get(content_url(case_id), headers=URBAN)).json()
        assert shown["evidence"] == [EVIDENCE]

        views = await views_of(api, case_id)
        replied = views.pop(-2)  # the reply's answer: the case, with the evidence its event carries
        assert replied["viewer"] == "demo-dept-urban-management"
        assert replied["fields"] == ["evidence"]
        assert [(v["viewer"], v["viewer_role"], v["department_id"]) for v in views] == [
            ("demo-operator", "operator", None), ("demo-supervisor", "supervisor", None),
            ("demo-auditor", "auditor", None), ("demo-admin", "admin", None),
            ("demo-dept-urban-management", "department", "urban-management"),
            ("demo-dept-urban-management", "department", "urban-management"),
        ]  # fmt: skip
        everything = {"description", "address", "evidence", "citizen_name", "citizen_phone",
                      "citizen_email"}  # fmt: skip
        assert all(set(v["fields"]) == everything for v in views)
        assert all(v["person"] is False for v in views)
        # Only auditors (and admins) list the views.
        for who in (OPERATOR, SUPERVISOR, URBAN):
            error_of(await api.get(VIEWS, params={"case_id": case_id}, headers=who), 403,
                     "forbidden")  # fmt: skip
        assert len((await api.get(VIEWS, params={"case_id": case_id}, headers=ADMIN)).json()) == 7
    finally:
        await finish(client, case_id)


async def test_co_handlers_see_the_content(api: httpx.AsyncClient, client: Client) -> None:
    body = report("CoHandled")
    case_id = await routed(api, **body)
    try:
        await act(api, case_id, "accept", URBAN)
        error_of(await api.get(content_url(case_id), headers=POLICE), 404, "case_not_found")
        await act(api, case_id, "co-handlers", SUPERVISOR, department_ids=["police"])
        shown = (await api.get(content_url(case_id), headers=POLICE)).json()
        assert shown["citizen_phone"] == body["citizen"]["phone"] and shown["masked"] == []
    finally:
        await finish(client, case_id)


async def test_a_co_handler_released_by_the_centre_reads_the_content_no_more(
    api: httpx.AsyncClient, client: Client
) -> None:
    """免除协办: a supervisor releases a co-handler (协办单位) from its contribution; it has
    nothing more to do on the case. It kept reading the citizen's name and phone, the
    description and the report's files for the life of the case (and every supplement and
    repeat report after) — now it sees the case as any department that does not handle it
    sees what it may: masked, nothing recorded, the files 403 content_masked. The lead and a
    co-handler still owing (or having given) its contribution see everything, as before."""
    body = report("Waived")
    case_id, phone = await routed(api, **body), body["citizen"]["phone"]
    market = department("market")
    try:
        await act(api, case_id, "accept", URBAN)
        await act(api, case_id, "co-handlers", SUPERVISOR, department_ids=["police", "market"])
        assert (await api.get(content_url(case_id), headers=POLICE)).json()["masked"] == []
        await act(api, case_id, "co-handlers/police/waive", SUPERVISOR)
        before = len(await views_of(api, case_id))

        shown = (await api.get(content_url(case_id), headers=POLICE)).json()
        assert shown["description"] is None and shown["citizen_phone"] != phone, shown
        assert shown["masked"] == list(CONTENT)
        files = await api.get(f"{COMPLAINTS}/{case_id}/attachments", headers=POLICE)
        error_of(files, 403, "content_masked")
        case = await api.get(f"{COMPLAINTS}/{case_id}", headers=POLICE)
        assert case.status_code == 200 and phone not in case.text  # it still sees the case
        assert len(await views_of(api, case_id)) == before  # no view of content it reads not

        for handling in (URBAN, market):  # the lead; a co-handler still owing its part
            full = (await api.get(content_url(case_id), headers=handling)).json()
            assert full["citizen_phone"] == phone and full["masked"] == [], full
    finally:
        await finish(client, case_id)


async def test_a_released_co_handler_s_inbox_lists_the_case_no_more(
    api: httpx.AsyncClient, client: Client
) -> None:
    """The console's inbox lists the cases a department has work on: a co-handler the centre
    released (免除协办) has none, and kept the case in its inbox until the case closed."""
    case_id = await routed(api, **report("Inbox"))
    clerk = await signed_in(api, "water-clerk")
    try:
        await act(api, case_id, "accept", URBAN)
        await act(api, case_id, "co-handlers", SUPERVISOR, department_ids=["water"])
        assert case_id in (await clerk.get("/console/inbox")).text
        await act(api, case_id, "co-handlers/water/waive", SUPERVISOR)
        assert case_id not in (await clerk.get("/console/inbox")).text
    finally:
        await clerk.aclose()
        await finish(client, case_id)


async def test_an_anonymous_citizen_is_masked_for_the_department_only(
    api: httpx.AsyncClient, client: Client
) -> None:
    body = report("Anonymous", anonymous=True)
    case_id, phone = await routed(api, **body), body["citizen"]["phone"]
    try:
        response = await api.get(content_url(case_id), headers=URBAN)
        assert response.status_code == 200, response.text
        shown = response.json()
        assert shown["anonymous_to_department"] is True
        assert shown["citizen_name"] == "王**"
        assert shown["citizen_phone"] == f"{phone[:3]}****{phone[-4:]}"
        assert shown["masked"] == ["citizen_name", "citizen_phone", "citizen_email"]
        assert shown["description"] == body["description"]  # what to do is not hidden
        # The department's case itself carries no contact either.
        state = await api.get(f"{COMPLAINTS}/{case_id}", headers=URBAN)
        assert phone not in state.text

        for centre in (OPERATOR, SUPERVISOR, AUDITOR):
            full = (await api.get(content_url(case_id), headers=centre)).json()
            assert (full["citizen_name"], full["citizen_phone"]) == ("王芳芳", phone)

        views = await views_of(api, case_id)
        assert views[0]["viewer_role"] == "department"
        assert set(views[0]["fields"]) == {"description", "address", "evidence"}  # no contact
        assert {"citizen_name", "citizen_phone"} <= set(views[1]["fields"])
    finally:
        await finish(client, case_id)


async def test_a_person_s_view_is_recorded_under_their_login(
    api: httpx.AsyncClient, browser: httpx.AsyncClient, client: Client,  # noqa: F811
    pool: asyncpg.Pool,
) -> None:  # fmt: skip
    case_id = await routed(api, **report("Person"))
    try:
        login = await new_person(pool, Role.DEPARTMENT, "urban-management")
        await log_in(browser, login)
        assert (await browser.get(content_url(case_id))).status_code == 200
        views = await views_of(api, case_id)
        assert [(v["viewer"], v["person"]) for v in views] == [(login, True)]
        by_login = await api.get(VIEWS, params={"viewer": login}, headers=AUDITOR)
        assert [v["case_id"] for v in by_login.json()] == [case_id]
    finally:
        await finish(client, case_id)


async def test_bad_listing_filters_are_refused(api: httpx.AsyncClient) -> None:
    error_of(await api.get(VIEWS, params={"case_id": "a\x00b"}, headers=AUDITOR), 422,
             "invalid_request")  # fmt: skip
    error_of(await api.get(VIEWS, params={"limit": 0}, headers=AUDITOR), 422, "invalid_request")


@pytest.mark.parametrize("anonymous", [False, True])
async def test_personal_data_is_never_logged(
    api: httpx.AsyncClient, client: Client, caplog: pytest.LogCaptureFixture, anonymous: bool
) -> None:
    """Everything logged at any level by the API and the worker (both run in this process)
    while a case is filed, routed, read and its content shown."""
    body = report("Logged", anonymous=anonymous)
    phone, name = body["citizen"]["phone"], body["citizen"]["name"]
    with caplog.at_level(logging.DEBUG):
        case_id = await routed(api, **body)
        try:
            for who in (URBAN, OPERATOR, department("police")):
                await api.get(content_url(case_id), headers=who)
            await act(api, case_id, "accept", URBAN)
        finally:
            await finish(client, case_id)
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert caplog.records, "nothing was captured: the test would prove nothing"
    assert phone not in logged and phone[-8:] not in logged
    assert name not in logged


async def test_personal_data_stays_out_of_the_temporal_history(
    api: httpx.AsyncClient, client: Client
) -> None:
    """The workflow's input carries the case's facts, not the description nor the citizen:
    they are in PostgreSQL behind the masking above, never in Temporal's history (its Web UI,
    its exports, every byte it stores for every case)."""
    body = report("Kept out")
    phone, name, description = (
        body["citizen"]["phone"], body["citizen"]["name"], body["description"]
    )
    case_id = await routed(api, **body)
    try:
        shown = (await api.get(content_url(case_id), headers=OPERATOR)).json()
        assert (shown["citizen_phone"], shown["description"]) == (phone, description)
    finally:
        await finish(client, case_id)
    history = await client.get_workflow_handle(case_id).fetch_history()
    text = "\n".join(_payload_texts(history.events))
    assert body["title"] in text, "the history should still name the case's problem"
    for personal in (phone, name, description):
        assert personal not in text


def _payload_texts(messages: Any) -> list[str]:
    """Every payload in these protobuf messages, as the text its JSON encodes."""
    found: list[str] = []
    for message in messages:
        if isinstance(message, Payload):
            if message.metadata.get("encoding") == b"json/plain":
                found.append(json.dumps(json.loads(message.data), ensure_ascii=False))
            continue
        for field, value in message.ListFields():
            if field.message_type is None:
                continue
            if field.message_type.GetOptions().map_entry:
                found += _payload_texts(value.values())
            elif isinstance(value, ProtoMessage):
                found += _payload_texts([value])
            else:
                found += _payload_texts(value)
    return found


async def test_a_citizen_s_action_answers_no_other_reporter_s_words(
    api: httpx.AsyncClient, client: Client
) -> None:
    """A repeat report (并单) is another citizen's: its description rides in the case's
    ``repeat_reported`` event, the case's own citizen's supplement in ``supplemented``. The
    answer to a citizen's action (the case after it) is read by whoever holds a report's
    token — anyone who reports the same problem gets one — so it carries neither: it is
    masked as for any caller who does not handle the case (jiesu.access.content), the reply's
    evidence excepted (the citizen's own page shows it)."""
    body = report("Citizens")
    registered = await register(api, **body)
    case_id, own_token = registered["case_id"], registered["citizen_token"]
    theirs, mine = a_phone(), a_phone()
    try:
        repeat = await api.post(COMPLAINTS, headers=OPERATOR, json=complaint(**{
            **body, "citizen": {"name": "李四", "phone": theirs},
            "description": f"隔壁也吵得睡不着，我是李四，电话{theirs}",
        }))  # fmt: skip
        assert repeat.status_code == 200 and repeat.json()["merged"], repeat.text
        repeat_token = repeat.json()["citizen_token"]

        async def counted() -> bool:
            state = await api.get(f"{COMPLAINTS}/{case_id}", headers=OPERATOR)
            return state.status_code == 200 and state.json()["repeat_count"] == 1

        await eventually(counted, within=20)
        supplement = f"{COMPLAINTS}/{case_id}/supplement"
        # the case's own citizen adds information: the answer shows no repeat reporter's words
        answer = await api.post(supplement, json={"token": own_token,
                                                  "text": f"我住3单元502，手机{mine}"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert theirs not in answer.text, "the repeat reporter's phone, to the case's citizen"
        # the repeat report's citizen adds information: no word of the case's own citizen
        answer = await api.post(supplement, json={"token": repeat_token, "text": "补充：凌晨两点"})
        assert answer.status_code == 200, answer.text
        assert mine not in answer.text, "the case's citizen's supplement, to a repeat reporter"
        assert theirs not in answer.text
        # whoever handles the case reads both, as before
        full = (await api.get(f"{COMPLAINTS}/{case_id}", headers=SUPERVISOR)).text
        assert theirs in full and mine in full
    finally:
        await finish(client, case_id)


async def test_the_content_a_case_s_events_carry_is_a_recorded_view(
    api: httpx.AsyncClient, client: Client
) -> None:
    """The case (``GET /api/v1/complaints/{id}``) shows the content its events carry — a
    supplement, a repeat report's description, the reply's evidence — to whoever reads it
    unmasked: each such answer is a view of that content, recorded as /content's are (the
    fields it carried); an answer that carried none, or carried it masked, records nothing."""
    body = report("Carried")
    registered = await register(api, **body)
    case_id, token = registered["case_id"], registered["citizen_token"]
    try:
        await routed_case(api, case_id)
        plain = await api.get(f"{COMPLAINTS}/{case_id}", headers=SUPERVISOR)
        assert plain.status_code == 200 and await views_of(api, case_id) == []
        secret = f"我住3单元502，手机{a_phone()}"
        added = await api.post(f"{COMPLAINTS}/{case_id}/supplement",
                               json={"token": token, "text": secret})  # fmt: skip
        assert added.status_code == 200, added.text
        shown = await api.get(f"{COMPLAINTS}/{case_id}", headers=SUPERVISOR)
        assert secret in shown.text
        views = await views_of(api, case_id)
        assert [(v["viewer"], v["fields"]) for v in views] == [
            ("demo-supervisor", ["description"])
        ]
        grid_worker = auth(demo_key("demo-grid-worker"))  # sees this case of their grid masked
        masked = await api.get(f"{COMPLAINTS}/{case_id}", headers=grid_worker)
        assert masked.status_code == 200 and secret not in masked.text
        assert len(await views_of(api, case_id)) == 1
    finally:
        await finish(client, case_id)


async def routed_case(api: httpx.AsyncClient, case_id: str) -> None:
    async def assigned() -> bool:
        state = await api.get(f"{COMPLAINTS}/{case_id}", headers=OPERATOR)
        return state.status_code == 200 and bool(state.json().get("assignment"))

    await eventually(assigned, within=30)


async def test_a_department_s_action_answer_is_a_recorded_view_of_the_content_it_carries(
    api: httpx.AsyncClient, client: Client
) -> None:
    """An action's answer is the case after it, with the content its events carry (the
    citizen's supplement): for the department that reads it unmasked, a view of that content,
    recorded as the case's GET records it. Before, the answer carried it and nothing was
    recorded."""
    registered = await register(api, **report("Answered"))
    case_id, token = registered["case_id"], registered["citizen_token"]
    try:
        await routed_case(api, case_id)
        secret = f"门口第二个窗户，手机{a_phone()}"
        added = await api.post(f"{COMPLAINTS}/{case_id}/supplement",
                               json={"token": token, "text": secret})  # fmt: skip
        assert added.status_code == 200, added.text
        assert await views_of(api, case_id) == []
        owner = (await api.get(f"{COMPLAINTS}/{case_id}", headers=AUDITOR)).json()
        headers = department(owner["assignment"]["department_id"])
        views_before = len(await views_of(api, case_id))  # the auditor's GET above: one
        answer = await act(api, case_id, "accept", headers)
        assert secret in json.dumps(answer, ensure_ascii=False)
        views = (await views_of(api, case_id))[views_before:]
        assert [(v["viewer_role"], v["fields"]) for v in views] == [
            ("department", ["description"])
        ]
    finally:
        await finish(client, case_id)


async def test_reading_a_case_s_history_is_a_recorded_view_of_its_content(
    api: httpx.AsyncClient, client: Client
) -> None:
    """The auditor's timeline, the raw history and the bundle show what the history carries —
    the address, the supplement as it arrived —: each read is a recorded view (who, which
    fields), as every other view of the content. Before, an auditor read them unrecorded."""
    registered = await register(api, **report("Audited"))
    case_id, token = registered["case_id"], registered["citizen_token"]
    try:
        await routed_case(api, case_id)
        secret = f"楼下便利店旁，手机{a_phone()}"
        added = await api.post(f"{COMPLAINTS}/{case_id}/supplement",
                               json={"token": token, "text": secret})  # fmt: skip
        assert added.status_code == 200, added.text
        for path in ("history", "history/raw", "history/bundle"):
            read = await api.get(f"{COMPLAINTS}/{case_id}/{path}", headers=AUDITOR)
            assert read.status_code == 200, read.text
            if path != "history/raw":  # (there, in the payloads' base64)
                assert secret in json.dumps(read.json(), ensure_ascii=False)
        views = await views_of(api, case_id)
        assert [(v["viewer"], v["fields"]) for v in views] == [
            ("demo-auditor", ["description", "address", "evidence"])
        ] * 3
    finally:
        await finish(client, case_id)


def test_a_history_started_with_the_whole_intake_carries_the_citizen() -> None:
    """Cases started before CaseFacts carry the intake, the citizen with it, in their start."""
    legacy = {"case_id": "JS1", "intake": {"citizen": {"name": "王芳", "phone": "13900000000"}}}
    assert history_fields(legacy) == CONTENT
    assert history_fields({"case_id": "JS1", "intake": None, "facts": {}}) == (
        ContentField.DESCRIPTION, ContentField.ADDRESS, ContentField.EVIDENCE
    )
    assert history_fields(None) == HISTORY_CONTENT


def test_identifiers_in_free_text_are_masked_by_their_shape() -> None:
    cases = {
        "我是3号楼的，电话13812341234，楼下吵": "我是3号楼的，电话138****1234，楼下吵",
        "联系 138 1234 1234": "联系 138****1234",
        "+86-13812341234": "138****1234",
        "座机010-12345678": "座机010****5678",
        "身份证11010519491231002X号": "身份证110***********002X号",
        "邮件wang.fang@example.com谢谢": "邮件w***@example.com谢谢",
        "QQ 12345678": "QQ ******78",
        # what is not a person's: a date, a house number, a case number, plain words
        "2026-11-23 幸福路1号3单元502": "2026-11-23 幸福路1号3单元502",
        "同 JS20261123-000001": "同 JS20261123-000001",
        "Food 9082870dcfe5": "Food 9082870dcfe5",  # a code's digits, not a number
        "Shop loudspeaker at night": "Shop loudspeaker at night",
    }
    assert {text: redact_identifiers(text) for text in cases} == cases


async def test_a_title_carries_no_phone_number_into_the_lists_and_the_history(
    api: httpx.AsyncClient, client: Client
) -> None:
    """A title is shown where the content is not — every case list, the department's inbox,
    the Temporal history and its Web UI — and one cut from an SMS or a mail often holds the
    citizen's phone. The numbers and e-mail addresses in a title are masked at intake; the
    description keeps them (content, behind masking and the view log). Before, the title
    carried the phone number everywhere, the Temporal history included."""
    phone = a_phone()
    title = f"楼下烧烤店油烟，联系我{phone}或 li.lei@example.com"
    body = {**report("Titled"), "title": title}
    body["description"] = f"{title}。每天晚上十点以后。"
    case_id = str((await register(api, **body))["case_id"])
    try:
        await routed_case(api, case_id)
        shown = (await api.get(f"{COMPLAINTS}/{case_id}", headers=OPERATOR)).json()
        masked = f"{phone[:3]}****{phone[-4:]}"
        assert shown["title"] == f"楼下烧烤店油烟，联系我{masked}或 l***@example.com"
        listed = await api.get(COMPLAINTS, params={"case_id": case_id}, headers=SUPERVISOR)
        assert phone not in listed.text and "li.lei" not in listed.text
        timeline = await api.get(f"{COMPLAINTS}/{case_id}/history", headers=AUDITOR)
        decoded = json.dumps(timeline.json(), ensure_ascii=False)  # the payloads, decoded
        assert masked in decoded and phone not in decoded and "li.lei" not in decoded
        content = (await api.get(content_url(case_id), headers=SUPERVISOR)).json()
        assert phone in content["description"]
    finally:
        await finish(client, case_id)
