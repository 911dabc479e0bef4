"""Telemetry with real parts, in one process: the intake app (driven over ASGI), the Temporal dev
server with the real IncidentWorkflow and ApprovalWorkflow behind the platform's own tracing set-up
(`workers.telemetry`: the TracingInterceptor on every client), the real planner activity asking an
OpenAI-compatible fake through the real InferenceRouter (LiteLLM), and the real MCP client calling
a real MCP server (tests/support/fake_mcp.py); the rest of the incident's activities are the fakes
of tests/support/incident_fakes.py. Spans go to the SDK's in-memory exporter through the same
redacting processor as every exporter; a second test exports over real OTLP/HTTP to a receiver on
loopback and decodes it.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pgserver
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio import activity
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.incident.activities import IncidentActivities
from activities.telemetry import tracing
from activities.tools.mcp_client import McpClient
from agentic_core.incident import (
    UPDATE_DECIDE,
    ActionResult,
    DecideInput,
    DecideResult,
    ExecuteInput,
    IncidentState,
    IncidentStatus,
)
from agentic_core.models import ApprovalMode
from tests.support.env import free_port
from tests.support.fake_mcp import FakeMcp, fake_mcp
from tests.support.fake_openai import FakeChatServer, chat_server
from tests.support.http_server import LoopServer
from tests.support.incident_fakes import RESTART, RUNBOOK_ID, Fakes
from tests.support.intake import alert, incident_of, post, settings, uniq, webhook
from tests.support.pg import create_database, pg_server
from tests.support.temporal import dev_server_with_attributes
from workers import telemetry
from workers.intake import create_app
from workers.sandbox import workflow_runner
from workers.temporal import connect
from workers.wiring import inference_router, planner_config

# Secrets planted where an incident's text goes: the alert's annotations (kept by the intake:
# AGENTIC_INTAKE_KEEP_SECRETS), the model's answer, and a tool's output.
ANNOTATION_SECRET = "hunter2-annotation-Secr3t"
MODEL_SECRET = "ghp_" + "Zq8" * 12
TOOL_SECRET = "xoxb-1234567890-abcdefghijKLMNOP"
QUERY_SECRET = "q9-query-SeCrEt-4711"  # in a URL's query string: the processor drops query values
SECRETS = (ANNOTATION_SECRET, MODEL_SECRET, TOOL_SECRET, QUERY_SECRET)
DEBUG = False


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """The platform's tracing set-up in this process, plus an in-memory exporter behind the same
    redaction as the real exporters; message content on (so the redaction has prompts to clean)."""
    from workers.settings import Settings

    telemetry.setup("agentic-test", Settings(traces_local=False))  # type: ignore[call-arg]
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "the platform's set-up installs an SDK provider"
    mem = InMemorySpanExporter()
    provider.add_span_processor(tracing.RedactingSpanProcessor(SimpleSpanProcessor(mem)))
    tracing.set_capture_content(True)
    yield mem
    tracing.set_capture_content(False)


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-telemetry-pg-")


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server_with_attributes() as env:
        yield env


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[FakeChatServer]:
    async with chat_server("planner") as s:
        s.answer(
            json.dumps(
                {
                    "summary": "checkout crash loops",
                    "diagnosis": f"OOM after the deploy; the pod printed {MODEL_SECRET}",
                    "runbook_id": RUNBOOK_ID,
                    "actions": [{"tool": RESTART.tool, "arguments": RESTART.arguments}],
                    "confidence": 0.8,
                }
            )
        )
        yield s


@pytest.fixture(scope="module")
async def mcp() -> AsyncIterator[FakeMcp]:
    async with fake_mcp() as server:
        yield server


def _by_name(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def _text(span: ReadableSpan) -> str:
    return json.dumps(
        {
            "name": span.name,
            "attributes": dict(span.attributes or {}),
            "events": [[e.name, dict(e.attributes or {})] for e in span.events],
            "links": [dict(link.attributes or {}) for link in span.links],
            "status": span.status.description,
        },
        default=str,
    )


async def test_an_incident_is_one_trace_from_the_intake_post_to_the_mcp_tool_with_nothing_secret(
    spans: InMemorySpanExporter, temporal: WorkflowEnvironment, model: FakeChatServer, mcp: FakeMcp
) -> None:
    target = temporal.client.service_client.config.target_host
    task_queue = f"telemetry-{uniq()}"
    cfg = settings(
        task_queue=task_queue,
        approval_mode=ApprovalMode.VERBOSE,
        intake_keep_secrets=True,
        planner_url=model.base_url,
        planner_model="fake-planner",
        pool_api_key=SecretStr("pool-key"),
    )
    client = await connect(target)  # the platform's connect: the tracing interceptor is on
    assert any(isinstance(i, TracingInterceptor) for i in client.config()["interceptors"])

    router = inference_router(cfg)
    planner = IncidentActivities(None, None, router, planner=planner_config(cfg, router))  # type: ignore[arg-type]
    fakes = Fakes()
    mcp_client = McpClient(None, call_timeout_s=10)

    @activity.defn(name="tools.execute")
    async def execute(inp: ExecuteInput) -> ActionResult:
        """The gateway's call, through the real MCP client to a real MCP server."""
        result = await mcp_client.call_tool("fake", mcp.url, "note", {"text": f"{inp.call.tool} ran: {TOOL_SECRET}"})
        return ActionResult(
            index=inp.index,
            tool=inp.call.tool,
            idempotency_key=inp.idempotency_key,
            status="failed" if result.is_error else "succeeded",
            output=str(result.content[0].text) if result.content else "",  # type: ignore[union-attr]
        )

    acts = [a for a in fakes.activities() if a not in (fakes.propose, fakes.execute)] + [planner.propose, execute]
    app = create_app(lambda: connect(target), cfg)
    doc = webhook(f"telemetry-{uniq()}", alerts=[alert()])
    doc["commonAnnotations"]["description"] = f"crash looping; db_password={ANNOTATION_SECRET}"
    incident_id = incident_of(doc)
    async with (
        Worker(
            client,
            task_queue=task_queue,
            workflow_runner=workflow_runner("strict"),
            workflows=_workflows(),
            activities=acts,
        ),
        # the model and tools queues the intake names in the incident (docs/scaling.md)
        Worker(client, task_queue=cfg.model_queue, activities=[planner.propose]),
        Worker(client, task_queue=cfg.tools_queue, activities=[execute]),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http,
    ):
        r = await post(http, f"/alerts?source=am&token={QUERY_SECRET}", doc)
        assert r.status_code == 202, r.text
        handle = client.get_workflow_handle(incident_id)
        st = await _wait(handle, lambda s: s.status == IncidentStatus.AWAITING_APPROVAL and bool(s.approval_id))
        assert st.approval_id and st.plan_hash
        res = await client.get_workflow_handle(st.approval_id).execute_update(
            UPDATE_DECIDE, DecideInput(choice="approved", by="alice", plan_hash=st.plan_hash), result_type=DecideResult
        )
        assert res.choice == "approved"
        await _wait(handle, lambda s: bool(s.actions))
        resolved = webhook(doc["receiver"], status="resolved", alerts=[alert(status="resolved")])
        assert (await post(http, "/alerts", resolved)).status_code == 202
        final = await asyncio.wait_for(handle.result(), 60)
        assert (await post(http, "/alerts", doc, token="wrong")).status_code == 401
        assert (await post(http, "/events", content=b"{", token=None)).status_code == 401
        metrics_text = (await http.get("/metrics")).text
    assert IncidentState.model_validate(final).status == IncidentStatus.RESOLVED
    assert len(mcp.calls) >= 1
    assert ANNOTATION_SECRET in json.dumps(model.requests[0]["body"])  # the prompt carried it

    done = spans.get_finished_spans()
    posts = [s for s in _by_name(done, "POST /alerts") if s.context is not None]
    assert [(s.attributes or {}).get("http.response.status_code") for s in posts] == [202, 202, 401]
    tid = posts[0].context.trace_id  # type: ignore[union-attr]
    # the ASGI instrumentation's SERVER span, with the stable HTTP attributes and no query value
    post_attrs = dict(posts[0].attributes or {})
    assert posts[0].instrumentation_scope is not None
    assert posts[0].instrumentation_scope.name == "opentelemetry.instrumentation.asgi", posts[0].instrumentation_scope
    assert post_attrs["http.route"] == "/alerts" and post_attrs["http.request.method"] == "POST", post_attrs
    assert post_attrs["url.query"] == "source=REDACTED&token=REDACTED", post_attrs
    assert not any(k.startswith("http.request.header.") for k in post_attrs), post_attrs
    # the test's state polls (queries) made no span, in any trace
    assert not [s.name for s in done if s.name.startswith(("QueryWorkflow", "HandleQuery"))]
    if DEBUG:
        from workers.trace_view import Trace, waterfall

        recs = [tracing.span_record(s) for s in done if s.context is not None and s.context.trace_id == tid]
        print("\n".join(waterfall(Trace(f"{tid:032x}", recs))))
    mine = [s for s in done if s.context is not None and s.context.trace_id == tid]
    names = {s.name for s in mine}
    for expected in (
        "POST /alerts",
        "deliver incident",
        "SignalWithStartWorkflow:IncidentWorkflow",
        "RunWorkflow:IncidentWorkflow",
        "RunActivity:incident.triage",
        "RunActivity:incident.propose",
        "chat fake-planner",
        "RunActivity:tools.execute",
        "MCP send tools/call note",
        "tools/call note",
        "RunWorkflow:ApprovalWorkflow",
        "RunActivity:incident.record",
    ):
        assert expected in names, (expected, sorted(names))
    # connected: one root (the POST), every other span's parent in the same trace
    ids = {s.context.span_id for s in mine if s.context is not None}
    roots = [s for s in mine if s.parent is None]
    orphans = [s.name for s in mine if s.parent is not None and s.parent.span_id not in ids]
    assert [s.name for s in roots] == ["POST /alerts"] and orphans == []
    # model → propose activity; MCP server span → client span → execute activity
    by_id = {s.context.span_id: s for s in mine if s.context is not None}

    def parent(s: ReadableSpan) -> str:
        assert s.parent is not None
        return by_id[s.parent.span_id].name

    chat = _by_name(mine, "chat fake-planner")[0]
    assert parent(chat) == "RunActivity:incident.propose"
    attrs = dict(chat.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.request.model"] == "fake-planner"
    assert attrs["agentic.incident_id"] == incident_id and attrs["agentic.model_pool"] == "planner"
    assert int(attrs["gen_ai.usage.output_tokens"]) >= 0 and "gen_ai.input.messages" in attrs  # capture is on
    assert parent(_by_name(mine, "tools/call note")[0]) == "MCP send tools/call note"
    assert parent(_by_name(mine, "MCP send tools/call note")[0]) == "RunActivity:tools.execute"
    # the incident's metrics in this process's registry (the intake's /metrics)
    families = {f.name: f for f in text_string_to_metric_families(metrics_text)}
    received = [s.value for s in families["agentic_alerts_received"].samples if s.labels.get("endpoint") == "alerts"]
    assert received and received[0] >= 2
    refused = {
        (s.labels["endpoint"], s.labels["reason"]): s.value
        for s in families["agentic_alerts_rejected"].samples
        if s.name.endswith("_total")
    }
    assert refused[("alerts", "unauthorized")] >= 1 and refused[("events", "unauthorized")] >= 1
    calls = [s for s in families["agentic_model_calls"].samples if s.labels == {"pool": "planner", "outcome": "ok"}]
    assert calls and calls[0].value >= 1
    # the MCP server's own count (same process here; other modules' servers may have counted too)
    served = [
        s
        for s in families["agentic_mcp_server_tool_calls"].samples
        if s.labels == {"server": "fake-tools", "outcome": "ok"}
    ]
    assert served and served[0].value >= 2
    # nothing secret in any span of the trace, though the prompt and the answer carried them
    everything = "\n".join(_text(s) for s in done)
    assert "[SECRET_" in _text(chat)
    for secret in SECRETS:
        assert secret not in everything, secret


async def test_a_telegram_press_is_its_own_trace_linked_to_the_incident(
    spans: InMemorySpanExporter, temporal: WorkflowEnvironment, pg: pgserver.PostgresServer
) -> None:
    """The real notifier posts the question to the Bot API emulator (its `telegram send` span in
    the incident's trace keeps its traceparent with the buttons); the real bot's press is a new
    trace whose span links to that one, and the approval's update span links back to the press."""
    from activities.ledger.repository import Ledger
    from tests.support.telegram_emulator import emulator
    from tests.support.telegram_harness import ALICE, buttons, platform_worker, start_incident, telegram

    client = await connect(temporal.client.service_client.config.target_host)
    fakes = Fakes()
    ledger = await Ledger.connect(await create_database(pg, "tele"), max_size=4)
    try:
        async with (
            emulator() as emu,
            telegram(emu, ledger, client) as tg,
            platform_worker(client, ledger, tg, fakes) as tq,
        ):
            inc = await start_incident(client, tq, fakes)
            await inc.wait_for(lambda s: s.status == IncidentStatus.AWAITING_APPROVAL)
            card = await tg.wait_message(lambda m: inc.incident_id in m.text and len(buttons(m)) == 4)
            answer = await tg.press(ALICE, card, 0)
            assert answer["text"].startswith("✅ Approved"), answer
            await inc.wait_for(lambda s: s.status == IncidentStatus.VERIFYING)
            await inc.handle.terminate("done")
    finally:
        await ledger.close()
    done = spans.get_finished_spans()
    [run] = [
        s
        for s in _by_name(done, "RunWorkflow:IncidentWorkflow")
        if (s.attributes or {}).get("temporalWorkflowID") == inc.incident_id
    ]
    assert run.context is not None
    incident_trace = run.context.trace_id
    sends = {s.context.span_id: s for s in _by_name(done, "telegram send") if s.context is not None}
    assert any(s.context is not None and s.context.trace_id == incident_trace for s in sends.values())
    [press] = [
        s
        for s in _by_name(done, "telegram press")
        if (s.attributes or {}).get("agentic.incident_id") == inc.incident_id
    ]
    assert press.context is not None and press.context.trace_id != incident_trace  # its own trace
    [link] = press.links
    assert link.context.trace_id == incident_trace and link.context.span_id in sends  # → the question's send
    assert (press.attributes or {})["agentic.decision"] == "approved"
    updates = [
        s
        for s in _by_name(done, "HandleUpdate:decide")
        if any(lk.context.trace_id == press.context.trace_id for lk in s.links)
    ]
    assert updates, "the approval's update span links to the press"


async def test_an_agent_request_through_the_gateway_is_one_trace_and_is_counted(
    spans: InMemorySpanExporter, temporal: WorkflowEnvironment, mcp: FakeMcp, pg: pgserver.PostgresServer
) -> None:
    """`POST /v1/chat/completions` (streamed) is the root of its trace: the gateway's SERVER span,
    the AgentWorkflow it starts, the run's activities with their ledger queries (asyncpg), the model
    call and the MCP tool, connected; the gateway's /metrics (behind a key) counts it."""
    from activities.agents.activities import AgentActivities
    from activities.inference.router import GroupConfig, InferenceRouter
    from activities.ledger.repository import Ledger
    from activities.tools.gateway import ToolActivities
    from agentic_core.agents import AgentLimits
    from tests.support.agent_harness import AgentFakes, agent_worker
    from tests.support.fake_openai import scripted, tool_call
    from workers.gateway.app import create_app as gateway_app
    from workers.settings import Settings

    target = temporal.client.service_client.config.target_host
    client = await connect(target)
    ledger = await Ledger.connect(await create_database(pg, "gw"), max_size=4)
    try:
        _row, key = await ledger.create_api_key("tele", agents=[], read_only=False)
        async with chat_server("agent") as agent_model:
            agent_model.reply = scripted(
                [{"content": "", "tool_calls": [tool_call("note", {"text": "sonarr"}, "c1")]}, "sonarr is fine."]
            )
            router = InferenceRouter([GroupConfig(name="planner", model="openai/agent", api_base=agent_model.base_url)])
            tools = ToolActivities(ledger, {"fake": mcp.url}, None, {"observability": ["note"]}, heartbeat_every_s=0.2)
            agents = AgentActivities(ledger, router, agents={"observability": AgentLimits()}, tool_specs=tools.offered)
            tq = f"gw-telemetry-{uniq()}"
            cfg = Settings(data_dir=tempfile.mkdtemp(), temporal_address=target, task_queue=tq, _env_file=None)  # type: ignore[call-arg]

            async def factory() -> Any:
                return client

            app = gateway_app(cfg, ledger, factory, tq)
            auth = {"Authorization": f"Bearer {key}"}
            body = {"model": "agentic-observability", "messages": [{"role": "user", "content": "is sonarr ok?"}]}
            async with (
                agent_worker(client, tq, agents, tools, AgentFakes()),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=60) as http,
            ):
                r = await http.post("/v1/chat/completions", json={**body, "stream": True}, headers=auth)
                assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]"), r.text
                run_id = r.headers["x-agentic-run"]
                assert (await http.get("/metrics")).status_code == 401  # behind a key, like every route
                scraped = await http.get("/metrics", headers=auth)
                assert scraped.status_code == 200, scraped.text
    finally:
        await ledger.close()

    done = spans.get_finished_spans()
    [root] = [
        s
        for s in _by_name(done, "POST /v1/chat/completions")
        if (s.attributes or {}).get("http.response.status_code") == 200
    ]
    assert root.parent is None and root.context is not None
    assert (root.attributes or {})["http.route"] == "/v1/chat/completions"
    mine = [s for s in done if s.context is not None and s.context.trace_id == root.context.trace_id]
    names = {s.name for s in mine}
    for expected in (
        "StartWorkflow:AgentWorkflow",
        "RunWorkflow:AgentWorkflow",
        "RunActivity:agents.model_turn",
        "chat agent",
        "MCP send tools/call note",
        "tools/call note",
    ):
        assert expected in names, (expected, sorted(names))
    run = _by_name(mine, "RunWorkflow:AgentWorkflow")[0]
    assert (run.attributes or {})["temporalWorkflowID"] == run_id
    ids = {s.context.span_id for s in mine if s.context is not None}
    assert [s.name for s in mine if s.parent is None] == ["POST /v1/chat/completions"]
    assert [s.name for s in mine if s.parent is not None and s.parent.span_id not in ids] == []
    assert not [s.name for s in mine if s.name.startswith(("QueryWorkflow", "HandleQuery"))]  # the stream's polls
    # the run's ledger queries (asyncpg), under its activities, without their parameters
    queries = [s for s in mine if (s.attributes or {}).get("db.system.name") == "postgresql"]
    assert queries, sorted(names)
    by_id = {s.context.span_id: s for s in mine if s.context is not None}
    under = {by_id[q.parent.span_id].name for q in queries if q.parent is not None}
    assert any(n.startswith("RunActivity:agents.") for n in under), under  # the run's own rows
    assert under <= {n for n in names if n.startswith("RunActivity:")} | {"POST /v1/chat/completions"}, under
    assert "POST /v1/chat/completions" in under  # the gateway's key check and audit row
    assert all("db.query.text" in (q.attributes or {}) for q in queries)
    # the gateway's metrics: the request by route template and status, no stream left open, its TTFT
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    requests = {
        (x.labels["method"], x.labels["route"], x.labels["status"]): x.value
        for x in families["agentic_gateway_requests"].samples
        if x.name.endswith("_total")
    }
    assert requests[("POST", "/v1/chat/completions", "200")] >= 1 and requests[("GET", "/metrics", "401")] >= 1
    assert not any(run_id in route for _m, route, _s in requests)  # templates, never paths
    assert [x.value for x in families["agentic_gateway_streams_in_flight"].samples] == [0.0]
    ttft = [
        x.value for x in families["agentic_gateway_time_to_first_token_seconds"].samples
        if x.name.endswith("_count") and x.labels == {"stream": "true"}
    ]  # fmt: skip
    assert ttft and ttft[0] >= 1


async def test_httpx_and_asyncpg_spans_join_a_trace_only_and_keep_no_query_value(
    spans: InMemorySpanExporter, pg: pgserver.PostgresServer
) -> None:
    """The platform's set-up instruments httpx (the standard instrumentation) and asyncpg: inside a
    trace each request and query is a CLIENT span under the current one (the URL's query values
    and the query's parameters are not exported); outside any trace they make no span at all."""
    import asyncpg

    async def ping(request: Request) -> Response:
        return Response(b"pong")

    server, port = LoopServer(), free_port()
    await server.start(Starlette(routes=[Route("/ping", ping, methods=["GET"])]), port)
    conn = await asyncpg.connect(pg.get_uri())
    spans.clear()
    try:
        async with httpx.AsyncClient() as http:
            with trace.get_tracer("test").start_as_current_span("request"):
                assert (await http.get(f"http://127.0.0.1:{port}/ping?api_key={QUERY_SECRET}&n=1")).text == "pong"
                assert await conn.fetchval("SELECT $1::text", QUERY_SECRET) == QUERY_SECRET
            await http.get(f"http://127.0.0.1:{port}/ping")  # outside a trace
            await conn.fetchval("SELECT 2")
    finally:
        await conn.close()
        await server.stop()
    done = {s.name: s for s in spans.get_finished_spans()}
    assert sorted(done) == ["GET", "SELECT", "request"], sorted(done)
    parent = done["request"].context
    assert parent is not None
    get, select = dict(done["GET"].attributes or {}), dict(done["SELECT"].attributes or {})
    assert done["GET"].parent is not None and done["GET"].parent.span_id == parent.span_id
    assert done["SELECT"].parent is not None and done["SELECT"].parent.span_id == parent.span_id
    assert get["url.full"] == f"http://127.0.0.1:{port}/ping?api_key=REDACTED&n=REDACTED", get
    assert get["http.response.status_code"] == 200 and not any(k.startswith("http.request.header") for k in get)
    assert select["db.system.name"] == "postgresql" and select["db.query.text"] == "SELECT $1::text", select
    assert QUERY_SECRET not in "\n".join(_text(s) for s in done.values())


def _workflows() -> list[type]:
    from workflows.approval import ApprovalWorkflow
    from workflows.incident import IncidentWorkflow

    return [IncidentWorkflow, ApprovalWorkflow]


async def _wait(handle: Any, pred: Any, within_s: float = 30.0) -> IncidentState:
    deadline = time.monotonic() + within_s
    while True:
        st = await handle.query("state", result_type=IncidentState)
        if pred(st):
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; state: {st.model_dump_json(indent=1)[:3000]}")
        await asyncio.sleep(0.05)


async def test_otlp_http_export_reaches_a_receiver_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real OTLP/HTTP exchange: the SDK's exporter (http/protobuf) posts to a receiver on
    loopback, which decodes `ExportTraceServiceRequest`."""
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: Request) -> Response:
        req = ExportTraceServiceRequest()
        req.ParseFromString(await request.body())
        received.append(req)
        return Response(b"", media_type="application/x-protobuf")

    server, port = LoopServer(), free_port()
    await server.start(Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])]), port)
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        provider = tracing.build_provider("agentic-otlp-test")
        with provider.get_tracer("t").start_as_current_span("notify", attributes={"note": f"token={TOOL_SECRET}"}):
            pass
        assert await asyncio.to_thread(provider.force_flush, 10_000)
        await asyncio.to_thread(provider.shutdown)
    finally:
        await server.stop()
    [req] = received
    [rs] = req.resource_spans
    service = {a.key: a.value.string_value for a in rs.resource.attributes}["service.name"]
    [span] = [s for ss in rs.scope_spans for s in ss.spans]
    note = {a.key: a.value.string_value for a in span.attributes}["note"]
    assert service == "agentic-otlp-test" and span.name == "notify"
    assert TOOL_SECRET not in note and "[SECRET_1]" in note


async def test_a_collector_that_is_down_slows_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "500")  # ms: the shutdown below gives up soon
    provider = tracing.build_provider("agentic-down-test")
    tracer = provider.get_tracer("t")
    started = time.perf_counter()
    for i in range(500):
        with tracer.start_as_current_span(f"step {i}"):
            pass
    elapsed = time.perf_counter() - started
    await asyncio.to_thread(provider.shutdown)
    assert elapsed < 1.0, f"500 spans took {elapsed:.2f}s with the collector down"


async def test_wave_6_checks_find_the_metrics_in_prometheus_and_a_complete_trace_in_tempo() -> None:
    """The rollout's wave 6 checks against Prometheus' and Tempo's HTTP APIs (their JSON, served by
    an httpx mock transport): passes with the series and one connected trace; says what is missing."""
    import base64

    from activities.rollout.telemetry_checks import TelemetryChecks
    from agentic_core.rollout import Check, CheckInput

    def b64(hex_id: str) -> str:
        return base64.b64encode(bytes.fromhex(hex_id)).decode()

    spans_ok = [
        {"spanId": b64("01" * 8), "name": "POST /alerts"},
        {"spanId": b64("02" * 8), "parentSpanId": b64("01" * 8), "name": "RunWorkflow:IncidentWorkflow"},
        {"spanId": b64("03" * 8), "parentSpanId": b64("02" * 8), "name": "RunActivity:incident.propose"},
    ]
    orphaned = [*spans_ok[:2], {"spanId": b64("04" * 8), "parentSpanId": b64("09" * 8), "name": "x"}]
    have = {"agentic_alerts_received_total"}
    traces = {"t-orphan": orphaned, "t-ok": spans_ok}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/query":
            name = request.url.params["query"].removeprefix("count(").removesuffix(")")
            result = [{"metric": {}, "value": [0, "1"]}] if name in have else []
            return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": result}})
        if request.url.path == "/api/search":
            assert request.url.params["tags"] == "service.name=agentic-intake"
            return httpx.Response(200, json={"traces": [{"traceID": t} for t in traces]})
        tid = request.url.path.removeprefix("/api/traces/")
        return httpx.Response(200, json={"batches": [{"scopeSpans": [{"spans": traces[tid]}]}]})

    checks = TelemetryChecks(httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    metrics_check = Check(
        name="platform_metrics_scraped",
        params={"url": "http://prom", "series": ["agentic_alerts_received_total", "agentic_decisions_total"]},
    )
    res = await checks.check_platform_metrics(CheckInput(wave=6, check=metrics_check))
    assert not res.passed and res.detail == "no series for agentic_decisions_total"
    have.add("agentic_decisions_total")
    assert (await checks.check_platform_metrics(CheckInput(wave=6, check=metrics_check))).passed
    trace_check = Check(name="trace_complete", params={"url": "http://tempo"})
    res = await checks.check_trace(CheckInput(wave=6, check=trace_check))
    assert res.passed and res.detail.startswith("trace t-ok: 3 spans"), res
    del traces["t-ok"]
    res = await checks.check_trace(CheckInput(wave=6, check=trace_check))
    assert not res.passed and "none of 1 recent agentic-intake traces is complete" in res.detail
