"""ReassignmentWorkflow (改派 / 二次交办): choose the next department for a case.

A child of the case, id ``<case>-reassign-<n>``. The centre's dispatcher may choose within a
window (signal ``choose``); otherwise the routing rules choose, without the departments that
returned the case. Raising a level (提级办) goes to the department one level up.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.routing import RoutingActivities
    from jiesu.case.domain import (
        CENTRE_ID,
        CaseState,
        ReassignChoice,
        ReassignmentRequest,
        ReassignmentResult,
        ReassignReason,
        RouteRequest,
        RouteResult,
    )
    from workflows import messages
    from workflows.activity_options import run_activity


@workflow.defn(name="ReassignmentWorkflow")
class ReassignmentWorkflow:
    choose = "choose"  # the signal name, for clients (the API)

    def __init__(self) -> None:
        self._choice: ReassignChoice | None = None

    @workflow.run
    async def run(self, request: ReassignmentRequest) -> ReassignmentResult:
        if request.chosen is not None:  # 二次交办 to the department the supervisor named
            return request.chosen
        if request.reason is ReassignReason.RAISE_LEVEL:
            return ReassignmentResult(route=await self._level_up(request))
        try:
            await workflow.wait_condition(
                lambda: self._choice is not None,
                timeout=timedelta(minutes=request.dispatcher_window_minutes),
                timeout_summary="dispatcher window",
            )
        except TimeoutError:
            pass
        if self._choice is not None:
            route = RouteResult(
                department_id=self._choice.department_id,
                department_name=self._choice.department_name,
                by_rule=False,
            )
            return ReassignmentResult(
                route=route, chosen_by=self._choice.actor, note=self._choice.note
            )
        return ReassignmentResult(route=await self._automatic(request))

    @workflow.signal(dynamic=True)
    def _message(self, name: str, args: Sequence[RawValue]) -> None:
        """``choose``: the centre's dispatcher picks the department (first choice wins).
        A message that does not decode is logged and ignored: it must never wedge the case."""
        choice = messages.decode(name, args, ReassignChoice) if name == self.choose else None
        if not isinstance(choice, ReassignChoice):
            workflow.logger.warning("reassignment ignored message %s", messages.printable(name))
            return
        if self._choice is None:
            self._choice = choice

    async def _automatic(self, request: ReassignmentRequest) -> RouteResult:
        route = RouteRequest(
            category_id=request.category_id,
            grid_id=request.grid_id,
            exclude_department_ids=request.exclude_department_ids,
        )
        try:
            return await run_activity(RoutingActivities.route_case, route)
        except ActivityError:  # routing refused the case's data: the centre dispatches by hand
            centre = request.centre_name
            return RouteResult(department_id=CENTRE_ID, department_name=centre, by_rule=False)

    async def _level_up(self, request: ReassignmentRequest) -> RouteResult:
        """The level above; with none, the centre's queue decides."""
        return await run_activity(RoutingActivities.level_up, request.from_department_id)


async def choose_department(
    state: CaseState,
    n: int,
    reason: ReassignReason,
    child_id: str,
    chosen: ReassignmentResult | None,
    centre_name: str,
) -> ReassignmentResult:
    """Run the n-th reassignment child of this case and return its choice. A second assignment
    (二次交办) never falls back by rule to the department it was taken from."""
    assert state.deadlines is not None
    exclude = list(state.returned_by)
    if reason is ReassignReason.SECOND_ASSIGNMENT and state.department_id:
        exclude.append(state.department_id)
    return await workflow.execute_child_workflow(
        ReassignmentWorkflow.run,
        ReassignmentRequest(
            case_id=state.case_id,
            n=n,
            reason=reason,
            category_id=state.category_id,
            grid_id=state.grid_id,
            from_department_id=state.department_id,
            exclude_department_ids=exclude,
            dispatcher_window_minutes=state.deadlines.dispatcher_window_minutes,
            chosen=chosen,
            centre_name=centre_name,
        ),
        id=child_id,
    )
