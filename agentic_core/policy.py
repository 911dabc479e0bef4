"""The platform's policies: pure functions, no I/O, one place.

Workflows call these directly (they are deterministic), activities call them too. A change
to a function that a running workflow calls can change that workflow's commands on replay:
guard such a change with `workflow.patched()` in the workflow, or compute the result in an
activity (triage does: its result is recorded in history).

- `triage`: severity, category and notification route from an alert's labels.
- `decide`: automation level × approval mode × confidence → what to do with a plan.
- `plan_level`: the automation level a plan may use (a runbook's level covers only its own plan).
- `untrusted_plan`: a plan a model made with untrusted content in its context (alert text, tool
  output, web pages) that is not a runbook's own plan always asks a human.
- `render_actions`: `{{ labels.NAME }}` templates in runbook actions, filled from an alert.
- `render_actions`: `{{ labels.NAME }}` templates in runbook actions, filled from an alert;
  `render_evidence` the same for a runbook's evidence calls, one call at a time.
- `fallback_confidence`: how sure we are of a runbook when the model gave no usable answer.
- `run_confidence`: the confidence `decide` gets: the runbook's evidence, which the model can
  lower but never raise.
- `protected_namespaces`: the namespaces an action names that the platform protects
  (kube-system, its own ai-* namespaces, the operators it installs...).

How a runbook earns and loses its level (promotion and demotion, the smoothed success rate)
is `agentic_core.trust`; what the level then allows is `decide` and `plan_level` here.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agentic_core.incident import (
    Category,
    PolicyVerdict,
    RecalledRunbook,
    RecallResult,
    Severity,
    TriageResult,
    plan_hash,
)
from agentic_core.models import ApprovalMode, AutomationLevel, ToolCall

# --------------------------------------------------------------------------- triage

_SEVERITY: dict[str, Severity] = {
    "critical": Severity.CRITICAL,
    "error": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "warning": Severity.WARNING,
    "warn": Severity.WARNING,
}

# Labels that hint at what is affected, in the order they are read. Besides the scrape's and
# the app's labels, the object labels kube-state-metrics and the kubelet leave on an alert that
# is about one object (KubePodNotReady carries only `namespace` and `pod`; KubeJobFailed
# `job_name`, the scrape's `job` being kube-state-metrics; KubePersistentVolumeFillingUp
# `persistentvolumeclaim`), so that a Sonarr pod or a Radarr volume is an arr incident.
HINT_LABELS: tuple[str, ...] = (
    "namespace",
    "job",
    "service",
    "app",
    "app_kubernetes_io_name",
    "container",
    "deployment",
    "statefulset",
    "daemonset",
    "pod",
    "job_name",
    "cronjob",
    "persistentvolumeclaim",
    "horizontalpodautoscaler",
    "alertname",
)

# Substrings that name a component (matched in lower case, anywhere in a hint label's value,
# so `SonarrDown`, `radarr-4k` and `zigbee2mqtt` are recognised).
_ARR_NAMES = ("sonarr", "radarr", "prowlarr", "lidarr", "readarr", "bazarr", "qbittorrent", "sabnzbd")
# (mosquitto: the MQTT broker Home Assistant's Zigbee2MQTT and ESPHome devices talk through)
_HOME_ASSISTANT_NAMES = (
    "homeassistant",
    "home-assistant",
    "home_assistant",
    "zigbee",
    "mqtt",
    "mosquitto",
    "esphome",
)
_PLATFORM_NAMES = ("agentic", "temporal", "qdrant", "vllm", "litellm")
_TOKEN_SPLIT = re.compile(r"[^a-z0-9]+")


def normalise_severity(value: str | None) -> Severity:
    """critical/error/page → critical; warning/warn → warning; anything else → info."""
    return _SEVERITY.get((value or "").strip().lower(), Severity.INFO)


def _hints(labels: Mapping[str, str]) -> list[str]:
    return [labels[k].strip().lower() for k in HINT_LABELS if labels.get(k)]


def _is_arr(value: str) -> bool:
    # "arr" alone is too short to match as a substring (array, carrier): it must be a whole token.
    return any(n in value for n in _ARR_NAMES) or "arr" in _TOKEN_SPLIT.split(value)


def _is_platform(value: str, *, namespace: bool) -> bool:
    if any(n in value for n in _PLATFORM_NAMES):
        return True
    return namespace and (value == "ai" or value.startswith("ai-"))


def categorise(labels: Mapping[str, str]) -> Category:
    """The category from namespace/job/service/app/alertname hints; infrastructure by default.

    Applications win over the platform (a Sonarr pod in an `ai-tools` namespace is an arr
    incident), and the platform over infrastructure.
    """
    hints = _hints(labels)
    if any(_is_arr(h) for h in hints):
        return Category.ARR
    if any(n in h for h in hints for n in _HOME_ASSISTANT_NAMES):
        return Category.HOME_ASSISTANT
    namespace = (labels.get("namespace") or "").strip().lower()
    if _is_platform(namespace, namespace=True) or any(_is_platform(h, namespace=False) for h in hints):
        return Category.PLATFORM
    return Category.INFRASTRUCTURE


def route_for(severity: Severity, category: Category) -> str:
    """Critical incidents go to the critical route whatever their category."""
    return "critical" if severity == Severity.CRITICAL else category.value


TITLE_MAX = 300  # an incident's title is a display value: one line, cut with a marker


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending with "… [cut]" when it was longer."""
    marker = "… [cut]"
    return text if len(text) <= limit else text[: max(limit - len(marker), 0)] + marker


def triage(labels: Mapping[str, str], annotations: Mapping[str, str] | None = None) -> TriageResult:
    """Severity, category, route and title of an alert (or alert group) from its labels. The
    title (the summary annotation, else the alert's name) is one line of at most `TITLE_MAX`
    characters: alert text is untrusted and may be any size."""
    annotations = annotations or {}
    severity = normalise_severity(labels.get("severity"))
    category = categorise(labels)
    alertname = (labels.get("alertname") or "").strip()
    title = clip(" ".join((annotations.get("summary") or "").split()) or alertname or "unnamed alert", TITLE_MAX)
    return TriageResult(
        severity=severity,
        category=category,
        route=route_for(severity, category),
        alertname=alertname,
        title=title,
    )


# --------------------------------------------------------------------------- decide


def decide(
    level: AutomationLevel,
    mode: ApprovalMode,
    confidence: float,
    threshold: float,
    has_actions: bool,
    *,
    protected: bool = False,
) -> PolicyVerdict:
    """What to do with a guarded plan.

    - no action survived the guard (no runbook, a plan with no actions, every action refused,
      no tool server for the plan's tools): VERBOSE (the go-live default, "ask about
      everything") puts it to a human all the same: ASK_ACKNOWLEDGE (acknowledge, ignore or
      modify); NORMAL: NOTHING_TO_DO (the incident watches for the alert to resolve, and says so);
    - VERBOSE: ASK, always;
    - NORMAL: manual → ASK; prompted → ASK_RECOMMEND; standard → RUN_THEN_NOTIFY when the
      confidence reaches the threshold, else ASK_RECOMMEND;
    - `protected` (the plan changes a protected namespace its runbook allows): never
      RUN_THEN_NOTIFY; a standard runbook asks, with a recommendation.
    """
    if not has_actions:
        return PolicyVerdict.ASK_ACKNOWLEDGE if mode == ApprovalMode.VERBOSE else PolicyVerdict.NOTHING_TO_DO
    if mode == ApprovalMode.VERBOSE:
        return PolicyVerdict.ASK
    if level == AutomationLevel.STANDARD and protected:
        return PolicyVerdict.ASK_RECOMMEND
    if level == AutomationLevel.STANDARD:
        # NaN never reaches a threshold.
        return PolicyVerdict.RUN_THEN_NOTIFY if confidence >= threshold else PolicyVerdict.ASK_RECOMMEND
    if level == AutomationLevel.PROMPTED:
        return PolicyVerdict.ASK_RECOMMEND
    return PolicyVerdict.ASK


def plan_level(
    runbook_level: AutomationLevel | None, runbook_actions: Iterable[ToolCall], plan: list[ToolCall]
) -> AutomationLevel:
    """The level a plan may run at: the runbook's, but only for the runbook's own (rendered) plan.

    A runbook earns its level for the actions it holds. A plan that differs in any tool or
    argument, or in order (the model's own idea, or a plan the guard cut down) is new and
    asks a human, whatever runbook it names.
    """
    if runbook_level is None or not plan:
        return AutomationLevel.MANUAL
    if untrusted_plan(plan, list(runbook_actions)):
        return AutomationLevel.MANUAL
    return runbook_level


def untrusted_plan(
    plan: Sequence[ToolCall], runbook_plan: Sequence[ToolCall] | None, *, untrusted_context: bool = True
) -> bool:
    """True when `plan` must be put to a human, whatever any automation level allows.

    Untrusted content is data, never instructions: alert text (labels, annotations), tool output
    (pod logs, events, a tool's answer), web pages. A model that had any of it in its context may
    have been told what to do by whoever wrote it, so a plan it produced runs only after a human
    approves that exact plan. The one exception is a runbook's own (rendered) plan: a person wrote
    it and the runbook earned its level for exactly those actions, so it keeps that level even
    when a model picked it.

    - `plan`: the actions to run (empty: nothing runs, nothing to ask about: False);
    - `runbook_plan`: the rendered actions of the runbook the plan claims to follow (None: none);
      a plan that differs from it in any tool, argument or order is the model's own;
    - `untrusted_context`: whether untrusted content was in the model's context. The incident
      planner always has the alert's text (True); an agent has it from its first tool result.

    The incident workflow applies it through `plan_level` (and records an `untrusted_plan`
    guardrail event in NORMAL mode, where it is what makes the incident ask); the agent loop
    calls it before any tool that changes something.
    """
    if not plan or not untrusted_context:
        return False
    if runbook_plan is None:
        return True
    return plan_hash(list(plan)) != plan_hash(list(runbook_plan))


# --------------------------------------------------------------------------- protected namespaces

# Namespaces the agent never changes on its own (AGENTIC_PROTECTED_NAMESPACES; glob patterns):
# the cluster's own (kube-system, kube-public, kube-node-lease), the platform's own namespaces
# (the chart's ai-inference, ai-router, ai-agents, ai-tools, ai-vector with its PostgreSQL and
# Qdrant, ai-observability: ai-*), Temporal's, and the operators the platform's ArgoCD
# applications install (argocd, cert-manager, cnpg-system, infisical-operator-system,
# local-path-storage). A runbook lists the ones its own plan may change under
# `allow_namespaces`; such a plan still always asks a human.
DEFAULT_PROTECTED_NAMESPACES: tuple[str, ...] = (
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "ai-*",
    "temporal",
    "argocd",
    "cert-manager",
    "cnpg-system",
    "infisical-operator-system",
    "local-path-storage",
)
# Tool arguments that name a namespace: `namespace` (the infrastructure tools), `namespaces`
# (a list, for tools that take several).
NAMESPACE_ARGUMENTS: tuple[str, ...] = ("namespace", "namespaces")


def action_namespaces(call: ToolCall) -> list[str]:
    """The namespaces an action's arguments name (lower-cased, stripped), in order, once each."""
    found: list[str] = []
    for name in NAMESPACE_ARGUMENTS:
        value = call.arguments.get(name)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, str) and v.strip() and v.strip().lower() not in found:
                found.append(v.strip().lower())
    return found


def protected_namespaces(call: ToolCall, patterns: Sequence[str]) -> list[tuple[str, str]]:
    """`(namespace, pattern)` for each namespace `call` names that one of `patterns` protects
    (shell-style globs: `ai-*`, `kube-?ublic`; the first pattern that matches is named)."""
    out: list[tuple[str, str]] = []
    for ns in action_namespaces(call):
        pattern = next((p for p in patterns if fnmatch.fnmatchcase(ns, p.strip().lower())), None)
        if pattern is not None:
            out.append((ns, pattern))
    return out


# --------------------------------------------------------------------------- templates

TEMPLATE_RE = re.compile(r"\{\{\s*labels\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def render_value(value: Any, labels: Mapping[str, str]) -> Any:
    """`value` with every `{{ labels.NAME }}` replaced (strings inside dicts and lists too).

    Raises ValueError naming the label when the alert does not carry it: running a tool with
    a half-filled argument is worse than not proposing it.
    """
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in labels:
                have = ", ".join(sorted(labels)) or "none"
                raise ValueError(
                    f"template {m.group(0)!r} needs label {name!r}, which the alert lacks (labels: {have})"
                )
            return labels[name]

        return TEMPLATE_RE.sub(sub, value)
    if isinstance(value, dict):
        return {k: render_value(v, labels) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, labels) for v in value]
    return value


def render_actions(actions: Iterable[ToolCall], labels: Mapping[str, str]) -> list[ToolCall]:
    """Runbook actions with their argument templates filled from the alert's labels.

    Raises ValueError (naming the label and the tool) when a template names a label the alert
    does not have.
    """
    out: list[ToolCall] = []
    for call in actions:
        try:
            arguments = render_value(call.arguments, labels)
        except ValueError as exc:
            raise ValueError(f"{call.tool}: {exc}") from None
        out.append(ToolCall(tool=call.tool, arguments=arguments))
    return out


def render_evidence(calls: Iterable[ToolCall], labels: Mapping[str, str]) -> tuple[list[ToolCall], list[str]]:
    """A runbook's evidence calls with their templates filled from the alert's labels, and, for each
    call that cannot be filled (the alert lacks a label), the reason. Unlike actions, one call
    that cannot be filled does not drop the others: each is looked at on its own."""
    rendered: list[ToolCall] = []
    skipped: list[str] = []
    for call in calls:
        try:
            rendered.append(ToolCall(tool=call.tool, arguments=render_value(call.arguments, labels)))
        except ValueError as exc:
            skipped.append(f"{call.tool}: {exc}")
    return rendered, skipped


def has_templates(value: Any) -> bool:
    """True when `value` still holds a `{{ labels.NAME }}` template anywhere."""
    if isinstance(value, str):
        return TEMPLATE_RE.search(value) is not None
    if isinstance(value, dict):
        return any(has_templates(v) for v in value.values())
    if isinstance(value, list):
        return any(has_templates(v) for v in value)
    return False


# --------------------------------------------------------------------------- confidence

# The fallback's confidence bands: a runbook whose matchers all match the alert's labels is
# trusted more than one that text retrieval merely found. Kept apart and below 1, so that a
# runbook found by text alone never reaches the default threshold (0.7) on its own.
MATCHED_FLOOR = 0.6
MATCHED_SPAN = 0.3
TEXT_ONLY_SPAN = 0.5


def fallback_confidence(score: float, matched_labels: bool) -> float:
    """Confidence in a recalled runbook's plan without the model's opinion, in [0, 1].

    `score` is the retrieval score as `KnowledgeBase.search_runbooks` returns it: the fused
    text score in [0, 1], plus 1 for a runbook whose matchers matched the labels.

    - labels matched: 0.6 + 0.3 × text score → [0.6, 0.9];
    - text only: 0.5 × text score → [0, 0.5].
    """
    if not math.isfinite(score):
        score = 0.0
    if matched_labels:
        text = score - 1.0 if score >= 1.0 else score
        return round(MATCHED_FLOOR + MATCHED_SPAN * min(max(text, 0.0), 1.0), 4)
    return round(TEXT_ONLY_SPAN * min(max(score, 0.0), 1.0), 4)


def run_confidence(runbook: RecalledRunbook | None, model_confidence: float) -> float:
    """The confidence that decides whether a plan runs without asking (`decide`), in [0, 1].

    The model reports its own confidence, and a model can be talked into any number (alert
    text and recalled decisions reach its prompt). So a plan runs alone only on evidence the
    model cannot forge: the recalled runbook whose plan it is, its labels matching the alert
    and its retrieval score (`fallback_confidence`). The model's confidence can lower that
    (a doubtful model makes the agent ask), never raise it. No runbook: 0 (a model's own plan
    asks anyway, see `plan_level`).
    """
    if runbook is None:
        return 0.0
    model = model_confidence if math.isfinite(model_confidence) else 0.0
    return min(fallback_confidence(runbook.score, runbook.matched_labels), max(model, 0.0))


# --------------------------------------------------------------------------- protected namespaces (allowance)


def namespace_allowance(recall: RecallResult, runbook_id: str | None, plan: list[ToolCall]) -> list[str]:
    """The protected namespaces `plan` may change: those its runbook lists under
    `allow_namespaces`, and only when the plan is that runbook's own (rendered) plan; none for a
    model's own plan or any other."""
    runbook = next((r for r in recall.runbooks if r.id == runbook_id), None)
    if runbook is None or not runbook.allow_namespaces or not plan:
        return []
    if plan_hash(plan) != plan_hash(list(runbook.actions)):
        return []
    return list(runbook.allow_namespaces)
