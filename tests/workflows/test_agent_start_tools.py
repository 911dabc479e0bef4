"""The agent run's first workflow task (`START_LISTS_TOOLS_PATCH`): `agents.start_run` lists the
agent's tools, so the run asks its model after one local activity, not two; when the start could
not list them (`StartRunResult.tools` None) the run lists through `tools.list_tools` as before,
with its retries and, when that fails too, its note in the answer. The activities are fakes under
their real names on the time-skipping server (as in tests/support/capture_agent_history.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.tools import LIST_TOOLS
from agentic_core.agents import (
    ACTIVITY_MODEL_TURN,
    ACTIVITY_START_RUN,
    AgentResult,
    AgentStatus,
    ModelTurnInput,
    ModelTurnResult,
    StartRunInput,
    StartRunResult,
)
from agentic_core.incident import ListToolsInput, ListToolsResult, ToolSpec
from tests.support import capture_agent_history as agent_fakes
from tests.support.agent_harness import AgentFakes, first_task, start_agent
from tests.support.temporal import time_skipping_with_attributes
from workers.sandbox import workflow_runner
from workflows.agent import _RETRY, START_LISTS_TOOLS_PATCH, AgentWorkflow


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_with_attributes() as e:
        yield e


class Run:
    """The fakes of one run: what the start and `tools.list_tools` list, what the model was offered."""

    def __init__(self, *, start_lists: bool, list_tools_fails: bool = False) -> None:
        self.start_lists, self.list_tools_fails = start_lists, list_tools_fails
        self.asked_to_list: list[bool] = []
        self.listed = 0
        self.offered: list[list[str]] = []

    @activity.defn(name=ACTIVITY_START_RUN)
    async def start_run(self, inp: StartRunInput) -> StartRunResult:
        self.asked_to_list.append(inp.list_tools)
        tools = [ToolSpec(name="get_pods", mutating=False)] if inp.list_tools and self.start_lists else None
        return StartRunResult(tools=tools)

    @activity.defn(name=LIST_TOOLS)
    async def list_tools(self, inp: ListToolsInput) -> ListToolsResult:
        self.listed += 1
        if self.list_tools_fails:
            raise ApplicationError("no MCP server answered")
        return ListToolsResult(tools=[ToolSpec(name="get_nodes", mutating=False)])

    @activity.defn(name=ACTIVITY_MODEL_TURN)
    async def model_turn(self, inp: ModelTurnInput) -> ModelTurnResult:
        self.offered.append([str(t["name"]) for t in inp.tools])
        return ModelTurnResult(text="all pods are running")


async def run(
    env: WorkflowEnvironment, fakes: Run, agent: str | None = "observability"
) -> tuple[AgentResult, WorkflowHistory]:
    queue = f"start-tools-{uuid.uuid4().hex[:8]}"
    helpers = AgentFakes()
    activities: list[Any] = [fakes.start_run, fakes.list_tools, fakes.model_turn, agent_fakes.finish_run]
    async with Worker(
        env.client,
        task_queue=queue,
        workflow_runner=workflow_runner("strict"),
        workflows=[AgentWorkflow],
        activities=[*activities, helpers.route, helpers.record, helpers.notify],
    ):
        handle = await start_agent(env.client, queue, "are the pods up?", agent=agent)
        res = await handle.result()
        history = await handle.fetch_history()
    await Replayer(
        workflow_runner=workflow_runner("strict"), workflows=[AgentWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history)
    return res, history


@pytest.mark.parametrize("agent", ["observability", None], ids=["named", "routed"])
async def test_the_start_lists_the_tools_and_the_model_is_asked_after_one_local_activity(
    env: WorkflowEnvironment, agent: str | None
) -> None:
    fakes = Run(start_lists=True)
    res, history = await run(env, fakes, agent)  # routed: `agents.route`, a regular activity, first
    assert res.status == AgentStatus.DONE and res.answer == "all pods are running"
    assert fakes.asked_to_list == [True] and fakes.listed == 0
    assert fakes.offered == [["get_pods"]]  # the start's listing
    assert first_task(history) == [f"patch:{START_LISTS_TOOLS_PATCH}", ACTIVITY_START_RUN]


async def test_a_start_that_could_not_list_leaves_it_to_tools_list_tools(env: WorkflowEnvironment) -> None:
    fakes = Run(start_lists=False)  # no catalogue, or its listing failed or was too slow
    res, history = await run(env, fakes)
    assert res.status == AgentStatus.DONE and res.answer == "all pods are running"
    assert fakes.asked_to_list == [True] and fakes.listed == 1
    assert fakes.offered == [["get_nodes"]]  # tools.list_tools' listing
    assert first_task(history) == [f"patch:{START_LISTS_TOOLS_PATCH}", ACTIVITY_START_RUN, LIST_TOOLS]


async def test_when_tools_list_tools_fails_too_the_answer_says_so(env: WorkflowEnvironment) -> None:
    fakes = Run(start_lists=False, list_tools_fails=True)
    res, _ = await run(env, fakes)
    assert fakes.listed == _RETRY.maximum_attempts  # retried as before
    assert fakes.offered == [[]]
    assert res.status == AgentStatus.DONE
    assert "no tools could be listed (no MCP server answered)" in res.answer
