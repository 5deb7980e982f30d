"""Calendar overrides from the year's official holiday notice (国务院办公厅关于某年部分节假日
安排的通知): validate the file, show what would change, apply it.

The file is CSV, UTF-8, one day per line (``#`` starts a comment line)::

    date,kind,note
    2027-01-01,holiday,元旦
    2027-02-07,workday,春节调休上班

``kind`` is ``holiday`` (a day off, whatever weekday) or ``workday`` (a working day, e.g. a
weekend day swapped into one, 调休). Applying the notice of a year makes the year's overrides
exactly the file's days: days of that year not in the file are no longer overridden (they
follow the ``holidays`` package's China calendar again). One change-log entry per apply.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Container
from datetime import date
from typing import Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from jiesu.admin import changes
from jiesu.admin.errors import invalid
from jiesu.case.domain import Actor, Day, Line

ENTITY = "calendar"
Kind = Literal["holiday", "workday"]
KINDS: dict[str, bool] = {"holiday": False, "workday": True}  # kind → is_working
MAX_DAYS = 366


class CalendarDay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    day: Day
    kind: Kind
    note: Line = Field(default="", max_length=200)


class Notice(BaseModel):
    """One year's schedule: every override of that year."""

    model_config = ConfigDict(extra="forbid")

    year: int = Field(ge=2000, le=2100)
    days: list[CalendarDay] = Field(max_length=MAX_DAYS)


class DayChange(BaseModel):
    day: date
    before: Kind | None
    after: Kind | None
    note: str


class CalendarDiff(BaseModel):
    year: int
    changes: list[DayChange]
    applied: bool


class NoticeLine(ValueError):
    """A line of the notice's file refused, named by its number in the file as an editor shows
    it (comment and blank lines counted). ``errors`` are the day's validation errors;
    ``reason`` is ``header``, ``other_year`` or ``twice`` when the day itself is wrong,
    ``unreadable`` when the line is not CSV the csv module reads, ``empty`` (the header's
    line) when no day follows it: a year's overrides are cleared through the API only."""

    def __init__(self, line: int, said: str, *, errors: list[ErrorDetails] | None = None,
                 reason: str = "invalid", day: date | None = None,
                 first: int | None = None) -> None:  # fmt: skip
        super().__init__(f"line {line}: {said}")
        self.line, self.errors, self.reason, self.day, self.first = line, errors, reason, day, first


COLUMNS = {"day": "date"}  # CalendarDay's field → the file's column, where they differ
REFUSALS = {"other_year": "{day} is not in {year}", "twice": "{day} is listed twice"}


def _refusal(day: date, year: int, seen: Container[date]) -> str | None:
    """Why a day that parsed cannot be in the notice of ``year`` (a key of ``REFUSALS``)."""
    if day.year != year:
        return "other_year"
    return "twice" if day in seen else None


def _rows(text: str) -> list[tuple[int, list[str]]]:
    """The file's rows, each with the line it starts on, without blank and ``#`` lines. Lines
    may end in \n, \r\n or \r (a spreadsheet's "CSV (Macintosh)"); NoticeLine ``unreadable``
    when the csv module cannot read a row (a cell longer than its field limit)."""
    reader = csv.reader(io.StringIO(text, newline=None))  # universal newlines
    rows, start = [], 1
    try:
        for row in reader:
            if any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#"):
                rows.append((start, row))
            start = reader.line_num + 1  # a quoted cell may span lines
    except csv.Error as exc:
        raise NoticeLine(start, f"not readable as CSV: {exc}", reason="unreadable") from exc
    return rows


def _day(line: int, fields: dict[str, str]) -> CalendarDay:
    try:
        return CalendarDay.model_validate({"day": fields.get("date", ""),
                                           "kind": fields.get("kind", ""),
                                           "note": fields.get("note", "")})  # fmt: skip
    except ValidationError as err:
        said = "; ".join(f"{'.'.join(COLUMNS.get(str(p), str(p)) for p in e['loc'])}: {e['msg']}"
                         for e in err.errors())  # fmt: skip
        raise NoticeLine(line, said, errors=err.errors()) from err


def parse_csv(text: str, year: int) -> Notice:
    """The file as a notice of ``year``; :class:`NoticeLine` naming the file's line of the first
    problem (a day that does not parse, is not in ``year`` or is listed twice)."""
    rows = _rows(text.removeprefix("\ufeff"))  # Excel's "CSV UTF-8" starts with a BOM
    header = [cell.strip() for cell in rows[0][1]] if rows else []
    if not {"date", "kind"} <= set(header):
        raise NoticeLine(rows[0][0] if rows else 1,
                         "the first line must be the header: date,kind,note", reason="header")
    days: list[CalendarDay] = []
    seen: dict[date, int] = {}
    for line, row in rows[1:]:
        day = _day(line, {name: cell.strip() for name, cell in zip(header, row, strict=False)})
        reason = _refusal(day.day, year, seen)
        if reason is not None:
            said = REFUSALS[reason].format(day=day.day, year=year)
            if reason == "twice":
                said += f" (first on line {seen[day.day]})"
            raise NoticeLine(line, said, reason=reason, day=day.day, first=seen.get(day.day))
        seen[day.day] = line
        days.append(day)
    if not days:  # applied, it would drop every override of the year: a slip, not a notice
        raise NoticeLine(rows[0][0], "no day follows the header", reason="empty")
    return Notice.model_validate({"year": year, "days": days})


def check(notice: Notice) -> None:
    """The notice's days are of its year, each once (a notice sent as JSON; a file's lines are
    checked by :func:`parse_csv`, which names them)."""
    seen: set[date] = set()
    for d in notice.days:
        reason = _refusal(d.day, notice.year, seen)
        if reason is not None:
            raise invalid("invalid_calendar", REFUSALS[reason].format(day=d.day, year=notice.year))
        seen.add(d.day)


def _kind(is_working: bool) -> Kind:
    return "workday" if is_working else "holiday"


async def _current(
    conn: asyncpg.Pool | asyncpg.Connection, year: int
) -> dict[date, tuple[Kind, str]]:
    rows = await conn.fetch(
        "SELECT day, is_working, note FROM calendar_overrides"
        " WHERE day >= $1 AND day < $2 ORDER BY day",
        date(year, 1, 1), date(year + 1, 1, 1),
    )  # fmt: skip
    return {r["day"]: (_kind(r["is_working"]), r["note"]) for r in rows}


def _diff(current: dict[date, tuple[Kind, str]], notice: Notice) -> list[DayChange]:
    wanted = {d.day: (d.kind, d.note) for d in notice.days}
    out = []
    for day in sorted(set(current) | set(wanted)):
        before, after = current.get(day), wanted.get(day)
        if before != after:
            note = (after or before or ("holiday", ""))[1]
            out.append(DayChange(day=day, before=before and before[0],
                                 after=after and after[0], note=note))
    return out


async def load(pool: asyncpg.Pool, actor: Actor, notice: Notice, *, apply: bool) -> CalendarDiff:
    """The changes the notice makes to its year's overrides; made only when ``apply``."""
    check(notice)
    async with pool.acquire() as conn, conn.transaction():
        # One loader of a year at a time: the diff shown is the diff applied.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('calendar'), $1)", notice.year)
        current = await _current(conn, notice.year)
        diff = _diff(current, notice)
        if not apply or not diff:
            return CalendarDiff(year=notice.year, changes=diff, applied=False)
        await conn.execute(
            "DELETE FROM calendar_overrides WHERE day >= $1 AND day < $2",
            date(notice.year, 1, 1), date(notice.year + 1, 1, 1),
        )  # fmt: skip
        await conn.executemany(
            "INSERT INTO calendar_overrides (day, is_working, note) VALUES ($1, $2, $3)",
            [(d.day, KINDS[d.kind], d.note) for d in notice.days],
        )
        before = {str(day): kind for day, (kind, _) in current.items()}
        after = {str(d.day): d.kind for d in notice.days}
        await changes.record(conn, actor, ENTITY, str(notice.year), "update", before, after)
    return CalendarDiff(year=notice.year, changes=diff, applied=True)


async def list_days(db: asyncpg.Pool | asyncpg.Connection, year: int) -> list[CalendarDay]:
    current = await _current(db, year)
    return [CalendarDay(day=d, kind=k, note=n) for d, (k, n) in current.items()]
