"""What the administration screens share: reading a posted form into the service's own input
models, and turning the service's refusals into messages next to the field they are about
(Chinese first, the service's English words after, as the rest of the console does; a
model's validation errors wholly in Chinese, by the form's labels and api.console.form_words),
with the status the API answers (422 / 404 / 409)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from starlette.datastructures import FormData

from api.console import form_words
from api.routers.administration import REFUSAL_STATUS
from jiesu.admin.errors import AdminRefused

GENERAL = ""  # the key of a message that is about the whole form

# code → (the field it is about, in Chinese). Codes ending in _in_use / _not_found are per
# entity (department_in_use, rule_not_found...) and are matched by their ending.
_CODES: dict[str, tuple[str, str]] = {
    "invalid_parent": ("parent_id", "上级不符合层级（县 → 乡镇 → 社区 → 网格）"),
    "invalid_boundary": ("boundary", "边界无效"),
    "unknown_reference": (GENERAL, "引用的记录不存在"),
    "invalid_record": (GENERAL, "记录无效"),
    "invalid_validity": ("valid_to", "生效时间有误"),
    "rule_retired": (GENERAL, "该规则已失效"),
    "invalid_calendar": ("file", "节假日文件有误"),
    "invalid_policy_value": ("value", "取值超出允许范围"),
    "unknown_policy": (GENERAL, "没有此参数"),
    "department_in_service": (GENERAL, "该单位仍在用：先停用，再移交其在办工单"),
    "department_retired": (GENERAL, "所选单位已停用"),
    "same_department": (GENERAL, "请选择承接其职能的另一个单位"),
    "centre_not_assignee": (GENERAL, "热线中心不承办工单，请选择承接单位"),
    "unknown_department": (GENERAL, "所选单位不存在"),
    "blank_text": (GENERAL, "移交原因不能为空"),
    "version_conflict": (GENERAL, "您打开后该记录已被他人修改，您的修改未保存：请点“修改”重新打开，"
                                  "在最新内容上再改"),
}
_ENDINGS = {"_in_use": "仍被引用，不能删除", "_not_found": "记录不存在"}


@dataclass
class FormErrors:
    """Messages by field name (GENERAL: the whole form) and the status to answer."""

    messages: dict[str, str] = field(default_factory=dict)
    status: int = 422

    def __bool__(self) -> bool:
        return bool(self.messages)

    def add(self, name: str, message: str) -> FormErrors:
        self.messages[name] = f"{self.messages[name]}；{message}" if name in self.messages \
            else message  # fmt: skip
        return self


def refused(exc: AdminRefused, *, field_of: dict[str, str] | None = None) -> FormErrors:
    """The service's refusal as a message next to its field; ``field_of`` renames a code's
    field for one form (e.g. invalid_validity is about ``at`` when retiring)."""
    name, zh = _CODES.get(exc.code, (GENERAL, ""))
    for ending, words in _ENDINGS.items():
        if exc.code.endswith(ending):
            zh = words
    name = (field_of or {}).get(exc.code, name)
    text = f"{zh} — {exc.message}" if zh else exc.message
    return FormErrors(status=REFUSAL_STATUS[exc.kind]).add(name, text)


# A select's choices by field name: code → the name the select shows (a refused value's
# message lists these names, not the codes).
Choices = Mapping[str, Mapping[str, str]]


def invalid(
    err: ValidationError, labels: Mapping[str, str], *, field_of: dict[str, str] | None = None,
    choices: Choices | None = None,
) -> FormErrors:  # fmt: skip
    """A model's validation errors, each next to the field it names, in the words of the
    form's ``labels`` (field name → the label the form shows) and of its selects' ``choices``:
    输入有误 — 优先级：不能大于 1000, 输入有误 — 类型：须为以下之一：市、县…"""
    errors = FormErrors()
    for e in err.errors():
        where = str(e["loc"][0]) if e["loc"] else GENERAL
        errors.add((field_of or {}).get(where, where),
                   f"输入有误 — {said(e, labels, choices)}")
    return errors


def said(e: ErrorDetails, labels: Mapping[str, str], choices: Choices | None = None) -> str:
    """One validation error in the form's words: 优先级：不能大于 1000. A field with a
    select (``choices`` by the error's path) is said by the names the select shows; a value
    the person typed themselves (the ``kind`` column of a holiday CSV) keeps its codes."""
    names = (choices or {}).get(".".join(str(p) for p in e["loc"]))
    return f"{_named(e['loc'], labels)}{form_words.problem(e, names)}"


def _named(loc: tuple[int | str, ...], labels: Mapping[str, str]) -> str:
    """Where in the form, by its labels: 优先级：, a day of a notice 节假日文件第 3 条 note：
    (a name without a label as the model says it); nothing for the whole form."""
    if not loc:
        return ""
    inner = "".join(f"第 {p + 1} 条" if isinstance(p, int) else f" {labels.get(str(p), p)}"
                    for p in loc[1:])  # fmt: skip
    return f"{labels.get(str(loc[0]), loc[0])}{inner}："


def text(form: FormData, name: str) -> str:
    return str(form.get(name) or "").strip()


def optional(form: FormData, name: str) -> str | None:
    """An optional field: empty means none."""
    return text(form, name) or None


def local_time(form: FormData, name: str, tz: ZoneInfo) -> Any:
    """A ``datetime-local`` field is the hotline's local time (JIESU_TIMEZONE); empty: None;
    a malformed one is handed on as it is, for the model's validation to name."""
    raw = text(form, name)
    if not raw:
        return None
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        return raw
    return at.replace(tzinfo=at.tzinfo or tz)


def as_local_input(value: datetime | None, tz: ZoneInfo) -> str:
    """A moment as the value of a ``datetime-local`` input."""
    return "" if value is None else value.astimezone(tz).strftime("%Y-%m-%dT%H:%M")
