"""Chaos with invariants, small (benchmarks/chaos.py at full size): 6 alert groups (3 approved with
`agentic approve`, 3 on a `standard` runbook that runs alone against kmock) while the worker,
Temporal, PostgreSQL, the intake and the MCP infrastructure server are each killed with SIGKILL
once and the supervisor brings them back. Every invariant must hold: one incident per accepted
group (ledger and Temporal), each restart ran exactly once (kmock's request log), every incident
resolved and its workflow closed, no notification twice, the ledger and Temporal agree."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from benchmarks.chaos import run_chaos

pytestmark = pytest.mark.slow

KINDS = ["worker", "temporal", "postgres", "intake", "mcp"]


async def test_kills_lose_nothing_and_do_nothing_twice() -> None:
    with tempfile.TemporaryDirectory(prefix="agentic-chaos-") as tmp:
        report = await run_chaos(groups=6, kills=5, seed=17, gap=0.5, every=1.0, cap=120, tmp=Path(tmp), kinds=KINDS)
    text = "\n".join(report.lines())
    print("\n" + text)
    assert sorted(k.kind for k in report.kills) == sorted(KINDS), text
    assert all(k.recover_s is not None for k in report.kills), text
    assert [g.accepted for g in report.groups] == [True] * 6, text
    assert any(g.approved for g in report.groups), text  # by `agentic approve`; the standard ones ran unasked
    assert report.statuses and set(report.statuses.values()) == {"resolved"}, text
    assert report.violations == [], text
