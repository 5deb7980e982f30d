"""How workflows call activities: one timeout and retry policy for all of them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

ACTIVITY_TIMEOUT = timedelta(seconds=30)
# Database outages must not lose a case: retry for as long as it takes, backing off to 1 min.
ACTIVITY_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))


async def run_activity(name: str, arg: Any, result_type: type | None) -> Any:
    return await workflow.execute_activity(
        name,
        arg,
        result_type=result_type,
        start_to_close_timeout=ACTIVITY_TIMEOUT,
        retry_policy=ACTIVITY_RETRY,
    )
