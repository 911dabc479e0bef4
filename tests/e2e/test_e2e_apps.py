"""An arr-suite alert through the whole incident loop, on real parts.

The Temporal dev server; PostgreSQL (pgserver); the production worker (`workers.worker.run_worker`,
built from `Settings` as `agentic up` builds it: Qdrant Edge in a temp data dir, the local
embedder, the gateway over `Settings.mcp_servers`); the project's own runbooks from `runbooks/`
imported the way `agentic runbooks import` does; the intake app (ASGI, in process); the arr MCP
server process (`python -m workers.toolservers.arr`) in front of a fake Sonarr that speaks
Sonarr's REST API; and the planner model, a fake OpenAI-compatible server (so the run is
deterministic and needs no GPU) reached through the real `InferenceRouter`.

A stalled Sonarr queue alert → triaged `arr` → the arr queue runbook recalled and asked about →
the plan (arr tools) passes the guard → `decide` as the CLI sends it → the refresh command reaches
Sonarr once → the ledger holds the actions → the group resolves → the outcome is recorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pgserver
import pytest
from pydantic import SecretStr
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from activities.knowledge.markdown import load_runbooks
from activities.ledger.repository import Ledger
from agentic_core.incident import Category, IncidentState, IncidentStatus, PolicyVerdict, Severity
from agentic_core.models import ToolCall
from tests.support.env import REPO, free_port
from tests.support.fake_apps import FakeArr
from tests.support.fake_openai import FakeChatServer, chat_server
from tests.support.intake import factory_for
from tests.support.kmock_helpers import McpProcess
from tests.support.mcp_apps import TOKEN, stalled_sonarr, start_arr
from tests.support.pg import create_database, pg_server
from tests.support.temporal import temporal_bin
from workers.errors import AgenticError
from workers.incident_client import decide, incident_state
from workers.intake import create_app
from workers.knowledge_client import import_runbooks
from workers.sandbox import workflow_runner
from workers.settings import Settings
from workers.temporal import ensure_search_attributes
from workers.worker import run_worker
from workflows.approval import ApprovalWorkflow
from workflows.incident import IncidentWorkflow

pytestmark = pytest.mark.slow

RUNBOOK_ID = "arr/download-queue-stalled"
ALERTNAME = "SonarrQueueStalled"
# As an exportarr-based rule would label it: the app label names the app the runbook acts on.
LABELS = {"alertname": ALERTNAME, "app": "sonarr", "namespace": "media", "severity": "warning"}
PLAN = [
    ToolCall(tool="arr_queue", arguments={"app": "sonarr", "problems_only": True}),
    ToolCall(tool="arr_command", arguments={"app": "sonarr", "name": "RefreshMonitoredDownloads"}),
]
INTAKE_TOKEN = "e2e-apps-intake-token"
CLOSED = {
    IncidentStatus.RESOLVED,
    IncidentStatus.FAILED,
    IncidentStatus.IGNORED,
    IncidentStatus.EXPIRED,
    IncidentStatus.UNKNOWN,
}


@dataclass
class Platform:
    settings: Settings
    intake: httpx.AsyncClient
    client: Client
    sonarr: FakeArr
    model: FakeChatServer
    dsn: str
    worker: asyncio.Task[None]


def webhook(status: str) -> bytes:
    """An Alertmanager (version 4) webhook for the stalled Sonarr queue group."""
    annotations = {
        "summary": "Sonarr download queue is stalled",
        "description": "1 item in the Sonarr queue has made no progress for 2h.",
    }
    return json.dumps(
        {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{ALERTNAME}", app="sonarr"}}',
            "truncatedAlerts": 0,
            "status": status,
            "receiver": "agentic",
            "groupLabels": {"alertname": ALERTNAME, "app": "sonarr"},
            "commonLabels": LABELS,
            "commonAnnotations": annotations,
            "externalURL": "http://alertmanager.local",
            "alerts": [
                {
                    "status": status,
                    "labels": LABELS,
                    "annotations": annotations,
                    "startsAt": "2026-11-21T10:00:00Z",
                    "endsAt": "2026-11-21T12:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus.local/graph",
                    "fingerprint": "fp-sonarr-queue-stalled",
                }
            ],
        }
    ).encode()


def model_answer(body: dict[str, Any]) -> str:
    """A planner that reads the prompt: it names the runbook and its plan only when the prompt
    offers the arr tools (as a model can only plan with the tools it is shown)."""
    prompt = json.dumps(body["messages"])
    offered = "arr_command" in prompt and "arr_queue" in prompt
    return json.dumps(
        {
            "summary": "Sonarr's download queue is stalled",
            "diagnosis": "A download has no connections; re-check the download clients first.",
            "runbook_id": RUNBOOK_ID if RUNBOOK_ID in prompt else None,
            "actions": [c.model_dump() for c in PLAN] if offered else [],
            "confidence": 0.8,
            "risk": "low",
        }
    )


async def eventually(check: Callable[[], Awaitable[Any]], within: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {within:.0f}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-e2e-apps-pg-")


@pytest.fixture(scope="module")
async def platform(pg: pgserver.PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_bin(),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    sonarr = stalled_sonarr()
    await sonarr.start()
    arr: McpProcess | None = None
    stop = asyncio.Event()
    worker: asyncio.Task[None] | None = None
    try:
        arr = await start_arr({"sonarr": sonarr})
        async with chat_server("planner") as model:
            model.reply = model_answer
            dsn = await create_database(pg, "e2eapps")
            await (await Ledger.connect(dsn, max_size=1)).close()  # migrated, as `agentic up` leaves it
            settings = Settings(  # type: ignore[call-arg]
                _env_file=None,
                data_dir=tmp_path_factory.mktemp("e2e-apps") / "data",
                temporal_address=env.client.service_client.config.target_host,
                task_queue=f"e2e-apps-{uuid.uuid4().hex[:8]}",
                postgres_dsn=SecretStr(dsn),
                planner_url=model.base_url,
                intake_token=SecretStr(INTAKE_TOKEN),
                mcp_token=SecretStr(TOKEN),
                # no cluster here: the infrastructure server is configured but down
                mcp_infra_port=free_port(),
                # Sonarr configured: `agentic up` runs the arr server on this port (here: our process)
                sonarr_url=sonarr.url,
                sonarr_api_key=SecretStr(sonarr.api_key),
                mcp_arr_port=arr.port,
                approvers="alice",
                verify_window_s=300,
            )
            await ensure_search_attributes(env.client, settings.temporal_namespace)
            worker = asyncio.create_task(run_worker(settings, stop))
            app = create_app(factory_for(env.client), settings)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as intake:
                yield Platform(settings, intake, env.client, sonarr, model, dsn, worker)
    finally:
        stop.set()
        if worker is not None:
            await asyncio.wait_for(worker, 60)
        if arr is not None:
            await arr.stop()
        await sonarr.stop()
        await env.shutdown()


async def post_alerts(p: Platform, status: str) -> dict[str, Any]:
    r = await p.intake.post(
        "/alerts",
        content=webhook(status),
        headers={"Authorization": f"Bearer {INTAKE_TOKEN}", "Content-Type": "application/json"},
    )
    assert r.status_code == 202, r.text
    return dict(r.json())


async def state_when(p: Platform, incident_id: str, wanted: set[IncidentStatus], within: float) -> IncidentState:
    async def check() -> IncidentState | None:
        if p.worker.done():  # the worker died: say why instead of waiting out the deadline
            p.worker.result()
        st = await incident_state(p.settings, incident_id)
        if st.status in wanted:
            return st
        if st.status in CLOSED or st.verdict == PolicyVerdict.NOTHING_TO_DO:  # it will not get there: say why now
            stages = "; ".join(f"{s.name}: {s.detail}" for s in st.stages)
            raise AssertionError(
                f"incident {incident_id} will not reach {sorted(wanted)}: {st.status.value}, verdict {st.verdict}; "
                f"{stages}; refused: {st.refused}"
            )
        return None

    result: IncidentState = await eventually(check, within, f"incident {incident_id} in {sorted(wanted)}")
    return result


async def test_stalled_sonarr_queue_alert_is_handled_end_to_end(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    p = platform
    caplog.set_level(logging.INFO, logger="agentic.notify")
    runbooks, errors = load_runbooks(REPO / "runbooks")
    assert not errors and RUNBOOK_ID in {rb.id for rb in runbooks}
    report = await asyncio.wait_for(import_runbooks(p.settings, runbooks), 120)  # waits for the worker too
    assert RUNBOOK_ID in report.added

    # 1. The alert group arrives through the intake.
    accepted = await post_alerts(p, "firing")
    [incident_id] = accepted["incidents"]
    st = await state_when(p, incident_id, {IncidentStatus.AWAITING_APPROVAL}, 60)

    # 2. Triaged as the arr suite; the project's arr queue runbook recalled and asked about.
    assert (st.category, st.severity) == (Category.ARR, Severity.WARNING)
    assert st.runbook_id == RUNBOOK_ID
    assert st.proposal_source != "fallback", [s.detail for s in st.stages if s.name == "propose"]
    assert st.proposal is not None and st.proposal.runbook_id == RUNBOOK_ID
    # The plan: the arr tools, arguments filled from the alert's labels, every one past the guard.
    assert st.plan == PLAN and st.refused == []
    assert st.verdict == PolicyVerdict.ASK
    guard = next(s for s in st.stages if s.name == "guard")
    assert guard.detail == "2 allowed, 0 refused"
    # The model was shown the arr server's tools (from the real gateway) and the runbook.
    prompt = json.dumps(p.model.bodies[-1]["messages"])
    assert "arr_command" in prompt and RUNBOOK_ID in prompt
    # The question (sent once, before the model was asked) names that runbook, on the arr route.
    triage = next(s for s in st.stages if s.name == "triage")
    assert triage.detail == "warning/arr → arr"
    recall = next(s for s in st.stages if s.name == "recall")
    assert recall.detail.startswith(f"{RUNBOOK_ID} ("), recall.detail  # the best runbook: the question's
    [question] = [r.getMessage() for r in caplog.records if " notify question [arr] " in r.getMessage()]
    assert "warning · arr · 1 alert(s) firing" in question
    assert f"Runbook: {RUNBOOK_ID}: Sonarr or Radarr download queue is stalled (manual)" in question
    assert "arr_command(app='sonarr', name='RefreshMonitoredDownloads')" in question
    conn = await asyncpg.connect(p.dsn)
    try:
        rows = await conn.fetch("select kind, target from notifications where incident_id = $1", incident_id)
        assert [(r["kind"], r["target"]) for r in rows] == [("question", "arr")]  # the card, edited since
        assert await conn.fetchval("select category from incidents where id = $1", incident_id) == "arr"
    finally:
        await conn.close()
    # Nothing reached Sonarr before the answer.
    assert p.sonarr.made("POST", "/api/v3/command") == [] and p.sonarr.made("GET", "/api/v3/queue") == []

    # 3. Approved as `agentic approve` does it (a non-approver is refused first).
    with pytest.raises(AgenticError, match="mallory"):
        await decide(p.settings, incident_id, "approved", "mallory", None)
    result, _ = await decide(p.settings, incident_id, "approved", "alice", None)
    assert result.choice == "approved"
    st = await state_when(p, incident_id, {IncidentStatus.VERIFYING}, 60)
    assert [(a.tool, a.status) for a in st.actions] == [("arr_queue", "succeeded"), ("arr_command", "succeeded")]
    commands = p.sonarr.made("POST", "/api/v3/command")
    assert [c.body for c in commands] == [{"name": "RefreshMonitoredDownloads"}]  # exactly once
    assert len(p.sonarr.made("GET", "/api/v3/queue")) >= 1  # the diagnosis read the queue
    assert not [c for c in p.sonarr.calls if c.method == "DELETE"]  # nothing removed

    # 4. The group resolves: verified, recorded.
    await post_alerts(p, "resolved")
    st = await state_when(p, incident_id, {IncidentStatus.RESOLVED}, 60)
    handle = p.client.get_workflow_handle(incident_id, result_type=IncidentState)
    final = await asyncio.wait_for(handle.result(), 30)
    assert final.outcome is not None and final.outcome.outcome == "success"
    assert final.decision is not None and (final.decision.choice, final.decision.by) == ("approved", "alice")
    assert len(p.sonarr.made("POST", "/api/v3/command")) == 1  # still once
    conn = await asyncpg.connect(p.dsn)
    try:
        actions = await conn.fetch(
            "select tool, arguments, status, result from actions where incident_id = $1 order by action_index",
            incident_id,
        )
        assert [(r["tool"], json.loads(r["arguments"]), r["status"]) for r in actions] == [
            (c.tool, c.arguments, "succeeded") for c in PLAN
        ]
        assert all(json.loads(r["result"])["server"] == "arr" for r in actions)
        decisions = await conn.fetch("select choice, decided_by from decisions where incident_id = $1", incident_id)
        assert [(r["choice"], r["decided_by"]) for r in decisions] == [("approved", "alice")]
        assert await conn.fetchval("select result from outcomes where incident_id = $1", incident_id) == "success"
        assert await conn.fetchval("select status from incidents where id = $1", incident_id) == "resolved"
    finally:
        await conn.close()

    # The history of this real run replays under the strict sandbox.
    replayer = Replayer(
        workflow_runner=workflow_runner("strict"),
        workflows=[IncidentWorkflow, ApprovalWorkflow],
        data_converter=pydantic_data_converter,
    )
    history = await handle.fetch_history()
    try:
        await replayer.replay_workflow(history)
    except NondeterminismError as exc:  # rare in CI (once in ~8 full runs): keep the evidence in the log
        events = "\n".join(
            f"{e.event_id} {EventType.Name(e.event_type)} {e.marker_recorded_event_attributes.marker_name}"
            for e in history.events
        )
        raise AssertionError(f"the run's history does not replay: {exc}\nits events:\n{events}") from exc
