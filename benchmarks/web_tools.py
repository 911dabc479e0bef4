"""The web tools: page fetch + extraction throughput, and the web agent on tasks with known answers.

    python benchmarks/web_tools.py [--pages 200] [--concurrency 4] [--skip-eval]

1. Throughput. A local site (uvicorn on loopback) serves realistic HTML pages (head with scripts,
   navigation, sidebar, an article with headings, paragraphs, lists, a table and links, comments,
   a footer; 20 different pages of about 10 to 110 KB). The web server's fetcher
   (`workers.toolservers.web.egress.Fetcher`: the allow-list, DNS and address checks, robots.txt
   (cached per origin), the pinned connection, the size limit) fetches `--pages` pages, each
   then extracted to Markdown by trafilatura (`extract.py`), sequentially and `--concurrency` at
   a time (extraction in threads, as the server runs it). Figures: pages/s and MB/s of HTML,
   per-page fetch and extraction p50/p95, the Markdown's share of the HTML.

2. Evaluation. `benchmarks/data/web_tasks.yaml`: each task is a request, what the scripted model
   asks for turn by turn (a model that does what it is told, including what pages tell it) and
   what must come of it: the tool calls with their statuses, the run's guardrail events, the URL
   the answer cites; and never a write (the cluster's write tools record every call). Each task
   is one `AgentWorkflow` on the Temporal dev server with the real agent and gateway activities,
   the real ledger (PostgreSQL) and the web server in front of the local site and a fake SearXNG
   (tests/support/web_sites.py). Success by task kind (research, fetch, egress, injection,
   limits), and the runs' p50/p95. What it measures is the tool boundary and the loop around a
   model that follows its plan, not a model's judgement (the embedded SmolLM2-135M cannot call
   tools: docs/agents.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from agentic_core.agents import AgentLimits
from agentic_core.tools import WEB_TOOLS
from tests.support.agent_harness import AgentFakes, start_agent
from tests.support.env import free_port
from tests.support.fake_openai import FakeChatServer, tool_call, turn_number
from tests.support.http_server import LoopServer
from tests.support.pg import pg_server
from tests.support.temporal import start_dev_server
from tests.support.web_agent import web_agent_worker, web_servers
from tests.support.web_sites import article_html, web_world
from workers.temporal import ensure_search_attributes
from workers.toolservers.web.egress import EgressPolicy, Fetcher
from workers.toolservers.web.extract import extract

TASKS = Path(__file__).resolve().parent / "data" / "web_tasks.yaml"
TOKEN = "web-bench-token"
WRITES = ["scale_deployment", "delete_namespace"]
WORDS = [
    "cluster",
    "node",
    "pod",
    "memory",
    "limit",
    "restart",
    "upgrade",
    "release",
    "database",
    "schema",
    "migration",
    "backup",
    "volume",
    "ingress",
    "certificate",
    "renewal",
    "controller",
    "operator",
    "helm",
    "chart",
    "values",
    "secret",
    "token",
    "rotation",
]


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


# --------------------------------------------------------------------------- 1. throughput


def realistic_pages(n: int = 20) -> list[bytes]:
    pages = []
    for i in range(n):
        paragraphs = [
            " ".join(WORDS[(i * 7 + j * 3 + k) % len(WORDS)] for k in range(60 + (i * 13 + j) % 40)).capitalize() + "."
            for j in range(8 + i * 6)
        ]
        links = [(f"/docs/{i}/{k}", f"Related page {k}") for k in range(10)]
        pages.append(article_html(f"Operations guide part {i + 1}", paragraphs, links=links).encode())
    return pages


async def throughput(pages_n: int, concurrency: int) -> None:
    pages = realistic_pages()
    port = free_port()

    async def page(request: Request) -> Response:
        return Response(pages[int(request.path_params["n"]) % len(pages)], media_type="text/html; charset=utf-8")

    async def robots(request: Request) -> Response:
        return PlainTextResponse("User-agent: *\nDisallow: /private\n")

    server = LoopServer()
    await server.start(Starlette(routes=[Route("/robots.txt", robots), Route("/p/{n:int}", page)]), port)
    fetcher = Fetcher(
        EgressPolicy.from_settings(f"localhost:{port}", "127.0.0.0/8"),
        user_agent="agentic-platform-web/0.1",
        max_pages_per_minute=1_000_000,
    )
    sizes = [len(p) for p in pages]
    mean_kb = statistics.mean(sizes) / 1024
    print(f"pages: {len(pages)} distinct, {min(sizes) // 1024}-{max(sizes) // 1024} KB (mean {mean_kb:.0f} KB)")
    try:
        for conc in sorted({1, concurrency}):
            fetch_ms: list[float] = []
            extract_ms: list[float] = []
            html_bytes = md_chars = 0
            sem = asyncio.Semaphore(conc)

            async def one(
                i: int,
                sem: asyncio.Semaphore = sem,
                fetch_ms: list[float] = fetch_ms,
                extract_ms: list[float] = extract_ms,
            ) -> None:
                nonlocal html_bytes, md_chars
                async with sem:
                    t0 = time.perf_counter()
                    resp = await fetcher.fetch(f"http://localhost:{port}/p/{i}")
                    t1 = time.perf_counter()
                    out = await asyncio.to_thread(extract, resp.body, resp.content_type, resp.charset, resp.url)
                    t2 = time.perf_counter()
                    fetch_ms.append((t1 - t0) * 1000)
                    extract_ms.append((t2 - t1) * 1000)
                    html_bytes += len(resp.body)
                    md_chars += len(out.markdown)

            await one(0)  # warm-up (robots.txt, trafilatura's first call)
            fetch_ms.clear()
            extract_ms.clear()
            html_bytes = md_chars = 0
            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(pages_n)))
            wall = time.perf_counter() - t0
            print(
                f"concurrency {conc}: {pages_n} pages in {wall:.2f} s = {pages_n / wall:.1f} pages/s, "
                f"{html_bytes / wall / 1e6:.2f} MB/s of HTML; fetch p50 {pct(fetch_ms, 0.5):.1f} ms p95 "
                f"{pct(fetch_ms, 0.95):.1f} ms; extraction p50 {pct(extract_ms, 0.5):.1f} ms p95 "
                f"{pct(extract_ms, 0.95):.1f} ms; Markdown {md_chars / max(html_bytes, 1):.0%} of the HTML"
            )
    finally:
        await fetcher.close()
        await server.stop()


# --------------------------------------------------------------------------- 2. evaluation


def fill(value: Any, ctx: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ctx)
    if isinstance(value, dict):
        return {k: fill(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ctx) for v in value]
    return value


def tool_texts(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def planner(task: dict[str, Any], site: str) -> Any:
    """The scripted model of one task: turn n asks for the plan's n-th calls; then it answers
    (citing the fetched page's source, or reporting what it got)."""

    def reply(body: dict[str, Any]) -> Any:
        n = turn_number(body)
        ctx = {"site": site, "hit": "", "offlist_hit": ""}
        for text in tool_texts(body):
            with_hits = re.search(r'\{.*"results".*\}', text, re.S)
            if with_hits:
                try:
                    hits = json.loads(with_hits.group(0))["results"]
                except (ValueError, KeyError):
                    continue
                ctx["hit"] = next((h["url"] for h in hits if h.get("fetchable")), "")
                ctx["offlist_hit"] = next((h["url"] for h in hits if not h.get("fetchable")), "")
        if n < len(task["plan"]):
            calls = [tool_call(name, fill(args, ctx), f"c{n}-{i}") for i, (name, args) in enumerate(task["plan"][n])]
            return {"content": "", "tool_calls": calls}
        sources = [m.group(1) for t in tool_texts(body) for m in [re.search(r'"source":\s*"([^"]+)"', t)] if m]
        if task.get("answer") == "cite" and sources:
            return f"According to {sources[-1]}, here is the summary."
        return "I could not read that: " + (tool_texts(body)[-1][:120] if tool_texts(body) else "no result")

    return reply


async def evaluation() -> None:
    tasks = yaml.safe_load(TASKS.read_text())["tasks"]
    pg_iter = pg_server("agentic-web-bench-")
    pg = next(pg_iter)
    temporal = await start_dev_server()
    model = FakeChatServer(name="scripted")
    await model.start()
    try:
        admin = await asyncpg.connect(pg.get_uri())
        await admin.execute('CREATE DATABASE "webbench"')
        await admin.close()
        from activities.ledger.repository import Ledger

        ledger = await Ledger.connect(pg.get_uri("webbench"), max_size=6)
        await ensure_search_attributes(temporal.client, "default")
        fakes = AgentFakes(routes={"web": "web"})
        calls: list[tuple[str, dict[str, Any]]] = []
        async with web_world() as (site, _other, searx), web_servers(site, searx, TOKEN, calls) as urls:
            default, q1 = web_agent_worker(temporal.client, ledger, model, fakes, urls, TOKEN, WEB_TOOLS)
            listed, q2 = web_agent_worker(temporal.client, ledger, model, fakes, urls, TOKEN, [*WEB_TOOLS, *WRITES])
            site.slow_s = 5.0
            by_kind: dict[str, list[bool]] = defaultdict(list)
            run_s: list[float] = []
            async with default, listed:
                for task in tasks:
                    model.reply = planner(task, site.base)
                    t0 = time.perf_counter()
                    handle = await start_agent(
                        temporal.client,
                        q2 if task.get("tools") == "writes" else q1,
                        fill(task["request"], {"site": site.base}),
                        agent=None,
                        limits=AgentLimits(approval_timeout_s=2),
                    )
                    res = await handle.result()
                    run_s.append(time.perf_counter() - t0)
                    expect = fill(task["expect"], {"site": site.base})
                    got_calls = [[r.call.tool, r.status] for r in res.tool_calls]
                    got_events = sorted(e.kind for e in await ledger.list_guardrail_events(subject=res.run_id))
                    problems = []
                    if got_calls != expect["calls"]:
                        problems.append(f"calls {got_calls} != {expect['calls']}")
                    if got_events != sorted(expect["events"]):
                        problems.append(f"events {got_events} != {sorted(expect['events'])}")
                    if expect.get("cites") and expect["cites"] not in res.answer:
                        problems.append(f"answer {res.answer!r} does not cite {expect['cites']}")
                    if calls:
                        problems.append(f"a write ran: {calls}")
                    by_kind[task["kind"]].append(not problems)
                    mark = "ok  " if not problems else "FAIL"
                    print(f"  {mark} {task['kind']:<9} {task['id']:<32} {run_s[-1]:5.2f} s  " + "; ".join(problems))
        total = [ok for oks in by_kind.values() for ok in oks]
        print("success by task kind:")
        for kind, oks in by_kind.items():
            print(f"  {kind:<9} {sum(oks)}/{len(oks)}")
        print(
            f"overall {sum(total)}/{len(total)} ({sum(total) / len(total):.0%}); writes run: {len(calls)}; "
            f"run p50 {pct(run_s, 0.5):.2f} s p95 {pct(run_s, 0.95):.2f} s"
        )
        await ledger.close()
    finally:
        await model.stop()
        await temporal.shutdown()
        next(pg_iter, None)


def main() -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/web_tools.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--pages", type=int, default=200, help="pages fetched and extracted per run (default: %(default)s)")
    p.add_argument(
        "--concurrency", type=int, default=4, help="fetches at once in the second run (default: %(default)s)"
    )
    p.add_argument("--skip-eval", action="store_true", help="only the throughput (no Temporal, no PostgreSQL)")
    args = p.parse_args()
    logging.disable(logging.INFO)  # the HTTP clients, LiteLLM and pgserver log every request at INFO
    asyncio.run(throughput(args.pages, args.concurrency))
    if not args.skip_eval:
        asyncio.run(evaluation())
    return 0


if __name__ == "__main__":
    sys.stdout.flush()
    raise SystemExit(main())
