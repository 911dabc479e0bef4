"""What the agent-loop tests and the agent benchmark share: the fakes of the activities other work
packages own (`agents.route`: the router; `guardrails.record`: the guardrails; `incident.notify`: the
channels), registered under their real names; a worker with the real agent activities and
gateway; starting a run, following its progress, answering its approval question."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker, WorkflowRunner

from activities.agents.activities import AgentActivities
from activities.tools.gateway import ToolActivities
from agentic_core.agents import (
    ACTIVITY_ROUTE,
    GUARDRAIL_RECORD,
    QUERY_AGENT_PROGRESS,
    AgentLimits,
    AgentProgress,
    AgentRequest,
    AgentResult,
    GuardrailEvent,
    Route,
    RouteInput,
    RouteMethod,
    agent_run_id,
)
from agentic_core.incident import (
    UPDATE_DECIDE,
    DecideInput,
    DecideResult,
    NotifyInput,
    NotifyResult,
)
from workers.agent_client import approval_state
from workers.sandbox import workflow_runner
from workflows.agent import AgentWorkflow
from workflows.approval import ApprovalWorkflow


@dataclass
class AgentFakes:
    """`agents.route` (the agent named in `routes` for a text containing the key, else
    observability), `guardrails.record` (events kept; `guardrails_down`: every call fails) and
    `incident.notify` (messages kept)."""

    routes: dict[str, str] = field(default_factory=dict)
    events: list[GuardrailEvent] = field(default_factory=list)
    notes: list[NotifyInput] = field(default_factory=list)
    guardrails_down: bool = False

    @activity.defn(name=ACTIVITY_ROUTE)
    async def route(self, inp: RouteInput) -> Route:
        agent = next((a for key, a in self.routes.items() if key in inp.text), "observability")
        return Route(agent=agent, score=0.83, method=RouteMethod.EMBEDDING, scores={agent: 0.83})

    @activity.defn(name=GUARDRAIL_RECORD)
    async def record(self, event: GuardrailEvent) -> None:
        if self.guardrails_down:
            raise ApplicationError("the ledger is down (fake)", non_retryable=True)
        if all(e.key != event.key for e in self.events):
            self.events.append(event)

    @activity.defn(name="incident.notify")
    async def notify(self, inp: NotifyInput) -> NotifyResult:
        self.notes.append(inp)
        return NotifyResult(message_ref=f"msg-{len(self.notes)}")

    def kinds(self, run_id: str) -> list[tuple[str, str | None]]:
        return [(e.kind, e.tool) for e in self.events if e.subject == run_id]


@contextlib.asynccontextmanager
async def agent_worker(
    client: Client,
    task_queue: str,
    agents: AgentActivities,
    gateway: ToolActivities,
    fakes: AgentFakes,
    *,
    runner: WorkflowRunner | None = None,
) -> AsyncIterator[Worker]:
    """A worker with the real agent activities and gateway (`runner`: the workflow sandbox, e.g. the
    platform worker's passthrough one; default: the strict sandbox the replay tests use)."""
    worker = Worker(
        client,
        task_queue=task_queue,
        workflow_runner=runner or workflow_runner("strict"),
        workflows=[AgentWorkflow, ApprovalWorkflow],
        activities=[
            agents.start_run,
            agents.model_turn,
            agents.finish_run,
            gateway.list_tools,
            gateway.guard,
            gateway.call,
            gateway.execute,
            gateway.give_up,  # as the platform's worker: an approved write that gave up closes its row
            fakes.route,
            fakes.record,
            fakes.notify,
        ],
    )
    # The model and tools queues, as the platform's worker polls them (docs/scaling.md): requests
    # that name them (the gateway's and the CLI's, from Settings) run their calls there.
    model = Worker(client, task_queue=f"{task_queue}-model", activities=[agents.model_turn, fakes.route])
    tools = Worker(client, task_queue=f"{task_queue}-tools", activities=[gateway.call, gateway.execute])
    async with worker, model, tools:
        yield worker


async def start_agent(
    client: Client,
    task_queue: str,
    text: str,
    *,
    agent: str | None = "observability",
    limits: AgentLimits | None = None,
    approvers: Sequence[str] = (),
    depth: int = 0,
    request_id: str | None = None,
) -> WorkflowHandle[Any, AgentResult]:
    req = AgentRequest(
        request_id=request_id or uuid.uuid4().hex,
        text=text,
        agent=agent,
        requested_by="alice",
        limits=limits,
        approvers=list(approvers),
        depth=depth,
    )
    return await client.start_workflow(AgentWorkflow.run, req, id=agent_run_id(req.request_id), task_queue=task_queue)


async def progress_when(
    handle: WorkflowHandle[Any, Any], pred: Callable[[AgentProgress], bool], within: float = 60.0
) -> AgentProgress:
    deadline = asyncio.get_running_loop().time() + within
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            last = await handle.query(QUERY_AGENT_PROGRESS, result_type=AgentProgress)
            if pred(last):
                return last
        except Exception as exc:  # not started yet
            last = exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"the run's progress never matched: {last}")


async def answer_approval(client: Client, approval_id: str, choice: str, by: str) -> DecideResult:
    """Answer the run's question. The run shows `approval_id` in its progress as it asks, a moment
    before Temporal has created its child `ApprovalWorkflow`: wait for the child, as the product does."""
    handle = client.get_workflow_handle(approval_id)
    st = await approval_state(handle)  # as the product's answers wait (workers.agent_client)
    return await handle.execute_update(
        UPDATE_DECIDE,
        DecideInput(choice=choice, by=by, plan_hash=st.request.plan_hash),  # type: ignore[arg-type]
        result_type=DecideResult,
    )


async def history_bytes(handle: WorkflowHandle[Any, Any]) -> int:
    """The size of the run's whole event history as JSON."""
    return len((await handle.fetch_history()).to_json())


def first_task(history: WorkflowHistory) -> list[str]:
    """An agent run's patch markers (`patch:ID`) and local activities, in order, before its first
    model turn is scheduled (what its first workflow task ran)."""
    out: list[str] = []
    for e in history.events:
        if e.activity_task_scheduled_event_attributes.activity_type.name == "agents.model_turn":
            return out
        marker = e.marker_recorded_event_attributes
        if marker.marker_name == "core_patch":
            out.append("patch:" + json.loads(marker.details["patch-data"].payloads[0].data)["id"])
        elif marker.marker_name == "core_local_activity":
            out.append(json.loads(marker.details["data"].payloads[0].data)["activity_type"])
    raise AssertionError("the run never asked its model")
