"""The coding agent end to end through the agent runtime: the Temporal dev server, the real agent
and gateway activities, the real PostgreSQL ledger, the real MCP coding server process (as
`agentic up` builds its part from AGENTIC_REPOS, behind its token) over a GitOps repository this
test creates; the model is the scripted OpenAI-compatible fake (tests/support/fake_openai.py) and
the router the harness's fake under its real activity name (tests/support/agent_harness.py).

"raise radarr's memory limit to 2Gi in the gitops repo" → routed to coding → propose_edit (a
one-line diff) → apply_change becomes a question to a human, the diff in it → approved
(ApprovalWorkflow's update, as the CLI and the bot send it) → a commit on a new branch whose diff
is exactly that change; the default branch and the working copy are untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pgserver
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.agents.activities import AgentActivities
from activities.inference.router import GroupConfig, InferenceRouter
from activities.ledger.repository import Ledger
from activities.tools.gateway import ToolActivities
from agentic_core.agents import AgentStatus, not_configured_answer
from agentic_core.tools import CODING_TOOLS
from tests.support.agent_harness import AgentFakes, agent_worker, answer_approval, progress_when, start_agent
from tests.support.env import free_port
from tests.support.fake_openai import FakeChatServer, scripted, tool_call
from tests.support.kmock_helpers import McpProcess, start_server
from tests.support.pg import ledger_on, pg_server
from tests.support.temporal import dev_server_with_attributes
from workers.settings import Settings
from workers.stack.env import effective_settings
from workers.stack.parts import build_parts

TOKEN = "coding-agent-token"
VALUES = "apps/radarr/values.yaml"
RADARR_VALUES = """# radarr: movies (synced by ArgoCD from this repo)
image:
  repository: ghcr.io/home-operations/radarr
  tag: 5.14.0  # renovate: datasource=docker
resources:
  requests:
    cpu: 100m
    memory: 512Mi
  limits:
    memory: 1Gi  # OOMKilled at 1Gi during library scans
persistence:
  config:
    size: 5Gi
"""
REQUEST = "raise radarr's memory limit to 2Gi in the gitops repo"


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "me", "GIT_AUTHOR_EMAIL": "me@home", "GIT_COMMITTER_NAME": "me"}
    env["GIT_COMMITTER_EMAIL"] = "me@home"
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gitops")
    (root / "apps" / "radarr").mkdir(parents=True)
    (root / VALUES).write_text(RADARR_VALUES)
    (root / "apps" / "sonarr").mkdir()
    (root / "apps" / "sonarr" / "values.yaml").write_text(RADARR_VALUES.replace("radarr", "sonarr"))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "radarr and sonarr")
    return root


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-coding-pg-")


@pytest.fixture(scope="module")
async def ledger(pg: pgserver.PostgresServer) -> AsyncIterator[Ledger]:
    async with ledger_on(pg, "coding", max_size=4) as led:
        yield led


@pytest.fixture(scope="module")
def settings(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path_factory.mktemp("data"),
        repos=f"gitops={repo}",
        mcp_coding_port=free_port(),
        coding_author="agentic-platform <agentic@homelab>",
        mcp_token=TOKEN,
    )


@pytest.fixture(scope="module")
async def coding(settings: Settings) -> AsyncIterator[McpProcess]:
    # the process as `agentic up` starts it: its part's arguments and environment
    part = next(
        p for p in build_parts(settings, effective_settings(settings), resolve_binaries=False) if p.name == "mcp-coding"
    )
    assert part.mode == "embedded" and part.argv[3] == "workers.toolservers.coding"
    args = part.argv[part.argv.index("--repos") :]
    env = {k: v for k, v in part.env.items() if k.startswith("AGENTIC_CODING_")}
    proc = await start_server(settings.mcp_coding_port, None, TOKEN, module=part.argv[3], extra_args=args, env=env)
    yield proc
    assert await proc.stop() == 0


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server_with_attributes() as env:
        yield env


async def test_raise_a_memory_limit_in_the_gitops_repo(
    temporal: WorkflowEnvironment, ledger: Ledger, coding: McpProcess, settings: Settings, repo: Path
) -> None:
    # the server serves behind its token; the settings give the coding agent its server and its limits
    async with httpx.AsyncClient() as http:
        assert (await http.post(coding.url, json={})).status_code == 401
        health = (await http.get(coding.url.removesuffix("/mcp") + "/healthz")).json()
        assert health == {"status": "ok", "repos": ["gitops"]}
    assert settings.mcp_servers["coding"] == coding.url and "coding" in settings.agent_limit_map
    assert "AGENTIC_REPOS" in not_configured_answer("coding")

    model = FakeChatServer(name="scripted")
    await model.start()
    seen: dict[str, Any] = {}

    def commit_the_diff(body: dict[str, Any]) -> dict[str, Any]:
        proposal = json.loads([m for m in body["messages"] if m["role"] == "tool"][-1]["content"])
        seen["proposal"] = proposal
        args = {
            "repo": "gitops",
            "diff": proposal["diff"],
            "base": proposal["base"],
            "title": "radarr: raise the memory limit to 2Gi",
            "request": "agent request radarr-memory",
        }
        return {
            "content": "Here is the diff; committing it asks you first.",
            "tool_calls": [tool_call("apply_change", args, "w1")],
        }

    model.reply = scripted(
        [
            {
                "content": "I'll change the value in radarr's values file.",
                "tool_calls": [
                    tool_call(
                        "propose_edit",
                        {
                            "repo": "gitops",
                            "edits": [{"path": VALUES, "yaml_path": "resources.limits.memory", "value": "2Gi"}],
                        },
                        "p1",
                    )
                ],
            },
            commit_the_diff,
            "Committed on a new branch: radarr's memory limit is 2Gi once ArgoCD syncs it.",
        ]
    )
    main_before = git(repo, "rev-parse", "main").strip()
    fakes = AgentFakes(routes={"gitops repo": "coding"})
    try:
        router = InferenceRouter([GroupConfig(name="planner", model="openai/scripted", api_base=model.base_url)])
        gateway = ToolActivities(ledger, settings.mcp_servers, TOKEN, settings.agent_tool_lists, heartbeat_every_s=0.2)
        agents = AgentActivities(ledger, router, agents=settings.agent_limit_map, tool_specs=gateway.offered)
        queue = f"coding-{uuid.uuid4().hex[:8]}"
        async with agent_worker(temporal.client, queue, agents, gateway, fakes):
            handle = await start_agent(temporal.client, queue, REQUEST, agent=None, approvers=["bob"])
            waiting = await progress_when(handle, lambda p: p.status == AgentStatus.AWAITING_APPROVAL, within=90)
            # nothing committed yet; the question carries the diff the human approves
            assert git(repo, "branch", "--list", "agentic/*") == ""
            question = next(n for n in fakes.notes if n.approval_id == waiting.approval_id)
            [call] = question.plan
            assert call.tool == "apply_change" and call.arguments["diff"] == seen["proposal"]["diff"]
            await answer_approval(temporal.client, waiting.approval_id or "", "approved", "bob")
            res = await handle.result()
    finally:
        await model.stop()

    assert res.status == AgentStatus.DONE and res.agent == "coding"
    assert res.route is not None and res.route.agent == "coding"
    assert [(r.call.tool, r.status) for r in res.tool_calls] == [("propose_edit", "ok"), ("apply_change", "approved")]
    # the model was offered the coding tools (its allow-list, as the server offers them)
    assert {t["function"]["name"] for t in model.bodies[0]["tools"]} == set(CODING_TOOLS)
    # the proposal was a one-line diff
    diff = seen["proposal"]["diff"]
    assert [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")] == [
        "-    memory: 1Gi  # OOMKilled at 1Gi during library scans",
        "+    memory: 2Gi  # OOMKilled at 1Gi during library scans",
    ]
    # one new branch; its commit's diff is exactly that change; main and the working copy as they were
    branches = git(repo, "branch", "--list", "agentic/*", "--format=%(refname:short)").split()
    assert len(branches) == 1 and branches[0].startswith("agentic/agent-request-radarr-memory-")
    assert git(repo, "rev-parse", "main").strip() == main_before
    assert git(repo, "status", "--porcelain") == "" and (repo / VALUES).read_text() == RADARR_VALUES
    assert git(repo, "rev-parse", f"{branches[0]}^").strip() == main_before
    committed = git(repo, "diff", f"main..{branches[0]}")
    assert [ln for ln in committed.splitlines() if ln[:1] in "+-"] == [
        f"--- a/{VALUES}",
        f"+++ b/{VALUES}",
        "-    memory: 1Gi  # OOMKilled at 1Gi during library scans",
        "+    memory: 2Gi  # OOMKilled at 1Gi during library scans",
    ]
    log = git(repo, "log", "-1", "--format=%an <%ae>%n%s%n%b", branches[0])
    assert log.startswith("agentic-platform <agentic@homelab>\nradarr: raise the memory limit to 2Gi\n")
    assert "Request: agent request radarr-memory" in log
    actions = await ledger.list_actions(res.run_id)
    assert [(a.tool, a.status) for a in actions] == [("apply_change", "succeeded")]
