"""README, "Going to a real cluster" and "Rolling the platform out to a cluster":

    temporal workflow start --type RolloutWorkflow --task-queue agentic-platform \\
      --workflow-id rollout-1 --input '{"from_wave": 0, "to_wave": 3}'
    agentic rollout start --from 0 --to 3 [--dry-run]
    agentic rollout status

"With a cluster configured (`AGENTIC_KUBECONFIG`)": the second stack's (tests/acceptance/conftest.py
`configured_stack`), whose kubeconfig points at kmock with the platform's ArgoCD Applications; a
fake ArgoCD finishes each requested sync and a fake kubelet runs the DNS probe pod
(tests/acceptance/outside.py). The second stack's Temporal is the first stack's, namespace `ops`:
the `temporal` CLI gets it the usual way (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import REPO, Configured, Ran, eventually, program, run
from tests.acceptance.outside import wave_applications

pytestmark = pytest.mark.slow

ROLLOUT_1 = (
    "temporal workflow start --type RolloutWorkflow --task-queue agentic-platform "
    """--workflow-id rollout-1 --input '{"from_wave": 0, "to_wave": 3}'"""
)
SETTLED = {"awaiting_gate", "succeeded", "rolled_back", "stopped", "failed"}


def rollout(c: Configured, rid: str) -> dict[str, Any]:
    res = c.stack.agentic("rollout", "status", rid, "--json", timeout=60)
    assert res.rc == 0, res
    return dict(res.json)


def settled(c: Configured, rid: str, within: float = 180) -> dict[str, Any]:
    return eventually(
        lambda: st if (st := rollout(c, rid))["status"] in SETTLED else None,
        within,
        f"rollout {rid} to reach a gate or an end",
        describe=lambda: json.dumps(rollout(c, rid), indent=1)[-3000:],
    )


def cluster_writes(c: Configured) -> int:
    return c.outside.call(lambda: sum(len(c.cluster.requests(m)) for m in ("PATCH", "POST", "DELETE", "PUT")))


@pytest.fixture(scope="module")
def rollout_1(configured_stack: Configured) -> Ran:
    return configured_stack.stack.readme(ROLLOUT_1)


def test_temporal_workflow_start_runs_wave_0_and_waits_at_the_gate(
    configured_stack: Configured, rollout_1: Ran
) -> None:
    c = configured_stack
    assert rollout_1.rc == 0 and "rollout-1" in rollout_1.out, rollout_1
    st = settled(c, "rollout-1")
    # README: "each wave syncs its ArgoCD Applications, runs its checks, and waits at a human gate"
    assert st["status"] == "awaiting_gate", st
    assert st["gate_id"] == "rollout-1-gate-1", st
    wave0 = next(w for w in st["waves"] if w["wave"] == 0)
    assert [ck["name"] for ck in wave0["checks"]] == ["namespaces_present", "dns_resolves"], wave0
    assert all(ck["passed"] for ck in wave0["checks"]), wave0
    apps = wave_applications()
    for app in apps[0]:
        assert c.outside.call(lambda app=app: c.cluster.sync_requests(app)), f"wave 0 did not sync {app}"
    for app in apps[1]:
        assert not c.outside.call(lambda app=app: c.cluster.sync_requests(app)), f"{app} synced before the gate"


def test_rollout_status_shows_each_wave_and_check_and_the_pending_gate(
    configured_stack: Configured, rollout_1: Ran
) -> None:
    c = configured_stack
    settled(c, "rollout-1")
    res = c.stack.readme("agentic rollout status")
    assert res.rc == 0, res
    # README: "progress per wave and check, the pending gate"
    assert "rollout-1" in res.out and "awaiting_gate" in res.out, res
    assert "namespaces_present ✓" in res.out and "dns_resolves ✓" in res.out, res
    assert "waiting at gate rollout-1-gate-1" in res.out, res


def test_the_web_ui_lists_rollouts_by_rollout_wave(configured_stack: Configured, rollout_1: Ran) -> None:
    # README: "The Web UI lists rollouts by the `RolloutWave` search attribute."
    c = configured_stack
    settled(c, "rollout-1")
    res = run(
        [*program("temporal"), "workflow", "list", "--query", "RolloutWave >= 0"], c.stack.shell_env(), timeout=60
    )
    assert res.rc == 0 and "rollout-1" in res.out, res


@pytest.fixture(scope="module")
def dry_run(configured_stack: Configured, rollout_1: Ran) -> tuple[Ran, str, int]:
    """`agentic rollout start --from 0 --to 3 --dry-run` (after rollout-1 reached its gate): its
    output, its rollout id and how many writes the cluster had seen before it."""
    c = configured_stack
    settled(c, "rollout-1")
    writes = cluster_writes(c)
    res = c.stack.readme("agentic rollout start --from 0 --to 3 [--dry-run]", {"[--dry-run]": "--dry-run"})
    assert res.rc == 0, res
    m = re.search(r"started rollout (\S+) \(waves 0\.\.3\)", res.out)
    assert m, res
    return res, m.group(1), writes


def test_rollout_start_dry_run_patches_nothing(configured_stack: Configured, dry_run: tuple[Ran, str, int]) -> None:
    c = configured_stack
    _, rid, writes = dry_run
    st = settled(c, rid)
    # docs/rollout.md: "`dry_run: true` reads the Applications and shows each wave; nothing is
    # patched, no check runs, no gate is asked."
    assert st["status"] == "succeeded" and [w["wave"] for w in st["waves"]] == [0, 1, 2, 3], st
    checks = [ck for w in st["waves"] for ck in w["checks"]]
    assert checks and all(ck["detail"] == "dry run: not run" for ck in checks), st
    assert st["gate_id"] is None and all(w["gate"] is None for w in st["waves"]), st
    assert cluster_writes(c) == writes, "the dry run wrote to the cluster"


def test_rollout_status_follows_the_rollout_just_started(
    configured_stack: Configured, dry_run: tuple[Ran, str, int]
) -> None:
    c = configured_stack
    started, rid, _ = dry_run
    settled(c, rid)
    # README: `agentic rollout status   # progress per wave and check, the pending gate`, right
    # after `agentic rollout start`, whose own output says "follow it with `agentic rollout status`".
    assert "follow it with `agentic rollout status`" in started.out, started
    shown = c.stack.readme("agentic rollout status")
    assert shown.rc == 0, shown
    assert shown.out.startswith(f"{rid} "), (
        f"`agentic rollout status` does not show the rollout just started ({rid}) but another one:\n{shown}"
    )


def test_rollout_start_from_the_cli_is_the_same(configured_stack: Configured, rollout_1: Ran) -> None:
    # README: "the same, from the CLI"
    c = configured_stack
    res = c.stack.readme("agentic rollout start --from 0 --to 3 [--dry-run]", {" [--dry-run]": ""})
    assert res.rc == 0, res
    m = re.search(r"started rollout (\S+) \(waves 0\.\.3\)", res.out)
    assert m, res
    st = settled(c, m.group(1))
    assert st["status"] == "awaiting_gate" and st["gate_id"] == f"{m.group(1)}-gate-1", st


def test_the_cli_on_a_laptop_talks_to_it_through_the_temporal_address(
    configured_stack: Configured, rollout_1: Ran, tmp_path: Path
) -> None:
    # README: "the CLI on a laptop talks to it through `AGENTIC_TEMPORAL_ADDRESS`" (no stack there).
    c = configured_stack
    settled(c, "rollout-1")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTIC_", "TEMPORAL_"))}
    env.update(
        PYTHONPATH=str(REPO),
        AGENTIC_DATA_DIR=str(tmp_path / "laptop"),
        AGENTIC_TEMPORAL_ADDRESS=c.stack.temporal_address,
        AGENTIC_TEMPORAL_NAMESPACE=c.stack.namespace,
    )
    res = run([*program("agentic"), "rollout", "status", "rollout-1", "--json"], env, timeout=60)
    assert res.rc == 0, res
    assert res.json["status"] == "awaiting_gate", res
