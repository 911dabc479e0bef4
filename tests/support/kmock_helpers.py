"""A small emulated cluster for the MCP tests: kmock's Kubernetes API in the test's event loop, a
kubeconfig pointing at it, and the real MCP infrastructure server as a child process.

kmock notes (0.8):
- `KubernetesEmulator()` + `Server(emulator)` serve the API on 127.0.0.1:<random port> from the
  running event loop, so the child process can reach it while the test awaits.
- Objects: `k.objects["apps/v1/deployments", ns, name] = {...}`; a resource with no objects must
  be declared, e.g. `k.resources["v1/nodes"] = kmock.ResourceInfo(namespaced=False)`, or listing
  it answers 404. `k.objects[key].raw` is the stored state.
- Every PATCH is applied as a JSON merge (lists replaced whole), whatever its content type, and
  it is applied even when a reaction answers it with an error.
- Label and field selectors are not applied: lists return every object.
- Subresources such as pods/log need a reaction: `k["get", resource("v1/pods"), subresource("log")] << b"..."`.
- `list(k)` is every request received (`.method`, `.url`, `.params`, `.headers`, `.data`, `.name`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import kmock
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent

REPO = Path(__file__).resolve().parents[2]
NS = "media"
TOKEN_ENV = "AGENTIC_TEST_MCP_TOKEN"


def deployment(name: str, *, replicas: int = 1, containers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "resourceVersion": "100", "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": containers
                    or [
                        {
                            "name": name,
                            "image": f"ghcr.io/example/{name}:1",
                            "resources": {"limits": {"memory": "256Mi"}},
                        }
                    ]
                },
            },
        },
    }


def seed(k: kmock.KubernetesEmulator) -> None:
    """Two nodes, three pods, events, and deployments in namespace media."""
    k.resources["v1/nodes"] = kmock.ResourceInfo(namespaced=False, kind="Node")
    k.resources["v1/events"] = kmock.ResourceInfo(namespaced=True, kind="Event")
    k.objects["v1/nodes", None, "cp-1"] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "cp-1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True"},
            ],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.10"}],
            "allocatable": {"cpu": "4", "memory": "16Gi"},
            "nodeInfo": {"kubeletVersion": "v1.31.2"},
        },
    }
    k.objects["v1/nodes", None, "worker-1"] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "worker-1", "labels": {}},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "True", "message": "kubelet has insufficient memory available"},
                {"type": "Ready", "status": "False", "reason": "KubeletNotReady"},
            ],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.11"}],
            "allocatable": {"cpu": "8", "memory": "32Gi"},
            "nodeInfo": {"kubeletVersion": "v1.31.2"},
        },
    }
    k.objects["v1/pods", NS, "sonarr-7d4b9-abcde"] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "sonarr-7d4b9-abcde",
            "namespace": NS,
            "labels": {"app": "sonarr"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "sonarr-7d4b9", "controller": True}],
        },
        "spec": {
            "nodeName": "worker-1",
            "containers": [
                {
                    "name": "sonarr",
                    "image": "ghcr.io/example/sonarr:4",
                    "resources": {"requests": {"memory": "128Mi"}, "limits": {"memory": "256Mi", "cpu": "1"}},
                }
            ],
        },
        "status": {
            "phase": "Running",
            "qosClass": "Burstable",
            "startTime": "2024-05-01T09:00:00Z",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
                {"type": "PodScheduled", "status": "True"},
            ],
            "containerStatuses": [
                {
                    "name": "sonarr",
                    "ready": False,
                    "restartCount": 7,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": "2024-05-01T10:00:00Z"}
                    },
                }
            ],
        },
    }
    k.objects["v1/pods", NS, "radarr-5c6f7-fghij"] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "radarr-5c6f7-fghij", "namespace": NS, "labels": {"app": "radarr"}},
        "spec": {"nodeName": "cp-1", "containers": [{"name": "radarr", "image": "ghcr.io/example/radarr:5"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": "radarr", "ready": True, "restartCount": 0, "state": {"running": {}}},
            ],
        },
    }
    k.objects["v1/events", NS, "sonarr.1"] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "sonarr.1", "namespace": NS},
        "involvedObject": {"kind": "Pod", "name": "sonarr-7d4b9-abcde", "namespace": NS},
        "type": "Warning",
        "reason": "BackOff",
        "message": "Back-off restarting failed container sonarr",
        "count": 12,
        "lastTimestamp": "2024-05-01T10:05:00Z",
    }
    k.objects["v1/events", NS, "sonarr.2"] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "sonarr.2", "namespace": NS},
        "involvedObject": {"kind": "Pod", "name": "sonarr-7d4b9-abcde", "namespace": NS},
        "type": "Warning",
        "reason": "OOMKilling",
        "message": "Memory cgroup out of memory: Killed process 4242 (Sonarr)",
        "count": 3,
        "lastTimestamp": "2024-05-01T10:00:00Z",
    }
    k.objects["v1/events", NS, "radarr.1"] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "radarr.1", "namespace": NS},
        "involvedObject": {"kind": "Pod", "name": "radarr-5c6f7-fghij", "namespace": NS},
        "type": "Normal",
        "reason": "Pulled",
        "message": "Container image already present on machine",
        "lastTimestamp": "2024-05-01T08:00:00Z",
    }
    k["get", kmock.resource("v1/pods"), kmock.subresource("log")] << b"starting\nloading library\nout of memory\n"
    for name in ("sonarr", "radarr", "lidarr", "prowlarr", "bazarr", "readarr", "whisparr"):
        k.objects["apps/v1/deployments", NS, name] = deployment(name)


def write_kubeconfig(path: Path, server_url: str) -> Path:
    path.write_text(
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        f"- name: kmock\n  cluster:\n    server: {server_url.rstrip('/')}\n"
        "users:\n"
        "- name: agentic\n  user:\n    token: kmock-does-not-check\n"
        "contexts:\n"
        "- name: kmock\n  context:\n    cluster: kmock\n    user: agentic\n"
        "current-context: kmock\n"
    )
    return path


@contextlib.asynccontextmanager
async def emulated_cluster(tmp: Path) -> AsyncIterator[tuple[kmock.KubernetesEmulator, Path]]:
    async with kmock.KubernetesEmulator() as k, kmock.Server(k) as srv:
        seed(k)
        yield k, write_kubeconfig(tmp / "kubeconfig.yaml", str(srv.url))


def requests_for(k: kmock.KubernetesEmulator, name: str, method: str | None = None) -> list[kmock.Request]:
    return [r for r in list(k) if r.name == name and (method is None or r.method == method)]


@dataclass
class McpProcess:
    proc: asyncio.subprocess.Process
    port: int
    stderr: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace").rstrip("\n"))

    async def stop(self, sig: int = signal.SIGTERM, wait_s: float = 15.0) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            rc = await asyncio.wait_for(self.proc.wait(), wait_s)
        except TimeoutError:
            self.proc.kill()
            rc = await self.proc.wait()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
        return rc


async def run_server_cli(*args: str, env: dict[str, str] | None = None, wait_s: float = 60) -> tuple[int, str]:
    """Run `python -m workers.toolservers.infra ARGS` to completion (for start-up failures)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.toolservers.infra",
        *args,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), wait_s)
    return proc.returncode or 0, err.decode(errors="replace")


async def start_server(
    port: int,
    kubeconfig: Path | None,
    token: str | None,
    *,
    env: dict[str, str] | None = None,
    wait_s: float = 60,
    module: str = "workers.toolservers.infra",
    extra_args: list[str] | None = None,
) -> McpProcess:
    """Start the real server process (`python -m module`) and wait until it serves."""
    args = ["--host", "127.0.0.1", "--port", str(port), *(extra_args or [])]
    if kubeconfig is not None:
        args += ["--kubeconfig", str(kubeconfig)]
    full_env = {**os.environ, **(env or {})}
    if token is not None:
        args += ["--token-env", TOKEN_ENV]
        full_env[TOKEN_ENV] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=REPO,
        env=full_env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    server = McpProcess(proc=proc, port=port)
    assert proc.stderr is not None

    async def first_line() -> None:
        assert proc.stderr is not None
        while True:
            raw = await proc.stderr.readline()
            if not raw:
                raise RuntimeError(f"the MCP server exited ({await proc.wait()}): {server.stderr}")
            line = raw.decode(errors="replace").rstrip("\n")
            server.stderr.append(line)
            if "serving" in line:
                return

    try:
        await asyncio.wait_for(first_line(), wait_s)
    except BaseException:
        await server.stop(signal.SIGKILL)
        raise
    server._reader = asyncio.create_task(server._read())
    # The socket is bound before the line is printed; wait until HTTP answers.
    async with httpx2.AsyncClient() as http:
        for _ in range(100):
            with contextlib.suppress(httpx2.HTTPError):
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    break
            await asyncio.sleep(0.05)
    return server


@contextlib.asynccontextmanager
async def mcp_client(url: str, token: str | None) -> AsyncIterator[Client]:
    """The real MCP client, sending `Authorization: Bearer <token>` on every request."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(10.0, read=60.0)) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def result_text(result: CallToolResult) -> str:
    """A tool result's text content (a tool error's message)."""
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def result_data(result: CallToolResult) -> dict[str, Any]:
    """A successful tool result's structured content."""
    assert not result.is_error, result_text(result)
    assert result.structured_content is not None
    return result.structured_content
