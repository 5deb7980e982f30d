"""办理经过 in Chinese: each recorded case event (:class:`EventKind`) as clerks, supervisors and
citizens read it, with the glossary's terms, the departments' names and the hotline's local
time.

The auditor's timeline keeps its own words (jiesu.audit.timeline ``event_summary``: English,
UTC, the recorded formats of the exports); this is the console's. Every kind has its entry
here (tests/test_console.py checks them all): a kind added without one would show the
person a bare code.

The events carry what the workflow recorded at the time, some of it in the system's own
English (a ladder's accountability reason, an undecided request's note): those few sentences
are said in Chinese here (:data:`SYSTEM_NOTES`), anything else typed by a person is shown as
typed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from api.routers.self_service import SELF_SERVICE_ACTOR
from jiesu.case import glossary
from jiesu.case.domain import (
    CASE_CITIZEN_NAME,
    CENTRE_ID,
    UNKNOWN_SENDER,
    Channel,
    DeadlineKind,
    EscalationLevel,
    EscalationTrigger,
    EventKind,
    Rating,
    ReassignReason,
    ReplyOutcome,
    Resolution,
    Role,
    SupervisionForm,
    Urgency,
)
from jiesu.channels.mail import MAIL_ACTOR
from jiesu.channels.sms import SMS_ACTOR

Data = dict[str, Any]
When = Callable[[datetime | str | None], str]

CENTRE = "12345热线中心"
ROUTED_BY_CATALOGUE = "按派单目录自动派至"

# Sentences the workflow records in its own English (workflows/complaint.py, ladder.py).
SYSTEM_NOTES: dict[str, str] = {
    "approved: no decision by the deadline (逾期未审视为同意)": "逾期未审，视为同意",
    "upheld: no decision by the deadline (逾期未审视为同意)": "逾期未审，视为同意",
    "reassignment limit reached": "改派次数已达上限，由中心人工派单",
    "given on the call": "来电时当场评价",
}
_LADDER_REASON = re.compile(r"the supervision ladder reached accountability \((\w+)\)")


class Words:
    """What the summaries need besides an event: departments' names, local times and the
    staff's display names (by login)."""

    def __init__(
        self, names: Mapping[str, str], when: When, people: Mapping[str, str] | None = None
    ) -> None:
        self.names = names
        self.when = when
        self.people = people or {}

    def unit(self, department_id: Any) -> str:
        """A department (or grid unit) by its name; the centre as 12345热线中心."""
        if not department_id:
            return "—"
        if department_id == CENTRE_ID:
            return CENTRE
        return self.names.get(str(department_id), str(department_id))

    def units(self, ids: Any) -> str:
        return "、".join(self.unit(i) for i in ids or []) or "—"

    def at(self, value: Any) -> str:
        return self.when(value) if value else "—"


def note(text: Any) -> str:
    """A recorded note: the system's English sentences in Chinese, a person's as typed."""
    text = str(text or "").strip()
    found = _LADDER_REASON.fullmatch(text)
    if found:
        return f"督办阶梯升至问责（{glossary.term(EscalationTrigger, found.group(1))}）"
    return SYSTEM_NOTES.get(text, text)


def _with(text: str, extra: Any, sep: str = "：") -> str:
    said = note(extra)
    return f"{text}{sep}{said}" if said else text


def _deadlines(d: Data, w: Words) -> str:
    parts = [
        f"{glossary.DEADLINE[kind]} {w.at(d[kind.value])}"
        for kind in DeadlineKind
        if d.get(kind.value)
    ]
    if d.get("rating_window_hours") is not None:
        parts.append(f"评价期 {d['rating_window_hours']:g} 小时")
    return "；".join(parts)


def _rating(kind: str, d: Data) -> str:
    return _with(f"{kind}：{glossary.term(Rating, d.get('rating'))}", d.get("comment"))


def _rejected(d: Data) -> str:
    action = glossary.SIGNAL.get(d.get("action"), "操作")  # type: ignore[call-overload]
    return f"“{action}”未执行：{glossary.refusal(str(d.get('code')), '操作不符合工单当前的状态')}"


def _escalation_started(d: Data, w: Words) -> str:
    text = f"启动督办（{glossary.term(EscalationTrigger, d.get('trigger'))}）"
    if d.get("form"):
        text += f"，督办形式“{glossary.term(SupervisionForm, d['form'])}”"
        text = _with(text, d.get("opinion"))
    if d.get("due"):
        text += f"；办理期限 {w.at(d['due'])}"
    return text


def _accountability(d: Data, w: Words) -> str:
    persons = "、".join(d.get("persons") or []) or "待确定"
    return (
        f"问责{w.unit(d.get('department_id'))}：问责人员 {persons}；事由 {note(d.get('reason'))}"
        f"；决定 {d.get('decision') or '待定'}"
    )


def _extension_decided(d: Data, w: Words) -> str:
    if d.get("approved"):
        text = "批准延期" + (f"，新的办结时限 {w.at(d['new_deadline'])}" if d.get("new_deadline")
                             else "")  # fmt: skip
    else:
        text = "不批准延期"
    return _with(text, d.get("note"))


def _returned(d: Data, w: Words) -> str:
    text = _with(f"{w.unit(d.get('department_id'))}申请退单", d.get("reason"))
    return text + ("；待中心审核" if d.get("awaiting_approval") else "")


def _second_assignment(d: Data, w: Words) -> str:
    text = f"从{w.unit(d.get('department_id'))}收回，二次交办"
    if d.get("to_department_id"):
        text += f"至{w.unit(d['to_department_id'])}"
    return _with(text, d.get("reason"))


def _stopped(d: Data) -> str:
    level = glossary.term(EscalationLevel, d.get("final_level"))
    if d.get("reason") == "child_id_taken":  # ladder-child-id-taken-v1 (workflows/ladder.py)
        return f"督办阶梯未能启动（其流程编号已被占用），停在“{level}”"
    how = "承办单位已处理" if d.get("stopped") else "督办阶梯已走完"
    return f"督办结束（{how}，最高至“{level}”）"


def _co_handler_waived(d: Data, w: Words) -> str:
    unit = w.unit(d.get("department_id"))
    if d.get("reason") == "new_lead":  # a new round gave the case to this co-handler
        return f"{unit}改为主办，不再提交协办意见"
    if d.get("reason") == "round_ended":  # the case moved on: the round it co-handled ended
        return f"工单已转办，{unit}不再需要提交协办意见"
    return f"免除{unit}的协办意见"


def _reassigned(d: Data, w: Words) -> str:
    """改派 to a unit, or — a 重办 (or a dispatcher's choice) back to the unit of the round
    that ended — that the unit keeps the case: not 由县水务局改派至县水务局. ``why``: the
    reassignment's reason, which :func:`timeline` takes from the round's 开始改派."""
    unit = w.unit(d.get("department_id"))
    if d.get("department_id") and d.get("department_id") == d.get("from_department_id"):
        why = d.get("why")
        text = f"{glossary.term(ReassignReason, why)}：仍由{unit}办理" if why else f"仍由{unit}办理"
    else:
        text = f"由{w.unit(d.get('from_department_id'))}改派至{unit}"
    return _with(text, d.get("note"))


def _repeat_refiled(d: Data) -> str:
    """并单转立: a report that reached the case after its close, filed again."""
    where = d.get("refiled_as")
    if not where:
        return f"结案后到达的重复反映未能另行受理：{d.get('reason') or '原因不明'}"
    how = "并入同一问题的在办工单" if d.get("merged") else "另行受理为新工单"
    return f"结案后到达的重复反映已{how} {where}"


def _history_large(d: Data) -> str:
    size = (d.get("history_bytes") or 0) / 1024 / 1024
    return (
        f"工单的办理记录已达 {size:.1f} MiB / {d.get('history_events') or 0:,} 条（上限 50 MiB 或 "
        "51,200 条，到达即被终止）：办完后请及时办结归档"
    )


_FORMATS: dict[EventKind, Callable[[Data, Words], str]] = {
    EventKind.RECEIVED: lambda d, w: (
        f"受理：{d.get('title') or ''}（"
        f"{glossary.term(Urgency, d.get('urgency'))}，{glossary.term(Channel, d.get('channel'))}）"
    ),
    # the rule's number means nothing to a clerk (a rule is only category × area → unit, and
    # the case page shows the case's category and grid): the auditor's sentence adds it
    # (audit_words.case_event)
    EventKind.ROUTED: lambda d, w: f"{ROUTED_BY_CATALOGUE}{w.unit(d.get('department_id'))}",
    EventKind.QUEUED: lambda d, w: (
        note(d.get("reason")) or "没有匹配的派单规则，进入中心的待派单队列"
    ),
    EventKind.DISPATCHED: lambda d, w: _with(
        f"派至{w.unit(d.get('department_id'))}", d.get("note")
    ),
    EventKind.DEADLINES_SET: lambda d, w: _deadlines(d, w),
    EventKind.ACCEPTED: lambda d, w: "承办单位已签收",
    EventKind.CONTACTED: lambda d, w: _with("已联系诉求人", d.get("note")),
    EventKind.REPLIED: lambda d, w: _with(
        f"答复（{glossary.term(ReplyOutcome, d.get('outcome'))}）", d.get("text")
    ),
    EventKind.RATED: lambda d, w: _rating("群众评价", d),
    EventKind.CALLBACK: lambda d, w: _rating("回访结果", d),
    EventKind.DEADLINE_BREACHED: lambda d, w: (
        f"{w.unit(d.get('department_id'))}超过"
        f"{glossary.term(DeadlineKind, d.get('deadline_kind'))}（{w.at(d.get('deadline'))}）"
    ),
    EventKind.REJECTED: lambda d, w: _rejected(d),
    EventKind.CLOSED: lambda d, w: f"办结归档（{glossary.term(Resolution, d.get('resolution'))}）",
    EventKind.RETURNED: _returned,
    EventKind.RETURN_UPHELD: lambda d, w: _with(
        f"同意{w.unit(d.get('department_id'))}退单，另行派单", d.get("note")
    ),
    EventKind.RETURN_REJECTED: lambda d, w: _with(
        f"驳回{w.unit(d.get('department_id'))}的退单，工单仍由其办理", d.get("reason")
    ),
    EventKind.RETURN_DECISION_OVERDUE: lambda d, w: (
        f"退单审核期限 {w.at(d.get('decision_due'))}"
        f" 已过未审：视为同意{w.unit(d.get('department_id'))}退单"
    ),
    EventKind.SECOND_ASSIGNMENT_ORDERED: _second_assignment,
    EventKind.HANDED_OVER: lambda d, w: _with(
        f"{w.unit(d.get('department_id'))}已停用，移交{w.unit(d.get('to_department_id'))}承办",
        d.get("reason"),
    ),
    EventKind.LEVEL_RAISE_REQUESTED: lambda d, w: _with(
        f"{w.unit(d.get('department_id'))}申请提级办", d.get("reason")
    ),
    EventKind.REASSIGNMENT_STARTED: lambda d, w: (
        f"开始第 {d.get('n')} 次改派（{glossary.term(ReassignReason, d.get('reason'))}）"
    ),
    EventKind.REASSIGNED: lambda d, w: _reassigned(d, w),
    EventKind.REASSIGNMENT_FAILED: lambda d, w: (
        f"第 {d.get('n')} 次改派未选定承办单位即中止，转中心人工派单"
    ),
    EventKind.REHANDLE_STARTED: lambda d, w: _with(
        f"群众不满意，第 {d.get('unsatisfied_rounds')} 次重办", d.get("reason")
    ),
    EventKind.ESCALATION_STARTED: _escalation_started,
    EventKind.ESCALATED: lambda d, w: (
        f"督办升级：对{w.unit(d.get('department_id'))}"
        f"“{glossary.term(EscalationLevel, d.get('level'))}”"
    ),
    EventKind.ESCALATION_STOPPED: lambda d, w: _stopped(d),
    EventKind.ACCOUNTABILITY_RECORDED: _accountability,
    EventKind.CO_HANDLERS_ADDED: lambda d, w: _with(
        f"会办：{w.units(d.get('department_ids'))}协办"
        + (f"，协办意见期限 {w.at(d['due'])}" if d.get("due") else ""),
        d.get("note"),
    ),
    EventKind.CONTRIBUTED: lambda d, w: _with("提交协办意见", d.get("text")),
    EventKind.CONTRIBUTION_OVERDUE: lambda d, w: (
        f"{w.unit(d.get('department_id'))}未在 {w.at(d.get('due'))} 前提交协办意见"
    ),
    EventKind.CO_HANDLER_WAIVED: lambda d, w: _co_handler_waived(d, w),
    EventKind.EXTENSION_REQUESTED: lambda d, w: (
        _with(f"申请延期至 {w.at(d.get('promised_finish'))}", d.get("reasons"))
        + (f"；已采取措施：{d['measures']}" if d.get("measures") else "")
    ),
    EventKind.EXTENSION_DECIDED: _extension_decided,
    EventKind.EXTENSION_DECISION_OVERDUE: lambda d, w: (
        f"延期审批期限 {w.at(d.get('decision_due'))} 已过未审：视为批准"
    ),
    EventKind.REPEAT_REPORTED: lambda d, w: _with(
        f"并入重复诉求（第 {d.get('repeat_count')} 次，"
        f"{glossary.term(Channel, d.get('channel'))}）",
        d.get("description"),
    ),
    EventKind.REPEAT_REFILED: lambda d, w: _repeat_refiled(d),
    EventKind.SUPPLEMENTED: lambda d, w: _with("诉求人补充", d.get("text")),
    EventKind.WITHDRAWN: lambda d, w: _with("诉求人撤诉", d.get("reason")),
    EventKind.PROJECTION_FAILED: lambda d, w: (
        "工单列表（读模型）暂未更新成功，系统将自动重试；工单办理不受影响"
    ),
    EventKind.ROUTING_FAILED: lambda d, w: "自动派单未成功，转中心人工派单",
    EventKind.HISTORY_LARGE: lambda d, w: _history_large(d),
    EventKind.LINKED_TO_HISTORY: lambda d, w: (
        "已答复仍被重复反映：同一问题此前的工单 "
        f"{'、'.join(d.get('case_ids') or [])}，{d.get('window_days')} 天内共 "
        f"{d.get('reports')} 次反映"
    ),
    EventKind.ANSWERED_DIRECTLY: lambda d, w: (
        f"话务员依据知识库答复 {d.get('answer_id')}（第 {d.get('version')} 版）当场答复"
    ),
    EventKind.SOLVED_ON_THE_SPOT: lambda d, w: _with("网格员就地解决", d.get("text")),
}


def summary(kind: EventKind | str, data: Data, words: Words) -> str:
    """The event in Chinese, for the case page and the citizen's page."""
    try:
        member = EventKind(kind)
    except ValueError:
        return glossary.term(EventKind, kind)
    return _FORMATS[member](data, words)


def timeline(events: Iterable[Any], words: Words) -> Iterator[tuple[Any, str]]:
    """Each event of a case with its summary, in order — an event said with what an earlier
    one recorded: a 改派's reason (重办, 退单, ...) is recorded by its 开始改派, and a 改派
    back to the same unit is said by it (重办：仍由县水务局办理)."""
    why = None
    for event in events:
        data = event.data
        if event.kind is EventKind.REASSIGNMENT_STARTED:
            why = data.get("reason")
        elif event.kind is EventKind.REASSIGNED and why:
            data = {**data, "why": why}
        yield event, summary(event.kind, data, words)


def kinds_with_words() -> set[EventKind]:
    return set(_FORMATS)


THROUGH_API = "接口"
"""Said for an action taken with an API key (a program, not a person in the console): the
key's name (demo-operator) is English and means nothing to a clerk; the auditor's 审计记录
keeps it (api/console/audit_words.py ``actor``)."""


CHANNEL_CITIZENS: dict[str, str] = {
    SMS_ACTOR.name: glossary.term(Channel, Channel.SMS),
    MAIL_ACTOR.name: glossary.term(Channel, Channel.EMAIL),
    SELF_SERVICE_ACTOR.name: "自助提交",
}
"""The citizens a channel registers reports as (by the name recorded), and the channel they
reported by: such a report has no operator, its 受理 is the citizen's own."""

def _citizen(name: str, kind: EventKind | None) -> str:
    """The case's citizen (their link: 诉求人), the citizen of a report a channel filed —
    诉求人（短信）, or 并单诉求人（短信） when that report was a repeat of the case (并单) —
    or a repeat report's citizen (``repeat_reporter_name``: 并单诉求人). Before, the channel's
    citizen was 并单诉求人 whatever the event: the 受理 of every SMS, e-mail and
    self-service case."""
    if name == CASE_CITIZEN_NAME:
        return "诉求人"
    if name in CHANNEL_CITIZENS:
        repeat = kind is EventKind.REPEAT_REPORTED
        return f"{'并单诉求人' if repeat else '诉求人'}（{CHANNEL_CITIZENS[name]}）"
    return "并单诉求人"


def who(actor: Any, words: Words, kind: EventKind | None = None) -> str:
    """Who took a step (an event of ``kind``), in 办理经过: a staff member's display name with
    their role and unit; an API key's action by its role and unit, as 接口 (话务员（接口）);
    the system by its role; a citizen as :func:`_citizen` says."""
    role = getattr(actor, "role", None)
    name = str(getattr(actor, "name", "") or "")
    if actor is None or role is None:
        return ""
    if name == UNKNOWN_SENDER.name:
        return "来源不明的消息"
    if role is Role.SYSTEM:
        return "系统"
    if role is Role.CITIZEN:
        return _citizen(name, kind)
    person = getattr(actor, "person", None)
    department = getattr(actor, "department_id", None)
    unit = f" · {words.unit(department)}" if department else ""
    if not person:  # no person in a session: an API key (or the admin CLI), named by role
        return f"{glossary.term(Role, role)}（{THROUGH_API}{unit}）"
    return f"{words.people.get(person, name)}（{glossary.term(Role, role)}{unit}）"
