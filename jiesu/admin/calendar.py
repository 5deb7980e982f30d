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
from datetime import date
from typing import Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

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


def parse_csv(text: str, year: int) -> Notice:
    """The file as a notice of ``year``; ValueError naming the line of the first problem."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    if reader.fieldnames is None or not {"date", "kind"} <= set(reader.fieldnames):
        raise ValueError("the first line must be the header: date,kind,note")
    days = []
    for n, row in enumerate(reader, start=2):
        kind = (row.get("kind") or "").strip()
        if kind not in KINDS:
            raise ValueError(f"line {n}: kind must be holiday or workday, not {kind!r}")
        try:
            day = date.fromisoformat((row.get("date") or "").strip())
        except ValueError as exc:
            raise ValueError(f"line {n}: {exc}") from exc
        days.append({"day": day, "kind": kind, "note": (row.get("note") or "").strip()})
    return Notice.model_validate({"year": year, "days": days})


def check(notice: Notice) -> None:
    seen: set[date] = set()
    for d in notice.days:
        if d.day.year != notice.year:
            raise invalid("invalid_calendar", f"{d.day} is not in {notice.year}")
        if d.day in seen:
            raise invalid("invalid_calendar", f"{d.day} is listed twice")
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
