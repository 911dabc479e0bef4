"""The platform's own Prometheus metrics (prometheus_client's default registry, one per process).

Names carry their unit (`_seconds`, `_total`, `_tokens_total`); labels take bounded values only
(endpoint, reason, status, category, pool, server, outcome): never an incident id, a runbook id
or free text. Recording a metric never raises into the caller (`safely`).

Temporal's SDK metrics are the Rust core's own exporter (the worker's second metrics port, see
workers/telemetry.py); these are the platform's.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger("agentic.telemetry")

# Buckets: an incident's steps take from milliseconds (a ledger write) to hours (a human's answer).
_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_HUMAN = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200)
_MODEL = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)

# --- intake ------------------------------------------------------------------------------------
ALERTS_RECEIVED = Counter("agentic_alerts_received_total", "Alerts (or events) accepted by the intake", ["endpoint"])
ALERTS_REJECTED = Counter(
    "agentic_alerts_rejected_total", "Intake requests refused, by endpoint and reason", ["endpoint", "reason"]
)

# --- incidents ---------------------------------------------------------------------------------
INCIDENTS_OPENED = Counter(
    "agentic_incidents_opened_total", "Incidents triaged, by category and severity", ["category", "severity"]
)
INCIDENTS_CLOSED = Counter(
    "agentic_incidents_closed_total",
    "Incidents recorded at their end, by final status and category",
    ["status", "category"],
)
TIME_TO_FIRST_NOTIFICATION = Histogram(
    "agentic_incident_time_to_first_notification_seconds",
    "From triage to the incident's first message to a human (the question, or what ran)",
    ["kind"],
    buckets=_FAST,
)
TIME_TO_DECISION = Histogram(
    "agentic_incident_time_to_decision_seconds",
    "From the incident's start to its decision (a human's answer, or an automatic run)",
    ["decision"],
    buckets=_HUMAN,
)
APPROVAL_WAIT = Histogram(
    "agentic_approval_wait_seconds", "From the approval question to the answer", ["decision"], buckets=_HUMAN
)
DECISIONS = Counter("agentic_decisions_total", "Decisions recorded, by kind", ["decision"])
AUTOMATED_ACTIONS = Counter(
    "agentic_automated_actions_total", "Actions run without a human's approval, by outcome", ["outcome"]
)
ACTIONS = Counter(
    "agentic_actions_total", "Actions the tool gateway finished, by agent and status", ["agent", "status"]
)
RUNBOOK_RECALLS = Counter(
    "agentic_runbook_recalls_total", "Runbooks recalled for incidents, by automation level", ["level"]
)
PROPOSALS = Counter("agentic_proposals_total", "Proposals made, by source (llm, cloud, fallback)", ["source"])
REDACTIONS = Counter(
    "agentic_cloud_redactions_total", "Items redacted from what was sent to the cloud model, by kind", ["kind"]
)
GUARDRAIL_EVENTS = Counter("agentic_guardrail_events_total", "Guardrail events recorded, by kind", ["kind"])
NOTIFICATIONS = Counter(
    "agentic_notifications_total", "Messages sent to a human, by kind and outcome", ["kind", "outcome"]
)

# --- models and tools --------------------------------------------------------------------------
MODEL_CALLS = Counter("agentic_model_calls_total", "Model calls, by pool and outcome", ["pool", "outcome"])
MODEL_LATENCY = Histogram(
    "agentic_model_call_duration_seconds", "Model call latency, by pool", ["pool"], buckets=_MODEL
)
MODEL_TOKENS = Counter(
    "agentic_model_tokens_total", "Tokens, by pool and direction (input, output)", ["pool", "direction"]
)
# the wait for a model slot (docs/scaling.md): `queue` planner (the planner's own slots, per
# worker) or pool (the pool's replicas, AGENTIC_POOL_MAX_PARALLEL each); and the plans that fell
# back to the runbook because the model was busy
MODEL_SLOT_WAIT = Histogram(
    "agentic_model_slot_wait_seconds", "Wait for a model slot, by pool and queue", ["pool", "queue"], buckets=_FAST
)
PLAN_FALLBACKS = Counter("agentic_plan_fallbacks_total", "Plans that fell back to the runbook, by reason", ["reason"])
TOOL_CALLS = Counter("agentic_tool_calls_total", "MCP tool calls, by server and outcome", ["server", "outcome"])
TOOL_LATENCY = Histogram(
    "agentic_tool_call_duration_seconds", "MCP tool call latency, by server", ["server"], buckets=_FAST
)
MCP_SERVER_CALLS = Counter(
    "agentic_mcp_server_tool_calls_total", "Tool calls this MCP server answered, by outcome", ["server", "outcome"]
)

# --- gateway (workers/gateway/observe.py) ------------------------------------------------------
GATEWAY_REQUESTS = Counter(
    "agentic_gateway_requests_total",
    "Gateway requests answered, by method, route template (never the path) and status",
    ["method", "route", "status"],
)
GATEWAY_STREAMS = Gauge("agentic_gateway_streams_in_flight", "Chat completion streams being answered now")
GATEWAY_TTFT = Histogram(
    "agentic_gateway_time_to_first_token_seconds",
    "From a chat completion request to its first content (a stream's first non-empty delta, else the answer)",
    ["stream"],
    buckets=_MODEL,
)


@contextlib.contextmanager
def safely() -> Iterator[None]:
    """Metrics are an observer: a failure to record one is logged, never raised."""
    try:
        yield
    except Exception as exc:  # pragma: no cover - defensive
        log.debug("metric not recorded: %s", exc)


def label(value: object, allowed: frozenset[str] | None = None, other: str = "other") -> str:
    """A label value kept bounded: `other` for anything outside `allowed` (when given), and at
    most 40 characters."""
    text = str(getattr(value, "value", value) or "none")
    if allowed is not None and text not in allowed:
        return other
    return text[:40]


class _Opened:
    """When incidents were triaged in this process (bounded; for time to first notification)."""

    def __init__(self, limit: int = 4096) -> None:
        self._at: OrderedDict[str, float] = OrderedDict()
        self._limit = limit

    def mark(self, incident_id: str) -> None:
        self._at[incident_id] = time.monotonic()
        self._at.move_to_end(incident_id)
        while len(self._at) > self._limit:
            self._at.popitem(last=False)

    def take(self, incident_id: str) -> float | None:
        """Seconds since triage, once per incident occurrence (None: not triaged here, or taken)."""
        at = self._at.pop(incident_id, None)
        return None if at is None else time.monotonic() - at


OPENED = _Opened()
