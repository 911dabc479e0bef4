"""The Kubernetes operations behind the MCP infrastructure server's tools.

`KubeOps` wraps the official (synchronous) `kubernetes` client. Every public method is async and
runs the client in a worker thread (`asyncio.to_thread`), so the server's event loop never
blocks on the API. Methods return typed pydantic results and raise `KubeError` with a message
meant for both the model and the human: what went wrong and what to do (a 404 names the object
and the kubectl command to look for it, a 403 names the missing RBAC verb and resource).

Writes are JSON merge patches (`application/merge-patch+json`, RFC 7386), which every API
server (and the kmock emulator in tests) understands:

- `rollout_restart` sets the pod template annotation `kubectl.kubernetes.io/restartedAt`, as
  `kubectl rollout restart` does. Given the same `restarted_at`, a repeated call changes nothing.
- `set_memory_limit` reads the deployment and sends the whole `containers` list with one limit
  changed (a merge patch replaces lists whole), with `metadata.resourceVersion` as a precondition:
  a concurrent change makes the API answer 409 and the read-modify-write is retried, so nothing
  another writer did is lost. Objects are read as raw JSON so fields this client version does
  not model survive the round trip.
- `scale_deployment` patches `spec.replicas`.

All three read the deployment first and skip the patch when it is already in the asked state
(`changed=False`), so repeating a call is harmless.

Long because the operations behind the nine tools share one client, its error explanations
(a 404 or 403 in words, with the kubectl command) and the patch rules above; the typed
results and their parsing are `activities.kube.results`, the configuration `client`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from activities.kube.client import KubeConfigError, KubeError, _one_line, load_api_client
from activities.kube.results import (
    ContainerResources,
    ContainerState,
    EventInfo,
    EventsResult,
    MemoryLimitResult,
    NodeInfo,
    NodesResult,
    PodDescription,
    PodInfo,
    PodLogsResult,
    PodsResult,
    RolloutRestartResult,
    ScaleResult,
    event_info,
    event_time,
    get_path,
    node_info,
    now_rfc3339,
    pod_info,
)

__all__ = [
    "DNS_LABEL",
    "DNS_SUBDOMAIN",
    "MEMORY_QUANTITY",
    "RESTART_ANNOTATION",
    "RFC3339",
    "ContainerResources",
    "ContainerState",
    "EventInfo",
    "EventsResult",
    "KubeConfigError",
    "KubeError",
    "KubeOps",
    "MemoryLimitResult",
    "NodeInfo",
    "NodesResult",
    "PodDescription",
    "PodInfo",
    "PodLogsResult",
    "PodsResult",
    "RolloutRestartResult",
    "ScaleResult",
    "load_api_client",
    "memory_bytes",
]

RESTART_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
MERGE_PATCH = "application/merge-patch+json"

# Argument patterns (also published in the tools' JSON schemas, so the gateway refuses bad
# values before they reach the server).
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"  # namespaces, container names (max 63)
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"  # object names (max 253)
MEMORY_QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
RFC3339 = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"

MIN_MEMORY_LIMIT = 4 * 1024 * 1024  # below this no container runtime starts a container
MAX_PODS = 200
MAX_LOG_BYTES = 256 * 1024
CONFLICT_RETRIES = 3

_SUFFIX = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


def memory_bytes(quantity: str) -> int | None:
    """Bytes in a memory quantity such as "512Mi" or "2G"; None when it is not one."""
    m = _QUANTITY.match(quantity.strip())
    if m is None:
        return None
    return int(float(m.group(1)) * _SUFFIX[m.group(2) or ""])


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class _Op:
    """What a call does, to explain its failure: `patch` `deployments` in `apps`, ns/name."""

    verb: str
    resource: str
    group: str = ""
    namespace: str = ""
    name: str = ""
    kind: str = ""  # e.g. "deployment", for messages
    short: str = ""  # kubectl short name, e.g. "deploy"

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def _api_message(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body:
        try:
            doc = json.loads(body)
        except ValueError:
            return body.strip().splitlines()[0][:300]
        if isinstance(doc, dict) and doc.get("message"):
            return str(doc["message"]).splitlines()[0][:300]
    return str(exc.reason or "").strip() or f"HTTP {exc.status}"


def _explain(exc: ApiException, op: _Op) -> KubeError:
    status = exc.status or 0
    api_says = _api_message(exc)
    ns_flag = f"-n {op.namespace} " if op.namespace else ""
    error = _explain_text(status, api_says, ns_flag, exc, op)
    return KubeError(error, status)


def _explain_text(status: int, api_says: str, ns_flag: str, exc: ApiException, op: _Op) -> str:
    if status == 404:
        if op.name:
            return (
                f"{op.kind} {op.where} not found: check the namespace and name "
                f"(kubectl {ns_flag}get {op.short or op.resource})"
            )
        return f"the Kubernetes API does not serve {op.resource}{_dot(op.group)}: {api_says}"
    if status == 403:
        scope = f"a Role in namespace {op.namespace}" if op.namespace else "a ClusterRole"
        return (
            f"forbidden: the MCP server's Kubernetes identity may not {op.verb} {op.resource}{_dot(op.group)}"
            f"{' in namespace ' + op.namespace if op.namespace else ''}: grant it through {scope} with the rule "
            f'apiGroups: ["{op.group}"], resources: ["{op.resource}"], verbs: ["{op.verb}"] '
            f"(API: {api_says})"
        )
    if status == 401:
        return (
            "the Kubernetes API rejected the MCP server's credentials (401 Unauthorized): "
            "check the kubeconfig user or the service-account token"
        )
    if status == 409:
        return (
            f"{op.kind or op.resource} {op.where} kept changing while it was being updated (409 Conflict): "
            f"try again (API: {api_says})"
        )
    if status in (400, 422):
        return f"the Kubernetes API refused to {op.verb} {op.kind or op.resource} {op.where}: {api_says}"
    if status == 429 or status >= 500:
        return (
            f"the Kubernetes API failed to {op.verb} {op.resource} ({status} {exc.reason}): {api_says}; try again later"
        )
    return f"cannot {op.verb} {op.kind or op.resource} {op.where}: {status} {exc.reason}: {api_says}"


def _dot(group: str) -> str:
    return f".{group}" if group else ""


_T = TypeVar("_T")


# --------------------------------------------------------------------------- operations


class KubeOps:
    """The operations, over one API client. Thread-safe: calls run in worker threads."""

    def __init__(
        self,
        api: k8s_client.ApiClient,
        *,
        where: str = "",
        request_timeout: tuple[float, float] = (5.0, 30.0),
    ) -> None:
        self._api = api
        # The generated client picks JSON Patch (or strategic merge) for PATCH; a second client
        # on the same configuration sends JSON merge patches instead.
        self._patch_api = k8s_client.ApiClient(
            configuration=api.configuration, header_name="Content-Type", header_value=MERGE_PATCH
        )
        self.core = k8s_client.CoreV1Api(api)
        self.apps = k8s_client.AppsV1Api(api)
        self.apps_patch = k8s_client.AppsV1Api(self._patch_api)
        self.host = str(api.configuration.host)
        self.where = where or self.host
        self.timeout = request_timeout

    def close(self) -> None:
        for api in (self._patch_api, self._api):
            api.close()

    # --- plumbing ---------------------------------------------------------------------------

    def _call(self, op: _Op, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the client (in a worker thread) and parse the raw JSON answer."""
        try:
            resp = fn(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
        except ApiException as exc:
            raise _explain(exc, op) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(
                f"cannot reach the Kubernetes API at {self.host}: {_reason(exc)}: "
                "check that the cluster is up and the kubeconfig server address"
            ) from None
        data = resp.data
        if op.resource == "pods/log":
            return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        try:
            return json.loads(data)
        except ValueError:
            raise KubeError(f"the Kubernetes API answered {op.verb} {op.resource} with something not JSON") from None

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.to_thread(fn, *args)

    def _read_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        op = _Op("get", "deployments", "apps", namespace, name, "deployment", "deploy")
        doc: dict[str, Any] = self._call(op, self.apps.read_namespaced_deployment, name, namespace)
        return doc

    def _patch_deployment(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        op = _Op("patch", "deployments", "apps", namespace, name, "deployment", "deploy")
        doc: dict[str, Any] = self._call(op, self.apps_patch.patch_namespaced_deployment, name, namespace, patch)
        return doc

    # --- reads --------------------------------------------------------------------------------

    async def get_nodes(self) -> NodesResult:
        def work() -> NodesResult:
            doc = self._call(_Op("list", "nodes", short="nodes"), self.core.list_node)
            return NodesResult(nodes=[node_info(n) for n in doc.get("items", [])])

        return await self._run(work)

    async def get_pods(self, namespace: str, label_selector: str = "") -> PodsResult:
        def work() -> PodsResult:
            kwargs: dict[str, Any] = {"label_selector": label_selector} if label_selector else {}
            op = _Op("list", "pods", namespace=namespace, short="pods")
            doc = self._call(op, self.core.list_namespaced_pod, namespace, **kwargs)
            items = doc.get("items", [])
            pods = [pod_info(p) for p in items[:MAX_PODS]]
            return PodsResult(
                namespace=namespace, label_selector=label_selector, pods=pods, truncated=len(items) > MAX_PODS
            )

        return await self._run(work)

    def _events(self, namespace: str, name: str = "", kind: str = "") -> list[dict[str, Any]]:
        selector = ",".join(
            s
            for s in (f"involvedObject.name={name}" if name else "", f"involvedObject.kind={kind}" if kind else "")
            if s
        )
        kwargs: dict[str, Any] = {"field_selector": selector} if selector else {}
        op = _Op("list", "events", namespace=namespace, short="events")
        doc = self._call(op, self.core.list_namespaced_event, namespace, **kwargs)
        items = [
            ev
            for ev in doc.get("items", [])
            if (not name or get_path(ev, "involvedObject", "name") == name)
            and (not kind or get_path(ev, "involvedObject", "kind") == kind)
        ]
        items.sort(key=event_time, reverse=True)
        return items

    async def get_events(self, namespace: str, involved_object: str = "", limit: int = 50) -> EventsResult:
        def work() -> EventsResult:
            items = self._events(namespace, involved_object)
            return EventsResult(
                namespace=namespace,
                involved_object=involved_object,
                events=[event_info(e) for e in items[:limit]],
                truncated=len(items) > limit,
            )

        return await self._run(work)

    async def get_pod_logs(
        self, namespace: str, pod: str, container: str = "", tail_lines: int = 100, previous: bool = False
    ) -> PodLogsResult:
        def work() -> PodLogsResult:
            kwargs: dict[str, Any] = {"tail_lines": tail_lines, "limit_bytes": MAX_LOG_BYTES}
            if container:
                kwargs["container"] = container
            if previous:
                kwargs["previous"] = True
            op = _Op("get", "pods/log", "", namespace, pod, "pod", "pods")
            text: str = self._call(op, self.core.read_namespaced_pod_log, pod, namespace, **kwargs)
            truncated = len(text.encode()) >= MAX_LOG_BYTES
            return PodLogsResult(
                namespace=namespace,
                pod=pod,
                container=container,
                previous=previous,
                lines=text.count("\n") + (1 if text and not text.endswith("\n") else 0),
                truncated=truncated,
                log=text,
            )

        return await self._run(work)

    async def describe_pod(self, namespace: str, pod: str) -> PodDescription:
        def work() -> PodDescription:
            op = _Op("get", "pods", "", namespace, pod, "pod", "pods")
            doc = self._call(op, self.core.read_namespaced_pod, pod, namespace)
            owners = get_path(doc, "metadata", "ownerReferences", default=[])
            owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
            conditions = [
                f"{c.get('type')}={c.get('status')}{': ' + c['reason'] if c.get('reason') else ''}"
                f"{' (' + c['message'] + ')' if c.get('message') else ''}"
                for c in get_path(doc, "status", "conditions", default=[])
                if c.get("status") != "True"
            ]
            containers = [
                ContainerResources(
                    name=c.get("name", ""),
                    image=c.get("image", ""),
                    requests={k: str(v) for k, v in get_path(c, "resources", "requests", default={}).items()},
                    limits={k: str(v) for k, v in get_path(c, "resources", "limits", default={}).items()},
                )
                for c in get_path(doc, "spec", "containers", default=[])
            ]
            try:
                events = [event_info(e) for e in self._events(namespace, pod, "Pod")[:20]]
            except KubeError:
                events = []  # events are a bonus: a pod description without them still helps
            return PodDescription(
                pod=pod_info(doc),
                labels={str(k): str(v) for k, v in get_path(doc, "metadata", "labels", default={}).items()},
                owner=f"{owner.get('kind')}/{owner.get('name')}" if owner else "",
                qos_class=get_path(doc, "status", "qosClass", default=""),
                conditions=conditions,
                containers=containers,
                events=events,
            )

        return await self._run(work)

    # --- writes -------------------------------------------------------------------------------

    async def rollout_restart(
        self, namespace: str, deployment: str, restarted_at: str | None = None
    ) -> RolloutRestartResult:
        def work() -> RolloutRestartResult:
            stamp = restarted_at or now_rfc3339()
            current = self._read_deployment(namespace, deployment)
            if get_path(current, "spec", "paused", default=False):
                raise KubeError(
                    f"deployment {namespace}/{deployment} is paused: a restart would not roll out "
                    f"(kubectl -n {namespace} rollout resume deploy/{deployment} first)"
                )
            annotations = get_path(current, "spec", "template", "metadata", "annotations", default={})
            if annotations.get(RESTART_ANNOTATION) == stamp:
                return RolloutRestartResult(
                    namespace=namespace,
                    deployment=deployment,
                    restarted_at=stamp,
                    changed=False,
                    message=f"deployment {namespace}/{deployment} was already restarted at {stamp}: nothing to do",
                )
            patch = {"spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: stamp}}}}}
            self._patch_deployment(namespace, deployment, patch)
            return RolloutRestartResult(
                namespace=namespace,
                deployment=deployment,
                restarted_at=stamp,
                changed=True,
                message=f"deployment {namespace}/{deployment} restarting (restartedAt={stamp}); "
                f"watch it with kubectl -n {namespace} rollout status deploy/{deployment}",
            )

        return await self._run(work)

    async def set_memory_limit(
        self, namespace: str, deployment: str, value: str, container: str | None = None
    ) -> MemoryLimitResult:
        wanted = memory_bytes(value)
        if wanted is None:
            raise KubeError(f"memory limit {value!r} is not a Kubernetes quantity: use e.g. 512Mi or 2Gi")
        if wanted < MIN_MEMORY_LIMIT:
            hint = f": did you mean {value}Mi?" if value.isdigit() else ""
            raise KubeError(f"memory limit {value!r} is {wanted} bytes, below the 4Mi minimum{hint}")

        def work() -> MemoryLimitResult:
            for attempt in range(CONFLICT_RETRIES):
                current = self._read_deployment(namespace, deployment)
                containers: list[dict[str, Any]] = get_path(
                    current, "spec", "template", "spec", "containers", default=[]
                )
                names = [c.get("name", "") for c in containers]
                if container is None:
                    if len(containers) != 1:
                        raise KubeError(
                            f"deployment {namespace}/{deployment} has {len(containers)} containers "
                            f"({', '.join(names)}): name the one to change with the container argument"
                        )
                    target = containers[0]
                else:
                    found = [c for c in containers if c.get("name") == container]
                    if not found:
                        raise KubeError(
                            f"deployment {namespace}/{deployment} has no container {container!r}: "
                            f"its containers are {', '.join(names) or 'none'}"
                        )
                    target = found[0]
                name = str(target.get("name", ""))
                resources = target.setdefault("resources", {})
                limits = resources.setdefault("limits", {})
                previous = limits.get("memory")
                if previous is not None and memory_bytes(str(previous)) == wanted:
                    return MemoryLimitResult(
                        namespace=namespace,
                        deployment=deployment,
                        container=name,
                        previous=str(previous),
                        value=value,
                        changed=False,
                        message=f"container {name} of deployment {namespace}/{deployment} already has "
                        f"memory limit {previous}: nothing to do",
                    )
                request = get_path(resources, "requests", "memory")
                request_bytes = memory_bytes(str(request)) if request is not None else None
                if request_bytes is not None and request_bytes > wanted:
                    raise KubeError(
                        f"memory limit {value} is below the memory request {request} of container {name} in "
                        f"deployment {namespace}/{deployment}: choose a limit of at least {request}"
                    )
                limits["memory"] = value
                patch = {
                    "metadata": {"resourceVersion": get_path(current, "metadata", "resourceVersion")},
                    "spec": {"template": {"spec": {"containers": containers}}},
                }
                if patch["metadata"]["resourceVersion"] is None:
                    del patch["metadata"]
                try:
                    self._patch_deployment(namespace, deployment, patch)
                except KubeError as exc:
                    if exc.status == 409 and attempt + 1 < CONFLICT_RETRIES:
                        continue
                    raise
                return MemoryLimitResult(
                    namespace=namespace,
                    deployment=deployment,
                    container=name,
                    previous=None if previous is None else str(previous),
                    value=value,
                    changed=True,
                    message=f"memory limit of container {name} in deployment {namespace}/{deployment} set to "
                    f"{value} (was {previous or 'unset'}); pods roll out with the new limit",
                )
            raise KubeError(f"deployment {namespace}/{deployment} kept changing: try again")  # pragma: no cover

        return await self._run(work)

    async def scale_deployment(self, namespace: str, deployment: str, replicas: int) -> ScaleResult:
        def work() -> ScaleResult:
            current = self._read_deployment(namespace, deployment)
            previous = int(get_path(current, "spec", "replicas", default=1))
            if previous == replicas:
                return ScaleResult(
                    namespace=namespace,
                    deployment=deployment,
                    previous=previous,
                    replicas=replicas,
                    changed=False,
                    message=f"deployment {namespace}/{deployment} already has {replicas} replicas: nothing to do",
                )
            self._patch_deployment(namespace, deployment, {"spec": {"replicas": replicas}})
            return ScaleResult(
                namespace=namespace,
                deployment=deployment,
                previous=previous,
                replicas=replicas,
                changed=True,
                message=f"deployment {namespace}/{deployment} scaled from {previous} to {replicas} replicas",
            )

        return await self._run(work)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        return _reason(reason)
    text = _one_line(exc)
    # urllib3 wraps the socket error in a long sentence; keep its tail.
    if "]" in text and "Errno" in text:
        text = text[text.rfind("[Errno") :].rstrip(")'\"")
    return text
