"""Row models of the ledger: what `activities.ledger.repository.Ledger` returns.

The enums here mirror the CHECK constraints in `migrations/0001_init.sql`; change both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentic_core.models import AutomationLevel, Proposal, Risk, Runbook, ToolCall
from agentic_core.trust import RunbookCounters

IncidentStatus = Literal[
    "open",
    "triaging",
    "awaiting_approval",
    "executing",
    "verifying",
    "resolved",
    "failed",
    "ignored",
    "expired",
    "closed",
]
# Statuses that close an incident (closed_at is set; leaving them clears it again).
CLOSED_STATUSES: frozenset[str] = frozenset({"resolved", "failed", "ignored", "expired", "closed"})

AlertStatus = Literal["firing", "resolved"]
DecisionChoice = Literal["approved", "acknowledged", "ignored", "modified", "expired", "automatic"]
ActionStatus = Literal["running", "succeeded", "failed", "refused", "skipped"]
OutcomeResult = Literal["success", "failure", "unknown", "error"]
UpsertResult = Literal["added", "updated", "unchanged"]


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True)


class IncidentRow(_Row):
    id: str
    group_key: str
    status: IncidentStatus
    severity: str
    category: str
    title: str
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None


class AlertRow(_Row):
    id: int
    fingerprint: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime
    ends_at: datetime | None = None
    status: AlertStatus
    received_at: datetime
    updated_at: datetime
    incident_id: str | None = None


class ProposalRow(_Row):
    id: int
    incident_id: str
    model: str
    source: str
    summary: str
    diagnosis: str
    runbook_id: str | None = None
    actions: list[ToolCall] = Field(default_factory=list)
    confidence: float
    risk: Risk
    fallback: bool
    redactions: dict[str, int] = Field(default_factory=dict)  # redacted before a cloud call, by kind
    created_at: datetime

    def to_proposal(self) -> Proposal:
        return Proposal(
            summary=self.summary,
            diagnosis=self.diagnosis,
            runbook_id=self.runbook_id,
            actions=list(self.actions),
            confidence=self.confidence,
            risk=self.risk,
        )


class DecisionRow(_Row):
    id: int
    incident_id: str | None = None
    proposal_id: int | None = None
    approval_id: str | None = None
    runbook_id: str | None = None
    choice: DecisionChoice
    decided_by: str | None = None
    plan_hash: str | None = None
    arguments: Any = None
    decided_at: datetime


class ActionRow(_Row):
    id: int
    incident_id: str | None = None  # None: the action of an agent run (`run_id`)
    run_id: str | None = None
    action_index: int
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str
    status: ActionStatus
    result: Any = None
    error: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    # Not a column: set by `Ledger.start_action` when the key was already there, i.e. this
    # action was started before (maybe finished) and must not be run again blindly.
    existed: bool = False

    @property
    def subject(self) -> str:
        """The incident or agent run the action belongs to."""
        return self.incident_id or self.run_id or ""


class OutcomeRow(_Row):
    id: int
    incident_id: str
    result: OutcomeResult
    detail: str
    verified_at: datetime


class NotificationRow(_Row):
    id: int
    incident_id: str | None = None
    channel: str
    target: str
    thread: str | None = None
    message_id: str | None = None
    kind: str
    text: str
    sent_at: datetime
    edited_at: datetime | None = None


class RunbookRow(Runbook):
    """A runbook as the ledger holds it: the shared `Runbook` plus its timestamps."""

    created_at: datetime
    updated_at: datetime

    def to_runbook(self) -> Runbook:
        return Runbook.model_validate(self.model_dump(exclude={"created_at", "updated_at"}))


class RunbookStats(_Row, RunbookCounters):
    runbook_id: str


class LevelChange(_Row):
    id: int
    runbook_id: str
    from_level: AutomationLevel | None = None  # None: the level it was created with
    to_level: AutomationLevel
    reason: str
    changed_by: str
    changed_at: datetime


PromotionStatus = Literal["pending", "approved", "refused", "expired", "stale"]


class PromotionRequestRow(_Row):
    """A promotion question put to a human (migrations/0003_autonomy.sql)."""

    id: int
    request_key: str
    workflow_id: str
    runbook_id: str
    from_level: AutomationLevel
    to_level: AutomationLevel
    executions: int
    status: PromotionStatus
    decided_by: str | None = None
    reason: str
    created_at: datetime
    decided_at: datetime | None = None


class RunbookPeriodStats(_Row):
    """What a runbook did between two instants (runbook_stat_events): the quarterly review."""

    runbook_id: str
    successes: int = 0
    failures: int = 0
    automatic: int = 0  # runs without a question (standard)
    approvals: int = 0
    ignores: int = 0
    modifications: int = 0


class AutomatedAction(_Row):
    """One decision the agent took alone (choice "automatic") and how it ended."""

    incident_id: str | None
    runbook_id: str | None
    decided_at: datetime
    outcome: str | None = None  # the incident's last outcome: success, failure, unknown
    title: str = ""


# --- agent runs (0007_agents.sql) -----------------------------------------------------------

AgentRunStatus = Literal[
    "routing", "running", "awaiting_approval", "done", "limited", "failed", "not_configured", "cancelled"
]  # agentic_core.agents.AgentStatus (0014_agent_run_cancelled.sql added `cancelled`)
OPEN_AGENT_RUN_STATUSES: tuple[AgentRunStatus, ...] = ("routing", "running", "awaiting_approval")
MessageRole = Literal["system", "user", "assistant", "tool"]


class AgentRunRow(_Row):
    id: str
    request_id: str = ""
    request: str = ""
    requested_by: str = ""
    source: str = ""
    agent: str | None = None
    route_method: str | None = None
    route_score: float | None = None
    incident_id: str | None = None
    status: AgentRunStatus = "running"
    answer: str = ""
    limit_hit: str | None = None
    steps: int = 0
    tool_calls: int = 0
    started_at: datetime
    finished_at: datetime | None = None
    checked_at: datetime | None = None  # an open row: when the reconciler last found its run running

    @property
    def open(self) -> bool:
        """Whether the row's status may still change (its run has not closed it)."""
        return self.status in OPEN_AGENT_RUN_STATUSES


class MessageIn(BaseModel):
    """One transcript message to record; `key` makes the write idempotent (the first wins)."""

    key: str = Field(min_length=1)
    step: int = Field(ge=0)
    role: MessageRole
    content: str = ""
    blob_id: str | None = None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    tool_call_id: str | None = None
    tool_name: str | None = None
    arguments: dict[str, Any] | None = None
    status: str | None = None
    model: str = ""
    tokens_in: int = 0
    tokens_out: int = 0


class MessageRow(_Row):
    """A transcript message as read back. A tool result stored as a blob comes with the first
    `head` characters of the blob in `content` and its full size in `blob_size`."""

    id: int
    run_id: str
    key: str
    step: int
    role: MessageRole
    content: str = ""
    blob_id: str | None = None
    blob_size: int | None = None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    tool_call_id: str | None = None
    tool_name: str | None = None
    arguments: dict[str, Any] | None = None
    status: str | None = None
    model: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    created_at: datetime
