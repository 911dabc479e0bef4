"""The worker's passthrough sandbox (`workers/sandbox.py`): every captured history replays under
it, each per-payload context it answers in place is the one the SDK's sandbox gives, and what
each sandbox refuses at run time is what workers/sandbox.py says."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from tests.support.sandbox_probe import SandboxProbe
from tests.support.temporal import time_skipping_server
from workers import sandbox
from workflows.agent import AgentWorkflow
from workflows.approval import ApprovalWorkflow
from workflows.incident import IncidentWorkflow

HISTORIES = sorted((Path(__file__).resolve().parents[1] / "histories").glob("*.json"))
WORKFLOWS = [IncidentWorkflow, ApprovalWorkflow, AgentWorkflow]


def test_the_sdk_is_the_one_the_runner_knows() -> None:
    # Pinned SDK: the in-place answers are on. An SDK whose private sandbox instance changed falls
    # back to the stock runner; this test says so before a benchmark would.
    assert sandbox._ready
    assert isinstance(sandbox.workflow_runner("passthrough"), sandbox.PassthroughRunner)
    assert not isinstance(sandbox.workflow_runner("strict"), sandbox.PassthroughRunner)


ASKED: list[str] = []
DIFFER: list[str] = []


class _Compared(sandbox.PassthroughRunner):
    """The passthrough runner, asking the SDK's sandbox the same question every time too."""

    def create_instance(self, det: Any) -> Any:
        inst = super().create_instance(det)
        cls = type(inst)

        class Checked(cls):  # type: ignore[misc, valid-type]
            def get_serialization_context(self, command_info: Any) -> Any:
                fast = super().get_serialization_context(command_info)
                if self._inner() is not None:
                    slow = sandbox._SdkInstance.get_serialization_context(self, command_info)
                    ASKED.append("serialization")
                    if fast != slow:
                        DIFFER.append(f"{command_info}: {fast!r} != {slow!r}")
                return fast

            def get_external_store_context(self, command_info: Any) -> Any:
                fast = super().get_external_store_context(command_info)
                if self._inner() is not None:
                    slow = sandbox._SdkInstance.get_external_store_context(self, command_info)
                    ASKED.append("store")
                    if fast != slow:
                        DIFFER.append(f"{command_info}: {fast!r} != {slow!r}")
                return fast

        inst.__class__ = Checked
        return inst


async def test_every_captured_history_replays_with_the_same_contexts() -> None:
    assert HISTORIES, "no captured histories"
    ASKED.clear()
    DIFFER.clear()
    runner = _Compared(restrictions=sandbox.workflow_runner("passthrough").restrictions)
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=runner)
    for path in HISTORIES:
        await replayer.replay_workflow(WorkflowHistory.from_json(path.stem, path.read_text()))
    assert len(ASKED) > 100  # every payload of every history asked
    assert {"serialization", "store"} <= set(ASKED)
    assert DIFFER == []


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    e = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=time_skipping_server()
    )
    try:
        yield e
    finally:
        await e.shutdown()


# What each sandbox refuses when workflow code calls it: the strict one refuses the clock and
# randomness; the passthrough one only I/O through the builtins (`open`). The static check in
# tests/unit/test_workflow_determinism.py keeps the rest out of `workflows/`.
CALLS = ("workflow.now", "datetime.now", "random.random", "time.time", "open")
REFUSED = {
    "strict": dict(zip(CALLS, (False, True, True, True, True), strict=True)),
    "passthrough": dict(zip(CALLS, (False, False, False, False, True), strict=True)),
}


@pytest.mark.parametrize("mode", ["passthrough", "strict"])
async def test_what_the_sandbox_refuses(env: WorkflowEnvironment, mode: str) -> None:
    queue = f"sandbox-{uuid.uuid4().hex[:8]}"
    refused: dict[str, bool] = {}
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[SandboxProbe],
        workflow_runner=sandbox.workflow_runner(mode),
        workflow_failure_exception_types=[Exception],
    ):
        for call in REFUSED[mode]:
            try:
                await env.client.execute_workflow(
                    SandboxProbe.run, call, id=f"probe-{uuid.uuid4().hex[:6]}", task_queue=queue
                )
                refused[call] = False
            except WorkflowFailureError as err:
                assert "RestrictedWorkflowAccessError" in repr(err.cause), err.cause
                refused[call] = True
    assert refused == REFUSED[mode]
