"""The staged rollout's contracts and its plan (deploy/waves.yaml). No I/O except `load_plan`.

Names other processes rely on (the worker, the CLI):

- workflow type `RolloutWorkflow`, input `RolloutInput` (every field has a default, so
  `--input '{"from_wave": 0, "to_wave": 3}'` starts it), result `RolloutState`;
- query `QUERY_ROLLOUT` ("rollout") returns `RolloutState`;
- each gate is a child `ApprovalWorkflow` with id `gate_id(rollout_id, next_wave)`, answered
  with the `decide` update like any approval;
- activities `rollout.*`: see `activities/rollout/activities.py`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, model_validator

from agentic_core.incident import ApprovalResult
from agentic_core.models import ToolCall

QUERY_ROLLOUT = "rollout"
WAVES_FILE = Path(__file__).resolve().parents[1] / "deploy" / "waves.yaml"
FIRST_WAVE = 0
LAST_WAVE = 10

# check name -> the activity that runs it (every check takes CheckInput, returns CheckResult)
CHECK_ACTIVITIES: dict[str, str] = {
    "namespaces_present": "rollout.check_namespaces",
    "gpu_nodes_labeled": "rollout.check_gpu_nodes",
    "no_pinned_pods": "rollout.check_no_pinned_pods",
    "dns_resolves": "rollout.check_dns",
    "qdrant_roundtrip": "rollout.check_qdrant",
    "postgres_reachable": "rollout.check_postgres",
    "inference_streams": "rollout.check_inference",
    "persistence_survives_restart": "rollout.check_persistence",
    # the agents and their guardrails (activities/rollout/agent_checks.py)
    "router_selects_agent": "rollout.check_router",
    "agents_answer": "rollout.check_agents",
    "tool_allowlist_enforced": "rollout.check_allowlists",
    "timeouts_enforced": "rollout.check_timeouts",
    "unauthorized_rejected": "rollout.check_unauthorized",
    "guardrail_events_logged": "rollout.check_guardrail_events",
    # the gateway (activities/rollout/gateway_check.py)
    "gateway_authenticates": "rollout.check_gateway",
    # the platform's own telemetry, wave 6 (activities/rollout/telemetry_checks.py)
    "platform_metrics_scraped": "rollout.check_platform_metrics",
    "trace_complete": "rollout.check_trace",
}
# checks that may run for minutes (they heartbeat)
LONG_CHECKS = frozenset(
    {
        "dns_resolves",
        "inference_streams",
        "persistence_survives_restart",
        "router_selects_agent",
        "agents_answer",
        # these list every MCP server's tools (each up to the gateway's call timeout)
        "tool_allowlist_enforced",
        "unauthorized_rejected",
    }
)


class PlanError(ValueError):
    """deploy/waves.yaml does not describe a valid plan."""


# --------------------------------------------------------------------------- the plan (data)


class Check(BaseModel):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class ValuesToggle(BaseModel):
    """Chart values set on an Application (`spec.source.helm.valuesObject`) before its sync.

    `values` keys are dotted paths (`qdrant.enabled`), values any JSON value."""

    application: str
    values: dict[str, Any] = Field(default_factory=dict)


class Wave(BaseModel):
    wave: int = Field(ge=FIRST_WAVE, le=LAST_WAVE)
    name: str = Field(min_length=1)
    description: str = ""
    chart: str = ""  # what the Helm chart renders in this wave (for people)
    prerequisites: list[str] = Field(default_factory=list)  # ArgoCD Applications synced first
    applications: list[str] = Field(default_factory=list)  # the wave's own ArgoCD Applications
    values: list[ValuesToggle] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something_to_do(self) -> Wave:
        if not self.prerequisites and not self.applications and not self.values:
            raise ValueError(f"wave {self.wave} installs nothing (no applications, no values)")
        if not self.checks:
            raise ValueError(f"wave {self.wave} has no validation checklist")
        return self

    def synced_applications(self) -> list[str]:
        """The Applications this wave syncs, in order: prerequisites, its own, those it toggles."""
        names = list(dict.fromkeys([*self.prerequisites, *self.applications]))
        names += [t.application for t in self.values if t.application not in names]
        return names

    def steps(self, argocd_namespace: str) -> list[ToolCall]:
        """The wave's apply steps as tool calls: what a gate shows and `plan_hash` binds."""
        calls = [
            ToolCall(tool="helm.set_values", arguments={"application": t.application, "values": t.values})
            for t in self.values
        ]
        calls += [
            ToolCall(tool="argocd.sync", arguments={"namespace": argocd_namespace, "application": a})
            for a in self.synced_applications()
        ]
        return calls


class RolloutPlan(BaseModel):
    version: int = 1
    argocd_namespace: str = "argocd"
    waves: list[Wave]

    @model_validator(mode="after")
    def _complete(self) -> RolloutPlan:
        numbers = [w.wave for w in self.waves]
        if numbers != list(range(FIRST_WAVE, LAST_WAVE + 1)):
            raise ValueError(f"waves must be {FIRST_WAVE}..{LAST_WAVE} in order, got {numbers}")
        unknown = sorted({c.name for w in self.waves for c in w.checks} - set(CHECK_ACTIVITIES))
        if unknown:
            raise ValueError(f"unknown checks {unknown}; known: {sorted(CHECK_ACTIVITIES)}")
        return self

    def wave(self, n: int) -> Wave:
        return self.waves[n - FIRST_WAVE]


def parse_plan(text: str) -> RolloutPlan:
    try:
        doc = yaml.safe_load(text)
        return RolloutPlan.model_validate(doc)
    except (yaml.YAMLError, ValueError) as exc:
        raise PlanError(f"invalid waves plan: {exc}") from exc


def load_plan(path: Path = WAVES_FILE) -> RolloutPlan:
    return parse_plan(path.read_text())


def dotted_to_nested(values: dict[str, Any]) -> dict[str, Any]:
    """`{"a.b": 1}` -> `{"a": {"b": 1}}` (a JSON merge patch body)."""
    out: dict[str, Any] = {}
    for path, value in values.items():
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def lookup(doc: dict[str, Any] | None, path: str) -> Any:
    node: Any = doc or {}
    for p in path.split("."):
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def gate_id(rollout_id: str, next_wave: int) -> str:
    return f"{rollout_id}-gate-{next_wave}"


# --------------------------------------------------------------------------- workflow I/O


class RolloutInput(BaseModel):
    """No validators here: a bad input must fail the run (`problems()`), not the decoding of it."""

    from_wave: int = FIRST_WAVE
    to_wave: int = LAST_WAVE
    dry_run: bool = False  # read the Applications and show the plan; nothing is patched or probed
    approvers: list[str] = Field(default_factory=list)  # who may answer a gate; empty: anyone
    route: str = "platform"  # notification route of the gate questions
    gate_remind_after_s: int = 60 * 60
    gate_escalate_after_s: int = 0
    gate_expire_after_s: int = 24 * 60 * 60
    apply_timeout_s: int = 30 * 60  # per wave, for the sync and the health wait

    def problems(self) -> list[str]:
        out = [
            f"{name} {n} is outside {FIRST_WAVE}..{LAST_WAVE}"
            for name, n in (("from_wave", self.from_wave), ("to_wave", self.to_wave))
            if not FIRST_WAVE <= n <= LAST_WAVE
        ]
        if self.from_wave > self.to_wave:
            out.append(f"from_wave {self.from_wave} is after to_wave {self.to_wave}")
        return out


class RolloutStatus(StrEnum):
    RUNNING = "running"
    AWAITING_GATE = "awaiting_gate"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"  # a wave failed its checks (or its sync) and was reverted
    STOPPED = "stopped"  # a gate was refused or expired
    FAILED = "failed"  # something could not be done (e.g. the rollback itself)


WavePhase = Literal["pending", "applying", "validating", "validated", "gated", "done", "rolled_back", "failed"]


class AppRevision(BaseModel):
    application: str
    previous_revision: str = ""  # status.sync.revision before apply ("" for a first install)
    target_revision: str = ""  # spec.source.targetRevision before apply
    previous_values: dict[str, Any] = Field(default_factory=dict)  # valuesObject before apply
    exists: bool = True


class CheckResult(BaseModel):
    name: str
    passed: bool
    detail: str = ""


class AppSyncResult(BaseModel):
    application: str
    revision: str = ""
    sync_status: str = ""
    health_status: str = ""
    phase: str = ""
    message: str = ""
    ok: bool = False


class WaveResult(BaseModel):
    wave: int
    name: str
    phase: WavePhase = "pending"
    recorded: list[AppRevision] = Field(default_factory=list)
    applied: list[AppSyncResult] = Field(default_factory=list)
    checks: list[CheckResult] = Field(default_factory=list)
    rollback: list[AppSyncResult] = Field(default_factory=list)
    gate: ApprovalResult | None = None
    reasons: list[str] = Field(default_factory=list)


class RolloutState(BaseModel):
    from_wave: int
    to_wave: int
    dry_run: bool = False
    status: RolloutStatus = RolloutStatus.RUNNING
    current_wave: int | None = None
    waves: list[WaveResult] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    gate_id: str | None = None  # the pending gate's ApprovalWorkflow id


# --------------------------------------------------------------------------- activity I/O


class LoadPlanInput(BaseModel):
    from_wave: int
    to_wave: int


class LoadPlanResult(BaseModel):
    argocd_namespace: str
    waves: list[Wave]


class RecordInput(BaseModel):
    wave: int
    argocd_namespace: str
    applications: list[str]
    toggled: list[ValuesToggle] = Field(default_factory=list)


class RecordResult(BaseModel):
    applications: list[AppRevision]


class ApplyInput(BaseModel):
    wave: int
    argocd_namespace: str
    applications: list[str]
    values: list[ValuesToggle] = Field(default_factory=list)
    dry_run: bool = False
    timeout_s: int = 30 * 60


class ApplyResult(BaseModel):
    ok: bool
    applications: list[AppSyncResult] = Field(default_factory=list)
    reason: str = ""


class RollbackInput(BaseModel):
    wave: int
    argocd_namespace: str
    recorded: list[AppRevision]
    toggled: list[ValuesToggle] = Field(default_factory=list)
    timeout_s: int = 30 * 60


class CheckInput(BaseModel):
    wave: int
    check: Check
