"""The notifications outbox: who is told what (pure rules), atomic and idempotent writing by the
projection, and at-least-once delivery by the dispatcher on the real PostgreSQL.

The database is shared by the whole session and other tests' cases create notices too, so every
assertion here is scoped to this module's own case ids (synthetic notices use a fresh
``TEST-OUTBOX-…`` case id as key prefix). A dispatcher run here may also deliver other tests'
pending notices to the fake sender; they are ignored.
"""

from __future__ import annotations

import asyncio
import email
import json
import re
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
from helpers import OPERATOR, act, complaint, department, eventually, handle_of, register
from temporalio.client import Client

from activities.projection import ProjectionActivities
from jiesu.case.domain import (
    CENTRE_ID,
    SYSTEM_ACTOR,
    Actor,
    Assignment,
    CaseEvent,
    CaseProjection,
    CaseState,
    Channel,
    Deadlines,
    EventKind,
    Role,
    Status,
    Urgency,
)
from jiesu.config import Settings, get_settings
from jiesu.notify import outbox
from jiesu.notify.notices import SUPERVISORS, Notice, notices_for
from jiesu.notify.outbox import (
    ChannelSender,
    LogSender,
    OutboundNotice,
    OutboxDispatcher,
    SmtpSender,
    sender_from_env,
)
from jiesu.ops import doctor as repairs

RECEIVED = datetime(2025, 11, 19, 1, 30, tzinfo=UTC)  # 09:30 in Beijing
ACCEPT_BY = datetime(2025, 11, 19, 2, 30, tzinfo=UTC)  # 10:30 in Beijing
URBAN = "urban-management"
URBAN_ACTOR = Actor(role=Role.DEPARTMENT, name="Li Wei", department_id=URBAN)


def _state(case_id: str = "JS20251119-000001", **overrides: object) -> CaseState:
    values: dict[str, object] = {
        "case_id": case_id,
        "status": Status.ASSIGNED,
        "title": "商铺夜间外放噪音",
        "category_id": "noise_commercial",
        "grid_id": "G-QH-01-01-1",
        "address": "幸福路12号",
        "channel": Channel.HOTLINE,
        "urgency": Urgency.GENERAL,
        "received_at": RECEIVED,
        "assignment": Assignment(
            department_id=URBAN,
            department_name="县城市管理局",
            assigned_at=RECEIVED,
            by_rule=True,
        ),
        "deadlines": Deadlines(
            accept=ACCEPT_BY, finish=RECEIVED + timedelta(days=2), rating_window_hours=72
        ),
    }
    values.update(overrides)
    return CaseState.model_validate(values)


def _event(seq: int, kind: EventKind, actor: Actor = SYSTEM_ACTOR, **data: object) -> CaseEvent:
    return CaseEvent(seq=seq, kind=kind, at=RECEIVED + timedelta(minutes=seq), actor=actor,
                     data=data)


def _recipients(notices: list[Notice]) -> list[tuple[str, str]]:
    return [(n.recipient_kind, n.recipient_id) for n in notices]


# --- rules (pure) ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [EventKind.ROUTED, EventKind.DISPATCHED, EventKind.REASSIGNED])
def test_assigned_department_is_told_to_accept_by_the_deadline(kind: EventKind) -> None:
    state = _state()
    event = _event(3, kind, department_id=URBAN, department_name="县城市管理局")
    [notice] = notices_for(state, [event])
    assert notice.key == f"{state.case_id}:3:department:{URBAN}"
    assert (notice.recipient_kind, notice.recipient_id, notice.channel) == (
        "department", URBAN, "email"
    )
    assert notice.event_seq == 3 and notice.event_kind is kind
    assert "2025-11-19 10:30" in notice.body  # the accept deadline, Beijing time
    assert state.case_id in notice.subject and "县城市管理局" in notice.body


def test_notice_times_are_in_the_configured_display_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """JIESU_TIMEZONE (Settings.timezone) is the one display time zone: no constant of its own."""
    event = _event(3, EventKind.ROUTED, department_id=URBAN, department_name="县城市管理局")
    [utc] = notices_for(_state(), [event], ZoneInfo("UTC"))
    assert "2025-11-19 02:30" in utc.body  # the same accept deadline as above, in UTC
    monkeypatch.setenv("JIESU_TIMEZONE", "UTC")
    get_settings.cache_clear()
    try:
        [configured] = notices_for(_state(), [event])
    finally:
        get_settings.cache_clear()
    assert configured.body == utc.body


def test_urgent_case_is_marked_and_unknown_deadline_is_not_invented() -> None:
    state = _state(urgency=Urgency.URGENT, deadlines=None)
    [notice] = notices_for(state, [_event(3, EventKind.ROUTED, department_id=URBAN)])
    assert notice.subject.startswith("【紧急】")
    assert "请及时签收" in notice.body


def test_breach_tells_the_department_and_the_supervisors() -> None:
    event = _event(
        5, EventKind.DEADLINE_BREACHED,
        deadline_kind="accept", deadline=ACCEPT_BY.isoformat(), department_id=URBAN,
    )
    notices = notices_for(_state(), [event])
    assert _recipients(notices) == [("department", URBAN), ("supervisor", SUPERVISORS)]
    assert all("签收" in n.subject and "2025-11-19 10:30" in n.body for n in notices)


def test_breach_in_the_centre_queue_goes_to_the_supervisors_only() -> None:
    event = _event(5, EventKind.DEADLINE_BREACHED, deadline_kind="accept",
                   deadline=ACCEPT_BY.isoformat(), department_id=CENTRE_ID)
    assert _recipients(notices_for(_state(), [event])) == [("supervisor", SUPERVISORS)]


@pytest.mark.parametrize(
    ("level", "name", "supervisors"),
    [(1, "remind", False), (2, "urge", False), (3, "supervise", True),
     (4, "joint_handling", True), (5, "accountability", True)],
)
def test_escalation_tells_supervisors_from_level_three(
    level: int, name: str, supervisors: bool
) -> None:
    event = _event(7, EventKind.ESCALATED, level=level, level_name=name, department_id=URBAN,
                   trigger="finish_breached")
    notices = notices_for(_state(), [event])
    expected = [("department", URBAN)] + ([("supervisor", SUPERVISORS)] if supervisors else [])
    assert _recipients(notices) == expected
    assert "超时未办结" in notices[0].body
    chinese = ["提醒", "催办", "督办", "会办", "问责"][level - 1]
    assert notices[0].subject.startswith(f"【{chinese}】")


def test_approved_extension_tells_the_citizen_the_new_date() -> None:
    new = datetime(2025, 11, 25, 9, 0, tzinfo=UTC)
    event = _event(8, EventKind.EXTENSION_DECIDED, approved=True, new_deadline=new.isoformat(),
                   note="需协调产权单位")
    state = _state()
    notices = notices_for(state, [event])
    assert _recipients(notices) == [("citizen", state.case_id), ("department", URBAN)]
    citizen, dept = notices
    assert citizen.channel == "sms" and "2025-11-25 17:00" in citizen.body
    assert "已批准" in dept.body


def test_rejected_extension_tells_the_department_only() -> None:
    event = _event(8, EventKind.EXTENSION_DECIDED, approved=False, new_deadline=None,
                   note="理由不充分")
    [notice] = notices_for(_state(), [event])
    assert (notice.recipient_kind, notice.recipient_id) == ("department", URBAN)
    assert "未获批准" in notice.body and "理由不充分" in notice.body


def test_reply_goes_to_the_citizen_with_an_invitation_to_rate() -> None:
    state = _state(status=Status.REPLIED)
    long_text = "已责令商铺整改，夜间不再外放。" + "详情" * 300
    event = _event(9, EventKind.REPLIED, URBAN_ACTOR, outcome="resolved", text=long_text)
    [notice] = notices_for(state, [event])
    assert notice.key == f"{state.case_id}:9:citizen:{state.case_id}"
    assert notice.channel == "sms"
    assert "已责令商铺整改" in notice.body and "评价" in notice.body
    assert len(notice.body) < 400  # the reply is quoted, not copied whole, into an SMS


def test_co_handlers_each_get_a_notice_once() -> None:
    event = _event(10, EventKind.CO_HANDLERS_ADDED,
                   department_ids=["water", "police", "water", CENTRE_ID])
    assert _recipients(notices_for(_state(), [event])) == [
        ("department", "water"), ("department", "police")
    ]


@pytest.mark.parametrize("kind", [EventKind.RETURNED, EventKind.REHANDLE_STARTED])
def test_returns_and_rehandling_go_to_the_supervisors(kind: EventKind) -> None:
    event = _event(11, kind, URBAN_ACTOR, reason="不属于本单位职责")
    [notice] = notices_for(_state(), [event])
    assert (notice.recipient_kind, notice.recipient_id) == ("supervisor", SUPERVISORS)
    assert "不属于本单位职责" in notice.body


@pytest.mark.parametrize(
    "kind", [EventKind.RECEIVED, EventKind.ACCEPTED, EventKind.RATED, EventKind.CLOSED]
)
def test_other_events_cause_no_notice(kind: EventKind) -> None:
    assert notices_for(_state(), [_event(2, kind, resolution="rated")]) == []


def test_odd_event_data_never_breaks_the_rules() -> None:
    events = [
        _event(1, EventKind.ESCALATED, level="high", trigger=None),
        _event(2, EventKind.DEADLINE_BREACHED),
        _event(3, EventKind.EXTENSION_DECIDED, approved=True, new_deadline="next week"),
        _event(4, EventKind.CO_HANDLERS_ADDED),
        _event(5, EventKind.ROUTED),
    ]
    notices = notices_for(_state(assignment=None), events)
    assert len({n.key for n in notices}) == len(notices)
    assert ("supervisor", SUPERVISORS) in _recipients(notices)


# --- writing: the projection ------------------------------------------------------------------


async def test_projecting_the_same_events_twice_stores_each_notice_once(
    pool: asyncpg.Pool,
) -> None:
    case_id = _synthetic_case_id()
    state = _state(case_id, status=Status.REPLIED)
    events = [
        _event(1, EventKind.RECEIVED, title=state.title),
        _event(2, EventKind.ROUTED, department_id=URBAN, department_name="县城市管理局"),
        _event(3, EventKind.DEADLINE_BREACHED, deadline_kind="accept",
               deadline=ACCEPT_BY.isoformat(), department_id=URBAN),
        _event(4, EventKind.REPLIED, URBAN_ACTOR, outcome="resolved", text="已整改"),
    ]
    projection = CaseProjection(state=state, new_events=events, version=4)
    projector = ProjectionActivities(pool)
    await projector.project_case(projection)
    await projector.project_case(projection)  # a retried activity
    await projector.project_case(CaseProjection(state=state, new_events=events[2:], version=4))

    rows = await pool.fetch(
        "SELECT key, event_kind, recipient_kind, recipient_id, status FROM notifications"
        " WHERE case_id = $1 ORDER BY id",
        case_id,
    )
    assert [(r["event_kind"], r["recipient_kind"], r["recipient_id"]) for r in rows] == [
        ("routed", "department", URBAN),
        ("deadline_breached", "department", URBAN),
        ("deadline_breached", "supervisor", SUPERVISORS),
        ("replied", "citizen", case_id),
    ]
    assert {r["status"] for r in rows} == {"pending"}
    assert await pool.fetchval(
        "SELECT count(*) FROM case_events WHERE case_id = $1", case_id
    ) == 4


async def test_a_retried_workflow_task_leaves_no_notice_of_its_abandoned_attempt(
    pool: asyncpg.Pool,
) -> None:
    """A local projection (lean-case-v1) runs before its workflow task commits. Attempt 1
    applies a return (退单) just inside its window and projects it as seq 4; the worker dies
    before completing the task; attempt 2 runs with a later workflow.now(), past the window,
    and records the same signal as `rejected` at seq 4 — the committed history."""
    case_id = _synthetic_case_id()
    base = [
        _event(1, EventKind.RECEIVED, title="t"),
        _event(2, EventKind.ROUTED, department_id=URBAN, department_name="x"),
        _event(3, EventKind.ACCEPTED, URBAN_ACTOR),
    ]
    abandoned = _event(4, EventKind.RETURNED, URBAN_ACTOR, department_id=URBAN,
                       reason="不属于本单位职责", awaiting_approval=True)
    committed = _event(4, EventKind.REJECTED, URBAN_ACTOR, action="return",
                       code="return_window_over", reason="too late")
    projector = ProjectionActivities(pool)
    await projector.project_events(CaseProjection(
        state=_state(case_id, status=Status.HANDLING), new_events=[*base, abandoned], version=4))
    final = _state(case_id, status=Status.HANDLING)
    await projector.project_events(CaseProjection(
        state=final, new_events=[*base, committed], version=4))

    assert await pool.fetchval(
        "SELECT kind FROM case_events WHERE case_id = $1 AND seq = 4", case_id) == "rejected"
    stored = await pool.fetch(
        "SELECT key, event_kind FROM notifications WHERE case_id = $1 ORDER BY id", case_id)
    expected = {n.key for n in notices_for(final, [*base, committed])}
    assert {r["key"] for r in stored} == expected, [tuple(r) for r in stored]


async def test_a_retried_workflow_task_rewrites_pending_notices_not_sent_ones(
    pool: asyncpg.Pool,
) -> None:
    """The retried attempt's notice wins over a pending one of the same key (its routing
    computed another accept deadline); a notice already sent cannot be called back."""
    case_id = _synthetic_case_id()
    state = _state(case_id, status=Status.HANDLING)
    received = _event(1, EventKind.RECEIVED, title="t")

    def routed(deadline: datetime) -> CaseEvent:
        return _event(2, EventKind.ROUTED, department_id=URBAN, department_name="x",
                      accept_deadline=deadline.isoformat())

    returned = _event(3, EventKind.RETURNED, URBAN_ACTOR, department_id=URBAN, reason="r",
                      awaiting_approval=True)
    projector = ProjectionActivities(pool)
    await projector.project_events(CaseProjection(
        state=state, new_events=[received, routed(ACCEPT_BY), returned], version=3))
    [was_sent] = [n.key for n in notices_for(state, [returned])]
    await pool.execute("UPDATE notifications SET status = 'sent', sent_at = now()"
                       " WHERE key = $1", was_sent)
    later = ACCEPT_BY + timedelta(minutes=7)  # 10:37 in Beijing
    rejected = _event(3, EventKind.REJECTED, URBAN_ACTOR, action="return",
                      code="return_window_over", reason="too late")
    await projector.project_events(CaseProjection(
        state=state, new_events=[received, routed(later), rejected], version=3))

    [department] = await _notices_of(pool, case_id, "department")
    assert "10:37" in department["body"] and "10:30" not in department["body"]
    assert (await _row(pool, was_sent))["status"] == "sent"  # out already: it stays


async def test_a_case_through_the_api_notifies_department_and_citizen(
    api: httpx.AsyncClient, client: Client, pool: asyncpg.Pool
) -> None:
    phone = f"139{uuid.uuid4().int % 10**8:08d}"
    created = await register(api, citizen={"name": "Zhao Lei", "phone": phone})
    case_id = created["case_id"]  # noise_commercial in 幸福社区 → urban management
    urban = department(URBAN)

    routed = await eventually(lambda: _notices_of(pool, case_id, "department"))
    assert [(r["event_kind"], r["recipient_id"]) for r in routed] == [("routed", URBAN)]

    await act(api, case_id, "accept", urban)
    await act(api, case_id, "contact", urban)
    await act(api, case_id, "reply", urban, outcome="resolved", text="已约谈店主，音箱已拆除")
    replied, *_ = await eventually(lambda: _notices_of(pool, case_id, "citizen", "replied"))
    assert replied["event_kind"] == "replied" and replied["channel"] == "sms"
    assert "音箱已拆除" in replied["body"]

    sender = RecordingSender()
    dispatcher = OutboxDispatcher(pool, sender, batch=500)

    async def delivered() -> bool:
        await dispatcher.run_once()
        return await pool.fetchval(
            "SELECT count(*) FILTER (WHERE status = 'sent') = 3 AND count(*) = 3"
            " FROM notifications WHERE case_id = $1", case_id
        )

    await eventually(delivered)
    mine = {n.recipient_kind: n for n in sender.sent
            if n.case_id == case_id and n.event_kind is not EventKind.RECEIVED}
    assert mine["citizen"].address == phone  # resolved from the intake
    assert mine["department"].address == URBAN
    assert mine["department"].recipient_name == await pool.fetchval(
        "SELECT name FROM departments WHERE id = $1", URBAN
    )
    assert Counter(n.key for n in sender.sent if n.case_id == case_id).most_common(1)[0][1] == 1

    await act(api, case_id, "rating", token=created["citizen_token"], rating="satisfied")
    await handle_of(client, case_id).result()
    await eventually(lambda: pool.fetchval(
        "SELECT 1 FROM cases WHERE case_id = $1 AND status = 'closed'", case_id
    ))
    assert await pool.fetchval(  # rating and closing tell nobody (yet)
        "SELECT count(*) FROM notifications WHERE case_id = $1", case_id
    ) == 3  # the intake SMS (jiesu/intake/follow_up.py), the department, the reply


@pytest.mark.parametrize("landline", ["010-12345678", "+86 10 8765 4321", "12345"])
async def test_no_sms_goes_to_a_landline_and_the_outbox_says_why(
    api: httpx.AsyncClient, pool: asyncpg.Pool, landline: str
) -> None:
    """A caller who left a landline (or a short number): the intake SMS with their link was
    queued to it and handed to the SMS gateway, and so was the reply's SMS — a landline
    receives no SMS. Now the intake SMS is written ``skipped`` with why (follow_up.enqueue,
    the one place every channel's report queues it), and a later citizen SMS of the case is
    marked ``skipped`` by the dispatcher instead of sent; the department is still told."""
    from jiesu.intake import follow_up
    from jiesu.notify.sms import NOT_MOBILE

    created = await register(api, citizen={"name": "钱七", "phone": landline})
    case_id = created["case_id"]
    intake_sms = await eventually(lambda: _notices_of(pool, case_id, "citizen", "received"))
    assert [(r["status"], r["last_error"]) for r in intake_sms] == [("skipped", NOT_MOBILE)]

    urban = department(URBAN)
    await eventually(lambda: _notices_of(pool, case_id, "department"))  # routed: it sees the case
    await act(api, case_id, "accept", urban)
    await act(api, case_id, "contact", urban)
    await act(api, case_id, "reply", urban, outcome="resolved", text="已处理")
    await eventually(lambda: _notices_of(pool, case_id, "citizen", "replied"))
    sender = RecordingSender()
    dispatcher = OutboxDispatcher(pool, sender, batch=500)

    async def settled() -> list:
        await dispatcher.run_once()
        rows = await pool.fetch(
            "SELECT recipient_kind, status, last_error FROM notifications WHERE case_id = $1"
            " AND status NOT IN ('pending', 'sending') ORDER BY event_seq, id", case_id
        )  # (by event: the intake SMS's row may be written after the department's)
        return rows if len(rows) == 3 else []

    rows = await eventually(settled)
    assert [(r["recipient_kind"], r["status"]) for r in rows] == [
        ("citizen", "skipped"), ("department", "sent"), ("citizen", "skipped")
    ]
    assert rows[2]["last_error"] == NOT_MOBILE
    assert not [n for n in sender.sent if n.case_id == case_id and n.recipient_kind == "citizen"]

    # a repeat report's intake SMS (merged into a case) is queued by the same function
    async with pool.acquire() as conn:
        await follow_up.enqueue(conn, case_id, 999_999_999, landline)
    key = f"{follow_up.recipient(case_id, 999_999_999)}:follow-up"
    assert (await _row(pool, key))["status"] == "skipped"


async def test_a_citizen_who_left_no_contact_is_not_said_to_have_a_landline(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """An app's report without contact (the one channel where contact is optional): no intake
    notice is queued, and the reply's notice is ``skipped`` by the dispatcher — with the
    landline's reason, 不是手机号码（座机或短号）, although the citizen left no number at all.
    Now its reason says so (NO_CONTACT); a landline's still says NOT_MOBILE (the test
    above)."""
    from jiesu.notify.sms import NO_CONTACT, NOT_MOBILE

    created = await register(api, channel="app", citizen={"name": "匿名"})
    case_id = created["case_id"]
    urban = department(URBAN)
    await eventually(lambda: _notices_of(pool, case_id, "department"))
    await act(api, case_id, "accept", urban)
    await act(api, case_id, "contact", urban)
    await act(api, case_id, "reply", urban, outcome="resolved", text="已处理")
    await eventually(lambda: _notices_of(pool, case_id, "citizen", "replied"))
    dispatcher = OutboxDispatcher(pool, RecordingSender(), batch=500)

    async def skipped() -> list:
        await dispatcher.run_once()
        return [r for r in await _notices_of(pool, case_id, "citizen")
                if r["status"] == "skipped"]

    rows = await eventually(skipped)
    assert [(r["event_kind"], r["last_error"]) for r in rows] == [("replied", NO_CONTACT)]
    assert NOT_MOBILE not in NO_CONTACT and "座机" not in NO_CONTACT


@pytest.mark.parametrize(("prefix", "digits"), [("010-", 8), ("9", 4)])  # landline, short
async def test_a_landline_citizen_with_an_email_gets_every_notice_by_email_once(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings, prefix: str,
    digits: int,
) -> None:
    """A caller who left a landline and an e-mail address got no notice at all: the intake
    SMS (their link) and the reply's SMS were ``skipped`` — the outbox wrote to a citizen's
    e-mail only when there was no phone. Now what the SMS would have carried goes to the
    e-mail address, once per notice even when the first attempt fails and the outbox sends
    it again (the same key, so the same Message-ID); a mobile number still gets the SMS."""
    from jiesu.intake import follow_up
    from jiesu.intake.follow_up import FollowUpLinks

    landline = f"{prefix}{uuid.uuid4().int % 10**digits:0{digits}d}"  # its own: no merge
    mail = f"citizen-{uuid.uuid4().hex[:8]}@example.cn"
    created = await register(api, citizen={"name": "钱七", "phone": landline, "email": mail})
    case_id = created["case_id"]
    intake, *_ = await eventually(lambda: _notices_of(pool, case_id, "citizen", "received"))
    assert (intake["status"], intake["last_error"]) == ("pending", None)

    urban = department(URBAN)
    await eventually(lambda: _notices_of(pool, case_id, "department"))  # routed: it sees the case
    await act(api, case_id, "accept", urban)
    await act(api, case_id, "contact", urban)
    await act(api, case_id, "reply", urban, outcome="resolved", text="已约谈店主")
    await eventually(lambda: _notices_of(pool, case_id, "citizen", "replied"))

    attempted: list[OutboundNotice] = []

    def first_attempt_fails(notice: OutboundNotice) -> bool:
        if notice.case_id != case_id or notice.recipient_kind != "citizen":
            return False
        attempted.append(notice)
        return notice.attempts == 1

    sender = RecordingSender(fail=first_attempt_fails)
    dispatcher = OutboxDispatcher(pool, sender, batch=500, retry_delay=timedelta(0),
                                  render=FollowUpLinks(pool, settings))

    async def delivered() -> bool:
        await dispatcher.run_once()
        return await pool.fetchval(
            "SELECT count(*) FILTER (WHERE status = 'sent') = 3 AND count(*) = 3"
            " FROM notifications WHERE case_id = $1", case_id
        )

    await eventually(delivered)
    await _drain(dispatcher)  # nothing of the case is sent again
    mine = [n for n in sender.sent if n.case_id == case_id and n.recipient_kind == "citizen"]
    assert sorted(n.event_kind.value for n in mine) == ["received", "replied"]
    assert Counter(n.key for n in mine).most_common(1)[0][1] == 1
    assert {(n.channel, n.address) for n in mine} == {("email", mail)}
    assert "/my/" in next(n.body for n in mine if n.event_kind is EventKind.RECEIVED)
    assert "已约谈店主" in next(n.body for n in mine if n.event_kind is EventKind.REPLIED)
    # the failed attempts were the same e-mails: a mail server that took one sees it again
    smtp = SmtpSender("localhost", 25, "noreply@12345.example.gov.cn")
    assert {(n.key, n.channel, n.address, smtp.message(n)["Message-ID"]) for n in attempted} == {
        (n.key, n.channel, n.address, smtp.message(n)["Message-ID"]) for n in mine
    }
    assert await pool.fetchval(
        "SELECT bool_and(attempts = 2 AND last_error IS NULL) FROM notifications"
        " WHERE case_id = $1 AND recipient_kind = 'citizen'", case_id
    )

    # a repeat report's intake notice: queued for the e-mail, skipped with no e-mail
    async with pool.acquire() as conn:
        await follow_up.enqueue(conn, case_id, 999_999_998, landline, mail)
        await follow_up.enqueue(conn, case_id, 999_999_999, landline, None)
    by_mail = await _row(pool, f"{follow_up.recipient(case_id, 999_999_998)}:follow-up")
    nowhere = await _row(pool, f"{follow_up.recipient(case_id, 999_999_999)}:follow-up")
    assert (by_mail["status"], nowhere["status"]) == ("pending", "skipped")
    await pool.execute("DELETE FROM notifications WHERE key = $1", by_mail["key"])


async def test_a_repeat_reporter_on_a_landline_gets_their_link_by_email(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    """A second report of the same problem (并单) by a caller on a landline who left an
    e-mail: its intake notice (the repeat report's own link) went nowhere — ``skipped``.
    Now it is e-mailed to that report's address (the claim reads a repeat report's citizen,
    ``<case>/repeat-<id>``), with the link of that report, once."""
    from jiesu.intake.follow_up import FollowUpLinks

    landline = f"010-{uuid.uuid4().int % 10**8:08d}"
    first = await register(api, citizen={"name": "钱七", "phone": landline})
    mail = f"again-{uuid.uuid4().hex[:8]}@example.cn"
    again = await api.post("/api/v1/complaints", headers=OPERATOR, json=complaint(
        citizen={"name": "钱七", "phone": landline, "email": mail}))
    assert again.status_code < 300 and again.json()["merged"], again.text
    case_id = first["case_id"]
    await eventually(lambda: _notices_of(pool, case_id, "citizen", "repeat_reported"))

    sender = RecordingSender()
    dispatcher = OutboxDispatcher(pool, sender, batch=500, render=FollowUpLinks(pool, settings))

    async def settled() -> list:
        await dispatcher.run_once()
        rows = await _notices_of(pool, case_id, "citizen")
        return rows if all(r["status"] in ("sent", "skipped") for r in rows) else []

    rows = {r["event_kind"]: r["status"] for r in await eventually(settled)}
    assert rows == {"received": "skipped", "repeat_reported": "sent"}, rows
    [notice] = [n for n in sender.sent if n.case_id == case_id and n.recipient_kind == "citizen"]
    assert (notice.channel, notice.address) == ("email", mail)
    assert "/my/" in notice.body and "已合并办理" in notice.body


async def test_a_citizen_with_only_an_email_gets_their_link_by_email_once(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    """A citizen who gave an e-mail address and no phone (API intake, and a second report of
    the same problem, 并单): their intake notice — the link to their own page — was queued
    only ``if phone``, so they never got a link at all. Now it is queued for the e-mail
    (recorded as an e-mail, the channel it goes by), and sent once per report, a failed first
    attempt included, each with its own report's link."""
    from jiesu.intake.follow_up import FollowUpLinks

    first_mail = f"only-{uuid.uuid4().hex[:8]}@example.cn"
    first = await register(api, citizen={"name": "孙八", "email": first_mail})
    case_id = first["case_id"]
    again_mail = f"again-{uuid.uuid4().hex[:8]}@example.cn"
    again = await api.post("/api/v1/complaints", headers=OPERATOR, json=complaint(
        address=(await pool.fetchval(
            "SELECT payload -> 'intake' ->> 'address' FROM intakes WHERE case_id = $1", case_id
        )), citizen={"name": "孙八", "email": again_mail}))  # fmt: skip
    assert again.status_code < 300 and again.json()["merged"], again.text

    async def queued() -> list:
        rows = await _notices_of(pool, case_id, "citizen")
        return rows if len(rows) == 2 else []

    rows = await eventually(queued)
    assert sorted((r["event_kind"], r["channel"], r["status"]) for r in rows) == [
        ("received", "email", "pending"), ("repeat_reported", "email", "pending")]

    sender = RecordingSender(fail=lambda n: n.case_id == case_id and n.attempts == 1)
    dispatcher = OutboxDispatcher(pool, sender, batch=500, retry_delay=timedelta(0),
                                  render=FollowUpLinks(pool, settings))

    async def delivered() -> bool:
        await dispatcher.run_once()
        return await pool.fetchval(
            "SELECT bool_and(status = 'sent' AND attempts = 2) FROM notifications"
            " WHERE case_id = $1 AND recipient_kind = 'citizen'", case_id
        )

    await eventually(delivered)
    await _drain(dispatcher)  # nothing of the case is sent again
    mine = [n for n in sender.sent if n.case_id == case_id and n.recipient_kind == "citizen"]
    assert sorted((n.event_kind.value, n.channel, n.address) for n in mine) == [
        ("received", "email", first_mail), ("repeat_reported", "email", again_mail)]
    links = {n.body.rsplit("/my/", 1)[1] for n in mine}
    assert len(links) == 2  # each report its own token



async def test_a_notice_rerouted_to_e_mail_is_recorded_as_an_e_mail(
    api: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    """A landline caller with an e-mail: the reply's notice, written as an SMS by the
    projection, went out by e-mail (outbox.route) but its row still said ``sms`` — so the
    outbox, and whoever counts or reads it, said an SMS was sent to a landline. Now the row
    records the channel it went by, from its first attempt (a failed one) on, and the case
    page's 告知诉求人 line says it was e-mailed; it is still sent once."""
    from helpers import signed_in

    landline = f"010-{uuid.uuid4().int % 10**8:08d}"  # its own: no merge
    mail = f"rerouted-{uuid.uuid4().hex[:8]}@example.cn"
    case_id = (await register(api, citizen={"name": "钱七", "phone": landline,
                                            "email": mail}))["case_id"]  # fmt: skip
    urban = department(URBAN)
    await eventually(lambda: _notices_of(pool, case_id, "department"))  # routed: it sees the case
    await act(api, case_id, "accept", urban)
    await act(api, case_id, "contact", urban)
    await act(api, case_id, "reply", urban, outcome="resolved", text="已约谈店主")
    [written] = await eventually(lambda: _notices_of(pool, case_id, "citizen", "replied"))
    assert written["channel"] == "sms"  # the projection knows no phone: the outbox routes

    sender = RecordingSender(fail=lambda n: n.case_id == case_id and n.attempts == 1)
    dispatcher = OutboxDispatcher(pool, sender, batch=500, retry_delay=timedelta(minutes=5))

    async def attempted() -> asyncpg.Record | None:
        await dispatcher.run_once()
        row = await _row(pool, written["key"])
        return row if row["attempts"] == 1 and row["status"] == "pending" else None

    assert (await eventually(attempted))["channel"] == "email"
    await pool.execute("UPDATE notifications SET not_before = now() WHERE key = $1",
                       written["key"])  # fmt: skip

    async def sent() -> asyncpg.Record | None:
        await dispatcher.run_once()
        row = await _row(pool, written["key"])
        return row if row["status"] == "sent" else None

    assert (await eventually(sent))["channel"] == "email"
    await _drain(dispatcher)
    assert [(n.channel, n.address) for n in sender.sent if n.key == written["key"]] == [
        ("email", mail)]
    operator = await signed_in(api, "operator")
    try:
        page = await operator.get(f"/console/cases/{case_id}")
    finally:
        await operator.aclose()
    told = re.search(r'<dd id="citizen-notices">(.*?)</dd>', page.text, re.S)
    assert told and "答复通知（请评价）：已发送电子邮件" in told[1], page.text

# --- delivery: the dispatcher ---------------------------------------------------------------


class RecordingSender:
    """A fake of the outside world (SMS gateway / mail server) that records what it got."""

    def __init__(self, fail: Callable[[OutboundNotice], bool] = lambda _: False) -> None:
        self.sent: list[OutboundNotice] = []
        self.fail = fail

    async def send(self, notice: OutboundNotice) -> None:
        await asyncio.sleep(0)  # a real send yields to the loop: let other dispatchers run
        if self.fail(notice):
            raise ConnectionError("boom: gateway unavailable")
        self.sent.append(notice)

    def keys(self, case_id: str) -> list[str]:
        return [n.key for n in self.sent if n.case_id == case_id]


async def test_two_dispatchers_deliver_each_notice_exactly_once(pool: asyncpg.Pool) -> None:
    case_id = _synthetic_case_id()
    keys = await _insert(pool, case_id, 200)
    senders = [RecordingSender(), RecordingSender()]
    dispatchers = [OutboxDispatcher(pool, s, batch=15) for s in senders]
    stop = asyncio.Event()
    running = [asyncio.create_task(d.run(stop, poll_interval=0.01)) for d in dispatchers]
    try:
        await eventually(lambda: pool.fetchval(
            "SELECT count(*) = 200 FROM notifications WHERE case_id = $1 AND status = 'sent'",
            case_id,
        ), within=30)
    finally:
        stop.set()
        await asyncio.gather(*running)

    delivered = Counter(senders[0].keys(case_id) + senders[1].keys(case_id))
    assert set(delivered) == set(keys)
    assert max(delivered.values()) == 1, [k for k, n in delivered.items() if n > 1]
    assert all(s.keys(case_id) for s in senders), "both dispatchers should have taken a share"
    assert await pool.fetchval(
        "SELECT bool_and(attempts = 1 AND sent_at IS NOT NULL AND lease_until IS NULL)"
        " FROM notifications WHERE case_id = $1", case_id
    )


async def test_a_failed_send_is_retried_after_its_back_off(pool: asyncpg.Pool) -> None:
    case_id = _synthetic_case_id()
    [key] = await _insert(pool, case_id, 1)
    failing = OutboxDispatcher(
        pool, RecordingSender(fail=lambda n: n.case_id == case_id), batch=500,
        retry_delay=timedelta(minutes=20),
    )
    await _drain(failing)
    row = await _row(pool, key)
    assert row["status"] == "pending" and row["attempts"] == 1
    assert "boom" in row["last_error"] and row["lease_until"] is None
    assert row["not_before"] > datetime.now(UTC) + timedelta(minutes=19)

    sender = RecordingSender()
    working = OutboxDispatcher(pool, sender, batch=500)
    await _drain(working)
    assert sender.keys(case_id) == [], "retried before its back-off ended"

    await pool.execute("UPDATE notifications SET not_before = now() WHERE key = $1", key)
    await _drain(working)
    row = await _row(pool, key)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)
    assert sender.keys(case_id) == [key]


async def test_a_notice_fails_for_good_after_max_attempts(pool: asyncpg.Pool) -> None:
    case_id = _synthetic_case_id()
    [key] = await _insert(pool, case_id, 1)
    dispatcher = OutboxDispatcher(
        pool, RecordingSender(fail=lambda n: n.case_id == case_id), batch=500,
        max_attempts=3, retry_delay=timedelta(0),
    )
    row = await eventually(lambda: _run_and_fetch(dispatcher, pool, key, "failed"))
    assert row["attempts"] == 3 and "boom" in row["last_error"]
    await _drain(dispatcher)
    assert (await _row(pool, key))["attempts"] == 3  # never claimed again


async def test_a_notice_set_aside_is_never_claimed_nor_resent(pool: asyncpg.Pool) -> None:
    """A notice given up on that someone set aside (``jiesu repair notices --set-aside``,
    migration 0045) is never sent: the claim takes pending and expired sending rows only, a
    resend leaves it, and even a row made due again by hand (attempts 0, not_before now, an
    expired lease) is not claimed. Its why and who stay on the row, beside its last error."""
    case_id = _synthetic_case_id()
    [key] = await _insert(pool, case_id, 1)
    dispatcher = OutboxDispatcher(
        pool, RecordingSender(fail=lambda n: n.case_id == case_id), batch=500,
        max_attempts=1, retry_delay=timedelta(0),
    )
    await eventually(lambda: _run_and_fetch(dispatcher, pool, key, "failed"))
    outcome = await repairs.set_aside_notices(
        pool, [key], by="王工", reason="部门邮箱有误，已电话告知"
    )
    assert outcome.set_aside == [key] and outcome.ok
    await pool.execute(  # as due as a row can be, but for its status
        "UPDATE notifications SET attempts = 0, not_before = now() - interval '1 hour',"
        " lease_until = now() - interval '1 hour' WHERE key = $1", key,
    )
    assert await repairs.resend_notices(pool, [key]) == []
    assert await repairs.resend_notices(pool, case_id=case_id) == []
    sender = RecordingSender()
    await _drain(OutboxDispatcher(pool, sender, batch=500))
    assert sender.keys(case_id) == []
    claimed = await pool.fetch(outbox._CLAIM, 10_000, timedelta(seconds=30), 10)
    assert key not in {r["key"] for r in claimed}
    await pool.execute(outbox._HAND_BACK, [r["id"] for r in claimed],
                       [r["attempts"] for r in claimed])  # fmt: skip
    row = await _row(pool, key)
    assert row["status"] == "set_aside" and "boom" in row["last_error"]
    assert (row["set_aside_by"], row["set_aside_reason"]) == ("王工", "部门邮箱有误，已电话告知")
    assert row["set_aside_at"] is not None and row["sent_at"] is None
    with pytest.raises(asyncpg.CheckViolationError):  # no set-aside row without who and why
        await pool.execute("UPDATE notifications SET set_aside_reason = ' ' WHERE key = $1",
                           key)  # fmt: skip


async def test_the_case_page_says_a_set_aside_notice_in_words(pool: asyncpg.Pool) -> None:
    """告知诉求人 on the case page said a set-aside notice (migration 0045) by its raw status,
    ``set_aside``; now in words, with no call back asked for (someone decided it, with a
    reason, often after phoning), while a failed one still asks for a call."""
    from api.console.cases import citizen_notices
    from api.console.notice_words import NOTICE_SAID

    case_id = _synthetic_case_id()
    await pool.executemany(
        "INSERT INTO notifications (key, case_id, event_seq, event_kind, recipient_kind,"
        " recipient_id, channel, subject, body, status, set_aside_at, set_aside_by,"
        " set_aside_reason) VALUES ($1, $2, $3, 'replied', 'citizen', $2, 'sms', 's', 'b', $4,"
        " $5, $6, $7)",
        [(f"{case_id}:2:citizen:{case_id}", case_id, 2, "failed", None, None, None),
         (f"{case_id}:3:citizen:{case_id}", case_id, 3, "set_aside", datetime.now(UTC),
          "王工", "已电话告知诉求人")],
    )  # fmt: skip
    said = await citizen_notices(pool, case_id)
    assert [(s, call) for _, s, call in said] == [
        (NOTICE_SAID["failed"], True), (NOTICE_SAID["set_aside"], False)]
    assert "搁置" in NOTICE_SAID["set_aside"] and "set_aside" not in said[1][1]


async def test_an_expired_lease_is_claimed_again_a_running_one_is_not(
    pool: asyncpg.Pool,
) -> None:
    case_id = _synthetic_case_id()
    [expired] = await _insert(pool, case_id, 1, status="sending", attempts=1,
                              lease=timedelta(minutes=-1))
    [leased] = await _insert(pool, f"{case_id}-L", 1, status="sending", attempts=1,
                             lease=timedelta(hours=1))
    [last] = await _insert(pool, f"{case_id}-X", 1, status="sending", attempts=10,
                           lease=timedelta(minutes=-1))
    sender = RecordingSender()
    await _drain(OutboxDispatcher(pool, sender, batch=500, max_attempts=10))

    assert sender.keys(case_id) == [expired]  # its dispatcher died: delivered again
    assert (await _row(pool, expired))["status"] == "sent"
    assert (await _row(pool, expired))["attempts"] == 2
    assert sender.keys(f"{case_id}-L") == []  # another dispatcher is still on it
    assert (await _row(pool, leased))["status"] == "sending"
    assert sender.keys(f"{case_id}-X") == []  # it died on the last attempt: given up
    row = await _row(pool, last)
    assert row["status"] == "failed" and "lease expired" in row["last_error"]


async def test_a_claim_whose_lease_ran_out_is_handed_back_unsent(pool: asyncpg.Pool) -> None:
    case_id = _synthetic_case_id()
    [key] = await _insert(pool, case_id, 1)
    sender = RecordingSender()
    await OutboxDispatcher(pool, sender, batch=100_000, lease=timedelta(0)).run_once()
    assert sender.sent == []
    row = await _row(pool, key)
    assert (row["status"], row["attempts"]) == ("pending", 0)


async def test_a_crashed_dispatchers_claim_is_retaken_within_the_lease(pool: asyncpg.Pool) -> None:
    # The default lease is what a crashed worker costs: it must stay well under a minute.
    assert OutboxDispatcher(pool, RecordingSender()).lease <= timedelta(seconds=30)
    case_id = _synthetic_case_id()
    keys = await _insert(pool, case_id, 3)
    lease = timedelta(seconds=1)
    stuck = HangingSender()
    crashed = asyncio.create_task(OutboxDispatcher(pool, stuck, batch=500, lease=lease).run_once())
    await eventually(lambda: pool.fetchval(
        "SELECT count(*) = 3 FROM notifications WHERE case_id = $1 AND status = 'sending'",
        case_id,
    ))
    await stuck.started.wait()
    crashed.cancel()  # killed: no more heartbeats, nothing handed back
    with pytest.raises(asyncio.CancelledError):
        await crashed
    abandoned = asyncio.get_running_loop().time()

    sender = RecordingSender()
    rescuer = OutboxDispatcher(pool, sender, batch=500, lease=lease)
    await eventually(lambda: _drain_and_fetch(rescuer, sender, case_id, len(keys)), within=10)
    took = asyncio.get_running_loop().time() - abandoned
    assert sorted(sender.keys(case_id)) == sorted(keys)
    assert took <= lease.total_seconds() + 2, f"retaken after {took:.1f}s"
    assert await pool.fetchval(
        "SELECT bool_and(status = 'sent' AND attempts = 2) FROM notifications WHERE case_id = $1",
        case_id,
    )


async def test_a_live_dispatcher_keeps_its_claim_past_the_lease(pool: asyncpg.Pool) -> None:
    """The notice in flight is not taken over however long its send takes: the heartbeat
    renews it. The notices waiting behind it are not renewed: after one lease another
    dispatcher takes them (and the owner skips them), each is still sent once."""
    case_id = _synthetic_case_id()
    keys = await _insert(pool, case_id, 3)
    lease = timedelta(seconds=1)
    slow = HangingSender()
    owner = OutboxDispatcher(pool, slow, batch=500, lease=lease)
    sending = asyncio.create_task(owner.run_once())
    await slow.started.wait()
    first_lease = await pool.fetchval(
        "SELECT min(lease_until) FROM notifications WHERE case_id = $1", case_id
    )
    other = RecordingSender()
    rival = OutboxDispatcher(pool, other, batch=500, lease=lease)

    async def rival_tried_after_the_first_lease() -> bool:
        await rival.run_once()
        return await pool.fetchval("SELECT now() > $1::timestamptz + interval '1 second'",
                                   first_lease)

    await eventually(rival_tried_after_the_first_lease, within=10)
    slow.release.set()
    await sending
    in_flight, *waiting = keys  # sent in id order
    assert slow.keys(case_id) == [in_flight], "a live dispatcher's notice was taken over"
    assert sorted(other.keys(case_id)) == sorted(waiting), "waiting notices were held back"
    assert [tuple(r) for r in await pool.fetch(
        "SELECT status, attempts FROM notifications WHERE case_id = $1 ORDER BY id", case_id,
    )] == [("sent", 1), ("sent", 2), ("sent", 2)]


class SlowEmail(RecordingSender):
    """An SMTP server that accepts the connection and then never answers."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()

    async def send(self, notice: OutboundNotice) -> None:
        if notice.channel == "email":
            self.started.set()
            await asyncio.sleep(3600)
        await super().send(notice)


async def test_one_hanging_channel_does_not_hold_other_notices_hostage(
    pool: asyncpg.Pool,
) -> None:
    """The mail server hangs (each send is cut at send_timeout); the SMS gateway works, and a
    second, healthy dispatcher is running. Neither the SMS claimed in the same batch behind
    the mails nor the other mails wait for every mail claimed before them: after the first
    timeout the mails go back to the outbox and the SMS is sent."""
    case_id = _synthetic_case_id()
    rows = [(f"{case_id}:{i}:department:test", "email") for i in range(1, 20)]
    sms = f"{case_id}:20:department:test-sms"
    rows.append((sms, "sms"))
    await pool.executemany(
        "INSERT INTO notifications (key, case_id, event_seq, event_kind, recipient_kind,"
        " recipient_id, channel, subject, body, attempts) VALUES ($1, $2, 1, 'routed',"
        " 'department', 'test', $3, 's', 'b', 10)",  # 10: past the session worker's own
        [(k, case_id, ch) for k, ch in rows],        # dispatcher (max_attempts 10), ours only
    )
    slow = SlowEmail()
    hanging = OutboxDispatcher(pool, slow, batch=500, send_timeout=timedelta(seconds=1),
                               max_attempts=20)
    owner = asyncio.create_task(hanging.run_once())
    await asyncio.wait_for(slow.started.wait(), 10)
    assert await pool.fetchval(
        "SELECT count(*) FROM notifications WHERE case_id = $1 AND status = 'sending'",
        case_id) == 20
    healthy = OutboxDispatcher(pool, RecordingSender(), batch=500, max_attempts=20)
    stop = asyncio.Event()
    rescuer = asyncio.create_task(healthy.run(stop, poll_interval=0.05))
    began = asyncio.get_running_loop().time()
    try:
        await eventually(lambda: pool.fetchval(
            "SELECT status = 'sent' FROM notifications WHERE key = $1", sms), within=60)
        took = asyncio.get_running_loop().time() - began
        # one send_timeout (1 s), not the 19 of the mails before it (in whatever order)
        assert took < 5, f"the SMS waited {took:.1f} s behind hanging mails (1 s each)"
        # every mail but the one that timed out is sent, whichever came first in the batch
        await eventually(lambda: pool.fetchval(
            "SELECT count(*) = 19 FROM notifications WHERE case_id = $1 AND status = 'sent'",
            case_id), within=5)
        [timed_out] = await pool.fetch(
            "SELECT channel, status, last_error FROM notifications"
            " WHERE case_id = $1 AND status <> 'sent'", case_id)
        assert (timed_out["channel"], timed_out["status"]) == ("email", "pending")
        assert timed_out["last_error"].startswith("TimeoutError")
    finally:
        stop.set()
        owner.cancel()
        await asyncio.gather(owner, rescuer, return_exceptions=True)


class HangingSender(RecordingSender):
    """A send that does not return until ``release`` is set (a slow gateway, or a dispatcher
    that is about to be killed)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def send(self, notice: OutboundNotice) -> None:
        self.started.set()
        await self.release.wait()
        await super().send(notice)


async def _drain_and_fetch(
    dispatcher: OutboxDispatcher, sender: RecordingSender, case_id: str, count: int
) -> bool:
    await _drain(dispatcher)
    return len(sender.keys(case_id)) == count


# --- senders --------------------------------------------------------------------------------


def _outbound(key: str = "JS1:2:department:water", **overrides: object) -> OutboundNotice:
    values: dict[str, object] = {
        "id": 1, "attempts": 1, "key": key, "case_id": "JS1", "event_seq": 2,
        "event_kind": "routed", "recipient_kind": "department", "recipient_id": "water",
        "channel": "email", "subject": "【新工单】JS1「停水」", "body": "请于 10:30 前签收。",
        "address": "water", "recipient_name": "县水务局",
    }
    values.update(overrides)
    return OutboundNotice.model_validate(values)


async def test_log_sender_appends_one_json_line_per_notice(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "notifications.log"
    sender = LogSender(path)
    await sender.send(_outbound("a"))
    await sender.send(_outbound("b", channel="sms", address="13800001234"))
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [(x["key"], x["address"]) for x in lines] == [("a", "water"), ("b", "13800001234")]
    assert lines[0]["subject"] == "【新工单】JS1「停水」"


def test_sender_from_env() -> None:
    default = sender_from_env({})
    assert isinstance(default, LogSender)
    assert default.path == Path(".data/notifications.log")
    smtp = sender_from_env({
        "JIESU_NOTIFY_SENDER": "smtp", "JIESU_SMTP_HOST": "mail.test", "JIESU_SMTP_PORT": "2525",
        "JIESU_SMTP_FROM": "12345@qinghe.test", "JIESU_NOTIFY_LOG": "/tmp/x.log",
    })
    assert isinstance(smtp, ChannelSender)
    assert isinstance(smtp.by_channel["email"], SmtpSender)
    assert smtp.by_channel["email"].port == 2525
    assert isinstance(smtp.default, LogSender)  # SMS: no gateway yet
    with pytest.raises(ValueError, match="JIESU_SMTP_HOST"):
        sender_from_env({"JIESU_NOTIFY_SENDER": "smtp"})
    with pytest.raises(ValueError, match="log' or 'smtp"):
        sender_from_env({"JIESU_NOTIFY_SENDER": "pigeon"})


async def test_smtp_sender_delivers_an_email() -> None:
    server = FakeSmtpServer()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        sender = SmtpSender("127.0.0.1", port, "12345@qinghe.test",
                            recipient_domain="notify.qinghe.test", timeout=5)
        await sender.send(_outbound())
        await sender.send(_outbound("k2", address="chief@qinghe.test"))
    finally:
        listener.close()
        await listener.wait_closed()

    first, second = (email.message_from_bytes(m, policy=policy.default) for m in server.messages)
    assert first["To"] == "water@notify.qinghe.test"
    assert first["From"] == "12345@qinghe.test"
    assert first["Subject"] == "【新工单】JS1「停水」"
    assert first["X-Jiesu-Notice"] == "JS1:2:department:water"
    assert "县水务局" in first.get_content() and "请于 10:30 前签收" in first.get_content()
    assert second["To"] == "chief@qinghe.test"
    assert first["Message-ID"] != second["Message-ID"]
    assert sender.message(_outbound())["Message-ID"] == first["Message-ID"]  # stable per key
    with pytest.raises(ValueError, match="no email address"):
        SmtpSender("127.0.0.1", port, "12345@qinghe.test").recipient(_outbound())


class FakeSmtpServer:
    """Just enough SMTP for smtplib: records each message's DATA."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 fake ESMTP\r\n")
        data: list[bytes] | None = None
        while line := await reader.readline():
            if data is not None:
                if line == b".\r\n":
                    self.messages.append(b"".join(data))
                    data = None
                    writer.write(b"250 queued\r\n")
                else:
                    data.append(line[1:] if line.startswith(b"..") else line)
            else:
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-fake\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    data = []
                    writer.write(b"354 go on\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()


# --- helpers --------------------------------------------------------------------------------


def _synthetic_case_id() -> str:
    return f"TEST-OUTBOX-{uuid.uuid4().hex[:10]}"


async def _insert(
    pool: asyncpg.Pool,
    case_id: str,
    count: int,
    *,
    status: str = "pending",
    attempts: int = 0,
    lease: timedelta | None = None,
) -> list[str]:
    keys = [f"{case_id}:{seq}:department:test-outbox" for seq in range(1, count + 1)]
    await pool.executemany(
        "INSERT INTO notifications (key, case_id, event_seq, event_kind, recipient_kind,"
        " recipient_id, channel, subject, body, status, attempts, lease_until)"
        " VALUES ($1, $2, $3, 'routed', 'department', 'test-outbox', 'email', 'test',"
        " 'synthetic notice', $4, $5, now() + $6::interval)",
        [(key, case_id, seq, status, attempts, lease) for seq, key in enumerate(keys, 1)],
    )
    return keys


async def _row(pool: asyncpg.Pool, key: str) -> asyncpg.Record:
    return await pool.fetchrow("SELECT * FROM notifications WHERE key = $1", key)


async def _drain(dispatcher: OutboxDispatcher) -> None:
    """Run until a claim comes back short: everything due now has been tried."""
    for _ in range(1000):
        if await dispatcher.run_once() < dispatcher.batch:
            return
    raise AssertionError("the outbox never ran dry")


async def _run_and_fetch(
    dispatcher: OutboxDispatcher, pool: asyncpg.Pool, key: str, status: str
) -> asyncpg.Record | None:
    await dispatcher.run_once()
    row = await _row(pool, key)
    return row if row["status"] == status else None


async def _notices_of(
    pool: asyncpg.Pool, case_id: str, recipient_kind: str, event_kind: str | None = None
) -> list:
    return await pool.fetch(
        "SELECT * FROM notifications WHERE case_id = $1 AND recipient_kind = $2"
        " AND ($3::text IS NULL OR event_kind = $3) ORDER BY id",
        case_id, recipient_kind, event_kind,
    )


def test_a_citizens_sms_is_in_chinese_only() -> None:
    """Walking the demo as a citizen: the reply SMS ended with "Your case … has been
    answered; please rate the result." and the extension's with "Your case … will be answered
    by …" — English to the county's citizens, and a longer (multi-part) SMS. The intake SMS
    never had it. Now every notice to a citizen is in Chinese (the case number aside)."""
    state = _state(status=Status.REPLIED)
    new = datetime(2025, 11, 25, 9, 0, tzinfo=UTC)
    events = [
        _event(8, EventKind.EXTENSION_DECIDED, approved=True, new_deadline=new.isoformat()),
        _event(9, EventKind.REPLIED, URBAN_ACTOR, outcome="resolved", text="已责令整改"),
    ]
    to_citizen = [n for n in notices_for(state, events) if n.recipient_kind == "citizen"]
    assert len(to_citizen) == 2
    for notice in to_citizen:
        body = notice.body.replace(state.case_id, "")
        assert not re.search(r"[A-Za-z]{2,}", body), body


@pytest.mark.parametrize("typed", ["wang,li@163.com", "wang;li@163.com", "a@b.cn,c@d.cn"])
def test_an_e_mail_address_that_is_several_goes_to_none_of_them(typed: str) -> None:
    """A citizen's e-mail as intake takes it (jiesu.case.domain.Email) may hold a comma — a
    slip of the key beside the full stop, "wang,li@163.com" for "wang.li@163.com" — and the
    To header made of it is a list: smtplib sent the citizen's link, whose token rates and
    withdraws the case, to "li@163.com", a stranger, and to the relay's local user "wang".
    One notice goes to one mailbox: such an address is refused (a failed attempt, listed by
    the doctor as notification_failed), never split."""
    sender = SmtpSender("localhost", 25, "12345@jiesu.test")
    notice = _outbound(recipient_kind="citizen", recipient_id="JS1", address=typed)
    with pytest.raises(ValueError, match="not one e-mail address"):
        sender.message(notice)
