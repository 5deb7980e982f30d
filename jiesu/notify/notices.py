"""Who is told what (通知规则): the one place that turns case events into notices.

Pure code: ``notices_for(state, events)`` maps the events of one projection batch to the
notices they cause. The projection activity stores them in the ``notifications`` outbox in the
same transaction as the events; ``jiesu.notify.outbox`` delivers them.

Every notice has a deterministic idempotency ``key`` (case, event seq, recipient), so a retried
projection stores each notice once. Rules must never raise on odd event data (a failing rule
would stall the case's read model): they read ``event.data`` with defaults.

To add a rule, write a function ``(state, event, display_tz) -> list[Notice]`` and register it in
``RULES``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from jiesu.case.domain import (
    CENTRE_ID,
    CaseEvent,
    CaseState,
    DeadlineKind,
    EscalationLevel,
    EscalationTrigger,
    EventKind,
    ReplyOutcome,
    Urgency,
)
from jiesu.config import get_settings

RecipientKind = Literal["department", "citizen", "supervisor"]
NoticeChannel = Literal["sms", "email"]

SUPERVISORS = "supervisors"
"""recipient_id of notices to the hotline centre's supervisors (督办人员)."""

CHANNELS: dict[RecipientKind, NoticeChannel] = {
    "department": "email",
    "supervisor": "email",
    "citizen": "sms",
}
"""How each kind of recipient is reached. Staff get email; citizens get an SMS."""

RATING_PROMPT = "1 满意 2 基本满意 3 不满意"
"""The rating prompt of the reply SMS; an SMS answering it rates the case
(jiesu/channels/sms.py reads the answer)."""

REPLY_EXCERPT = 200
"""Characters of a department's reply quoted in the citizen's SMS."""


class Notice(BaseModel):
    """One message to one recipient, caused by one case event."""

    model_config = ConfigDict(frozen=True)

    key: str
    case_id: str
    event_seq: int
    event_kind: EventKind
    recipient_kind: RecipientKind
    recipient_id: str  # department id, case id (citizen) or SUPERVISORS
    channel: NoticeChannel
    subject: str
    body: str


Rule = Callable[[CaseState, CaseEvent, tzinfo], list[Notice]]


def notices_for(
    state: CaseState, events: list[CaseEvent], display_tz: tzinfo | None = None
) -> list[Notice]:
    """The notices caused by ``events`` (in event order, each key once). Times in their
    texts are local to ``display_tz``: by default the configured time zone (JIESU_TIMEZONE,
    ``Settings.timezone``), the hotline's, not UTC."""
    tz = display_tz or ZoneInfo(get_settings().timezone)
    notices: dict[str, Notice] = {}
    for event in events:
        rule = RULES.get(event.kind)
        for notice in rule(state, event, tz) if rule else []:
            notices.setdefault(notice.key, notice)
    return list(notices.values())


# --- building blocks ------------------------------------------------------------------------

_LEVEL_NAMES = {
    EscalationLevel.REMIND: "提醒",
    EscalationLevel.URGE: "催办",
    EscalationLevel.SUPERVISE: "督办",
    EscalationLevel.JOINT_HANDLING: "会办",
    EscalationLevel.ACCOUNTABILITY: "问责",
}

_TRIGGER_NAMES = {
    EscalationTrigger.ACCEPT_BREACHED: "超时未签收",
    EscalationTrigger.CONTACT_BREACHED: "超时未联系诉求人",
    EscalationTrigger.FINISH_BREACHED: "超时未办结",
    EscalationTrigger.REPEAT_REPORTS: "群众重复反映",
    EscalationTrigger.DISSATISFACTION: "群众多次不满意",
    EscalationTrigger.REASSIGNMENT_LIMIT: "多次退单",
    EscalationTrigger.SUPERVISOR: "督办人员决定",
    EscalationTrigger.REPEATED_ALTHOUGH_REPLIED: "已答复仍被重复反映",
}

_DEADLINE_NAMES = {
    DeadlineKind.ACCEPT: "签收",
    DeadlineKind.CONTACT: "联系诉求人",
    DeadlineKind.FINISH: "办结",
}


def _notice(
    state: CaseState,
    event: CaseEvent,
    recipient_kind: RecipientKind,
    recipient_id: str,
    subject: str,
    body: str,
) -> Notice:
    return Notice(
        key=f"{state.case_id}:{event.seq}:{recipient_kind}:{recipient_id}",
        case_id=state.case_id,
        event_seq=event.seq,
        event_kind=event.kind,
        recipient_kind=recipient_kind,
        recipient_id=recipient_id,
        channel=CHANNELS[recipient_kind],
        subject=subject,
        body=body,
    )


def _time(value: Any, tz: tzinfo) -> str:
    """A deadline for people: local time, minutes. Unparseable values are shown as given."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(tz)
        return value.strftime("%Y-%m-%d %H:%M")
    return "—"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _case_label(state: CaseState) -> str:
    return f"{state.case_id}「{state.title}」"


def _department(event: CaseEvent) -> str | None:
    """The department an event concerns: its data, else the acting department."""
    department_id = event.data.get("department_id") or event.actor.department_id
    return str(department_id) if department_id else None


def _to_departments(department_ids: list[str | None]) -> list[str]:
    """Real departments, each once; the centre is reached through its supervisors."""
    seen: dict[str, None] = {}
    for department_id in department_ids:
        if department_id and department_id != CENTRE_ID:
            seen.setdefault(department_id, None)
    return list(seen)


def _enum(enum: Any, value: Any) -> Any:
    try:
        return enum(value)
    except (ValueError, TypeError):
        return None


# --- rules ----------------------------------------------------------------------------------


def _assigned(state: CaseState, event: CaseEvent, tz: tzinfo) -> list[Notice]:
    """派单 / 人工派单 / 改派: the department gets the case and its accept deadline."""
    department_id = _department(event)
    if department_id is None or department_id == CENTRE_ID:
        return []
    accept_by = event.data.get("accept_deadline")
    if accept_by is None and state.deadlines and state.department_id == department_id:
        accept_by = state.deadlines.accept
    urgent = "【紧急】" if state.urgency is Urgency.URGENT else ""
    again = "（改派）" if event.kind is EventKind.REASSIGNED else ""
    deadline = f"请于 {_time(accept_by, tz)} 前签收" if accept_by else "请及时签收"
    return [
        _notice(
            state, event, "department", department_id,
            f"{urgent}新工单{again} {_case_label(state)}",
            f"{event.data.get('department_name') or department_id}：您单位收到工单"
            f" {_case_label(state)}，地址：{state.address or '—'}。{deadline}。\n"
            f"New case {state.case_id} assigned to you; accept by {_time(accept_by, tz)}.",
        )
    ]


def _breached(state: CaseState, event: CaseEvent, tz: tzinfo) -> list[Notice]:
    """超时: the department is reminded, the supervisors learn of it."""
    kind = _enum(DeadlineKind, event.data.get("deadline_kind"))
    what = _DEADLINE_NAMES.get(kind, str(event.data.get("deadline_kind", "")))
    deadline = _time(event.data.get("deadline"), tz)
    department_id = _department(event)
    subject = f"【超时】{_case_label(state)} 超过{what}时限"
    english = f"Case {state.case_id}: the {event.data.get('deadline_kind')} deadline passed."
    notices = [
        _notice(
            state, event, "department", d, subject,
            f"工单 {_case_label(state)} 已超过{what}时限（{deadline}），请立即办理。\n{english}",
        )
        for d in _to_departments([department_id])
    ]
    notices.append(
        _notice(
            state, event, "supervisor", SUPERVISORS, subject,
            f"工单 {_case_label(state)} 承办单位 {department_id or '—'} 已超过{what}时限"
            f"（{deadline}）。\n{english}",
        )
    )
    return notices


def _escalated(state: CaseState, event: CaseEvent, tz: tzinfo) -> list[Notice]:
    """督办阶梯: every step tells the department; from 督办 on the supervisors too."""
    level = _enum(EscalationLevel, event.data.get("level"))
    name = _LEVEL_NAMES.get(level, str(event.data.get("level_name", "督办")))
    trigger = _enum(EscalationTrigger, event.data.get("trigger"))
    why = _TRIGGER_NAMES.get(trigger, str(event.data.get("trigger") or "—"))
    department_id = _department(event)
    subject = f"【{name}】{_case_label(state)}"
    english = (
        f"Case {state.case_id} escalated to level {event.data.get('level')} "
        f"({event.data.get('level_name', '')})."
    )
    notices = [
        _notice(
            state, event, "department", d, subject,
            f"工单 {_case_label(state)} 因{why}进入{name}，请立即办理并答复。\n{english}",
        )
        for d in _to_departments([department_id])
    ]
    if level is not None and level >= EscalationLevel.SUPERVISE:
        notices.append(
            _notice(
                state, event, "supervisor", SUPERVISORS, subject,
                f"工单 {_case_label(state)}（承办单位 {department_id or '—'}）因{why}"
                f"进入{name}。\n{english}",
            )
        )
    return notices


def _extension_decided(state: CaseState, event: CaseEvent, tz: tzinfo) -> list[Notice]:
    """延期: the citizen learns an approved new date; the department learns either way."""
    approved = bool(event.data.get("approved"))
    new_deadline = _time(event.data.get("new_deadline"), tz)
    note = str(event.data.get("note") or "")
    notices: list[Notice] = []
    if approved:
        notices.append(
            _notice(
                state, event, "citizen", state.case_id, f"工单 {state.case_id} 延期办理",
                f"您反映的{_case_label(state)}，承办单位申请延期已获批准，"
                f"将于 {new_deadline} 前办结答复。",
            )
        )
    verdict = f"已批准，新办结时限 {new_deadline}" if approved else "未获批准，请按原时限办结"
    subject = f"【延期{'批准' if approved else '驳回'}】{_case_label(state)}"
    english = (
        f"Extension approved, new deadline {new_deadline}."
        if approved
        else "Extension rejected; the original deadline stands."
    )
    notices += [
        _notice(
            state, event, "department", d, subject,
            f"工单 {_case_label(state)} 的延期申请{verdict}。{note}\n{english}",
        )
        for d in _to_departments([state.department_id])
    ]
    return notices


def _replied(state: CaseState, event: CaseEvent, tz: tzinfo) -> list[Notice]:
    """办结答复: the citizen reads the reply and is asked to rate it. A citizen's SMS is in
    Chinese only, like the intake SMS (no English line: it reached a county's citizens and
    made every reply SMS a message of several parts)."""
    outcome = _enum(ReplyOutcome, event.data.get("outcome"))
    result = "已办结" if outcome is ReplyOutcome.RESOLVED else "已答复"
    text = _clip(str(event.data.get("text") or ""), REPLY_EXCERPT)
    return [
        _notice(
            state, event, "citizen", state.case_id, f"工单 {state.case_id} {result}",
            f"您反映的{_case_label(state)}{result}：{text}\n"
            f"请对办理结果进行评价，回复：{RATING_PROMPT}。",
        )
    ]


def _co_handlers_added(state: CaseState, event: CaseEvent, tz: tzinfo) -> list[Notice]:
    """会办: each co-handling (协办) department is asked to contribute."""
    lead = state.assignment.department_name if state.assignment else "—"
    ids = event.data.get("department_ids") or []
    due = event.data.get("due")
    by = f"请于 {_time(due, tz)} 前提交协办意见" if due else "请及时提交协办意见"
    return [
        _notice(
            state, event, "department", d, f"【协办】{_case_label(state)}",
            f"工单 {_case_label(state)} 需要您单位协办，主办单位：{lead}。{by}。\n"
            f"You are asked to co-handle case {state.case_id}.",
        )
        for d in _to_departments([str(i) for i in ids])
    ]


def _for_review(state: CaseState, event: CaseEvent, tz: tzinfo) -> list[Notice]:
    """退单 / 重办: the centre reviews and reassigns."""
    reason = str(event.data.get("reason") or "—")
    if event.kind is EventKind.RETURNED:
        who = _department(event) or "—"
        subject = f"【退单】{_case_label(state)}"
        body = f"{who} 退回工单 {_case_label(state)}，理由：{reason}。请审核并改派。"
        if event.data.get("awaiting_approval"):
            due = event.data.get("decision_due")
            by = f"请于 {_time(due, tz)} 前审核（逾期视为同意）" if due else "请审核"
            body = f"{who} 申请退回工单 {_case_label(state)}，理由：{reason}。{by}：同意或驳回。"
    else:
        subject = f"【重办】{_case_label(state)}"
        body = f"工单 {_case_label(state)} 群众评价不满意，进入重办：{reason}。"
    english = f"Case {state.case_id}: {event.kind.value}, review needed."
    return [_notice(state, event, "supervisor", SUPERVISORS, subject, f"{body}\n{english}")]


def _extension_requested(state: CaseState, event: CaseEvent, tz: tzinfo) -> list[Notice]:
    """延期申请: the deciding supervisors learn the request and when they must decide."""
    due = event.data.get("decision_due")
    by = f"请于 {_time(due, tz)} 前审批（逾期视为同意）" if due else "请及时审批"
    return [
        _notice(
            state, event, "supervisor", SUPERVISORS, f"【延期申请】{_case_label(state)}",
            f"{_department(event) or '—'} 申请延期办理工单 {_case_label(state)}，"
            f"承诺办结时间 {_time(event.data.get('promised_finish'), tz)}。"
            f"理由：{event.data.get('reasons') or '—'}；措施：{event.data.get('measures') or '—'}。"
            f"{by}。\nExtension requested for case {state.case_id}; decide by "
            f"{_time(due, tz)}.",
        )
    ]


def _return_decided(state: CaseState, event: CaseEvent, tz: tzinfo) -> list[Notice]:
    """退单审核: the returning department learns whether the case leaves it."""
    upheld = event.kind is EventKind.RETURN_UPHELD
    reason = event.data.get("reason") or "—"
    verdict = "同意退单，工单将改派" if upheld else f"不同意退单，请继续办理。理由：{reason}"
    subject = f"【退单{'通过' if upheld else '驳回'}】{_case_label(state)}"
    return [
        _notice(
            state, event, "department", d, subject,
            f"工单 {_case_label(state)}：{verdict}。\nReturn of case {state.case_id} "
            f"{'upheld' if upheld else 'rejected'}.",
        )
        for d in _to_departments([_department(event)])
    ]


def _taken_away(state: CaseState, event: CaseEvent, tz: tzinfo) -> list[Notice]:
    """二次交办: the department the case is taken from learns why."""
    return [
        _notice(
            state, event, "department", d, f"【二次交办】{_case_label(state)}",
            f"工单 {_case_label(state)} 已由督办人员收回并重新交办，理由："
            f"{event.data.get('reason') or '—'}。超时记录保留在您单位。\n"
            f"Case {state.case_id} was taken away from you and assigned again.",
        )
        for d in _to_departments([_department(event)])
    ]


def _accountability(state: CaseState, event: CaseEvent, tz: tzinfo) -> list[Notice]:
    """问责: the unit and the supervisors get the record."""
    department_id = _department(event)
    persons = "、".join(str(p) for p in event.data.get("persons") or []) or "待定"
    body = (
        f"工单 {_case_label(state)} 问责：单位 {department_id or '—'}，责任人 {persons}，"
        f"理由：{event.data.get('reason') or '—'}，决定：{event.data.get('decision') or '待定'}。"
        f"\nAccountability record for case {state.case_id}."
    )
    subject = f"【问责】{_case_label(state)}"
    return [
        *(_notice(state, event, "department", d, subject, body)
          for d in _to_departments([department_id])),
        _notice(state, event, "supervisor", SUPERVISORS, subject, body),
    ]


def _contribution_overdue(state: CaseState, event: CaseEvent, tz: tzinfo) -> list[Notice]:
    """会办: a co-handler missed its contribution deadline; it and the supervisors are told."""
    department_id = _department(event)
    subject = f"【协办超时】{_case_label(state)}"
    body = (
        f"{department_id or '—'} 未在 {_time(event.data.get('due'), tz)} 前提交工单 "
        f"{_case_label(state)} 的协办意见。\nCo-handler {department_id} missed its "
        f"contribution deadline on case {state.case_id}."
    )
    return [
        *(_notice(state, event, "department", d, subject, body)
          for d in _to_departments([department_id])),
        _notice(state, event, "supervisor", SUPERVISORS, subject, body),
    ]


RULES: dict[EventKind, Rule] = {
    EventKind.CONTRIBUTION_OVERDUE: _contribution_overdue,
    EventKind.EXTENSION_REQUESTED: _extension_requested,
    EventKind.RETURN_UPHELD: _return_decided,
    EventKind.RETURN_REJECTED: _return_decided,
    EventKind.SECOND_ASSIGNMENT_ORDERED: _taken_away,
    EventKind.ACCOUNTABILITY_RECORDED: _accountability,
    EventKind.ROUTED: _assigned,
    EventKind.DISPATCHED: _assigned,
    EventKind.REASSIGNED: _assigned,
    EventKind.DEADLINE_BREACHED: _breached,
    EventKind.ESCALATED: _escalated,
    EventKind.EXTENSION_DECIDED: _extension_decided,
    EventKind.REPLIED: _replied,
    EventKind.CO_HANDLERS_ADDED: _co_handlers_added,
    EventKind.RETURNED: _for_review,
    EventKind.REHANDLE_STARTED: _for_review,
    # EventKind.CLOSED: nothing yet.
}
"""Event kind → rule. Kinds not listed cause no notice."""
