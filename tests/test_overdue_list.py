"""超时 on the overdue list from the deadline on, whether or not the breach is recorded yet.

A breach is recorded when the workflow task of its timer runs; under a storm of deadlines
(bench/scale.py: thousands due in the same minute) that is seconds to minutes late. The
supervisors' overdue list (the case list's ``overdue`` filter and flag, the console's board:
jiesu.case.sla.late_sql / is_late) reads the deadlines against the clock instead, so it is
exact at the deadline. The rows here have no breach recorded at all: what the read model
holds between a deadline and the task that records its breach.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import SUPERVISOR
from statcases import case_row, insert_cases

from jiesu.case.domain import DeadlineKind
from jiesu.case.sla import QUEUE_WAIT, is_late, late_sql, late_steps

OPEN = {"replied": None, "rating": None}


def _rows(now: datetime) -> dict[str, dict[str, Any]]:
    """General cases: accept within 4 h, finish within 48 h; urgent: accept 30 min, contact
    1 h, finish 24 h (tests/statcases.py follows the SLA policy)."""
    five_hours_ago = now - timedelta(hours=5)
    return {
        "not accepted, past its accept deadline": case_row(
            five_hours_ago, status="assigned", accepted=None, **OPEN),
        "not contacted, past its contact deadline": case_row(
            now - timedelta(hours=2), urgency="urgent", status="handling",
            accepted=timedelta(minutes=10), contacted=None, **OPEN),
        "accepted in time": case_row(
            five_hours_ago + timedelta(seconds=1), status="handling", accepted=timedelta(hours=1),
            **OPEN),
        "not accepted, deadline ahead": case_row(
            now - timedelta(minutes=5), status="assigned", accepted=None, **OPEN),
        # returned (退单) and being reassigned: its unit can no longer act, the next round has
        # deadlines of its own (lean-case-v11) — before, listed late until reassigned
        "returned, reassigning past its contact deadline": case_row(
            now - timedelta(hours=2, minutes=1), urgency="urgent", status="reassigning",
            accepted=timedelta(minutes=10), contacted=None, **OPEN),
    }  # fmt: skip


LATE = {"not accepted, past its accept deadline", "not contacted, past its contact deadline"}


@pytest.fixture
async def rows(pool: asyncpg.Pool) -> AsyncIterator[dict[str, dict[str, Any]]]:
    made = _rows(datetime.now(UTC))
    await insert_cases(pool, list(made.values()))
    yield made
    await pool.execute("DELETE FROM cases WHERE case_id = ANY($1)",
                       [r["case_id"] for r in made.values()])  # fmt: skip


async def test_the_overdue_list_shows_a_missed_deadline_before_its_breach_is_recorded(
    pool: asyncpg.Pool, api: httpx.AsyncClient, rows: dict[str, dict[str, Any]]
) -> None:
    ids = [r["case_id"] for r in rows.values()]
    now = datetime.now(UTC)
    # the console's 超时 board and the list's filter (SQL)
    listed = await pool.fetch(
        f"SELECT case_id FROM cases WHERE case_id = ANY($1) AND {late_sql('$2')}", ids, now
    )
    late_ids = {rows[name]["case_id"] for name in LATE}
    assert {r["case_id"] for r in listed} == late_ids
    on_time = await pool.fetch(
        f"SELECT case_id FROM cases WHERE case_id = ANY($1) AND NOT {late_sql('$2')}", ids, now
    )
    assert {r["case_id"] for r in on_time} == set(ids) - late_ids
    # a listed row's flag (Python), on the row as the list fetches it
    for name, row in rows.items():
        assert is_late(row, now) is (name in LATE), name
        # what the board says it is late with (超时环节): something exactly when it is late
        assert bool(late_steps(row, now)) is (name in LATE), name
    # through the API: the list's filter and flag agree
    for name, row in rows.items():
        window = {"received_from": row["received_at"].isoformat(),
                  "received_to": (row["received_at"] + timedelta(milliseconds=1)).isoformat()}
        for overdue in ("true", "false"):
            response = await api.get("/api/v1/complaints", headers=SUPERVISOR,
                                     params={**window, "overdue": overdue})  # fmt: skip
            assert response.status_code == 200, response.text
            items = response.json()["items"]
            expected = (name in LATE) == (overdue == "true")
            assert [i["case_id"] for i in items] == ([row["case_id"]] if expected else []), name
            assert all(i["overdue"] is (name in LATE) for i in items), name


def test_a_queued_case_past_its_deadlines_is_late_with_its_dispatch_not_a_units_step() -> None:
    """A case waiting in the centre's queue (待派单) past the deadlines recorded at receipt
    owes no 签收 or 办结 to anyone: since lean-case-v8 no timer runs there and the unit
    dispatched to gets fresh deadlines. The board says it waits for its dispatch (待派单,
    from the first deadline passed), not that a unit missed a step. A breach recorded (a case
    before lean-case-v8, charged to the centre) is still listed as recorded."""
    now = datetime.now(UTC)
    queued = case_row(now - timedelta(hours=50), department_id="centre", status="dispatching",
                      accepted=None, **OPEN)  # fmt: skip
    assert is_late(queued, now)
    assert late_steps(queued, now) == [(QUEUE_WAIT, queued["accept_deadline"])]
    before_v8 = {**queued, "breaches": ["accept"]}
    assert late_steps(before_v8, now) == [
        (DeadlineKind.ACCEPT, queued["accept_deadline"]), (QUEUE_WAIT, queued["accept_deadline"]),
    ]  # fmt: skip
