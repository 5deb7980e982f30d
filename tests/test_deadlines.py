"""Deadlines from the SLA policy and the China working-day calendar (工作日)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from helpers import eventually, handle_of, keep_history
from temporalio.client import Client

from jiesu.case.calendar import WorkingCalendar
from jiesu.case.domain import Actor, CaseStart, ComplaintIntake, Role, Status, Urgency
from jiesu.config import Settings
from workflows.complaint import ComplaintWorkflow

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("received", "due"),
    [
        (at(2026, 11, 20, 15), at(2026, 11, 24, 15)),  # Friday afternoon → Tuesday
        (at(2026, 9, 30, 15), at(2026, 10, 9, 15)),  # before National Day → after the holiday
        (at(2026, 11, 21, 10), at(2026, 11, 25, 0)),  # Saturday → end of Tuesday
        (at(2026, 9, 19, 9), at(2026, 9, 22, 0)),  # Sat 19 Sep off, Sun 20 Sep a swapped workday
    ],
)
def test_two_working_days(received: datetime, due: datetime) -> None:
    calendar = WorkingCalendar("Asia/Shanghai")
    assert calendar.add_working_time(received, timedelta(days=2)) == due


def test_calendar_override_wins_over_the_package() -> None:
    monday = date(2026, 11, 23)
    calendar = WorkingCalendar("Asia/Shanghai", {monday: False})
    assert not calendar.is_working_day(monday)
    assert calendar.add_working_time(at(2026, 11, 20, 15), timedelta(days=2)) == at(
        2026, 11, 25, 15
    )


def test_naive_start_is_refused() -> None:
    with pytest.raises(ValueError):
        WorkingCalendar("Asia/Shanghai").add_working_time(datetime(2026, 1, 1), timedelta(1))


async def _start_general_case(client: Client, settings: Settings, case_id: str,
                              received: datetime):
    intake = ComplaintIntake(
        title="Junk yard smell",
        description="A recycling yard burns plastic at night",
        category_id="odour_pollution",
        grid_id="G-QH-02-01-1",
        citizen={"name": "Li Lei", "phone": "13900002222"},
    )
    return await client.start_workflow(
        ComplaintWorkflow.run,
        CaseStart(
            case_id=case_id,
            intake=intake,
            urgency=Urgency.GENERAL,
            received_at=received,
            registered_by=Actor(role=Role.OPERATOR, name="test"),
        ),
        id=case_id,
        task_queue=settings.task_queue,
    )


@pytest.mark.parametrize(
    ("name", "received", "finish"),
    [
        ("friday_afternoon", at(2026, 11, 20, 15, 30), at(2026, 11, 24, 15, 30)),
        ("national_day_eve", at(2026, 9, 30, 16), at(2026, 10, 9, 16)),
    ],
)
async def test_general_case_deadline_in_the_workflow(
    client: Client, settings: Settings, pool: asyncpg.Pool, name: str, received: datetime,
    finish: datetime,
) -> None:
    """The workflow gets its deadlines from the activity (recorded in its history)."""
    case_id = f"JS-TEST-{name}-{datetime.now().timestamp():.0f}"
    handle = await _start_general_case(client, settings, case_id, received)

    async def deadlines_set():
        state = await handle.query(ComplaintWorkflow.state)
        return state if state.deadlines and state.status is Status.ASSIGNED else None

    state = await eventually(deadlines_set)
    assert state.deadlines.finish == finish
    assert state.deadlines.contact is None  # the 1-hour contact rule is for urgent cases
    # received in the past: its acceptance deadline has passed, so the breach is recorded
    await eventually(lambda: _has_breach(handle, "accept"))
    # the read model's first row (the intake) has no deadlines yet: wait for the projection
    # that carries them
    projected = await eventually(lambda: pool.fetchval(
        "SELECT finish_deadline FROM cases WHERE case_id = $1", case_id
    ))
    assert projected == finish
    await handle.terminate("test finished")
    await keep_history(handle_of(client, case_id), f"general_deadline_{name}")


async def _has_breach(handle, kind: str) -> bool:
    state = await handle.query(ComplaintWorkflow.state)
    return any(b.kind.value == kind for b in state.breaches)
