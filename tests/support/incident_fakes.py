"""The incident workflow's fakes: activities under the real names that record what the workflow
asked for (`Fakes`), alert groups, and a running incident (`incident`, `Run`) on a test server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from agentic_core import policy
from agentic_core.agents import GuardrailEvent, GuardrailRecorded
from agentic_core.alerts import Alert, AlertGroup, AlertStatus
from agentic_core.autonomy import EvaluateTrustInput, EvaluateTrustResult
from agentic_core.evidence import EVIDENCE_KEY_PART
from agentic_core.incident import (
    QUERY_STATE,
    SIGNAL_ALERTS,
    UPDATE_DECIDE,
    ActionResult,
    AlertsSignal,
    DecideInput,
    DecideResult,
    ExecuteInput,
    GiveUpInput,
    GuardedAction,
    GuardInput,
    GuardResult,
    IncidentConfig,
    IncidentInput,
    IncidentState,
    IncidentStatus,
    ListToolsInput,
    ListToolsResult,
    NotifyInput,
    NotifyKind,
    NotifyResult,
    ProposeInput,
    ProposeResult,
    RecalledRunbook,
    RecallInput,
    RecallResult,
    RecordInput,
    RecordResult,
    StageInput,
    StageResult,
    ToolSpec,
    TriageResult,
    approval_id_for,
    idempotency_key,
    state_occurrence,
)
from agentic_core.models import AutomationLevel, Proposal, ToolCall
from workers.sandbox import workflow_runner
from workflows.approval import ApprovalWorkflow
from workflows.incident import IncidentWorkflow
from workflows.promotion import RunbookPromotionWorkflow

LABELS = {
    "alertname": "KubePodCrashLooping",
    "namespace": "shop",
    "deployment": "checkout",
    "severity": "warning",
}


RESTART = ToolCall(tool="kubernetes.restart_deployment", arguments={"namespace": "shop", "name": "checkout"})


LOGS = ToolCall(tool="kubernetes.get_logs", arguments={"namespace": "shop", "name": "checkout"})


DELETE_NS = ToolCall(tool="kubernetes.delete_namespace", arguments={"name": "shop"})


SCALE = ToolCall(tool="kubernetes.scale_deployment", arguments={"namespace": "shop", "name": "checkout", "replicas": 3})


TOOLS = [
    ToolSpec(name=t, description=t, input_schema={"type": "object"})
    for t in ("kubernetes.restart_deployment", "kubernetes.get_logs", "kubernetes.scale_deployment")
]
# Read-only tools (the gateway lists them with mutating=False): what runbook evidence calls.
READ_TOOLS = [
    ToolSpec(name=t, description=t, input_schema={"type": "object"}, mutating=False)
    for t in ("get_pod_logs", "get_events", "prom_query")
]
PREVIOUS_LOGS = ToolCall(tool="get_pod_logs", arguments={"namespace": "shop", "pod": "checkout-1", "previous": True})
EVENTS = ToolCall(tool="get_events", arguments={"namespace": "shop", "involved_object": "checkout-1"})
WORKING_SET = ToolCall(tool="prom_query", arguments={"query": 'container_memory_working_set_bytes{namespace="shop"}'})
EVIDENCE = [PREVIOUS_LOGS, EVENTS, WORKING_SET]


RUNBOOK_ID = "kubernetes/KubePodCrashLooping"


def make_group(
    incident_id: str,
    status: AlertStatus = AlertStatus.FIRING,
    fingerprints: tuple[str, ...] = ("fp-1",),
    labels: dict[str, str] | None = None,
) -> AlertGroup:
    labels = labels or LABELS
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    return AlertGroup(
        incident_id=incident_id,
        receiver="agentic",
        group_key='{}:{alertname="KubePodCrashLooping"}',
        status=status,
        common_labels=labels,
        common_annotations={"summary": "Pod shop/checkout is crash looping."},
        alerts=[
            Alert(
                fingerprint=fp,
                status=status,
                labels=labels,
                annotations={"summary": "Pod shop/checkout is crash looping."},
                starts_at=start,
                ends_at=start + timedelta(minutes=30) if status == AlertStatus.RESOLVED else None,
            )
            for fp in fingerprints
        ],
    )


@dataclass
class Fakes:
    """Fake activities under the real names; they record every call."""

    runbook_level: AutomationLevel = AutomationLevel.MANUAL
    runbook_actions: list[ToolCall] = field(default_factory=lambda: [LOGS, RESTART])
    runbook_score: float = 1.8  # the retrieval score: 1 + text score for a label match
    runbook_matched_labels: bool = True
    runbook_allow_namespaces: list[str] = field(default_factory=list)
    proposal_actions: list[ToolCall] | None = None  # None: the runbook's
    confidence: float = 0.8
    refuse: set[str] = field(default_factory=lambda: {DELETE_NS.tool})
    fail_tools: set[str] = field(default_factory=set)
    refuse_at_execute: set[str] = field(default_factory=set)
    unreachable_tools: set[str] = field(default_factory=set)  # execute raises a retryable ToolServerUnavailable
    notifications: list[NotifyInput] = field(default_factory=list)
    executed: list[ExecuteInput] = field(default_factory=list)
    guarded: list[GuardInput] = field(default_factory=list)
    stages: list[StageInput] = field(default_factory=list)
    records: list[RecordInput] = field(default_factory=list)
    proposes: list[ProposeInput] = field(default_factory=list)
    recalls: list[RecallInput] = field(default_factory=list)
    evaluations: list[EvaluateTrustInput] = field(default_factory=list)
    guardrail_events: list[GuardrailEvent] = field(default_factory=list)
    given_up: list[GiveUpInput] = field(default_factory=list)  # `tools.give_up` calls
    trust_result: Callable[[EvaluateTrustInput], EvaluateTrustResult] | None = None
    recall_runbook: bool = True  # False: no runbook is recalled
    tools: list[ToolSpec] = field(default_factory=lambda: [*TOOLS, *READ_TOOLS])
    runbook_evidence: list[ToolCall] = field(default_factory=list)  # the recalled runbook's evidence calls
    runbook_evidence_skipped: list[str] = field(default_factory=list)
    slow_tools: dict[str, float] = field(default_factory=dict)  # tool -> seconds an evidence call takes
    list_tools_fails: bool = False
    evidence_outputs: dict[str, str] = field(default_factory=dict)  # tool -> an evidence call's output

    @activity.defn(name="incident.triage")
    async def triage(self, inp: IncidentInput) -> TriageResult:
        return policy.triage(inp.group.labels, inp.group.common_annotations)

    @activity.defn(name="incident.stage")
    async def stage(self, inp: StageInput) -> StageResult:
        self.stages.append(inp)
        return StageResult(alerts_recorded=len(inp.alerts))

    @activity.defn(name="incident.recall")
    async def recall(self, inp: RecallInput) -> RecallResult:
        self.recalls.append(inp)
        rb = RecalledRunbook(
            id=RUNBOOK_ID,
            title="Pod is crash looping",
            score=self.runbook_score,
            automation_level=self.runbook_level,
            actions=self.runbook_actions,
            matched_labels=self.runbook_matched_labels,
            allow_namespaces=self.runbook_allow_namespaces,
            evidence=self.runbook_evidence,
            evidence_skipped=self.runbook_evidence_skipped,
        )
        return RecallResult(runbooks=[rb] if self.recall_runbook else [])

    @activity.defn(name="incident.propose")
    async def propose(self, inp: ProposeInput) -> ProposeResult:
        self.proposes.append(inp)
        actions = self.runbook_actions if self.proposal_actions is None else self.proposal_actions
        return ProposeResult(
            proposal=Proposal(
                summary="checkout crash loops",
                diagnosis="OOM killed after the last deploy.",
                runbook_id=RUNBOOK_ID if self.recall_runbook else None,
                actions=actions,
                confidence=self.confidence,
            ),
            source="llm",
            model="fake",
        )

    @activity.defn(name="incident.notify")
    async def notify(self, inp: NotifyInput) -> NotifyResult:
        self.notifications.append(inp)
        if inp.edit_of:
            return NotifyResult(message_ref=inp.edit_of)
        return NotifyResult(message_ref=f"msg-{len(self.notifications)}")

    @activity.defn(name="incident.record")
    async def record(self, inp: RecordInput) -> RecordResult:
        self.records.append(inp)
        return RecordResult(decision_indexed=inp.state.decision is not None)

    @activity.defn(name="trust.evaluate")
    async def evaluate(self, inp: EvaluateTrustInput) -> EvaluateTrustResult:
        self.evaluations.append(inp)
        if self.trust_result is not None:
            return self.trust_result(inp)
        return EvaluateTrustResult(runbook_id=inp.runbook_id, level=self.runbook_level)

    @activity.defn(name="tools.list_tools")
    async def list_tools(self, inp: ListToolsInput) -> ListToolsResult:
        if self.list_tools_fails:
            raise ApplicationError("no MCP server answered", type="ToolServerUnavailable", non_retryable=True)
        return ListToolsResult(tools=self.tools)

    @activity.defn(name="tools.guard")
    async def guard(self, inp: GuardInput) -> GuardResult:
        """The gateway's verdicts: the allow-list (`refuse`), and the default protected namespaces
        (refused unless `inp.allow_namespaces` has them; then allowed and marked protected)."""
        self.guarded.append(inp)
        out = []
        for i, c in enumerate(inp.actions):
            hits = [ns for ns, _ in policy.protected_namespaces(c, policy.DEFAULT_PROTECTED_NAMESPACES)]
            barred = [ns for ns in hits if ns not in inp.allow_namespaces]
            reason = (
                f"{c.tool} is not on the incident agent's allow-list"
                if c.tool in self.refuse
                else (f"{c.tool}: namespace {barred[0]!r} is protected" if barred else "")
            )
            out.append(
                GuardedAction(index=i, call=c, allowed=not reason, reason=reason, protected=[] if reason else hits)
            )
        return GuardResult(actions=out)

    @activity.defn(name="tools.execute")
    async def execute(self, inp: ExecuteInput) -> ActionResult:
        self.executed.append(inp)
        if inp.call.tool in self.refuse_at_execute:  # the gateway's defence in depth
            raise ApplicationError(f"{inp.call.tool} is no longer allowed", type="ToolRefused", non_retryable=True)
        if inp.call.tool in self.unreachable_tools:  # every attempt: the workflow gives up in the end
            raise ApplicationError(f"cannot reach the MCP server of {inp.call.tool}", type="ToolServerUnavailable")
        if inp.call.tool in self.slow_tools:
            await asyncio.sleep(self.slow_tools[inp.call.tool])
        if inp.call.tool in self.fail_tools:
            return ActionResult(
                index=inp.index, tool=inp.call.tool, idempotency_key=inp.idempotency_key, status="failed", error="boom"
            )
        output = f"{inp.call.tool} says: {inp.call.arguments}" if EVIDENCE_KEY_PART in inp.idempotency_key else "ok"
        if EVIDENCE_KEY_PART in inp.idempotency_key and inp.call.tool in self.evidence_outputs:
            output = self.evidence_outputs[inp.call.tool]
        return ActionResult(
            index=inp.index, tool=inp.call.tool, idempotency_key=inp.idempotency_key, status="succeeded", output=output
        )

    @activity.defn(name="tools.give_up")
    async def give_up(self, inp: GiveUpInput) -> ActionResult:
        self.given_up.append(inp)
        return ActionResult(
            index=inp.index,
            tool=inp.call.tool,
            idempotency_key=inp.idempotency_key,
            status="failed",
            error=f"gave up: {inp.reason}",
            infrastructure=True,
        )

    @activity.defn(name="guardrails.record")
    async def record_guardrail(self, event: GuardrailEvent) -> GuardrailRecorded:
        known = [e.key for e in self.guardrail_events]
        if event.key in known:
            return GuardrailRecorded(id=known.index(event.key) + 1, created=False)
        self.guardrail_events.append(event)
        return GuardrailRecorded(id=len(self.guardrail_events), created=True)

    def evidence_calls(self) -> list[ExecuteInput]:
        """What the investigate stage ran (its ledger keys are apart from the actions')."""
        return [e for e in self.executed if EVIDENCE_KEY_PART in e.idempotency_key]

    def action_calls(self) -> list[ToolCall]:
        return [e.call for e in self.executed if EVIDENCE_KEY_PART not in e.idempotency_key]

    def activities(self) -> list[Callable[..., Awaitable[Any]]]:
        return [
            self.record_guardrail,
            self.triage,
            self.stage,
            self.recall,
            self.propose,
            self.notify,
            self.record,
            self.evaluate,
            self.list_tools,
            self.guard,
            self.execute,
            self.give_up,
        ]

    def kinds(self) -> list[NotifyKind]:
        return [n.kind for n in self.notifications]


@dataclass
class Run:
    client: Client
    handle: WorkflowHandle[IncidentWorkflow, IncidentState]
    incident_id: str
    task_queue: str

    occurrence: int | None = None  # learnt from the first state that has stages

    async def state(self) -> IncidentState:
        st = await self.handle.query(QUERY_STATE, result_type=IncidentState)
        if st.stages and self.occurrence is None:
            self.occurrence = state_occurrence(st)
        return st

    def key(self, index: int) -> str:
        assert self.occurrence is not None
        return idempotency_key(self.incident_id, index, self.occurrence)

    async def wait_for(self, pred: Callable[[IncidentState], bool], within_s: float = 20.0) -> IncidentState:
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            st = await self.state()
            if pred(st):
                return st
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting; state: {st.model_dump_json(indent=1)}")
            await asyncio.sleep(0.05)

    async def awaiting(self) -> IncidentState:
        return await self.wait_for(lambda s: s.status == IncidentStatus.AWAITING_APPROVAL)

    def approval(self) -> WorkflowHandle[Any, Any]:
        assert self.occurrence is not None, "query the state first"
        return self.client.get_workflow_handle(approval_id_for(self.incident_id, self.occurrence))

    async def decide(self, inp: DecideInput) -> DecideResult:
        return await self.approval().execute_update(UPDATE_DECIDE, inp, result_type=DecideResult)

    async def signal(self, group: AlertGroup) -> None:
        await self.handle.signal(SIGNAL_ALERTS, AlertsSignal(group=group))

    async def result(self) -> IncidentState:
        return await self.handle.result()


@asynccontextmanager
async def incident(
    env: WorkflowEnvironment,
    fakes: Fakes,
    config: IncidentConfig | None = None,
    activities: list[Callable[..., Awaitable[Any]]] | None = None,
    labels: dict[str, str] | None = None,
    task_queue: str | None = None,
    extra_workflows: tuple[type, ...] = (),
) -> AsyncIterator[Run]:
    task_queue = task_queue or f"incident-{uuid.uuid4().hex[:8]}"
    incident_id = f"inc-{uuid.uuid4().hex[:12]}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[IncidentWorkflow, ApprovalWorkflow, RunbookPromotionWorkflow, *extra_workflows],
        activities=activities or fakes.activities(),
        # the strict sandbox (the SDK's default restrictions) as the replay has it: sniffio passed
        # through, which httpx and anyio may import first while a workflow runs (CI warned, with
        # some orders of the tests)
        workflow_runner=workflow_runner("strict"),
    ):
        group = make_group(incident_id, labels=labels)
        handle = await env.client.start_workflow(
            IncidentWorkflow.run,
            IncidentInput(incident_id=incident_id, group=group, config=config or IncidentConfig()),
            id=incident_id,
            task_queue=task_queue,
            start_signal=SIGNAL_ALERTS,
            start_signal_args=[AlertsSignal(group=group)],
        )
        yield Run(env.client, handle, incident_id, task_queue)


async def replay(run: Run) -> None:
    """The incident's history and its approval's replay with today's code (no nondeterminism)."""
    replayer = Replayer(
        workflow_runner=workflow_runner("strict"),
        workflows=[IncidentWorkflow, ApprovalWorkflow],
        data_converter=pydantic_data_converter,
    )
    await replayer.replay_workflow(await run.handle.fetch_history())
    await replayer.replay_workflow(await run.approval().fetch_history())
