"""The incident's investigate stage (workflows/investigate.py) on the time-skipping test server,
with fake activities under the real names: the runbook's evidence calls run read-only through
the gateway's `tools.execute` under their own keys, within the budget (at most N calls, at most
T seconds), every call that cannot be gathered is said, and the evidence reaches the planner, the
state and the diagnosis. The model seam (`investigate_model_calls`) with a fake `AgentWorkflow`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio import workflow
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from agentic_core.agents import AgentRequest, AgentResult, AgentToolCall, ResultRef, ToolCallRecord
from agentic_core.alerts import AlertStatus
from agentic_core.evidence import EvidenceItem, evidence_key
from agentic_core.incident import DecideInput, IncidentConfig, IncidentState, IncidentStatus, NotifyKind
from agentic_core.models import ToolCall
from tests.support.incident_fakes import (
    EVENTS,
    EVIDENCE,
    LOGS,
    PREVIOUS_LOGS,
    RESTART,
    WORKING_SET,
    Fakes,
    Run,
    incident,
    make_group,
    replay,
)
from tests.support.temporal import time_skipping_with_attributes
from workers.sandbox import workflow_runner
from workflows.approval import ApprovalWorkflow
from workflows.incident import IncidentWorkflow


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_with_attributes() as e:
        yield e


def by_tool(st: IncidentState) -> dict[str, EvidenceItem]:
    return {e.call.tool: e for e in st.evidence}


def stage(st: IncidentState, name: str) -> Any:
    return next(s for s in st.stages if s.name == name)


async def approve_and_finish(run: Run) -> IncidentState:
    st = await run.awaiting()
    await run.decide(DecideInput(choice="approved", by="alice", plan_hash=st.plan_hash or ""))
    await run.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
    await run.signal(make_group(run.incident_id, AlertStatus.RESOLVED))
    return await run.result()


async def test_the_runbooks_evidence_is_gathered_and_shown_before_the_diagnosis(env: WorkflowEnvironment) -> None:
    fakes = Fakes(runbook_evidence=list(EVIDENCE))
    async with incident(env, fakes) as run:
        st = await run.awaiting()
        assert [s.name for s in st.stages][:4] == ["triage", "recall", "investigate", "propose"]
        assert stage(st, "investigate").detail.startswith("3 of 3 gathered in ")
        # each call ran once, read-only, through the gateway, under its own key (not an action's)
        evidence = fakes.evidence_calls()
        assert sorted((e.index, e.call) for e in evidence) == list(enumerate(EVIDENCE))
        assert {e.idempotency_key for e in evidence} == {
            evidence_key(run.incident_id, i, run.occurrence or 0) for i in range(3)
        }
        assert all(e.agent == "incident" for e in evidence)
        assert [(e.index, e.call, e.status) for e in st.evidence] == [(i, c, "ok") for i, c in enumerate(EVIDENCE)]
        assert by_tool(st)["get_events"].excerpt == f"get_events says: {EVENTS.arguments}"
        # the planner got it (quoted in its prompt), and the diagnosis shows it
        assert fakes.proposes[0].evidence == st.evidence
        diagnosis = next(n for n in fakes.notifications if n.kind == NotifyKind.DIAGNOSIS).text
        assert "Evidence (3 of 3 gathered):" in diagnosis
        assert "  2. get_events(involved_object='checkout-1', namespace='shop'): ok: get_events says:" in diagnosis
        assert diagnosis.index("Evidence") < diagnosis.index("Plan:")
        final = await approve_and_finish(run)
        await replay(run)
    # looking is not acting: the plan's actions are the only actions
    assert fakes.action_calls() == [LOGS, RESTART] and [a.tool for a in final.actions] == [LOGS.tool, RESTART.tool]
    assert len(final.evidence) == 3 and fakes.records[-1].state.evidence == final.evidence


async def test_at_most_n_calls_the_rest_skipped_and_said(env: WorkflowEnvironment) -> None:
    four = [*EVIDENCE, ToolCall(tool="get_events", arguments={"namespace": "kube-system"})]
    fakes = Fakes(runbook_evidence=four)
    async with incident(env, fakes, IncidentConfig(investigate_max_calls=2)) as run:
        st = await run.awaiting()
    assert len(fakes.evidence_calls()) == 2
    assert [(e.index, e.status) for e in st.evidence] == [(0, "ok"), (1, "ok"), (2, "skipped"), (3, "skipped")]
    assert st.evidence[2].error == "over the budget of 2 evidence call(s)"
    assert stage(st, "investigate").detail.startswith("2 of 4 gathered; 2 skipped in ")


async def test_at_most_t_seconds_a_slow_call_is_timed_out_and_said(env: WorkflowEnvironment) -> None:
    fakes = Fakes(runbook_evidence=[PREVIOUS_LOGS, WORKING_SET], slow_tools={"prom_query": 8.0})
    async with incident(env, fakes, IncidentConfig(investigate_budget_s=2)) as run:
        st = await run.awaiting()
        await replay_incident(run)
    ev = by_tool(st)
    assert ev["get_pod_logs"].status == "ok"
    assert (ev["prom_query"].status, ev["prom_query"].error) == (
        "timed_out",
        "no answer within the investigate budget of 2s",
    )
    rec = stage(st, "investigate")
    assert rec.finished_at is not None and (rec.finished_at - rec.started_at).total_seconds() < 4
    diagnosis = next(n for n in fakes.notifications if n.kind == NotifyKind.DIAGNOSIS).text
    assert (
        "prom_query(query='container_memory_working_set_bytes{namespace=\"shop\"}'): timed_out: no answer" in diagnosis
    )


async def test_evidence_that_cannot_be_gathered_is_said_not_hidden(env: WorkflowEnvironment) -> None:
    mutating = ToolCall(tool="kubernetes.scale_deployment", arguments={"namespace": "shop", "replicas": 0})
    not_offered = ToolCall(tool="prom_rules", arguments={})
    calls = [PREVIOUS_LOGS, EVENTS, WORKING_SET, mutating, not_offered]
    fakes = Fakes(
        runbook_evidence=calls,
        runbook_evidence_skipped=["describe_pod: template '{{ labels.pod }}' needs label 'pod', which the alert lacks"],
        fail_tools={"get_pod_logs"},
        refuse_at_execute={"get_events"},
    )
    async with incident(env, fakes) as run:
        st = await run.awaiting()
    ev = by_tool(st)
    assert (ev["get_pod_logs"].status, ev["get_pod_logs"].error) == ("failed", "boom")
    assert ev["get_events"].status == "refused" and "no longer allowed" in ev["get_events"].error
    assert ev["prom_query"].status == "ok"
    assert ev["kubernetes.scale_deployment"].status == "refused"
    assert "changes something: evidence calls only look" in ev["kubernetes.scale_deployment"].error
    assert ev["prom_rules"].status == "unavailable"
    assert ev["prom_rules"].error == (
        "no configured MCP server offers prom_rules to the incident agent now (the metrics tools come from the "
        "metrics MCP server: set AGENTIC_PROMETHEUS_URL)"
    )
    assert (ev["describe_pod"].status, ev["describe_pod"].index) == ("skipped", 5)
    assert ev["describe_pod"].error.startswith("not rendered for this alert: template '{{ labels.pod }}'")
    # nothing that changes anything was called, and nothing offered only by name
    assert {e.call.tool for e in fakes.evidence_calls()} == {"get_pod_logs", "get_events", "prom_query"}
    diagnosis = next(n for n in fakes.notifications if n.kind == NotifyKind.DIAGNOSIS).text
    assert "Evidence (1 of 6 gathered; 1 failed; 2 refused; 1 skipped; 1 unavailable):" in diagnosis
    assert "  1. get_pod_logs(namespace='shop', pod='checkout-1', previous=True): failed: boom" in diagnosis


async def test_no_tool_list_every_call_unavailable(env: WorkflowEnvironment) -> None:
    fakes = Fakes(runbook_evidence=[PREVIOUS_LOGS], list_tools_fails=True, proposal_actions=[])
    async with incident(env, fakes) as run:
        st = await run.wait_for(lambda s: s.proposal is not None)
    [item] = st.evidence
    assert item.status == "unavailable" and item.error.startswith("the tool list could not be had: no MCP server")
    assert fakes.evidence_calls() == []


async def test_a_runbook_without_evidence_runs_nothing_and_says_so(env: WorkflowEnvironment) -> None:
    fakes = Fakes()
    async with incident(env, fakes) as run:
        st = await run.awaiting()
        await replay_incident(run)
    assert st.evidence == [] and fakes.evidence_calls() == []
    assert stage(st, "investigate").detail == f"nothing to gather: runbook {st.runbook_id} declares no evidence"
    diagnosis = next(n for n in fakes.notifications if n.kind == NotifyKind.DIAGNOSIS).text
    assert "Evidence" not in diagnosis


async def replay_incident(run: Run) -> None:
    replayer = Replayer(
        workflow_runner=workflow_runner("strict"),
        workflows=[IncidentWorkflow, ApprovalWorkflow],
        data_converter=pydantic_data_converter,
    )
    await replayer.replay_workflow(await run.handle.fetch_history())


# --------------------------------------------------------------------------- the model seam

PROM = AgentToolCall(call_id="c1", tool="prom_alerts", arguments={"state": "firing"})
WRITE = AgentToolCall(call_id="c2", tool="scale_deployment", arguments={"replicas": 0})


@workflow.defn(name="AgentWorkflow")
class FakeAgentWorkflow:
    """The agent runtime's workflow as the investigate stage sees it: its result's tool calls. It
    fails when offered a single call (how a test asks for a failing agent)."""

    @workflow.run
    async def run(self, req: AgentRequest) -> AgentResult:
        if req.agent != "observability" or req.source != "incident" or req.limits is None:
            raise ApplicationError(f"unexpected request {req}", non_retryable=True)
        if req.limits.max_tool_calls == 1:
            raise ApplicationError("the observability agent is not configured", non_retryable=True)
        records = [
            ToolCallRecord(step=1, call=PROM, status="ok", result=ResultRef(ref="b1", size=9, preview="1 firing")),
            ToolCallRecord(step=1, call=WRITE, status="refused", reason="not on the observability allow-list"),
        ]
        return AgentResult(run_id=workflow.info().workflow_id, request_id=req.request_id, tool_calls=records)


async def run_with_agent(env: WorkflowEnvironment, fakes: Fakes, cfg: IncidentConfig) -> IncidentState:
    async with incident(env, fakes, cfg, extra_workflows=(FakeAgentWorkflow,)) as run:
        return await run.awaiting()


async def test_a_capable_model_may_add_read_calls_through_the_observability_agent(env: WorkflowEnvironment) -> None:
    fakes = Fakes(runbook_evidence=[PREVIOUS_LOGS])
    st = await run_with_agent(env, fakes, IncidentConfig(investigate_model_calls=2))
    assert [(e.index, e.source, e.call.tool, e.status) for e in st.evidence] == [
        (0, "runbook", "get_pod_logs", "ok"),
        (1, "model", "prom_alerts", "ok"),
        (2, "model", "scale_deployment", "refused"),
    ]
    assert st.evidence[1].excerpt == "1 firing" and st.evidence[2].error == "not on the observability allow-list"
    assert stage(st, "investigate").detail.endswith("; the model added 2 call(s)")


async def test_the_model_seam_failing_is_said(env: WorkflowEnvironment) -> None:
    fakes = Fakes(runbook_evidence=[PREVIOUS_LOGS])
    st = await run_with_agent(env, fakes, IncidentConfig(investigate_model_calls=1))
    assert [e.source for e in st.evidence] == ["runbook"]
    detail = stage(st, "investigate").detail
    assert "the model's evidence could not be had: the observability agent is not configured" in detail


async def test_off_by_default_no_agent_is_asked(env: WorkflowEnvironment) -> None:
    fakes = Fakes(runbook_evidence=[PREVIOUS_LOGS])
    async with incident(env, fakes) as run:
        st = await run.awaiting()
        history = await run.handle.fetch_history()
    assert [e.source for e in st.evidence] == ["runbook"]
    children = [e.start_child_workflow_execution_initiated_event_attributes.workflow_type.name for e in history.events]
    assert "AgentWorkflow" not in children
