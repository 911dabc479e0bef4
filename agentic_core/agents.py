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

import json
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from agentic_core.incident import Choice, ToolSpec

QUERY_AGENT_PROGRESS = "progress"

ACTIVITY_ROUTE = "agents.route"
ACTIVITY_MODEL_TURN = "agents.model_turn"
ACTIVITY_START_RUN = "agents.start_run"
ACTIVITY_FINISH_RUN = "agents.finish_run"
ACTIVITY_TOOL_CALL = "tools.call"  # a read-only tool call whose result is stored and passed by reference
GUARDRAIL_RECORD = "guardrails.record"
# One routing decision through Temporal (RouteInput -> Route, the `agents.route` activity on the
# platform's task queue): the rollout's "router selects the correct agent" check starts it.
ROUTE_PROBE_WORKFLOW = "RouteProbeWorkflow"
# The agent loop's workflow type (input AgentRequest, result AgentResult, id agent_run_id(request_id)).
AGENT_WORKFLOW = "AgentWorkflow"

# The route a write's approval question travels on (Telegram: the Infrastructure topic).
AGENT_APPROVAL_ROUTE = "infrastructure"
# The answers a write's question offers: run it, or not.
AGENT_APPROVAL_CHOICES: tuple[Choice, ...] = ("approved", "ignored")


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
    CANCELLED = "cancelled"  # cancelled from outside (a client, `temporal workflow cancel`, the Web UI)


# A run in one of these may still change; any other status is its end (`AgentStatus` above).
OPEN_STATUSES = frozenset({AgentStatus.ROUTING, AgentStatus.RUNNING, AgentStatus.AWAITING_APPROVAL})


def agent_tools_setting(agent: str) -> str:
    """The setting that holds an agent's tool allow-list (comma-separated tool names)."""
    return f"AGENTIC_{agent.upper()}_TOOLS"


# What each agent this platform does not run yet needs (the coding and web agents arrive with
# their tool servers in a later release).
_MISSING: dict[str, str] = {
    AgentName.CODING: "the coding tool server over Git repositories: set AGENTIC_REPOS (name=path,..., e.g. "
    "gitops=/srv/gitops; files, search, history, structure, diffs; a commit on a new branch after approval)",
    AgentName.WEB: "its web tool server (SearXNG search, fetch behind a domain allow-list): set AGENTIC_SEARXNG_URL "
    "(a SearXNG instance with its JSON format on) and/or AGENTIC_WEB_ALLOWED_DOMAINS (the sites it may fetch; "
    "docs/tools.md)",
}


def not_configured_answer(agent: str) -> str:
    """The answer of a run routed to an agent this platform does not run: what is missing and
    which settings enable it."""
    known = ", ".join(a.value for a in AgentName)
    if agent not in {a.value for a in AgentName}:
        return f"There is no agent named {agent!r} (agents: {known})."
    need = _MISSING.get(agent, "tools")
    return (
        f"The {agent} agent is not configured on this platform yet: it needs {need}, and a non-empty tool "
        f"allow-list {agent_tools_setting(agent)} (comma-separated tool names; empty: the agent is off). "
        f"Meanwhile ask the observability agent (`agentic agents ask --agent observability TEXT`)."
    )


def no_tools_note(agent: str) -> str:
    """Put before an answer the model gave with no tool offered (none of the agent's tools is on a
    configured server): nothing was looked at, and what would give the agent its tools."""
    from agentic_core.tools import DEFAULT_AGENT_TOOLS, TOOL_FAMILIES

    wanted = set(DEFAULT_AGENT_TOOLS.get(agent, ()))
    hints = [hint.split(": ", 1)[-1] for tools, hint in TOOL_FAMILIES if wanted & set(tools)]
    how = f" ({'; '.join(hints)})" if hints else ""
    return (
        f"[Nothing was looked at: none of the {agent} agent's tools is available on this platform{how}. "
        "What follows is the model's answer alone, unchecked.]"
    )


def agent_run_id(request_id: str) -> str:
    """The AgentWorkflow's id for a request: a retried request reattaches to the same run."""
    return f"agent-{request_id}"


def agent_approval_id(run_id: str, step: int, index: int) -> str:
    """The ApprovalWorkflow's id for the `index`-th tool call of model turn `step` of a run."""
    return f"{run_id}-approval-{step}-{index}"


def agent_action_key(run_id: str, step: int, index: int) -> str:
    """The idempotency key of an approved write (one per run and call): a retried or replayed
    `tools.execute` never runs it twice."""
    return f"{run_id}/call/{step}/{index}"


def agent_blob_id(run_id: str, step: int, call_id: str) -> str:
    """The ledger blob of one tool call's full result (a retried `tools.call` writes it once)."""
    return f"{run_id}/{step}/{call_id}"


def call_signature(tool: str, arguments: dict[str, Any]) -> str:
    """What makes two tool calls identical (the same tool with the same arguments)."""
    return tool + " " + json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)


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
    # how long a write waits for a human before it counts as not approved (not part of max_wall_s)
    approval_timeout_s: int = Field(default=3600, ge=1)

    def tightened(self, other: AgentLimits | None) -> AgentLimits:
        """These limits, tightened by `other` (a caller may lower a configured limit, never raise it)."""
        if other is None:
            return self
        return AgentLimits(
            **{name: min(getattr(self, name), getattr(other, name)) for name in AgentLimits.model_fields}
        )


LIMIT_NAMES: dict[str, str] = {  # a limit's field → how the answer names it
    "max_steps": "steps",
    "max_wall_s": "wall clock",
    "max_context_tokens": "context tokens",
    "max_result_chars": "result size",
    "max_tool_calls": "tool-call budget",
    "max_identical_calls": "identical calls",
    "max_delegation_depth": "delegation depth",
}


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
    # task queues of model calls (agents.model_turn, agents.route) and tool calls (tools.call,
    # tools.execute); None: the run's own queue (docs/scaling.md)
    model_queue: str | None = None
    tools_queue: str | None = None
    # the caller streams the answer: each model turn publishes its text as it comes (docs/gateway.md,
    # `activities.agents.stream`); the result and the transcript are the same either way
    stream: bool = False


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
    # why the call cannot run as the model wrote it (arguments that are not a JSON object, ...):
    # the workflow refuses it and the model sees why on its next turn
    problem: str = ""


ToolCallStatus = Literal[
    "running", "ok", "error", "refused", "awaiting_approval", "approved", "denied", "limited"
]  # approved: a write a human approved, and it ran


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
    final_reason: str = ""  # why this is the last turn (said to the model)
    # the previous turn's tool calls and what became of them: recorded in the transcript first
    results: list[ToolCallRecord] = Field(default_factory=list)
    stream: bool = False  # publish the text as the model writes it (`AgentRequest.stream`)


class ModelTurnResult(BaseModel):
    text: str = ""  # the answer (or the text beside tool calls)
    tool_calls: list[AgentToolCall] = Field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    trimmed: int = 0  # older tool results summarised or dropped to fit the context limit
    truncated: int = 0  # tool results shown cut to `max_result_chars`
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
    agent: str = ""  # the agent that runs (the request's, else the route's)
    # list the agent's tools too (`tools`), so the run needs no `tools.list_tools` of its own (a
    # run from before the workflow's `START_LISTS_TOOLS_PATCH` does not ask)
    list_tools: bool = False


class StartRunResult(BaseModel):
    """The agent as this platform runs it: whether it is configured, its limits, and its tools."""

    configured: bool = True
    answer: str = ""  # when not configured: what is missing and which settings enable it
    limits: AgentLimits = Field(default_factory=AgentLimits)  # the agent's configured limits
    # the agent's tools as the servers offer them (`list_tools` asked, the agent configured); None:
    # not listed here (not asked, not configured, no catalogue wired, or the listing failed or took
    # too long): the workflow lists them with `tools.list_tools`, whose retries and note are its own
    tools: list[ToolSpec] | None = None


class FinishRunInput(BaseModel):
    run_id: str
    status: AgentStatus
    answer: str = ""
    limit_hit: str | None = None
    steps: int = 0
    tool_calls: int = 0
    # tool calls whose outcome no model turn recorded (the run ended after them)
    results: list[ToolCallRecord] = Field(default_factory=list)


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
    limits_hit: list[str] = Field(default_factory=list)  # every limit hit, in order (a field of AgentLimits)
    approval_id: str | None = None  # the pending question, if any
    model: str = ""
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


class GuardrailRecorded(BaseModel):
    """What `guardrails.record` returns: the ledger row's id, and whether this call created it
    (False: the key was recorded before, e.g. by an earlier attempt; nothing new was written)."""

    id: int
    created: bool
