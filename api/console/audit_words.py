"""审计记录 in Chinese: each entry of the auditor's timeline (:mod:`jiesu.audit.timeline`) as the
console's audit page shows it — a Chinese label for its kind and a Chinese sentence built from
its details. The recorded English summary stays beneath it on the page, and the API, the JSON
export and ``jiesu timeline`` keep their English: this module only reads entries.

The case's own events (``received``, ``accepted``, ...) are said with 办理经过's words
(:mod:`api.console.event_words`, :mod:`jiesu.case.glossary`); the Temporal-level entries
(signals, timers, activities, markers, child workflows, the run's start and end, ...) have
their words here (:data:`KINDS`). tests/test_console_audit_words.py reads timeline.py for every
kind it can produce and fails on one without words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from api.console import event_words
from api.console.event_words import Words
from jiesu.audit import timeline as audit_timeline
from jiesu.audit.replay import Verdict
from jiesu.audit.timeline import NOT_PROCESSED, NOT_YET_PROCESSED, Timeline, TimelineEntry
from jiesu.case import glossary
from jiesu.case.domain import (
    CASE_WORKFLOW,
    UNKNOWN_SENDER,
    CaseSignal,
    Channel,
    DeadlineKind,
    EscalationLevel,
    EventKind,
    Resolution,
    Role,
    Status,
    Urgency,
)

Data = dict[str, Any]

KINDS: dict[str, str] = {
    # the run's start and end (timeline.py _CLOSE_STATUS)
    "started": "流程启动",
    "completed": "流程结束",
    "failed": "流程失败",
    "terminated": "流程被终止",
    "canceled": "流程被取消",
    "timed_out": "流程超时",
    "continued_as_new": "流程转入新运行",
    # messages
    "signal": "收到操作",
    "signal_sent": "发出信号",
    "update": "更新请求",
    # activities
    "activity": "活动完成",
    "activity_failed": "活动失败",
    "activity_timed_out": "活动超时",
    "workflow_task_failed": "工作流任务失败",
    # timers
    "timer_started": "设定计时器",
    "timer_fired": "计时器到期",
    "timer_canceled": "取消计时器",
    "deadline_moved": "时限变更",
    # search attributes and markers
    "search_attributes": "更新检索属性",
    "marker": "标记",
    # child workflows
    "child_initiated": "请求启动子流程",
    "child_start_failed": "子流程未能启动",
    "child_started": "子流程启动",
    "child_completed": "子流程结束",
    "child_failed": "子流程失败",
    "child_canceled": "子流程被取消",
    "child_timed_out": "子流程超时",
    "child_terminated": "子流程被终止",
}
"""The Temporal-level kinds of timeline entries; a case event's kind is its glossary term."""

RUN_STATUS: dict[str, str] = {
    "running": "运行中",
    "completed": "已结束",
    "failed": "已失败",
    "terminated": "已被终止",
    "canceled": "已取消",
    "timed_out": "已超时",
    "continued_as_new": "已转入新运行",
}
"""A timeline's ``status`` (the page's heading): running, or how the run ended."""
SOURCES: dict[str, str] = {"temporal": "Temporal 服务", "archive": "归档"}

VERDICTS: dict[Verdict, str] = {
    Verdict.REPLAYS: "通过，当前工作流代码重放结果与历史一致",
    Verdict.NON_DETERMINISTIC: "不一致，当前工作流代码与历史记录的步骤不符",
    Verdict.FAILED: "重放出错",
    Verdict.MISSING: "历史记录缺失，无法完整重放",
    Verdict.STUCK: "流程卡住，最后一次工作流任务失败",
}
"""重放校验's result (:class:`jiesu.audit.replay.Verdict`) in Chinese; the page keeps the code."""

LOCAL_ACTIVITY = "本地活动完成"
PATCH_MARKER = "代码版本标记"

WORKFLOWS: dict[str, str] = {
    CASE_WORKFLOW: "工单流程",
    "EscalationWorkflow": "督办阶梯",
    "ReassignmentWorkflow": "改派流程",
    "ReportWorkflow": "报表流程",
    "ArchiveWorkflow": "归档流程",
}

ACTIVITIES: dict[str, str] = {
    "route_case": "自动派单",
    "compute_deadlines": "计算办理时限",
    "plan_case": "派单并计算时限",
    "level_up": "提级派单",
    "project_case": "写入工单列表",
    "project_events": "写入工单列表",
    "refresh_statistics": "刷新统计",
    "produce_report": "生成报表",
    "archive_closed_cases": "归档已办结工单",
}

CHILD_SIGNALS: dict[str, str] = {"stop": "停止督办", "choose": "中心选定承办单位"}
"""The children's own messages (EscalationWorkflow.stop, ReassignmentWorkflow.choose)."""

SEARCH_ATTRIBUTES: dict[str, str] = {
    "CaseStatus": "状态",
    "CaseDepartment": "承办单位",
    "CaseUrgency": "紧急程度",
    "CaseCategory": "诉求类别",
    "CaseChannel": "渠道",
    "CaseAcceptDeadline": "签收时限",
    "CaseContactDeadline": "联系诉求人时限",
    "CaseFinishDeadline": "办结时限",
    "CaseBreaches": "已超时",
    "CaseEscalationLevel": "督办级别",
    "TemporalChangeVersion": "代码版本",
}

_TIMERS: dict[str, str] = {
    **{f"{k.value} deadline": glossary.DEADLINE[k] for k in DeadlineKind},
    "rating window": "评价期",
    "return decision deadline": "退单审核期限",
    "extension decision deadline": "延期审批期限",
    "dispatcher window": "中心人工派单等候期",
}
_CONTRIBUTION_TIMER = re.compile(r"contribution deadline (\S+)")
_LADDER_TIMER = re.compile(r"next step after (\w+)")
_AFTER_COLON = re.compile(r"^[^:]*: ")


def label(entry: TimelineEntry) -> str:
    """The 类型 of an entry: a case event's glossary term, or the Temporal-level kind's words."""
    if entry.kind == "activity" and entry.details.get("local"):
        return LOCAL_ACTIVITY
    if entry.kind == "marker" and entry.details.get("marker") == audit_timeline.PATCH_MARKER:
        return PATCH_MARKER
    if entry.kind in KINDS:
        return KINDS[entry.kind]
    return glossary.term(EventKind, entry.kind)


def workflow(name: Any) -> str:
    return WORKFLOWS.get(str(name), str(name or "流程"))


def activity(name: Any) -> str:
    return f"“{ACTIVITIES.get(str(name), str(name))}”"


def signal(name: Any) -> str:
    text = str(name)
    said = glossary.term(CaseSignal, text) if text in set(CaseSignal) else CHILD_SIGNALS.get(text)
    return f"“{said or text}”"


def timer(name: Any, words: Words) -> str:
    text = str(name or "")
    if text in _TIMERS:
        return _TIMERS[text]
    found = _CONTRIBUTION_TIMER.fullmatch(text)
    if found:
        return f"{words.unit(found.group(1))}的协办意见期限"
    found = _LADDER_TIMER.fullmatch(text)
    if found:
        level = EscalationLevel.__members__.get(found.group(1).upper())
        if level is None:
            return "下一步督办"
        return f"“{glossary.term(EscalationLevel, level)}”之后的下一步督办"
    if text.startswith("timer "):
        return f"计时器 {text.removeprefix('timer ')}"
    return f"计时器“{text}”"


def _message(entry: TimelineEntry) -> str:
    """The error an English summary carries after its first colon (a failure's message)."""
    return _AFTER_COLON.sub("", entry.summary, count=1) if ": " in entry.summary else ""


def _with(text: str, extra: Any) -> str:
    return f"{text}：{extra}" if extra else text


def _started(entry: TimelineEntry, words: Words, workflow_type: str) -> str:
    args = entry.details.get("input") or []
    first = args[0] if args and isinstance(args[0], dict) else {}
    intake = first.get("facts") or first.get("intake")
    text = f"{workflow(workflow_type)}启动"
    if isinstance(intake, dict):
        said = event_words.summary(EventKind.RECEIVED, {
            "title": intake.get("title"), "urgency": first.get("urgency"),
            "channel": intake.get("channel"),
        }, words)  # fmt: skip
        text = f"工单 {first.get('case_id')} {said}"
    parent = entry.details.get("parent_workflow_id")
    return text + (f"（{parent} 的子流程）" if parent else "")


def _completed(entry: TimelineEntry, words: Words, workflow_type: str) -> str:
    result = entry.details.get("result")
    text = f"{workflow(workflow_type)}结束"
    if isinstance(result, dict) and result.get("status"):
        text += f"：工单{glossary.term(Status, result['status'])}"
        if result.get("resolution"):
            text += f"（{glossary.term(Resolution, result['resolution'])}）"
    return text


UNDECODED: dict[str, str] = {
    "invalid_payload": "消息内容不符合该操作的格式，工单未作任何变更",
    "unknown_signal": "工单没有这项操作，未作任何变更",
}
"""What the case did with a message it could not decode (the rejection's code): it refused
it; the English reason stays in the recorded summary beneath."""
UNKNOWN_SENDER_NAME = "发送方不明"
UNKNOWN_SENDER_ROLE = "消息无法识别"


def _received(d: Data) -> str:
    """收到…: the signal, and for a message that did not decode what was wrong with it."""
    name = d.get("signal")
    if d.get("sender") != "unknown":
        return f"收到{signal(name)}"
    if (d.get("recorded") or {}).get("data", {}).get("code") == "unknown_signal":
        return f"收到未知操作“{name}”"
    if d.get("payloads") == 0:
        return f"收到{signal(name)}（无内容）"
    claimed = d.get("claimed_actor") or {}
    said = f"，自称来自“{claimed.get('name')}”" if claimed.get("name") else ""
    return f"收到{signal(name)}（内容格式不符{said}）"


def _signal(entry: TimelineEntry, words: Words) -> str:
    d = entry.details
    text = _received(d)
    outcome = d.get("outcome")
    recorded = d.get("recorded") or {}
    data = recorded.get("data") or {}
    if outcome == "rejected":
        code = str(data.get("code") or "")
        if d.get("sender") == "unknown":
            return f"{text}，未执行：{UNDECODED.get(code, glossary.refusal(code, '消息无法识别'))}"
        return f"{text}，未执行：{glossary.refusal(code, '操作不符合工单当前的状态')}"
    if outcome == "applied":
        return f"{text}，已执行：{case_event(str(recorded.get('kind')), data, words)}"
    if outcome == "no effect recorded" and d.get("retry_of"):
        request_id = (entry.actor or {}).get("request_id")
        return (
            f"{text}，未见办理记录：与 #{d['retry_of']} 是同一请求（请求号 {request_id}）的重发，"
            "工单只办理一次"
        )
    if outcome == "no effect recorded":
        return f"{text}，未见办理记录"
    if outcome == NOT_YET_PROCESSED:  # a running case has not handled it yet: no verdict
        return f"{text}，尚未处理：工单还未办理这条操作，结果待定"
    if outcome == NOT_PROCESSED:
        return f"{text}，未处理：工单在办理这条操作之前已结束"
    return text


def _activity(entry: TimelineEntry, words: Words) -> str:
    name = entry.details.get("activity")
    said = _activity_result(str(name), entry.details.get("result"), words)
    return said or f"活动{activity(name)}完成"


def _activity_result(name: str, result: Any, words: Words) -> str:
    if not isinstance(result, dict):
        return ""
    if name == "route_case":
        kind = EventKind.ROUTED if result.get("by_rule") else EventKind.QUEUED
        return case_event(kind, {**result, "reason": None}, words)
    if name == "compute_deadlines":
        return "设定时限：" + event_words.summary(EventKind.DEADLINES_SET, result, words)
    if name == "plan_case":
        route = _activity_result("route_case", result.get("route"), words)
        if result.get("routing_failure"):
            route = f"自动派单未成功（{result['routing_failure']}）；{route}"
        deadlines = _activity_result("compute_deadlines", result.get("deadlines"), words)
        return "；".join(part for part in (route, deadlines) if part)
    return ""


def _search_value(name: str, value: Any, words: Words) -> str:
    if value is None or value == []:
        return "（清除）"
    if name == "CaseStatus":
        return glossary.term(Status, value)
    if name == "CaseDepartment":
        return words.unit(value)
    if name == "CaseUrgency":
        return glossary.term(Urgency, value)
    if name == "CaseChannel":
        return glossary.term(Channel, value)
    if name.endswith("Deadline"):
        return words.at(value)
    if name == "CaseBreaches" and isinstance(value, list):
        return "、".join(glossary.term(DeadlineKind, v) for v in value)
    if name == "CaseEscalationLevel":
        return glossary.term(EscalationLevel, value)
    if isinstance(value, list):
        return "、".join(str(v) for v in value)
    return str(value)


def _search_attributes(entry: TimelineEntry, words: Words) -> str:
    values = entry.details.get("values") or {}
    shown = "，".join(
        f"{SEARCH_ATTRIBUTES.get(k, k)} {_search_value(k, v, words)}" for k, v in values.items()
    )
    return _with("更新检索属性", shown)


def _marker(entry: TimelineEntry, words: Words) -> str:
    d = entry.details
    patch = (d.get("patch-data") or [None])[0]
    if d.get("marker") == audit_timeline.PATCH_MARKER and isinstance(patch, dict):
        state = "（已弃用）" if patch.get("deprecated") else ""
        return f"代码版本：补丁 {patch.get('id')}{state}，本工单按此版本的代码办理"
    return f"标记 {d.get('marker')}"


def _child(text: str) -> Callable[[TimelineEntry, Words], str]:
    def said(entry: TimelineEntry, words: Words) -> str:
        d = entry.details
        return f"子流程{workflow(d.get('workflow_type'))} {d.get('workflow_id')} {text}"

    return said


def _child_failed(entry: TimelineEntry, words: Words) -> str:
    return _with(_child("失败")(entry, words), entry.summary.partition(" failed: ")[2])


def _timer_started(entry: TimelineEntry, words: Words) -> str:
    d = entry.details
    return f"{timer(d.get('timer'), words)}：设定计时器，{words.at(d.get('fires_at'))} 到期"


def _deadline_moved(entry: TimelineEntry, words: Words) -> str:
    d = entry.details
    return (
        f"{timer(d.get('timer'), words)}由 {words.at(d.get('previous'))} "
        f"改为 {words.at(d.get('fires_at'))}"
    )


_FORMATS: dict[str, Callable[[TimelineEntry, Words], str]] = {
    "signal": _signal,
    "signal_sent": lambda e, w: (
        f"向 {e.details.get('workflow_id')} 发出{signal(e.details.get('signal'))}"
    ),
    "update": lambda e, w: f"收到更新请求“{e.details.get('update')}”",
    "activity": _activity,
    "activity_failed": lambda e, w: _with(
        f"活动{activity(e.details.get('activity'))}执行失败", _message(e)
    ),
    "activity_timed_out": lambda e, w: _with(
        f"活动{activity(e.details.get('activity'))}超时", _message(e)
    ),
    "workflow_task_failed": lambda e, w: _with(
        "工作流任务失败，流程暂停推进（需排查或重置）", e.details.get("message")
    ),
    "timer_started": _timer_started,
    "timer_fired": lambda e, w: f"{timer(e.details.get('timer'), w)}已到",
    "timer_canceled": lambda e, w: (
        f"{timer(e.details.get('timer'), w)}：取消计时器（条件已满足或时限已变更）"
    ),
    "deadline_moved": _deadline_moved,
    "search_attributes": _search_attributes,
    "marker": _marker,
    "child_initiated": lambda e, w: (
        f"请求启动子流程{workflow(e.details.get('workflow_type'))} {e.details.get('workflow_id')}"
    ),
    "child_start_failed": lambda e, w: (
        f"子流程{workflow(e.details.get('workflow_type'))} {e.details.get('workflow_id')} 未能启动"
    ),
    "child_started": _child("已启动"),
    "child_completed": _child("已结束"),
    "child_failed": _child_failed,
    "child_canceled": _child("已取消"),
    "child_timed_out": _child("超时"),
    "child_terminated": _child("被终止"),
}


def sentence(entry: TimelineEntry, words: Words, workflow_type: str = "") -> str:
    """The 内容 of an entry in Chinese, built from its details (``workflow_type``: the type of
    the timeline the entry belongs to, for the run's start and end)."""
    kind = entry.kind
    if kind == "started":
        return _started(entry, words, workflow_type)
    if kind == "completed":
        return _completed(entry, words, workflow_type)
    if kind == "failed":
        return _with(f"{workflow(workflow_type)}失败", _message(entry))
    if kind in ("terminated", "canceled", "timed_out", "continued_as_new"):
        return f"{workflow(workflow_type)}{KINDS[kind].removeprefix('流程')}"
    if kind in _FORMATS:
        return _FORMATS[kind](entry, words)
    # a recorded case event as 办理经过 says it (its label when that says nothing, e.g. no
    # deadline set)
    return case_event(kind, entry.details.get("data") or {}, words) or label(entry)


def case_event(kind: EventKind | str, data: Data, words: Words) -> str:
    """A case event as 办理经过 says it, with what only the auditor needs: the number of the
    routing rule that chose the unit (派单规则 4), which the staff's page leaves out."""
    said = event_words.summary(kind, data, words)
    if kind == EventKind.ROUTED and data.get("rule_id") is not None:
        said += f"（派单规则 {data['rule_id']}）"
    return said


@dataclass(frozen=True)
class Who:
    """The 操作人 of an entry, in the parts the audit page sets apart: who acted (a staff
    person's display name; a login no account knows; the system, an API key, the citizen by
    the recorded name), their role in Chinese, and a known person's login — shown beneath,
    smaller, not in brackets: a display name may have brackets of its own (王芳 (水务局))."""

    name: str
    role: str
    login: str = ""


def actor(recorded: Data | None, words: Words) -> Who | None:
    """The 操作人 of an entry (None: the entry records nobody), e.g. 王芳 (水务局), 承办单位,
    water-clerk."""
    if not recorded:
        return None
    if recorded.get("name") == UNKNOWN_SENDER.name and recorded.get("role") == Role.SYSTEM:
        return Who(UNKNOWN_SENDER_NAME, UNKNOWN_SENDER_ROLE)  # a message that did not decode
    role = glossary.term(Role, recorded.get("role"))
    login = recorded.get("person")
    display_name = words.people.get(str(login)) if login else None
    if display_name:
        return Who(display_name, role, str(login))
    return Who(str(login or recorded.get("name") or "?"), role)


@dataclass
class Row:
    """One line of the audit page."""

    depth: int
    entry: TimelineEntry
    label: str
    sentence: str
    actor: Who | None


def rows(timeline: Timeline, words: Words, depth: int = 0) -> Iterator[Row]:
    """The timeline's entries in Chinese, children's entries right after their start entry
    (as :func:`jiesu.audit.timeline.iter_entries`)."""
    for entry in timeline.entries:
        said = sentence(entry, words, timeline.workflow_type)
        yield Row(depth, entry, label(entry), said, actor(entry.actor, words))
        if entry.child is not None:
            yield from rows(entry.child, words, depth + 1)


def people_of(timeline: Timeline) -> set[str]:
    """The logins of the staff who acted in the timeline (its children's included)."""
    found: set[str] = set()
    for entry in timeline.entries:
        person = (entry.actor or {}).get("person")
        if person:
            found.add(str(person))
        if entry.child is not None:
            found |= people_of(entry.child)
    return found


def kinds_with_words() -> set[str]:
    """Every entry kind with its Chinese label: the Temporal-level ones and the case events."""
    return set(KINDS) | {k.value for k in EventKind if k in glossary.EVENT}
