"""The replay witness (jiesu/audit/witness.py) on a case whose projection failed: the n-th
projection the code makes must still meet the n-th one the history recorded."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from helpers import HISTORIES, eventually, keep_history, replay_checked
from temporalio import activity, workflow
from temporalio.client import WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from test_hostile_messages import CITIZEN, URBAN, kinds, rid, start_of, until

from jiesu.audit import witness
from jiesu.audit.witness import closed_by_itself, compare, recorded_projections
from jiesu.case.domain import CaseProjection, EventKind, ProjectionReceipt, Status
from jiesu.health import checks as doctor
from worker import activities as house_activities
from workflows import ALL_WORKFLOWS, ComplaintWorkflow
from workflows import patches as patches_module
from workflows.patches import EPOCH_IDS
from workflows.projector import PATCH_LOCAL_FAILURE


@asynccontextmanager
async def refusing_first_projection(
    client, pool, settings, queue: str, times: int = 1
) -> AsyncIterator[None]:
    """A worker whose read model refuses each case's first ``times`` projections for good (the
    data, as ``refusing_bad_data`` answers it: non-retryable), and takes the others."""
    acts = house_activities(pool, settings.model_copy(update={"task_queue": queue}))
    real = next(a for a in acts if getattr(a, "__name__", "") == "project_events")
    refused: dict[str, int] = {}

    @activity.defn(name="project_events")
    async def project_events(projection: CaseProjection) -> ProjectionReceipt:
        case_id = projection.state.case_id
        if refused.get(case_id, 0) < times:
            refused[case_id] = refused.get(case_id, 0) + 1
            raise ApplicationError("DataError: refused", type="InvalidData", non_retryable=True)
        return await real(projection)

    house = [a for a in acts if a is not real]
    async with Worker(client, task_queue=queue, workflows=ALL_WORKFLOWS,
                      activities=[*house, project_events],
                      workflow_runner=UnsandboxedWorkflowRunner()):  # fmt: skip
        yield


async def replied(client, h, case_id: str) -> None:
    """The department accepts, contacts and replies; the case shows replied."""
    await until(client, case_id, lambda s: s.status is Status.ASSIGNED)
    await h.signal("accept", {"actor": rid(URBAN)})
    await h.signal("contact", {"actor": rid(URBAN)})
    await h.signal("reply", {"actor": rid(URBAN), "outcome": "resolved", "text": "Done"})
    await until(client, case_id, lambda s: s.status is Status.REPLIED)


async def rated_and_closed(pool, h, case_id: str) -> None:
    """The citizen rates; the workflow completes closed and the read model shows it closed."""
    await h.signal("rate", {"actor": rid(CITIZEN), "rating": "satisfied"})
    outcome = await asyncio.wait_for(h.result(), timeout=30)
    assert outcome.status is Status.CLOSED

    async def projected() -> bool:
        sql = "SELECT 1 FROM cases WHERE case_id = $1 AND status = 'closed'"
        return bool(await pool.fetchval(sql, case_id))

    await eventually(projected, within=20)


async def test_a_case_whose_projection_failed_goes_on_and_replays_with_its_events(
    client, pool, settings
) -> None:
    """A read model that refuses a case's data fails the projection for good: the case
    records ``projection_failed`` and goes on, projecting what follows. A local projection's
    failure reached the projector as the ApplicationError itself, which it did not catch: it
    died and the case went on unprojected (patch ``local-projection-failure-v1``). Its
    history has a projection marker without a result; the witness counts it as a projection
    made, so the ones after it are compared with their own (before: with the next one's, and
    this sound case was reported non-deterministic)."""
    queue = f"witness-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-WITNESS-{uuid.uuid4().hex[:8]}"
    async with refusing_first_projection(client, pool, settings, queue):
        h = await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                        task_queue=queue)  # fmt: skip
        try:
            await until(client, case_id, lambda s: kinds(s, EventKind.PROJECTION_FAILED))
            await h.signal("accept", {"actor": rid(URBAN)})
            await until(client, case_id, lambda s: s.status is Status.HANDLING)

            async def projected() -> bool:  # the projection after the failed one committed
                sql = "SELECT 1 FROM cases WHERE case_id = $1 AND status = 'handling'"
                return bool(await pool.fetchval(sql, case_id))

            await eventually(projected, within=20)
            await keep_history(h, "projection_failed_once")  # replay_checked: the witness too
        finally:
            await h.terminate("test over")


def test_a_receipt_todays_model_cannot_read_is_not_compared() -> None:
    """A recorded projection that today's models cannot read is left uncompared (the replay
    itself fails on it and says so), rather than ending a whole ``jiesu replay`` run."""
    history = WorkflowHistory.from_json(
        "urgent_happy_path", (HISTORIES / "urgent_happy_path.json").read_text(encoding="utf-8")
    )
    sound = recorded_projections(history)
    assert sound and all(p.events for p in sound)
    marker = history.events[sound[0].event_id - 1].marker_recorded_event_attributes
    marker.details["result"].payloads[0].data = b'{"version": "not a number", "events": 7}'
    damaged = recorded_projections(history)
    assert damaged[0].events is None and damaged[1:] == sound[1:]


class _BeforeTheCatch:
    """``temporalio.workflow`` as the case's patches saw it before
    ``local-projection-failure-v1``: the patch reads as absent, so a refused local projection
    ends the projector — a case of that code (so from before ``lean-case-v3`` as well)
    continued by this one."""

    def __getattr__(self, name: str) -> Any:
        return getattr(workflow, name)

    @staticmethod
    def patched(patch_id: str) -> bool:
        return patch_id not in (PATCH_LOCAL_FAILURE, *EPOCH_IDS) and workflow.patched(patch_id)


async def listed_behind(client, pool, case_id: str) -> bool:
    """``jiesu doctor`` lists the case as ``read_model_behind`` (visibility may lag a moment)."""
    options = doctor.DoctorOptions(read_model_lag=timedelta(0), replay=False, limit=20)

    async def probe() -> bool:
        report = await doctor.examine(client, pool, options, workflows=ALL_WORKFLOWS)
        return any(f.kind == doctor.READ_MODEL_BEHIND and f.subject == case_id
                   for f in report.findings)  # fmt: skip

    return await eventually(probe, within=20)


async def test_a_case_whose_projector_died_before_the_catch_closes_and_is_projected(
    client, pool, settings, monkeypatch
) -> None:
    """A lean case started before ``local-projection-failure-v1`` whose projection was refused
    lost its projector (the ApplicationError ended it). The workflow awaits its projector when
    the case closes, so the citizen's rating *failed the case's workflow* with the read
    model's old error, and the case never showed closed. Such a projector is started again at
    the close now (patch ``revive-projector-v1``): the case completes and its read model
    catches up. The history replays (the projector dies again on the old path)."""
    monkeypatch.setattr(patches_module, "workflow", _BeforeTheCatch())
    queue = f"witness-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-DEAD-{uuid.uuid4().hex[:8]}"
    async with refusing_first_projection(client, pool, settings, queue):
        h = await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                        task_queue=queue)  # fmt: skip
        try:
            await replied(client, h, case_id)
            unprojected = "SELECT count(*) FROM cases WHERE case_id = $1"
            assert await pool.fetchval(unprojected, case_id) == 0  # its projector is dead
            assert await listed_behind(client, pool, case_id)  # as docs/auditing.md says
            await rated_and_closed(pool, h, case_id)
            history = await keep_history(h, "dead_projector_revived_at_close")
            assert not any(e.HasField("workflow_execution_failed_event_attributes")
                           for e in history.events)  # fmt: skip
        finally:
            with contextlib.suppress(Exception):
                await h.terminate("test over")


def test_a_projection_beyond_the_recorded_ones_disagrees_once_the_workflow_closed() -> None:
    """A replay that makes one projection more than the history recorded: the history's open
    end while the case runs (or was terminated), a disagreement once the workflow closed
    itself — it issued its closing command, so no task of it was left to run."""
    history = WorkflowHistory.from_json(
        "urgent_happy_path", (HISTORIES / "urgent_happy_path.json").read_text(encoding="utf-8")
    )
    recorded = recorded_projections(history)
    computed = [p.events or [] for p in recorded]
    closed = closed_by_itself(history)
    assert closed == history.events[-1].event_id
    assert compare(recorded, computed, closed=closed) is None
    one_more = [*computed, [{"seq": 99, "kind": "rejected", "data": {"code": "wrong_status"}}]]
    found = compare(recorded, one_more, closed=closed)
    assert found is not None and found.event_id == closed
    assert "before the workflow closed" in found.message
    assert "rejected (wrong_status)" in found.message
    assert compare(recorded, one_more, closed=0) is None  # an open history: its open end


async def test_a_revived_projector_refused_again_records_it_and_the_case_completes(
    client, pool, settings, monkeypatch
) -> None:
    """The revived projector (``revive-projector-v1``) projects again the burst the read model
    refused. A read model that refuses it again (the same data) hit the same memoized answer
    of ``local-projection-failure-v1`` (False, the run's first ask) and failed the case's
    workflow at its close after all. Now the revived projector records the refusal and the
    case completes (patch ``revived-projection-failure-v1``)."""
    monkeypatch.setattr(patches_module, "workflow", _BeforeTheCatch())
    queue = f"witness-{uuid.uuid4().hex[:8]}"
    case_id = f"JS-DEAD-{uuid.uuid4().hex[:8]}"
    # the first projection, and the revived projector's first
    async with refusing_first_projection(client, pool, settings, queue, times=2):
        h = await client.start_workflow(ComplaintWorkflow.run, start_of(case_id), id=case_id,
                                        task_queue=queue)  # fmt: skip
        try:
            await replied(client, h, case_id)
            await rated_and_closed(pool, h, case_id)
            history = await h.fetch_history()
            await replay_checked(history)
        finally:
            with contextlib.suppress(Exception):
                await h.terminate("test over")


def test_a_time_the_replay_shifts_by_milliseconds_is_covered_a_rule_change_is_not() -> None:
    """A request's decision due derives from the task's clock, which a replay reproduces only
    up to the gap between two tasks (witness.covers): 184 ms apart is the same event (the
    red team's dispatch-then-延期 case, tests/test_v21_orders_attacks.py); two hours apart
    (a window changed without a patch) is not; other strings are compared exactly."""
    recorded = {"decision_due": "2026-11-25T02:51:30.684265+00:00", "reasons": "police"}
    shifted = {"decision_due": "2026-11-25T02:51:30.868120+00:00", "reasons": "police"}
    moved = {"decision_due": "2026-11-25T04:51:30.684265+00:00", "reasons": "police"}
    assert witness.covers(shifted, recorded)
    assert not witness.covers(moved, recorded)
    assert not witness.covers({**shifted, "reasons": "Police"}, recorded)
    assert not witness.covers("2026-11-25T02:51:31", "2026-11-25T02:51:30")  # no zone: exact
