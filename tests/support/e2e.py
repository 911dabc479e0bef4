"""The end-to-end incident's runbook and Alertmanager webhook (a crash-looping deployment the
runbook restarts), and the `agentic` CLI as the end-to-end tests drive it (an asyncio subprocess:
kmock serves the Kubernetes API from the test's event loop, which must keep running)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from tests.support.env import REPO
from tests.support.kmock_helpers import NS

RUNBOOK = """---
id: demo/restart-unhealthy-deployment
title: Restart an unhealthy deployment
match:
  - alertname=DemoDeploymentUnhealthy
actions:
  - tool: rollout_restart
    arguments:
      namespace: "{{ labels.namespace }}"
      deployment: "{{ labels.deployment }}"
---
# Restart an unhealthy deployment

## Meaning
A deployment's health gauge reports 0: its pods are up but do not serve.

## Mitigation
Restart the deployment with a rollout restart; it comes back healthy in a few seconds.
"""


def webhook(alertname: str, deployment: str, status: str = "firing") -> bytes:
    labels = {"alertname": alertname, "namespace": NS, "deployment": deployment, "severity": "warning"}
    return json.dumps(
        {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{alertname}", namespace="{NS}"}}',
            "truncatedAlerts": 0,
            "status": status,
            "receiver": "agentic",
            "groupLabels": {"alertname": alertname, "namespace": NS},
            "commonLabels": labels,
            "commonAnnotations": {"summary": f"Deployment {NS}/{deployment} is unhealthy"},
            "externalURL": "http://alertmanager.local",
            "alerts": [
                {
                    "status": status,
                    "labels": {
                        "alertname": alertname,
                        "namespace": NS,
                        "deployment": deployment,
                        "severity": "warning",
                    },
                    "annotations": {"summary": f"Deployment {NS}/{deployment} is unhealthy"},
                    "startsAt": "2026-11-21T10:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus.local/graph",
                    "fingerprint": f"fp-{alertname}-{deployment}",
                }
            ],
        }
    ).encode()


async def agentic(
    env: dict[str, str], *args: str, stdin: bytes | None = None, limit: float = 300
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.cli",
        *args,
        env=env,
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), limit)
    return proc.returncode or 0, out.decode(), err.decode()


async def eventually(check: Callable[[], Awaitable[Any]], within: float, what: str, every: float = 1.0) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {within:.0f}s waiting for {what} (last: {last!r})")


async def incidents(env: dict[str, str]) -> list[dict[str, Any]]:
    rc, out, err = await agentic(env, "incidents", "list", "--json")
    assert rc == 0, err
    return list(json.loads(out))


async def show(env: dict[str, str], incident_id: str) -> dict[str, Any]:
    rc, out, err = await agentic(env, "incidents", "show", incident_id, "--json")
    assert rc == 0, err
    return dict(json.loads(out))


async def status_of(env: dict[str, str], incident_id: str, wanted: set[str]) -> dict[str, Any] | None:
    st = await show(env, incident_id)
    return st if st["status"] in wanted else None


async def recorded_as(env: dict[str, str], incident_id: str, wanted: set[str]) -> dict[str, Any] | None:
    """The state once the incident's status is one of `wanted` AND its record stage is done: the
    final status is set first, then `incident.record` writes the decision and outcome rows, so a
    reader of the ledger waits for the stage, not only the status."""
    st = await status_of(env, incident_id, wanted)
    done = st is not None and any(s["name"] == "record" and s.get("finished_at") for s in st["stages"])
    return st if done else None


async def ledger(data: Path, env: dict[str, str]) -> asyncpg.Connection:
    pw = (data / "secrets" / "postgres.password").read_text().strip()
    return await asyncpg.connect(
        f"postgresql://postgres:{pw}@127.0.0.1:{env['AGENTIC_POSTGRES_PORT']}/postgres", timeout=10
    )
