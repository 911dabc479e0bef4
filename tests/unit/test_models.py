"""The shared vocabulary: label matchers, runbooks, proposals."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agentic_core.models import LabelMatcher, Proposal, Runbook, ToolCall, matches_all


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("alertname=KubePodCrashLooping", {"alertname": "KubePodCrashLooping"}, True),
        ("alertname=KubePodCrashLooping", {"alertname": "KubePodNotReady"}, False),
        ("namespace!=kube-system", {"namespace": "media"}, True),
        ("namespace!=kube-system", {"namespace": "kube-system"}, False),
        ("namespace=~prod-.*", {"namespace": "prod-eu"}, True),
        ("namespace=~prod", {"namespace": "prod-eu"}, False),  # anchored, like Prometheus
        ("severity!~info|none", {"severity": "critical"}, True),
        ("severity!~info|none", {"severity": "info"}, False),
        ('job="node"', {"job": "node"}, True),
    ],
)
def test_label_matchers(text: str, labels: dict[str, str], expected: bool) -> None:
    assert LabelMatcher.parse(text).matches(labels) is expected


def test_bad_matchers_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="not a label matcher"):
        LabelMatcher.parse("just words")
    with pytest.raises(ValueError, match="bad regular expression"):
        LabelMatcher.parse("a=~(unclosed")


def test_empty_matcher_list_matches_nothing() -> None:
    assert matches_all([], {"alertname": "X"}) is False


def test_runbook_match_accepts_dict_list_and_string() -> None:
    a = Runbook(id="a", title="A", match={"alertname": "X"})
    b = Runbook(id="b", title="B", match=["alertname=X"])
    c = Runbook(id="c", title="C", match="alertname=X")
    assert a.match == b.match == c.match
    assert matches_all(a.match, {"alertname": "X", "namespace": "n"})


def test_runbook_hash_ignores_level_but_not_content() -> None:
    rb = Runbook(id="r", title="T", body="b", actions=[ToolCall(tool="k8s.restart", arguments={"n": 1})])
    same = rb.model_copy(update={"automation_level": "standard"})
    changed = rb.model_copy(update={"body": "other"})
    assert rb.compute_hash() == same.compute_hash()
    assert rb.compute_hash() != changed.compute_hash()


def test_runbook_id_is_validated() -> None:
    with pytest.raises(ValidationError):
        Runbook(id="../etc/passwd", title="x")


def test_proposal_confidence_bounds() -> None:
    with pytest.raises(ValidationError):
        Proposal(summary="s", diagnosis="d", confidence=1.5)
    assert Proposal(summary="s", diagnosis="d", confidence=0.5).risk == "medium"
