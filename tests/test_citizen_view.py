"""What a citizen receives about a case (jiesu.access.citizen_view): the answers to their
actions and their page /my/<token> carry the steps of the case, not the government's internals
(staff logins, request ids, notes, supervision, extension requests, returns, refusals), and of
the citizens' own steps only the reporter's own: a repeat reporter (并单) is not shown the
case's citizen's rating as theirs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from helpers import OPERATOR, SUPERVISOR, act, complaint, department, eventually, register
from temporalio.client import Client
from test_api import COMPLAINTS, finish, fresh

from jiesu.access.citizen_view import (
    CASE_CITIZEN,
    CITIZEN_EVENTS,
    CitizenCase,
    Reporter,
    citizen_case,
)
from jiesu.case.domain import (
    Actor,
    Assignment,
    CaseEvent,
    CaseState,
    Channel,
    EventKind,
    Rating,
    Reply,
    ReplyOutcome,
    Role,
    Status,
    Urgency,
)

NOTE = "内部备注：诉求人是区长的亲戚"
REASONS = "内部延期理由：预算未批"
DECISION = "驳回意见：不得延期"
OPINION = "督办意见：严肃处理科员张伟"
REPLY = "噪音已处理，商户已整改"


async def _routed(api: httpx.AsyncClient, case_id: str) -> dict[str, Any] | None:
    response = await api.get(f"{COMPLAINTS}/{case_id}", headers=SUPERVISOR)
    if response.status_code == 200 and response.json().get("assignment"):
        return response.json()
    return None


def _staff_traces(state: dict[str, Any]) -> set[str]:
    """What identifies the staff in a case as the centre sees it: logins, persons, request
    ids of every actor who is not a citizen or the system."""
    traces: set[str] = set()
    for e in state["events"]:
        actor = e["actor"]
        if actor["role"] not in ("citizen", "system"):
            traces.add(actor["name"])
        traces.update(v for v in (actor.get("request_id"), actor.get("person")) if v)
    return traces


def _assert_citizen_shaped(case: dict[str, Any], traces: set[str], text: str) -> None:
    leaked = sorted(t for t in traces if t in text)
    assert traces and not leaked, f"staff logins or request ids: {leaked}"
    for secret in (NOTE, REASONS, DECISION, OPINION, "request_id", "rule_id"):
        assert secret not in text, secret
    assert {e["kind"] for e in case["events"]} <= {k.value for k in CITIZEN_EVENTS}
    for e in case["events"]:
        assert set(e["by"]) == {"role", "department_name"}
    CitizenCase.model_validate(case)  # the documented shape, nothing else


async def test_a_citizen_receives_the_steps_of_the_case_and_no_staff(
    api: httpx.AsyncClient, client: Client
) -> None:
    body = fresh("Citizen view", description="楼下商铺每晚放音乐")
    registered = await register(api, **body)
    case_id, own_token = registered["case_id"], registered["citizen_token"]
    try:
        routed = await eventually(lambda: _routed(api, case_id), within=30)
        dept = department(routed["assignment"]["department_id"])
        await act(api, case_id, "accept", dept)
        await act(api, case_id, "contact", dept, note=NOTE)
        finish_by = datetime.fromisoformat(routed["deadlines"]["finish"])
        promised = max(finish_by, datetime.now(UTC)) + timedelta(days=2)
        await act(api, case_id, "extension", dept, reasons=REASONS, measures="正在协调",
                  promised_finish=promised.isoformat())  # fmt: skip
        await act(api, case_id, "extension/decision", SUPERVISOR, approved=False, note=DECISION)
        await act(api, case_id, "supervision", SUPERVISOR, note=OPINION)
        other = complaint(**{**body, "citizen": {"name": "李四", "phone": "13900001111"},
                             "description": "我也被吵得睡不着"})  # fmt: skip
        repeat = await api.post(COMPLAINTS, headers=OPERATOR, json=other)
        assert repeat.status_code == 200 and repeat.json()["merged"], repeat.text
        repeat_token = repeat.json()["citizen_token"]

        async def counted() -> bool:
            state = await api.get(f"{COMPLAINTS}/{case_id}", headers=SUPERVISOR)
            return state.json()["repeat_count"] == 1

        await eventually(counted, within=20)
        mine = await act(api, case_id, "supplement", token=own_token, text="晚上十点开始")
        theirs = await act(api, case_id, "supplement", token=repeat_token, text="周末也吵")
        await act(api, case_id, "reply", dept, outcome="resolved", text=REPLY)
        rated = await act(api, case_id, "rating", token=own_token, rating="satisfied",
                          comment="谢谢")  # fmt: skip
        traces = _staff_traces(await _routed(api, case_id) or {})

        # the answers to the citizens' actions
        for answer in (mine, theirs, rated):
            _assert_citizen_shaped(answer["case"], traces, str(answer))
        own_steps = [e for e in mine["case"]["events"] if e["yours"]]
        assert [e["kind"] for e in own_steps] == ["supplemented"]
        kinds = [e["kind"] for e in theirs["case"]["events"]]
        assert kinds.count("supplemented") == 1 and kinds.count("repeat_reported") == 1
        assert all(e["yours"] for e in theirs["case"]["events"]
                   if e["kind"] in ("supplemented", "repeat_reported"))  # fmt: skip
        assert theirs["case"]["reporter"] == "repeat_report"
        assert rated["case"]["rating"] == "satisfied" and rated["case"]["reporter"] == "citizen"
        assert rated["case"]["reply"]["text"] == REPLY
        assert "rated" in [e["kind"] for e in rated["case"]["events"]]
        accepted = next(e for e in rated["case"]["events"] if e["kind"] == "accepted")
        assert accepted["by"] == {
            "role": "department",
            "department_name": routed["assignment"]["department_name"],
        }

        # their pages: the case's citizen's rating is theirs alone
        own_page = (await api.get(f"/my/{own_token}")).text
        repeat_page = (await api.get(f"/my/{repeat_token}")).text
        for page in (own_page, repeat_page):
            assert REPLY in page and case_id in page
            assert not any(t in page for t in traces)
            assert NOTE not in page and OPINION not in page and REASONS not in page
        assert "您的评价" in own_page
        assert "您的评价" not in repeat_page and "满意" not in repeat_page
    finally:
        await finish(client, case_id)


async def test_the_openapi_documents_the_citizen_s_answer(api: httpx.AsyncClient) -> None:
    api_app_openapi = (await api.get("/openapi.json")).json()
    for action in ("rating", "supplement", "withdraw"):
        operation = api_app_openapi["paths"][f"/api/v1/complaints/{{case_id}}/{action}"]["post"]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/CitizenActionResult"), (action, schema)
    case = api_app_openapi["components"]["schemas"]["CitizenCase"]
    assert "events" in case["properties"] and "actor" not in str(case)


# --- the projection itself (no Temporal) ----------------------------------------------------

_AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
_CLERK = Actor(role=Role.DEPARTMENT, name="clerk-zhang", department_id="water",
               request_id="req-1", person="clerk-zhang")  # fmt: skip
_OPERATOR = Actor(role=Role.OPERATOR, name="operator-li", request_id="req-0", person="operator-li")
_REPEATER = Reporter(report_id=7)


def _case() -> CaseState:
    events = [
        (EventKind.RECEIVED, _OPERATOR, {"title": "t"}),
        (EventKind.ROUTED, Actor(role=Role.SYSTEM, name="jiesu"),
         {"department_id": "water", "department_name": "水务局", "rule_id": 3, "note": "n"}),
        (EventKind.ACCEPTED, _CLERK, {}),
        (EventKind.CONTACTED, _CLERK, {"note": NOTE}),
        (EventKind.EXTENSION_REQUESTED, _CLERK, {"reasons": REASONS}),
        (EventKind.EXTENSION_DECIDED, _OPERATOR, {"approved": False, "note": DECISION}),
        (EventKind.REJECTED, _CLERK, {"action": "reply", "reason": "r"}),
        (EventKind.REPEAT_REPORTED, _OPERATOR, {"report_id": "7", "description": "d"}),
        (EventKind.REPEAT_REPORTED, _OPERATOR, {"report_id": "8", "description": "d"}),
        (EventKind.SUPPLEMENTED, CASE_CITIZEN.actor, {"text": "mine"}),
        (EventKind.SUPPLEMENTED, _REPEATER.actor, {"text": "theirs"}),
        (EventKind.REPLIED, _CLERK, {"outcome": "resolved", "text": REPLY,
                                     "evidence": ["https://e.example/1.jpg"]}),
        (EventKind.RATED, CASE_CITIZEN.actor, {"rating": "satisfied", "comment": "c"}),
        (EventKind.CLOSED, Actor(role=Role.SYSTEM, name="jiesu"), {"resolution": "rated"}),
        # two repeats that reached the case after its close: one filed again, one refused
        (EventKind.REPEAT_REFILED, Actor(role=Role.SYSTEM, name="jiesu"),
         {"report_id": "7", "refiled_as": "QH-2", "merged": False, "reason": ""}),
        (EventKind.REPEAT_REFILED, Actor(role=Role.SYSTEM, name="jiesu"),
         {"report_id": "8", "refiled_as": None, "merged": False,
          "reason": "unknown_category: rule 9 of 松林路"}),
    ]  # fmt: skip
    return CaseState(
        case_id="QH-1", status=Status.CLOSED, title="t", category_id="c", grid_id="g",
        address="松林路8号", channel=Channel.HOTLINE, urgency=Urgency.GENERAL, received_at=_AT,
        assignment=Assignment(department_id="water", department_name="水务局", assigned_at=_AT,
                              by_rule=True),
        reply=Reply(outcome=ReplyOutcome.RESOLVED, text=REPLY, evidence=[], at=_AT, by=_CLERK),
        rating=Rating.SATISFIED, rating_comment="c",
        events=[CaseEvent(seq=n, kind=k, at=_AT, actor=a, data=d)
                for n, (k, a, d) in enumerate(events, 1)],
    )  # fmt: skip


def test_the_projection_keeps_the_steps_and_drops_the_internals() -> None:
    own, theirs = citizen_case(_case(), CASE_CITIZEN), citizen_case(_case(), _REPEATER)
    for view in (own, theirs):
        text = view.model_dump_json()
        for secret in ("clerk-zhang", "operator-li", "req-", NOTE, REASONS, DECISION, "rule_id",
                       "松林路", '"d"', "theirs", "mine"):  # fmt: skip
            assert secret not in text, secret
        contacted = next(e for e in view.events if e.kind is EventKind.CONTACTED)
        assert contacted.by.role is Role.DEPARTMENT and contacted.by.department_name == "水务局"
        assert view.reply is not None and view.reply.text == REPLY
    assert [e.kind for e in own.events] == [
        EventKind.RECEIVED,
        EventKind.ROUTED,
        EventKind.ACCEPTED,
        EventKind.CONTACTED,
        EventKind.SUPPLEMENTED,
        EventKind.REPLIED,
        EventKind.RATED,
        EventKind.CLOSED,
    ]
    assert own.rating is Rating.SATISFIED and theirs.rating is None
    assert [(e.kind, e.yours) for e in theirs.events if e.yours] == [
        (EventKind.REPEAT_REPORTED, True),
        (EventKind.SUPPLEMENTED, True),
        (EventKind.REPEAT_REFILED, True),  # their report only, never the refusal's reason
    ]
    refiled = theirs.events[-1]
    assert (refiled.refiled_as, refiled.merged) == ("QH-2", False), refiled
    assert "unknown_category" not in theirs.model_dump_json() + own.model_dump_json()
    assert EventKind.RATED not in [e.kind for e in theirs.events]
    routed = next(e for e in own.events if e.kind is EventKind.ROUTED)
    assert routed.department_name == "水务局" and routed.by.role is Role.SYSTEM
    replied = next(e for e in own.events if e.kind is EventKind.REPLIED)
    assert replied.evidence == ["https://e.example/1.jpg"] and replied.text == REPLY
