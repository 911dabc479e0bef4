"""`RolloutWorkflow` on the time-skipping server; its Kubernetes activities against kmock.

The cluster is kmock's emulated API with two small fake controllers in the test's event loop:
an "ArgoCD" that answers a sync request (the `operation` field) with a finished operation,
and a "kubelet" that sets the DNS probe pod's phase and brings a deleted StatefulSet pod back
with a new uid. Qdrant and PostgreSQL are in-memory fakes behind the probe interface; the
inference endpoint is a tiny local server streaming OpenAI-style chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import kmock
import pgserver
import pytest
from aiohttp import web
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.kube.client import KubeClient
from activities.rollout.activities import RolloutActivities
from activities.rollout.probes import PostgresProbe, QdrantHttpProbe
from agentic_core import search_attributes as sa
from agentic_core.agents import Route, RouteInput, RouteMethod
from agentic_core.incident import (
    QUERY_APPROVAL,
    UPDATE_DECIDE,
    ApprovalState,
    DecideInput,
    DecideResult,
    NotifyInput,
    NotifyResult,
    plan_hash,
)
from agentic_core.rollout import (
    CHECK_ACTIVITIES,
    QUERY_ROLLOUT,
    ApplyInput,
    ApplyResult,
    Check,
    CheckInput,
    PlanError,
    RecordInput,
    RollbackInput,
    RolloutInput,
    RolloutPlan,
    RolloutState,
    RolloutStatus,
    load_plan,
    parse_plan,
)
from tests.support.agent_fakes import FakeAgentWorkflow
from tests.support.env import REPO, free_port
from tests.support.kmock_helpers import write_kubeconfig
from tests.support.pg import create_database, pg_server
from tests.support.temporal import time_skipping_with_attributes
from workers.sandbox import workflow_runner
from workflows.approval import ApprovalWorkflow
from workflows.rollout import RolloutWorkflow
from workflows.route_probe import RouteProbeWorkflow

APPS = "argoproj.io/v1alpha1/applications"
ARGO_NS = "argocd"
NAMESPACES = ["argocd", "ai-inference", "ai-router", "ai-agents", "ai-tools", "ai-vector", "ai-observability"]


# --------------------------------------------------------------------------- fakes


@dataclass
class Cluster:
    k: kmock.KubernetesEmulator
    url: str
    dns_phase: str = "Succeeded"
    sync_phase: str = "Succeeded"
    recreate_pods: bool = True  # False: a deleted qdrant-0 stays gone (a check waits on it)
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def app(self, name: str) -> dict[str, Any]:
        found = raw_or_none(self.k, (APPS, ARGO_NS, name))
        assert found is not None
        return found

    def patches(self, name: str) -> list[dict[str, Any]]:
        return [r.data for r in list(self.k) if r.name == name and r.method == "PATCH" and "applications" in str(r.url)]

    def sync_requests(self, name: str) -> list[dict[str, Any]]:
        return [p for p in self.patches(name) if "operation" in p]

    def step(self) -> None:
        """One pass of the fake ArgoCD and kubelet."""
        for key in list(self.k.objects.keys()):
            res, _ns, name = key
            found = raw_or_none(self.k, key)
            if found is None:
                continue
            raw = found
            if res.plural == "applications" and "operation" in raw:
                op = raw.pop("operation")
                spec_rev = ((raw.get("spec") or {}).get("source") or {}).get("targetRevision") or "HEAD"
                rev = (op.get("sync") or {}).get("revision") or spec_rev
                resolved = f"sha-new-{name}" if rev == "HEAD" else rev
                ok = self.sync_phase == "Succeeded"
                raw["status"] = {
                    "sync": {"status": "Synced" if ok else "OutOfSync", "revision": resolved},
                    "health": {"status": "Healthy" if ok else "Degraded"},
                    "operationState": {
                        "phase": self.sync_phase,
                        "startedAt": f"2026-01-01T00:00:{next(self.counter):02d}Z",
                        "message": "successfully synced" if ok else "one or more objects failed to apply",
                        "operation": op,
                    },
                }
                self.k.objects[key] = raw
            elif (
                res.plural == "pods"
                and name.startswith("rollout-dns-probe-")
                and (raw.get("status") or {}).get("phase") != self.dns_phase
            ):
                raw["status"] = {"phase": self.dns_phase}
                self.k.objects[key] = raw
        if self.recreate_pods and raw_or_none(self.k, ("v1/pods", "ai-vector", "qdrant-0")) is None:
            self.k.objects["v1/pods", "ai-vector", "qdrant-0"] = _stateful_pod("qdrant-0")


def raw_or_none(k: kmock.KubernetesEmulator, key: Any) -> dict[str, Any] | None:
    """The stored object, or None when it was deleted (kmock keeps soft-deleted keys)."""
    try:
        return dict(k.objects[key].raw)
    except (KeyError, ValueError):
        return None


def _stateful_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "ai-vector",
            "uid": uuid.uuid4().hex,
            "ownerReferences": [{"kind": "StatefulSet", "name": name.rsplit("-", 1)[0], "controller": True}],
        },
        "spec": {"nodeName": "worker-1", "containers": [{"name": "main", "image": "qdrant/qdrant:v1.12"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def _deployment(name: str, *, ready: int, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "ai-agents"},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": name, "image": "agentic:1"}]}}},
        "status": {"replicas": replicas, "readyReplicas": ready},
    }


ROUTES = {"observability": ("sonarr", "node", "memory", "restart"), "coding": ("script", "python"), "web": ("release",)}


@dataclass
class FakeRouter:
    """`agents.route` under its real name: keywords instead of embeddings (what a worker that polls
    the platform's task queue answers the rollout's routing requests with)."""

    texts: list[str] = field(default_factory=list)
    wrong: bool = False  # route everything to `web`

    @activity.defn(name="agents.route")
    async def route(self, inp: RouteInput) -> Route:
        self.texts.append(inp.text)
        text = inp.text.lower()
        agent = next((a for a, words in ROUTES.items() if any(w in text for w in words)), "web")
        return Route(agent="web" if self.wrong else agent, score=0.8, method=RouteMethod.EMBEDDING)


def _application(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": ARGO_NS},
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


def seed(k: kmock.KubernetesEmulator, plan: RolloutPlan, *, namespaces: list[str]) -> None:
    k.resources["v1/namespaces"] = kmock.ResourceInfo(namespaced=False, kind="Namespace")
    k.resources["v1/nodes"] = kmock.ResourceInfo(namespaced=False, kind="Node")
    k.resources["v1/pods"] = kmock.ResourceInfo(namespaced=True, kind="Pod")
    k.resources[APPS] = kmock.ResourceInfo(namespaced=True, kind="Application")
    for kind in ("deployments", "statefulsets", "daemonsets"):
        k.resources[f"apps/v1/{kind}"] = kmock.ResourceInfo(namespaced=True, kind=kind[:-1].title())
    for ns in namespaces:
        k.objects["v1/namespaces", None, ns] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    k.objects["v1/nodes", None, "gpu-1"] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "gpu-1", "labels": {"nvidia.com/gpu.product": "NVIDIA-GeForce-RTX-4090"}},
    }
    k.objects["v1/nodes", None, "worker-1"] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"}}
    for app in {a for w in plan.waves for a in w.synced_applications()}:
        k.objects[APPS, ARGO_NS, app] = _application(app)
    k.resources["v1/services"] = kmock.ResourceInfo(namespaced=True, kind="Service")
    for name in ("worker", "intake"):  # the platform's own processes, as waves 3 and 5 deploy them
        k.objects["apps/v1/deployments", "ai-agents", name] = _deployment(name, ready=1)
    k.objects["v1/services", "ai-agents", "intake"] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "intake", "namespace": "ai-agents"},
        "spec": {"ports": [{"port": 8088}], "selector": {"app.kubernetes.io/name": "intake"}},
    }
    k.objects["v1/pods", "ai-vector", "qdrant-0"] = _stateful_pod("qdrant-0")
    k.objects["apps/v1/statefulsets", "ai-vector", "qdrant"] = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "qdrant", "namespace": "ai-vector"},
        "spec": {"template": {"spec": {"containers": [{"name": "qdrant", "image": "qdrant/qdrant:v1.12"}]}}},
    }


class NamespacesFront(httpx.AsyncBaseTransport):
    """kmock 0.8 answers `GET /api/v1/namespaces` with a 500 (it parses "namespaces" as a
    namespace prefix), so that one path is served here from kmock's stored Namespace objects;
    every other request goes to kmock."""

    def __init__(self, k: kmock.KubernetesEmulator) -> None:
        self.k = k
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/api/v1/namespaces":
            found = [raw_or_none(self.k, key) for key in list(self.k.objects) if key[0].plural == "namespaces"]
            items = [o for o in found if o is not None]
            return httpx.Response(200, json={"kind": "NamespaceList", "apiVersion": "v1", "items": items})
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def cluster(plan: RolloutPlan, *, namespaces: list[str] = NAMESPACES) -> AsyncIterator[Cluster]:
    async with kmock.KubernetesEmulator() as k, kmock.Server(k) as srv:
        seed(k, plan, namespaces=namespaces)
        c = Cluster(k=k, url=str(srv.url))

        async def controllers() -> None:
            while True:
                c.step()
                await asyncio.sleep(0.02)

        task = asyncio.create_task(controllers())
        try:
            yield c
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@asynccontextmanager
async def inference_server(chunks: list[str]) -> AsyncIterator[str]:
    """An OpenAI-compatible /v1/chat/completions that streams `chunks` as SSE."""

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        assert body["stream"] is True
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for piece in chunks:
            data = {"choices": [{"index": 0, "delta": {"content": piece}}]}
            await resp.write(f"data: {json.dumps(data)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


class FakeStore:
    """A store that keeps what it was given (Qdrant / PostgreSQL behind the probe interface)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], str] = {}

    async def ping(self) -> str:
        return "PostgreSQL 17.2 (fake)"

    async def put(self, scope: str, key: str, value: str) -> None:
        self.rows[scope, key] = value

    async def get(self, scope: str, key: str) -> str | None:
        return self.rows.get((scope, key))


@dataclass
class Notes:
    sent: list[NotifyInput] = field(default_factory=list)

    @activity.defn(name="incident.notify")
    async def notify(self, inp: NotifyInput) -> NotifyResult:
        self.sent.append(inp)
        return NotifyResult(message_ref=f"msg-{len(self.sent)}")


def plan_for(inference_url: str) -> RolloutPlan:
    """The real deploy/waves.yaml, with the inference checks pointed at the local server."""
    plan = load_plan()
    for w in plan.waves:
        for c in w.checks:
            if c.name == "inference_streams":
                c.params["url"] = inference_url
            if "timeout_s" in c.params:
                c.params["timeout_s"] = 20
    return plan


# --------------------------------------------------------------------------- environment


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_with_attributes() as e:
        yield e


@dataclass
class Rig:
    env: WorkflowEnvironment
    cluster: Cluster
    acts: RolloutActivities
    notes: Notes
    task_queue: str
    apply_calls: list[int] = field(default_factory=list)
    router: FakeRouter = field(default_factory=FakeRouter)

    def worker(self) -> Worker:
        @activity.defn(name="rollout.apply")
        async def apply(inp: ApplyInput) -> ApplyResult:
            self.apply_calls.append(inp.wave)
            return await self.acts.apply(inp)

        acts = [a for a in self.acts.all() if a != self.acts.apply]
        return Worker(
            self.env.client,
            task_queue=self.task_queue,
            workflow_runner=workflow_runner("strict"),
            workflows=[RolloutWorkflow, ApprovalWorkflow, RouteProbeWorkflow, FakeAgentWorkflow],
            activities=[*acts, apply, self.notes.notify, self.router.route],
            max_cached_workflows=0,  # no sticky queue: another worker can take over
        )

    async def start(self, inp: RolloutInput) -> WorkflowHandle[RolloutWorkflow, RolloutState]:
        handle = await self.env.client.start_workflow(
            RolloutWorkflow.run, inp, id=f"rollout-{uuid.uuid4().hex[:8]}", task_queue=self.task_queue
        )
        await rollout_state(handle)
        return handle


@asynccontextmanager
async def rig(env: WorkflowEnvironment, **cluster_kw: Any) -> AsyncIterator[Rig]:
    async with inference_server(["Hel", "lo", "!"]) as url:
        plan = plan_for(url)
        async with (
            cluster(plan, **cluster_kw) as c,
            httpx.AsyncClient(base_url=c.url, transport=NamespacesFront(c.k)) as http,
        ):
            queue = f"rollout-{uuid.uuid4().hex[:8]}"
            # the router check's own client, as a worker's: waiting on its requests does not unlock
            # the time-skipping server (which would skip past the check's heartbeat timeout)
            plain = await Client.connect(
                env.client.service_client.config.target_host,
                namespace=env.client.namespace,
                data_converter=pydantic_data_converter,
            )
            acts = RolloutActivities(
                kube=KubeClient(http),
                plan=plan,
                qdrant=FakeStore(),
                postgres=FakeStore(),
                poll_interval_s=0.05,
                temporal=plain,  # the router check starts its requests on the rig's task queue
                task_queue=queue,
            )
            yield Rig(env=env, cluster=c, acts=acts, notes=Notes(), task_queue=queue)


async def rollout_state(handle: WorkflowHandle[Any, Any]) -> RolloutState:
    return await handle.query(QUERY_ROLLOUT, result_type=RolloutState)


async def state_when(handle: WorkflowHandle[Any, Any], pred: Callable[[RolloutState], bool]) -> RolloutState:
    st = await rollout_state(handle)
    for _ in range(600):
        if pred(st):
            return st
        await asyncio.sleep(0.05)
        st = await rollout_state(handle)
    raise AssertionError(f"rollout state never matched: {st}")


async def answer_gate(r: Rig, handle: WorkflowHandle[Any, Any], next_wave: int, choice: str = "approved") -> None:
    # the previous gate's answer may not be taken up yet: wait for this wave's gate
    st = await state_when(
        handle,
        lambda s: (
            s.status == RolloutStatus.AWAITING_GATE
            and s.gate_id is not None
            and s.gate_id.endswith(f"-gate-{next_wave}")
        ),
    )
    assert st.gate_id is not None and st.gate_id.endswith(f"-gate-{next_wave}")
    gate = r.env.client.get_workflow_handle(st.gate_id)
    approval = await gate.query(QUERY_APPROVAL, result_type=ApprovalState)
    steps = r.acts.plan.wave(next_wave).steps(ARGO_NS)
    # the gate's plan is the next wave's apply steps, bound by their hash
    assert approval.request.plan == steps
    assert approval.request.plan_hash == plan_hash(steps)
    assert f"go to wave {next_wave}" in approval.request.question
    res = await gate.execute_update(
        UPDATE_DECIDE,
        DecideInput(choice=choice, by="alice", plan_hash=approval.request.plan_hash),  # type: ignore[arg-type]
        result_type=DecideResult,
    )
    assert res.accepted


# --------------------------------------------------------------------------- tests


def test_waves_file_validates() -> None:
    plan = load_plan()
    assert [w.wave for w in plan.waves] == list(range(11))
    assert all(c.name in CHECK_ACTIVITIES for w in plan.waves for c in w.checks)
    assert all(w.checks and w.synced_applications() for w in plan.waves)
    doc = REPO.joinpath("deploy", "waves.yaml").read_text()
    with pytest.raises(PlanError, match="unknown checks"):
        parse_plan(doc.replace("name: gpu_nodes_labeled", "name: gpus_look_fine", 1))
    with pytest.raises(PlanError, match=r"waves must be 0\.\.10"):
        parse_plan(doc.replace("- wave: 4", "- wave: 5", 1))


async def test_clean_run_waves_0_to_3(env: WorkflowEnvironment) -> None:
    async with rig(env) as r, r.worker():
        handle = await r.start(RolloutInput(from_wave=0, to_wave=3))
        for n in (1, 2, 3):
            await answer_gate(r, handle, n)
        st = await handle.result()
        assert st.status == RolloutStatus.SUCCEEDED, st.reasons
        assert [(w.wave, w.phase) for w in st.waves] == [(0, "done"), (1, "done"), (2, "done"), (3, "done")]
        assert all(c.passed for w in st.waves for c in w.checks)
        assert [w.gate.choice if w.gate else None for w in st.waves] == ["approved", "approved", "approved", None]
        assert r.apply_calls == [0, 1, 2, 3]
        # every Application of waves 0-3 got exactly one sync request, none of wave 4 did
        for w in r.acts.plan.waves[:4]:
            for app in w.synced_applications():
                assert len(r.cluster.sync_requests(app)) == 1, app
                assert r.cluster.app(app)["status"]["sync"]["status"] == "Synced"
        assert r.cluster.sync_requests("platform-04-tooling") == []
        # recorded before apply: the deployed revision
        assert st.waves[1].recorded[0].previous_revision == "sha-old-platform-01-stores"
        # the checks ran against the API: a DNS probe pod was created and deleted, qdrant-0 restarted
        reqs = list(r.cluster.k)
        assert any(q.method == "POST" and "/namespaces/ai-agents/pods" in str(q.url) for q in reqs)
        assert any(q.method == "DELETE" and str(q.name).startswith("rollout-dns-probe-w3-") for q in reqs)
        assert any(q.method == "DELETE" and q.name == "qdrant-0" for q in reqs)
        details = {c.name: c.detail for w in st.waves for c in w.checks}
        assert "3 streamed chunks" in details["inference_streams"]
        # wave 3: the worker is ready and every case was routed through Temporal to its agent
        cases = [c["text"] for c in r.acts.plan.wave(3).checks[-1].params["cases"]]
        assert r.router.texts == cases
        assert details["router_selects_agent"] == (
            f"ai-agents/worker 1/1 ready; {len(cases)}/{len(cases)} requests routed to the expected agent "
            f"through task queue {r.task_queue}"
        )
        assert "NVIDIA-GeForce-RTX-4090" in details["gpu_nodes_labeled"]
        desc = await handle.describe()
        assert desc.typed_search_attributes.get(sa.ROLLOUT_WAVE) == 3
        history = await handle.fetch_history()
    await Replayer(
        workflow_runner=workflow_runner("strict"),
        workflows=[RolloutWorkflow, ApprovalWorkflow],
        data_converter=pydantic_data_converter,
    ).replay_workflow(history)


async def test_failing_check_rolls_back_and_stops(env: WorkflowEnvironment) -> None:
    missing = "ai-observability"
    async with rig(env, namespaces=[n for n in NAMESPACES if n != missing]) as r, r.worker():
        handle = await r.start(RolloutInput(from_wave=0, to_wave=2))
        st = await handle.result()
        assert st.status == RolloutStatus.ROLLED_BACK
        assert [(w.wave, w.phase) for w in st.waves] == [(0, "rolled_back")]
        assert any(missing in reason and "namespaces_present" in reason for reason in st.reasons)
        for app in r.acts.plan.wave(0).synced_applications():
            # the revert patch reached the API, then a second sync (to the old revision)
            reverts = [p for p in r.cluster.patches(app) if "spec" in p]
            assert reverts == [{"spec": {"source": {"targetRevision": f"sha-old-{app}"}}}]
            syncs = r.cluster.sync_requests(app)
            assert [s["operation"]["sync"].get("revision") for s in syncs] == ["HEAD", f"sha-old-{app}"]
            assert r.cluster.app(app)["spec"]["source"]["targetRevision"] == f"sha-old-{app}"
        assert r.apply_calls == [0]
        assert r.cluster.sync_requests("platform-01-stores") == []  # wave 1 never started
        history = await handle.fetch_history()
    await Replayer(
        workflow_runner=workflow_runner("strict"),
        workflows=[RolloutWorkflow, ApprovalWorkflow],
        data_converter=pydantic_data_converter,
    ).replay_workflow(history)


async def test_gate_refused_stops(env: WorkflowEnvironment) -> None:
    async with rig(env) as r, r.worker():
        handle = await r.start(RolloutInput(from_wave=0, to_wave=1))
        await answer_gate(r, handle, 1, choice="ignored")
        st = await handle.result()
        assert st.status == RolloutStatus.STOPPED
        assert [(w.wave, w.phase) for w in st.waves] == [(0, "gated")]
        assert st.waves[0].gate is not None and st.waves[0].gate.choice == "ignored"
        assert any("ignored" in reason and "alice" in reason for reason in st.reasons)
        assert r.apply_calls == [0]
        assert r.cluster.sync_requests("platform-01-stores") == []


async def test_worker_restart_resumes_without_reapplying(env: WorkflowEnvironment) -> None:
    async with rig(env) as r:
        async with r.worker():
            handle = await r.start(RolloutInput(from_wave=0, to_wave=2))
            await state_when(handle, lambda s: s.status == RolloutStatus.AWAITING_GATE)
        # the first worker is gone; a new one on the same task queue takes over
        async with r.worker():
            await answer_gate(r, handle, 1)
            await answer_gate(r, handle, 2)
            st = await handle.result()
        assert st.status == RolloutStatus.SUCCEEDED, st.reasons
        assert r.apply_calls == [0, 1, 2]
        assert all(len(r.cluster.sync_requests(a)) == 1 for a in r.acts.plan.wave(0).synced_applications())


async def test_worker_killed_mid_wave_resumes_in_the_check(env: WorkflowEnvironment) -> None:
    async with rig(env) as r:
        r.cluster.recreate_pods = False
        async with r.worker():
            handle = await r.start(RolloutInput(from_wave=1, to_wave=2))
            # wave 1 applied, its persistence check waits for qdrant-0 to come back
            await state_when(handle, lambda s: bool(s.waves) and s.waves[0].phase == "validating")
            for _ in range(200):
                if raw_or_none(r.cluster.k, ("v1/pods", "ai-vector", "qdrant-0")) is None:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("qdrant-0 was never deleted")
        # the worker is gone mid-check; a new one takes over and the pod comes back
        r.cluster.recreate_pods = True
        async with r.worker():
            await answer_gate(r, handle, 2)
            st = await handle.result()
        assert st.status == RolloutStatus.SUCCEEDED, st.reasons
        assert r.apply_calls == [1, 2]  # wave 1 was not applied again
        assert len(r.cluster.sync_requests("platform-01-stores")) == 1
        assert all(c.passed for c in st.waves[0].checks)
        # the cut-off check ran again on the new worker (a second restart of qdrant-0)
        assert len([q for q in list(r.cluster.k) if q.method == "DELETE" and q.name == "qdrant-0"]) == 2


async def test_dry_run_patches_nothing(env: WorkflowEnvironment) -> None:
    async with rig(env) as r, r.worker():
        handle = await r.start(RolloutInput(from_wave=0, to_wave=10, dry_run=True))
        st = await handle.result()
        assert st.status == RolloutStatus.SUCCEEDED
        assert len(st.waves) == 11 and all(w.gate is None for w in st.waves)
        assert not [q for q in list(r.cluster.k) if q.method in ("PATCH", "POST", "DELETE")]


async def test_bad_input_fails_the_run(env: WorkflowEnvironment) -> None:
    async with rig(env) as r, r.worker():
        handle = await env.client.start_workflow(
            RolloutWorkflow.run,
            RolloutInput(from_wave=3, to_wave=1),
            id=f"rollout-{uuid.uuid4().hex[:8]}",
            task_queue=r.task_queue,
        )
        with pytest.raises(WorkflowFailureError) as exc:
            await handle.result()
        assert "from_wave 3 is after to_wave 1" in str(exc.value.cause)


async def test_dns_probe_failure_is_a_failed_check(env: WorkflowEnvironment) -> None:
    async with rig(env) as r:
        r.cluster.dns_phase = "Failed"
        check = r.acts.plan.wave(3).checks[0]
        assert check.name == "dns_resolves"
        res = await ActivityEnvironment().run(r.acts.check_dns, CheckInput(wave=3, check=check))
        assert (
            not res.passed and "nslookup vllm-planner.ai-inference.svc.cluster.local failed in ai-agents" in res.detail
        )
        probes = [k for k in r.cluster.k.objects if k[2].startswith("rollout-dns-probe-")]
        assert probes and all(raw_or_none(r.cluster.k, k) is None for k in probes)  # created, then deleted


async def test_pinned_pods_and_missing_gpus_fail(env: WorkflowEnvironment) -> None:
    async with rig(env) as r:
        k = r.cluster.k
        k.objects["apps/v1/deployments", "ai-agents", "pinned"] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "pinned", "namespace": "ai-agents"},
            "spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/hostname": "gpu-1"}, "containers": []}}},
        }
        del k.objects["v1/nodes", None, "gpu-1"]
        ae = ActivityEnvironment()
        pinned = await ae.run(
            r.acts.check_no_pinned_pods,
            CheckInput(wave=3, check=Check(name="no_pinned_pods", params={"namespaces": ["ai-agents", "ai-vector"]})),
        )
        assert not pinned.passed and pinned.detail == "pinned to a node: deployments/ai-agents/pinned"
        gpus = await ae.run(r.acts.check_gpu_nodes, CheckInput(wave=2, check=Check(name="gpu_nodes_labeled")))
        assert not gpus.passed and "no node has nvidia.com/gpu.product" in gpus.detail


async def test_values_toggle_applied_then_reverted(env: WorkflowEnvironment) -> None:
    async with rig(env) as r:
        wave = r.acts.plan.wave(6)
        app = "platform-06-observability"
        r.cluster.k.objects[APPS, ARGO_NS, app] = {
            **r.cluster.app(app),
            "spec": {
                **r.cluster.app(app)["spec"],
                "source": {"targetRevision": "HEAD", "helm": {"valuesObject": {"rollout": {"waves": [6]}}}},
            },
        }
        ae = ActivityEnvironment()
        rec = await ae.run(
            r.acts.record,
            RecordInput(wave=6, argocd_namespace=ARGO_NS, applications=wave.synced_applications(), toggled=wave.values),
        )
        assert rec.applications[0].previous_values == {
            "observability.serviceMonitors.enabled": None,
            "observability.dashboards.enabled": None,
        }
        applied = await ae.run(
            r.acts.apply,
            ApplyInput(wave=6, argocd_namespace=ARGO_NS, applications=wave.synced_applications(), values=wave.values),
        )
        assert applied.ok, applied.reason
        values = r.cluster.app(app)["spec"]["source"]["helm"]["valuesObject"]
        assert values == {
            "rollout": {"waves": [6]},
            "observability": {"serviceMonitors": {"enabled": True}, "dashboards": {"enabled": True}},
        }
        back = await ae.run(
            r.acts.rollback,
            RollbackInput(wave=6, argocd_namespace=ARGO_NS, recorded=rec.applications, toggled=wave.values),
        )
        assert back.ok, back.reason
        source = r.cluster.app(app)["spec"]["source"]
        assert source["targetRevision"] == f"sha-old-{app}"
        # the toggled key is removed again (merge patch null); the rest of the values stay
        assert source["helm"]["valuesObject"]["rollout"] == {"waves": [6]}
        observability = source["helm"]["valuesObject"].get("observability") or {}
        assert not observability.get("serviceMonitors") and not observability.get("dashboards")


async def test_failed_sync_is_reported(env: WorkflowEnvironment) -> None:
    async with rig(env) as r:
        r.cluster.sync_phase = "Failed"
        res = await ActivityEnvironment().run(
            r.acts.apply, ApplyInput(wave=8, argocd_namespace=ARGO_NS, applications=["platform-08-ui"])
        )
        assert not res.ok and "one or more objects failed to apply" in res.reason
        missing = await ActivityEnvironment().run(
            r.acts.apply, ApplyInput(wave=8, argocd_namespace=ARGO_NS, applications=["no-such-app"])
        )
        assert not missing.ok and missing.reason == "Application argocd/no-such-app not found"


async def test_inference_check_counts_streamed_chunks() -> None:
    acts = RolloutActivities(kube=KubeClient(httpx.AsyncClient()), plan=load_plan())
    async with inference_server(["only one"]) as url:
        check = Check(name="inference_streams", params={"url": url, "min_chunks": 2, "timeout_s": 10})
        res = await ActivityEnvironment().run(acts.check_inference, CheckInput(wave=2, check=check))
    assert not res.passed and res.detail.startswith("1 streamed chunks")
    down = Check(name="inference_streams", params={"url": f"http://127.0.0.1:{free_port()}/v1", "timeout_s": 5})
    res = await ActivityEnvironment().run(acts.check_inference, CheckInput(wave=2, check=down))
    assert not res.passed


@asynccontextmanager
async def fake_qdrant() -> AsyncIterator[str]:
    """Qdrant's REST API, the few routes `QdrantHttpProbe` uses, over HTTP."""
    collections: dict[str, dict[str, Any]] = {}

    async def get_collection(request: web.Request) -> web.Response:
        if request.match_info["c"] not in collections:
            return web.json_response({"status": {"error": "Not found"}}, status=404)
        return web.json_response({"result": {"status": "green"}})

    async def put_collection(request: web.Request) -> web.Response:
        body = await request.json()
        assert body["vectors"]["size"] == 1
        collections[request.match_info["c"]] = {}
        return web.json_response({"result": True})

    async def put_points(request: web.Request) -> web.Response:
        for p in (await request.json())["points"]:
            collections[request.match_info["c"]][p["id"]] = p
        return web.json_response({"result": {"status": "completed"}})

    async def get_point(request: web.Request) -> web.Response:
        point = collections.get(request.match_info["c"], {}).get(request.match_info["id"])
        if point is None:
            return web.json_response({"status": {"error": "Not found"}}, status=404)
        return web.json_response({"result": {"id": point["id"], "payload": point["payload"]}})

    app = web.Application()
    app.router.add_get("/collections/{c}", get_collection)
    app.router.add_put("/collections/{c}", put_collection)
    app.router.add_put("/collections/{c}/points", put_points)
    app.router.add_get("/collections/{c}/points/{id}", get_point)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_qdrant_http_probe_round_trip() -> None:
    async with fake_qdrant() as url, httpx.AsyncClient(base_url=url) as http:
        acts = RolloutActivities(kube=KubeClient(http), plan=load_plan(), qdrant=QdrantHttpProbe(http))
        check = Check(name="qdrant_roundtrip", params={"collection": "rollout_probe"})
        res = await ActivityEnvironment().run(acts.check_qdrant, CheckInput(wave=1, check=check))
    assert res.passed, res.detail


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-rollout-pg-")


async def test_postgres_probe_on_real_postgres(pg: pgserver.PostgresServer) -> None:
    probe = PostgresProbe(await create_database(pg, "rollout"))
    acts = RolloutActivities(kube=KubeClient(httpx.AsyncClient()), plan=load_plan(), postgres=probe)
    res = await ActivityEnvironment().run(
        acts.check_postgres, CheckInput(wave=1, check=Check(name="postgres_reachable"))
    )
    assert res.passed and res.detail.startswith("PostgreSQL")
    await probe.put("s", "k", "v1")
    await probe.put("s", "k", "v2")
    assert await probe.get("s", "k") == "v2" and await probe.get("s", "missing") is None
    down = RolloutActivities(
        kube=KubeClient(httpx.AsyncClient()),
        plan=load_plan(),
        postgres=PostgresProbe(f"postgresql://nobody@127.0.0.1:{free_port()}/none"),
    )
    res = await ActivityEnvironment().run(
        down.check_postgres, CheckInput(wave=1, check=Check(name="postgres_reachable"))
    )
    assert not res.passed and "unreachable" in res.detail


async def test_build_from_kubeconfig(env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with rig(env) as r:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig.yaml", r.cluster.url)
        acts = RolloutActivities.build(
            kubeconfig=kubeconfig, qdrant_url="http://127.0.0.1:1", postgres_dsn="postgresql://x@127.0.0.1:1/x"
        )
        try:
            assert acts.kube.http.headers["Authorization"] == "Bearer kmock-does-not-check"
            res = await ActivityEnvironment().run(
                acts.check_gpu_nodes, CheckInput(wave=2, check=Check(name="gpu_nodes_labeled"))
            )
            assert res.passed and "gpu-1=NVIDIA-GeForce-RTX-4090" in res.detail
            assert len(acts.plan.waves) == 11 and acts.qdrant is not None and acts.postgres is not None
        finally:
            await acts.kube.aclose()


# --------------------------------------------------------------------------- the router check


def router_check(wave: int = 5) -> CheckInput:
    check = next(c for c in load_plan().wave(wave).checks if c.name == "router_selects_agent")
    return CheckInput(wave=wave, check=check)


async def test_router_check_fails_on_a_wrong_route_an_unready_worker_or_no_temporal(env: WorkflowEnvironment) -> None:
    async with rig(env) as r, r.worker():
        ae = ActivityEnvironment()
        ok = await ae.run(r.acts.agents.check_router, router_check(5))
        assert ok.passed, ok.detail
        assert ok.detail.startswith("ai-agents/worker 1/1 ready; ai-agents/intake 1/1 ready; Service ai-agents/intake;")
        r.router.wrong = True
        bad = await ae.run(r.acts.agents.check_router, router_check(3))
        assert not bad.passed
        assert (
            "'write a python script that renames my photos by the date the' went to web (embedding, 0.80), not coding"
            in (bad.detail)
        )
        r.router.wrong = False
        r.cluster.k.objects["apps/v1/deployments", "ai-agents", "worker"] = _deployment("worker", ready=0, replicas=2)
        del r.cluster.k.objects["v1/services", "ai-agents", "intake"]
        down = await ae.run(r.acts.agents.check_router, router_check(5))
        assert not down.passed
        assert down.detail.startswith(
            "Deployment ai-agents/worker: 0/2 replicas ready; Service ai-agents/intake not found"
        )
        # a worker without a Temporal client cannot test the router: it fails, never passes by default
        no_client = RolloutActivities(kube=r.acts.kube, plan=r.acts.plan)
        res = await ae.run(no_client.agents.check_router, router_check(3))
        assert not res.passed and "cannot route: the worker running the rollout has no Temporal client" in res.detail


async def test_agents_check_runs_each_request_as_an_agent_workflow(env: WorkflowEnvironment) -> None:
    check = next(c for c in load_plan().wave(5).checks if c.name == "agents_answer")
    async with rig(env) as r, r.worker():
        ae = ActivityEnvironment()
        ok = await ae.run(r.acts.agents.check_agents, CheckInput(wave=5, check=check))
        assert ok.passed, ok.detail
        assert (
            "not_configured on coding (the coding agent is not configured yet: set AGENTIC_CODING_TOOLS)" in ok.detail
        )
        # the routed request went through agents.route; the explicit one did not
        assert r.router.texts == [check.params["requests"][0]["text"]]
        r.router.wrong = True  # the routed request lands on web
        bad = await ae.run(r.acts.agents.check_agents, CheckInput(wave=5, check=check))
        assert not bad.passed
        assert "not_configured on web, expected not_configured on coding" in bad.detail
        no_client = RolloutActivities(kube=r.acts.kube, plan=r.acts.plan)
        res = await ae.run(no_client.agents.check_agents, CheckInput(wave=5, check=check))
        assert (
            not res.passed and "cannot run agents: the worker running the rollout has no Temporal client" in res.detail
        )
