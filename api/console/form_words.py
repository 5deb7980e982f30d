"""输入有误 in Chinese: what pydantic finds wrong with a console form, said by the error's
``type`` (one table for every form of the console: the case pages through
:func:`api.console.web.validation_message`, the administration pages through
:func:`api.console.admin.forms.invalid`).

Clerks and administrators read these, not developers: "String should have at most 100
characters" becomes 最多 100 个字. A type without words here (:data:`FALLBACK`, or one pydantic
adds later) shows pydantic's own message rather than nothing. The API (api/routers) keeps
pydantic's English: its readers are programs and their developers.

tests/test_console_admin.py checks that every type the console's models can raise has words
here or is listed in :data:`FALLBACK` on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic_core import ErrorDetails

from jiesu.case import glossary
from jiesu.case.domain import CONTACT_OPTIONAL

_URL = "不是有效的网址（以 http:// 或 https:// 开头）"
_TIME = "不是有效的时间"
_DAY = "不是有效的日期（年-月-日）"

# pydantic error type → the words, with the error's ``ctx`` values in braces. {expected} of
# enum / literal_error is rewritten by :func:`_choices` first: by the names the form's select
# shows, when the form gives them (a code typed by the person, as in a CSV file, stays a code).
PROBLEMS: dict[str, str] = {
    "missing": "必填",
    "extra_forbidden": "不是此表单的栏目",
    "string_type": "须为文字",
    "string_too_short": "至少 {min_length} 个字",
    "string_too_long": "最多 {max_length} 个字",
    "string_pattern_mismatch": "格式不正确",
    "too_short": "至少 {min_length} 项",
    "too_long": "最多 {max_length} 项",
    "int_type": "须为整数", "int_parsing": "须为整数", "int_from_float": "须为整数",
    "int_parsing_size": "数字过大",
    "float_type": "须为数字", "float_parsing": "须为数字", "finite_number": "须为有限的数字",
    "greater_than": "须大于 {gt}", "greater_than_equal": "不能小于 {ge}",
    "less_than": "须小于 {lt}", "less_than_equal": "不能大于 {le}",
    "bool_type": "须为是或否", "bool_parsing": "须为是或否",
    "enum": "须为以下之一：{expected}", "literal_error": "须为以下之一：{expected}",
    "list_type": "须为列表", "dict_type": "须为 JSON 对象（{{...}}）",
    "model_type": "须为 JSON 对象（{{...}}）", "model_attributes_type": "须为 JSON 对象（{{...}}）",
    "url_type": _URL, "url_parsing": _URL, "url_scheme": _URL, "url_syntax_violation": _URL,
    "url_too_long": "网址过长",
    "datetime_type": _TIME, "datetime_parsing": _TIME, "datetime_from_date_parsing": _TIME,
    "datetime_object_invalid": _TIME, "timezone_aware": "须带时区的时间",
    "date_type": _DAY, "date_parsing": _DAY, "date_from_datetime_parsing": _DAY,
    "date_from_datetime_inexact": _DAY,
    "none_required": "此处不填",
}  # fmt: skip

# Types left to pydantic's own message on purpose: a form posts strings, so these come only
# from a programming slip (a model fed Python objects), never from what a person typed.
FALLBACK = frozenset({"is_instance_of", "union_tag_invalid",
                      "union_tag_not_found"})  # fmt: skip

# Our own validators' sentences (value_error), as the forms say them. A sentence not here is
# shown as the validator wrote it, after 不符合要求 (several name what they found: a line, a
# field, a value).
VALIDATOR_WORDS: dict[str, str] = {
    # jiesu.case.domain SupervisionInput
    "department_ids go with the joint_handling form (会办), and only":
        "督办形式为“会办”时须选择会办单位（展开“会办 / 问责”），其他形式不选会办单位",
    "contribution_due goes with the joint_handling form (会办)":
        "协办意见期限只用于“会办”形式",
    "accountability (问责) needs persons, the reason (note) and the decision":
        "“问责”须填写问责人员、督办意见（问责事由）和问责决定",
    # jiesu.case.domain ComplaintIntake: the console's intake, as the API, takes a phone or an
    # e-mail (or both); neither is refused (the browser cannot say "one of two": no required)
    "a citizen needs a phone number or an e-mail address": "联系电话或电子邮箱：至少填写一项",
    # jiesu.case.domain Email, as new input (INPUT): several addresses are refused
    "one e-mail address only: no comma, semicolon, colon, quote, bracket or backslash":
        "只能填写一个邮箱地址，不能含逗号、分号、冒号、引号、括号或反斜杠",
    # jiesu.case.domain Day, Instant
    "a day is written YYYY-MM-DD": "日期须写作 年-月-日（如 2027-01-01）",
    "expected an ISO 8601 date or datetime, not a number": "须为日期或时间，不能是数字",
    # jiesu.admin.routing RuleIn
    "valid_to must be after valid_from": "失效时间须晚于生效时间",
}  # fmt: skip


# Our validators' sentences that name what they found, by pattern.
VALIDATOR_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"control character (U\+[0-9A-F]{4,6}) is not allowed"),
     "不能含换行等控制字符（{0}）"),
    (re.compile(r"year (-?\d+) is outside the supported range (\d+)\.\.(\d+)"),
     "年份 {0} 不在 {1}–{2} 之间"),
)  # fmt: skip


def _validator_said(said: str) -> str:
    """One of our validators' sentences in Chinese; 不符合要求 and the sentence when unknown."""
    if said in VALIDATOR_WORDS:
        return VALIDATOR_WORDS[said]
    for pattern, words in VALIDATOR_PATTERNS:
        if found := pattern.fullmatch(said):
            return words.format(*found.groups())
    return f"不符合要求 — {said}"


def kind(e: ErrorDetails) -> str:
    """The error's type; a text's length checked after a validator (a Line's: pydantic says
    too_long, as of a list) is a string's, counted in characters (个字), not items (项)."""
    if e["type"] in ("too_long", "too_short") and isinstance(e.get("input"), str):
        return "string_" + e["type"]
    return str(e["type"])


def _choices(expected: Any, names: Mapping[str, str] | None = None) -> str:
    """pydantic's "'a', 'b' or 'c'" as a、b、c — each by its name in ``names`` (code → what
    the form's select shows), when given."""
    codes = re.findall(r"'([^']*)'", str(expected))
    return "、".join((names or {}).get(c, c) for c in codes) or str(expected)


def problem(e: ErrorDetails, names: Mapping[str, str] | None = None) -> str:
    """What is wrong with one field, in Chinese (pydantic's message for a type without words);
    ``names``: the field's choices as its select shows them (code → name), for 须为以下之一."""
    what = kind(e)
    ctx = dict(e.get("ctx") or {})
    if what == "string_too_short" and ctx.get("min_length") == 1:
        return "必填"  # an empty text field: the person left it out
    if what == "value_error":
        return _validator_said(str(e["msg"]).removeprefix("Value error, "))
    template = PROBLEMS.get(what)
    if template is None:
        return str(e["msg"])
    if "expected" in ctx:
        ctx["expected"] = _choices(ctx["expected"], names)
    return template.format(**ctx)


def contact_hint() -> str:
    """The intake form's hint under 联系电话 and 电子邮箱: ComplaintIntake's rule, the channels
    that need no contact named as the form's 受理渠道 names them. Before, it said one of the two
    was needed whatever the channel, though the form (as the API) files an APP report with
    neither."""
    optional = "、".join(glossary.CHANNEL[c] for c in sorted(CONTACT_OPTIONAL))
    return (f"联系电话、电子邮箱至少填写一项；受理渠道为 {optional} 的可都不填"
            "（无法回访，也收不到办件查询链接和答复通知，诉求人凭工单号查询）。")
