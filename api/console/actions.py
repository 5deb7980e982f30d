"""The actions a case page offers: the API's own action specs (api/routers/handling.py,
supervision.py, citizen.py), shown only when the lifecycle's check of that spec allows them
now, and performed through :func:`api.actions.run` — the same path as the API's endpoints.

Whether an action is allowed is asked of the spec's own check (jiesu/case/lifecycle.py) with a
*probe*: the action as the signed-in person would send it with representative field values.
Refusals that depend on what is typed (an 'explained' reply without evidence, a promised date
too far ahead) come back from the same check when the form is sent, as the API's 409 would.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from starlette.datastructures import FormData

from api.actions import ActionSpec
from api.console import case_words
from api.deps import Principal
from api.routers import citizen, handling, supervision
from jiesu.case import glossary
from jiesu.case.domain import CaseState, Rating, ReplyOutcome, SupervisionForm
from jiesu.case.lifecycle import Refusal

Fields = dict[str, Any]
Form = FormData


def _spec(table: tuple[ActionSpec, ...], path: str) -> ActionSpec:
    return next(s for s in table if s.path == path)


def lines(value: Any) -> list[str]:
    """A textarea's non-blank lines (persons, evidence links: one a line)."""
    return [line.strip() for line in str(value or "").splitlines() if line.strip()]


def _text(form: Form, *names: str) -> Fields:
    return {n: str(form.get(n) or "") for n in names}


def _promised(form: Form, tz: ZoneInfo) -> Fields:
    return {"promised_finish": _local_time(form, "promised_finish", tz) or ""}


@dataclass(frozen=True)
class ConsoleAction:
    """One form of the case page."""

    name: str  # in the form's URL: /console/cases/{id}/actions/{name}
    label: str  # the glossary's term
    spec: ActionSpec
    probe: Callable[[CaseState], Fields]  # representative fields of an allowed action
    parse: Callable[[Form, ZoneInfo], Fields] = lambda form, tz: {}  # form → body fields
    path_field: str | None = None  # a path field of the spec, taken from the form
    # what this form calls a field whose general label (web.FIELD_LABELS) is not its own: a
    # reply's text is 答复内容, not 内容 — in a refusal of it and in its 未保存 box
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def button(self) -> str:
        """What its submit button says: the action it performs (提交协办意见, not 协办意见)."""
        return case_words.BUTTONS.get(self.name, self.label)

    def body(self, form: Form, tz: ZoneInfo) -> BaseModel | None:
        """The spec's body model from the form (raises pydantic's ValidationError)."""
        if self.spec.body is None:
            return None
        return self.spec.body.model_validate(self.parse(form, tz))

    def allowed(self, state: CaseState, principal: Principal) -> bool:
        """Would the spec's own lifecycle check let this person do it now?"""
        try:
            return self.refusal(state, principal) is None
        except (AttributeError, AssertionError, TypeError):  # the probe misses what it needs
            return False

    def refusal(self, state: CaseState, principal: Principal) -> Refusal | None:
        """The spec's own lifecycle check of this person's probe: None when allowed."""
        actor = principal.actor_on(state, co_handling=self.spec.co_handling)
        probe = self.spec.action.model_construct(actor=actor, **self.probe(state))
        return self.spec.check(state, probe)


def _local_time(form: Form, name: str, tz: ZoneInfo) -> Any:
    """A ``datetime-local`` field is the hotline's local time (JIESU_TIMEZONE); empty: None."""
    raw = str(form.get(name) or "")
    if not raw:
        return None
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        return raw  # validation says what is wrong
    return at.replace(tzinfo=at.tzinfo or tz)


def _supervision(form: Form, tz: ZoneInfo) -> Fields:
    """督办: the form (提醒…问责), the opinion, the unit's deadline; 会办's departments and
    their deadline; 问责's persons (one a line) and decision."""
    fields: Fields = {**_text(form, "note", "decision"), "form": form.get("form") or "remind",
                      "due": _local_time(form, "due", tz),
                      "department_ids": list(form.getlist("department_ids")),
                      "persons": lines(form.get("persons"))}  # fmt: skip
    if fields["form"] == SupervisionForm.JOINT_HANDLING:
        fields["contribution_due"] = _local_time(form, "contribution_due", tz)
    return fields


def _later_than_deadline(state: CaseState) -> Fields:
    finish = state.deadlines.finish if state.deadlines else datetime.now().astimezone()
    return {"reasons": "..", "measures": "..", "promised_finish": finish + timedelta(days=1)}


def _first_pending_co_handler(state: CaseState) -> Fields:
    pending = [c.department_id for c in state.co_handlers if not c.done]
    return {"department_id": pending[0] if pending else ""}


H, S, C = handling.ACTIONS, supervision.ACTIONS, citizen.ACTIONS

STAFF_ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction("accept", "签收", _spec(H, "/accept"), lambda s: {}),
    ConsoleAction("contact", "联系诉求人", _spec(H, "/contact"), lambda s: {"note": ""},
                  lambda f, tz: _text(f, "note")),
    ConsoleAction("reply", "办结答复", _spec(H, "/reply"),
                  lambda s: {"outcome": ReplyOutcome.RESOLVED, "text": "..", "evidence": []},
                  lambda f, tz: {**_text(f, "outcome", "text"),
                                 "evidence": lines(f.get("evidence"))},
                  labels={"text": "答复内容"}),
    ConsoleAction("return", "退单", _spec(H, "/return"), lambda s: {"reason": ".."},
                  lambda f, tz: _text(f, "reason")),
    ConsoleAction("extension", "延期申请", _spec(H, "/extension"), _later_than_deadline,
                  lambda f, tz: {**_text(f, "reasons", "measures"), **_promised(f, tz)}),
    ConsoleAction("raise-level", "提级办", _spec(H, "/raise-level"), lambda s: {"reason": ".."},
                  lambda f, tz: _text(f, "reason")),
    ConsoleAction("contribution", "协办意见", _spec(H, "/contribution"),
                  lambda s: {"text": ".."}, lambda f, tz: _text(f, "text"),
                  labels={"text": "协办意见"}),
    ConsoleAction("dispatch", "人工派单", _spec(S, "/dispatch"),
                  lambda s: {"department_id": "", "note": ""},
                  lambda f, tz: _text(f, "department_id", "note")),
    ConsoleAction("reassign", "改派", _spec(S, "/reassign"),
                  lambda s: {"department_id": "", "note": ""},
                  lambda f, tz: _text(f, "department_id", "note")),
    ConsoleAction("extension-decision", "延期审批", _spec(S, "/extension/decision"),
                  lambda s: {"approved": True, "note": ""},
                  lambda f, tz: {**_text(f, "note"), "approved": f.get("approved") == "true"}),
    ConsoleAction("co-handlers", "会办", _spec(S, "/co-handlers"),
                  lambda s: {"departments": [], "note": ""},
                  lambda f, tz: {**_text(f, "note"), "due": _local_time(f, "due", tz),
                                 "department_ids": list(f.getlist("department_ids"))}),
    ConsoleAction("waive", "免除协办", _spec(S, "/co-handlers/{department_id}/waive"),
                  _first_pending_co_handler, path_field="department_id"),
    ConsoleAction("second-assignment", "二次交办", _spec(S, "/second-assignment"),
                  lambda s: {"reason": "..", "department_id": None},
                  lambda f, tz: {**_text(f, "reason"),
                                 "department_id": f.get("department_id") or None}),
    ConsoleAction("hand-over", "移交", _spec(S, "/hand-over"),
                  lambda s: {"department_id": "", "reason": ".."},
                  lambda f, tz: _text(f, "department_id", "reason"),
                  labels={"department_id": "承接单位", "reason": "移交原因"}),
    ConsoleAction("return-decision", "退单审核", _spec(S, "/return/decision"),
                  lambda s: {"upheld": True, "note": ""},
                  lambda f, tz: {**_text(f, "note"), "upheld": f.get("upheld") == "true"}),
    ConsoleAction("supervision", "督办", _spec(S, "/supervision"),
                  lambda s: {"note": "", "form": SupervisionForm.REMIND, "due": None,
                             "contribution_due": None, "department_ids": []},
                  _supervision),
    ConsoleAction("callback", "回访", _spec(S, "/callback"),
                  lambda s: {"rating": Rating.SATISFIED, "note": ""},
                  lambda f, tz: _text(f, "rating", "note")),
)  # fmt: skip

CITIZEN_ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction("rating", "评价", _spec(C, "/rating"),
                  lambda s: {"rating": Rating.SATISFIED, "comment": ""},
                  lambda f, tz: _text(f, "rating", "comment")),
    ConsoleAction("supplement", "补充诉求", _spec(C, "/supplement"), lambda s: {"text": ".."},
                  lambda f, tz: _text(f, "text"), labels={"text": "补充内容"}),
    ConsoleAction("withdraw", "撤诉", _spec(C, "/withdraw"), lambda s: {"reason": ""},
                  lambda f, tz: _text(f, "reason")),
)  # fmt: skip

# What the case page says once an action is applied (``?done=<action>``): what was done and,
# for a request, who decides it — before, every action said 操作已完成, which after 延期申请
# read as if the deadline had moved while the request waits for the centre.
DONE: dict[str, str] = {
    "accept": "已签收。", "contact": "已记录联系诉求人。",
    "reply": "已办结答复，待诉求人评价。",
    "return": "已退单：工单改派中，由中心或派单规则另选承办单位。",
    "extension": "延期申请已提交，待中心审批。",
    "raise-level": "已申请提级办：工单改派中，由上级单位承办。",
    "contribution": "协办意见已提交。",
    "dispatch": "已派单。", "reassign": "已改派。", "extension-decision": "延期审批已办理。",
    "co-handlers": "已增加协办单位。", "waive": "已免除协办。", "second-assignment": "已二次交办。",
    "hand-over": "已移交：工单转交承接单位，重新计时。",
    "return-decision": "退单审核已办理。", "supervision": "督办单已下达。",
    "callback": "回访已记录。",
}  # fmt: skip


def done_words(name: str | None) -> str | None:
    """The page's words after action ``name`` was applied (None: no action was)."""
    if not name:
        return None
    return DONE.get(name, "操作已完成。")


BY_NAME = {a.name: a for a in STAFF_ACTIONS}
CITIZEN_BY_NAME = {a.name: a for a in CITIZEN_ACTIONS}


def allowed_actions(
    state: CaseState, principal: Principal, retired: Collection[str] = ()
) -> list[ConsoleAction]:
    """The forms this person may use now. ``retired``: the units out of service — 移交 is
    offered only for a case one of them holds (the case refuses it otherwise)."""
    return [a for a in STAFF_ACTIONS if a.allowed(state, principal)
            and (a.name != "hand-over" or state.department_id in retired)]  # fmt: skip


# Refusals that say what the unit must do (or wait for) first, not that the action is not
# theirs: a form withheld for one of these is named on the page with the reason, so the
# clerk is not left looking for 办结答复 (before, it was simply missing until the citizen
# was contacted or every co-handler had given its contribution, and nothing said why).
NOT_YET = frozenset({"not_contacted", "co_handlers_pending"})


def not_yet(state: CaseState, principal: Principal) -> list[tuple[str, str]]:
    """(the form's label, why it is not offered yet — in Chinese) for each form this person
    will be able to use once something else is done."""
    said = []
    for action in STAFF_ACTIONS:
        try:
            refusal = action.refusal(state, principal)
        except (AttributeError, AssertionError, TypeError):
            continue
        if refusal is None or refusal.code not in NOT_YET:
            continue
        why = glossary.refusal(refusal.code, refusal.reason)
        waiting = [c.department_name for c in state.co_handlers if not c.done]
        if refusal.code == "co_handlers_pending" and waiting:
            why += f"（待{'、'.join(waiting)}提交）"
        said.append((action.label, why))
    return said
