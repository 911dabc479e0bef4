"""The alert intake against a real Temporal dev server.

A stand-in workflow is registered under the name `IncidentWorkflow` (the real one lives
elsewhere): it keeps its input and every `alerts` signal, answers a query with them, and
finishes once a signal says the group resolved. The app is driven in process through
httpx's ASGI transport; the last tests run the real `python -m workers.intake` process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from agentic_core import policy
from agentic_core import search_attributes as sa
from agentic_core.alerts import AlertStatus, incident_id_for
from agentic_core.models import ApprovalMode
from tests.support.env import free_port
from tests.support.intake import (
    MAX_BODY,
    QUERY_RECEIVED,
    TASK_QUEUE,
    TOKEN,
    Received,
    StandInIncident,
    alert,
    factory_for,
    incident_of,
    post,
    process_env,
    settings,
    spawn,
    stop,
    uniq,
    wait_health,
    webhook,
)
from tests.support.temporal import dev_server_with_attributes, start_dev_server
from workers.intake import create_app
from workers.temporal import connect

# --------------------------------------------------------------------------- the stand-in workflow


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[Client]:
    env = await start_dev_server()
    try:
        async with Worker(
            env.client,
            task_queue=TASK_QUEUE,
            workflows=[StandInIncident],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            yield env.client
    finally:
        await env.shutdown()


@pytest.fixture
async def http(temporal: Client) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(factory_for(temporal), settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as client:
        yield client


async def received(client: Client, incident_id: str, *, signals: int, within: float = 10.0) -> Received:
    """The stand-in's state once it has taken `signals` signals (the worker applies them asynchronously)."""
    deadline = time.monotonic() + within
    while True:
        state: Received = await client.get_workflow_handle(incident_id).query(QUERY_RECEIVED, result_type=Received)
        if len(state.signals) >= signals or time.monotonic() > deadline:
            return state
        await asyncio.sleep(0.05)


async def assert_not_started(client: Client, incident_id: str) -> None:
    with pytest.raises(RPCError) as err:
        await client.get_workflow_handle(incident_id).describe()
    assert err.value.status == RPCStatusCode.NOT_FOUND


async def listed(client: Client, query: str, *, expect: int, within: float = 10.0) -> list[str]:
    """Workflow ids a visibility query lists, once it lists `expect` of them (visibility lags a little)."""
    deadline = time.monotonic() + within
    while True:
        ids = [w.id async for w in client.list_workflows(query)]
        if len(ids) >= expect or time.monotonic() > deadline:
            return ids
        await asyncio.sleep(0.1)


# --------------------------------------------------------------------------- POST /alerts


async def test_webhook_opens_an_incident(temporal: Client, http: httpx.AsyncClient) -> None:
    doc = webhook("agentic-" + uniq())
    r = await post(http, "/alerts", doc)
    assert r.status_code == 202, r.text
    incident = incident_of(doc)
    assert r.json() == {"accepted": True, "incidents": [incident], "alerts": 1}

    desc = await temporal.get_workflow_handle(incident).describe()
    assert desc.workflow_type == "IncidentWorkflow"
    assert desc.task_queue == TASK_QUEUE
    state = await received(temporal, incident, signals=1)
    assert len(state.signals) == 1
    group = state.signals[0].group
    assert group.incident_id == incident and group.status == AlertStatus.FIRING
    assert group.alerts[0].labels["pod"] == "sonarr-7d9f8b6c5-x2x7q"
    assert group.alerts[0].ends_at is None  # Alertmanager's zero time
    assert group.alerts[0].summary == "Pod is crash looping."
    # The run input: the same group and the settings' knobs.
    assert state.input.incident_id == incident and state.input.group == group
    cfg = state.input.config
    assert cfg.approval_mode == ApprovalMode.NORMAL and cfg.approvers == ["alice", "12345"]
    assert (cfg.confidence_threshold, cfg.remind_after_s, cfg.escalate_after_s) == (0.8, 60, 120)
    assert (cfg.expire_after_s, cfg.verify_window_s) == (600, 30)


async def test_a_new_incident_is_listed_with_its_alert_before_any_worker_runs_it() -> None:
    # `agentic incidents list` reads these attributes: a run that no worker has triaged yet (a
    # busy worker, a burst, a worker restarting) still shows what fired, its severity and status.
    async with dev_server_with_attributes() as env:
        app = create_app(factory_for(env.client), settings())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
            name = "DiskAlmostFull" + uniq()
            doc = webhook("agentic-" + uniq(), name)
            r = await post(http, "/alerts", doc)
            assert r.status_code == 202, r.text
        incident = incident_of(doc)
        attrs = (await env.client.get_workflow_handle(incident).describe()).typed_search_attributes
        assert attrs.get(sa.ALERT_NAME) == name
        assert attrs.get(sa.INCIDENT_STATUS) == "open"
        tri = policy.triage(doc["commonLabels"], doc["commonAnnotations"])
        assert (attrs.get(sa.INCIDENT_SEVERITY), attrs.get(sa.INCIDENT_CATEGORY)) == (
            tri.severity.value,
            tri.category.value,
        )
        assert await listed(env.client, f"AlertName = '{name}' AND IncidentStatus = 'open'", expect=1) == [incident]


async def test_a_namespace_without_the_attributes_still_opens_incidents(
    temporal: Client, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    # The module's dev server has no search attributes registered: the start with them is refused,
    # and the intake starts the incident without them (one warning), instead of a 503 for every alert.
    docs = [webhook("agentic-" + uniq(), "Unregistered" + uniq()) for _ in range(2)]
    with caplog.at_level(logging.WARNING, logger="agentic.intake"):
        for doc in docs:
            r = await post(http, "/alerts", doc)
            assert r.status_code == 202, r.text
            assert (await temporal.get_workflow_handle(incident_of(doc)).describe()).workflow_type == "IncidentWorkflow"
    warned = [rec for rec in caplog.records if "refused the incident's search attributes" in rec.getMessage()]
    assert len(warned) == 1, caplog.text
    assert "no mapping defined for search attribute" in warned[0].getMessage()  # Temporal's own refusal, quoted


async def test_repeats_signal_one_run(temporal: Client, http: httpx.AsyncClient) -> None:
    doc = webhook("agentic-" + uniq())
    incident = incident_of(doc)
    for _ in range(5):
        r = await post(http, "/alerts", doc)
        assert r.status_code == 202, r.text
        assert r.json()["incidents"] == [incident]
    state = await received(temporal, incident, signals=5)
    assert len(state.signals) == 5  # all five in the run that is open now: no second run
    assert await listed(temporal, f"WorkflowId = '{incident}'", expect=1) == [incident]
    assert (await temporal.get_workflow_handle(incident).describe()).run_id == state.run_id


async def test_resolved_signals_then_a_new_firing_is_a_new_run(temporal: Client, http: httpx.AsyncClient) -> None:
    receiver = "agentic-" + uniq()
    firing = webhook(receiver)
    incident = incident_of(firing)
    assert (await post(http, "/alerts", firing)).status_code == 202
    first = await received(temporal, incident, signals=1)

    resolved = webhook(receiver, status="resolved")
    r = await post(http, "/alerts", resolved)
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": True, "incidents": [incident], "alerts": 1}
    result = await temporal.get_workflow_handle(incident, run_id=first.run_id, result_type=Received).result()
    assert [s.group.status for s in result.signals] == [AlertStatus.FIRING, AlertStatus.RESOLVED]
    assert result.signals[1].group.alerts[0].ends_at is not None

    # The incident closed; the alert fires again later: a new run under the same id.
    assert (await post(http, "/alerts", firing)).status_code == 202
    again = await received(temporal, incident, signals=1)
    assert again.run_id != first.run_id
    assert [s.group.status for s in again.signals] == [AlertStatus.FIRING]

    # A resolution with no open incident does not open one.
    other = webhook("agentic-" + uniq(), status="resolved")
    r = await post(http, "/alerts", other)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["incidents"] == [] and body["ignored"][0]["incident_id"] == incident_of(other)
    await assert_not_started(temporal, incident_of(other))


async def test_a_different_group_is_a_second_incident(temporal: Client, http: httpx.AsyncClient) -> None:
    receiver = "agentic-" + uniq()
    a = webhook(receiver, "KubePodCrashLooping")
    b = webhook(receiver, "KubeMemoryOvercommit")
    ra, rb = await post(http, "/alerts", a), await post(http, "/alerts", b)
    assert ra.status_code == rb.status_code == 202
    ia, ib = ra.json()["incidents"][0], rb.json()["incidents"][0]
    assert ia != ib and {ia, ib} == {incident_of(a), incident_of(b)}
    for incident in (ia, ib):
        assert len((await received(temporal, incident, signals=1)).signals) == 1


async def test_group_with_several_alerts(temporal: Client, http: httpx.AsyncClient) -> None:
    members = [alert(pod=f"radarr-5c8d-{i}") for i in range(3)]
    doc = webhook("agentic-" + uniq(), alerts=members)
    r = await post(http, "/alerts", doc)
    assert r.status_code == 202 and r.json()["alerts"] == 3
    state = await received(temporal, incident_of(doc), signals=1)
    assert [a.labels["pod"] for a in state.signals[0].group.alerts] == [f"radarr-5c8d-{i}" for i in range(3)]


# --------------------------------------------------------------------------- refusals


async def test_bad_requests_are_refused_and_start_nothing(temporal: Client) -> None:
    tq = "intake-refusals-" + uniq()
    app = create_app(factory_for(temporal), settings(task_queue=tq))
    doc = webhook("agentic-" + uniq())
    incident = incident_of(doc)
    valid = json.dumps(doc).encode()

    def without_fingerprint() -> dict[str, Any]:
        d = json.loads(valid)
        del d["alerts"][0]["fingerprint"]
        return d

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
        cases: list[tuple[str, httpx.Response, int, str]] = [
            ("no token", await post(http, "/alerts", doc, token=None), 401, "missing bearer token"),
            ("wrong token", await post(http, "/alerts", doc, token=TOKEN + "x"), 401, "invalid bearer token"),
            (
                "basic auth",
                await post(http, "/alerts", doc, token=None, headers={"Authorization": "Basic dXNlcjpwYXNz"}),
                401,
                "Bearer",
            ),
            (
                "text/plain",
                await post(http, "/alerts", doc, content_type="text/plain"),
                415,
                "Content-Type must be application/json (got text/plain)",
            ),
            (
                "too big by Content-Length",
                await post(http, "/alerts", content=b" " * (MAX_BODY + 1)),
                413,
                f"{MAX_BODY + 1} bytes is over the limit of {MAX_BODY}",
            ),
            ("broken JSON", await post(http, "/alerts", content=valid[:-7]), 400, "not valid JSON"),
            ("empty body", await post(http, "/alerts", content=b""), 400, "empty"),
            ("JSON array", await post(http, "/alerts", [doc]), 400, "expected a JSON object"),
            (
                "missing fingerprint",
                await post(http, "/alerts", without_fingerprint()),
                422,
                "alerts[0].fingerprint: field required",
            ),
            ("version 3", await post(http, "/alerts", {**doc, "version": "3"}), 422, "version: input should be '4'"),
            ("no alerts", await post(http, "/alerts", {**doc, "alerts": []}), 422, "alerts: list should have at least"),
            (
                "bad timestamp",
                await post(http, "/alerts", {**doc, "alerts": [{**doc["alerts"][0], "startsAt": "yesterday"}]}),
                422,
                "alerts[0].startsAt: input should be a valid datetime",
            ),
        ]

        # A body larger than its Content-Length says, or streamed without one.
        async def stream() -> AsyncIterator[bytes]:
            for _ in range(MAX_BODY // 1024 + 2):
                yield b" " * 1024

        lying = await http.post(
            "/alerts",
            content=stream(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        cases.append(("too big while reading", lying, 413, f"over the limit of {MAX_BODY} bytes"))
        assert "content-length" not in {k.lower() for k in lying.request.headers}

        for name, r, status, message in cases:
            assert r.status_code == status, (name, r.status_code, r.text)
            body = r.json()
            assert body["accepted"] is False and message in body["error"], (name, body)
            if status == 401:
                assert r.headers["www-authenticate"].startswith("Bearer"), name
        assert cases[0][1].json()["error"].count("Authorization: Bearer") == 1
        details = cases[8][1].json()["details"]
        assert details == ["alerts[0].fingerprint: field required"]

        await assert_not_started(temporal, incident)
        # The same payload, now valid: exactly one workflow on this task queue, and it is this one.
        ok = await post(http, "/alerts", doc)
        assert ok.status_code == 202, ok.text
    assert await listed(temporal, f"TaskQueue = '{tq}'", expect=1) == [incident]


async def test_schema_errors_name_every_field(http: httpx.AsyncClient) -> None:
    doc = webhook("agentic-" + uniq())
    bad = {**doc, "status": "pending", "alerts": [{**doc["alerts"][0], "labels": {}}, {"status": "firing"}]}
    r = await post(http, "/alerts", bad)
    assert r.status_code == 422
    details = r.json()["details"]
    assert "status: input should be 'firing' or 'resolved'" in details
    assert "alerts[0].labels: dictionary should have at least 1 item after validation, not 0" in details
    assert {"alerts[1].labels: field required", "alerts[1].startsAt: field required"} <= set(details)
    assert "alerts[1].fingerprint: field required" in details
    assert "pending" not in r.text  # refused values are not echoed back


async def test_content_type_variants(http: httpx.AsyncClient) -> None:
    doc = webhook("agentic-" + uniq())
    r = await post(http, "/alerts", doc, content_type="application/json; charset=utf-8")
    assert r.status_code == 202, r.text
    r = await post(http, "/alerts", doc, content_type="")
    assert r.status_code == 415 and "got none" in r.json()["error"]


async def test_other_routes(temporal: Client, http: httpx.AsyncClient) -> None:
    r = await http.get("/")
    assert r.status_code == 200 and "POST /alerts" in r.json()["routes"]
    r = await http.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "temporal": "serving"}
    r = await http.get("/alerts")
    assert r.status_code == 405 and r.json()["accepted"] is False
    r = await http.get("/nope")
    assert r.status_code == 404 and "no such route" in r.json()["error"]


# --------------------------------------------------------------------------- POST /events


def event(title: str = "Latency SLO violated for media/jellyfin", **extra: Any) -> dict[str, Any]:
    return {
        "source": "coroot",
        "title": title,
        "severity": "critical",
        "description": "p99 latency 2.3s over the 500ms objective for 10m",
        "labels": {"namespace": "media", "app": "jellyfin"},
        "url": "http://coroot.monitoring:8080/p/default/app/media:Deployment:jellyfin",
        **extra,
    }


async def test_events_single_and_list(temporal: Client, http: httpx.AsyncClient) -> None:
    g = uniq()
    single = event(group=f"slo-{g}")
    r = await post(http, "/events", single)
    assert r.status_code == 202, r.text
    incident = incident_id_for("events:coroot", f"slo-{g}")
    assert r.json() == {"accepted": True, "incidents": [incident], "events": 1}
    state = await received(temporal, incident, signals=1)
    assert state.signals[0].group.source == "coroot"
    assert state.signals[0].group.alerts[0].labels["severity"] == "critical"

    renovate = {
        "source": "renovate",
        "title": "Update ghcr.io/onedr0p/sonarr to v4.0.10",
        "severity": "info",
        "group": f"renovate-{g}",
        "labels": {"repository": "homelab/cluster"},
    }
    batch = [event(group=f"disk-{g}", title="Disk 91% full"), renovate, event(group=f"disk-{g}", title="Disk 95%")]
    r = await post(http, "/events", batch)
    assert r.status_code == 202, r.text
    disk = incident_id_for("events:coroot", f"disk-{g}")
    reno = incident_id_for("events:renovate", f"renovate-{g}")
    assert r.json() == {"accepted": True, "incidents": [disk, reno], "events": 3}
    state = await received(temporal, disk, signals=2)
    assert [s.group.alerts[0].annotations["summary"] for s in state.signals] == ["Disk 91% full", "Disk 95%"]
    assert len((await received(temporal, reno, signals=1)).signals) == 1


async def test_events_are_validated_as_a_whole(temporal: Client, http: httpx.AsyncClient) -> None:
    g = uniq()
    first_ok = event(group=f"ok-{g}")
    r = await post(http, "/events", [first_ok, {"source": "coroot"}])
    assert r.status_code == 422
    assert r.json()["details"] == ["[1].title: field required"]
    await assert_not_started(temporal, incident_id_for("events:coroot", f"ok-{g}"))  # nothing half-done

    r = await post(http, "/events", [])
    assert r.status_code == 422 and "empty" in r.json()["error"]
    r = await post(http, "/events", [{"source": "coroot", "title": "t", "group": f"many-{g}-{i}"} for i in range(101)])
    assert r.status_code == 422 and "at most 100" in r.json()["error"]
    await assert_not_started(temporal, incident_id_for("events:coroot", f"many-{g}-0"))
    r = await post(http, "/events", {"title": "no source"})
    assert r.status_code == 422 and r.json()["details"] == ["source: field required"]
    r = await post(http, "/events", "just a string")
    assert r.status_code == 400 and "got a string" in r.json()["error"]
    r = await post(http, "/events", event(), token="nope")
    assert r.status_code == 401


# --------------------------------------------------------------------------- Temporal down


async def test_temporal_unreachable_is_503(temporal: Client) -> None:
    closed = free_port()
    s = settings(temporal_address=f"127.0.0.1:{closed}")

    async def factory() -> Client:
        return await connect(s.temporal_target, s.temporal_namespace)

    app = create_app(factory, s)
    doc = webhook("agentic-" + uniq())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
        started = time.monotonic()
        r = await post(http, "/alerts", doc)
        assert time.monotonic() - started < 5
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "10"
        body = r.json()
        assert body["accepted"] is False and f"cannot reach Temporal at 127.0.0.1:{closed}" in body["error"]
        r = await post(http, "/events", event())
        assert r.status_code == 503 and "retry-after" in r.headers
        r = await http.get("/healthz")
        assert r.status_code == 503 and r.json()["status"] == "unavailable"
        # Validation comes first: a bad payload is a 4xx even with Temporal down.
        r = await post(http, "/alerts", {**doc, "version": "3"})
        assert r.status_code == 422
        r = await post(http, "/alerts", doc, token=None)
        assert r.status_code == 401
    await assert_not_started(temporal, incident_of(doc))


async def test_temporal_going_away_is_503() -> None:
    env = await start_dev_server()
    target = env.client.service_client.config.target_host
    app = create_app(factory_for(env.client), settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
        before = await post(http, "/alerts", webhook("agentic-" + uniq()))
        assert before.status_code == 202, before.text
        await env.shutdown()
        started = time.monotonic()
        r = await post(http, "/alerts", webhook("agentic-" + uniq()))
        assert time.monotonic() - started < 12  # the SDK's own retries, bounded by the intake
        assert r.status_code == 503 and r.headers["retry-after"] == "10", r.text
        assert f"Temporal at {target}" in r.json()["error"] and "UNAVAILABLE" in r.json()["error"]
        r = await http.get("/healthz")
        assert r.status_code == 503


async def test_unexpected_error_is_503_not_500(temporal: Client) -> None:
    async def broken() -> Client:
        raise RuntimeError("boom")

    app = create_app(broken, settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
        r = await post(http, "/alerts", webhook("agentic-" + uniq()))
    assert r.status_code == 503 and "retry-after" in r.headers


def test_app_requires_a_token() -> None:
    from workers.errors import AgenticError

    with pytest.raises(AgenticError, match="AGENTIC_INTAKE_TOKEN"):
        create_app(factory_for(None), settings(intake_token=None))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- text no store can hold

HOSTILE = "@@hostile@@"  # stands for a raw JSON escape in a payload (json.dumps cannot write one)


def with_escape(doc: Any, escape: str) -> bytes:
    """`doc` as JSON with every HOSTILE replaced by `escape`, e.g. the six characters `\\ud800`."""
    text = json.dumps(doc)
    assert HOSTILE in text
    return text.replace(HOSTILE, escape).encode()


def _webhook_case(where: str) -> tuple[dict[str, Any], str]:
    """A valid webhook with HOSTILE planted at `where`, and the field the 422 must name."""
    doc = webhook("agentic-" + uniq())
    a = doc["alerts"][0]
    field = {
        "label value": "alerts[0].labels.pod",
        "annotation value": "alerts[0].annotations.description",
        "label name": "alerts[0].labels.x",
        "common label": "commonLabels.namespace",
        "common annotation": "commonAnnotations.summary",
        "group label": "groupLabels.alertname",
        "generatorURL": "alerts[0].generatorURL",
        "externalURL": "externalURL",
        "fingerprint": "alerts[0].fingerprint",
        "groupKey": "groupKey",
        "receiver": "receiver",
    }[where]
    if where == "label value":
        a["labels"]["pod"] += HOSTILE
    elif where == "annotation value":
        a["annotations"]["description"] = HOSTILE + a["annotations"]["description"]
    elif where == "label name":
        a["labels"]["x" + HOSTILE] = "v"
    elif where == "common label":
        doc["commonLabels"]["namespace"] = HOSTILE
    elif where == "common annotation":
        doc["commonAnnotations"]["summary"] += HOSTILE
    elif where == "group label":
        doc["groupLabels"]["alertname"] += HOSTILE
    elif where == "generatorURL":
        a["generatorURL"] += HOSTILE
    elif where == "externalURL":
        doc["externalURL"] += HOSTILE
    elif where == "fingerprint":
        a["fingerprint"] += HOSTILE
    elif where == "groupKey":
        doc["groupKey"] += HOSTILE
    else:
        doc["receiver"] += HOSTILE
    return doc, field


WEBHOOK_PLACES = [
    "label value",
    "annotation value",
    "label name",
    "common label",
    "common annotation",
    "group label",
    "generatorURL",
    "externalURL",
    "fingerprint",
    "groupKey",
    "receiver",
]
EVENT_PLACES = {
    "title": "title",
    "description": "description",
    "labels": "labels.app",
    "annotations": "annotations.note",
    "url": "url",
    "group": "group",
    "source": "source",
}


def _event_case(where: str) -> tuple[dict[str, Any], str]:
    ev = event(group="hostile-" + uniq(), annotations={"note": "x"})
    if where == "labels":
        ev["labels"]["app"] += HOSTILE
    elif where == "annotations":
        ev["annotations"]["note"] += HOSTILE
    else:
        ev[where] += HOSTILE
    return ev, EVENT_PLACES[where]


def assert_refused_naming(r: httpx.Response, field: str) -> None:
    assert r.status_code == 422, (field, r.status_code, r.text)
    assert "retry-after" not in r.headers
    body = r.json()  # valid JSON, whatever the payload held
    assert body["accepted"] is False
    assert any(line.startswith(field) for line in body["details"]), (field, body)


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\ud83d"])
async def test_a_lone_surrogate_is_a_422_naming_the_field(
    temporal: Client, http: httpx.AsyncClient, escape: str
) -> None:
    """A lone surrogate used to pass validation in label and annotation values and fail when the
    workflow input was serialised: a 503, which Alertmanager retries forever."""
    for where in WEBHOOK_PLACES:
        doc, field = _webhook_case(where)
        r = await post(http, "/alerts", content=with_escape(doc, escape))
        assert_refused_naming(r, field)
        assert "lone surrogate" in r.text or "unicode" in r.text, r.text
        if where not in ("groupKey", "receiver"):
            await assert_not_started(temporal, incident_of(doc))
    for where in EVENT_PLACES:
        ev, field = _event_case(where)
        r = await post(http, "/events", content=with_escape(ev, escape))
        assert_refused_naming(r, field)
        r = await post(http, "/events", content=with_escape([event(group="ok-" + uniq()), ev], escape))
        assert_refused_naming(r, f"[1].{field}")


async def test_a_label_name_is_shown_escaped_in_the_error(http: httpx.AsyncClient) -> None:
    doc, _ = _webhook_case("label name")
    r = await post(http, "/alerts", content=with_escape(doc, "\\ud800"))
    assert r.status_code == 422
    [line] = r.json()["details"]  # pydantic shows the name's surrogate as U+FFFD: still valid JSON
    assert line.startswith("alerts[0].labels.x") and ".[key]: contains a lone surrogate (U+D800)" in line, line


async def test_a_surrogate_pair_is_one_character_and_welcome(temporal: Client, http: httpx.AsyncClient) -> None:
    doc, _ = _webhook_case("label value")
    r = await post(http, "/alerts", content=with_escape(doc, "\\ud83d\\ude00"))
    assert r.status_code == 202, r.text
    state = await received(temporal, incident_of(doc), signals=1)
    assert state.signals[0].group.alerts[0].labels["pod"].endswith("\U0001f600")


async def test_a_nul_character_is_a_422_naming_the_field(temporal: Client, http: httpx.AsyncClient) -> None:
    """PostgreSQL's text and jsonb cannot hold U+0000: such an alert used to get a 202, then the
    ledger refused its rows and the incident stayed with 0 alerts."""
    for where in WEBHOOK_PLACES:
        doc, field = _webhook_case(where)
        r = await post(http, "/alerts", content=with_escape(doc, "\\u0000"))
        assert_refused_naming(r, field)
        assert "NUL character (U+0000)" in r.text, r.text
        if where not in ("groupKey", "receiver"):
            await assert_not_started(temporal, incident_of(doc))
    doc, _ = _webhook_case("label name")
    r = await post(http, "/alerts", content=with_escape(doc, "\\u0000"))
    assert r.json()["details"][0].startswith("alerts[0].labels.x\\x00.[key]: contains a NUL"), r.text
    for where in EVENT_PLACES:
        ev, field = _event_case(where)
        r = await post(http, "/events", content=with_escape(ev, "\\u0000"))
        assert_refused_naming(r, field)
    # Nested values are coerced to their JSON text, where a NUL is the escape `\u0000`: storable.
    doc = webhook("agentic-" + uniq())
    doc["alerts"][0]["annotations"]["nested"] = {"k": "a\x00b"}  # type: ignore[assignment]
    r = await post(http, "/alerts", doc)
    assert r.status_code == 202, r.text
    state = await received(temporal, incident_of(doc), signals=1)
    assert state.signals[0].group.alerts[0].annotations["nested"] == '{"k": "a\\u0000b"}'


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("startsAt", "0001-01-01T00:00:00+14:00"),  # before year 1 in UTC
        ("startsAt", "9999-12-31T23:59:59-14:00"),  # after year 9999 in UTC
        ("endsAt", "9999-12-31T23:59:59-14:00"),
    ],
)
async def test_a_time_the_ledger_cannot_store_is_a_422(
    temporal: Client, http: httpx.AsyncClient, field: str, value: str
) -> None:
    doc = webhook("agentic-" + uniq())
    doc["alerts"].append({**alert(pod="other"), field: value})
    r = await post(http, "/alerts", doc)
    assert r.status_code == 422, r.text
    assert r.json()["details"] == [
        f"alerts[1].{field}: is outside the range the ledger can store: in UTC it must fall within the years 1 to 9999"
    ]
    await assert_not_started(temporal, incident_of(doc))

    ev = event(group="time-" + uniq(), occurred_at=value)
    r = await post(http, "/events", ev)
    assert r.status_code == 422 and r.json()["details"][0].startswith("occurred_at: is outside the range"), r.text
    await assert_not_started(temporal, incident_id_for("events:coroot", ev["group"]))


async def test_times_at_the_edges_that_the_ledger_can_store(temporal: Client, http: httpx.AsyncClient) -> None:
    members = [
        {**alert(pod="a"), "endsAt": "0001-01-01T00:00:00Z"},  # Alertmanager's zero time: not ended
        {**alert(pod="b"), "endsAt": "0001-01-01T00:00:00+14:00"},  # a zero time in any zone
        {**alert(pod="c"), "startsAt": "0001-01-01T00:00:00-14:00"},  # year 1 in UTC too
        {**alert(pod="d"), "startsAt": "9999-12-31T23:59:59Z"},
        {**alert(pod="e"), "startsAt": "2026-11-21T14:02:11"},  # no zone: UTC
    ]
    doc = webhook("agentic-" + uniq(), alerts=members)
    r = await post(http, "/alerts", doc)
    assert r.status_code == 202, r.text
    alerts = (await received(temporal, incident_of(doc), signals=1)).signals[0].group.alerts
    assert [a.ends_at for a in alerts[:2]] == [None, None]
    assert alerts[2].starts_at.isoformat() == "0001-01-01T00:00:00-14:00"
    assert alerts[3].starts_at.year == 9999
    assert alerts[4].starts_at.isoformat() == "2026-11-21T14:02:11+00:00"


# --------------------------------------------------------------------------- secrets

AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
BEARER = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiIsImlhdCI6MTcwMDAwMDAwMH0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
SECRETS = {
    "bearer": BEARER,
    "aws key id": AWS_KEY_ID,
    "aws secret": AWS_SECRET,
    "password": "Tr0ub4dor#3",
    "url password": "s3cr3t-pw",
    "jwt": JWT,
    "dollar password": "$uperS3cret!",
    "pwd": "hunter2",
    "DB_PASS": "correct-horse-42",
}


def secret_annotations() -> dict[str, str]:
    s = SECRETS
    return {
        "summary": f"Login to db failed with password={s['password']}",
        "description": (
            f"curl -H 'Authorization: Bearer {s['bearer']}' answered 401; "
            f"AWS_ACCESS_KEY_ID={s['aws key id']} AWS_SECRET_ACCESS_KEY={s['aws secret']}; "
            f"dsn postgres://app:{s['url password']}@db.shop.svc:5432/app; session {s['jwt']}; "
            f"password={s['password']} (again)"
        ),
        "config": f"db_password={s['dollar password']} pwd={s['pwd']} DB_PASS={s['DB_PASS']}",
    }


def payload_texts(history: Any) -> str:
    """Every payload of a workflow's history (input, signals, the UI summary), decoded."""
    import base64

    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("data"), str) and "metadata" in node:
                found.append(base64.b64decode(node["data"]).decode("utf-8", "replace"))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(history.to_json_dict())
    return "\n".join(found)


async def test_secrets_are_redacted_before_the_workflow_sees_them(
    temporal: Client, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The secrets of an alert used to travel verbatim into the workflow input, its history, the
    ledger's alerts table and the title Telegram shows."""
    doc = webhook("agentic-" + uniq())
    a = doc["alerts"][0]
    a["annotations"] = secret_annotations()
    a["labels"]["dsn"] = f"postgres://app:{SECRETS['url password']}@db.shop.svc:5432/app"
    a["generatorURL"] += f"&api_key={SECRETS['pwd']}"
    doc["commonAnnotations"] = {"summary": a["annotations"]["summary"]}
    raw_labels = dict(a["labels"])
    with caplog.at_level(logging.INFO, logger="agentic.intake"):
        r = await post(http, "/alerts", doc)
    assert r.status_code == 202, r.text
    incident = incident_of(doc)  # from the raw group key: repeats still reach the same incident
    assert r.json()["incidents"] == [incident]

    state = await received(temporal, incident, signals=1)
    group = state.signals[0].group
    everything = state.model_dump_json()
    history = payload_texts(await temporal.get_workflow_handle(incident).fetch_history())
    assert "Login to db failed" in history  # the payloads were read
    for name, value in SECRETS.items():
        assert value not in everything, name
        assert value not in history, name
    got = group.alerts[0]
    # the same secret, the same placeholder, everywhere in the group
    m = re.fullmatch(r"Login to db failed with password=(\[SECRET_\d+\])", got.annotations["summary"])
    assert m is not None, got.annotations["summary"]
    assert group.common_annotations["summary"] == got.annotations["summary"]
    assert f"password={m.group(1)} (again)" in got.annotations["description"]
    url = re.fullmatch(r"postgres://app:(\[SECRET_\d+\])@db.shop.svc:5432/app", got.labels["dsn"])
    assert url is not None and f"postgres://app:{url.group(1)}@db" in got.annotations["description"]
    assert len(set(re.findall(r"\[SECRET_\d+\]", everything))) == len(SECRETS)  # one placeholder per value
    # what the platform groups, fingerprints and matches runbooks on is untouched
    assert {k: v for k, v in got.labels.items() if k != "dsn"} == {k: v for k, v in raw_labels.items() if k != "dsn"}
    assert got.fingerprint == a["fingerprint"] and group.group_key == doc["groupKey"]
    assert group.common_labels == doc["commonLabels"] and group.group_labels == doc["groupLabels"]
    # counted in the log, never shown
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "agentic.intake"]
    assert len(SECRETS) > 1 and any(line.endswith(f"; {len(SECRETS)} secrets redacted") for line in lines), lines
    for value in SECRETS.values():
        assert value not in caplog.text


async def test_event_secrets_are_redacted(temporal: Client, http: httpx.AsyncClient) -> None:
    ann = secret_annotations()
    ev = event(
        title=ann["summary"],
        description=ann["description"],
        annotations={"config": ann["config"]},
        group="secret-" + uniq(),
    )
    r = await post(http, "/events", ev)
    assert r.status_code == 202, r.text
    incident = incident_id_for("events:coroot", ev["group"])
    everything = (await received(temporal, incident, signals=1)).model_dump_json()
    for name, value in SECRETS.items():
        assert value not in everything, name
    assert "Login to db failed with password=[SECRET_1]" in everything


async def test_keep_secrets_keeps_the_alert_as_it_came(temporal: Client) -> None:
    app = create_app(factory_for(temporal), settings(intake_keep_secrets=True))
    doc = webhook("agentic-" + uniq())
    doc["alerts"][0]["annotations"] = secret_annotations()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
        r = await post(http, "/alerts", doc)
    assert r.status_code == 202, r.text
    got = (await received(temporal, incident_of(doc), signals=1)).signals[0].group.alerts[0]
    assert got.annotations == secret_annotations()


async def test_ordinary_alerts_are_unchanged_by_redaction(temporal: Client, http: httpx.AsyncClient) -> None:
    doc = webhook("agentic-" + uniq(), alerts=[alert(pod=f"sonarr-{i}") for i in range(3)])
    doc["alerts"][0]["annotations"]["description"] = "GET /api 401 Unauthorized: missing token: send a bearer token"
    r = await post(http, "/alerts", doc)
    assert r.status_code == 202, r.text
    group = (await received(temporal, incident_of(doc), signals=1)).signals[0].group
    for got, sent in zip(group.alerts, doc["alerts"], strict=True):
        assert (got.labels, got.annotations, got.generator_url) == (
            sent["labels"],
            sent["annotations"],
            sent["generatorURL"],
        )


# --------------------------------------------------------------------------- the process


async def test_process_serves_and_stops_on_sigterm(temporal: Client) -> None:
    port = free_port()
    target = temporal.service_client.config.target_host
    proc = await spawn(
        process_env(
            intake_token=TOKEN, intake_port=str(port), host="127.0.0.1", temporal_address=target, task_queue=TASK_QUEUE
        )
    )
    try:
        await wait_health(port, proc, want=200)
        doc = webhook("agentic-" + uniq())
        async with httpx.AsyncClient(timeout=15) as http:
            r = await http.post(
                f"http://127.0.0.1:{port}/alerts?token=not-logged",
                json=doc,
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            assert r.status_code == 202, r.text
            assert r.json()["incidents"] == [incident_of(doc)]
            bad = await http.post(f"http://127.0.0.1:{port}/alerts", json=doc)
            assert bad.status_code == 401
        assert len((await received(temporal, incident_of(doc), signals=1)).signals) == 1
    finally:
        code, log = await stop(proc) if proc.returncode is None else (proc.returncode, "")
    assert code == 0, log
    assert "intake: listening on http://127.0.0.1:" in log and "reachable" in log
    assert '"POST /alerts" 202' in log and '"POST /alerts" 401' in log
    assert "intake: stopped" in log
    for secret in (TOKEN, "not-logged", "Pod is crash looping", "sonarr-7d9f8b6c5"):
        assert secret not in log, secret
    assert "Traceback" not in log


async def test_process_starts_with_temporal_down_and_recovers() -> None:
    port, tport = free_port(), free_port()
    proc = await spawn(
        process_env(
            intake_token=TOKEN,
            intake_port=str(port),
            host="127.0.0.1",
            temporal_address=f"127.0.0.1:{tport}",
            task_queue=TASK_QUEUE,
        )
    )
    env: WorkflowEnvironment | None = None
    try:
        await wait_health(port, proc, want=503)
        doc = webhook("agentic-" + uniq())
        url = f"http://127.0.0.1:{port}/alerts"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(timeout=15) as http:
            r = await http.post(url, json=doc, headers=auth)
            assert r.status_code == 503 and r.headers["retry-after"] == "10", r.text
            env = await start_dev_server(port=tport)  # Temporal comes up; the intake needs no restart
            await wait_health(port, proc, want=200)
            r = await http.post(url, json=doc, headers=auth)
            assert r.status_code == 202, r.text
        desc = await env.client.get_workflow_handle(incident_of(doc)).describe()
        assert desc.workflow_type == "IncidentWorkflow"
    finally:
        code, log = await stop(proc) if proc.returncode is None else (proc.returncode, "")
        if env is not None:
            await env.shutdown()
    assert code == 0, log
    assert "NOT reachable yet, answering 503" in log
    assert "Traceback" not in log


async def run_once(env: dict[str, str]) -> tuple[int, list[str]]:
    proc = await spawn(env)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode().splitlines()


async def test_process_without_token_exits_2_with_one_line() -> None:
    code, lines = await run_once(process_env(intake_port=str(free_port())))
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: AGENTIC_INTAKE_TOKEN is not set"), lines


async def test_process_port_in_use_exits_2_with_one_line() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, lines = await run_once(process_env(intake_token=TOKEN, intake_port=str(port), host="127.0.0.1"))
    assert code == 2
    assert lines == [f"error: port {port} on 127.0.0.1 is already in use (set AGENTIC_INTAKE_PORT to another port)"]


async def test_process_bad_setting_exits_2_with_one_line() -> None:
    code, lines = await run_once(process_env(intake_token=TOKEN, intake_port="eighty"))
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: invalid settings: AGENTIC_INTAKE_PORT"), lines


# --------------------------------------------------------------------------- real Alertmanager


@pytest.mark.slow
async def test_real_alertmanager_fires_and_resolves_an_incident(temporal: Client, tmp_path: Path) -> None:
    """Prometheus → Alertmanager (webhook, bearer token from a file) → the intake process → Temporal."""
    from tests.support.promstack import MetricsSource, alerting_stack

    port = free_port()
    target = temporal.service_client.config.target_host
    proc = await spawn(
        process_env(
            intake_token=TOKEN, intake_port=str(port), host="127.0.0.1", temporal_address=target, task_queue=TASK_QUEUE
        )
    )
    namespace = "media-" + uniq()
    incident = incident_id_for("agentic", f'{{}}:{{alertname="DemoDeploymentUnhealthy", namespace="{namespace}"}}')
    handle = temporal.get_workflow_handle(incident, result_type=Received)
    log = ""
    try:
        await wait_health(port, proc, want=200)
        with MetricsSource() as metrics:
            metrics.values[(namespace, "sonarr")] = 1
            stack = alerting_stack(tmp_path, metrics.port, f"http://127.0.0.1:{port}/alerts", TOKEN)
            await asyncio.to_thread(stack.__enter__)
            try:
                metrics.values[(namespace, "sonarr")] = 0  # the deployment breaks: the rule fires
                state = await wait_for_incident(temporal, incident, within=60)
                group = state.signals[0].group
                assert group.status == AlertStatus.FIRING and group.receiver == "agentic"
                a = group.alerts[0]
                assert a.labels["alertname"] == "DemoDeploymentUnhealthy" and a.labels["deployment"] == "sonarr"
                assert a.labels["namespace"] == namespace and a.labels["severity"] == "warning"
                assert a.summary == f"Deployment {namespace}/sonarr is unhealthy"
                assert a.fingerprint and a.ends_at is None and a.generator_url.startswith("http://")

                metrics.values[(namespace, "sonarr")] = 1  # fixed: Alertmanager sends the resolution
                async with asyncio.timeout(60):
                    result = await handle.result()
                assert result.signals[-1].group.status == AlertStatus.RESOLVED
                assert {s.group.incident_id for s in result.signals} == {incident}
            finally:
                await asyncio.to_thread(stack.__exit__, None, None, None)
    finally:
        code, log = await stop(proc) if proc.returncode is None else (proc.returncode, "")
    assert code == 0, log
    assert '"POST /alerts" 202' in log and '"POST /alerts" 4' not in log, log


async def wait_for_incident(client: Client, incident_id: str, *, within: float) -> Received:
    deadline = time.monotonic() + within
    while True:
        try:
            state = await received(client, incident_id, signals=1)
            if state.signals:
                return state
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"no incident {incident_id} within {within}s")
        await asyncio.sleep(0.25)
