"""A newcomer's first alert: nothing to run, still put to a human (VERBOSE, the default).

A fresh `agentic up` (no runbooks imported, no cluster configured), then one Alertmanager
payload for a crash-looping radarr pod killed for memory, posted with `agentic alert send`.
There is no runbook and no tool server, so there is nothing to run; in VERBOSE mode the
incident must still ask (acknowledge / ignore / modify), say why nothing can run, refuse an
"approve", take `agentic acknowledge`, record the decision in the ledger, and then watch for
the alert to resolve. Everything through the `agentic` command line, as the README says.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.env import REPO, stack_env

pytestmark = pytest.mark.slow


def agentic(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[dict[str, str], Path]]:
    with tempfile.TemporaryDirectory(prefix="agentic-nothing-") as tmp:
        data = Path(tmp) / "data"
        env = stack_env(data)
        up = agentic(env, "up", "--detach")
        assert up.returncode == 0, up.stdout + up.stderr
        try:
            yield env, data
        finally:
            agentic(env, "down", timeout=120)


def payload(status: str) -> dict[str, Any]:
    labels = {
        "alertname": "KubePodCrashLooping",
        "namespace": "media",
        "pod": "radarr-7d9f8b6c5d-x2k4p",
        "container": "radarr",
        "severity": "warning",
    }
    annotations = {
        "summary": "Pod is crash looping.",
        "description": "Pod media/radarr-7d9f8b6c5d-x2k4p (radarr) is restarting 2.5 times / 10 minutes: "
        "last state terminated, reason OOMKilled.",
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="KubePodCrashLooping", namespace="media"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "agentic",
        "groupLabels": {"alertname": "KubePodCrashLooping", "namespace": "media"},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "http://alertmanager.local",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": "2026-12-06T10:00:00Z",
                "endsAt": "2026-12-06T10:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local/graph",
                "fingerprint": "fp-radarr-crashloop",
            }
        ],
    }


def show(env: dict[str, str], incident_id: str) -> dict[str, Any]:
    res = agentic(env, "incidents", "show", incident_id, "--json", timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def wait_for(env: dict[str, str], incident_id: str, status: str, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        st = show(env, incident_id)
        if st["status"] == status:
            return st
        assert time.monotonic() < deadline, f"not {status} within {within}s: {json.dumps(st, indent=1)}"
        time.sleep(1)


def send(env: dict[str, str], tmp_path: Path, status: str) -> str:
    alert = tmp_path / f"alert-{status}.json"
    alert.write_text(json.dumps(payload(status)))
    res = agentic(env, "alert", "send", str(alert), timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.split("incidents", 1)[1].strip().split(",")[0].strip()


def test_a_first_alert_with_nothing_to_run_is_put_to_a_human(
    stack: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, data = stack
    incident_id = send(env, tmp_path, "firing")

    # VERBOSE asks about everything: the incident waits for a human, not silently `verifying`.
    st = wait_for(env, incident_id, "awaiting_approval", within=120)
    assert st["verdict"] == "ask_acknowledge" and st["plan"] == [] and st["approval_id"]
    policy_stage = next(s for s in st["stages"] if s["name"] == "policy")
    assert policy_stage["detail"].startswith("ask_acknowledge")

    # Approve is not an answer to a question with nothing to run; the refusal says what is.
    approve = agentic(env, "approve", incident_id, "--by", "newcomer", timeout=60)
    assert approve.returncode == 2
    assert "nothing to run" in approve.stderr and "acknowledged" in approve.stderr

    ack = agentic(env, "acknowledge", incident_id, "--by", "newcomer", timeout=60)
    assert ack.returncode == 0, ack.stderr
    assert f"acknowledged by newcomer: incident {incident_id}" in ack.stdout

    watching = wait_for(env, incident_id, "verifying", within=60)
    assert watching["decision"]["choice"] == "acknowledged" and watching["decision"]["by"] == "newcomer"

    # The alert resolves: the incident closes, nothing ran, the decision is in the ledger.
    send(env, tmp_path, "resolved")
    final = wait_for(env, incident_id, "resolved", within=60)
    assert final["actions"] == []
    listed = agentic(env, "incidents", "list", "--json", timeout=60)
    assert any(r["id"] == incident_id and r["status"] == "resolved" for r in json.loads(listed.stdout))
    assert _ledger_decisions(data, incident_id) == [("acknowledged", "newcomer")]


def _ledger_decisions(data: Path, incident_id: str) -> list[tuple[str, str]]:
    import asyncio

    import asyncpg

    state = json.loads((data / "stack.json").read_text())
    port = state["parts"]["postgres"]["port"]
    password = (data / "secrets" / "postgres.password").read_text().strip()

    async def read() -> list[tuple[str, str]]:
        conn = await asyncpg.connect(f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres", timeout=10)
        try:
            for _ in range(50):  # the record activity runs right after the close
                rows = await conn.fetch("SELECT choice, decided_by FROM decisions WHERE incident_id = $1", incident_id)
                if rows:
                    return [(r["choice"], r["decided_by"]) for r in rows]
                await asyncio.sleep(0.2)
            return []
        finally:
            await conn.close()

    return asyncio.run(read())
