"""What every console screen shares: the templates and their filters, the signed-in staff
member, the CSRF check of each form, and pages for errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup
from pydantic import ValidationError
from starlette.datastructures import FormData

from api.console import form_words, staff
from api.deps import Pool
from api.errors import ApiError
from jiesu import bidi
from jiesu.case import glossary
from jiesu.case.domain import (
    Channel,
    DeadlineKind,
    EscalationLevel,
    EscalationTrigger,
    EventKind,
    Rating,
    ReplyOutcome,
    Resolution,
    Role,
    Status,
    SupervisionForm,
    Urgency,
)
from jiesu.notify.links import FOLLOW_UP_PATH

HERE = Path(__file__).parent
STATIC = HERE / "static"
PREFIX = "/console"

templates = Jinja2Templates(directory=HERE / "templates")


def local_time(value: datetime | str | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A moment in the hotline's time zone (JIESU_TIMEZONE), as clerks read it."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(_TZ[0]).strftime(fmt)


_TZ: list[ZoneInfo] = [ZoneInfo("Asia/Shanghai")]  # set from the settings at mount


def set_timezone(name: str) -> None:
    _TZ[0] = ZoneInfo(name)


def _iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value else ""


_TERM_FILTERS = {
    "status_zh": Status, "urgency_zh": Urgency, "channel_zh": Channel, "role_zh": Role,
    "rating_zh": Rating, "outcome_zh": ReplyOutcome, "resolution_zh": Resolution,
    "deadline_zh": DeadlineKind, "level_zh": EscalationLevel, "trigger_zh": EscalationTrigger,
    "event_zh": EventKind,
}  # fmt: skip

for _name, _enum in _TERM_FILTERS.items():
    templates.env.filters[_name] = lambda v, e=_enum: glossary.term(e, v)
templates.env.filters["local"] = local_time
templates.env.filters["iso"] = _iso
templates.env.filters["tojson_compact"] = lambda v: json.dumps(v, ensure_ascii=False, default=str)
templates.env.globals["glossary"] = glossary


def shown(value: Any) -> Any:
    """Every value a template prints (Jinja's ``finalize``, before autoescape): the
    bidirectional controls of any text shown as their escapes (jiesu.bidi, the audit CLI's
    rule). A citizen's title, description or address, a reply, a note or a reason comes from
    outside; a U+202E in it made the rest read backwards — a phone number, an amount, a case
    number — in the timeline and the case page. Text and attributes alike, so one place
    catches every template; markup stays markup (the escapes are plain ASCII)."""
    if isinstance(value, str):
        plain = bidi.visible(value)
        return Markup(plain) if isinstance(value, Markup) else plain
    return value


def isolated(value: Any) -> Markup:
    """``<bdi>``: a user-supplied text as an island of its own direction, so right-to-left
    letters in it (Arabic, Uyghur, Hebrew) cannot reorder the label, digits or punctuation
    around it. Its controls are shown by :func:`shown`."""
    return Markup("<bdi>{}</bdi>").format("" if value is None else value)


templates.env.finalize = shown
templates.env.filters["bdi"] = isolated


def file_size(size: int) -> str:
    """A file's size as a person reads it: 812 字节, 1.2 KB, 3.4 MB."""
    if size < 1024:
        return f"{size} 字节"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


templates.env.filters["file_size"] = file_size
templates.env.globals["prefix"] = PREFIX
# a citizen's pages (/my/<token>) link nowhere into the staff console: its home is a login
templates.env.globals["follow_up_path"] = FOLLOW_UP_PATH
templates.env.globals["new_key"] = lambda: uuid.uuid4().hex  # a form's Idempotency-Key


@pass_context
def typed(context: Context, form: str) -> Mapping[str, Any]:
    """What the person typed in ``form``, when it is the one the server refused (表单被退回):
    a page showing a refusal gets the form's name (``failed``) and what was sent (``posted``),
    and fills that form with it again — nothing has to be typed twice. Every other form of the
    page starts as usual (an empty mapping: each field its own default)."""
    posted = context.get("posted")
    if posted is None or context.get("failed") != form:
        return {}
    return posted


templates.env.globals["typed"] = typed


# Stricter than the API's own headers (api/headers.py keeps a policy a response sets): no
# script but the console's own files, no form sent elsewhere, no frame.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)


def page(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["Content-Security-Policy"] = CSP
    return response


class SignInRequired(Exception):
    """No valid session: the browser goes to the login page."""


async def _session(request: Request, pool: Pool) -> staff.StaffSession:
    found = await staff.resolve(pool, request.cookies.get(staff.COOKIE))
    if found is None:
        raise SignInRequired()
    return found


Session = Annotated[staff.StaffSession, Depends(_session)]


def require_roles(*roles: Role) -> Any:
    """The signed-in staff member of a screen for these roles (and admins); anyone else is
    told 403. Use as the type of a handler's parameter."""
    allowed = {*roles, Role.ADMIN}

    async def check(session: Session) -> staff.StaffSession:
        if session.principal.role not in allowed:
            raise ApiError(403, "forbidden", "您的岗位不能使用此页面")
        return session

    return Annotated[staff.StaffSession, Depends(check)]


async def form_of(request: Request, session: staff.StaffSession) -> FormData:
    """The posted form, after its CSRF token was checked against the session's: a form
    posted from another site (which cannot read the token) is refused 403."""
    form = await request.form()
    if not session.csrf_ok(str(form.get(staff.CSRF_FIELD) or "")):
        raise ApiError(403, "csrf_failed", "表单已过期或来自其他网站，请刷新页面后重试")
    return form


# What the console's forms call their fields (a model's field path → the form's label).
FIELD_LABELS = {
    "title": "标题", "description": "诉求描述", "category_id": "诉求类别", "grid_id": "所在网格",
    "address": "详细地址", "citizen.name": "姓名", "citizen.phone": "联系电话",
    "citizen.email": "电子邮箱", "text": "内容", "evidence": "证据链接", "reason": "理由",
    "reasons": "延期理由", "measures": "已采取措施", "promised_finish": "承诺办结时间",
    "note": "说明", "due": "期限", "contribution_due": "协办意见期限",
    "department_ids": "协办单位", "department_id": "承办单位", "persons": "问责人员",
    "decision": "问责决定", "rating": "评价", "comment": "意见", "outcome": "办理结果",
    "channel": "受理渠道", "urgency": "紧急程度", "form": "督办形式",
}  # fmt: skip

# The console's selects of the case's vocabulary (a model's field path → its enum): each
# shows the glossary's terms (glossary.TERMS), and a refused value is said by them too.
FIELD_TERMS: dict[str, type] = {
    "channel": Channel, "urgency": Urgency, "outcome": ReplyOutcome, "rating": Rating,
    "form": SupervisionForm,
}  # fmt: skip


def choice_names(path: str) -> dict[str, str] | None:
    """The names the select of the field at ``path`` shows (code → term); None: no select."""
    enum = FIELD_TERMS.get(path)
    return {m.value: term for m, term in glossary.TERMS[enum].items()} if enum else None


def field_label(path: str, labels: Mapping[str, str] | None = None) -> str | None:
    """What a form calls the field at ``path``: the form's own ``labels`` (a reply's text is
    答复内容), else the console's general label; None: no label."""
    return (labels or {}).get(path) or FIELD_LABELS.get(path)


def validation_message(err: ValidationError, labels: Mapping[str, str] | None = None) -> str:
    """What is wrong with a form, in the words of its labels and selects: 标题：至少 2 个字,
    办理结果：须为以下之一：已解决、已解释说明. ``labels``: the form's own, where they are not
    the general ones (:func:`field_label`)."""
    parts = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        where = field_label(".".join(loc), labels) or (field_label(loc[0], labels) if loc else "")
        if where and len(loc) > 1 and loc[-1].isdigit():
            where += f"第 {int(loc[-1]) + 1} 行"
        where = where or ".".join(loc)
        problem = form_words.problem(e, choice_names(".".join(loc)))
        parts.append(f"{where}：{problem}" if where else problem)
    return "输入有误 — " + "；".join(parts)


def invalid_field(err: ValidationError) -> str | None:
    """The form field of the first error (citizen.name → citizen_name), to put the cursor in."""
    for e in err.errors():
        names = [str(p) for p in e["loc"] if not isinstance(p, int)]
        if names:
            return "_".join(names)
    return None


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return page(request, "error.html", {"status": status, "message": message}, status)
