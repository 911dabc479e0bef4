"""The web agent as the tests and the benchmark run it: the web MCP server (in-process, over
streamable HTTP) in front of the local sites and the fake SearXNG (tests/support/web_sites.py)
with loopback opened for the test site only, the cluster's write tools the injected pages ask
for, and a worker with the real agent activities, tool gateway and `guardrails.record` on the
real ledger (the route and the channels are the agent harness's fakes)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.agents.activities import AgentActivities
from activities.guardrails.activities import GuardrailActivities
from activities.inference.router import GroupConfig, InferenceRouter
from activities.ledger.repository import Ledger
from activities.tools.gateway import ToolActivities
from agentic_core.agents import AgentLimits
from tests.support.agent_harness import AgentFakes
from tests.support.env import free_port
from tests.support.fake_openai import FakeChatServer
from tests.support.web_sites import FakeSearxng, Site, cluster_writes, serving
from workers.sandbox import workflow_runner
from workers.toolservers.web.egress import EgressPolicy, Fetcher
from workers.toolservers.web.searxng import SearxNG
from workers.toolservers.web.server import build_server
from workflows.agent import AgentWorkflow
from workflows.approval import ApprovalWorkflow

METADATA = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


@contextlib.asynccontextmanager
async def web_servers(
    site: Site, searx: FakeSearxng, token: str, calls: list[tuple[str, dict[str, Any]]]
) -> AsyncIterator[dict[str, str]]:
    """The web server (the site's `localhost:PORT` and the metadata address by name on the
    allow-list; only 127.0.0.0/8 opened) and the write tools (`calls` records theirs): their URLs."""
    searxng = SearxNG(searx.url, timeout_s=5)
    fetcher = Fetcher(
        EgressPolicy.from_settings(f"localhost:{site.port},169.254.169.254", "127.0.0.0/8"),
        user_agent="agentic-platform-web/0.1",
        timeout_s=3,
        max_bytes=300_000,
        max_pages_per_minute=10_000,
    )
    web = build_server(searxng, fetcher, token=token)
    try:
        async with (
            serving(web, free_port()) as web_url,
            serving(cluster_writes(calls, token), free_port()) as writes_url,
        ):
            yield {"web": web_url, "writes": writes_url}
    finally:
        await searxng.close()
        await fetcher.close()


def web_agent_worker(
    client: Client,
    ledger: Ledger,
    model: FakeChatServer,
    fakes: AgentFakes,
    servers: dict[str, str],
    token: str,
    web_tools: Sequence[str],
    limits: AgentLimits | None = None,
) -> tuple[Worker, str]:
    """A worker (not yet running) whose web agent may call `web_tools`, and its task queue."""
    router = InferenceRouter([GroupConfig(name="planner", model="openai/scripted", api_base=model.base_url)])
    gateway = ToolActivities(ledger, servers, token, {"web": list(web_tools)}, heartbeat_every_s=0.2)
    agents = AgentActivities(ledger, router, agents={"web": limits or AgentLimits()}, tool_specs=gateway.offered)
    guardrails = GuardrailActivities(ledger)
    queue = f"web-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        client,
        task_queue=queue,
        workflow_runner=workflow_runner("strict"),
        workflows=[AgentWorkflow, ApprovalWorkflow],
        activities=[
            agents.start_run,
            agents.model_turn,
            agents.finish_run,
            gateway.list_tools,
            gateway.guard,
            gateway.call,
            gateway.execute,
            guardrails.record,
            fakes.route,
            fakes.notify,
        ],
    )
    return worker, queue
