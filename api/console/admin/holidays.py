"""节假日: a year's calendar overrides, and the year's holiday notice loaded from its CSV file
(docs/administration.md) in the API's two steps — validate and show the diff (``dry_run``),
then apply the same file — through jiesu.admin.calendar (parse_csv, load)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from api.console.admin.forms import FormErrors, invalid, refused, said, text
from api.console.web import PREFIX, form_of, page, redirect, require_roles
from api.deps import AppSettings, Pool
from jiesu.admin import calendar
from jiesu.admin.errors import AdminRefused

router = APIRouter()
Admin = require_roles()  # admins only
MAX_FILE = 64 * 1024  # a year's notice is a few hundred bytes; 366 days fit many times over
Year = Annotated[int | None, Query(ge=2000, le=2100)]
# The notice form's labels (admin_calendar.html shows them; refusals name fields by them):
# the notice's days are the file's lines.
LABELS = {"year": "年份", "days": "CSV 文件", "day": "date", "kind": "kind", "note": "note"}


def _this_year(settings: AppSettings) -> int:
    return datetime.now(UTC).astimezone(ZoneInfo(settings.timezone)).year


async def _page(
    request: Request, pool: Pool, session: object, year: int, *, csv_text: str = "",
    diff: calendar.CalendarDiff | None = None, errors: FormErrors | None = None,
    done: str | None = None,
) -> HTMLResponse:  # fmt: skip
    context = {"session": session, "year": year, "days": await calendar.list_days(pool, year),
               "csv_text": csv_text, "diff": diff, "errors": (errors or FormErrors()).messages,
               "done": done, "labels": LABELS}  # fmt: skip
    return page(request, "admin_calendar.html", context, errors.status if errors else 200)


@router.get("/admin/calendar", response_class=HTMLResponse)
async def overrides(
    request: Request, pool: Pool, session: Admin, settings: AppSettings,
    year: Year = None, done: str | None = None,
) -> Response:  # fmt: skip
    return await _page(request, pool, session, year or _this_year(settings), done=done)


async def _csv_of(form: FormData) -> str:
    """The notice's text: the uploaded file (UTF-8, a BOM as spreadsheets write it is
    dropped), else the text pasted or carried from the diff page. ValueError when unreadable."""
    upload = form.get("file")
    if isinstance(upload, UploadFile) and upload.filename:
        raw = await upload.read(MAX_FILE + 1)
        if len(raw) > MAX_FILE:
            raise ValueError(f"文件过大 — the file is larger than {MAX_FILE // 1024} KB")
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValueError(f"文件不是 UTF-8 编码 — {exc}") from exc
    return str(form.get("csv_text") or "")


def _line_refused(exc: calendar.NoticeLine, year: int) -> str:
    """The file's first wrong line, by its number in the file: CSV 文件第 5 行 kind：须为…"""
    where = f"{LABELS['days']}第 {exc.line} 行"
    if exc.reason == "unreadable":
        return f"{where}：无法按 CSV 读取（单元格过长？）"
    if exc.reason == "header":
        return f"{where}：须为表头 date,kind,note"
    if exc.reason == "empty":
        return f"{where}是表头，其后没有列出任何日期"
    if exc.reason == "other_year":
        return f"{where} date：{exc.day} 不在 {year} 年"
    if exc.reason == "twice":
        return f"{where} date：{exc.day} 已在第 {exc.first} 行列出"
    return "；".join(f"{where} {said(e, LABELS)}" for e in exc.errors or [])


def _year(form: FormData) -> int | None:
    raw = text(form, "year")
    return int(raw) if raw.isdigit() and 2000 <= int(raw) <= 2100 else None


async def _load(
    request: Request, pool: Pool, session: Admin, settings: AppSettings, *, apply: bool
) -> Response:
    form = await form_of(request, session)
    year = _year(form)
    errors = FormErrors()
    csv_text = ""
    try:
        csv_text = await _csv_of(form)
    except ValueError as exc:
        errors.add("file", str(exc))
    if year is None:
        errors.add("year", "年份无效 — a year from 2000 to 2100")
    if errors or year is None:
        return await _page(request, pool, session, year or _this_year(settings),
                           csv_text=csv_text, errors=errors)  # fmt: skip
    try:
        notice = calendar.parse_csv(csv_text, year)
        diff = await calendar.load(pool, session.principal.actor, notice, apply=apply)
    except ValidationError as err:
        errors = invalid(err, LABELS, field_of={"days": "file", "year": "year"})
    except AdminRefused as exc:
        errors = refused(exc)
    except calendar.NoticeLine as exc:
        errors = FormErrors().add("file", f"输入有误 — {_line_refused(exc, year)}")
    else:
        if apply:
            return redirect(f"{PREFIX}/admin/calendar?year={year}&done={len(diff.changes)}")
        return await _page(request, pool, session, year, csv_text=csv_text, diff=diff)
    return await _page(request, pool, session, year, csv_text=csv_text, errors=errors)


@router.post("/admin/calendar/validate", response_class=HTMLResponse)
async def validate(
    request: Request, pool: Pool, session: Admin, settings: AppSettings
) -> Response:
    """校验: the file checked and the changes it would make shown; nothing changed."""
    return await _load(request, pool, session, settings, apply=False)


@router.post("/admin/calendar/apply", response_class=HTMLResponse)
async def apply(request: Request, pool: Pool, session: Admin, settings: AppSettings) -> Response:
    """应用: the same file, validated again and applied (one change-log entry); applying it
    twice changes nothing more."""
    return await _load(request, pool, session, settings, apply=True)
