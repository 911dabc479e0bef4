"""The MCP client reuses its sessions (activities/tools/mcp_client.py): calls to one server share
one open session, observed from the server's side (it counts the handshakes it answers); a
server that restarts, or dies and comes back, is reconnected (kill -9 of a real server process
included); the exactly-once path (`tools.execute`) keeps a session of its own per call; the
worker's shutdown closes the pool. And the model turn, which reads the transcript once: a retried
turn whose answer is recorded returns that answer without asking the model again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import pgserver
import pytest
import uvicorn
from pydantic import Field
from temporalio.testing import ActivityEnvironment

from activities.agents.activities import AgentActivities
from activities.inference.router import GroupConfig, InferenceRouter
from activities.ledger.repository import Ledger
from activities.tools.gateway import ToolActivities
from activities.tools.mcp_client import McpClient, ServerError
from agentic_core.agents import AgentToolCall, ModelTurnInput, ToolCallInput
from agentic_core.incident import ExecuteInput, ToolCall
from tests.support.env import free_port
from tests.support.fake_openai import chat_server, tool_call
from tests.support.kmock_helpers import start_server
from tests.support.pg import pg_server
from workers.toolservers.common import MUTATING, READ_ONLY, new_server, tool

TOKEN = "pool-token"
HANDSHAKES = (b'"method":"server/discover"', b'"method":"initialize"')


@dataclass
class Counting:
    """A real MCP server (the SDK's streamable-HTTP app) on a fixed port, counting from its side
    the handshakes (`server/discover` or `initialize` requests) and the tool calls it answers."""

    port: int
    handshakes: int = 0
    calls: list[str] = field(default_factory=list)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def _app(self) -> Any:
        async def note(text: Annotated[str, Field(max_length=1000)] = "") -> str:
            """Echoes the text."""
            self.calls.append(f"note:{text}")
            return f"noted: {text}"

        async def slow(ms: Annotated[int, Field(ge=0, le=10_000)] = 100) -> str:
            """Answers after `ms` milliseconds."""
            await asyncio.sleep(ms / 1000)
            self.calls.append(f"slow:{ms}")
            return f"waited {ms} ms"

        async def bump(name: Annotated[str, Field(max_length=100)]) -> str:
            """Changes something (a write tool)."""
            self.calls.append(f"bump:{name}")
            return f"bumped {name}"

        server = new_server(
            "pool-test",
            title="Session pool test",
            instructions="test tools",
            tools=[tool(note, "Note", READ_ONLY), tool(slow, "Slow", READ_ONLY), tool(bump, "Bump", MUTATING)],
            token=TOKEN,
            issuer_url=f"http://127.0.0.1:{self.port}",
            health=lambda: {},
        )
        inner = server.streamable_http_app(host="127.0.0.1")

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["method"] != "POST":
                await inner(scope, receive, send)
                return
            chunks: list[bytes] = []

            async def counting_receive() -> Any:
                message = await receive()
                if message["type"] == "http.request":
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body") and any(h in b"".join(chunks) for h in HANDSHAKES):
                        self.handshakes += 1
                return message

            await inner(scope, counting_receive, send)

        return app

    async def start(self) -> None:
        config = uvicorn.Config(self._app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(500):
            if self._server.started:
                return
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)
        raise AssertionError("the test MCP server did not start")

    async def stop(self) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        self._server.force_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._task, 15)


@contextlib.asynccontextmanager
async def counting_server() -> AsyncIterator[Counting]:
    srv = Counting(port=free_port())
    await srv.start()
    try:
        yield srv
    finally:
        with contextlib.suppress(Exception):
            await srv.stop()


def text_of(result: Any) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "text", None))


async def test_calls_to_one_server_share_one_session() -> None:
    async with counting_server() as srv, McpClient(TOKEN, 30.0) as mcp:
        listed = await mcp.list_tools("pool", srv.url, lambda t: t.name)
        assert sorted(listed) == ["bump", "note", "slow"]
        for i in range(5):
            assert text_of(await mcp.call_tool("pool", srv.url, "note", {"text": str(i)})) == f"noted: {i}"
        # concurrent activities share it too: five 300 ms calls at once take about 300 ms, not 1.5 s
        started = asyncio.get_running_loop().time()
        answers = await asyncio.gather(*(mcp.call_tool("pool", srv.url, "slow", {"ms": 300 + i}) for i in range(5)))
        took = asyncio.get_running_loop().time() - started
        assert [text_of(a) for a in answers] == [f"waited {300 + i} ms" for i in range(5)]
        assert took < 1.2, f"concurrent calls on the shared session were serialised ({took:.2f} s)"
        assert srv.handshakes == 1, f"{srv.handshakes} handshakes for 1 listing and 10 calls"
        assert mcp.open_sessions == 1
        # a call that must be exactly once opens a session of its own, as it always did
        assert text_of(await mcp.call_tool("pool", srv.url, "bump", {"name": "x"}, reuse=False)) == "bumped x"
        assert srv.handshakes == 2
        await mcp.aclose()
        assert mcp.open_sessions == 0
        # a closed pool opens again on the next call
        assert text_of(await mcp.call_tool("pool", srv.url, "note", {"text": "again"})) == "noted: again"
        assert srv.handshakes == 3


async def test_a_call_that_times_out_leaves_the_shared_session_to_the_others() -> None:
    # a 3 s timeout, a call of 6 s: the quick calls keep well inside it even on a loaded machine
    # (at 0.5 s, a plain call timed out in a CI run with two test workers)
    async with counting_server() as srv, McpClient(TOKEN, 3.0) as mcp:
        assert text_of(await mcp.call_tool("pool", srv.url, "note", {"text": "a"})) == "noted: a"
        slow = asyncio.ensure_future(mcp.call_tool("pool", srv.url, "slow", {"ms": 6000}))
        quick = [mcp.call_tool("pool", srv.url, "slow", {"ms": 100 + i}) for i in range(3)]
        answers = await asyncio.gather(*quick)
        assert [text_of(a) for a in answers] == [f"waited {100 + i} ms" for i in range(3)]
        with pytest.raises(ServerError) as late:
            await slow
        assert late.value.sent  # it reached the server: not sent again
        # the SDK's transport ends a session whose call timed out: the next call opens a new one
        # instead of failing at once with "lost the connection" (as it did on the kept session)
        assert text_of(await mcp.call_tool("pool", srv.url, "note", {"text": "b"})) == "noted: b"
        assert srv.handshakes == 2 and mcp.open_sessions == 1


async def test_a_restarted_server_is_reconnected_and_a_stopped_one_fails_cleanly() -> None:
    srv = Counting(port=free_port())
    await srv.start()
    async with McpClient(TOKEN, 30.0) as mcp:
        try:
            assert text_of(await mcp.call_tool("pool", srv.url, "note", {"text": "1"})) == "noted: 1"
            # restarted between two calls: the next call works (a new session, no error)
            await srv.stop()
            srv.handshakes = 0
            await srv.start()
            assert text_of(await mcp.call_tool("pool", srv.url, "note", {"text": "2"})) == "noted: 2"
            assert text_of(await mcp.call_tool("pool", srv.url, "note", {"text": "3"})) == "noted: 3"
            assert srv.handshakes <= 1
            # stopped: the call fails cleanly, says so, and was not sent
            await srv.stop()
            with pytest.raises(ServerError) as down:
                await mcp.call_tool("pool", srv.url, "note", {"text": "4"})
            assert "cannot reach MCP server 'pool'" in str(down.value) and not down.value.sent
            with pytest.raises(ServerError):
                await mcp.list_tools("pool", srv.url, lambda t: t.name)
            # back: the next call works
            srv.handshakes = 0
            await srv.start()
            assert text_of(await mcp.call_tool("pool", srv.url, "note", {"text": "5"})) == "noted: 5"
            assert srv.handshakes == 1
            assert srv.calls[-1] == "note:5" and "note:4" not in srv.calls
        finally:
            with contextlib.suppress(Exception):
                await srv.stop()


async def test_a_server_process_killed_and_restarted_is_reconnected(tmp_path: Any) -> None:
    """A real tool server process (the metrics server), kill -9 between calls, then started again
    on its port: the pooled session's next call after the restart works."""
    port = free_port()
    prom = "http://127.0.0.1:9"  # no Prometheus: listing its tools needs none
    env = {"AGENTIC_PROMETHEUS_URL": prom}
    module = "workers.toolservers.metrics"
    proc = await start_server(port, None, TOKEN, env=env, module=module)
    url = f"http://127.0.0.1:{port}/mcp"
    async with McpClient(TOKEN, 30.0) as mcp:
        try:
            first = await mcp.list_tools("metrics", url, lambda t: t.name)
            assert "prom_query" in first
            await proc.stop(signal.SIGKILL)
            with pytest.raises(ServerError) as down:
                await mcp.list_tools("metrics", url, lambda t: t.name)
            assert "cannot reach" in str(down.value)
            proc = await start_server(port, None, TOKEN, env=env, module=module)
            assert await mcp.list_tools("metrics", url, lambda t: t.name) == first
            await proc.stop(signal.SIGKILL)
            proc = await start_server(port, None, TOKEN, env=env, module=module)
            # killed and back between two calls: no failed call at all
            assert await mcp.list_tools("metrics", url, lambda t: t.name) == first
        finally:
            await proc.stop()


# --- through the gateway's activities ---------------------------------------------------------


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-pool-")


async def test_the_gateway_reads_on_one_session_and_executes_on_its_own(pg: pgserver.PostgresServer) -> None:
    ledger = await Ledger.connect(pg.get_uri(), max_size=2)
    async with counting_server() as srv:
        acts = ToolActivities(ledger, {"pool": srv.url}, TOKEN, {"observability": ["note"], "incident": ["bump"]})
        env = ActivityEnvironment()
        try:
            run = f"agent-pool-{uuid.uuid4().hex[:8]}"
            for i in range(4):
                inp = ToolCallInput(
                    run_id=run,
                    agent="observability",
                    step=i,
                    call=AgentToolCall(call_id=f"c{i}", tool="note", arguments={"text": f"r{i}"}),
                    max_result_chars=1000,
                )
                out = await env.run(acts.call, inp)
                assert out.status == "ok" and out.result is not None and out.result.preview == f"noted: r{i}"
            assert srv.handshakes == 1, f"{srv.handshakes} handshakes for a listing and 4 reads"
            key = f"pool-{uuid.uuid4().hex[:8]}"
            ex = ExecuteInput(
                incident_id="inc-pool",
                index=0,
                call=ToolCall(tool="bump", arguments={"name": "a"}),
                idempotency_key=key,
                agent="incident",
            )
            done = await env.run(acts.execute, ex)
            assert done.status == "succeeded" and "bumped a" in done.output
            again = await env.run(acts.execute, ex)
            assert again.already_ran and srv.calls.count("bump:a") == 1
            assert srv.handshakes == 2  # the write had a session of its own
        finally:
            await acts.aclose()
            await ledger.close()
    assert json.dumps(srv.calls)  # the server saw every call it answered


async def test_a_retried_model_turn_returns_the_recorded_answer(pg: pgserver.PostgresServer) -> None:
    ledger = await Ledger.connect(pg.get_uri(), max_size=2)
    try:
        async with chat_server("planner") as model:
            model.reply = lambda body: {"tool_calls": [tool_call("note", {"text": "x"})]}
            router = InferenceRouter([GroupConfig(name="planner", model="openai/fake", api_base=model.base_url)])
            acts = AgentActivities(ledger, router)
            run = f"agent-turn-{uuid.uuid4().hex[:8]}"
            await ledger.add_messages(run, [])
            inp = ModelTurnInput(run_id=run, agent="observability", step=0, tools=[{"name": "note"}])
            env = ActivityEnvironment()
            first = await env.run(acts.model_turn, inp)
            assert [c.tool for c in first.tool_calls] == ["note"] and len(model.requests) == 1
            model.reply = lambda body: "a different answer"
            again = await env.run(acts.model_turn, inp)  # a retry of the same turn
            assert len(model.requests) == 1, "the recorded answer stands: the model is not asked again"
            assert [(c.tool, c.arguments) for c in again.tool_calls] == [("note", {"text": "x"})]
            assert [r.role for r in await ledger.transcript(run)] == ["assistant"]
    finally:
        await ledger.close()
