"""Capture the history of one finished agent run (and its approval) for the replay-compatibility
test: `python -m tests.support.capture_agent_history agent-NAME` writes `tests/histories/NAME.agent.json`
and `NAME.agent-approval.json`.

The run: the observability agent named by the request; a model turn asks for a read (`get_pods`,
run through `tools.call`), the next for a write (`rollout_restart`: an approval question, approved
by bob, run once through `tools.execute`), the third answers. Every activity is a fake under its
real name on the time-skipping server: a history holds the activities' results, so replaying it
needs only the workflow code. Capture a new one whenever `AgentWorkflow` changes the commands it
issues (behind `workflow.patched`), and keep the old ones. With `--gave-up` (after NAME), the approved
write's server stays unreachable through every retry: the run closes the write's ledger row with
`tools.give_up` (`WRITE_GIVE_UP_PATCH`). With `--cancelled`, nobody answers: the run is cancelled
while it waits for the answer (`RUN_CANCEL_PATCH`: it ends cancelled and closes its ledger row with
`agents.finish_run`; before the patch, the cancelled question was taken as expired and the run went
on to its answer). Since `START_LISTS_TOOLS_PATCH` the run's tools come with `agents.start_run`
(the fake lists them when asked), so a new history has no `tools.list_tools` marker.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.tools import ERR_UNAVAILABLE, EXECUTE, GIVE_UP, GUARD, LIST_TOOLS
from agentic_core.agents import (
    ACTIVITY_FINISH_RUN,
    ACTIVITY_MODEL_TURN,
    ACTIVITY_START_RUN,
    ACTIVITY_TOOL_CALL,
    AgentStatus,
    AgentToolCall,
    FinishRunInput,
    ModelTurnInput,
    ModelTurnResult,
    ResultRef,
    StartRunInput,
    StartRunResult,
    ToolCallInput,
    ToolCallResult,
)
from agentic_core.incident import (
    ActionResult,
    ExecuteInput,
    GiveUpInput,
    GuardedAction,
    GuardInput,
    GuardResult,
    ListToolsInput,
    ListToolsResult,
    ToolSpec,
)
from tests.support.agent_harness import AgentFakes, answer_approval, progress_when, start_agent
from tests.support.temporal import register_search_attributes, time_skipping_server
from workers.sandbox import workflow_runner
from workflows.agent import AgentWorkflow
from workflows.approval import ApprovalWorkflow

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
TURNS = [
    ModelTurnResult(
        text="Looking at the pods.",
        tool_calls=[AgentToolCall(call_id="c1", tool="get_pods", arguments={"namespace": "media"})],
    ),
    ModelTurnResult(
        tool_calls=[
            AgentToolCall(call_id="c2", tool="rollout_restart", arguments={"namespace": "media", "deployment": "x"})
        ]
    ),
    ModelTurnResult(text="x was restarted."),
]


TOOLS = [
    ToolSpec(name="get_pods", server="infra", mutating=False),
    ToolSpec(name="rollout_restart", server="infra", mutating=True),
]


@activity.defn(name=ACTIVITY_START_RUN)
async def start_run(inp: StartRunInput) -> StartRunResult:
    # asked (`START_LISTS_TOOLS_PATCH`), the tools come with the start: no `tools.list_tools`
    return StartRunResult(tools=list(TOOLS) if inp.list_tools else None)


@activity.defn(name=LIST_TOOLS)
async def list_tools(inp: ListToolsInput) -> ListToolsResult:
    return ListToolsResult(tools=list(TOOLS))


@activity.defn(name=ACTIVITY_MODEL_TURN)
async def model_turn(inp: ModelTurnInput) -> ModelTurnResult:
    return TURNS[min(inp.step, len(TURNS)) - 1]


@activity.defn(name=GUARD)
async def guard(inp: GuardInput) -> GuardResult:
    return GuardResult(actions=[GuardedAction(index=i, call=c, allowed=True) for i, c in enumerate(inp.actions)])


@activity.defn(name=ACTIVITY_TOOL_CALL)
async def call(inp: ToolCallInput) -> ToolCallResult:
    return ToolCallResult(status="ok", result=ResultRef(ref=f"{inp.run_id}/1/c1", size=40, preview="x-1 Running"))


@activity.defn(name=EXECUTE)
async def execute(inp: ExecuteInput) -> ActionResult:
    return ActionResult(index=inp.index, tool=inp.call.tool, idempotency_key=inp.idempotency_key, status="succeeded")


@activity.defn(name=EXECUTE)
async def execute_unreachable(inp: ExecuteInput) -> ActionResult:
    raise ApplicationError("cannot reach the MCP server of rollout_restart", type=ERR_UNAVAILABLE)


@activity.defn(name=GIVE_UP)
async def give_up(inp: GiveUpInput) -> ActionResult:
    return ActionResult(
        index=inp.index,
        tool=inp.call.tool,
        idempotency_key=inp.idempotency_key,
        status="failed",
        error=f"gave up: {inp.reason}",
        infrastructure=True,
    )


@activity.defn(name=ACTIVITY_FINISH_RUN)
async def finish_run(inp: FinishRunInput) -> None:
    return None


async def capture(name: str, *, gave_up: bool = False, cancelled: bool = False) -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=time_skipping_server()
    )
    fakes = AgentFakes()
    queue = f"capture-{uuid.uuid4().hex[:8]}"
    try:
        await register_search_attributes(env.client)
        async with Worker(
            env.client,
            task_queue=queue,
            workflow_runner=workflow_runner("strict"),
            workflows=[AgentWorkflow, ApprovalWorkflow],
            activities=[
                start_run,
                list_tools,
                model_turn,
                guard,
                call,
                *([execute_unreachable, give_up] if gave_up else [execute]),
                finish_run,
                fakes.route,
                fakes.record,
                fakes.notify,
            ],
        ):
            # The replay test loads a history with its file's stem as the workflow id, and the run's
            # child ids derive from its id: the run's id is that stem (`agent-` + the request id).
            stem = f"{name}.agent"
            if not stem.startswith("agent-"):
                raise SystemExit("NAME must start with agent- (the run's id is the file's stem)")
            request_id = stem.removeprefix("agent-")
            handle = await start_agent(env.client, queue, "restart x", approvers=["bob"], request_id=request_id)
            waiting = await progress_when(handle, lambda p: p.approval_id is not None)
            assert waiting.approval_id is not None
            if cancelled:
                await handle.cancel()
                try:
                    print(f"the cancelled run ended {(await handle.result()).status.value} (before the patch)")
                except WorkflowFailureError as exc:
                    print(f"the cancelled run ended: {exc.cause!r}")
            else:
                await answer_approval(env.client, waiting.approval_id, "approved", "bob")
                res = await handle.result()
                assert res.status == AgentStatus.DONE, res
            agent = await handle.fetch_history()
            approval = await env.client.get_workflow_handle(waiting.approval_id).fetch_history()
    finally:
        await env.shutdown()
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.agent.json").write_text(agent.to_json())
    (HISTORIES / f"{name}.agent-approval.json").write_text(approval.to_json())
    print(f"wrote {HISTORIES}/{name}.agent.json and .agent-approval.json")


if __name__ == "__main__":
    asyncio.run(capture(sys.argv[1], gave_up="--gave-up" in sys.argv[2:], cancelled="--cancelled" in sys.argv[2:]))
