"""The agents' contracts: requests, routes, limits, the agent loop's activity I/O, its progress,
and guardrail events. One input and one output type per workflow, activity and query, so fields
can be added later without breaking running workflows. No I/O here.

Names other processes rely on (the CLI, the gateway, the console, the bot):

- workflow type `AgentWorkflow`, id = `agent_run_id(request_id)`, input `AgentRequest`, result
  `AgentResult`; query `QUERY_AGENT_PROGRESS` returns `AgentProgress`;
- search attributes `AgentName`, `AgentStatus`, `RouteMethod`, `RouteScore`
  (`agentic_core.search_attributes`);
- activity names in `ACTIVITY_*`; guardrail events recorded with `GUARDRAIL_RECORD`.

The agent loop keeps large things out of its history: tool results and model turns live in the
ledger (the transcript and its blobs) and travel by reference (`ResultRef`); the workflow holds
only references, short previews and counters.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

QUERY_AGENT_PROGRESS = "progress"

ACTIVITY_ROUTE = "agents.route"
ACTIVITY_MODEL_TURN = "agents.model_turn"
ACTIVITY_START_RUN = "agents.start_run"
ACTIVITY_FINISH_RUN = "agents.finish_run"
ACTIVITY_TOOL_CALL = "tools.call"  # a read-only tool call whose result is stored and passed by reference
GUARDRAIL_RECORD = "guardrails.record"


class AgentName(StrEnum):
    OBSERVABILITY = "observability"
    CODING = "coding"
    WEB = "web"


class RouteMethod(StrEnum):
    EMBEDDING = "embedding"  # nearest exemplars above the agent's fitted threshold
    LLM = "llm"  # below it: the planner model chose, with a constrained answer
    EXPLICIT = "explicit"  # the caller named the agent


class AgentStatus(StrEnum):
    ROUTING = "routing"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"  # a tool that changes something waits for a human
    DONE = "done"
    LIMITED = "limited"  # a limit ended the run cleanly (which one: `limit_hit`)
    FAILED = "failed"
    NOT_CONFIGURED = "not_configured"  # routed to an agent this platform does not run yet


def agent_run_id(request_id: str) -> str:
    """The AgentWorkflow's id for a request: a retried request reattaches to the same run."""
    return f"agent-{request_id}"


class Route(BaseModel):
    agent: str
    score: float = Field(ge=0)  # embedding similarity (or the model's pick: 0 when it gave none)
    method: RouteMethod
    scores: dict[str, float] = Field(default_factory=dict)  # every agent's best exemplar score
    note: str = ""  # why the route is what it is when the model was asked and could not answer


class RouteInput(BaseModel):
    text: str = Field(min_length=1)


class AgentLimits(BaseModel):
    """Enforced by the workflow, never by the prompt. Each limit hit ends or trims the run
    cleanly and says which limit."""

    max_steps: int = Field(default=12, ge=1)  # model turns
    max_wall_s: int = Field(default=300, ge=1)
    max_context_tokens: int = Field(default=3000, ge=256)  # older tool results summarised or dropped first
    max_result_chars: int = Field(default=4000, ge=100)  # one tool result as the model sees it (truncated, said so)
    max_tool_calls: int = Field(default=24, ge=0)
    max_identical_calls: int = Field(default=1, ge=1)  # the same tool with the same arguments, more is refused
    max_delegation_depth: int = Field(default=1, ge=0)


class AgentRequest(BaseModel):
    request_id: str = Field(min_length=1, max_length=128)
    text: str = Field(min_length=1, max_length=32_000)
    agent: str | None = None  # None: the router chooses
    requested_by: str = "cli"  # who asks: their identity is the approver a write needs
    source: Literal["cli", "gateway", "console", "telegram", "incident", "agent"] = "cli"
    limits: AgentLimits | None = None  # None: the agent's configured limits
    depth: int = Field(default=0, ge=0)  # delegation depth (an agent asking another)
    incident_id: str | None = None  # an incident's investigate stage
    approvers: list[str] = Field(default_factory=list)  # who may approve a write (empty: anyone)


class ResultRef(BaseModel):
    """A tool result or message stored in the ledger: what the history carries instead of it."""

    ref: str  # the ledger blob's id
    size: int = Field(ge=0)  # characters stored
    preview: str = ""  # the first characters (for progress and the CLI)
    truncated: bool = False  # the model was shown `max_result_chars` of it, and told so


class AgentToolCall(BaseModel):
    """One tool call a model turn asked for (`call_id` pairs it with its result)."""

    call_id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)


ToolCallStatus = Literal["ok", "error", "refused", "awaiting_approval", "approved", "denied", "limited"]


class ToolCallRecord(BaseModel):
    step: int
    call: AgentToolCall
    status: ToolCallStatus
    reason: str = ""  # why refused, denied or limited; the tool's error
    result: ResultRef | None = None
    mutating: bool = False
    approval_id: str | None = None


class ModelTurnInput(BaseModel):
    run_id: str
    agent: str
    step: int
    tools: list[dict[str, Any]] = Field(default_factory=list)  # the tools offered, as ToolSpec dumps
    limits: AgentLimits = Field(default_factory=AgentLimits)
    final: bool = False  # the last turn a limit allows: no tools, answer with what you have


class ModelTurnResult(BaseModel):
    text: str = ""  # the answer (or the text beside tool calls)
    tool_calls: list[AgentToolCall] = Field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    trimmed: int = 0  # older tool results summarised or dropped to fit the context limit
    model: str = ""


class ToolCallInput(BaseModel):
    run_id: str
    agent: str
    step: int
    call: AgentToolCall
    max_result_chars: int = 4000


class ToolCallResult(BaseModel):
    status: Literal["ok", "error", "refused"]
    result: ResultRef | None = None
    reason: str = ""
    mutating: bool = False  # the tool changes something: it must go through approval instead


class StartRunInput(BaseModel):
    run_id: str
    request: AgentRequest
    route: Route | None = None


class FinishRunInput(BaseModel):
    run_id: str
    status: AgentStatus
    answer: str = ""
    limit_hit: str | None = None
    steps: int = 0
    tool_calls: int = 0


class AgentProgress(BaseModel):
    """What the query returns: enough for `agentic agents ask` and the console to follow a run."""

    run_id: str
    request_id: str
    agent: str | None = None
    route: Route | None = None
    status: AgentStatus = AgentStatus.ROUTING
    steps: int = 0
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    answer: str = ""
    limit_hit: str | None = None  # which limit ended or trimmed the run
    approval_id: str | None = None  # the pending question, if any
    started_at: datetime | None = None
    finished_at: datetime | None = None


class AgentResult(AgentProgress):
    """The finished run (the workflow's result)."""


GuardrailKind = Literal[
    "tool_refused",  # not on the agent's allow-list, bad arguments, no server offers it
    "limit",  # a run's limit was hit
    "write_denied",  # a human denied (or nobody approved) a tool that changes something
    "untrusted_plan",  # a plan made with untrusted content in context was sent to a human
    "protected_namespace",
    "egress_refused",  # the web agent's domain allow-list, SSRF, robots.txt
]


class GuardrailEvent(BaseModel):
    """A refusal or a limit hit, recorded in the ledger (`guardrail_events`) and counted in the
    weekly digest. `key` makes recording idempotent (a retried activity records once)."""

    key: str
    kind: GuardrailKind
    agent: str
    subject: str  # the run or incident it happened in
    tool: str | None = None
    detail: str = ""
    at: datetime | None = None
