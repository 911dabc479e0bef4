"""The gateway (`workers/gateway`) with real parts: the real PostgreSQL ledger (API keys, audit), the
Temporal dev server and a worker with the real agent and tool activities, a small real MCP server
(`tests/support/fake_mcp.py`) and the scripted OpenAI-compatible model (`tests/support/fake_openai.py`).
The gateway is served by uvicorn on a free port and called with the official `openai` client and
with raw HTTP; the keys are made with `agentic keys …` in a subprocess.

Security: every route of the app's own table refuses a request without a valid key (so a route
added later cannot be forgotten), a revoked key fails at once, a read-only key or one that is not
an approver cannot approve, a key limited to one agent cannot use another.

The console's rollout page reads a stand-in `RolloutWorkflow` (its real one needs a cluster, see
tests/integration/test_rollout.py) that waits at a gate: a real `ApprovalWorkflow` child, answered
through its real `decide` update. The reports page reads the digests the real activities
(`reports.compute_digest`, `reports.write_digest`) stored in the real ledger, not the files they wrote
in the worker's data dir, which is not the gateway's.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import openai
import pgserver
import pytest
from starlette.routing import Route
from temporalio import workflow
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.agents.activities import AgentActivities
from activities.inference.router import GroupConfig, InferenceRouter
from activities.ledger.db import connect, list_migrations, migrate
from activities.ledger.repository import Ledger
from activities.reports.activities import ReportActivities
from activities.rollout.gateway_check import check_gateway, probe_gateway
from activities.tools.gateway import ToolActivities
from agentic_core.agents import AGENT_WORKFLOW, AgentLimits, AgentRequest, AgentResult, AgentStatus, agent_run_id
from agentic_core.generation import REPETITION_NOTE
from agentic_core.incident import ApprovalRequest, plan_hash
from agentic_core.models import ToolCall
from agentic_core.reports import DigestQuery
from agentic_core.rollout import (
    QUERY_ROLLOUT,
    CheckInput,
    CheckResult,
    RolloutInput,
    RolloutState,
    RolloutStatus,
    WaveResult,
    gate_id,
    load_plan,
)
from tests.support.agent_harness import AgentFakes, agent_worker, progress_when
from tests.support.env import REPO, free_port
from tests.support.fake_mcp import FakeMcp, fake_mcp
from tests.support.fake_openai import FakeChatServer, chat_server, scripted, tool_call
from tests.support.http_server import LoopServer
from tests.support.incident_fakes import Fakes, incident
from tests.support.pg import pg_server
from tests.support.temporal import dev_server_with_attributes
from workers.errors import AgenticError
from workers.gateway import console
from workers.gateway.app import MODELS, RateLimiter, create_app
from workers.gateway.chat import request_id_for_text
from workers.gateway.deltas import NOT_THE_ANSWER, RETRIED
from workers.gateway.process import check_exposure, is_loopback
from workers.keys_client import check_agents, create_key
from workers.settings import Settings
from workflows.approval import ApprovalWorkflow

TOKEN = "gateway-mcp-token"
APPROVERS = "boss,viewer"  # viewer is read-only: listed, and still refused


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-gateway-pg-")


@pytest.fixture(scope="module")
async def dsn(pg: pgserver.PostgresServer) -> str:
    admin = await asyncpg.connect(pg.get_uri())
    await admin.execute('CREATE DATABASE "gateway"')
    await admin.close()
    return str(pg.get_uri("gateway"))


@pytest.fixture(scope="module")
async def ledger(dsn: str) -> AsyncIterator[Ledger]:
    led = await Ledger.connect(dsn, max_size=6)
    yield led
    await led.close()


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server_with_attributes() as env:
        yield env


@pytest.fixture(scope="module")
async def tools_server() -> AsyncIterator[FakeMcp]:
    async with fake_mcp(TOKEN) as srv:
        yield srv


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[FakeChatServer]:
    async with chat_server("scripted") as server:
        yield server


@pytest.fixture(scope="module")
async def queue(
    temporal: WorkflowEnvironment, ledger: Ledger, tools_server: FakeMcp, model: FakeChatServer
) -> AsyncIterator[str]:
    router = InferenceRouter([GroupConfig(name="planner", model="openai/scripted", api_base=model.base_url)])
    tools = ToolActivities(
        ledger,
        {"fake": tools_server.url},
        TOKEN,
        {"observability": ["note"], "web": ["note", "set_flag"]},
        heartbeat_every_s=0.2,
    )
    agents = AgentActivities(
        ledger, router, agents={"observability": AgentLimits(), "web": AgentLimits()}, tool_specs=tools.offered
    )
    task_queue = f"gateway-{uuid.uuid4().hex[:8]}"
    async with agent_worker(temporal.client, task_queue, agents, tools, AgentFakes()):
        yield task_queue


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, temporal: WorkflowEnvironment, queue: str) -> Settings:
    target = temporal.client.service_client.config.target_host
    return Settings(
        data_dir=tmp_path_factory.mktemp("gw-data"),
        temporal_address=target,
        task_queue=queue,
        gateway_approvers=APPROVERS,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture(scope="module")
async def gateway(settings: Settings, ledger: Ledger, temporal: WorkflowEnvironment, queue: str) -> AsyncIterator[str]:
    async def factory() -> Any:
        return temporal.client

    app = create_app(settings, ledger, factory, queue)
    server = LoopServer()
    port = free_port()
    await server.start(app, port)
    yield f"http://127.0.0.1:{port}"
    await server.stop()


@pytest.fixture(scope="module")
async def keys(ledger: Ledger) -> dict[str, str]:
    out = {}
    for name, agents, read_only in (
        ("boss", [], False),
        ("viewer", [], True),
        ("stranger", [], False),
        ("obs-only", ["observability"], False),
    ):
        _row, token = await ledger.create_api_key(name, agents=agents, read_only=read_only)
        out[name] = token
    return out


@pytest.fixture(autouse=True)
def fresh(model: FakeChatServer) -> None:
    model.requests.clear()
    model.delay_s = model.first_token_s = model.token_s = 0.0
    model.cut_streams.clear()


def client(base: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=60)


def agentic_cli(dsn: str, data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENTIC_POSTGRES_DSN": dsn, "AGENTIC_DATA_DIR": str(data), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


# --- keys ------------------------------------------------------------------------------------------


async def test_keys_cli_create_list_revoke_and_a_revoked_key_fails_at_once(
    dsn: str, gateway: str, ledger: Ledger, tmp_path: Path
) -> None:
    made = await asyncio.to_thread(agentic_cli, dsn, tmp_path, "keys", "create", "ci-bot", "--agents", "observability")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("agk_") and len(key) > 40 and "shown only now" in made.stderr

    # stored hashed: the key's text is nowhere in the ledger
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT * FROM api_keys WHERE name = 'ci-bot'")
        assert key.encode() not in b"".join(str(dict(r)).encode() for r in rows)
    finally:
        await conn.close()

    settings = Settings(data_dir=tmp_path, postgres_dsn=dsn, _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(AgenticError, match="a key named 'ci-bot' exists already"):
        await create_key(settings, "ci-bot", [], False)  # what `agentic keys create ci-bot` runs
    with pytest.raises(AgenticError, match="no agent named 'nope'"):
        check_agents(["observability,nope"])
    assert check_agents(["web,observability", "web"]) == ["observability", "web"]

    async with httpx.AsyncClient(base_url=gateway, headers={"Authorization": f"Bearer {key}"}) as http:
        r = await http.get("/v1/models")
        assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == ["agentic-observability"]

        listed = await asyncio.to_thread(agentic_cli, dsn, tmp_path, "keys", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        [row] = [k for k in json.loads(listed.stdout) if k["name"] == "ci-bot"]
        assert row["agents"] == ["observability"] and row["read_only"] is False and row["revoked_at"] is None
        assert row["last_used_at"] is not None and key not in listed.stdout and "hash" not in listed.stdout

        revoked = await asyncio.to_thread(agentic_cli, dsn, tmp_path, "keys", "revoke", "ci-bot")
        assert revoked.returncode == 0 and "revoked" in revoked.stdout, revoked.stderr
        r = await http.get("/v1/models")  # the very next request
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


# --- every route needs a key ----------------------------------------------------------------------


async def test_no_route_but_healthz_answers_without_a_valid_key(
    gateway: str, settings: Settings, ledger: Ledger, keys: dict[str, str]
) -> None:
    app = create_app(settings, ledger, lambda: None, "unused")  # type: ignore[arg-type,return-value]
    routes = [r for r in app.routes if isinstance(r, Route)]  # type: ignore[attr-defined]
    assert {r.path for r in routes} >= {"/healthz", "/v1/models", "/v1/chat/completions"}
    assert {r.path for r in routes} >= {  # the console's pages are in the table this test walks
        "/console/agents", "/console/agents/runs/{run}/stream", "/console/agents/runs/{run}/decide",
        "/console/rollouts", "/console/rollouts/{rollout}/gate", "/console/reports",
        "/console/reports/{week}/chart.png",
    }  # fmt: skip
    _row, revoked = await ledger.create_api_key("gone", agents=[], read_only=False)
    await ledger.revoke_api_key("gone")
    wrong = keys["boss"][:-4] + "AAAA"  # a real key's prefix with a wrong secret
    checked = 0
    async with httpx.AsyncClient(base_url=gateway) as http:
        for route in routes:
            path = (
                route.path.replace("{run}", "agent-x")
                .replace("{incident}", "inc-x")
                .replace("{name}", "htmx.min.js")
                .replace("{rollout}", "rollout-x")
                .replace("{week}", "2026-W01")
            )
            assert "{" not in path, f"a new path parameter: give {route.path} a value here"
            for method in sorted(route.methods or {"GET"}):
                if method == "HEAD":
                    continue
                for headers in ({}, {"Authorization": f"Bearer {revoked}"}, {"Authorization": f"Bearer {wrong}"},
                                {"Authorization": "Basic Ym9zczpib3Nz"}):  # fmt: skip
                    r = await http.request(method, path, headers=headers, json={"model": "agentic-router"})
                    if route.path == "/healthz":
                        assert r.status_code == 200, (method, path)
                        continue
                    checked += 1
                    assert r.status_code == 401, (method, path, headers, r.text)
                    if path.startswith("/console"):  # the console's 401 is its login form, nothing else
                        assert 'name="key"' in r.text and "signed in as" not in r.text, (method, path)
                        continue
                    assert r.json()["error"]["code"] == "invalid_api_key" and r.headers["www-authenticate"] == "Bearer"
        # a path that is no route is refused the same way (nothing to learn without a key)
        assert (await http.get("/v1/secret")).status_code == 401
        # a console cookie signed with another secret, or tampered with, is no session
        stranger = console.make_cookie(b"another secret", (await ledger.api_key_named("boss")))[0]  # type: ignore[arg-type]
        for cookie in (stranger, stranger.replace(".", "x.", 1), "garbage"):
            r = await http.get("/console/", cookies={console.COOKIE: cookie})
            assert r.status_code == 401 and 'name="key"' in r.text
    assert checked >= 4 * 27


async def test_rate_limit_per_key(settings: Settings, ledger: Ledger, keys: dict[str, str]) -> None:
    app = create_app(settings.model_copy(update={"gateway_rate_per_min": 2}), ledger, lambda: None, "q")  # type: ignore[arg-type,return-value]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        for name, expected in (("boss", 200), ("boss", 200), ("boss", 429), ("stranger", 200)):
            r = await http.get("/v1/models", headers={"Authorization": f"Bearer {keys[name]}"})
            assert r.status_code == expected, (name, r.text)
        r = await http.get("/v1/models", headers={"Authorization": f"Bearer {keys['boss']}"})
        assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
        assert int(r.headers["retry-after"]) >= 1
    limiter = RateLimiter(60)
    assert all(limiter.take("k", now=0.0) == 0 for _ in range(60)) and limiter.take("k", now=0.0) > 0
    assert limiter.take("k", now=1.0) == 0  # one a second comes back


def test_refuses_a_non_loopback_address_without_a_key() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("gateway.lan")
    check_exposure("127.0.0.1", 0)
    check_exposure("0.0.0.0", 1)
    with pytest.raises(Exception, match="not a loopback address, and no API key exists"):
        check_exposure("0.0.0.0", 0)


async def test_the_gateway_process_refuses_to_start_exposed_without_a_key(
    pg: pgserver.PostgresServer, tmp_path: Path
) -> None:
    admin = await asyncpg.connect(pg.get_uri())
    await admin.execute('CREATE DATABASE "nokeys"')
    await admin.close()
    await (await Ledger.connect(pg.get_uri("nokeys"), max_size=1)).close()  # the schema, no key
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AGENTIC_POSTGRES_DSN": pg.get_uri("nokeys"),
        "AGENTIC_DATA_DIR": str(tmp_path),
        "AGENTIC_GATEWAY_HOST": "0.0.0.0",
        "AGENTIC_GATEWAY_PORT": str(free_port()),
    }
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "workers.gateway"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert "not a loopback address, and no API key exists" in proc.stderr
    assert "agentic keys create NAME" in proc.stderr


# --- the OpenAI-compatible endpoint -----------------------------------------------------------------


async def test_models_are_the_agents_the_key_may_use(gateway: str, keys: dict[str, str]) -> None:
    every = await client(gateway, keys["boss"]).models.list()
    assert (
        [m.id for m in every.data]
        == list(MODELS)
        == [
            "agentic-router",
            "agentic-observability",
            "agentic-coding",
            "agentic-web",
        ]
    )
    limited = await client(gateway, keys["obs-only"]).models.list()
    assert [m.id for m in limited.data] == ["agentic-observability"]


async def test_a_key_limited_to_one_agent_cannot_use_another(gateway: str, keys: dict[str, str]) -> None:
    c = client(gateway, keys["obs-only"])
    for model_name in ("agentic-web", "agentic-router", "agentic-coding"):
        with pytest.raises(openai.PermissionDeniedError) as err:
            await c.chat.completions.create(model=model_name, messages=[{"role": "user", "content": "hi"}])
        assert "may not use" in str(err.value) and err.value.status_code == 403


async def test_chat_completion_with_the_openai_client_not_streaming(
    gateway: str, keys: dict[str, str], model: FakeChatServer, ledger: Ledger
) -> None:
    model.reply = scripted(
        [
            {"content": "", "tool_calls": [tool_call("note", {"text": "media"}, "c1")]},
            "Nothing in media is restarting.",
        ]
    )
    c = client(gateway, keys["obs-only"])
    res = await c.chat.completions.create(
        model="agentic-observability",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "an earlier question"},
            {"role": "assistant", "content": "an earlier answer"},
            {"role": "user", "content": [{"type": "text", "text": "are pods in media restarting?"}]},
        ],
        extra_headers={"Idempotency-Key": "q-1"},
    )
    assert res.object == "chat.completion" and res.model == "agentic-observability"
    assert (
        res.choices[0].message.content == "Nothing in media is restarting." and res.choices[0].finish_reason == "stop"
    )
    extra = res.model_extra["agentic"]  # type: ignore[index]
    assert extra["status"] == "done" and [(t["tool"], t["status"]) for t in extra["tool_calls"]] == [("note", "ok")]
    run = await ledger.get_agent_run(extra["run_id"])
    assert run is not None and run.request == "are pods in media restarting?"  # the last user message
    assert not any(b.get("stream") for b in model.bodies)  # a request that does not stream: nor does the model
    turns = len(model.requests)

    # the same Idempotency-Key reattaches to the same run: no second run, no model call
    again = await c.chat.completions.with_raw_response.create(
        model="agentic-observability",
        messages=[{"role": "user", "content": "are pods in media restarting?"}],
        extra_headers={"Idempotency-Key": "q-1"},
    )
    assert again.headers["x-agentic-reattached"] == "true" and again.headers["x-agentic-run"] == extra["run_id"]
    assert again.parse().choices[0].message.content == "Nothing in media is restarting."
    assert len(model.requests) == turns
    # another key with the same header gets a run of its own
    other = await client(gateway, keys["boss"]).chat.completions.with_raw_response.create(
        model="agentic-observability",
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={"Idempotency-Key": "q-1"},
    )
    assert other.headers["x-agentic-run"] != extra["run_id"]
    # the audit: who started what
    audit = await ledger.list_gateway_audit(key_name="obs-only")
    assert [(a.action, a.status, a.subject) for a in audit[:2]] == [
        ("reattach agent run", 200, extra["run_id"]),
        ("start agent run", 200, extra["run_id"]),
    ]


async def test_streaming_with_the_openai_client_and_reattaching_after_a_disconnect(
    gateway: str, keys: dict[str, str], model: FakeChatServer
) -> None:
    model.reply = scripted(
        [
            {"content": "", "tool_calls": [tool_call("note", {"text": "sonarr"}, "c1")]},
            "sonarr is fine.",
        ]
    )
    c = client(gateway, keys["obs-only"])
    stream = await c.chat.completions.create(
        model="agentic-observability",
        messages=[{"role": "user", "content": "is sonarr ok?"}],
        stream=True,
        extra_headers={"X-Request-Id": "s-1"},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason == "stop"
    assert all(ch.object == "chat.completion.chunk" and ch.id == chunks[0].id for ch in chunks)
    # the progress as it happened (a call too quick to be seen running shows as done), then the answer
    assert '> `note` {"text": "sonarr"}: ok (13 characters)\n' in text and "routed" not in text  # named: no route
    assert text.endswith("sonarr is fine.")

    # raw SSE: [DONE] at the end; a client that goes away mid-run and comes back with the same id
    # reattaches to the run, which went on without it
    model.reply = scripted(["slow answer"])
    model.delay_s = 1.5
    headers = {"Authorization": f"Bearer {keys['obs-only']}", "Idempotency-Key": "s-2"}
    body = {"model": "agentic-observability", "messages": [{"role": "user", "content": "slow?"}], "stream": True}
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
        async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            run_id = r.headers["x-agentic-run"]
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    break  # the first chunk, then gone
        async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            assert r.headers["x-agentic-run"] == run_id and r.headers["x-agentic-reattached"] == "true"
            lines = [line async for line in r.aiter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    content = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content") or "" for line in lines[:-1] if line[:6] == "data: "
    )
    assert content.endswith("slow answer")  # the words as the model wrote them, or the answer at the end
    assert len(model.requests) == 3  # two turns of the first run, one of the reattached one


async def _streamed(c: openai.AsyncOpenAI, text: str) -> tuple[str, list[tuple[float, str]], float, str]:
    """A streamed request: (its run, each content piece with when it came, when the stream ended,
    the whole content), times in seconds from the request."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    raw = await c.chat.completions.with_raw_response.create(
        model="agentic-observability", messages=[{"role": "user", "content": text}], stream=True
    )
    pieces = [(loop.time() - t0, ch.choices[0].delta.content) async for ch in raw.parse() if ch.choices]
    got = [(at, p) for at, p in pieces if p]
    return raw.headers["x-agentic-run"], got, loop.time() - t0, "".join(p for _at, p in got)


async def test_streaming_sends_the_models_words_as_it_writes_them(
    gateway: str, keys: dict[str, str], model: FakeChatServer, temporal: WorkflowEnvironment
) -> None:
    # a model that takes 2 s for its answer, its first word after 0.1 s
    answer = " ".join(f"word{i}" for i in range(20)) + "."
    model.reply = scripted([answer])
    model.first_token_s, model.token_s = 0.1, 0.1
    run_id, pieces, ended, content = await _streamed(client(gateway, keys["obs-only"]), "say twenty words")
    result = await temporal.client.get_workflow_handle(run_id, result_type=AgentResult).result()
    assert content == result.answer == answer  # no more, no less than the run's answer
    first = pieces[0][0]
    assert first < ended - 1.0, (first, ended)  # the first words came long before the run ended
    assert len([at for at, _p in pieces if at < ended - 0.5]) >= 5  # and more came as they were written
    assert model.bodies[-1]["stream"] is True


async def test_a_turn_retried_after_some_words_ends_with_the_whole_answer(
    gateway: str, keys: dict[str, str], model: FakeChatServer, temporal: WorkflowEnvironment
) -> None:
    # the first attempt's stream breaks after three words; the retried turn answers otherwise
    model.reply = lambda body: "Sonarr is down and out." if len(model.requests) == 1 else "Sonarr is fine now."
    model.cut_streams.append(3)
    run_id, _pieces, _ended, content = await _streamed(client(gateway, keys["obs-only"]), "is sonarr ok?")
    result = await temporal.client.get_workflow_handle(run_id, result_type=AgentResult).result()
    assert len(model.requests) == 2 and result.answer == "Sonarr is fine now."
    # what the client saw: the broken attempt's words, a notice that the turn was retried, the answer
    assert content == "Sonarr is down " + RETRIED + "Sonarr is fine now.", content


async def test_a_model_that_loops_is_cut_and_the_stream_and_the_answer_say_so(
    gateway: str, keys: dict[str, str], model: FakeChatServer, temporal: WorkflowEnvironment
) -> None:
    """A model that writes one sentence until its limit (the embedded 135M model did, 15 times):
    the answer keeps the first copy and a note; the stream showed the copies written before the
    loop was seen, then the same note, and no 'not the answer' notice."""
    sentence = "Sonarr is down and it stays down for a while now."
    model.reply = scripted([(sentence + " ") * 40])
    model.token_s = 0.005
    run_id, _pieces, _ended, content = await _streamed(client(gateway, keys["obs-only"]), "is sonarr ok?")
    result = await temporal.client.get_workflow_handle(run_id, result_type=AgentResult).result()
    assert result.answer.endswith(f"{sentence}\n\n{REPETITION_NOTE}") and result.answer.count(sentence) == 1
    assert content.endswith(f"\n\n{REPETITION_NOTE}") and NOT_THE_ANSWER.strip() not in content
    assert 3 <= content.count(sentence) <= 4, content  # the copies seen before the cut, not 40
    # without streaming: the answer alone
    reply = await client(gateway, keys["obs-only"]).chat.completions.create(
        model="agentic-observability", messages=[{"role": "user", "content": "and now?"}]
    )
    whole = reply.choices[0].message.content or ""
    assert whole.endswith(f"{sentence}\n\n{REPETITION_NOTE}") and whole.count(sentence) == 1


async def test_a_stream_whose_client_left_before_its_body_keeps_no_subscription(
    settings: Settings,
    ledger: Ledger,
    temporal: WorkflowEnvironment,
    queue: str,
    keys: dict[str, str],
    model: FakeChatServer,
) -> None:
    """A streaming request subscribes to its run's words before the run starts; a client that is
    gone before the body starts (Starlette never runs the body's generator) must not leave that
    subscription in the gateway's listener."""
    model.reply = scripted(["Fine."])

    async def factory() -> Any:
        return temporal.client

    app = create_app(settings, ledger, factory, queue)
    gw = app.app.app.gateway  # type: ignore[attr-defined]  # Observe → TracedRequests → Authenticate
    body = json.dumps(
        {"model": "agentic-observability", "stream": True, "messages": [{"role": "user", "content": "ok?"}]}
    )
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
        "headers": [(b"authorization", f"Bearer {keys['boss']}".encode()), (b"content-type", b"application/json")],
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if not sent:
            return {"type": "http.request", "body": body.encode(), "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.start":
            raise OSError("the client is gone")

    with contextlib.suppress(Exception):
        await app(scope, receive, send)
    assert sent and sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert gw.deltas._subs == {}  # nothing left listening for that run


async def test_bad_input_is_a_400_with_an_openai_error(gateway: str, keys: dict[str, str]) -> None:
    auth = {"Authorization": f"Bearer {keys['boss']}"}
    cases: list[tuple[Any, int, str]] = [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "no body"),
        ([1, 2], 400, "expected a JSON object"),
        ({"messages": [{"role": "user", "content": "x"}]}, 400, "`model` is required"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}, 404, "does not exist"),
        ({"model": "agentic-router", "messages": []}, 400, "non-empty list"),
        ({"model": "agentic-router", "messages": "hi"}, 400, "non-empty list"),
        ({"model": "agentic-router", "messages": [{"content": "x"}]}, 400, "string `role`"),
        ({"model": "agentic-router", "messages": [{"role": "system", "content": "x"}]}, 400, "no user message"),
        ({"model": "agentic-router", "messages": [{"role": "user", "content": 5}]}, 400, "content must be"),
        ({"model": "agentic-router", "messages": [{"role": "user", "content": [{"text": 1}]}]}, 400, "content part"),
        ({"model": "agentic-router", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, 400, "stream"),
    ]
    async with httpx.AsyncClient(base_url=gateway, headers=auth) as http:
        for body, status, says in cases:
            kw: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
            r = await http.post("/v1/chat/completions", **kw)
            assert r.status_code == status, (body, r.text)
            err = r.json()["error"]
            assert says in err["message"] and set(err) == {"message", "type", "param", "code"}, (body, err)
        ok = {"model": "agentic-router", "messages": [{"role": "user", "content": "x"}]}
        r = await http.post("/v1/chat/completions", json=ok, headers={"Idempotency-Key": "bad key with spaces"})
        assert r.status_code == 400 and "Idempotency-Key" in r.json()["error"]["message"]
        r = await http.post("/v1/incidents/x/decision", json={"choice": "maybe"})
        assert r.status_code == 400 and "choice" in r.json()["error"]["message"]
        r = await http.get("/v1/runs/agent-nothing-here")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


# --- approvals ---------------------------------------------------------------------------------------


async def test_an_approval_through_the_gateway_is_the_keys_and_only_an_approvers(
    gateway: str, keys: dict[str, str], model: FakeChatServer, tools_server: FakeMcp, ledger: Ledger
) -> None:
    model.reply = scripted(
        [
            {"content": "", "tool_calls": [tool_call("set_flag", {"value": "on"}, "w1")]},
            "The flag is on.",
        ]
    )
    tools_server.flag = None
    c = client(gateway, keys["stranger"])  # anyone may ask; only an approver may approve
    stream = await c.chat.completions.create(
        model="agentic-web", messages=[{"role": "user", "content": "turn the flag on"}], stream=True
    )
    seen = ""
    async for chunk in stream:
        seen += chunk.choices[0].delta.content or ""
        if "waiting for approval" in seen:
            break
    assert "**waiting for approval** of `set_flag`" in seen
    run_id = seen.split("agentic agents approve ", 1)[1].split("`", 1)[0]
    assert run_id.startswith("agent-gw-")

    async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:

        async def approve(name: str) -> httpx.Response:
            return await http.post(f"/v1/runs/{run_id}/approve", headers={"Authorization": f"Bearer {keys[name]}"})

        r = await approve("viewer")
        assert r.status_code == 403 and "read-only" in r.json()["error"]["message"]
        r = await approve("stranger")
        assert r.status_code == 403 and "AGENTIC_GATEWAY_APPROVERS" in r.json()["error"]["message"]
        r = await approve("obs-only")  # limited to another agent: the run is not there for it
        assert r.status_code == 403  # not an approver either; and read of the run:
        r = await http.get(f"/v1/runs/{run_id}", headers={"Authorization": f"Bearer {keys['obs-only']}"})
        assert r.status_code == 404
        assert tools_server.flag is None

        r = await approve("boss")
        assert r.status_code == 200, r.text
        assert r.json()["by"] == "key:boss" and r.json()["choice"] == "approved"
        r = await approve("boss")
        assert r.status_code == 409 and "not waiting" in r.json()["error"]["message"]

        rest = ""
        async for chunk in stream:
            rest += (chunk.choices[0].delta.content or "") if chunk.choices else ""
        assert "`set_flag`" in rest and "approved, ran" in rest and rest.endswith("The flag is on.")
        assert tools_server.flag == "on"

        r = await http.get(f"/v1/runs/{run_id}", headers={"Authorization": f"Bearer {keys['boss']}"})
        assert r.status_code == 200 and r.json()["status"] == "done"
        assert [t["status"] for t in r.json()["tool_calls"]] == ["approved"]

    # every answer, refused or not, is audited with the key that gave it
    audit = [a for a in await ledger.list_gateway_audit(limit=50) if a.subject.endswith(run_id.removeprefix("agent-"))]
    got = sorted((a.key_name, a.status) for a in audit if a.action.startswith("answer agent run"))
    assert got == [("boss", 200), ("boss", 409), ("obs-only", 403), ("stranger", 403), ("viewer", 403)]
    assert any(a.action == "answer agent run: approved" and "by key:boss" in a.detail for a in audit)


async def test_runs_ended_from_outside_show_as_they_ended_in_the_api_and_the_console(
    gateway: str, keys: dict[str, str], model: FakeChatServer, tools_server: FakeMcp, temporal: WorkflowEnvironment,
    ledger: Ledger,
) -> None:  # fmt: skip
    """Two runs wait for an approval; one is terminated (`temporal workflow terminate`), one
    cancelled. A terminated run never closes its ledger row, and its progress query (which Temporal
    still answers) says `awaiting_approval`: the console's list of runs, `GET /v1/runs/{run}` and an
    answer to it now say it ended `failed` and how, and its row is closed. A cancelled run says
    `cancelled` everywhere: its row, `GET /v1/runs/{run}`, its page and its page's stream (which
    said `failed`)."""
    model.reply = scripted(_ASK_PURPLE)  # a write: each run waits for its approval until it is ended
    tools_server.flag = None
    bearer = {"Authorization": f"Bearer {keys['boss']}"}
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
        await _login(http, keys["boss"])
        runs = {}
        for how in ("terminated", "cancelled"):
            r = await http.get("/console/agents")
            form = {
                "csrf": _csrf(r.text),
                "model": "agentic-web",
                "text": f"make the flag purple ({how})",
                "request_id": f"{how}-{uuid.uuid4().hex[:8]}",
            }
            r = await http.post("/console/agents", data=form)
            assert r.status_code == 303, r.text
            run_id = r.headers["location"].rsplit("/", 1)[1]
            handle = temporal.client.get_workflow_handle(run_id)
            await progress_when(handle, lambda p: p.status == AgentStatus.AWAITING_APPROVAL, within=30)
            runs[how] = handle
        terminated, cancelled = runs["terminated"], runs["cancelled"]
        await terminated.terminate(reason="wrong cluster")
        await cancelled.cancel()
        with pytest.raises(WorkflowFailureError):
            await cancelled.result()
        row = await ledger.get_agent_run(terminated.id)
        assert row is not None and row.status == "running"  # what the run left

        said = (
            f"the agent run {terminated.id} was terminated: wrong cluster; it was waiting for an approval and did not "
            "finish."
        )
        # the console's list of the key's runs: each as it ended (the terminated run's row closed on the way)
        text = (await http.get("/console/agents")).text
        for handle, status in ((terminated, "failed"), (cancelled, "cancelled")):
            cells = f'<a href="/console/agents/runs/{handle.id}">{handle.id}</a></td><td>web</td><td>{status}</td>'
            assert cells in text, text
        row = await ledger.get_agent_run(terminated.id)
        assert row is not None and (row.status, row.answer) == ("failed", said), row

        r = await http.get(f"/v1/runs/{terminated.id}", headers=bearer)
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["answer"], r.json()["approval_id"]) == ("failed", said, None)
        r = await http.post(f"/v1/runs/{terminated.id}/approve", headers=bearer)
        assert r.status_code == 409, r.text
        assert (
            r.json()["error"]["message"] == f"agent run {terminated.id} is not waiting for an answer (status: failed)"
        )

        r = await http.get(f"/v1/runs/{cancelled.id}", headers=bearer)
        row = await ledger.get_agent_run(cancelled.id)
        assert row is not None and row.status == "cancelled" and row.answer.startswith("Cancelled while it waited"), row
        assert r.status_code == 200 and (r.json()["status"], r.json()["answer"]) == ("cancelled", row.answer), r.text
        page = f"/console/agents/runs/{cancelled.id}"
        text = (await http.get(page)).text
        assert '<strong id="run-status" role="status">cancelled</strong>' in text, text
        assert _shown(text)[1] == f"the agent run {cancelled.id} was cancelled"
        events = await _read_stream(http, f"{page}/stream", "", ended=True)
        assert events[-1] == (
            "failed",
            {"text": f"the agent run {cancelled.id} was cancelled", "status": "cancelled", "approval_id": None},
        ), events[-2:]
    assert tools_server.flag is None


# --- the console -----------------------------------------------------------------------------------


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:2000]
    return m.group(1)


async def _in_ledger(ledger: Ledger, incident_id: str, st: Any) -> None:
    """The ledger row the incident's real activities write at each stage (the fakes stand in for them)."""
    await ledger.upsert_incident(
        incident_id, status="awaiting_approval", severity=st.severity.value, category=st.category.value, title=st.title
    )


async def _login(http: httpx.AsyncClient, key: str) -> None:
    r = await http.post("/console/login", data={"key": key})
    assert r.status_code == 303 and r.headers["location"] == "/console/", r.text
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie


async def test_console_login_csrf_and_approving_an_incident_end_to_end(
    gateway: str, keys: dict[str, str], temporal: WorkflowEnvironment, ledger: Ledger
) -> None:
    fakes = Fakes()
    async with incident(temporal, fakes) as run:
        st = await run.awaiting()
        await _in_ledger(ledger, run.incident_id, st)
        page = f"/console/incidents/{run.incident_id}"
        async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
            r = await http.get(page)  # no session: the login form, nothing of the incident
            assert r.status_code == 401 and 'name="key"' in r.text and run.incident_id not in r.text
            r = await http.post("/console/login", data={"key": keys["boss"][:-3] + "xyz"})
            assert r.status_code == 401 and "not valid" in r.text and "set-cookie" not in r.headers

            await _login(http, keys["boss"])
            r = await http.get("/console/", params={"status": "awaiting_approval", "category": "infrastructure"})
            assert r.status_code == 200 and run.incident_id in r.text and 'hx-trigger="every 5s"' in r.text
            assert (
                r.headers["x-frame-options"] == "DENY"
                and "frame-ancestors 'none'" in r.headers["content-security-policy"]
            )
            for params in ({"status": "resolved"}, {"severity": "critical"}):
                r = await http.get("/console/incidents/table", params=params)
                assert r.status_code == 200 and run.incident_id not in r.text
            r = await http.get("/console/", params={"status": "maybe"})
            assert r.status_code == 400 and "status must be one of" in r.text
            r = await http.get("/console/static/htmx.min.js")
            assert r.status_code == 200 and r.text.startswith("var htmx=")

            r = await http.get(page)
            assert r.status_code == 200 and st.plan_hash is not None and st.plan_hash in r.text
            assert 'id="choice-approved"' in r.text and 'id="choice-modified"' in r.text
            csrf = _csrf(r.text)
            # a forged CSRF token, or none: refused, nothing decided
            for data in ({"csrf": "forged", "choice": "approved"}, {"choice": "approved"}):
                r = await http.post(f"{page}/decide", data=data)
                assert r.status_code == 403 and "CSRF" in r.text
            assert (await run.state()).decision is None

            r = await http.post(f"{page}/decide", data={"csrf": csrf, "choice": "approved"})
            assert r.status_code == 303 and "approved+by+key%3Aboss" in r.headers["location"], r.text
            done = await run.wait_for(lambda s: s.decision is not None)
            assert done.decision is not None and (done.decision.choice, done.decision.by) == ("approved", "key:boss")
            r = await http.get(r.headers["location"])
            assert "approved by key:boss" in r.text

            r = await http.get("/console/runbooks")
            assert r.status_code == 200 and "<h1>Runbooks</h1>" in r.text
            r = await http.get("/console/guardrails")
            assert r.status_code == 200 and "<h1>Guardrail events</h1>" in r.text

            r = await http.post("/console/logout", data={"csrf": csrf})
            assert r.status_code == 303
            assert (await http.get("/console/")).status_code == 401
    audit = await ledger.list_gateway_audit(key_name="boss", limit=20)
    acts = [(a.action, a.status) for a in audit if a.subject == run.incident_id or a.action.startswith("console")]
    assert ("answer incident: approved", 303) in acts and ("answer incident", 403) in acts
    assert ("console login", 303) in acts and ("console logout", 303) in acts


async def test_console_a_read_only_or_unlisted_key_cannot_answer_and_a_revoked_key_loses_its_session(
    gateway: str, keys: dict[str, str], temporal: WorkflowEnvironment, ledger: Ledger
) -> None:
    fakes = Fakes()
    async with incident(temporal, fakes) as run:
        await run.awaiting()
        page = f"/console/incidents/{run.incident_id}"
        for name, why in (("viewer", "read-only"), ("stranger", "not an approver")):
            async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
                await _login(http, keys[name])
                r = await http.get(page)
                assert r.status_code == 200 and "You cannot answer here" in r.text and why in r.text
                assert 'id="choice-approved"' not in r.text
                r = await http.post(f"{page}/decide", data={"csrf": _csrf(r.text), "choice": "approved"})
                assert r.status_code == 403 and why in r.text
        assert (await run.state()).decision is None

    _row, token = await ledger.create_api_key("short-lived", agents=[], read_only=True)
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
        await _login(http, token)
        assert (await http.get("/console/guardrails")).status_code == 200
        await ledger.revoke_api_key("short-lived")
        r = await http.get("/console/guardrails")  # the very next request
        assert r.status_code == 401 and 'name="key"' in r.text


async def test_console_shows_a_gitops_changes_diff_escaped(
    gateway: str, keys: dict[str, str], temporal: WorkflowEnvironment, ledger: Ledger
) -> None:
    """The incident page shows the diff its evidence returned (propose_edit: what the plan commits)
    whole, in a pre block, escaped."""
    from agentic_core.incident import ToolSpec
    from agentic_core.models import ToolCall

    diff = (
        "diff --git a/apps/shop/values.yaml b/apps/shop/values.yaml\n--- a/apps/shop/values.yaml\n"
        "+++ b/apps/shop/values.yaml\n@@ -1 +1 @@\n-memory: 1Gi  # <script>alert(1)</script>\n"
        "+memory: 2Gi  # <script>alert(1)</script>\n"
    )
    propose = ToolCall(tool="propose_edit", arguments={"repo": "gitops", "edits": []})
    output = json.dumps({"repo": "gitops", "base": "ab" * 20, "diff": diff, "checked": "ok"})
    spec = ToolSpec(name="propose_edit", description="a diff", input_schema={}, server="coding", mutating=False)
    fakes = Fakes(runbook_evidence=[propose], evidence_outputs={"propose_edit": output})
    fakes.tools = [*fakes.tools, spec]
    async with incident(temporal, fakes) as run:
        await run.awaiting()
        async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
            await _login(http, keys["boss"])
            r = await http.get(f"/console/incidents/{run.incident_id}")
    assert r.status_code == 200 and '<pre class="diff" id="diff-0">diff --git a/apps/shop/values.yaml' in r.text
    assert "+memory: 2Gi  # &lt;script&gt;alert(1)&lt;/script&gt;\n" in r.text and "<script>alert" not in r.text


# --- the console: agents chat, rollouts, reports ------------------------------------------------------


def _events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The console stream's server-sent events: (event, data)."""
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":") and ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


async def _read_stream(
    http: httpx.AsyncClient, path: str, until: str, *, ended: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """The run page's stream, read until an event whose text holds `until` (`ended`: until the
    answer, the text of the words streamed before it included) or the stream's end."""
    got = ""
    async with http.stream("GET", path) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.status_code
        async for piece in r.aiter_text():
            got += piece
            events = _events(got)
            if ended and events and events[-1][0] in ("answer", "failed"):
                break
            if not ended and any(until in d["text"] for _e, d in events):
                break
    return _events(got)


def _said(events: list[tuple[str, dict[str, Any]]]) -> str:
    """What the page's script shows as the answer: the words as written, then the answer's rest."""
    return "".join(d["text"] for e, d in events if e in ("text", "answer")).strip()


async def test_console_agents_chat_shows_the_models_words_as_it_writes_them(
    gateway: str, keys: dict[str, str], model: FakeChatServer
) -> None:
    """The chat form starts the run with the model's words streamed and parks their subscription
    for the run's page (which connects after the redirect, when the first turn may have begun):
    the page's stream has the words from the first one, long before the answer."""
    answer = " ".join(f"word{i}" for i in range(15)) + "."
    model.reply = scripted([answer])
    model.first_token_s, model.token_s = 0.05, 0.2  # 3 s of words: the page connects well before the end
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
        await _login(http, keys["boss"])
        r = await http.get("/console/agents")
        form = {"csrf": _csrf(r.text), "model": "agentic-observability", "text": "say fifteen words"}
        r = await http.post("/console/agents", data={**form, "request_id": f"words-{uuid.uuid4().hex[:6]}"})
        assert r.status_code == 303, r.text
        await asyncio.sleep(0.5)  # the page connects late: the first words were already written
        t0 = asyncio.get_running_loop().time()
        first_word: float | None = None
        got = ""
        async with http.stream("GET", f"{r.headers['location']}/stream") as s:
            async for piece in s.aiter_text():
                got += piece
                events = _events(got)
                if first_word is None and any(e == "text" for e, _d in events):
                    first_word = asyncio.get_running_loop().time() - t0
                if events and events[-1][0] in ("answer", "failed"):
                    break
        ended = asyncio.get_running_loop().time() - t0
    assert events[-1][0] == "answer" and events[-1][1]["status"] == "done", events
    assert _said(events) == answer  # every word, from the first, once
    texts = [d["text"] for e, d in events if e == "text"]
    assert texts and texts[0].strip().startswith("word0")
    assert first_word is not None and first_word < ended - 0.5, (first_word, ended)  # words before the end
    assert model.bodies[-1]["stream"] is True


async def test_console_agents_chat_streams_the_run_and_its_approval(
    gateway: str, keys: dict[str, str], model: FakeChatServer, tools_server: FakeMcp, ledger: Ledger
) -> None:
    model.reply = scripted(
        [
            {"content": "", "tool_calls": [tool_call("set_flag", {"value": "blue"}, "w1")]},
            "The flag is blue.",
        ]
    )
    tools_server.flag = None
    async with (
        httpx.AsyncClient(base_url=gateway, timeout=60) as http,
        httpx.AsyncClient(base_url=gateway, timeout=60) as limited,
    ):
        # a key limited to one agent is offered that agent only, and cannot ask another
        await _login(limited, keys["obs-only"])
        r = await limited.get("/console/agents")
        assert r.status_code == 200 and re.findall(r'<option value="([^"]+)"', r.text) == ["agentic-observability"]
        form = {"csrf": _csrf(r.text), "model": "agentic-web", "text": "turn the flag on", "request_id": "x1"}
        r = await limited.post("/console/agents", data=form)
        assert r.status_code == 403 and "may not use agentic-web" in r.text

        await _login(http, keys["boss"])
        r = await http.get("/console/agents")
        assert r.status_code == 200 and 'label for="text"' in r.text and 'label for="model"' in r.text
        assert re.findall(r'<option value="([^"]+)"', r.text) == list(MODELS)
        form = {"csrf": _csrf(r.text), "model": "agentic-web", "text": "turn the flag blue", "request_id": "ask-1"}
        for bad in ({**form, "csrf": "forged"}, {k: v for k, v in form.items() if k != "csrf"}):
            r = await http.post("/console/agents", data=bad)
            assert r.status_code == 403 and "CSRF" in r.text
        r = await http.post("/console/agents", data={**form, "text": "  "})
        assert r.status_code == 400 and "no user message" in r.text
        assert not model.requests  # nothing was started by the refused forms

        r = await http.post("/console/agents", data=form)
        assert r.status_code == 303, r.text
        page = r.headers["location"]
        run_id = page.rsplit("/", 1)[1]
        assert page.startswith("/console/agents/runs/agent-gw-")
        again = await http.post("/console/agents", data=form)  # the same form sent twice: the same run
        assert again.status_code == 303 and again.headers["location"] == page

        r = await http.get(page)
        assert r.status_code == 200 and f'data-stream="{page}/stream"' in r.text and "chat.js" in r.text
        # the limited key learns nothing of another agent's run
        assert (await limited.get(page)).status_code == 404
        assert (await limited.get(f"{page}/stream")).status_code == 404

        # the stream: the same progress lines as /v1/chat/completions, the approval as it happens
        events = await _read_stream(http, f"{page}/stream", "waiting for approval")
        [(kind, wait)] = [(e, d) for e, d in events if "waiting for approval" in d["text"]]
        assert kind == "line" and wait["status"] == "awaiting_approval" and wait["approval_id"]
        assert wait["text"].startswith('**waiting for approval** of `set_flag` {"value": "blue"}')
        assert tools_server.flag is None
        r = await http.get(page)
        assert 'id="run-approved"' in r.text and 'id="approval" aria-labelledby="approval-title" >' in r.text

        # a read-only key sees the question and no buttons; its answer is refused
        async with httpx.AsyncClient(base_url=gateway, timeout=60) as viewer:
            await _login(viewer, keys["viewer"])
            r = await viewer.get(page)
            assert "You cannot answer here" in r.text and "read-only" in r.text and 'id="run-approved"' not in r.text
            r = await viewer.post(f"{page}/decide", data={"csrf": _csrf(r.text), "choice": "approved"})
            assert r.status_code == 403 and "read-only" in r.text
        r = await http.post(f"{page}/decide", data={"csrf": "forged", "choice": "approved"})
        assert r.status_code == 403 and "CSRF" in r.text
        r = await http.post(f"{page}/decide", data={"csrf": form["csrf"], "choice": "maybe"})
        assert r.status_code == 400
        assert tools_server.flag is None

        r = await http.post(f"{page}/decide", data={"csrf": form["csrf"], "choice": "approved"})
        assert r.status_code == 303 and "approved+by+key%3Aboss" in r.headers["location"], r.text
        events = await _read_stream(http, f"{page}/stream", "The flag is blue.", ended=True)
        assert events[-1][0] == "answer" and events[-1][1]["status"] == "done"
        assert _said(events) == "The flag is blue."  # the model's words as written, then what was left
        assert any(e == "line" and d["text"].endswith(": approved, ran") for e, d in events)
        assert tools_server.flag == "blue"
        r = await http.get("/console/agents")
        assert run_id in r.text  # the key's recent runs
    audit = [a for a in await ledger.list_gateway_audit(limit=100) if a.path.startswith("/console/agents")]
    got = {(a.key_name, a.action, a.status) for a in audit}
    assert ("boss", "start agent run", 303) in got and ("boss", "reattach agent run", 303) in got
    assert ("boss", "answer agent run: approved", 303) in got and ("viewer", "answer agent run", 403) in got
    assert ("obs-only", "ask agent", 403) in got  # the refused agent: audited, nothing started


_REFRESH = re.compile(r'<noscript><meta http-equiv="refresh" content="(\d+)"></noscript>')
_ASKS = 'id="approval" aria-labelledby="approval-title" >'  # the approval section, not hidden


def _shown(page: str) -> tuple[list[str], str | None]:
    """What a browser without JavaScript shows of a run's page: its progress lines and its
    answer (None: hidden)."""
    lines = [html.unescape(li) for li in re.findall(r"<li>(.*?)</li>", page.split('id="log"', 1)[1].split("</ol>")[0])]
    m = re.search(r'<div id="answer" class="answer" aria-live="polite" (hidden)?>(.*?)</div>', page, re.S)
    assert m is not None, page
    return lines, None if m.group(1) else html.unescape(m.group(2))


async def _reload_until(http: httpx.AsyncClient, page: str, done: Callable[[str], bool]) -> str:
    """Reload the run's page as a browser without JavaScript does (sooner: the test needn't wait
    the page's seconds) until `done(its HTML)`; each reload before must say to reload."""
    for _ in range(400):
        r = await http.get(page)
        assert r.status_code == 200, r.text
        if done(r.text):
            return r.text
        assert _REFRESH.search(r.text) and 'aria-busy="true"' in r.text, r.text  # it goes on: reload
        await asyncio.sleep(0.1)
    raise AssertionError(f"{page} never got there: {_shown(r.text)}")


async def test_console_agents_chat_works_without_javascript(
    gateway: str, keys: dict[str, str], model: FakeChatServer, tools_server: FakeMcp, temporal: WorkflowEnvironment
) -> None:
    """No script at all (an httpx client): the form's POST starts the run and 303s to its page;
    the page shows the run's progress lines itself and reloads itself (`<meta http-equiv=refresh>`
    in `<noscript>`) while it goes on; an approval is answered with the page's own form; once the
    run ends the page shows the answer and stops reloading. A run that ends without an answer
    (terminated) says so, and stops reloading too."""
    model.reply = scripted(
        [{"content": "", "tool_calls": [tool_call("set_flag", {"value": "green"}, "g1")]}, "The flag is green."]
    )
    tools_server.flag = None
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
        await _login(http, keys["boss"])
        r = await http.get("/console/agents")
        form = {"csrf": _csrf(r.text), "model": "agentic-web", "text": "make the flag green", "request_id": "nojs-1"}
        r = await http.post("/console/agents", data=form)
        assert r.status_code == 303 and r.headers["location"].startswith("/console/agents/runs/agent-gw-"), r.text
        page = r.headers["location"]
        # the run cannot end before its write is approved: the page says it goes on, and reloads
        text = await _reload_until(http, page, lambda t: _ASKS in t)
        assert _REFRESH.search(text) and "this page reloads itself" in text and 'id="run-approved"' in text
        lines, answer = _shown(text)
        assert answer is None and any(x.startswith("**waiting for approval** of `set_flag`") for x in lines), lines
        r = await http.post(f"{page}/decide", data={"csrf": _csrf(text), "choice": "approved"})
        assert r.status_code == 303 and r.headers["location"].startswith(f"{page}?msg="), r.text
        text = await _reload_until(http, r.headers["location"], lambda t: _shown(t)[1] is not None)
        lines, answer = _shown(text)
        assert answer == "The flag is green." and '<strong id="run-status" role="status">done</strong>' in text
        assert lines == ['`set_flag` {"value": "green"}: approved, ran'], lines
        assert not _REFRESH.search(text) and 'aria-busy="false"' in text and "reloads itself" not in text
        assert tools_server.flag == "green"

        # a run that ends without an answer: the page says why and stops reloading
        model.reply = scripted([{"content": "", "tool_calls": [tool_call("set_flag", {"value": "red"}, "r1")]}])
        r = await http.post("/console/agents", data={**form, "request_id": "nojs-2", "text": "make it red"})
        assert r.status_code == 303
        page = r.headers["location"]
        await _reload_until(http, page, lambda t: _ASKS in t)
        await temporal.client.get_workflow_handle(page.rsplit("/", 1)[1]).terminate("operator said stop")
        text = (await http.get(page)).text
        lines, answer = _shown(text)
        assert answer is not None and not _REFRESH.search(text), (lines, answer)
        assert "was terminated" in answer and "operator said stop" in answer, answer  # the termination's details
        assert lines and lines[-1].startswith("**waiting for approval** of `set_flag`")  # how far it got
        assert '<strong id="run-status" role="status">failed</strong>' in text and _ASKS not in text
    assert tools_server.flag == "green"


# --- a run ended from outside: terminated, cancelled, timed out, failed ----------------------------

_ASK_PURPLE = [{"content": "", "tool_calls": [tool_call("set_flag", {"value": "purple"}, "p1")]}]


def _gone_body(said: str, ended: str, header: str = "Idempotency-Key") -> dict[str, Any]:
    """The error object of a run that gave no answer (`410 Gone`): how it ended (`said`), and that
    its key will only ever name that run (it was a 503 with `Retry-After`: retried for good)."""
    message = (
        f"{said}. No answer will come: the {header} names that run for good; send a new {header} to start a new run"
    )
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": f"run_{ended}"}}


def _gone(r: httpx.Response, said: str, ended: str, run_id: str) -> None:
    """`r` is the 410 of run `run_id`, which ended `ended` as `said`, without `Retry-After`."""
    assert r.status_code == 410 and r.json() == _gone_body(said, ended), r.text
    assert "retry-after" not in r.headers and r.headers["x-agentic-run"] == run_id


def _sse_data(lines: list[str]) -> list[Any]:
    """A /v1 stream's `data:` payloads ('[DONE]' as it is)."""
    return [line[6:] if line == "data: [DONE]" else json.loads(line[6:]) for line in lines if line.startswith("data: ")]


async def test_a_run_terminated_from_outside_says_so_and_why_everywhere(
    gateway: str, keys: dict[str, str], model: FakeChatServer, tools_server: FakeMcp, temporal: WorkflowEnvironment
) -> None:
    """A run ended from outside (`temporal workflow terminate --reason …`, the Web UI) while the
    /v1 endpoint (not streaming and streaming) and the console's run page wait on it: each says
    it was terminated and why, not the SDK's "Workflow execution failed". The HTTP of a run that
    gave no answer: `410 Gone` with that error object (no `Retry-After`: its key names that run for
    good); a stream (its 200 sent already) that error object, then [DONE]; the page's `failed` event
    and status. A retry with the same key, streamed or not, is the same 410."""
    model.reply = scripted(_ASK_PURPLE)  # a write: the run waits for its approval until it is ended
    tools_server.flag = None
    reason = "the on-call stopped it: wrong cluster"
    rid = f"ended-{uuid.uuid4().hex[:8]}"
    api = {"Authorization": f"Bearer {keys['boss']}", "Idempotency-Key": rid}
    body = {"model": "agentic-web", "messages": [{"role": "user", "content": "make the flag purple"}]}
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
        await _login(http, keys["boss"])
        r = await http.get("/console/agents")
        form = {"csrf": _csrf(r.text), "model": "agentic-web", "text": "make the flag purple", "request_id": rid}
        r = await http.post("/console/agents", data=form)
        assert r.status_code == 303, r.text
        page = r.headers["location"]
        run_id = page.rsplit("/", 1)[1]
        handle = temporal.client.get_workflow_handle(run_id)
        await progress_when(handle, lambda p: p.status == AgentStatus.AWAITING_APPROVAL, within=30)

        # the same Idempotency-Key from the same key is the same run: the API waits on it, and streams it
        streamed: list[str] = []
        console_said = ""
        listening = asyncio.Event(), asyncio.Event()

        async def stream() -> int:
            async with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}, headers=api) as s:
                assert s.headers["x-agentic-run"] == run_id and s.headers["x-agentic-reattached"] == "true"
                async for line in s.aiter_lines():
                    streamed.append(line)
                    if "waiting for approval" in line:
                        listening[0].set()
                return s.status_code

        async def console_stream() -> None:
            nonlocal console_said
            async with http.stream("GET", f"{page}/stream") as s:
                assert s.status_code == 200
                async for piece in s.aiter_text():
                    console_said += piece
                    if "waiting for approval" in console_said:
                        listening[1].set()

        waiting = asyncio.create_task(http.post("/v1/chat/completions", json=body, headers=api))
        streaming, paging = asyncio.create_task(stream()), asyncio.create_task(console_stream())
        await asyncio.wait_for(asyncio.gather(listening[0].wait(), listening[1].wait()), 30)
        assert not waiting.done()  # the run goes on: the request waits for its answer
        await handle.terminate(reason=reason)
        r, status, _ = await asyncio.wait_for(asyncio.gather(waiting, streaming, paging), 30)

        said = f"the agent run {run_id} was terminated: {reason}"
        _gone(r, said, "terminated", run_id)
        data = _sse_data(streamed)
        assert status == 200 and data[-2:] == [_gone_body(said, "terminated"), "[DONE]"], streamed[-3:]
        assert any("waiting for approval" in (d["choices"][0]["delta"].get("content") or "") for d in data[:-2])
        events = _events(console_said)
        assert events[-1] == ("failed", {"text": said, "status": "failed", "approval_id": None}), events[-2:]
        # the page itself (no script): how far the run got, and how it ended
        text = (await http.get(page)).text
        lines, answer = _shown(text)
        assert answer == said and '<strong id="run-status" role="status">failed</strong>' in text
        assert lines and lines[-1].startswith("**waiting for approval** of `set_flag`"), lines
        # a retry after the end (the same Idempotency-Key) hears the same, streamed or not
        r = await http.post("/v1/chat/completions", json=body, headers=api)
        _gone(r, said, "terminated", run_id)
        r = await http.post("/v1/chat/completions", json={**body, "stream": True}, headers=api)
        _gone(r, said, "terminated", run_id)
    assert "Workflow execution failed" not in console_said + "".join(streamed)
    assert tools_server.flag is None


@workflow.defn(name="FailingAgentRun")
class FailingAgentRun:
    """A stand-in for an agent run that failed as a workflow (the real one turns its own errors into
    a `failed` answer, so only a bug or a new path could end it so)."""

    @workflow.run
    async def run(self, req: AgentRequest) -> AgentResult:
        raise ApplicationError(f"the ledger went away while answering {req.text!r}", non_retryable=True)


@pytest.mark.parametrize("how", ["cancelled", "timed out", "failed"])
async def test_a_run_cancelled_timed_out_or_failed_says_how_it_ended(
    how: str,
    gateway: str,
    keys: dict[str, str],
    ledger: Ledger,
    model: FakeChatServer,
    temporal: WorkflowEnvironment,
    queue: str,
) -> None:
    """A run that a client reattaches to (the same Idempotency-Key) and that ends cancelled, timed
    out (its Temporal execution timeout), or failed as a workflow: the /v1 answer, not streaming
    (waiting on it) and streaming (after the end: before its headers), is the 410 that says which."""
    model.reply = scripted(_ASK_PURPLE)
    model.delay_s = 3.0 if how == "cancelled" else 0.0
    rid = f"{how.replace(' ', '-')}-{uuid.uuid4().hex[:8]}"
    boss = await ledger.api_key_named("boss")
    assert boss is not None
    run_id = agent_run_id(request_id_for_text(boss, rid))  # the run the gateway reattaches to
    req = AgentRequest(
        request_id=rid, text="make the flag purple", agent="web", requested_by="key:boss", source="gateway"
    )
    api = {"Authorization": f"Bearer {keys['boss']}", "Idempotency-Key": rid}
    body = {"model": "agentic-web", "messages": [{"role": "user", "content": "make the flag purple"}]}
    async with contextlib.AsyncExitStack() as stack:
        if how == "failed":
            queue = f"gw-failing-{uuid.uuid4().hex[:8]}"
            await stack.enter_async_context(
                Worker(
                    temporal.client,
                    task_queue=queue,
                    workflows=[FailingAgentRun],
                    workflow_runner=UnsandboxedWorkflowRunner(),
                )
            )
        handle = await temporal.client.start_workflow(
            "FailingAgentRun" if how == "failed" else AGENT_WORKFLOW,
            req,
            id=run_id,
            task_queue=queue,
            execution_timeout=timedelta(seconds=2) if how == "timed out" else None,
        )
        async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
            waiting = asyncio.create_task(http.post("/v1/chat/completions", json=body, headers=api))
            if how == "cancelled":  # while the (slow) model answers its first turn
                for _ in range(600):
                    if model.requests:
                        break
                    await asyncio.sleep(0.05)
                assert model.requests, "the run never asked its model"
                await handle.cancel()
            r = await asyncio.wait_for(waiting, 30)
            streamed = await http.post("/v1/chat/completions", json={**body, "stream": True}, headers=api)
    said = {
        "cancelled": f"the agent run {run_id} was cancelled",
        "timed out": f"the agent run {run_id} timed out",
        "failed": f"the agent run {run_id} failed: the ledger went away while answering 'make the flag purple'",
    }[how]
    ended = how.replace(" ", "_")
    _gone(r, said, ended, run_id)
    _gone(streamed, said, ended, run_id)


async def test_the_openai_client_does_not_retry_a_run_that_ended_without_an_answer_and_a_new_key_starts_anew(
    gateway: str, keys: dict[str, str], ledger: Ledger, model: FakeChatServer, temporal: WorkflowEnvironment
) -> None:
    """The defect: a run ended without an answer was a 503 with `Retry-After` for its key, now and
    on every retry with that key; the `openai` client retries a 503 (honouring `Retry-After`), and
    each retry reattached to the same dead run. Now: with the client's default `max_retries` the
    call raises the 410 after one request, promptly, streamed or not, the waiting one and every
    retry (a stream that was going on raises the same error object); a new key starts a new run,
    which answers."""
    model.reply = scripted(_ASK_PURPLE)  # the run waits for its approval until it is terminated
    rid = f"gone-{uuid.uuid4().hex[:8]}"
    boss = await ledger.api_key_named("boss")
    assert boss is not None
    run_id = agent_run_id(request_id_for_text(boss, rid))
    sent: list[str] = []

    async def count(req: httpx.Request) -> None:
        sent.append(req.headers.get("idempotency-key", ""))

    async with httpx.AsyncClient(timeout=60, event_hooks={"request": [count]}) as http:
        c = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=keys["boss"], http_client=http)
        assert c.max_retries == 2  # the default: a 5xx (or 408, 409, 429) is tried three times
        messages: list[Any] = [{"role": "user", "content": "make the flag purple"}]
        waiting = asyncio.create_task(
            c.chat.completions.create(model="agentic-web", messages=messages, extra_headers={"Idempotency-Key": rid})
        )
        handle = temporal.client.get_workflow_handle(run_id)
        await progress_when(handle, lambda p: p.status == AgentStatus.AWAITING_APPROVAL, within=30)
        streaming = await c.chat.completions.create(
            model="agentic-web", messages=messages, stream=True, extra_headers={"Idempotency-Key": rid}
        )
        async for chunk in streaming:  # the run's progress, up to its question
            if "waiting for approval" in (chunk.choices[0].delta.content or ""):
                break
        await handle.terminate(reason="not this one")
        said = f"the agent run {run_id} was terminated: not this one"
        with pytest.raises(openai.APIError) as mid_stream:  # the stream's 200 went out before the end
            async for chunk in streaming:
                assert chunk.choices[0].finish_reason is None  # no answer: no `stop`
        assert mid_stream.value.body == _gone_body(said, "terminated")["error"]
        errors = []
        with pytest.raises(openai.APIStatusError) as err:
            await asyncio.wait_for(waiting, 30)
        errors.append(err.value)
        assert sent == [rid, rid]
        loop = asyncio.get_running_loop()
        for stream in (False, True):  # retries with the same key: at once, one request each
            sent.clear()
            t0 = loop.time()
            with pytest.raises(openai.APIStatusError) as err:
                await c.chat.completions.create(
                    model="agentic-web", messages=messages, stream=stream, extra_headers={"Idempotency-Key": rid}
                )
            assert sent == [rid] and loop.time() - t0 < 5.0, (stream, sent, loop.time() - t0)
            errors.append(err.value)
        for e in errors:
            assert e.status_code == 410 and e.body == _gone_body(said, "terminated")["error"], e.body
            assert e.code == "run_terminated" and "retry-after" not in e.response.headers
            assert e.response.headers["x-agentic-run"] == run_id

        # a new key is a new run, which answers
        model.reply = scripted(["The flag stays as it is."])
        sent.clear()
        raw = await c.chat.completions.with_raw_response.create(
            model="agentic-web", messages=messages, extra_headers={"Idempotency-Key": f"{rid}-again"}
        )
        assert sent == [f"{rid}-again"] and raw.status_code == 200
        assert raw.headers["x-agentic-reattached"] == "false" and raw.headers["x-agentic-run"] != run_id
        assert raw.parse().choices[0].message.content == "The flag stays as it is."


@pytest.mark.parametrize("status", [AgentStatus.DONE, AgentStatus.LIMITED])
async def test_a_retry_of_a_run_that_ended_with_an_answer_gets_that_answer_again(
    status: AgentStatus,
    gateway: str,
    keys: dict[str, str],
    ledger: Ledger,
    model: FakeChatServer,
    temporal: WorkflowEnvironment,
    queue: str,
) -> None:
    """Idempotency: a retry (the same Idempotency-Key) of a run that ended with an answer, done or
    stopped by a limit (`limited`: two model turns here), reattaches and gets that answer again,
    not streaming and streaming, without asking the model again."""
    model.reply = scripted(
        [{"content": "", "tool_calls": [tool_call("note", {"text": "pods"}, "n1")]}, "The pods are fine."]
    )
    rid = f"answered-{status.value}-{uuid.uuid4().hex[:8]}"
    boss = await ledger.api_key_named("boss")
    assert boss is not None
    run_id = agent_run_id(request_id_for_text(boss, rid))  # the run the gateway reattaches to
    req = AgentRequest(
        request_id=rid,
        text="are the pods fine?",
        agent="observability",
        requested_by="key:boss",
        source="gateway",
        limits=AgentLimits(max_steps=2) if status == AgentStatus.LIMITED else None,
    )
    res = await temporal.client.execute_workflow(
        AGENT_WORKFLOW, req, id=run_id, task_queue=queue, result_type=AgentResult
    )
    assert res.status == status and res.answer.startswith("The pods are fine."), res
    turns = len(model.requests)
    body = {"model": "agentic-observability", "messages": [{"role": "user", "content": "are the pods fine?"}]}
    api = {"Authorization": f"Bearer {keys['boss']}", "Idempotency-Key": rid}
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
        r = await http.post("/v1/chat/completions", json=body, headers=api)
        s = await http.post("/v1/chat/completions", json={**body, "stream": True}, headers=api)
    assert r.status_code == 200 and r.headers["x-agentic-reattached"] == "true", r.text
    doc = r.json()
    assert doc["choices"][0]["message"]["content"] == res.answer and doc["agentic"]["run_id"] == run_id
    assert doc["agentic"]["status"] == status.value
    assert s.status_code == 200 and s.headers["x-agentic-reattached"] == "true", s.text
    data = _sse_data(s.text.splitlines())
    assert data[-1] == "[DONE]" and data[-2]["choices"][0]["finish_reason"] == "stop", data[-3:]
    content = "".join(d["choices"][0]["delta"].get("content") or "" for d in data[:-1])
    assert content.endswith(res.answer), content
    assert len(model.requests) == turns  # answered from the run, not asked again


@workflow.defn(name="RolloutWorkflow")
class WaitingRollout:
    """A stand-in for the real rollout: wave 0 validated, then the gate to wave 1, a real
    `ApprovalWorkflow` child answered through its `decide` update."""

    def __init__(self) -> None:
        self._st = RolloutState(from_wave=0, to_wave=1)

    @workflow.run
    async def run(self, inp: RolloutInput) -> RolloutState:
        st = self._st
        checks = [CheckResult(name="namespaces_present", passed=True, detail="agentic, monitoring exist")]
        st.waves = [WaveResult(wave=0, name="foundation", phase="validated", checks=checks)]
        st.current_wave, st.status = 0, RolloutStatus.AWAITING_GATE
        gid = gate_id(workflow.info().workflow_id, 1)
        steps = [ToolCall(tool="argocd.sync", arguments={"application": "platform-01-stores"})]
        req = ApprovalRequest(
            approval_id=gid,
            incident_id=workflow.info().workflow_id,
            question="wave 0 (foundation) validated: go to wave 1 (stores)?",
            plan=steps,
            plan_hash=plan_hash(steps),
            route="platform",
            approvers=list(inp.approvers),
        )
        st.gate_id = gid
        result = await workflow.execute_child_workflow(ApprovalWorkflow.run, req, id=gid)
        st.waves[0].gate, st.waves[0].phase, st.gate_id = result, "gated", None
        st.status = RolloutStatus.SUCCEEDED if result.choice == "approved" else RolloutStatus.STOPPED
        return st

    @workflow.query(name=QUERY_ROLLOUT)
    def state(self) -> RolloutState:
        return self._st


@pytest.fixture(scope="module")
async def rollout_queue(temporal: WorkflowEnvironment) -> AsyncIterator[str]:
    task_queue = f"gw-rollout-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal.client,
        task_queue=task_queue,
        workflows=[WaitingRollout, ApprovalWorkflow],
        activities=[AgentFakes().notify],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        yield task_queue


async def _rollout(temporal: WorkflowEnvironment, queue: str) -> WorkflowHandle[Any, RolloutState]:
    rid = f"rollout-{uuid.uuid4().hex[:10]}"
    handle = await temporal.client.start_workflow(
        "RolloutWorkflow",
        RolloutInput(from_wave=0, to_wave=1, approvers=["key:boss"]),
        id=rid,
        task_queue=queue,
        result_type=RolloutState,
    )
    for _ in range(300):  # until it waits at its gate
        st = await handle.query(QUERY_ROLLOUT, result_type=RolloutState)
        if st.gate_id:
            return handle
        await asyncio.sleep(0.1)
    raise AssertionError("the rollout never reached its gate")


async def test_console_rollouts_waves_checks_and_the_pending_gate(
    gateway: str, keys: dict[str, str], temporal: WorkflowEnvironment, rollout_queue: str, ledger: Ledger
) -> None:
    handle = await _rollout(temporal, rollout_queue)
    rid = handle.id
    page = f"/console/rollouts/{rid}"
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
        for name, why in (("viewer", "read-only"), ("stranger", "not an approver"), ("obs-only", "not an approver")):
            async with httpx.AsyncClient(base_url=gateway, timeout=60) as other:
                await _login(other, keys[name])
                r = await other.get(page)
                assert r.status_code == 200 and "Pending gate" in r.text and "You cannot answer here" in r.text
                assert why in r.text and 'id="gate-approved"' not in r.text
                form = {"csrf": _csrf(r.text), "choice": "approved", "gate": f"{rid}-gate-1", "plan_hash": "0" * 64}
                r = await other.post(f"{page}/gate", data=form)
                assert r.status_code == 403 and why in r.text

        await _login(http, keys["boss"])
        r = await http.get("/console/rollouts")
        assert r.status_code == 200 and f'href="/console/rollouts/{rid}"' in r.text
        r = await http.get(page)
        assert r.status_code == 200, r.text
        assert (
            "Wave 0: foundation" in r.text and "namespaces_present" in r.text and "agentic, monitoring exist" in r.text
        )
        assert "go to wave 1 (stores)?" in r.text and "argocd.sync" in r.text and 'id="gate-approved"' in r.text
        csrf = _csrf(r.text)
        shown = re.search(r'name="plan_hash" value="([0-9a-f]+)"', r.text)
        assert shown is not None
        form = {"csrf": csrf, "choice": "approved", "gate": f"{rid}-gate-1", "plan_hash": shown.group(1)}
        for bad, status, says in (
            ({**form, "csrf": "forged"}, 403, "CSRF"),
            ({**form, "choice": "maybe"}, 400, "choice must be"),
            ({**form, "gate": f"{rid}-gate-7"}, 409, "does not wait at gate"),
            ({**form, "plan_hash": "0" * 64}, 409, "plan changed"),
            ({**form, "plan_hash": ""}, 400, "plan_hash must be"),  # was the 503 of DecideInput's validation
            ({**form, "plan_hash": "zz<b>"}, 400, "plan_hash must be"),
        ):
            r = await http.post(f"{page}/gate", data=bad)
            assert r.status_code == status and says in r.text, (bad, r.text)
        for other in ("rollout-nothing", f"{rid}-gate-1", "x" * 2000):  # none, not a rollout, not an id
            r = await http.get(f"/console/rollouts/{other}")
            assert r.status_code == 404 and "no rollout" in r.text, (other[:40], r.status_code, r.text[:300])

        r = await http.post(f"{page}/gate", data=form)
        assert r.status_code == 303 and "approved+by+key%3Aboss" in r.headers["location"], r.text
        st: RolloutState = await handle.result()
        assert st.status == RolloutStatus.SUCCEEDED and st.waves[0].gate is not None
        assert (st.waves[0].gate.choice, st.waves[0].gate.by) == ("approved", "key:boss")
        r = await http.get(page)
        assert "gate: approved by key:boss" in r.text and "Pending gate" not in r.text
        r = await http.post(f"{page}/gate", data=form)  # answered already: nothing waits
        assert r.status_code == 409
    audit = [a for a in await ledger.list_gateway_audit(limit=100) if a.path == f"{page}/gate"]
    assert ("boss", "answer rollout gate: approved", 303) in {(a.key_name, a.action, a.status) for a in audit}


async def test_a_rollout_no_worker_took_says_so_in_the_cli_and_the_console(
    gateway: str, keys: dict[str, str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`agentic rollout start` without a worker that runs rollouts (no cluster) stops the rollout
    it started, with the reason; it is then the latest rollout. `agentic rollout status` and its
    console page said "Workflow execution closed before WorkflowTaskStarted event" (the page with
    a 503, as if the platform were down); both now say it never ran, and why."""
    from workers import rollout_client

    monkeypatch.setattr(rollout_client, "FIRST_STATE_S", 1.0)
    nobody = settings.model_copy(update={"task_queue": f"nobody-{uuid.uuid4().hex[:8]}"})
    t0 = asyncio.get_running_loop().time()
    with pytest.raises(AgenticError, match="no worker runs rollouts: the worker needs a Kubernetes cluster"):
        await rollout_client.start_rollout(nobody, 0, 1, True)
    # it waits what it means to (a query with no worker is held for Temporal's own deadline, ~30 s)
    assert asyncio.get_running_loop().time() - t0 < 10
    with pytest.raises(AgenticError) as status:
        await rollout_client.rollout_state(nobody, None)  # the latest: that one
    said = str(status.value)
    assert re.fullmatch(
        r"rollout rollout-\S+ never ran: it was terminated before a worker took it \(no worker runs rollouts\)", said
    ), said
    rid = said.split()[1]
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
        await _login(http, keys["boss"])
        r = await http.get(f"/console/rollouts/{rid}")
        assert r.status_code == 404 and "never ran" in r.text and "no worker runs rollouts" in r.text, r.text[:500]


async def test_a_worker_without_rollouts_is_known_at_once(settings: Settings) -> None:
    """The newcomer's case: the platform's worker polls the queue but runs no rollouts (no
    cluster, so `build_rollout` leaves RolloutWorkflow out). It takes the first workflow task
    and fails it ("… is not registered on this worker"); `agentic rollout start` read that from
    the history and said so, where it used to wait `FIRST_STATE_S` (15 s) for a state."""
    from workers import rollout_client

    assert rollout_client.FIRST_STATE_S == 15.0
    t0 = asyncio.get_running_loop().time()
    with pytest.raises(AgenticError, match="no worker runs rollouts: the worker needs a Kubernetes cluster"):
        await rollout_client.start_rollout(settings, 0, 1, True)  # the module's worker: agents only
    took = asyncio.get_running_loop().time() - t0
    assert took < 10, f"took {took:.1f} s"  # it waited 15.5 s before; about 1 s on a quiet machine


@pytest.fixture(scope="module")
def worker_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The worker's data dir: not the gateway's (in the chart they are two pods)."""
    return tmp_path_factory.mktemp("worker-data")


@pytest.fixture(scope="module")
async def digest_week(ledger: Ledger, worker_data: Path) -> str:
    """A weekly digest of the (real) ledger written by the digest's own activities, as the worker
    does: its files into the worker's data dir, the digest with its chart into the ledger."""
    week = "2026-W45"
    acts = ReportActivities(ledger, worker_data)
    env = ActivityEnvironment()
    digest = await env.run(acts.compute_digest, DigestQuery(week=week))
    await env.run(acts.write_digest, digest)
    return week


async def test_console_reports_list_a_digest_and_its_chart_from_the_ledger(
    gateway: str, keys: dict[str, str], settings: Settings, ledger: Ledger, worker_data: Path, digest_week: str
) -> None:
    """The gateway's own data dir holds no report (its own pod in the chart): the page reads the
    ledger, where the worker's activity stored the digest."""
    assert settings.data_path != worker_data and not (settings.data_path / "reports").exists()
    await ledger.put_weekly_digest("2026-W44", {"week": "2026-W44", "alerts": "many"}, None, "")  # not a digest
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
        await _login(http, keys["viewer"])  # reading needs no more than a read-only key
        r = await http.get("/console/reports")
        assert r.status_code == 200 and f'href="/console/reports/{digest_week}"' in r.text, r.text
        assert "cannot be read" in r.text  # the broken row is listed as such, the page still answers
        r = await http.get(f"/console/reports/{digest_week}")
        assert r.status_code == 200 and f"Weekly digest {digest_week}" in r.text
        assert f'src="/console/reports/{digest_week}/chart.png"' in r.text and 'alt="Chart: ' in r.text
        assert "Decisions per day" in r.text and "Automation share by week" in r.text
        r = await http.get(f"/console/reports/{digest_week}/chart.png")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content == (worker_data / "reports" / f"{digest_week}.png").read_bytes()  # the chart it sent
        for path, status, says in (
            ("/console/reports/2026-W44", 409, "cannot be read"),
            ("/console/reports/2026-W40", 404, "no digest of 2026-W40"),
            ("/console/reports/2026-W99", 400, "2026 has weeks"),
            ("/console/reports/nope", 400, "ISO week"),
            ("/console/reports/2026-W40/chart.png", 404, "no chart"),
            ("/console/reports/2026-W44/chart.png", 404, "no chart"),
        ):
            r = await http.get(path)
            assert r.status_code == status and says in r.text, (path, r.text)


async def test_console_reports_on_a_ledger_the_worker_has_not_migrated_yet_is_a_503_that_says_so(
    pg: pgserver.PostgresServer, settings: Settings
) -> None:
    """The gateway does not migrate (the worker does): during an upgrade it may meet a ledger
    without `weekly_digests`; the page says so (a 503 to retry), not an unexpected error."""
    admin = await asyncpg.connect(pg.get_uri())
    await admin.execute('CREATE DATABASE "gateway_0012"')
    await admin.close()
    dsn = str(pg.get_uri("gateway_0012"))
    conn = await connect(dsn)
    await migrate(conn, migrations=[m for m in list_migrations() if m.version <= "0012"])
    await conn.close()
    old = await Ledger.connect(dsn, max_size=2, apply_migrations=False)
    try:
        _row, key = await old.create_api_key("boss", agents=[], read_only=True)
        app = create_app(settings, old, lambda: None, "unused")  # type: ignore[arg-type,return-value]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
            await _login(http, key)
            for path in ("/console/reports", "/console/reports/2026-W45", "/console/reports/2026-W45/chart.png"):
                r = await http.get(path)
                assert r.status_code == 503 and "migration 0013" in r.text, (path, r.text)
    finally:
        await old.close()


# --- the console in a real browser (Debian's chromium and chromium-driver, selenium) ---------------


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=412,915"):
        opts.add_argument(arg)  # a phone's viewport: the console must work there
    opts.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))


def _browse(
    base: str,
    incident_id: str,
    keys: dict[str, str],
    shots: Path,
    add_incident: Callable[[str], None],
    rollout_id: str,
    week: str,
) -> list[str]:
    """Log in, see a new incident appear in the list without reloading (htmx), be refused as a
    stranger, see a forged CSRF token refused, approve as an approver; ask an agent and see the
    answer stream in; approve a rollout's gate; open a weekly digest with its chart; a screenshot
    of each page. Returns the pages' titles seen, in order."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = _browser()
    seen: list[str] = []
    wait = WebDriverWait(driver, 30)

    def shot(name: str) -> None:
        seen.append(driver.title)
        assert driver.save_screenshot(str(shots / f"{len(seen):02d}-{name}.png"))

    def login(name: str) -> None:
        driver.get(f"{base}/console/")
        field = wait.until(ec.presence_of_element_located((By.ID, "key")))
        assert driver.find_element(By.CSS_SELECTOR, "label[for=key]").text == "API key"
        field.send_keys(keys[name])
        field.submit()
        wait.until(ec.presence_of_element_located((By.ID, "incidents")))

    def logout() -> None:
        driver.find_element(By.CSS_SELECTOR, "form.who button").click()
        wait.until(ec.presence_of_element_located((By.ID, "key")))

    try:
        driver.get(f"{base}/console/")
        wait.until(ec.presence_of_element_located((By.ID, "key")))
        shot("login")
        login("stranger")
        assert driver.find_elements(By.LINK_TEXT, incident_id)
        live = f"inc-live-{uuid.uuid4().hex[:8]}"
        add_incident(live)  # the table refreshes itself (htmx, every 5 s): no reload here
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.LINK_TEXT, live))
        shot("incidents")
        driver.find_element(By.LINK_TEXT, incident_id).click()
        wait.until(ec.title_contains(incident_id))
        assert "You cannot answer here" in driver.page_source and not driver.find_elements(By.ID, "choice-approved")
        shot("incident-stranger")
        logout()

        login("boss")
        driver.get(f"{base}/console/incidents/{incident_id}")
        button = wait.until(ec.element_to_be_clickable((By.ID, "choice-approved")))
        shot("incident-approver")
        driver.execute_script("document.querySelectorAll('input[name=csrf]').forEach(e => e.value = 'forged')")
        button.click()
        wait.until(ec.title_contains("Error 403"))
        assert "CSRF" in driver.page_source
        shot("forged-csrf")
        driver.get(f"{base}/console/incidents/{incident_id}")
        wait.until(ec.element_to_be_clickable((By.ID, "choice-approved"))).click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "p.msg")))
        assert "approved by key:boss" in driver.find_element(By.CSS_SELECTOR, "p.msg").text
        shot("approved")
        for page in ("runbooks", "guardrails"):
            driver.get(f"{base}/console/{page}")
            wait.until(ec.presence_of_element_located((By.TAG_NAME, "table")))
            shot(page)

        driver.get(f"{base}/console/agents")  # ask: the run streams into its page (chat.js, EventSource)
        Select(wait.until(ec.presence_of_element_located((By.ID, "model")))).select_by_value("agentic-observability")
        driver.find_element(By.ID, "text").send_keys("is media restarting?", Keys.TAB)  # by keyboard:
        assert driver.switch_to.active_element.get_attribute("id") == "ask"  # the next stop is Ask
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        wait.until(ec.visibility_of_element_located((By.ID, "answer")))
        assert driver.find_element(By.ID, "answer").text == "media is fine."
        assert any("`note`" in li.text for li in driver.find_elements(By.CSS_SELECTOR, "#log li"))
        assert driver.find_element(By.ID, "run-status").text == "done"
        shot("agent-run")

        driver.get(f"{base}/console/rollouts/{rollout_id}")
        button = wait.until(ec.element_to_be_clickable((By.ID, "gate-approved")))
        shot("rollout")
        button.click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "p.msg")))
        assert "approved by key:boss" in driver.find_element(By.CSS_SELECTOR, "p.msg").text

        driver.get(f"{base}/console/reports/{week}")
        chart = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "img.chart")))
        wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", chart))
        shot("report")
        return seen
    finally:
        driver.quit()


async def test_console_in_a_real_browser(
    gateway: str,
    keys: dict[str, str],
    temporal: WorkflowEnvironment,
    ledger: Ledger,
    tmp_path: Path,
    model: FakeChatServer,
    rollout_queue: str,
    digest_week: str,
) -> None:
    shots = Path(os.environ.get("AGENTIC_TEST_ARTIFACTS") or tmp_path) / "gateway-console"
    shots.mkdir(parents=True, exist_ok=True)
    fakes = Fakes()
    async with incident(temporal, fakes) as run:
        await _in_ledger(ledger, run.incident_id, await run.awaiting())
        loop = asyncio.get_running_loop()

        def add_incident(incident_id: str) -> None:  # from the browser's thread, on the test's loop
            row = ledger.upsert_incident(incident_id, status="open", severity="info", title="a new one")
            asyncio.run_coroutine_threadsafe(row, loop).result(30)

        model.reply = scripted(
            [{"content": "", "tool_calls": [tool_call("note", {"text": "media"}, "c1")]}, "media is fine."]
        )
        rollout = await _rollout(temporal, rollout_queue)
        titles = await asyncio.to_thread(
            _browse, gateway, run.incident_id, keys, shots, add_incident, rollout.id, digest_week
        )
        done = await run.wait_for(lambda s: s.decision is not None)
        gated = await rollout.result()
    assert gated.status == RolloutStatus.SUCCEEDED
    assert done.decision is not None and (done.decision.choice, done.decision.by) == ("approved", "key:boss")
    assert titles[0].startswith("Sign in") and titles[-1].startswith(f"Weekly digest {digest_week}")
    pngs = sorted(shots.glob("*.png"))
    assert [p.name.split("-", 1)[1] for p in pngs] == [
        "login.png",
        "incidents.png",
        "incident-stranger.png",
        "incident-approver.png",
        "forged-csrf.png",
        "approved.png",
        "runbooks.png",
        "guardrails.png",
        "agent-run.png",
        "rollout.png",
        "report.png",
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


async def test_the_rollout_wave_8_check_of_the_deployed_gateway(gateway: str, model: FakeChatServer) -> None:
    async with httpx.AsyncClient() as http:
        passed, detail = await probe_gateway(http, gateway)
        assert passed, detail
        assert "6 routes refuse no key and a made-up key (401)" in detail
        # a server that answers without a key (here the fake model) fails it, saying where
        passed, detail = await probe_gateway(http, model.base_url.removesuffix("/v1"))
        assert not passed and "GET /healthz: 404" in detail and "GET /v1/models with no key: 200" in detail
        passed, detail = await probe_gateway(http, f"http://127.0.0.1:{free_port()}")
        assert not passed and "ConnectError" in detail
    # the activity the RolloutWorkflow runs, with the check as deploy/waves.yaml writes it (its URL here)
    [check] = [c for c in load_plan().wave(8).checks if c.name == "gateway_authenticates"]
    check.params["url"] = gateway
    res = await ActivityEnvironment().run(check_gateway, CheckInput(wave=8, check=check))
    assert res.passed and res.name == "gateway_authenticates", res.detail
