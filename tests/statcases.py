"""Hand-made read-model rows for the statistics and report tests.

Rows go straight into ``cases`` (no workflow): every figure of a data set is known. Each test
uses its own far-away period so that no other test's cases can disturb its figures.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

TZ = ZoneInfo("Asia/Shanghai")
_seq = itertools.count(1)


def local(day: date, hour: int = 10, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), TZ)


def case_row(
    received: datetime,
    *,
    department_id: str = "water",
    urgency: str = "general",
    category_id: str = "sewer_blockage",
    grid_id: str = "G-QH-01-01-1",
    channel: str = "hotline",
    status: str = "closed",
    accepted: timedelta | None = timedelta(hours=1),
    contacted: timedelta | None = None,
    replied: timedelta | None = timedelta(hours=20),
    rating: str | None = "satisfied",
    resolved: bool | None = None,
    handled_level: str | None = "county",
    breaches: tuple[str, ...] = (),
    **counts: int,
) -> dict[str, Any]:
    """A case received at ``received``; times are offsets from it. Deadlines follow the SLA
    policy (urgent: accept 30 min, contact 1 h, finish 24 h; general: accept 4 h, finish 48 h).
    ``resolved`` defaults to what the projection would store for a closed case."""
    urgent = urgency == "urgent"
    closed = status == "closed"
    row = {
        "case_id": f"ST{received:%Y%m%d}-{next(_seq):06d}",
        "version": 1,
        "status": status,
        "title": "Hand-made case",
        "category_id": category_id,
        "grid_id": grid_id,
        "channel": channel,
        "urgency": urgency,
        "department_id": department_id,
        "received_at": received,
        "accept_deadline": received + (timedelta(minutes=30) if urgent else timedelta(hours=4)),
        "contact_deadline": received + timedelta(hours=1) if urgent else None,
        "finish_deadline": received + (timedelta(hours=24) if urgent else timedelta(hours=48)),
        "accepted_at": received + accepted if accepted is not None else None,
        "contacted_at": received + contacted if contacted is not None else None,
        "replied_at": received + replied if replied is not None else None,
        "closed_at": received + timedelta(days=3) if closed else None,
        "rating": rating if closed else None,
        "resolution": ("rated" if rating else "not_rated") if closed else None,
        "breaches": list(breaches),
        "state": {},
        "handled_level": handled_level if replied is not None else None,
        "resolved": (rating != "unsatisfied" if resolved is None else resolved) if closed else None,
        "repeat_count": counts.get("repeat_count", 0),
        "return_count": counts.get("return_count", 0),
        "extension_count": counts.get("extension_count", 0),
    }
    return row


async def insert_cases(pool: asyncpg.Pool, rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    await pool.executemany(
        f"INSERT INTO cases ({', '.join(columns)}) VALUES "
        f"({', '.join(f'${i}' for i in range(1, len(columns) + 1))})",
        [tuple(r[c] for c in columns) for r in rows],
    )
