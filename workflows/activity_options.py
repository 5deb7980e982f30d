"""How workflows call activities: by reference, with one timeout and retry policy for all."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

ACTIVITY_TIMEOUT = timedelta(seconds=30)
# Database outages must not lose a case: retry for as long as it takes, backing off to 1 min.
# A failure caused by the data itself is raised non-retryable by the activity
# (activities/errors.py) and ends the retries at once.
ACTIVITY_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))

R = TypeVar("R")


async def run_activity(method: Callable[[Any, Any], Awaitable[R]], arg: Any) -> R:
    """Run an activity method (``ProjectionActivities.project_case``) with the house policy."""
    return await workflow.execute_activity_method(
        method, arg, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=ACTIVITY_RETRY
    )


async def run_local(method: Callable[[Any, Any], Awaitable[R]], arg: Any) -> R:
    """Run an activity method as a local activity, with the same policy.

    A local activity runs inside the workflow task that asked for it, on the same worker: no
    task-queue round trip, and one marker event in the history instead of three activity
    events; its input is not recorded, its result is. Used for the case's short database
    writes and reads (planning, projection); a worker that dies mid-way loses the workflow
    task, and the next worker runs the (idempotent) activity again."""
    return await workflow.execute_local_activity_method(
        method, arg, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=ACTIVITY_RETRY
    )
