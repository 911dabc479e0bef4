"""Separate task queues (docs/scaling.md): a saturated model queue never delays an incident's
question or its approval, and the model and tool calls run where the incident's config says.

Three Workers on the time-skipping test server, as `agentic up` runs them in one process: the
orchestration queue (workflows and the short stages), the model queue (`incident.propose`, one
slot, held shut) and the tools queue (`tools.execute`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentic_core.incident import (
    SIGNAL_ALERTS,
    ActionResult,
    AlertsSignal,
    DecideInput,
    ExecuteInput,
    IncidentConfig,
    IncidentInput,
    IncidentStatus,
    NotifyKind,
    ProposeInput,
    ProposeResult,
)
from tests.support.incident_fakes import Fakes, Run, make_group, replay
from tests.support.temporal import time_skipping_with_attributes
from workers.sandbox import workflow_runner
from workflows.approval import ApprovalWorkflow
from workflows.incident import IncidentWorkflow
from workflows.promotion import RunbookPromotionWorkflow


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_with_attributes() as e:
        yield e


@dataclass
class QueueFakes(Fakes):
    """The fakes, with a model that is busy until `model_free` is set; each call notes its queue."""

    model_free: asyncio.Event = field(default_factory=asyncio.Event)
    queues: dict[str, list[str]] = field(default_factory=dict)

    @activity.defn(name="incident.propose")
    async def propose(self, inp: ProposeInput) -> ProposeResult:
        self.queues.setdefault("incident.propose", []).append(activity.info().task_queue)
        await self.model_free.wait()
        return await Fakes.propose(self, inp)

    @activity.defn(name="tools.execute")
    async def execute(self, inp: ExecuteInput) -> ActionResult:
        self.queues.setdefault("tools.execute", []).append(activity.info().task_queue)
        return await Fakes.execute(self, inp)


async def test_a_busy_model_queue_does_not_delay_questions_or_approvals(env: WorkflowEnvironment) -> None:
    fakes = QueueFakes()
    base = f"split-{uuid.uuid4().hex[:8]}"
    orch, model, tools = base, f"{base}-model", f"{base}-tools"
    short = [a for a in fakes.activities() if a not in (fakes.propose, fakes.execute)]
    config = IncidentConfig(model_queue=model, tools_queue=tools)
    async with (
        Worker(
            env.client,
            task_queue=orch,
            workflow_runner=workflow_runner("strict"),
            workflows=[IncidentWorkflow, ApprovalWorkflow, RunbookPromotionWorkflow],
            activities=short,
        ),
        Worker(env.client, task_queue=model, activities=[fakes.propose], max_concurrent_activities=1),
        Worker(env.client, task_queue=tools, activities=[fakes.execute]),
    ):

        async def start() -> Run:
            iid = f"inc-{uuid.uuid4().hex[:12]}"
            group = make_group(iid)
            handle = await env.client.start_workflow(
                IncidentWorkflow.run,
                IncidentInput(incident_id=iid, group=group, config=config),
                id=iid,
                task_queue=orch,
                start_signal=SIGNAL_ALERTS,
                start_signal_args=[AlertsSignal(group=group)],
            )
            return Run(env.client, handle, iid, orch)

        # One incident gets its diagnosis while the model is free, and waits for its approval.
        fakes.model_free.set()
        first = await start()
        st = await first.awaiting()
        assert fakes.queues["incident.propose"] == [model]
        # Now the model is busy: its one slot is taken and held by the next incidents.
        fakes.model_free.clear()
        runs = [await start() for _ in range(3)]
        loop = asyncio.get_running_loop()
        started = loop.time()

        def questions() -> int:
            return len([n for n in fakes.notifications if n.kind == NotifyKind.QUESTION])

        while questions() < 4 or len(fakes.queues["incident.propose"]) < 2:
            assert loop.time() - started < 20, f"questions held up behind the model: {fakes.kinds()}"
            await asyncio.sleep(0.05)
        # Every new incident's question went out; the approval is answered and its plan runs
        # on the tools queue, all while the model's slot is held.
        res = await first.decide(DecideInput(choice="approved", by="alice", plan_hash=st.plan_hash or ""))
        assert res.accepted
        await first.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
        assert fakes.queues["tools.execute"] == [tools] * len(st.plan)
        assert not fakes.model_free.is_set() and fakes.queues["incident.propose"] == [model] * 2
        assert [(await r.state()).status for r in runs] == [IncidentStatus.OPEN] * 3  # waiting for the model

        fakes.model_free.set()
        for r in runs:
            await r.awaiting()
        assert fakes.queues["incident.propose"] == [model] * 4
        await replay(first)  # the split run's history replays with today's code
        runs.append(first)
        for r in runs:
            await r.handle.terminate("test over")
