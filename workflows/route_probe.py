"""`RouteProbeWorkflow`: one routing decision through Temporal, nothing else.

Input `RouteInput`, result `Route`: it runs the `agents.route` activity on the platform's task
queue, so whichever worker polls that queue (the deployed one) routes the text, with its
exemplars, thresholds and models. `agentic agents route` starts it, and so does the rollout's
"router selects the correct agent" check (`rollout.check_router`) for each of its cases; it runs
no agent and changes nothing.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from agentic_core.agents import ACTIVITY_ROUTE, ROUTE_PROBE_WORKFLOW, Route, RouteInput

# The first route after a worker start may embed the exemplars (seconds); the planner model below
# the threshold is given AGENTIC_ROUTE_MODEL_TIMEOUT_S (20 s) by the activity itself.
ROUTE_TIMEOUT = timedelta(seconds=90)
ROUTE_RETRY = RetryPolicy(
    maximum_attempts=3, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=5)
)


@workflow.defn(name=ROUTE_PROBE_WORKFLOW)
class RouteProbeWorkflow:
    @workflow.run
    async def run(self, inp: RouteInput) -> Route:
        route: Route = await workflow.execute_activity(
            ACTIVITY_ROUTE,
            inp,
            result_type=Route,
            start_to_close_timeout=ROUTE_TIMEOUT,
            retry_policy=ROUTE_RETRY,
        )
        return route
