"""The tool gateway activities against the real MCP server process (kmock as the cluster) and a real
PostgreSQL ledger, run through temporalio's ActivityEnvironment."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import kmock
import pgserver
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.kube.ops import RESTART_ANNOTATION
from activities.ledger.repository import Ledger
from activities.tools.gateway import (
    ERR_CONFLICT,
    ERR_REFUSED,
    ERR_UNAVAILABLE,
    ToolActivities,
    _Tool,
    guard_key,
)
from agentic_core.incident import (
    ExecuteInput,
    GiveUpInput,
    GuardInput,
    ListToolsInput,
    idempotency_key,
)
from agentic_core.models import ToolCall
from tests.support.env import free_port
from tests.support.kmock_helpers import NS, McpProcess, deployment, emulated_cluster, requests_for, start_server
from tests.support.pg import ledger_on, pg_server
from workers.settings import Settings

TOKEN = "gateway-test-token"
# The incident agent may call these; describe_pod is offered but not allowed, delete_namespace is
# allowed but offered by no server.
ALLOWED = [
    "get_pods",
    "get_events",
    "get_pod_logs",
    "rollout_restart",
    "set_memory_limit",
    "scale_deployment",
    "delete_namespace",
]


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- fixtures: PostgreSQL (as in test_ledger.py), kmock, the MCP server ------------------------


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-gateway-pg-")


@pytest.fixture(scope="module")
async def ledger(pg: pgserver.PostgresServer) -> AsyncIterator[Ledger]:
    async with ledger_on(pg, "gateway", max_size=4) as led:
        yield led


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[kmock.KubernetesEmulator, Path]]:
    async with emulated_cluster(tmp_path_factory.mktemp("kube")) as pair:
        yield pair


@pytest.fixture(scope="module")
async def server(cluster: tuple[kmock.KubernetesEmulator, Path]) -> AsyncIterator[McpProcess]:
    proc = await start_server(free_port(), cluster[1], TOKEN)
    yield proc
    await proc.stop()


@pytest.fixture
def k(cluster: tuple[kmock.KubernetesEmulator, Path]) -> kmock.KubernetesEmulator:
    return cluster[0]


@pytest.fixture
def acts(ledger: Ledger, server: McpProcess) -> ToolActivities:
    return ToolActivities(ledger, {"infra": server.url}, TOKEN, {"incident": ALLOWED}, heartbeat_every_s=0.05)


@pytest.fixture
def env() -> ActivityEnvironment:
    return ActivityEnvironment()


def execute_input(incident: str, index: int, tool: str, arguments: dict[str, Any]) -> ExecuteInput:
    return ExecuteInput(
        incident_id=incident,
        index=index,
        call=ToolCall(tool=tool, arguments=arguments),
        idempotency_key=idempotency_key(incident, index),
    )


# --- list_tools ---------------------------------------------------------------------------------


async def test_list_tools_returns_the_allowed_tools_with_schemas(
    acts: ToolActivities, env: ActivityEnvironment
) -> None:
    result = await env.run(acts.list_tools, ListToolsInput(agent="incident"))
    by_name = {t.name: t for t in result.tools}
    # Allowed and offered, in allow-list order; describe_pod (not allowed) and delete_namespace
    # (offered by no server) are left out.
    assert list(by_name) == [
        "get_pods",
        "get_events",
        "get_pod_logs",
        "rollout_restart",
        "set_memory_limit",
        "scale_deployment",
    ]
    scale = by_name["scale_deployment"]
    assert scale.server == "infra" and scale.mutating is True and scale.description
    assert scale.input_schema["properties"]["replicas"]["minimum"] == 0
    assert by_name["get_pods"].mutating is False
    assert (await env.run(acts.list_tools, ListToolsInput(agent="digest"))).tools == []

    cached = acts._catalog
    await env.run(acts.list_tools, ListToolsInput())
    assert acts._catalog is cached  # served from the cache, no second listing


# --- guard ----------------------------------------------------------------------------------------


async def test_guard_refuses_with_reasons_and_records_them(
    acts: ToolActivities, env: ActivityEnvironment, ledger: Ledger
) -> None:
    incident = uid("guard")
    actions = [
        ToolCall(tool="scale_deployment", arguments={"namespace": NS, "deployment": "sonarr", "replicas": 2}),
        ToolCall(tool="describe_pod", arguments={"namespace": NS, "pod": "sonarr-7d4b9-abcde"}),
        ToolCall(tool="delete_namespace", arguments={"namespace": NS}),
        ToolCall(tool="scale_deployment", arguments={"namespace": NS, "deployment": "sonarr", "replicas": -1}),
        ToolCall(tool="get_pods", arguments={"namespace": NS, "selector": "app=sonarr"}),
        ToolCall(tool="rollout_restart", arguments={"namespace": NS}),
        ToolCall(tool="rollout_restart", arguments={"namespace": "{{ labels.namespace }}", "deployment": "sonarr"}),
        ToolCall(tool="set_memory_limit", arguments={"namespace": NS, "deployment": "sonarr", "value": "lots"}),
    ]
    result = await env.run(acts.guard, GuardInput(incident_id=incident, actions=actions))
    assert [a.index for a in result.actions] == list(range(len(actions)))
    assert [a.allowed for a in result.actions] == [True, False, False, False, False, False, False, False]
    assert result.allowed == [actions[0]]
    reasons = [a.reason for a in result.actions]
    assert reasons[0] == ""
    assert reasons[1].startswith("tool 'describe_pod' is not on the incident agent's allow-list (get_pods, ")
    assert reasons[2].startswith("tool 'delete_namespace' is on the incident agent's allow-list but no MCP server")
    assert reasons[3] == "scale_deployment: argument 'replicas': -1 is less than the minimum of 0"
    assert reasons[4] == (
        "get_pods: argument 'selector' is not a parameter of get_pods (parameters: namespace, label_selector)"
    )
    assert reasons[5] == "rollout_restart: argument 'deployment' is required"
    assert reasons[6].startswith("rollout_restart: argument 'namespace' still holds a template")
    assert "the runbook was not rendered for this alert" in reasons[6]
    assert reasons[7].startswith("set_memory_limit: argument 'value': 'lots' does not match")

    rows = await ledger.list_actions(incident)
    assert sorted((r.action_index, r.status, r.error) for r in rows) == [
        (i, "refused", reasons[i]) for i in range(1, len(actions))
    ]
    assert all(r.idempotency_key == guard_key(incident, r.action_index, actions[r.action_index]) for r in rows)
    assert all("/guard/" in r.idempotency_key for r in rows)

    # Each refusal is a guardrail event too, under the same key, with the reason.
    events = await ledger.list_guardrail_events(subject=incident)
    assert sorted((e.key, e.kind, e.agent, e.tool, e.detail) for e in events) == sorted(
        (guard_key(incident, i, actions[i]), "tool_refused", "incident", actions[i].tool, reasons[i])
        for i in range(1, len(actions))
    )

    # Guarding the same plan again records nothing new.
    await env.run(acts.guard, GuardInput(incident_id=incident, actions=actions))
    assert len(await ledger.list_actions(incident)) == len(rows)
    assert len(await ledger.list_guardrail_events(subject=incident)) == len(events)


# --- refusals in words -----------------------------------------------------------------------------

TALOS_NODES = "(nodes: Talos node addresses to check (default: those of the talosconfig))"


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        # A list that may be left out: jsonschema said "is not of type 'null'" (its last anyOf branch).
        (
            ToolCall(tool="talos_health", arguments={"nodes": "cp-1"}),
            "talos_health: argument 'nodes' must be a list of strings or be left out; got the string 'cp-1' "
            + TALOS_NODES,
        ),
        (
            ToolCall(tool="talos_health", arguments={"nodes": [1]}),
            f"talos_health: item 1 of argument 'nodes' must be a string; got the number 1 {TALOS_NODES}",
        ),
        (
            ToolCall(tool="talos_health", arguments={"nodes": ["10.0.0.10", "cp 2"]}),
            "talos_health: item 2 of argument 'nodes': 'cp 2' does not match '^[A-Za-z0-9.:-]+$' " + TALOS_NODES,
        ),
        (
            ToolCall(tool="talos_health", arguments={"node": "cp-1"}),
            "talos_health: argument 'node' is not a parameter of talos_health (parameters: nodes, wait_timeout_s)",
        ),
        (
            ToolCall(tool="talos_health", arguments={"wait_timeout_s": "60"}),
            "talos_health: argument 'wait_timeout_s' must be a whole number from 5 to 300; got the string '60' "
            "(wait_timeout_s: how long talosctl may wait for the cluster to be healthy)",
        ),
        (
            ToolCall(tool="scale_deployment", arguments={"namespace": NS, "deployment": "sonarr", "replicas": True}),
            "scale_deployment: argument 'replicas' must be a whole number from 0 to 100; got true "
            "(replicas: desired number of replicas (0 stops the app))",
        ),
        (
            ToolCall(tool="get_events", arguments={"namespace": NS, "involved_object": 5}),
            "get_events: argument 'involved_object' must be a string or be left out; got the number 5 "
            "(involved_object: only events about the object with this name (a pod, deployment, ...); default: all)",
        ),
        (
            ToolCall(tool="get_pod_logs", arguments={"namespace": NS, "pod": "sonarr-1", "previous": "yes"}),
            "get_pod_logs: argument 'previous' must be true or false; got the string 'yes' "
            "(previous: logs of the previous (crashed) container instead of the running one)",
        ),
        (
            ToolCall(tool="get_pods", arguments={"namespace": None}),
            "get_pods: argument 'namespace' must be a string; got null (namespace: Kubernetes namespace, e.g. media)",
        ),
    ],
    ids=[
        "list-or-null-got-string",
        "list-item-type",
        "list-item-pattern",
        "unknown-argument",
        "integer-got-string",
        "integer-got-boolean",
        "string-or-null-got-number",
        "boolean-got-string",
        "string-got-null",
    ],
)
async def test_refusals_say_in_words_what_an_argument_must_be(
    ledger: Ledger, server: McpProcess, env: ActivityEnvironment, call: ToolCall, reason: str
) -> None:
    # The real schemas of the infrastructure tools, as the MCP server lists them.
    tools = ["talos_health", "scale_deployment", "get_events", "get_pod_logs", "get_pods"]
    gw = ToolActivities(ledger, {"infra": server.url}, TOKEN, {"incident": tools})
    result = await env.run(gw.guard, GuardInput(incident_id=uid("words"), actions=[call]))
    assert [(a.allowed, a.reason) for a in result.actions] == [(False, reason)]
    assert "of type" not in reason and "'null'" not in reason


# --- protected namespaces -------------------------------------------------------------------------

# What a planner that obeys an injected instruction proposed, and the guard let through to the
# approval question: change kube-system.
COREDNS_LIMIT = ToolCall(
    tool="set_memory_limit", arguments={"namespace": "kube-system", "deployment": "coredns", "value": "1Mi"}
)
COREDNS_RESTART = ToolCall(tool="rollout_restart", arguments={"namespace": "kube-system", "deployment": "coredns"})


async def test_guard_refuses_changes_in_protected_namespaces_and_records_them(
    acts: ToolActivities, env: ActivityEnvironment, ledger: Ledger
) -> None:
    incident = uid("protected")
    actions = [
        COREDNS_LIMIT,
        COREDNS_RESTART,
        ToolCall(tool="scale_deployment", arguments={"namespace": "ai-vector", "deployment": "qdrant", "replicas": 0}),
        ToolCall(tool="get_pods", arguments={"namespace": "kube-system"}),  # read-only: looking is fine
        ToolCall(tool="scale_deployment", arguments={"namespace": NS, "deployment": "sonarr", "replicas": 2}),
    ]
    result = await env.run(acts.guard, GuardInput(incident_id=incident, actions=actions))
    assert [a.allowed for a in result.actions] == [False, False, False, True, True]
    assert [a.protected for a in result.actions] == [[], [], [], [], []]
    reasons = [a.reason for a in result.actions]
    assert reasons[0] == (
        "set_memory_limit: namespace 'kube-system' is protected (it matches 'kube-system' in "
        "AGENTIC_PROTECTED_NAMESPACES): the agent does not change it on its own. A runbook whose plan must act "
        "there lists it in its front matter (allow_namespaces: [kube-system]), and even then a human approves "
        "every run"
    )
    assert reasons[1].startswith("rollout_restart: namespace 'kube-system' is protected")
    assert reasons[2].startswith("scale_deployment: namespace 'ai-vector' is protected (it matches 'ai-*' in ")
    # The refusals reach the ledger as refused actions, under their guard keys.
    rows = await ledger.list_actions(incident)
    assert sorted((r.action_index, r.tool, r.status, r.error) for r in rows) == [
        (i, actions[i].tool, "refused", reasons[i]) for i in range(3)
    ]
    assert all(r.idempotency_key == guard_key(incident, r.action_index, actions[r.action_index]) for r in rows)
    # and as protected_namespace guardrail events
    events = await ledger.list_guardrail_events(subject=incident)
    assert sorted((e.kind, e.tool, e.detail) for e in events) == sorted(
        ("protected_namespace", actions[i].tool, reasons[i]) for i in range(3)
    )


async def test_a_runbook_allowance_passes_the_guard_marked_protected(
    acts: ToolActivities, env: ActivityEnvironment, ledger: Ledger
) -> None:
    incident = uid("allowed")
    qdrant = ToolCall(tool="scale_deployment", arguments={"namespace": "ai-vector", "deployment": "q", "replicas": 0})
    inp = GuardInput(
        incident_id=incident, actions=[COREDNS_LIMIT, COREDNS_RESTART, qdrant], allow_namespaces=["kube-system"]
    )
    result = await env.run(acts.guard, inp)
    assert [(a.allowed, a.protected) for a in result.actions] == [
        (True, ["kube-system"]),
        (True, ["kube-system"]),
        (False, []),  # the runbook allows kube-system, not ai-vector
    ]
    assert [(r.action_index, r.status) for r in await ledger.list_actions(incident)] == [(2, "refused")]


async def test_protected_namespaces_are_configurable_with_patterns(
    ledger: Ledger, server: McpProcess, env: ActivityEnvironment
) -> None:
    gw = ToolActivities(
        ledger, {"infra": server.url}, TOKEN, {"incident": ALLOWED}, protected_namespaces=["prod-*", "Media"]
    )
    prod = ToolCall(tool="rollout_restart", arguments={"namespace": "prod-eu", "deployment": "shop"})
    media = ToolCall(tool="rollout_restart", arguments={"namespace": NS, "deployment": "sonarr"})
    result = await env.run(gw.guard, GuardInput(incident_id=uid("patterns"), actions=[prod, media, COREDNS_RESTART]))
    assert [a.allowed for a in result.actions] == [False, False, True]  # kube-system: not in this list
    assert "'prod-eu' is protected (it matches 'prod-*' in AGENTIC_PROTECTED_NAMESPACES)" in result.actions[0].reason
    assert "'media' is protected (it matches 'media' in " in result.actions[1].reason


async def test_execute_refuses_a_protected_namespace_unless_the_runbook_allows_it(
    acts: ToolActivities, env: ActivityEnvironment, ledger: Ledger, k: kmock.KubernetesEmulator
) -> None:
    coredns = deployment("coredns")
    coredns["metadata"]["namespace"] = "kube-system"
    k.objects["apps/v1/deployments", "kube-system", "coredns"] = coredns
    incident = uid("exec-protected")
    inp = execute_input(incident, 0, COREDNS_RESTART.tool, COREDNS_RESTART.arguments)
    with pytest.raises(ApplicationError) as info:
        await env.run(acts.execute, inp)  # defence in depth: the guard's check again
    assert info.value.type == ERR_REFUSED and info.value.non_retryable
    assert "namespace 'kube-system' is protected" in info.value.message
    row = await ledger.get_action(inp.idempotency_key)
    assert row is not None and row.status == "refused"
    assert requests_for(k, "coredns") == []
    [event] = await ledger.list_guardrail_events(subject=incident)
    assert (event.key, event.kind) == (f"{inp.idempotency_key}/refused", "protected_namespace")

    allowed = execute_input(incident, 1, COREDNS_RESTART.tool, COREDNS_RESTART.arguments).model_copy(
        update={"allow_namespaces": ["kube-system"]}
    )
    result = await env.run(acts.execute, allowed)
    assert result.status == "succeeded"
    assert len(requests_for(k, "coredns", "PATCH")) == 1


# --- execute --------------------------------------------------------------------------------------


async def test_execute_runs_once(
    acts: ToolActivities, env: ActivityEnvironment, ledger: Ledger, k: kmock.KubernetesEmulator
) -> None:
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    incident = uid("exec")
    inp = execute_input(incident, 0, "scale_deployment", {"namespace": NS, "deployment": "prowlarr", "replicas": 3})
    first = await env.run(acts.execute, inp)
    assert first.status == "succeeded" and first.already_ran is False
    assert first.idempotency_key == inp.idempotency_key and first.tool == "scale_deployment"
    assert "scaled from 1 to 3 replicas" in first.output
    assert beats and beats[0] == (inp.idempotency_key,)
    row = await ledger.get_action(inp.idempotency_key)
    assert row is not None and row.status == "succeeded"
    assert row.result["structured"]["replicas"] == 3 and row.result["server"] == "infra"
    assert [p.data for p in requests_for(k, "prowlarr", "PATCH")] == [{"spec": {"replicas": 3}}]
    seen = len(requests_for(k, "prowlarr"))

    # A retried or replayed activity with the same key: the recorded result, the tool not called.
    again = await env.run(acts.execute, inp)
    assert again.already_ran is True
    assert (again.status, again.output, again.idempotency_key) == (first.status, first.output, first.idempotency_key)
    assert len(requests_for(k, "prowlarr")) == seen

    # Even with every MCP server gone, a finished action answers from the ledger.
    offline = ToolActivities(ledger, {"infra": f"http://127.0.0.1:{free_port()}/mcp"}, TOKEN, {"incident": ALLOWED})
    assert (await env.run(offline.execute, inp)).already_ran is True


async def test_a_failing_tool_is_recorded_as_failed(
    acts: ToolActivities, env: ActivityEnvironment, ledger: Ledger, k: kmock.KubernetesEmulator
) -> None:
    incident = uid("fail")
    inp = execute_input(incident, 0, "scale_deployment", {"namespace": NS, "deployment": "sonar", "replicas": 2})
    result = await env.run(acts.execute, inp)
    assert result.status == "failed" and result.already_ran is False
    assert not result.infrastructure  # the tool answered: the remedy itself failed
    assert result.error == (
        "deployment media/sonar not found: check the namespace and name (kubectl -n media get deploy)"
    )
    row = await ledger.get_action(inp.idempotency_key)
    assert row is not None and (row.status, row.error) == ("failed", result.error)
    seen = len(list(k))
    again = await env.run(acts.execute, inp)
    assert (again.status, again.error, again.already_ran) == ("failed", result.error, True)
    assert len(list(k)) == seen


async def test_execute_refuses_what_the_guard_would(
    acts: ToolActivities, env: ActivityEnvironment, ledger: Ledger, k: kmock.KubernetesEmulator
) -> None:
    incident = uid("refuse")
    seen = len(list(k))
    inp = execute_input(incident, 0, "describe_pod", {"namespace": NS, "pod": "sonarr-7d4b9-abcde"})
    with pytest.raises(ApplicationError) as info:
        await env.run(acts.execute, inp)
    assert info.value.type == ERR_REFUSED and info.value.non_retryable
    assert "not on the incident agent's allow-list" in info.value.message
    row = await ledger.get_action(inp.idempotency_key)
    assert row is not None and row.status == "refused" and row.error == info.value.message

    bad = execute_input(incident, 1, "scale_deployment", {"namespace": NS, "deployment": "sonarr", "replicas": -1})
    with pytest.raises(ApplicationError) as info:
        await env.run(acts.execute, bad)
    assert info.value.type == ERR_REFUSED and "less than the minimum of 0" in info.value.message
    assert len(list(k)) == seen  # nothing reached the cluster
    events = await ledger.list_guardrail_events(subject=incident)
    assert sorted((e.key, e.kind, e.tool) for e in events) == [
        (f"{inp.idempotency_key}/refused", "tool_refused", "describe_pod"),
        (f"{bad.idempotency_key}/refused", "tool_refused", "scale_deployment"),
    ]

    # The refusal is what the key recorded: a replay returns it without raising again.
    replay = await env.run(acts.execute, bad)
    assert replay.status == "refused" and replay.already_ran is True


async def test_an_interrupted_restart_resumes_with_the_same_timestamp(
    acts: ToolActivities, env: ActivityEnvironment, ledger: Ledger, k: kmock.KubernetesEmulator
) -> None:
    incident = uid("resume")
    args = {"namespace": NS, "deployment": "bazarr"}
    inp = execute_input(incident, 0, "rollout_restart", args)
    # A worker claimed the action, sent the patch, and died before recording the outcome.
    claimed = await ledger.start_action(incident, 0, "rollout_restart", args, inp.idempotency_key)
    stamp = claimed.started_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    k.objects["apps/v1/deployments", NS, "bazarr"].patch(
        {"spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: stamp}}}}}
    )

    result = await env.run(acts.execute, inp)
    assert result.status == "succeeded" and result.already_ran is False
    assert "already restarted at" in result.output
    assert requests_for(k, "bazarr", "PATCH") == []  # the retry restarted nothing a second time
    row = await ledger.get_action(inp.idempotency_key)
    assert row is not None and row.result["arguments"]["restarted_at"] == stamp


async def test_an_interrupted_restart_that_never_reached_the_cluster_runs_once(
    acts: ToolActivities, env: ActivityEnvironment, ledger: Ledger, k: kmock.KubernetesEmulator
) -> None:
    incident = uid("resume2")
    args = {"namespace": NS, "deployment": "readarr"}
    inp = execute_input(incident, 0, "rollout_restart", args)
    claimed = await ledger.start_action(incident, 0, "rollout_restart", args, inp.idempotency_key)
    first = await env.run(acts.execute, inp)
    assert first.status == "succeeded" and first.already_ran is False
    patches = requests_for(k, "readarr", "PATCH")
    assert len(patches) == 1
    stamp = patches[0].data["spec"]["template"]["metadata"]["annotations"][RESTART_ANNOTATION]
    # The claim time from the ledger, not "now": every attempt would send this same value.
    assert stamp == claimed.started_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_an_interrupted_call_of_a_tool_unsafe_to_repeat_is_not_repeated(
    acts: ToolActivities, env: ActivityEnvironment, ledger: Ledger, k: kmock.KubernetesEmulator
) -> None:
    catalog = dict(await acts._tools())
    # A tool with no idempotency promise (as another MCP server might offer).
    real = catalog["scale_deployment"]
    catalog["scale_deployment"] = _Tool(
        spec=real.spec, url=real.url, read_only=False, idempotent=False, timestamp_arg=None
    )
    acts._catalog = catalog
    incident = uid("unsafe")
    args = {"namespace": NS, "deployment": "whisparr", "replicas": 0}
    inp = execute_input(incident, 0, "scale_deployment", args)
    await ledger.start_action(incident, 0, "scale_deployment", args, inp.idempotency_key)
    result = await env.run(acts.execute, inp)
    assert result.status == "failed" and result.error.startswith("outcome unknown: ")
    assert "not safe to repeat" in result.error
    assert result.infrastructure  # the platform lost the call: not the remedy's failure
    assert requests_for(k, "whisparr") == []
    row = await ledger.get_action(inp.idempotency_key)
    assert row is not None and row.status == "failed"


async def test_a_key_reused_with_other_arguments_is_a_conflict(acts: ToolActivities, env: ActivityEnvironment) -> None:
    incident = uid("conflict")
    inp = execute_input(incident, 0, "get_pods", {"namespace": NS})
    assert (await env.run(acts.execute, inp)).status == "succeeded"
    other = inp.model_copy(update={"call": ToolCall(tool="get_pods", arguments={"namespace": "kube-system"})})
    with pytest.raises(ApplicationError) as info:
        await env.run(acts.execute, other)
    assert info.value.type == ERR_CONFLICT and info.value.non_retryable


# --- the servers' failures --------------------------------------------------------------------------


async def test_an_unreachable_server_is_a_retryable_error(ledger: Ledger, env: ActivityEnvironment) -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    offline = ToolActivities(ledger, {"infra": url}, TOKEN, {"incident": ALLOWED})
    with pytest.raises(ApplicationError) as info:
        await env.run(offline.list_tools, ListToolsInput())
    assert info.value.type == ERR_UNAVAILABLE and not info.value.non_retryable
    assert info.value.message.startswith(f"cannot reach MCP server 'infra' at {url}")
    incident = uid("offline")
    inp = execute_input(incident, 0, "get_pods", {"namespace": NS})
    with pytest.raises(ApplicationError):
        await env.run(offline.execute, inp)
    assert await ledger.get_action(inp.idempotency_key) is None  # nothing claimed: nothing ran


async def test_give_up_closes_the_row_and_keeps_a_finished_one(
    acts: ToolActivities, ledger: Ledger, env: ActivityEnvironment
) -> None:
    """#17: the workflow gave up on an action (`tools.give_up`): a row left `running` by the
    attempts ends `failed` with the reason, a row never claimed is recorded `failed`, both marked
    `infrastructure`; a row another attempt finished keeps its result."""
    incident = uid("giveup")
    args = {"namespace": NS, "deployment": "lidarr"}
    running = execute_input(incident, 0, "rollout_restart", args)
    await ledger.start_action(incident, 0, "rollout_restart", args, running.idempotency_key)

    def give_up(inp: ExecuteInput) -> GiveUpInput:
        return GiveUpInput(
            incident_id=inp.incident_id,
            index=inp.index,
            call=inp.call,
            idempotency_key=inp.idempotency_key,
            reason="ToolServerUnavailable: cannot reach MCP server 'infra'",
        )

    res = await env.run(acts.give_up, give_up(running))
    assert (res.status, res.infrastructure, res.already_ran) == ("failed", True, False)
    assert res.error == "gave up: ToolServerUnavailable: cannot reach MCP server 'infra'"
    row = await ledger.get_action(running.idempotency_key)
    assert row is not None and (row.status, row.error) == ("failed", res.error) and row.finished_at is not None
    again = await env.run(acts.give_up, give_up(running))  # a retried give-up changes nothing
    assert (again.status, again.error, again.infrastructure) == ("failed", res.error, True)
    # execute afterwards answers from the ledger, without calling the tool
    assert (await env.run(acts.execute, running)).status == "failed"

    never = execute_input(incident, 1, "rollout_restart", args)
    res = await env.run(acts.give_up, give_up(never))
    assert (res.status, res.infrastructure) == ("failed", True)
    row = await ledger.get_action(never.idempotency_key)
    assert row is not None and row.status == "failed" and row.error is not None and "gave up" in row.error

    done = execute_input(incident, 2, "get_pods", {"namespace": NS})
    assert (await env.run(acts.execute, done)).status == "succeeded"
    kept = await env.run(acts.give_up, give_up(done))
    assert (kept.status, kept.infrastructure, kept.already_ran) == ("succeeded", False, True)
    row = await ledger.get_action(done.idempotency_key)
    assert row is not None and row.status == "succeeded"


async def test_a_wrong_token_says_so(ledger: Ledger, server: McpProcess, env: ActivityEnvironment) -> None:
    wrong = ToolActivities(ledger, {"infra": server.url}, "not-the-token", {"incident": ALLOWED})
    with pytest.raises(ApplicationError) as info:
        await env.run(wrong.list_tools, ListToolsInput())
    assert "refused the gateway's bearer token (401)" in info.value.message
    assert "AGENTIC_MCP_TOKEN" in info.value.message


# --- each agent's allow-list, read-only agents, screen ------------------------------------------


@pytest.fixture
def agents(ledger: Ledger, server: McpProcess) -> ToolActivities:
    """The gateway as the settings build it by default (every agent's list and the read-only rule),
    except that the observability agent's list names a tool that changes something as well."""
    lists = Settings(_env_file=None).agent_tool_lists  # type: ignore[call-arg]
    lists["observability"] = [*lists["observability"], "scale_deployment"]
    lists["web"] = ["get_*"]  # a glob
    return ToolActivities(ledger, {"infra": server.url}, TOKEN, lists, read_only_agents=["web"])


async def test_each_agent_lists_only_its_tools_and_read_only_agents_only_read_tools(
    agents: ToolActivities, env: ActivityEnvironment
) -> None:
    async def names(agent: str) -> list[str]:
        return [t.name for t in (await env.run(agents.list_tools, ListToolsInput(agent=agent))).tools]

    # the metrics tools are on the list but no server here offers them; scale_deployment is listed but
    # changes something, and the observability agent is read-only
    assert await names("observability") == [
        "get_nodes",
        "get_pods",
        "get_events",
        "get_pod_logs",
        "describe_pod",
        "talos_health",
    ]
    assert await names("coding") == []  # nothing by default
    assert await names("web") == ["get_events", "get_nodes", "get_pod_logs", "get_pods"]  # glob, sorted
    assert "scale_deployment" in await names("incident")


async def test_a_read_only_agent_is_refused_a_write_tool_even_when_listed(
    agents: ToolActivities, env: ActivityEnvironment, ledger: Ledger, k: kmock.KubernetesEmulator
) -> None:
    incident = uid("readonly")
    scale = ToolCall(tool="scale_deployment", arguments={"namespace": NS, "deployment": "sonarr", "replicas": 0})
    pods = ToolCall(tool="get_pods", arguments={"namespace": NS})
    result = await env.run(agents.guard, GuardInput(incident_id=incident, actions=[scale, pods], agent="observability"))
    assert [a.allowed for a in result.actions] == [False, True]
    assert result.actions[0].reason == (
        "tool 'scale_deployment' changes something (its MCP annotations do not say readOnlyHint) and the "
        "observability agent is read-only: it may only look"
    )
    [event] = await ledger.list_guardrail_events(subject=incident)
    assert (event.kind, event.agent, event.tool) == ("tool_refused", "observability", "scale_deployment")
    seen = len(list(k))
    with pytest.raises(ApplicationError) as info:  # and at execute time, even if a human said yes
        await env.run(
            agents.execute,
            execute_input(incident, 0, scale.tool, scale.arguments).model_copy(update={"agent": "observability"}),
        )
    assert info.value.type == ERR_REFUSED and "is read-only" in info.value.message
    assert len(list(k)) == seen  # nothing reached the cluster
    # a tool not on an agent's list is refused, and the refusal names the list
    coding = await env.run(agents.guard, GuardInput(incident_id=incident, actions=[pods], agent="coding"))
    assert coding.actions[0].reason.startswith("tool 'get_pods' is not on the coding agent's allow-list (repo_list, ")


async def test_screen_checks_one_call_and_records_only_refusals(
    agents: ToolActivities, env: ActivityEnvironment, ledger: Ledger
) -> None:
    run = uid("agent-run")
    ok = await agents.screen(
        "observability", ToolCall(tool="get_pods", arguments={"namespace": NS}), subject=run, key=f"{run}/1"
    )
    assert ok.allowed and not ok.mutating and ok.kind is None
    bad = await agents.screen(
        "incident",
        ToolCall(
            tool="scale_deployment", arguments={"namespace": "kube-system", "deployment": "coredns", "replicas": 0}
        ),
        subject=run,
        key=f"{run}/2",
    )
    assert not bad.allowed and bad.kind == "protected_namespace" and bad.mutating
    quiet = await agents.screen("web", ToolCall(tool="delete_namespace", arguments={}), subject=run)  # no key
    assert not quiet.allowed and quiet.kind == "tool_refused"
    again = await agents.screen(
        "incident",
        ToolCall(
            tool="scale_deployment", arguments={"namespace": "kube-system", "deployment": "coredns", "replicas": 0}
        ),
        subject=run,
        key=f"{run}/2",
    )
    assert not again.allowed
    events = await ledger.list_guardrail_events(subject=run)
    assert [(e.key, e.kind) for e in events] == [(f"{run}/2", "protected_namespace")]  # once per key
