"""The incident's recall query (`agentic_core.incident.recall_text` / `recall_input`): one
function for the workflow's recall stage and benchmarks/decision_eval.py. Its output is the
text the workflow built inline before it moved (a running workflow's recall input must not
change), checked here against that expression for the cases it distinguishes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentic_core import policy
from agentic_core.alerts import Alert, AlertGroup, AlertStatus
from agentic_core.incident import RecallInput, TriageResult, group_annotations, recall_input, recall_text


def inline_before(tri: TriageResult, annotations: dict[str, str]) -> str:
    """The expression IncidentWorkflow._recall used before the move (kept verbatim)."""
    text = "\n".join(t for t in (tri.title, tri.alertname, annotations.get("description", "")) if t and t.strip()) or (
        tri.alertname or tri.title
    )
    return text


def group(labels: dict[str, str], annotations: dict[str, str], *, common: bool = True) -> AlertGroup:
    alert = Alert(
        fingerprint="fp-1",
        status=AlertStatus.FIRING,
        labels=labels,
        annotations=annotations,
        starts_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    return AlertGroup(
        incident_id="inc-1",
        receiver="agentic",
        group_key="{}:{}",
        status=AlertStatus.FIRING,
        common_labels=labels if common else {},
        common_annotations=annotations if common else {},
        alerts=[alert],
    )


CASES = [
    # summary, name and description
    (
        {"alertname": "KubePodCrashLooping", "namespace": "media", "severity": "warning"},
        {"summary": "Pod is crash looping.", "description": "Pod media/jellyfin-7c9d-x2kqp is in waiting state."},
    ),
    # no summary: the title is the alert's name, which then appears twice
    ({"alertname": "KubeQuotaAlmostFull"}, {"description": "Namespace media is using 93% of its cpu quota."}),
    # a blank description, a summary over several lines
    ({"alertname": "TargetDown"}, {"summary": "  50% of the\n node-exporter targets are down ", "description": " \n"}),
    # nothing but a name; nothing at all (the title is "unnamed alert")
    ({"alertname": "Watchdog"}, {}),
    ({}, {}),
    ({"severity": "critical"}, {"description": "disk full on nas-01"}),
]


@pytest.mark.parametrize(("labels", "annotations"), CASES)
def test_recall_text_is_the_text_the_workflow_built_inline(labels: dict[str, str], annotations: dict[str, str]) -> None:
    tri = policy.triage(labels, annotations)
    assert recall_text(tri, annotations) == inline_before(tri, annotations)


def test_recall_text_lines() -> None:
    labels, annotations = CASES[0]
    tri = policy.triage(labels, annotations)
    assert recall_text(tri, annotations) == (
        "Pod is crash looping.\nKubePodCrashLooping\nPod media/jellyfin-7c9d-x2kqp is in waiting state."
    )
    assert recall_text(policy.triage({}, {}), {}) == "unnamed alert"
    # a title that is only blank falls back to the alert's name
    blank = TriageResult.model_validate({**tri.model_dump(), "title": "  "})
    assert recall_text(blank, {}) == "KubePodCrashLooping"


@pytest.mark.parametrize("common", [True, False])
def test_recall_input_carries_the_query_the_labels_and_the_limit(common: bool) -> None:
    labels, annotations = CASES[0]
    g = group(labels, annotations, common=common)
    tri = policy.triage(g.labels, group_annotations(g))
    assert recall_input("inc-1", tri, g, 3) == RecallInput(
        incident_id="inc-1", text=inline_before(tri, annotations), labels=labels, limit=3
    )
