"""The MCP infrastructure server: Kubernetes and Talos tools over streamable HTTP at /mcp.

    python -m workers.toolservers.infra --host 127.0.0.1 --port 8091 \\
        [--kubeconfig PATH] [--token-env AGENTIC_MCP_TOKEN]

Tools (typed arguments, so `tools/list` carries JSON input schemas with descriptions; typed
results, so calls return structured content as well as JSON text):

  read-only   get_nodes()
              get_pods(namespace, label_selector?)
              get_events(namespace, involved_object?, limit?)
              get_pod_logs(namespace, pod, container?, tail_lines?, previous?)
              describe_pod(namespace, pod)
              talos_health(nodes?, wait_timeout_s?)
  mutating    rollout_restart(namespace, deployment, restarted_at?)
              set_memory_limit(namespace, deployment, value, container?)
              scale_deployment(namespace, deployment, replicas)

Read-only tools carry the MCP annotations readOnlyHint=true, idempotentHint=true; mutating tools
readOnlyHint=false, destructiveHint=true. `set_memory_limit` and `scale_deployment` set absolute
values and are idempotentHint=true. `rollout_restart` is idempotent only for a given
`restarted_at`: its `_meta` names that argument under `agentic.dev/idempotency-timestamp`, and
the tool gateway fills it with the action's ledger start time (see activities.tools.gateway).
Unknown arguments are refused (the schemas say `additionalProperties: false`).

Failures are MCP tool errors (`isError` results) that say what to do: a missing deployment
names the kubectl command to look for it, a 403 names the RBAC rule to grant, a missing
`talosctl` says to install it or drop the tool from AGENTIC_INCIDENT_TOOLS. A tool never
crashes the server.

- Cluster access: `--kubeconfig PATH`, else the in-cluster service account, else $KUBECONFIG or
  ~/.kube/config. With none of them the server still starts (talos_health works) and the
  Kubernetes tools answer with an error saying how to configure one.
- Authentication: `--token-env VAR` names the environment variable holding the bearer token
  (never on the command line, where `ps` shows it). With a token, requests to /mcp without
  `Authorization: Bearer <token>` get 401. Without one the server only listens on loopback.
  GET /healthz is public and tells nothing secret.
- Start-up problems (port in use, a kubeconfig that cannot be used, an empty token variable)
  print one line on stderr starting with `error:` and exit 2, never a traceback.
- SIGTERM or SIGINT: graceful shutdown, exit 0.
- The Kubernetes client is synchronous: every call runs in a worker thread.
"""

import argparse
import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from activities.kube.ops import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    MEMORY_QUANTITY,
    RFC3339,
    EventsResult,
    KubeConfigError,
    KubeError,
    KubeOps,
    MemoryLimitResult,
    NodesResult,
    PodDescription,
    PodLogsResult,
    PodsResult,
    RolloutRestartResult,
    ScaleResult,
    load_api_client,
)
from activities.tools import IDEMPOTENCY_TIMESTAMP_META
from workers.process import StartupError
from workers.toolservers.common import (
    MUTATING,
    MUTATING_IDEMPOTENT,
    READ_ONLY,
    READ_ONLY_OPEN,
    new_server,
    tool,
    tool_errors,
)
from workers.toolservers.serving import Launch, Serving, ToolServer

__all__ = ["TALOSCTL_MISSING", "StartupError", "build_server", "main"]

SERVER_NAME = "agentic-infra"
TALOSCTL_MISSING = (
    "talosctl is not installed on this host: install it or remove talos_health from AGENTIC_INCIDENT_TOOLS"
)
NO_CLUSTER = (
    "no Kubernetes cluster is configured for the MCP infrastructure server: "
    "set AGENTIC_KUBECONFIG (--kubeconfig) or run the server in the cluster"
)

log = logging.getLogger("workers.toolservers.infra")


class TalosHealthResult(BaseModel):
    healthy: bool
    exit_code: int
    nodes: list[str] = Field(default_factory=list)
    output: str = Field(description="the last lines of talosctl's output")


# --------------------------------------------------------------------------- argument types

Namespace = Annotated[
    str, Field(description="Kubernetes namespace, e.g. media", min_length=1, max_length=63, pattern=DNS_LABEL)
]
DeploymentName = Annotated[
    str, Field(description="name of the deployment", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
]
LABEL_SELECTOR = r"^[A-Za-z0-9._/=!,() -]*$"
PodName = Annotated[str, Field(description="name of the pod", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]

_R = TypeVar("_R")


# --------------------------------------------------------------------------- auth


# --------------------------------------------------------------------------- the server


def build_server(
    ops: KubeOps | None,
    *,
    token: str | None = None,
    issuer_url: str = "http://127.0.0.1",
    talosctl: str = "talosctl",
) -> MCPServer:
    """The MCP server with its tools over `ops` (None: no cluster configured)."""

    async def k8s(name: str, fn: Callable[[KubeOps], Awaitable[_R]]) -> _R:
        if ops is None:
            raise ToolError(NO_CLUSTER)
        # a bug must still come back as a tool error, not a crash
        with tool_errors({KubeError: str}, tool=name, logger=log):
            return await fn(ops)

    async def get_nodes() -> NodesResult:
        """List the cluster's nodes: readiness, roles, kubelet version, allocatable CPU and memory,
        pressure conditions (MemoryPressure, DiskPressure, PIDPressure) and taints."""
        return await k8s("get_nodes", lambda o: o.get_nodes())

    async def get_pods(
        namespace: Namespace,
        label_selector: Annotated[
            str,
            Field(
                description='label selector, e.g. "app=sonarr" or "app in (sonarr,radarr)" (default: every pod)',
                max_length=500,
                pattern=LABEL_SELECTOR,
            ),
        ] = "",
    ) -> PodsResult:
        """List the pods of a namespace: phase, ready containers, restarts, node, and each
        container's state (e.g. waiting: CrashLoopBackOff) and last termination (e.g. OOMKilled)."""
        return await k8s("get_pods", lambda o: o.get_pods(namespace, label_selector))

    async def get_events(
        namespace: Namespace,
        involved_object: Annotated[
            str | None,
            Field(
                description="only events about the object with this name (a pod, deployment, ...); default: all",
                max_length=253,
                pattern=DNS_SUBDOMAIN,
            ),
        ] = None,
        limit: Annotated[int, Field(description="most recent events to return", ge=1, le=200)] = 50,
    ) -> EventsResult:
        """Recent events of a namespace, newest first (warnings such as BackOff, FailedScheduling,
        OOMKilling, Unhealthy explain most incidents)."""
        return await k8s("get_events", lambda o: o.get_events(namespace, involved_object or "", limit))

    async def get_pod_logs(
        namespace: Namespace,
        pod: PodName,
        container: Annotated[
            str | None,
            Field(description="container name; required when the pod has several", max_length=63, pattern=DNS_LABEL),
        ] = None,
        tail_lines: Annotated[int, Field(description="how many of the last lines to return", ge=1, le=5000)] = 100,
        previous: Annotated[
            bool, Field(description="logs of the previous (crashed) container instead of the running one")
        ] = False,
    ) -> PodLogsResult:
        """The last lines of a pod's logs (at most 256 KiB)."""
        return await k8s(
            "get_pod_logs", lambda o: o.get_pod_logs(namespace, pod, container or "", tail_lines, previous)
        )

    async def describe_pod(namespace: Namespace, pod: PodName) -> PodDescription:
        """Describe one pod: status, owner, QoS class, conditions that are not true, each
        container's image, requests and limits, and the pod's recent events."""
        return await k8s("describe_pod", lambda o: o.describe_pod(namespace, pod))

    async def rollout_restart(
        namespace: Namespace,
        deployment: DeploymentName,
        restarted_at: Annotated[
            str | None,
            Field(
                description="RFC 3339 time written to the kubectl.kubernetes.io/restartedAt annotation "
                "(default: now). Calls with the same value restart once.",
                pattern=RFC3339,
            ),
        ] = None,
    ) -> RolloutRestartResult:
        """Restart a deployment's pods with a rolling update, like `kubectl rollout restart`
        (patches the pod template annotation kubectl.kubernetes.io/restartedAt)."""
        result = await k8s("rollout_restart", lambda o: o.rollout_restart(namespace, deployment, restarted_at))
        log.info("rollout_restart %s/%s: %s", namespace, deployment, result.message)
        return result

    async def set_memory_limit(
        namespace: Namespace,
        deployment: DeploymentName,
        value: Annotated[
            str,
            Field(
                description='new memory limit as a Kubernetes quantity, e.g. "512Mi" or "2Gi"', pattern=MEMORY_QUANTITY
            ),
        ],
        container: Annotated[
            str | None,
            Field(description="container to change; may be left out when the deployment has one", pattern=DNS_LABEL),
        ] = None,
    ) -> MemoryLimitResult:
        """Set the memory limit of one container of a deployment (rolls its pods out). Refuses a
        limit below the container's memory request."""
        result = await k8s("set_memory_limit", lambda o: o.set_memory_limit(namespace, deployment, value, container))
        log.info("set_memory_limit %s/%s: %s", namespace, deployment, result.message)
        return result

    async def scale_deployment(
        namespace: Namespace,
        deployment: DeploymentName,
        replicas: Annotated[int, Field(description="desired number of replicas (0 stops the app)", ge=0, le=100)],
    ) -> ScaleResult:
        """Set a deployment's number of replicas."""
        result = await k8s("scale_deployment", lambda o: o.scale_deployment(namespace, deployment, replicas))
        log.info("scale_deployment %s/%s: %s", namespace, deployment, result.message)
        return result

    async def talos_health(
        nodes: Annotated[
            list[Annotated[str, Field(pattern=r"^[A-Za-z0-9.:-]+$", max_length=253)]] | None,
            Field(description="Talos node addresses to check (default: those of the talosconfig)", max_length=50),
        ] = None,
        wait_timeout_s: Annotated[
            int, Field(description="how long talosctl may wait for the cluster to be healthy", ge=5, le=300)
        ] = 60,
    ) -> TalosHealthResult:
        """Run `talosctl health`: etcd, kubelet, control plane and node readiness of a Talos cluster."""
        binary = await asyncio.to_thread(shutil.which, talosctl)
        if binary is None:
            raise ToolError(TALOSCTL_MISSING)
        cmd = [binary, "health", f"--wait-timeout={wait_timeout_s}s"]
        if nodes:
            cmd += ["--nodes", ",".join(nodes)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as exc:
            raise ToolError(f"cannot run {binary}: {exc.strerror}") from None
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=wait_timeout_s + 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ToolError(f"talosctl health did not finish within {wait_timeout_s + 30}s") from None
        text = out.decode("utf-8", "replace")
        tail = "\n".join(text.splitlines()[-60:])
        return TalosHealthResult(
            healthy=proc.returncode == 0, exit_code=proc.returncode or 0, nodes=nodes or [], output=tail
        )

    tools = [
        tool(get_nodes, "Cluster nodes", READ_ONLY),
        tool(get_pods, "Pods of a namespace", READ_ONLY),
        tool(get_events, "Events of a namespace", READ_ONLY),
        tool(get_pod_logs, "Pod logs", READ_ONLY),
        tool(describe_pod, "Describe a pod", READ_ONLY),
        tool(rollout_restart, "Restart a deployment", MUTATING, {IDEMPOTENCY_TIMESTAMP_META: "restarted_at"}),
        tool(set_memory_limit, "Set a container's memory limit", MUTATING_IDEMPOTENT),
        tool(scale_deployment, "Scale a deployment", MUTATING_IDEMPOTENT),
        tool(talos_health, "Talos cluster health", READ_ONLY_OPEN),
    ]

    return new_server(
        SERVER_NAME,
        title="agentic-platform infrastructure tools",
        instructions="Kubernetes and Talos tools for diagnosing and fixing incidents. "
        "Read-only tools are safe to call; mutating tools change the cluster.",
        tools=tools,
        token=token,
        issuer_url=issuer_url,
        health=lambda: {"tools": len(tools), "kubernetes": ops is not None},
    )


# --------------------------------------------------------------------------- the process


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="kubeconfig of the cluster (default: in-cluster, else $KUBECONFIG or ~/.kube/config)",
    )


def _load_cluster(kubeconfig: Path | None) -> tuple[KubeOps | None, str]:
    try:
        api, where = load_api_client(kubeconfig)
    except KubeConfigError as exc:
        if kubeconfig is None and str(exc).startswith("no Kubernetes configuration"):
            return None, "none (Kubernetes tools will answer with an error)"
        raise StartupError(f"error: {exc}") from None
    return KubeOps(api, where=where), where


def configure(args: argparse.Namespace) -> Launch:
    ops, where = _load_cluster(args.kubeconfig)

    def launch(token: str | None, issuer: str) -> Serving:
        server = build_server(ops, token=token, issuer_url=issuer)
        return Serving(server, f"cluster: {where}", close=ops.close if ops is not None else None)

    return launch


PROCESS = ToolServer(
    "mcp_infra",
    "Kubernetes/Talos",
    port=8091,
    port_setting="AGENTIC_MCP_INFRA_PORT",
    serves="cluster-changing tools",
    configure=configure,
    options=_options,
)
main = PROCESS.main
