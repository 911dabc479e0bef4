"""The MCP knowledge server: the real process and the real MCP client, against a Temporal dev server
with a worker running the knowledge workflows over a real knowledge base (Qdrant Edge +
all-MiniLM-L6-v2) and a real ledger (PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx2
import pgserver
import pytest
from mcp import Client
from mcp_types import CallToolResult
from temporalio.client import Client as TemporalClient
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.knowledge.activities import KnowledgeActivities
from activities.knowledge.edge_store import EdgeStore
from activities.knowledge.embeddings import LocalEmbedder
from activities.knowledge.kb import KnowledgeBase
from activities.ledger.repository import Ledger
from agentic_core.models import AutomationLevel, DecisionRecord, DocChunk, LabelMatcher, Runbook, ToolCall
from tests.support.e2e import agentic
from tests.support.env import REPO, free_port
from tests.support.kmock_helpers import McpProcess, mcp_client
from tests.support.kmock_helpers import result_data as data
from tests.support.kmock_helpers import result_text as text
from tests.support.pg import create_database, pg_server
from tests.support.temporal import temporal_bin
from workers.sandbox import workflow_runner
from workers.settings import Settings
from workers.toolservers.knowledge.client import KnowledgeBackends
from workers.toolservers.knowledge.server import build_server
from workflows.knowledge import SearchKnowledgeWorkflow

pytestmark = pytest.mark.slow

TOKEN = "knowledge-token-7c1e"
TOOLS = {"search_runbooks", "search_decisions", "search_docs", "runbook_stats", "runbook_record"}
CRASH = "kubernetes/KubePodCrashLooping"
DISK = "node/NodeDiskPressure"

RUNBOOKS = [
    Runbook(
        id=CRASH,
        title="Pod is crash looping",
        body="A container keeps restarting (CrashLoopBackOff). Read its logs, then restart the deployment.",
        source="runbooks/crashloop.md",
        match=[LabelMatcher.parse("alertname=KubePodCrashLooping")],
        actions=[ToolCall(tool="rollout_restart", arguments={"namespace": "{{namespace}}", "deployment": "{{pod}}"})],
    ),
    Runbook(
        id=DISK,
        title="Node disk pressure",
        body="The kubelet reports DiskPressure: prune images and old logs on the node.",
        source="runbooks/disk.md",
        match=[LabelMatcher.parse("alertname=NodeDiskPressure")],
    ),
    Runbook(
        id="cert/CertificateExpiring",
        title="Certificate expires soon",
        body="cert-manager did not renew a certificate; check the issuer and the order.",
        source="runbooks/cert.md",
        automation_level=AutomationLevel.PROMPTED,
    ),
]


@dataclass
class Platform:
    client: TemporalClient
    queue: str
    ledger: Ledger
    dsn: str


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-mcpk-pg-")


@pytest.fixture(scope="module")
async def platform(pg: pgserver.PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    dsn = await create_database(pg, "mcpk")
    ledger = await Ledger.connect(dsn)
    embedder = LocalEmbedder(threads=1)
    store = EdgeStore(tmp_path_factory.mktemp("kb") / "qdrant", dim=embedder.dim)
    kb = KnowledgeBase(store, embedder)
    await kb.ensure()
    for rb in RUNBOOKS:
        await ledger.upsert_runbook(rb)
    await kb.upsert_runbooks(RUNBOOKS)
    await kb.upsert_docs(
        [
            DocChunk(
                id="docs/configuration.md#temporal",
                source="docs/configuration.md",
                heading="Configuration > Temporal",
                text="AGENTIC_TEMPORAL_ADDRESS points the platform at an external Temporal frontend.",
            ),
            DocChunk(
                id="docs/talos-install.md#disks",
                source="docs/talos-install.md",
                heading="Installing Talos > Disks",
                text="Choose the install disk of each Talos node with machine.install.disk.",
            ),
        ]
    )
    await kb.upsert_decision(
        DecisionRecord(
            id="inc-1/1/decision",
            incident_id="inc-1",
            summary="Pod media/sonarr is crash looping",
            runbook_id=CRASH,
            actions=[ToolCall(tool="rollout_restart", arguments={"namespace": "media", "deployment": "sonarr"})],
            decision="approved",
            decided_by="alice",
            outcome="success",
            labels={"alertname": "KubePodCrashLooping", "namespace": "media"},
        )
    )
    # a trust record: two approvals, executions, a promotion
    for n, ok in ((1, True), (2, True)):
        await ledger.record_decision(f"inc-{n}", "approved", approval_id=f"inc-{n}-approval-1", runbook_id=CRASH)
        await ledger.record_decision_stat(CRASH, "approved", event_key=f"inc-{n}/decision")
        await ledger.record_execution(CRASH, ok, event_key=f"inc-{n}/execution")
    await ledger.set_runbook_level(CRASH, AutomationLevel.PROMPTED, "2 approved executions", "trust-review")

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_bin(), data_converter=pydantic_data_converter, dev_server_log_level="error"
    )
    queue = f"knowledge-{uuid.uuid4().hex[:8]}"
    acts = KnowledgeActivities(kb, ledger)
    try:
        async with Worker(
            env.client,
            task_queue=queue,
            workflow_runner=workflow_runner("strict"),
            workflows=[SearchKnowledgeWorkflow],
            activities=[acts.search],
        ):
            yield Platform(client=env.client, queue=queue, ledger=ledger, dsn=dsn)
    finally:
        await env.shutdown()
        await store.close()
        embedder.close()
        await ledger.close()


async def _start(port: int, env: dict[str, str]) -> McpProcess:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.toolservers.knowledge",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--token-env",
        "AGENTIC_MCP_TOKEN",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    server = McpProcess(proc=proc, port=port)
    assert proc.stderr is not None
    while True:
        raw = await asyncio.wait_for(proc.stderr.readline(), 60)
        if not raw:
            raise RuntimeError(f"the server exited ({await proc.wait()}): {server.stderr}")
        server.stderr.append(raw.decode(errors="replace").rstrip())
        if "serving" in server.stderr[-1]:
            break
    server._reader = asyncio.create_task(server._read())
    async with httpx2.AsyncClient() as http:
        for _ in range(100):
            with contextlib.suppress(httpx2.HTTPError):
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    break
            await asyncio.sleep(0.05)
    return server


@pytest.fixture(scope="module")
async def server(platform: Platform) -> AsyncIterator[McpProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env.update(
        AGENTIC_TEMPORAL_ADDRESS=platform.client.service_client.config.target_host,
        AGENTIC_TASK_QUEUE=platform.queue,
        AGENTIC_POSTGRES_DSN=platform.dsn,
        AGENTIC_MCP_TOKEN=TOKEN,
    )
    proc = await _start(free_port(), env)
    yield proc
    assert await proc.stop() == 0
    assert proc.stderr[-1] == "mcp_knowledge: stopped"


async def call(server: McpProcess, tool: str, args: dict[str, Any]) -> CallToolResult:
    async with mcp_client(server.url, TOKEN) as c:
        return await c.call_tool(tool, args)


async def test_lists_five_read_only_tools_with_typed_schemas(server: McpProcess) -> None:
    async with mcp_client(server.url, TOKEN) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) == TOOLS
    for name, tool in tools.items():
        schema = tool.input_schema
        assert schema["type"] == "object" and schema["additionalProperties"] is False, name
        assert tool.description and tool.output_schema is not None, name
        for prop, spec in schema.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{prop}"
        assert tool.annotations is not None and tool.annotations.read_only_hint is True
    assert tools["search_runbooks"].input_schema["required"] == ["query"]
    assert tools["search_runbooks"].input_schema["properties"]["limit"]["maximum"] == 50
    assert tools["runbook_record"].input_schema["required"] == ["runbook_id"]


async def test_search_runbooks_ranks_the_matching_runbook_first(server: McpProcess) -> None:
    res = data(
        await call(
            server,
            "search_runbooks",
            {"query": "pod keeps restarting", "limit": 3, "labels": {"alertname": "KubePodCrashLooping"}},
        )
    )
    first = res["hits"][0]
    assert first["id"] == CRASH and first["matched_labels"] is True
    assert first["actions"][0]["tool"] == "rollout_restart"
    assert first["source"] == "runbooks/crashloop.md" and "CrashLoopBackOff" in first["excerpt"]
    disk = data(await call(server, "search_runbooks", {"query": "node disk pressure kubelet images"}))
    assert disk["hits"][0]["id"] == DISK


async def test_search_decisions_and_docs(server: McpProcess) -> None:
    dec = data(await call(server, "search_decisions", {"query": "sonarr crash looping", "limit": 2}))["hits"][0]
    assert (dec["incident_id"], dec["decision"], dec["decided_by"], dec["outcome"], dec["runbook_id"]) == (
        "inc-1",
        "approved",
        "alice",
        "success",
        CRASH,
    )
    doc = data(await call(server, "search_docs", {"query": "external Temporal frontend address"}))["hits"][0]
    assert doc["source"] == "docs/configuration.md" and doc["heading"] == "Configuration > Temporal"
    assert "AGENTIC_TEMPORAL_ADDRESS" in doc["text"]


async def test_runbook_stats_and_record_from_the_ledger(server: McpProcess) -> None:
    counts = data(await call(server, "runbook_stats", {}))
    assert counts["level_counts"] == {"manual": 1, "prompted": 2, "standard": 0} and counts["total"] == 3
    assert counts["stats"] is None
    one = data(await call(server, "runbook_stats", {"runbook_id": CRASH}))
    assert one["automation_level"] == "prompted"
    assert {k: one["stats"][k] for k in ("executions", "successes", "failures", "approvals")} == {
        "executions": 2,
        "successes": 2,
        "failures": 0,
        "approvals": 2,
    }
    rec = data(await call(server, "runbook_record", {"runbook_id": CRASH}))
    assert rec["title"] == "Pod is crash looping" and rec["match"] == ["alertname=KubePodCrashLooping"]
    assert [(h["from_level"], h["to_level"]) for h in rec["level_history"]] == [
        (None, "manual"),
        ("manual", "prompted"),
    ]
    assert rec["level_history"][1]["reason"] == "2 approved executions"
    assert [d["incident_id"] for d in rec["recent_decisions"]] == ["inc-2", "inc-1"]
    assert rec["stats"]["executions"] == 2


async def test_detailed_tool_errors(server: McpProcess) -> None:
    missing = await call(server, "runbook_record", {"runbook_id": "nope/Nothing"})
    assert missing.is_error and "no runbook 'nope/Nothing' in the ledger" in text(missing)
    assert "search_runbooks" in text(missing)
    unknown_stats = await call(server, "runbook_stats", {"runbook_id": "nope/Nothing"})
    assert unknown_stats.is_error and "3 runbooks" in text(unknown_stats)
    extra = await call(server, "search_docs", {"query": "x", "collection": "runbooks"})
    assert extra.is_error and "Extra inputs are not permitted" in text(extra)
    empty = await call(server, "search_runbooks", {"query": ""})
    assert empty.is_error and "query" in text(empty)


async def test_requests_without_the_token_get_401(server: McpProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx2.AsyncClient() as http:
        none = await http.post(server.url, json=body, headers=headers)
        health = await http.get(f"http://127.0.0.1:{server.port}/healthz")
    assert none.status_code == 401
    assert health.status_code == 200 and health.json()["tools"] == 5


async def test_no_worker_on_the_queue_is_a_clear_error(platform: Platform) -> None:
    backends = KnowledgeBackends(
        Settings(),
        client=platform.client,
        ledger=platform.ledger,
        task_queue="nobody-polls-this",
        search_timeout=timedelta(seconds=2),
    )
    async with Client(build_server(backends)) as c:  # the real client, in process
        res = await c.call_tool("search_runbooks", {"query": "disk"})
    assert res.is_error
    assert "no answer from the platform's worker within 2s" in text(res) and "'nobody-polls-this'" in text(res)


async def test_refuses_a_public_interface_without_a_token() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.toolservers.knowledge",
        "--host",
        "0.0.0.0",
        "--port",
        str(free_port()),
        cwd=REPO,
        env=env,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert err.decode().strip().startswith("error: refusing to serve the knowledge base on 0.0.0.0 without a token")


async def test_docs_search_from_the_cli_says_when_an_ingest_is_still_running(
    platform: Platform, server: McpProcess, tmp_path: Any
) -> None:
    """`agentic docs search` right after a fresh `agentic up` (the README's next command) runs while
    the first start still ingests docs/: it says so, on stderr, so a partial answer is not taken
    for the whole one; --json stays one document."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env.update(
        AGENTIC_TEMPORAL_ADDRESS=platform.client.service_client.config.target_host,
        AGENTIC_TASK_QUEUE=platform.queue,
        AGENTIC_POSTGRES_DSN=platform.dsn,
        AGENTIC_DATA_DIR=str(tmp_path),
    )

    async def docs_search() -> tuple[int, str, str]:
        rc, out, err = await agentic(env, "docs", "search", "external Temporal frontend", "--json", limit=120)
        return rc, out, " ".join(err.split())  # the note as one line, however the console wrapped it

    rc, out, err = await docs_search()
    assert rc == 0, err
    assert json.loads(out)[0]["source"] == "docs/configuration.md" and "still being ingested" not in err
    assert data(await call(server, "search_docs", {"query": "external Temporal frontend"}))["note"] == ""
    # an ingest under way (on a queue nobody polls: it stays running)
    ingest = await platform.client.start_workflow(
        "IngestDocsWorkflow", {"chunks": []}, id=f"docs-ingest-{uuid.uuid4().hex[:8]}", task_queue="nobody-polls-this"
    )
    try:
        rc, out, err = await docs_search()
        assert rc == 0, err
        assert json.loads(out)[0]["source"] == "docs/configuration.md"  # the hits so far, still JSON
        assert f"note: the documentation is still being ingested (workflow {ingest.id}" in err, err
        assert "search again in a moment" in err
        # the knowledge MCP server's tool says it too, in its result
        res = await call(server, "search_docs", {"query": "external Temporal frontend"})
        assert not res.is_error and data(res)["hits"][0]["source"] == "docs/configuration.md"
        assert f"still being ingested (workflow {ingest.id}, started " in data(res)["note"], data(res)
    finally:
        await ingest.terminate("test done")
