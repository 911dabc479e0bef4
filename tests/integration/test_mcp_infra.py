"""The MCP infrastructure server: the real process, the real MCP client, kmock as the Kubernetes API."""

from __future__ import annotations

import signal
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import kmock
import pytest
from kubernetes import client as k8s_client
from mcp import Client
from mcp_types import CallToolResult

from activities.kube.ops import RESTART_ANNOTATION, KubeOps, memory_bytes
from activities.tools import IDEMPOTENCY_TIMESTAMP_META
from tests.support.env import free_port
from tests.support.kmock_helpers import (
    NS,
    McpProcess,
    emulated_cluster,
    mcp_client,
    requests_for,
    run_server_cli,
    start_server,
)
from tests.support.kmock_helpers import result_data as data
from tests.support.kmock_helpers import result_text as text
from workers.toolservers.infra.server import NO_CLUSTER, TALOSCTL_MISSING, build_server

TOKEN = "test-token-3f9a"
READ_TOOLS = {"get_nodes", "get_pods", "get_events", "get_pod_logs", "describe_pod", "talos_health"}
WRITE_TOOLS = {"rollout_restart", "set_memory_limit", "scale_deployment"}


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[kmock.KubernetesEmulator, Path]]:
    async with emulated_cluster(tmp_path_factory.mktemp("kube")) as pair:
        yield pair


@pytest.fixture(scope="module")
async def server(
    cluster: tuple[kmock.KubernetesEmulator, Path], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[McpProcess]:
    # A PATH without talosctl, so talos_health meets the "not installed" case on any machine.
    empty_bin = tmp_path_factory.mktemp("empty-bin")
    proc = await start_server(free_port(), cluster[1], TOKEN, env={"PATH": str(empty_bin)})
    yield proc
    await proc.stop()


@pytest.fixture
def k(cluster: tuple[kmock.KubernetesEmulator, Path]) -> kmock.KubernetesEmulator:
    return cluster[0]


async def call(server: McpProcess, tool: str, args: dict[str, Any]) -> CallToolResult:
    async with mcp_client(server.url, TOKEN) as c:
        return await c.call_tool(tool, args)


# --- the tool list ---------------------------------------------------------------------------


async def test_lists_tools_with_schemas_and_annotations(server: McpProcess) -> None:
    async with mcp_client(server.url, TOKEN) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) == READ_TOOLS | WRITE_TOOLS
    for name, tool in tools.items():
        schema = tool.input_schema
        assert schema["type"] == "object" and schema["additionalProperties"] is False, name
        assert tool.description, name
        for prop, spec in schema.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{prop} has no description"
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is (name in READ_TOOLS), name
        assert tool.output_schema is not None, name
    for name in WRITE_TOOLS:
        assert tools[name].annotations.destructive_hint is True  # type: ignore[union-attr]
    scale = tools["scale_deployment"].input_schema
    assert scale["required"] == ["namespace", "deployment", "replicas"]
    assert scale["properties"]["replicas"]["minimum"] == 0
    assert scale["properties"]["namespace"]["pattern"].startswith("^[a-z0-9]")
    assert tools["set_memory_limit"].annotations.idempotent_hint is True  # type: ignore[union-attr]
    assert tools["rollout_restart"].annotations.idempotent_hint is False  # type: ignore[union-attr]
    assert (tools["rollout_restart"].meta or {})[IDEMPOTENCY_TIMESTAMP_META] == "restarted_at"
    assert set(tools["get_pod_logs"].input_schema["properties"]) == {
        "namespace",
        "pod",
        "container",
        "tail_lines",
        "previous",
    }


# --- read tools ----------------------------------------------------------------------------------


async def test_get_nodes(server: McpProcess) -> None:
    nodes = {n["name"]: n for n in data(await call(server, "get_nodes", {}))["nodes"]}
    assert nodes["cp-1"]["ready"] is True
    assert nodes["cp-1"]["roles"] == ["control-plane"]
    assert nodes["cp-1"]["taints"] == ["node-role.kubernetes.io/control-plane:NoSchedule"]
    assert nodes["cp-1"]["allocatable_memory"] == "16Gi"
    assert nodes["worker-1"]["ready"] is False
    assert nodes["worker-1"]["problems"] == ["MemoryPressure: kubelet has insufficient memory available"]
    assert nodes["worker-1"]["internal_ip"] == "10.0.0.11"


async def test_get_pods(server: McpProcess, k: kmock.KubernetesEmulator) -> None:
    result = data(await call(server, "get_pods", {"namespace": NS}))
    pods = {p["name"]: p for p in result["pods"]}
    sonarr = pods["sonarr-7d4b9-abcde"]
    assert sonarr["ready"] == "0/1" and sonarr["restarts"] == 7 and sonarr["node"] == "worker-1"
    assert sonarr["containers"][0]["state"] == "waiting: CrashLoopBackOff"
    assert sonarr["containers"][0]["last_termination"] == "OOMKilled (exit 137) at 2024-05-01T10:00:00Z"
    assert pods["radarr-5c6f7-fghij"]["ready"] == "1/1"
    assert pods["radarr-5c6f7-fghij"]["containers"][0]["state"] == "running"

    await call(server, "get_pods", {"namespace": NS, "label_selector": "app=sonarr"})
    last = [r for r in list(k) if r.url.path == f"/api/v1/namespaces/{NS}/pods"][-1]
    assert last.params.get("labelSelector") == "app=sonarr"


async def test_get_events_newest_first_and_filtered(server: McpProcess) -> None:
    all_events = data(await call(server, "get_events", {"namespace": NS}))["events"]
    assert [e["reason"] for e in all_events] == ["BackOff", "OOMKilling", "Pulled"]
    only = data(await call(server, "get_events", {"namespace": NS, "involved_object": "radarr-5c6f7-fghij"}))
    assert [(e["reason"], e["object"]) for e in only["events"]] == [("Pulled", "Pod/radarr-5c6f7-fghij")]
    limited = data(await call(server, "get_events", {"namespace": NS, "limit": 1}))
    assert len(limited["events"]) == 1 and limited["truncated"] is True


async def test_get_pod_logs(server: McpProcess, k: kmock.KubernetesEmulator) -> None:
    args = {"namespace": NS, "pod": "sonarr-7d4b9-abcde", "tail_lines": 20, "previous": True}
    logs = data(await call(server, "get_pod_logs", args))
    assert logs["log"] == "starting\nloading library\nout of memory\n"
    assert logs["lines"] == 3 and logs["previous"] is True
    req = [r for r in list(k) if r.url.path.endswith("/sonarr-7d4b9-abcde/log")][-1]
    assert req.params.get("tailLines") == "20" and req.params.get("previous") in ("true", "True")


async def test_describe_pod(server: McpProcess) -> None:
    desc = data(await call(server, "describe_pod", {"namespace": NS, "pod": "sonarr-7d4b9-abcde"}))
    assert desc["owner"] == "ReplicaSet/sonarr-7d4b9"
    assert desc["qos_class"] == "Burstable"
    assert desc["conditions"] == ["Ready=False: ContainersNotReady"]
    assert desc["containers"] == [
        {
            "name": "sonarr",
            "image": "ghcr.io/example/sonarr:4",
            "requests": {"memory": "128Mi"},
            "limits": {"memory": "256Mi", "cpu": "1"},
        }
    ]
    assert [e["reason"] for e in desc["events"]] == ["BackOff", "OOMKilling"]


# --- write tools --------------------------------------------------------------------------------


async def test_rollout_restart_sends_the_kubectl_merge_patch(server: McpProcess, k: kmock.KubernetesEmulator) -> None:
    stamp = "2024-05-01T10:15:00Z"
    result = data(
        await call(server, "rollout_restart", {"namespace": NS, "deployment": "sonarr", "restarted_at": stamp})
    )
    assert result["changed"] is True and result["restarted_at"] == stamp
    patches = requests_for(k, "sonarr", "PATCH")
    assert len(patches) == 1
    assert patches[0].headers["Content-Type"] == "application/merge-patch+json"
    assert patches[0].data == {"spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: stamp}}}}}
    stored = k.objects["apps/v1/deployments", NS, "sonarr"].raw
    assert stored["spec"]["template"]["metadata"]["annotations"] == {RESTART_ANNOTATION: stamp}
    assert stored["spec"]["template"]["metadata"]["labels"] == {"app": "sonarr"}  # merged, not replaced

    # The same restartedAt again: nothing to do, no second rollout.
    again = data(
        await call(server, "rollout_restart", {"namespace": NS, "deployment": "sonarr", "restarted_at": stamp})
    )
    assert again["changed"] is False
    assert len(requests_for(k, "sonarr", "PATCH")) == 1

    # Without restarted_at: now, in RFC 3339.
    fresh = data(await call(server, "rollout_restart", {"namespace": NS, "deployment": "sonarr"}))
    assert fresh["changed"] is True and fresh["restarted_at"] != stamp and fresh["restarted_at"].endswith("Z")


async def test_set_memory_limit_patches_one_container(server: McpProcess, k: kmock.KubernetesEmulator) -> None:
    sidecar = {"name": "exporter", "image": "ghcr.io/example/exporter:1", "ports": [{"containerPort": 9707}]}
    app = {
        "name": "app",
        "image": "ghcr.io/example/radarr:5",
        "futureField": {"kept": True},  # unknown to the client models: must survive the round trip
        "resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "512Mi", "cpu": "2"}},
    }
    k.objects["apps/v1/deployments", NS, "radarr"] = {
        **k.objects["apps/v1/deployments", NS, "radarr"].raw,
        "spec": {"replicas": 1, "template": {"spec": {"containers": [app, sidecar]}}},
    }
    before = len(requests_for(k, "radarr", "PATCH"))
    args = {"namespace": NS, "deployment": "radarr", "container": "app", "value": "1Gi"}
    result = data(await call(server, "set_memory_limit", args))
    assert result["changed"] is True and result["previous"] == "512Mi" and result["value"] == "1Gi"
    patch = requests_for(k, "radarr", "PATCH")[before]
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    assert patch.data["metadata"] == {"resourceVersion": "100"}  # optimistic concurrency
    sent = patch.data["spec"]["template"]["spec"]["containers"]
    assert sent[1] == sidecar
    assert sent[0]["futureField"] == {"kept": True}
    assert sent[0]["resources"] == {"requests": {"memory": "256Mi"}, "limits": {"memory": "1Gi", "cpu": "2"}}
    stored = k.objects["apps/v1/deployments", NS, "radarr"].raw["spec"]["template"]["spec"]["containers"]
    assert stored[0]["resources"]["limits"]["memory"] == "1Gi" and stored[1] == sidecar

    # Already so: no patch.
    assert data(await call(server, "set_memory_limit", args))["changed"] is False
    assert len(requests_for(k, "radarr", "PATCH")) == before + 1

    # Refusals with reasons.
    below = await call(server, "set_memory_limit", {**args, "value": "128Mi"})
    assert below.is_error and "below the memory request 256Mi of container app" in text(below)
    tiny = await call(server, "set_memory_limit", {**args, "value": "512"})
    assert tiny.is_error and "did you mean 512Mi?" in text(tiny)
    bad = await call(server, "set_memory_limit", {**args, "value": "lots"})
    assert bad.is_error and "value" in text(bad) and "pattern" in text(bad)
    which = await call(server, "set_memory_limit", {"namespace": NS, "deployment": "radarr", "value": "1Gi"})
    assert which.is_error and "has 2 containers (app, exporter): name the one" in text(which)
    nope = await call(server, "set_memory_limit", {**args, "container": "web"})
    assert nope.is_error and "has no container 'web': its containers are app, exporter" in text(nope)
    assert len(requests_for(k, "radarr", "PATCH")) == before + 1


async def test_scale_deployment(server: McpProcess, k: kmock.KubernetesEmulator) -> None:
    result = data(await call(server, "scale_deployment", {"namespace": NS, "deployment": "lidarr", "replicas": 3}))
    assert (result["previous"], result["replicas"], result["changed"]) == (1, 3, True)
    patches = requests_for(k, "lidarr", "PATCH")
    assert [p.data for p in patches] == [{"spec": {"replicas": 3}}]
    assert k.objects["apps/v1/deployments", NS, "lidarr"].raw["spec"]["replicas"] == 3

    negative = await call(server, "scale_deployment", {"namespace": NS, "deployment": "lidarr", "replicas": -1})
    assert negative.is_error and "replicas" in text(negative) and "greater than or equal to 0" in text(negative)
    assert len(requests_for(k, "lidarr")) == 2  # one GET, one PATCH: the bad call never reached the API


# --- errors ---------------------------------------------------------------------------------------


async def test_missing_deployment_is_an_actionable_tool_error(server: McpProcess) -> None:
    result = await call(server, "scale_deployment", {"namespace": NS, "deployment": "sonar", "replicas": 1})
    assert result.is_error
    assert "deployment media/sonar not found: check the namespace and name (kubectl -n media get deploy)" in text(
        result
    )
    pod = await call(server, "describe_pod", {"namespace": NS, "pod": "ghost"})
    assert pod.is_error and "pod media/ghost not found" in text(pod) and "kubectl -n media get pods" in text(pod)


async def test_forbidden_names_the_missing_rbac_rule(server: McpProcess, k: kmock.KubernetesEmulator) -> None:
    k.objects["apps/v1/deployments", NS, "locked"] = {**k.objects["apps/v1/deployments", NS, "bazarr"].raw}
    k.objects["apps/v1/deployments", NS, "locked"].patch({"metadata": {"name": "locked"}})
    k["patch", kmock.resource("apps/v1/deployments"), kmock.name("locked")] << kmock.KubernetesError(
        403,
        "Forbidden",
        'deployments.apps "locked" is forbidden: User "system:serviceaccount:agentic:mcp-infra" cannot patch '
        'resource "deployments" in API group "apps" in the namespace "media"',
    )
    result = await call(server, "scale_deployment", {"namespace": NS, "deployment": "locked", "replicas": 2})
    assert result.is_error
    message = text(result)
    assert "may not patch deployments.apps in namespace media" in message
    assert 'apiGroups: ["apps"], resources: ["deployments"], verbs: ["patch"]' in message
    assert "a Role in namespace media" in message
    assert "cannot patch" in message  # the API's own words come along


async def test_bad_arguments_are_clear_errors(server: McpProcess, k: kmock.KubernetesEmulator) -> None:
    before = len(list(k))
    extra = await call(server, "get_pods", {"namespace": NS, "selector": "app=x"})
    assert extra.is_error and "selector" in text(extra) and "Extra inputs are not permitted" in text(extra)
    badns = await call(server, "get_pods", {"namespace": "Media; rm -rf /"})
    assert badns.is_error and "namespace" in text(badns)
    missing = await call(server, "scale_deployment", {"namespace": NS, "replicas": 1})
    assert missing.is_error and "deployment" in text(missing) and "Field required" in text(missing)
    unknown = await call(server, "delete_namespace", {"namespace": NS})
    assert unknown.is_error and "Unknown tool" in text(unknown)
    assert len(list(k)) == before


async def test_talos_health_without_talosctl(server: McpProcess) -> None:
    result = await call(server, "talos_health", {})
    assert result.is_error
    assert TALOSCTL_MISSING in text(result)


# --- auth -----------------------------------------------------------------------------------------


async def test_requests_without_the_token_get_401(server: McpProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx2.AsyncClient() as http:
        none = await http.post(server.url, json=body, headers=headers)
        wrong = await http.post(server.url, json=body, headers={**headers, "Authorization": "Bearer nope"})
        health = await http.get(f"http://127.0.0.1:{server.port}/healthz")
    assert none.status_code == 401 and wrong.status_code == 401
    assert none.headers["www-authenticate"].startswith("Bearer")
    assert health.status_code == 200 and health.json() == {"status": "ok", "tools": 9, "kubernetes": True}
    with pytest.raises(Exception):  # noqa: B017 - the SDK wraps the 401 in its own error types
        async with mcp_client(server.url, None) as c:
            await c.list_tools()


# --- in process -----------------------------------------------------------------------------------


async def test_in_process_talos_health_and_no_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "talosctl"
    fake.write_text('#!/bin/sh\necho "waiting for etcd to be healthy: OK"\necho "args: $*"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(tmp_path))
    async with Client(build_server(None)) as c:
        ok = await c.call_tool("talos_health", {"nodes": ["10.0.0.10", "10.0.0.11"], "wait_timeout_s": 30})
        assert not ok.is_error, text(ok)
        assert ok.structured_content is not None
        assert ok.structured_content["healthy"] is True
        assert "args: health --wait-timeout=30s --nodes 10.0.0.10,10.0.0.11" in ok.structured_content["output"]
        fake.write_text("#!/bin/sh\necho 'etcd: unhealthy' >&2\nexit 1\n")
        bad = await c.call_tool("talos_health", {})
        assert bad.structured_content is not None
        assert bad.structured_content["healthy"] is False and "etcd: unhealthy" in bad.structured_content["output"]
        pods = await c.call_tool("get_pods", {"namespace": NS})
        assert pods.is_error and NO_CLUSTER in text(pods)


async def test_an_unreachable_api_is_a_tool_error() -> None:
    cfg = k8s_client.Configuration()
    cfg.host = f"http://127.0.0.1:{free_port()}"
    async with Client(build_server(KubeOps(k8s_client.ApiClient(cfg)))) as c:
        result = await c.call_tool("get_nodes", {})
    assert result.is_error
    assert f"cannot reach the Kubernetes API at {cfg.host}: [Errno 111] Connection refused" in text(result)


def test_memory_quantities() -> None:
    assert memory_bytes("512Mi") == 512 * 2**20
    assert memory_bytes("2Gi") == 2 * 2**30
    assert memory_bytes("1.5G") == 1_500_000_000
    assert memory_bytes("lots") is None and memory_bytes("-1Gi") is None


# --- the process ----------------------------------------------------------------------------------


async def test_sigterm_exits_0(cluster: tuple[kmock.KubernetesEmulator, Path]) -> None:
    proc = await start_server(free_port(), cluster[1], TOKEN)
    async with mcp_client(proc.url, TOKEN) as c:
        assert (await c.list_tools()).tools
    rc = await proc.stop(signal.SIGTERM)
    assert rc == 0, proc.stderr
    assert proc.stderr[-1] == "mcp_infra: stopped"
    assert not any("Traceback" in line for line in proc.stderr)


async def test_port_in_use_exits_2(cluster: tuple[kmock.KubernetesEmulator, Path]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        rc, err = await run_server_cli("--port", str(port), "--kubeconfig", str(cluster[1]))
    assert rc == 2
    assert (
        err.strip() == f"error: port {port} on 127.0.0.1 is already in use (set AGENTIC_MCP_INFRA_PORT to another port)"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "error: kubeconfig not found: "),
        ("{not yaml: [", "error: cannot use kubeconfig "),
        ("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n", "error: cannot use kubeconfig "),
    ],
)
async def test_bad_kubeconfig_exits_2(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "kubeconfig.yaml"
    if content is not None:
        path.write_text(content)
    rc, err = await run_server_cli("--port", str(free_port()), "--kubeconfig", str(path))
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), err


async def test_empty_token_variable_exits_2(cluster: tuple[kmock.KubernetesEmulator, Path]) -> None:
    rc, err = await run_server_cli(
        "--port",
        str(free_port()),
        "--kubeconfig",
        str(cluster[1]),
        "--token-env",
        "AGENTIC_TEST_EMPTY",
        env={"AGENTIC_TEST_EMPTY": ""},
    )
    assert rc == 2
    assert err.strip() == (
        "error: --token-env AGENTIC_TEST_EMPTY: the environment variable AGENTIC_TEST_EMPTY is not set or empty"
    )


async def test_refuses_an_open_interface_without_a_token(cluster: tuple[kmock.KubernetesEmulator, Path]) -> None:
    rc, err = await run_server_cli("--host", "0.0.0.0", "--port", str(free_port()), "--kubeconfig", str(cluster[1]))
    assert rc == 2 and err.startswith("error: refusing to serve cluster-changing tools on 0.0.0.0 without a token")
