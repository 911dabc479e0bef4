"""The world outside the platform, for the acceptance tests: what a README reader has around them.

- `BackgroundLoop`: an event loop in a thread, where the fakes of outside services live (the
  Bot API emulator, kmock, fake Home Assistant and Sonarr, a fake cloud model), so the tests
  themselves stay plain: they run the README's commands as subprocesses and wait for them.
- `Cluster`: kmock (the emulated Kubernetes API) behind a small front that answers the one
  request kmock 0.8 cannot (`GET /api/v1/namespaces`), and plays ArgoCD (a requested sync
  finishes Synced and Healthy) and the kubelet (a DNS probe pod succeeds) right after the
  request that would make them act. Its kubeconfig is what `AGENTIC_KUBECONFIG` points at.
- Alertmanager webhook payloads rendered from real alerting rules (kube-prometheus).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import kmock
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.env import CORPORA, REPO, free_port
from tests.support.http_server import LoopServer
from tests.support.kmock_helpers import seed as seed_workloads
from tests.support.kmock_helpers import write_kubeconfig

T = TypeVar("T")

RULES_DIR = CORPORA / "kube-prometheus-rules"
WAVES_FILE = REPO / "deploy" / "waves.yaml"
APPS = "argoproj.io/v1alpha1/applications"


# --------------------------------------------------------------------------- the loop


class BackgroundLoop:
    """An asyncio loop in a daemon thread; `run` a coroutine there and wait for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._stack = AsyncExitStack()
        self._thread = threading.Thread(target=self._serve, name="outside-world", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run `fn` in the loop's thread (to read what the fakes there keep, without racing them)."""

        async def in_loop() -> T:
            return fn()

        return self.run(in_loop(), timeout)

    def enter(self, cm: contextlib.AbstractAsyncContextManager[T]) -> T:
        """Enter an async context manager in the loop; it is left when the loop closes."""
        return self.run(self._stack.enter_async_context(cm))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self._stack.aclose(), timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@asynccontextmanager
async def serving(server: T) -> AsyncIterator[T]:
    """A fake server with `start()`/`stop()` (tests/support/fake_apps.py, fake_openai.py) as an async context."""
    await server.start()  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        await server.stop()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the cluster


def raw_or_none(k: kmock.KubernetesEmulator, key: Any) -> dict[str, Any] | None:
    """The stored object, or None when it was deleted (kmock keeps soft-deleted keys)."""
    try:
        return dict(k.objects[key].raw)
    except (KeyError, ValueError):
        return None


def _application(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {
            "project": "default",
            "source": {"repoURL": "https://git.example/platform.git", "path": f"apps/{name}", "targetRevision": "HEAD"},
            "destination": {"server": "https://kubernetes.default.svc"},
        },
        "status": {
            "sync": {"status": "OutOfSync", "revision": f"sha-old-{name}"},
            "health": {"status": "Healthy"},
            "operationState": {"phase": "Succeeded", "startedAt": "2025-12-31T00:00:00Z"},
        },
    }


def wave_applications() -> dict[int, list[str]]:
    """Per wave of deploy/waves.yaml, the ArgoCD Applications it syncs (prerequisites first)."""
    doc = yaml.safe_load(WAVES_FILE.read_text())
    return {int(w["wave"]): [*w.get("prerequisites", []), *w.get("applications", [])] for w in doc["waves"]}


def seed_platform(k: kmock.KubernetesEmulator) -> None:
    """What the rollout finds in a fresh cluster: ArgoCD with the platform's Applications
    (OutOfSync), the platform namespaces, a labelled GPU node, a Qdrant StatefulSet pod."""
    k.resources["v1/namespaces"] = kmock.ResourceInfo(namespaced=False, kind="Namespace")
    k.resources["v1/pods"] = kmock.ResourceInfo(namespaced=True, kind="Pod")
    k.resources[APPS] = kmock.ResourceInfo(namespaced=True, kind="Application")
    for kind in ("statefulsets", "daemonsets"):
        k.resources[f"apps/v1/{kind}"] = kmock.ResourceInfo(namespaced=True, kind=kind[:-1].title())
    for ns in (
        "argocd",
        "media",
        "ai-inference",
        "ai-router",
        "ai-agents",
        "ai-tools",
        "ai-vector",
        "ai-observability",
    ):
        k.objects["v1/namespaces", None, ns] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    k.objects["v1/nodes", None, "gpu-1"] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "gpu-1", "labels": {"nvidia.com/gpu.product": "NVIDIA-GeForce-RTX-4090"}},
    }
    for apps in wave_applications().values():
        for app in apps:
            k.objects[APPS, "argocd", app] = _application(app)


@dataclass
class Cluster:
    """kmock behind the front; `kubeconfig` is what AGENTIC_KUBECONFIG points at."""

    k: kmock.KubernetesEmulator
    kmock_url: str
    kubeconfig: Path
    port: int = 0
    synced: int = 0

    def requests(self, method: str | None = None, name: str | None = None) -> list[kmock.Request]:
        return [r for r in list(self.k) if (method is None or r.method == method) and (name is None or r.name == name)]

    def sync_requests(self, app: str) -> list[dict[str, Any]]:
        return [
            r.data
            for r in self.requests("PATCH", app)
            if "applications" in str(r.url) and isinstance(r.data, dict) and "operation" in r.data
        ]

    def act(self) -> None:
        """One pass of the fake ArgoCD (a requested sync finishes) and kubelet (a DNS probe succeeds)."""
        for key in list(self.k.objects.keys()):
            res, _ns, name = key
            raw = raw_or_none(self.k, key)
            if raw is None:
                continue
            if res.plural == "applications" and "operation" in raw:
                op = raw.pop("operation") or {}
                rev = (op.get("sync") or {}).get("revision") or "HEAD"
                self.synced += 1
                raw["status"] = {
                    "sync": {"status": "Synced", "revision": f"sha-new-{name}" if rev == "HEAD" else rev},
                    "health": {"status": "Healthy"},
                    "operationState": {
                        "phase": "Succeeded",
                        "startedAt": f"2026-01-01T00:{self.synced // 60:02d}:{self.synced % 60:02d}Z",
                        "message": "successfully synced (all tasks run)",
                        "operation": op,
                    },
                }
                self.k.objects[key] = raw
            elif (
                res.plural == "pods"
                and name.startswith("rollout-dns-probe-")
                and (raw.get("status") or {}).get("phase") != "Succeeded"
            ):
                raw["status"] = {"phase": "Succeeded"}
                self.k.objects[key] = raw

    async def _front(self, request: Request) -> Response:
        path = request.url.path
        if request.method == "GET" and path == "/api/v1/namespaces":
            found = [raw_or_none(self.k, key) for key in list(self.k.objects) if key[0].plural == "namespaces"]
            items = [o for o in found if o is not None]
            return JSONResponse({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {}, "items": items})
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with httpx.AsyncClient(base_url=self.kmock_url, timeout=30) as http:
            upstream = await http.request(
                request.method, path, params=list(request.query_params.multi_items()), headers=headers,
                content=await request.body(),
            )  # fmt: skip
        if request.method in ("PATCH", "POST", "PUT"):
            self.act()  # ArgoCD and the kubelet answer at once: no test waits on a poll interval
        keep = {k: v for k, v in upstream.headers.items() if k.lower() in ("content-type",)}
        return Response(upstream.content, status_code=upstream.status_code, headers=keep)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def emulated_cluster(tmp: Path) -> AsyncIterator[Cluster]:
    """kmock with the workloads of tests/kmock_helpers (deployments in `media`) and the
    platform's rollout objects, behind the front on a free port."""
    async with kmock.KubernetesEmulator() as k, kmock.Server(k) as srv:
        seed_workloads(k)
        seed_platform(k)
        cluster = Cluster(k=k, kmock_url=str(srv.url).rstrip("/"), kubeconfig=tmp / "kubeconfig.yaml")
        cluster.port = free_port()
        front = LoopServer()
        routes = [Route("/{path:path}", cluster._front, methods=["GET", "POST", "PATCH", "PUT", "DELETE"])]
        await front.start(Starlette(routes=routes), cluster.port)
        write_kubeconfig(cluster.kubeconfig, cluster.url)

        async def kubelet() -> None:  # a safety net beside the act-on-request above
            while True:
                cluster.act()
                await asyncio.sleep(0.2)

        task = asyncio.create_task(kubelet())
        try:
            yield cluster
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await front.stop()


# --------------------------------------------------------------------------- alerts


def kube_prometheus_rule(alert: str) -> dict[str, Any]:
    """The alerting rule named `alert` in kube-prometheus's PrometheusRule manifests."""
    for path in sorted(RULES_DIR.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        for group in (doc.get("spec") or {}).get("groups", []):
            for rule in group.get("rules", []):
                if rule.get("alert") == alert:
                    return dict(rule)
    raise LookupError(f"no rule {alert} under {RULES_DIR}")


_LABEL = re.compile(r"\{\{\s*\$labels\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_VALUE = re.compile(r"\{\{\s*(?:printf\s+\"[^\"]*\"\s+)?\$value[^}]*\}\}")


def render(template: str, labels: dict[str, str], value: str) -> str:
    """A rule annotation as Prometheus renders it for one alert ($labels.X and $value)."""
    return _VALUE.sub(value, _LABEL.sub(lambda m: labels.get(m.group(1), ""), template))


def fingerprint(labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


def alert_from_rule(alert: str, labels: dict[str, str], value: str = "1") -> dict[str, Any]:
    """One firing alert of the kube-prometheus rule `alert`, with its target's labels."""
    rule = kube_prometheus_rule(alert)
    full = {"alertname": alert, **{k: str(v) for k, v in (rule.get("labels") or {}).items()}, **labels}
    annotations = {k: render(str(v), full, value) for k, v in (rule.get("annotations") or {}).items()}
    return alert_of(full, annotations)


def alert_of(labels: dict[str, str], annotations: dict[str, str], status: str = "firing") -> dict[str, Any]:
    return {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": "2026-11-21T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.local/graph?g0.expr=...",
        "fingerprint": fingerprint(labels),
    }


def webhook(alerts: list[dict[str, Any]], group_by: tuple[str, ...] = ("alertname", "namespace")) -> dict[str, Any]:
    """An Alertmanager (version 4) webhook payload for one group of `alerts`."""
    group = {k: alerts[0]["labels"][k] for k in group_by if k in alerts[0]["labels"]}
    common_labels = {k: v for k, v in alerts[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts)}
    common_ann = {
        k: v for k, v in alerts[0]["annotations"].items() if all(a["annotations"].get(k) == v for a in alerts)
    }
    key = ", ".join(f'{k}="{v}"' for k, v in group.items())
    return {
        "version": "4",
        "groupKey": f"{{}}:{{{key}}}",
        "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": "agentic",
        "groupLabels": group,
        "commonLabels": common_labels,
        "commonAnnotations": common_ann,
        "externalURL": "http://alertmanager.local",
        "alerts": alerts,
    }
