"""The incident loop's contracts: workflow inputs, signals, updates, queries and activity I/O.

One input and one output type per workflow, activity, signal and update, so fields can be
added later without breaking running workflows. No I/O here.

Names other processes rely on (the intake, the CLI, the Telegram bot):

- workflow type `IncidentWorkflow`, id = `AlertGroup.incident_id`, input `IncidentInput`,
  started by signal-with-start with signal `SIGNAL_ALERTS` carrying `AlertsSignal`;
- query `QUERY_STATE` on an incident returns `IncidentState`;
- workflow type `ApprovalWorkflow`, id = `approval_id_for(incident_id, n)`, input
  `ApprovalRequest`, update `UPDATE_DECIDE` taking `DecideInput` and returning
  `DecideResult`; query `QUERY_APPROVAL` returns `ApprovalState`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from agentic_core.alerts import Alert, AlertGroup
from agentic_core.evidence import EvidenceDiff, EvidenceItem
from agentic_core.models import ApprovalMode, AutomationLevel, Proposal, SearchHit, ToolCall

SIGNAL_ALERTS = "alerts"
QUERY_STATE = "state"
UPDATE_DECIDE = "decide"
QUERY_APPROVAL = "approval"


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class Category(StrEnum):
    INFRASTRUCTURE = "infrastructure"
    ARR = "arr"
    HOME_ASSISTANT = "home_assistant"
    PLATFORM = "platform"


class IncidentStatus(StrEnum):
    OPEN = "open"
    AWAITING_APPROVAL = "awaiting_approval"
    EXECUTING = "executing"
    VERIFYING = "verifying"
    RESOLVED = "resolved"  # verified success, or the alert resolved by itself
    FAILED = "failed"  # an action or the verification failed
    IGNORED = "ignored"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # actions ran, outcome could not be verified


class PolicyVerdict(StrEnum):
    ASK = "ask"  # ask a human
    ASK_RECOMMEND = "ask_recommend"  # ask, with a recommendation to approve
    RUN_THEN_NOTIFY = "run_then_notify"  # run first, tell after
    NOTHING_TO_DO = "nothing_to_do"  # no action survived the guard (NORMAL: watch, notify)
    # nothing to run, but VERBOSE asks about everything: a human acknowledges, ignores or modifies
    ASK_ACKNOWLEDGE = "ask_acknowledge"


Choice = Literal["approved", "acknowledged", "ignored", "modified"]
# What a human may answer: to a plan, and to a question with nothing to run (no runbook, no
# action, every action refused): "acknowledged" means a human saw it; the incident then watches.
PLAN_CHOICES: tuple[Choice, ...] = ("approved", "ignored", "modified")
NOTHING_TO_RUN_CHOICES: tuple[Choice, ...] = ("acknowledged", "ignored", "modified")


def plan_hash(actions: list[ToolCall]) -> str:
    """Hash of the exact plan (tools and arguments, in order) a human is shown."""
    doc = [{"tool": a.tool, "arguments": a.arguments} for a in actions]
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def idempotency_key(incident_id: str, index: int, attempt: int = 0) -> str:
    """One key per action of an incident: a retried or replayed activity never runs it twice."""
    return f"{incident_id}/action/{attempt}/{index}"


def approval_id_for(incident_id: str, n: int) -> str:
    return f"{incident_id}-approval-{n}"


# --------------------------------------------------------------------------- workflow I/O


class IncidentConfig(BaseModel):
    """Knobs the edge passes in at start (workflows never read the environment)."""

    approval_mode: ApprovalMode = ApprovalMode.VERBOSE
    approvers: list[str] = Field(default_factory=list, description="who may answer; empty: anyone")
    confidence_threshold: float = Field(default=0.7, ge=0, le=1, description="below this even standard asks")
    remind_after_s: int = 15 * 60
    escalate_after_s: int = 60 * 60
    expire_after_s: int = 4 * 60 * 60
    verify_window_s: int = 10 * 60
    recall_limit: int = 3
    # The investigate stage (before propose): at most this many read-only evidence calls, within
    # this many seconds in all; `investigate_model_calls`: read calls the observability agent may
    # add when a capable model is configured (0: none; the embedded 135M model cannot choose tools).
    investigate_max_calls: int = Field(default=6, ge=0)
    investigate_budget_s: int = Field(default=20, ge=1)
    investigate_model_calls: int = Field(default=0, ge=0)
    # Task queues of the calls that compete (docs/scaling.md): None runs them on the incident's
    # own queue, as every run started before the split did (so their histories replay as they were).
    model_queue: str | None = None  # incident.propose
    tools_queue: str | None = None  # tools.execute (the plan's actions and the evidence calls)


class IncidentInput(BaseModel):
    incident_id: str
    group: AlertGroup
    config: IncidentConfig = Field(default_factory=IncidentConfig)


class AlertsSignal(BaseModel):
    """New alerts for a group (a repeat, a new member, or `resolved`)."""

    group: AlertGroup


class StageRecord(BaseModel):
    name: str
    started_at: datetime
    finished_at: datetime | None = None
    detail: str = ""


class IncidentState(BaseModel):
    """What `agentic incidents show` and the query return."""

    incident_id: str
    status: IncidentStatus = IncidentStatus.OPEN
    title: str = ""
    severity: Severity | None = None
    category: Category | None = None
    stages: list[StageRecord] = Field(default_factory=list)
    alerts_seen: int = 0
    signals: int = 0
    resolved_by_alertmanager: bool = False
    runbook_id: str | None = None
    # what the investigate stage gathered (each call, its status, an excerpt), before the proposal
    evidence: list[EvidenceItem] = Field(default_factory=list)
    proposal: Proposal | None = None
    proposal_source: str | None = None  # "llm" | "cloud" | "fallback"
    # items redacted from what was sent to the cloud for this proposal, by kind (counts only)
    proposal_redactions: dict[str, int] = Field(default_factory=dict)
    verdict: PolicyVerdict | None = None
    refused: list[GuardedAction] = Field(default_factory=list)
    plan: list[ToolCall] = Field(default_factory=list)
    plan_hash: str | None = None
    approval_id: str | None = None
    decision: ApprovalResult | None = None
    actions: list[ActionResult] = Field(default_factory=list)
    outcome: VerifyResult | None = None


# --------------------------------------------------------------------------- activity I/O


class TriageResult(BaseModel):
    severity: Severity
    category: Category
    route: str  # notification route, e.g. "critical", "infrastructure"
    alertname: str
    title: str


class RecallInput(BaseModel):
    incident_id: str
    text: str
    labels: dict[str, str] = Field(default_factory=dict)
    limit: int = 3


class RecalledRunbook(BaseModel):
    id: str
    title: str
    score: float
    automation_level: AutomationLevel = AutomationLevel.MANUAL
    actions: list[ToolCall] = Field(default_factory=list)  # rendered for the alert's labels
    matched_labels: bool = False
    allow_namespaces: list[str] = Field(default_factory=list)  # protected namespaces its own plan may change
    evidence: list[ToolCall] = Field(default_factory=list)  # its read-only evidence calls, rendered
    evidence_skipped: list[str] = Field(default_factory=list)  # evidence calls that cannot be rendered: why


class RecallResult(BaseModel):
    runbooks: list[RecalledRunbook] = Field(default_factory=list)
    decisions: list[SearchHit] = Field(default_factory=list)


class ProposeInput(BaseModel):
    incident_id: str
    title: str
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    recall: RecallResult
    tools: list[ToolSpec] = Field(default_factory=list)
    # the investigate stage's evidence: tool output, untrusted (quoted data in the prompt)
    evidence: list[EvidenceItem] = Field(default_factory=list)


class ProposeResult(BaseModel):
    proposal: Proposal
    source: Literal["llm", "cloud", "fallback"]  # the local model, the cloud model, the best runbook
    note: str = ""  # e.g. why the fallback was taken, why it escalated to the cloud
    model: str = ""
    # items redacted from what was sent to the cloud (empty when nothing was sent), by kind:
    # counts only, never the values
    redactions: dict[str, int] = Field(default_factory=dict)


class ToolSpec(BaseModel):
    """A tool the incident agent may call: name, description, JSON schema of its arguments."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=dict)
    server: str = ""  # which MCP server offers it
    mutating: bool = True


class ListToolsInput(BaseModel):
    agent: str = "incident"


class ListToolsResult(BaseModel):
    tools: list[ToolSpec] = Field(default_factory=list)


class GuardInput(BaseModel):
    incident_id: str
    actions: list[ToolCall]
    agent: str = "incident"
    # Protected namespaces (AGENTIC_PROTECTED_NAMESPACES) these actions may change: those the
    # runbook whose plan they are lists under `allow_namespaces`; empty for any other plan.
    allow_namespaces: list[str] = Field(default_factory=list)
    # the calls of an agent run (`incident_id` holds the run's id): refusals are not recorded as
    # incident actions (the agent workflow records each as a guardrail event)
    agent_run: bool = False


class GuardedAction(BaseModel):
    index: int
    call: ToolCall
    allowed: bool
    reason: str = ""
    # Protected namespaces this allowed action changes (its runbook allows them): a human
    # must approve the plan, whatever the runbook's level.
    protected: list[str] = Field(default_factory=list)


class GuardResult(BaseModel):
    actions: list[GuardedAction] = Field(default_factory=list)

    @property
    def allowed(self) -> list[ToolCall]:
        return [a.call for a in self.actions if a.allowed]

    @property
    def refused(self) -> list[GuardedAction]:
        return [a for a in self.actions if not a.allowed]


class ExecuteInput(BaseModel):
    incident_id: str
    index: int
    call: ToolCall
    idempotency_key: str
    agent: str = "incident"
    allow_namespaces: list[str] = Field(default_factory=list)  # as in GuardInput (checked again)
    agent_run: bool = False  # an agent run's write (`incident_id` holds the run's id): actions.run_id


class ActionResult(BaseModel):
    index: int
    tool: str
    idempotency_key: str = ""
    status: Literal["succeeded", "failed", "refused", "skipped"]
    output: str = ""  # the tool's text result (truncated)
    error: str = ""
    already_ran: bool = False  # the key had a finished row: the result is the recorded one
    # The platform could not run it: its tool server was unreachable or did not answer, the worker
    # was lost mid-call, or the execute activity gave up (`tools.give_up`). It says nothing about
    # the runbook's remedy: the trust record counts it apart (`infra_errors`), never as a failure.
    infrastructure: bool = False


class GiveUpInput(BaseModel):
    """`tools.give_up`: the execute activity of an action gave up (retries exhausted, timed out,
    or failed without a result): its ledger row must not stay `running`."""

    incident_id: str
    index: int
    call: ToolCall
    idempotency_key: str
    reason: str  # why it gave up (the activity's last error)
    agent_run: bool = False


class VerifyInput(BaseModel):
    incident_id: str
    check: ToolCall | None = None


class VerifyResult(BaseModel):
    # "error": the plan could not run for a reason outside it (an action's tool server could not
    # be reached, `ActionResult.infrastructure`): neither a success nor a failure of the remedy.
    outcome: Literal["success", "failure", "unknown", "error"]
    detail: str = ""


class NotifyKind(StrEnum):
    QUESTION = "question"  # the approval question (first notification)
    DIAGNOSIS = "diagnosis"  # the model's diagnosis attached to the question
    UPDATE = "update"  # approved/executing/executed/verified
    DONE = "done"  # a standard runbook ran: here is what ran
    REMINDER = "reminder"
    ESCALATION = "escalation"
    EXPIRED = "expired"
    RESOLVED = "resolved"  # the short line in the Resolved topic
    REPORT = "report"  # a weekly digest or a trust review (with `photo` when there is a chart)
    NOTICE = "notice"  # an announcement that asks nothing (e.g. a runbook's level changed)


class NotifyInput(BaseModel):
    """One message for a channel. `incident_id` is None for messages that belong to no incident
    (digests, reviews, level changes). `photo` is the path of a PNG on the worker's disk that a
    channel able to show pictures attaches (Telegram: `sendPhoto` with `text` as the caption)."""

    incident_id: str | None
    kind: NotifyKind
    route: str
    text: str
    approval_id: str | None = None
    plan: list[ToolCall] = Field(default_factory=list)
    plan_hash: str | None = None
    edit_of: str | None = None  # message ref to edit instead of posting anew
    photo: str | None = None
    runbook_id: str | None = None  # the runbook behind the plan: channels show its level and record
    confidence: float | None = None  # the planner's confidence in the plan
    choices: list[Choice] = Field(default_factory=list)  # the answers offered (empty: PLAN_CHOICES)
    # diffs the evidence returned (a GitOps change's): shown with the question, inline when short,
    # as a file when long (Telegram's sendDocument)
    diffs: list[EvidenceDiff] = Field(default_factory=list)


class NotifyResult(BaseModel):
    message_ref: str  # channel-specific reference, for later edits


class RecordInput(BaseModel):
    """Everything the incident learned, written to the ledger and Qdrant at the end."""

    state: IncidentState
    group: AlertGroup


class RecordResult(BaseModel):
    decision_indexed: bool = False
    learned_runbook_id: str | None = None  # a novel approved plan became this new manual runbook


# --------------------------------------------------------------------------- approval


class ApprovalRequest(BaseModel):
    approval_id: str
    incident_id: str
    question: str
    plan: list[ToolCall]
    plan_hash: str
    route: str
    recommendation: str = ""  # e.g. "approve: prompted runbook, 7/7 successes"
    approvers: list[str] = Field(default_factory=list)  # empty: anyone
    remind_after_s: int = 15 * 60
    escalate_after_s: int = 60 * 60
    expire_after_s: int = 4 * 60 * 60
    message_ref: str | None = None  # the question's message, for edits
    choices: list[Choice] = Field(default_factory=lambda: list(PLAN_CHOICES))  # the answers offered
    # "level": a question about a runbook's automation level (promotion, trust review), not an
    # incident: `incident_id` then holds the asking workflow's id and notifications carry None.
    # "agent": a write an agent run asks to make (`incident_id` holds the run's id; notifications
    # carry None).
    kind: Literal["incident", "level", "agent"] = "incident"


class DecideInput(BaseModel):
    """A human's answer. `plan_hash` must be the hash of the plan that was shown."""

    choice: Choice
    by: str = Field(min_length=1)
    plan_hash: str = Field(min_length=8)
    modified_plan: list[ToolCall] | None = None  # required for "modified"
    comment: str = ""


class DecideResult(BaseModel):
    accepted: bool
    choice: str
    by: str
    plan_hash: str


class ApprovalResult(BaseModel):
    approval_id: str
    choice: Literal["approved", "acknowledged", "ignored", "modified", "expired"]
    by: str | None = None
    plan: list[ToolCall] = Field(default_factory=list)  # the plan to run (modified if so)
    plan_hash: str = ""
    decided_at: datetime | None = None
    comment: str = ""


class ApprovalState(BaseModel):
    request: ApprovalRequest
    result: ApprovalResult | None = None
    reminded: bool = False
    escalated: bool = False


# --------------------------------------------------------------------------- stages and occurrences


class StageInput(BaseModel):
    """A stage change of an incident: its status, and alerts that arrived or changed since."""

    incident_id: str
    status: IncidentStatus
    alerts: list[Alert] = Field(default_factory=list)


class StageResult(BaseModel):
    alerts_recorded: int = 0


def group_annotations(group: AlertGroup) -> dict[str, str]:
    """The annotations that describe a group: common ones, else the first alert's."""
    if group.common_annotations:
        return dict(group.common_annotations)
    return dict(group.alerts[0].annotations) if group.alerts else {}


def recall_text(tri: TriageResult, annotations: dict[str, str]) -> str:
    """The query text of the incident's recall stage: the title (the summary, else the alert's
    name), the alert's name and the `description` annotation, one per line, blank ones left out;
    with none of them, the alert's name or the title."""
    parts = (tri.title, tri.alertname, annotations.get("description", ""))
    return "\n".join(t for t in parts if t and t.strip()) or (tri.alertname or tri.title)


def recall_input(incident_id: str, tri: TriageResult, group: AlertGroup, limit: int) -> RecallInput:
    """What the incident's recall stage asks `incident.recall` for (the workflow and
    benchmarks/decision_eval.py both build it here, so they cannot drift): the query text of
    `recall_text` and the group's labels (label routing, and the payload's evidence)."""
    return RecallInput(
        incident_id=incident_id,
        text=recall_text(tri, group_annotations(group)),
        labels=group.labels,
        limit=limit,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def occurrence(started_at: datetime) -> int:
    """Which run of an incident this is: the run's start in epoch milliseconds.

    An incident id belongs to an alert group; a group that fires again after its incident
    closed is a new run under the same id. Keys that must differ between runs (approval ids,
    action idempotency keys, runbook counter events, the decision's Qdrant point) include it.
    """
    if started_at.tzinfo is None:
        started_at = started_at.replace(tzinfo=UTC)
    return (started_at - _EPOCH) // timedelta(milliseconds=1)


def state_occurrence(state: IncidentState) -> int:
    """The occurrence of the run that `state` describes (its first stage's start)."""
    return occurrence(state.stages[0].started_at) if state.stages else 0


IncidentState.model_rebuild()
ProposeInput.model_rebuild()
