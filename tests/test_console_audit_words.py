"""审计记录 in Chinese (api/console/audit_words.py): every kind of entry the auditor's timeline
can produce has a Chinese label, and every entry a Chinese sentence — the kinds read from
jiesu/audit/timeline.py itself, so that a kind added there without words here fails; every
verdict of the replay check (jiesu.audit.replay.Verdict) has its words too; 操作人 names a
person by their display name."""

from __future__ import annotations

import ast
import inspect
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from helpers import HISTORIES
from temporalio.client import WorkflowHistory

from api.console import audit_words
from api.console.audit_words import Who
from api.console.event_words import Words
from jiesu.audit import timeline as audit_timeline
from jiesu.audit.replay import Verdict
from jiesu.audit.timeline import TimelineEntry, decode_history
from jiesu.case.domain import EventKind

_CHINESE = re.compile(r"[\u4e00-\u9fff]")
# How timeline.py names an entry's kind when it is not a literal: the run's end by its status
# (a value of _CLOSE_STATUS), a recorded case event by its EventKind.
_COMPUTED_KINDS = {"self.status", "kind"}


def _kind_argument(call: ast.Call) -> ast.expr | None:
    """The ``kind`` argument of ``self._add(event, kind, ...)`` / ``self._child(event, attr,
    kind, ...)`` in timeline.py's decoder."""
    func = call.func
    if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
            and func.value.id == "self"):  # fmt: skip
        return None
    position = {"_add": 1, "_child": 2}.get(func.attr)
    if position is None:
        return None
    for keyword in call.keywords:
        if keyword.arg == "kind":
            return keyword.value
    return call.args[position] if len(call.args) > position else None


def timeline_kinds() -> set[str]:
    """Every entry kind jiesu/audit/timeline.py can produce, read from its source."""
    tree = ast.parse(inspect.getsource(audit_timeline))
    kinds: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or (argument := _kind_argument(node)) is None:
            continue
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            kinds.add(argument.value)
        else:
            assert ast.unparse(argument) in _COMPUTED_KINDS, (
                f"timeline.py line {node.lineno} names an entry kind as "
                f"{ast.unparse(argument)!r}: teach this test (and audit_words) what it can be"
            )
    kinds |= set(audit_timeline._CLOSE_STATUS.values())  # self.status
    kinds |= {k.value for k in EventKind}  # a recorded event's kind
    return kinds


def test_the_kinds_are_read_from_the_source() -> None:
    """The reader finds what is there: the Temporal-level kinds and the case's events."""
    kinds = timeline_kinds()
    expected = {"started", "signal", "update", "activity", "activity_failed", "timer_started",
                "timer_fired", "deadline_moved", "search_attributes", "marker",
                "child_initiated", "child_started", "child_completed", "child_terminated",
                "signal_sent", "workflow_task_failed", "completed", "terminated",
                "accepted"}  # fmt: skip
    assert expected <= kinds, expected - kinds


def test_every_kind_the_timeline_produces_has_a_chinese_label() -> None:
    missing = sorted(timeline_kinds() - audit_words.kinds_with_words())
    assert not missing, (
        f"entry kinds without Chinese words in api/console/audit_words.py: {missing}"
    )
    for kind in sorted(timeline_kinds()):
        said = audit_words.label(_entry(kind))
        assert said != kind and _CHINESE.search(said), (kind, said)


def _entry(kind: str, summary: str = "x", **details: Any) -> TimelineEntry:
    return TimelineEntry(event_id=1, at=datetime(2026, 3, 1, tzinfo=UTC), kind=kind,
                         summary=summary, details=details)  # fmt: skip


def _words() -> Words:
    return Words({"water": "县水务局"}, lambda at: str(at)[:16])


@pytest.mark.parametrize("kind", sorted(timeline_kinds()))
def test_every_kind_has_a_chinese_sentence_even_without_details(kind: str) -> None:
    said = audit_words.sentence(_entry(kind), _words(), "ComplaintWorkflow")
    assert _CHINESE.search(said), (kind, said)


def test_the_sentences_say_the_details_in_chinese() -> None:
    words = _words()
    signal = _entry(
        "signal", "accept from 王芳 (department, water) — applied: accepted (签收)",
        signal="accept", outcome="applied",
        recorded={"kind": "accepted", "data": {}},
    )  # fmt: skip
    assert audit_words.sentence(signal, words) == "收到“签收”，已执行：承办单位已签收"
    refused = _entry("signal", signal="reply", outcome="rejected",
                     recorded={"kind": "rejected", "data": {"code": "not_contacted"}})  # fmt: skip
    said = audit_words.sentence(refused, words)
    assert said == "收到“办结答复”，未执行：请先联系诉求人，再办结答复"
    patch = _entry("marker", marker="core_patch", **{"patch-data": [{"id": "lean-case-v3"}]})
    assert audit_words.label(patch) == "代码版本标记"
    assert "补丁 lean-case-v3" in audit_words.sentence(patch, words)
    child = _entry(
        "child_started", workflow_type="EscalationWorkflow", workflow_id="C-1-escalation-1"
    )
    assert audit_words.sentence(child, words) == "子流程督办阶梯 C-1-escalation-1 已启动"
    timer = _entry("timer_started", timer="accept deadline", fires_at="2026-03-01T10:00:00+00:00")
    assert audit_words.sentence(timer, words).startswith("签收时限：设定计时器，2026-03-01T10:00")
    ladder = _entry("timer_fired", timer="next step after urge")
    assert audit_words.sentence(ladder, words) == "“催办”之后的下一步督办已到"
    local = _entry("activity", activity="plan_case", local=True, result={
        "route": {"by_rule": True, "department_id": "water", "rule_id": "R1"},
        "deadlines": {"accept": "2026-03-01T10:00:00+00:00"}})  # fmt: skip
    assert audit_words.label(local) == "本地活动完成"
    said = audit_words.sentence(local, words)
    assert said.startswith("按派单目录自动派至县水务局（派单规则 R1）；设定时限：签收时限"), said
    failed = _entry("activity_failed", "activity route_case failed: boom", activity="route_case")
    assert audit_words.sentence(failed, words) == "活动“自动派单”执行失败：boom"
    routed = _entry("routed", data={"rule_id": "R1", "department_id": "water"})
    assert audit_words.label(routed) == "派单"
    assert audit_words.sentence(routed, words) == "按派单目录自动派至县水务局（派单规则 R1）"


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
def test_every_entry_of_the_recorded_histories_reads_in_chinese(path: Any) -> None:
    """The stored histories (tests/histories: every version of the case workflow, ladders,
    reassignments, patches, failures): each entry a Chinese label and sentence; the English
    summary is the timeline's, untouched."""
    history = WorkflowHistory.from_json(path.stem, path.read_text("utf-8"))
    timeline = decode_history(history)
    before = timeline.model_dump_json()
    for row in audit_words.rows(timeline, _words()):
        assert _CHINESE.search(row.label) and not re.search(r"[a-z]_|^[a-z]+$", row.label), row
        assert _CHINESE.search(row.sentence), row
    assert timeline.model_dump_json() == before


def test_every_verdict_the_replay_check_gives_has_chinese_words() -> None:
    """The verdicts read from jiesu.audit.replay.Verdict: a new one without words fails."""
    missing = sorted(set(Verdict) - set(audit_words.VERDICTS))
    assert not missing, f"replay verdicts without Chinese words in audit_words.VERDICTS: {missing}"
    for verdict in Verdict:
        said = audit_words.VERDICTS[verdict]
        assert _CHINESE.search(said) and verdict.value not in said, (verdict, said)


_CLERK = {"role": "department", "name": "water-clerk", "department_id": "water",
          "person": "water-clerk"}  # fmt: skip


def test_a_person_is_named_by_display_name_with_the_login_apart() -> None:
    """The login is a part of its own (the page shows it beneath, in grey), not put in
    brackets after the display name: a display name may have brackets already (王芳 (水务局),
    as the demo's people were named before their names were Chinese only)."""
    words = Words({}, str, {"water-clerk": "王芳 (水务局)"})
    assert audit_words.actor(_CLERK, words) == Who("王芳 (水务局)", "承办单位", "water-clerk")


def test_a_person_no_account_knows_is_named_by_the_login() -> None:
    """A deleted account, or a person a Temporal client made up: the login as recorded."""
    words = Words({}, str, {"water-clerk": "王芳"})
    ghost = {**_CLERK, "name": "former-clerk", "person": "former-clerk"}
    assert audit_words.actor(ghost, words) == Who("former-clerk", "承办单位")
    assert audit_words.actor(_CLERK, Words({}, str)) == Who("water-clerk", "承办单位")


def test_who_is_no_person_is_named_as_recorded() -> None:
    """The system (timers, the ladder), an API key, the citizen: no person to look up."""
    words = Words({}, str, {"water-clerk": "王芳"})
    assert audit_words.actor({"role": "system", "name": "jiesu"}, words) == Who("jiesu", "系统")
    key = {"role": "department", "name": "water-clerk", "department_id": "water"}
    assert audit_words.actor(key, words) == Who("water-clerk", "承办单位")  # a key, not the person
    assert audit_words.actor(None, words) is None
