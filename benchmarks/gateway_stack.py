"""Time to first token through the product as it runs: `agentic up`, the gateway and the worker in
their own processes, against the same fake model called directly.

    python benchmarks/gateway_stack.py [--runs 40] [--model-ms 200] [--token-ms 20] [--env AGENTIC_X=Y …]

`benchmarks/gateway.py` measures the gateway, the worker and the fake model in one Python process
(one event loop, one GIL: the gateway's request and the worker's workflow tasks take turns); this
one measures what an editor pointed at `agentic up` waits for. It starts the fake model (the
scripted OpenAI-compatible server of tests/support/fake_openai.py: its first word after
`--model-ms`, then one every `--token-ms`), `agentic up --detach` on a fresh data dir and free
ports with `AGENTIC_PLANNER_URL` at the fake model, waits until no workflow runs (the first
start's docs ingest embeds for a minute or more on one core), creates a key (`agentic keys
create`), then `--runs` times after two warm-ups, alternating: the first word of a streamed chat completion
straight from the model, and through the gateway (`agentic-observability`, the official `openai`
client) the first chunk that carries the model's words (the stack has no cluster, so the agent
says first that it looked at nothing: that line is not the model's and is not counted). Then
overhead = gateway - model, p50 against p50 and p95 against p95 (target p95 < 50 ms), and paired.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openai

from benchmarks.gateway import _line, _pct
from tests.support.e2e import agentic as run_cli
from tests.support.env import stack_env
from tests.support.fake_openai import FakeChatServer

ANSWER = "Sonarr restarted twice in the last hour; both times its liveness probe timed out while it imported."
FIRST = ANSWER.split()[0]


async def agentic(env: dict[str, str], *args: str, limit: float = 180) -> str:
    """`agentic ARGS` (tests/support/e2e.py), its output; a failure stops the benchmark."""
    rc, out, err = await run_cli(env, *args, limit=limit)
    if rc != 0:
        raise SystemExit(f"agentic {' '.join(args)} exited {rc}:\n{(out + err)[-3000:]}")
    return out


async def first_words(client: openai.AsyncOpenAI, model: str, text: str) -> tuple[float, str, str, float]:
    """Milliseconds to the first chunk that carries the answer's first word, the whole text, the
    run (the gateway's `X-Agentic-Run`; "" from the model) and the wall clock at the request."""
    sent = time.time()
    t0 = time.perf_counter()
    ttft = 0.0
    seen = ""
    raw = await client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], stream=True
    )
    run = raw.headers.get("x-agentic-run", "")
    async for chunk in raw.parse():
        piece = chunk.choices[0].delta.content if chunk.choices else None
        seen += piece or ""
        if not ttft and FIRST in seen:
            ttft = (time.perf_counter() - t0) * 1000
    return ttft, seen, run, sent


async def wait_quiet(env: dict[str, str], limit: float = 600) -> float:
    """Until no workflow runs: a fresh data dir's first start ingests docs/ into the knowledge
    base, a core's worth of embedding for a minute or more, which would be measured too."""
    from temporalio.client import Client

    client = await Client.connect(f"127.0.0.1:{env['AGENTIC_TEMPORAL_PORT']}")
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if (await client.count_workflows("ExecutionStatus = 'Running'")).count == 0:
            return time.monotonic() - t0
        await asyncio.sleep(1)
    raise SystemExit(f"workflows still running after {limit:.0f}s")


async def phases(env: dict[str, str], runs: list[tuple[str, float, float]], model_ms: int) -> dict[str, list[float]]:
    """Where a gateway request's time went, from each run's history (Temporal's event times and
    this machine's clock are the same clock): the request to the run's start (HTTP, the key
    check, the start), the first workflow task's wait and run (start_run, which lists the tools), the model
    turn's dispatch, and from the turn's start to the first word at the client less the model's
    own `model_ms` (the transcript, LiteLLM, the NOTIFY, the gateway's listener, the SSE chunk)."""
    from temporalio.client import Client

    client = await Client.connect(f"127.0.0.1:{env['AGENTIC_TEMPORAL_PORT']}")
    out: dict[str, list[float]] = {}
    for run_id, sent, ttft in runs:
        events = [e async for e in client.get_workflow_handle(run_id).fetch_history_events()]

        def at(field: str, events: list = events) -> float:  # type: ignore[type-arg]
            e = next(e for e in events if e.HasField(field))
            return e.event_time.ToDatetime().replace(tzinfo=UTC).timestamp()

        started = at("workflow_execution_started_event_attributes")
        wft_started = at("workflow_task_started_event_attributes")
        wft_done = at("workflow_task_completed_event_attributes")
        act_started = at("activity_task_started_event_attributes")
        word = sent + ttft / 1000
        for name, ms in (
            ("request -> run started", (started - sent) * 1000),
            ("run started -> first task started", (wft_started - started) * 1000),
            ("first task (start_run with the tools)", (wft_done - wft_started) * 1000),
            ("-> model turn started", (act_started - wft_done) * 1000),
            ("turn started -> first word - model", (word - act_started) * 1000 - model_ms),
        ):
            out.setdefault(name, []).append(ms)
    return out


async def bench(runs: int, model_ms: int, token_ms: int, extra: list[str]) -> None:
    logging.disable(logging.INFO)
    model = FakeChatServer(name="scripted", first_token_s=model_ms / 1000, token_s=token_ms / 1000)
    model.answer(ANSWER)
    await model.start()
    with tempfile.TemporaryDirectory(prefix="agentic-ttft-") as tmp:
        data = Path(tmp) / "data"
        env = stack_env(data) | {"AGENTIC_PLANNER_URL": model.base_url, "AGENTIC_PLANNER_MODEL": "scripted"}
        for item in extra:
            name, sep, value = item.partition("=")
            if not sep or not name.startswith("AGENTIC_"):
                raise SystemExit(f"--env {item!r}: expected AGENTIC_NAME=VALUE")
            env[name] = value
        t0 = time.perf_counter()
        await agentic(env, "up", "--detach", limit=300)
        print(f"stack healthy in {time.perf_counter() - t0:.1f} s")
        try:
            print(f"the first start's docs ingest done after {await wait_quiet(env):.0f} s more")
            created = await agentic(env, "keys", "create", "bench", "--json")
            key = json.loads(created)["key"]
            gw = openai.AsyncOpenAI(
                base_url=f"http://127.0.0.1:{env['AGENTIC_GATEWAY_PORT']}/v1", api_key=key, max_retries=0, timeout=120
            )
            direct = openai.AsyncOpenAI(base_url=model.base_url, api_key="none", max_retries=0, timeout=60)
            model_ms_: list[float] = []
            gw_ms: list[float] = []
            ran: list[tuple[str, float, float]] = []
            for i in range(runs + 2):
                d, text, _, _ = await first_words(direct, "scripted", f"is sonarr ok? {i}")
                if text != ANSWER:
                    raise SystemExit(f"model {i}: {text!r}")
                g, text, run, sent = await first_words(gw, "agentic-observability", f"is sonarr ok? (gw {i})")
                if not text.endswith(ANSWER) or not g:
                    raise SystemExit(f"gateway {i}: {text!r}")
                if i >= 2:  # two warm-ups: the pools, the sessions, the worker's first runs
                    model_ms_.append(d)
                    gw_ms.append(g)
                    ran.append((run, sent, g))
            where = await phases(env, ran, model_ms)
        finally:
            await agentic(env, "down", limit=180)
    await model.stop()

    print(
        f"requests: {runs} each (+2 warm-up), one model turn (fake, streaming: first word after {model_ms} ms, "
        f"then one every {token_ms} ms); gateway and worker in their own processes (agentic up)"
    )
    print(_line("model directly, first word", model_ms_))
    print(_line("gateway, first word", gw_ms))
    print(_line("paired (gateway i - model i)", [g - d for g, d in zip(gw_ms, model_ms_, strict=True)]))
    print("where the time goes (gateway):")
    for name, values in where.items():
        print("  " + _line(name, values))
    tot50 = statistics.median(gw_ms) - statistics.median(model_ms_)
    tot95 = _pct(gw_ms, 0.95) - _pct(model_ms_, 0.95)
    verdict = "ok" if tot95 < 50 else "over"
    print(
        f"overhead on the first token (gateway - model)   p50 {tot50:7.1f} ms   p95 {tot95:7.1f} ms"
        f"   ({verdict}: target 50 ms)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=40)
    p.add_argument("--model-ms", type=int, default=200, help="the fake model's time to its first word")
    p.add_argument("--token-ms", type=int, default=20, help="the fake model's time per next word")
    p.add_argument("--env", action="append", default=[], metavar="AGENTIC_X=Y", help="a setting for the stack")
    a = p.parse_args()
    asyncio.run(bench(a.runs, a.model_ms, a.token_ms, a.env))


if __name__ == "__main__":
    main()
