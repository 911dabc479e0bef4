"""Whatever the intake accepts becomes an incident a human can see (issue: an accepted alert
whose incident was silently lost).

On the real Temporal dev server (it enforces the 2 KiB limit on a search attribute's value):
Alertmanager webhooks whose alert name is 2,100, 10,000 and 100,000 characters long are posted
to the intake (HTTP, in process) and each must reach a human question with its `AlertName`
search attribute and its title bounded, instead of a first workflow task that fails with
`BadSearchAttributes` and a run the server terminates. And a run that hits an error the code
did not expect ends FAILED, recorded and notified, instead of retrying its workflow task
forever while the incident looks open.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

import workflows.incident as incident_module
from agentic_core import search_attributes as sa
from agentic_core.alerts import incident_id_for
from agentic_core.incident import (
    QUERY_STATE,
    SIGNAL_ALERTS,
    AlertsSignal,
    IncidentInput,
    IncidentState,
    IncidentStatus,
    NotifyKind,
)
from agentic_core.policy import TITLE_MAX
from tests.support.incident_fakes import Fakes, make_group
from tests.support.intake import TOKEN, factory_for, settings, webhook
from tests.support.temporal import start_dev_server
from workers.intake import create_app
from workers.sandbox import workflow_runner
from workers.temporal import ensure_search_attributes
from workflows.approval import ApprovalWorkflow
from workflows.incident import IncidentWorkflow
from workflows.promotion import RunbookPromotionWorkflow


@pytest.fixture(scope="module")
async def dev() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    await ensure_search_attributes(env.client, "default")
    yield env
    await env.shutdown()


async def wait_state(client: Client, incident_id: str, pred: Any, within: float = 30.0) -> IncidentState:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            st = await client.get_workflow_handle(incident_id).query(QUERY_STATE, result_type=IncidentState)
            if pred(st):
                return st
        except Exception as exc:  # not started yet, or its first task failed
            st = None
            last: Any = exc
        else:
            last = st.model_dump_json(indent=1)
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"incident {incident_id} did not get there: {last}")
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("length", [2_100, 10_000, 100_000])
async def test_an_accepted_alert_with_a_huge_name_reaches_a_human(dev: WorkflowEnvironment, length: int) -> None:
    queue = f"bounds-{uuid.uuid4().hex[:8]}"
    fakes = Fakes()
    name = "KubePodCrashLooping" + "X" * (length - len("KubePodCrashLooping"))
    doc = webhook(f"agentic-{uuid.uuid4().hex[:6]}", name)
    doc["groupKey"] = f'{{}}:{{namespace="media", group="{uuid.uuid4().hex[:8]}"}}'  # grouped by namespace
    doc["groupLabels"] = {"namespace": "media"}
    doc["commonAnnotations"] = {"summary": "S" * length}
    for a in doc["alerts"]:
        a["annotations"]["summary"] = "S" * length
    app = create_app(
        factory_for(dev.client),
        # one worker on one queue here: the model's and the tools' calls stay on it (test_task_queues splits them)
        settings(task_queue=queue, approval_mode="VERBOSE", intake_max_body=1_048_576, queues_split=False),
    )
    async with (
        Worker(
            dev.client,
            task_queue=queue,
            workflow_runner=workflow_runner("strict"),
            workflows=[IncidentWorkflow, ApprovalWorkflow, RunbookPromotionWorkflow],
            activities=fakes.activities(),
        ),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http,
    ):
        res = await http.post(
            "/alerts",
            content=json.dumps(doc).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        assert res.status_code == 202, res.text
        incident_id = incident_id_for(doc["receiver"], doc["groupKey"])
        assert res.json()["incidents"] == [incident_id]
        st = await wait_state(dev.client, incident_id, lambda s: s.status == IncidentStatus.AWAITING_APPROVAL)
        desc = await dev.client.get_workflow_handle(incident_id).describe()
        await dev.client.get_workflow_handle(incident_id).terminate("test done")
    shown = desc.typed_search_attributes.get(sa.ALERT_NAME)
    assert shown is not None and shown.startswith("KubePodCrashLooping") and shown.endswith("…")
    assert len(shown.encode()) <= sa.KEYWORD_MAX_BYTES
    assert len(st.title) <= TITLE_MAX and st.title.endswith("… [cut]")
    assert fakes.kinds()[:2] == [NotifyKind.QUESTION, NotifyKind.DIAGNOSIS]  # a human was asked


def test_keyword_values_within_the_limit_are_unchanged() -> None:
    assert sa.keyword("KubePodCrashLooping") == "KubePodCrashLooping"
    assert sa.keyword("é" * 256) == "é" * 256  # 512 bytes exactly
    cut = sa.keyword("é" * 300)
    assert cut.endswith("…") and len(cut.encode()) <= sa.KEYWORD_MAX_BYTES
    assert cut.encode().decode() == cut  # never cut inside a character


async def test_a_run_that_hits_an_unexpected_error_ends_failed_recorded_and_notified(
    dev: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the workflow (here the diagnosis text raising) closes the incident as FAILED with
    the error, records it and tells people, instead of a workflow task retried forever."""

    def broken(*_args: Any, **_kwargs: Any) -> str:
        raise RuntimeError("diagnosis text exploded")

    monkeypatch.setattr(incident_module, "diagnosis_text", broken)
    fakes = Fakes()
    queue = f"bounds-{uuid.uuid4().hex[:8]}"
    async with Worker(
        dev.client,
        task_queue=queue,
        workflows=[IncidentWorkflow, ApprovalWorkflow, RunbookPromotionWorkflow],
        activities=fakes.activities(),
        workflow_runner=UnsandboxedWorkflowRunner(),  # so the patched module is the one that runs
    ):
        incident_id = f"inc-{uuid.uuid4().hex[:12]}"
        group = make_group(incident_id)
        handle = await dev.client.start_workflow(
            IncidentWorkflow.run,
            IncidentInput(incident_id=incident_id, group=group),
            id=incident_id,
            task_queue=queue,
            start_signal=SIGNAL_ALERTS,
            start_signal_args=[AlertsSignal(group=group)],
        )
        final = await asyncio.wait_for(handle.result(), timeout=30)
    assert final.status == IncidentStatus.FAILED
    assert final.outcome is not None and final.outcome.outcome == "failure"
    assert "could not proceed: RuntimeError: diagnosis text exploded" in final.outcome.detail
    assert all(s.finished_at is not None for s in final.stages)
    recorded = fakes.records[-1].state
    assert recorded.status == IncidentStatus.FAILED and recorded.outcome == final.outcome
    last = fakes.notifications[-1]
    assert last.kind == NotifyKind.UPDATE and "diagnosis text exploded" in last.text
