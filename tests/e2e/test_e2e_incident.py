"""The incident loop end to end, on the real embedded stack.

Real Prometheus fires a rule → real Alertmanager posts the group to the intake (bearer
token) → IncidentWorkflow → the approval question → `agentic approve` → the MCP
infrastructure server patches the deployment on kmock (the emulated cluster) → the
"cluster" heals, the alert resolves → verified → ledger and Qdrant hold the decision.

The investigate stage: a runbook that declares `evidence:` → its read-only calls through the
tool gateway against the MCP infrastructure server (kmock) and the MCP metrics server (the same
real Prometheus and Alertmanager, `AGENTIC_PROMETHEUS_URL` / `AGENTIC_ALERTMANAGER_URL`) → the
diagnosis shows the evidence, and what could not be gathered is said.

Every `agentic` call here is an asyncio subprocess: kmock serves the Kubernetes API from
this test's event loop, so the loop must keep running while the CLI works.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import pytest

from tests.support.e2e import RUNBOOK, agentic, eventually, incidents, ledger, recorded_as, show, status_of, webhook
from tests.support.env import stack_env
from tests.support.kmock_helpers import NS, emulated_cluster, requests_for
from tests.support.promstack import MetricsSource, alerting_stack

pytestmark = pytest.mark.slow

EVIDENCE_RUNBOOK = """---
id: demo/unhealthy-deployment-evidence
title: An unhealthy deployment, with its evidence
match:
  - alertname=DemoInvestigate
evidence:
  - tool: get_pod_logs
    arguments: {namespace: "{{ labels.namespace }}", pod: "{{ labels.deployment }}-7d4b9-abcde", previous: true}
  - tool: get_events
    arguments: {namespace: "{{ labels.namespace }}"}
  - tool: prom_query
    arguments:
      query: 'demo_deployment_healthy{namespace="{{ labels.namespace }}", deployment="{{ labels.deployment }}"}'
  - tool: prom_alerts
    arguments: {alertname: "{{ labels.alertname }}"}
  - tool: prom_rules
    arguments: {name: DemoDeploymentUnhealthy}
  - tool: describe_pod
    arguments: {namespace: "{{ labels.namespace }}", pod: "{{ labels.deployment }}-gone"}
  - tool: ha_states
    arguments: {state: unavailable}
  - tool: describe_pod
    arguments: {namespace: "{{ labels.namespace }}", pod: "{{ labels.pod }}"}
actions:
  - tool: rollout_restart
    arguments:
      namespace: "{{ labels.namespace }}"
      deployment: "{{ labels.deployment }}"
---
# An unhealthy deployment

Its health gauge reports 0. Look at the previous container's logs, the namespace's events and
the gauge before restarting it.
"""


@dataclass
class World:
    k: kmock.KubernetesEmulator
    env: dict[str, str]
    data: Path
    tmp: Path
    token: str  # the intake's bearer token
    metrics: MetricsSource  # what Prometheus scrapes: the demo deployments' health gauges
    prometheus: int = 0  # its port (it scrapes the platform's /metrics too)


async def diagnose(world: World, incident_id: str) -> str:
    """What a failing test shows: the incident's state and the tails of the parts' logs."""
    rc, out, err = await agentic(world.env, "incidents", "show", incident_id, "--json")
    lines = [f"incident {incident_id}: {out[-3000:] if rc == 0 else err}"]
    for name in ("worker", "mcp", "intake"):
        log = world.data / "logs" / f"{name}.log"
        if log.exists():
            lines.append(f"--- {name}.log\n" + "\n".join(log.read_text(errors="replace").splitlines()[-25:]))
    return "\n".join(lines)


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[World]:
    """The stack with kmock as its cluster and one real Prometheus + Alertmanager pair (alerts to
    the intake; the metrics MCP server's backend), the demo deployments healthy at first."""
    with tempfile.TemporaryDirectory(prefix="agentic-e2e-") as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "kube").mkdir()
        async with emulated_cluster(tmp / "kube") as (k, kubeconfig):
            data = tmp / "data"
            env = stack_env(data)
            token = "e2e-incident-intake-token"
            intake = f"http://127.0.0.1:{env['AGENTIC_INTAKE_PORT']}/alerts"
            with MetricsSource() as metrics:
                metrics.values[(NS, "sonarr")] = 1
                with alerting_stack(
                    tmp / "prom", metrics.port, intake, token, extra_scrape_configs=_platform_scrape(env)
                ) as ports:
                    env.update(
                        AGENTIC_KUBECONFIG=str(kubeconfig),
                        AGENTIC_APPROVERS="alice,bob",
                        AGENTIC_VERIFY_WINDOW_S="120",
                        AGENTIC_INTAKE_TOKEN=token,
                        AGENTIC_PROMETHEUS_URL=f"http://127.0.0.1:{ports['prometheus']}",
                        AGENTIC_ALERTMANAGER_URL=f"http://127.0.0.1:{ports['alertmanager']}",
                    )
                    rc, out, err = await agentic(env, "up", "--detach")
                    assert rc == 0, out + err
                    try:
                        rb = tmp / "runbooks"
                        rb.mkdir()
                        (rb / "restart.md").write_text(RUNBOOK)
                        (rb / "investigate.md").write_text(EVIDENCE_RUNBOOK)
                        rc, out, err = await agentic(env, "runbooks", "import", str(rb))
                        assert rc == 0 and "2 added" in out, out + err
                        yield World(
                            k=k,
                            env=env,
                            data=data,
                            tmp=tmp,
                            token=token,
                            metrics=metrics,
                            prometheus=ports["prometheus"],
                        )
                    finally:
                        await agentic(env, "down", limit=120)


async def test_prometheus_alert_to_verified_outcome(world: World) -> None:
    env, data, metrics = world.env, world.data, world.metrics
    patches_before = len(requests_for(world.k, "sonarr", "PATCH"))
    metrics.values[(NS, "sonarr")] = 0  # the rule fires
    found = await eventually(lambda: _awaiting(env, "DemoDeploymentUnhealthy"), 120, "an incident awaiting approval")
    inc = found["id"]
    st = await show(env, inc)
    assert st["runbook_id"] == "demo/restart-unhealthy-deployment"
    assert [c["tool"] for c in st["plan"]] == ["rollout_restart"]
    assert st["plan"][0]["arguments"] == {"namespace": NS, "deployment": "sonarr"}
    assert len(requests_for(world.k, "sonarr", "PATCH")) == patches_before  # nothing ran yet

    # Someone not on the approver list is refused, and nothing runs.
    rc, _, err = await agentic(env, "approve", inc, "--by", "mallory")
    assert rc == 2 and "mallory" in err
    rc, _, err = await agentic(env, "approve", inc, "--by", "alice")
    assert rc == 0, err

    try:
        await eventually(
            lambda: _n(len(requests_for(world.k, "sonarr", "PATCH")) > patches_before), 60, "the restart patch"
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await diagnose(world, inc)}") from None
    metrics.values[(NS, "sonarr")] = 1  # the restart healed it: the alert resolves
    # the status is final before the record stage writes the ledger's rows: wait for both
    st = await eventually(lambda: recorded_as(env, inc, {"resolved"}), 120, "the verified, recorded outcome")

    assert st["decision"]["choice"] == "approved" and st["decision"]["by"] == "alice"
    assert [a["status"] for a in st["actions"]] == ["succeeded"]
    assert st["outcome"]["outcome"] == "success"
    stages = [s["name"] for s in st["stages"]]
    for stage in ("triage", "recall", "propose", "guard", "policy", "approval", "execute", "verify", "record"):
        assert stage in stages, stages
    patch = requests_for(world.k, "sonarr", "PATCH")[-1]
    assert "kubectl.kubernetes.io/restartedAt" in json.dumps(patch.data)

    conn = await ledger(data, env)
    try:
        decisions = await conn.fetch("select choice, decided_by from decisions where incident_id = $1", inc)
        assert [(r["choice"], r["decided_by"]) for r in decisions] == [("approved", "alice")]
        actions = await conn.fetch("select tool, status from actions where incident_id = $1", inc)
        assert [(r["tool"], r["status"]) for r in actions] == [("rollout_restart", "succeeded")]
        outcome = await conn.fetchval("select result from outcomes where incident_id = $1", inc)
        assert outcome == "success"
        questions = await conn.fetchval(
            "select count(*) from notifications where incident_id = $1 and kind = 'question'", inc
        )
        assert questions == 1
    finally:
        await conn.close()

    # Qdrant: the next similar incident recalls this decision.
    from agentic_core.models import Collection
    from workers.knowledge_client import search
    from workers.settings import Settings

    hits = await search(
        Settings(data_dir=data, temporal_port=int(env["AGENTIC_TEMPORAL_PORT"])),  # type: ignore[call-arg]
        Collection.DECISIONS,
        "deployment media/sonarr is unhealthy",
        5,
    )
    assert any(h.payload.get("incident_id") == inc for h in hits), hits
    await _telemetry_of(world, inc)


def _platform_scrape(env: dict[str, str]) -> str:
    """The platform's metrics endpoints as a Prometheus scrape job (docs/observability.md)."""
    ports = [
        env[f"AGENTIC_{name}_PORT"]
        for name in ("INTAKE", "WORKER_METRICS", "WORKER_TEMPORAL_METRICS", "MCP_INFRA", "MCP_KNOWLEDGE", "MCP_METRICS")
    ]
    targets = ", ".join(f'"127.0.0.1:{p}"' for p in ports)
    return f"""  - job_name: agentic
    static_configs:
      - targets: [{targets}]
"""


async def _telemetry_of(world: World, inc: str) -> None:
    """Telemetry of the incident just verified (issue 16): `agentic status` lists every part's
    metrics, the real Prometheus scrapes them all and holds the incident's series, and the
    incident is one connected trace from the intake's POST to the MCP tool, across processes."""
    import httpx

    rc, out, err = await agentic(world.env, "status", "--json")
    listed = {p["name"]: p["metrics"].split() for p in json.loads(out)["parts"] if p["metrics"]}
    assert {"intake", "worker", "mcp", "mcp-knowledge", "mcp-metrics"} <= set(listed), listed
    assert len(listed["worker"]) == 2, listed  # the platform's and the Temporal SDK's
    prom = f"http://127.0.0.1:{world.prometheus}/api/v1/query"

    async def query(q: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=10) as http:
            return (await http.get(prom, params={"query": q})).json()["data"]["result"]

    async def scraped() -> list[dict[str, Any]] | None:
        rows = await query('agentic_decisions_total{job="agentic",decision="approved"}')
        return rows or None

    await eventually(scraped, 60, "Prometheus scraping the worker's agentic_decisions_total")
    up = await query('up{job="agentic"}')
    assert len(up) == 6 and all(r["value"][1] == "1" for r in up), up
    for series in (
        'agentic_alerts_received_total{endpoint="alerts"}',
        "agentic_incidents_opened_total",
        'agentic_model_calls_total{pool="planner"}',
        'agentic_tool_calls_total{outcome="ok"}',
        "agentic_approval_wait_seconds_count",
        "agentic_incident_time_to_first_notification_seconds_count",
    ):
        assert await query(f"sum({series}) > 0"), series
    assert await query('count({job="agentic", __name__=~"temporal_.+"}) > 0'), "the Temporal SDK's metrics"

    async def one_trace() -> dict[str, Any] | None:
        rc, out, _ = await agentic(world.env, "incidents", "trace", inc, "--json")
        if rc != 0:
            return None
        [tr] = json.loads(out)
        names = {s["name"] for s in tr["spans"]}
        return tr if {"RunActivity:incident.record", "tools/call rollout_restart"} <= names else None

    tr = await eventually(one_trace, 30, "the incident's trace in the span files")
    spans = tr["spans"]
    names = {s["name"] for s in spans}
    for expected in (
        "POST /alerts",
        "SignalWithStartWorkflow:IncidentWorkflow",
        "RunWorkflow:IncidentWorkflow",
        "RunActivity:incident.propose",
        "RunActivity:tools.execute",
        "MCP send tools/call rollout_restart",
    ):
        assert expected in names, (expected, sorted(names))
    assert any(s["attributes"].get("gen_ai.operation.name") == "chat" for s in spans), sorted(names)
    ids = {s["span_id"] for s in spans}
    assert [s["name"] for s in spans if not s["parent_id"]] == ["POST /alerts"]
    assert [s["name"] for s in spans if s["parent_id"] and s["parent_id"] not in ids] == []
    assert {"agentic-intake", "agentic-worker", "agentic-mcp-infra"} <= {s["service"] for s in spans}
    rc, out, err = await agentic(world.env, "incidents", "trace", inc)
    assert rc == 0 and "RunWorkflow:IncidentWorkflow" in out and "ms" in out, out + err


async def test_the_diagnosis_shows_the_evidence_gathered_from_the_cluster_and_prometheus(world: World) -> None:
    env = world.env
    rc, out, err = await agentic(env, "status")
    assert rc == 0 and "mcp-metrics" in out, out + err
    rc, out, err = await agentic(env, "alert", "send", "-", stdin=webhook("DemoInvestigate", "sonarr"))
    assert rc == 0, err
    inc = out.strip().split()[-1]
    st = await eventually(lambda: status_of(env, inc, {"awaiting_approval"}), 120, "the incident's question")

    assert st["runbook_id"] == "demo/unhealthy-deployment-evidence"
    names = [s["name"] for s in st["stages"]]
    assert names.index("recall") < names.index("investigate") < names.index("propose"), names
    evidence = {(e["call"]["tool"], e["index"]): e for e in st["evidence"]}
    assert {key: e["status"] for key, e in evidence.items()} == {
        ("get_pod_logs", 0): "ok",
        ("get_events", 1): "ok",
        ("prom_query", 2): "ok",
        ("prom_alerts", 3): "ok",
        ("prom_rules", 4): "ok",
        ("describe_pod", 5): "failed",
        ("ha_states", 6): "unavailable",
        ("describe_pod", 7): "skipped",
    }, st["evidence"]
    assert "out of memory" in evidence[("get_pod_logs", 0)]["excerpt"]  # the previous container's logs (kmock)
    assert "OOMKilling" in evidence[("get_events", 1)]["excerpt"]
    # Prometheus's own data: the gauge the test serves, as Prometheus scraped it
    assert '"deployment": "sonarr"' in evidence[("prom_query", 2)]["excerpt"]
    assert '"alertmanager_total": 0' in evidence[("prom_alerts", 3)]["excerpt"]  # Alertmanager was asked
    assert "DemoDeploymentUnhealthy" in evidence[("prom_rules", 4)]["excerpt"]
    assert "sonarr-gone" in evidence[("describe_pod", 5)]["error"]
    assert "set AGENTIC_HA_URL and AGENTIC_HA_TOKEN" in evidence[("ha_states", 6)]["error"]
    assert "needs label 'pod'" in evidence[("describe_pod", 7)]["error"]

    rc, text, err = await agentic(env, "incidents", "show", inc)
    assert rc == 0, err
    assert "evidence (5 of 8 gathered; 1 failed; 1 skipped; 1 unavailable):" in text, text
    assert "get_events(namespace='media'): ok:" in text

    conn = await ledger(world.data, env)
    try:
        # the diagnosis edits the question's message (the ledger's row keeps the question's kind)
        diagnosis = await conn.fetchval(
            "select text from notifications where incident_id = $1 and kind = 'question'", inc
        )
        keys = [r["idempotency_key"] for r in await conn.fetch("select * from actions where incident_id = $1", inc)]
    finally:
        await conn.close()
    assert "Evidence (5 of 8 gathered; 1 failed; 1 skipped; 1 unavailable):" in diagnosis, diagnosis
    assert "prom_rules(name='DemoDeploymentUnhealthy'): ok:" in diagnosis
    # the six calls that ran are in the ledger under their evidence keys; no action ran
    assert len(keys) == 6 and all("/evidence/" in k for k in keys), keys

    rc, _, err = await agentic(env, "ignore", inc, "--by", "alice")
    assert rc == 0, err


async def _awaiting(env: dict[str, str], alertname: str) -> dict[str, Any] | None:
    for row in await incidents(env):
        if row["alertname"] == alertname and row["status"] == "awaiting_approval":
            return row
    return None


async def _n(value: bool) -> bool:
    return value


async def test_same_group_five_times_is_one_incident_one_notification(world: World) -> None:
    env = world.env
    ids = set()
    for _ in range(5):
        rc, out, err = await agentic(env, "alert", "send", "-", stdin=webhook("DemoRepeated", "radarr"))
        assert rc == 0, err
        ids.add(out.strip().split()[-1])
    assert len(ids) == 1
    inc = ids.pop()
    await eventually(lambda: status_of(env, inc, {"awaiting_approval"}), 90, "the approval question")
    await asyncio.sleep(2)  # give any duplicate a chance to show
    rows = [r for r in await incidents(env) if r["alertname"] == "DemoRepeated"]
    assert len(rows) == 1
    st = await show(env, inc)
    assert st["signals"] >= 5 and st["alerts_seen"] == 1
    conn = await ledger(world.data, env)
    try:
        n = await conn.fetchval("select count(*) from notifications where incident_id = $1 and kind = 'question'", inc)
    finally:
        await conn.close()
    assert n == 1
    rc, _, err = await agentic(env, "ignore", inc, "--by", "bob")
    assert rc == 0, err
    st = await eventually(lambda: status_of(env, inc, {"ignored"}), 60, "the ignored incident")
    assert st["actions"] == []


async def test_bad_payloads_leave_nothing_behind(world: World) -> None:
    env = world.env
    before = await incidents(env)
    bad = json.loads(webhook("DemoBad", "lidarr"))
    del bad["alerts"][0]["fingerprint"]
    rc, _, err = await agentic(env, "alert", "send", "-", stdin=json.dumps(bad).encode())
    assert rc == 2 and "422" in err and "fingerprint" in err
    rc, _, err = await agentic(env, "alert", "send", "-", stdin=b"{not json")
    assert rc == 2 and "400" in err
    assert await incidents(env) == before


async def test_hostile_but_valid_payloads_are_incidents_within_seconds_with_secrets_redacted(world: World) -> None:
    """Odd but valid Unicode (non-BMP characters sent as surrogate-pair escapes, RTL marks,
    quotes, newlines), a large annotation, numbers and nested objects as values, times at the
    edges of what the ledger stores, and secrets: a 202, an incident in `agentic incidents list`
    within seconds, every alert in the ledger, no secret in the ledger or the CLI."""
    import httpx

    env, data = world.env, world.data
    token = world.token
    base = f"http://127.0.0.1:{env['AGENTIC_INTAKE_PORT']}"
    password, bearer = "Tr0ub4dor#3-e2e", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    alertname = "DemoHostile💥\u202eliveD"
    labels = {"alertname": alertname, "namespace": NS, "deployment": "bazarr", "severity": "warning"}
    summary = f"Login to db failed with password={password} 😀"
    annotations = {
        "summary": summary,
        "description": f'curl -H "Authorization: Bearer {bearer}"\n said: \\"no\\" ' + "é" * 100_000,
        "nested": {"list": [1, 2.5, None, {"k": "v"}], "flag": True},  # coerced to its JSON text
    }
    doc = {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}", namespace="{NS}"}}',
        "status": "firing",
        "receiver": "agentic",
        "groupLabels": {"alertname": alertname},
        "commonLabels": labels,
        "commonAnnotations": {"summary": summary},
        "externalURL": "http://alertmanager.local",
        "alerts": [
            {
                "status": "firing",
                "labels": {**labels, "replicas": 3, "pod": 'bazarr-"0"\\x'},
                "annotations": annotations,
                "startsAt": "0001-01-01T00:00:00-14:00",  # year 1 in UTC: still storable
                "endsAt": "0001-01-01T00:00:00+14:00",  # Alertmanager's zero time, in another zone
                "generatorURL": "http://prometheus.local/graph?g0.expr=up%3D%3D0",
                "fingerprint": "fp-hostile-1",
            },
            {
                "status": "firing",
                "labels": {**labels, "pod": "bazarr-1"},
                "annotations": {"summary": summary},
                "startsAt": "9999-12-31T23:59:59Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": "fp-hostile-2",
            },
        ],
    }
    body = json.dumps(doc).encode()  # ASCII: 💥 and 😀 travel as surrogate-pair escapes
    assert b"\\ud83d\\udca5" in body
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=30) as http:
        started = time.monotonic()
        r = await http.post(f"{base}/alerts", content=body, headers=headers)
        assert r.status_code == 202, r.text
        [inc] = r.json()["incidents"]

        await eventually(lambda: _listed(env, inc), 30, "the hostile incident in `agentic incidents list`", every=0.5)
        assert time.monotonic() - started < 30

        async def triaged() -> dict[str, Any] | None:  # the search attributes come with triage
            row = await _listed(env, inc)
            return row if row and row["alertname"] else None

        row = await eventually(triaged, 30, "the incident's alert name in the list", every=0.5)
        assert row["alertname"] == alertname and row["severity"] == "warning", row

        # A hostile generic event too.
        ev = {"source": "script", "title": f"disk full; DB_PASS={password}", "occurred_at": "2026-11-21T10:00:00"}
        r = await http.post(f"{base}/events", content=json.dumps(ev).encode(), headers=headers)
        assert r.status_code == 202, r.text
        [ev_inc] = r.json()["incidents"]
        await eventually(lambda: _listed(env, ev_inc), 30, "the event's incident", every=0.5)

    async def alerts_recorded() -> int:
        conn = await ledger(data, env)
        try:
            return int(await conn.fetchval("select count(*) from alerts where incident_id = $1", inc))
        finally:
            await conn.close()

    assert await eventually(alerts_recorded, 30, "both alerts in the ledger", every=0.5) == 2
    conn = await ledger(data, env)
    try:
        rows = await conn.fetch(
            "select fingerprint, labels::text, annotations::text, starts_at, ends_at from alerts"
            " where incident_id = $1 order by fingerprint",
            inc,
        )
        stored = await conn.fetch("select title, group_key from incidents where id = any($1)", [inc, ev_inc])
    finally:
        await conn.close()
    assert [r["fingerprint"] for r in rows] == ["fp-hostile-1", "fp-hostile-2"]
    assert [r["ends_at"] for r in rows] == [None, None]
    assert rows[0]["starts_at"].year == 1 and rows[1]["starts_at"].year == 9999
    ledger_text = json.dumps([dict(r) for r in rows], default=str, ensure_ascii=False)
    ledger_text += json.dumps([dict(r) for r in stored], ensure_ascii=False)
    st = await show(env, inc)
    shown = json.dumps(st)
    for secret in (password, bearer):
        assert secret not in ledger_text and secret not in shown, secret
    assert "[SECRET_" in ledger_text and "é" * 1000 in ledger_text
    titles = {r["title"] for r in stored}
    assert "Login to db failed with password=[SECRET_1] 😀" in titles, titles
    assert any(t.startswith("disk full; DB_PASS=[SECRET_") for t in titles), titles


async def _listed(env: dict[str, str], incident_id: str) -> dict[str, Any] | None:
    return next((row for row in await incidents(env) if row["id"] == incident_id), None)


async def test_worker_killed_while_waiting_and_while_executing(world: World) -> None:
    """kill -9 of the worker while the incident awaits approval, and again during the MCP call:
    the supervisor restarts it, the incident completes, and the deployment was patched once."""
    env, data, k = world.env, world.data, world.k
    rc, out, err = await agentic(env, "alert", "send", "-", stdin=webhook("DemoDeploymentUnhealthy", "lidarr"))
    assert rc == 0, err
    inc = out.strip().split()[-1]
    await eventually(lambda: status_of(env, inc, {"awaiting_approval"}), 90, "the approval question")

    await _kill_worker(data)

    # The emulated API server holds lidarr's PATCH, so the worker can be killed while the tool call is in flight.
    release = asyncio.Event()
    held = asyncio.Event()

    async def slow_patch(_: Any) -> Any:
        held.set()
        await release.wait()
        return k.objects["apps/v1/deployments", NS, "lidarr"].raw  # the patched object, as the API answers

    k["patch", kmock.resource("apps/v1/deployments"), kmock.name("lidarr")] << slow_patch
    rc, _, err = await agentic(env, "approve", inc, "--by", "bob", limit=180)
    assert rc == 0, err

    await asyncio.wait_for(held.wait(), 120)
    await _kill_worker(data)
    release.set()

    # The alert resolves once lidarr has restarted.
    await eventually(lambda: _n(len(requests_for(k, "lidarr", "PATCH")) >= 1), 60, "the restart patch")
    rc, _, err = await agentic(
        env, "alert", "send", "-", stdin=webhook("DemoDeploymentUnhealthy", "lidarr", "resolved")
    )
    assert rc == 0, err
    st = await eventually(lambda: status_of(env, inc, {"resolved"}), 240, "the completed incident")
    assert [a["status"] for a in st["actions"]] == ["succeeded"]
    restarted = {
        json.dumps(r.data.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {}))
        for r in requests_for(k, "lidarr", "PATCH")
    }
    assert len(restarted) == 1, restarted  # one restart timestamp: the deployment restarted once
    conn = await ledger(data, env)
    try:
        # The same group fired earlier in this module (sonarr): that occurrence has its own action.
        n = await conn.fetchval(
            "select count(*) from actions where incident_id = $1 and arguments->>'deployment' = 'lidarr'", inc
        )
    finally:
        await conn.close()
    assert n == 1


async def _kill_worker(data: Path) -> None:
    state = json.loads((data / "stack.json").read_text())
    pid = state["parts"]["worker"]["pid"]
    os.kill(pid, signal.SIGKILL)

    async def back() -> bool:
        now = json.loads((data / "stack.json").read_text())["parts"]["worker"]
        return bool(now["pid"] != pid and now["pid"])

    await eventually(back, 120, "the supervisor to restart the worker")
