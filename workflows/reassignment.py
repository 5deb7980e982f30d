"""ReassignmentWorkflow (改派 / 二次交办): choose the next department for a case.

A child of the case, id ``<case>-reassign-<n>``. The centre's dispatcher may choose within a
window (signal ``choose``); otherwise the routing rules choose, without the departments that
returned the case. Raising a level (提级办) goes to the department one level up.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from jiesu.domain import (
        ReassignChoice,
        ReassignmentRequest,
        ReassignmentResult,
        ReassignReason,
        RouteRequest,
        RouteResult,
    )
    from workflows.activity_options import run_activity


@workflow.defn(name="ReassignmentWorkflow")
class ReassignmentWorkflow:
    def __init__(self) -> None:
        self._choice: ReassignChoice | None = None

    @workflow.run
    async def run(self, request: ReassignmentRequest) -> ReassignmentResult:
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

    @workflow.signal
    def choose(self, choice: ReassignChoice) -> None:
        """The centre's dispatcher picks the department (first choice wins)."""
        if self._choice is None:
            self._choice = choice

    async def _automatic(self, request: ReassignmentRequest) -> RouteResult:
        return await run_activity(
            "route_case",
            RouteRequest(
                category_id=request.category_id,
                grid_id=request.grid_id,
                exclude_department_ids=request.exclude_department_ids,
            ),
            RouteResult,
        )

    async def _level_up(self, request: ReassignmentRequest) -> RouteResult:
        """The level above; with none, the centre's queue decides."""
        return await run_activity("level_up", request.from_department_id, RouteResult)
