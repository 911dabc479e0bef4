"""Runbooks learned from approvals: a novel plan a human approved (or modified) and that ran
becomes a new `manual` runbook, matched on the alert's stable labels. Pure."""

from __future__ import annotations

import hashlib
import json
import re

from agentic_core.alerts import AlertGroup
from agentic_core.incident import IncidentState
from agentic_core.models import AutomationLevel, LabelMatcher, Runbook, ToolCall

# Labels that describe *what* is affected and stay the same from one firing to the next; the
# learned runbook's matchers use those the alert carries (never pod, instance or severity).
STABLE_LABELS: tuple[str, ...] = (
    "alertname",
    "namespace",
    "job",
    "service",
    "deployment",
    "statefulset",
    "daemonset",
    "app",
    "app_kubernetes_io_name",
    "container",
    "persistentvolumeclaim",
)
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
LEARNED_NAME_MAX = 120  # the alert's name in a learned runbook's id (ids are shown and indexed)


def _templated(value: object, labels: dict[str, str]) -> object:
    """Argument values equal to one of the alert's label values become `{{ labels.NAME }}`, so
    the runbook renders right for the next alert (the first label name in order wins)."""
    if isinstance(value, str):
        for name in sorted(labels):
            if name not in ("alertname", "severity") and len(labels[name]) >= 2 and labels[name] == value:
                return f"{{{{ labels.{name} }}}}"
        return value
    if isinstance(value, dict):
        return {k: _templated(v, labels) for k, v in value.items()}
    if isinstance(value, list):
        return [_templated(v, labels) for v in value]
    return value


def learned_runbook(state: IncidentState, group: AlertGroup) -> Runbook | None:
    """The new `manual` runbook an approved (or modified) plan becomes when it matched no
    runbook (the proposal named none), and ran; None otherwise.

    Its matchers are the alert group's stable labels (`STABLE_LABELS`: alertname, namespace,
    job, ...); its actions the plan that ran, with argument values that equal a label value
    turned into templates; its id `learned/<alertname>-<hash of matchers and actions>`, so
    the same plan for the same alert is one runbook; its source `approval:<incident>`.
    """
    dec = state.decision
    if dec is None or dec.choice not in ("approved", "modified") or state.proposal is None:
        return None
    if state.proposal.runbook_id is not None or not state.plan:
        return None
    if not any(a.status in ("succeeded", "failed") for a in state.actions):
        return None
    labels = dict(group.labels)
    alertname = labels.get("alertname", "").strip()
    if not alertname:
        return None
    match = [LabelMatcher(name=k, op="=", value=labels[k]) for k in STABLE_LABELS if labels.get(k)]
    actions = [ToolCall(tool=c.tool, arguments=_templated(c.arguments, labels)) for c in state.plan]  # type: ignore[arg-type]
    doc = json.dumps(
        {"match": [str(m) for m in match], "actions": [a.model_dump(mode="json") for a in actions]}, sort_keys=True
    )
    digest = hashlib.sha256(doc.encode()).hexdigest()[:10]
    name = _ID_UNSAFE.sub("-", alertname).strip("-.")[:LEARNED_NAME_MAX].strip("-.")
    rid = f"learned/{name or 'alert'}-{digest}"
    p = state.proposal
    body = "\n\n".join(
        t
        for t in (
            p.diagnosis,
            f"Learned from incident {state.incident_id}: plan {dec.choice} by {dec.by or 'a human'}.",
            "Alert: " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())),
        )
        if t
    )
    rb = Runbook(
        id=rid,
        title=state.title or p.summary or alertname,
        body=body,
        source=f"approval:{state.incident_id}",
        match=match,
        actions=actions,
        automation_level=AutomationLevel.MANUAL,
    )
    return rb.model_copy(update={"content_hash": rb.compute_hash()})
