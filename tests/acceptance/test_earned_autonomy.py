"""README, "Earned autonomy", on the first stack with the runbook corpus imported:

agentic runbooks show kubernetes/KubePodCrashLooping   # record, smoothed success, level history
agentic runbooks stats --json                           # {"manual": n, "prompted": n, "standard": n}
agentic review run --quarter 2026-Q3                    # the trust review now
"""

from __future__ import annotations

import pytest

from tests.acceptance.conftest import Ran, Stack

pytestmark = pytest.mark.slow


def test_runbooks_show(first_stack: Stack, corpus: Ran) -> None:
    res = first_stack.readme("agentic runbooks show kubernetes/KubePodCrashLooping")
    assert res.rc == 0, res
    # README: "record, smoothed success, level history"
    assert "kubernetes/KubePodCrashLooping" in res.out, res
    assert "level manual" in res.out, res  # "Runbooks earn their level ...: `manual` → `prompted` ..."
    assert "record:" in res.out and "executions" in res.out, res
    assert "smoothed success" in res.out, res
    assert "level history" in res.out, res


def test_runbooks_stats_json(first_stack: Stack, corpus: Ran) -> None:
    res = first_stack.readme("agentic runbooks stats --json")
    assert res.rc == 0, res
    counts = res.json
    # README: {"manual": n, "prompted": n, "standard": n}
    assert set(counts) == {"manual", "prompted", "standard"}, counts
    listed = first_stack.agentic("runbooks", "list", "--json").json
    assert sum(counts.values()) == len(listed), (counts, len(listed))
    assert counts["manual"] == sum(1 for r in listed if r["automation_level"] == "manual"), counts


def test_review_run(first_stack: Stack, corpus: Ran) -> None:
    res = first_stack.readme("agentic review run --quarter 2026-Q3", timeout=300)
    # README: "the trust review now" (a quarterly `TrustReviewWorkflow` audits automated actions)
    assert res.rc == 0, res
    assert "Trust review 2026-Q3" in res.out, res
    assert "Automated actions:" in res.out, res
