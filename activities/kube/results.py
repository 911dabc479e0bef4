"""The typed results of the Kubernetes operations (`activities.kube.ops`), and how they are read
from the API's raw JSON: what the MCP infrastructure server's tools return to the model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field


class NodeInfo(BaseModel):
    name: str
    ready: bool
    roles: list[str] = Field(default_factory=list)
    unschedulable: bool = False
    kubelet_version: str = ""
    internal_ip: str = ""
    allocatable_cpu: str = ""
    allocatable_memory: str = ""
    problems: list[str] = Field(default_factory=list, description="conditions other than Ready that are True")
    taints: list[str] = Field(default_factory=list)


class NodesResult(BaseModel):
    nodes: list[NodeInfo]


class ContainerState(BaseModel):
    name: str
    ready: bool = False
    restarts: int = 0
    state: str = Field(default="", description='e.g. "running", "waiting: CrashLoopBackOff", "terminated: Error"')
    last_termination: str = Field(default="", description='e.g. "OOMKilled (exit 137) at 2024-05-01T10:00:00Z"')


class PodInfo(BaseModel):
    name: str
    namespace: str
    phase: str = ""
    reason: str = ""
    ready: str = Field(default="0/0", description="ready containers / containers")
    restarts: int = 0
    node: str = ""
    started_at: str = ""
    containers: list[ContainerState] = Field(default_factory=list)


class PodsResult(BaseModel):
    namespace: str
    label_selector: str = ""
    pods: list[PodInfo]
    truncated: bool = False


class EventInfo(BaseModel):
    type: str = ""
    reason: str = ""
    message: str = ""
    object: str = Field(default="", description="Kind/name of the object the event is about")
    count: int = 1
    last_seen: str = ""


class EventsResult(BaseModel):
    namespace: str
    involved_object: str = ""
    events: list[EventInfo]
    truncated: bool = False


class PodLogsResult(BaseModel):
    namespace: str
    pod: str
    container: str = ""
    previous: bool = False
    lines: int
    truncated: bool = False
    log: str


class ContainerResources(BaseModel):
    name: str
    image: str = ""
    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)


class PodDescription(BaseModel):
    pod: PodInfo
    labels: dict[str, str] = Field(default_factory=dict)
    owner: str = Field(default="", description="Kind/name of the controller that owns the pod")
    qos_class: str = ""
    conditions: list[str] = Field(default_factory=list, description="conditions that are not True, with reasons")
    containers: list[ContainerResources] = Field(default_factory=list)
    events: list[EventInfo] = Field(default_factory=list)


class RolloutRestartResult(BaseModel):
    namespace: str
    deployment: str
    restarted_at: str
    changed: bool
    message: str


class MemoryLimitResult(BaseModel):
    namespace: str
    deployment: str
    container: str
    previous: str | None
    value: str
    changed: bool
    message: str


class ScaleResult(BaseModel):
    namespace: str
    deployment: str
    previous: int
    replicas: int
    changed: bool
    message: str


# --------------------------------------------------------------------------- helpers on raw JSON


def get_path(obj: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(key)
    return default if obj is None else obj


def container_state(status: dict[str, Any]) -> ContainerState:
    state = get_path(status, "state", default={})
    if "running" in state:
        text = "running"
    elif "waiting" in state:
        text = f"waiting: {get_path(state, 'waiting', 'reason', default='')}".rstrip(": ")
    elif "terminated" in state:
        text = f"terminated: {get_path(state, 'terminated', 'reason', default='')}".rstrip(": ")
    else:
        text = ""
    last = get_path(status, "lastState", "terminated")
    last_text = ""
    if isinstance(last, dict):
        last_text = (
            f"{last.get('reason') or 'terminated'} (exit {last.get('exitCode', '?')})"
            f"{' at ' + last['finishedAt'] if last.get('finishedAt') else ''}"
        )
    return ContainerState(
        name=str(status.get("name", "")),
        ready=bool(status.get("ready", False)),
        restarts=int(status.get("restartCount", 0) or 0),
        state=text,
        last_termination=last_text,
    )


def pod_info(pod: dict[str, Any]) -> PodInfo:
    statuses = [container_state(s) for s in get_path(pod, "status", "containerStatuses", default=[])]
    n_containers = len(get_path(pod, "spec", "containers", default=[])) or len(statuses)
    return PodInfo(
        name=get_path(pod, "metadata", "name", default=""),
        namespace=get_path(pod, "metadata", "namespace", default=""),
        phase=get_path(pod, "status", "phase", default=""),
        reason=get_path(pod, "status", "reason", default=""),
        ready=f"{sum(1 for s in statuses if s.ready)}/{n_containers}",
        restarts=sum(s.restarts for s in statuses),
        node=get_path(pod, "spec", "nodeName", default=""),
        started_at=get_path(pod, "status", "startTime", default=""),
        containers=statuses,
    )


def event_info(ev: dict[str, Any]) -> EventInfo:
    obj = get_path(ev, "involvedObject", default={}) or get_path(ev, "regarding", default={})
    return EventInfo(
        type=get_path(ev, "type", default=""),
        reason=get_path(ev, "reason", default=""),
        message=str(get_path(ev, "message", default="")).strip()[:1000],
        object=f"{obj.get('kind', '')}/{obj.get('name', '')}".strip("/"),
        count=int(get_path(ev, "count", default=1) or 1),
        last_seen=event_time(ev),
    )


def event_time(ev: dict[str, Any]) -> str:
    for path in (("lastTimestamp",), ("eventTime",), ("series", "lastObservedTime"), ("metadata", "creationTimestamp")):
        value = get_path(ev, *path)
        if value:
            return str(value)
    return ""


def node_info(node: dict[str, Any]) -> NodeInfo:
    labels = get_path(node, "metadata", "labels", default={})
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/") and "/" in k)
    conditions = get_path(node, "status", "conditions", default=[])
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    problems = [
        f"{c.get('type')}{': ' + c['message'] if c.get('message') else ''}"
        for c in conditions
        if c.get("type") != "Ready" and c.get("status") == "True"
    ]
    addresses = get_path(node, "status", "addresses", default=[])
    ip = next((a.get("address", "") for a in addresses if a.get("type") == "InternalIP"), "")
    taints = [
        f"{t.get('key')}{'=' + t['value'] if t.get('value') else ''}:{t.get('effect')}"
        for t in get_path(node, "spec", "taints", default=[])
    ]
    return NodeInfo(
        name=get_path(node, "metadata", "name", default=""),
        ready=ready,
        roles=roles,
        unschedulable=bool(get_path(node, "spec", "unschedulable", default=False)),
        kubelet_version=get_path(node, "status", "nodeInfo", "kubeletVersion", default=""),
        internal_ip=ip,
        allocatable_cpu=str(get_path(node, "status", "allocatable", "cpu", default="")),
        allocatable_memory=str(get_path(node, "status", "allocatable", "memory", default="")),
        problems=problems,
        taints=taints,
    )


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
