"""#17: a call whose ledger row the gateway claimed, then gave up on, never leaves the row
`running` forever (StackStorm's "dead runner"): the agent runtime's approved writes
(workflows/agent.py, `WRITE_GIVE_UP_PATCH`) and the investigate stage's evidence calls
(workflows/investigate.py, `EVIDENCE_GIVE_UP_PATCH`) close it with the real `tools.give_up` on
the real ledger (PostgreSQL), as the incident's actions do (tests/workflows/test_autonomy.py).

The time-skipping server skips the retries' backoff; `tools.execute` is a fake that does what the
gateway does when its MCP server stops answering after the claim (or answers too late): the key
is claimed in the ledger, then the attempt fails (or outlives the budget).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pgserver
import pytest
from temporalio import activity
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.ledger.repository import Ledger
from activities.tools import ERR_UNAVAILABLE, EXECUTE
from activities.tools.gateway import ToolActivities
from agentic_core.agents import AgentStatus, agent_action_key
from agentic_core.evidence import EVIDENCE_KEY_PART, evidence_key
from agentic_core.incident import ActionResult, DecideInput, ExecuteInput, IncidentConfig
from tests.support import capture_agent_history as agent_fakes
from tests.support.agent_harness import AgentFakes, answer_approval, progress_when, start_agent
from tests.support.env import stack_env
from tests.support.incident_fakes import PREVIOUS_LOGS, WORKING_SET, Fakes, incident
from tests.support.pg import create_database, pg_server
from tests.support.temporal import time_skipping_with_attributes
from workers.sandbox import workflow_runner
from workers.stack.stuck_actions import STUCK_AFTER_S
from workflows.agent import EXECUTE_RETRY, WRITE_GIVE_UP_PATCH, AgentWorkflow
from workflows.approval import ApprovalWorkflow
from workflows.incident import PATCHES_V10_PATCH
from workflows.investigate import CALL_RETRY

REPO = Path(__file__).resolve().parents[2]
UNREACHABLE = "MCP server infra (http://127.0.0.1:9/mcp): connection refused"


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_with_attributes() as e:
        yield e


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PostgresServer]:
    yield from pg_server("agentic-give-up-pg-")


@pytest.fixture(scope="module")
async def dsn(pg: pgserver.PostgresServer) -> str:
    return await create_database(pg, "give_up")


@pytest.fixture(scope="module")
async def ledger(dsn: str) -> AsyncIterator[Ledger]:
    led = await Ledger.connect(dsn, max_size=4)
    yield led
    await led.close()


@pytest.fixture
async def gateway(ledger: Ledger) -> AsyncIterator[ToolActivities]:
    gw = ToolActivities(ledger, servers={}, token=None, allow={})
    yield gw
    await gw.aclose()


async def test_an_approved_write_that_gives_up_ends_failed_not_running(
    env: WorkflowEnvironment, ledger: Ledger, gateway: ToolActivities
) -> None:
    """The agent's approved `rollout_restart`: the gateway claimed its key, then its MCP server
    stayed unreachable through every retry. The row ends `failed` with the reason; the run says
    the write did not run and ends."""
    attempts: list[int] = []

    @activity.defn(name=EXECUTE)
    async def execute(inp: ExecuteInput) -> ActionResult:
        attempts.append(activity.info().attempt)
        await ledger.start_action(
            inp.incident_id, inp.index, inp.call.tool, inp.call.arguments, inp.idempotency_key, agent_run=True
        )
        raise ApplicationError(UNREACHABLE, type=ERR_UNAVAILABLE)

    fakes = AgentFakes()
    queue = f"give-up-{uuid.uuid4().hex[:8]}"
    a = agent_fakes
    activities: list[Callable[..., Any]] = [
        a.start_run,
        a.list_tools,
        a.model_turn,
        a.guard,
        a.call,
        a.finish_run,
        execute,
        gateway.give_up,
    ]
    async with Worker(
        env.client,
        task_queue=queue,
        workflow_runner=workflow_runner("strict"),
        workflows=[AgentWorkflow, ApprovalWorkflow],
        activities=[*activities, fakes.route, fakes.record, fakes.notify],
    ):
        handle = await start_agent(env.client, queue, "restart x", approvers=["bob"])
        waiting = await progress_when(handle, lambda p: p.approval_id is not None)
        assert waiting.approval_id is not None
        await answer_approval(env.client, waiting.approval_id, "approved", "bob")
        res = await handle.result()
        history = await handle.fetch_history()
    assert len(attempts) == EXECUTE_RETRY.maximum_attempts  # it waited for the server, then gave up
    assert res.status == AgentStatus.DONE, res
    row = await ledger.get_action(agent_action_key(res.run_id, 2, 0))
    assert row is not None and row.run_id == res.run_id, row
    assert row.status == "failed" and row.finished_at is not None, row
    assert row.error is not None and "gave up" in row.error and "connection refused" in row.error, row.error
    assert [a.status for a in await ledger.list_actions(res.run_id)] == ["failed"]
    write = next(r for r in res.tool_calls if r.call.tool == "rollout_restart")
    assert write.status == "error" and "gave up" in write.reason and "connection refused" in write.reason
    # behind its patch, and the history replays with today's code
    assert WRITE_GIVE_UP_PATCH in patches(history)
    await Replayer(
        workflow_runner=workflow_runner("strict"), workflows=[AgentWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history)


async def test_evidence_calls_that_give_up_end_failed_not_running(
    env: WorkflowEnvironment, ledger: Ledger, gateway: ToolActivities
) -> None:
    """The investigate stage: one evidence call's server stops answering after the claim (every
    retry), another answers after the budget. Both rows end `failed` with the reason; the
    evidence says `unavailable` and `timed_out` as before."""
    fakes = Fakes(runbook_evidence=[PREVIOUS_LOGS, WORKING_SET])
    claimed: list[str] = []

    @activity.defn(name=EXECUTE)
    async def execute(inp: ExecuteInput) -> ActionResult:
        if EVIDENCE_KEY_PART not in inp.idempotency_key:
            return await fakes.execute(inp)
        await ledger.start_action(inp.incident_id, inp.index, inp.call.tool, inp.call.arguments, inp.idempotency_key)
        claimed.append(inp.idempotency_key)
        if inp.call.tool == PREVIOUS_LOGS.tool:
            raise ApplicationError(UNREACHABLE, type=ERR_UNAVAILABLE)
        await asyncio.sleep(4)  # past the budget: the workflow stops waiting for it
        return ActionResult(
            index=inp.index, tool=inp.call.tool, idempotency_key=inp.idempotency_key, status="succeeded"
        )

    acts = [act for act in fakes.activities() if act not in (fakes.execute, fakes.give_up)]
    async with incident(
        env, fakes, IncidentConfig(investigate_budget_s=2), activities=[*acts, execute, gateway.give_up]
    ) as run:
        st = await run.awaiting()
        await run.decide(DecideInput(choice="ignored", by="alice", plan_hash=st.plan_hash or ""))
        await run.result()
        history = await run.handle.fetch_history()
    assert [(e.call.tool, e.status) for e in st.evidence] == [
        (PREVIOUS_LOGS.tool, "unavailable"),
        (WORKING_SET.tool, "timed_out"),
    ]
    assert claimed.count(evidence_key(run.incident_id, 0, run.occurrence or 0)) == CALL_RETRY.maximum_attempts
    errors = []
    for index in (0, 1):
        row = await ledger.get_action(evidence_key(run.incident_id, index, run.occurrence or 0))
        assert row is not None and row.status == "failed" and row.finished_at is not None, row
        assert row.error is not None and row.error.startswith("gave up: "), row.error
        errors.append(row.error)
    assert errors == [f"gave up: {UNREACHABLE}", "gave up: no answer within the investigate budget of 2s"]
    # behind its patch: since PATCHES_V10_PATCH the run's one marker at the start stands for it
    assert patches(history) == [PATCHES_V10_PATCH]


async def test_agentic_status_names_an_action_row_left_running(ledger: Ledger, dsn: str, tmp_path: Path) -> None:
    """If a row is left `running` anyway (the ledger unreachable at give-up, a run terminated by
    hand), `agentic status` says so: a row older than any execute with its retries is named, a
    fresh one (an execute under way) is not."""
    old_key, fresh_key = f"inc-stuck-{uuid.uuid4().hex[:6]}/0", f"inc-busy-{uuid.uuid4().hex[:6]}/0"
    await ledger.start_action(old_key.split("/")[0], 0, "kubernetes.restart_deployment", {}, old_key)
    await ledger.start_action(fresh_key.split("/")[0], 0, "kubernetes.restart_deployment", {}, fresh_key)
    async with ledger.pool.acquire() as conn:
        await conn.execute(
            "UPDATE actions SET started_at = now() - make_interval(secs => $1) WHERE idempotency_key = $2",
            STUCK_AFTER_S + 60,
            old_key,
        )
    env = {**stack_env(tmp_path / "data"), "AGENTIC_POSTGRES_DSN": dsn}
    agentic = [sys.executable, "-m", "workers.cli"]
    text = await asyncio.to_thread(
        subprocess.run, [*agentic, "status"], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert "1 action row still running after 54.5 min" in text.stdout, text.stdout + text.stderr
    assert old_key in text.stdout and "kubernetes.restart_deployment" in text.stdout
    assert fresh_key not in text.stdout
    doc = await asyncio.to_thread(
        subprocess.run, [*agentic, "status", "--json"], env=env, cwd=REPO, capture_output=True, text=True
    )
    stuck = json.loads(doc.stdout)["stuck_actions"]
    assert stuck["count"] == 1 and [r["key"] for r in stuck["rows"]] == [old_key], stuck


def patches(history: WorkflowHistory) -> list[str]:
    return [
        json.loads(e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for e in history.events
        if e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
