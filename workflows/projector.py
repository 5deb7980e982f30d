"""The projector: carries the case's new events to the read model and its search attributes
to Temporal's visibility, one ``project_case`` activity per burst of changes.

Search attributes make a case's workflow findable in Temporal's UI and by ``jiesu audit replay
--query``; the read model is where a case's live status is read. Since ``lean-case-v2`` they are
*sparse*: written when who holds the case (its department), its deadlines, its breaches or its
supervision level change, and when it closes, each time with the status of that moment — not on
every accept, contact or reply. Each write is an event in the history and a visibility write on
the server (~6 ms of its CPU, docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.projection import ProjectionActivities
    from jiesu.case import search_attributes as sa
    from jiesu.case.domain import (
        SYSTEM_ACTOR,
        CaseEvent,
        CaseProjection,
        CaseState,
        EventKind,
        Status,
    )
    from jiesu.case.lifecycle import LADDER_ORDERS_BEFORE_PROJECTION
    from workflows import messages
    from workflows.activity_options import run_activity, run_local
    from workflows.case_record import CaseRecord
    from workflows.patches import Patches


# A local activity's non-retryable failure reaches the workflow as the ApplicationError itself,
# not wrapped in an ActivityError as a regular activity's is: the projector of a lean case let
# it through and died, and the case went on unprojected (tests/test_witness.py). Caught since.
PATCH_LOCAL_FAILURE = "local-projection-failure-v1"
# A projection carries at most this many bytes of events (their JSON). The projection's result
# (a local activity's marker) or input (a pre-lean case's activity) holds its events, and
# Temporal refuses a payload over 2 MB: the workflow task then failed on every attempt
# ("PayloadsTooLarge") and the case was wedged — hundreds of long repeat reports or
# supplements arriving while the worker was down did it (tests/test_case_size.py). A burst
# over the budget is projected in parts; the patch is asked only when a burst is cut (and
# where it answers False, each burst's own: see _cut).
PATCH_BOUNDED_BATCH = "bounded-projection-v1"
# A projector started again at the case's close (complaint.py, revive-projector-v1) whose
# projection is refused again records it and ends instead of dying: the run's first ask of
# PATCH_LOCAL_FAILURE (False, where the projector died) is memoized, and re-raising failed
# the case's workflow at its close after all (tests/test_witness.py).
PATCH_REVIVED_FAILURE = "revived-projection-failure-v1"
BATCH_BYTES = 256 * 1024


class Projector:
    def __init__(
        self, case: CaseRecord, *, settle: bool, local: bool = False, sparse: bool = False,
        ladder_owes: Callable[[], bool] | None = None,
    ) -> None:  # fmt: skip
        """``ladder_owes``: the case's Ladder.owes_an_order (see :meth:`_after_the_ladder`)."""
        self._case = case
        self._ladder_owes = ladder_owes
        self._local = local  # PATCH_LEAN: the local ``project_events`` (see its docstring)
        self._settle_first = settle  # PATCH_HARDENED: see settle()
        self._sparse = sparse  # PATCH_LEAN_V2: see the module's docstring
        self._projected_seq = 0
        # What visibility holds: since v2 starting from what the case was started with
        self._search_attributes: dict[str, Any] = _started_with() if sparse else {}
        self._failing = False
        self.revived = False  # started again at the close (see PATCH_REVIVED_FAILURE)

    @property
    def behind(self) -> bool:
        """Events the case recorded that are not projected yet."""
        return self._projected_seq < len(self._case.state.events)

    async def run_until_closed(self) -> None:
        """Project new events in batches: one activity per burst of changes, not per event."""
        state = self._case.state
        while True:
            await workflow.wait_condition(lambda: self._projected_seq < len(state.events))
            if self._settle_first:
                await settle()
                await self._after_the_ladder()
            self._upsert_search_attributes()
            new = _bounded(state.events[self._projected_seq :], self._case.patched)
            version = new[-1].seq
            await self._project(new, version)
            self._projected_seq = version
            if state.status is Status.CLOSED and self._projected_seq == len(state.events):
                return

    async def _after_the_ladder(self) -> None:
        """Since lean-case-v38 (LADDER_ORDERS_BEFORE_PROJECTION): while the ladder owes a
        command it issues only once the server has answered its last one
        (Ladder.owes_an_order: a ``release`` while its ``hold`` is on its way), wait for that
        command, then settle again. Whether the answer came in the same activation as the
        change or a later one, the ladder's command then comes first, the projector's after.
        Nothing else changes: a ladder waiting for nothing has issued its command by now (it
        reacts in the passes settle() leaves it)."""
        owes = self._ladder_owes
        if owes is None or not self._case.patched(LADDER_ORDERS_BEFORE_PROJECTION):
            return
        while owes():
            await workflow.wait_condition(lambda: not owes())
            await settle()

    async def _project(self, new: list[CaseEvent], version: int) -> None:
        """One projection; a read model that refuses the case's data (a non-retryable
        failure) is recorded once and the case goes on — `jiesu doctor` lists the lag."""
        state = self._case.state
        projection = CaseProjection(
            state=state.model_copy(update={"events": []}), new_events=new, version=version
        )
        try:
            if self._local:
                await run_local(ProjectionActivities.project_events, projection)
            else:
                await run_activity(ProjectionActivities.project_case, projection)
            self._failing = False
        except (ActivityError, ApplicationError) as err:
            if (
                isinstance(err, ApplicationError)
                and not (self.revived and self._case.patched(PATCH_REVIVED_FAILURE))
                and not self._case.patched(PATCH_LOCAL_FAILURE)
            ):
                raise  # as such a case ran before the patch (the projector ended here)
            if not self._failing:
                self._failing = True
                self._case.record(
                    EventKind.PROJECTION_FAILED,
                    SYSTEM_ACTOR,
                    version=version,
                    reason=failure_text(err),
                )

    def _upsert_search_attributes(self) -> None:
        keys = {k.name: k for k in sa.ALL}
        updates: list[SearchAttributeUpdate[Any]] = []
        values = _search_attributes(self._case.state)
        if self._sparse and not _worth_writing(self._search_attributes, values):
            return
        for name, value in values.items():
            if self._search_attributes.get(name) != value:
                key = keys[name]
                updates.append(key.value_set(value) if value is not None else key.value_unset())
                self._search_attributes[name] = value
        if updates:
            workflow.upsert_search_attributes(updates)


def _bounded(new: list[CaseEvent], patched: Patches) -> list[CaseEvent]:
    """The first events of a burst that fit in BATCH_BYTES (at least one); all of them for a
    case from before PATCH_BOUNDED_BATCH."""
    if len(new) == 1:
        return new
    size = 0
    for n, event in enumerate(new):
        size += len(event.model_dump_json().encode())
        if size > BATCH_BYTES and n > 0:
            return new[:n] if _cut(new[0].seq, patched) else new
    return new


def _cut(seq: int, patched: Patches) -> bool:
    """Whether this burst (from event ``seq``) is cut. The SDK memoizes a patch's answer for
    the rest of the run: a case whose earlier burst over the budget was projected whole before
    the patch answers False there on every replay, and so did every later burst — one over
    2 MB wedged the case (tests/test_case_size.py). Such a case asks each cut burst's own
    patch, recorded in the task that cuts it."""
    return patched(PATCH_BOUNDED_BATCH) or patched(f"{PATCH_BOUNDED_BATCH}-from-{seq}")


def _started_with() -> dict[str, Any]:
    """The case's search attributes as its start set them (any client may start a case, so
    what it was given, not what jiesu.intake gives)."""
    given = workflow.info().typed_search_attributes
    held = {k.name: given.get(k) for k in sa.ALL if given.get(k) is not None}
    return {sa.CASE_BREACHES.name: [], **held}  # no breaches: nothing to write


def _worth_writing(held: dict[str, Any], values: dict[str, Any]) -> bool:
    """A sparse case writes when anything but the status changed, or when it closed."""
    if values.get(sa.CASE_STATUS.name) == Status.CLOSED.value:
        return held.get(sa.CASE_STATUS.name) != Status.CLOSED.value
    return any(
        held.get(name) != value for name, value in values.items() if name != sa.CASE_STATUS.name
    )


def _search_attributes(s: CaseState) -> dict[str, Any]:
    d = s.deadlines
    values: dict[str, Any] = {
        sa.CASE_STATUS.name: s.status.value,
        sa.CASE_DEPARTMENT.name: s.department_id,
        sa.CASE_URGENCY.name: s.urgency.value,
        sa.CASE_BREACHES.name: [b.kind.value for b in s.breaches],
    }
    if d:
        values[sa.CASE_ACCEPT_DEADLINE.name] = d.accept
        values[sa.CASE_CONTACT_DEADLINE.name] = d.contact
        values[sa.CASE_FINISH_DEADLINE.name] = d.finish
    if s.escalation_level:
        values[sa.CASE_ESCALATION_LEVEL.name] = int(s.escalation_level)
    return values


async def settle() -> None:
    """Wait until every other coroutine woken by the same change has issued its commands.

    Temporal may deliver an activity result and a signal in one activation or in two (a
    worker whose cached case ran ahead of a restarted server does the latter). In one
    activation the SDK applies signals first, so the deadline watches, the ladder and the run
    loop react before the projector has its activity result back; in two, they all wake
    together. The projector must therefore come last in both, or the same history yields
    commands in another order on replay (TMPRL1100). The SDK checks conditions only when
    nothing else is ready, so an always-true condition resumes us after the others; twice,
    for a coroutine that needed a second pass."""
    for _ in range(2):
        await workflow.wait_condition(lambda: True)


def failure_text(err: BaseException) -> str:
    cause = err.cause if isinstance(err, ActivityError) and err.cause else err
    return messages.printable(str(cause) or type(cause).__name__, 500)
