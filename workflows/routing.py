"""`RouteRequestWorkflow`: the short workflow behind `agentic agents route`.

One activity, `agents.route` (`activities.agents.router.RouteActivities.route`): the CLI never
opens the vector store or loads a model itself; the worker owns both, as for `runbooks search`.
The agent loop (`AgentWorkflow`) calls the same activity when a request does not name its agent.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from agentic_core.agents import ACTIVITY_ROUTE, Route, RouteInput

# The first route after a worker start may embed the exemplars (seconds); the planner model
# below the threshold is given 20 s by the activity itself.
ROUTE_TIMEOUT = timedelta(seconds=90)
ROUTE_RETRY = RetryPolicy(
    maximum_attempts=3, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10)
)


@workflow.defn
class RouteRequestWorkflow:
    @workflow.run
    async def run(self, inp: RouteInput) -> Route:
        return await workflow.execute_activity(
            ACTIVITY_ROUTE,
            inp,
            result_type=Route,
            start_to_close_timeout=ROUTE_TIMEOUT,
            retry_policy=ROUTE_RETRY,
        )
