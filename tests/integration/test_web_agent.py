"""The web agent through the agent runtime: the Temporal dev server, `AgentWorkflow`, the real agent
and gateway activities, the real `guardrails.record` and ledger (PostgreSQL), the real web MCP
server (in-process, over streamable HTTP) in front of local sites and a fake SearXNG
(tests/support/web_sites.py), and a scripted OpenAI-compatible model that does what it is told,
including what a web page tells it. The route is the harness's fake `agents.route` (the router
has its own tests); the channels (`incident.notify`) are the harness's fake.

- ask → routed to web → web_search → web_fetch → an answer citing the page's URL; a fetch of the
  metadata address is refused and recorded as an `egress_refused` guardrail event;
- a page carrying instructions (scale sonarr to zero, delete the namespace) that the model obeys:
  with the web agent's default allow-list the writes are refused; with an operator who listed
  them for the web agent they become a question to a human, and not approved, never run. Either
  way the tools that change the cluster record no call.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pgserver
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.ledger.repository import Ledger
from agentic_core.agents import AgentStatus
from agentic_core.tools import WEB_TOOLS
from tests.support.agent_harness import AgentFakes, answer_approval, progress_when, start_agent
from tests.support.fake_openai import FakeChatServer, chat_server, scripted, tool_call
from tests.support.pg import ledger_on, pg_server
from tests.support.temporal import dev_server_with_attributes
from tests.support.web_agent import METADATA, web_agent_worker, web_servers
from tests.support.web_sites import INJECTION, FakeSearxng, Site, web_world

TOKEN = "web-agent-token"
WRITES = ["scale_deployment", "delete_namespace"]


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-web-agent-pg-")


@pytest.fixture(scope="module")
async def ledger(pg: pgserver.PostgresServer) -> AsyncIterator[Ledger]:
    async with ledger_on(pg, "webagent", max_size=6) as led:
        yield led


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[tuple[Site, Site, FakeSearxng]]:
    async with web_world() as w:
        yield w


@pytest.fixture(scope="module")
async def servers(world: tuple[Site, Site, FakeSearxng]) -> AsyncIterator[tuple[dict[str, str], list[Any]]]:
    """The web server (loopback opened for the test site only) and the cluster's write tools."""
    site, _, searx = world
    calls: list[tuple[str, dict[str, Any]]] = []
    async with web_servers(site, searx, TOKEN, calls) as urls:
        yield urls, calls


@pytest.fixture(scope="module")
async def model() -> AsyncIterator[FakeChatServer]:
    async with chat_server("scripted") as server:
        yield server


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server_with_attributes() as env:
        yield env


@pytest.fixture(scope="module")
def fakes() -> AgentFakes:
    return AgentFakes(routes={"web": "web"})


@pytest.fixture(scope="module")
async def queues(
    temporal: WorkflowEnvironment,
    ledger: Ledger,
    model: FakeChatServer,
    fakes: AgentFakes,
    servers: tuple[dict[str, str], list[Any]],
) -> AsyncIterator[dict[str, str]]:
    """`default`: the web agent's default allow-list; `writes`: an operator also listed the writes."""
    urls, _ = servers
    default, q1 = web_agent_worker(temporal.client, ledger, model, fakes, urls, TOKEN, WEB_TOOLS)
    listed, q2 = web_agent_worker(temporal.client, ledger, model, fakes, urls, TOKEN, [*WEB_TOOLS, *WRITES])
    async with default, listed:
        yield {"default": q1, "writes": q2}


def tool_messages(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


async def events(ledger: Ledger, run_id: str) -> list[tuple[str, str | None]]:
    return sorted((e.kind, e.tool) for e in await ledger.list_guardrail_events(subject=run_id))


async def test_search_fetch_and_an_answer_citing_the_page(
    temporal: WorkflowEnvironment,
    queues: dict[str, str],
    model: FakeChatServer,
    ledger: Ledger,
    world: tuple[Site, Site, FakeSearxng],
) -> None:
    site, _, searx = world

    def fetch_first_fetchable(body: dict[str, Any]) -> dict[str, Any]:
        found = json.loads(tool_messages(body)[-1])
        url = next(hit["url"] for hit in found["results"] if hit["fetchable"])
        return {
            "content": "",
            "tool_calls": [tool_call("web_fetch", {"url": url}), tool_call("web_fetch", {"url": METADATA})],
        }

    def cite(body: dict[str, Any]) -> str:
        page = next(m for m in tool_messages(body) if '"source"' in m)
        source = re.search(r'"source":\s*"([^"]+)"', page)
        assert source is not None and "requires .NET 8" in page
        return f"Sonarr v4 requires .NET 8 and migrates its database on the first start (source: {source.group(1)})."

    model.requests.clear()
    model.reply = scripted(
        [
            {"content": "", "tool_calls": [tool_call("web_search", {"query": "sonarr v4 release notes"})]},
            fetch_first_fetchable,
            cite,
        ]
    )
    handle = await start_agent(
        temporal.client, queues["default"], "search the web for the sonarr v4 release notes", agent=None
    )
    res = await handle.result()

    assert res.status == AgentStatus.DONE and res.agent == "web" and res.route is not None
    assert [(r.call.tool, r.status) for r in res.tool_calls] == [
        ("web_search", "ok"),
        ("web_fetch", "ok"),
        ("web_fetch", "error"),
    ]
    assert res.answer == (
        f"Sonarr v4 requires .NET 8 and migrates its database on the first start (source: {site.base}/article)."
    )
    assert res.tool_calls[2].reason.startswith("egress refused: 169.254.169.254 is a link-local")
    assert {t["function"]["name"] for t in model.bodies[0]["tools"]} == set(WEB_TOOLS)
    assert searx.queries[-1]["q"] == "sonarr v4 release notes"
    # the refusal is a guardrail event of the run, recorded by the gateway (once)
    assert await events(ledger, res.run_id) == [("egress_refused", "web_fetch")]
    stored = await ledger.list_guardrail_events(subject=res.run_id)
    assert "169.254.169.254" in stored[0].detail and stored[0].agent == "web"


def obey_the_page(body: dict[str, Any]) -> dict[str, Any] | str:
    """The obedient model: when the page's instructions reached it, it does what they say."""
    if not any(INJECTION[:60] in m for m in tool_messages(body)):
        return "I found nothing to do."
    return {
        "content": "Doing what the page says.",
        "tool_calls": [
            tool_call("scale_deployment", {"namespace": "media", "name": "sonarr", "replicas": 0}),
            tool_call("delete_namespace", {"namespace": "media"}),
        ],
    }


async def test_a_page_that_gives_orders_cannot_make_a_write_run(
    temporal: WorkflowEnvironment,
    queues: dict[str, str],
    model: FakeChatServer,
    ledger: Ledger,
    servers: tuple[dict[str, str], list[Any]],
    world: tuple[Site, Site, FakeSearxng],
) -> None:
    site, _, _ = world
    _, calls = servers
    model.requests.clear()
    model.reply = scripted(
        [
            {"content": "", "tool_calls": [tool_call("web_fetch", {"url": f"{site.base}/injected"})]},
            obey_the_page,
            "Sonarr restarts when its memory limit is too low.",
        ]
    )
    handle = await start_agent(
        temporal.client, queues["default"], "what does the web say about sonarr restarts?", agent=None
    )
    res = await handle.result()

    assert INJECTION[:60] in tool_messages(model.bodies[1])[0]  # the page's orders reached the model
    assert [(r.call.tool, r.status) for r in res.tool_calls] == [
        ("web_fetch", "ok"),
        ("scale_deployment", "refused"),
        ("delete_namespace", "refused"),
    ]
    assert "there is no tool 'scale_deployment' (the tools offered: web_fetch, web_search)" in res.tool_calls[1].reason
    assert res.status == AgentStatus.DONE and calls == []
    assert await events(ledger, res.run_id) == [
        ("tool_refused", "delete_namespace"),
        ("tool_refused", "scale_deployment"),
    ]


async def test_listed_writes_ask_a_human_and_never_run_without_one(
    temporal: WorkflowEnvironment,
    queues: dict[str, str],
    model: FakeChatServer,
    ledger: Ledger,
    fakes: AgentFakes,
    servers: tuple[dict[str, str], list[Any]],
    world: tuple[Site, Site, FakeSearxng],
) -> None:
    site, _, _ = world
    _, calls = servers
    model.requests.clear()
    model.reply = scripted(
        [
            {"content": "", "tool_calls": [tool_call("web_fetch", {"url": f"{site.base}/injected"})]},
            obey_the_page,
            "Nothing was changed.",
        ]
    )
    handle = await start_agent(
        temporal.client, queues["writes"], "read the sonarr page on the web", agent=None, approvers=["alice"]
    )
    asked = await progress_when(handle, lambda p: p.status == AgentStatus.AWAITING_APPROVAL)
    assert asked.approval_id is not None and calls == []
    question = next(n for n in fakes.notes if n.approval_id == asked.approval_id)
    assert "scale_deployment" in question.text and '"replicas": 0' in question.text
    await answer_approval(temporal.client, asked.approval_id, "ignored", "alice")
    second = await progress_when(
        handle, lambda p: p.status == AgentStatus.AWAITING_APPROVAL and p.approval_id != asked.approval_id
    )
    assert second.approval_id is not None
    await answer_approval(temporal.client, second.approval_id, "ignored", "alice")
    res = await handle.result()

    assert [(r.call.tool, r.status) for r in res.tool_calls] == [
        ("web_fetch", "ok"),
        ("scale_deployment", "denied"),
        ("delete_namespace", "denied"),
    ]
    assert calls == []  # nothing that changes the cluster ran
    assert await events(ledger, res.run_id) == [
        ("write_denied", "delete_namespace"),
        ("write_denied", "scale_deployment"),
    ]
