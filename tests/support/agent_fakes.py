"""Stand-ins for the agent runtime under its real names, for tests of what only calls it by its
contract (`agentic_core.agents`): `FakeAgentWorkflow` is registered as `AgentWorkflow`. It routes
through the `agents.route` activity when the request names no agent (as the real one does) and
answers `not_configured` for the agents this platform does not run yet, `done` otherwise."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from agentic_core.agents import (
        ACTIVITY_ROUTE,
        AGENT_WORKFLOW,
        AgentRequest,
        AgentResult,
        AgentStatus,
        Route,
        RouteInput,
        RouteMethod,
    )

NOT_CONFIGURED = {"coding": "AGENTIC_CODING_TOOLS", "web": "AGENTIC_WEB_TOOLS"}


@workflow.defn(name=AGENT_WORKFLOW)
class FakeAgentWorkflow:
    @workflow.run
    async def run(self, req: AgentRequest) -> AgentResult:
        if req.agent is None:
            route = await workflow.execute_activity(
                ACTIVITY_ROUTE,
                RouteInput(text=req.text),
                result_type=Route,
                start_to_close_timeout=timedelta(seconds=10),
            )
        else:
            route = Route(agent=req.agent, score=1.0, method=RouteMethod.EXPLICIT)
        base = {
            "run_id": workflow.info().workflow_id,
            "request_id": req.request_id,
            "agent": route.agent,
            "route": route,
        }
        if route.agent in NOT_CONFIGURED:
            answer = f"the {route.agent} agent is not configured yet: set {NOT_CONFIGURED[route.agent]}"
            return AgentResult(**base, status=AgentStatus.NOT_CONFIGURED, answer=answer)
        return AgentResult(**base, status=AgentStatus.DONE, answer="all pods are running")
