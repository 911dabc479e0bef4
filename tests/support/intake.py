"""The alert intake as the tests drive it: its settings and token, Alertmanager webhooks rendered
the way Alertmanager 0.27 sends them, a stand-in incident workflow, and the real intake process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pydantic import BaseModel, Field, SecretStr
from temporalio import workflow
from temporalio.client import Client

from agentic_core.alerts import AlertStatus, incident_id_for
from agentic_core.incident import SIGNAL_ALERTS, AlertsSignal, IncidentInput
from agentic_core.models import ApprovalMode
from tests.support.env import REPO
from workers.settings import Settings

TOKEN = "intake-test-token-" + uuid.uuid4().hex


TASK_QUEUE = "intake-test-" + uuid.uuid4().hex[:8]


MAX_BODY = 16_384


QUERY_RECEIVED = "received"


class Received(BaseModel):
    run_id: str
    input: IncidentInput
    signals: list[AlertsSignal] = Field(default_factory=list)


@workflow.defn(name="IncidentWorkflow")
class StandInIncident:
    def __init__(self) -> None:
        self._input: IncidentInput | None = None
        self._signals: list[AlertsSignal] = []

    @workflow.run
    async def run(self, inp: IncidentInput) -> Received:
        self._input = inp
        await workflow.wait_condition(lambda: any(s.group.status == AlertStatus.RESOLVED for s in self._signals))
        return self._received()

    @workflow.signal(name=SIGNAL_ALERTS)
    def alerts(self, sig: AlertsSignal) -> None:
        self._signals.append(sig)

    @workflow.query(name=QUERY_RECEIVED)
    def received(self) -> Received:
        return self._received()

    def _received(self) -> Received:
        assert self._input is not None
        return Received(run_id=workflow.info().run_id, input=self._input, signals=list(self._signals))


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "intake_token": SecretStr(TOKEN),
        "task_queue": TASK_QUEUE,
        "intake_max_body": MAX_BODY,
        "approval_mode": ApprovalMode.NORMAL,
        "approvers": "alice, 12345",
        "confidence_threshold": 0.8,
        "remind_after_s": 60,
        "escalate_after_s": 120,
        "expire_after_s": 600,
        "verify_window_s": 30,
    }
    values.update(overrides)
    return Settings(**values)


def factory_for(client: Client) -> Callable[[], Awaitable[Client]]:
    async def factory() -> Client:
        return client

    return factory


def uniq() -> str:
    return uuid.uuid4().hex[:10]


def alert(
    alertname: str = "KubePodCrashLooping",
    *,
    status: str = "firing",
    pod: str = "sonarr-7d9f8b6c5-x2x7q",
    namespace: str = "media",
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": alertname,
            "severity": "warning",
            "namespace": namespace,
            "pod": pod,
            "container": "sonarr",
            "job": "kube-state-metrics",
        },
        "annotations": {
            "summary": "Pod is crash looping.",
            "description": f"Pod {namespace}/{pod} (sonarr) is in waiting state (reason: CrashLoopBackOff).",
            "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping",
        },
        "startsAt": "2026-11-21T14:02:11.312Z",
        "endsAt": "2026-11-21T14:31:41.312Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.monitoring:9090/graph?g0.expr=max_over_time%28kube_pod_container_status"
        "_waiting_reason%7Breason%3D%22CrashLoopBackOff%22%7D%5B5m%5D%29+%3E%3D+1&g0.tab=1",
        "fingerprint": uuid.uuid5(uuid.NAMESPACE_OID, f"{alertname}/{namespace}/{pod}").hex[:16],
    }


def webhook(
    receiver: str,
    alertname: str = "KubePodCrashLooping",
    *,
    status: str = "firing",
    alerts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An Alertmanager webhook (v4) as Alertmanager 0.27 sends it."""
    members = alerts if alerts is not None else [alert(alertname, status=status)]
    return {
        "receiver": receiver,
        "status": status,
        "alerts": members,
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname, "severity": "warning", "namespace": "media"},
        "commonAnnotations": {"summary": "Pod is crash looping."},
        "externalURL": "http://alertmanager.monitoring:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}"}}',
        "truncatedAlerts": 0,
    }


def incident_of(doc: dict[str, Any]) -> str:
    return incident_id_for(doc["receiver"], doc["groupKey"])


async def post(
    http: httpx.AsyncClient,
    path: str,
    doc: Any = None,
    *,
    token: str | None = TOKEN,
    content: bytes | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    h = {"Content-Type": content_type, **(headers or {})}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    body = content if content is not None else json.dumps(doc).encode()
    return await http.post(path, content=body, headers=h)


def process_env(**agentic: str) -> dict[str, str]:
    """The environment of an intake process: only the `AGENTIC_*` given, and a data dir of its own
    (the default one, .agentic in the repository, may hold a token from a `make run`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env["AGENTIC_DATA_DIR"] = tempfile.mkdtemp(prefix="agentic-intake-")
    env.update({f"AGENTIC_{k.upper()}": v for k, v in agentic.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def spawn(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.intake",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_health(port: int, proc: asyncio.subprocess.Process, *, want: int, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            assert proc.returncode is None, "the intake exited"
            try:
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == want:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"/healthz never answered {want}")


async def stop(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode()
