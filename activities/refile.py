"""A repeat report (并单) that reached its case after the case closed is filed again: as a new
case, or merged into another open case of the same problem (转立新案).

The intake merges a report into the case the read model shows open and signals it. The read
model can be behind the case: with the worker down, a 撤诉 or a closing rating already sent
closes the case first, and the report the intake answered "merged" reached a closed case,
which dropped it — a report accepted and lost (tests/test_repeat_after_close.py). The case
now asks this activity to file it again, with the report's own time, channel and citizen.
"""

from __future__ import annotations

import asyncpg
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from jiesu.case.domain import Actor, ComplaintIntake
from jiesu.config import Settings
from jiesu.intake import filing
from jiesu.intake.errors import (
    IntakeContended,
    IntakeError,
    IntakeRefused,
    TemporalUnavailable,
)


class RefileRequest(BaseModel):
    case_id: str  # the closed case the report reached
    report_id: str  # as the case received it: the intake's repeat_reports.id


NOT_A_REPORT = "not a report of the intake"


class RefileBatch(BaseModel):
    """Every report that reached the closed case since the last batch (lean-case-v25)."""

    case_id: str
    report_ids: list[str]


class Refiled(BaseModel):
    """Where the report went: ``case_id`` None when there was nothing to file (a report id
    the intake never gave this case: any Temporal client can send one) or it was refused."""

    case_id: str | None = None
    merged: bool = False  # merged into another open case of the same problem
    reason: str = ""  # why nothing was filed


_REPORT = "SELECT payload FROM repeat_reports WHERE id = $1 AND case_id = $2"


class RefileActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings

    @activity.defn
    async def refile_report(self, request: RefileRequest) -> Refiled:
        """File the report again. Idempotent: the filing's Idempotency-Key is the report's
        own (``jiesu-refile:<case>:<id>``), so a retried activity gets the first filing back."""
        if not request.report_id.isdigit():
            return Refiled(reason=NOT_A_REPORT)
        report_id = int(request.report_id)
        payload = await self._pool.fetchval(_REPORT, report_id, request.case_id)
        if payload is None:
            return Refiled(reason=NOT_A_REPORT)
        # at the report's own time, as the citizen made it
        intake = ComplaintIntake.model_validate(
            {**payload["intake"], "received_at": payload["received_at"]}
        )
        actor = Actor.model_validate(payload["actor"])
        key = f"{filing.SYSTEM_KEY_PREFIX}refile:{request.case_id}:{report_id}"
        try:
            try:
                filed = await self._file(intake, actor, key)
            except IntakeRefused as err:
                if err.code != "invalid_received_at":
                    raise
                # reached the case more than a day after it was made (a long outage): now
                filed = await self._file(intake.model_copy(update={"received_at": None}),
                                         actor, f"{key}:now")  # fmt: skip
        except (TemporalUnavailable, IntakeContended) as err:
            raise ApplicationError(str(err)) from err  # retried
        except IntakeError as err:  # the reference data changed since: refused now
            return Refiled(reason=f"{err.code}: {err}")
        await self._pool.execute(
            "UPDATE repeat_reports SET refiled_as = $2 WHERE id = $1", report_id, filed.case_id
        )
        return Refiled(case_id=filed.case_id, merged=filed.merged)

    @activity.defn
    async def refile_reports(self, batch: RefileBatch) -> list[Refiled]:
        """:meth:`refile_report` for each, in order: one activity however many ids a client
        sends (forged ids cost a look-up each, not an activity each)."""
        return [
            await self.refile_report(RefileRequest(case_id=batch.case_id, report_id=report_id))
            for report_id in batch.report_ids
        ]

    async def _file(self, intake: ComplaintIntake, actor: Actor, key: str) -> filing.Filing:
        return await filing.register(
            self._pool, activity.client(), self._settings, intake, actor, key, system_key=True
        )
