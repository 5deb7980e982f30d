"""An activity that fails because of its data fails for good (non-retryable), instead of being
retried forever and freezing the case's read model (issue 9, point 3)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.errors import INVALID_DATA
from activities.projection import ProjectionActivities
from jiesu import db
from jiesu.case.domain import (
    SYSTEM_ACTOR,
    CaseEvent,
    CaseProjection,
    CaseState,
    Channel,
    EventKind,
    Status,
    Urgency,
)
from jiesu.config import Settings


def _projection(case_id: str, **state: object) -> CaseProjection:
    now = datetime.now(UTC)
    fields: dict[str, object] = dict(
        case_id=case_id, status=Status.ASSIGNED, title="Loudspeaker", category_id="noise",
        grid_id="G-QH-01-01-1", address="", channel=Channel.HOTLINE, urgency=Urgency.GENERAL,
        received_at=now, breaches=[], returned_by=[], co_handlers=[], events=[],
    )
    new_deadline = state.pop("extension_decided", None)
    fields.update(state)
    # model_construct: the validated domain types would refuse these values at the door; the
    # activity must still not be retried forever if such data ever reaches it
    event = CaseEvent(seq=1, kind=EventKind.RECEIVED, at=now, actor=SYSTEM_ACTOR)
    if new_deadline is not None:
        event = CaseEvent(
            seq=1, kind=EventKind.EXTENSION_DECIDED, at=now, actor=SYSTEM_ACTOR,
            data={"approved": True, "new_deadline": new_deadline, "note": ""},
        )
    return CaseProjection.model_construct(
        state=CaseState.model_construct(**fields), new_events=[event], version=1
    )


@pytest.mark.parametrize(
    "state",
    [
        {"title": "NUL \x00 in the title"},
        {"extension_decided": "9999-12-31T23:59:00+00:00"},  # shown in Beijing time: year 10000
    ],
    ids=["nul", "year-9999"],
)
async def test_bad_data_is_not_retried(pool: asyncpg.Pool, state: dict[str, object]) -> None:
    case_id = f"JS-BAD-{next(iter(state))}-{datetime.now(UTC).timestamp()}"
    activities = ProjectionActivities(pool)
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(activities.project_case, _projection(case_id, **state))
    assert raised.value.non_retryable and raised.value.type == INVALID_DATA
    # nothing half-written: the transaction rolled back
    assert await pool.fetchval("SELECT count(*) FROM case_events WHERE case_id = $1", case_id) == 0


async def test_a_passing_outage_stays_retryable(settings: Settings) -> None:
    """A closed pool (PostgreSQL gone) is not the data's fault: the error stays retryable."""
    closed = await db.create_pool(settings.database_url, min_size=0, max_size=1)
    await closed.close()
    activities = ProjectionActivities(closed)
    with pytest.raises(Exception) as raised:
        await ActivityEnvironment().run(activities.project_case, _projection("JS-OUTAGE"))
    assert not isinstance(raised.value, ApplicationError)
