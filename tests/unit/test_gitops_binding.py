"""`agentic_core.evidence.bind_bases`: a runbook's GitOps action (`commit_edit`) is bound to the
commit its diff was shown against (the `propose_edit` evidence of the same repository and edits),
so the plan hash a human approves names that very diff; `unbound` gives the runbook's plan back."""

from __future__ import annotations

from agentic_core.evidence import EvidenceItem, base_of, bind_bases, unbound
from agentic_core.models import ToolCall

EDITS = [{"path": "apps/shop/values.yaml", "yaml_path": "resources.limits.memory", "value": "2Gi"}]
BASE = "a" * 40
PROPOSE = ToolCall(tool="propose_edit", arguments={"repo": "gitops", "edits": EDITS})
COMMIT = ToolCall(tool="commit_edit", arguments={"repo": "gitops", "edits": EDITS, "title": "Raise"})
RESTART = ToolCall(tool="rollout_restart", arguments={"namespace": "shop", "deployment": "checkout"})


def shown(call: ToolCall = PROPOSE, status: str = "ok", base: str = BASE) -> EvidenceItem:
    return EvidenceItem(index=0, call=call, status=status, diff="diff --git a/x b/x\n", base=base)  # type: ignore[arg-type]


def test_a_commit_of_the_edits_shown_is_bound_to_their_base() -> None:
    bound = bind_bases([RESTART, COMMIT], [shown()])
    assert bound == [RESTART, ToolCall(tool="commit_edit", arguments={**COMMIT.arguments, "base": BASE})]
    assert unbound(bound) == [RESTART, COMMIT]


def test_nothing_is_bound_without_the_same_edits_shown() -> None:
    other = ToolCall(tool="propose_edit", arguments={"repo": "gitops", "edits": [{**EDITS[0], "value": "3Gi"}]})
    elsewhere = ToolCall(tool="propose_edit", arguments={"repo": "apps", "edits": EDITS})
    for items in ([shown(other)], [shown(elsewhere)], [shown(status="failed")], [shown(base="")], []):
        assert bind_bases([COMMIT], items) == [COMMIT]
    named = ToolCall(tool="commit_edit", arguments={**COMMIT.arguments, "base": "b" * 40})
    assert bind_bases([named], [shown()]) == [named]  # a base the plan names is kept


def test_the_base_is_read_from_propose_edits_output() -> None:
    assert base_of('{"repo": "gitops", "base": "' + BASE + '", "diff": "…"}') == BASE
    assert base_of('{"base": "not a commit"}') == base_of("plain text") == ""
