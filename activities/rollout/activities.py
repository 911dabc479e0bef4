"""Rollout activities: the I/O of `RolloutWorkflow`.

The worker builds one `RolloutActivities(kube, plan, qdrant=..., postgres=...)` and registers
its bound methods (`RolloutActivities.all()` lists them):

- `rollout.load_plan` (LoadPlanInput -> LoadPlanResult): the waves `from_wave..to_wave` of the plan
- `rollout.record` (RecordInput -> RecordResult): each Application's revision and values, before apply
- `rollout.apply` (ApplyInput -> ApplyResult): values toggles, ArgoCD sync per Application, wait Synced+Healthy
- `rollout.rollback` (RollbackInput -> ApplyResult): targetRevision (and values) back to the recorded ones, sync
- `rollout.check_namespaces` (CheckInput -> CheckResult): every listed namespace exists
- `rollout.check_gpu_nodes` (CheckInput -> CheckResult): at least `min_nodes` nodes carry the GPU product label
- `rollout.check_no_pinned_pods` (CheckInput -> CheckResult): no workload template (or bare pod) pinned to a node name
- `rollout.check_dns` (CheckInput -> CheckResult): a probe Pod running nslookup succeeds (DNS past NetworkPolicies)
- `rollout.check_qdrant` (CheckInput -> CheckResult): a write then read through the Qdrant probe client
- `rollout.check_postgres` (CheckInput -> CheckResult): the PostgreSQL probe client answers
- `rollout.check_inference` (CheckInput -> CheckResult): an OpenAI-compatible endpoint streams tokens
- `rollout.check_persistence` (CheckInput -> CheckResult): a marker written to a store survives deleting its pod
- `rollout.check_router`, `rollout.check_agents`, `rollout.check_allowlists`, `rollout.check_timeouts`,
  `rollout.check_unauthorized`, `rollout.check_guardrail_events`: the agents and their guardrails
  (`activities.rollout.agent_checks`)

Kubernetes is reached through its HTTP API (`KubeClient`, async httpx). A sync is requested the
way the argocd CLI does it: a merge patch of the Application's `operation` field; ArgoCD clears
the field when it starts, and the activity waits (heartbeating) for a new
`status.operationState` that succeeded with `status.sync.status` Synced and
`status.health.status` Healthy. A check's negative answer is a `CheckResult(passed=False)`;
an exception means "could not tell" and is retried by Temporal.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.kube.client import KubeClient, KubeError
from activities.rollout.agent_checks import AgentChecks
from activities.rollout.gateway_check import check_gateway
from activities.rollout.pods import pinned as _pinned
from activities.rollout.pods import ready as _ready
from activities.rollout.probes import PostgresProbe, QdrantHttpProbe, StoreProbe
from activities.rollout.telemetry_checks import TelemetryChecks

if TYPE_CHECKING:
    from temporalio.client import Client

    from activities.tools.gateway import ToolActivities

from agentic_core.rollout import (
    ApplyInput,
    ApplyResult,
    AppRevision,
    AppSyncResult,
    CheckInput,
    CheckResult,
    LoadPlanInput,
    LoadPlanResult,
    RecordInput,
    RecordResult,
    RollbackInput,
    RolloutPlan,
    ValuesToggle,
    dotted_to_nested,
    load_plan,
    lookup,
)

ARGO_APPS = "/apis/argoproj.io/v1alpha1/namespaces/{ns}/applications"
GPU_LABEL = "nvidia.com/gpu.product"
INITIATOR = "agentic-rollout"


def _app_path(ns: str, name: str) -> str:
    return f"{ARGO_APPS.format(ns=ns)}/{name}"


def _sync_view(app: dict[str, Any], name: str) -> AppSyncResult:
    status = app.get("status") or {}
    op = status.get("operationState") or {}
    return AppSyncResult(
        application=name,
        revision=str((status.get("sync") or {}).get("revision") or ""),
        sync_status=str((status.get("sync") or {}).get("status") or ""),
        health_status=str((status.get("health") or {}).get("status") or ""),
        phase=str(op.get("phase") or ""),
        message=str(op.get("message") or (status.get("health") or {}).get("message") or ""),
    )


def _heartbeat(*details: Any) -> None:
    if activity.in_activity():
        activity.heartbeat(*details)


@dataclass
class RolloutActivities:
    kube: KubeClient
    plan: RolloutPlan
    qdrant: StoreProbe | None = None
    postgres: StoreProbe | None = None
    http: httpx.AsyncClient | None = None  # for the inference check; one is made when None
    poll_interval_s: float = 5.0
    gateway: ToolActivities | None = None  # the worker's tool gateway, for the guardrail checks
    temporal: Client | None = None  # the worker's Temporal client, for the router check
    task_queue: str | None = None  # where the router check's requests go
    agents: AgentChecks = field(init=False)

    def __post_init__(self) -> None:
        self.agents = AgentChecks(self.kube, self.gateway, self.temporal, self.task_queue)

    @classmethod
    def build(
        cls,
        *,
        kubeconfig: Path | None = None,
        waves_file: Path | None = None,
        qdrant_url: str | None = None,
        qdrant_api_key: str | None = None,
        postgres_dsn: str | None = None,
        gateway: ToolActivities | None = None,
        temporal: Client | None = None,
        task_queue: str | None = None,
    ) -> RolloutActivities:
        """What the worker builds: the cluster as `activities.kube.client.load_api_client` finds it
        (`kubeconfig`, else in-cluster, else the default kubeconfig, as the infrastructure tools), the
        plan from `waves_file` (else deploy/waves.yaml), probes for the stores it can reach, and the
        worker's tool gateway and Temporal client for the agents' checks."""
        kube = KubeClient.from_kubeconfig(kubeconfig)
        qdrant: StoreProbe | None = None
        if qdrant_url:
            headers = {"api-key": qdrant_api_key} if qdrant_api_key else {}
            qdrant = QdrantHttpProbe(httpx.AsyncClient(base_url=qdrant_url, headers=headers, timeout=30.0))
        return cls(
            kube=kube,
            plan=load_plan(waves_file) if waves_file else load_plan(),
            qdrant=qdrant,
            postgres=PostgresProbe(postgres_dsn) if postgres_dsn else None,
            gateway=gateway,
            temporal=temporal,
            task_queue=task_queue,
        )

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.load_plan,
            self.record,
            self.apply,
            self.rollback,
            self.check_namespaces,
            self.check_gpu_nodes,
            self.check_no_pinned_pods,
            self.check_dns,
            self.check_qdrant,
            self.check_postgres,
            self.check_inference,
            self.check_persistence,
            check_gateway,
            *self.agents.all(),
            *TelemetryChecks(self.http).all(),
        ]

    # -- plan, apply, rollback --------------------------------------------------------------------

    @activity.defn(name="rollout.load_plan")
    async def load_plan(self, inp: LoadPlanInput) -> LoadPlanResult:
        waves = [w for w in self.plan.waves if inp.from_wave <= w.wave <= inp.to_wave]
        return LoadPlanResult(argocd_namespace=self.plan.argocd_namespace, waves=waves)

    @activity.defn(name="rollout.record")
    async def record(self, inp: RecordInput) -> RecordResult:
        out: list[AppRevision] = []
        for name in inp.applications:
            app = await self.kube.get_or_none(_app_path(inp.argocd_namespace, name))
            if app is None:
                out.append(AppRevision(application=name, exists=False))
                continue
            spec_source = (app.get("spec") or {}).get("source") or {}
            values = (spec_source.get("helm") or {}).get("valuesObject") or {}
            toggled = [k for t in inp.toggled if t.application == name for k in t.values]
            out.append(
                AppRevision(
                    application=name,
                    previous_revision=str(((app.get("status") or {}).get("sync") or {}).get("revision") or ""),
                    target_revision=str(spec_source.get("targetRevision") or ""),
                    previous_values={k: lookup(values, k) for k in toggled},
                )
            )
        return RecordResult(applications=out)

    @activity.defn(name="rollout.apply")
    async def apply(self, inp: ApplyInput) -> ApplyResult:
        ns = inp.argocd_namespace
        results: list[AppSyncResult] = []
        names = list(inp.applications)
        names += [t.application for t in inp.values if t.application not in names]
        for name in names:
            if await self.kube.get_or_none(_app_path(ns, name)) is None:
                return ApplyResult(ok=False, reason=f"Application {ns}/{name} not found")
        if inp.dry_run:
            for name in names:
                view = _sync_view(await self.kube.get(_app_path(ns, name)), name)
                view.ok = True
                view.message = "dry run: not synced"
                results.append(view)
            return ApplyResult(ok=True, applications=results)
        for toggle in inp.values:
            body = {"spec": {"source": {"helm": {"valuesObject": dotted_to_nested(toggle.values)}}}}
            await self.kube.merge_patch(_app_path(ns, toggle.application), body)
        deadline = time.monotonic() + inp.timeout_s
        for name in names:
            res = await self._sync(ns, name, None, deadline)
            results.append(res)
            if not res.ok:
                return ApplyResult(ok=False, applications=results, reason=f"{name}: {res.message or res.phase}")
        return ApplyResult(ok=True, applications=results)

    @activity.defn(name="rollout.rollback")
    async def rollback(self, inp: RollbackInput) -> ApplyResult:
        ns = inp.argocd_namespace
        deadline = time.monotonic() + inp.timeout_s
        results: list[AppSyncResult] = []
        reasons: list[str] = []
        toggled: dict[str, ValuesToggle] = {t.application: t for t in inp.toggled}
        for rec in inp.recorded:
            if not rec.exists:
                continue
            patch: dict[str, Any] = {}
            if rec.previous_revision:
                patch["targetRevision"] = rec.previous_revision
            if rec.application in toggled:
                patch["helm"] = {"valuesObject": dotted_to_nested(dict(rec.previous_values))}
            if not patch:
                reasons.append(f"{rec.application}: no previous revision (first install), left as is")
                results.append(AppSyncResult(application=rec.application, message="no previous revision"))
                continue
            await self.kube.merge_patch(_app_path(ns, rec.application), {"spec": {"source": patch}})
            res = await self._sync(ns, rec.application, rec.previous_revision or None, deadline)
            results.append(res)
            if not res.ok:
                reasons.append(f"{rec.application}: rollback sync {res.phase or 'did not finish'} {res.message}")
        return ApplyResult(ok=not reasons, applications=results, reason="; ".join(reasons))

    async def _sync(self, ns: str, name: str, revision: str | None, deadline: float) -> AppSyncResult:
        """Request a sync (as `argocd app sync` does) and wait for its outcome, heartbeating."""
        path = _app_path(ns, name)
        app = await self.kube.get(path)
        before = ((app.get("status") or {}).get("operationState") or {}).get("startedAt")
        target = revision or str(((app.get("spec") or {}).get("source") or {}).get("targetRevision") or "")
        sync: dict[str, Any] = {"syncStrategy": {"hook": {}}}
        if target:
            sync["revision"] = target
        await self.kube.merge_patch(
            path, {"operation": {"initiatedBy": {"username": INITIATOR, "automated": False}, "sync": sync}}
        )
        view = _sync_view(app, name)
        while time.monotonic() < deadline:
            _heartbeat(f"sync {name}")
            app = await self.kube.get(path)
            view = _sync_view(app, name)
            started = ((app.get("status") or {}).get("operationState") or {}).get("startedAt")
            if app.get("operation") is None and started and started != before:
                if view.phase in ("Failed", "Error"):
                    return view
                if view.phase == "Succeeded" and view.sync_status == "Synced" and view.health_status == "Healthy":
                    view.ok = True
                    return view
                if view.health_status == "Degraded":
                    view.message = view.message or "health Degraded"
                    return view
            await asyncio.sleep(self.poll_interval_s)
        view.message = f"timed out waiting for Synced+Healthy ({view.phase}/{view.sync_status}/{view.health_status})"
        return view

    # -- checks ---------------------------------------------------------------------------------

    @activity.defn(name="rollout.check_namespaces")
    async def check_namespaces(self, inp: CheckInput) -> CheckResult:
        wanted = [str(n) for n in inp.check.params.get("namespaces", [])]
        have = {str((n.get("metadata") or {}).get("name")) for n in await self.kube.items("/api/v1/namespaces")}
        missing = [n for n in wanted if n not in have]
        return CheckResult(
            name=inp.check.name,
            passed=not missing,
            detail=f"missing namespaces: {', '.join(missing)}" if missing else f"{len(wanted)} namespaces present",
        )

    @activity.defn(name="rollout.check_gpu_nodes")
    async def check_gpu_nodes(self, inp: CheckInput) -> CheckResult:
        label = str(inp.check.params.get("label", GPU_LABEL))
        need = int(inp.check.params.get("min_nodes", 1))
        found: dict[str, str] = {}
        for node in await self.kube.items("/api/v1/nodes"):
            meta = node.get("metadata") or {}
            labels = meta.get("labels") or {}
            if label in labels:
                found[str(meta.get("name"))] = str(labels[label])
        detail = ", ".join(f"{n}={p}" for n, p in sorted(found.items())) or f"no node has {label}"
        return CheckResult(name=inp.check.name, passed=len(found) >= need, detail=f"{len(found)}/{need}: {detail}")

    @activity.defn(name="rollout.check_no_pinned_pods")
    async def check_no_pinned_pods(self, inp: CheckInput) -> CheckResult:
        pinned: list[str] = []
        for ns in [str(n) for n in inp.check.params.get("namespaces", [])]:
            for kind in ("deployments", "statefulsets", "daemonsets"):
                for obj in await self._items_or_empty(f"/apis/apps/v1/namespaces/{ns}/{kind}"):
                    tmpl = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
                    if _pinned(tmpl):
                        pinned.append(f"{kind}/{ns}/{(obj.get('metadata') or {}).get('name')}")
            for pod in await self._items_or_empty(f"/api/v1/namespaces/{ns}/pods"):
                meta = pod.get("metadata") or {}
                spec = pod.get("spec") or {}
                # A scheduled pod has spec.nodeName; only a bare pod (no owner) was pinned by its author.
                if not meta.get("ownerReferences") and (spec.get("nodeName") or _pinned(spec)):
                    pinned.append(f"pod/{ns}/{meta.get('name')}")
        return CheckResult(
            name=inp.check.name,
            passed=not pinned,
            detail=f"pinned to a node: {', '.join(pinned)}" if pinned else "nothing pinned to a node name",
        )

    async def _items_or_empty(self, path: str) -> list[dict[str, Any]]:
        try:
            return await self.kube.items(path)
        except KubeError as exc:
            if exc.status == 404:
                return []
            raise

    @activity.defn(name="rollout.check_dns")
    async def check_dns(self, inp: CheckInput) -> CheckResult:
        p = inp.check.params
        ns = str(p.get("namespace", "default"))
        host = str(p.get("host", "kubernetes.default.svc.cluster.local"))
        info = activity.info()
        digest = hashlib.sha256(f"{info.workflow_run_id}/{info.activity_id}".encode()).hexdigest()[:8]
        name = f"rollout-dns-probe-w{inp.wave}-{digest}-{info.attempt}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": {"app.kubernetes.io/name": "rollout-dns-probe", "app.kubernetes.io/part-of": "agentic"},
            },
            "spec": {
                "restartPolicy": "Never",
                # passes the "restricted" Pod Security Standard the platform namespaces enforce
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65534,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "nslookup",
                        "image": str(p.get("image", "busybox:1.36")),
                        "command": ["nslookup", host],
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        }
        path = f"/api/v1/namespaces/{ns}/pods"
        await self.kube.create(path, pod)
        try:
            deadline = time.monotonic() + float(p.get("timeout_s", 180))
            phase = ""
            while time.monotonic() < deadline:
                _heartbeat(f"dns probe {name}: {phase or 'created'}")
                got = await self.kube.get_or_none(f"{path}/{name}")
                phase = str(((got or {}).get("status") or {}).get("phase") or "")
                if phase == "Succeeded":
                    return CheckResult(name=inp.check.name, passed=True, detail=f"{host} resolves from {ns}")
                if phase == "Failed":
                    return CheckResult(name=inp.check.name, passed=False, detail=f"nslookup {host} failed in {ns}")
                await asyncio.sleep(self.poll_interval_s)
            return CheckResult(
                name=inp.check.name, passed=False, detail=f"probe pod {ns}/{name} still {phase or 'unknown'}"
            )
        finally:
            await self.kube.delete(f"{path}/{name}")

    @activity.defn(name="rollout.check_qdrant")
    async def check_qdrant(self, inp: CheckInput) -> CheckResult:
        store = self._store("qdrant")
        scope = str(inp.check.params.get("collection", "rollout_probe"))
        key, value = f"wave-{inp.wave}-{uuid.uuid4().hex}", uuid.uuid4().hex
        await store.put(scope, key, value)
        got = await store.get(scope, key)
        ok = got == value
        return CheckResult(
            name=inp.check.name,
            passed=ok,
            detail="write/read round trip ok" if ok else f"wrote {value!r}, read back {got!r}",
        )

    @activity.defn(name="rollout.check_postgres")
    async def check_postgres(self, inp: CheckInput) -> CheckResult:
        try:
            version = await self._store("postgres").ping()
        except (OSError, TimeoutError) as exc:
            return CheckResult(name=inp.check.name, passed=False, detail=f"PostgreSQL unreachable: {exc}")
        return CheckResult(name=inp.check.name, passed=True, detail=version[:120])

    @activity.defn(name="rollout.check_inference")
    async def check_inference(self, inp: CheckInput) -> CheckResult:
        p = inp.check.params
        url = str(p.get("url", "")).rstrip("/")
        need = int(p.get("min_chunks", 2))
        body = {
            "model": str(p.get("model", "default")),
            "stream": True,
            "max_tokens": int(p.get("max_tokens", 16)),
            "messages": [{"role": "user", "content": str(p.get("prompt", "Say hello."))}],
        }
        http = self.http or httpx.AsyncClient()
        chunks = 0
        text = ""
        try:
            timeout = httpx.Timeout(float(p.get("timeout_s", 120)), connect=10.0)
            async with http.stream("POST", f"{url}/chat/completions", json=body, timeout=timeout) as r:
                if r.status_code >= 400:
                    await r.aread()
                    return CheckResult(name=inp.check.name, passed=False, detail=f"{r.status_code}: {r.text[:200]}")
                async for line in r.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line.removeprefix("data:").strip()
                    if data == "[DONE]":
                        break
                    delta = ((json.loads(data).get("choices") or [{}])[0].get("delta") or {}).get("content")
                    if delta:
                        chunks += 1
                        text += str(delta)
                        _heartbeat(f"{chunks} chunks")
        except httpx.ConnectError as exc:
            return CheckResult(name=inp.check.name, passed=False, detail=f"{url}: {exc}")
        finally:
            if self.http is None:
                await http.aclose()
        return CheckResult(
            name=inp.check.name, passed=chunks >= need, detail=f"{chunks} streamed chunks: {text[:80]!r}"
        )

    @activity.defn(name="rollout.check_persistence")
    async def check_persistence(self, inp: CheckInput) -> CheckResult:
        p = inp.check.params
        kind = str(p.get("store", "qdrant"))
        store = self._store(kind)
        ns, pod_name = str(p["namespace"]), str(p["pod"])
        path = f"/api/v1/namespaces/{ns}/pods/{pod_name}"
        scope = "rollout_persistence" if kind == "postgres" else str(p.get("collection", "rollout_probe"))
        key, value = f"persist-{inp.wave}-{uuid.uuid4().hex}", uuid.uuid4().hex
        await store.put(scope, key, value)
        before = await self.kube.get(path)
        old_uid = (before.get("metadata") or {}).get("uid")
        await self.kube.delete(path)
        deadline = time.monotonic() + float(p.get("timeout_s", 600))
        while True:
            _heartbeat(f"waiting for {ns}/{pod_name} to come back")
            pod = await self.kube.get_or_none(path)
            if pod is not None and (pod.get("metadata") or {}).get("uid") != old_uid and _ready(pod):
                break
            if time.monotonic() >= deadline:
                return CheckResult(name=inp.check.name, passed=False, detail=f"{ns}/{pod_name} did not come back Ready")
            await asyncio.sleep(self.poll_interval_s)
        got = await store.get(scope, key)
        ok = got == value
        return CheckResult(
            name=inp.check.name,
            passed=ok,
            detail=f"{kind} kept the marker across a restart of {ns}/{pod_name}"
            if ok
            else f"{kind} lost the marker after {ns}/{pod_name} restarted (read {got!r})",
        )

    def _store(self, kind: str) -> StoreProbe:
        store = self.qdrant if kind == "qdrant" else self.postgres if kind == "postgres" else None
        if store is None:
            raise ApplicationError(f"no {kind} probe client configured on the worker", non_retryable=True)
        return store
