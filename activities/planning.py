"""Planning a new case (派单 + 时限) in one activity: its department and its deadlines.

One activity instead of ``route_case`` and ``compute_deadlines`` side by side: the case's start
costs one recorded result instead of two (issue 13). Routing that refuses the case's data does
not fail the plan: the plan sends the case to the centre's queue and says why, as the two
activities did (the workflow records ``routing_failed``).
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deadlines import DeadlineActivities
from activities.routing import RoutingActivities
from jiesu.case.domain import CasePlan, PlanRequest


class PlanningActivities:
    def __init__(self, routing: RoutingActivities, deadlines: DeadlineActivities) -> None:
        self.routing = routing
        self.deadlines = deadlines

    @activity.defn(name="plan_case")
    async def plan_case(self, request: PlanRequest) -> CasePlan:
        deadlines = await self.deadlines.compute_deadlines(request.deadlines)
        try:
            route = await self.routing.route_case(request.route)
        except ApplicationError as err:
            if not err.non_retryable:
                raise  # an outage: retried like any activity
            centre = await self.routing.centre_queue()
            return CasePlan(route=centre, deadlines=deadlines, routing_failure=str(err))
        return CasePlan(route=route, deadlines=deadlines)
