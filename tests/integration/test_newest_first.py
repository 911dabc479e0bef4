"""`agentic incidents list` is "newest first" and `agentic rollout status` shows "the latest":
on the real Temporal dev server, whose SQL visibility lists running workflows before closed
ones, a run that started last and already finished must still come first."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from tests.support.temporal import start_dev_server
from workers.temporal import newest_first


@workflow.defn(name="NewestFirstProbe")
class Probe:
    def __init__(self) -> None:
        self._done = False

    @workflow.signal
    def finish(self) -> None:
        self._done = True

    @workflow.run
    async def run(self, wait: bool) -> None:
        if wait:
            await workflow.wait_condition(lambda: self._done)


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[Client]:
    env = await start_dev_server()
    yield env.client
    await env.shutdown()


async def test_a_run_that_started_last_and_finished_comes_first(client: Client) -> None:
    queue = f"newest-{uuid.uuid4().hex[:6]}"
    ids = [f"probe-{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]
    async with Worker(client, task_queue=queue, workflows=[Probe], workflow_runner=UnsandboxedWorkflowRunner()):
        # two long-running ones first, then a short one that finishes at once
        for wid in ids[:2]:
            await client.start_workflow(Probe.run, True, id=wid, task_queue=queue)
            await asyncio.sleep(0.05)
        await client.execute_workflow(Probe.run, False, id=ids[2], task_queue=queue)
        query = f"WorkflowType = 'NewestFirstProbe' AND TaskQueue = '{queue}'"
        for _ in range(100):  # visibility is eventually consistent
            listed = await newest_first(client, query, 10)
            if len(listed) == 3:
                break
            await asyncio.sleep(0.1)
        assert [wf.id for wf in listed] == [ids[2], ids[1], ids[0]]
        assert [wf.id for wf in await newest_first(client, query, 1)] == [ids[2]]
        # a plain listing puts the running ones first: what the CLI used to show as "the latest"
        plain = [wf.id async for wf in client.list_workflows(query, limit=1)]
        assert plain != [ids[2]]
        for wid in ids[:2]:
            await client.get_workflow_handle(wid).signal(Probe.finish)
