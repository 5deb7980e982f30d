"""The Jiesu worker for the scale benchmark (bench/scale.py): the real worker (worker.py) —
same workflows, activities, outbox dispatcher and statistics refresher — with one difference
for the timer storm: while the file named by ``JIESU_BENCH_STORM_FILE`` exists, the deadlines
it computes (``compute_deadlines``, and ``plan_case`` for a new case) carry the accept
deadline written in that file (an ISO instant), so that thousands of accept deadlines fall
due within the same minute. The other deadlines follow the SLA policy. Bench-only: nothing
in the product reads that variable.

    JIESU_BENCH_STORM_FILE=/tmp/storm python -m bench.scale_worker
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from temporalio import activity

import worker
from activities.deadlines import DeadlineActivities
from activities.planning import PlanningActivities
from activities.routing import RoutingActivities
from jiesu.case.domain import DeadlineRequest, Deadlines
from jiesu.config import Settings

STORM_FILE_ENV = "JIESU_BENCH_STORM_FILE"


def storm_instant() -> datetime | None:
    path = os.environ.get(STORM_FILE_ENV)
    try:
        return datetime.fromisoformat(Path(path).read_text().strip()) if path else None
    except FileNotFoundError:
        return None


class StormDeadlines(DeadlineActivities):
    @activity.defn(name="compute_deadlines")
    async def compute_deadlines(self, request: DeadlineRequest) -> Deadlines:
        deadlines = await super().compute_deadlines(request)
        due = storm_instant()
        return deadlines if due is None else deadlines.model_copy(update={"accept": due})


ActivitiesFactory = Callable[[asyncpg.Pool, Settings], list[Callable[..., Any]]]


def with_storm_deadlines(real: ActivitiesFactory) -> ActivitiesFactory:
    """The worker's activities, with the deadlines (``compute_deadlines``, and ``plan_case``
    which computes them for a new case) taken from :class:`StormDeadlines`."""
    replaced = ("compute_deadlines", "plan_case")

    def build(pool: asyncpg.Pool, settings: Settings) -> list[Callable[..., Any]]:
        storm = StormDeadlines(pool, settings)
        planning = PlanningActivities(RoutingActivities(pool), storm)
        normal = [a for a in real(pool, settings) if getattr(a, "__name__", "") not in replaced]
        return [*normal, storm.compute_deadlines, planning.plan_case]

    return build


if __name__ == "__main__":
    argparse.ArgumentParser(
        prog="python -m bench.scale_worker", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args()  # fmt: skip
    # worker.main builds its Worker from the module's ``activities``: give it ours.
    worker.activities = with_storm_deadlines(worker.activities)
    try:
        asyncio.run(worker.main())
    except KeyboardInterrupt:
        pass
