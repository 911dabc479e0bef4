"""The rollout's guardrail checks (waves 4 and 7 of deploy/waves.yaml: `rollout.check_allowlists`,
`check_timeouts`, `check_unauthorized`, `check_guardrail_events`) against what they test: the tool
gateway as the worker builds it from its settings (`workers.wiring.tool_gateway`), the real MCP
infrastructure server (kmock as the cluster, a bearer token) and the real ledger (PostgreSQL).

Each check passes on the platform's defaults and fails, saying what, when the guardrail it tests
is off. The router check ("router selects the correct agent", waves 3 and 5) is tested in
test_rollout.py, where the rollout runs on Temporal."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import kmock
import pgserver
import pytest
from temporalio.common import RetryPolicy
from temporalio.testing import ActivityEnvironment

from activities.kube.client import KubeClient
from activities.ledger.repository import Ledger
from activities.rollout.agent_checks import AgentChecks
from activities.tools.gateway import ToolActivities
from agentic_core.rollout import CHECK_ACTIVITIES, CheckInput, CheckResult, load_plan
from tests.support.env import free_port
from tests.support.kmock_helpers import McpProcess, emulated_cluster, start_server
from tests.support.pg import create_database, pg_server
from workers.settings import Settings
from workers.wiring import tool_gateway

TOKEN = "rollout-checks-token"
GUARDRAIL_CHECKS = ("tool_allowlist_enforced", "timeouts_enforced", "unauthorized_rejected", "guardrail_events_logged")


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-rollout-checks-pg-")


@pytest.fixture(scope="module")
async def ledger(pg: pgserver.PostgresServer) -> AsyncIterator[Ledger]:
    led = await Ledger.connect(await create_database(pg, "rollout_checks"), max_size=4)
    yield led
    await led.close()


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[kmock.KubernetesEmulator, Path]]:
    async with emulated_cluster(tmp_path_factory.mktemp("kube")) as pair:
        yield pair


@pytest.fixture(scope="module")
async def server(cluster: tuple[kmock.KubernetesEmulator, Path]) -> AsyncIterator[McpProcess]:
    proc = await start_server(free_port(), cluster[1], TOKEN)
    yield proc
    await proc.stop()


def activity_env(workflow_id: str, *, bounded: bool = True) -> ActivityEnvironment:
    """As the rollout runs a check: in a workflow, with a timeout and (bounded) a retry policy."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, workflow_id=workflow_id, retry_policy=RetryPolicy(maximum_attempts=3) if bounded else None
    )
    return env


async def run_checks(agents: AgentChecks, env: ActivityEnvironment, wave: int) -> dict[str, CheckResult]:
    by_name = {fn.__name__: fn for fn in agents.all()}
    out: dict[str, CheckResult] = {}
    for check in load_plan().wave(wave).checks:
        if check.name in GUARDRAIL_CHECKS:
            fn = by_name[CHECK_ACTIVITIES[check.name].removeprefix("rollout.")]
            out[check.name] = await env.run(fn, CheckInput(wave=wave, check=check))
    return out


def writes(k: kmock.KubernetesEmulator) -> list[str]:
    return [f"{r.method} {r.name}" for r in list(k) if r.method in ("POST", "PUT", "PATCH", "DELETE")]


async def test_guardrail_checks_pass_against_the_default_gateway(
    ledger: Ledger, cluster: tuple[kmock.KubernetesEmulator, Path], server: McpProcess
) -> None:
    gateway = tool_gateway(ledger, Settings(_env_file=None, mcp_infra_url=server.url, mcp_token=TOKEN))  # type: ignore[call-arg]
    kube = KubeClient.from_kubeconfig(cluster[1])
    try:
        agents = AgentChecks(kube=kube, gateway=gateway)
        run = f"rollout-{uuid.uuid4().hex[:8]}"
        wave4 = await run_checks(agents, activity_env(run), 4)
        wave7 = await run_checks(agents, activity_env(run), 7)
    finally:
        await kube.aclose()
    assert set(wave4) == set(GUARDRAIL_CHECKS) - {"guardrail_events_logged"}
    assert set(wave7) == set(GUARDRAIL_CHECKS)
    for res in [*wave4.values(), *wave7.values()]:
        assert res.passed, f"{res.name}: {res.detail}"
    allow = wave4["tool_allowlist_enforced"].detail
    assert "observability → scale_deployment: refused (tool_refused)" in allow  # a write for a read-only agent
    assert "coding → get_pods: refused (tool_refused)" in allow  # nothing allowed by default
    assert "observability → get_pods: allowed" in allow
    timeouts = wave4["timeouts_enforced"].detail
    assert "tool calls time out after" in timeouts and "a server that never answers was cut off after" in timeouts
    assert "at most 3 attempts" in timeouts
    unauthorized = wave4["unauthorized_rejected"].detail
    assert "incident → scale_deployment: refused (protected_namespace)" in unauthorized  # kube-system
    assert "MCP server 'infra' refuses a call without its token" in unauthorized
    # the refused probe call is a guardrail event of this rollout's wave 7, read back from the ledger
    [event] = await ledger.list_guardrail_events(subject=f"rollout/{run}/wave-7")
    assert (event.kind, event.agent, event.tool) == ("tool_refused", "coding", "get_pods")
    assert f"event {event.id} in the ledger" in wave7["guardrail_events_logged"].detail
    assert await ledger.list_guardrail_events(subject=f"rollout/{run}/wave-4") == []  # screening records nothing
    assert writes(cluster[0]) == []  # the checks only screen: nothing reached the cluster


async def test_guardrail_checks_fail_when_the_guardrails_are_off(
    ledger: Ledger, cluster: tuple[kmock.KubernetesEmulator, Path]
) -> None:
    # an MCP server without a token, everything allowed to the coding agent, nothing protected,
    # tool calls that may hang for ten minutes, checks run without a retry bound
    open_server = await start_server(free_port(), cluster[1], None)
    kube = KubeClient.from_kubeconfig(cluster[1])
    try:
        loose = Settings(_env_file=None, mcp_infra_url=open_server.url, coding_tools="*", protected_namespaces="")  # type: ignore[call-arg]
        gateway = ToolActivities(
            ledger, loose.mcp_servers, None, loose.agent_tool_lists, protected_namespaces=[], call_timeout_s=600
        )
        agents = AgentChecks(kube=kube, gateway=gateway)
        run = f"rollout-{uuid.uuid4().hex[:8]}"
        wave7 = await run_checks(agents, activity_env(run, bounded=False), 7)
    finally:
        await kube.aclose()
        await open_server.stop()
    assert not any(r.passed for r in wave7.values()), wave7
    assert "coding → get_pods should be refused but the gateway allows it" in wave7["tool_allowlist_enforced"].detail
    timeouts = wave7["timeouts_enforced"].detail
    assert "the gateway's tool call timeout is 600s, not within (0, 120]s" in timeouts
    assert "this check runs with unbounded retries" in timeouts
    unauthorized = wave7["unauthorized_rejected"].detail
    assert "incident → scale_deployment should be refused but the gateway allows it" in unauthorized
    assert f"MCP server 'infra' at {open_server.url} answered a call without a bearer token" in unauthorized
    assert "the probe call coding → get_pods was allowed" in wave7["guardrail_events_logged"].detail
    # a gateway that cannot test anything fails and says so
    no_gateway = AgentChecks(kube=kube)
    check = next(c for c in load_plan().wave(7).checks if c.name == "tool_allowlist_enforced")
    res = await ActivityEnvironment().run(no_gateway.check_allowlists, CheckInput(wave=7, check=check))
    assert not res.passed and "no tool gateway on the worker running the rollout" in res.detail
