"""The case page's own words besides 办理经过 (:mod:`api.console.event_words`): what each
action's button says, and the line under 督办阶梯 that says what ends a ladder and when it
climbs next.

A button names the action it performs (提交协办意见, 下达督办单), not the form's subject: the
co-handler's form said 协办意见 as its heading, its field and its button. The heading keeps the
action's name (``ConsoleAction.label``, the glossary's term).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from jiesu.case import glossary
from jiesu.case.domain import CaseState, EscalationLevel, EscalationTrigger, EventKind, Status

BUTTONS: dict[str, str] = {
    # the case page's forms (api/console/actions.py STAFF_ACTIONS)
    "accept": "签收",
    "contact": "记录联系诉求人",
    "reply": "提交办结答复",
    "return": "申请退单",
    "extension": "提交延期申请",
    "raise-level": "申请提级办",
    "contribution": "提交协办意见",
    "dispatch": "派单",
    "reassign": "改派",
    "hand-over": "确认移交",
    "extension-decision": "提交延期审批",
    "co-handlers": "增加协办单位",
    "waive": "免除协办",
    "second-assignment": "二次交办",
    "return-decision": "提交退单审核",
    "supervision": "下达督办单",
    "callback": "记录回访结果",
    # the citizen's page (CITIZEN_ACTIONS)
    "rating": "提交评价",
    "supplement": "提交补充诉求",
    "withdraw": "撤诉",
}
"""What the submit button of each action's form says: the action it performs."""

# What the supervised unit must do for its ladder to end (workflows/ladder.py _did_its_duty):
# the late step for a missed 签收 or 联系 deadline, its reply for everything else.
_ENDS_WITH: dict[EscalationTrigger, str] = {
    EscalationTrigger.ACCEPT_BREACHED: "签收",
    EscalationTrigger.CONTACT_BREACHED: "联系诉求人",
}
_REPLY = "办结答复"


def ladder_next(state: CaseState, when: Callable[[Any], str]) -> str | None:
    """One line for a case on an active ladder: what the unit must do to end it, and when it
    climbs next — from the case's own state (its trigger, the ladder's steps recorded in the
    events, the step's hours in its deadlines). None when no ladder is active."""
    ladder = state.escalation
    if ladder is None or not ladder.active:
        return None
    ends = f"承办单位{_ENDS_WITH.get(ladder.trigger, _REPLY)}后督办结束"
    level = state.escalation_level
    if level >= EscalationLevel.ACCOUNTABILITY:
        return f"{ends}；已升至最高一级“{glossary.LEVEL[EscalationLevel.ACCOUNTABILITY]}”。"
    held = state.status is Status.DISPATCHING and level >= EscalationLevel.SUPERVISE
    if held:  # the ladder holds at 督办 while the case waits in the centre's queue
        return f"{ends}；工单待派单期间停在“{glossary.LEVEL[level]}”，派单后继续升级。"
    hours = state.deadlines.escalation_step_hours if state.deadlines else None
    climbs = _next_step(state, hours)
    if climbs is None or hours is None:
        return f"{ends}。"
    above = glossary.LEVEL[EscalationLevel(level + 1)]
    top = glossary.LEVEL[EscalationLevel.ACCOUNTABILITY]
    every = f"此后每 {hours:g} 小时升一级，最高至“{top}”"
    return f"{ends}；否则 {when(climbs)} 升至“{above}”，{every}。"


def _next_step(state: CaseState, hours: float | None) -> datetime | None:
    """When the active ladder climbs next (workflows/escalation.py): a supervisor's deadline
    for the unit ends the first step; every later one lasts the step's hours from the last."""
    ladder = state.escalation
    assert ladder is not None
    steps = [e.at for e in state.events
             if e.kind is EventKind.ESCALATED and e.data.get("n") == ladder.n]  # fmt: skip
    if ladder.due is not None and len(steps) <= 1:
        return ladder.due
    if hours is None:
        return None
    return (steps[-1] if steps else ladder.started_at) + timedelta(hours=hours)
