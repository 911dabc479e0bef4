"""The shared vocabulary: pydantic models that cross every boundary.

No I/O lives here. Workflows, activities, workers and tests all import these types, so a
field added here is visible everywhere. Every model allows new optional fields to be added
later without breaking running workflows (pydantic ignores unknown fields on input).
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class AutomationLevel(StrEnum):
    """How much a runbook may do on its own (see docs/runbook-format.md)."""

    MANUAL = "manual"  # ask every time
    PROMPTED = "prompted"  # ask, with a recommendation
    STANDARD = "standard"  # run first, tell after


class ApprovalMode(StrEnum):
    VERBOSE = "VERBOSE"  # ask for everything: the go-live default
    NORMAL = "NORMAL"  # follow automation levels


class InferenceMode(StrEnum):
    LOCAL_ONLY = "LOCAL_ONLY"
    LOCAL_FIRST = "LOCAL_FIRST"
    CLOUD_FIRST = "CLOUD_FIRST"


class Collection(StrEnum):
    """The vector store's collections: the knowledge base's three, and the router's exemplars."""

    RUNBOOKS = "runbooks"
    DECISIONS = "decisions"
    DOCUMENTATION = "documentation"
    ROUTES = "routes"  # exemplar requests per agent (activities/agents/router.py)


_NAMESPACE_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a Kubernetes namespace (DNS label)
_MATCHER_RE = re.compile(r"^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


class LabelMatcher(BaseModel):
    """One Prometheus-style label matcher: `name=value`, `name!=value`, `name=~re`, `name!~re`."""

    model_config = ConfigDict(frozen=True)

    name: str
    op: Literal["=", "!=", "=~", "!~"] = "="
    value: str

    @classmethod
    def parse(cls, text: str) -> LabelMatcher:
        m = _MATCHER_RE.match(text)
        if not m:
            raise ValueError(f"not a label matcher: {text!r} (expected e.g. alertname=KubePodCrashLooping)")
        name, op, value = m.groups()
        value = value.strip().strip('"').strip("'")
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regular expression in matcher {text!r}: {exc}") from exc
        return cls(name=name, op=op, value=value)  # type: ignore[arg-type]

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        # Prometheus regex matchers are fully anchored.
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


def matches_all(matchers: list[LabelMatcher], labels: dict[str, str]) -> bool:
    """True when every matcher matches (an empty list matches nothing: no accidental catch-all)."""
    return bool(matchers) and all(m.matches(labels) for m in matchers)


class ToolCall(BaseModel):
    """One MCP tool call. In a runbook the arguments may hold `{{ labels.namespace }}` templates."""

    tool: str = Field(min_length=1, description="MCP tool name, e.g. kubernetes.restart_deployment")
    arguments: dict[str, Any] = Field(default_factory=dict)


class Runbook(BaseModel):
    """A runbook as stored in the ledger and indexed in the knowledge base."""

    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
    title: str = Field(min_length=1)
    body: str = ""
    source: str = ""  # where it was imported from (relative path) or "approval:<incident>"
    match: list[LabelMatcher] = Field(default_factory=list)
    actions: list[ToolCall] = Field(default_factory=list)
    automation_level: AutomationLevel = AutomationLevel.MANUAL
    content_hash: str = ""
    # Protected namespaces (AGENTIC_PROTECTED_NAMESPACES, e.g. kube-system) this runbook's own
    # plan may change. Its actions there pass the guard, and still always ask a human.
    allow_namespaces: list[str] = Field(default_factory=list)
    # Read-only tool calls (arguments templated like the actions') an incident gathers before the
    # diagnosis: the investigate stage (docs/runbook-format.md#evidence).
    evidence: list[ToolCall] = Field(default_factory=list)

    @field_validator("allow_namespaces", mode="before")
    @classmethod
    def _parse_namespaces(cls, value: Any) -> Any:
        """A list of namespace names (or one name); exact names, no patterns."""
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            names = []
            for v in value:
                name = str(v).strip() if isinstance(v, str) else v
                if not isinstance(name, str) or not _NAMESPACE_RE.fullmatch(name):
                    raise ValueError(
                        f"{v!r} is not a Kubernetes namespace name "
                        "(lower-case letters, digits and '-', at most 63 characters; exact names, no patterns)"
                    )
                if name not in names:
                    names.append(name)
            return names
        return value

    @field_validator("match", mode="before")
    @classmethod
    def _parse_matchers(cls, value: Any) -> Any:
        """Accept `{"alertname": "X"}` (equality), `["alertname=X", "ns=~prod-.*"]`, or matcher objects."""
        if value is None:
            return []
        if isinstance(value, dict):
            return [LabelMatcher(name=str(k), op="=", value=str(v)) for k, v in value.items()]
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [LabelMatcher.parse(v) if isinstance(v, str) else v for v in value]
        return value

    def compute_hash(self) -> str:
        """Hash of everything that defines the runbook (not its level, which the record changes)."""
        doc = {
            "id": self.id,
            "title": self.title,
            "body": self.body,
            "match": [str(m) for m in self.match],
            "actions": [a.model_dump(mode="json") for a in self.actions],
        }
        if self.allow_namespaces:  # only when set, so the hashes of runbooks without it stay as they were
            doc["allow_namespaces"] = sorted(self.allow_namespaces)
        if self.evidence:  # likewise: runbooks without evidence keep their hashes
            doc["evidence"] = [e.model_dump(mode="json") for e in self.evidence]
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def search_text(self) -> str:
        """The text that retrieval indexes."""
        return f"{self.title}\n\n{self.body}".strip()


class DocChunk(BaseModel):
    """One section of an operator document, as indexed in `documentation`."""

    id: str
    source: str  # relative path of the file
    heading: str  # the section's heading path, e.g. "Configuration > Temporal"
    text: str
    content_hash: str = ""


class DecisionRecord(BaseModel):
    """A human or automatic decision and its outcome, indexed in `decisions` for recall."""

    id: str
    incident_id: str
    summary: str  # the alert summary the decision was about
    runbook_id: str | None = None
    actions: list[ToolCall] = Field(default_factory=list)
    decision: Literal["approved", "acknowledged", "ignored", "modified", "expired", "automatic"] = "approved"
    decided_by: str | None = None
    outcome: Literal["success", "failure", "unknown", "error", "pending"] = "pending"
    labels: dict[str, str] = Field(default_factory=dict)


class SearchHit(BaseModel):
    """One retrieval result: the JSON of `agentic runbooks search --json` is a list of these."""

    id: str
    title: str
    score: float
    payload: dict[str, Any] = Field(default_factory=dict)


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Proposal(BaseModel):
    """The planner model's structured answer for an incident."""

    summary: str = Field(description="one line: what is wrong")
    diagnosis: str = Field(description="the likely cause, in a few sentences")
    runbook_id: str | None = Field(default=None, description="id of the runbook that fits, or null")
    actions: list[ToolCall] = Field(default_factory=list, description="MCP tool calls to fix it")
    confidence: float = Field(ge=0.0, le=1.0, description="0..1")
    risk: Risk = Risk.MEDIUM
