"""Telling a case's bad data from a passing outage, for every activity.

An activity that fails because of its *data* (a character PostgreSQL cannot store, a date it
cannot represent) fails the same way on every retry: retrying it forever freezes the case's
read model. Such failures are raised as non-retryable, so the workflow records them and goes
on. Anything else (PostgreSQL restarting, a dropped connection) stays retryable and is retried
until it passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
from temporalio.exceptions import ApplicationError

INVALID_DATA = "InvalidCaseData"

# Errors that the same input raises again on every attempt.
_DATA_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,  # SQLSTATE class 22: NUL in text, datetime overflow, bad encoding
    OverflowError,  # a date beyond what Python or PostgreSQL can represent
)


@contextmanager
def refusing_bad_data() -> Iterator[None]:
    try:
        yield
    except _DATA_ERRORS as err:
        raise ApplicationError(
            f"{type(err).__name__}: {err}", type=INVALID_DATA, non_retryable=True
        ) from err
